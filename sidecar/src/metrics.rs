//! Prometheus metrics, served on the admin port in the text format.
//!
//! Per-endpoint handles are resolved once per config load ([`EndpointMetrics`]), so the
//! request path increments plain atomics and never builds a label set.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::rescue::Outcome;
use crate::verify::Rejection;

/// Latency buckets in seconds, from 100 µs to 30 s.
const LATENCY_BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RejectionLabels {
    endpoint: String,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StoreLabels {
    operation: StoreOperation,
    error: &'static str,
}

/// A store operation, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum StoreOperation {
    /// Claiming a delivery.
    claim,
    /// Recording a delivery as done.
    commit,
    /// Releasing a claim after a definite failure.
    release,
    /// Readiness ping.
    ping,
    /// Queueing a delivery (queue mode).
    admit,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AttemptLabels {
    endpoint: String,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PromiseLabels {
    promise: &'static str,
}

/// How a queued delivery's attempt was settled, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// The app answered 2xx; committed.
    Committed,
    /// Failed; retried later, spending an attempt.
    Retried,
    /// The app asked to wait (429/503 with Retry-After); retried later without spending one.
    Deferred,
    /// Moved to the dead-letter queue.
    DeadLettered,
    /// The settlement could not be written; the delivery is taken again after its lease.
    Unsettled,
}

impl AttemptResult {
    /// Every result, in declaration order (the index is the discriminant).
    pub const ALL: [AttemptResult; 5] = [
        AttemptResult::Committed,
        AttemptResult::Retried,
        AttemptResult::Deferred,
        AttemptResult::DeadLettered,
        AttemptResult::Unsettled,
    ];

    /// The metric label and log word.
    pub fn label(self) -> &'static str {
        match self {
            AttemptResult::Committed => "committed",
            AttemptResult::Retried => "retried",
            AttemptResult::Deferred => "deferred",
            AttemptResult::DeadLettered => "dead_lettered",
            AttemptResult::Unsettled => "unsettled",
        }
    }
}

/// `delivery_log_dropped{reason}`: the counters for `full` and `store_error`, created up front.
fn register_delivery_log(registry: &mut Registry) -> (Counter, Counter) {
    let dropped = Family::<ReasonLabels, Counter>::default();
    registry.register(
        "delivery_log_dropped",
        "Delivery log records dropped, by reason: full (the writer fell behind) or store_error (the store refused the write)",
        dropped.clone(),
    );
    let full = dropped
        .get_or_create(&ReasonLabels { reason: "full" })
        .clone();
    let store = dropped
        .get_or_create(&ReasonLabels {
            reason: "store_error",
        })
        .clone();
    (full, store)
}

/// The store promises a queue-mode 2xx can carry, as metric labels.
const PROMISE_LABELS: [&str; 4] = ["unknown", "fsync", "waitaof", "memory"];

/// Queue gauges, one family each, by endpoint.
#[derive(Debug, Clone, Default)]
struct QueueGauges {
    ready: Family<EndpointLabels, Gauge>,
    in_flight: Family<EndpointLabels, Gauge>,
    scheduled: Family<EndpointLabels, Gauge>,
    dead: Family<EndpointLabels, Gauge>,
    held: Family<EndpointLabels, Gauge>,
    held_bytes: Family<EndpointLabels, Gauge>,
    oldest_age: Family<EndpointLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    dead_oldest_age: Family<EndpointLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    memory_durability: Family<EndpointLabels, Gauge>,
}

