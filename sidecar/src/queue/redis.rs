//! Queue mode on Redis Streams, in the Redis the dedup store already uses.
//!
//! Every operation is one Lua script (one `EVALSHA`, atomic), over one fixed `KEYS` layout
//! whose keys all share the endpoint's hash tag, so each script runs on the one node owning
//! that slot of a Redis Cluster:
//!
//! | `KEYS[i]` | key |
//! |---|---|
//! | 1 | `q`, the work stream, with its one consumer group `hookguard` |
//! | 2 | `m:<delivery id>`, the delivery's hash; for the scripts that find deliveries by reading a stream (take, listing) the prefix `m:`, to which they append the ID (the same slot, as `BullMQ`'s scripts do) |
//! | 3 | `stats`, the admission counters (`n`, `bytes`) and the reclaim cursor |
//! | 4 | `due`, scheduled retries (score: when, Unix ms) |
//! | 5 | `dlq`, the dead-letter stream |
//! | 6 | `recv`, the deliveries not dead-lettered, by when they were received (for the oldest age) |
//! | 7.. | the delivery's dedup keys ([`DeliveryKeys`]) |
//!
//! The message hash holds `path`, `headers`, `body` (binary-safe), `received_at`, `attempts`,
//! `body_sha256` (hex, or empty), `size`, `replayed` (`0`/`1`), `last_error`, and its place:
//! `entry` (its current work-stream entry, empty while scheduled or dead), `dead_entry` (its
//! dead-letter entry, empty unless dead), `reason` and `failed_at` once dead-lettered. A settle
//! that names an entry other than the message's current one (a worker whose lease lapsed while
//! the delivery moved on) only acknowledges its own entry.
//!
//! All sidecars read the group as ONE shared consumer (`hookguard`, as Svix does): the
//! consumer list never grows with pod names, and a delivery a crashed or stalled sidecar took
//! is taken again by idle time (`XAUTOCLAIM` with the lease as the minimum idle time).
//!
//! What a 2xx means ([`Promise`]) is probed whenever the connection comes up. Under
//! [`Promise::WaitAof`] admissions go through a group commit: one task owns a dedicated
//! connection (a `WAITAOF` blocks the connection it is sent on) and sends everything waiting as
//! one pipeline `[admit × n, WAITAOF 1 0 <ms>]`, so a batch costs one fsync wait.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};
use std::time::Duration;

use ::redis::{
    Cmd, ErrorKind, RedisError, RedisResult, Script, ServerErrorKind, ToRedisArgs, Value,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    Admission, AdmitError, Admitted, DeadLetter, Promise, QueueKeys, QueueStats, QueuedDelivery,
    StoredRequest, Taken,
};
use crate::dedup::{Conn, ConnectHook, DeliveryKeys, RedisStore, StoreError, millis};

/// Bounds the durability part of an admission under [`Promise::WaitAof`], on top of the
/// store's deadline: the server-side `WAITAOF` timeout, and (added to the deadline) the whole
/// wait of a caller, queueing included. With `appendfsync everysec` a `WAITAOF` takes about
/// 100 ms (Valkey 8) and at most a second.
pub(crate) const DURABILITY_TIMEOUT: Duration = Duration::from_secs(1);
/// Most admissions in one group-commit pipeline.
const BATCH: usize = 512;
/// Admissions waiting for the group commit; past this, callers wait (within their bound).
const BACKLOG: usize = 4 * BATCH;
/// Most due retries one take moves to the work stream (at least its count).
const PROMOTE_LIMIT: usize = 256;
/// Bounds the durability probe run when the connection comes up.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The `WAITAOF` timeout of the probe where `CONFIG` is refused (it then has to wait for real).
const PROBE_WAITAOF_MS: u64 = 10;

// The group and the consumer are both `hookguard`.
macro_rules! prelude {
    () => {
        r"
local G, C = 'hookguard', 'hookguard'
local q, m, stats, due, dlq, recv = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local function drop(entry)
  if entry and entry ~= '' then
    redis.call('XACK', q, G, entry)
    redis.call('XDEL', q, entry)
  end
end
"
    };
}

/// `ARGV`: delivery id, max queued, max bytes, size, path, headers, body, received at, body
/// sha256 hex. Returns 0 queued, 1 duplicate, 2 in flight, 3 full. Every check comes before
/// the first write, and the first write is one Redis refuses when it is out of memory, so an
/// `OOM` error means nothing was written.
const ADMIT_LUA: &str = concat!(
    prelude!(),
    r"
local queued, leased = false, false
for i = 7, #KEYS do
  local value = redis.call('GET', KEYS[i])
  if value == 'done' then return 1 end
  if value == 'queued' then queued = true elseif value then leased = true end
end
if leased then return 2 end
if queued or redis.call('EXISTS', m) == 1 then return 1 end
local counts = redis.call('HMGET', stats, 'n', 'bytes')
local held = tonumber(counts[1] or 0)
-- An empty queue takes any one delivery, so one of maxBodySize is never refused for ever.
if held > 0 and (held + 1 > tonumber(ARGV[2])
  or tonumber(counts[2] or 0) + tonumber(ARGV[4]) > tonumber(ARGV[3])) then
  return 3
end
redis.call('HSET', m, 'path', ARGV[5], 'headers', ARGV[6], 'body', ARGV[7],
  'received_at', ARGV[8], 'attempts', 0, 'body_sha256', ARGV[9], 'size', ARGV[4],
  'replayed', 0, 'last_error', '', 'entry', '', 'dead_entry', '', 'reason', '', 'failed_at', '')
local entry = redis.call('XADD', q, '*', 'd', ARGV[1])
redis.call('HSET', m, 'entry', entry)
for i = 7, #KEYS do redis.call('SET', KEYS[i], 'queued') end
redis.call('ZADD', recv, ARGV[8], ARGV[1])
redis.call('HINCRBY', stats, 'n', 1)
redis.call('HINCRBY', stats, 'bytes', ARGV[4])
return 0
"
);

