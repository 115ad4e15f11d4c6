//! Loopback networking helpers shared by the harnesses.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1, found by binding port 0 and releasing it.
///
/// Another process could take the port between this call and its use; the harnesses retry a
/// failed start with a new port where that matters.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until something accepts TCP connections on `addr`, or fails after `timeout`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("nothing accepted connections on {addr} within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
