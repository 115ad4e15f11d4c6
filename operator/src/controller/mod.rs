//! The reconciler: each `WebhookEndpoint` becomes a signing Secret (generated keys, or the
//! sender's `publicKey` copied there; or a checked `secretRef`), a sidecar ConfigMap and a
//! status.
//!
//! Reconcile is a pipeline, IO at the edges and pure in the middle:
//! [`fetch`] (client) → [`validate`] and [`conflict`] (pure) → [`decide`] (pure, with
//! [`rotation`] and [`build`]) → [`apply`] and [`status`] (client). This module is the driver
//! that runs the steps in order; each step has its own error enum, and [`Error`] has a variant
//! per step and a metric label.
//!
//! Triggers: the endpoints themselves (through [`DeserializeGuard`], so one malformed object
//! cannot stall the watch), the owned Secrets and ConfigMaps (a deleted or edited child is
//! repaired), Secrets a `secretRef` names (so creating or changing one is seen at once), and
//! the requeue at the next key expiry or scheduled rotation.

pub mod apply;
pub mod build;
pub mod conflict;
pub mod decide;
pub mod fetch;
pub mod rotation;
pub mod status;
pub mod validate;

#[cfg(test)]
pub(crate) mod fixtures;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{FutureExt as _, StreamExt as _};
use hookguard_api::crd::WebhookEndpoint;
use hookguard_api::names::{LABEL_MANAGED_BY, MANAGED_BY, signing_secret_name};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource as _, ResourceExt as _};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use build::{Check, Observed, build_status};
use fetch::FetchError;
use validate::ValidateError;

/// How often a healthy endpoint is looked at again without any trigger (a safety net; the
/// watches do the real work).
const RESYNC: Duration = Duration::from_secs(3600);
/// Requeue of a permanent error (invalid spec, missing `secretRef`): a change to the
/// endpoint or the Secret triggers sooner through the watches.
const PERMANENT_RETRY: Duration = Duration::from_secs(300);
/// First and largest delay of a transient error's backoff.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// A reconcile failed; a variant per pipeline step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stored object does not deserialize into the current types.
    #[error("the WebhookEndpoint cannot be read: {0}")]
    Malformed(String),
    /// Step 1.
    #[error("fetch")]
    Fetch(#[from] FetchError),
    /// Step 2: the spec is invalid.
    #[error("invalid spec")]
    Validate(#[from] ValidateError),
    /// Another endpoint of the namespace holds this endpoint's path.
    #[error("{0}")]
    PathConflict(String),
    /// The `secretRef` Secret or key is missing.
    #[error("{0}")]
    SecretRef(String),
    /// A child's name is taken by an object this endpoint does not control.
    #[error("{0}")]
    NotOwned(String),
    /// Step 3: key material could not be generated.
    #[error("generating a signing key: {0}")]
    Random(getrandom::Error),
    /// Step 3: a child could not be rendered.
    #[error("building a child object")]
    Build(#[source] serde_json::Error),
    /// Step 4.
    #[error("apply")]
    Apply(#[from] apply::ApplyError),
    /// Step 5.
    #[error("status")]
    Status(#[from] status::StatusError),
}

impl Error {
    /// The label of `hookguard_operator_reconciles_total{error=…}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Malformed(_) => "malformed",
            Error::Fetch(_) => "fetch",
            Error::Validate(_) => "validate",
            Error::PathConflict(_) => "path_conflict",
            Error::SecretRef(_) => "secret_ref",
            Error::NotOwned(_) => "not_owned",
            Error::Random(_) => "random",
            Error::Build(_) => "build",
            Error::Apply(_) => "apply",
            Error::Status(_) => "status",
        }
    }

    /// Whether only a change of the object (or the referenced Secret) can fix it: no fast
    /// retry, the watches bring the change.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::Malformed(_)
                | Error::Validate(_)
                | Error::PathConflict(_)
                | Error::SecretRef(_)
                | Error::NotOwned(_)
        )
    }
}

/// What every reconcile shares.
pub struct Context {
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    /// Consecutive transient failures per endpoint, for the backoff.
    failures: Mutex<HashMap<ObjectRef<DeserializeGuard<WebhookEndpoint>>, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    /// A context reporting Events as `identity`.
    pub fn new(client: Client, metrics: Arc<Metrics>, identity: &str) -> Context {
        let reporter = Reporter {
            controller: hookguard_api::names::FIELD_MANAGER.to_owned(),
            instance: Some(identity.to_owned()),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            failures: Mutex::default(),
        }
    }

