//! The delivery log: one line of metadata per answer and per queued attempt, for
//! `GET /deliveries` ([`hookguard_api::admin`]) and `hookguard tail`.
//!
//! The request path only builds an [`Entry`] (no formatting, no store call) and hands it to a
//! bounded channel with `try_send`; when the channel is full the entry is dropped and counted
//! (`hookguard_delivery_log_dropped_total{reason="full"}`). A background writer drains the
//! channel in batches: with Redis it pipelines `XADD … MAXLEN ~ <max>` per record and one
//! `XTRIM … MINID <now - max age>` per endpoint and batch into the endpoint's stream
//! `hg:{<endpoint_id>}:log` (under the endpoint's hash tag, so one Cluster slot holds it
//! with the endpoint's other keys), shared by every replica; a failed write drops the batch
//! and counts it (`reason="store_error"`), and never changes an answer. Records of requests
//! that were not verified (bad or missing signature, stale timestamp, too large, wrong method)
//! are kept in this sidecar's own ring only, even with Redis: nothing touches the shared store
//! before the signature and timestamp pass. The in-memory store keeps everything in that ring,
//! bounded by the same count and age.
//!
//! A record holds metadata only: never a body, a signature, a header value or a secret.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hookguard_api::admin::{DeliveryPage, DeliveryRecord, MAX_PAGE, RecordKind};
use prometheus_client::metrics::counter::Counter;
use redis::Value;
use tokio::sync::mpsc;

use crate::config::Endpoint;
use crate::dedup::{Store, StoreError};

/// Entries waiting for the writer; past this the request path drops them.
const CHANNEL_CAPACITY: usize = 8192;
/// Most entries one write pipelines.
const BATCH: usize = 256;
/// Bounds one batch write; the writer is off the request path, so it may take longer than a
/// request's store command, but a stalled store must not hold the batch forever.
const WRITE_DEADLINE: Duration = Duration::from_secs(2);
/// After the first entry of a batch, how long the writer gathers more before writing: under
/// load one pipelined write per this interval instead of one round trip per delivery (the
/// bench measured the latter at about 12 µs of sidecar CPU per delivery); when idle, the
/// delay before a record shows in `/deliveries`.
const LINGER: Duration = Duration::from_millis(10);
/// How often a stream is trimmed by age (`XTRIM MINID`); reads skip older records meanwhile,
/// and the count bound is applied on every `XADD`.
const TRIM_EVERY_MS: i64 = 1000;
/// Longest event type kept; a sender's longer value is cut.
const MAX_EVENT_TYPE: usize = 128;

/// The log's bounds and this sidecar's name in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Most records kept per endpoint; 0 turns the log off.
    pub max_records: usize,
    /// Oldest record kept.
    pub max_age: Duration,
    /// This sidecar's instance name: the pod name, else `<host name>-<process ID>`.
    pub instance: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            max_records: 10_000,
            max_age: Duration::from_secs(24 * 3600),
            instance: default_instance(),
        }
    }
}

/// `<host name>-<process ID>`: the instance name when `POD_NAME` is unset.
pub fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "sidecar".to_owned());
    format!("{host}-{}", std::process::id())
}

/// The Redis stream of an endpoint's log.
pub fn log_key(endpoint_id: &str) -> String {
    format!("hg:{{{endpoint_id}}}:log")
}

/// One record as the request path or a worker hands it over: owned parts it already has,
/// nothing formatted yet.
#[derive(Debug)]
pub struct Entry {
    /// The endpoint (its name and ID are read by the writer).
    pub endpoint: Arc<Endpoint>,
    /// A request or a queued attempt.
    pub kind: RecordKind,
    /// The request passed signature and timestamp checks: it may go to the shared store.
    pub verified: bool,
    /// When it was answered or settled, Unix ms.
    pub at_ms: i64,
    /// The delivery ID, once verified.
    pub delivery_id: Option<String>,
    /// The event type, once verified.
    pub event_type: Option<String>,
    /// The outcome label.
    pub outcome: &'static str,
    /// The reason, where the outcome alone does not say.
    pub reason: Option<Cow<'static, str>>,
    /// The status answered (request) or the app's (attempt; 0 without an answer).
    pub status: u16,
    /// Microseconds from arrival to answer, or the attempt's duration.
    pub latency_us: u64,
    /// Queue mode: the attempt number.
    pub attempt: Option<u32>,
}

/// A [`DeliveryRecord`] borrowed from an [`Entry`], for the JSON stored in Redis: the same
/// fields and names, without copying each into a new `String` first.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordRef<'a> {
    at_ms: i64,
    endpoint: &'a str,
    instance: &'a str,
    kind: RecordKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_type: Option<&'a str>,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    status: u16,
    latency_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
}

