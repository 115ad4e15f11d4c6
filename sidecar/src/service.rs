//! The webhook request path: route → method → body → verify → delivery ID → event filter →
//! claim → [`forward`](crate::forward). Each step either passes the request on or ends it
//! with an [`Outcome`]; the answer is built in [`rescue`](crate::rescue).
//!
//! The endpoint table is an immutable snapshot swapped atomically on reload: a request keeps
//! the snapshot it started with, so a reload never changes the rules halfway through one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use hookguard_api::StoreUnavailable;

use crate::background::Background;
use crate::config::{Endpoint, Endpoints};
use crate::dedup::{Claim, ClaimOutcome, DedupStore, DeliveryKeys, Store};
use crate::delivery_log::{DeliveryLog, Entry, LogSettings};
use crate::forward::Forwarder;
use crate::metrics::{Metrics, StoreOperation};
use crate::queue::worker::{Workers, now_ms};
use crate::queue::{Admission, AdmitError, Admitted, StoredRequest, encode_headers};
use crate::rescue::{Outcome, ProxyBody, answer, challenge_answer};
use crate::route::{Route, Routes};
use crate::verify::{Delivery, Rejection};

/// Process-wide settings of the request path.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Host of the app container.
    pub upstream_host: String,
    /// Time a client has to send the body.
    pub body_read_timeout: Duration,
    /// The delivery log's bounds and this sidecar's instance name.
    pub delivery_log: LogSettings,
}

/// What the request path learned for the delivery log besides the outcome.
#[derive(Debug, Default)]
struct Note {
    /// The signature and timestamp passed.
    verified: bool,
    event_type: Option<String>,
    reason: Option<&'static str>,
}

/// The sidecar's shared state: current routes, the store, the forwarder, metrics.
#[derive(Debug)]
pub struct Sidecar {
    routes: ArcSwap<Routes>,
    store: Store,
    forwarder: Forwarder,
    metrics: Arc<Metrics>,
    workers: Workers,
    log: DeliveryLog,
    body_read_timeout: Duration,
    draining: AtomicBool,
}

impl Sidecar {
    /// Builds the sidecar around loaded endpoints and a store. `tasks` tracks the background
    /// work (late app answers) that graceful shutdown waits for.
    pub fn new(
        endpoints: &Endpoints,
        store: Store,
        metrics: Arc<Metrics>,
        settings: ServiceSettings,
        tasks: Background,
    ) -> Sidecar {
        metrics.reload(true, endpoints.len());
        let log = DeliveryLog::new(
            settings.delivery_log,
            &store,
            metrics.delivery_log_dropped(),
        );
        let workers = Workers::new(
            store.clone(),
            settings.upstream_host.clone(),
            Arc::clone(&metrics),
            tasks.killed().clone(),
            log.clone(),
        );
        workers.update(endpoints.iter());
        Sidecar {
            routes: ArcSwap::from_pointee(Routes::new(endpoints, &metrics)),
            forwarder: Forwarder::new(
                settings.upstream_host,
                store.clone(),
                Arc::clone(&metrics),
                tasks,
            ),
            store,
            metrics,
            workers,
            log,
            body_read_timeout: settings.body_read_timeout,
            draining: AtomicBool::new(false),
        }
    }

    /// Swaps in a new endpoint table; requests already running keep the old one.
    pub fn replace_endpoints(&self, endpoints: &Endpoints) {
        self.routes
            .store(Arc::new(Routes::new(endpoints, &self.metrics)));
        self.workers.update(endpoints.iter());
        self.metrics.reload(true, endpoints.len());
    }

    /// The queue-mode workers.
    pub fn workers(&self) -> &Workers {
        &self.workers
    }

