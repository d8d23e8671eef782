//! A fake Service A over real HTTPS (the test certificate): answers each request with the raw
//! bytes a scenario chooses, over HTTP/1.x, or with hyper over HTTP/2, and counts what it sent.

use super::certs_dir;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub body: String,
    pub at: std::time::Instant,
}

/// What the fake does with a request.
pub enum Answer {
    /// These bytes, then the connection is closed.
    Close(Vec<u8>),
    /// These bytes as the head, then `total` bytes of body in 64 KiB writes, then close.
    Flood(Vec<u8>, u64),
    /// These bytes, then nothing: the connection stays open until the client leaves.
    Stall(Vec<u8>),
    /// These bytes, then a TCP reset.
    Reset(Vec<u8>),
}

pub type Script = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

#[derive(Default)]
pub struct Counters {
    pub connections: AtomicUsize,
    pub requests: Mutex<Vec<Seen>>,
    /// Body bytes handed to the connection (HTTP/1) or produced for the stream (HTTP/2).
    pub body_written: AtomicU64,
    /// Connections (or streams) whose answer has ended, whichever way.
    pub finished: AtomicUsize,
}

pub struct FakeA {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
}

impl FakeA {
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.counters.requests.lock().unwrap().clone()
    }
}

/// An HTTP head with a Content-Length for `body`, and `Connection: close`.
pub fn answer(status_line: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{status_line}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for header in headers {
        out.push_str(header);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

pub const SUCCESS: &[u8] = br#"{"code":200,"message":"success"}"#;

fn acceptor(alpn: &[u8]) -> tokio_rustls::TlsAcceptor {
    cpe_config::tls::install_crypto_provider();
    let mut config = (*cpe_config::tls::server_config(&certs_dir()).unwrap()).clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// HTTP/1.x: every connection carries one request, answered as `script` says.
pub async fn start(script: Script) -> FakeA {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counters = Arc::new(Counters::default());
    let acceptor = acceptor(b"http/1.1");
    let shared = counters.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            shared.connections.fetch_add(1, Ordering::SeqCst);
            let (acceptor, script, counters) = (acceptor.clone(), script.clone(), shared.clone());
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Some(seen) = read_request(&mut tls).await {
                    counters.requests.lock().unwrap().push(seen.clone());
                    serve(&mut tls, script(&seen), &counters).await;
                }
                counters.finished.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    FakeA { addr, counters }
}

async fn serve(tls: &mut tokio_rustls::server::TlsStream<tokio::net::TcpStream>, answer: Answer, counters: &Counters) {
    match answer {
        Answer::Close(bytes) => {
            let _ = tls.write_all(&bytes).await;
            let _ = tls.shutdown().await;
        }
        Answer::Flood(head, total) => {
            if tls.write_all(&head).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0u64;
            while sent < total {
                let n = chunk.len().min((total - sent) as usize);
                if tls.write_all(&chunk[..n]).await.is_err() || tls.flush().await.is_err() {
                    return;
                }
                sent += n as u64;
                counters.body_written.fetch_add(n as u64, Ordering::SeqCst);
            }
            let _ = tls.shutdown().await;
        }
        Answer::Stall(bytes) => {
            let _ = tls.write_all(&bytes).await;
            let _ = tls.flush().await;
            // Until the client gives up and closes.
            let mut sink = [0u8; 1024];
            while matches!(tls.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        Answer::Reset(bytes) => {
            let _ = tls.write_all(&bytes).await;
            let _ = tls.flush().await;
            #[allow(deprecated)]
            let _ = tls.get_ref().0.set_linger(Some(std::time::Duration::ZERO));
        }
    }
}

/// Reads one request head and its Content-Length body.
async fn read_request<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<Seen> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        path,
        body: String::from_utf8_lossy(&buffer[head_end..]).to_string(),
        at: std::time::Instant::now(),
    })
}

/// What the HTTP/2 fake answers: a status, then body chunks; `fail_after` ends the stream with
/// an error (RST_STREAM) after that many body bytes.
#[derive(Clone)]
pub struct H2Answer {
    pub status: u16,
    pub chunk: Bytes,
    pub total: u64,
    pub fail_after: Option<u64>,
}

/// HTTP/2 only (ALPN h2), served by hyper.
pub async fn start_h2(answer: H2Answer) -> FakeA {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counters = Arc::new(Counters::default());
    let acceptor = acceptor(b"h2");
    let shared = counters.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            shared.connections.fetch_add(1, Ordering::SeqCst);
            let (acceptor, answer, counters) = (acceptor.clone(), answer.clone(), shared.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let (answer, counters) = (answer.clone(), counters.clone());
                    async move {
                        counters.requests.lock().unwrap().push(Seen {
                            path: request.uri().path().to_owned(),
                            body: String::new(),
                            at: std::time::Instant::now(),
                        });
                        let body = FakeBody {
                            sent: 0,
                            status: answer.status,
                            answer,
                            counters,
                        };
                        let response = hyper::Response::builder().status(body.status).body(body).unwrap();
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(tls);
                let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    FakeA { addr, counters }
}

/// The HTTP/2 answer's body: chunks until `total`, or an error at `fail_after`; counts what it
/// produced, and counts the answer finished when hyper drops it (ended or reset).
struct FakeBody {
    answer: H2Answer,
    status: u16,
    sent: u64,
    counters: Arc<Counters>,
}

impl hyper::body::Body for FakeBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        if self.answer.fail_after.is_some_and(|limit| self.sent >= limit) {
            return Poll::Ready(Some(Err("cut off on purpose".into())));
        }
        if self.sent >= self.answer.total {
            return Poll::Ready(None);
        }
        let n = (self.answer.chunk.len() as u64).min(self.answer.total - self.sent);
        self.sent += n;
        self.counters.body_written.fetch_add(n, Ordering::SeqCst);
        Poll::Ready(Some(Ok(hyper::body::Frame::data(
            self.answer.chunk.slice(..n as usize),
        ))))
    }
}

impl Drop for FakeBody {
    fn drop(&mut self) {
        self.counters.finished.fetch_add(1, Ordering::SeqCst);
    }
}
