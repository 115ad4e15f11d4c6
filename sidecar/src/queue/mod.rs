//! Queue mode: the sidecar as the app's durable inbox.
//!
//! A verified delivery is **admitted** (dedup check and enqueue in one atomic step, every
//! check before the first write), made durable (the store's promise, see [`Promise`]), and
//! only then answered 2xx. A [`worker`] in each sidecar **takes** deliveries of its endpoints,
//! sends them to its app on localhost, and settles each by the app's answer ([`policy`]):
//! **commit** (the delivery is done: the dedup keys become `done` for the replay window and
//! the delivery leaves the queue, atomically and idempotently), **retry** later (with or
//! without spending an attempt), or **dead-letter** it. Dead letters stay until they are
//! replayed or purged through the admin port ([`admin`]).
//!
//! Nothing leaves the queue before its commit: a delivery a sidecar took and did not settle
//! (it crashed, or stalled past the lease) is taken again by any sidecar after the lease.
//! So the app gets every admitted delivery at least once, and a delivery is committed at
//! most once; the app keeps a unique constraint on `X-Hookguard-Delivery-Id` for the copies
//! a crash between its 2xx and the commit can cause.
//!
//! Two stores implement the operations: Redis (Streams, under the endpoint's hash tag, so one
//! Redis Cluster slot holds all of an endpoint's keys; [`redis`]) and the in-memory store
//! ([`memory`], one replica, never durable: only with `durability: Memory`).
//!
//! # Keys (Redis)
//!
//! All under `hg:{<endpoint_id>}:` ([`QueueKeys`]): `q` the work stream (entries carry only the
//! delivery ID) with its one consumer group; `m:<delivery id>` a hash with the stored request
//! and its bookkeeping; `due` a sorted set of deliveries waiting for a retry (score: when, in
//! Unix ms); `dlq` the dead-letter stream; `recv` a sorted set of the deliveries not
//! dead-lettered, by when they were received; `stats` a hash with the admission counters. The
//! dedup keys (`id:<delivery id>`, and `body:<sha256>` where the ID is not signed) hold
//! `queued` while the delivery is in the queue. Nothing of that has a TTL, and the work
//! stream is never trimmed: admission is bounded by the endpoint's caps instead.

pub mod admin;
mod memory;
pub mod policy;
mod redis;
pub mod worker;

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use hookguard_api::Durability;

use crate::dedup::{DeliveryKeys, Store, StoreError};

pub(crate) use memory::MemoryQueue;
pub(crate) use redis::RedisQueue;

/// The most a take may take: it is off the request path, and a take that times out after it
/// ran strands what it took for a lease.
const TAKE_DEADLINE: Duration = Duration::from_secs(5);

/// The queue's keys of one endpoint. They share the hash tag of its dedup keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueKeys {
    prefix: String,
}

impl QueueKeys {
    /// The keys of the endpoint with this (non-empty) ID.
    pub fn new(endpoint_id: &str) -> QueueKeys {
        QueueKeys {
            prefix: format!("hg:{{{endpoint_id}}}:"),
        }
    }

    /// The work stream.
    pub fn stream(&self) -> String {
        format!("{}q", self.prefix)
    }

    /// The hash holding one queued delivery.
    pub fn message(&self, delivery_id: &str) -> String {
        format!("{}m:{delivery_id}", self.prefix)
    }

    /// The sorted set of deliveries waiting for their next attempt.
    pub fn due(&self) -> String {
        format!("{}due", self.prefix)
    }

    /// The dead-letter stream.
    pub fn dead(&self) -> String {
        format!("{}dlq", self.prefix)
    }

    /// The admission counters (`n`: deliveries held, `bytes`: their size) and the take
    /// script's reclaim cursor (`claim_cursor`).
    pub fn stats(&self) -> String {
        format!("{}stats", self.prefix)
    }

