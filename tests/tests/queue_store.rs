//! Queue mode on a real Redis (and Valkey): admission with its outcomes and caps, take with
//! leases, commit, retry, dead letters, stats, and what the store promises about durability
//! (probed from the server's configuration, including the `WAITAOF` group commit on Valkey),
//! on one server and on a Redis Cluster.

// clippy.toml's allow-*-in-tests covers `#[test]` functions, not the helpers beside them.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookguard_api::Durability;
use hookguard_sidecar::dedup::{ClaimOutcome, DedupStore, DeliveryKeys, Store, StoreError};
use hookguard_sidecar::queue::{
    Admission, AdmitError, Admitted, Promise, QueueKeys, QueueStats, StoredRequest, Taken,
    decode_headers, encode_headers,
};
use hookguard_tests::redis::{Persistence, RedisServer};
use hookguard_tests::wait::{eventually, eventually_value};

const EP: &str = "ep1";
const DEADLINE: Duration = Duration::from_secs(1);
const LEASE: Duration = Duration::from_secs(30);
const SHORT_LEASE: Duration = Duration::from_millis(300);
const WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Room enough for every test delivery.
const ROOMY: u64 = 1 << 30;
/// Bounds a poll for something that happens within a lease or a reconnect.
const SETTLE: Duration = Duration::from_secs(10);

async fn store_for(server: &RedisServer) -> Store {
    let store = Store::redis(&server.url(), DEADLINE).unwrap();
    store.wait_ready(Duration::from_secs(5)).await.unwrap();
    store
}

fn sha256(body: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(body).into()
}

fn request(body: &[u8]) -> StoredRequest {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert("x-sender-signature", "v1=abc".parse().unwrap());
    StoredRequest {
        path_and_query: "/hooks/stripe?x=1".to_owned(),
        headers: encode_headers(&headers),
        body: Bytes::copy_from_slice(body),
    }
}

/// A delivery of [`EP`] with the ID as its only dedup key.
fn admission(delivery_id: &str, body: &[u8], received_at_ms: u64) -> Admission {
    Admission {
        endpoint_id: EP.to_owned(),
        delivery_id: delivery_id.to_owned(),
        dedup: DeliveryKeys::new(EP, delivery_id, None),
        body_sha256: None,
        request: request(body),
        received_at_ms,
        max_queued: ROOMY,
        max_queued_bytes: ROOMY,
    }
}

/// A delivery whose dedup keys include the body hash (a scheme that signs no ID).
fn admission_by_body(delivery_id: &str, body: &[u8]) -> Admission {
    let hash = sha256(body);
    Admission {
        dedup: DeliveryKeys::new(EP, delivery_id, Some(&hash)),
        body_sha256: Some(hash),
        ..admission(delivery_id, body, 1_000)
    }
}

async fn admit(store: &Store, admission: &Admission) -> Admitted {
    store.admit(admission, Durability::Memory).await.unwrap()
}

async fn take(store: &Store, count: usize, lease: Duration, now_ms: u64) -> Vec<Taken> {
    store.take(EP, count, lease, now_ms).await.unwrap()
}

fn ids(taken: &[Taken]) -> Vec<&str> {
    taken
        .iter()
        .map(|taken| taken.delivery.delivery_id.as_str())
        .collect()
}

async fn stats(store: &Store) -> QueueStats {
    store.queue_stats(EP).await.unwrap()
}

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn stream_len(server: &RedisServer) -> u64 {
    redis::cmd("XLEN")
        .arg(QueueKeys::new(EP).stream())
        .query(&mut server.connect().unwrap())
        .unwrap()
}

/// How often the server ran `command` (`INFO commandstats`).
fn calls(server: &RedisServer, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut server.connect().unwrap())
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

fn memory_reason(promise: Promise) -> String {
    match promise {
        Promise::Memory(why) => why,
        other => panic!("expected a memory-only promise, got {other:?}"),
    }
}

