//! The workers: one per endpoint with queued deliveries, delivering them to this pod's app.
//!
//! A worker takes only as many deliveries as it may start now (`maxConcurrency` minus those
//! at the app, and the tokens of `rateLimit`), so it never holds one it is not working on.
//! Each taken delivery is sent to the app in its own task and settled by [`policy`]: commit,
//! retry later, or dead-letter. When nothing is waiting, the worker looks again every
//! [`POLL_INTERVAL`], or at once when this sidecar queued a delivery.
//!
//! `delivery.paused` stops taking (what is at the app finishes). An app answer asking to wait
//! (429/503 with `Retry-After`) holds the whole endpoint for that long. On shutdown the
//! workers stop taking, and what is at the app finishes within the grace period; what does
//! not is taken again by another sidecar (or this one, restarted) once its lease ends.
//!
//! An endpoint switched back to `Sync` still has its queue emptied: its worker runs until
//! nothing is waiting, scheduled or in flight, then stops.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use hookguard_api::names::{HEADER_ATTEMPT, HEADER_RECEIVED_AT};

use super::policy::{self, Attempt, Settle};
use super::{Taken, decode_headers};
use crate::config::Endpoint;
use crate::dedup::{Store, StoreError};
use crate::delivery_log::{DeliveryLog, Entry};
use crate::metrics::{AttemptResult, Metrics, QueueMetrics};

/// How often an idle worker looks for deliveries queued by other sidecars and for retries
/// that came due.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How often a worker refreshes its endpoint's queue gauges.
const STATS_INTERVAL: Duration = Duration::from_secs(5);
/// The most of an app's answer body read (and dropped) so its connection can be reused.
const ANSWER_BODY_LIMIT: usize = 64 << 10;
/// Back-off after a store error, doubling up to [`STORE_RETRY_MAX`].
const STORE_RETRY_MIN: Duration = Duration::from_millis(100);
const STORE_RETRY_MAX: Duration = Duration::from_secs(2);

/// The running workers, by endpoint ID.
#[derive(Debug)]
pub struct Workers {
    context: Arc<Context>,
    running: Mutex<HashMap<String, Handle>>,
}

#[derive(Debug)]
struct Context {
    store: Store,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream_host: String,
    metrics: Arc<Metrics>,
    /// Cancelled on shutdown: stop taking.
    stop: CancellationToken,
    /// Cancelled on abort: drop everything, as a crash would.
    kill: CancellationToken,
    /// Every worker loop and every attempt, for the drain.
    tasks: TaskTracker,
    /// Where each attempt is recorded.
    log: DeliveryLog,
}

#[derive(Debug)]
struct Handle {
    endpoint: watch::Sender<Arc<Endpoint>>,
    wake: Arc<Notify>,
    /// Cancelled to stop the worker (its endpoint is gone).
    done: CancellationToken,
    /// Set by the worker when it stopped on its own (a sync endpoint's queue is empty).
    finished: Arc<std::sync::atomic::AtomicBool>,
}

