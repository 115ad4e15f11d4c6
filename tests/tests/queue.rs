//! Queue mode end to end: real sidecars (in this process) with endpoints in `delivery.mode:
//! Queue`, a real Redis (Debian's `redis-server` 7.0, or Valkey 8 where the promise is
//! `WAITAOF`) and a test app, held to README's "Queue mode" contract: the sender gets 2xx once
//! the delivery is stored (on disk, by default), the app gets it with retries, and it is
//! committed once; dead letters can be listed, replayed and purged on the admin port.
//!
//! Every scenario counts DESIGN.md's four numbers. In queue mode a sender's 2xx is earned by
//! the admission, not by an app answer, so `FALSE_2XX` counts a 2xx (`queued` or `duplicate`)
//! for a delivery of which the store held no admission (its ID key neither `queued` nor
//! `done`) when the answer came. LOST is read once the queue is empty.
//!
//! Schedules are shortened by configuration (200 ms retries, few attempts, sub-second
//! time-outs), never by waiting. The one wait configuration cannot shorten is the lease
//! (2 × `upstream.timeout` + 5 s), which the scenarios with a time-out or a crash wait out.

// clippy.toml allows unwrap/panic inside #[test] functions only; the helpers beside them are
// test code too. A scenario reads best as one function, however long.
#![allow(clippy::unwrap_used, clippy::panic, clippy::too_many_lines)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use hookguard_api::config::{DeliveryMode, Durability, EndpointConfig, Scheme};
use hookguard_api::names::{
    HEADER_ATTEMPT, HEADER_DELIVERY_ID, HEADER_ENDPOINT, HEADER_RECEIVED_AT,
};
use hookguard_sidecar::config::lease_for;
use hookguard_sidecar::dedup::DeliveryKeys;
use hookguard_sidecar::queue::QueueKeys;
use hookguard_tests::app::{AppReply, Arrival, Reply, Report, Scoreboard, TestApp};
use hookguard_tests::net::free_port;
use hookguard_tests::redis::{Persistence, RedisServer};
use hookguard_tests::sidecar::{Answer, Sender, SidecarHarness, generic_endpoint, write_endpoint};
use hookguard_tests::wait::{eventually, eventually_value};
use hyper::Method;
use serde_json::Value;

const SECRET: &str = "queue-scenario-secret";
/// Generous, so a command slowed by a loaded machine does not turn into a 503 in a scenario
/// that asserts exact statuses.
const STORE_TIMEOUT: &str = "2s";
/// Bounds every wait for deliveries to reach the app and the queue to empty, where no lease
/// has to pass.
const SETTLE: Duration = Duration::from_secs(20);

/// A queue-mode Generic endpoint `/<name>` → the app: retries every 200 ms (±20 %), up to 50
/// attempts (about 10 s), a 1 s upstream time-out.
fn queued_endpoint(name: &str, app_port: u16) -> EndpointConfig {
    let mut endpoint = generic_endpoint(name, app_port);
    endpoint.upstream.timeout = "1s".into();
    endpoint.delivery.mode = DeliveryMode::Queue;
    endpoint.delivery.retry_schedule = vec!["200ms".into()];
    endpoint.delivery.max_attempts = 50;
    endpoint
}

/// The lease of `endpoint`'s deliveries, as the sidecar computes it.
fn lease_of(endpoint: &EndpointConfig) -> Duration {
    let timeout =
        hookguard_api::validation::duration("upstream.timeout", &endpoint.upstream.timeout)
            .unwrap();
    lease_for(timeout)
}

fn store_args(redis: &RedisServer) -> Vec<String> {
    ["--store", &redis.url(), "--store-timeout", STORE_TIMEOUT]
        .map(str::to_owned)
        .to_vec()
}

async fn sidecar(redis: &RedisServer, endpoints: Vec<EndpointConfig>) -> SidecarHarness {
    let args = store_args(redis);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let endpoints = endpoints.into_iter().map(|e| (e, SECRET)).collect();
    SidecarHarness::start(endpoints, &args).await.unwrap()
}

/// Debian's redis-server with `appendfsync always`: the store promises `fsync`, so endpoints
/// with the default `durability: Disk` queue.
fn durable_redis() -> RedisServer {
    RedisServer::start_with(Persistence::AppendOnly).unwrap()
}

fn body_of(id: &str) -> String {
    format!("{{\"id\":\"{id}\"}}")
}

fn ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}-{n}")).collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Reads the store's keys for assertions, over a fresh connection each time (so it works
/// across a Redis restart).
struct Peek {
    client: redis::Client,
}

impl Peek {
    fn new(redis: &RedisServer) -> Peek {
        Peek {
            client: redis::Client::open(redis.url()).unwrap(),
        }
    }

    async fn conn(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        Ok(tokio::time::timeout(
            Duration::from_secs(5),
            self.client.get_multiplexed_async_connection(),
        )
        .await??)
    }

    /// Whether the store holds an admission of the delivery: its ID key says `queued` (in
    /// the queue) or `done` (committed, or purged by hand).
    async fn admitted(&self, endpoint_id: &str, id: &str) -> anyhow::Result<bool> {
        let keys = DeliveryKeys::new(endpoint_id, id, None);
        let key = &keys.as_slice()[0];
        let value: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(matches!(value.as_deref(), Some("queued" | "done")))
    }

    /// The attempts recorded in the delivery's hash, while it is in the queue.
    async fn attempts(&self, endpoint_id: &str, id: &str) -> anyhow::Result<Option<u32>> {
        Ok(redis::cmd("HGET")
            .arg(QueueKeys::new(endpoint_id).message(id))
            .arg("attempts")
            .query_async(&mut self.conn().await?)
            .await?)
    }

    async fn keys(&self, pattern: &str) -> anyhow::Result<Vec<String>> {
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut self.conn().await?)
            .await?;
        keys.sort();
        Ok(keys)
    }

    /// Entries of the work stream taken by a sidecar and not settled (`XPENDING`).
    async fn pending(&self, endpoint_id: &str) -> anyhow::Result<u64> {
        let summary: Vec<redis::Value> = redis::cmd("XPENDING")
            .arg(QueueKeys::new(endpoint_id).stream())
            .arg("hookguard")
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(match summary.first() {
            Some(redis::Value::Int(n)) => u64::try_from(*n)?,
            other => anyhow::bail!("XPENDING answered {other:?}"),
        })
    }

    /// Deliveries waiting for a scheduled retry.
    async fn scheduled(&self, endpoint_id: &str) -> anyhow::Result<u64> {
        Ok(redis::cmd("ZCARD")
            .arg(QueueKeys::new(endpoint_id).due())
            .query_async(&mut self.conn().await?)
            .await?)
    }
}