#[tokio::test]
async fn an_admitted_delivery_is_stored_without_ttls_and_counted() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server).await;
    let delivery = admission_by_body("evt-1", b"{\"n\":1}");

    assert_eq!(admit(&store, &delivery).await, Admitted::Queued);

    let keys = QueueKeys::new(EP);
    for key in delivery.dedup.as_slice() {
        assert_eq!(server.get(key).unwrap().as_deref(), Some("queued"), "{key}");
        assert_eq!(
            server.pttl(key).unwrap(),
            -1,
            "{key} must not expire while queued"
        );
    }
    for key in [keys.stream(), keys.message("evt-1"), keys.stats()] {
        assert_eq!(
            server.pttl(&key).unwrap(),
            -1,
            "{key} must exist without a TTL"
        );
    }
    let size = delivery.request.size();
    assert_eq!(
        stats(&store).await,
        QueueStats {
            ready: 1,
            held: 1,
            held_bytes: size,
            oldest_received_ms: Some(1_000),
            ..QueueStats::default()
        }
    );
}

#[tokio::test]
async fn a_delivery_admitted_again_is_a_duplicate_by_id_and_by_body() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server).await;
    let first = admission_by_body("evt-1", b"same body");
    assert_eq!(admit(&store, &first).await, Admitted::Queued);

    assert_eq!(admit(&store, &first).await, Admitted::Duplicate);
    // Another delivery ID with the same body: the body key says it is queued.
    let same_body = admission_by_body("evt-2", b"same body");
    assert_eq!(admit(&store, &same_body).await, Admitted::Duplicate);
    // Same ID, other body (and no body key): the message of that ID exists.
    assert_eq!(
        admit(&store, &admission("evt-1", b"other", 1)).await,
        Admitted::Duplicate
    );
    assert_eq!(stats(&store).await.held, 1);
}

#[tokio::test]
async fn admission_during_a_sync_claim_is_in_flight_and_writes_nothing() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server).await;
    let delivery = admission("evt-1", b"{}", 1);
    let ClaimOutcome::Claimed(claim) = store.claim(delivery.dedup.clone(), LEASE).await.unwrap()
    else {
        panic!("the sync claim must succeed");
    };

    assert_eq!(admit(&store, &delivery).await, Admitted::InFlight);
    assert!(server.keys("hg:{ep1}:m:*").unwrap().is_empty());
    assert_eq!(stats(&store).await, QueueStats::default());

    // Once the sync path committed it, it is a duplicate.
    store.commit(&claim, WINDOW).await.unwrap();
    assert_eq!(admit(&store, &delivery).await, Admitted::Duplicate);
}

#[tokio::test]
async fn admission_is_full_past_max_queued_or_max_queued_bytes() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server).await;
    let capped = |id: &str| Admission {
        max_queued: 2,
        ..admission(id, b"0123456789", 1)
    };
    assert_eq!(admit(&store, &capped("a")).await, Admitted::Queued);
    assert_eq!(admit(&store, &capped("b")).await, Admitted::Queued);
    assert_eq!(admit(&store, &capped("c")).await, Admitted::Full);

    let held_bytes = stats(&store).await.held_bytes;
    let size = capped("d").request.size();
    let by_bytes = |id: &str, room: u64| Admission {
        max_queued_bytes: held_bytes + room,
        ..admission(id, b"0123456789", 1)
    };
    assert_eq!(
        admit(&store, &by_bytes("d", size - 1)).await,
        Admitted::Full
    );
    assert_eq!(admit(&store, &by_bytes("d", size)).await, Admitted::Queued);

    assert_eq!(stats(&store).await.held, 3);
    assert!(server.keys("hg:{ep1}:m:c").unwrap().is_empty());
    assert_eq!(server.get("hg:{ep1}:id:c").unwrap(), None);
}

#[tokio::test]
async fn a_redis_out_of_memory_answers_full_and_still_commits() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server).await;
    assert_eq!(
        admit(&store, &admission("before", b"{}", 1)).await,
        Admitted::Queued
    );
    let taken = take(&store, 1, LEASE, now_ms()).await;
    let mut conn = server.connect().unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query::<()>(&mut conn)
        .unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query::<()>(&mut conn)
        .unwrap();

    assert_eq!(
        admit(&store, &admission("during", b"{}", 1)).await,
        Admitted::Full
    );
    assert!(server.keys("hg:{ep1}:m:during").unwrap().is_empty());
    assert_eq!(server.get("hg:{ep1}:id:during").unwrap(), None);
    // A commit frees memory first, so a full Redis still lets the queue drain.
    assert!(store.commit_queued(EP, &taken[0], WINDOW).await.unwrap());
    assert_eq!(stats(&store).await.held, 0);
}

