//! Queue mode in memory: the in-memory store's deliveries, held in the sidecar's process.
//!
//! For one replica (the local demo) with `durability: Memory`: nothing here survives a restart
//! ([`MemoryQueue::promise`]). The operations follow the Redis queue's contract ([`super`]).
//! Leases and retry times run on the caller's clock, Unix ms (`now_ms`, `at_ms`); the dedup
//! marks' TTLs run on [`Instant`], like everything else in the dedup store.
//!
//! # State
//!
//! Per endpoint ([`EndpointQueue`]): the messages by delivery ID, each in exactly one place,
//! with an index per place: *ready* (waiting to be taken, in work-entry order), *taken* (leased
//! to a worker since `at_ms`), *scheduled* (a retry due at `at_ms`) or *dead*. A work entry
//! (the token in [`Taken::entry`]) is made whenever a message becomes ready (admission, a due
//! retry, a replay) and lives until it is settled; a lapsed lease hands the same entry to the
//! next taker. So a message has at most one work entry, and retry and dead-letter act only
//! through it: when a worker's entry was settled meanwhile (by the taker after its lease), its
//! retry or dead-letter is an ack and nothing more, so a message is never scheduled or
//! dead-lettered twice. A commit acts whenever the message exists, through whichever entry:
//! the app answered 2xx. An endpoint's state is dropped with its last message.
//!
//! # Atomicity and locks
//!
//! One mutex guards every endpoint's queue, held by each operation from its first check to its
//! last write. Admission, commit and purge also lock the dedup store ([`MemoryStore::keys`])
//! while they hold it. The lock order is queue, then store: the store never takes the queue's
//! lock (a sync-mode claim locks the store alone), so there is no cycle. Nothing awaits: both
//! are `std::sync` mutexes around short, synchronous work.
//!
//! The `queued` markers live in the dedup store, in a set its eviction never touches
//! (`dedup::memory`): a sync-mode claim sees them (as held), and no `done` mark can push them
//! out. Commit and purge replace them by `done` marks for the window, evictable as always.
//!
//! # Accounting
//!
//! `maxQueued` bounds the messages held (dead letters included); `maxQueuedBytes` bounds their
//! *charge*: [`StoredRequest::size`] plus [`QUEUED_DELIVERY_OVERHEAD`], plus for each of the
//! two copies of the delivery ID and each dedup key (held here, and as a marker in the store)
//! its length and bookkeeping. Admission copies the request into buffers of exactly its size
//! (so no larger buffer it was sliced from stays alive), and the notes a message records (last
//! error, dead-letter reason) are cut to [`MAX_NOTE_BYTES`], so the charge is fixed at admission
//! and the caps hold as long as the message stays. `held_bytes` in the stats is the charge; a
//! dead letter's `size` is the request's alone. Per-endpoint bookkeeping (a few hundred bytes,
//! dropped with the endpoint's last message) is not charged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::mem::size_of;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{
    Admission, Admitted, DeadLetter, Promise, QueueStats, QueuedDelivery, StoredRequest, Taken,
};
use crate::dedup::{DeliveryKeys, MemoryStore, StoreError};

/// Why a 2xx from this store is not a promise of durability.
const PROMISE: &str =
    "the in-memory store keeps deliveries in the sidecar's process: a restart loses them";

/// Most bytes kept of a message's last error and of its dead-letter reason each (cut at a
/// character boundary), so that its charge is fixed at admission.
pub(crate) const MAX_NOTE_BYTES: usize = 256;

/// Bytes assumed for a heap buffer beyond its length.
const HEAP: usize = MemoryStore::HEAP_ALLOCATION_OVERHEAD;

/// Accounted bytes per held delivery besides its request, IDs and keys: its hash-map slot and
/// control byte, doubled for growth slack; its slot in one place index and in the index of
/// unsettled messages, doubled (B-tree nodes are at least half full); the allocation headers of
/// its three request buffers and its key vector; and room for both notes.
pub(crate) const QUEUED_DELIVERY_OVERHEAD: usize = 2 * (size_of::<(String, Message)>() + 1)
    + 2 * size_of::<((u64, u64), String)>()
    + 2 * size_of::<(u64, u64)>()
    + 4 * HEAP
    + 2 * (MAX_NOTE_BYTES + HEAP);

/// The queue operations of the in-memory store.
pub(crate) struct MemoryQueue {
    store: Arc<MemoryStore>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    endpoints: HashMap<String, EndpointQueue>,
    /// Numbers work entries, retry slots and dead-letter positions: unique and increasing.
    next_seq: u64,
}

/// One endpoint's queue.
#[derive(Default)]
struct EndpointQueue {
    messages: HashMap<String, Message>,
    /// Work entry → delivery ID, oldest first.
    ready: BTreeMap<u64, String>,
    /// (taken at, work entry) → delivery ID, oldest lease first.
    taken: BTreeMap<(u64, u64), String>,
    /// (due at, seq) → delivery ID, earliest first.
    due: BTreeMap<(u64, u64), String>,
    /// Position → delivery ID, oldest first.
    dead: BTreeMap<u64, String>,
    /// (received at, admission seq) of the messages not dead, for the oldest's age.
    unsettled: BTreeSet<(u64, u64)>,
    /// The sum of the messages' charges.
    held_bytes: u64,
}

/// A held delivery.
struct Message {
    request: StoredRequest,
    received_at_ms: u64,
    attempts: u32,
    body_sha256: Option<[u8; 32]>,
    replayed: bool,
    last_error: String,
    /// The keys marked `queued` at admission: the ones to clear and mark `done`.
    keys: DeliveryKeys,
    /// Its admission's seq, unique: the tie-breaker in `unsettled`.
    admitted: u64,
    /// What it counts against `maxQueuedBytes` (see the module docs).
    charge: u64,
    place: Place,
    /// Its latest dead-letter position, kept after a replay so that a listing page ending at it
    /// still finds its place.
    dead_pos: Option<u64>,
}

/// Where a message is; each place has its index in [`EndpointQueue`].
#[derive(Debug)]
enum Place {
    Ready {
        entry: u64,
    },
    Taken {
        entry: u64,
        at_ms: u64,
    },
    Scheduled {
        at_ms: u64,
        seq: u64,
    },
    Dead {
        pos: u64,
        reason: String,
        failed_at_ms: u64,
    },
}

