//! Loopback networking helpers shared by the harnesses.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 for a server a test starts, never the same twice in one
/// process.
///
/// Chosen at random *below* the kernel's ephemeral range (`ip_local_port_range`): a port
/// found by binding port 0 comes from that range, where every outgoing connection of the
/// machine (kubectl, API clients, etcd's peers) also takes its local port, so the port could
/// be gone again before the server binds it. Below the range only another test's explicit
/// choice can take it; the harnesses retry a failed start with a new port where that matters.
pub fn free_port() -> anyhow::Result<u16> {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000_u16, ephemeral_low.max(10_001));
    let mut handed_out = HANDED_OUT
        .lock()
        .map_err(|_| anyhow::anyhow!("free_port: a previous caller panicked"))?;
    for _ in 0..1000 {
        let port = low + u16::try_from(random() % u64::from(high - low))?;
        if handed_out.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    anyhow::bail!("no free port on 127.0.0.1 between {low} and {high} after 1000 tries")
}

/// A random number from the standard library's per-process random hasher keys.
fn random() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
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