    /// The sorted set of deliveries not dead-lettered, by when they were received (Unix ms):
    /// what the oldest-age gauge reads.
    pub fn received(&self) -> String {
        format!("{}recv", self.prefix)
    }
}

/// The request as it will be sent to the app, stored with the delivery.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredRequest {
    /// Path and query on the app, e.g. `/stripe?x=1`.
    pub path_and_query: String,
    /// The headers to send, encoded by [`encode_headers`].
    pub headers: Bytes,
    /// The raw body.
    pub body: Bytes,
}

impl StoredRequest {
    /// The bytes this delivery counts against `maxQueuedBytes`.
    pub fn size(&self) -> u64 {
        u64::try_from(self.path_and_query.len() + self.headers.len() + self.body.len())
            .unwrap_or(u64::MAX)
    }
}

impl fmt::Debug for StoredRequest {
    // Headers and body may carry anything the sender sent; show only sizes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredRequest")
            .field("path_and_query", &self.path_and_query)
            .field("headers_len", &self.headers.len())
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Encodes headers as `name: value\r\n` lines. HTTP forbids CR, LF and NUL in header values,
/// and hyper refuses them, so the encoding is unambiguous.
pub fn encode_headers(headers: &http::HeaderMap) -> Bytes {
    let mut out = Vec::with_capacity(headers.len() * 48);
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    Bytes::from(out)
}

/// Decodes [`encode_headers`]' output; `None` if it was not made by it.
pub fn decode_headers(encoded: &[u8]) -> Option<http::HeaderMap> {
    let mut headers = http::HeaderMap::new();
    for line in encoded.split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let line = line.strip_suffix(b"\r")?;
        let colon = line.iter().position(|b| *b == b':')?;
        let name = http::HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = line[colon + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&line[colon + 1..]);
        headers.append(name, http::HeaderValue::from_bytes(value).ok()?);
    }
    Some(headers)
}

/// A verified delivery to queue.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The endpoint's ID (the hash tag of every key).
    pub endpoint_id: String,
    /// The verified, bounded delivery ID.
    pub delivery_id: String,
    /// Its dedup keys, as sync mode claims them.
    pub dedup: DeliveryKeys,
    /// The body's SHA-256 where the dedup keys include it (to rebuild them at commit).
    pub body_sha256: Option<[u8; 32]>,
    /// What to send to the app.
    pub request: StoredRequest,
    /// When the sidecar received it, Unix ms.
    pub received_at_ms: u64,
    /// Most deliveries the endpoint may hold.
    pub max_queued: u64,
    /// Most bytes ([`StoredRequest::size`]) the endpoint may hold.
    pub max_queued_bytes: u64,
}

/// What admission found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// Queued, and as durable as the endpoint asked: answer 2xx.
    Queued,
    /// Already queued or processed: answer 200, it is safe.
    Duplicate,
    /// A synchronous claim of this delivery is at the app right now (the endpoint changed
    /// mode): answer 409.
    InFlight,
    /// The endpoint holds `maxQueued` deliveries or `maxQueuedBytes`: answer 503.
    Full,
}

/// Why admission failed.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The store failed or did not answer; the delivery may or may not be queued (a retry of
    /// it is then answered `duplicate`, or queued now).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The delivery was written, but the store could not confirm it on disk in time; the
    /// sender gets 503 and its retry finds it (`duplicate`) or queues it.
    #[error("the store did not confirm the delivery on disk in time")]
    NotOnDisk,
    /// The endpoint asks for `durability: Disk` and the store cannot promise it.
    #[error("{0}")]
    NotDurable(Promise),
}

/// What a store can promise about an admitted delivery, found out when it connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Promise {
    /// Not connected yet: nothing is known.
    Unknown,
    /// On disk before the reply: `appendfsync always`.
    Fsync,
    /// On disk after a `WAITAOF` (Redis or Valkey 7.2 and later, AOF on).
    WaitAof,
    /// In memory only; the text says why (for logs and `/readyz`).
    Memory(String),
}