#[tokio::test]
async fn take_hands_out_oldest_first_with_the_stored_request() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server).await;
    let body = b"\x00binary \xff body\r\n";
    for (i, id) in ["d1", "d2", "d3"].into_iter().enumerate() {
        let received = 1_000 + u64::try_from(i).unwrap();
        assert_eq!(
            admit(&store, &admission(id, body, received)).await,
            Admitted::Queued
        );
    }

    let first = take(&store, 2, LEASE, now_ms()).await;
    assert_eq!(ids(&first), ["d1", "d2"]);
    let delivery = &first[0].delivery;
    assert_eq!(delivery.request, request(body));
    assert_eq!(delivery.received_at_ms, 1_000);
    assert_eq!(delivery.attempts, 0);
    assert!(!delivery.replayed);
    assert_eq!(delivery.last_error, "");
    assert_eq!(delivery.body_sha256, None);
    let headers = decode_headers(&delivery.request.headers).unwrap();
    assert_eq!(headers["x-sender-signature"], "v1=abc");

    assert_eq!(ids(&take(&store, 10, LEASE, now_ms()).await), ["d3"]);
    assert!(take(&store, 10, LEASE, now_ms()).await.is_empty());
    let counted = stats(&store).await;
    assert_eq!((counted.ready, counted.in_flight, counted.held), (0, 3, 3));
}

#[tokio::test]
async fn a_delivery_not_settled_within_the_lease_is_taken_again() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server).await;
    let other_sidecar = store_for(&server).await;
    assert_eq!(
        admit(&store, &admission("d1", b"{}", 1)).await,
        Admitted::Queued
    );
    let first = take(&store, 1, SHORT_LEASE, now_ms()).await;
    assert_eq!(ids(&first), ["d1"]);
    let taken_at = Instant::now();
    assert!(
        take(&other_sidecar, 1, SHORT_LEASE, now_ms())
            .await
            .is_empty()
    );

    let again = eventually_value(
        "the lapsed lease lets d1 be taken again",
        SETTLE,
        async || {
            let taken = take(&other_sidecar, 1, SHORT_LEASE, now_ms()).await;
            Ok(taken.into_iter().next())
        },
    )
    .await
    .unwrap();
    assert!(taken_at.elapsed() >= SHORT_LEASE);
    assert_eq!(again.delivery.delivery_id, "d1");
    assert_eq!(
        again.entry, first[0].entry,
        "the same work entry, reclaimed"
    );

    // Both hold it now; it is committed once.
    assert!(
        other_sidecar
            .commit_queued(EP, &again, WINDOW)
            .await
            .unwrap()
    );
    assert!(!store.commit_queued(EP, &first[0], WINDOW).await.unwrap());
}

#[tokio::test]
async fn commit_is_idempotent_and_leaves_done_markers_for_the_window() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server).await;
    let delivery = admission_by_body("evt-1", b"{\"n\":1}");
    assert_eq!(admit(&store, &delivery).await, Admitted::Queued);
    let taken = take(&store, 1, LEASE, now_ms()).await.remove(0);
    assert_eq!(taken.delivery.body_sha256, delivery.body_sha256);

    assert!(store.commit_queued(EP, &taken, WINDOW).await.unwrap());
    assert!(!store.commit_queued(EP, &taken, WINDOW).await.unwrap());

    for key in delivery.dedup.as_slice() {
        assert_eq!(server.get(key).unwrap().as_deref(), Some("done"), "{key}");
        let pttl = server.pttl(key).unwrap();
        let window = i64::try_from(WINDOW.as_millis()).unwrap();
        assert!(pttl > window - 60_000 && pttl <= window, "{key}: {pttl}");
    }
    assert!(server.keys("hg:{ep1}:m:*").unwrap().is_empty());
    assert_eq!(stream_len(&server), 0);
    assert_eq!(stats(&store).await, QueueStats::default());
    assert_eq!(admit(&store, &delivery).await, Admitted::Duplicate);
}

