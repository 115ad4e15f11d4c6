//! The Redis dedup store, shared by every replica of an endpoint.
//!
//! One multiplexed connection ([`ConnectionManager`]) pipelines the commands of concurrent
//! requests. Claim and release are Lua scripts over all keys of a delivery (sent as `KEYS[]`,
//! sharing one hash tag, so they are atomic and cluster-correct); commit is a script too, so
//! every call is one round trip. Scripts go by `EVALSHA`; they are loaded whenever the
//! connection comes up, and reloaded on demand if Redis lost them anyway.
//!
//! The connection is made in the background: a monitor task pings Redis until it answers, and
//! again whenever a command failed on the connection. While it is down, commands fail at once
//! with [`StoreError::Unavailable`] instead of each waiting for the deadline, so a Redis outage
//! costs requests a fast 503, not a slow one.
//!
//! Queue mode ([`crate::queue`]) runs its scripts over the same connection and installs a hook
//! ([`RedisStore::on_connect`]) that the monitor runs each time the connection comes up,
//! before commands flow: the probe of what the server promises about durability.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock, Weak};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use ::redis::{
    Client, ErrorKind, FromRedisValue, IntoConnectionInfo, RedisError, Script, ScriptInvocation,
    TlsCertificates,
};
use ::redis::{Cmd, ConnectionInfo, Pipeline, RedisFuture, Value};
use tokio::sync::Notify;

use super::{Claim, ClaimOutcome, DeliveryKeys, RedisOptions, StoreError, Token};

/// `KEYS`: the delivery's keys. `ARGV[1]`: `inflight:<token>`, `ARGV[2]`: lease in ms.
/// Returns 0 when claimed, 1 when some key is done, 2 when some key is held by another claim.
/// Any value other than `done` counts as held, so an unknown value never lets a copy through.
const CLAIM_LUA: &str = r"
local held = false
for i = 1, #KEYS do
  local value = redis.call('GET', KEYS[i])
  if value == 'done' then return 1 end
  if value then held = true end
end
if held then return 2 end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
end
return 0
";

/// `KEYS`: the delivery's keys. `ARGV[1]`: the window in ms. Unconditional: the app said 2xx.
const COMMIT_LUA: &str = r"
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], 'done', 'PX', ARGV[1])
end
return #KEYS
";

/// `KEYS`: the delivery's keys. `ARGV[1]`: `inflight:<token>`. Deletes only this claim's keys.
const RELEASE_LUA: &str = r"
local deleted = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    deleted = deleted + 1
  end
end
return deleted
";

/// Bounds one TCP connect + handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bounds one monitor ping; longer than any sane deadline so it does not misjudge a slow Redis.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a healthy connection is pinged when no command reported trouble.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// Reconnect back-off while Redis is down.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_millis(500);

/// Cheap to clone: the queue operations ([`crate::queue`]) share the store's connection.
#[derive(Clone)]
pub(crate) struct RedisStore {
    shared: Arc<Shared>,
    wake: Arc<Notify>,
}

/// Runs when the connection came up (or when first installed), before the store is marked
/// connected, with a store whose commands go to the new connection; `false` asks the monitor
/// to run it again on its next round.
pub(crate) type ConnectHook =
    Box<dyn Fn(RedisStore) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

struct Shared {
    claim: Script,
    commit: Script,
    release: Script,
    target: Target,
    /// Replaced by the monitor when the connection cannot recover on its own (a manager only
    /// reconnects after I/O errors, so a failed handshake would otherwise stick). `None` for
    /// a cluster until the first topology was read.
    conn: RwLock<Option<Conn>>,
    connected: AtomicBool,
    /// Installed once by the queue (its durability probe). Must not hold the store itself,
    /// or the monitor would keep it alive forever.
    on_connect: OnceLock<ConnectHook>,
    /// The hook has yet to run on the current connection.
    hook_pending: AtomicBool,
}

/// What to connect to.
enum Target {
    /// One server (or a proxy in front of several).
    Standalone {
        client: Client,
        config: ConnectionManagerConfig,
    },
    /// A Redis Cluster, found from its seed nodes. The keys of one delivery share a hash tag,
    /// so each script runs on the one node that owns the slot.
    Cluster(ClusterClient),
}

