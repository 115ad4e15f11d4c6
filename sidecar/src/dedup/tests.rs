//! Unit tests of the dedup contract on the in-memory store, with a synthetic clock where time
//! matters. The same contract is tested against a real Redis in `tests/tests/redis_store.rs`.

use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use super::memory::MemoryStore;
use super::{
    Claim, ClaimOutcome, DedupStore, DeliveryKeys, MemoryLimits, Store, StoreError, Token,
};

const LEASE: Duration = Duration::from_secs(30);
const WINDOW: Duration = Duration::from_secs(24 * 3600);
const ROOMY: MemoryLimits = MemoryLimits {
    max_entries: 1_000_000,
    max_bytes: 1 << 30,
};

fn memory(limits: MemoryLimits) -> (MemoryStore, Counter) {
    let evictions = Counter::default();
    (MemoryStore::new(limits, evictions.clone()), evictions)
}

fn id(delivery: &str) -> DeliveryKeys {
    DeliveryKeys::new("ep1", delivery, None)
}

fn with_body(delivery: &str, body: &[u8]) -> DeliveryKeys {
    use sha2::Digest as _;
    let hash: [u8; 32] = sha2::Sha256::digest(body).into();
    DeliveryKeys::new("ep1", delivery, Some(&hash))
}

#[track_caller]
fn claimed(outcome: Result<ClaimOutcome, StoreError>) -> Claim {
    match outcome {
        Ok(ClaimOutcome::Claimed(claim)) => claim,
        other => panic!("expected Claimed, got {other:?}"),
    }
}

#[track_caller]
fn assert_done(outcome: Result<ClaimOutcome, StoreError>) {
    match outcome {
        Ok(ClaimOutcome::Done) => {}
        other => panic!("expected Done, got {other:?}"),
    }
}

#[track_caller]
fn assert_in_flight(outcome: Result<ClaimOutcome, StoreError>) {
    match outcome {
        Ok(ClaimOutcome::InFlight) => {}
        other => panic!("expected InFlight, got {other:?}"),
    }
}

#[test]
fn keys_share_the_endpoint_hash_tag() {
    let keys = DeliveryKeys::new("6f1c", "evt_1", Some(&[0xab; 32]));
    assert_eq!(
        keys.as_slice(),
        [
            "hg:{6f1c}:id:evt_1".to_owned(),
            format!("hg:{{6f1c}}:body:{}", "ab".repeat(32)),
        ]
    );
    assert_eq!(DeliveryKeys::new("6f1c", "evt_1", None).as_slice().len(), 1);
}