#[tokio::test]
async fn a_retry_is_taken_at_its_time_and_not_before() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server).await;
    assert_eq!(
        admit(&store, &admission("d1", b"{}", 1)).await,
        Admitted::Queued
    );
    let now = now_ms();
    let taken = take(&store, 1, LEASE, now).await.remove(0);
    let at = now + 60_000;

    store
        .retry_queued(EP, &taken, at, 1, "status 500")
        .await
        .unwrap();
    let counted = stats(&store).await;
    assert_eq!(
        (
            counted.ready,
            counted.in_flight,
            counted.scheduled,
            counted.held
        ),
        (0, 0, 1, 1)
    );
    assert_eq!(counted.oldest_received_ms, Some(1));
    assert!(take(&store, 10, LEASE, now).await.is_empty());
    assert!(take(&store, 10, LEASE, at - 1).await.is_empty());

    let again = take(&store, 10, LEASE, at).await;
    assert_eq!(ids(&again), ["d1"]);
    assert_eq!(again[0].delivery.attempts, 1);
    assert_eq!(again[0].delivery.last_error, "status 500");
    assert_ne!(again[0].entry, taken.entry);
    assert_eq!(stats(&store).await.scheduled, 0);
    // The stale handle of the first attempt settles nothing any more.
    store
        .retry_queued(EP, &taken, at, 5, "stale")
        .await
        .unwrap();
    assert_eq!(stats(&store).await.scheduled, 0);

    // Handed back untried: due now, attempts unchanged.
    store
        .retry_queued(EP, &again[0], at, 1, "status 500")
        .await
        .unwrap();
    let handed_back = take(&store, 10, LEASE, at).await;
    assert_eq!(ids(&handed_back), ["d1"]);
    assert_eq!(handed_back[0].delivery.attempts, 1);
}

/// d1, d2 and d3 admitted and taken; d1 retried once (`status 503`), then d1 and d2
/// dead-lettered at 1000 and 2000 ms; d3 stays in flight.
async fn with_two_dead_letters(store: &Store) {
    for (id, received) in [("d1", 10), ("d2", 20), ("d3", 30)] {
        assert_eq!(
            admit(store, &admission(id, b"{}", received)).await,
            Admitted::Queued
        );
    }
    let now = now_ms();
    let first = take(store, 1, LEASE, now).await.remove(0);
    store
        .retry_queued(EP, &first, now, 1, "status 503")
        .await
        .unwrap();
    let mut taken = take(store, 3, LEASE, now).await;
    taken.sort_by(|a, b| a.delivery.delivery_id.cmp(&b.delivery.delivery_id));
    assert_eq!(ids(&taken), ["d1", "d2", "d3"]);
    store
        .dead_letter(EP, &taken[0], 2, "status 400", 1_000)
        .await
        .unwrap();
    let reason = "attempts exhausted (last: status 500)";
    store
        .dead_letter(EP, &taken[1], 5, reason, 2_000)
        .await
        .unwrap();
}

#[tokio::test]
async fn dead_letters_are_listed_oldest_first_in_pages_and_read_one_by_one() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server).await;
    with_two_dead_letters(&store).await;

    let counted = stats(&store).await;
    assert_eq!(
        (counted.dead, counted.in_flight, counted.held),
        (2, 1, 3),
        "dead letters stay held"
    );
    assert_eq!(counted.oldest_dead_ms, Some(1_000));
    assert_eq!(
        counted.oldest_received_ms,
        Some(30),
        "dead letters are not waiting"
    );

    let all = store.dead_letters(EP, None, 10).await.unwrap();
    let size = admission("d1", b"{}", 10).request.size();
    assert_eq!(all.len(), 2);
    assert_eq!(
        (
            all[0].delivery_id.as_str(),
            all[0].reason.as_str(),
            all[0].failed_at_ms,
            all[0].received_at_ms,
            all[0].attempts,
            all[0].size
        ),
        ("d1", "status 400", 1_000, 10, 2, size)
    );
    assert_eq!(all[1].delivery_id, "d2");
    assert_eq!(all[1].attempts, 5);
    let page = store.dead_letters(EP, None, 1).await.unwrap();
    assert_eq!(page, all[..1]);
    let page = store.dead_letters(EP, Some("d1"), 1).await.unwrap();
    assert_eq!(page, all[1..]);
    let last = store.dead_letters(EP, Some("d2"), 10).await.unwrap();
    assert!(last.is_empty());
    // An ID that is not a dead letter gives an empty page, never the first one again.
    let unknown = store.dead_letters(EP, Some("d3"), 10).await.unwrap();
    assert!(unknown.is_empty());

    let (letter, delivery) = store.dead_letter_of(EP, "d1").await.unwrap().unwrap();
    assert_eq!(letter, all[0]);
    assert_eq!(delivery.request, request(b"{}"));
    assert_eq!(delivery.last_error, "status 503");
    assert!(store.dead_letter_of(EP, "d3").await.unwrap().is_none());
    assert!(store.dead_letter_of(EP, "nope").await.unwrap().is_none());
}