/// `KEYS[2]`: the message prefix. `ARGV`: count, lease ms, now ms, promote limit. Returns
/// `{entry, id, path, headers, body, received_at, attempts, body_sha256, replayed,
/// last_error}` per delivery taken.
const TAKE_LUA: &str = concat!(
    prelude!(),
    r"
pcall(redis.call, 'XGROUP', 'CREATE', q, G, '0', 'MKSTREAM')
local count = tonumber(ARGV[1])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', ARGV[3], 'LIMIT', 0, ARGV[4])) do
  redis.call('ZREM', due, id)
  if redis.call('HGET', m .. id, 'entry') == '' then
    redis.call('HSET', m .. id, 'entry', redis.call('XADD', q, '*', 'd', id))
  end
end
local out = {}
local function offer(entry, fields)
  local id = fields and fields[2]
  if id then
    local f = redis.call('HMGET', m .. id, 'entry', 'path', 'headers', 'body', 'received_at',
      'attempts', 'body_sha256', 'replayed', 'last_error')
    if f[1] == entry then
      out[#out + 1] = {entry, id, f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9]}
      return
    end
  end
  drop(entry)
end
local cursor = redis.call('HGET', stats, 'claim_cursor') or '0-0'
local claimed = redis.call('XAUTOCLAIM', q, G, C, ARGV[2], cursor, 'COUNT', count)
if claimed[1] ~= cursor then redis.call('HSET', stats, 'claim_cursor', claimed[1]) end
for _, e in ipairs(claimed[2]) do
  if e then offer(e[1], e[2]) end
end
for _ = 1, 8 do
  if #out >= count then break end
  local read = redis.call('XREADGROUP', 'GROUP', G, C, 'COUNT', count - #out, 'STREAMS', q, '>')
  if not read or #read[1][2] == 0 then break end
  for _, e in ipairs(read[1][2]) do offer(e[1], e[2]) end
end
return out
"
);

/// `ARGV`: entry, window ms, delivery id. Returns 1 if committed, 0 if already gone. Writes
/// that free memory come first, so a full Redis still commits.
const COMMIT_LUA: &str = concat!(
    prelude!(),
    r"
drop(ARGV[1])
local f = redis.call('HMGET', m, 'size', 'entry', 'dead_entry')
if not f[1] then return 0 end
redis.call('DEL', m)
if f[2] ~= ARGV[1] then drop(f[2]) end
if f[3] and f[3] ~= '' then redis.call('XDEL', dlq, f[3]) end
redis.call('ZREM', due, ARGV[3])
redis.call('ZREM', recv, ARGV[3])
for i = 7, #KEYS do redis.call('SET', KEYS[i], 'done', 'PX', ARGV[2]) end
redis.call('HINCRBY', stats, 'n', -1)
redis.call('HINCRBY', stats, 'bytes', -tonumber(f[1]))
return 1
"
);

/// `ARGV`: entry, at ms, attempts, last error, delivery id. Returns 1 if scheduled.
const RETRY_LUA: &str = concat!(
    prelude!(),
    r"
drop(ARGV[1])
if redis.call('HGET', m, 'entry') ~= ARGV[1] then return 0 end
redis.call('HSET', m, 'attempts', ARGV[3], 'last_error', ARGV[4], 'entry', '')
redis.call('ZADD', due, ARGV[2], ARGV[5])
return 1
"
);

/// `ARGV`: entry, attempts, reason, now ms, delivery id. Returns 1 if dead-lettered.
const DEAD_LETTER_LUA: &str = concat!(
    prelude!(),
    r"
drop(ARGV[1])
if redis.call('HGET', m, 'entry') ~= ARGV[1] then return 0 end
local dead = redis.call('XADD', dlq, '*', 'd', ARGV[5])
redis.call('HSET', m, 'attempts', ARGV[2], 'reason', ARGV[3], 'failed_at', ARGV[4],
  'entry', '', 'dead_entry', dead)
redis.call('ZREM', due, ARGV[5])
redis.call('ZREM', recv, ARGV[5])
return 1
"
);

/// `KEYS[2]`: the message prefix. Returns `{stream length, pending, scheduled, dead, held,
/// held bytes, oldest received, oldest failed}`.
const STATS_LUA: &str = concat!(
    prelude!(),
    r"
local pending = 0
local ok, summary = pcall(redis.call, 'XPENDING', q, G)
if ok then pending = summary[1] end
local counts = redis.call('HMGET', stats, 'n', 'bytes')
local oldest = redis.call('ZRANGE', recv, 0, 0, 'WITHSCORES')
local first = redis.call('XRANGE', dlq, '-', '+', 'COUNT', 1)
local failed = false
if first[1] then failed = redis.call('HGET', m .. first[1][2][2], 'failed_at') end
return {redis.call('XLEN', q), pending, redis.call('ZCARD', due), redis.call('XLEN', dlq),
  counts[1], counts[2], oldest[2] or false, failed}
"
);

/// `KEYS[2]`: the message prefix. `ARGV`: the delivery id to start after (or empty), count.
/// Returns `{id, reason, failed_at, received_at, attempts, size}` per dead letter, oldest
/// first; an `after` that is no longer dead-lettered gives an empty page.
const DEAD_LETTERS_LUA: &str = concat!(
    prelude!(),
    r"
local start = '-'
if ARGV[1] ~= '' then
  local after = redis.call('HGET', m .. ARGV[1], 'dead_entry')
  if not after or after == '' then return {} end
  start = '(' .. after
end
local out = {}
for _, e in ipairs(redis.call('XRANGE', dlq, start, '+', 'COUNT', ARGV[2])) do
  local id = e[2][2]
  local f = redis.call('HMGET', m .. id, 'dead_entry', 'reason', 'failed_at', 'received_at',
    'attempts', 'size')
  if f[1] == e[1] then out[#out + 1] = {id, f[2], f[3], f[4], f[5], f[6]} end
end
return out
"
);

/// `ARGV`: delivery id. Returns 1 if replayed, 0 if not dead-lettered.
const REPLAY_LUA: &str = concat!(
    prelude!(),
    r"
local f = redis.call('HMGET', m, 'dead_entry', 'received_at')
if not f[1] or f[1] == '' then return 0 end
redis.call('XDEL', dlq, f[1])
local entry = redis.call('XADD', q, '*', 'd', ARGV[1])
redis.call('HSET', m, 'attempts', 0, 'replayed', 1, 'dead_entry', '', 'reason', '',
  'failed_at', '', 'entry', entry)
redis.call('ZADD', recv, f[2], ARGV[1])
return 1
"
);

/// `ARGV`: delivery id, window ms, the body sha256 hex the dedup keys were built from. Returns
/// 1 if purged, 0 if not dead-lettered, 2 if the message's hash differs from the keys given.
const PURGE_LUA: &str = concat!(
    prelude!(),
    r"
local f = redis.call('HMGET', m, 'dead_entry', 'body_sha256', 'size')
if not f[1] or f[1] == '' then return 0 end
if f[2] ~= ARGV[3] then return 2 end
redis.call('DEL', m)
redis.call('XDEL', dlq, f[1])
for i = 7, #KEYS do redis.call('SET', KEYS[i], 'done', 'PX', ARGV[2]) end
redis.call('HINCRBY', stats, 'n', -1)
redis.call('HINCRBY', stats, 'bytes', -tonumber(f[3]))
return 1
"
);

/// The queue's scripts, hashed once.
struct Scripts {
    admit: Script,
    take: Script,
    commit: Script,
    retry: Script,
    dead_letter: Script,
    stats: Script,
    dead_letters: Script,
    replay: Script,
    purge: Script,
}

impl Scripts {
    fn all(&self) -> [&Script; 9] {
        [
            &self.admit,
            &self.take,
            &self.commit,
            &self.retry,
            &self.dead_letter,
            &self.stats,
            &self.dead_letters,
            &self.replay,
            &self.purge,
        ]
    }
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    admit: Script::new(ADMIT_LUA),
    take: Script::new(TAKE_LUA),
    commit: Script::new(COMMIT_LUA),
    retry: Script::new(RETRY_LUA),
    dead_letter: Script::new(DEAD_LETTER_LUA),
    stats: Script::new(STATS_LUA),
    dead_letters: Script::new(DEAD_LETTERS_LUA),
    replay: Script::new(REPLAY_LUA),
    purge: Script::new(PURGE_LUA),
});

/// One script call in the fixed `KEYS` layout.
struct Call {
    script: &'static Script,
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
}

impl Call {
    /// `message` is `KEYS[2]`: the delivery's hash, or the prefix of all of them.
    fn new(
        script: &'static Script,
        endpoint_id: &str,
        message: String,
        dedup: Option<&DeliveryKeys>,
    ) -> Call {
        let keys = QueueKeys::new(endpoint_id);
        let mut all = vec![
            keys.stream(),
            message,
            keys.stats(),
            keys.due(),
            keys.dead(),
            keys.received(),
        ];
        if let Some(dedup) = dedup {
            all.extend(dedup.as_slice().iter().cloned());
        }
        Call {
            script,
            keys: all,
            args: Vec::new(),
        }
    }

    fn arg(mut self, arg: impl ToRedisArgs) -> Call {
        arg.write_redis_args(&mut self.args);
        self
    }

    /// `EVALSHA`, for a pipeline.
    fn evalsha(&self) -> Cmd {
        let mut cmd = ::redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash())
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        cmd
    }
}

/// An admission waiting for the group commit.
struct Pending {
    endpoint_id: String,
    call: Cmd,
    reply: oneshot::Sender<Result<Admitted, AdmitError>>,
}

/// The queue operations of the Redis store.
pub(crate) struct RedisQueue {
    store: RedisStore,
    durability: Arc<Durability>,
    committer: mpsc::Sender<Pending>,
}

/// What the store can promise, probed when the connection comes up.
struct Durability {
    promise: RwLock<Promise>,
    /// A probe asked for by a failed `WAITAOF` is under way.
    reprobing: AtomicBool,
}

impl RedisQueue {
    /// Installs the durability probe on the store's connection and starts the group-commit
    /// task (it ends with the queue). Called inside a Tokio runtime (as the store was).
    pub(crate) fn new(store: &RedisStore) -> RedisQueue {
        let durability = Arc::new(Durability {
            promise: RwLock::new(Promise::Unknown),
            reprobing: AtomicBool::new(false),
        });
        let hook_durability = Arc::clone(&durability);
        let hook: ConnectHook = Box::new(move |fresh| {
            let durability = Arc::clone(&hook_durability);
            Box::pin(async move { durability.probe(&fresh, true).await })
        });
        store.on_connect(hook);
        let (committer, pending) = mpsc::channel(BACKLOG);
        tokio::spawn(group_commit(
            store.clone(),
            Arc::clone(&durability),
            pending,
        ));
        RedisQueue {
            store: store.clone(),
            durability,
            committer,
        }
    }

    pub(crate) fn promise(&self) -> Promise {
        self.durability.get()
    }

    pub(crate) async fn admit(
        &self,
        admission: &Admission,
        durability: hookguard_api::Durability,
        deadline: Duration,
    ) -> Result<Admitted, AdmitError> {
        let request = &admission.request;
        let call = Call::new(
            &SCRIPTS.admit,
            &admission.endpoint_id,
            QueueKeys::new(&admission.endpoint_id).message(&admission.delivery_id),
            Some(&admission.dedup),
        )
        .arg(&admission.delivery_id)
        .arg(admission.max_queued)
        .arg(admission.max_queued_bytes)
        .arg(request.size())
        .arg(&request.path_and_query)
        .arg(request.headers.as_ref())
        .arg(request.body.as_ref())
        .arg(admission.received_at_ms)
        .arg(admission.body_sha256.map(hex::encode).unwrap_or_default());
        // An endpoint that accepts memory durability does not wait for the disk.
        if self.promise() != Promise::WaitAof || durability == hookguard_api::Durability::Memory {
            // Under appendfsync always the reply waits for the fsync, which can stall for
            // longer than a dedup command may take: it gets the durability wait's bound too,
            // so a written delivery is rarely answered 503.
            let bound = if self.promise() == Promise::Fsync {
                deadline + DURABILITY_TIMEOUT
            } else {
                deadline
            };
            let outcome = tokio::time::timeout(bound, self.run(&call)).await;
            return match outcome {
                Err(_elapsed) => Err(StoreError::Timeout.into()),
                Ok(Ok(value)) => admitted(&value).map_err(|error| self.store.failed(error).into()),
                Ok(Err(error)) if is_oom(&error) => Ok(Admitted::Full),
                Ok(Err(error)) => Err(self.store.failed(error).into()),
            };
        }
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            endpoint_id: admission.endpoint_id.clone(),
            call: call.evalsha(),
            reply,
        };
        let wait = async {
            self.committer
                .send(pending)
                .await
                .map_err(|_closed| AdmitError::Store(closed()))?;
            answer
                .await
                .unwrap_or_else(|_dropped| Err(AdmitError::Store(closed())))
        };
        tokio::time::timeout(deadline + DURABILITY_TIMEOUT, wait)
            .await
            .unwrap_or(Err(AdmitError::Store(StoreError::Timeout)))
    }

    pub(crate) async fn take(
        &self,
        endpoint_id: &str,
        count: usize,
        lease: Duration,
        now_ms: u64,
    ) -> Result<Vec<Taken>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let call = Call::new(
            &SCRIPTS.take,
            endpoint_id,
            QueueKeys::new(endpoint_id).message(""),
            None,
        )
        .arg(count)
        .arg(millis(lease))
        .arg(now_ms)
        .arg(count.max(PROMOTE_LIMIT));
        let value = self.query(&call).await?;
        let rows = array(&value).map_err(|error| self.store.failed(error))?;
        rows.iter()
            .map(|row| taken(row).map_err(|error| self.store.failed(error)))
            .collect()
    }

    pub(crate) async fn commit(
        &self,
        endpoint_id: &str,
        taken: &Taken,
        window: Duration,
    ) -> Result<bool, StoreError> {
        let delivery = &taken.delivery;
        let call = Call::new(
            &SCRIPTS.commit,
            endpoint_id,
            QueueKeys::new(endpoint_id).message(&delivery.delivery_id),
            Some(&delivery.dedup_keys(endpoint_id)),
        )
        .arg(&taken.entry)
        .arg(millis(window))
        .arg(&delivery.delivery_id);
        Ok(self.query_int(&call).await? == 1)
    }

    pub(crate) async fn retry(
        &self,
        endpoint_id: &str,
        taken: &Taken,
        at_ms: u64,
        attempts: u32,
        last_error: &str,
    ) -> Result<(), StoreError> {
        let id = &taken.delivery.delivery_id;
        let call = Call::new(
            &SCRIPTS.retry,
            endpoint_id,
            QueueKeys::new(endpoint_id).message(id),
            None,
        )
        .arg(&taken.entry)
        .arg(at_ms)
        .arg(attempts)
        .arg(last_error)
        .arg(id);
        self.query_int(&call).await.map(drop)
    }

    pub(crate) async fn dead_letter(
        &self,
        endpoint_id: &str,
        taken: &Taken,
        attempts: u32,
        reason: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let id = &taken.delivery.delivery_id;
        let call = Call::new(
            &SCRIPTS.dead_letter,
            endpoint_id,
            QueueKeys::new(endpoint_id).message(id),
            None,
        )
        .arg(&taken.entry)
        .arg(attempts)
        .arg(reason)
        .arg(now_ms)
        .arg(id);
        self.query_int(&call).await.map(drop)
    }

    pub(crate) async fn stats(&self, endpoint_id: &str) -> Result<QueueStats, StoreError> {
        let call = Call::new(
            &SCRIPTS.stats,
            endpoint_id,
            QueueKeys::new(endpoint_id).message(""),
            None,
        );
        let value = self.query(&call).await?;
        stats(&value).map_err(|error| self.store.failed(error))
    }

    pub(crate) async fn dead_letters(
        &self,
        endpoint_id: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let call = Call::new(
            &SCRIPTS.dead_letters,
            endpoint_id,
            QueueKeys::new(endpoint_id).message(""),
            None,
        )
        .arg(after.unwrap_or(""))
        .arg(count);
        let value = self.query(&call).await?;
        let rows = array(&value).map_err(|error| self.store.failed(error))?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let row = array(row).ok()?;
                Some(DeadLetter {
                    delivery_id: text(row.first()),
                    reason: text(row.get(1)),
                    failed_at_ms: number(row.get(2)),
                    received_at_ms: number(row.get(3)),
                    attempts: number(row.get(4)),
                    size: number(row.get(5)),
                })
            })
            .collect())
    }

    pub(crate) async fn dead_letter_of(
        &self,
        endpoint_id: &str,
        delivery_id: &str,
    ) -> Result<Option<(DeadLetter, QueuedDelivery)>, StoreError> {
        // One HMGET is atomic on its own; no script needed to read one hash.
        let mut cmd = ::redis::cmd("HMGET");
        cmd.arg(QueueKeys::new(endpoint_id).message(delivery_id))
            .arg(&[
                "dead_entry",
                "reason",
                "failed_at",
                "received_at",
                "attempts",
                "size",
                "path",
                "headers",
                "body",
                "body_sha256",
                "replayed",
                "last_error",
            ]);
        let value = self.command(&cmd).await?;
        let fields = array(&value).map_err(|error| self.store.failed(error))?;
        if bytes(fields.first()).is_empty() {
            return Ok(None);
        }
        let received_at_ms = number(fields.get(3));
        let attempts = number(fields.get(4));
        let letter = DeadLetter {
            delivery_id: delivery_id.to_owned(),
            reason: text(fields.get(1)),
            failed_at_ms: number(fields.get(2)),
            received_at_ms,
            attempts,
            size: number(fields.get(5)),
        };
        let delivery = QueuedDelivery {
            delivery_id: delivery_id.to_owned(),
            request: StoredRequest {
                path_and_query: text(fields.get(6)),
                headers: bytes(fields.get(7)).to_vec().into(),
                body: bytes(fields.get(8)).to_vec().into(),
            },
            received_at_ms,
            attempts,
            body_sha256: sha256(fields.get(9)),
            replayed: bytes(fields.get(10)) == b"1",
            last_error: text(fields.get(11)),
        };
        Ok(Some((letter, delivery)))
    }

    pub(crate) async fn replay(
        &self,
        endpoint_id: &str,
        delivery_id: &str,
    ) -> Result<bool, StoreError> {
        let call = Call::new(
            &SCRIPTS.replay,
            endpoint_id,
            QueueKeys::new(endpoint_id).message(delivery_id),
            None,
        )
        .arg(delivery_id);
        Ok(self.query_int(&call).await? == 1)
    }

    pub(crate) async fn purge(
        &self,
        endpoint_id: &str,
        delivery_id: &str,
        window: Duration,
    ) -> Result<bool, StoreError> {
        let message = QueueKeys::new(endpoint_id).message(delivery_id);
        // The dedup keys depend on the stored body hash: read it, then let the script check
        // it is still the same (it never changes while the message exists).
        for _ in 0..3 {
            let mut cmd = ::redis::cmd("HMGET");
            cmd.arg(&message).arg(&["dead_entry", "body_sha256"]);
            let value = self.command(&cmd).await?;
            let fields = array(&value).map_err(|error| self.store.failed(error))?;
            if bytes(fields.first()).is_empty() {
                return Ok(false);
            }
            let hash = sha256(fields.get(1));
            let keys = DeliveryKeys::new(endpoint_id, delivery_id, hash.as_ref());
            let call = Call::new(&SCRIPTS.purge, endpoint_id, message.clone(), Some(&keys))
                .arg(delivery_id)
                .arg(millis(window))
                .arg(bytes(fields.get(1)));
            match self.query_int(&call).await? {
                1 => return Ok(true),
                0 => return Ok(false),
                _ => {}
            }
        }
        Ok(false)
    }

    /// Runs a script on the shared connection: `EVALSHA`, loading it on `NOSCRIPT`.
    async fn run(&self, call: &Call) -> RedisResult<Value> {
        let mut conn = self.store.connection().map_err(into_redis_error)?;
        let mut invocation = call.script.prepare_invoke();
        for key in &call.keys {
            invocation.key(key);
        }
        for arg in &call.args {
            invocation.arg(arg.as_slice());
        }
        invocation.invoke_async(&mut conn).await
    }

    async fn query(&self, call: &Call) -> Result<Value, StoreError> {
        self.run(call)
            .await
            .map_err(|error| self.store.failed(error))
    }

    async fn query_int(&self, call: &Call) -> Result<i64, StoreError> {
        match self.query(call).await? {
            Value::Int(n) => Ok(n),
            other => Err(self.store.failed(unexpected("an integer", &other))),
        }
    }

    async fn command(&self, cmd: &Cmd) -> Result<Value, StoreError> {
        let mut conn = self.store.connection()?;
        cmd.query_async(&mut conn)
            .await
            .map_err(|error| self.store.failed(error))
    }
}