    fn failures(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<DeserializeGuard<WebhookEndpoint>>, u32>> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes an Event; failures are logged, never fatal (Events are best effort).
    async fn event(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, reference).await {
            tracing::warn!(%error, reason, "publishing an Event failed");
        }
    }
}

/// What a reconcile of one scope sees: the shared context and the scope's endpoint cache
/// (the other endpoints of a namespace, for path conflicts).
struct Scope {
    context: Arc<Context>,
    endpoints: Store<DeserializeGuard<WebhookEndpoint>>,
}

/// Runs the controller for one scope (a namespace, or all) until `shutdown`. Sets
/// `synced` once the endpoint cache is filled.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    context: Arc<Context>,
    shutdown: CancellationToken,
    synced: impl FnOnce() + Send + 'static,
) {
    let api = |client: Client| -> Api<DeserializeGuard<WebhookEndpoint>> {
        match &namespace {
            Some(namespace) => Api::namespaced(client, namespace),
            None => Api::all(client),
        }
    };
    let secrets: Api<Secret> = match &namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let config_maps: Api<ConfigMap> = match &namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let managed = format!("{LABEL_MANAGED_BY}={MANAGED_BY}");
    let unmanaged = format!("{LABEL_MANAGED_BY}!={MANAGED_BY}");

    let controller = Controller::new(
        api(client.clone()),
        watcher::Config::default().any_semantic(),
    );
    let store = controller.store();
    {
        let store = store.clone();
        let metrics = Arc::clone(&context.metrics);
        let shutdown = shutdown.clone();
        // Polled rather than awaited: in tests the waker of `wait_until_ready` was never
        // woken although the cache had synced, and a leader that never turns ready would stall
        // a rollout. A cheap check every 200 ms until it is.
        tokio::spawn(async move {
            loop {
                if let Some(ready) = store.wait_until_ready().now_or_never() {
                    if ready.is_ok() {
                        metrics.set_endpoints(store.len());
                        synced();
                    }
                    return;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        });
    }
    let referencing = store.clone();
    let sharing = store.clone();
    let scope = Arc::new(Scope {
        context: Arc::clone(&context),
        endpoints: store.clone(),
    });
    controller
        .owns(secrets.clone(), watcher::Config::default().labels(&managed))
        .owns(config_maps, watcher::Config::default().labels(&managed))
        // Secrets someone else manages may be named by a secretRef. The stream only triggers;
        // it keeps no copy of the Secrets.
        .watches(
            secrets,
            watcher::Config::default().labels(&unmanaged),
            move |secret: Secret| endpoints_referencing(&referencing, &secret),
        )
        // A path freed (its holder deleted or moved) must reach the endpoints waiting for it.
        .watches(
            api(client.clone()),
            watcher::Config::default().any_semantic(),
            move |changed: DeserializeGuard<WebhookEndpoint>| {
                endpoints_sharing_a_path(&sharing, &changed)
            },
        )
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, scope)
        .for_each(|result| {
            context.metrics.set_endpoints(store.len());
            if let Err(error) = result {
                tracing::debug!(error = %error, "controller stream");
            }
            std::future::ready(())
        })
        .await;
}

/// The endpoints in the cache whose `secretRef` names `secret`, or whose generated Secret's
/// name a foreign Secret occupies (its deletion must free the endpoint at once).
fn endpoints_referencing(
    store: &Store<DeserializeGuard<WebhookEndpoint>>,
    secret: &Secret,
) -> Vec<ObjectRef<DeserializeGuard<WebhookEndpoint>>> {
    let (Some(name), Some(namespace)) = (&secret.metadata.name, &secret.metadata.namespace) else {
        return Vec::new();
    };
    let cached = store.state();
    let referencing = in_namespace(&cached, namespace).filter(|endpoint| {
        match &endpoint.spec.secret.secret_ref {
            Some(reference) => &reference.name == name,
            None => endpoint
                .metadata
                .name
                .as_deref()
                .is_some_and(|endpoint| &signing_secret_name(endpoint) == name),
        }
    });
    references(referencing, namespace)
}

/// The other endpoints of `changed`'s namespace that declare its path, or wait for a path
/// (Ready False with reason [`conflict::REASON`]): a change of `changed` may settle who
/// holds it.
fn endpoints_sharing_a_path(
    store: &Store<DeserializeGuard<WebhookEndpoint>>,
    changed: &DeserializeGuard<WebhookEndpoint>,
) -> Vec<ObjectRef<DeserializeGuard<WebhookEndpoint>>> {
    let Ok(changed) = &changed.0 else {
        return Vec::new();
    };
    let (Some(name), Some(namespace)) = (&changed.metadata.name, &changed.metadata.namespace)
    else {
        return Vec::new();
    };
    let cached = store.state();
    let sharing = in_namespace(&cached, namespace)
        .filter(|other| other.metadata.name.as_ref() != Some(name))
        .filter(|other| other.spec.path == changed.spec.path || waits_for_a_path(other));
    references(sharing, namespace)
}

/// The endpoints of `namespace` among `cached` (the controller's store), leaving out any that
/// do not deserialize.
fn in_namespace<'a>(
    cached: &'a [Arc<DeserializeGuard<WebhookEndpoint>>],
    namespace: &'a str,
) -> impl Iterator<Item = &'a WebhookEndpoint> {
    cached
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(move |endpoint| endpoint.metadata.namespace.as_deref() == Some(namespace))
}

