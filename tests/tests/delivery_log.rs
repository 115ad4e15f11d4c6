//! The delivery log and the loaded keys on the admin port (`GET /deliveries`, `GET /keys`),
//! against real sidecars in this process and a real `redis-server`.

// clippy.toml allows unwrap/panic inside #[test] functions only; the helpers beside them are
// test code too, and each test tells one story in order.
#![allow(clippy::unwrap_used, clippy::panic, clippy::too_many_lines)]

use std::time::Duration;

use hookguard_api::admin::{
    DeliveryPage, DeliveryRecord, RecordKind, SidecarKeys, key_fingerprint,
};
use hookguard_sidecar::delivery_log::log_key;
use hookguard_tests::app::{Reply, TestApp};
use hookguard_tests::redis::RedisServer;
use hookguard_tests::sidecar::{SidecarHarness, generic_endpoint};
use hookguard_tests::wait::{eventually, eventually_value};

const SECRET: &str = "delivery-log-test-secret";
const WAIT: Duration = Duration::from_secs(15);

async fn start(endpoints: Vec<hookguard_api::EndpointConfig>, args: &[&str]) -> SidecarHarness {
    let endpoints = endpoints.into_iter().map(|e| (e, SECRET)).collect();
    SidecarHarness::start(endpoints, args).await.unwrap()
}

/// Every record of `endpoint` in `sidecar`'s log, following the cursor to the end.
async fn log_of(sidecar: &SidecarHarness, endpoint: &str) -> anyhow::Result<Vec<DeliveryRecord>> {
    let mut records = Vec::new();
    let mut after = String::new();
    loop {
        let path = if after.is_empty() {
            format!("/deliveries?endpoint={endpoint}&limit=50")
        } else {
            format!("/deliveries?endpoint={endpoint}&limit=50&after={after}")
        };
        let (status, body) = sidecar.admin(&path).await?;
        anyhow::ensure!(status == 200, "GET {path}: {status} {body}");
        let page: DeliveryPage = serde_json::from_str(&body)?;
        let done = page.records.is_empty() || page.cursor == after;
        records.extend(page.records);
        if done {
            return Ok(records);
        }
        after = page.cursor;
    }
}

/// Waits until `endpoint`'s log on `sidecar` satisfies `check`, and returns it.
async fn log_until(
    sidecar: &SidecarHarness,
    endpoint: &str,
    what: &str,
    check: impl Fn(&[DeliveryRecord]) -> bool,
) -> Vec<DeliveryRecord> {
    eventually_value(what, WAIT, async || {
        let records = log_of(sidecar, endpoint).await?;
        Ok(check(&records).then_some(records))
    })
    .await
    .unwrap()
}

/// The raw entries of a Redis stream, every field and value as text.
fn stream_dump(redis: &RedisServer, key: &str) -> String {
    let entries: redis::Value = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query(&mut redis.connect().unwrap())
        .unwrap();
    format!("{entries:?}")
}

fn xlen(redis: &RedisServer, key: &str) -> u64 {
    redis::cmd("XLEN")
        .arg(key)
        .query(&mut redis.connect().unwrap())
        .unwrap()
}

