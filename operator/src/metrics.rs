//! The operator's metrics and its `/metrics`, `/healthz` and `/readyz` server.
//!
//! kube-runtime does not expose its internal queue, so the depth is approximated by what it
//! can see: endpoints in the controller's cache and reconciles in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Reconcile duration buckets, 1 ms to 30 s.
const DURATION_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReconcileLabels {
    result: &'static str,
    error: &'static str,
}

/// Every metric of the operator, plus the health state the probes report.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    duration: Histogram,
    in_flight: Gauge,
    endpoints: Gauge,
    leader: Gauge,
    /// This replica holds the Lease (or leader election is off).
    is_leader: AtomicBool,
    /// The leader's controller caches have synced.
    synced: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::default();
        // The admission webhook's metrics carry their own full names.
        crate::admission::register_metrics(&mut root);
        let registry = root.sub_registry_with_prefix("hookguard_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of WebhookEndpoints by result, and the failed step",
            reconciles.clone(),
        );
        let duration = Histogram::new(DURATION_BUCKETS);
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now",
            in_flight.clone(),
        );
        let endpoints = Gauge::default();
        registry.register(
            "endpoints",
            "WebhookEndpoints in the controller's cache (the work the queue draws from)",
            endpoints.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the Lease and runs the controller",
            leader.clone(),
        );
        Metrics {
            registry: root,
            reconciles,
            duration,
            in_flight,
            endpoints,
            leader,
            is_leader: AtomicBool::new(false),
            synced: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// Counts one finished reconcile; `error` is the failed step's label, `None` on success.
    pub fn reconciled(&self, error: Option<&'static str>, took: Duration) {
        let labels = match error {
            None => ReconcileLabels {
                result: "ok",
                error: "",
            },
            Some(error) => ReconcileLabels {
                result: "error",
                error,
            },
        };
        self.reconciles.get_or_create(&labels).inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// A reconcile started; the guard marks its end.
    pub fn start_reconcile(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// Endpoints in the cache.
    pub fn set_endpoints(&self, count: usize) {
        self.endpoints.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Leadership changed.
    pub fn set_leader(&self, leader: bool) {
        self.is_leader.store(leader, Ordering::SeqCst);
        self.leader.set(i64::from(leader));
        if !leader {
            self.synced.store(false, Ordering::SeqCst);
        }
    }

    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::SeqCst)
    }

    /// The controller's caches have synced (or were dropped: `false`).
    pub fn set_synced(&self, synced: bool) {
        self.synced.store(synced, Ordering::SeqCst);
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Decrements the in-flight gauge when dropped (also when a reconcile is cancelled).
#[derive(Debug)]
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Serving the probes failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The metrics address could not be bound.
    #[error("binding the metrics address {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` until `shutdown`. Returns
/// the bound address (useful with port 0) and the serving task.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    client: kube::Client,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let task = tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "accepting a metrics connection");
                        continue;
                    }
                },
            };
            let metrics = Arc::clone(&metrics);
            let client = client.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let metrics = Arc::clone(&metrics);
                    let client = client.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(answer(&request, &metrics, &client).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((bound, task))
}

async fn answer<B>(
    request: &Request<B>,
    metrics: &Metrics,
    client: &kube::Client,
) -> Response<Full<Bytes>> {
    match request.uri().path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, metrics.encode());
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => match readiness(metrics, client).await {
            Ok(()) => text(StatusCode::OK, "ok\n".to_owned()),
            Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
    }
}

/// Ready when the API server answers, and, on the leader, once the controller's caches are
/// synced. A standby is ready: it serves admission and waits for the Lease.
async fn readiness(metrics: &Metrics, client: &kube::Client) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(2), client.apiserver_version()).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => return Err(format!("the API server did not answer: {error}")),
        Err(_) => return Err("the API server did not answer within 2s".to_owned()),
    }
    if metrics.is_leader() && !metrics.synced.load(Ordering::SeqCst) {
        return Err("leader: the controller's caches are not synced yet".to_owned());
    }
    Ok(())
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