/// What the controller queues for `endpoints` of `namespace`.
fn references<'a>(
    endpoints: impl Iterator<Item = &'a WebhookEndpoint>,
    namespace: &str,
) -> Vec<ObjectRef<DeserializeGuard<WebhookEndpoint>>> {
    endpoints
        .filter_map(|endpoint| {
            Some(ObjectRef::new(endpoint.metadata.name.as_deref()?).within(namespace))
        })
        .collect()
}

fn waits_for_a_path(endpoint: &WebhookEndpoint) -> bool {
    endpoint.status.as_ref().is_some_and(|status| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == build::READY && c.reason == conflict::REASON)
    })
}

async fn reconcile(
    object: Arc<DeserializeGuard<WebhookEndpoint>>,
    scope: Arc<Scope>,
) -> Result<Action, Error> {
    let context = &scope.context;
    let _in_flight = context.metrics.start_reconcile();
    let started = Instant::now();
    let result = match &object.0 {
        Ok(endpoint) => reconcile_endpoint(endpoint, &scope).await,
        Err(invalid) => {
            let reference = ObjectReference {
                api_version: Some(WebhookEndpoint::api_version(&()).into_owned()),
                kind: Some(WebhookEndpoint::kind(&()).into_owned()),
                name: invalid.metadata.name.clone(),
                namespace: invalid.metadata.namespace.clone(),
                uid: invalid.metadata.uid.clone(),
                ..ObjectReference::default()
            };
            context
                .event(
                    &reference,
                    EventType::Warning,
                    "Malformed",
                    invalid.error.clone(),
                )
                .await;
            Err(Error::Malformed(invalid.error.clone()))
        }
    };
    context.metrics.reconciled(
        result.as_ref().err().map(Error::metric_label),
        started.elapsed(),
    );
    if result.is_ok() {
        context.failures().remove(&ObjectRef::from_obj(&*object));
    }
    result
}