/// A live connection of either kind; both multiplex concurrent commands and are cheap to clone.
#[derive(Clone)]
pub(crate) enum Conn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Standalone(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Standalone(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Standalone(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

impl RedisStore {
    pub(crate) fn new(options: &RedisOptions) -> Result<RedisStore, StoreError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::NoRuntime);
        }
        let tls = options.ca_pem.as_ref().map(|pem| TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        });
        let (target, conn) = if options.cluster {
            let seeds = options
                .url
                .split(',')
                .map(|url| url.trim().into_connection_info())
                .collect::<Result<Vec<ConnectionInfo>, _>>()
                .map_err(StoreError::InvalidUrl)?;
            let mut builder = ClusterClientBuilder::new(seeds)
                .connection_timeout(CONNECT_TIMEOUT)
                .retries(1);
            if let Some(password) = &options.password {
                builder = builder.password(password.clone());
            }
            if let Some(certs) = tls {
                builder = builder.certs(certs);
            }
            (
                Target::Cluster(builder.build().map_err(StoreError::InvalidUrl)?),
                None,
            )
        } else {
            let mut info = options
                .url
                .as_str()
                .into_connection_info()
                .map_err(StoreError::InvalidUrl)?;
            if let Some(password) = &options.password {
                let settings = info.redis_settings().clone().set_password(password);
                info = info.set_redis_settings(settings);
            }
            let client = match tls {
                Some(certs) => Client::build_with_tls(info, certs),
                None => Client::open(info),
            }
            .map_err(StoreError::InvalidUrl)?;
            let config = ConnectionManagerConfig::new()
                // The monitor is the retry loop; a single attempt keeps a failed connect fast.
                .set_number_of_retries(0)
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                // The Store's deadline bounds every call; a response time-out here would only
                // turn a late answer into an error that looks like a connection problem.
                .set_response_timeout(None);
            let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                .map_err(StoreError::Unavailable)?;
            (
                Target::Standalone { client, config },
                Some(Conn::Standalone(conn)),
            )
        };
        let shared = Arc::new(Shared {
            claim: Script::new(CLAIM_LUA),
            commit: Script::new(COMMIT_LUA),
            release: Script::new(RELEASE_LUA),
            target,
            conn: RwLock::new(conn),
            connected: AtomicBool::new(false),
            on_connect: OnceLock::new(),
            hook_pending: AtomicBool::new(false),
        });
        let wake = Arc::new(Notify::new());
        tokio::spawn(monitor(Arc::downgrade(&shared), Arc::clone(&wake)));
        Ok(RedisStore { shared, wake })
    }

    pub(crate) async fn claim(
        &self,
        keys: DeliveryKeys,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        let token = Token::next();
        let mut invocation = self.shared.claim.prepare_invoke();
        for key in keys.as_slice() {
            invocation.key(key);
        }
        invocation.arg(token.inflight_value()).arg(millis(lease));
        match self.invoke::<i64>(&invocation).await? {
            0 => Ok(ClaimOutcome::Claimed(Claim { keys, token })),
            1 => Ok(ClaimOutcome::Done),
            _ => Ok(ClaimOutcome::InFlight),
        }
    }

    pub(crate) async fn commit(&self, claim: &Claim, window: Duration) -> Result<(), StoreError> {
        let mut invocation = self.shared.commit.prepare_invoke();
        for key in claim.keys.as_slice() {
            invocation.key(key);
        }
        invocation.arg(millis(window));
        self.invoke::<i64>(&invocation).await.map(drop)
    }

    pub(crate) async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        let mut invocation = self.shared.release.prepare_invoke();
        for key in claim.keys.as_slice() {
            invocation.key(key);
        }
        invocation.arg(claim.token.inflight_value());
        self.invoke::<i64>(&invocation).await.map(drop)
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection()?;
        ::redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(|error| self.failed(error))
    }

    async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.connection()?;
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|error| self.failed(error))
    }

    /// Installs the hook that runs whenever the connection comes up, and runs it on the current
    /// connection soon if there is one (the monitor may have connected before it was installed).
    /// A second hook is ignored. The hook must not hold the store, or the store would never end.
    pub(crate) fn on_connect(&self, hook: ConnectHook) {
        if self.shared.on_connect.set(hook).is_ok() {
            self.shared.hook_pending.store(true, Ordering::Release);
            self.wake.notify_one();
        }
    }

    /// A new connection of its own, for commands that block the connection they are sent on
    /// (`WAITAOF`), so they never stall the shared one.
    pub(crate) async fn dedicated_connection(&self) -> Result<Conn, RedisError> {
        self.shared.connect().await
    }

    /// Whether the store is a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.shared.target, Target::Cluster(_))
    }

    /// Sends `cmd` to the server, or to every primary of a cluster, on the newest connection
    /// even before the store is marked connected (for the connect hook). The answers by node
    /// (`""` for one server); a server's error is an answer, a connection's error fails it all.
    pub(crate) async fn each_primary(
        &self,
        cmd: Cmd,
    ) -> Result<Vec<(String, Result<Value, RedisError>)>, RedisError> {
        let mut conn = self.shared.current().ok_or_else(not_connected)?;
        let reply = match &mut conn {
            Conn::Standalone(_) => {
                return match cmd.query_async::<Value>(&mut conn).await {
                    Err(error) if is_connection_error(&error) => Err(error),
                    reply => Ok(vec![(String::new(), reply)]),
                };
            }
            Conn::Cluster(cluster) => {
                cluster
                    .route_command(
                        cmd,
                        RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
                    )
                    .await?
            }
        };
        let Value::Map(nodes) = reply else {
            return Err(RedisError::from((
                ErrorKind::Parse,
                "expected one reply per cluster primary",
            )));
        };
        Ok(nodes
            .into_iter()
            .map(|(node, reply)| {
                let node = match node {
                    Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    Value::SimpleString(text) => text,
                    other => format!("{other:?}"),
                };
                let reply = match reply {
                    Value::ServerError(error) => Err(error.into()),
                    reply => Ok(reply),
                };
                (node, reply)
            })
            .collect())
    }

    /// Loads a script on the newest connection (every node of a cluster), even before the store
    /// is marked connected (for the connect hook).
    pub(crate) async fn load_script(&self, script: &Script) -> Result<(), RedisError> {
        let mut conn = self.shared.current().ok_or_else(not_connected)?;
        script.load_async(&mut conn).await.map(drop)
    }

    /// The live connection, or `Unavailable` at once while the monitor has none.
    pub(crate) fn connection(&self) -> Result<Conn, StoreError> {
        let conn = if self.shared.connected.load(Ordering::Acquire) {
            self.shared.current()
        } else {
            None
        };
        conn.ok_or_else(|| StoreError::Unavailable(not_connected()))
    }

    /// Turns a command error into `Unavailable`; a connection-level error also marks the store
    /// down and wakes the monitor, so the following requests fail fast until it reconnects.
    pub(crate) fn failed(&self, error: RedisError) -> StoreError {
        if is_connection_error(&error) {
            if self.shared.connected.swap(false, Ordering::AcqRel) {
                tracing::warn!(%error, "redis connection lost; reconnecting in the background");
            }
            self.wake.notify_one();
        }
        StoreError::Unavailable(error)
    }
}

