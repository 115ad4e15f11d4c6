//! A test app to put behind the sidecar, and the scoreboard that counts what DESIGN.md's
//! reliability scenarios count: LOST, `DUP_AT_APP`, `CONC_AT_APP` and `FALSE_2XX`.
//!
//! The app identifies a delivery by the `X-Hookguard-Delivery-Id` header the sidecar adds.
//! A delivery is *committed* when the app decides to answer 2xx (after its delay), before
//! the answer is written: the moment a real app's transaction would commit. It keeps every
//! arrival's headers and time ([`TestApp::arrivals_of`]), so a test can read what the
//! sidecar sent with each attempt.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use hookguard_api::names::{HEADER_DELIVERY_ID, HEADER_OUTCOME};

/// What the app does with one arrival.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    /// Status to answer.
    pub status: u16,
    /// Time to work before answering.
    pub delay: Duration,
}

impl Reply {
    /// Answer 200 at once.
    pub const OK: Reply = Reply {
        status: 200,
        delay: Duration::ZERO,
    };
}

/// Decides the reply from the delivery ID and the attempt number (1 for the first arrival).
pub type Behavior = dyn Fn(&str, u32) -> Reply + Send + Sync;

/// A [`Reply`] with the rest of an answer: what [`TestAppBuilder::start`]'s behaviors return.
#[derive(Debug, Clone)]
pub struct AppReply {
    /// Status to answer.
    pub status: u16,
    /// Time to work before answering.
    pub delay: Duration,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
    /// The body; `app <status>` and a newline when `None`.
    pub body: Option<String>,
}

impl From<Reply> for AppReply {
    fn from(reply: Reply) -> AppReply {
        AppReply {
            status: reply.status,
            delay: reply.delay,
            retry_after: None,
            body: None,
        }
    }
}

/// One request as the app received it.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// When it arrived (its body read).
    pub at: Instant,
    /// Its headers.
    pub headers: http::HeaderMap,
}

type FullBehavior = dyn Fn(&str, u32) -> AppReply + Send + Sync;

/// What to start: [`TestApp::builder`], then [`start`](TestAppBuilder::start).
#[derive(Debug, Clone, Copy, Default)]
#[must_use]
pub struct TestAppBuilder {
    port: u16,
    finish_after_disconnect: bool,
}

impl TestAppBuilder {
    /// Listens on this port of 127.0.0.1 (default: any free one), e.g. one an endpoint was
    /// configured with before the app came up.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Keeps working on a request whose connection the client dropped, and commits it after
    /// its delay, as most real apps do (their handler does not notice the client left). By
    /// default the work stops with the connection, as hyper drops the handler.
    pub fn finish_after_disconnect(mut self) -> Self {
        self.finish_after_disconnect = true;
        self
    }

    /// Starts the app with a behavior returning a [`Reply`] or an [`AppReply`].
    pub async fn start<R: Into<AppReply>>(
        self,
        behavior: impl Fn(&str, u32) -> R + Send + Sync + 'static,
    ) -> anyhow::Result<TestApp> {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await?;
        let addr = listener.local_addr()?;
        let counts: Arc<Mutex<HashMap<String, Counts>>> = Arc::default();
        let arrivals: Arc<Mutex<HashMap<String, Vec<Arrival>>>> = Arc::default();
        let all: Arc<AllRunning> = Arc::default();
        let behavior: Arc<FullBehavior> =
            Arc::new(move |id: &str, attempt| behavior(id, attempt).into());
        let detach = self.finish_after_disconnect;
        let server = tokio::spawn({
            let (counts, arrivals, all) =
                (Arc::clone(&counts), Arc::clone(&arrivals), Arc::clone(&all));
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (counts, arrivals, all) =
                        (Arc::clone(&counts), Arc::clone(&arrivals), Arc::clone(&all));
                    let behavior = Arc::clone(&behavior);
                    let service = service_fn(move |request| {
                        let app = Shared {
                            counts: Arc::clone(&counts),
                            arrivals: Arc::clone(&arrivals),
                            all: Arc::clone(&all),
                            behavior: Arc::clone(&behavior),
                        };
                        serve(app, request, detach)
                    });
                    tokio::spawn(
                        http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                    );
                }
            }
        });
        Ok(TestApp {
            addr,
            counts,
            arrivals,
            all,
            server,
        })
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    arrivals: u32,
    commits: u32,
    running: u32,
    max_running: u32,
}