impl Durability {
    fn get(&self) -> Promise {
        self.promise
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, promise: Promise) {
        let mut current = self.promise.write().unwrap_or_else(PoisonError::into_inner);
        if *current != promise {
            if let Promise::Memory(_) = &promise {
                tracing::warn!(promise = promise.label(), "queue durability: {promise}");
            } else {
                tracing::info!(promise = promise.label(), "queue durability: {promise}");
            }
        }
        *current = promise;
    }

    /// Probes again in the background (once at a time), after the store broke its promise.
    fn reprobe(self: &Arc<Self>, store: &RedisStore) {
        if self.reprobing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (durability, store) = (Arc::clone(self), store.clone());
        tokio::spawn(async move {
            durability.probe(&store, false).await;
            durability.reprobing.store(false, Ordering::Release);
        });
    }

    /// Loads the scripts (when `load`) and probes what the store can promise; `false` if the
    /// store did not answer (the promise is then unknown).
    async fn probe(&self, store: &RedisStore, load: bool) -> bool {
        let work = async {
            if load {
                for script in SCRIPTS.all() {
                    store.load_script(script).await?;
                }
            }
            probe(store).await
        };
        match tokio::time::timeout(PROBE_TIMEOUT, work).await {
            Ok(Ok(promise)) => {
                self.set(promise);
                true
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot probe the queue's durability; will try again");
                self.set(Promise::Unknown);
                false
            }
            Err(_elapsed) => {
                tracing::warn!("probing the queue's durability timed out; will try again");
                self.set(Promise::Unknown);
                false
            }
        }
    }
}

