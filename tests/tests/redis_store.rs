//! The Redis dedup store against a real `redis-server`: the claim/commit/release contract,
//! the TTLs and key layout it leaves in Redis, and its behaviour when Redis stalls (ghost
//! writes), dies and comes back, or is down when the sidecar starts.

// clippy.toml's allow-*-in-tests covers `#[test]` functions, not the helpers beside them.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use hookguard_sidecar::dedup::{Claim, ClaimOutcome, DedupStore, DeliveryKeys, Store, StoreError};
use hookguard_tests::redis::{Persistence, RedisServer};
use tokio::time::{Instant, sleep};

const DEADLINE: Duration = Duration::from_secs(1);
const LEASE: Duration = Duration::from_secs(30);
const WINDOW: Duration = Duration::from_secs(24 * 3600);
const SHORT_LEASE: Duration = Duration::from_millis(150);

async fn store_for(server: &RedisServer, deadline: Duration) -> Store {
    let store = Store::redis(&server.url(), deadline).unwrap();
    store.wait_ready(Duration::from_secs(5)).await.unwrap();
    store
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

fn hash_tag(key: &str) -> &str {
    let open = key.find('{').unwrap();
    let close = open + key[open..].find('}').unwrap();
    &key[open..=close]
}

#[tokio::test]
async fn claim_then_commit_leaves_the_expected_values_and_ttls() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server, DEADLINE).await;
    assert_eq!(store.kind(), "redis");
    assert_eq!(store.memory_usage(), None);

    let keys = with_body("evt-1", b"{\"n\":1}");
    let claim = claimed(store.claim(keys.clone(), LEASE).await);
    assert_eq!(claim.keys(), &keys);
    for key in keys.as_slice() {
        let value = server.get(key).unwrap().unwrap();
        assert!(value.starts_with("inflight:"), "{key} = {value}");
        let pttl = server.pttl(key).unwrap();
        assert!(
            pttl > 0 && pttl <= 30_000,
            "PTTL {pttl} of an in-flight key"
        );
    }
    // Both keys of the delivery share one hash tag, hence one cluster slot.
    let stored = server.keys("hg:*").unwrap();
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(hash_tag(&stored[0]), "{ep1}");
    assert_eq!(hash_tag(&stored[0]), hash_tag(&stored[1]));

    assert_in_flight(store.claim(keys.clone(), LEASE).await);
    store.commit(&claim, WINDOW).await.unwrap();
    for key in keys.as_slice() {
        assert_eq!(server.get(key).unwrap().as_deref(), Some("done"));
        let pttl = server.pttl(key).unwrap();
        assert!(
            pttl > 24 * 3_600_000 - 10_000 && pttl <= 24 * 3_600_000,
            "PTTL {pttl} of a done key"
        );
    }
    assert_done(store.claim(keys.clone(), LEASE).await);
    // A release after the commit changes nothing.
    store.release(&claim).await.unwrap();
    assert_done(store.claim(keys, LEASE).await);
}

#[tokio::test]
async fn release_lets_the_retry_through_but_not_with_a_foreign_token() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server, DEADLINE).await;

    let claim = claimed(store.claim(with_body("a", b"x"), LEASE).await);
    store.release(&claim).await.unwrap();
    assert!(server.keys("hg:*").unwrap().is_empty());

    let stale = claimed(store.claim(id("b"), SHORT_LEASE).await);
    sleep(SHORT_LEASE + Duration::from_millis(100)).await;
    let current = claimed(store.claim(id("b"), LEASE).await);
    let held = server.get(&id("b").as_slice()[0]).unwrap();
    store.release(&stale).await.unwrap();
    assert_eq!(server.get(&id("b").as_slice()[0]).unwrap(), held);
    assert_in_flight(store.claim(id("b"), LEASE).await);
    store.release(&current).await.unwrap();
    claimed(store.claim(id("b"), LEASE).await);
}