impl Shared {
    /// Loads the scripts into a fresh (or restarted) Redis before commands flow, so the first
    /// claims need no `NOSCRIPT` round trip, and a claim that times out (and may still land)
    /// is the script itself rather than an `EVALSHA` that fails later and is never retried.
    async fn load_scripts(&self, conn: &Conn) {
        let mut conn = conn.clone();
        for script in [&self.claim, &self.commit, &self.release] {
            let load = tokio::time::timeout(PROBE_TIMEOUT, script.load_async(&mut conn));
            match load.await {
                Ok(Ok(_sha)) => {}
                Ok(Err(error)) => tracing::warn!(%error, "cannot load a dedup script into redis"),
                Err(_elapsed) => tracing::warn!("loading a dedup script into redis timed out"),
            }
        }
    }

    fn current(&self) -> Option<Conn> {
        self.conn
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, conn: Option<Conn>) {
        *self.conn.write().unwrap_or_else(PoisonError::into_inner) = conn;
    }

    /// A new connection: lazy for one server; for a cluster, reading the topology now.
    async fn connect(&self) -> Result<Conn, RedisError> {
        match &self.target {
            Target::Standalone { client, config } => {
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                    .map(Conn::Standalone)
            }
            Target::Cluster(client) => {
                match tokio::time::timeout(PROBE_TIMEOUT, client.get_async_connection()).await {
                    Ok(result) => result.map(Conn::Cluster),
                    Err(_elapsed) => Err(RedisError::from((
                        ErrorKind::Io,
                        "reading the cluster topology timed out",
                    ))),
                }
            }
        }
    }
}