/// What the server (every primary of a cluster) promises.
async fn probe(store: &RedisStore) -> RedisResult<Promise> {
    let ask = async |cmd: Cmd| -> RedisResult<HashMap<String, RedisResult<Value>>> {
        Ok(store.each_primary(cmd).await?.into_iter().collect())
    };
    let info = ask(::redis::cmd("INFO").arg("server").clone()).await?;
    let appendonly = ask(config_get("appendonly")).await?;
    let appendfsync = ask(config_get("appendfsync")).await?;
    let on_rewrite = ask(config_get("no-appendfsync-on-rewrite")).await?;
    // With CONFIG, `WAITAOF 0 0 0` only shows the command exists and returns at once; without
    // it, only a real wait tells whether AOF is on (WAITAOF refuses numlocal 1 otherwise).
    let config_known = appendonly
        .values()
        .all(|reply| config_value(reply).is_some());
    let mut waitaof = ::redis::cmd("WAITAOF");
    if config_known {
        waitaof.arg(0).arg(0).arg(0);
    } else {
        waitaof.arg(1).arg(0).arg(PROBE_WAITAOF_MS);
    }
    let waitaof = ask(waitaof).await?;
    let mut verdicts = Vec::new();
    for (node, info) in &info {
        let get = |replies: &HashMap<String, RedisResult<Value>>| {
            replies.get(node).and_then(config_value)
        };
        let server = match info {
            Ok(value) => server_name(&String::from_utf8_lossy(bytes(Some(value)))),
            Err(_) => "the redis server".to_owned(),
        };
        let probe = NodeProbe {
            server,
            appendonly: get(&appendonly),
            appendfsync: get(&appendfsync),
            no_appendfsync_on_rewrite: get(&on_rewrite),
            waitaof: match waitaof.get(node) {
                Some(Ok(_)) => WaitAof::Works,
                Some(Err(error)) => WaitAof::from_error(error),
                None => WaitAof::Refused("no answer".to_owned()),
            },
        };
        verdicts.push((node.clone(), probe.verdict()));
    }
    Ok(combine(&verdicts))
}

