//! The sidecar against a real `redis-server`: DESIGN.md's reliability scenarios, each
//! counting LOST, `DUP_AT_APP`, `CONC_AT_APP` and `FALSE_2XX` at a test app.

// clippy.toml allows unwrap/panic inside #[test] functions only; the helpers beside them are
// test code too. A scenario reads best as one function, however long.
#![allow(clippy::unwrap_used, clippy::panic, clippy::too_many_lines)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookguard_api::config::StoreUnavailable;
use hookguard_tests::app::{Reply, Report, Scoreboard, TestApp};
use hookguard_tests::redis::{Persistence, RedisServer};
use hookguard_tests::sidecar::{Answer, Sender, SidecarHarness, generic_endpoint};
use hookguard_tests::wait::eventually;

const SECRET: &str = "redis-scenario-secret";

/// The store deadline where Redis stays up: generous, so a command slowed by a loaded machine
/// does not turn into a 503 in a scenario that asserts exact statuses.
const STORE_TIMEOUT: &str = "2s";
/// The store deadline where Redis is paused on purpose: short, so claims sent to the frozen
/// server give up (503) while it is frozen. Those scenarios' senders accept 503 and retry.
const OUTAGE_STORE_TIMEOUT: &str = "200ms";

async fn sidecar(
    redis: &RedisServer,
    endpoints: Vec<hookguard_api::EndpointConfig>,
) -> SidecarHarness {
    sidecar_with_store_timeout(redis, endpoints, STORE_TIMEOUT).await
}

async fn sidecar_with_store_timeout(
    redis: &RedisServer,
    endpoints: Vec<hookguard_api::EndpointConfig>,
    store_timeout: &str,
) -> SidecarHarness {
    let url = redis.url();
    let endpoints = endpoints.into_iter().map(|e| (e, SECRET)).collect();
    SidecarHarness::start(
        endpoints,
        &["--store", &url, "--store-timeout", store_timeout],
    )
    .await
    .unwrap()
}

fn assert_clean(report: Report) {
    assert_eq!(report.lost, 0, "LOST: {report:?}");
    assert_eq!(report.false_2xx, 0, "FALSE_2XX: {report:?}");
    assert!(report.conc_at_app <= 1, "CONC_AT_APP: {report:?}");
}