/// Requests of any delivery at the app now, and the most there ever were at once.
#[derive(Debug, Default)]
struct AllRunning {
    now: AtomicU32,
    max: AtomicU32,
}

/// A running test app on 127.0.0.1.
pub struct TestApp {
    addr: SocketAddr,
    counts: Arc<Mutex<HashMap<String, Counts>>>,
    arrivals: Arc<Mutex<HashMap<String, Vec<Arrival>>>>,
    all: Arc<AllRunning>,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for TestApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestApp")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TestApp {
    /// Starts the app with a behavior.
    pub async fn start(
        behavior: impl Fn(&str, u32) -> Reply + Send + Sync + 'static,
    ) -> anyhow::Result<TestApp> {
        TestApp::builder().start(behavior).await
    }

    /// What to start, to choose the port or how a dropped connection is treated.
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    /// Starts an app that answers 200 at once.
    pub async fn ok() -> anyhow::Result<TestApp> {
        Self::start(|_, _| Reply::OK).await
    }

    /// The app's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Arrivals of one delivery.
    pub fn arrivals(&self, id: &str) -> u32 {
        lock(&self.counts).get(id).map_or(0, |c| c.arrivals)
    }

    /// Commits (2xx answers decided) of one delivery.
    pub fn commits(&self, id: &str) -> u32 {
        lock(&self.counts).get(id).map_or(0, |c| c.commits)
    }

    /// Every arrival of one delivery, in order: its time and headers.
    pub fn arrivals_of(&self, id: &str) -> Vec<Arrival> {
        lock(&self.arrivals).get(id).cloned().unwrap_or_default()
    }

    /// Copies of one delivery at the app now.
    pub fn running(&self, id: &str) -> u32 {
        lock(&self.counts).get(id).map_or(0, |c| c.running)
    }

    /// Arrivals of all deliveries.
    pub fn total_arrivals(&self) -> u32 {
        lock(&self.counts).values().map(|c| c.arrivals).sum()
    }

    /// `DUP_AT_APP`: commits beyond the first, over all deliveries.
    pub fn dup_at_app(&self) -> u32 {
        lock(&self.counts)
            .values()
            .map(|c| c.commits.saturating_sub(1))
            .sum()
    }

    /// The most requests, of any deliveries, at the app at the same time (from the body read
    /// to the answer decided): what `delivery.maxConcurrency` bounds.
    pub fn max_running_overall(&self) -> u32 {
        self.all.max.load(Ordering::SeqCst)
    }

    /// Every arrival of every delivery, in the order they arrived.
    pub fn all_arrivals(&self) -> Vec<Arrival> {
        let mut all: Vec<Arrival> = lock(&self.arrivals).values().flatten().cloned().collect();
        all.sort_by_key(|a| a.at);
        all
    }