fn config_get(name: &str) -> Cmd {
    let mut cmd = ::redis::cmd("CONFIG");
    cmd.arg("GET").arg(name);
    cmd
}

/// The value of a `CONFIG GET <name>` reply: `[name, value]` (RESP2) or a map (RESP3).
fn config_value(reply: &RedisResult<Value>) -> Option<String> {
    match reply.as_ref().ok()? {
        Value::Array(items) => items.get(1).map(|v| text(Some(v))),
        Value::Map(pairs) => pairs.first().map(|(_, v)| text(Some(v))),
        _ => None,
    }
}

/// `redis 7.0.15` or `valkey 8.0.1`, from `INFO server`.
fn server_name(info: &str) -> String {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    match (field("server_name"), field("valkey_version")) {
        (Some(name), Some(version)) => format!("{name} {version}"),
        (Some(name), None) => format!("{name} {}", field("redis_version").unwrap_or("")),
        (None, _) => format!(
            "redis {}",
            field("redis_version").unwrap_or("(unknown version)")
        ),
    }
}

/// How one server answered `WAITAOF`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum WaitAof {
    Works,
    /// Redis before 7.2.
    Missing,
    /// AOF is off (only seen where `CONFIG` is refused, with numlocal 1).
    AofOff,
    /// Any other refusal (a replica, an ACL), with the server's words.
    Refused(String),
}

