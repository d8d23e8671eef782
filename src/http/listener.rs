//! The listening socket, bound with a backlog sized for bursts of new connections.

use std::net::SocketAddr;

/// Used when `/proc/sys/net/core/somaxconn` cannot be read (it is 4096 on current Linux).
const FALLBACK_BACKLOG: i32 = 4096;

/// Binds `addr` and listens with the system's largest backlog.
///
/// std's `TcpListener::bind` listens with a backlog of 128. When hundreds of clients connect at
/// once (a campaign tool, a worker fleet reconnecting after a restart), the accept queue fills
/// before the accept loop drains it, the kernel drops the extra SYNs, and those clients retry only
/// after 1 s (TCP's initial retransmission timeout): a burst of 400 took twice as long as it
/// should have. The kernel caps any backlog at `net.core.somaxconn`, so asking for exactly that
/// value gets the largest queue the administrator allows, and raising the sysctl raises it.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std does: a restarted process can bind again while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog())?;
    Ok(socket.into())
}

fn backlog() -> i32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(FALLBACK_BACKLOG)
}

#[cfg(test)]
mod tests;
