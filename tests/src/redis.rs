//! A real `redis-server` for tests: started on 127.0.0.1 on a free port with its own temporary
//! directory, and stopped (and its directory removed) when the handle is dropped.
//!
//! Besides start and stop, the harness can pause the server (`SIGSTOP`: connections stay open,
//! nothing is answered, which is how a ghost write is made), kill it and restart it on the same
//! port, and read keys back for assertions over a plain synchronous connection.
//!
//! A server counts as started only when the process the harness spawned answers on the port
//! (`INFO server` names its PID), so another process that took the port cannot pass for it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tempfile::TempDir;

use crate::net::free_port;

/// How long a start or restart may take before the harness gives up.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds every command of the assertion connection.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds each readiness probe of a start or restart.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How the server persists data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing survives a restart (`--save "" --appendonly no`).
    #[default]
    None,
    /// Append-only file, fsynced on every write, so data survives [`RedisServer::restart`].
    AppendOnly,
}

/// A running `redis-server`.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    /// The cluster bus port of a cluster node (`--cluster-port`); `None` outside cluster mode.
    cluster_port: Option<u16>,
    persistence: Persistence,
    paused: bool,
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server without persistence.
    pub fn start() -> anyhow::Result<RedisServer> {
        RedisServer::start_with(Persistence::None)
    }

    /// Starts a server with the given persistence. Retries with a new port if the one picked
    /// was taken in the meantime.
    pub fn start_with(persistence: Persistence) -> anyhow::Result<RedisServer> {
        RedisServer::start_on_free_ports(persistence, false)
    }

    /// Starts a server in cluster mode, not yet joined to any cluster, without persistence.
    /// Its cluster bus gets a free port of its own (`--cluster-port`, never the same as the
    /// client port: [`free_port`] hands out each port once) rather than the default, port +
    /// 10000, which nothing checked was free (and which does not exist above port 55535).
    pub fn start_cluster_node() -> anyhow::Result<RedisServer> {
        RedisServer::start_on_free_ports(Persistence::None, true)
    }

    /// Retries with new ports if the ones picked were taken in the meantime.
    fn start_on_free_ports(persistence: Persistence, cluster: bool) -> anyhow::Result<RedisServer> {
        let mut dir = tempfile::Builder::new()
            .prefix("hookguard-redis-")
            .tempdir()?;
        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port()?;
            let cluster_port = if cluster { Some(free_port()?) } else { None };
            let mut server = RedisServer {
                child: None,
                port,
                cluster_port,
                persistence,
                paused: false,
                dir,
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(error) => {
                    last_error = Some(error);
                    dir = std::mem::replace(&mut server.dir, tempfile::tempdir()?);
                    // A cluster node that got as far as writing its config must not come back
                    // with the old ports' identity.
                    let _ = std::fs::remove_file(dir.path().join(CLUSTER_CONFIG_FILE));
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The port it listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The process ID, while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Freezes the server with `SIGSTOP`: connections stay open and requests queue unanswered.
    pub fn pause(&mut self) -> anyhow::Result<()> {
        self.signal("STOP")?;
        self.paused = true;
        Ok(())
    }

    /// Thaws a paused server with `SIGCONT`; it then processes everything that queued up.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.signal("CONT")?;
        self.paused = false;
        Ok(())
    }

    /// Kills the server (`SIGKILL`) and waits for it to exit.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("killing redis-server")?;
            child.wait().context("waiting for redis-server to exit")?;
        }
        self.paused = false;
        Ok(())
    }

    /// Kills the server if it runs and starts it again on the same port and directory (with
    /// AOF, the data survives only there). Nothing holds the port between the kill and the
    /// new start: if another process took it meanwhile, this fails and says so.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.spawn().with_context(|| {
            format!(
                "restarting redis-server on its old port {} failed; another process may have \
                 taken the port after the kill",
                self.port
            )
        })
    }

    /// `KEYS <pattern>`, sorted.
    pub fn keys(&self, pattern: &str) -> anyhow::Result<Vec<String>> {
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query(&mut self.connect()?)
            .context("KEYS")?;
        keys.sort();
        Ok(keys)
    }

    /// `GET <key>`.
    pub fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        redis::cmd("GET")
            .arg(key)
            .query(&mut self.connect()?)
            .context("GET")
    }

    /// `PTTL <key>`: milliseconds left, -1 without a TTL, -2 when the key does not exist.
    pub fn pttl(&self, key: &str) -> anyhow::Result<i64> {
        redis::cmd("PTTL")
            .arg(key)
            .query(&mut self.connect()?)
            .context("PTTL")
    }

    /// A fresh synchronous connection with bounded commands, for assertions.
    pub fn connect(&self) -> anyhow::Result<redis::Connection> {
        self.connect_within(COMMAND_TIMEOUT)
    }

    fn connect_within(&self, timeout: Duration) -> anyhow::Result<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        let conn = client
            .get_connection_with_timeout(timeout)
            .with_context(|| format!("connecting to redis on port {}", self.port))?;
        conn.set_read_timeout(Some(timeout))?;
        conn.set_write_timeout(Some(timeout))?;
        Ok(conn)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_else(|error| format!("(no log: {error})"))
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let appendonly = match self.persistence {
            Persistence::None => "no",
            Persistence::AppendOnly => "yes",
        };
        let mut command = Command::new("redis-server");
        command.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()]);
        if let Some(cluster_port) = self.cluster_port {
            command.args([
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &cluster_port.to_string(),
                "--cluster-config-file",
                CLUSTER_CONFIG_FILE,
            ]);
        }
        let child = command
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args([
                "--save",
                "",
                "--appendonly",
                appendonly,
                "--appendfsync",
                "always",
            ])
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
                "redis-server not found on PATH: install it with `apt-get install redis-server` \
                 (`make test` installs it)"
            ),
            Err(error) => return Err(error).context("starting redis-server"),
        };
        self.child = Some(child);
        if let Err(error) = self.wait_until_ready() {
            let stderr = self.stop_for_error();
            bail!(
                "redis-server on port {} did not become ready: {error:#}\n--- log ---\n{}{stderr}",
                self.port,
                self.log()
            );
        }
        Ok(())
    }

    /// Waits until the spawned process itself answers on the port: PONG, and `INFO server`
    /// must name its PID, so a process that took the port cannot pass for it.
    fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let pid = self.pid().context("redis-server was not spawned")?;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("redis-server exited with {status}");
            }
            // Short probes, so a server that exits (say, its port was taken) is noticed soon.
            // PING first: it fails while the server is still loading its data, INFO does not.
            let answered = self.connect_within(PROBE_TIMEOUT).and_then(|mut conn| {
                redis::cmd("PING").query::<String>(&mut conn)?;
                let info: String = redis::cmd("INFO").arg("server").query(&mut conn)?;
                Ok(process_id(&info))
            });
            match answered {
                Ok(Some(answering)) if answering == pid => return Ok(()),
                Ok(answering) => bail!(
                    "port {} is served by another process ({}), not by redis-server {pid}",
                    self.port,
                    answering.map_or_else(
                        || "no process_id in INFO".to_owned(),
                        |p| format!("PID {p}")
                    )
                ),
                Err(error) if Instant::now() >= deadline => {
                    return Err(error.context(format!("no answer within {START_TIMEOUT:?}")));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Kills a server that failed to start and returns its stderr.
    fn stop_for_error(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return String::new();
        };
        let _ = child.kill();
        match child.wait_with_output() {
            Ok(output) if !output.stderr.is_empty() => format!(
                "--- stderr ---\n{}",
                String::from_utf8_lossy(&output.stderr)
            ),
            _ => String::new(),
        }
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("redis-server is not running")?;
        // `kill(1)` rather than libc: unsafe code is forbidden in this workspace.
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed with {status}");
        }
        Ok(())
    }

    /// The server's working directory (holds its log and, with AOF, its data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The cluster config file of a cluster node, in its directory.
const CLUSTER_CONFIG_FILE: &str = "nodes.conf";

/// `process_id` from the text of `INFO server`.
fn process_id(info: &str) -> Option<u32> {
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.paused {
            // A stopped process still dies from SIGKILL, but resuming first keeps the
            // sequence ordinary for anything else watching it.
            let _ = self.resume();
        }
        let _ = self.kill();
    }
}