#[tokio::test]
async fn two_sidecars_sharing_redis_write_one_log_of_metadata_only() {
    let redis = RedisServer::start().unwrap();
    let app = TestApp::ok().await.unwrap();
    let url = redis.url();
    let endpoint = generic_endpoint("shared", app.port());
    let a = start(
        vec![endpoint.clone()],
        &["--store", &url, "--instance", "pod-a"],
    )
    .await;
    let b = start(
        vec![endpoint.clone()],
        &["--store", &url, "--instance", "pod-b"],
    )
    .await;

    let marker = "body-marker-5f3a9c1e";
    // Distinct bodies: a Generic endpoint deduplicates on the body hash too.
    let body = format!("{{\"n\":\"a\",\"m\":\"{marker}\"}}");
    let other_body = format!("{{\"n\":\"b\",\"m\":\"{marker}\"}}");
    let signature = hookguard_sidecar::sign::generic(SECRET.as_bytes(), body.as_bytes());
    assert_eq!(
        a.post_generic("/shared", SECRET, "evt-a", &body)
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        b.post_generic("/shared", SECRET, "evt-b", &other_body)
            .await
            .unwrap()
            .status,
        200
    );
    let duplicate = b
        .post_generic("/shared", SECRET, "evt-a", &body)
        .await
        .unwrap();
    assert_eq!(duplicate.outcome.as_deref(), Some("duplicate"));
    // Rejected at a: a wrong signature, and no signature at all.
    let forged = a
        .post_generic("/shared", "not-the-secret", "evt-forged", &body)
        .await
        .unwrap();
    assert_eq!(forged.status, 401);
    let unsigned = a
        .post("/shared", &[("x-delivery-id", "evt-unsigned")], &body)
        .await
        .unwrap();
    assert_eq!(unsigned.status, 400);

    // Either sidecar reads the shared records of both.
    let shared = |records: &[DeliveryRecord]| {
        ["evt-a", "evt-b"].iter().all(|id| {
            records
                .iter()
                .any(|r| r.delivery_id.as_deref() == Some(id) && r.outcome == "forwarded")
        }) && records.iter().any(|r| r.outcome == "duplicate")
    };
    let from_b = log_until(
        &b,
        "shared",
        "b's log shows both instances' deliveries",
        shared,
    )
    .await;
    let instances: std::collections::BTreeSet<&str> =
        from_b.iter().map(|r| r.instance.as_str()).collect();
    assert_eq!(instances, ["pod-a", "pod-b"].into(), "{from_b:#?}");
    let forwarded_a = from_b
        .iter()
        .find(|r| r.delivery_id.as_deref() == Some("evt-a") && r.outcome == "forwarded")
        .unwrap();
    assert_eq!(
        (
            forwarded_a.instance.as_str(),
            forwarded_a.kind,
            forwarded_a.status,
            forwarded_a.attempt
        ),
        ("pod-a", RecordKind::Request, 200, None)
    );
    let duplicate = from_b.iter().find(|r| r.outcome == "duplicate").unwrap();
    assert_eq!(
        (duplicate.instance.as_str(), duplicate.status),
        ("pod-b", 200)
    );

    // The rejections are a's, with their reasons, without a delivery ID; they stay in a's
    // own log: nothing unverified reaches the shared store.
    let from_a = log_until(&a, "shared", "a's log shows its rejections", |records| {
        shared(records) && records.iter().filter(|r| r.status >= 400).count() == 2
    })
    .await;
    let rejected: Vec<_> = from_a.iter().filter(|r| r.status >= 400).collect();
    assert_eq!(
        rejected
            .iter()
            .map(|r| (
                r.outcome.as_str(),
                r.reason.as_deref(),
                r.delivery_id.as_deref(),
                r.instance.as_str()
            ))
            .collect::<Vec<_>>(),
        [
            ("unauthorized", Some("signature_mismatch"), None, "pod-a"),
            ("bad_request", Some("missing_header"), None, "pod-a"),
        ]
    );
    assert!(
        from_b.iter().all(|r| r.status < 400),
        "b does not see a's rejections: {from_b:#?}"
    );
    let key = log_key(&endpoint.endpoint_id);
    assert_eq!(
        xlen(&redis, &key),
        3,
        "the shared stream holds the three verified answers"
    );

    // Metadata only: the body, the signature and the secret are nowhere in the log.
    let dump = stream_dump(&redis, &key);
    let (_, page_a) = a.admin("/deliveries?endpoint=shared").await.unwrap();
    let (_, page_b) = b.admin("/deliveries?endpoint=shared").await.unwrap();
    for text in [&dump, &page_a, &page_b] {
        for needle in [marker, signature.as_str(), SECRET] {
            assert!(!text.contains(needle), "{needle:?} is in the log: {text}");
        }
    }
    assert!(redis.all_keys("*").unwrap().contains(&key));
}

#[tokio::test]
async fn the_redis_log_is_capped_by_count_and_by_age() {
    let redis = RedisServer::start().unwrap();
    let app = TestApp::ok().await.unwrap();
    let url = redis.url();
    let endpoint = generic_endpoint("capped", app.port());
    let key = log_key(&endpoint.endpoint_id);
    let sidecar = start(
        vec![endpoint.clone()],
        &["--store", &url, "--delivery-log-max-records", "5"],
    )
    .await;
    // Approximate trimming (`MAXLEN ~`) drops whole stream nodes (100 entries each).
    for n in 0..250 {
        let id = format!("evt-{n}");
        assert_eq!(
            sidecar
                .post_generic("/capped", SECRET, &id, &format!("{{\"n\":{n}}}"))
                .await
                .unwrap()
                .status,
            200
        );
    }
    let newest = log_until(
        &sidecar,
        "capped",
        "the newest delivery is logged",
        |records| records.last().and_then(|r| r.delivery_id.as_deref()) == Some("evt-249"),
    )
    .await;
    let length = xlen(&redis, &key);
    assert!(
        (5..=105).contains(&length),
        "the stream is trimmed to about 5: {length}"
    );
    assert_eq!(u64::try_from(newest.len()).unwrap(), length);

    // By age: with a 1 s bound, records older than that are neither read nor kept.
    drop(sidecar);
    let aged = start(
        vec![endpoint],
        &["--store", &url, "--delivery-log-max-age", "1s"],
    )
    .await;
    eventually("older records are no longer read", WAIT, async || {
        Ok(log_of(&aged, "capped").await?.is_empty())
    })
    .await
    .unwrap();
    assert_eq!(
        aged.post_generic("/capped", SECRET, "evt-late", "{}")
            .await
            .unwrap()
            .status,
        200
    );
    eventually("the next write trims the stream by age", WAIT, async || {
        Ok(xlen(&redis, &key) == 1)
    })
    .await
    .unwrap();
    let records = log_of(&aged, "capped").await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].delivery_id.as_deref(), Some("evt-late"));
}

