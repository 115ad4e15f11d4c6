//! A real `redis-server` for tests: started on 127.0.0.1 on a free port with its own temporary
//! directory, and stopped (and its directory removed) when the handle is dropped.
//!
//! Two servers can run ([`ServerKind`]): Debian's `redis-server` from `PATH` (bookworm: 7.0, the
//! default), or Valkey [`VALKEY_VERSION`] (Redis 7.2 compatible, so it has `WAITAOF`), which
//! `make test-deps` (`tests/valkey-deps.sh`) unpacks from bookworm-backports into
//! `${HOOKGUARD_CACHE:-$HOME/.cache/hookguard}/valkey-<version>/bin/`. Either runs with the
//! [`Persistence`] a test needs:
//!
//! ```no_run
//! use hookguard_tests::redis::{Persistence, RedisServer};
//! # fn main() -> anyhow::Result<()> {
//! let redis = RedisServer::start()?; // redis-server, no persistence
//! let valkey = RedisServer::start_valkey(Persistence::AppendOnlyEverySec)?;
//! let node = RedisServer::builder().valkey().cluster_node().start()?;
//! # Ok(())
//! # }
//! ```
//!
//! Besides start and stop, the harness can pause the server (`SIGSTOP`: connections stay open,
//! nothing is answered, which is how a ghost write is made), kill it and restart it on the same
//! port, and read keys back for assertions over a plain synchronous connection.
//!
//! A server counts as started only when the process the harness spawned answers on the port
//! (`INFO server` names its PID), so another process that took the port cannot pass for it.

use std::collections::BTreeMap;
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

/// The Valkey release `tests/valkey-deps.sh` installs (keep in step with its
/// `VALKEY_DEB_VERSION`): the folder name in the cache, and what [`RedisServer::version`] reports.
pub const VALKEY_VERSION: &str = "8.0.1";

/// How the server persists data. RDB snapshots are always off (`--save ""`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing survives a restart (`--appendonly no`).
    #[default]
    None,
    /// Append-only file, fsynced on every write (`--appendfsync always`), so data survives
    /// [`RedisServer::restart`] and a power cut alike.
    AppendOnly,
    /// Append-only file fsynced once a second (`--appendfsync everysec`, Redis' default): a
    /// write normally reaches the file before its reply (and then survives
    /// [`RedisServer::kill`]), but the disk only with the next fsync, up to about a second
    /// later. `WAITAOF 1 0 <ms>` waits for that fsync; it needs [`ServerKind::Valkey`].
    AppendOnlyEverySec,
}

impl Persistence {
    /// `--appendonly` and `--appendfsync`.
    fn args(self) -> [&'static str; 4] {
        let (appendonly, appendfsync) = match self {
            Persistence::None => ("no", "always"),
            Persistence::AppendOnly => ("yes", "always"),
            Persistence::AppendOnlyEverySec => ("yes", "everysec"),
        };
        ["--appendonly", appendonly, "--appendfsync", appendfsync]
    }
}

/// Which server program runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ServerKind {
    /// `redis-server` from `PATH`: Debian bookworm's 7.0, which has no `WAITAOF`.
    #[default]
    Redis,
    /// `valkey-server` [`VALKEY_VERSION`] from the cache ([`valkey_server`]): speaks Redis 7.2
    /// (`INFO` says `redis_version:7.2.4`) and has `WAITAOF`.
    Valkey,
}

impl ServerKind {
    /// The program's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Redis => "redis-server",
            ServerKind::Valkey => "valkey-server",
        }
    }

    /// What to run: a name looked up on `PATH`, or the path of the cached Valkey.
    fn program(self) -> anyhow::Result<PathBuf> {
        match self {
            ServerKind::Redis => Ok(PathBuf::from("redis-server")),
            ServerKind::Valkey => valkey_server(),
        }
    }
}

/// `<cache>/valkey-<VALKEY_VERSION>/bin/valkey-server`, where `make test-deps` puts it; an error
/// naming `make test-deps` when it is not there.
pub fn valkey_server() -> anyhow::Result<PathBuf> {
    valkey_server_in(&crate::image::cache_dir()?)
}

fn valkey_server_in(cache: &Path) -> anyhow::Result<PathBuf> {
    let server = cache.join(format!("valkey-{VALKEY_VERSION}/bin/valkey-server"));
    if !server.is_file() {
        bail!(
            "valkey-server {VALKEY_VERSION} is missing from {}: run `make test-deps` \
             (tests/valkey-deps.sh unpacks it there from bookworm-backports)",
            server.display()
        );
    }
    Ok(server)
}

