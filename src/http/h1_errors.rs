//! HTTP/1.1 errors that hyper answers by itself, before any service runs (a request line or header
//! it cannot parse: 400; a target over 65,534 bytes: 414; over 100 headers or a head over its
//! 400 KiB buffer: 431). Hyper offers no hook for them and writes them with an empty body, so this
//! connection wrapper replaces such an answer on its way out with the same status and a
//! `{"code":N,"message":...}` body, then hyper closes the connection as it would have.

use hyper::rt::{Read, ReadBufCursor, Write};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// Wraps the I/O of one HTTP/1.1 connection.
pub struct JsonErrors<T> {
    inner: T,
    /// A replacement answer still being written.
    pending: Vec<u8>,
}

impl<T> JsonErrors<T> {
    pub fn new(inner: T) -> JsonErrors<T> {
        JsonErrors {
            inner,
            pending: Vec::new(),
        }
    }
}

impl<T: Write + Unpin> JsonErrors<T> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..written);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: Read + Unpin> Read for JsonErrors<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for JsonErrors<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(replacement) = replace_bodyless_error(buf) {
            self.pending = replacement;
            // Reported written in full: the replacement goes out before any later write or flush.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    /// Not vectored: hyper then hands over each answer head as one buffer, which is what lets
    /// [`replace_bodyless_error`] see a whole head at once.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// A whole answer head with a 4xx status and `content-length: 0` can only be hyper's own: every
/// answer of the services carries a JSON body (see `edge::with_json_body`).
fn replace_bodyless_error(buf: &[u8]) -> Option<Vec<u8>> {
    let head = std::str::from_utf8(buf).ok()?;
    let rest = head
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| head.strip_prefix("HTTP/1.0 "))?;
    if !head.ends_with("\r\n\r\n") || head.matches("\r\n\r\n").count() != 1 {
        return None;
    }
    let status: u16 = rest.get(..3)?.parse().ok()?;
    if !(400..500).contains(&status) {
        return None;
    }
    let bodyless = head
        .split("\r\n")
        .any(|line| line.eq_ignore_ascii_case("content-length: 0"));
    if !bodyless {
        return None;
    }
    let message = match status {
        400 => "Malformed request: the request line or a header could not be parsed (HTTP/1.1 expected)",
        414 => "Request target is longer than 65534 bytes",
        431 => "Request header is too large: at most 100 header fields and about 400 KiB in all",
        _ => "Request refused",
    };
    let body = serde_json::json!({"code": status, "message": message}).to_string();
    let reason = rest.get(3..)?.split("\r\n").next()?.trim();
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nx-content-type-options: nosniff\r\ncache-control: no-store\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

#[cfg(test)]
mod tests;