impl Entry {
    /// Writes the record's JSON into `out` (cleared first).
    fn write_json(&self, instance: &str, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        out.clear();
        let event_type = self
            .event_type
            .as_deref()
            .map(|t| &t[..floor_char_boundary(t, MAX_EVENT_TYPE)]);
        serde_json::to_writer(
            out,
            &RecordRef {
                at_ms: self.at_ms,
                endpoint: &self.endpoint.name,
                instance,
                kind: self.kind,
                delivery_id: self.delivery_id.as_deref(),
                event_type,
                outcome: self.outcome,
                reason: self.reason.as_deref(),
                status: self.status,
                latency_us: self.latency_us,
                attempt: self.attempt,
            },
        )
    }

    fn into_record(self, instance: &str) -> DeliveryRecord {
        DeliveryRecord {
            at_ms: self.at_ms,
            endpoint: self.endpoint.name.clone(),
            instance: instance.to_owned(),
            kind: self.kind,
            delivery_id: self.delivery_id,
            event_type: self.event_type.map(|mut t| {
                t.truncate(floor_char_boundary(&t, MAX_EVENT_TYPE));
                t
            }),
            outcome: self.outcome.to_owned(),
            reason: self.reason.map(Cow::into_owned),
            status: self.status,
            latency_us: self.latency_us,
            attempt: self.attempt,
        }
    }
}

/// The handle the request path and the workers record through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DeliveryLog {
    tx: Option<mpsc::Sender<Entry>>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    settings: LogSettings,
    /// The local ring: everything with the in-memory store, unverified requests with Redis.
    local: Mutex<Rings>,
    dropped_full: Counter,
    dropped_store: Counter,
    /// Whether records of verified requests go to Redis.
    redis: bool,
}

#[derive(Debug, Default)]
struct Rings {
    next: u64,
    by_endpoint: HashMap<String, VecDeque<(u64, DeliveryRecord)>>,
}

impl DeliveryLog {
    /// A log writing through `store`, bounded by `settings`; `dropped` are the counters of
    /// [`crate::metrics::Metrics::delivery_log_dropped`]. Starts the writer if a Tokio runtime
    /// runs (else, and when the log is off, records are not kept).
    pub fn new(settings: LogSettings, store: &Store, dropped: (Counter, Counter)) -> DeliveryLog {
        let shared = Arc::new(Shared {
            redis: store.redis_store().is_some(),
            settings,
            local: Mutex::new(Rings::default()),
            dropped_full: dropped.0,
            dropped_store: dropped.1,
        });
        let tx = (shared.settings.max_records > 0 && tokio::runtime::Handle::try_current().is_ok())
            .then(|| {
                let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
                tokio::spawn(write(rx, Arc::clone(&shared), store.clone()));
                tx
            });
        DeliveryLog { tx, shared }
    }

    /// This sidecar's instance name.
    pub fn instance(&self) -> &str {
        &self.shared.settings.instance
    }

    /// Whether records are kept.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Hands `entry` to the writer; never waits. A full channel drops it and counts it.
    pub fn record(&self, entry: Entry) {
        if let Some(tx) = &self.tx
            && tx.try_send(entry).is_err()
        {
            self.shared.dropped_full.inc();
        }
    }

