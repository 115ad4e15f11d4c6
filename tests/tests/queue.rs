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
        self.send_body(id, &body_of(id)).await
    }

    /// [`Traffic::send`] with a body of the test's own.
    async fn send_body(&self, id: &str, body: &str) -> Answer {
        let answer = self
            .sender
            .post_generic(&self.endpoint.path, SECRET, id, body)
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

    /// [`Traffic::send_queued`] for each of `ids` in turn.
    async fn send_all_queued(&self, ids: impl IntoIterator<Item = impl AsRef<str>>) {
        for id in ids {
            self.send_queued(id.as_ref()).await;
        }
    }

    /// Whether the store holds an admission of `id` (see [`Peek::admitted`]).
    async fn admitted(&self, id: &str) -> bool {
        self.peek
            .admitted(&self.endpoint.endpoint_id, id)
            .await
            .unwrap()
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

/// Asserts [`assert_clean`]'s three numbers and that `DUP_AT_APP` is `dup_at_app`, the
/// scenario's own bound (each call site says why).
fn assert_report(scenario: &str, report: Report, dup_at_app: u32) {
    assert_clean(scenario, report);
    assert_eq!(report.dup_at_app, dup_at_app, "{report:?}");
}

/// Asserts `answer` is a 503 with the outcome `outcome` (`queue_full`, `not_durable`).
fn assert_refused(answer: &Answer, outcome: &str) {
    assert_eq!(
        (answer.status, answer.outcome.as_deref()),
        (503, Some(outcome)),
        "{answer:?}"
    );
}

/// Asserts each of `ids` reached the app exactly once.
fn assert_arrived_once(app: &TestApp, ids: &[String]) {
    for id in ids {
        assert_eq!(app.arrivals(id), 1, "{id}");
    }
}

/// The metric `hookguard_requests_total` of one endpoint and outcome.
async fn requests_metric(sidecar: &SidecarHarness, name: &str, outcome: &str) -> u64 {
    sidecar
        .metric(&format!(
            "hookguard_requests_total{{endpoint=\"{name}\",outcome=\"{outcome}\"}}"
        ))
        .await
        .unwrap()
}

/// `method path` on the admin port: its status and body.
async fn admin_call(sidecar: &SidecarHarness, method: Method, path: &str) -> (u16, String) {
    sidecar.admin_request(method, path).await.unwrap()
}

/// A test app answering as `behavior` says (to a delivery ID and its arrival number, from 1)
/// that, like most apps' handlers, finishes a request after the sidecar hung up on it.
async fn start_app<R: Into<AppReply>>(
    behavior: impl Fn(&str, u32) -> R + Send + Sync + 'static,
) -> TestApp {
    TestApp::builder()
        .finish_after_disconnect()
        .start(behavior)
        .await
        .unwrap()
}

/// [`start_app`] answering 200 at once to everything.
async fn ok_app() -> TestApp {
    start_app(|_, _| Reply::OK).await
}

/// [`ok_app`] on `port`, which the sidecar was given before anything listened on it.
async fn ok_app_on(port: u16) -> TestApp {
    TestApp::builder()
        .port(port)
        .finish_after_disconnect()
        .start(|_, _| Reply::OK)
        .await
        .unwrap()
}

/// [`start_app`] whose first arrival of each delivery answers 200 after `first_takes`; later
/// arrivals answer 200 at once.
async fn slow_first_app(first_takes: Duration) -> TestApp {
    start_app(move |_, arrival| Reply {
        status: 200,
        delay: if arrival == 1 {
            first_takes
        } else {
            Duration::ZERO
        },
    })
    .await
}

/// [`start_app`] answering 500 until `fixed` is set, and from then 200 to the deliveries
/// `fixable` picks (500 still to the others).
async fn broken_app(
    fixed: &Arc<AtomicBool>,
    fixable: impl Fn(&str) -> bool + Send + Sync + 'static,
) -> TestApp {
    let fixed = Arc::clone(fixed);
    start_app(move |id, _| {
        if fixable(id) && fixed.load(Ordering::SeqCst) {
            Reply::OK
        } else {
            reply(500)
        }
    })
    .await
}

/// An answer of `status`, at once.
fn reply(status: u16) -> Reply {
    Reply {
        status,
        delay: Duration::ZERO,
    }
}

/// A 200 after `delay`.
fn ok_after(delay: Duration) -> Reply {
    Reply { status: 200, delay }
}

/// A sidecar serving only `endpoint` on `redis`, and the [`Traffic`] its sender sends.
async fn serve(redis: &RedisServer, endpoint: &EndpointConfig) -> (SidecarHarness, Traffic) {
    let sidecar = sidecar(redis, vec![endpoint.clone()]).await;
    let traffic = Traffic::new(&sidecar, redis, endpoint);
    (sidecar, traffic)
}

#[tokio::test]
async fn an_app_down_for_a_while_gets_every_delivery_once_it_listens() {
    let redis = durable_redis();
    // Nothing listens on the app's port yet: every attempt is refused, so nothing reaches it.
    let app_port = free_port().unwrap();
    let endpoint = queued_endpoint("down", app_port);
    let (sidecar, traffic) = serve(&redis, &endpoint).await;
    let ids = ids("evt-down", 10);
    traffic.send_all_queued(&ids).await;

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

    let app = ok_app_on(app_port).await;
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
    assert_report("app down", report, 0);
}

#[tokio::test]
async fn an_app_answering_500_then_200_gets_each_delivery_with_numbered_attempts() {
    let redis = durable_redis();
    let app = start_app(|_, arrival| if arrival <= 2 { reply(500) } else { Reply::OK }).await;
    let endpoint = queued_endpoint("flaky", app.port());
    let (sidecar, traffic) = serve(&redis, &endpoint).await;
    let ids = ids("evt-flaky", 10);
    let sent_from = unix_now();
    traffic.send_all_queued(&ids).await;
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
    assert_report("app 500 then 200", report, 0);
}

#[tokio::test]
async fn an_app_slower_than_its_time_out_never_gets_two_copies_at_once() {
    const FIRST_TAKES: Duration = Duration::from_millis(600);
    let redis = durable_redis();
    // The first copy outlives the 300 ms time-out and, like most apps' handlers, keeps going
    // after the sidecar hung up: it commits at 600 ms. Later copies answer at once.
    let app = slow_first_app(FIRST_TAKES).await;
    let mut endpoint = queued_endpoint("slow", app.port());
    endpoint.upstream.timeout = "300ms".into();
    let lease = lease_of(&endpoint);
    let (sidecar, traffic) = serve(&redis, &endpoint).await;
    let ids = ids("evt-slow", 3);
    traffic.send_all_queued(&ids).await;
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
    assert_report("app slower than its time-out", report, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_sidecars_deliveries_are_delivered_by_another_after_the_lease() {
    const FIRST_TAKES: Duration = Duration::from_millis(800);
    let redis = durable_redis();
    // The first copies are at the app when their sidecar crashes, and finish (commit) anyway.
    let app = slow_first_app(FIRST_TAKES).await;
    let endpoint = queued_endpoint("crashy", app.port());
    let lease = lease_of(&endpoint);
    let (first, traffic) = serve(&redis, &endpoint).await;
    let ids = ids("evt-crash", 5);
    traffic.send_all_queued(&ids).await;
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
    assert_report("sidecar crash", report, 5);
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
    let app = ok_app_on(app_port).await;
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
    assert_report(&format!("redis SIGKILL ({promise})"), report, 0);
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
    let app = ok_app().await;
    let mut endpoint = queued_endpoint("full", app.port());
    endpoint.delivery.paused = true;
    endpoint.delivery.max_queued = 5;
    let (sidecar, traffic) = serve(&redis, &endpoint).await;
    let ids = ids("evt-full", 6);
    traffic.send_all_queued(&ids[..5]).await;
    let refused = traffic.send(&ids[5]).await;
    assert_refused(&refused, "queue_full");
    assert_eq!(refused.retry_after.as_deref(), Some("30"));
    assert_eq!(requests_metric(&sidecar, "full", "queue_full").await, 1);
    assert_eq!(held(&sidecar, "full").await.unwrap(), 5);
    assert!(
        !traffic.admitted(&ids[5]).await,
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
    assert_arrived_once(&app, &ids);
    let report = traffic.board.report(&app);
    // DUP_AT_APP: 0. Every delivery reached the app once, at its first attempt.
    assert_report("queue full", report, 0);
}

#[tokio::test]
async fn a_poison_delivery_is_dead_lettered_and_listed_on_the_admin_port() {
    let redis = durable_redis();
    let app = start_app(|id, _| match id {
        "evt-poison" => reply(500),
        "evt-refused" => reply(422),
        _ => Reply::OK,
    })
    .await;
    let mut endpoint = queued_endpoint("poison", app.port());
    endpoint.delivery.max_attempts = 3;
    let (sidecar, traffic) = serve(&redis, &endpoint).await;
    traffic
        .send_all_queued(["evt-poison", "evt-refused", "evt-fine"])
        .await;

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
    assert_report("poison", report, 0);
}

#[tokio::test]
async fn a_replayed_dead_letter_reaches_the_fixed_app_once_and_a_purged_one_stays_a_duplicate() {
    let redis = durable_redis();
    // Broken until fixed: 500 for everything, then 200.
    let fixed = Arc::new(AtomicBool::new(false));
    let app = broken_app(&fixed, |_| true).await;
    let mut endpoint = queued_endpoint("replay", app.port());
    endpoint.delivery.max_attempts = 3;
    let (sidecar, traffic) = serve(&redis, &endpoint).await;
    traffic.send_all_queued(["evt-replay", "evt-purge"]).await;
    wait_dead(&sidecar, "replay", "evt-replay").await;
    wait_dead(&sidecar, "replay", "evt-purge").await;
    fixed.store(true, Ordering::SeqCst);

    let (status, body) = admin_call(
        &sidecar,
        Method::POST,
        "/queue/replay/dead/evt-replay/replay",
    )
    .await;
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
    let (status, body) = admin_call(
        &sidecar,
        Method::POST,
        "/queue/replay/dead/evt-replay/replay",
    )
    .await;
    assert_eq!(status, 404, "replayed once only: {body}");

    let (status, body) = admin_call(&sidecar, Method::DELETE, "/queue/replay/dead/evt-purge").await;
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
    let (status, _) = admin_call(
        &sidecar,
        Method::POST,
        "/queue/replay/dead/evt-purge/replay",
    )
    .await;
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
    assert_report("replay and purge", report, 0);
}

#[tokio::test]
async fn without_fsync_disk_deliveries_get_503_not_durable_and_memory_ones_are_queued() {
    // Debian's redis-server 7.0 with AOF off: no fsync, and no WAITAOF in 7.0.
    let redis = RedisServer::start_with(Persistence::None).unwrap();
    let app = ok_app().await;
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
    assert_refused(&refused, "not_durable");
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
    assert_eq!(requests_metric(&sidecar, "disk", "not_durable").await, 1);
    assert_eq!(app.arrivals("evt-disk"), 0);
    // Nothing of the refused delivery was written (checked after the memory endpoint's
    // delivery, so the disk endpoint's worker has been looking at its queue meanwhile). The
    // worker's first look creates the endpoint's empty work stream and its consumer group
    // (`XGROUP CREATE … MKSTREAM`), which holds no delivery; the delivery log records the
    // refusal (metadata only); nothing else may exist.
    let disk_keys = disk_traffic
        .peek
        .keys(&format!("hg:{{{}}}:*", disk.endpoint_id))
        .await
        .unwrap();
    let work_stream = QueueKeys::new(&disk.endpoint_id).stream();
    let log = hookguard_sidecar::delivery_log::log_key(&disk.endpoint_id);
    assert!(
        disk_keys
            .iter()
            .all(|key| *key == work_stream || *key == log),
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
    assert_report("durability refusal", report, 0);
    assert_eq!(disk_traffic.board.acked(), 0);
}

#[tokio::test]
async fn a_duplicate_storm_is_queued_once_per_delivery_and_delivered_once() {
    let redis = durable_redis();
    let app = start_app(|_, _| ok_after(Duration::from_millis(50))).await;
    let endpoint = queued_endpoint("storm", app.port());
    let (sidecar, traffic) = serve(&redis, &endpoint).await;
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
    assert_arrived_once(&app, &ids);
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
    assert_report("duplicate storm", report, 0);
}

#[tokio::test]
async fn an_app_asking_to_wait_is_left_alone_without_spending_an_attempt() {
    let redis = durable_redis();
    let app = start_app(|id, arrival| {
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
    .await;
    let mut endpoint = queued_endpoint("wait", app.port());
    // One attempt: a spent failure would dead-letter at once.
    endpoint.delivery.max_attempts = 1;
    let (sidecar, traffic) = serve(&redis, &endpoint).await;
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
    assert_report("app asks to wait", report, 0);
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
    post_slack_at(sidecar, content_type, body, timestamp).await
}

/// [`post_slack`], signed at `timestamp`: the same arguments make the same request.
async fn post_slack_at(
    sidecar: &SidecarHarness,
    content_type: &str,
    body: &str,
    timestamp: i64,
) -> Answer {
    let signed = hookguard_sidecar::sign::headers(
        Scheme::Slack,
        SECRET.as_bytes(),
        &hookguard_sidecar::sign::Delivery {
            id: "",
            timestamp,
            event_type: "",
            body: body.as_bytes(),
        },
    )
    .unwrap();
    let mut headers: Vec<(&str, &str)> = signed.iter().map(|(n, v)| (*n, v.as_str())).collect();
    headers.push(("content-type", content_type));
    sidecar.post("/slack", &headers, body).await.unwrap()
}

#[tokio::test]
async fn slack_url_verification_stays_synchronous_in_queue_mode() {
    let redis = durable_redis();
    // What reaches the app without a delivery ID is the handshake: it echoes the challenge.
    let app = start_app(|id, _| AppReply {
        body: id.is_empty().then(|| "challenge-7f3a".to_owned()),
        ..Reply::OK.into()
    })
    .await;
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
/// either mode". A form body has no `event_id`; the sidecar once refused it with 400
/// `missing_delivery_id` for that. Its delivery ID is now the signed timestamp and the body's
/// digest, so the same request replayed within the tolerance is a duplicate.
#[tokio::test]
async fn slack_slash_commands_stay_synchronous_in_queue_mode() {
    let redis = durable_redis();
    let app = start_app(|_, _| AppReply {
        body: Some("deploying now".to_owned()),
        ..Reply::OK.into()
    })
    .await;
    let endpoint = slack_endpoint(app.port());
    let sidecar = sidecar(&redis, vec![endpoint.clone()]).await;
    let body = "command=%2Fdeploy&text=now&user_id=U2147483697&trigger_id=13345224609.738474920.8088930838d88f008e0";
    let timestamp = i64::try_from(unix_now()).unwrap();
    let form = "application/x-www-form-urlencoded";
    let command = post_slack_at(&sidecar, form, body, timestamp).await;
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
    let replay = post_slack_at(&sidecar, form, body, timestamp).await;
    assert_eq!(
        (replay.status, replay.outcome.as_deref()),
        (200, Some("duplicate")),
        "the same signed request again: {replay:?}"
    );
    assert_eq!(app.total_arrivals(), 1, "the app saw the command once");
}

/// Each reload moves the endpoint to the other of two apps; the next queued delivery must
/// reach the app the endpoint now names. The worker once missed about half the changes:
/// `watch::Receiver::changed` in its wait marks the value seen, so a `has_changed()` check
/// after the wait found nothing and it kept the old endpoint (port, schedule, pacing, pause).
#[tokio::test]
async fn every_reload_of_a_queue_endpoint_reaches_its_worker() {
    let redis = durable_redis();
    let apps = [ok_app().await, ok_app().await];
    let mut endpoint = queued_endpoint("moving", apps[0].port());
    let (sidecar, traffic) = serve(&redis, &endpoint).await;
    let mut misses = Vec::new();
    for round in 1..=6 {
        let (to, from) = (&apps[round % 2], &apps[(round + 1) % 2]);
        endpoint.upstream.port = to.port();
        rewrite_endpoint(&sidecar, &endpoint).await;
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

/// Rewrites the endpoint's file, as the operator does, and waits until the sidecar reloaded
/// it: the reload metric moved and `GET /queue` shows the file's `paused`.
async fn rewrite_endpoint(sidecar: &SidecarHarness, endpoint: &EndpointConfig) {
    let reloads = "hookguard_config_reloads_total{result=\"success\"}";
    let before = sidecar.metric(reloads).await.unwrap();
    write_endpoint(sidecar.dir(), endpoint.clone(), SECRET).unwrap();
    eventually(
        "the sidecar reloaded the endpoint file",
        SETTLE,
        async || {
            Ok(sidecar.metric(reloads).await? > before
                && queue_entry(sidecar, &endpoint.name).await?["paused"]
                    == endpoint.delivery.paused)
        },
    )
    .await
    .unwrap();
}

/// The `error` of an admin answer's JSON body.
fn error_of(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {body}"))
        .to_owned()
}

/// The delivery IDs of an admin answer's list `field` (`replayed`, `purged`), sorted.
fn listed(body: &str, field: &str) -> Vec<String> {
    let mut ids: Vec<String> = serde_json::from_str::<Value>(body).unwrap()[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {body}"))
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn max_concurrency_bounds_the_deliveries_at_the_app_at_once() {
    const WORK: Duration = Duration::from_millis(300);
    let redis = durable_redis();
    let app = start_app(|_, _| ok_after(WORK)).await;
    let mut endpoint = queued_endpoint("narrow", app.port());
    endpoint.delivery.max_concurrency = 2;
    let (sidecar, traffic) = serve(&redis, &endpoint).await;
    let ids = ids("evt-narrow", 10);
    join_all(ids.iter().map(|id| traffic.send_queued(id))).await;
    wait_delivered(&app, &sidecar, "narrow", &ids, SETTLE).await;

    assert_arrived_once(&app, &ids);
    let most = app.max_running_overall();
    assert!(most <= 2, "{most} deliveries were at the app at once");
    assert_eq!(most, 2, "the two slots were used together");
    // Ten deliveries through two slots, each held 300 ms: five rounds.
    let starts = app.all_arrivals();
    let span = starts.last().unwrap().at - starts[0].at;
    assert!(
        span >= WORK * 4,
        "the last delivery started {span:?} after the first"
    );
    let report = traffic.board.report(&app);
    // DUP_AT_APP: 0. Every delivery reached the app once.
    assert_report("max concurrency", report, 0);
}

#[tokio::test]
async fn rate_limit_spaces_the_starts_at_the_app() {
    const RATE: usize = 5;
    const WINDOW: Duration = Duration::from_secs(1);
    let redis = durable_redis();
    let app = ok_app().await;
    let mut endpoint = queued_endpoint("paced", app.port());
    endpoint.delivery.rate_limit = Some(u32::try_from(RATE).unwrap());
    let (sidecar, traffic) = serve(&redis, &endpoint).await;
    let ids = ids("evt-paced", 15);
    join_all(ids.iter().map(|id| traffic.send_queued(id))).await;
    wait_delivered(&app, &sidecar, "paced", &ids, SETTLE).await;

    assert_arrived_once(&app, &ids);
    let starts: Vec<_> = app.all_arrivals().iter().map(|a| a.at).collect();
    let first = starts[0];
    let offsets: Vec<Duration> = starts.iter().map(|t| *t - first).collect();
    let in_window = |from: &std::time::Instant| {
        starts
            .iter()
            .filter(|t| *t >= from && **t < *from + WINDOW)
            .count()
    };
    // The bucket holds one second's worth: a window holds at most that burst and one
    // second's refill, and one start of slack for the way to the app.
    for from in &starts {
        let count = in_window(from);
        assert!(
            count <= 2 * RATE + 1,
            "{count} starts in the second from {:?}: {offsets:?}",
            *from - first
        );
    }
    // Over the whole run: 5 from the full bucket, then 10 more at 5 per second, so the last
    // starts 2 s after the first at the earliest. (A tighter bound on each later second would
    // test the machine: a worker the scheduler delays lets its bucket refill, and a token
    // bucket then rightly starts the refilled tokens together.) 400 ms of slack for the first
    // starts' own way to the app; at a rate of 10 the last would start after 0.5 s.
    let span = *offsets.last().unwrap();
    assert!(
        span >= Duration::from_millis(1600),
        "15 deliveries at 5 per second all started within {span:?}: {offsets:?}"
    );
    let report = traffic.board.report(&app);
    // DUP_AT_APP: 0. Every delivery reached the app once.
    assert_report("rate limit", report, 0);
}

#[tokio::test]
async fn a_paused_endpoint_admits_deliveries_and_delivers_each_once_when_unpaused() {
    let redis = durable_redis();
    let app = ok_app().await;
    let mut endpoint = queued_endpoint("paused", app.port());
    endpoint.delivery.paused = true;
    let (sidecar, traffic) = serve(&redis, &endpoint).await;
    let ids = ids("evt-paused", 10);
    traffic.send_all_queued(&ids).await;
    // Every admission woke the endpoint's worker; the gauges it refreshes (every 5 s) show it
    // ran again after the last one, and took nothing.
    eventually(
        "the paused endpoint's worker counted every delivery ready",
        SETTLE,
        async || {
            Ok(sidecar
                .metric("hookguard_queue_ready{endpoint=\"paused\"}")
                .await?
                == 10)
        },
    )
    .await
    .unwrap();
    assert_eq!(app.total_arrivals(), 0, "paused: nothing reaches the app");
    let entry = queue_entry(&sidecar, "paused").await.unwrap();
    assert_eq!(entry["paused"], true, "{entry}");
    let stats = &entry["stats"];
    assert_eq!(
        (
            &stats["ready"],
            &stats["inFlight"],
            &stats["scheduled"],
            &stats["held"]
        ),
        (
            &Value::from(10),
            &Value::from(0),
            &Value::from(0),
            &Value::from(10)
        ),
        "{entry}"
    );
    assert_eq!(requests_metric(&sidecar, "paused", "queued").await, 10);

    endpoint.delivery.paused = false;
    rewrite_endpoint(&sidecar, &endpoint).await;
    wait_delivered(&app, &sidecar, "paused", &ids, SETTLE).await;
    for id in &ids {
        assert_eq!(app.arrivals(id), 1, "{id}");
        assert_eq!(attempt_numbers(&app, id), [1], "{id}");
    }
    let report = traffic.board.report(&app);
    // DUP_AT_APP: 0. Each delivery reached the app once, after the unpause.
    assert_report("paused", report, 0);
}

#[tokio::test]
async fn a_retry_that_would_pass_max_age_dead_letters_after_the_first_attempt() {
    let redis = durable_redis();
    let app = start_app(|id, _| AppReply {
        status: if id == "evt-aged-wait" { 503 } else { 500 },
        delay: Duration::ZERO,
        retry_after: (id == "evt-aged-wait").then_some(2),
        body: None,
    })
    .await;
    let mut endpoint = queued_endpoint("aged", app.port());
    endpoint.delivery.max_age = "1s".into();
    endpoint.delivery.retry_schedule = vec!["2s".into()];
    let (sidecar, traffic) = serve(&redis, &endpoint).await;
    traffic.send_all_queued(["evt-aged", "evt-aged-wait"]).await;

    // The next retry (2 s ± 20 %) would start after the delivery is 1 s old.
    let aged = wait_dead(&sidecar, "aged", "evt-aged").await;
    assert_eq!(aged["reason"], "max age 1s reached (last: status 500)");
    assert_eq!(aged["attempts"], 1);
    // So would waiting out the app's Retry-After.
    let waited = wait_dead(&sidecar, "aged", "evt-aged-wait").await;
    assert_eq!(waited["reason"], "max age 1s reached (last: status 503)");
    assert_eq!(attempt_numbers(&app, "evt-aged"), [1]);
    assert_eq!(attempt_numbers(&app, "evt-aged-wait"), [1]);
    assert_eq!(attempts_metric(&sidecar, "aged", "dead_lettered").await, 2);
    assert_eq!(attempts_metric(&sidecar, "aged", "retried").await, 0);
    assert_eq!(attempts_metric(&sidecar, "aged", "deferred").await, 0);
    let entry = queue_entry(&sidecar, "aged").await.unwrap();
    assert_eq!(
        (&entry["stats"]["dead"], &entry["stats"]["scheduled"]),
        (&Value::from(2), &Value::from(0)),
        "{entry}"
    );
}

#[tokio::test]
async fn bulk_replay_and_purge_of_dead_letters_on_the_admin_port() {
    let redis = durable_redis();
    // `evt-bulk-*` fail until the app is fixed; `evt-drop-*` always fail.
    let fixed = Arc::new(AtomicBool::new(false));
    let app = broken_app(&fixed, |id| id.starts_with("evt-bulk")).await;
    let mut endpoint = queued_endpoint("bulk", app.port());
    endpoint.delivery.max_attempts = 1;
    let (sidecar, traffic) = serve(&redis, &endpoint).await;
    let bulk = ids("evt-bulk", 4);
    traffic.send_all_queued(&bulk).await;
    for id in &bulk {
        let dead = wait_dead(&sidecar, "bulk", id).await;
        assert_eq!(dead["reason"], "1 attempts made (last: status 500)");
    }

    // Refused requests, while the four wait: none replays or purges anything.
    for (method, path, wanted) in [
        (
            Method::POST,
            "/queue/bulk/dead/replay?rate=0",
            r#"rate must be a whole number from 1 to 1000, not "0""#,
        ),
        (
            Method::POST,
            "/queue/bulk/dead/replay?rate=100&limit=abc",
            r#"not "abc""#,
        ),
        (Method::GET, "/queue/bulk/dead?limit=abc", r#"not "abc""#),
        (Method::GET, "/queue/bulk/dead?limit=0", r#"not "0""#),
    ] {
        let (status, body) = admin_call(&sidecar, method.clone(), path).await;
        assert_eq!(status, 400, "{method} {path}: {body}");
        let error = error_of(&body);
        assert!(error.contains(wanted), "{method} {path}: {error}");
    }
    for (method, path) in [
        (Method::POST, "/queue/nosuch/dead/replay"),
        (Method::DELETE, "/queue/nosuch/dead"),
        (Method::GET, "/queue/nosuch/dead"),
    ] {
        let (status, body) = admin_call(&sidecar, method.clone(), path).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(
            error_of(&body),
            r#"this sidecar serves no endpoint "nosuch"; it serves ["bulk"]"#,
            "{method} {path}"
        );
    }
    for (method, path) in [
        (Method::GET, "/queue/bulk/dead/evt-nope"),
        (Method::POST, "/queue/bulk/dead/evt-nope/replay"),
        (Method::DELETE, "/queue/bulk/dead/evt-nope"),
    ] {
        let (status, body) = admin_call(&sidecar, method.clone(), path).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(
            error_of(&body),
            r#"delivery "evt-nope" is not in the dead-letter queue"#,
            "{method} {path}"
        );
    }
    assert_eq!(dead_letters(&sidecar, "bulk").await.unwrap().len(), 4);
    assert_eq!(app.total_arrivals(), 4);

    fixed.store(true, Ordering::SeqCst);
    let (status, body) =
        admin_call(&sidecar, Method::POST, "/queue/bulk/dead/replay?rate=100").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(listed(&body, "replayed"), bulk);
    wait_delivered(&app, &sidecar, "bulk", &bulk, SETTLE).await;
    for id in &bulk {
        assert_eq!((app.arrivals(id), app.commits(id)), (2, 1), "{id}");
        assert_eq!(attempt_numbers(&app, id), [1, 1], "{id}: attempts reset");
    }
    let (status, body) =
        admin_call(&sidecar, Method::POST, "/queue/bulk/dead/replay?rate=100").await;
    assert_eq!(
        (status, listed(&body, "replayed")),
        (200, vec![]),
        "nothing left: {body}"
    );

    let drop = ids("evt-drop", 3);
    traffic.send_all_queued(&drop).await;
    for id in &drop {
        wait_dead(&sidecar, "bulk", id).await;
    }
    let (status, body) = admin_call(&sidecar, Method::DELETE, "/queue/bulk/dead").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(listed(&body, "purged"), drop);
    assert_eq!(
        dead_letters(&sidecar, "bulk").await.unwrap(),
        Vec::<Value>::new()
    );
    assert_eq!(held(&sidecar, "bulk").await.unwrap(), 0);
    let (status, body) = admin_call(&sidecar, Method::DELETE, "/queue/bulk/dead").await;
    assert_eq!((status, listed(&body, "purged")), (200, vec![]), "{body}");
    // A sender's late retry of a purged delivery is a duplicate, not a new delivery.
    assert_duplicate(&traffic.send(&drop[0]).await, &drop[0]);
    assert_eq!(held(&sidecar, "bulk").await.unwrap(), 0);
    for id in &drop {
        assert_eq!(app.arrivals(id), 1, "{id}: purged, never sent again");
    }

    let report = traffic.board.report(&app);
    // LOST here counts the purged deliveries only: acknowledged, never committed, and dropped
    // on purpose through the admin port.
    assert_eq!(traffic.board.lost_ids(&app), drop, "{report:?}");
    let report = Report { lost: 0, ..report };
    // DUP_AT_APP: 0. Each replayed delivery committed once; its first arrival failed.
    assert_report("bulk replay and purge", report, 0);
}

/// A body of exactly `len` bytes for delivery `id`.
fn padded_body(id: &str, len: usize) -> String {
    let head = format!("{{\"id\":\"{id}\",\"pad\":\"");
    let tail = "\"}";
    let body = format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()));
    assert_eq!(body.len(), len);
    body
}

#[tokio::test]
async fn max_queued_bytes_refuses_what_does_not_fit_but_an_empty_queue_takes_one_delivery() {
    const CAP: usize = 1024;
    let redis = durable_redis();
    let app = ok_app().await;
    let mut endpoint = queued_endpoint("bytes", app.port());
    endpoint.max_body_size = "1Ki".into();
    endpoint.delivery.max_queued_bytes = "1Ki".into();
    // Paused, so the first delivery stays held while the second arrives.
    endpoint.delivery.paused = true;
    let (sidecar, traffic) = serve(&redis, &endpoint).await;
    let (first, second, large) = ("evt-bytes-1", "evt-bytes-2", "evt-bytes-large");
    let small = |id: &str| padded_body(id, 400);
    assert_queued(&traffic.send_body(first, &small(first)).await, first);
    // A stored delivery counts its path and headers too: this one fills more than half the
    // cap, so a second of its size does not fit.
    let entry = queue_entry(&sidecar, "bytes").await.unwrap();
    let size = entry["stats"]["heldBytes"].as_u64().unwrap();
    assert!(
        size <= CAP as u64 && 2 * size > CAP as u64,
        "one small delivery holds {size} bytes of {CAP}: {entry}"
    );
    let refused = traffic.send_body(second, &small(second)).await;
    assert_refused(&refused, "queue_full");
    assert_eq!(refused.retry_after.as_deref(), Some("30"), "{refused:?}");
    assert_eq!(held(&sidecar, "bytes").await.unwrap(), 1);
    assert!(
        !traffic.admitted(second).await,
        "a refused delivery leaves nothing behind"
    );
    assert_eq!(requests_metric(&sidecar, "bytes", "queue_full").await, 1);

    endpoint.delivery.paused = false;
    rewrite_endpoint(&sidecar, &endpoint).await;
    wait_delivered(&app, &sidecar, "bytes", &[first.to_owned()], SETTLE).await;
    // The queue is empty: a delivery whose body alone is the cap (so it is stored larger
    // than the cap) is taken, or one of maxBodySize could never be queued.
    let body = padded_body(large, CAP);
    assert_queued(&traffic.send_body(large, &body).await, large);
    wait_delivered(&app, &sidecar, "bytes", &[large.to_owned()], SETTLE).await;
    // The sender's retry of the refused one gets through now.
    assert_queued(&traffic.send_body(second, &small(second)).await, second);
    let all = [first, second, large].map(str::to_owned);
    wait_delivered(&app, &sidecar, "bytes", &all, SETTLE).await;
    assert_arrived_once(&app, &all);
    let report = traffic.board.report(&app);
    // DUP_AT_APP: 0. Every delivery reached the app once.
    assert_report("max queued bytes", report, 0);
}