/// What to start: [`RedisServer::builder`], then [`start`](RedisServerBuilder::start).
#[derive(Debug, Clone, Copy, Default)]
#[must_use]
pub struct RedisServerBuilder {
    kind: ServerKind,
    persistence: Persistence,
    cluster: bool,
}

impl RedisServerBuilder {
    /// Which server runs (default [`ServerKind::Redis`]).
    pub fn kind(mut self, kind: ServerKind) -> Self {
        self.kind = kind;
        self
    }

    /// Shorthand for `.kind(ServerKind::Valkey)`.
    pub fn valkey(self) -> Self {
        self.kind(ServerKind::Valkey)
    }

    /// How it persists data (default [`Persistence::None`]).
    pub fn persistence(mut self, persistence: Persistence) -> Self {
        self.persistence = persistence;
        self
    }

    /// A cluster node, not yet joined to any cluster, as [`RedisServer::start_cluster_node`].
    pub fn cluster_node(mut self) -> Self {
        self.cluster = true;
        self
    }

    /// Starts it on a free port, retrying with a new port if the one picked was taken in the
    /// meantime.
    pub fn start(self) -> anyhow::Result<RedisServer> {
        RedisServer::start_on_free_ports(self)
    }
}

/// A running `redis-server` (or `valkey-server`, see [`ServerKind`]).
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    kind: ServerKind,
    /// What is spawned, resolved once: a restart runs the same program.
    program: PathBuf,
    port: u16,
    /// The cluster bus port of a cluster node (`--cluster-port`); `None` outside cluster mode.
    cluster_port: Option<u16>,
    persistence: Persistence,
    paused: bool,
    dir: TempDir,
}

impl RedisServer {
    /// What to start, to choose the kind, persistence and cluster mode; the shorthands below
    /// cover the usual cases.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// Starts a `redis-server` without persistence.
    pub fn start() -> anyhow::Result<RedisServer> {
        RedisServer::start_with(Persistence::None)
    }

    /// Starts a `redis-server` with the given persistence. Retries with a new port if the one
    /// picked was taken in the meantime.
    pub fn start_with(persistence: Persistence) -> anyhow::Result<RedisServer> {
        RedisServer::builder().persistence(persistence).start()
    }

    /// Starts Valkey ([`ServerKind::Valkey`], from `make test-deps`) with the given persistence.
    pub fn start_valkey(persistence: Persistence) -> anyhow::Result<RedisServer> {
        RedisServer::builder()
            .valkey()
            .persistence(persistence)
            .start()
    }

    /// Starts a server in cluster mode, not yet joined to any cluster, without persistence.
    /// Its cluster bus gets a free port of its own (`--cluster-port`, never the same as the
    /// client port: [`free_port`] hands out each port once) rather than the default, port +
    /// 10000, which nothing checked was free (and which does not exist above port 55535).
    pub fn start_cluster_node() -> anyhow::Result<RedisServer> {
        RedisServer::builder().cluster_node().start()
    }

