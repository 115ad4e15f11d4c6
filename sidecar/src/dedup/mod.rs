//! Deduplication: claim → forward → commit or release.
//!
//! Runs after the signature and timestamp passed and the delivery ID was bounded, and before
//! the request is forwarded. A [`DedupStore::claim`] takes a short lease on every key of the
//! delivery (`inflight:<token>`); only after the app answered 2xx does the caller
//! [`DedupStore::commit`] them as `done` for the replay window; on a definite failure it
//! [`DedupStore::release`]s them by token. A claim never means "done": a Redis write can land
//! after the client gave up on it (a ghost write), and such a write must only ever look like a
//! lease that runs out, never like a processed delivery.
//!
//! Two stores implement the contract: an in-memory one with a hard bound for a single replica
//! ([`Store::memory`]) and Redis for several replicas ([`Store::redis`]). [`Store`] wraps either
//! and bounds every call by the sidecar's deadline.

mod memory;
mod redis;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

pub use memory::{MEMORY_ENTRY_OVERHEAD, MEMORY_QUEUE_SLOT_OVERHEAD, MemoryLimits};

pub(crate) use memory::MemoryStore;
pub(crate) use redis::{Conn, ConnectHook, RedisStore, millis};

use crate::queue::{MemoryQueue, QueueBackend, RedisQueue};

/// The store keys of one delivery: the delivery-ID key, plus a body-hash key for schemes that
/// sign neither the ID nor a timestamp. All share the hash tag `{<endpoint_id>}`, so they live
/// in one Redis Cluster slot and one script can touch them atomically.
///
/// `endpoint_id` must be non-empty (the operator generates it): Redis ignores an empty tag `{}`
/// and would then hash each key on its own, and the scripts would fail with `CROSSSLOT` on a
/// cluster (closed, not open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryKeys {
    keys: Vec<String>,
}

impl DeliveryKeys {
    /// Keys like `hg:{<endpoint_id>}:id:<delivery_id>` and, when the body hash is given,
    /// `hg:{<endpoint_id>}:body:<sha256 hex>`.
    pub fn new(
        endpoint_id: &str,
        delivery_id: &str,
        body_sha256: Option<&[u8; 32]>,
    ) -> DeliveryKeys {
        let mut keys = Vec::with_capacity(if body_sha256.is_some() { 2 } else { 1 });
        keys.push(format!("hg:{{{endpoint_id}}}:id:{delivery_id}"));
        if let Some(hash) = body_sha256 {
            keys.push(format!("hg:{{{endpoint_id}}}:body:{}", hex::encode(hash)));
        }
        DeliveryKeys { keys }
    }

    /// The keys, delivery-ID key first.
    pub fn as_slice(&self) -> &[String] {
        &self.keys
    }
}

/// What a claim found.
#[derive(Debug)]
pub enum ClaimOutcome {
    /// Every key now holds this request's lease; forward, then commit or release.
    Claimed(Claim),
    /// Some key is `done`: a duplicate of a processed delivery (answer 200).
    Done,
    /// Some key is leased by another request still in flight (answer 409).
    InFlight,
}

/// A held lease on the keys of one delivery, identified by a token unique to this claim.
#[derive(Debug, Clone)]
pub struct Claim {
    keys: DeliveryKeys,
    token: Token,
}

impl Claim {
    /// The keys this claim leased.
    pub fn keys(&self) -> &DeliveryKeys {
        &self.keys
    }
}

/// A claim's identity: a random per-process prefix and a process-wide counter, so tokens never
/// repeat within a process and practically never across replicas sharing one Redis.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token(u128);

impl Token {
    fn next() -> Token {
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let prefix = *PREFIX.get_or_init(|| {
            // Without OS randomness, fall back to something that still differs between
            // processes and restarts; uniqueness within the process comes from the counter.
            getrandom::u64().unwrap_or_else(|_| {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                #[allow(clippy::cast_possible_truncation)] // Only the low bits vary anyway.
                let nanos = nanos as u64;
                nanos ^ u64::from(std::process::id()).rotate_left(32)
            })
        });
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        Token((u128::from(prefix) << 64) | u128::from(count))
    }