#[tokio::test]
async fn dead_letters_are_replayed_or_purged_once() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server).await;
    with_two_dead_letters(&store).await;

    assert!(store.replay(EP, "d1").await.unwrap());
    assert!(!store.replay(EP, "d1").await.unwrap());
    assert!(!store.replay(EP, "d3").await.unwrap(), "not dead");
    let replayed = take(&store, 10, LEASE, now_ms()).await;
    assert_eq!(ids(&replayed), ["d1"]);
    assert_eq!(replayed[0].delivery.attempts, 0);
    assert!(replayed[0].delivery.replayed);
    assert_eq!(replayed[0].delivery.last_error, "status 503");

    assert!(store.purge(EP, "d2", WINDOW).await.unwrap());
    assert!(!store.purge(EP, "d2", WINDOW).await.unwrap());
    assert!(!store.purge(EP, "d1", WINDOW).await.unwrap(), "not dead");
    assert_eq!(
        server.get("hg:{ep1}:id:d2").unwrap().as_deref(),
        Some("done")
    );
    assert!(server.pttl("hg:{ep1}:id:d2").unwrap() > 0);
    assert_eq!(
        admit(&store, &admission("d2", b"{}", 20)).await,
        Admitted::Duplicate,
        "a late sender retry of a purged delivery is a duplicate"
    );
    let counted = stats(&store).await;
    let size = admission("d1", b"{}", 10).request.size();
    assert_eq!((counted.dead, counted.in_flight, counted.held), (0, 2, 2));
    assert_eq!(counted.held_bytes, 2 * size);
    assert_eq!(counted.oldest_dead_ms, None);
    assert_eq!(counted.oldest_received_ms, Some(10), "d1 waits again");
}

#[tokio::test]
async fn a_purged_dead_letter_keyed_by_body_leaves_its_body_key_done() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server).await;
    let delivery = admission_by_body("d1", b"payload");
    assert_eq!(admit(&store, &delivery).await, Admitted::Queued);
    let taken = take(&store, 1, LEASE, now_ms()).await.remove(0);
    store
        .dead_letter(EP, &taken, 1, "status 400", 1)
        .await
        .unwrap();

    assert!(store.purge(EP, "d1", WINDOW).await.unwrap());
    for key in delivery.dedup.as_slice() {
        assert_eq!(server.get(key).unwrap().as_deref(), Some("done"), "{key}");
    }
    assert_eq!(
        admit(&store, &admission_by_body("d9", b"payload")).await,
        Admitted::Duplicate
    );
}

#[tokio::test]
async fn a_work_entry_whose_message_is_gone_is_dropped_not_taken() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server).await;
    for id in ["d1", "d2"] {
        assert_eq!(
            admit(&store, &admission(id, b"{}", 1)).await,
            Admitted::Queued
        );
    }
    redis::cmd("DEL")
        .arg(QueueKeys::new(EP).message("d1"))
        .query::<()>(&mut server.connect().unwrap())
        .unwrap();

    assert_eq!(ids(&take(&store, 10, LEASE, now_ms()).await), ["d2"]);
    assert_eq!(stream_len(&server), 1, "the orphan entry is deleted");
    assert_eq!(stats(&store).await.in_flight, 1);
}

