//! The in-memory dedup store: one replica's claims and `done` marks under a hard bound.
//!
//! Same semantics as the Redis store, kept in a map behind a `std::sync::Mutex` (every
//! operation is short and never awaits while holding it). Entries expire lazily when touched;
//! when a write needs room, expired entries are reclaimed first, then the oldest writes are
//! evicted, each counted in the `evictions` metric.
//!
//! # Accounting
//!
//! The bound is on *accounted* bytes, a deliberate over-approximation of what the store holds:
//! every copy of a key is counted (one in the map, one in the insertion-order queue, including
//! queue slots left stale by rewrites until they are dropped) plus a fixed overhead per map
//! entry ([`MEMORY_ENTRY_OVERHEAD`]) and per queue slot ([`MEMORY_QUEUE_SLOT_OVERHEAD`]). The
//! overheads are twice the slot size, because a hash table or ring buffer that grows by
//! doubling may hold up to half its slots empty, plus an allocator header for the key's heap
//! buffer.
//!
//! # Queued markers
//!
//! In queue mode a delivery's keys hold `queued` from admission until its commit or purge
//! ([`crate::queue`]). Those markers live in a set of their own beside the map, with no TTL,
//! and eviction never looks at them: making room for a `done` mark must not drop a delivery
//! the sidecar has already answered 2xx for. They do not count against [`MemoryLimits`]; the
//! queue bounds them (at most two per held delivery) and counts their bytes
//! ([`MemoryStore::queued_marker_bytes`]) against its own caps. A sync-mode claim treats a
//! queued key as held ([`ClaimOutcome::InFlight`]), as the Redis script treats any value other
//! than `done`; a `done` mark or a live lease in the map wins over a marker. The queue reaches
//! the markers through [`MemoryStore::keys`] while it holds its own lock: the lock order is
//! queue, then store, and the store never takes the queue's lock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::mem::size_of;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use super::{Claim, ClaimOutcome, DeliveryKeys, StoreError, Token};
use crate::queue::Admitted;

/// The in-memory store's hard limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Most keys held at once (a delivery has one or two).
    pub max_entries: usize,
    /// Most accounted bytes held at once (see the module docs for what is counted).
    pub max_bytes: usize,
}

/// Bytes assumed for a heap buffer beyond its length: allocator header and rounding.
const HEAP_ALLOCATION_OVERHEAD: usize = 16;

/// Accounted bytes per map entry besides the key's bytes: a hash-table slot (key `String` +
/// [`Entry`]) and its control byte, doubled for growth slack, plus the key's allocation header.
pub const MEMORY_ENTRY_OVERHEAD: usize =
    2 * (size_of::<(String, Entry)>() + 1) + HEAP_ALLOCATION_OVERHEAD;

/// Accounted bytes per insertion-queue slot besides the key's bytes: a ring-buffer slot
/// (sequence number + key `String`), doubled for growth slack, plus the key's allocation header.
pub const MEMORY_QUEUE_SLOT_OVERHEAD: usize =
    2 * size_of::<(u64, String)>() + HEAP_ALLOCATION_OVERHEAD;

/// Accounted bytes per queued marker besides the key's bytes: a hash-set slot (the key's
/// `String`) and its control byte, doubled for growth slack, plus the key's allocation header.
const QUEUED_MARKER_OVERHEAD: usize = 2 * (size_of::<String>() + 1) + HEAP_ALLOCATION_OVERHEAD;

/// Stale queue slots tolerated beyond one per live entry before the queue is compacted.
const QUEUE_SLACK: usize = 64;

/// Far enough to never expire in practice, for TTLs that overflow `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pub(crate) struct MemoryStore {
    state: Mutex<State>,
    limits: MemoryLimits,
    evictions: Counter,
}

/// One key's state.
#[derive(Debug)]
struct Entry {
    value: Value,
    expires: Instant,
    /// The sequence number of the write that created this entry; the queue slot carrying the
    /// same number is the live one, older slots for the key are stale.
    seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    InFlight(Token),
    Done,
}