    /// The value a key holds while this token's lease is live.
    fn inflight_value(self) -> String {
        format!("inflight:{self}")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({self})")
    }
}

/// Why a store call failed. Never carries key contents or credentials.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer within the sidecar's deadline. For Redis the command may still
    /// be applied later (a ghost write), which is why a claim is only ever a lease.
    #[error("dedup store did not answer within the deadline")]
    Timeout,
    /// The store could not be reached or refused the command (not connected yet, connection
    /// lost, or a command error).
    #[error("dedup store unavailable")]
    Unavailable(#[source] ::redis::RedisError),
    /// The Redis URL could not be parsed.
    #[error("invalid redis URL (expected redis://host:port/db or rediss://host:port/db)")]
    InvalidUrl(#[source] ::redis::RedisError),
    /// The Redis store was created outside a Tokio runtime, which it needs for its background
    /// connection.
    #[error("the redis store must be created inside a tokio runtime")]
    NoRuntime,
    /// The in-memory store's limits are too small to hold even this one delivery's keys.
    #[error("dedup entry larger than the in-memory store's limits")]
    EntryTooLarge,
}

impl StoreError {
    /// A short, stable label for failure metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            StoreError::Timeout => "timeout",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::InvalidUrl(_) => "invalid_url",
            StoreError::NoRuntime => "no_runtime",
            StoreError::EntryTooLarge => "entry_too_large",
        }
    }
}

/// The store contract.
///
/// - `claim`: if any key is `done` → [`ClaimOutcome::Done`]; else if any key holds a live lease →
///   [`ClaimOutcome::InFlight`]; else every key is set to `inflight:<token>` with the lease as
///   its TTL, atomically → [`ClaimOutcome::Claimed`].
/// - `commit`: every key is set to `done` with TTL = window, unconditionally: the app answered
///   2xx, so the delivery IS done, even if the lease lapsed and another claim exists.
/// - `release`: each key is deleted only if it still holds this claim's token
///   (compare-and-delete), so a late release never frees someone else's lease.
pub trait DedupStore: Send + Sync {
    /// Takes a lease on every key of a delivery, or reports why not.
    fn claim(
        &self,
        keys: DeliveryKeys,
        lease: Duration,
    ) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send;
    /// Marks the claimed delivery processed for `window`.
    fn commit(
        &self,
        claim: &Claim,
        window: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Gives the lease back after a definite failure.
    fn release(&self, claim: &Claim) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Checks that the store answers (readiness).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// How to reach Redis: the URL (`redis://host:port/db`, or `rediss://` for TLS), and the
/// secrets that should not sit in a URL or an environment listing.
#[derive(Clone, Default)]
pub struct RedisOptions {
    /// `redis://host:port/db` or `rediss://host:port/db`.
    pub url: String,
    /// The `AUTH` password, if the server requires one (else any password in the URL).
    pub password: Option<String>,
    /// PEM CA certificate(s) that signed the server's certificate, for `rediss://`; `None`
    /// trusts the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// A Redis Cluster: `url` lists one or more seed nodes, comma-separated.
    pub cluster: bool,
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A URL may carry a password (`redis://:secret@host`): never print it.
        f.debug_struct("RedisOptions")
            .field("tls", &self.url.starts_with("rediss://"))
            .field("cluster", &self.cluster)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// What the sidecar holds: one of the two stores plus the per-command deadline. Every call is
/// bounded by the deadline and fails with [`StoreError::Timeout`] past it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Arc<Backend>,
    deadline: Duration,
}

#[derive(Debug)]
enum Backend {
    Memory(Arc<MemoryStore>, MemoryQueue),
    Redis(RedisStore, RedisQueue),
}

impl Store {
    /// An in-memory store bounded by `limits`; every eviction of a live entry increments
    /// `evictions`.
    pub fn memory(limits: MemoryLimits, evictions: Counter, deadline: Duration) -> Store {
        let store = Arc::new(MemoryStore::new(limits, evictions));
        let queue = MemoryQueue::new(Arc::clone(&store));
        Store {
            backend: Arc::new(Backend::Memory(store, queue)),
            deadline,
        }
    }

    /// A Redis store. Parses the URL (`redis://host:port/db`; `rediss://` needs a TLS feature
    /// of the redis crate) and returns at once: the connection is made in the background and
    /// re-made whenever it is lost, so a Redis that is down at start fails commands with
    /// [`StoreError::Unavailable`] until it comes up, without blocking startup. Must be called
    /// inside a Tokio runtime.
    pub fn redis(url: &str, deadline: Duration) -> Result<Store, StoreError> {
        Store::redis_with(
            &RedisOptions {
                url: url.to_owned(),
                ..RedisOptions::default()
            },
            deadline,
        )
    }

    /// [`Store::redis`] with a password and a CA for `rediss://` kept out of the URL.
    pub fn redis_with(options: &RedisOptions, deadline: Duration) -> Result<Store, StoreError> {
        let store = RedisStore::new(options)?;
        let queue = RedisQueue::new(&store);
        Ok(Store {
            backend: Arc::new(Backend::Redis(store, queue)),
            deadline,
        })
    }

    /// `"memory"` or `"redis"`, for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match &*self.backend {
            Backend::Memory(..) => "memory",
            Backend::Redis(..) => "redis",
        }
    }