#[tokio::test]
async fn a_hundred_concurrent_copies_reach_the_app_once() {
    let redis = RedisServer::start().unwrap();
    // The app works long enough for every copy to arrive while the first is in flight.
    let app = Arc::new(
        TestApp::start(|_, _| Reply {
            status: 200,
            delay: Duration::from_millis(300),
        })
        .await
        .unwrap(),
    );
    let sidecar = Arc::new(sidecar(&redis, vec![generic_endpoint("storm", app.port())]).await);
    let board = Arc::new(Scoreboard::default());

    let copies: Vec<_> = (0..100)
        .map(|_| {
            let (sidecar, app, board) =
                (Arc::clone(&sidecar), Arc::clone(&app), Arc::clone(&board));
            tokio::spawn(async move {
                let answer = sidecar
                    .post_generic("/storm", SECRET, "evt-storm-1", r#"{"id":"evt-storm-1"}"#)
                    .await
                    .unwrap();
                board.record(
                    &app,
                    "evt-storm-1",
                    answer.status,
                    answer.outcome.as_deref(),
                );
                answer
            })
        })
        .collect();
    let mut answers: Vec<Answer> = Vec::new();
    for copy in copies {
        answers.push(copy.await.unwrap());
    }

    let from_app = answers
        .iter()
        .filter(|a| a.status == 200 && a.outcome.is_none())
        .count();
    let others_ok = answers.iter().all(|a| {
        (a.status == 200 && matches!(a.outcome.as_deref(), None | Some("duplicate")))
            || (a.status == 409
                && a.outcome.as_deref() == Some("in_flight")
                && a.retry_after.is_some())
    });
    assert_eq!(
        app.arrivals("evt-storm-1"),
        1,
        "exactly one copy reaches the app"
    );
    assert_eq!(from_app, 1, "exactly one answer comes from the app");
    assert!(
        others_ok,
        "the others are 200 duplicate or 409 with Retry-After: {answers:?}"
    );
    let late = sidecar
        .post_generic("/storm", SECRET, "evt-storm-1", r#"{"id":"evt-storm-1"}"#)
        .await
        .unwrap();
    assert_eq!(
        (late.status, late.outcome.as_deref()),
        (200, Some("duplicate"))
    );
    let report = board.report(&app);
    assert_clean(report);
    assert_eq!(report.dup_at_app, 0, "{report:?}");
}

#[tokio::test]
async fn an_app_500_releases_the_claim_and_the_retry_is_recorded() {
    let redis = RedisServer::start().unwrap();
    let app = TestApp::start(|_, attempt| {
        if attempt == 1 {
            Reply {
                status: 500,
                delay: Duration::ZERO,
            }
        } else {
            Reply::OK
        }
    })
    .await
    .unwrap();
    let sidecar = sidecar(&redis, vec![generic_endpoint("flaky", app.port())]).await;
    let board = Scoreboard::default();
    let send = || sidecar.post_generic("/flaky", SECRET, "evt-500", "{\"n\":1}");

    let first = send().await.unwrap();
    assert_eq!(
        (first.status, first.outcome.as_deref()),
        (500, None),
        "the app's own status passes through"
    );
    assert_eq!(
        redis.keys("hg:*").unwrap(),
        Vec::<String>::new(),
        "a definite failure releases the claim"
    );

    let retry = send().await.unwrap();
    board.record(&app, "evt-500", retry.status, retry.outcome.as_deref());
    assert_eq!(
        (retry.status, retry.outcome.as_deref()),
        (200, None),
        "the retry is forwarded"
    );
    let keys = redis.keys("hg:*").unwrap();
    assert_eq!(keys.len(), 2, "delivery-ID key and body key: {keys:?}");
    for key in &keys {
        assert_eq!(
            redis.get(key).unwrap().as_deref(),
            Some("done"),
            "{key} recorded as done"
        );
    }

    let again = send().await.unwrap();
    board.record(&app, "evt-500", again.status, again.outcome.as_deref());
    assert_eq!(
        (again.status, again.outcome.as_deref()),
        (200, Some("duplicate"))
    );
    assert_eq!((app.arrivals("evt-500"), app.commits("evt-500")), (2, 1));
    let report = board.report(&app);
    assert_clean(report);
    assert_eq!(report.dup_at_app, 0);
}

#[tokio::test]
async fn a_slow_app_gets_504_no_second_copy_and_its_late_2xx_is_recorded() {
    // The app answers well after the 1 s upstream time-out, and well before the sidecar stops
    // listening for a late answer (1 s before the 7 s lease ends).
    const APP_DELAY: Duration = Duration::from_millis(3500);
    let redis = RedisServer::start().unwrap();
    let app = TestApp::start(|_, _| Reply {
        status: 200,
        delay: APP_DELAY,
    })
    .await
    .unwrap();
    let mut endpoint = generic_endpoint("slow", app.port());
    endpoint.upstream.timeout = "1s".into();
    let sidecar = sidecar(&redis, vec![endpoint]).await;
    let board = Scoreboard::default();
    let send = || sidecar.post_generic("/slow", SECRET, "evt-slow", "{\"n\":1}");

    let started = Instant::now();
    let first = send().await.unwrap();
    assert_eq!(
        (first.status, first.outcome.as_deref()),
        (504, Some("upstream_timeout"))
    );
    assert_eq!(
        app.commits("evt-slow"),
        0,
        "504 comes at the upstream time-out, not when the app answers"
    );
    assert!(
        started.elapsed() < APP_DELAY,
        "504 comes at the upstream time-out, not when the app answers: took {:?}",
        started.elapsed()
    );

    // The first copy is still running at the app: a retry must not reach it.
    let retry = send().await.unwrap();
    assert_eq!(
        (retry.status, retry.outcome.as_deref()),
        (409, Some("in_flight"))
    );
    assert!(retry.retry_after.is_some());

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = send().await.unwrap();
        board.record(&app, "evt-slow", answer.status, answer.outcome.as_deref());
        if answer.status == 200 {
            assert_eq!(
                answer.outcome.as_deref(),
                Some("duplicate"),
                "the late 2xx was recorded as done"
            );
            break;
        }
        assert_eq!(
            answer.status, 409,
            "until the late answer settles, retries wait: {answer:?}"
        );
        assert!(Instant::now() < deadline, "the late 2xx was never recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.arrivals("evt-slow"),
        1,
        "no second copy reached the app"
    );
    // The late-answer counter is bumped by the background task after the commit the loop
    // above saw, so wait for it rather than read it once.
    let late_answers = "hookguard_late_answers_total{result=\"forwarded\"}";
    eventually(
        "the late answer is counted",
        Duration::from_secs(10),
        || async { Ok(sidecar.metric(late_answers).await? >= 1) },
    )
    .await
    .unwrap();
    assert_eq!(sidecar.metric(late_answers).await.unwrap(), 1);
    let report = board.report(&app);
    assert_clean(report);
    assert_eq!(report.dup_at_app, 0);
}

#[tokio::test]
async fn redis_stopped_during_traffic_gives_503s_and_loses_nothing() {
    let mut redis = RedisServer::start().unwrap();
    let app = Arc::new(TestApp::ok().await.unwrap());
    let mut endpoint = generic_endpoint("paused", app.port());
    endpoint.upstream.timeout = "1s".into();
    let sidecar =
        Arc::new(sidecar_with_store_timeout(&redis, vec![endpoint], OUTAGE_STORE_TIMEOUT).await);
    let board = Arc::new(Scoreboard::default());

    // Four senders, each retrying its deliveries until a 2xx, like a webhook sender does.
    let senders: Vec<_> = (0..4)
        .map(|worker| {
            let (sidecar, app, board) =
                (Arc::clone(&sidecar), Arc::clone(&app), Arc::clone(&board));
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for n in 0..15 {
                    let id = format!("evt-{worker}-{n}");
                    let body = format!("{{\"id\":\"{id}\"}}");
                    let deadline = Instant::now() + Duration::from_secs(25);
                    loop {
                        let answer = sidecar
                            .post_generic("/paused", SECRET, &id, &body)
                            .await
                            .unwrap();
                        board.record(&app, &id, answer.status, answer.outcome.as_deref());
                        statuses.push(answer.status);
                        if answer.status == 503 {
                            assert!(answer.retry_after.is_some(), "503 carries Retry-After");
                        }
                        if (200..300).contains(&answer.status) {
                            break;
                        }
                        assert!(
                            Instant::now() < deadline,
                            "{id} never got through: last {answer:?}"
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
                statuses
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.pause().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.resume().unwrap();

    let mut statuses = Vec::new();
    for sender in senders {
        statuses.extend(sender.await.unwrap());
    }
    let unavailable = statuses.iter().filter(|s| **s == 503).count();
    assert!(
        unavailable > 0,
        "while Redis was stopped the sidecar answered 503: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 409 | 503)),
        "{statuses:?}"
    );
    assert_eq!(board.acked(), 60, "every delivery got through in the end");
    let report = board.report(&app);
    assert_clean(report);
    assert_eq!(report.dup_at_app, 0, "{report:?}");
}

#[tokio::test]
async fn with_the_store_down_reject_answers_503_and_allow_forwards() {
    let mut redis = RedisServer::start().unwrap();
    let app = TestApp::ok().await.unwrap();
    let mut allow = generic_endpoint("allow", app.port());
    allow.store_unavailable = StoreUnavailable::Allow;
    let sidecar = sidecar(&redis, vec![generic_endpoint("reject", app.port()), allow]).await;
    let healthy = sidecar
        .post_generic("/reject", SECRET, "evt-up", "{}")
        .await
        .unwrap();
    assert_eq!(healthy.status, 200, "the store works before it is stopped");
    redis.kill().unwrap();

    let rejected = sidecar
        .post_generic("/reject", SECRET, "evt-r", "{\"r\":1}")
        .await
        .unwrap();
    assert_eq!(
        (rejected.status, rejected.outcome.as_deref()),
        (503, Some("store_unavailable"))
    );
    assert_eq!(rejected.retry_after.as_deref(), Some("5"));
    assert_eq!(
        app.arrivals("evt-r"),
        0,
        "nothing is forwarded under Reject"
    );

    let allowed = sidecar
        .post_generic("/allow", SECRET, "evt-a", "{\"a\":1}")
        .await
        .unwrap();
    assert_eq!(
        (allowed.status, allowed.outcome.as_deref()),
        (200, None),
        "Allow forwards without dedup"
    );
    assert_eq!(app.arrivals("evt-a"), 1);
    assert_eq!(
        sidecar
            .metric("hookguard_dedup_skipped_total{endpoint=\"allow\"}")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        sidecar.admin("/readyz").await.unwrap().0,
        503,
        "not ready while a Reject endpoint cannot dedup"
    );
}

#[tokio::test]
async fn a_bad_signature_creates_no_key_in_redis() {
    let redis = RedisServer::start().unwrap();
    let app = TestApp::ok().await.unwrap();
    let sidecar = sidecar(&redis, vec![generic_endpoint("guarded", app.port())]).await;

    let wrong_secret = sidecar
        .post_generic("/guarded", "not-the-secret", "evt-x", "{}")
        .await
        .unwrap();
    assert_eq!(wrong_secret.status, 401);
    let unsigned = sidecar
        .post("/guarded", &[("x-delivery-id", "evt-y")], "{}")
        .await
        .unwrap();
    assert_eq!(unsigned.status, 400);
    assert_eq!(
        redis.keys("*").unwrap(),
        Vec::<String>::new(),
        "nobody can pre-claim IDs without the secret"
    );
    assert_eq!(app.total_arrivals(), 0);

    let valid = sidecar
        .post_generic("/guarded", SECRET, "evt-x", "{}")
        .await
        .unwrap();
    assert_eq!(valid.status, 200);
    assert_eq!(
        redis.keys("*").unwrap().len(),
        2,
        "a verified delivery is recorded"
    );
}

/// Four senders, each sending `per_sender` deliveries and retrying each (every 100 ms, on any
/// non-2xx or transport error) until a 2xx, as webhook senders do. Returns every status seen;
/// 0 stands for a transport error.
fn retrying_senders(
    sender: &Sender,
    app: &Arc<TestApp>,
    board: &Arc<Scoreboard>,
    path: &'static str,
    per_sender: u32,
) -> Vec<tokio::task::JoinHandle<Vec<u16>>> {
    (0..4)
        .map(|worker| {
            let (sender, app, board) = (sender.clone(), Arc::clone(app), Arc::clone(board));
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for n in 0..per_sender {
                    let id = format!("evt-{worker}-{n}");
                    let body = format!("{{\"id\":\"{id}\"}}");
                    let deadline = Instant::now() + Duration::from_secs(30);
                    loop {
                        let status = match sender.post_generic(path, SECRET, &id, &body).await {
                            Ok(answer) => {
                                board.record(&app, &id, answer.status, answer.outcome.as_deref());
                                answer.status
                            }
                            Err(_) => 0,
                        };
                        statuses.push(status);
                        if (200..300).contains(&status) {
                            break;
                        }
                        assert!(
                            Instant::now() < deadline,
                            "{id} never got through: {statuses:?}"
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                statuses
            })
        })
        .collect()
}

#[tokio::test]
async fn redis_restarted_during_traffic_loses_nothing() {
    // Append-only with fsync on every write: done records survive the restart.
    let mut redis = RedisServer::start_with(Persistence::AppendOnly).unwrap();
    let app = Arc::new(
        TestApp::start(|_, _| Reply {
            status: 200,
            delay: Duration::from_millis(20),
        })
        .await
        .unwrap(),
    );
    let mut endpoint = generic_endpoint("restarted", app.port());
    endpoint.upstream.timeout = "1s".into();
    let sidecar = sidecar(&redis, vec![endpoint]).await;
    let board = Arc::new(Scoreboard::default());
    let senders = retrying_senders(&sidecar.sender(), &app, &board, "/restarted", 15);

    // Kill Redis once a quarter of the deliveries got through, not after a fixed time: three
    // quarters are then still to send, so the senders are sending while it is down, however
    // fast or slow the machine.
    let give_up = Instant::now() + Duration::from_secs(30);
    while board.acked() < 15 {
        assert!(
            Instant::now() < give_up,
            "traffic never got going: {} of 60 acknowledged",
            board.acked()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    redis.kill().unwrap();
    let acked_at_kill = board.acked();
    tokio::time::sleep(Duration::from_millis(800)).await;
    redis.restart().unwrap();

    let mut statuses = Vec::new();
    for sender in senders {
        statuses.extend(sender.await.unwrap());
    }
    assert!(
        statuses.contains(&503),
        "while Redis was down the sidecar answered 503 (killed with {acked_at_kill} of 60 \
         acknowledged): {statuses:?}"
    );
    assert_eq!(board.acked(), 60, "every delivery got through in the end");
    let report = board.report(&app);
    assert_clean(report);
    assert_eq!(report.dup_at_app, 0, "{report:?}");
}

#[tokio::test]
async fn a_sidecar_crash_during_traffic_loses_nothing_and_never_runs_two_copies_at_once() {
    let redis = RedisServer::start().unwrap();
    // Slow enough that the crash catches deliveries at the app.
    let app = Arc::new(
        TestApp::start(|_, _| Reply {
            status: 200,
            delay: Duration::from_millis(150),
        })
        .await
        .unwrap(),
    );
    let endpoint = || {
        let mut endpoint = generic_endpoint("crashy", app.port());
        endpoint.upstream.timeout = "1s".into();
        (endpoint, SECRET)
    };
    let store = ["--store", &redis.url(), "--store-timeout", STORE_TIMEOUT].map(str::to_owned);
    let store: Vec<&str> = store.iter().map(String::as_str).collect();
    let first = SidecarHarness::start(vec![endpoint()], &store)
        .await
        .unwrap();
    let addr = first.running().addr;
    let board = Arc::new(Scoreboard::default());
    let senders = retrying_senders(&Sender::new(addr), &app, &board, "/crashy", 8);

    tokio::time::sleep(Duration::from_millis(500)).await;
    first.abort().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _second = SidecarHarness::start_on(vec![endpoint()], &addr.to_string(), &store)
        .await
        .unwrap();

    let mut statuses = Vec::new();
    for sender in senders {
        statuses.extend(sender.await.unwrap());
    }
    assert!(
        statuses.contains(&0),
        "the crash broke connections mid-request: {statuses:?}"
    );
    assert_eq!(board.acked(), 32, "every delivery got through in the end");
    // A delivery at the app when the sidecar died may be forwarded again once its claim's
    // lease ends (DUP_AT_APP, which the app's unique constraint absorbs), never concurrently.
    let report = board.report(&app);
    assert_clean(report);
    eprintln!("sidecar crash: {report:?}");
}