#[derive(Default)]
struct State {
    map: HashMap<String, Entry>,
    /// Keys holding `queued` (queue mode): no TTL, never evicted, outside the limits.
    queued: HashSet<String>,
    /// Keys in write order, oldest first; one live slot per map entry plus stale ones.
    queue: VecDeque<(u64, String)>,
    next_seq: u64,
    bytes: usize,
    /// A lower bound on the earliest expiry in the map; exact right after a sweep.
    next_expiry: Option<Instant>,
    /// Writes since the last sweep, so full sweeps are paid for by the writes between them.
    writes_since_sweep: usize,
}

impl MemoryStore {
    pub(crate) fn new(limits: MemoryLimits, evictions: Counter) -> MemoryStore {
        MemoryStore {
            state: Mutex::new(State::default()),
            limits,
            evictions,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No operation leaves the state half-updated across a panic point that matters for
        // safety (the worst is a slightly off byte count), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// (entries, accounted bytes).
    pub(crate) fn usage(&self) -> (u64, u64) {
        let state = self.lock();
        (
            u64::try_from(state.map.len()).unwrap_or(u64::MAX),
            u64::try_from(state.bytes).unwrap_or(u64::MAX),
        )
    }

    pub(crate) fn claim(
        &self,
        keys: DeliveryKeys,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        self.claim_at(keys, lease, Instant::now())
    }

    pub(crate) fn commit(&self, claim: &Claim, window: Duration) -> Result<(), StoreError> {
        self.commit_at(claim, window, Instant::now())
    }

    pub(crate) fn release(&self, claim: &Claim) {
        let mut state = self.lock();
        for key in claim.keys.as_slice() {
            let ours = state
                .map
                .get(key.as_str())
                .is_some_and(|entry| entry.value == Value::InFlight(claim.token));
            if ours {
                state.remove(key);
            }
        }
    }

    pub(crate) fn claim_at(
        &self,
        keys: DeliveryKeys,
        lease: Duration,
        now: Instant,
    ) -> Result<ClaimOutcome, StoreError> {
        let mut state = self.lock();
        let mut in_flight = false;
        for key in keys.as_slice() {
            match state.key_state(key, now) {
                KeyState::Done => return Ok(ClaimOutcome::Done),
                KeyState::InFlight | KeyState::Queued => in_flight = true,
                KeyState::Free => {}
            }
        }
        if in_flight {
            return Ok(ClaimOutcome::InFlight);
        }
        let token = Token::next();
        self.write(
            &mut state,
            &keys,
            Value::InFlight(token),
            expiry(now, lease),
            now,
        )?;
        Ok(ClaimOutcome::Claimed(Claim { keys, token }))
    }

    pub(crate) fn commit_at(
        &self,
        claim: &Claim,
        window: Duration,
        now: Instant,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        self.write(
            &mut state,
            &claim.keys,
            Value::Done,
            expiry(now, window),
            now,
        )
    }

    /// Sets every key to `value`, making room for all of them first so that room-making can
    /// never evict a key of the same write.
    fn write(
        &self,
        state: &mut State,
        keys: &DeliveryKeys,
        value: Value,
        expires: Instant,
        now: Instant,
    ) -> Result<(), StoreError> {
        for key in keys.as_slice() {
            state.remove(key);
        }
        let needed_bytes = keys
            .as_slice()
            .iter()
            .map(|key| entry_bytes(key) + slot_bytes(key))
            .sum();
        self.make_room(state, keys.as_slice().len(), needed_bytes, now)?;
        for key in keys.as_slice() {
            let seq = state.next_seq;
            state.next_seq += 1;
            state.bytes += entry_bytes(key) + slot_bytes(key);
            state.map.insert(
                key.clone(),
                Entry {
                    value,
                    expires,
                    seq,
                },
            );
            state.queue.push_back((seq, key.clone()));
            state.writes_since_sweep += 1;
        }
        state.next_expiry = Some(state.next_expiry.map_or(expires, |next| next.min(expires)));
        if state.queue.len() > 2 * state.map.len() + QUEUE_SLACK {
            state.compact_queue();
        }
        Ok(())
    }

    /// Whether a write of these keys can never fit the limits, however much is evicted.
    fn too_large(&self, keys: &DeliveryKeys) -> bool {
        let bytes: usize = keys
            .as_slice()
            .iter()
            .map(|key| entry_bytes(key) + slot_bytes(key))
            .sum();
        keys.as_slice().len() > self.limits.max_entries || bytes > self.limits.max_bytes
    }

    fn make_room(
        &self,
        state: &mut State,
        entries: usize,
        bytes: usize,
        now: Instant,
    ) -> Result<(), StoreError> {
        if entries > self.limits.max_entries || bytes > self.limits.max_bytes {
            return Err(StoreError::EntryTooLarge);
        }
        let fits = |state: &State| {
            state.map.len() + entries <= self.limits.max_entries
                && state.bytes + bytes <= self.limits.max_bytes
        };
        if fits(state) {
            return Ok(());
        }
        // Dead entries go before live ones, but a full sweep costs the whole map, so it runs
        // only when something has expired and enough writes happened since the last one to
        // pay for it; otherwise the oldest writes go, which is the policy under pressure anyway.
        let expired_due = state.next_expiry.is_some_and(|next| next <= now);
        if expired_due && state.writes_since_sweep >= state.map.len() / 4 {
            state.sweep(now);
            if fits(state) {
                return Ok(());
            }
        }
        while !fits(state) {
            let Some((seq, key)) = state.queue.pop_front() else {
                // Unreachable while the accounting holds: an empty queue means an empty map.
                return Err(StoreError::EntryTooLarge);
            };
            state.bytes = state.bytes.saturating_sub(slot_bytes(&key));
            let live = state.map.get(key.as_str()).filter(|entry| entry.seq == seq);
            if let Some(entry) = live {
                let expired = entry.expires <= now;
                state.remove(&key);
                if !expired {
                    self.evictions.inc();
                }
            }
        }
        Ok(())
    }

    /// Bytes assumed for a heap buffer beyond its length (for the queue's accounting).
    pub(crate) const HEAP_ALLOCATION_OVERHEAD: usize = HEAP_ALLOCATION_OVERHEAD;

    /// Accounted bytes of the `queued` marker of `key` (the queue counts them against its caps).
    pub(crate) fn queued_marker_bytes(key: &str) -> usize {
        key.len() + QUEUED_MARKER_OVERHEAD
    }

    /// The keys locked for the queue, which calls this while holding its own lock (lock order:
    /// queue, then store). Drop the guard before anything slow; nothing here may await.
    pub(crate) fn keys(&self) -> LockedKeys<'_> {
        LockedKeys {
            store: self,
            state: self.lock(),
        }
    }
}

/// What one key holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyState {
    /// Nothing live.
    Free,
    /// `done`: processed within the window.
    Done,
    /// A live sync-mode lease (`inflight:<token>`).
    InFlight,
    /// `queued`: a delivery in the queue holds it.
    Queued,
}

