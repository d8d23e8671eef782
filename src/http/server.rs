//! The HTTPS server actor: owns the accept loop of one service. The listener is bound once at
//! start-up and shared, so a restarted server keeps its port (port 0 included).

use super::connections::{Connections, Phase};
use super::edge::{Activity, Edge};
use super::h1_errors::JsonErrors;
use super::{filter, Routes};
use cpe_actors::supervisor::Spec;
use cpe_actors::task_guard::AbortOnDrop;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// A client must finish its TLS handshake, and send each request head (the first one included,
/// so an idle keep-alive connection is closed too), within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The limits every connection of the process shares.
#[derive(Clone)]
pub struct EdgeLimits {
    pub connections: Connections,
    /// Longest a client may take to send a request body (after its head).
    pub body_timeout: Duration,
    /// An HTTP/2 connection with no request in flight for this long is closed (GOAWAY).
    pub idle_timeout: Duration,
}

#[derive(Clone)]
pub struct ServerArgs {
    pub name: &'static str,
    pub listener: Arc<std::net::TcpListener>,
    pub tls: TlsAcceptor,
    pub routes: Arc<dyn Routes>,
    pub limits: EdgeLimits,
}

pub struct ServerState {
    /// Dropped with the state, even when the actor is killed, so no orphan loop keeps accepting.
    _accept_loop: AbortOnDrop,
}

/// The server has no messages: its whole job is the accept loop it owns.
#[derive(Clone)]
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
        let accept_loop = tokio::spawn(accept_loop(args.name, listener, args.tls, args.routes, args.limits));
        Ok(ServerState {
            _accept_loop: AbortOnDrop(accept_loop),
        })
    }
}

/// Accepts until aborted or the stop begins; each connection is served by its own task, which
/// outlives a server restart and follows the stop through [`Connections`].
async fn accept_loop(
    name: &'static str,
    listener: tokio::net::TcpListener,
    tls: TlsAcceptor,
    routes: Arc<dyn Routes>,
    limits: EdgeLimits,
) {
    let service = warp::service(filter(routes, limits.body_timeout));
    let mut phase = limits.connections.phase();
    let stopping = |p: &Phase| *p != Phase::Serving;
    loop {
        let open = tokio::select! {
            open = limits.connections.slot(name) => open,
            _ = phase.wait_for(stopping) => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = phase.wait_for(stopping) => return,
        };
        let (tcp, peer) = match accepted {
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
        let limits = limits.clone();
        tokio::spawn(async move {
            let _open = open;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            // ALPN already chose the protocol: serving it directly (rather than sniffing the first
            // bytes) lets the header timeout cover a client that connects and then sends nothing.
            let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let activity = Activity::new();
            let service = Edge::new(TowerToHyperService::new(service), activity.clone(), peer);
            let phase = limits.connections.phase();
            let served = if http2 {
                let connection = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .keep_alive_interval(Some(Duration::from_secs(30)))
                    .keep_alive_timeout(Duration::from_secs(20))
                    // Service A's calls wait long and cost little: let one connection carry many.
                    .max_concurrent_streams(1000)
                    .serve_connection(TokioIo::new(stream), service);
                // HTTP/2 pings start only after the client's preface, and a client that answers
                // them keeps the connection forever: close it once no request came for a while.
                let idle = async {
                    activity.idle(HEADER_TIMEOUT, limits.idle_timeout).await;
                    if !activity.ever_asked() {
                        tracing::debug!(%peer, "HTTP/2 client sent no request");
                    }
                };
                drive(connection, phase, idle, |c| c.graceful_shutdown()).await
            } else {
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(JsonErrors::new(TokioIo::new(stream)), service);
                // An idle HTTP/1.1 connection is closed by the header timeout.
                drive(connection, phase, std::future::pending(), |c| c.graceful_shutdown()).await
            };
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
}

/// Serves one connection to its end: on `idle`, or when the stop begins, it finishes the requests
/// in flight and closes (`graceful`); once the grace period is over it is dropped.
async fn drive<C>(
    connection: C,
    mut phase: watch::Receiver<Phase>,
    idle: impl Future<Output = ()>,
    graceful: impl Fn(Pin<&mut C>),
) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let mut connection = std::pin::pin!(connection);
    let mut idle = std::pin::pin!(idle);
    let (mut winding_down, mut follow_phase) = (false, true);
    loop {
        let now = *phase.borrow_and_update();
        match now {
            Phase::Closing => return Ok(()),
            Phase::Draining if !winding_down => {
                winding_down = true;
                graceful(connection.as_mut());
            }
            _ => {}
        }
        tokio::select! {
            served = connection.as_mut() => return served,
            changed = phase.changed(), if follow_phase => follow_phase = changed.is_ok(),
            _ = idle.as_mut(), if !winding_down => {
                winding_down = true;
                graceful(connection.as_mut());
            }
        }
    }
}

/// Lets the supervisor (re)start a server with the same listener and routes.
pub fn spec(args: ServerArgs) -> Spec<HttpServer> {
    Spec::new(args.name, HttpServer, move || args.clone())
}