    /// The in-memory store's gauges: (entries, accounted bytes). `None` for Redis.
    pub fn memory_usage(&self) -> Option<(u64, u64)> {
        match &*self.backend {
            Backend::Memory(memory, _) => Some(memory.usage()),
            Backend::Redis(..) => None,
        }
    }

    /// Pings until the store answers or `within` has passed; returns the last error then.
    /// For startup and tests: a fresh Redis store answers only once its background
    /// connection is up.
    pub async fn wait_ready(&self, within: Duration) -> Result<(), StoreError> {
        let give_up = tokio::time::Instant::now() + within;
        loop {
            match self.ping().await {
                Ok(()) => return Ok(()),
                Err(error) if tokio::time::Instant::now() >= give_up => return Err(error),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// The Redis store, if that is the backend (the delivery log writes through it).
    pub(crate) fn redis_store(&self) -> Option<&RedisStore> {
        match &*self.backend {
            Backend::Memory(..) => None,
            Backend::Redis(redis, _) => Some(redis),
        }
    }

    /// The queue operations of the backend.
    pub(crate) fn queue_backend(&self) -> QueueBackend<'_> {
        match &*self.backend {
            Backend::Memory(_, queue) => QueueBackend::Memory(queue),
            Backend::Redis(_, queue) => QueueBackend::Redis(queue),
        }
    }

    /// The deadline of one store command.
    pub(crate) fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Bounds `call` by the deadline.
    pub(crate) async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.deadline, call)
            .await
            .unwrap_or(Err(StoreError::Timeout))
    }
}

impl DedupStore for Store {
    async fn claim(&self, keys: DeliveryKeys, lease: Duration) -> Result<ClaimOutcome, StoreError> {
        self.bounded(async {
            match &*self.backend {
                Backend::Memory(memory, _) => memory.claim(keys, lease),
                Backend::Redis(redis, _) => redis.claim(keys, lease).await,
            }
        })
        .await
    }

    async fn commit(&self, claim: &Claim, window: Duration) -> Result<(), StoreError> {
        self.bounded(async {
            match &*self.backend {
                Backend::Memory(memory, _) => memory.commit(claim, window),
                Backend::Redis(redis, _) => redis.commit(claim, window).await,
            }
        })
        .await
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        self.bounded(async {
            match &*self.backend {
                Backend::Memory(memory, _) => {
                    memory.release(claim);
                    Ok(())
                }
                Backend::Redis(redis, _) => redis.release(claim).await,
            }
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(async {
            match &*self.backend {
                Backend::Memory(..) => Ok(()),
                Backend::Redis(redis, _) => redis.ping().await,
            }
        })
        .await
    }
}