impl MemoryQueue {
    pub(crate) fn new(store: Arc<MemoryStore>) -> MemoryQueue {
        MemoryQueue {
            store,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every operation checks before it writes and has no panic point between its writes,
        // so a poisoned lock still guards a consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[allow(clippy::unused_self)] // Called like the Redis queue's, which asks its connection.
    pub(crate) fn promise(&self) -> Promise {
        Promise::Memory(PROMISE.to_owned())
    }

    pub(crate) fn admit(&self, admission: &Admission) -> Result<Admitted, StoreError> {
        self.admit_at(admission, Instant::now())
    }

    fn admit_at(&self, admission: &Admission, now: Instant) -> Result<Admitted, StoreError> {
        // Exact-size copies, made before locking so the lock is never held for a copy.
        let request = StoredRequest {
            path_and_query: admission.request.path_and_query.clone(),
            headers: Bytes::copy_from_slice(&admission.request.headers),
            body: Bytes::copy_from_slice(&admission.request.body),
        };
        let charge = charge(admission);
        let mut state = self.lock();
        let mut keys = self.store.keys();
        if let Some(found) = keys.admission(&admission.dedup, now) {
            return Ok(found);
        }
        let queue = state.endpoints.get(&admission.endpoint_id);
        if queue.is_some_and(|queue| queue.messages.contains_key(&admission.delivery_id)) {
            return Ok(Admitted::Duplicate);
        }
        let (held, held_bytes) = queue.map_or((0, 0), |queue| (queue.held(), queue.held_bytes));
        // An empty queue takes any one delivery, so a body of `maxBodySize` (plus its
        // headers) is never refused for ever; the byte bound is then exceeded by at most one.
        if held > 0
            && (held.saturating_add(1) > admission.max_queued
                || held_bytes.saturating_add(charge) > admission.max_queued_bytes)
        {
            return Ok(Admitted::Full);
        }
        keys.check_fits(&admission.dedup)?;
        // Every check passed: the writes.
        keys.mark_queued(&admission.dedup);
        drop(keys);
        let entry = bump(&mut state.next_seq);
        let queue = state
            .endpoints
            .entry(admission.endpoint_id.clone())
            .or_default();
        queue.ready.insert(entry, admission.delivery_id.clone());
        queue.unsettled.insert((admission.received_at_ms, entry));
        queue.held_bytes = queue.held_bytes.saturating_add(charge);
        queue.messages.insert(
            admission.delivery_id.clone(),
            Message {
                request,
                received_at_ms: admission.received_at_ms,
                attempts: 0,
                body_sha256: admission.body_sha256,
                replayed: false,
                last_error: String::new(),
                keys: admission.dedup.clone(),
                admitted: entry,
                charge,
                place: Place::Ready { entry },
                dead_pos: None,
            },
        );
        Ok(Admitted::Queued)
    }

    pub(crate) fn take(
        &self,
        endpoint_id: &str,
        count: usize,
        lease: Duration,
        now_ms: u64,
    ) -> Vec<Taken> {
        let mut state = self.lock();
        let State {
            endpoints,
            next_seq,
        } = &mut *state;
        let Some(queue) = endpoints.get_mut(endpoint_id) else {
            return Vec::new();
        };
        queue.promote_due(now_ms, next_seq);
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        let mut taken = Vec::with_capacity(count.min(queue.messages.len()));
        queue.take_lapsed(count, lease_ms, now_ms, &mut taken);
        queue.take_ready(count, now_ms, &mut taken);
        taken
    }

    pub(crate) fn commit(&self, endpoint_id: &str, taken: &Taken, window: Duration) -> bool {
        self.commit_at(endpoint_id, taken, window, Instant::now())
    }

    fn commit_at(&self, endpoint_id: &str, taken: &Taken, window: Duration, now: Instant) -> bool {
        let mut state = self.lock();
        self.finish(
            &mut state,
            endpoint_id,
            &taken.delivery.delivery_id,
            window,
            now,
        )
    }

    /// Removes a delivery for good, its dedup keys `done` for `window`, and the endpoint's
    /// state with its last delivery. `false` if it was not held.
    fn finish(
        &self,
        state: &mut State,
        endpoint_id: &str,
        delivery_id: &str,
        window: Duration,
        now: Instant,
    ) -> bool {
        let Some(queue) = state.endpoints.get_mut(endpoint_id) else {
            return false;
        };
        let Some(message) = queue.remove(delivery_id) else {
            return false;
        };
        let emptied = queue.messages.is_empty();
        self.mark_done(&message.keys, window, now);
        if emptied {
            state.endpoints.remove(endpoint_id);
        }
        true
    }

    pub(crate) fn retry(
        &self,
        endpoint_id: &str,
        taken: &Taken,
        at_ms: u64,
        attempts: u32,
        last_error: &str,
    ) {
        let mut state = self.lock();
        let State {
            endpoints,
            next_seq,
        } = &mut *state;
        let Some(queue) = endpoints.get_mut(endpoint_id) else {
            return;
        };
        let seq = bump(next_seq);
        if let Some(message) = queue.settle(taken, Place::Scheduled { at_ms, seq }) {
            message.attempts = attempts;
            message.last_error = note(last_error);
        }
    }

    pub(crate) fn dead_letter(
        &self,
        endpoint_id: &str,
        taken: &Taken,
        attempts: u32,
        reason: &str,
        now_ms: u64,
    ) {
        let mut state = self.lock();
        let State {
            endpoints,
            next_seq,
        } = &mut *state;
        let Some(queue) = endpoints.get_mut(endpoint_id) else {
            return;
        };
        let dead = Place::Dead {
            pos: bump(next_seq),
            reason: note(reason),
            failed_at_ms: now_ms,
        };
        if let Some(message) = queue.settle(taken, dead) {
            message.attempts = attempts;
        }
    }

    pub(crate) fn stats(&self, endpoint_id: &str) -> QueueStats {
        let state = self.lock();
        let Some(queue) = state.endpoints.get(endpoint_id) else {
            return QueueStats::default();
        };
        QueueStats {
            ready: count(queue.ready.len()),
            in_flight: count(queue.taken.len()),
            scheduled: count(queue.due.len()),
            dead: count(queue.dead.len()),
            held: queue.held(),
            held_bytes: queue.held_bytes,
            oldest_received_ms: queue.unsettled.first().map(|(received, _)| *received),
            oldest_dead_ms: queue
                .dead
                .values()
                .next()
                .and_then(|id| queue.messages.get(id))
                .and_then(|message| match message.place {
                    Place::Dead { failed_at_ms, .. } => Some(failed_at_ms),
                    _ => None,
                }),
        }
    }

    /// Up to `count` dead letters, oldest first. `after` is the delivery ID that ended the
    /// previous page: the page starts after its position, which a replayed delivery keeps while
    /// it is held (until it is dead-lettered again, at the end). An ID this queue does not hold (purged, committed, never dead-lettered)
    /// has no position: the page is empty rather than starting over.
    pub(crate) fn dead_letters(
        &self,
        endpoint_id: &str,
        after: Option<&str>,
        count: usize,
    ) -> Vec<DeadLetter> {
        let state = self.lock();
        let Some(queue) = state.endpoints.get(endpoint_id) else {
            return Vec::new();
        };
        let from = match after {
            None => Bound::Unbounded,
            Some(id) => match queue.messages.get(id).and_then(|message| message.dead_pos) {
                Some(pos) => Bound::Excluded(pos),
                None => return Vec::new(),
            },
        };
        queue
            .dead
            .range((from, Bound::Unbounded))
            .filter_map(|(_, id)| queue.messages.get(id)?.dead_letter(id))
            .take(count)
            .collect()
    }

    pub(crate) fn dead_letter_of(
        &self,
        endpoint_id: &str,
        delivery_id: &str,
    ) -> Option<(DeadLetter, QueuedDelivery)> {
        let state = self.lock();
        let message = state
            .endpoints
            .get(endpoint_id)?
            .messages
            .get(delivery_id)?;
        let dead = message.dead_letter(delivery_id)?;
        Some((dead, message.delivery(delivery_id)))
    }

    pub(crate) fn replay(&self, endpoint_id: &str, delivery_id: &str) -> bool {
        let mut state = self.lock();
        let State {
            endpoints,
            next_seq,
        } = &mut *state;
        endpoints
            .get_mut(endpoint_id)
            .is_some_and(|queue| queue.replay(delivery_id, next_seq))
    }

    pub(crate) fn purge(&self, endpoint_id: &str, delivery_id: &str, window: Duration) -> bool {
        self.purge_at(endpoint_id, delivery_id, window, Instant::now())
    }

    fn purge_at(
        &self,
        endpoint_id: &str,
        delivery_id: &str,
        window: Duration,
        now: Instant,
    ) -> bool {
        let mut state = self.lock();
        let Some(queue) = state.endpoints.get_mut(endpoint_id) else {
            return false;
        };
        let dead = queue
            .messages
            .get(delivery_id)
            .is_some_and(|message| matches!(message.place, Place::Dead { .. }));
        dead && self.finish(&mut state, endpoint_id, delivery_id, window, now)
    }

    /// Replaces the keys' `queued` markers by `done` for `window`; the caller holds the queue's
    /// lock (lock order: queue, then store).
    fn mark_done(&self, keys: &DeliveryKeys, window: Duration, now: Instant) {
        // Admission refused keys that could never fit, so this cannot fail; if it did anyway,
        // the markers are cleared and only the duplicate guard for a late retry is lost.
        if self.store.keys().mark_done(keys, window, now).is_err() {
            tracing::warn!("could not mark a settled queued delivery done in the memory store");
        }
    }
}

impl EndpointQueue {
    fn held(&self) -> u64 {
        count(self.messages.len())
    }

    /// Moves the retries due by `now_ms` to the end of the ready entries, earliest first (as
    /// the Redis queue appends them to its stream).
    fn promote_due(&mut self, now_ms: u64, next_seq: &mut u64) {
        while let Some(slot) = self.due.first_entry() {
            if slot.key().0 > now_ms {
                break;
            }
            let id = slot.remove();
            if let Some(message) = self.messages.get_mut(&id) {
                let entry = bump(next_seq);
                message.place = Place::Ready { entry };
                self.ready.insert(entry, id);
            }
        }
    }

    /// Takes again, oldest lease first, the entries whose lease lapsed by `now_ms`.
    fn take_lapsed(&mut self, count: usize, lease_ms: u64, now_ms: u64, out: &mut Vec<Taken>) {
        let mut renewed = Vec::new();
        while out.len() < count {
            let Some(slot) = self.taken.first_entry() else {
                break;
            };
            let (taken_at, entry) = *slot.key();
            if taken_at.saturating_add(lease_ms) > now_ms {
                break;
            }
            let id = slot.remove();
            let Some(message) = self.messages.get_mut(&id) else {
                continue;
            };
            out.push(message.take(entry, &id, now_ms));
            // Put back after the loop, so that a zero lease cannot hand it out twice now.
            renewed.push(((now_ms, entry), id));
        }
        self.taken.extend(renewed);
    }

    /// Takes ready entries, oldest first.
    fn take_ready(&mut self, count: usize, now_ms: u64, out: &mut Vec<Taken>) {
        while out.len() < count {
            let Some((entry, id)) = self.ready.pop_first() else {
                break;
            };
            let Some(message) = self.messages.get_mut(&id) else {
                continue;
            };
            out.push(message.take(entry, &id, now_ms));
            self.taken.insert((now_ms, entry), id);
        }
    }

    /// Acks the work entry `taken` came through and moves its message to `next` (scheduled or
    /// dead), if that entry is still the message's live one; `None` (only the ack) otherwise.
    fn settle(&mut self, taken: &Taken, next: Place) -> Option<&mut Message> {
        let id = &taken.delivery.delivery_id;
        let entry = taken.entry.parse::<u64>().ok()?;
        let message = self.messages.get_mut(id)?;
        let Place::Taken { entry: live, at_ms } = message.place else {
            return None;
        };
        if live != entry {
            return None;
        }
        self.taken.remove(&(at_ms, entry));
        match next {
            Place::Scheduled { at_ms: due_at, seq } => {
                self.due.insert((due_at, seq), id.clone());
            }
            Place::Dead { pos, .. } => {
                self.dead.insert(pos, id.clone());
                self.unsettled
                    .remove(&(message.received_at_ms, message.admitted));
                message.dead_pos = Some(pos);
            }
            Place::Ready { .. } | Place::Taken { .. } => {}
        }
        message.place = next;
        Some(message)
    }

    /// Puts a dead letter back on the ready entries with its attempts reset.
    fn replay(&mut self, id: &str, next_seq: &mut u64) -> bool {
        let Some(message) = self.messages.get_mut(id) else {
            return false;
        };
        let Place::Dead { pos, .. } = message.place else {
            return false;
        };
        self.dead.remove(&pos);
        let entry = bump(next_seq);
        message.place = Place::Ready { entry };
        message.attempts = 0;
        message.replayed = true;
        self.ready.insert(entry, id.to_owned());
        self.unsettled
            .insert((message.received_at_ms, message.admitted));
        true
    }

    /// Removes a message from wherever it is, with its charge.
    fn remove(&mut self, id: &str) -> Option<Message> {
        let message = self.messages.remove(id)?;
        match message.place {
            Place::Ready { entry } => {
                self.ready.remove(&entry);
            }
            Place::Taken { entry, at_ms } => {
                self.taken.remove(&(at_ms, entry));
            }
            Place::Scheduled { at_ms, seq } => {
                self.due.remove(&(at_ms, seq));
            }
            Place::Dead { pos, .. } => {
                self.dead.remove(&pos);
            }
        }
        self.unsettled
            .remove(&(message.received_at_ms, message.admitted));
        self.held_bytes = self.held_bytes.saturating_sub(message.charge);
        Some(message)
    }
}

impl Message {
    fn delivery(&self, id: &str) -> QueuedDelivery {
        QueuedDelivery {
            delivery_id: id.to_owned(),
            request: self.request.clone(),
            received_at_ms: self.received_at_ms,
            attempts: self.attempts,
            body_sha256: self.body_sha256,
            replayed: self.replayed,
            last_error: self.last_error.clone(),
        }
    }

    /// Hands the message out under work entry `entry`, leased from `now_ms`.
    fn take(&mut self, entry: u64, id: &str, now_ms: u64) -> Taken {
        self.place = Place::Taken {
            entry,
            at_ms: now_ms,
        };
        Taken {
            entry: entry.to_string(),
            delivery: self.delivery(id),
        }
    }

    fn dead_letter(&self, id: &str) -> Option<DeadLetter> {
        let Place::Dead {
            reason,
            failed_at_ms,
            ..
        } = &self.place
        else {
            return None;
        };
        Some(DeadLetter {
            delivery_id: id.to_owned(),
            reason: reason.clone(),
            failed_at_ms: *failed_at_ms,
            received_at_ms: self.received_at_ms,
            attempts: self.attempts,
            size: self.request.size(),
        })
    }
}

/// What a delivery counts against `maxQueuedBytes` (see the module docs).
fn charge(admission: &Admission) -> u64 {
    let ids = 2 * (admission.delivery_id.len() + HEAP);
    let keys: usize = admission
        .dedup
        .as_slice()
        .iter()
        .map(|key| size_of::<String>() + key.len() + HEAP + MemoryStore::queued_marker_bytes(key))
        .sum();
    let overhead = u64::try_from(QUEUED_DELIVERY_OVERHEAD + ids + keys).unwrap_or(u64::MAX);
    admission.request.size().saturating_add(overhead)
}

/// `text` cut to [`MAX_NOTE_BYTES`] at a character boundary.
fn note(text: &str) -> String {
    let mut end = text.len().min(MAX_NOTE_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn bump(next_seq: &mut u64) -> u64 {
    let seq = *next_seq;
    *next_seq += 1;
    seq
}

fn count(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

impl fmt::Debug for MemoryQueue {
    // The state carries delivery IDs and bodies; show only how many endpoints hold deliveries,
    // and never wait for the lock (a Debug call under it must not deadlock).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoints = self
            .state
            .try_lock()
            .ok()
            .map(|state| state.endpoints.len());
        f.debug_struct("MemoryQueue")
            .field("endpoints", &endpoints)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    //! Every operation of the queue contract on the in-memory store, on synthetic clocks.

    use std::time::{Duration, Instant};

    use prometheus_client::metrics::counter::Counter;

    use super::*;
    use crate::dedup::{ClaimOutcome, MemoryLimits};
    use crate::queue::encode_headers;

    const EP: &str = "ep1";
    const LEASE: Duration = Duration::from_secs(30);
    const LEASE_MS: u64 = 30_000;
    const WINDOW: Duration = Duration::from_secs(3600);
    const ROOMY: MemoryLimits = MemoryLimits {
        max_entries: 1_000_000,
        max_bytes: 1 << 30,
    };

    fn queue_with(limits: MemoryLimits) -> (MemoryQueue, Arc<MemoryStore>, Counter) {
        let evictions = Counter::default();
        let store = Arc::new(MemoryStore::new(limits, evictions.clone()));
        (MemoryQueue::new(Arc::clone(&store)), store, evictions)
    }

    fn queue() -> (MemoryQueue, Arc<MemoryStore>) {
        let (queue, store, _) = queue_with(ROOMY);
        (queue, store)
    }

    fn admission(id: &str) -> Admission {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        Admission {
            endpoint_id: EP.to_owned(),
            delivery_id: id.to_owned(),
            dedup: DeliveryKeys::new(EP, id, None),
            body_sha256: None,
            request: StoredRequest {
                path_and_query: "/hook?x=1".to_owned(),
                headers: encode_headers(&headers),
                body: Bytes::from(format!("{{\"id\":\"{id}\"}}")),
            },
            received_at_ms: 1_000,
            max_queued: 100,
            max_queued_bytes: 1 << 20,
        }
    }

    /// A delivery whose dedup keys include its body's hash (unsigned IDs).
    fn with_body_key(id: &str, body: &'static [u8]) -> Admission {
        use sha2::Digest as _;
        let hash: [u8; 32] = sha2::Sha256::digest(body).into();
        let mut admission = admission(id);
        admission.dedup = DeliveryKeys::new(EP, id, Some(&hash));
        admission.body_sha256 = Some(hash);
        admission.request.body = Bytes::from_static(body);
        admission
    }

    fn ids(taken: &[Taken]) -> Vec<&str> {
        taken
            .iter()
            .map(|taken| taken.delivery.delivery_id.as_str())
            .collect()
    }

    fn admit_all(queue: &MemoryQueue, ids: &[&str]) {
        for id in ids {
            assert_eq!(
                queue.admit(&admission(id)).unwrap(),
                Admitted::Queued,
                "{id}"
            );
        }
    }

    /// Takes exactly `id` (and nothing else) at `now_ms`.
    #[track_caller]
    fn take_one(queue: &MemoryQueue, id: &str, now_ms: u64) -> Taken {
        let mut taken = queue.take(EP, 1, LEASE, now_ms);
        assert_eq!(ids(&taken), [id]);
        taken.pop().unwrap()
    }

    #[track_caller]
    fn assert_claim(store: &MemoryStore, keys: DeliveryKeys, expected: &str) {
        let outcome = store.claim(keys, LEASE).unwrap();
        let found = match outcome {
            ClaimOutcome::Claimed(_) => "claimed",
            ClaimOutcome::Done => "done",
            ClaimOutcome::InFlight => "in_flight",
        };
        assert_eq!(found, expected);
    }

    #[test]
    fn promises_memory_only() {
        let (queue, _) = queue();
        let promise = queue.promise();
        assert_eq!(promise.label(), "memory");
        assert!(!promise.is_disk());
        assert!(
            promise.to_string().contains("a restart loses them"),
            "{promise}"
        );
    }

    #[test]
    fn admission_queues_the_request_as_sent() {
        let (queue, _) = queue();
        let sent = with_body_key("d1", b"{\"a\":1}");
        assert_eq!(queue.admit(&sent).unwrap(), Admitted::Queued);
        let taken = take_one(&queue, "d1", 5);
        let delivery = &taken.delivery;
        assert_eq!(delivery.request, sent.request);
        assert_eq!(delivery.received_at_ms, 1_000);
        assert_eq!(delivery.attempts, 0);
        assert_eq!(delivery.body_sha256, sent.body_sha256);
        assert!(!delivery.replayed);
        assert_eq!(delivery.last_error, "");
        assert_eq!(delivery.dedup_keys(EP), sent.dedup);
    }

    #[test]
    fn a_done_key_makes_a_duplicate() {
        let (queue, store) = queue();
        let ClaimOutcome::Claimed(claim) = store
            .claim(DeliveryKeys::new(EP, "d1", None), LEASE)
            .unwrap()
        else {
            panic!("expected a claim");
        };
        store.commit(&claim, WINDOW).unwrap();
        assert_eq!(queue.admit(&admission("d1")).unwrap(), Admitted::Duplicate);
        assert_eq!(queue.stats(EP), QueueStats::default());
    }

    #[test]
    fn a_queued_key_makes_a_duplicate_even_under_another_id() {
        let (queue, _) = queue();
        assert_eq!(queue.admit(&admission("d1")).unwrap(), Admitted::Queued);
        assert_eq!(queue.admit(&admission("d1")).unwrap(), Admitted::Duplicate);
        // Unsigned IDs: the same body under a new ID is the same delivery, still queued.
        assert_eq!(
            queue.admit(&with_body_key("b1", b"same")).unwrap(),
            Admitted::Queued
        );
        assert_eq!(
            queue.admit(&with_body_key("b2", b"same")).unwrap(),
            Admitted::Duplicate
        );
        assert_eq!(queue.stats(EP).held, 2);
    }

    #[test]
    fn an_existing_message_makes_a_duplicate() {
        let (queue, _) = queue();
        assert_eq!(queue.admit(&admission("d1")).unwrap(), Admitted::Queued);
        // The same delivery ID with keys that are not queued: the message check catches it.
        let mut again = admission("d1");
        again.dedup = DeliveryKeys::new(EP, "elsewhere", None);
        assert_eq!(queue.admit(&again).unwrap(), Admitted::Duplicate);
        assert_eq!(queue.stats(EP).held, 1);
    }

    #[test]
    fn a_live_sync_claim_makes_in_flight_and_nothing_is_written() {
        let (queue, store) = queue();
        let ClaimOutcome::Claimed(claim) = store
            .claim(DeliveryKeys::new(EP, "d1", None), LEASE)
            .unwrap()
        else {
            panic!("expected a claim");
        };
        assert_eq!(queue.admit(&admission("d1")).unwrap(), Admitted::InFlight);
        assert_eq!(queue.stats(EP), QueueStats::default());
        assert!(queue.take(EP, 10, LEASE, 0).is_empty());
        // Released, the delivery can be queued.
        store.release(&claim);
        assert_eq!(queue.admit(&admission("d1")).unwrap(), Admitted::Queued);
    }

    #[test]
    fn a_lapsed_sync_claim_does_not_block_admission() {
        let (queue, store) = queue();
        let then = Instant::now();
        let keys = DeliveryKeys::new(EP, "d1", None);
        assert!(matches!(
            store.claim_at(keys, LEASE, then),
            Ok(ClaimOutcome::Claimed(_))
        ));
        let during = queue.admit_at(&admission("d1"), then + LEASE / 2).unwrap();
        assert_eq!(during, Admitted::InFlight);
        let after = queue.admit_at(&admission("d1"), then + LEASE).unwrap();
        assert_eq!(after, Admitted::Queued);
    }

    #[test]
    fn a_sync_claim_of_a_queued_delivery_is_in_flight() {
        let (queue, store) = queue();
        let sent = with_body_key("d1", b"body");
        assert_eq!(queue.admit(&sent).unwrap(), Admitted::Queued);
        assert_claim(&store, sent.dedup.clone(), "in_flight");
        // Either key alone is held too.
        for key in sent.dedup.as_slice() {
            let body_only = if key.contains(":body:") {
                DeliveryKeys::new(EP, "other", sent.body_sha256.as_ref())
            } else {
                DeliveryKeys::new(EP, "d1", None)
            };
            assert_claim(&store, body_only, "in_flight");
        }
    }

    #[test]
    fn full_by_count_writes_nothing() {
        let (queue, store) = queue();
        let capped = |id: &str| Admission {
            max_queued: 2,
            ..admission(id)
        };
        assert_eq!(queue.admit(&capped("d1")).unwrap(), Admitted::Queued);
        assert_eq!(queue.admit(&capped("d2")).unwrap(), Admitted::Queued);
        assert_eq!(queue.admit(&capped("d3")).unwrap(), Admitted::Full);
        assert_eq!(queue.stats(EP).held, 2);
        // d3's keys were not marked queued.
        assert_claim(&store, DeliveryKeys::new(EP, "d3", None), "claimed");
        // Dead letters count: dead-lettering d1 does not make room, purging it does.
        let taken = take_one(&queue, "d1", 0);
        queue.dead_letter(EP, &taken, 1, "status 400", 10);
        assert_eq!(queue.admit(&capped("d4")).unwrap(), Admitted::Full);
        assert!(queue.purge(EP, "d1", WINDOW));
        assert_eq!(queue.admit(&capped("d4")).unwrap(), Admitted::Queued);
    }

    #[test]
    fn full_by_bytes_counts_the_request_and_its_overhead() {
        let (empty, _) = queue();
        let (queue, _) = queue();
        let one = charge(&admission("d1"));
        assert!(one > admission("d1").request.size() + QUEUED_DELIVERY_OVERHEAD as u64);
        let capped = |id: &str| Admission {
            max_queued_bytes: 2 * one,
            ..admission(id)
        };
        assert_eq!(queue.admit(&capped("d1")).unwrap(), Admitted::Queued);
        assert_eq!(queue.stats(EP).held_bytes, one);
        assert_eq!(queue.admit(&capped("d2")).unwrap(), Admitted::Queued);
        assert_eq!(queue.stats(EP).held_bytes, 2 * one);
        assert_eq!(queue.admit(&capped("d3")).unwrap(), Admitted::Full);
        // A body as large as the cap still fits an empty queue (never refused for ever), and
        // nothing after it does.
        let mut big = capped("big");
        big.request.body = Bytes::from(vec![b'x'; usize::try_from(2 * one).unwrap()]);
        assert_eq!(empty.admit(&big).unwrap(), Admitted::Queued);
        assert_eq!(empty.admit(&capped("next")).unwrap(), Admitted::Full);
        assert_eq!(empty.stats(EP).held, 1);
    }

    #[test]
    fn keys_the_store_could_never_hold_are_refused_before_anything_is_written() {
        let (queue, store, _) = queue_with(MemoryLimits {
            max_entries: 1,
            max_bytes: 1 << 20,
        });
        let sent = with_body_key("d1", b"two keys");
        assert!(matches!(queue.admit(&sent), Err(StoreError::EntryTooLarge)));
        assert_eq!(queue.stats(EP), QueueStats::default());
        assert_claim(&store, DeliveryKeys::new(EP, "d1", None), "claimed");
    }

    #[test]
    fn take_returns_lapsed_leases_then_ready_oldest_first_with_due_retries_appended() {
        let (queue, _) = queue();
        admit_all(&queue, &["d1", "d2", "d3", "d4"]);
        let d1 = take_one(&queue, "d1", 0);
        let d2 = take_one(&queue, "d2", 10);
        queue.retry(EP, &d2, 500, 1, "status 500");
        assert_eq!(queue.stats(EP).scheduled, 1);
        // At 30 000 d1's lease (taken at 0) has lapsed and d2's retry is due.
        let taken = queue.take(EP, 10, LEASE, LEASE_MS);
        assert_eq!(ids(&taken), ["d1", "d3", "d4", "d2"]);
        assert_eq!(
            taken[0].entry, d1.entry,
            "a lapsed lease hands over the same entry"
        );
        assert_eq!(taken[3].delivery.attempts, 1);
        assert_eq!(taken[3].delivery.last_error, "status 500");
        // Not again within the lease, by anyone.
        assert!(queue.take(EP, 10, LEASE, 2 * LEASE_MS - 1).is_empty());
        // All again once the leases lapse, in the order they were taken.
        let again = queue.take(EP, 10, LEASE, 2 * LEASE_MS);
        assert_eq!(ids(&again), ["d1", "d3", "d4", "d2"]);
        let stats = queue.stats(EP);
        assert_eq!((stats.ready, stats.in_flight, stats.scheduled), (0, 4, 0));
    }

    #[test]
    fn take_honours_count_and_entries_are_unique() {
        let (queue, _) = queue();
        admit_all(&queue, &["d1", "d2", "d3"]);
        let first = queue.take(EP, 2, LEASE, 0);
        assert_eq!(ids(&first), ["d1", "d2"]);
        assert!(queue.take(EP, 0, LEASE, 0).is_empty());
        let rest = queue.take(EP, 2, LEASE, 0);
        assert_eq!(ids(&rest), ["d3"]);
        let mut entries: Vec<_> = first.iter().chain(&rest).map(|t| t.entry.clone()).collect();
        entries.sort();
        entries.dedup();
        assert_eq!(entries.len(), 3);
        // A zero lease lapses at once, but one take hands an entry out once.
        let all = queue.take(EP, 10, Duration::ZERO, 1);
        assert_eq!(ids(&all), ["d1", "d2", "d3"]);
        assert!(queue.take(EP, 10, LEASE, 1).is_empty());
        assert!(queue.take("other", 10, LEASE, 1).is_empty());
    }

    #[test]
    fn commit_is_idempotent_and_leaves_done_marks() {
        let (queue, store) = queue();
        let sent = with_body_key("d1", b"body");
        assert_eq!(queue.admit(&sent).unwrap(), Admitted::Queued);
        let taken = take_one(&queue, "d1", 0);
        assert!(queue.commit(EP, &taken, WINDOW));
        assert!(!queue.commit(EP, &taken, WINDOW));
        assert_eq!(queue.stats(EP), QueueStats::default());
        assert!(queue.take(EP, 10, LEASE, 10 * LEASE_MS).is_empty());
        // Sync mode sees the delivery as done, through either key; queue mode as a duplicate.
        assert_claim(&store, sent.dedup.clone(), "done");
        assert_claim(
            &store,
            DeliveryKeys::new(EP, "x", sent.body_sha256.as_ref()),
            "done",
        );
        assert_eq!(queue.admit(&sent).unwrap(), Admitted::Duplicate);
    }

    #[test]
    fn done_marks_last_for_the_window() {
        let (queue, store) = queue();
        assert_eq!(queue.admit(&admission("d1")).unwrap(), Admitted::Queued);
        let taken = take_one(&queue, "d1", 0);
        let now = Instant::now();
        assert!(queue.commit_at(EP, &taken, WINDOW, now));
        let keys = DeliveryKeys::new(EP, "d1", None);
        let before = store.claim_at(
            keys.clone(),
            LEASE,
            now + WINDOW.checked_sub(Duration::from_secs(1)).unwrap(),
        );
        assert!(matches!(before, Ok(ClaimOutcome::Done)));
        let after = store.claim_at(keys, LEASE, now + WINDOW);
        assert!(matches!(after, Ok(ClaimOutcome::Claimed(_))));
    }

    #[test]
    fn a_commit_through_a_lapsed_lease_wins_once() {
        let (queue, _) = queue();
        admit_all(&queue, &["d1"]);
        let first = take_one(&queue, "d1", 0);
        let second = take_one(&queue, "d1", LEASE_MS);
        assert_eq!(first.entry, second.entry);
        assert!(queue.commit(EP, &second, WINDOW));
        assert!(!queue.commit(EP, &first, WINDOW));
        assert_eq!(queue.stats(EP), QueueStats::default());
    }

    #[test]
    fn a_late_commit_takes_a_delivery_out_of_any_place() {
        // The worker whose lease lapsed gets the app's 2xx after the next taker retried (or
        // dead-lettered) the delivery: the commit still ends it, and it is not attempted again.
        for dead in [false, true] {
            let (queue, _) = queue();
            admit_all(&queue, &["d1"]);
            let late = take_one(&queue, "d1", 0);
            let next = take_one(&queue, "d1", LEASE_MS);
            if dead {
                queue.dead_letter(EP, &next, 1, "status 400", LEASE_MS);
            } else {
                queue.retry(EP, &next, LEASE_MS + 100, 1, "status 500");
            }
            assert!(queue.commit(EP, &late, WINDOW));
            assert_eq!(queue.stats(EP), QueueStats::default());
            assert!(queue.take(EP, 10, LEASE, 10 * LEASE_MS).is_empty());
            assert!(queue.dead_letters(EP, None, 10).is_empty());
        }
    }

    #[test]
    fn retry_schedules_the_next_attempt() {
        let (queue, _) = queue();
        admit_all(&queue, &["d1"]);
        let taken = take_one(&queue, "d1", 0);
        queue.retry(EP, &taken, 5_000, 1, "timeout");
        let stats = queue.stats(EP);
        assert_eq!((stats.ready, stats.in_flight, stats.scheduled), (0, 0, 1));
        assert_eq!(stats.oldest_received_ms, Some(1_000));
        assert!(queue.take(EP, 10, LEASE, 4_999).is_empty());
        let taken = take_one(&queue, "d1", 5_000);
        assert_eq!(taken.delivery.attempts, 1);
        assert_eq!(taken.delivery.last_error, "timeout");
        // Handed back untried: at once, attempts unchanged.
        queue.retry(EP, &taken, 5_000, 1, "timeout");
        let taken = take_one(&queue, "d1", 5_000);
        assert_eq!(taken.delivery.attempts, 1);
    }

    #[test]
    fn a_stale_retry_or_dead_letter_only_acks() {
        let (queue, _) = queue();
        admit_all(&queue, &["d1"]);
        let stale = take_one(&queue, "d1", 0);
        let live = take_one(&queue, "d1", LEASE_MS);
        queue.retry(EP, &live, LEASE_MS + 100, 1, "status 500");
        // The first taker's late answers change nothing: one schedule, no dead letter.
        queue.retry(EP, &stale, LEASE_MS + 50_000, 7, "status 502");
        queue.dead_letter(EP, &stale, 7, "status 400", LEASE_MS);
        let stats = queue.stats(EP);
        assert_eq!((stats.scheduled, stats.dead, stats.held), (1, 0, 1));
        let taken = take_one(&queue, "d1", LEASE_MS + 100);
        assert_eq!(taken.delivery.attempts, 1);
        assert_eq!(taken.delivery.last_error, "status 500");
        assert_ne!(taken.entry, live.entry, "a due retry is a new work entry");
        // Nor does settling a forged entry, or one of a delivery that is gone.
        let mut forged = taken.clone();
        forged.entry = "not a number".to_owned();
        queue.dead_letter(EP, &forged, 1, "status 400", 0);
        assert_eq!(queue.stats(EP).dead, 0);
        assert!(queue.commit(EP, &taken, WINDOW));
        queue.retry(EP, &taken, 0, 1, "status 500");
        queue.dead_letter(EP, &taken, 1, "status 400", 0);
        assert_eq!(queue.stats(EP), QueueStats::default());
    }

    #[test]
    fn notes_are_cut_at_a_character_boundary() {
        let (queue, _) = queue();
        admit_all(&queue, &["d1"]);
        let taken = take_one(&queue, "d1", 0);
        let long = "é".repeat(MAX_NOTE_BYTES);
        queue.retry(EP, &taken, 0, 1, &long);
        let taken = take_one(&queue, "d1", 0);
        assert_eq!(taken.delivery.last_error, "é".repeat(MAX_NOTE_BYTES / 2));
        queue.dead_letter(EP, &taken, 2, &format!("x{long}"), 9);
        let (dead, _) = queue.dead_letter_of(EP, "d1").unwrap();
        assert!(dead.reason.len() <= MAX_NOTE_BYTES && dead.reason.len() > MAX_NOTE_BYTES - 2);
    }

    #[test]
    fn dead_letters_stay_held_until_replayed_or_purged() {
        let (queue, _) = queue();
        let sent = admission("d1");
        admit_all(&queue, &["d1"]);
        let taken = take_one(&queue, "d1", 0);
        queue.retry(EP, &taken, 100, 1, "status 500");
        let taken = take_one(&queue, "d1", 100);
        queue.dead_letter(EP, &taken, 2, "attempts exhausted (last: status 500)", 700);
        let stats = queue.stats(EP);
        assert_eq!((stats.ready, stats.in_flight, stats.scheduled), (0, 0, 0));
        assert_eq!((stats.dead, stats.held), (1, 1));
        assert_eq!(stats.held_bytes, charge(&sent));
        assert_eq!(stats.oldest_received_ms, None);
        assert_eq!(stats.oldest_dead_ms, Some(700));
        assert!(queue.take(EP, 10, LEASE, 10 * LEASE_MS).is_empty());
        assert_eq!(queue.admit(&sent).unwrap(), Admitted::Duplicate);

        let expected = DeadLetter {
            delivery_id: "d1".to_owned(),
            reason: "attempts exhausted (last: status 500)".to_owned(),
            failed_at_ms: 700,
            received_at_ms: 1_000,
            attempts: 2,
            size: sent.request.size(),
        };
        assert_eq!(queue.dead_letters(EP, None, 10), vec![expected.clone()]);
        let (dead, delivery) = queue.dead_letter_of(EP, "d1").unwrap();
        assert_eq!(dead, expected);
        assert_eq!(delivery.request, sent.request);
        assert_eq!(delivery.last_error, "status 500");
        assert!(queue.dead_letter_of(EP, "nope").is_none());
        assert!(queue.dead_letter_of("other", "d1").is_none());
    }

    #[test]
    fn dead_letters_page_oldest_first() {
        let (queue, _) = queue();
        let all = ["d1", "d2", "d3", "d4", "d5"];
        admit_all(&queue, &all);
        for (at, taken) in (0..).zip(queue.take(EP, 10, LEASE, 0)) {
            queue.dead_letter(EP, &taken, 1, "status 400", 100 + at);
        }
        admit_all(&queue, &["live"]);
        let page = |after: Option<&str>| -> Vec<String> {
            queue
                .dead_letters(EP, after, 2)
                .into_iter()
                .map(|dead| dead.delivery_id)
                .collect()
        };
        assert_eq!(page(None), ["d1", "d2"]);
        assert_eq!(page(Some("d2")), ["d3", "d4"]);
        assert_eq!(page(Some("d4")), ["d5"]);
        assert!(page(Some("d5")).is_empty());
        // Unknown, live or purged cursors give an empty page, never the start again.
        assert!(page(Some("nope")).is_empty());
        assert!(page(Some("live")).is_empty());
        // A replayed delivery keeps its place as a cursor; it leaves the listing.
        assert!(queue.replay(EP, "d2"));
        assert_eq!(page(Some("d2")), ["d3", "d4"]);
        assert_eq!(page(None), ["d1", "d3"]);
        assert!(queue.purge(EP, "d3", WINDOW));
        assert!(page(Some("d3")).is_empty());
        assert_eq!(page(Some("d1")), ["d4", "d5"]);
        assert!(queue.dead_letters(EP, None, 0).is_empty());
        assert!(queue.dead_letters("other", None, 10).is_empty());
        assert_eq!(queue.stats(EP).oldest_dead_ms, Some(100));
    }

    #[test]
    fn replay_puts_a_dead_letter_back_with_attempts_reset() {
        let (queue, _) = queue();
        admit_all(&queue, &["d1", "d2"]);
        let taken = take_one(&queue, "d1", 0);
        queue.retry(EP, &taken, 0, 3, "status 503");
        let taken = take_one(&queue, "d2", 0);
        let d1 = take_one(&queue, "d1", 0);
        queue.dead_letter(EP, &d1, 4, "attempts exhausted", 50);
        assert!(!queue.replay(EP, "d2"), "not dead-lettered");
        assert!(!queue.replay(EP, "nope"));
        assert!(queue.replay(EP, "d1"));
        assert!(!queue.replay(EP, "d1"), "already replayed");
        let stats = queue.stats(EP);
        assert_eq!((stats.ready, stats.in_flight, stats.dead), (1, 1, 0));
        assert_eq!(stats.oldest_dead_ms, None);
        assert_eq!(stats.oldest_received_ms, Some(1_000));
        assert!(queue.dead_letter_of(EP, "d1").is_none());
        let replayed = take_one(&queue, "d1", 60);
        assert_ne!(replayed.entry, d1.entry);
        assert_eq!(replayed.delivery.attempts, 0);
        assert!(replayed.delivery.replayed);
        assert_eq!(replayed.delivery.last_error, "status 503");
        assert!(queue.commit(EP, &replayed, WINDOW));
        assert!(queue.commit(EP, &taken, WINDOW));
        assert_eq!(queue.stats(EP), QueueStats::default());
    }

    #[test]
    fn purge_ends_a_dead_letter_as_done() {
        let (queue, store) = queue();
        let sent = with_body_key("d1", b"body");
        assert_eq!(queue.admit(&sent).unwrap(), Admitted::Queued);
        admit_all(&queue, &["d2"]);
        assert!(!queue.purge(EP, "d1", WINDOW), "not dead-lettered");
        let taken = take_one(&queue, "d1", 0);
        queue.dead_letter(EP, &taken, 1, "status 410", 5);
        assert!(queue.purge(EP, "d1", WINDOW));
        assert!(!queue.purge(EP, "d1", WINDOW));
        assert!(!queue.purge("other", "d1", WINDOW));
        let stats = queue.stats(EP);
        assert_eq!((stats.held, stats.dead), (1, 0));
        assert_eq!(stats.held_bytes, charge(&admission("d2")));
        // A late retry of the sender is a duplicate, in either mode.
        assert_eq!(queue.admit(&sent).unwrap(), Admitted::Duplicate);
        assert_claim(&store, sent.dedup.clone(), "done");
        // The worker's copy of the purged delivery settles nothing.
        assert!(!queue.commit(EP, &taken, WINDOW));
        assert!(
            queue
                .take(EP, 10, LEASE, 0)
                .iter()
                .all(|t| t.delivery.delivery_id == "d2")
        );
    }

    #[test]
    fn stats_count_every_place() {
        let (queue, _) = queue();
        for (id, received) in [("a", 40), ("b", 10), ("c", 30), ("d", 20), ("e", 50)] {
            let mut sent = admission(id);
            sent.received_at_ms = received;
            assert_eq!(queue.admit(&sent).unwrap(), Admitted::Queued);
        }
        assert_eq!(queue.stats(EP).oldest_received_ms, Some(10));
        let taken = queue.take(EP, 3, LEASE, 0);
        assert_eq!(ids(&taken), ["a", "b", "c"]);
        queue.retry(EP, &taken[0], 1_000, 1, "status 500");
        queue.dead_letter(EP, &taken[1], 1, "status 400", 77);
        let stats = queue.stats(EP);
        let held_bytes = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|id| charge(&admission(id)))
            .sum();
        assert_eq!(
            stats,
            QueueStats {
                ready: 2,
                in_flight: 1,
                scheduled: 1,
                dead: 1,
                held: 5,
                held_bytes,
                oldest_received_ms: Some(20),
                oldest_dead_ms: Some(77),
            }
        );
        assert_eq!(queue.stats("other"), QueueStats::default());
    }

    #[test]
    fn endpoints_are_separate() {
        let (queue, _) = queue();
        let capped = |endpoint: &str, id: &str| Admission {
            endpoint_id: endpoint.to_owned(),
            dedup: DeliveryKeys::new(endpoint, id, None),
            max_queued: 1,
            ..admission(id)
        };
        assert_eq!(queue.admit(&capped("a", "d1")).unwrap(), Admitted::Queued);
        assert_eq!(queue.admit(&capped("a", "d2")).unwrap(), Admitted::Full);
        // The same delivery ID under another endpoint is another delivery.
        assert_eq!(queue.admit(&capped("b", "d1")).unwrap(), Admitted::Queued);
        let from_b = queue.take("b", 10, LEASE, 0);
        assert_eq!(ids(&from_b), ["d1"]);
        assert!(queue.commit("b", &from_b[0], WINDOW));
        assert_eq!(queue.stats("b"), QueueStats::default());
        assert_eq!(queue.stats("a").held, 1);
        assert_eq!(
            queue.admit(&capped("a", "d1")).unwrap(),
            Admitted::Duplicate
        );
    }

    #[test]
    fn queued_markers_survive_eviction_pressure() {
        let (queue, store, evictions) = queue_with(MemoryLimits {
            max_entries: 4,
            max_bytes: 1 << 20,
        });
        let sent = with_body_key("d1", b"body");
        assert_eq!(queue.admit(&sent).unwrap(), Admitted::Queued);
        // Fill the dedup store many times over with sync-mode claims and done marks.
        for n in 0..50 {
            let keys = DeliveryKeys::new(EP, &format!("sync-{n}"), None);
            let ClaimOutcome::Claimed(claim) = store.claim(keys, LEASE).unwrap() else {
                panic!("expected a claim");
            };
            if n % 2 == 0 {
                store.commit(&claim, WINDOW).unwrap();
            }
        }
        assert!(evictions.get() > 40, "evictions: {}", evictions.get());
        assert_eq!(queue.admit(&sent).unwrap(), Admitted::Duplicate);
        assert_claim(&store, sent.dedup.clone(), "in_flight");
        // The delivery is still there, and its commit leaves (evictable) done marks.
        let taken = take_one(&queue, "d1", 0);
        assert!(queue.commit(EP, &taken, WINDOW));
        assert_claim(&store, sent.dedup.clone(), "done");
        let (entries, _) = store.usage();
        assert!(entries <= 4);
    }

    #[test]
    fn concurrent_admissions_of_one_delivery_queue_it_once() {
        let (queue, _) = queue();
        let queued = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|n| {
                    let queue = &queue;
                    scope.spawn(move || {
                        (0..100)
                            .filter(|i| {
                                // Half by the delivery ID, half by the body key under new IDs.
                                let sent = if n % 2 == 0 {
                                    with_body_key("storm", b"storm")
                                } else {
                                    with_body_key(&format!("storm-{n}-{i}"), b"storm")
                                };
                                queue.admit(&sent).unwrap() == Admitted::Queued
                            })
                            .count()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap())
                .sum::<usize>()
        });
        assert_eq!(queued, 1);
        assert_eq!(queue.stats(EP).held, 1);
    }

    #[tokio::test]
    async fn the_store_facade_dispatches_to_the_memory_queue() {
        use crate::dedup::Store;
        use crate::queue::AdmitError;
        use hookguard_api::Durability;

        let store = Store::memory(ROOMY, Counter::default(), Duration::from_millis(100));
        assert!(matches!(store.promise(), Promise::Memory(_)));
        let sent = admission("d1");
        assert!(matches!(
            store.admit(&sent, Durability::Disk).await,
            Err(AdmitError::NotDurable(Promise::Memory(_)))
        ));
        assert_eq!(store.queue_stats(EP).await.unwrap(), QueueStats::default());
        assert_eq!(
            store.admit(&sent, Durability::Memory).await.unwrap(),
            Admitted::Queued
        );
        let taken = store.take(EP, 10, LEASE, 0).await.unwrap();
        assert_eq!(ids(&taken), ["d1"]);
        store
            .retry_queued(EP, &taken[0], 0, 1, "status 500")
            .await
            .unwrap();
        let taken = store.take(EP, 10, LEASE, 0).await.unwrap();
        store
            .dead_letter(EP, &taken[0], 1, "status 400", 9)
            .await
            .unwrap();
        assert_eq!(store.dead_letters(EP, None, 10).await.unwrap().len(), 1);
        assert!(store.dead_letter_of(EP, "d1").await.unwrap().is_some());
        assert!(store.replay(EP, "d1").await.unwrap());
        let taken = store.take(EP, 10, LEASE, 0).await.unwrap();
        assert!(store.commit_queued(EP, &taken[0], WINDOW).await.unwrap());
        assert!(!store.purge(EP, "d1", WINDOW).await.unwrap());
        assert_eq!(
            store.admit(&sent, Durability::Memory).await.unwrap(),
            Admitted::Duplicate
        );
    }
}