    /// Retries with new ports if the ones picked were taken in the meantime.
    fn start_on_free_ports(spec: RedisServerBuilder) -> anyhow::Result<RedisServer> {
        let program = spec.kind.program()?;
        let mut dir = tempfile::Builder::new()
            .prefix(match spec.kind {
                ServerKind::Redis => "hookguard-redis-",
                ServerKind::Valkey => "hookguard-valkey-",
            })
            .tempdir()?;
        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port()?;
            let cluster_port = if spec.cluster {
                Some(free_port()?)
            } else {
                None
            };
            let mut server = RedisServer {
                child: None,
                kind: spec.kind,
                program: program.clone(),
                port,
                cluster_port,
                persistence: spec.persistence,
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
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("{} did not start", spec.kind.name())))
    }

    /// Which server runs (kept across restarts).
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// How it persists data (kept across restarts).
    pub fn persistence(&self) -> Persistence {
        self.persistence
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
            let name = self.kind.name();
            child.kill().with_context(|| format!("killing {name}"))?;
            child
                .wait()
                .with_context(|| format!("waiting for {name} to exit"))?;
        }
        self.paused = false;
        Ok(())
    }

    /// Kills the server (`SIGKILL`) if it runs and starts the same program again with the same
    /// persistence on the same port and directory (with AOF, the data survives only there; the
    /// start loads it before it answers). Nothing holds the port between the kill and the new
    /// start: if another process took it meanwhile, this fails and says so.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.spawn().with_context(|| {
            format!(
                "restarting {} on its old port {} failed; another process may have taken the \
                 port after the kill",
                self.kind.name(),
                self.port
            )
        })
    }

    /// `INFO server` as fields (`redis_version`, `process_id`, …; Valkey adds `valkey_version`).
    pub fn info_server(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut self.connect()?)
            .context("INFO server")?;
        Ok(info_fields(&info))
    }

    /// The server's own release: `valkey_version` for Valkey (whose `redis_version` is the
    /// Redis release it is compatible with), `redis_version` otherwise.
    pub fn version(&self) -> anyhow::Result<String> {
        let mut info = self.info_server()?;
        info.remove("valkey_version")
            .or_else(|| info.remove("redis_version"))
            .context("INFO server names no version")
    }

    /// `KEYS <pattern>`, sorted, without the sidecars' delivery log streams
    /// (`hg:{<endpoint id>}:log`): they record what was answered, they hold no dedup or queue
    /// state, and the assertions on keys are about that state. [`RedisServer::all_keys`]
    /// lists them too.
    pub fn keys(&self, pattern: &str) -> anyhow::Result<Vec<String>> {
        let mut keys = self.all_keys(pattern)?;
        keys.retain(|key| !key.ends_with("}:log"));
        Ok(keys)
    }

    /// `KEYS <pattern>`, sorted, every key.
    pub fn all_keys(&self, pattern: &str) -> anyhow::Result<Vec<String>> {
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
        let name = self.kind.name();
        let mut command = Command::new(&self.program);
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
            .args(["--save", ""])
            .args(self.persistence.args())
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => match self.kind {
                ServerKind::Redis => bail!(
                    "redis-server not found on PATH: install it with `apt-get install \
                     redis-server` (`make test-deps` installs it)"
                ),
                ServerKind::Valkey => bail!(
                    "{} not found: run `make test-deps` to put Valkey there",
                    self.program.display()
                ),
            },
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("starting {name} ({})", self.program.display()));
            }
        };
        self.child = Some(child);
        if let Err(error) = self.wait_until_ready() {
            let stderr = self.stop_for_error();
            bail!(
                "{name} on port {} did not become ready: {error:#}\n--- log ---\n{}{stderr}",
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
        let name = self.kind.name();
        let pid = self
            .pid()
            .with_context(|| format!("{name} was not spawned"))?;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("{name} exited with {status}");
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
                    "port {} is served by another process ({}), not by {name} {pid}",
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
        let pid = self
            .pid()
            .with_context(|| format!("{} is not running", self.kind.name()))?;
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

/// The `field:value` lines of an `INFO` answer (section headers and blank lines skipped).
fn info_fields(info: &str) -> BTreeMap<String, String> {
    info.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(field, value)| (field.to_owned(), value.trim().to_owned()))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `WAITAOF <numlocal> 0 1000`: how many local fsyncs and replica acknowledgements came
    /// within a second.
    fn waitaof(server: &RedisServer, numlocal: u8) -> redis::RedisResult<Vec<i64>> {
        redis::cmd("WAITAOF")
            .arg(numlocal)
            .arg(0)
            .arg(1000)
            .query(&mut server.connect().unwrap())
    }

    /// `CONFIG GET appendonly appendfsync`, in that order.
    fn aof_config(server: &RedisServer) -> (String, String) {
        let config: BTreeMap<String, String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .arg("appendfsync")
            .query(&mut server.connect().unwrap())
            .unwrap();
        (config["appendonly"].clone(), config["appendfsync"].clone())
    }

    #[test]
    fn valkey_starts_from_the_cache_and_reports_its_own_version() {
        let server = RedisServer::start_valkey(Persistence::None).unwrap();
        assert_eq!(server.kind(), ServerKind::Valkey);
        assert_eq!(server.version().unwrap(), VALKEY_VERSION);
        let info = server.info_server().unwrap();
        assert_eq!(
            info.get("process_id"),
            Some(&server.pid().unwrap().to_string())
        );
        assert!(
            server
                .dir()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("hookguard-valkey-"),
            "{}",
            server.dir().display()
        );
    }

    #[test]
    fn the_default_server_is_debian_redis_server() {
        let server = RedisServer::start().unwrap();
        assert_eq!(server.kind(), ServerKind::Redis);
        assert!(!server.info_server().unwrap().contains_key("valkey_version"));
        assert!(server.version().unwrap().starts_with("7."));
    }

    #[test]
    fn each_persistence_sets_appendonly_and_appendfsync_on_both_kinds() {
        for kind in [ServerKind::Redis, ServerKind::Valkey] {
            for (persistence, expected) in [
                (Persistence::None, ("no", "always")),
                (Persistence::AppendOnly, ("yes", "always")),
                (Persistence::AppendOnlyEverySec, ("yes", "everysec")),
            ] {
                let server = RedisServer::builder()
                    .kind(kind)
                    .persistence(persistence)
                    .start()
                    .unwrap();
                let (appendonly, appendfsync) = aof_config(&server);
                assert_eq!(
                    (appendonly.as_str(), appendfsync.as_str()),
                    expected,
                    "{kind:?} {persistence:?}"
                );
            }
        }
    }

    #[test]
    fn waitaof_on_valkey_with_everysec_counts_the_local_fsync() {
        let server = RedisServer::start_valkey(Persistence::AppendOnlyEverySec).unwrap();
        redis::cmd("SET")
            .arg("k")
            .arg("v")
            .exec(&mut server.connect().unwrap())
            .unwrap();
        assert_eq!(waitaof(&server, 1).unwrap(), [1, 0]);
    }

    #[test]
    fn waitaof_on_valkey_without_aof_is_refused() {
        let server = RedisServer::start_valkey(Persistence::None).unwrap();
        let error = waitaof(&server, 1).unwrap_err();
        assert!(
            error.to_string().contains("appendonly is disabled"),
            "{error}"
        );
    }

    #[test]
    fn waitaof_is_an_unknown_command_on_debian_redis_server() {
        let server = RedisServer::start_with(Persistence::AppendOnlyEverySec).unwrap();
        let version = server.version().unwrap();
        let error = waitaof(&server, 1).expect_err(&format!(
            "redis-server {version} knows WAITAOF: queue tests may not need Valkey any more"
        ));
        assert!(
            error.to_string().contains("unknown command"),
            "redis-server {version}: {error}"
        );
    }

    #[test]
    fn valkey_everysec_data_acknowledged_by_waitaof_survives_sigkill_and_restart() {
        let mut server = RedisServer::start_valkey(Persistence::AppendOnlyEverySec).unwrap();
        let (port, old_pid) = (server.port(), server.pid().unwrap());
        let mut conn = server.connect().unwrap();
        redis::cmd("SET")
            .arg("kept")
            .arg("value")
            .exec(&mut conn)
            .unwrap();
        assert_eq!(waitaof(&server, 1).unwrap(), [1, 0]);

        server.kill().unwrap();
        assert_eq!(server.pid(), None);
        server.restart().unwrap();

        assert_eq!(server.port(), port);
        assert_ne!(server.pid(), Some(old_pid));
        assert_eq!(
            (server.kind(), server.persistence()),
            (ServerKind::Valkey, Persistence::AppendOnlyEverySec)
        );
        assert_eq!(server.version().unwrap(), VALKEY_VERSION);
        assert_eq!(aof_config(&server), ("yes".into(), "everysec".into()));
        assert_eq!(server.get("kept").unwrap().as_deref(), Some("value"));
    }

    #[test]
    fn a_valkey_cluster_node_starts_unjoined_on_its_own_bus_port() {
        let server = RedisServer::builder()
            .valkey()
            .cluster_node()
            .start()
            .unwrap();
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut server.connect().unwrap())
            .unwrap();
        assert!(info.contains("cluster_known_nodes:1"), "{info}");
        assert_eq!(server.kind(), ServerKind::Valkey);
    }

    #[test]
    fn a_missing_valkey_names_make_test_deps() {
        let empty = tempfile::tempdir().unwrap();
        let error = valkey_server_in(empty.path()).unwrap_err().to_string();
        assert!(error.contains("make test-deps"), "{error}");
        assert!(
            error.contains(&format!("valkey-{VALKEY_VERSION}/bin/valkey-server")),
            "{error}"
        );
    }

    #[test]
    fn info_fields_skip_headers_and_blank_lines() {
        let fields = info_fields("# Server\r\nredis_version:7.2.4\r\nvalkey_version:8.0.1\r\n\r\n");
        assert_eq!(fields.len(), 2);
        assert_eq!(fields["valkey_version"], "8.0.1");
    }
}