impl Promise {
    /// Whether a delivery admitted under this promise survives a store crash.
    pub fn is_disk(&self) -> bool {
        matches!(self, Promise::Fsync | Promise::WaitAof)
    }

    /// Whether this promise satisfies what an endpoint asks.
    pub fn satisfies(&self, durability: Durability) -> bool {
        match durability {
            Durability::Disk => self.is_disk(),
            Durability::Memory => !matches!(self, Promise::Unknown),
        }
    }

    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Promise::Unknown => "unknown",
            Promise::Fsync => "fsync",
            Promise::WaitAof => "waitaof",
            Promise::Memory(_) => "memory",
        }
    }
}

impl fmt::Display for Promise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Promise::Unknown => {
                write!(f, "the store's durability is not known yet (not connected)")
            }
            Promise::Fsync => write!(f, "on disk before every reply (appendfsync always)"),
            Promise::WaitAof => write!(f, "on disk once WAITAOF confirms it"),
            Promise::Memory(why) => write!(f, "in memory only: {why}"),
        }
    }
}

/// A delivery a worker took from the queue; settle it with commit, retry or dead-letter.
#[derive(Debug, Clone)]
pub struct Taken {
    /// The work-stream entry it was read from (acknowledged when settled).
    pub entry: String,
    /// The delivery.
    pub delivery: QueuedDelivery,
}

/// A queued delivery as stored.
#[derive(Debug, Clone)]
pub struct QueuedDelivery {
    /// The delivery ID.
    pub delivery_id: String,
    /// What to send to the app.
    pub request: StoredRequest,
    /// When the sidecar received it, Unix ms.
    pub received_at_ms: u64,
    /// Attempts made so far (0 before the first).
    pub attempts: u32,
    /// The body's SHA-256 where the dedup keys include it.
    pub body_sha256: Option<[u8; 32]>,
    /// Replayed by hand from the dead-letter queue.
    pub replayed: bool,
    /// The last failed attempt's result, e.g. `status 500` or `timeout`; empty before one.
    pub last_error: String,
}

impl QueuedDelivery {
    /// Its dedup keys under `endpoint_id`.
    pub fn dedup_keys(&self, endpoint_id: &str) -> DeliveryKeys {
        DeliveryKeys::new(endpoint_id, &self.delivery_id, self.body_sha256.as_ref())
    }
}

/// A dead-lettered delivery, for listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The delivery ID.
    pub delivery_id: String,
    /// Why it was dead-lettered, e.g. `status 400`, `attempts exhausted (last: status 500)`.
    pub reason: String,
    /// When, Unix ms.
    pub failed_at_ms: u64,
    /// When the sidecar received it, Unix ms.
    pub received_at_ms: u64,
    /// Attempts made.
    pub attempts: u32,
    /// Its size ([`StoredRequest::size`]).
    pub size: u64,
}

/// One endpoint's queue, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueStats {
    /// Waiting for a first attempt, or due for the next one.
    pub ready: u64,
    /// Taken by a worker and not settled yet.
    pub in_flight: u64,
    /// Waiting for a scheduled retry.
    pub scheduled: u64,
    /// Dead-lettered.
    pub dead: u64,
    /// Deliveries held in all (what `maxQueued` bounds).
    pub held: u64,
    /// Their bytes (what `maxQueuedBytes` bounds).
    pub held_bytes: u64,
    /// When the oldest delivery not yet settled was received, Unix ms.
    pub oldest_received_ms: Option<u64>,
    /// When the oldest dead letter failed, Unix ms.
    pub oldest_dead_ms: Option<u64>,
}

/// A store's queue operations, over either backend. Every call is bounded by the store's
/// deadline, except admission's durability wait, which has its own.
impl Store {
    /// What the store can promise now.
    pub fn promise(&self) -> Promise {
        match self.queue_backend() {
            QueueBackend::Memory(queue) => queue.promise(),
            QueueBackend::Redis(queue) => queue.promise(),
        }
    }

