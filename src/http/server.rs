//! The HTTPS server actor: owns the accept loop of one service. The listener is bound once at
//! start-up and shared, so a restarted server keeps its port (port 0 included).

use super::{filter, Routes};
use async_trait::async_trait;
use cpe_actors::supervisor::ChildSpec;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A client must finish its TLS handshake, and send each request head, within this time.
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
    stop: watch::Sender<bool>,
    accept_loop: JoinHandle<()>,
}

pub struct HttpServer;

pub enum ServerMsg {
    /// The accept loop ended on its own: fail, so the supervisor restarts the server.
    AcceptLoopEnded(String),
}

impl Actor for HttpServer {
    type Msg = ServerMsg;
    type State = ServerState;
    type Arguments = ServerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let listener = args.listener.try_clone()?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let (stop, stopped) = watch::channel(false);
        let accept_loop = tokio::spawn(async move {
            let reason = accept_loop(listener, args.tls, args.routes, stopped).await;
            let _ = myself.cast(ServerMsg::AcceptLoopEnded(reason));
        });
        Ok(ServerState { stop, accept_loop })
    }

    async fn post_stop(
        &self,
        _: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _ = state.stop.send(true);
        state.accept_loop.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        _: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let ServerMsg::AcceptLoopEnded(reason) = msg;
        Err(format!("accept loop ended: {reason}").into())
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: TlsAcceptor,
    routes: Arc<dyn Routes>,
    mut stopped: watch::Receiver<bool>,
) -> String {
    let service = warp::service(filter(routes));
    loop {
        let accepted = tokio::select! {
            _ = stopped.changed() => return "stopped".into(),
            accepted = listener.accept() => accepted,
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
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(Duration::from_secs(30)));
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await
            {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
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