    /// `CONC_AT_APP`: the most copies of one delivery at the app at the same time.
    pub fn conc_at_app(&self) -> u32 {
        lock(&self.counts)
            .values()
            .map(|c| c.max_running)
            .max()
            .unwrap_or(0)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Decrements the running counts even when the sidecar drops the connection mid-request.
struct Running {
    counts: Arc<Mutex<HashMap<String, Counts>>>,
    all: Arc<AllRunning>,
    id: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = lock(&self.counts).get_mut(&self.id) {
            c.running -= 1;
        }
        self.all.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The app's state, as one request's handler sees it.
struct Shared {
    counts: Arc<Mutex<HashMap<String, Counts>>>,
    arrivals: Arc<Mutex<HashMap<String, Vec<Arrival>>>>,
    all: Arc<AllRunning>,
    behavior: Arc<FullBehavior>,
}

async fn serve(
    app: Shared,
    request: Request<hyper::body::Incoming>,
    detach: bool,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let id = request
        .headers()
        .get(HEADER_DELIVERY_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (parts, body) = request.into_parts();
    let _ = body.collect().await;
    let attempt = {
        let mut all = lock(&app.counts);
        let c = all.entry(id.clone()).or_default();
        c.arrivals += 1;
        c.running += 1;
        c.max_running = c.max_running.max(c.running);
        c.arrivals
    };
    let now = app.all.now.fetch_add(1, Ordering::SeqCst) + 1;
    app.all.max.fetch_max(now, Ordering::SeqCst);
    lock(&app.arrivals)
        .entry(id.clone())
        .or_default()
        .push(Arrival {
            at: Instant::now(),
            headers: parts.headers,
        });
    let running = Running {
        counts: Arc::clone(&app.counts),
        all: Arc::clone(&app.all),
        id: id.clone(),
    };
    let reply = (app.behavior)(&id, attempt);
    let job = work(app.counts, id, reply.clone(), running);
    let status = if detach {
        // A task of its own finishes the work even if hyper drops this handler.
        tokio::spawn(job)
            .await
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    } else {
        job.await
    };
    let body = reply.body.unwrap_or_else(|| format!("app {status}\n"));
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Some(seconds) = reply.retry_after {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
    }
    Ok(response)
}

/// The app's work on one request: wait, then commit if the answer is a 2xx.
async fn work(
    counts: Arc<Mutex<HashMap<String, Counts>>>,
    id: String,
    reply: AppReply,
    running: Running,
) -> StatusCode {
    tokio::time::sleep(reply.delay).await;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_success()
        && let Some(c) = lock(&counts).get_mut(&id)
    {
        c.commits += 1;
    }
    drop(running);
    status
}

/// What the sender saw, checked against the app's counts.
#[derive(Debug, Default)]
pub struct Scoreboard {
    acked: Mutex<HashMap<String, u32>>,
    false_2xx: Mutex<u32>,
}

/// The four numbers of a reliability scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The sender got 2xx but the app never committed the delivery. Must be 0.
    pub lost: u32,
    /// Extra commits of one delivery.
    pub dup_at_app: u32,
    /// Most copies of one delivery at the app at once. Must be ≤ 1.
    pub conc_at_app: u32,
    /// A dedup 2xx that no earlier app 2xx earned. Must be 0.
    pub false_2xx: u32,
}

impl Scoreboard {
    /// Records the sender's view of one answer for delivery `id`.
    pub fn record(&self, app: &TestApp, id: &str, status: u16, outcome_header: Option<&str>) {
        if !(200..300).contains(&status) {
            return;
        }
        *lock(&self.acked).entry(id.to_owned()).or_default() += 1;
        // A duplicate answer must have been earned by an app commit that already happened.
        if outcome_header == Some("duplicate") && app.commits(id) == 0 {
            *lock(&self.false_2xx) += 1;
        }
    }

    /// Queue mode: records the sender's view of one answer for delivery `id`, where
    /// `admitted` says whether the store held the delivery's admission (queued, or already
    /// done) when the answer came. A 2xx without it is a `FALSE_2XX`: a 2xx no admission
    /// earned.
    pub fn record_admission(&self, id: &str, status: u16, admitted: bool) {
        if !(200..300).contains(&status) {
            return;
        }
        *lock(&self.acked).entry(id.to_owned()).or_default() += 1;
        if !admitted {
            *lock(&self.false_2xx) += 1;
        }
    }

    /// The deliveries the sender got a 2xx for that the app never committed, sorted: what
    /// LOST counts.
    pub fn lost_ids(&self, app: &TestApp) -> Vec<String> {
        let mut lost: Vec<String> = lock(&self.acked)
            .keys()
            .filter(|id| app.commits(id) == 0)
            .cloned()
            .collect();
        lost.sort();
        lost
    }

    /// Deliveries the sender got a 2xx for.
    pub fn acked(&self) -> usize {
        lock(&self.acked).len()
    }

    /// The four numbers, now.
    pub fn report(&self, app: &TestApp) -> Report {
        let lost = lock(&self.acked)
            .keys()
            .filter(|id| app.commits(id) == 0)
            .count();
        Report {
            lost: u32::try_from(lost).unwrap_or(u32::MAX),
            dup_at_app: app.dup_at_app(),
            conc_at_app: app.conc_at_app(),
            false_2xx: *lock(&self.false_2xx),
        }
    }
}

/// The sidecar's `x-hookguard-outcome` header of an answer, if it made the answer itself.
pub fn outcome_of(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(HEADER_OUTCOME)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