/// Every metric of the sidecar.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    rejections: Family<RejectionLabels, Counter>,
    duration: Family<EndpointLabels, Histogram>,
    upstream_duration: Family<EndpointLabels, Histogram>,
    dedup_skipped: Family<EndpointLabels, Counter>,
    store_errors: Family<StoreLabels, Counter>,
    late_answers: Family<ResultLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    config_ok: Gauge,
    endpoints: Gauge,
    memory_evictions: Counter,
    memory_entries: Gauge,
    memory_bytes: Gauge,
    queue: QueueGauges,
    attempts: Family<AttemptLabels, Counter>,
    admit_duration: Family<EndpointLabels, Histogram>,
    promise: Family<PromiseLabels, Gauge>,
    /// Delivery log records dropped: (channel full, store error).
    log_dropped: (Counter, Counter),
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Metrics {
    /// Creates and registers every metric under the `hookguard` prefix.
    #[allow(clippy::too_many_lines)] // One registration per metric, all in one place.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hookguard");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Webhook requests by endpoint and outcome",
            requests.clone(),
        );
        let rejections = Family::<RejectionLabels, Counter>::default();
        registry.register(
            "rejections",
            "Deliveries refused by signature, timestamp or delivery-ID checks, by endpoint and reason",
            rejections.clone(),
        );
        let duration = Family::<EndpointLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time from request head to answer head, by endpoint",
            duration.clone(),
        );
        let upstream_duration = Family::<EndpointLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "upstream_duration_seconds",
            "Time the app took to answer a forwarded delivery",
            upstream_duration.clone(),
        );
        let dedup_skipped = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "dedup_skipped",
            "Deliveries forwarded without deduplication because the store was unavailable and the endpoint's policy is Allow",
            dedup_skipped.clone(),
        );
        let store_errors = Family::<StoreLabels, Counter>::default();
        registry.register(
            "store_errors",
            "Dedup store commands that failed or passed the deadline",
            store_errors.clone(),
        );
        let late_answers = Family::<ResultLabels, Counter>::default();
        registry.register(
            "late_answers",
            "App answers that arrived after the sender got 504, by what was recorded",
            late_answers.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Config and key reloads by result",
            reloads.clone(),
        );
        let config_ok = Gauge::default();
        registry.register(
            "config_last_reload_ok",
            "1 when the last config load succeeded, 0 when the last good config is kept",
            config_ok.clone(),
        );
        let endpoints = Gauge::default();
        registry.register("endpoints", "Endpoints served", endpoints.clone());
        let memory_evictions = Counter::default();
        registry.register(
            "memory_store_evictions",
            "Entries the in-memory store evicted to stay within its bound",
            memory_evictions.clone(),
        );
        let memory_entries = Gauge::default();
        registry.register(
            "memory_store_entries",
            "Entries in the in-memory store",
            memory_entries.clone(),
        );
        let memory_bytes = Gauge::default();
        registry.register(
            "memory_store_bytes",
            "Accounted bytes in the in-memory store",
            memory_bytes.clone(),
        );
        let (queue, attempts, admit_duration, promise) = register_queue(&mut registry);
        let log_dropped = register_delivery_log(&mut registry);
        Metrics {
            registry,
            requests,
            rejections,
            duration,
            upstream_duration,
            dedup_skipped,
            store_errors,
            late_answers,
            reloads,
            config_ok,
            endpoints,
            memory_evictions,
            memory_entries,
            memory_bytes,
            queue,
            attempts,
            admit_duration,
            promise,
            log_dropped,
        }
    }

    /// The counters of dropped delivery log records: (the channel was full, the store failed).
    pub fn delivery_log_dropped(&self) -> (Counter, Counter) {
        self.log_dropped.clone()
    }

    /// Handles for one queue-mode endpoint.
    pub fn queue(&self, name: &str) -> QueueMetrics {
        let labels = EndpointLabels {
            endpoint: name.to_owned(),
        };
        let gauges = &self.queue;
        QueueMetrics {
            ready: gauges.ready.get_or_create(&labels).clone(),
            in_flight: gauges.in_flight.get_or_create(&labels).clone(),
            scheduled: gauges.scheduled.get_or_create(&labels).clone(),
            dead: gauges.dead.get_or_create(&labels).clone(),
            held: gauges.held.get_or_create(&labels).clone(),
            held_bytes: gauges.held_bytes.get_or_create(&labels).clone(),
            oldest_age: gauges.oldest_age.get_or_create(&labels).clone(),
            dead_oldest_age: gauges.dead_oldest_age.get_or_create(&labels).clone(),
            memory_durability: gauges.memory_durability.get_or_create(&labels).clone(),
            attempts: AttemptResult::ALL.map(|result| {
                self.attempts
                    .get_or_create(&AttemptLabels {
                        endpoint: name.to_owned(),
                        result: result.label(),
                    })
                    .clone()
            }),
            admit_duration: self.admit_duration.get_or_create(&labels).clone(),
        }
    }

    /// Records what the store promises now (`promise` is one of its labels).
    pub fn store_promise(&self, promise: &'static str) {
        for label in PROMISE_LABELS {
            self.promise
                .get_or_create(&PromiseLabels { promise: label })
                .set(i64::from(label == promise));
        }
    }

    /// Handles for one endpoint (or for requests that matched none, with `endpoint = ""`).
    pub fn endpoint(&self, name: &str) -> EndpointMetrics {
        let labels = EndpointLabels {
            endpoint: name.to_owned(),
        };
        EndpointMetrics {
            outcomes: Outcome::ALL.map(|outcome| {
                self.requests
                    .get_or_create(&RequestLabels {
                        endpoint: name.to_owned(),
                        outcome: outcome.label(),
                    })
                    .clone()
            }),
            rejections: Rejection::METRIC_LABELS.map(|reason| {
                let labels = RejectionLabels {
                    endpoint: name.to_owned(),
                    reason,
                };
                (reason, self.rejections.get_or_create(&labels).clone())
            }),
            duration: self.duration.get_or_create(&labels).clone(),
            upstream_duration: self.upstream_duration.get_or_create(&labels).clone(),
            dedup_skipped: self.dedup_skipped.get_or_create(&labels).clone(),
        }
    }

    /// Counts a failed store command.
    pub fn store_error(&self, operation: StoreOperation, error: &'static str) {
        self.store_errors
            .get_or_create(&StoreLabels { operation, error })
            .inc();
    }

    /// Counts an app answer that came after the sender's 504; `result` is what was recorded.
    pub fn late_answer(&self, result: &'static str) {
        self.late_answers
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Records a config load.
    pub fn reload(&self, ok: bool, endpoints: usize) {
        self.reloads
            .get_or_create(&ResultLabels {
                result: if ok { "success" } else { "failure" },
            })
            .inc();
        self.config_ok.set(i64::from(ok));
        if ok {
            self.endpoints
                .set(i64::try_from(endpoints).unwrap_or(i64::MAX));
        }
    }

    /// The counter the in-memory store increments on eviction.
    pub fn memory_evictions(&self) -> Counter {
        self.memory_evictions.clone()
    }

    /// Renders the text exposition, refreshing the store gauges first.
    pub fn encode(&self, memory_usage: Option<(u64, u64)>) -> String {
        if let Some((entries, bytes)) = memory_usage {
            self.memory_entries
                .set(i64::try_from(entries).unwrap_or(i64::MAX));
            self.memory_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Registers the queue-mode metrics.
#[allow(clippy::type_complexity)] // Four families, named where they are destructured.
fn register_queue(
    registry: &mut Registry,
) -> (
    QueueGauges,
    Family<AttemptLabels, Counter>,
    Family<EndpointLabels, Histogram>,
    Family<PromiseLabels, Gauge>,
) {
    let queue = QueueGauges::default();
    for (name, help, family) in [
        (
            "queue_ready",
            "Queued deliveries waiting for their first or next attempt",
            &queue.ready,
        ),
        (
            "queue_in_flight",
            "Queued deliveries taken by a sidecar and not settled yet",
            &queue.in_flight,
        ),
        (
            "queue_scheduled_retries",
            "Queued deliveries waiting for a scheduled retry",
            &queue.scheduled,
        ),
        (
            "queue_dead_letters",
            "Deliveries in the dead-letter queue",
            &queue.dead,
        ),
        (
            "queue_held",
            "Deliveries the endpoint holds (what delivery.maxQueued bounds)",
            &queue.held,
        ),
        (
            "queue_held_bytes",
            "Bytes the endpoint holds (what delivery.maxQueuedBytes bounds)",
            &queue.held_bytes,
        ),
        (
            "queue_memory_durability",
            "1 when the endpoint runs queue mode with durability Memory: a store crash can lose answered deliveries",
            &queue.memory_durability,
        ),
    ] {
        registry.register(name, help, family.clone());
    }
    registry.register(
        "queue_oldest_age_seconds",
        "Age of the oldest queued delivery not yet settled (ready, in flight or scheduled)",
        queue.oldest_age.clone(),
    );
    registry.register(
        "queue_dead_letter_oldest_age_seconds",
        "Time since the oldest dead letter failed",
        queue.dead_oldest_age.clone(),
    );
    let attempts = Family::<AttemptLabels, Counter>::default();
    registry.register(
        "queue_attempts",
        "Attempts to deliver queued deliveries to the app, by how they were settled",
        attempts.clone(),
    );
    let admit_duration = Family::<EndpointLabels, Histogram>::new_with_constructor(
        latency_histogram as fn() -> Histogram,
    );
    registry.register(
            "queue_admit_duration_seconds",
            "Time to queue a delivery, including the wait for the store's durability (fsync or WAITAOF)",
            admit_duration.clone(),
        );
    let promise = Family::<PromiseLabels, Gauge>::default();
    registry.register(
            "queue_store_promise",
            "1 for what the store promises a queued delivery: fsync, waitaof, memory, or unknown before it connected",
            promise.clone(),
        );
    (queue, attempts, admit_duration, promise)
}

/// One endpoint's metric handles, resolved at config load.
#[derive(Debug, Clone)]
pub struct EndpointMetrics {
    outcomes: [Counter; Outcome::ALL.len()],
    rejections: [(&'static str, Counter); Rejection::METRIC_LABELS.len()],
    duration: Histogram,
    upstream_duration: Histogram,
    dedup_skipped: Counter,
}

impl EndpointMetrics {
    /// Counts one answered request.
    pub fn answered(&self, outcome: Outcome, elapsed: std::time::Duration) {
        self.outcomes[outcome as usize].inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts one rejected delivery under its reason. Every reason has its series (a verify
    /// test keeps [`Rejection::METRIC_LABELS`] complete), so the search always finds one.
    pub fn rejected(&self, rejection: &Rejection) {
        let reason = rejection.metric_label();
        if let Some((_, counter)) = self.rejections.iter().find(|(label, _)| *label == reason) {
            counter.inc();
        }
    }

    /// Records how long the app took.
    pub fn upstream(&self, elapsed: std::time::Duration) {
        self.upstream_duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a delivery forwarded without deduplication.
    pub fn dedup_skipped(&self) {
        self.dedup_skipped.inc();
    }
}

/// One queue-mode endpoint's metric handles.
#[derive(Debug, Clone)]
pub struct QueueMetrics {
    ready: Gauge,
    in_flight: Gauge,
    scheduled: Gauge,
    dead: Gauge,
    held: Gauge,
    held_bytes: Gauge,
    oldest_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    dead_oldest_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    memory_durability: Gauge,
    attempts: [Counter; AttemptResult::ALL.len()],
    admit_duration: Histogram,
}

impl QueueMetrics {
    /// Counts one settled attempt.
    pub fn attempt(&self, result: AttemptResult) {
        self.attempts[result as usize].inc();
    }

    /// Records how long one admission took.
    pub fn admitted(&self, elapsed: std::time::Duration) {
        self.admit_duration.observe(elapsed.as_secs_f64());
    }

    /// Whether the endpoint accepts the weaker durability.
    pub fn set_memory_durability(&self, memory: bool) {
        self.memory_durability.set(i64::from(memory));
    }

    /// Sets the gauges from a count of the queue taken at `now_ms`.
    pub fn observe(&self, stats: &crate::queue::QueueStats, now_ms: u64) {
        let set = |gauge: &Gauge, value: u64| gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        set(&self.ready, stats.ready);
        set(&self.in_flight, stats.in_flight);
        set(&self.scheduled, stats.scheduled);
        set(&self.dead, stats.dead);
        set(&self.held, stats.held);
        set(&self.held_bytes, stats.held_bytes);
        #[allow(clippy::cast_precision_loss)] // Ages in ms fit an f64 exactly for millennia.
        let age =
            |since: Option<u64>| since.map_or(0.0, |ms| now_ms.saturating_sub(ms) as f64 / 1000.0);
        self.oldest_age.set(age(stats.oldest_received_ms));
        self.dead_oldest_age.set(age(stats.oldest_dead_ms));
    }
}