#[tokio::test]
async fn endpoints_have_separate_queues() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server).await;
    let other = Admission {
        endpoint_id: "ep2".to_owned(),
        dedup: DeliveryKeys::new("ep2", "d1", None),
        ..admission("d1", b"{}", 1)
    };
    assert_eq!(
        admit(&store, &admission("d1", b"{}", 1)).await,
        Admitted::Queued
    );
    assert_eq!(admit(&store, &other).await, Admitted::Queued);
    assert_eq!(ids(&take(&store, 10, LEASE, now_ms()).await), ["d1"]);
    assert_eq!(store.queue_stats("ep2").await.unwrap().ready, 1);
    assert_eq!(
        store.queue_stats("ep3").await.unwrap(),
        QueueStats::default()
    );
}

#[tokio::test]
async fn redis_7_without_aof_promises_memory_only_and_refuses_disk_admissions() {
    let server = RedisServer::start().unwrap();
    let store = store_for(&server).await;
    let why = memory_reason(store.promise());
    assert!(
        why.contains("redis 7.0") && why.contains("appendonly no") && why.contains("WAITAOF"),
        "{why}"
    );

    let refused = store
        .admit(&admission("d1", b"{}", 1), Durability::Disk)
        .await;
    assert!(
        matches!(refused, Err(AdmitError::NotDurable(Promise::Memory(_)))),
        "{refused:?}"
    );
    assert!(server.keys("*").unwrap().is_empty(), "nothing written");
    assert_eq!(
        store
            .admit(&admission("d1", b"{}", 1), Durability::Memory)
            .await
            .unwrap(),
        Admitted::Queued
    );
}

#[tokio::test]
async fn redis_7_with_appendfsync_always_promises_fsync() {
    let server = RedisServer::start_with(Persistence::AppendOnly).unwrap();
    let store = store_for(&server).await;
    assert_eq!(store.promise(), Promise::Fsync);
    assert_eq!(
        store
            .admit(&admission("d1", b"{}", 1), Durability::Disk)
            .await
            .unwrap(),
        Admitted::Queued
    );
}

#[tokio::test]
async fn redis_7_with_appendfsync_everysec_promises_memory_only() {
    let server = RedisServer::start_with(Persistence::AppendOnlyEverySec).unwrap();
    let store = store_for(&server).await;
    let why = memory_reason(store.promise());
    assert!(why.contains("appendfsync everysec"), "{why}");
}

#[tokio::test]
async fn queued_and_taken_deliveries_survive_a_redis_restart() {
    let mut server = RedisServer::start_with(Persistence::AppendOnly).unwrap();
    let store = store_for(&server).await;
    for id in ["d1", "d2"] {
        assert_eq!(
            store
                .admit(&admission(id, b"{}", 1), Durability::Disk)
                .await
                .unwrap(),
            Admitted::Queued
        );
    }
    // d1 is at a worker when Redis dies.
    assert_eq!(ids(&take(&store, 1, SHORT_LEASE, now_ms()).await), ["d1"]);

    server.restart().unwrap();

    let mut taken = Vec::new();
    eventually(
        "both deliveries are taken after the restart",
        SETTLE,
        async || {
            if let Ok(more) = store.take(EP, 10, SHORT_LEASE, now_ms()).await {
                taken.extend(more);
            }
            Ok(taken.len() >= 2)
        },
    )
    .await
    .unwrap();
    let mut taken_ids = ids(&taken);
    taken_ids.sort_unstable();
    assert_eq!(taken_ids, ["d1", "d2"]);
    assert_eq!(store.promise(), Promise::Fsync);
    for delivery in &taken {
        assert!(store.commit_queued(EP, delivery, WINDOW).await.unwrap());
    }
    assert_eq!(stats(&store).await, QueueStats::default());
}

#[tokio::test]
async fn the_promise_is_probed_again_when_the_connection_comes_back() {
    let server = RedisServer::start_with(Persistence::AppendOnly).unwrap();
    let store = store_for(&server).await;
    assert_eq!(store.promise(), Promise::Fsync);

    let mut conn = server.connect().unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg("everysec")
        .query::<()>(&mut conn)
        .unwrap();
    // Drop the sidecar's connections (not this one): it reconnects and probes again.
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query::<i64>(&mut conn)
        .unwrap();
    eventually("the store reconnects", SETTLE, async || {
        // A command on the dead connection notices the loss; later ones see the new one.
        Ok(store.ping().await.is_ok() && store.promise() != Promise::Fsync)
    })
    .await
    .unwrap();
    let why = memory_reason(store.promise());
    assert!(why.contains("appendfsync everysec"), "{why}");
}