    /// The current endpoint table.
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.load_full()
    }

    /// The delivery log.
    pub fn delivery_log(&self) -> &DeliveryLog {
        &self.log
    }

    /// The dedup store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Marks the sidecar as shutting down (`/readyz` answers 503 from now on).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Handles one webhook request from `peer`.
    pub async fn handle<B>(&self, request: Request<B>, peer: SocketAddr) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes>,
        B::Error: std::fmt::Display,
    {
        let started = Instant::now();
        let routes = self.routes.load_full();
        let Some(route) = routes.get(request.uri().path()) else {
            let elapsed = started.elapsed();
            routes.unmatched().answered(Outcome::NotFound, elapsed);
            tracing::info!(
                endpoint = "",
                outcome = Outcome::NotFound.label(),
                status = 404,
                latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                "delivery"
            );
            return answer(Outcome::NotFound, 0);
        };
        let mut note = Note::default();
        let (outcome, delivery_id, response) = self.deliver(route, request, peer, &mut note).await;
        let elapsed = started.elapsed();
        route.metrics.answered(outcome, elapsed);
        let status = response.status().as_u16();
        let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        tracing::info!(
            endpoint = %route.endpoint.name,
            delivery_id = delivery_id.as_deref().unwrap_or(""),
            outcome = outcome.label(),
            status,
            latency_us,
            "delivery"
        );
        self.log.record(Entry {
            endpoint: Arc::clone(&route.endpoint),
            kind: hookguard_api::admin::RecordKind::Request,
            verified: note.verified,
            at_ms: crate::delivery_log::now_ms(),
            delivery_id,
            event_type: note.event_type,
            outcome: outcome.label(),
            reason: note.reason.map(std::borrow::Cow::Borrowed),
            status,
            latency_us,
            attempt: None,
        });
        response
    }

    async fn deliver<B>(
        &self,
        route: &Route,
        request: Request<B>,
        peer: SocketAddr,
        note: &mut Note,
    ) -> (Outcome, Option<String>, Response<ProxyBody>)
    where
        B: Body<Data = Bytes>,
        B::Error: std::fmt::Display,
    {
        let endpoint = &route.endpoint;
        let end = |outcome: Outcome, id: Option<String>| {
            (outcome, id, answer(outcome, retry_after(endpoint, outcome)))
        };
        let reject = |rejection: Rejection| {
            tracing::debug!(endpoint = %endpoint.name, reason = %rejection, "rejected");
            route.metrics.rejected(&rejection);
            end(rejection.outcome(), None)
        };
        if request.method() != Method::POST {
            return end(Outcome::MethodNotAllowed, None);
        }
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > endpoint.max_body_size) {
            return end(Outcome::TooLarge, None);
        }
        let body = match tokio::time::timeout(
            self.body_read_timeout,
            read_body(body, endpoint.max_body_size, declared),
        )
        .await
        {
            Ok(Ok(body)) => body,
            Ok(Err(outcome)) => return end(outcome, None),
            Err(_) => return end(Outcome::BodyTimeout, None),
        };

        // Nothing touches the store before the signature and timestamp pass.
        if let Err(rejection) =
            endpoint
                .verifier
                .verify_request(parts.uri.query(), &parts.headers, &body, now_unix())
        {
            note.reason = Some(rejection.metric_label());
            return reject(rejection);
        }
        note.verified = true;
        let delivery = Delivery::new(&parts.headers, &body);
        if self.log.enabled() {
            note.event_type = endpoint.verifier.logged_event_type(&delivery);
        }
        // The sender's endpoint checks: Zoom's challenge needs the secret, so the sidecar
        // answers it; Slack's URL verification is the app's to answer, forwarded while the
        // sender waits and without a claim (a repeat must be answered again).
        if let Some(answer) = endpoint.verifier.self_answer(&delivery) {
            return (Outcome::Challenge, None, challenge_answer(answer));
        }
        if endpoint.verifier.is_handshake(&delivery) {
            drop(delivery);
            let (outcome, response) = self.send(route, parts, body, None, peer, None).await;
            return (outcome, None, response);
        }
        let delivery_id = match endpoint.verifier.delivery_id(&delivery) {
            Ok(id) => id.into_owned(),
            Err(rejection) => {
                note.reason = Some(rejection.metric_label());
                return reject(rejection);
            }
        };
        if !subscribed(endpoint, &delivery) {
            return end(Outcome::Filtered, Some(delivery_id));
        }

        let body_hash: Option<[u8; 32]> =
            endpoint.dedup_on_body.then(|| Sha256::digest(&body).into());
        let keys = DeliveryKeys::new(&endpoint.endpoint_id, &delivery_id, body_hash.as_ref());
        if endpoint.queued() && !endpoint.verifier.needs_app_answer(&delivery) {
            drop(delivery);
            return self
                .enqueue(route, parts, body, delivery_id, peer, keys, body_hash)
                .await;
        }
        let claim = match self.store.claim(keys, endpoint.lease).await {
            Ok(ClaimOutcome::Claimed(claim)) => Some(claim),
            Ok(ClaimOutcome::Done) => return end(Outcome::Duplicate, Some(delivery_id)),
            Ok(ClaimOutcome::InFlight) => return end(Outcome::InFlight, Some(delivery_id)),
            Err(error) => {
                self.metrics
                    .store_error(StoreOperation::claim, error.metric_label());
                tracing::warn!(endpoint = %endpoint.name, delivery_id, error = %error, policy = ?endpoint.store_unavailable, "dedup store unavailable");
                match endpoint.store_unavailable {
                    StoreUnavailable::Reject => {
                        return end(Outcome::StoreUnavailable, Some(delivery_id));
                    }
                    StoreUnavailable::Allow => {
                        route.metrics.dedup_skipped();
                        None
                    }
                }
            }
        };

        let (outcome, response) = self
            .send(route, parts, body, Some(&delivery_id), peer, claim)
            .await;
        (outcome, Some(delivery_id), response)
    }

    /// Queue mode: stores the verified delivery and answers once it is as durable as the
    /// endpoint asks; a worker delivers it later.
    #[allow(clippy::too_many_arguments)] // The parts of one verified delivery.
    async fn enqueue(
        &self,
        route: &Route,
        parts: http::request::Parts,
        body: Bytes,
        delivery_id: String,
        peer: SocketAddr,
        keys: DeliveryKeys,
        body_hash: Option<[u8; 32]>,
    ) -> (Outcome, Option<String>, Response<ProxyBody>) {
        let endpoint = &route.endpoint;
        let end = |outcome: Outcome, id: String| {
            (
                outcome,
                Some(id),
                answer(outcome, retry_after(endpoint, outcome)),
            )
        };
        let received_at_ms = now_ms();
        // The request exactly as sync mode would send it, minus the parts of each attempt.
        let request = match self.forwarder.request(
            endpoint,
            parts,
            body.clone(),
            Some(&delivery_id),
            peer,
        ) {
            Ok(request) => request,
            Err(error) => {
                tracing::error!(endpoint = %endpoint.name, error = %error, "cannot build the upstream request");
                return end(Outcome::UpstreamUnreachable, delivery_id);
            }
        };
        let stored = StoredRequest {
            path_and_query: request
                .uri()
                .path_and_query()
                .map_or_else(|| "/".to_owned(), ToString::to_string),
            headers: encode_headers(request.headers()),
            body,
        };
        let admission = Admission {
            endpoint_id: endpoint.endpoint_id.clone(),
            delivery_id,
            dedup: keys,
            body_sha256: body_hash,
            request: stored,
            received_at_ms,
            max_queued: endpoint.delivery.max_queued,
            max_queued_bytes: endpoint.delivery.max_queued_bytes,
        };
        let started = Instant::now();
        let admitted = self
            .store
            .admit(&admission, endpoint.delivery.durability)
            .await;
        let delivery_id = admission.delivery_id;
        match admitted {
            Ok(Admitted::Queued) => {
                if let Some(metrics) = &route.queue_metrics {
                    metrics.admitted(started.elapsed());
                }
                self.workers.wake(&endpoint.endpoint_id);
                end(Outcome::Queued, delivery_id)
            }
            Ok(Admitted::Duplicate) => end(Outcome::Duplicate, delivery_id),
            Ok(Admitted::InFlight) => end(Outcome::InFlight, delivery_id),
            Ok(Admitted::Full) => {
                tracing::warn!(endpoint = %endpoint.name, delivery_id, max_queued = endpoint.delivery.max_queued, max_queued_bytes = endpoint.delivery.max_queued_bytes, "queue full: answering 503; senders that do not retry (GitHub) lose this delivery");
                end(Outcome::QueueFull, delivery_id)
            }
            Err(AdmitError::NotDurable(promise)) => {
                tracing::error!(endpoint = %endpoint.name, delivery_id, %promise, "queue mode refused: the endpoint asks for durability Disk; make the store fsync (appendfsync always, or Redis/Valkey 7.2+ with AOF for WAITAOF) or set spec.delivery.durability: Memory");
                end(Outcome::NotDurable, delivery_id)
            }
            Err(AdmitError::NotOnDisk) => {
                tracing::warn!(endpoint = %endpoint.name, delivery_id, "the store did not confirm the delivery on disk in time: answering 503");
                end(Outcome::NotDurable, delivery_id)
            }
            Err(AdmitError::Store(error)) => {
                self.metrics
                    .store_error(StoreOperation::admit, error.metric_label());
                tracing::warn!(endpoint = %endpoint.name, delivery_id, error = %error, "queue store unavailable");
                end(Outcome::StoreUnavailable, delivery_id)
            }
        }
    }

    /// Forwards a verified request to the app and settles `claim` by its answer.
    async fn send(
        &self,
        route: &Route,
        parts: http::request::Parts,
        body: Bytes,
        delivery_id: Option<&str>,
        peer: SocketAddr,
        claim: Option<Claim>,
    ) -> (Outcome, Response<ProxyBody>) {
        let endpoint = &route.endpoint;
        let request = self
            .forwarder
            .request(endpoint, parts, body, delivery_id, peer);
        let (outcome, response) = match request {
            Ok(request) => self.forwarder.forward(route, request, claim).await,
            Err(error) => {
                // Unreachable with validated config; release so a retry is not blocked.
                tracing::error!(endpoint = %endpoint.name, error = %error, "cannot build the upstream request");
                if let Some(claim) = claim {
                    self.forwarder.release(&claim).await;
                }
                (
                    Outcome::UpstreamUnreachable,
                    answer(Outcome::UpstreamUnreachable, 0),
                )
            }
        };
        (outcome, response)
    }
}