#[allow(clippy::needless_pass_by_value)] // the signature `Controller::run` expects
fn error_policy(
    object: Arc<DeserializeGuard<WebhookEndpoint>>,
    error: &Error,
    scope: Arc<Scope>,
) -> Action {
    let context = &scope.context;
    let name = object.meta().name.as_deref().unwrap_or_default();
    let namespace = object.meta().namespace.as_deref().unwrap_or_default();
    if error.is_permanent() {
        tracing::info!(%namespace, %name, error = %hookguard_api::report::chain(error), "waiting for a change");
        return Action::requeue(PERMANENT_RETRY);
    }
    let mut failures = context.failures();
    let count = failures.entry(ObjectRef::from_obj(&*object)).or_insert(0);
    *count = count.saturating_add(1);
    let delay = backoff(*count);
    tracing::warn!(%namespace, %name, error = %hookguard_api::report::chain(error), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Capped exponential backoff: 0.5 s, 1 s, 2 s, … 5 min.
fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    BACKOFF_MIN.saturating_mul(factor).min(BACKOFF_MAX)
}

/// The driver: read (client required), check and decide (no client required), write
/// (client required).
async fn reconcile_endpoint(cached: &WebhookEndpoint, scope: &Scope) -> Result<Action, Error> {
    let context = &*scope.context;
    let client = &context.client;
    // Read: the endpoint as the API server has it, then its surroundings.
    let Some(endpoint) = fetch::endpoint(client, cached).await? else {
        // Deleted meanwhile: the owner references let the garbage collector clean up.
        return Ok(Action::await_change());
    };
    let endpoint = &endpoint;
    let namespace = endpoint.namespace().unwrap_or_default();
    let name = endpoint.name_any();
    let now = Timestamp::now();
    let fetched = fetch::fetch(client, endpoint).await?;

    // Check: the spec (pure), then whether another endpoint holds its path.
    let validated = match validate::validate(endpoint) {
        Ok(validated) => validated,
        Err(error) => {
            refuse(context, endpoint, "InvalidSpec", error.to_string(), now).await?;
            return Err(error.into());
        }
    };
    // The cache answers when nobody else declares the path (nearly always); otherwise the
    // API server does, so a holder just deleted or moved frees it at once.
    let cached = scope.endpoints.state();
    if conflict::path_holder(endpoint, in_namespace(&cached, &namespace)).is_some() {
        let fresh = fetch::namespace_endpoints(client, &namespace).await?;
        if let Some(holder) = conflict::path_holder(endpoint, &fresh) {
            let message = conflict::message(endpoint, holder);
            refuse(context, endpoint, conflict::REASON, message.clone(), now).await?;
            return Err(Error::PathConflict(message));
        }
    }

    // Decide (pure).
    let decision = decide::decide(
        &decide::Facts {
            validated: &validated,
            previous: endpoint.status.as_ref(),
            fetched: &fetched,
            now,
        },
        &mut rotation::os_random,
    )?;

    // Write: the keys first (the ConfigMap points the sidecar at them), then the ConfigMap,
    // the status and the Events.
    if let Some(secret) = &decision.secret {
        apply::apply(client, secret).await?;
    }
    if let Some(config_map) = &decision.config_map {
        apply::apply(client, config_map).await?;
    }
    status::apply_status(client, &namespace, &name, &decision.status).await?;
    let reference = endpoint.object_ref(&());
    for note in decision.notes {
        context
            .event(&reference, note.type_, note.reason, note.message)
            .await;
    }
    if let Some(refusal) = decision.refusal {
        return Err(refusal);
    }
    if decision.became_ready {
        tracing::info!(%namespace, %name, "endpoint ready");
    }
    let wait = decision.next_change.map_or(RESYNC, |at| {
        let until = at.duration_since(Timestamp::now());
        // A due change goes through at once; a second's slack keeps it from being early.
        Duration::try_from(until).unwrap_or(Duration::ZERO) + Duration::from_secs(1)
    });
    Ok(Action::requeue(wait.min(RESYNC)))
}

/// Reports a spec that cannot be reconciled as it stands: not Ready with `reason`, the
/// children's names kept from the previous status, and a Warning Event.
async fn refuse(
    context: &Context,
    endpoint: &WebhookEndpoint,
    reason: &'static str,
    message: String,
    now: Timestamp,
) -> Result<(), Error> {
    let previous = endpoint.status.as_ref();
    let check = Check::failed(reason, message.clone());
    let status = build_status(&Observed {
        previous,
        generation: endpoint.metadata.generation,
        endpoint_id: previous.and_then(|status| status.endpoint_id.clone()),
        secret_name: previous.and_then(|status| status.secret_name.clone()),
        config_name: previous.and_then(|status| status.config_name.clone()),
        ring: None,
        secret: check.clone(),
        config: check,
        now,
    });
    let namespace = endpoint.namespace().unwrap_or_default();
    status::apply_status(&context.client, &namespace, &endpoint.name_any(), &status).await?;
    context
        .event(
            &endpoint.object_ref(&()),
            EventType::Warning,
            reason,
            message,
        )
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(30), BACKOFF_MAX);
    }

    #[test]
    fn permanent_errors_are_told_from_transient_ones() {
        assert!(Error::SecretRef("x".into()).is_permanent());
        assert!(Error::Validate(ValidateError::SecretSource).is_permanent());
        assert_eq!(Error::SecretRef("x".into()).metric_label(), "secret_ref");
    }
}