#[tokio::test]
async fn the_promise_is_unknown_before_the_store_connects() {
    let port = hookguard_tests::net::free_port().unwrap();
    let store = Store::redis(&format!("redis://127.0.0.1:{port}/0"), DEADLINE).unwrap();
    assert_eq!(store.promise(), Promise::Unknown);
    let refused = store
        .admit(&admission("d1", b"{}", 1), Durability::Memory)
        .await;
    assert!(
        matches!(refused, Err(AdmitError::NotDurable(Promise::Unknown))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn valkey_with_appendfsync_always_promises_fsync() {
    let server = RedisServer::start_valkey(Persistence::AppendOnly).unwrap();
    let store = store_for(&server).await;
    assert_eq!(store.promise(), Promise::Fsync);
}

#[tokio::test]
async fn valkey_without_aof_promises_memory_only() {
    let server = RedisServer::start_valkey(Persistence::None).unwrap();
    let store = store_for(&server).await;
    let why = memory_reason(store.promise());
    assert!(
        why.contains("valkey 8") && why.contains("appendonly no"),
        "{why}"
    );
}

#[tokio::test]
async fn valkey_everysec_promises_waitaof_and_commits_concurrent_admissions_in_groups() {
    let server = RedisServer::start_valkey(Persistence::AppendOnlyEverySec).unwrap();
    let store = store_for(&server).await;
    assert_eq!(store.promise(), Promise::WaitAof);

    // One WAITAOF takes about 100 ms here; admitted one by one, 200 would take 20 s.
    let started = Instant::now();
    let admissions: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let delivery = admission(&format!("d{i}"), b"{}", 1);
                store.admit(&delivery, Durability::Disk).await
            })
        })
        .collect();
    for admission in admissions {
        assert_eq!(admission.await.unwrap().unwrap(), Admitted::Queued);
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(stats(&store).await.held, 200);
    let waits = calls(&server, "waitaof");
    assert!(
        (2..=50).contains(&waits),
        "200 admissions took {waits} WAITAOF (one is the probe's)"
    );

    // Duplicates go through the same path.
    assert_eq!(
        store
            .admit(&admission("d0", b"{}", 1), Durability::Disk)
            .await
            .unwrap(),
        Admitted::Duplicate
    );
    // The rest of the queue works as on Redis 7.
    let taken = take(&store, 1, LEASE, now_ms()).await.remove(0);
    assert_eq!(taken.delivery.delivery_id, "d0");
    assert!(store.commit_queued(EP, &taken, WINDOW).await.unwrap());
}

#[tokio::test]
async fn the_group_commit_reloads_scripts_redis_lost() {
    let server = RedisServer::start_valkey(Persistence::AppendOnlyEverySec).unwrap();
    let store = store_for(&server).await;
    assert_eq!(store.promise(), Promise::WaitAof);
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query::<()>(&mut server.connect().unwrap())
        .unwrap();

    let delivery = admission("d1", b"{}", 1);
    assert_eq!(
        store.admit(&delivery, Durability::Disk).await.unwrap(),
        Admitted::Queued
    );
    assert_eq!(stats(&store).await.held, 1);
}

#[tokio::test]
async fn an_unconfirmed_fsync_answers_not_on_disk_and_the_retry_finds_the_delivery() {
    let server = RedisServer::start_valkey(Persistence::AppendOnlyEverySec).unwrap();
    let store = store_for(&server).await;
    assert_eq!(store.promise(), Promise::WaitAof);
    // AOF switched off behind the sidecar's back: WAITAOF refuses to confirm anything.
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendonly")
        .arg("no")
        .query::<()>(&mut server.connect().unwrap())
        .unwrap();

    let delivery = admission("d1", b"{}", 1);
    let unconfirmed = store.admit(&delivery, Durability::Disk).await;
    assert!(
        matches!(unconfirmed, Err(AdmitError::NotOnDisk)),
        "{unconfirmed:?}"
    );
    // The failed wait makes the store look again, and it no longer promises disk.
    eventually("the store notices AOF is off", SETTLE, async || {
        Ok(matches!(store.promise(), Promise::Memory(_)))
    })
    .await
    .unwrap();
    let refused = store.admit(&delivery, Durability::Disk).await;
    assert!(
        matches!(refused, Err(AdmitError::NotDurable(_))),
        "{refused:?}"
    );
    // The sender's retry to a Memory endpoint finds it queued.
    assert_eq!(admit(&store, &delivery).await, Admitted::Duplicate);
}

