//! What both HTTPS services share: the TLS acceptor, the connection limits, and how a service's
//! routes become a supervised server on a bound listener.

use crate::config::HttpOptions;
use crate::http::connections::Connections;
use crate::http::observe::{HttpObserver, Observed};
use crate::http::server::{self, EdgeLimits, HttpServer, ServerArgs};
use crate::http::Routes;
use crate::metrics::Metrics;
use crate::tls;
use anyhow::{Context, Result};
use cpe_actors::supervisor::Spec;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

pub(super) struct Edge {
    tls: TlsAcceptor,
    limits: EdgeLimits,
}

impl Edge {
    /// Generates a self-signed pair into `certs_dir` when none is there.
    pub fn open(certs_dir: &Path, options: &HttpOptions) -> Result<Edge> {
        tls::install_crypto_provider();
        if tls::ensure_pair(certs_dir)? {
            tracing::info!(dir = %certs_dir.display(), "generated a self-signed certificate pair for localhost, 127.0.0.1 and ::1");
        }
        Ok(Edge {
            tls: TlsAcceptor::from(tls::server_config(certs_dir)?),
            limits: EdgeLimits {
                connections: Connections::new(options.max_connections as usize),
                body_timeout: options.body_timeout,
                idle_timeout: options.idle_timeout,
            },
        })
    }

    /// Every connection of both services, to close them at the end of a clean stop.
    pub fn connections(&self) -> Connections {
        self.limits.connections.clone()
    }

    /// A server for `routes` (with `/metrics` and request counts added) on `listener`.
    pub fn server(
        &self,
        name: &'static str,
        listener: Arc<TcpListener>,
        routes: impl Routes,
        service: &'static str,
        metrics: &Arc<Metrics>,
    ) -> Spec<HttpServer> {
        let routes = Arc::new(Observed {
            inner: Arc::new(routes),
            observer: HttpObserver {
                metrics: metrics.clone(),
                service,
            },
        });
        server::spec(ServerArgs {
            name,
            listener,
            tls: self.tls.clone(),
            routes,
            limits: self.limits.clone(),
        })
    }
}

/// Binds at start-up, so a taken port fails the start and names the option.
pub(super) fn bind(addr: SocketAddr, option: &str) -> Result<Arc<TcpListener>> {
    let listener = crate::http::listener::bind(addr).with_context(|| format!("cannot listen on {addr} ({option})"))?;
    Ok(Arc::new(listener))
}