    /// Admits one delivery (see the module docs). `durability` is the endpoint's; when the
    /// store's [`Promise`] does not satisfy it, nothing is written.
    pub async fn admit(
        &self,
        admission: &Admission,
        durability: Durability,
    ) -> Result<Admitted, AdmitError> {
        let promise = self.promise();
        if !promise.satisfies(durability) {
            return Err(AdmitError::NotDurable(promise));
        }
        match self.queue_backend() {
            QueueBackend::Memory(queue) => Ok(queue.admit(admission)?),
            QueueBackend::Redis(queue) => queue.admit(admission, durability, self.deadline()).await,
        }
    }

    /// Takes up to `count` deliveries of the endpoint: first retries that are due (moved to
    /// the work stream), then deliveries another worker took and did not settle within
    /// `lease`, then new ones. `now_ms` is the caller's clock, Unix ms.
    pub async fn take(
        &self,
        endpoint_id: &str,
        count: usize,
        lease: Duration,
        now_ms: u64,
    ) -> Result<Vec<Taken>, StoreError> {
        // A take whose answer is lost after it ran leaves what it took pending until the
        // lease ends: give it far longer than a request-path command.
        tokio::time::timeout(self.deadline().max(TAKE_DEADLINE), async {
            match self.queue_backend() {
                QueueBackend::Memory(queue) => Ok(queue.take(endpoint_id, count, lease, now_ms)),
                QueueBackend::Redis(queue) => queue.take(endpoint_id, count, lease, now_ms).await,
            }
        })
        .await
        .unwrap_or(Err(StoreError::Timeout))
    }

    /// Commits a delivery the app answered 2xx: its dedup keys become `done` for `window` and
    /// it leaves the queue. Idempotent: `false` if it was already committed or purged.
    pub async fn commit_queued(
        &self,
        endpoint_id: &str,
        taken: &Taken,
        window: Duration,
    ) -> Result<bool, StoreError> {
        self.bounded(async {
            match self.queue_backend() {
                QueueBackend::Memory(queue) => Ok(queue.commit(endpoint_id, taken, window)),
                QueueBackend::Redis(queue) => queue.commit(endpoint_id, taken, window).await,
            }
        })
        .await
    }

    /// Schedules the next attempt at `at_ms` (Unix ms), recording `attempts` made so far and
    /// the last result. With `at_ms` now and the attempts unchanged, this hands a delivery
    /// back untried. A no-op if the delivery was committed or purged meanwhile.
    pub async fn retry_queued(
        &self,
        endpoint_id: &str,
        taken: &Taken,
        at_ms: u64,
        attempts: u32,
        last_error: &str,
    ) -> Result<(), StoreError> {
        self.bounded(async {
            match self.queue_backend() {
                QueueBackend::Memory(queue) => {
                    queue.retry(endpoint_id, taken, at_ms, attempts, last_error);
                    Ok(())
                }
                QueueBackend::Redis(queue) => {
                    queue
                        .retry(endpoint_id, taken, at_ms, attempts, last_error)
                        .await
                }
            }
        })
        .await
    }

    /// Moves a delivery to the dead-letter queue. It stays held (it counts against the caps)
    /// until replayed or purged. A no-op if it was committed or purged meanwhile.
    pub async fn dead_letter(
        &self,
        endpoint_id: &str,
        taken: &Taken,
        attempts: u32,
        reason: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.bounded(async {
            match self.queue_backend() {
                QueueBackend::Memory(queue) => {
                    queue.dead_letter(endpoint_id, taken, attempts, reason, now_ms);
                    Ok(())
                }
                QueueBackend::Redis(queue) => {
                    queue
                        .dead_letter(endpoint_id, taken, attempts, reason, now_ms)
                        .await
                }
            }
        })
        .await
    }