/// Three primaries joined by `redis-cli --cluster create`.
struct Cluster {
    nodes: Vec<RedisServer>,
}

impl Cluster {
    fn start(valkey: bool, persistence: Persistence) -> Cluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                let builder = RedisServer::builder()
                    .cluster_node()
                    .persistence(persistence);
                let builder = if valkey { builder.valkey() } else { builder };
                builder.start().unwrap()
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create
            .arg("--cluster")
            .arg("create")
            .args(
                nodes
                    .iter()
                    .map(|node| format!("127.0.0.1:{}", node.port())),
            )
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = create.spawn().unwrap();
        hookguard_tests::wait::eventually_blocking(
            "redis-cli --cluster create finishes",
            Duration::from_secs(30),
            || Ok(child.try_wait()?.is_some()),
        )
        .unwrap();
        assert!(child.wait().unwrap().success(), "cluster create failed");
        hookguard_tests::wait::eventually_blocking(
            "every node reports cluster_state:ok",
            Duration::from_secs(20),
            || {
                Ok(nodes.iter().all(|node| {
                    redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query::<String>(&mut node.connect().unwrap())
                        .is_ok_and(|info| info.contains("cluster_state:ok"))
                }))
            },
        )
        .unwrap();
        Cluster { nodes }
    }

    async fn store(&self) -> Store {
        let options = hookguard_sidecar::dedup::RedisOptions {
            url: format!("redis://127.0.0.1:{}", self.nodes[0].port()),
            cluster: true,
            ..Default::default()
        };
        let store = Store::redis_with(&options, DEADLINE).unwrap();
        store.wait_ready(Duration::from_secs(10)).await.unwrap();
        store
    }
}

/// Admits, takes and commits a delivery on each of several endpoints (spread over the slots).
async fn round_trip_on_many_endpoints(store: &Store, durability: Durability) {
    let endpoints: Vec<String> = (0..12).map(|i| format!("ep-{i}")).collect();
    for endpoint in &endpoints {
        let delivery = Admission {
            endpoint_id: endpoint.clone(),
            dedup: DeliveryKeys::new(endpoint, "d1", None),
            ..admission("d1", b"{}", 1)
        };
        assert_eq!(
            store.admit(&delivery, durability).await.unwrap(),
            Admitted::Queued
        );
    }
    for endpoint in &endpoints {
        let taken = store.take(endpoint, 10, LEASE, now_ms()).await.unwrap();
        assert_eq!(ids(&taken), ["d1"], "{endpoint}");
        assert!(
            store
                .commit_queued(endpoint, &taken[0], WINDOW)
                .await
                .unwrap()
        );
        assert_eq!(
            store.queue_stats(endpoint).await.unwrap().held,
            0,
            "{endpoint}"
        );
    }
}

#[tokio::test]
async fn a_redis_cluster_without_aof_promises_memory_and_names_the_primaries() {
    let cluster = Cluster::start(false, Persistence::None);
    let store = cluster.store().await;
    let why = memory_reason(store.promise());
    for node in &cluster.nodes {
        assert!(why.contains(&format!(":{}", node.port())), "{why}");
    }
    round_trip_on_many_endpoints(&store, Durability::Memory).await;
}

#[tokio::test]
async fn a_valkey_cluster_with_everysec_commits_admissions_with_waitaof() {
    let cluster = Cluster::start(true, Persistence::AppendOnlyEverySec);
    let store = cluster.store().await;
    assert_eq!(store.promise(), Promise::WaitAof);
    round_trip_on_many_endpoints(&store, Durability::Disk).await;
}

#[tokio::test]
async fn a_store_error_is_reported_not_hidden() {
    let mut server = RedisServer::start().unwrap();
    let store = store_for(&server).await;
    server.kill().unwrap();
    let failed = store.take(EP, 1, LEASE, now_ms()).await;
    assert!(
        matches!(
            failed,
            Err(StoreError::Unavailable(_) | StoreError::Timeout)
        ),
        "{failed:?}"
    );
}
