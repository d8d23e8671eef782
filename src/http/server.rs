//! The HTTPS server actor: owns the accept loop of one service. The listener is bound once at
//! start-up and shared, so a restarted server keeps its port (port 0 included).

use super::{filter, Routes};
use async_trait::async_trait;
use cpe_actors::supervisor::ChildSpec;
use cpe_actors::task_guard::AbortOnDrop;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// A client must finish its TLS handshake, and send each request head (the first one included,
/// so an idle keep-alive connection is closed too), within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct ServerArgs {
    pub name: &'static str,
    pub listener: Arc<std::net::TcpListener>,
    pub tls: TlsAcceptor,
    pub routes: Arc<dyn Routes>,
}

pub struct ServerState {
    /// Dropped with the state, even when the actor is killed, so no orphan loop keeps accepting.
    _accept_loop: AbortOnDrop,
}

/// The server has no messages: its whole job is the accept loop it owns.
pub struct HttpServer;

impl Actor for HttpServer {
    type Msg = ();
    type State = ServerState;
    type Arguments = ServerArgs;

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let listener = args.listener.try_clone()?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let accept_loop = tokio::spawn(accept_loop(listener, args.tls, args.routes));
        Ok(ServerState {
            _accept_loop: AbortOnDrop(accept_loop),
        })
    }
}

/// Accepts until aborted; each connection is served by its own task and outlives a server restart.
async fn accept_loop(listener: tokio::net::TcpListener, tls: TlsAcceptor, routes: Arc<dyn Routes>) {
    let service = warp::service(filter(routes));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(error) => {
                // Out of file descriptors or a reset before accept: pause briefly rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Without TCP_NODELAY a new TLS connection waits on delayed ACKs (about 40 ms).
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let service = service.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            // ALPN already chose the protocol: serving it directly (rather than sniffing the first
            // bytes) lets the header timeout cover a client that connects and then sends nothing.
            let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = TokioIo::new(stream);
            let service = TowerToHyperService::new(service);
            let served = if http2 {
                // HTTP/2 pings start only after the client's preface: a client that says nothing
                // at all is dropped once the header deadline passes without a request.
                let asked = Arc::new(AtomicBool::new(false));
                let flag = asked.clone();
                let service = hyper::service::service_fn(move |request| {
                    flag.store(true, Ordering::Relaxed);
                    hyper::service::Service::call(&service, request)
                });
                let connection = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .keep_alive_interval(Some(Duration::from_secs(30)))
                    .keep_alive_timeout(Duration::from_secs(20))
                    // Service A's calls wait long and cost little: let one connection carry many.
                    .max_concurrent_streams(1000)
                    .serve_connection(io, service);
                tokio::select! {
                    served = connection => served,
                    _ = silent_for(HEADER_TIMEOUT, &asked) => return tracing::debug!(%peer, "HTTP/2 client sent no request"),
                }
            } else {
                http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(io, service)
                    .await
            };
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
}

/// Completes after `deadline` if no request came by then; never completes otherwise.
async fn silent_for(deadline: Duration, asked: &AtomicBool) {
    tokio::time::sleep(deadline).await;
    if asked.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
}

/// Lets the supervisor (re)start a server with the same listener and routes.
pub struct ServerSpec(pub ServerArgs);

#[async_trait]
impl ChildSpec for ServerSpec {
    fn name(&self) -> &str {
        self.0.name
    }

    async fn start(&self, supervisor: ActorCell) -> Result<ActorCell, ActorProcessingErr> {
        let (actor, _) = Actor::spawn_linked(None, HttpServer, self.0.clone(), supervisor).await?;
        Ok(actor.get_cell())
    }
}