/// Seconds a sender should wait before retrying after 409 (the copy in flight may take the
/// whole upstream time-out) or 503.
/// Whether the endpoint forwards the delivery's event type (every type, without
/// `eventTypes`).
fn subscribed(endpoint: &Endpoint, delivery: &Delivery<'_>) -> bool {
    endpoint.event_types.is_empty()
        || endpoint
            .verifier
            .event_type(delivery)
            .is_some_and(|t| endpoint.event_types.iter().any(|s| *s == t))
}

fn retry_after(endpoint: &Endpoint, outcome: Outcome) -> u64 {
    match outcome {
        Outcome::InFlight => endpoint.upstream_timeout.as_secs().max(1),
        // A full queue drains at the app's pace: give it a while.
        Outcome::QueueFull => 30,
        _ => 5,
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// How far ahead of the bytes received a body buffer is reserved.
const PREALLOCATE_AHEAD: usize = 64 << 10;

/// Reads the whole body, refusing it as soon as it passes `limit`. A body that arrives in
/// one frame (the usual case for small deliveries) is kept as it is, without a copy.
async fn read_body<B>(body: B, limit: u64, declared: Option<u64>) -> Result<Bytes, Outcome>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut length = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            tracing::debug!(%error, "reading the request body failed");
            Outcome::BodyError
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        length += data.len();
        if length > limit {
            return Err(Outcome::TooLarge);
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(data),
            (Some(head), None) => {
                // Trust a declared length only up to 64 KiB ahead of what arrived: an
                // unverified sender must not make the sidecar reserve the whole limit.
                let capacity = declared
                    .and_then(|d| usize::try_from(d).ok())
                    .unwrap_or(length)
                    .clamp(length, limit)
                    .min(length + PREALLOCATE_AHEAD);
                let mut buffer = BytesMut::with_capacity(capacity);
                buffer.extend_from_slice(head);
                buffer.extend_from_slice(&data);
                rest = Some(buffer);
            }
            (Some(_), Some(buffer)) => buffer.extend_from_slice(&data),
        }
    }
    Ok(match (first, rest) {
        (_, Some(buffer)) => buffer.freeze(),
        (Some(head), None) => head,
        (None, None) => Bytes::new(),
    })
}

#[cfg(test)]
pub(crate) mod tests;