impl Workers {
    /// Workers delivering to `upstream_host` from `store`, recording each attempt in `log`.
    /// `kill` is the sidecar's abort.
    pub fn new(
        store: Store,
        upstream_host: String,
        metrics: Arc<Metrics>,
        kill: CancellationToken,
        log: DeliveryLog,
    ) -> Workers {
        Workers {
            context: Arc::new(Context {
                store,
                client: crate::forward::upstream_client(),
                upstream_host,
                metrics,
                stop: CancellationToken::new(),
                kill,
                tasks: TaskTracker::new(),
                log,
            }),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Starts, updates or stops workers to match the served endpoints: every queue-mode
    /// endpoint gets one; a sync-mode endpoint gets one that empties what its queue holds.
    pub fn update<'a>(&self, endpoints: impl Iterator<Item = &'a Arc<Endpoint>>) {
        if self.context.stop.is_cancelled() {
            return;
        }
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.retain(|_, handle| !handle.finished.load(Ordering::SeqCst));
        let mut seen = std::collections::HashSet::new();
        for endpoint in endpoints {
            seen.insert(endpoint.endpoint_id.clone());
            if let Some(handle) = running.get(&endpoint.endpoint_id) {
                handle.endpoint.send_replace(Arc::clone(endpoint));
                handle.wake.notify_one();
                continue;
            }
            let (sender, receiver) = watch::channel(Arc::clone(endpoint));
            let handle = Handle {
                endpoint: sender,
                wake: Arc::new(Notify::new()),
                done: self.context.stop.child_token(),
                finished: Arc::default(),
            };
            let worker = Worker {
                context: Arc::clone(&self.context),
                endpoint: receiver,
                wake: Arc::clone(&handle.wake),
                done: handle.done.clone(),
                finished: Arc::clone(&handle.finished),
                at_app: Arc::new(AtApp::default()),
            };
            self.context.tasks.spawn(worker.run());
            running.insert(endpoint.endpoint_id.clone(), handle);
        }
        running.retain(|id, handle| {
            let keep = seen.contains(id);
            if !keep {
                handle.done.cancel();
            }
            keep
        });
    }

    /// Tells the endpoint's worker that this sidecar just queued a delivery.
    pub fn wake(&self, endpoint_id: &str) {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = running.get(endpoint_id) {
            handle.wake.notify_one();
        }
    }

    /// Stops taking deliveries and waits for the attempts at the app to be settled.
    pub async fn drain(&self) {
        self.context.stop.cancel();
        self.context.tasks.close();
        self.context.tasks.wait().await;
    }
}

/// Deliveries of one endpoint at the app now, with a signal when one finishes, and until
/// when the app asked to be left alone.
#[derive(Debug, Default)]
struct AtApp {
    count: AtomicUsize,
    finished: Notify,
    hold: Mutex<Option<Instant>>,
}

impl AtApp {
    fn hold(&self, until: Instant) {
        let mut hold = self.hold.lock().unwrap_or_else(PoisonError::into_inner);
        *hold = Some(hold.map_or(until, |earlier| earlier.max(until)));
    }