/// The store's state under its lock, for the queue's admission, commit and purge: reads and
/// writes made through one guard are atomic together (and with the queue's own state, which
/// the caller locks first).
pub(crate) struct LockedKeys<'a> {
    store: &'a MemoryStore,
    state: MutexGuard<'a, State>,
}

impl LockedKeys<'_> {
    /// What queue admission finds in these keys at `now`, by the queue's rule: any `done` →
    /// [`Admitted::Duplicate`]; else any live sync lease → [`Admitted::InFlight`]; else any
    /// `queued` → [`Admitted::Duplicate`]; `None` when every key is free. Expired entries are
    /// dropped on the way.
    pub(crate) fn admission(&mut self, keys: &DeliveryKeys, now: Instant) -> Option<Admitted> {
        let (mut in_flight, mut queued) = (false, false);
        for key in keys.as_slice() {
            match self.state.key_state(key, now) {
                KeyState::Done => return Some(Admitted::Duplicate),
                KeyState::InFlight => in_flight = true,
                KeyState::Queued => queued = true,
                KeyState::Free => {}
            }
        }
        if in_flight {
            Some(Admitted::InFlight)
        } else if queued {
            Some(Admitted::Duplicate)
        } else {
            None
        }
    }

    /// Fails with [`StoreError::EntryTooLarge`] if these keys could never be written as `done`
    /// under the limits (so the queue refuses them before it holds them, as a sync claim
    /// would).
    pub(crate) fn check_fits(&self, keys: &DeliveryKeys) -> Result<(), StoreError> {
        if self.store.too_large(keys) {
            Err(StoreError::EntryTooLarge)
        } else {
            Ok(())
        }
    }

    /// Sets every key to `queued`: no TTL, never evicted.
    pub(crate) fn mark_queued(&mut self, keys: &DeliveryKeys) {
        for key in keys.as_slice() {
            self.state.queued.insert(key.clone());
        }
    }

    /// Clears the keys' `queued` markers and sets them to `done` for `window` (evictable, like
    /// every `done` mark). Fails only if the keys could never fit (see
    /// [`LockedKeys::check_fits`]); the markers are cleared either way.
    pub(crate) fn mark_done(
        &mut self,
        keys: &DeliveryKeys,
        window: Duration,
        now: Instant,
    ) -> Result<(), StoreError> {
        for key in keys.as_slice() {
            self.state.queued.remove(key.as_str());
        }
        self.store
            .write(&mut self.state, keys, Value::Done, expiry(now, window), now)
    }
}