#[tokio::test]
async fn the_memory_store_keeps_a_bounded_log_of_its_own() {
    let app = TestApp::ok().await.unwrap();
    let endpoint = generic_endpoint("local", app.port());
    let a = start(
        vec![endpoint.clone()],
        &["--instance", "solo-a", "--delivery-log-max-records", "5"],
    )
    .await;
    let b = start(vec![endpoint], &["--instance", "solo-b"]).await;
    for n in 0..8 {
        let id = format!("evt-{n}");
        assert_eq!(
            a.post_generic("/local", SECRET, &id, &format!("{{\"n\":{n}}}"))
                .await
                .unwrap()
                .status,
            200
        );
    }
    assert_eq!(
        b.post_generic("/local", SECRET, "evt-b", "{}")
            .await
            .unwrap()
            .status,
        200
    );
    let records = log_until(&a, "local", "a's log holds its newest five", |records| {
        records.last().and_then(|r| r.delivery_id.as_deref()) == Some("evt-7")
    })
    .await;
    let ids: Vec<&str> = records
        .iter()
        .filter_map(|r| r.delivery_id.as_deref())
        .collect();
    assert_eq!(ids, ["evt-3", "evt-4", "evt-5", "evt-6", "evt-7"]);
    assert!(records.iter().all(|r| r.instance == "solo-a"));
    let records = log_until(&b, "local", "b's log holds its own delivery", |r| {
        !r.is_empty()
    })
    .await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        (
            records[0].instance.as_str(),
            records[0].delivery_id.as_deref()
        ),
        ("solo-b", Some("evt-b"))
    );
    // Paging: one record at a time, oldest first, following the cursor.
    let (_, first) = a.admin("/deliveries?endpoint=local&limit=1").await.unwrap();
    let first: DeliveryPage = serde_json::from_str(&first).unwrap();
    assert_eq!(first.records[0].delivery_id.as_deref(), Some("evt-3"));
    let (_, second) = a
        .admin(&format!(
            "/deliveries?endpoint=local&limit=1&after={}",
            first.cursor
        ))
        .await
        .unwrap();
    let second: DeliveryPage = serde_json::from_str(&second).unwrap();
    assert_eq!(second.records[0].delivery_id.as_deref(), Some("evt-4"));

    let aged = start(
        vec![generic_endpoint("aging", app.port())],
        &["--delivery-log-max-age", "1s"],
    )
    .await;
    assert_eq!(
        aged.post_generic("/aging", SECRET, "evt-old", "{}")
            .await
            .unwrap()
            .status,
        200
    );
    log_until(&aged, "aging", "the delivery is logged", |r| r.len() == 1).await;
    log_until(
        &aged,
        "aging",
        "the record ages out",
        <[DeliveryRecord]>::is_empty,
    )
    .await;
}

#[tokio::test]
async fn queue_mode_records_each_attempt() {
    let app = TestApp::start(|id, attempt| Reply {
        status: match (id, attempt) {
            ("q-retry", 1) | ("q-dead", _) => 500,
            _ => 200,
        },
        delay: Duration::ZERO,
    })
    .await
    .unwrap();
    let mut endpoint = generic_endpoint("queued", app.port());
    endpoint.delivery = serde_json::from_value(serde_json::json!({
        "mode": "Queue", "durability": "Memory", "retrySchedule": ["100ms"], "maxAttempts": 2,
    }))
    .unwrap();
    let sidecar = start(vec![endpoint], &["--instance", "queue-pod"]).await;
    for id in ["q-ok", "q-retry", "q-dead"] {
        let answer = sidecar
            .post_generic("/queued", SECRET, id, &format!("{{\"id\":\"{id}\"}}"))
            .await
            .unwrap();
        assert_eq!(answer.outcome.as_deref(), Some("queued"), "{id}");
    }
    let attempts_of = |records: &[DeliveryRecord], id: &str| -> Vec<(String, Option<u32>, u16)> {
        records
            .iter()
            .filter(|r| r.kind == RecordKind::Attempt && r.delivery_id.as_deref() == Some(id))
            .map(|r| (r.outcome.clone(), r.attempt, r.status))
            .collect()
    };
    let records = log_until(&sidecar, "queued", "every attempt is settled", |records| {
        attempts_of(records, "q-dead").len() == 2 && attempts_of(records, "q-retry").len() == 2
    })
    .await;
    let owned = |v: &[(&str, Option<u32>, u16)]| -> Vec<(String, Option<u32>, u16)> {
        v.iter()
            .map(|(o, a, s)| ((*o).to_owned(), *a, *s))
            .collect()
    };
    assert_eq!(
        attempts_of(&records, "q-ok"),
        owned(&[("delivered", Some(1), 200)])
    );
    assert_eq!(
        attempts_of(&records, "q-retry"),
        owned(&[
            ("retry_scheduled", Some(1), 500),
            ("delivered", Some(2), 200)
        ])
    );
    assert_eq!(
        attempts_of(&records, "q-dead"),
        owned(&[
            ("retry_scheduled", Some(1), 500),
            ("dead_lettered", Some(2), 500)
        ])
    );
    let requests: Vec<_> = records
        .iter()
        .filter(|r| r.kind == RecordKind::Request)
        .collect();
    assert_eq!(requests.len(), 3);
    assert!(
        requests
            .iter()
            .all(|r| r.outcome == "queued" && r.instance == "queue-pod")
    );
    let retry = records
        .iter()
        .find(|r| r.outcome == "retry_scheduled")
        .unwrap();
    assert!(
        retry.reason.as_deref().is_some_and(|r| r.contains("500")),
        "{retry:?}"
    );
}