impl WaitAof {
    fn from_error(error: &RedisError) -> WaitAof {
        let text = error.to_string();
        if text.contains("unknown command") {
            WaitAof::Missing
        } else if text.contains("appendonly is disabled") {
            WaitAof::AofOff
        } else {
            WaitAof::Refused(text)
        }
    }
}

/// What one server said about its persistence.
#[derive(Debug, Clone)]
struct NodeProbe {
    /// `redis 7.0.15`.
    server: String,
    /// `None`: `CONFIG GET` refused (managed Redis).
    appendonly: Option<String>,
    appendfsync: Option<String>,
    no_appendfsync_on_rewrite: Option<String>,
    waitaof: WaitAof,
}

impl NodeProbe {
    fn verdict(&self) -> Promise {
        let server = &self.server;
        let aof = self.appendonly.as_deref();
        let fsync = self.appendfsync.as_deref();
        let skips_on_rewrite = self.no_appendfsync_on_rewrite.as_deref() == Some("yes");
        if aof == Some("yes") && fsync == Some("always") && !skips_on_rewrite {
            return Promise::Fsync;
        }
        let why = match (&self.waitaof, aof) {
            (WaitAof::Works, Some("yes") | None) => return Promise::WaitAof,
            (WaitAof::Works | WaitAof::AofOff, _) => format!(
                "{server} has appendonly no; set appendonly yes (WAITAOF then confirms each \
                 delivery on disk; appendfsync always does too)"
            ),
            (WaitAof::Missing, Some("yes")) if fsync == Some("always") => format!(
                "{server} has no-appendfsync-on-rewrite yes (no fsync during AOF rewrites) and no \
                 WAITAOF (7.2+); set no-appendfsync-on-rewrite no, or use Redis/Valkey 7.2+"
            ),
            (WaitAof::Missing, Some("yes")) => format!(
                "{server} has appendfsync {} and no WAITAOF (7.2+); set appendfsync always, or \
                 use Redis/Valkey 7.2+ with AOF on",
                fsync.unwrap_or("(unknown)")
            ),
            (WaitAof::Missing, Some(_)) => format!(
                "{server} has appendonly no and no WAITAOF (7.2+); set appendonly yes and \
                 appendfsync always, or use Redis/Valkey 7.2+ with AOF on"
            ),
            (WaitAof::Missing, None) => format!(
                "{server} refuses CONFIG GET and has no WAITAOF (7.2+), so nothing confirms its \
                 fsync policy; use Redis/Valkey 7.2+ with AOF on, or allow CONFIG GET and set \
                 appendfsync always"
            ),
            (WaitAof::Refused(error), _) => format!(
                "{server} refuses WAITAOF ({error}) and does not have appendonly yes with \
                 appendfsync always; point the sidecar at a primary with AOF on"
            ),
        };
        Promise::Memory(why)
    }
}

/// One promise for all primaries: the weakest.
fn combine(verdicts: &[(String, Promise)]) -> Promise {
    // Primaries with the same reason are named together, in the order they answered.
    let mut weak: Vec<(Vec<&str>, &str)> = Vec::new();
    for (node, promise) in verdicts {
        if let Promise::Memory(why) = promise {
            match weak.iter_mut().find(|(_, reason)| reason == why) {
                Some((nodes, _)) => nodes.push(node),
                None => weak.push((vec![node.as_str()], why.as_str())),
            }
        }
    }
    if !weak.is_empty() {
        let parts: Vec<String> = weak
            .iter()
            .map(|(nodes, why)| match nodes.as_slice() {
                [""] => (*why).to_owned(),
                [node] => format!("primary {node}: {why}"),
                nodes => format!("primaries {}: {why}", nodes.join(", ")),
            })
            .collect();
        return Promise::Memory(parts.join("; "));
    }
    if verdicts.is_empty() {
        return Promise::Memory("no Redis Cluster primary answered the durability probe".into());
    }
    if verdicts
        .iter()
        .all(|(_, promise)| *promise == Promise::Fsync)
    {
        Promise::Fsync
    } else {
        Promise::WaitAof
    }
}

