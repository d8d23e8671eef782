//! Raw clients for requests a normal client would never send: HTTP/1.1 bytes written as given
//! over TLS, and HTTP/2 streams driven frame by frame through the h2 crate.

use bytes::Bytes;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Generous: only a server that never answers hits it.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A TLS connection trusting the test certificate, offering `alpn` (`b"h2"` or `b"http/1.1"`).
pub async fn tls(addr: SocketAddr, alpn: &[u8]) -> TlsStream<TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let cert = rustls_pki_types::CertificateDer::from_pem_file(super::certs_dir().join("cert.pem")).unwrap();
    roots.add(cert).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.expect("the TLS handshake completes")
}

/// An HTTP/1.1 answer: status, JSON body (Null if not JSON), and the raw head.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub head: String,
}

/// Reads one answer: its head, then `content-length` bytes of body.
pub async fn read_answer(stream: &mut (impl AsyncReadExt + Unpin)) -> Answer {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk))
            .await
            .expect("an answer within the deadline")
            .expect("the answer can be read");
        assert!(
            n > 0,
            "connection closed before an answer; got {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed inside the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
    Answer { status, body, head }
}

/// Sends `request` as is on a new HTTP/1.1 connection and reads the answer.
pub async fn h1(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = tls(addr, b"http/1.1").await;
    stream.write_all(request).await.unwrap();
    stream.flush().await.unwrap();
    read_answer(&mut stream).await
}

/// Like [`h1`], but reads while writing, for a request the server answers before reading it all
/// (the write may then fail: only the answer matters).
pub async fn h1_pushing(addr: SocketAddr, request: Vec<u8>) -> Answer {
    let (mut reader, mut writer) = tokio::io::split(tls(addr, b"http/1.1").await);
    let pushing = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        let _ = writer.flush().await;
        writer
    });
    let answer = read_answer(&mut reader).await;
    pushing.abort();
    answer
}

/// True once the server closed the connection (EOF or reset), reading within the deadline.
pub async fn closed(stream: &mut (impl AsyncReadExt + Unpin)) -> bool {
    let mut sink = [0u8; 4096];
    loop {
        match tokio::time::timeout(DEADLINE, stream.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// An HTTP/2 client on a new connection; the connection's task ends when the server closes it.
pub async fn h2(addr: SocketAddr) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>) {
    let stream = tls(addr, b"h2").await;
    let (sender, connection) = h2::client::handshake(stream).await.expect("an HTTP/2 handshake");
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, driver)
}

/// The status and JSON body of an HTTP/2 answer.
pub async fn h2_answer(response: h2::client::ResponseFuture) -> (u16, Value) {
    let response = tokio::time::timeout(DEADLINE, response)
        .await
        .expect("an answer within the deadline")
        .expect("an answer, not a reset");
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = tokio::time::timeout(DEADLINE, body.data()).await.unwrap() {
        let chunk = chunk.expect("the body arrives whole");
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Asserts the contract's error shape: `{"code": status, "message": non-empty}`.
pub fn assert_json_error(what: &str, status: u16, body: &Value) {
    assert_eq!(body["code"], status, "{what}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}