    /// A page of `endpoint`'s log after `after`, oldest first, at most `limit` records
    /// (capped at [`MAX_PAGE`]). With Redis the cursor is `<stream ID>/<local sequence>`,
    /// with the in-memory store `<sequence>`; an unreadable cursor reads from the start.
    pub async fn page(
        &self,
        store: &Store,
        endpoint: &Endpoint,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DeliveryPage, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let min_ms = now_ms().saturating_sub(
            i64::try_from(self.shared.settings.max_age.as_millis()).unwrap_or(i64::MAX),
        );
        if !self.shared.redis {
            let after = after.and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
            let (records, last) = self.local_page(&endpoint.name, after, limit, min_ms);
            return Ok(DeliveryPage {
                records: records.into_iter().map(|(_, r)| r).collect(),
                cursor: last.to_string(),
            });
        }
        let (stream_after, local_after) = parse_cursor(after);
        let remote = match store.redis_store() {
            Some(redis) => {
                let key = log_key(&endpoint.endpoint_id);
                let start = next_id(stream_after).max((u64::try_from(min_ms).unwrap_or(0), 0));
                let mut cmd = redis::cmd("XRANGE");
                cmd.arg(&key)
                    .arg(format!("{}-{}", start.0, start.1))
                    .arg("+")
                    .arg("COUNT")
                    .arg(limit);
                let mut conn = redis.connection()?;
                let reply = store
                    .bounded(async {
                        cmd.query_async::<Value>(&mut conn)
                            .await
                            .map_err(|error| redis.failed(error))
                    })
                    .await?;
                parse_range(reply)
            }
            None => Vec::new(),
        };
        let (local, _) = self.local_page(&endpoint.name, local_after, limit, min_ms);
        // Merge by time, the shared stream first on a tie; advance each cursor past what is
        // returned only.
        let (mut stream_cursor, mut local_cursor) = (stream_after, local_after);
        let mut records = Vec::with_capacity(limit.min(remote.len() + local.len()));
        let (mut remote, mut local) = (remote.into_iter().peekable(), local.into_iter().peekable());
        while records.len() < limit {
            let take_remote = match (remote.peek(), local.peek()) {
                (Some((_, r)), Some((_, l))) => r.at_ms <= l.at_ms,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_remote {
                if let Some((id, record)) = remote.next() {
                    stream_cursor = id;
                    records.push(record);
                }
            } else if let Some((seq, record)) = local.next() {
                local_cursor = seq;
                records.push(record);
            }
        }
        Ok(DeliveryPage {
            records,
            cursor: format!("{}-{}/{local_cursor}", stream_cursor.0, stream_cursor.1),
        })
    }

    fn local_page(
        &self,
        endpoint: &str,
        after: u64,
        limit: usize,
        min_ms: i64,
    ) -> (Vec<(u64, DeliveryRecord)>, u64) {
        let rings = self
            .shared
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut last = after;
        let records: Vec<(u64, DeliveryRecord)> = rings
            .by_endpoint
            .get(endpoint)
            .into_iter()
            .flatten()
            .filter(|(seq, record)| *seq > after && record.at_ms >= min_ms)
            .take(limit)
            .cloned()
            .collect();
        if let Some((seq, _)) = records.last() {
            last = *seq;
        }
        (records, last)
    }
}

impl Shared {
    fn push_local(&self, record: DeliveryRecord, now_ms: i64) {
        let min_ms = now_ms
            .saturating_sub(i64::try_from(self.settings.max_age.as_millis()).unwrap_or(i64::MAX));
        let mut rings = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        rings.next += 1;
        let seq = rings.next;
        let ring = match rings.by_endpoint.get_mut(&record.endpoint) {
            Some(ring) => ring,
            None => rings
                .by_endpoint
                .entry(record.endpoint.clone())
                .or_default(),
        };
        ring.push_back((seq, record));
        while ring.len() > self.settings.max_records
            || ring.front().is_some_and(|(_, r)| r.at_ms < min_ms)
        {
            ring.pop_front();
        }
    }
}

/// The writer: drains the channel in batches until every sender is gone.
async fn write(mut rx: mpsc::Receiver<Entry>, shared: Arc<Shared>, store: Store) {
    let mut json = Vec::with_capacity(512);
    let mut batch = Vec::with_capacity(BATCH);
    // The batch's records for Redis, grouped by endpoint ID: (its stream key, the records).
    let mut remote: Vec<(String, Vec<Entry>)> = Vec::new();
    let mut last_trim_ms = 0_i64;
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if batch.len() < BATCH {
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(entry) => batch.push(entry),
                    Err(_) => break,
                }
            }
        }
        let now = now_ms();
        let trim = now.saturating_sub(last_trim_ms) >= TRIM_EVERY_MS;
        if trim {
            last_trim_ms = now;
        }
        for entry in batch.drain(..) {
            if !(shared.redis && entry.verified) {
                shared.push_local(entry.into_record(&shared.settings.instance), now);
                continue;
            }
            let id = &entry.endpoint.endpoint_id;
            match remote.iter_mut().find(|(_, entries)| {
                entries
                    .first()
                    .is_some_and(|e| e.endpoint.endpoint_id == *id)
            }) {
                Some((_, entries)) => entries.push(entry),
                None => remote.push((log_key(id), vec![entry])),
            }
        }
        if let Some(redis) = store.redis_store() {
            let min_id = now
                .saturating_sub(
                    i64::try_from(shared.settings.max_age.as_millis()).unwrap_or(i64::MAX),
                )
                .max(0);
            for (key, records) in &remote {
                // One pipeline per stream: its commands share one key, hence one Cluster slot.
                let mut pipe = redis::pipe();
                for entry in records {
                    if entry
                        .write_json(&shared.settings.instance, &mut json)
                        .is_err()
                    {
                        continue;
                    }
                    pipe.cmd("XADD")
                        .arg(key.as_str())
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(shared.settings.max_records)
                        .arg("*")
                        .arg("r")
                        .arg(json.as_slice())
                        .ignore();
                }
                // Exact, unlike the count: what is older than the age bound must go even when
                // it shares a stream node with newer records. At most once a TRIM_EVERY_MS.
                if trim {
                    pipe.cmd("XTRIM")
                        .arg(key.as_str())
                        .arg("MINID")
                        .arg(format!("{min_id}-0"))
                        .ignore();
                }
                // A passive user of the connection: a failure here neither marks the store
                // down nor reaches any answer; the records are dropped and counted.
                let written = match redis.connection() {
                    Ok(mut conn) => {
                        tokio::time::timeout(WRITE_DEADLINE, pipe.query_async::<()>(&mut conn))
                            .await
                            .is_ok_and(|result| result.is_ok())
                    }
                    Err(_) => false,
                };
                if !written {
                    shared
                        .dropped_store
                        .inc_by(u64::try_from(records.len()).unwrap_or(u64::MAX));
                }
            }
        }
        remote.clear();
    }
}