/// The group commit: takes everything waiting (up to [`BATCH`]), sends it with one `WAITAOF`
/// on a connection of its own, and answers each. On a cluster, one pipeline per endpoint (the
/// pipeline goes to the node owning its slot), run concurrently.
async fn group_commit(
    store: RedisStore,
    durability: Arc<Durability>,
    mut pending: mpsc::Receiver<Pending>,
) {
    let mut conn: Option<Conn> = None;
    let mut batch = Vec::with_capacity(BATCH);
    while pending.recv_many(&mut batch, BATCH).await > 0 {
        // A caller that gave up is not written at all.
        batch.retain(|admit: &Pending| !admit.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let current = match &conn {
            Some(current) => current.clone(),
            None => match store.dedicated_connection().await {
                Ok(fresh) => {
                    conn = Some(fresh.clone());
                    fresh
                }
                Err(error) => {
                    let error = store.failed(error);
                    for admit in batch.drain(..) {
                        let _ = admit.reply.send(Err(AdmitError::Store(copy(&error))));
                    }
                    continue;
                }
            },
        };
        if store.is_cluster() {
            let mut groups: HashMap<String, Vec<Pending>> = HashMap::new();
            for admit in batch.drain(..) {
                groups
                    .entry(admit.endpoint_id.clone())
                    .or_default()
                    .push(admit);
            }
            let mut runs = tokio::task::JoinSet::new();
            for group in groups.into_values() {
                runs.spawn(commit_group(
                    current.clone(),
                    store.clone(),
                    Arc::clone(&durability),
                    group,
                ));
            }
            while let Some(run) = runs.join_next().await {
                if !run.unwrap_or(true) {
                    conn = None;
                }
            }
        } else {
            let group = std::mem::take(&mut batch);
            if !commit_group(current, store.clone(), Arc::clone(&durability), group).await {
                conn = None;
            }
        }
    }
}

/// One pipeline `[admit × n, WAITAOF 1 0 <ms>]`, answered per admission. Admissions Redis
/// refused with `NOSCRIPT` (it restarted and lost the scripts; nothing ran) are sent once more.
/// `false` when the connection failed: the next batch makes a new one (a connection whose
/// handshake failed would otherwise stay broken).
async fn commit_group(
    mut conn: Conn,
    store: RedisStore,
    durability: Arc<Durability>,
    mut group: Vec<Pending>,
) -> bool {
    for round in 0..2 {
        let mut pipe = ::redis::pipe();
        pipe.ignore_errors();
        for admit in &group {
            pipe.add_command(admit.call.clone());
        }
        pipe.cmd("WAITAOF")
            .arg(1)
            .arg(0)
            .arg(millis(DURABILITY_TIMEOUT));
        let sent = tokio::time::timeout(
            DURABILITY_TIMEOUT * 2,
            pipe.query_async::<Vec<RedisResult<Value>>>(&mut conn),
        )
        .await;
        let mut replies = match sent {
            Ok(Ok(replies)) if replies.len() == group.len() + 1 => replies,
            Ok(Ok(replies)) => {
                let error = unexpected(
                    "one reply per command",
                    &Value::Array(replies.into_iter().filter_map(Result::ok).collect()),
                );
                answer_all(group, &store.failed(error));
                return true;
            }
            Ok(Err(error)) => {
                answer_all(group, &store.failed(error));
                return false;
            }
            Err(_elapsed) => {
                answer_all(group, &StoreError::Timeout);
                return true;
            }
        };
        let on_disk = match replies.pop() {
            Some(Ok(Value::Array(counts))) => {
                matches!(counts.first(), Some(Value::Int(n)) if *n >= 1)
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "WAITAOF failed; probing the queue's durability again");
                durability.reprobe(&store);
                false
            }
            Some(Ok(_)) | None => false,
        };
        let mut again = Vec::new();
        for (admit, reply) in group.into_iter().zip(replies) {
            let outcome = match reply {
                Ok(value) => match admitted(&value) {
                    Ok(Admitted::Queued) if !on_disk => Err(AdmitError::NotOnDisk),
                    Ok(outcome) => Ok(outcome),
                    Err(error) => Err(AdmitError::Store(store.failed(error))),
                },
                Err(error) if is_oom(&error) => Ok(Admitted::Full),
                Err(error) if round == 0 && is_noscript(&error) => {
                    again.push(admit);
                    continue;
                }
                Err(error) => Err(AdmitError::Store(store.failed(error))),
            };
            let _ = admit.reply.send(outcome);
        }
        if again.is_empty() {
            return true;
        }
        if let Err(error) = SCRIPTS.admit.load_async(&mut conn).await {
            answer_all(again, &store.failed(error));
            return true;
        }
        group = again;
    }
    true
}

fn answer_all(group: Vec<Pending>, error: &StoreError) {
    for admit in group {
        let _ = admit.reply.send(Err(AdmitError::Store(copy(error))));
    }
}

/// A `StoreError` for each of several callers (it holds a `RedisError`, which is not `Clone`).
fn copy(error: &StoreError) -> StoreError {
    match error {
        StoreError::Timeout => StoreError::Timeout,
        StoreError::Unavailable(inner) => StoreError::Unavailable(RedisError::from((
            inner.kind(),
            "redis command failed",
            inner.to_string(),
        ))),
        other => StoreError::Unavailable(RedisError::from((
            ErrorKind::Client,
            "redis command failed",
            other.to_string(),
        ))),
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable(RedisError::from((
        ErrorKind::Client,
        "the queue's group commit has stopped",
    )))
}

fn into_redis_error(error: StoreError) -> RedisError {
    match error {
        StoreError::Unavailable(inner) => inner,
        other => RedisError::from((ErrorKind::Io, "redis unavailable", other.to_string())),
    }
}

fn is_oom(error: &RedisError) -> bool {
    error.code() == Some("OOM")
}

fn is_noscript(error: &RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

fn unexpected(what: &'static str, value: &Value) -> RedisError {
    RedisError::from((
        ErrorKind::Parse,
        "unexpected reply from a queue script",
        format!("expected {what}, got {value:?}"),
    ))
}

fn admitted(value: &Value) -> RedisResult<Admitted> {
    match value {
        Value::Int(0) => Ok(Admitted::Queued),
        Value::Int(1) => Ok(Admitted::Duplicate),
        Value::Int(2) => Ok(Admitted::InFlight),
        Value::Int(3) => Ok(Admitted::Full),
        other => Err(unexpected("an admission outcome", other)),
    }
}

fn array(value: &Value) -> RedisResult<&[Value]> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(&[]),
        other => Err(unexpected("an array", other)),
    }
}

