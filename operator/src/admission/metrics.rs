//! The webhook's metrics, process-wide so the operator's `/metrics` registry can include
//! them: call [`register_metrics`] once on the registry it serves.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `result` label: `injected`, `unchanged`, `denied`, `error` (requests); `confirmed`,
/// `stale_cache`, `failed` (confirmations).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ResultLabel {
    /// The outcome.
    pub result: &'static str,
}

/// `reason` label of a skipped injection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why, e.g. `EndpointNotFound`.
    pub reason: &'static str,
}

/// The webhook's metrics.
#[derive(Debug)]
pub struct AdmissionMetrics {
    /// Admission reviews answered, by result.
    pub requests: Family<ResultLabel, Counter>,
    /// Opted-in pods not injected, by reason.
    pub skipped: Family<ReasonLabel, Counter>,
    /// Time to answer one review, seconds.
    pub duration: Histogram,
    /// `notAfter` of the serving certificate, Unix seconds.
    pub cert_expiry: Gauge,
    /// TLS connections accepted (a rate close to the request rate means no keep-alive).
    pub connections: Counter,
    /// Denials from the cache re-checked with the API server, by `result`: `confirmed`
    /// (still denied), `stale_cache` (the API server's view changed the answer), `failed`.
    pub confirmations: Family<ResultLabel, Counter>,
}

static METRICS: LazyLock<AdmissionMetrics> = LazyLock::new(|| AdmissionMetrics {
    requests: Family::default(),
    skipped: Family::default(),
    duration: Histogram::new([
        0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0,
    ]),
    cert_expiry: Gauge::default(),
    connections: Counter::default(),
    confirmations: Family::default(),
});

/// The process-wide metrics.
pub fn metrics() -> &'static AdmissionMetrics {
    &METRICS
}

/// Adds the webhook's metrics to `registry` (the operator's `/metrics`). Call once.
pub fn register_metrics(registry: &mut Registry) {
    let m = metrics();
    registry.register(
        "hookguard_admission_requests",
        "Admission reviews answered by the injection webhook, by result",
        m.requests.clone(),
    );
    registry.register(
        "hookguard_admission_skipped",
        "Pods labelled for injection that were not injected, by reason",
        m.skipped.clone(),
    );
    registry.register(
        "hookguard_admission_duration_seconds",
        "Time the webhook took to answer one admission review",
        m.duration.clone(),
    );
    registry.register(
        "hookguard_admission_connections",
        "TLS connections the webhook accepted",
        m.connections.clone(),
    );
    registry.register(
        "hookguard_admission_confirmations",
        "Denials from the webhook's cache re-checked with the API server, by result",
        m.confirmations.clone(),
    );
    registry.register(
        "hookguard_webhook_cert_expiry_timestamp_seconds",
        "When the webhook's serving certificate expires (Unix seconds)",
        m.cert_expiry.clone(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_encode_under_their_documented_names() {
        let mut registry = Registry::default();
        register_metrics(&mut registry);
        metrics()
            .skipped
            .get_or_create(&ReasonLabel {
                reason: "EndpointNotFound",
            })
            .inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("hookguard_admission_skipped_total{reason=\"EndpointNotFound\"}"),
            "{text}"
        );
        assert!(
            text.contains("hookguard_webhook_cert_expiry_timestamp_seconds"),
            "{text}"
        );
    }
}