    /// The endpoint's queue, counted.
    pub async fn queue_stats(&self, endpoint_id: &str) -> Result<QueueStats, StoreError> {
        self.bounded(async {
            match self.queue_backend() {
                QueueBackend::Memory(queue) => Ok(queue.stats(endpoint_id)),
                QueueBackend::Redis(queue) => queue.stats(endpoint_id).await,
            }
        })
        .await
    }

    /// Up to `count` dead letters, oldest first, after the one with delivery ID `after`.
    pub async fn dead_letters(
        &self,
        endpoint_id: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.bounded(async {
            match self.queue_backend() {
                QueueBackend::Memory(queue) => Ok(queue.dead_letters(endpoint_id, after, count)),
                QueueBackend::Redis(queue) => queue.dead_letters(endpoint_id, after, count).await,
            }
        })
        .await
    }

    /// One dead letter with its stored request, if the delivery is dead-lettered.
    pub async fn dead_letter_of(
        &self,
        endpoint_id: &str,
        delivery_id: &str,
    ) -> Result<Option<(DeadLetter, QueuedDelivery)>, StoreError> {
        self.bounded(async {
            match self.queue_backend() {
                QueueBackend::Memory(queue) => Ok(queue.dead_letter_of(endpoint_id, delivery_id)),
                QueueBackend::Redis(queue) => queue.dead_letter_of(endpoint_id, delivery_id).await,
            }
        })
        .await
    }

    /// Puts a dead letter back on the work stream with its attempts reset (marked
    /// replayed). `false` if the delivery is not dead-lettered.
    pub async fn replay(&self, endpoint_id: &str, delivery_id: &str) -> Result<bool, StoreError> {
        self.bounded(async {
            match self.queue_backend() {
                QueueBackend::Memory(queue) => Ok(queue.replay(endpoint_id, delivery_id)),
                QueueBackend::Redis(queue) => queue.replay(endpoint_id, delivery_id).await,
            }
        })
        .await
    }

    /// Deletes a dead letter; its dedup keys become `done` for `window`, so a late retry of
    /// the sender is answered `duplicate` instead of queued again. `false` if the delivery is
    /// not dead-lettered.
    pub async fn purge(
        &self,
        endpoint_id: &str,
        delivery_id: &str,
        window: Duration,
    ) -> Result<bool, StoreError> {
        self.bounded(async {
            match self.queue_backend() {
                QueueBackend::Memory(queue) => Ok(queue.purge(endpoint_id, delivery_id, window)),
                QueueBackend::Redis(queue) => queue.purge(endpoint_id, delivery_id, window).await,
            }
        })
        .await
    }
}

/// Which backend serves the queue.
pub(crate) enum QueueBackend<'a> {
    Memory(&'a MemoryQueue),
    Redis(&'a RedisQueue),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_including_repeated_names_and_opaque_bytes() {
        let mut headers = http::HeaderMap::new();
        headers.append("x-a", http::HeaderValue::from_static("1"));
        headers.append("x-a", http::HeaderValue::from_static("two: with colon"));
        headers.insert(
            "x-bytes",
            http::HeaderValue::from_bytes(b"caf\xc3\xa9 \xff").unwrap(),
        );
        headers.insert("empty", http::HeaderValue::from_static(""));
        let decoded = decode_headers(&encode_headers(&headers)).unwrap();
        assert_eq!(decoded, headers);
    }

    #[test]
    fn keys_share_the_dedup_keys_hash_tag() {
        let keys = QueueKeys::new("ep-1");
        let dedup = DeliveryKeys::new("ep-1", "d1", None);
        for key in [
            keys.stream(),
            keys.message("d1"),
            keys.due(),
            keys.dead(),
            keys.stats(),
            keys.received(),
        ] {
            assert!(key.starts_with("hg:{ep-1}:"), "{key}");
        }
        assert!(dedup.as_slice()[0].starts_with("hg:{ep-1}:"));
    }
}
