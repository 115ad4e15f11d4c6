//! One endpoint as the sidecar serves it, assembled from a checked configuration and its
//! keys; and the endpoints indexed by path. Pure: [`super::load`] does the reading.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hookguard_api::config::{EndpointConfig, StoreUnavailable};
use hookguard_api::validation::{self, Checked, CheckedDelivery, Invalid, PathConflict};

use crate::verify::{KeySource, SigningKey, Verifier, VerifierSettings};

/// One endpoint, validated, with its keys loaded: nothing optional is left.
#[derive(Debug)]
pub struct Endpoint {
    /// The endpoint's name (logs, metrics).
    pub name: String,
    /// Stable ID; namespaces the store keys.
    pub endpoint_id: String,
    /// Path served.
    pub path: String,
    /// Signature verification and key extraction.
    pub verifier: Verifier,
    /// The app's port on the upstream host.
    pub upstream_port: u16,
    /// Path on the app; `None` keeps the request's path.
    pub upstream_path: Option<String>,
    /// Time the app has to answer before the sender gets 504.
    pub upstream_timeout: Duration,
    /// How long a claim holds: the upstream time-out plus a margin (see [`lease_for`]).
    pub lease: Duration,
    /// How long a processed delivery is remembered.
    pub window: Duration,
    /// Event types forwarded; empty means all.
    pub event_types: Vec<String>,
    /// Largest accepted body.
    pub max_body_size: u64,
    /// What to do when the store is unavailable.
    pub store_unavailable: StoreUnavailable,
    /// Also deduplicate on the body hash: the delivery ID is not signed (schemes that sign
    /// neither ID nor timestamp, or an `idempotencyKey.header` override).
    pub dedup_on_body: bool,
    /// The files this endpoint was read from, watched for changes.
    pub secret_dir: PathBuf,
    /// How deliveries reach the app (sync, or queued with its retry policy and pacing).
    pub delivery: CheckedDelivery,
}

impl Endpoint {
    /// Whether deliveries are queued (answered once stored) instead of forwarded while the
    /// sender waits.
    pub fn queued(&self) -> bool {
        self.delivery.mode == hookguard_api::DeliveryMode::Queue
    }
}

impl Endpoint {
    /// Checks `config` and builds the endpoint with `keys`.
    pub fn from_config(config: EndpointConfig, keys: Vec<SigningKey>) -> Result<Endpoint, Invalid> {
        let checked = validation::check(&config)?;
        Ok(Endpoint::assemble(config, checked, keys))
    }

    /// Builds the endpoint from a configuration that passed [`validation::check`].
    pub fn assemble(config: EndpointConfig, checked: Checked, keys: Vec<SigningKey>) -> Endpoint {
        // A delivery ID from a header is signed by no scheme: with one, a captured delivery
        // could be replayed under fresh IDs within the tolerance, so the body hash is claimed
        // too.
        let dedup_on_body = !config.scheme.default_id_is_signed()
            || matches!(checked.key_source, Some(KeySource::Header(_)));
        Endpoint {
            name: config.name,
            endpoint_id: config.endpoint_id,
            path: config.path,
            verifier: Verifier::new(VerifierSettings {
                scheme: config.scheme,
                generic: checked.generic,
                key_source: checked.key_source,
                keys,
                tolerance: checked.tolerance,
                public_url: checked.public_url,
            }),
            upstream_port: config.upstream.port,
            upstream_path: config.upstream.path,
            upstream_timeout: checked.upstream_timeout,
            lease: lease_for(checked.upstream_timeout),
            window: checked.window,
            event_types: config.event_types,
            max_body_size: checked.max_body_size,
            store_unavailable: config.store_unavailable,
            dedup_on_body,
            secret_dir: PathBuf::from(config.secret_dir),
            delivery: checked.delivery,
        }
    }
}

/// The lease of a claim for an endpoint: twice the upstream time-out plus five seconds, so
/// a delivery whose app answer is late is still awaited (and recorded) while retries of it
/// get 409 instead of a second concurrent copy at the app.
pub fn lease_for(upstream_timeout: Duration) -> Duration {
    upstream_timeout.saturating_mul(2) + Duration::from_secs(5)
}

/// The endpoints by path, as one immutable snapshot; a reload builds a new one.
#[derive(Debug, Default)]
pub struct Endpoints {
    by_path: HashMap<String, Arc<Endpoint>>,
}

impl Endpoints {
    /// Indexes `endpoints` (each with a label naming where it came from) by path; two on one
    /// path are refused by the shared rule, naming both labels.
    pub fn new(endpoints: Vec<(String, Endpoint)>) -> Result<Endpoints, PathConflict> {
        validation::distinct_paths(
            endpoints
                .iter()
                .map(|(label, endpoint)| (label.as_str(), endpoint.path.as_str())),
        )?;
        Ok(Endpoints {
            by_path: endpoints
                .into_iter()
                .map(|(_, endpoint)| (endpoint.path.clone(), Arc::new(endpoint)))
                .collect(),
        })
    }

    /// The endpoint serving `path`, if any.
    pub fn route(&self, path: &str) -> Option<&Arc<Endpoint>> {
        self.by_path.get(path)
    }

    /// All endpoints, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.by_path.values()
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    /// Whether there is no endpoint.
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }
}