/// The largest char boundary of `text` at most `max`.
fn floor_char_boundary(text: &str, max: usize) -> usize {
    if text.len() <= max {
        return text.len();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A stream ID `ms-seq`.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The smallest stream ID after `id`.
fn next_id(id: (u64, u64)) -> (u64, u64) {
    match id.1.checked_add(1) {
        Some(seq) => (id.0, seq),
        None => (id.0.saturating_add(1), 0),
    }
}

/// `<stream ID>/<local sequence>`; either part unreadable or absent means from the start.
fn parse_cursor(after: Option<&str>) -> ((u64, u64), u64) {
    let Some(after) = after else {
        return ((0, 0), 0);
    };
    let (stream, local) = after.split_once('/').unwrap_or((after, ""));
    (
        parse_id(stream).unwrap_or((0, 0)),
        local.parse().unwrap_or(0),
    )
}

/// The entries of an `XRANGE` reply, `(ID, record)`; entries that are not a record are
/// skipped.
fn parse_range(reply: Value) -> Vec<((u64, u64), DeliveryRecord)> {
    let Value::Array(entries) = reply else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|entry| {
            let Value::Array(mut parts) = entry else {
                return None;
            };
            if parts.len() != 2 {
                return None;
            }
            let fields = parts.pop()?;
            let id = match parts.pop()? {
                Value::BulkString(bytes) => parse_id(std::str::from_utf8(&bytes).ok()?)?,
                Value::SimpleString(text) => parse_id(&text)?,
                _ => return None,
            };
            let Value::Array(fields) = fields else {
                return None;
            };
            let value = fields.chunks(2).find_map(|pair| match pair {
                [Value::BulkString(name), Value::BulkString(value)] if name == b"r" => Some(value),
                _ => None,
            })?;
            Some((id, serde_json::from_slice(value).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_and_ids_parse_leniently() {
        assert_eq!(parse_cursor(None), ((0, 0), 0));
        assert_eq!(parse_cursor(Some("17-3/9")), ((17, 3), 9));
        assert_eq!(parse_cursor(Some("17-3")), ((17, 3), 0));
        assert_eq!(parse_cursor(Some("junk")), ((0, 0), 0));
        assert_eq!(next_id((5, 1)), (5, 2));
        assert_eq!(next_id((5, u64::MAX)), (6, 0));
    }

    /// The JSON stored in Redis is a [`DeliveryRecord`], field for field.
    #[tokio::test]
    async fn the_stored_json_reads_back_as_the_record() {
        let config = serde_json::from_value(serde_json::json!({
            "name": "e", "endpointId": "e1", "path": "/hook", "scheme": "Generic",
            "upstream": {"port": 9}, "secretDir": "/unused",
        }))
        .unwrap();
        let key =
            crate::verify::SigningKey::new(hookguard_api::Scheme::Generic, "k1", b"s").unwrap();
        let endpoint = Arc::new(Endpoint::from_config(config, vec![key]).unwrap());
        let entry = |event_type: &str, reason: Option<&'static str>, attempt| Entry {
            endpoint: Arc::clone(&endpoint),
            kind: RecordKind::Attempt,
            verified: true,
            at_ms: 1_700_000_000_123,
            delivery_id: Some("d-1".into()),
            event_type: Some(event_type.into()),
            outcome: "retry_scheduled",
            reason: reason.map(Cow::Borrowed),
            status: 500,
            latency_us: 1234,
            attempt,
        };
        let long = "é".repeat(100);
        for entry in [
            entry("invoice.paid", Some("status 500"), Some(2)),
            entry(&long, None, None),
        ] {
            let mut json = Vec::new();
            entry.write_json("pod-1", &mut json).unwrap();
            let read: DeliveryRecord = serde_json::from_slice(&json).unwrap();
            let record = entry.into_record("pod-1");
            assert!(record.event_type.as_ref().unwrap().len() <= MAX_EVENT_TYPE);
            assert_eq!(read, record);
            assert_eq!(serde_json::to_vec(&record).unwrap(), json);
        }
    }

    #[test]
    fn the_default_instance_names_the_process() {
        let name = default_instance();
        assert!(
            name.ends_with(&format!("-{}", std::process::id())),
            "{name}"
        );
    }
}
