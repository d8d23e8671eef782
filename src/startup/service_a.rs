//! The Service A part: the device simulation's HTTPS server.

use super::edge::bind;
use super::part::Part;
use super::Common;
use crate::config::ServiceAOptions;
use crate::duration::format_duration;
use crate::http::health::Readiness;
use crate::http::service_a::ServiceA;
use anyhow::Result;
use std::net::SocketAddr;

/// Also gives the address it listens on: workers in the same process call it there.
pub(super) fn part(options: &ServiceAOptions, common: &Common) -> Result<(Part, SocketAddr)> {
    let listener = bind(options.service_a_addr, "--service-a-addr")?;
    let addr = listener.local_addr()?;
    let routes = ServiceA {
        delay: options.config_delay,
        fail_rate: options.fail_rate,
        readiness: Readiness {
            accepting: common.accepting.clone(),
            queues: vec![],
        },
    };
    let mut part = Part::default();
    part.child(
        common
            .edge
            .server("service-a", listener, routes, "service_a", &common.metrics),
    );
    let delay = format_duration(options.config_delay);
    part.announce(move || tracing::info!(%addr, %delay, "Service A (cpe_locate_service) listening on https"));
    Ok((part, addr))
}
