//! The Service B part: the asynchronous HTTPS front; and, when the workers run in other processes,
//! the consumer of the results queue that brings their outcomes to the registry.

use super::edge::bind;
use super::part::{Part, Stop};
use super::Common;
use crate::config::HttpOptions;
use crate::http::health::Readiness;
use crate::http::service_b::{KnownHosts, ServiceB};
use crate::queue::Transport;
use crate::tokens::Tokens;
use anyhow::{anyhow, Context, Result};
use cpe_actors::consumer;
use cpe_actors::registry::RegistryHandle;
use cpe_actors::task_guard::AbortOnDrop;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// How often the tokens file is looked at: a token created or removed counts within this.
const TOKENS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// `queues`: every queue subscription of this process; Service B is ready only when all are live.
pub(super) fn part(
    options: &HttpOptions,
    certs_dir: &std::path::Path,
    registry: &RegistryHandle,
    transport: &Transport,
    queues: Vec<Arc<AtomicBool>>,
    common: &Common,
) -> Result<(Part, SocketAddr)> {
    let api_token = options.api_token.as_ref().map(|token| token.expose().as_str());
    let tokens = Arc::new(Tokens::open(api_token, options.tokens_file.as_deref()).context("--tokens-file")?);
    let listener = bind(options.service_b_addr, "--service-b-addr")?;
    let addr = listener.local_addr()?;
    let routes = ServiceB {
        registry: registry.clone(),
        publisher: transport.publisher.clone(),
        readiness: Readiness {
            accepting: common.accepting.clone(),
            queues,
        },
        _tokens_watch: tokens.watch(TOKENS_EVERY).map(AbortOnDrop),
        tokens: tokens.clone(),
        metrics: common.metrics.clone(),
        hosts: KnownHosts::new(
            &options.public_hosts,
            Some(crate::tls::leaf_certificate(certs_dir)?),
            addr.ip(),
        ),
        refusals: Default::default(),
    };
    let mut part = Part::default();
    part.child(
        common
            .edge
            .server("service-b", listener, routes, "service_b", &common.metrics),
    );
    let queue = transport.tasks.describe();
    part.announce(move || tracing::info!(%addr, %queue, "Service B (config_status_service) listening on https"));
    Ok((part, addr))
}

/// With `--role service-b`: outcomes from the workers' processes, applied to the registry.
pub(super) fn results_consumer(registry: &RegistryHandle, transport: &Transport) -> Result<Part> {
    let (source, handler) = transport
        .results_consumer(registry.clone())
        .ok_or_else(|| anyhow!("--role service-b needs --amqp-url"))?;
    let mut part = Part::default();
    let connected = Arc::new(AtomicBool::new(false));
    part.queue_flags.push(connected.clone());
    let child = part.child(consumer::spec("results-consumer", source, handler, connected));
    part.stops.push(Stop::Consumer(child));
    Ok(part)
}