#[test]
fn tokens_are_unique_and_hex() {
    let a = Token::next();
    let b = Token::next();
    assert_ne!(a, b);
    let value = a.inflight_value();
    let hex = value.strip_prefix("inflight:").unwrap();
    assert_eq!(hex.len(), 32);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn claim_duplicate_in_flight_then_done_after_commit() {
    let (store, _) = memory(ROOMY);
    let now = Instant::now();
    let claim = claimed(store.claim_at(id("a"), LEASE, now));
    assert_eq!(claim.keys(), &id("a"));
    assert_in_flight(store.claim_at(id("a"), LEASE, now));
    store.commit_at(&claim, WINDOW, now).unwrap();
    assert_done(store.claim_at(id("a"), LEASE, now));
    // Other deliveries are unaffected.
    claimed(store.claim_at(id("b"), LEASE, now));
}

#[test]
fn release_lets_the_retry_through() {
    let (store, _) = memory(ROOMY);
    let now = Instant::now();
    let claim = claimed(store.claim_at(with_body("a", b"x"), LEASE, now));
    store.release(&claim);
    assert_eq!(store.usage().0, 0);
    claimed(store.claim_at(with_body("a", b"x"), LEASE, now));
}

#[test]
fn release_after_commit_keeps_done() {
    let (store, _) = memory(ROOMY);
    let now = Instant::now();
    let claim = claimed(store.claim_at(id("a"), LEASE, now));
    store.commit_at(&claim, WINDOW, now).unwrap();
    store.release(&claim);
    assert_done(store.claim_at(id("a"), LEASE, now));
}

#[test]
fn lease_expiry_makes_the_key_claimable_again() {
    let (store, _) = memory(ROOMY);
    let now = Instant::now();
    let first = claimed(store.claim_at(id("a"), LEASE, now));
    assert_in_flight(store.claim_at(
        id("a"),
        LEASE,
        (now + LEASE).checked_sub(Duration::from_millis(1)).unwrap(),
    ));
    let second = claimed(store.claim_at(id("a"), LEASE, now + LEASE));
    assert_ne!(first.token, second.token);
}

#[test]
fn commit_after_lease_expiry_still_writes_done() {
    let (store, _) = memory(ROOMY);
    let now = Instant::now();
    let late = claimed(store.claim_at(id("a"), LEASE, now));
    let later = now + LEASE + Duration::from_secs(1);
    let other = claimed(store.claim_at(id("a"), LEASE, later));
    // The app answered 2xx to the first copy after its lease ran out: it IS done.
    store.commit_at(&late, WINDOW, later).unwrap();
    assert_done(store.claim_at(id("a"), LEASE, later));
    // The second copy's release must not undo that.
    store.release(&other);
    assert_done(store.claim_at(id("a"), LEASE, later));
}

#[test]
fn release_with_a_foreign_token_does_nothing() {
    let (store, _) = memory(ROOMY);
    let now = Instant::now();
    let stale = claimed(store.claim_at(id("a"), LEASE, now));
    let later = now + LEASE;
    let _current = claimed(store.claim_at(id("a"), LEASE, later));
    store.release(&stale);
    assert_in_flight(store.claim_at(id("a"), LEASE, later));
}

#[test]
fn done_expires_after_the_window() {
    let (store, _) = memory(ROOMY);
    let now = Instant::now();
    let claim = claimed(store.claim_at(id("a"), LEASE, now));
    store.commit_at(&claim, WINDOW, now).unwrap();
    assert_done(
        store.claim_at(
            id("a"),
            LEASE,
            (now + WINDOW)
                .checked_sub(Duration::from_millis(1))
                .unwrap(),
        ),
    );
    claimed(store.claim_at(id("a"), LEASE, now + WINDOW));
}

#[test]
fn the_body_key_catches_a_replay_under_a_fresh_id() {
    let (store, _) = memory(ROOMY);
    let now = Instant::now();
    let claim = claimed(store.claim_at(with_body("id-1", b"{\"n\":1}"), LEASE, now));
    assert_in_flight(store.claim_at(with_body("id-2", b"{\"n\":1}"), LEASE, now));
    store.commit_at(&claim, WINDOW, now).unwrap();
    assert_done(store.claim_at(with_body("id-2", b"{\"n\":1}"), LEASE, now));
    // A different body under a fresh ID is a different delivery.
    claimed(store.claim_at(with_body("id-3", b"{\"n\":2}"), LEASE, now));
}

#[test]
fn done_wins_over_in_flight_and_a_refused_claim_writes_nothing() {
    let (store, _) = memory(ROOMY);
    let now = Instant::now();
    let done = claimed(store.claim_at(with_body("a", b"body"), LEASE, now));
    store.commit_at(&done, WINDOW, now).unwrap();
    let _held = claimed(store.claim_at(id("b"), LEASE, now));
    // Key 1 is in flight, key 2 is done: Done.
    assert_done(store.claim_at(with_body("b", b"body"), LEASE, now));
    // A refused claim leaves the free key alone: "c" with the done body is refused, and
    // "c" alone is still claimable.
    assert_done(store.claim_at(with_body("c", b"body"), LEASE, now));
    claimed(store.claim_at(id("c"), LEASE, now));
}

#[test]
fn limits_too_small_for_one_delivery_are_an_error() {
    let (store, _) = memory(MemoryLimits {
        max_entries: 1,
        max_bytes: 1 << 20,
    });
    let outcome = store.claim_at(with_body("a", b"x"), LEASE, Instant::now());
    assert!(
        matches!(outcome, Err(StoreError::EntryTooLarge)),
        "{outcome:?}"
    );
    let (store, _) = memory(MemoryLimits {
        max_entries: 10,
        max_bytes: 100,
    });
    let outcome = store.claim_at(id("a"), LEASE, Instant::now());
    assert!(
        matches!(outcome, Err(StoreError::EntryTooLarge)),
        "{outcome:?}"
    );
    assert_eq!(StoreError::EntryTooLarge.metric_label(), "entry_too_large");
}

#[test]
fn expired_entries_are_reclaimed_before_live_ones_are_evicted() {
    let (store, evictions) = memory(MemoryLimits {
        max_entries: 100,
        max_bytes: 1 << 20,
    });
    let now = Instant::now();
    for n in 0..100 {
        claimed(store.claim_at(id(&n.to_string()), LEASE, now));
    }
    let later = now + LEASE;
    for n in 100..200 {
        claimed(store.claim_at(id(&n.to_string()), LEASE, later));
    }
    assert_eq!(evictions.get(), 0);
    assert_eq!(store.usage().0, 100);
}

#[test]
fn rewrites_do_not_grow_the_queue() {
    let (store, _) = memory(ROOMY);
    let now = Instant::now();
    let baseline = {
        let claim = claimed(store.claim_at(id("a"), LEASE, now));
        store.release(&claim);
        store.usage().1
    };
    for _ in 0..100_000 {
        let claim = claimed(store.claim_at(id("a"), LEASE, now));
        store.release(&claim);
    }
    // Every stale queue slot is accounted, so bounded bytes prove the queue is compacted.
    let (entries, bytes) = store.usage();
    assert_eq!(entries, 0);
    assert!(
        bytes <= baseline + 200 * 200,
        "{bytes} bytes after rewrites"
    );
}

/// The hard bound: a million distinct deliveries through a small store.
#[test]
fn a_million_deliveries_stay_within_the_bound() {
    const IDS: u64 = 1_000_000;
    let limits = MemoryLimits {
        max_entries: 10_000,
        max_bytes: 1 << 20,
    };
    let (store, evictions) = memory(limits);
    let now = Instant::now();
    let max_entries = u64::try_from(limits.max_entries).unwrap();
    let max_bytes = u64::try_from(limits.max_bytes).unwrap();
    let started = Instant::now();
    for n in 0..IDS {
        let claim = claimed(store.claim_at(id(&n.to_string()), LEASE, now));
        store.commit_at(&claim, WINDOW, now).unwrap();
        let (entries, bytes) = store.usage();
        assert!(entries <= max_entries, "{entries} entries after id {n}");
        assert!(bytes <= max_bytes, "{bytes} bytes after id {n}");
    }
    let (entries, _) = store.usage();
    // Each delivery wrote one key and nothing expired: whatever is gone was evicted.
    assert_eq!(evictions.get(), IDS - entries);
    assert!(
        entries > 1000,
        "the bound should hold thousands of entries, holds {entries}"
    );
    for n in IDS - 1000..IDS {
        assert_done(store.claim_at(id(&n.to_string()), LEASE, now));
    }
    for n in 0..1000 {
        let claim = claimed(store.claim_at(id(&n.to_string()), LEASE, now));
        store.release(&claim);
    }
    eprintln!(
        "1,000,000 deliveries in {:?}; {entries} entries held; overheads {} B/entry, {} B/slot",
        started.elapsed(),
        super::MEMORY_ENTRY_OVERHEAD,
        super::MEMORY_QUEUE_SLOT_OVERHEAD,
    );
}

#[tokio::test]
async fn the_store_facade_delegates_and_reports_usage() {
    let evictions = Counter::default();
    let store = Store::memory(ROOMY, evictions, Duration::from_millis(100));
    assert_eq!(store.kind(), "memory");
    store.ping().await.unwrap();
    let ClaimOutcome::Claimed(claim) = store.claim(id("a"), LEASE).await.unwrap() else {
        panic!("expected a claim");
    };
    assert!(matches!(
        store.claim(id("a"), LEASE).await,
        Ok(ClaimOutcome::InFlight)
    ));
    store.commit(&claim, WINDOW).await.unwrap();
    assert!(matches!(
        store.claim(id("a"), LEASE).await,
        Ok(ClaimOutcome::Done)
    ));
    store.release(&claim).await.unwrap();
    let (entries, bytes) = store.memory_usage().unwrap();
    assert_eq!(entries, 1);
    assert!(bytes > 0);
}

#[test]
fn concurrent_claims_of_one_delivery_admit_exactly_one() {
    let (store, _) = memory(ROOMY);
    let now = Instant::now();
    let admitted = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    (0..100)
                        .filter(|_| {
                            matches!(
                                store.claim_at(with_body("storm", b"body"), LEASE, now),
                                Ok(ClaimOutcome::Claimed(_))
                            )
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
    assert_eq!(admitted, 1);
}