#[tokio::test]
async fn lease_expiry_makes_the_key_claimable_again() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server, DEADLINE).await;
    // A long lease, so the in-flight check cannot outlive it however slow the machine is...
    claimed(store.claim(id("a"), LEASE).await);
    assert_in_flight(store.claim(id("a"), LEASE).await);
    // ...then the lease runs out on purpose, the way it would by itself.
    let keys = id("a");
    let key = &keys.as_slice()[0];
    let expiring: i64 = redis::cmd("PEXPIRE")
        .arg(key)
        .arg(1)
        .query(&mut server.connect().unwrap())
        .unwrap();
    assert_eq!(expiring, 1, "{key} held a lease");
    sleep(Duration::from_millis(100)).await;
    claimed(store.claim(id("a"), LEASE).await);

    // A short lease given to the claim runs out by itself.
    claimed(store.claim(id("b"), SHORT_LEASE).await);
    sleep(SHORT_LEASE + Duration::from_millis(100)).await;
    claimed(store.claim(id("b"), LEASE).await);
}

#[tokio::test]
async fn commit_after_lease_expiry_still_writes_done() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server, DEADLINE).await;
    let late = claimed(store.claim(id("a"), SHORT_LEASE).await);
    sleep(SHORT_LEASE + Duration::from_millis(100)).await;
    let other = claimed(store.claim(id("a"), LEASE).await);
    store.commit(&late, WINDOW).await.unwrap();
    assert_done(store.claim(id("a"), LEASE).await);
    store.release(&other).await.unwrap();
    assert_done(store.claim(id("a"), LEASE).await);
}

#[tokio::test]
async fn the_body_key_catches_a_replay_under_a_fresh_id() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server, DEADLINE).await;
    let claim = claimed(store.claim(with_body("id-1", b"body"), LEASE).await);
    assert_in_flight(store.claim(with_body("id-2", b"body"), LEASE).await);
    store.commit(&claim, WINDOW).await.unwrap();
    assert_done(store.claim(with_body("id-2", b"body"), LEASE).await);
    // The refused claim wrote nothing: "id-2" alone is free.
    claimed(store.claim(id("id-2"), LEASE).await);
    claimed(store.claim(with_body("id-3", b"other body"), LEASE).await);
}