/// What the sender sees of one endpoint, counted on the board.
struct Traffic {
    sender: Sender,
    endpoint: EndpointConfig,
    peek: Peek,
    board: Scoreboard,
}

impl Traffic {
    fn new(sidecar: &SidecarHarness, redis: &RedisServer, endpoint: &EndpointConfig) -> Traffic {
        Traffic {
            sender: sidecar.sender(),
            endpoint: endpoint.clone(),
            peek: Peek::new(redis),
            board: Scoreboard::default(),
        }
    }

    /// Sends delivery `id` once and records the answer (with whether the store holds its
    /// admission, for a 2xx).
    async fn send(&self, id: &str) -> Answer {
        let answer = self
            .sender
            .post_generic(&self.endpoint.path, SECRET, id, &body_of(id))
            .await
            .unwrap();
        let admitted = if (200..300).contains(&answer.status) {
            self.peek
                .admitted(&self.endpoint.endpoint_id, id)
                .await
                .unwrap()
        } else {
            false
        };
        self.board.record_admission(id, answer.status, admitted);
        answer
    }

    /// Sends `id` and asserts it was queued.
    async fn send_queued(&self, id: &str) {
        let answer = self.send(id).await;
        assert_queued(&answer, id);
    }

    /// Retries `id` every 100 ms, as a sender does (a real one waits out `Retry-After`), until a
    /// 2xx; returns every answer.
    async fn send_until_2xx(&self, id: &str, within: Duration) -> Vec<Answer> {
        let mut answers = Vec::new();
        eventually_value(&format!("{id} is answered 2xx"), within, async || {
            let answer = self.send(id).await;
            let done = (200..300).contains(&answer.status);
            answers.push(answer);
            Ok(done.then_some(()))
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e:#}: {} answers, the last {:?}",
                answers.len(),
                answers.last()
            )
        });
        answers
    }
}

fn assert_queued(answer: &Answer, id: &str) {
    assert_eq!(
        (
            answer.status,
            answer.outcome.as_deref(),
            answer.body.as_str()
        ),
        (200, Some("queued"), "queued\n"),
        "{id}: {answer:?}"
    );
}

fn assert_duplicate(answer: &Answer, id: &str) {
    assert_eq!(
        (answer.status, answer.outcome.as_deref()),
        (200, Some("duplicate")),
        "{id}: {answer:?}"
    );
}

/// `GET /queue`'s entry for the endpoint `name`.
async fn queue_entry(sidecar: &SidecarHarness, name: &str) -> anyhow::Result<Value> {
    let (status, body) = sidecar.admin("/queue").await?;
    anyhow::ensure!(status == 200, "GET /queue: {status} {body}");
    let overview: Value = serde_json::from_str(&body)?;
    overview["endpoints"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["name"] == name))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("GET /queue lists no endpoint {name}: {body}"))
}

/// Deliveries the endpoint holds (waiting, at the app, scheduled or dead).
async fn held(sidecar: &SidecarHarness, name: &str) -> anyhow::Result<u64> {
    let entry = queue_entry(sidecar, name).await?;
    entry["stats"]["held"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no stats.held in {entry}"))
}

/// Waits until every one of `ids` is committed at the app and the endpoint holds nothing.
async fn wait_delivered(
    app: &TestApp,
    sidecar: &SidecarHarness,
    name: &str,
    ids: &[String],
    within: Duration,
) {
    wait_delivered_leaving(app, sidecar, name, ids, 0, within).await;
}

/// Waits until every one of `ids` is committed at the app and the endpoint holds only
/// `dead` deliveries (its dead letters).
async fn wait_delivered_leaving(
    app: &TestApp,
    sidecar: &SidecarHarness,
    name: &str,
    ids: &[String],
    dead: u64,
    within: Duration,
) {
    eventually(
        "every delivery is committed at the app and the queue holds only dead letters",
        within,
        async || {
            Ok(ids.iter().all(|id| app.commits(id) >= 1) && held(sidecar, name).await? == dead)
        },
    )
    .await
    .unwrap_or_else(|e| {
        let missing: Vec<&String> = ids.iter().filter(|id| app.commits(id) == 0).collect();
        panic!("{e:#}; not committed: {missing:?}")
    });
}

/// `GET /queue/<name>/dead`'s dead letters.
async fn dead_letters(sidecar: &SidecarHarness, name: &str) -> anyhow::Result<Vec<Value>> {
    let (status, body) = sidecar.admin(&format!("/queue/{name}/dead")).await?;
    anyhow::ensure!(status == 200, "GET /queue/{name}/dead: {status} {body}");
    let page: Value = serde_json::from_str(&body)?;
    page["deadLetters"]
        .as_array()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no deadLetters in {body}"))
}

/// Waits until `id` is in the endpoint's dead-letter queue and returns its entry.
async fn wait_dead(sidecar: &SidecarHarness, name: &str, id: &str) -> Value {
    eventually_value(&format!("{id} is dead-lettered"), SETTLE, async || {
        Ok(dead_letters(sidecar, name)
            .await?
            .into_iter()
            .find(|d| d["deliveryId"] == id))
    })
    .await
    .unwrap()
}

fn header<'a>(arrival: &'a Arrival, name: &str) -> &'a str {
    arrival
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("the app got no {name}: {:?}", arrival.headers))
        .to_str()
        .unwrap()
}

/// `X-Hookguard-Attempt` of each arrival of `id`.
fn attempt_numbers(app: &TestApp, id: &str) -> Vec<u32> {
    app.arrivals_of(id)
        .iter()
        .map(|a| header(a, HEADER_ATTEMPT).parse().unwrap())
        .collect()
}

/// The metric `hookguard_queue_attempts_total` of one endpoint and result.
async fn attempts_metric(sidecar: &SidecarHarness, name: &str, result: &str) -> u64 {
    sidecar
        .metric(&format!(
            "hookguard_queue_attempts_total{{endpoint=\"{name}\",result=\"{result}\"}}"
        ))
        .await
        .unwrap()
}