/// A bulk string's bytes; empty for nil or anything else.
fn bytes(value: Option<&Value>) -> &[u8] {
    match value {
        Some(Value::BulkString(bytes)) => bytes,
        Some(Value::SimpleString(text)) => text.as_bytes(),
        _ => &[],
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::Int(n)) => n.to_string(),
        value => String::from_utf8_lossy(bytes(value)).into_owned(),
    }
}

/// A stored number; 0 when missing. Sorted-set scores may come back as `1.5e12`-style text.
fn number<T: TryFrom<u64> + Default>(value: Option<&Value>) -> T {
    let n = match value {
        Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
        value => {
            let text = String::from_utf8_lossy(bytes(value)).into_owned();
            text.parse::<u64>().unwrap_or_else(|_| {
                let float = text.parse::<f64>().unwrap_or(0.0);
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                // Non-negative Unix ms, exact below 2^53.
                let whole = float.max(0.0) as u64;
                whole
            })
        }
    };
    T::try_from(n).unwrap_or_default()
}

fn optional_number(value: Option<&Value>) -> Option<u64> {
    match value {
        None | Some(Value::Nil) => None,
        Some(Value::BulkString(b)) if b.is_empty() => None,
        value => Some(number(value)),
    }
}

fn sha256(value: Option<&Value>) -> Option<[u8; 32]> {
    hex::decode(bytes(value)).ok()?.try_into().ok()
}

fn taken(row: &Value) -> RedisResult<Taken> {
    let row = array(row)?;
    if row.len() < 10 {
        return Err(unexpected("a taken delivery", &Value::Array(row.to_vec())));
    }
    Ok(Taken {
        entry: text(row.first()),
        delivery: QueuedDelivery {
            delivery_id: text(row.get(1)),
            request: StoredRequest {
                path_and_query: text(row.get(2)),
                headers: bytes(row.get(3)).to_vec().into(),
                body: bytes(row.get(4)).to_vec().into(),
            },
            received_at_ms: number(row.get(5)),
            attempts: number(row.get(6)),
            body_sha256: sha256(row.get(7)),
            replayed: bytes(row.get(8)) == b"1",
            last_error: text(row.get(9)),
        },
    })
}

fn stats(value: &Value) -> RedisResult<QueueStats> {
    let row = array(value)?;
    if row.len() < 8 {
        return Err(unexpected("queue stats", value));
    }
    let length: u64 = number(row.first());
    let in_flight: u64 = number(row.get(1));
    Ok(QueueStats {
        ready: length.saturating_sub(in_flight),
        in_flight,
        scheduled: number(row.get(2)),
        dead: number(row.get(3)),
        held: number(row.get(4)),
        held_bytes: number(row.get(5)),
        oldest_received_ms: optional_number(row.get(6)),
        oldest_dead_ms: optional_number(row.get(7)),
    })
}

impl fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisQueue")
            .field("promise", &self.durability.get().label())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(appendonly: Option<&str>, appendfsync: Option<&str>, waitaof: WaitAof) -> NodeProbe {
        NodeProbe {
            server: "redis 7.0.15".to_owned(),
            appendonly: appendonly.map(str::to_owned),
            appendfsync: appendfsync.map(str::to_owned),
            no_appendfsync_on_rewrite: appendonly.map(|_| "no".to_owned()),
            waitaof,
        }
    }

    #[test]
    fn verdicts_follow_the_fsync_policy_and_waitaof() {
        let fsync = node(Some("yes"), Some("always"), WaitAof::Missing);
        assert_eq!(fsync.verdict(), Promise::Fsync);
        let everysec = node(Some("yes"), Some("everysec"), WaitAof::Works);
        assert_eq!(everysec.verdict(), Promise::WaitAof);
        // Managed Redis without CONFIG: WAITAOF with numlocal 1 answered, so AOF is on.
        assert_eq!(node(None, None, WaitAof::Works).verdict(), Promise::WaitAof);
        let Promise::Memory(why) = node(Some("no"), Some("always"), WaitAof::Missing).verdict()
        else {
            panic!("expected memory");
        };
        assert!(
            why.starts_with("redis 7.0.15 has appendonly no and no WAITAOF"),
            "{why}"
        );
        let Promise::Memory(why) = node(Some("yes"), Some("everysec"), WaitAof::Missing).verdict()
        else {
            panic!("expected memory");
        };
        assert!(why.contains("appendfsync everysec"), "{why}");
        assert!(matches!(
            node(None, None, WaitAof::AofOff).verdict(),
            Promise::Memory(_)
        ));
        assert!(matches!(
            node(None, None, WaitAof::Missing).verdict(),
            Promise::Memory(_)
        ));
        let mut rewrite = node(Some("yes"), Some("always"), WaitAof::Missing);
        rewrite.no_appendfsync_on_rewrite = Some("yes".to_owned());
        assert!(matches!(rewrite.verdict(), Promise::Memory(_)));
    }

    #[test]
    fn a_cluster_promises_what_its_weakest_primary_does() {
        let fsync = ("a:1".to_owned(), Promise::Fsync);
        let wait = ("b:2".to_owned(), Promise::WaitAof);
        let memory = ("c:3".to_owned(), Promise::Memory("x".to_owned()));
        assert_eq!(combine(std::slice::from_ref(&fsync)), Promise::Fsync);
        assert_eq!(combine(&[fsync.clone(), wait.clone()]), Promise::WaitAof);
        assert_eq!(
            combine(&[fsync, wait, memory.clone()]),
            Promise::Memory("primary c:3: x".to_owned())
        );
        let same = ("d:4".to_owned(), Promise::Memory("x".to_owned()));
        let other = ("e:5".to_owned(), Promise::Memory("y".to_owned()));
        assert_eq!(
            combine(&[memory, same, other]),
            Promise::Memory("primaries c:3, d:4: x; primary e:5: y".to_owned())
        );
        assert!(matches!(combine(&[]), Promise::Memory(_)));
    }

    #[test]
    fn server_names_come_from_info() {
        assert_eq!(
            server_name("# Server\r\nredis_version:7.0.15\r\n"),
            "redis 7.0.15"
        );
        assert_eq!(
            server_name("redis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.0.1\r\n"),
            "valkey 8.0.1"
        );
    }
}