#[tokio::test]
async fn keys_report_fingerprints_of_the_key_files_and_follow_a_reload() {
    let app = TestApp::ok().await.unwrap();
    let sidecar = start(
        vec![generic_endpoint("keyed", app.port())],
        &["--instance", "keys-pod"],
    )
    .await;
    let keys_now = async || -> anyhow::Result<SidecarKeys> {
        let (status, body) = sidecar.admin("/keys").await?;
        anyhow::ensure!(status == 200, "GET /keys: {status} {body}");
        Ok(serde_json::from_str(&body)?)
    };
    let secret_dir = sidecar.dir().join("secrets").join("keyed");
    let fingerprints = |keys: &SidecarKeys| -> Vec<(String, String)> {
        keys.endpoints
            .iter()
            .find(|e| e.name == "keyed")
            .map(|e| {
                e.keys
                    .iter()
                    .map(|k| (k.id.clone(), k.fingerprint.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let keys = keys_now().await.unwrap();
    assert_eq!(keys.instance, "keys-pod");
    let k1 = std::fs::read(secret_dir.join("k1")).unwrap();
    assert_eq!(
        fingerprints(&keys),
        [("k1".to_owned(), key_fingerprint(&k1))]
    );
    assert!(!serde_json::to_string(&keys).unwrap().contains(SECRET));

    // A second key appears, as a rotation writes it; the watcher reloads.
    std::fs::write(secret_dir.join("k2"), "the-next-secret\n").unwrap();
    let want = vec![
        ("k1".to_owned(), key_fingerprint(&k1)),
        ("k2".to_owned(), key_fingerprint(b"the-next-secret")),
    ];
    eventually("/keys reports the new key", WAIT, async || {
        Ok(fingerprints(&keys_now().await?) == want)
    })
    .await
    .unwrap();
    let answer = sidecar
        .post_generic("/keyed", "the-next-secret", "evt-k2", "{}")
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "the new key verifies");

    // A key file's content changes under the same ID.
    std::fs::write(secret_dir.join("k1"), "a-replaced-secret").unwrap();
    eventually("/keys follows a changed key file", WAIT, async || {
        Ok(fingerprints(&keys_now().await?)[0].1 == key_fingerprint(b"a-replaced-secret"))
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_log_write_the_store_refuses_changes_no_answer_and_is_counted() {
    let mut redis = RedisServer::start().unwrap();
    let app = TestApp::ok().await.unwrap();
    let mut endpoint = generic_endpoint("allow", app.port());
    endpoint.store_unavailable = hookguard_api::StoreUnavailable::Allow;
    let sidecar = start(vec![endpoint], &["--store", &redis.url()]).await;
    let dropped = "hookguard_delivery_log_dropped_total{reason=\"store_error\"}";
    assert_eq!(sidecar.metric(dropped).await.unwrap(), 0);
    redis.kill().unwrap();
    for n in 0..3 {
        let id = format!("evt-{n}");
        let answer = sidecar
            .post_generic("/allow", SECRET, &id, &format!("{{\"n\":{n}}}"))
            .await
            .unwrap();
        assert_eq!(
            (answer.status, answer.outcome.as_deref()),
            (200, None),
            "forwarded without dedup, as the endpoint's policy says"
        );
    }
    eventually("the lost records are counted", WAIT, async || {
        Ok(sidecar.metric(dropped).await? >= 1)
    })
    .await
    .unwrap();
    assert_eq!(
        sidecar
            .metric("hookguard_delivery_log_dropped_total{reason=\"full\"}")
            .await
            .unwrap(),
        0
    );
}