/// A claim whose answer never came must leave a lease, never a `done`.
#[tokio::test]
async fn a_ghost_write_is_only_a_lease() {
    let mut server = RedisServer::start().unwrap();
    let store = store_for(&server, Duration::from_millis(200)).await;
    let key = id("ghost").as_slice()[0].clone();

    server.pause().unwrap();
    let started = Instant::now();
    let outcome = store.claim(id("ghost"), LEASE).await;
    assert!(matches!(outcome, Err(StoreError::Timeout)), "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(StoreError::Timeout.metric_label(), "timeout");
    server.resume().unwrap();

    // The queued claim lands after the client gave up on it.
    let give_up = Instant::now() + Duration::from_secs(5);
    let value = loop {
        if let Some(value) = server.get(&key).unwrap() {
            break value;
        }
        assert!(Instant::now() < give_up, "the ghost write never landed");
        sleep(Duration::from_millis(20)).await;
    };
    assert!(value.starts_with("inflight:"), "ghost write left {value}");
    let pttl = server.pttl(&key).unwrap();
    assert!(pttl > 0 && pttl <= 30_000, "PTTL {pttl}");
    // The retry is told to come back later, not that the delivery was processed.
    assert_in_flight(store.claim(id("ghost"), LEASE).await);
}

#[tokio::test]
async fn the_store_reconnects_after_redis_restarts() {
    let mut server = RedisServer::start().unwrap();
    let store = store_for(&server, Duration::from_secs(2)).await;
    claimed(store.claim(id("before"), LEASE).await);

    server.kill().unwrap();
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        match store.claim(id("during"), LEASE).await {
            Err(StoreError::Unavailable(_) | StoreError::Timeout) => break,
            other => assert!(
                Instant::now() < give_up,
                "still answering while down: {other:?}"
            ),
        }
        sleep(Duration::from_millis(20)).await;
    }
    // Once the loss is noticed, commands fail fast rather than wait for the deadline.
    let started = Instant::now();
    let ping = store.ping().await;
    assert!(matches!(ping, Err(StoreError::Unavailable(_))), "{ping:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    server.restart().unwrap();
    store.wait_ready(Duration::from_secs(5)).await.unwrap();
    // No persistence: the restarted Redis is empty, and the store works as before.
    claimed(store.claim(id("before"), LEASE).await);
    assert_in_flight(store.claim(id("before"), LEASE).await);
    let claim = claimed(store.claim(id("after"), LEASE).await);
    store.commit(&claim, WINDOW).await.unwrap();
    assert_done(store.claim(id("after"), LEASE).await);
}

#[tokio::test]
async fn a_store_created_while_redis_is_down_connects_when_it_comes_up() {
    let mut server = RedisServer::start().unwrap();
    server.kill().unwrap();

    let started = Instant::now();
    let store = Store::redis(&server.url(), DEADLINE).unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    let ping = store.ping().await;
    assert!(matches!(ping, Err(StoreError::Unavailable(_))), "{ping:?}");
    let claim = store.claim(id("a"), LEASE).await;
    assert!(
        matches!(claim, Err(StoreError::Unavailable(_))),
        "{claim:?}"
    );
    assert_eq!(
        StoreError::Unavailable(redis::RedisError::from((redis::ErrorKind::Io, "x")))
            .metric_label(),
        "unavailable"
    );

    server.restart().unwrap();
    store.wait_ready(Duration::from_secs(5)).await.unwrap();
    claimed(store.claim(id("a"), LEASE).await);
}

#[tokio::test]
async fn a_bad_url_names_the_expected_form() {
    for url in [
        "localhost:6379",
        "http://localhost:6379",
        "redis://",
        "redis://host/notadb",
    ] {
        let error = Store::redis(url, DEADLINE).unwrap_err();
        assert!(
            matches!(error, StoreError::InvalidUrl(_)),
            "{url}: {error:?}"
        );
        assert!(
            error.to_string().contains("redis://host:port/db"),
            "{url}: {error}"
        );
        assert_eq!(error.metric_label(), "invalid_url");
    }
}

#[test]
fn a_redis_store_needs_a_runtime() {
    let error = Store::redis("redis://127.0.0.1:1/0", DEADLINE).unwrap_err();
    assert!(matches!(error, StoreError::NoRuntime), "{error:?}");
}

#[tokio::test]
async fn concurrent_claims_of_one_delivery_admit_exactly_one() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server, DEADLINE).await;
    let claims = (0..64).map(|_| store.claim(with_body("storm", b"body"), LEASE));
    let outcomes = futures::future::join_all(claims).await;
    let admitted = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Ok(ClaimOutcome::Claimed(_))))
        .count();
    let in_flight = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Ok(ClaimOutcome::InFlight)))
        .count();
    assert_eq!((admitted, in_flight), (1, 63), "{outcomes:?}");
}

#[tokio::test]
async fn with_append_only_persistence_done_survives_a_restart() {
    let mut server = RedisServer::start_with(Persistence::AppendOnly).unwrap();
    let store = store_for(&server, DEADLINE).await;
    let claim = claimed(store.claim(id("kept"), LEASE).await);
    store.commit(&claim, WINDOW).await.unwrap();
    server.restart().unwrap();
    store.wait_ready(Duration::from_secs(5)).await.unwrap();
    assert_done(store.claim(id("kept"), LEASE).await);
}

/// `rediss://` needs one of the redis crate's TLS features; without it the URL is refused at
/// start with a cause that says so, rather than failing later on every command.
#[tokio::test]
async fn a_tls_url_is_accepted_or_refused_naming_tls() {
    match Store::redis("rediss://127.0.0.1:6380/0", DEADLINE) {
        Ok(store) => assert_eq!(store.kind(), "redis"),
        Err(error) => {
            let source = std::error::Error::source(&error).map(ToString::to_string);
            assert!(matches!(error, StoreError::InvalidUrl(_)), "{error:?}");
            assert!(
                source.as_deref().unwrap_or("").contains("TLS"),
                "{source:?}"
            );
        }
    }
}