/// Pings until Redis answers, then waits for a command to report trouble (or the health
/// interval) and pings again. Ends when the store is dropped.
async fn monitor(shared: Weak<Shared>, wake: Arc<Notify>) {
    let mut backoff = RETRY_MIN;
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let conn = match strong.current() {
            Some(conn) => conn,
            None => match strong.connect().await {
                Ok(conn) => {
                    strong.replace(Some(conn.clone()));
                    conn
                }
                Err(error) => {
                    if backoff == RETRY_MIN {
                        tracing::warn!(%error, "redis unavailable; reconnecting in the background");
                    }
                    drop(strong);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                    continue;
                }
            },
        };
        let mut probe_conn = conn.clone();
        let probe = tokio::time::timeout(
            PROBE_TIMEOUT,
            ::redis::cmd("PING").query_async::<()>(&mut probe_conn),
        )
        .await;
        drop(probe_conn);
        let connected = match probe {
            Ok(Ok(())) => {
                let coming_up = !strong.connected.load(Ordering::Acquire);
                if coming_up {
                    strong.load_scripts(&conn).await;
                }
                if (strong.hook_pending.swap(false, Ordering::AcqRel) || coming_up)
                    && let Some(hook) = strong.on_connect.get()
                    && !hook(RedisStore {
                        shared: Arc::clone(&strong),
                        wake: Arc::clone(&wake),
                    })
                    .await
                {
                    strong.hook_pending.store(true, Ordering::Release);
                }
                if coming_up {
                    strong.connected.store(true, Ordering::Release);
                    tracing::info!("redis connected");
                }
                true
            }
            Ok(Err(error)) => {
                if strong.connected.swap(false, Ordering::AcqRel) || backoff == RETRY_MIN {
                    tracing::warn!(%error, "redis unavailable; reconnecting in the background");
                }
                match &strong.target {
                    // The manager re-connects only after I/O errors; anything else (a failed
                    // AUTH or SELECT during the handshake) would stick, so start afresh.
                    Target::Standalone { .. } if !error.is_io_error() => {
                        match strong.connect().await {
                            Ok(fresh) => strong.replace(Some(fresh)),
                            Err(error) => {
                                tracing::warn!(%error, "cannot create a redis connection");
                            }
                        }
                    }
                    Target::Standalone { .. } => {}
                    // Read the topology again: the nodes may have moved.
                    Target::Cluster(_) => strong.replace(None),
                }
                false
            }
            // A ping that neither answers nor fails says nothing about the connection (a busy
            // or paused Redis); keep the current verdict and look again soon.
            Err(_elapsed) => strong.connected.load(Ordering::Acquire),
        };
        drop(strong);
        if connected {
            backoff = RETRY_MIN;
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(HEALTH_INTERVAL) => {}
            }
        } else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }
}

fn not_connected() -> RedisError {
    RedisError::from((
        ErrorKind::Io,
        "not connected to redis; reconnecting in the background",
    ))
}

/// An error of the connection rather than of the command: the monitor should look.
fn is_connection_error(error: &RedisError) -> bool {
    error.is_io_error() || error.is_connection_dropped() || error.is_unrecoverable_error()
}

/// A TTL in whole milliseconds for `PX`, at least 1 (Redis rejects `PX 0`; for the queue's
/// scripts a zero idle time or lease would mean something else too).
pub(crate) fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl fmt::Debug for RedisStore {
    // The client's connection info may hold a password; show only the state.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("connected", &self.shared.connected.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