impl fmt::Debug for LockedKeys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedKeys").finish_non_exhaustive()
    }
}

impl State {
    /// What the key holds at `now`; an expired map entry is dropped on the way.
    fn key_state(&mut self, key: &str, now: Instant) -> KeyState {
        match self.live_value(key, now) {
            Some(Value::Done) => KeyState::Done,
            Some(Value::InFlight(_)) => KeyState::InFlight,
            None if self.queued.contains(key) => KeyState::Queued,
            None => KeyState::Free,
        }
    }

    /// The key's value if it has not expired; an expired entry is dropped on the way.
    fn live_value(&mut self, key: &str, now: Instant) -> Option<Value> {
        let entry = self.map.get(key)?;
        if entry.expires > now {
            return Some(entry.value);
        }
        self.remove(key);
        None
    }

    /// Drops the map entry; its queue slot turns stale and stays accounted until dropped.
    fn remove(&mut self, key: &str) {
        if self.map.remove(key).is_some() {
            self.bytes = self.bytes.saturating_sub(entry_bytes(key));
        }
    }

    fn sweep(&mut self, now: Instant) {
        let mut freed = 0;
        self.map.retain(|key, entry| {
            let keep = entry.expires > now;
            if !keep {
                freed += entry_bytes(key);
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
        self.next_expiry = self.map.values().map(|entry| entry.expires).min();
        self.writes_since_sweep = 0;
        self.compact_queue();
    }

    /// Keeps only the live queue slots, in order.
    fn compact_queue(&mut self) {
        let map = &self.map;
        let mut freed = 0;
        self.queue.retain(|(seq, key)| {
            let live = map.get(key.as_str()).is_some_and(|entry| entry.seq == *seq);
            if !live {
                freed += slot_bytes(key);
            }
            live
        });
        self.bytes = self.bytes.saturating_sub(freed);
    }
}

fn entry_bytes(key: &str) -> usize {
    key.len() + MEMORY_ENTRY_OVERHEAD
}

fn slot_bytes(key: &str) -> usize {
    key.len() + MEMORY_QUEUE_SLOT_OVERHEAD
}

fn expiry(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

impl fmt::Debug for MemoryStore {
    // The keys carry delivery IDs; the debug form shows only sizes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (entries, bytes) = self.usage();
        f.debug_struct("MemoryStore")
            .field("limits", &self.limits)
            .field("entries", &entries)
            .field("bytes", &bytes)
            .finish_non_exhaustive()
    }
}
