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

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::mem::size_of;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use super::{Claim, ClaimOutcome, DeliveryKeys, StoreError, Token};

/// The in-memory store's hard limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Most keys held at once (a delivery has one or two).
    pub max_entries: usize,
    /// Most accounted bytes held at once (see the module docs for what is counted).
    pub max_bytes: usize,
}

/// Bytes assumed for a key's heap buffer beyond its length: allocator header and rounding.
const HEAP_ALLOCATION_OVERHEAD: usize = 16;

/// Accounted bytes per map entry besides the key's bytes: a hash-table slot (key `String` +
/// [`Entry`]) and its control byte, doubled for growth slack, plus the key's allocation header.
pub const MEMORY_ENTRY_OVERHEAD: usize =
    2 * (size_of::<(String, Entry)>() + 1) + HEAP_ALLOCATION_OVERHEAD;

/// Accounted bytes per insertion-queue slot besides the key's bytes: a ring-buffer slot
/// (sequence number + key `String`), doubled for growth slack, plus the key's allocation header.
pub const MEMORY_QUEUE_SLOT_OVERHEAD: usize =
    2 * size_of::<(u64, String)>() + HEAP_ALLOCATION_OVERHEAD;

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
            match state.live_value(key, now) {
                Some(Value::Done) => return Ok(ClaimOutcome::Done),
                Some(Value::InFlight(_)) => in_flight = true,
                None => {}
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
}

impl State {
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