    fn held_until(&self) -> Option<Instant> {
        *self.hold.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Worker {
    context: Arc<Context>,
    endpoint: watch::Receiver<Arc<Endpoint>>,
    wake: Arc<Notify>,
    done: CancellationToken,
    finished: Arc<std::sync::atomic::AtomicBool>,
    at_app: Arc<AtApp>,
}

/// Which signal ends a wait early, besides a new config and the end.
#[derive(Debug, Clone, Copy)]
enum Wake {
    /// This sidecar queued a delivery (or a dead letter was replayed).
    Admitted,
    /// A delivery at the app finished.
    Finished,
}

/// What the worker waits for before looking again.
enum Next {
    /// Look again at once.
    Now,
    /// Until woken, the config changes, or this long passes.
    Idle(Duration),
    /// Until a delivery at the app finishes (or the config changes).
    Slot,
    /// Stop: the endpoint is gone, or it is in sync mode and its queue is empty.
    Stop,
}

impl Worker {
    async fn run(mut self) {
        let mut endpoint = Arc::clone(&self.endpoint.borrow_and_update());
        let mut metrics = self.context.metrics.queue(&endpoint.name);
        let mut bucket = RateLimit::new(endpoint.delivery.rate_limit);
        let mut backoff = STORE_RETRY_MIN;
        let mut stats_due = Instant::now();
        loop {
            if self.done.is_cancelled() || self.context.kill.is_cancelled() {
                break;
            }
            // Compare, not `has_changed`: the wait below may have marked a new value seen.
            let current = Arc::clone(&self.endpoint.borrow_and_update());
            if !Arc::ptr_eq(&current, &endpoint) {
                endpoint = current;
                metrics = self.context.metrics.queue(&endpoint.name);
                // A reload of anything else must not refill the bucket.
                if bucket.rate != endpoint.delivery.rate_limit.map(f64::from) {
                    bucket = RateLimit::new(endpoint.delivery.rate_limit);
                }
            }
            if endpoint.queued() && Instant::now() >= stats_due {
                self.observe(&endpoint, &metrics).await;
                stats_due = Instant::now() + STATS_INTERVAL;
            }
            let next = self
                .step(&endpoint, &metrics, &mut bucket, &mut backoff)
                .await;
            match next {
                Next::Now => {}
                Next::Stop => {
                    // Marks the handle finished, so the next update starts a new worker; a
                    // config that arrived meanwhile keeps this one going instead.
                    self.finished.store(true, Ordering::SeqCst);
                    if !Arc::ptr_eq(&self.endpoint.borrow(), &endpoint) {
                        self.finished.store(false, Ordering::SeqCst);
                        continue;
                    }
                    break;
                }
                Next::Idle(pause) => {
                    if !self.wait(Wake::Admitted, pause).await {
                        break;
                    }
                }
                Next::Slot => {
                    if !self.wait(Wake::Finished, POLL_INTERVAL).await {
                        break;
                    }
                }
            }
        }
    }

    /// Waits for `wake`, `pause`, a new config, or the end; `false` once no config can come
    /// any more (the handle is gone).
    async fn wait(&mut self, wake: Wake, pause: Duration) -> bool {
        let signal = match wake {
            Wake::Admitted => &*self.wake,
            Wake::Finished => &self.at_app.finished,
        };
        tokio::select! {
            () = signal.notified() => true,
            () = tokio::time::sleep(pause) => true,
            changed = self.endpoint.changed() => changed.is_ok(),
            () = self.done.cancelled() => true,
            () = self.context.kill.cancelled() => true,
        }
    }

    /// One look at the queue: take what may start now and send it on its way.
    async fn step(
        &self,
        endpoint: &Arc<Endpoint>,
        metrics: &QueueMetrics,
        bucket: &mut RateLimit,
        backoff: &mut Duration,
    ) -> Next {
        let policy = &endpoint.delivery;
        if policy.paused && endpoint.queued() {
            return Next::Idle(STATS_INTERVAL);
        }
        if let Some(until) = self.at_app.held_until() {
            let now = Instant::now();
            if now < until {
                return Next::Idle(until - now);
            }
        }
        let at_app = self.at_app.count.load(Ordering::Acquire);
        if !endpoint.queued() && at_app == 0 {
            // Sync mode: deliver what the queue still holds, then stop. Counting first
            // writes nothing for the many endpoints that never queued anything.
            match self.context.store.queue_stats(&endpoint.endpoint_id).await {
                Ok(stats) if stats.ready + stats.in_flight + stats.scheduled == 0 => {
                    return Next::Stop;
                }
                Ok(_) => {}
                Err(_) => return Next::Idle(STORE_RETRY_MAX),
            }
        }
        let limit = usize::try_from(policy.max_concurrency).unwrap_or(usize::MAX);
        let free = limit.saturating_sub(at_app);
        if free == 0 {
            return Next::Slot;
        }
        let (count, refill) = bucket.take(free);
        if count == 0 {
            return Next::Idle(refill);
        }
        let taken = self
            .context
            .store
            .take(&endpoint.endpoint_id, count, endpoint.lease, now_ms())
            .await;
        let taken = match taken {
            Ok(taken) => {
                *backoff = STORE_RETRY_MIN;
                taken
            }
            Err(error) => {
                bucket.give_back(count);
                // The first failures are the store still connecting, or a blip: said loudly
                // only once they last.
                if *backoff >= STORE_RETRY_MAX {
                    tracing::warn!(endpoint = %endpoint.name, error = %error, "cannot take queued deliveries; trying again");
                } else {
                    tracing::debug!(endpoint = %endpoint.name, error = %error, "cannot take queued deliveries; trying again");
                }
                let pause = *backoff;
                *backoff = (*backoff * 2).min(STORE_RETRY_MAX);
                return Next::Idle(pause);
            }
        };
        bucket.give_back(count - taken.len());
        if taken.is_empty() {
            return Next::Idle(POLL_INTERVAL);
        }
        let full = taken.len() == count;
        for delivery in taken {
            self.at_app.count.fetch_add(1, Ordering::AcqRel);
            let context = Arc::clone(&self.context);
            let endpoint = Arc::clone(endpoint);
            let metrics = metrics.clone();
            let at_app = Arc::clone(&self.at_app);
            self.context.tasks.spawn(async move {
                tokio::select! {
                    hold = deliver(&context, &endpoint, &metrics, delivery) => {
                        if let Some(hold) = hold {
                            at_app.hold(Instant::now() + hold);
                        }
                    }
                    () = context.kill.cancelled() => {}
                }
                at_app.count.fetch_sub(1, Ordering::AcqRel);
                at_app.finished.notify_one();
            });
        }
        if full {
            Next::Now
        } else {
            Next::Idle(POLL_INTERVAL)
        }
    }

    /// Refreshes the endpoint's queue gauges.
    async fn observe(&self, endpoint: &Endpoint, metrics: &QueueMetrics) {
        metrics.set_memory_durability(
            endpoint.queued() && endpoint.delivery.durability == hookguard_api::Durability::Memory,
        );
        self.context
            .metrics
            .store_promise(self.context.store.promise().label());
        if let Ok(stats) = self.context.store.queue_stats(&endpoint.endpoint_id).await {
            metrics.observe(&stats, now_ms());
        }
    }
}

/// Sends one taken delivery to the app and settles it. Returns how long the app asked to be
/// left alone, if it did.
async fn deliver(
    context: &Context,
    endpoint: &Arc<Endpoint>,
    metrics: &QueueMetrics,
    taken: Taken,
) -> Option<Duration> {
    let delivery = &taken.delivery;
    let number = delivery.attempts.saturating_add(1);
    let started = Instant::now();
    let Some(request) = request(context, endpoint, &taken, number) else {
        // Written by this code from a valid request; unreadable means a foreign writer.
        tracing::error!(endpoint = %endpoint.name, delivery_id = %delivery.delivery_id, "stored request unreadable; dead-lettering it");
        let reason = "stored request unreadable";
        settle_store(context, endpoint, "dead-letter", || {
            context
                .store
                .dead_letter(&endpoint.endpoint_id, &taken, number, reason, now_ms())
        })
        .await;
        metrics.attempt(AttemptResult::DeadLettered);
        record_attempt(
            context,
            endpoint,
            &taken,
            (number, started),
            ("dead_lettered", 0, Some(reason.into())),
        );
        return None;
    };
    let attempt = send(context, endpoint, request).await;
    let age = Duration::from_millis(now_ms().saturating_sub(delivery.received_at_ms));
    let decision = policy::settle(
        &endpoint.delivery,
        attempt,
        delivery.attempts,
        age,
        endpoint.lease,
        policy::draw_jitter(),
    );
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (result, hold) = match &decision {
        Settle::Commit => {
            let ok = settle_store(context, endpoint, "commit", || {
                context
                    .store
                    .commit_queued(&endpoint.endpoint_id, &taken, endpoint.window)
            })
            .await;
            (ok.map(|_| AttemptResult::Committed), None)
        }
        Settle::Retry {
            delay,
            attempts,
            spent,
        } => {
            let at = now_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
            let last = attempt.describe();
            let ok = settle_store(context, endpoint, "retry", || {
                context
                    .store
                    .retry_queued(&endpoint.endpoint_id, &taken, at, *attempts, &last)
            })
            .await;
            if *spent {
                (ok.map(|()| AttemptResult::Retried), None)
            } else {
                (ok.map(|()| AttemptResult::Deferred), Some(*delay))
            }
        }
        Settle::DeadLetter { attempts, reason } => {
            let ok = settle_store(context, endpoint, "dead-letter", || {
                context.store.dead_letter(
                    &endpoint.endpoint_id,
                    &taken,
                    *attempts,
                    reason,
                    now_ms(),
                )
            })
            .await;
            (ok.map(|()| AttemptResult::DeadLettered), None)
        }
    };
    let result = result.unwrap_or(AttemptResult::Unsettled);
    metrics.attempt(result);
    let next_in_ms = match &decision {
        Settle::Retry { delay, .. } => u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        _ => 0,
    };
    tracing::info!(
        endpoint = %endpoint.name,
        delivery_id = %delivery.delivery_id,
        attempt = number,
        answer = %attempt.describe(),
        result = result.label(),
        next_in_ms,
        latency_ms,
        "queued delivery attempt"
    );
    if let Settle::DeadLetter { reason, .. } = &decision {
        tracing::warn!(endpoint = %endpoint.name, delivery_id = %delivery.delivery_id, reason, "delivery dead-lettered; replay it through the admin port once the app is fixed");
    }
    let logged = logged(&attempt, &decision, result);
    record_attempt(context, endpoint, &taken, (number, started), logged);
    hold
}

/// The delivery log's outcome, app status (0 without an answer) and reason of an attempt.
fn logged(
    attempt: &Attempt,
    decision: &Settle,
    result: AttemptResult,
) -> (&'static str, u16, Option<String>) {
    let status = match attempt {
        Attempt::Answered { status, .. } => status.as_u16(),
        _ => 0,
    };
    let (outcome, reason) = match decision {
        Settle::Commit => ("delivered", None),
        Settle::Retry { .. } => ("retry_scheduled", Some(attempt.describe())),
        Settle::DeadLetter { reason, .. } => ("dead_lettered", Some(reason.clone())),
    };
    if result == AttemptResult::Unsettled {
        let unsettled = "settlement not written; taken again after the lease".to_owned();
        return (outcome, status, Some(unsettled));
    }
    (outcome, status, reason)
}

/// Records one attempt in the delivery log.
fn record_attempt(
    context: &Context,
    endpoint: &Arc<Endpoint>,
    taken: &Taken,
    (number, started): (u32, Instant),
    (outcome, status, reason): (&'static str, u16, Option<String>),
) {
    context.log.record(Entry {
        endpoint: Arc::clone(endpoint),
        kind: hookguard_api::admin::RecordKind::Attempt,
        verified: true,
        at_ms: crate::delivery_log::now_ms(),
        delivery_id: Some(taken.delivery.delivery_id.clone()),
        event_type: None,
        outcome,
        reason: reason.map(std::borrow::Cow::Owned),
        status,
        latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        attempt: Some(number),
    });
}

/// Writes a settlement, retrying store errors with back-off for up to half the lease: after
/// the lease another worker may take the delivery again anyway.
async fn settle_store<T, F, Fut>(
    context: &Context,
    endpoint: &Endpoint,
    what: &'static str,
    mut call: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let give_up = Instant::now() + endpoint.lease / 2;
    let mut pause = STORE_RETRY_MIN;
    loop {
        match call().await {
            Ok(value) => return Some(value),
            Err(error) => {
                if Instant::now() + pause >= give_up || context.kill.is_cancelled() {
                    tracing::error!(endpoint = %endpoint.name, error = %error, what, "cannot settle a queued delivery; it is taken again once its lease ends");
                    return None;
                }
                tracing::warn!(endpoint = %endpoint.name, error = %error, what, "settling a queued delivery failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(STORE_RETRY_MAX);
            }
        }
    }
}

/// The request to the app: the stored one, plus the attempt number and the time received.
fn request(
    context: &Context,
    endpoint: &Endpoint,
    taken: &Taken,
    number: u32,
) -> Option<Request<Full<Bytes>>> {
    let stored = &taken.delivery.request;
    let mut headers = decode_headers(&stored.headers)?;
    headers.insert(HEADER_ATTEMPT, HeaderValue::from(number));
    headers.insert(
        HEADER_RECEIVED_AT,
        HeaderValue::from(taken.delivery.received_at_ms / 1000),
    );
    let uri = format!(
        "http://{}:{}{}",
        context.upstream_host, endpoint.upstream_port, stored.path_and_query
    )
    .parse::<Uri>()
    .ok()?;
    let mut request = Request::builder()
        .method(http::Method::POST)
        .uri(uri)
        .body(Full::new(stored.body.clone()))
        .ok()?;
    *request.headers_mut() = headers;
    Some(request)
}

/// Sends one attempt within the upstream time-out.
async fn send(context: &Context, endpoint: &Endpoint, request: Request<Full<Bytes>>) -> Attempt {
    let deadline = tokio::time::Instant::now() + endpoint.upstream_timeout;
    let call = pin!(context.client.request(request));
    match tokio::time::timeout_at(deadline, call).await {
        Err(_elapsed) => Attempt::TimedOut,
        Ok(Err(error)) if error.is_connect() => Attempt::Refused,
        Ok(Err(error)) => {
            tracing::debug!(endpoint = %endpoint.name, %error, "connection to the app broke");
            Attempt::Broken
        }
        Ok(Ok(response)) => {
            let status = response.status();
            let retry_after = policy::retry_after(response.headers());
            // Read the (small) answer so the connection goes back to the pool; the body
            // itself is not kept: in queue mode nobody waits for it.
            let body = Limited::new(response.into_body(), ANSWER_BODY_LIMIT);
            let _ = tokio::time::timeout_at(deadline, body.collect()).await;
            Attempt::Answered {
                status,
                retry_after,
            }
        }
    }
}

/// A token bucket of `rate` starts per second, holding at most one second's worth.
#[derive(Debug)]
struct RateLimit {
    rate: Option<f64>,
    tokens: f64,
    refilled: Instant,
}

impl RateLimit {
    fn new(rate: Option<u32>) -> RateLimit {
        let rate = rate.map(f64::from);
        RateLimit {
            rate,
            tokens: rate.unwrap_or(0.0),
            refilled: Instant::now(),
        }
    }

    /// Takes up to `want` tokens; returns how many, and when to look again if none.
    fn take(&mut self, want: usize) -> (usize, Duration) {
        let Some(rate) = self.rate else {
            return (want, Duration::ZERO);
        };
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate.max(1.0));
        self.refilled = now;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let whole = self.tokens.floor() as usize;
        let count = whole.min(want);
        #[allow(clippy::cast_precision_loss)]
        {
            self.tokens -= count as f64;
        }
        let refill = Duration::from_secs_f64(((1.0 - self.tokens.fract()) / rate).max(0.001));
        (count, refill)
    }

    /// Returns tokens not used (fewer deliveries were waiting than taken tokens).
    fn give_back(&mut self, unused: usize) {
        if let Some(rate) = self.rate {
            #[allow(clippy::cast_precision_loss)]
            {
                self.tokens = (self.tokens + unused as f64).min(rate.max(1.0));
            }
        }
    }
}

/// The wall clock in Unix ms (the queue's timestamps are shared between sidecars).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_rate_limit_takes_all() {
        let mut bucket = RateLimit::new(None);
        assert_eq!(bucket.take(7).0, 7);
    }

    #[test]
    fn a_rate_limit_allows_one_seconds_burst_then_refills() {
        let mut bucket = RateLimit::new(Some(5));
        assert_eq!(bucket.take(10).0, 5);
        let (count, refill) = bucket.take(10);
        assert_eq!(count, 0);
        assert!(refill <= Duration::from_millis(200), "{refill:?}");
        bucket.give_back(2);
        assert_eq!(bucket.take(10).0, 2);
        bucket.refilled -= Duration::from_secs(10);
        assert_eq!(bucket.take(10).0, 5, "never more than one second's worth");
    }
}
