//! A TCP fault proxy for tests: forwards 127.0.0.1:<port> to an upstream address, and delays, holds,
//! resets or cuts the traffic when told to, at run time (in place of tc netem or toxiproxy).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// What the proxy does with the traffic; [`FaultProxy::set`] changes it for current and new connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything at once.
    Pass,
    /// Hold each chunk this long before forwarding it (both ways, order kept).
    Delay(Duration),
    /// Accept connections but forward nothing either way, as a network partition would: what is read
    /// is held, not dropped, and delivered in order if the mode changes back (a healed partition), so
    /// a protocol on top sees silence, not corruption. New connections reach the upstream only then.
    Blackhole,
    /// Reset every current connection (SO_LINGER 0, so both peers get an RST) and each new one as soon
    /// as it is accepted.
    Reset,
    /// Close a connection (both sides, FIN) once this many bytes, both ways together, went through it;
    /// the chunk that crosses the line is cut to fit.
    CloseAfter(u64),
}

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

struct Shared {
    upstream: SocketAddr,
    mode: watch::Sender<Mode>,
    accepted: AtomicUsize,
    /// Open connections by id, each with the means to reset it.
    live: Mutex<HashMap<u64, Arc<Notify>>>,
    next_id: AtomicU64,
}

impl FaultProxy {
    /// Listens on 127.0.0.1, port chosen by the system, and forwards to `upstream` in [`Mode::Pass`].
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("the proxy can listen");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            mode: watch::channel(Mode::Pass).0,
            accepted: AtomicUsize::new(0),
            live: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let accepting = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepting.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(accepting.clone(), client));
            }
        });
        FaultProxy { addr, shared, accept }
    }

    /// Where clients connect instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the mode now; [`Mode::Reset`] resets every open connection before it returns.
    pub fn set(&self, mode: Mode) {
        self.shared.mode.send_replace(mode);
        if mode == Mode::Reset {
            for reset in self.shared.live.lock().unwrap().values() {
                reset.notify_one();
            }
        }
    }

    /// Connections accepted so far, whatever became of them.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now (accepted and not yet closed or reset).
    pub fn open_connections(&self) -> usize {
        self.shared.live.lock().unwrap().len()
    }
}

impl Drop for FaultProxy {
    /// Stops accepting and resets what is open, so a test's clients see the proxy go away.
    fn drop(&mut self) {
        self.accept.abort();
        for reset in self.shared.live.lock().unwrap().values() {
            reset.notify_one();
        }
    }
}

/// Makes the next close of `stream` an RST rather than a FIN.
fn linger_zero(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Waits while the mode is [`Mode::Blackhole`]; returns the mode that ended the wait.
async fn past_blackhole(mode: &mut watch::Receiver<Mode>) -> Mode {
    loop {
        let now = *mode.borrow_and_update();
        if now != Mode::Blackhole {
            return now;
        }
        if mode.changed().await.is_err() {
            return Mode::Reset;
        }
    }
}

async fn serve(shared: Arc<Shared>, client: TcpStream) {
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let reset = Arc::new(Notify::new());
    shared.live.lock().unwrap().insert(id, reset.clone());
    let _ = client.set_nodelay(true);
    let mut mode = shared.mode.subscribe();
    // A partitioned network would not let the connection reach the upstream either.
    let connected = tokio::select! {
        now = past_blackhole(&mut mode) => match now {
            Mode::Reset => None,
            _ => TcpStream::connect(shared.upstream).await.ok(),
        },
        _ = reset.notified() => None,
    };
    match connected {
        Some(upstream) => {
            let _ = upstream.set_nodelay(true);
            forward(&shared, client, upstream, &reset).await;
        }
        None => linger_zero(&client),
    }
    shared.live.lock().unwrap().remove(&id);
}

/// Pumps both ways until both directions end, the byte budget of [`Mode::CloseAfter`] is spent, or a
/// reset is asked for; then closes both sockets.
async fn forward(shared: &Shared, client: TcpStream, upstream: TcpStream, reset: &Notify) {
    let forwarded = AtomicU64::new(0);
    let spent = Notify::new();
    let reset_now = tokio::select! {
        _ = async {
            tokio::join!(
                pump(shared, &client, &upstream, &forwarded, &spent),
                pump(shared, &upstream, &client, &forwarded, &spent),
            )
        } => false,
        _ = spent.notified() => false,
        _ = reset.notified() => true,
    };
    if reset_now {
        linger_zero(&client);
        linger_zero(&upstream);
    }
    // Dropping the sockets closes them: a FIN, or an RST after linger_zero.
}

/// One direction: read a chunk, apply the mode to it, write it on. Both directions share the sockets,
/// so reads and writes go through `&TcpStream` (readiness, then `try_read` or `try_write`).
async fn pump(shared: &Shared, from: &TcpStream, to: &TcpStream, forwarded: &AtomicU64, spent: &Notify) {
    let mut mode = shared.mode.subscribe();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match read(from, &mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = &buffer[..n];
        match past_blackhole(&mut mode).await {
            Mode::Pass | Mode::Blackhole => {}
            Mode::Delay(delay) => tokio::time::sleep(delay).await,
            // The connection is being reset; nothing more goes through.
            Mode::Reset => return,
            Mode::CloseAfter(limit) => {
                let allowed = reserve(forwarded, limit, chunk.len());
                if allowed < chunk.len() {
                    chunk = &chunk[..allowed];
                    let _ = write_all(to, chunk).await;
                    spent.notify_one();
                    return;
                }
                if write_all(to, chunk).await.is_err() {
                    break;
                }
                continue;
            }
        }
        if write_all(to, chunk).await.is_err() {
            break;
        }
        forwarded.fetch_add(chunk.len() as u64, Ordering::SeqCst);
    }
    // The end of the stream is forwarded like its bytes: not into a partition.
    if past_blackhole(&mut mode).await != Mode::Reset {
        let _ = socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
    }
}

/// Takes up to `wanted` bytes from what is left of `limit`, atomically (both directions draw on it).
fn reserve(forwarded: &AtomicU64, limit: u64, wanted: usize) -> usize {
    let mut taken = 0;
    let _ = forwarded.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |before| {
        taken = limit.saturating_sub(before).min(wanted as u64) as usize;
        Some(before + taken as u64)
    });
    taken
}

async fn read(from: &TcpStream, buffer: &mut [u8]) -> std::io::Result<usize> {
    loop {
        from.readable().await?;
        match from.try_read(buffer) {
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

async fn write_all(to: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        to.writable().await?;
        match to.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
