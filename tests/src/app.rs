//! A test app to put behind the sidecar, and the scoreboard that counts what DESIGN.md's
//! reliability scenarios count: LOST, `DUP_AT_APP`, `CONC_AT_APP` and `FALSE_2XX`.
//!
//! The app identifies a delivery by the `X-Hookguard-Delivery-Id` header the sidecar adds.
//! A delivery is *committed* when the app decides to answer 2xx (after its delay), before
//! the answer is written: the moment a real app's transaction would commit.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

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

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    arrivals: u32,
    commits: u32,
    running: u32,
    max_running: u32,
}

/// A running test app on 127.0.0.1.
pub struct TestApp {
    addr: SocketAddr,
    counts: Arc<Mutex<HashMap<String, Counts>>>,
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
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts: Arc<Mutex<HashMap<String, Counts>>> = Arc::default();
        let behavior: Arc<Behavior> = Arc::new(behavior);
        let server = tokio::spawn({
            let counts = Arc::clone(&counts);
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let counts = Arc::clone(&counts);
                    let behavior = Arc::clone(&behavior);
                    let service = service_fn(move |request| {
                        serve(Arc::clone(&counts), Arc::clone(&behavior), request)
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
            server,
        })
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

/// Decrements the running count even when the sidecar drops the connection mid-request.
struct Running<'a> {
    counts: &'a Mutex<HashMap<String, Counts>>,
    id: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Some(c) = lock(self.counts).get_mut(&self.id) {
            c.running -= 1;
        }
    }
}

async fn serve(
    counts: Arc<Mutex<HashMap<String, Counts>>>,
    behavior: Arc<Behavior>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let id = request
        .headers()
        .get(HEADER_DELIVERY_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let _ = request.into_body().collect().await;
    let attempt = {
        let mut all = lock(&counts);
        let c = all.entry(id.clone()).or_default();
        c.arrivals += 1;
        c.running += 1;
        c.max_running = c.max_running.max(c.running);
        c.arrivals
    };
    let running = Running {
        counts: &counts,
        id: id.clone(),
    };
    let reply = behavior(&id, attempt);
    tokio::time::sleep(reply.delay).await;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_success()
        && let Some(c) = lock(&counts).get_mut(&id)
    {
        c.commits += 1;
    }
    drop(running);
    let mut response = Response::new(Full::new(Bytes::from(format!("app {status}\n"))));
    *response.status_mut() = status;
    Ok(response)
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