/// Prints the four numbers and asserts the three with a fixed bound; `DUP_AT_APP` is each
/// scenario's to bound.
fn assert_clean(scenario: &str, report: Report) {
    println!(
        "{scenario}: LOST={} FALSE_2XX={} DUP_AT_APP={} CONC_AT_APP={}",
        report.lost, report.false_2xx, report.dup_at_app, report.conc_at_app
    );
    assert_eq!(report.lost, 0, "{scenario}: LOST: {report:?}");
    assert_eq!(report.false_2xx, 0, "{scenario}: FALSE_2XX: {report:?}");
    assert!(
        report.conc_at_app <= 1,
        "{scenario}: CONC_AT_APP: {report:?}"
    );
}

#[tokio::test]
async fn an_app_down_for_a_while_gets_every_delivery_once_it_listens() {
    let redis = durable_redis();
    // Nothing listens on the app's port yet: every attempt is refused, so nothing reaches it.
    let app_port = free_port().unwrap();
    let endpoint = queued_endpoint("down", app_port);
    let sidecar = sidecar(&redis, vec![endpoint.clone()]).await;
    let traffic = Traffic::new(&sidecar, &redis, &endpoint);
    let ids = ids("evt-down", 10);
    for id in &ids {
        traffic.send_queued(id).await;
    }

    // Down "for a while": until every delivery has been refused at least twice.
    eventually("every delivery was refused twice", SETTLE, async || {
        for id in &ids {
            let attempts = traffic.peek.attempts(&endpoint.endpoint_id, id).await?;
            if attempts.unwrap_or(0) < 2 {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await
    .unwrap();
    assert!(attempts_metric(&sidecar, "down", "retried").await >= 20);
    assert_eq!(attempts_metric(&sidecar, "down", "committed").await, 0);

    let app = TestApp::builder()
        .port(app_port)
        .finish_after_disconnect()
        .start(|_, _| Reply::OK)
        .await
        .unwrap();
    wait_delivered(&app, &sidecar, "down", &ids, SETTLE).await;
    for id in &ids {
        assert_eq!(
            app.arrivals(id),
            1,
            "{id}: refused attempts never reached the app"
        );
        let numbers = attempt_numbers(&app, id);
        assert!(
            numbers[0] >= 3,
            "{id}: attempts 1 and 2 were refused: {numbers:?}"
        );
    }
    let report = traffic.board.report(&app);
    // DUP_AT_APP: 0. A refused connection is a definite failure: no copy reached the app
    // before the one that committed.
    assert_clean("app down", report);
    assert_eq!(report.dup_at_app, 0, "{report:?}");
}

#[tokio::test]
async fn an_app_answering_500_then_200_gets_each_delivery_with_numbered_attempts() {
    let redis = durable_redis();
    let app = TestApp::builder()
        .finish_after_disconnect()
        .start(|_, arrival| {
            if arrival <= 2 {
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
    let endpoint = queued_endpoint("flaky", app.port());
    let sidecar = sidecar(&redis, vec![endpoint.clone()]).await;
    let traffic = Traffic::new(&sidecar, &redis, &endpoint);
    let ids = ids("evt-flaky", 10);
    let sent_from = unix_now();
    for id in &ids {
        traffic.send_queued(id).await;
    }
    let sent_until = unix_now();
    wait_delivered(&app, &sidecar, "flaky", &ids, SETTLE).await;

    for id in &ids {
        assert_eq!((app.arrivals(id), app.commits(id)), (3, 1), "{id}");
        assert_eq!(attempt_numbers(&app, id), [1, 2, 3], "{id}");
        let arrivals = app.arrivals_of(id);
        let received_at = header(&arrivals[0], HEADER_RECEIVED_AT);
        let seconds: u64 = received_at.parse().unwrap();
        assert!(
            (sent_from..=sent_until).contains(&seconds),
            "{id}: received at {seconds}, sent within {sent_from}..={sent_until}"
        );
        for arrival in &arrivals {
            // The same request every time: when it was received, what the sender sent, and
            // who it is for.
            assert_eq!(header(arrival, HEADER_RECEIVED_AT), received_at, "{id}");
            assert_eq!(header(arrival, HEADER_DELIVERY_ID), id);
            assert_eq!(header(arrival, HEADER_ENDPOINT), "flaky");
            assert_eq!(header(arrival, "x-delivery-id"), id);
            assert_eq!(
                header(arrival, "x-signature"),
                hookguard_sidecar::sign::generic(SECRET.as_bytes(), body_of(id).as_bytes())
            );
        }
        // The schedule: 200 ms less 20 % jitter at the least between attempts.
        for pair in arrivals.windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(
                gap >= Duration::from_millis(150),
                "{id}: retried after {gap:?}"
            );
        }
    }
    assert_eq!(attempts_metric(&sidecar, "flaky", "retried").await, 20);
    assert_eq!(attempts_metric(&sidecar, "flaky", "committed").await, 10);
    let report = traffic.board.report(&app);
    // DUP_AT_APP: 0. A 500 is a definite failure; only the 200 commits.
    assert_clean("app 500 then 200", report);
    assert_eq!(report.dup_at_app, 0, "{report:?}");
}

#[tokio::test]
async fn an_app_slower_than_its_time_out_never_gets_two_copies_at_once() {
    const FIRST_TAKES: Duration = Duration::from_millis(600);
    let redis = durable_redis();
    // The first copy outlives the 300 ms time-out and, like most apps' handlers, keeps going
    // after the sidecar hung up: it commits at 600 ms. Later copies answer at once.
    let app = TestApp::builder()
        .finish_after_disconnect()
        .start(|_, arrival| Reply {
            status: 200,
            delay: if arrival == 1 {
                FIRST_TAKES
            } else {
                Duration::ZERO
            },
        })
        .await
        .unwrap();
    let mut endpoint = queued_endpoint("slow", app.port());
    endpoint.upstream.timeout = "300ms".into();
    let lease = lease_of(&endpoint);
    let sidecar = sidecar(&redis, vec![endpoint.clone()]).await;
    let traffic = Traffic::new(&sidecar, &redis, &endpoint);
    let ids = ids("evt-slow", 3);
    for id in &ids {
        traffic.send_queued(id).await;
    }
    wait_delivered(&app, &sidecar, "slow", &ids, lease + SETTLE).await;

    for id in &ids {
        let arrivals = app.arrivals_of(id);
        assert_eq!(arrivals.len(), 2, "{id}: timed out once, then delivered");
        assert_eq!(attempt_numbers(&app, id), [1, 2], "{id}");
        let gap = arrivals[1].at - arrivals[0].at;
        assert!(
            gap >= lease,
            "{id}: the retry after a time-out waits out the lease ({lease:?}), came after {gap:?}"
        );
        assert_eq!(app.commits(id), 2, "{id}: the late copy and the retry");
    }
    assert_eq!(attempts_metric(&sidecar, "slow", "retried").await, 3);
    let report = traffic.board.report(&app);
    // DUP_AT_APP: exactly one per delivery (3). The timed-out copy committed at the app after
    // the sidecar gave up on it, which the sidecar cannot know; the retry commits again. That
    // is README's "at least once to the app": the app's unique constraint on
    // X-Hookguard-Delivery-Id absorbs it. What the lease guarantees is CONC_AT_APP = 1.
    assert_clean("app slower than its time-out", report);
    assert_eq!(report.dup_at_app, 3, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_sidecars_deliveries_are_delivered_by_another_after_the_lease() {
    const FIRST_TAKES: Duration = Duration::from_millis(800);
    let redis = durable_redis();
    // The first copies are at the app when their sidecar crashes, and finish (commit) anyway.
    let app = TestApp::builder()
        .finish_after_disconnect()
        .start(|_, arrival| Reply {
            status: 200,
            delay: if arrival == 1 {
                FIRST_TAKES
            } else {
                Duration::ZERO
            },
        })
        .await
        .unwrap();
    let endpoint = queued_endpoint("crashy", app.port());
    let lease = lease_of(&endpoint);
    let first = sidecar(&redis, vec![endpoint.clone()]).await;
    let traffic = Traffic::new(&first, &redis, &endpoint);
    let ids = ids("evt-crash", 5);
    for id in &ids {
        traffic.send_queued(id).await;
    }
    eventually("every delivery is at the app", SETTLE, async || {
        Ok(ids.iter().all(|id| app.running(id) == 1))
    })
    .await
    .unwrap();
    // The crash comes while the app works on every copy, long before it answers.
    first.abort().await;
    // Held by the dead sidecar: taken, neither settled nor scheduled.
    assert_eq!(
        traffic.peek.pending(&endpoint.endpoint_id).await.unwrap(),
        5
    );
    assert_eq!(
        traffic.peek.scheduled(&endpoint.endpoint_id).await.unwrap(),
        0
    );
    // Another pod's sidecar, sharing the Redis.
    let second = sidecar(&redis, vec![endpoint.clone()]).await;

    eventually(
        "the second sidecar delivered every delivery again and the queue is empty",
        lease + SETTLE,
        async || {
            Ok(ids.iter().all(|id| app.commits(id) == 2) && held(&second, "crashy").await? == 0)
        },
    )
    .await
    .unwrap();
    for id in &ids {
        let arrivals = app.arrivals_of(id);
        assert_eq!(arrivals.len(), 2, "{id}");
        // The lease runs from the crashed sidecar's take, a moment before the first arrival.
        let gap = arrivals[1].at - arrivals[0].at;
        assert!(
            gap + Duration::from_millis(500) >= lease,
            "{id}: taken again before the lease ({lease:?}) ended: after {gap:?}"
        );
        // The crashed sidecar never recorded its attempt: the second copy is attempt 1 again.
        assert_eq!(attempt_numbers(&app, id), [1, 1], "{id}");
    }
    assert_eq!(attempts_metric(&second, "crashy", "committed").await, 5);
    let report = traffic.board.report(&app);
    // DUP_AT_APP: one per delivery held at the crash (5), by design: the crashed sidecar's
    // copies were at the app (and committed there) but never committed in the store, so
    // after the lease another sidecar delivers them again (README: "killed between the app's
    // 2xx and the commit"). Bounded by the deliveries at the app at the crash (maxConcurrency).
    assert_clean("sidecar crash", report);
    assert_eq!(report.dup_at_app, 5, "{report:?}");
}

/// Queues deliveries at an app that is down, kills Redis with SIGKILL right after the last
/// 2xx, restarts it from its AOF, brings the app up, and checks every acknowledged delivery
/// arrives.
async fn acknowledged_deliveries_survive_a_redis_sigkill(
    mut redis: RedisServer,
    name: &str,
    promise: &str,
) {
    let app_port = free_port().unwrap();
    let mut endpoint = queued_endpoint(name, app_port);
    endpoint.delivery.max_attempts = 200;
    let sidecar = sidecar(&redis, vec![endpoint.clone()]).await;
    eventually("the store's promise is known", SETTLE, async || {
        let (status, body) = sidecar.admin("/queue").await?;
        Ok(status == 200 && serde_json::from_str::<Value>(&body)?["promise"] == promise)
    })
    .await
    .unwrap();
    let traffic = Traffic::new(&sidecar, &redis, &endpoint);
    let ids = ids(&format!("evt-{name}"), 20);
    // Sent together, so admissions share fsyncs (and WAITAOFs) as they do under load. A
    // WAITAOF that does not confirm within its bound is a 503 `not_durable` the sender
    // retries (and then finds the delivery queued, or queues it).
    for answers in join_all(ids.iter().map(|id| traffic.send_until_2xx(id, SETTLE))).await {
        let (last, earlier) = answers.split_last().unwrap();
        assert!(
            matches!(last.outcome.as_deref(), Some("queued" | "duplicate")),
            "{last:?}"
        );
        assert!(
            earlier
                .iter()
                .all(|a| a.status == 503 && a.outcome.as_deref() == Some("not_durable")),
            "{earlier:?}"
        );
    }
    redis.kill().unwrap();
    redis.restart().unwrap();

    // Straight from the restarted server: every acknowledged delivery is in it.
    let peek = Peek::new(&redis);
    for id in &ids {
        assert!(
            peek.admitted(&endpoint.endpoint_id, id).await.unwrap(),
            "{id} was answered 2xx and is gone after the restart"
        );
        assert!(
            peek.attempts(&endpoint.endpoint_id, id)
                .await
                .unwrap()
                .is_some(),
            "{id}: its stored request is gone after the restart"
        );
    }
    let app = TestApp::builder()
        .port(app_port)
        .finish_after_disconnect()
        .start(|_, _| Reply::OK)
        .await
        .unwrap();
    wait_delivered(&app, &sidecar, name, &ids, SETTLE).await;
    assert_eq!(
        queue_entry(&sidecar, name).await.unwrap()["stats"]["dead"],
        0
    );
    let (status, body) = sidecar.admin("/queue").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["promise"],
        promise,
        "probed again after the restart: {body}"
    );
    let report = traffic.board.report(&app);
    // DUP_AT_APP: 0. The app was down until after the restart, so no copy reached it before
    // the one that committed.
    assert_clean(&format!("redis SIGKILL ({promise})"), report);
    assert_eq!(report.dup_at_app, 0, "{report:?}");
}

// A SIGKILL loses what the server had not yet written to its AOF file; what it wrote but the
// disk had not fsynced survives a SIGKILL (the kernel has it) and only a power cut loses it.
// So these two show that a 2xx comes only after the write, whatever the promise; that it also
// waits for the fsync is queue_store.rs's (which counts the fsyncs and WAITAOFs).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_acknowledged_by_debian_redis_with_fsync_always_survive_sigkill() {
    let redis = RedisServer::start_with(Persistence::AppendOnly).unwrap();
    acknowledged_deliveries_survive_a_redis_sigkill(redis, "fsync", "fsync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_acknowledged_by_valkey_after_waitaof_survive_sigkill() {
    let redis = RedisServer::start_valkey(Persistence::AppendOnlyEverySec).unwrap();
    acknowledged_deliveries_survive_a_redis_sigkill(redis, "waitaof", "waitaof").await;
}

/// The unpause arrives by a reload, which the worker must not miss (it once could: see
/// `every_reload_of_a_queue_endpoint_reaches_its_worker`).
#[tokio::test]
async fn a_full_queue_answers_503_and_the_senders_retry_gets_through_once_it_drains() {
    let redis = durable_redis();
    let app = TestApp::builder()
        .finish_after_disconnect()
        .start(|_, _| Reply::OK)
        .await
        .unwrap();
    let mut endpoint = queued_endpoint("full", app.port());
    endpoint.delivery.paused = true;
    endpoint.delivery.max_queued = 5;
    let sidecar = sidecar(&redis, vec![endpoint.clone()]).await;
    let traffic = Traffic::new(&sidecar, &redis, &endpoint);
    let ids = ids("evt-full", 6);
    for id in &ids[..5] {
        traffic.send_queued(id).await;
    }
    let refused = traffic.send(&ids[5]).await;
    assert_eq!(
        (refused.status, refused.outcome.as_deref()),
        (503, Some("queue_full")),
        "{refused:?}"
    );
    assert_eq!(refused.retry_after.as_deref(), Some("30"));
    assert_eq!(
        sidecar
            .metric("hookguard_requests_total{endpoint=\"full\",outcome=\"queue_full\"}")
            .await
            .unwrap(),
        1
    );
    assert_eq!(held(&sidecar, "full").await.unwrap(), 5);
    assert!(
        !traffic
            .peek
            .admitted(&endpoint.endpoint_id, &ids[5])
            .await
            .unwrap(),
        "a refused delivery leaves nothing behind"
    );
    assert_eq!(app.total_arrivals(), 0, "paused: nothing is delivered");

    // Unpause the way the operator does: a new endpoint file, which the sidecar reloads.
    endpoint.delivery.paused = false;
    write_endpoint(sidecar.dir(), endpoint.clone(), SECRET).unwrap();
    eventually(
        "the sidecar reloaded the unpaused endpoint",
        SETTLE,
        async || Ok(queue_entry(&sidecar, "full").await?["paused"] == false),
    )
    .await
    .unwrap();
    let answers = traffic.send_until_2xx(&ids[5], SETTLE).await;
    assert!(
        answers[..answers.len() - 1]
            .iter()
            .all(|a| a.status == 503 && a.outcome.as_deref() == Some("queue_full")),
        "{answers:?}"
    );
    assert_queued(answers.last().unwrap(), &ids[5]);
    wait_delivered(&app, &sidecar, "full", &ids, SETTLE).await;
    for id in &ids {
        assert_eq!(app.arrivals(id), 1, "{id}");
    }
    let report = traffic.board.report(&app);
    // DUP_AT_APP: 0. Every delivery reached the app once, at its first attempt.
    assert_clean("queue full", report);
    assert_eq!(report.dup_at_app, 0, "{report:?}");
}

#[tokio::test]
async fn a_poison_delivery_is_dead_lettered_and_listed_on_the_admin_port() {
    let redis = durable_redis();
    let app = TestApp::builder()
        .finish_after_disconnect()
        .start(|id, _| match id {
            "evt-poison" => Reply {
                status: 500,
                delay: Duration::ZERO,
            },
            "evt-refused" => Reply {
                status: 422,
                delay: Duration::ZERO,
            },
            _ => Reply::OK,
        })
        .await
        .unwrap();
    let mut endpoint = queued_endpoint("poison", app.port());
    endpoint.delivery.max_attempts = 3;
    let sidecar = sidecar(&redis, vec![endpoint.clone()]).await;
    let traffic = Traffic::new(&sidecar, &redis, &endpoint);
    for id in ["evt-poison", "evt-refused", "evt-fine"] {
        traffic.send_queued(id).await;
    }

    let poison = wait_dead(&sidecar, "poison", "evt-poison").await;
    assert_eq!(poison["reason"], "3 attempts made (last: status 500)");
    assert_eq!(poison["attempts"], 3);
    assert!(poison["failedAtMs"].as_u64().unwrap() >= poison["receivedAtMs"].as_u64().unwrap());
    assert_eq!(attempt_numbers(&app, "evt-poison"), [1, 2, 3]);
    // Any 4xx but 408, 409, 425 and 429 is the app refusing these bytes: no retry.
    let refused = wait_dead(&sidecar, "poison", "evt-refused").await;
    assert_eq!(refused["reason"], "status 422 is a permanent refusal");
    assert_eq!(refused["attempts"], 1);

    let (status, body) = sidecar
        .admin("/queue/poison/dead/evt-poison")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let one: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(one["deadLetter"]["deliveryId"], "evt-poison");
    assert_eq!(one["request"]["body"], body_of("evt-poison"));
    assert_eq!(one["request"]["path"], "/poison");
    assert!(
        one["request"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "x-delivery-id" && h[1] == "evt-poison"),
        "{body}"
    );
    let (status, _) = sidecar.admin("/queue/poison/dead/evt-fine").await.unwrap();
    assert_eq!(status, 404, "a committed delivery is no dead letter");

    wait_delivered_leaving(
        &app,
        &sidecar,
        "poison",
        &["evt-fine".to_owned()],
        2,
        SETTLE,
    )
    .await;
    let entry = queue_entry(&sidecar, "poison").await.unwrap();
    assert_eq!(entry["stats"]["dead"], 2, "{entry}");
    assert_eq!(
        entry["stats"]["held"], 2,
        "dead letters count against the caps: {entry}"
    );
    assert_eq!(
        app.arrivals("evt-poison"),
        3,
        "no attempt after the dead-lettering"
    );
    assert_eq!(app.arrivals("evt-refused"), 1);
    assert_eq!(
        attempts_metric(&sidecar, "poison", "dead_lettered").await,
        2
    );

    let report = traffic.board.report(&app);
    // LOST here counts the two dead letters, which are neither lost nor delivered: the app
    // refused them and they wait, listed, for a replay or a purge. Nothing else is missing.
    assert_eq!(
        traffic.board.lost_ids(&app),
        ["evt-poison", "evt-refused"],
        "{report:?}"
    );
    let report = Report { lost: 0, ..report };
    // DUP_AT_APP: 0. Nothing committed twice; the poison's three arrivals all failed.
    assert_clean("poison", report);
    assert_eq!(report.dup_at_app, 0, "{report:?}");
}

#[tokio::test]
async fn a_replayed_dead_letter_reaches_the_fixed_app_once_and_a_purged_one_stays_a_duplicate() {
    let redis = durable_redis();
    // Broken until fixed: 500 for everything, then 200.
    let fixed = Arc::new(AtomicBool::new(false));
    let app = TestApp::builder()
        .finish_after_disconnect()
        .start({
            let fixed = Arc::clone(&fixed);
            move |_, _| {
                if fixed.load(Ordering::SeqCst) {
                    Reply::OK
                } else {
                    Reply {
                        status: 500,
                        delay: Duration::ZERO,
                    }
                }
            }
        })
        .await
        .unwrap();
    let mut endpoint = queued_endpoint("replay", app.port());
    endpoint.delivery.max_attempts = 3;
    let sidecar = sidecar(&redis, vec![endpoint.clone()]).await;
    let traffic = Traffic::new(&sidecar, &redis, &endpoint);
    for id in ["evt-replay", "evt-purge"] {
        traffic.send_queued(id).await;
    }
    wait_dead(&sidecar, "replay", "evt-replay").await;
    wait_dead(&sidecar, "replay", "evt-purge").await;
    fixed.store(true, Ordering::SeqCst);

    let (status, body) = sidecar
        .admin_request(Method::POST, "/queue/replay/dead/evt-replay/replay")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["replayed"],
        serde_json::json!(["evt-replay"])
    );
    wait_delivered_leaving(
        &app,
        &sidecar,
        "replay",
        &["evt-replay".to_owned()],
        1,
        SETTLE,
    )
    .await;
    assert_eq!(
        (app.arrivals("evt-replay"), app.commits("evt-replay")),
        (4, 1)
    );
    assert_eq!(
        attempt_numbers(&app, "evt-replay"),
        [1, 2, 3, 1],
        "a replay starts its attempts again"
    );
    let dead = dead_letters(&sidecar, "replay").await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["deliveryId"], "evt-purge");
    // The sender's late retry of the replayed delivery: done, so a duplicate.
    assert_duplicate(&traffic.send("evt-replay").await, "evt-replay");
    let (status, body) = sidecar
        .admin_request(Method::POST, "/queue/replay/dead/evt-replay/replay")
        .await
        .unwrap();
    assert_eq!(status, 404, "replayed once only: {body}");

    let (status, body) = sidecar
        .admin_request(Method::DELETE, "/queue/replay/dead/evt-purge")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["purged"],
        serde_json::json!(["evt-purge"])
    );
    assert_eq!(
        dead_letters(&sidecar, "replay").await.unwrap(),
        Vec::<Value>::new()
    );
    assert_eq!(held(&sidecar, "replay").await.unwrap(), 0);
    // The sender's late retry of the purged delivery is a duplicate, not a new delivery.
    assert_duplicate(&traffic.send("evt-purge").await, "evt-purge");
    let (status, _) = sidecar
        .admin_request(Method::POST, "/queue/replay/dead/evt-purge/replay")
        .await
        .unwrap();
    assert_eq!(status, 404, "a purged delivery cannot be replayed");
    assert_eq!(held(&sidecar, "replay").await.unwrap(), 0);
    assert_eq!(
        (app.arrivals("evt-purge"), app.commits("evt-purge")),
        (3, 0),
        "a purged delivery never reaches the app again"
    );
    assert_eq!(app.arrivals("evt-replay"), 4);

    let report = traffic.board.report(&app);
    // LOST here counts the purged delivery only: acknowledged, never committed, and dropped on
    // purpose through the admin port.
    assert_eq!(traffic.board.lost_ids(&app), ["evt-purge"], "{report:?}");
    let report = Report { lost: 0, ..report };
    // DUP_AT_APP: 0. The replay reached the app once; the sender's retries were duplicates.
    assert_clean("replay and purge", report);
    assert_eq!(report.dup_at_app, 0, "{report:?}");
}

#[tokio::test]
async fn without_fsync_disk_deliveries_get_503_not_durable_and_memory_ones_are_queued() {
    // Debian's redis-server 7.0 with AOF off: no fsync, and no WAITAOF in 7.0.
    let redis = RedisServer::start_with(Persistence::None).unwrap();
    let app = TestApp::builder()
        .finish_after_disconnect()
        .start(|_, _| Reply::OK)
        .await
        .unwrap();
    let disk = queued_endpoint("disk", app.port());
    let mut memory = queued_endpoint("memory", app.port());
    memory.delivery.durability = Durability::Memory;
    let args = store_args(&redis);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sidecar = SidecarHarness::start_unready(
        vec![(disk.clone(), SECRET), (memory.clone(), SECRET)],
        &args,
    )
    .await
    .unwrap();
    let why = eventually_value(
        "/readyz refuses queue mode with durability Disk",
        SETTLE,
        async || {
            let (status, body) = sidecar.admin("/readyz").await?;
            Ok((status == 503 && body.contains("durability Disk")).then_some(body))
        },
    )
    .await
    .unwrap();
    assert!(
        why.contains(r#"["disk"]"#),
        "names the endpoint, and only it: {why}"
    );
    assert!(
        why.contains("appendfsync always") && why.contains("durability: Memory"),
        "names the fixes: {why}"
    );

    let disk_traffic = Traffic::new(&sidecar, &redis, &disk);
    let refused = disk_traffic.send("evt-disk").await;
    assert_eq!(
        (refused.status, refused.outcome.as_deref()),
        (503, Some("not_durable")),
        "{refused:?}"
    );
    assert!(refused.retry_after.is_some(), "{refused:?}");
    let memory_traffic = Traffic::new(&sidecar, &redis, &memory);
    memory_traffic.send_queued("evt-memory").await;
    wait_delivered(&app, &sidecar, "memory", &["evt-memory".to_owned()], SETTLE).await;
    eventually(
        "the memory endpoint is flagged and the store's promise is memory",
        SETTLE,
        async || {
            Ok(sidecar
                .metric("hookguard_queue_memory_durability{endpoint=\"memory\"}")
                .await?
                == 1
                && sidecar
                    .metric("hookguard_queue_store_promise{promise=\"memory\"}")
                    .await?
                    == 1)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        sidecar
            .metric("hookguard_queue_memory_durability{endpoint=\"disk\"}")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        sidecar
            .metric("hookguard_requests_total{endpoint=\"disk\",outcome=\"not_durable\"}")
            .await
            .unwrap(),
        1
    );
    assert_eq!(app.arrivals("evt-disk"), 0);
    // Nothing of the refused delivery was written (checked after the memory endpoint's
    // delivery, so the disk endpoint's worker has been looking at its queue meanwhile). The
    // worker's first look creates the endpoint's empty work stream and its consumer group
    // (`XGROUP CREATE … MKSTREAM`), which holds no delivery; nothing else may exist.
    let disk_keys = disk_traffic
        .peek
        .keys(&format!("hg:{{{}}}:*", disk.endpoint_id))
        .await
        .unwrap();
    let work_stream = QueueKeys::new(&disk.endpoint_id).stream();
    assert!(
        disk_keys.iter().all(|key| *key == work_stream),
        "the refused endpoint's keys: {disk_keys:?}"
    );
    let length: u64 = redis::cmd("XLEN")
        .arg(&work_stream)
        .query_async(&mut disk_traffic.peek.conn().await.unwrap())
        .await
        .unwrap();
    assert_eq!(length, 0, "the refused endpoint's work stream is empty");
    let report = memory_traffic.board.report(&app);
    // DUP_AT_APP: 0. One delivery, delivered once.
    assert_clean("durability refusal", report);
    assert_eq!(report.dup_at_app, 0, "{report:?}");
    assert_eq!(disk_traffic.board.acked(), 0);
}

#[tokio::test]
async fn a_duplicate_storm_is_queued_once_per_delivery_and_delivered_once() {
    let redis = durable_redis();
    let app = TestApp::builder()
        .finish_after_disconnect()
        .start(|_, _| Reply {
            status: 200,
            delay: Duration::from_millis(50),
        })
        .await
        .unwrap();
    let endpoint = queued_endpoint("storm", app.port());
    let sidecar = sidecar(&redis, vec![endpoint.clone()]).await;
    let traffic = Traffic::new(&sidecar, &redis, &endpoint);
    let ids = ids("evt-storm", 40);
    // Every delivery three times at once, all 120 requests together.
    let answers = join_all(ids.iter().flat_map(|id| {
        let traffic = &traffic;
        (0..3).map(move |_| async move { (id, traffic.send(id).await) })
    }))
    .await;
    for id in &ids {
        let outcomes: Vec<(u16, Option<&str>)> = answers
            .iter()
            .filter(|(sent, _)| *sent == id)
            .map(|(_, a)| (a.status, a.outcome.as_deref()))
            .collect();
        let queued = outcomes
            .iter()
            .filter(|o| **o == (200, Some("queued")))
            .count();
        assert_eq!(queued, 1, "{id}: one copy queued: {outcomes:?}");
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, (200, Some("queued" | "duplicate")))),
            "{id}: only 200 queued or duplicate: {outcomes:?}"
        );
    }
    wait_delivered(&app, &sidecar, "storm", &ids, SETTLE).await;
    for id in &ids {
        assert_eq!(app.arrivals(id), 1, "{id}");
    }
    // And once more after delivery: duplicates.
    for answer in join_all(ids.iter().map(|id| traffic.send(id))).await {
        assert_eq!(
            (answer.status, answer.outcome.as_deref()),
            (200, Some("duplicate"))
        );
    }
    assert_eq!(app.total_arrivals(), 40);
    let report = traffic.board.report(&app);
    // DUP_AT_APP: 0. Admission is one atomic check-and-enqueue, so each delivery is queued
    // once whatever the copies, and delivered once.
    assert_clean("duplicate storm", report);
    assert_eq!(report.dup_at_app, 0, "{report:?}");
}

#[tokio::test]
async fn an_app_asking_to_wait_is_left_alone_without_spending_an_attempt() {
    let redis = durable_redis();
    let app = TestApp::builder()
        .finish_after_disconnect()
        .start(|id, arrival| {
            if id == "evt-wait" && arrival == 1 {
                AppReply {
                    status: 503,
                    delay: Duration::ZERO,
                    retry_after: Some(1),
                    body: None,
                }
            } else {
                Reply::OK.into()
            }
        })
        .await
        .unwrap();
    let mut endpoint = queued_endpoint("wait", app.port());
    // One attempt: a spent failure would dead-letter at once.
    endpoint.delivery.max_attempts = 1;
    let sidecar = sidecar(&redis, vec![endpoint.clone()]).await;
    let traffic = Traffic::new(&sidecar, &redis, &endpoint);
    traffic.send_queued("evt-wait").await;
    eventually(
        "the app's 503 was settled as a deferral",
        SETTLE,
        async || Ok(attempts_metric(&sidecar, "wait", "deferred").await == 1),
    )
    .await
    .unwrap();
    // Queued while the app asked to be left alone: it waits too.
    traffic.send_queued("evt-other").await;
    let ids = ["evt-wait".to_owned(), "evt-other".to_owned()];
    wait_delivered(&app, &sidecar, "wait", &ids, SETTLE).await;

    let asked_at = app.arrivals_of("evt-wait")[0].at;
    let waited = app.arrivals_of("evt-wait")[1].at - asked_at;
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    let other = app.arrivals_of("evt-other")[0].at - asked_at;
    assert!(
        other >= Duration::from_secs(1),
        "the endpoint is held: another delivery came {other:?} after the 503"
    );
    assert_eq!(
        attempt_numbers(&app, "evt-wait"),
        [1, 1],
        "no attempt spent"
    );
    assert_eq!(attempts_metric(&sidecar, "wait", "dead_lettered").await, 0);
    let report = traffic.board.report(&app);
    // DUP_AT_APP: 0. A 503 is a definite answer; only the 200 commits.
    assert_clean("app asks to wait", report);
    assert_eq!(report.dup_at_app, 0, "{report:?}");
}

/// A Slack endpoint in queue mode: events are queued by their `event_id`.
fn slack_endpoint(app_port: u16) -> EndpointConfig {
    serde_json::from_value(serde_json::json!({
        "name": "slack",
        "endpointId": "slack-id",
        "path": "/slack",
        "scheme": "Slack",
        "upstream": {"port": app_port, "timeout": "2s"},
        "secretDir": "",
        "delivery": {"mode": "Queue", "retrySchedule": ["200ms"]},
    }))
    .unwrap()
}

/// Sends `body` to the Slack endpoint as Slack signs it, with `content_type`.
async fn post_slack(sidecar: &SidecarHarness, content_type: &str, body: &str) -> Answer {
    let timestamp = i64::try_from(unix_now()).unwrap();
    let signed = hookguard_sidecar::sign::headers(
        Scheme::Slack,
        SECRET.as_bytes(),
        &hookguard_sidecar::sign::Delivery {
            id: "",
            timestamp,
            event_type: "",
            body: body.as_bytes(),
        },
    );
    let mut headers: Vec<(&str, &str)> = signed.iter().map(|(n, v)| (*n, v.as_str())).collect();
    headers.push(("content-type", content_type));
    sidecar.post("/slack", &headers, body).await.unwrap()
}

#[tokio::test]
async fn slack_url_verification_stays_synchronous_in_queue_mode() {
    let redis = durable_redis();
    // What reaches the app without a delivery ID is the handshake: it echoes the challenge.
    let app = TestApp::builder()
        .finish_after_disconnect()
        .start(|id, _| AppReply {
            body: id.is_empty().then(|| "challenge-7f3a".to_owned()),
            ..Reply::OK.into()
        })
        .await
        .unwrap();
    let endpoint = slack_endpoint(app.port());
    let sidecar = sidecar(&redis, vec![endpoint.clone()]).await;

    let handshake = post_slack(
        &sidecar,
        "application/json",
        r#"{"token":"t","challenge":"challenge-7f3a","type":"url_verification"}"#,
    )
    .await;
    assert_eq!(
        (
            handshake.status,
            handshake.outcome.as_deref(),
            handshake.body.as_str()
        ),
        (200, None, "challenge-7f3a"),
        "the sender gets the app's own answer: {handshake:?}"
    );
    assert_eq!(app.arrivals(""), 1, "at the app before the sender's answer");

    let event = post_slack(
        &sidecar,
        "application/json",
        r#"{"type":"event_callback","event_id":"Ev0QUEUED1","event":{"type":"message"}}"#,
    )
    .await;
    assert_queued(&event, "Ev0QUEUED1");
    wait_delivered(&app, &sidecar, "slack", &["Ev0QUEUED1".to_owned()], SETTLE).await;
    assert_eq!(app.arrivals("Ev0QUEUED1"), 1);
}

/// README: Slack's "interactive and slash-command payloads (form-encoded) stay synchronous in
/// either mode". A form body has no delivery ID (Slack's default is the JSON pointer
/// `/event_id`); the sidecar once refused it with 400 `missing_delivery_id` for that.
#[tokio::test]
async fn slack_slash_commands_stay_synchronous_in_queue_mode() {
    let redis = durable_redis();
    let app = TestApp::builder()
        .finish_after_disconnect()
        .start(|_, _| AppReply {
            body: Some("deploying now".to_owned()),
            ..Reply::OK.into()
        })
        .await
        .unwrap();
    let endpoint = slack_endpoint(app.port());
    let sidecar = sidecar(&redis, vec![endpoint.clone()]).await;
    let command = post_slack(
        &sidecar,
        "application/x-www-form-urlencoded",
        "command=%2Fdeploy&text=now&user_id=U2147483697&trigger_id=13345224609.738474920.8088930838d88f008e0",
    )
    .await;
    let missing_id = sidecar
        .metric("hookguard_rejections_total{endpoint=\"slack\",reason=\"missing_delivery_id\"}")
        .await
        .unwrap();
    assert_eq!(
        (
            command.status,
            command.outcome.as_deref(),
            command.body.as_str()
        ),
        (200, None, "deploying now"),
        "the user sees the app's own answer: {command:?} (refused for a missing delivery ID: \
         {missing_id})"
    );
    assert_eq!(app.total_arrivals(), 1);
}

/// Each reload moves the endpoint to the other of two apps; the next queued delivery must
/// reach the app the endpoint now names. The worker once missed about half the changes:
/// `watch::Receiver::changed` in its wait marks the value seen, so a `has_changed()` check
/// after the wait found nothing and it kept the old endpoint (port, schedule, pacing, pause).
#[tokio::test]
async fn every_reload_of_a_queue_endpoint_reaches_its_worker() {
    let redis = durable_redis();
    let apps = [
        TestApp::builder()
            .finish_after_disconnect()
            .start(|_, _| Reply::OK)
            .await
            .unwrap(),
        TestApp::builder()
            .finish_after_disconnect()
            .start(|_, _| Reply::OK)
            .await
            .unwrap(),
    ];
    let mut endpoint = queued_endpoint("moving", apps[0].port());
    let sidecar = sidecar(&redis, vec![endpoint.clone()]).await;
    let traffic = Traffic::new(&sidecar, &redis, &endpoint);
    let reloads = "hookguard_config_reloads_total{result=\"success\"}";
    let mut misses = Vec::new();
    for round in 1..=6 {
        let (to, from) = (&apps[round % 2], &apps[(round + 1) % 2]);
        let before = sidecar.metric(reloads).await.unwrap();
        endpoint.upstream.port = to.port();
        write_endpoint(sidecar.dir(), endpoint.clone(), SECRET).unwrap();
        eventually(
            "the sidecar reloaded the endpoint file",
            SETTLE,
            async || Ok(sidecar.metric(reloads).await? > before),
        )
        .await
        .unwrap();
        let id = format!("evt-moving-{round}");
        traffic.send_queued(&id).await;
        eventually(&format!("{id} reached an app"), SETTLE, async || {
            Ok(to.commits(&id) + from.commits(&id) == 1 && held(&sidecar, "moving").await? == 0)
        })
        .await
        .unwrap();
        if from.commits(&id) == 1 {
            misses.push(round);
        }
    }
    assert_eq!(
        misses,
        Vec::<usize>::new(),
        "rounds whose delivery went to the app of the previous configuration"
    );
}
