//! The reconciler: each `WebhookEndpoint` becomes a signing Secret (or a checked
//! `secretRef`), a sidecar ConfigMap and a status.
//!
//! Reconcile is a pipeline, IO at the edges and pure in the middle:
//! [`fetch`] → [`validate`] → [`rotation`] + [`build`] → [`apply`] → [`status`]. Each step
//! has its own error enum; [`Error`] has a variant per step and a metric label.
//!
//! Triggers: the endpoints themselves (through [`DeserializeGuard`], so one malformed object
//! cannot stall the watch), the owned Secrets and ConfigMaps (a deleted or edited child is
//! repaired), Secrets a `secretRef` names (so creating or changing one is seen at once), and
//! the requeue at the next key expiry or scheduled rotation.

pub mod apply;
pub mod build;
pub mod conflict;
pub mod fetch;
pub mod rotation;
pub mod status;
pub mod validate;

#[cfg(test)]
pub(crate) mod fixtures;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{FutureExt as _, StreamExt as _};
use hookguard_api::crd::{WebhookEndpoint, WebhookEndpointStatus};
use hookguard_api::names::{
    LABEL_MANAGED_BY, MANAGED_BY, sidecar_config_name, signing_secret_name,
};
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
use build::{Check, Observed, build_config_map, build_secret, build_status};
use fetch::{FetchError, Referenced};
use rotation::{ANNOTATION_KEYS, KeyRingMeta, PlanInput};
use validate::{SecretPlan, ValidateError, ValidatedEndpoint};

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
    store
        .state()
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|endpoint| endpoint.metadata.namespace.as_ref() == Some(namespace))
        .filter(|endpoint| match &endpoint.spec.secret.secret_ref {
            Some(reference) => &reference.name == name,
            None => endpoint
                .metadata
                .name
                .as_deref()
                .is_some_and(|endpoint| &signing_secret_name(endpoint) == name),
        })
        .filter_map(|endpoint| {
            Some(ObjectRef::new(endpoint.metadata.name.as_deref()?).within(namespace))
        })
        .collect()
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
    store
        .state()
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|other| other.metadata.namespace.as_ref() == Some(namespace))
        .filter(|other| other.metadata.name.as_ref() != Some(name))
        .filter(|other| other.spec.path == changed.spec.path || waits_for_a_path(other))
        .filter_map(|other| Some(ObjectRef::new(other.metadata.name.as_deref()?).within(namespace)))
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
        tracing::info!(%namespace, %name, error = %error_chain(error), "waiting for a change");
        return Action::requeue(PERMANENT_RETRY);
    }
    let mut failures = context.failures();
    let count = failures.entry(ObjectRef::from_obj(&*object)).or_insert(0);
    *count = count.saturating_add(1);
    let delay = backoff(*count);
    tracing::warn!(%namespace, %name, error = %error_chain(error), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Capped exponential backoff: 0.5 s, 1 s, 2 s, … 5 min.
fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    BACKOFF_MIN.saturating_mul(factor).min(BACKOFF_MAX)
}

/// The error and its sources on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

async fn reconcile_endpoint(cached: &WebhookEndpoint, scope: &Scope) -> Result<Action, Error> {
    let context = &*scope.context;
    let client = &context.client;
    let Some(endpoint) = fetch::endpoint(client, cached).await? else {
        // Deleted meanwhile: the owner references let the garbage collector clean up.
        return Ok(Action::await_change());
    };
    let endpoint = &endpoint;
    let reference = endpoint.object_ref(&());
    let namespace = endpoint.namespace().unwrap_or_default();
    let name = endpoint.name_any();
    let previous = endpoint.status.as_ref();
    let now = Timestamp::now();

    let fetched = fetch::fetch(client, endpoint).await?;
    let validated = match validate::validate(endpoint) {
        Ok(validated) => validated,
        Err(error) => {
            refuse(context, endpoint, "InvalidSpec", error.to_string(), now).await?;
            return Err(error.into());
        }
    };
    // Who holds the path: the cache answers when nobody else declares it (nearly always);
    // otherwise the API server does, so a holder just deleted or moved frees it at once.
    let cached = scope.endpoints.state();
    let in_namespace = cached
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|other| other.metadata.namespace == endpoint.metadata.namespace);
    if conflict::path_holder(endpoint, in_namespace).is_some() {
        let fresh = fetch::namespace_endpoints(client, &namespace).await?;
        if let Some(holder) = conflict::path_holder(endpoint, &fresh) {
            let message = conflict::message(endpoint, holder);
            refuse(context, endpoint, conflict::REASON, message.clone(), now).await?;
            return Err(Error::PathConflict(message));
        }
    }

    // A ConfigMap of that name that this endpoint does not control is someone else's, or a
    // deleted namesake's not yet collected: neither adopt its endpoint ID (that would inherit
    // another endpoint's dedup records, and answer new deliveries as duplicates) nor
    // overwrite it.
    let owned_config = fetched
        .config_map
        .as_ref()
        .filter(|config_map| controlled_by(*config_map, &reference));
    let endpoint_id = endpoint_id(previous, owned_config)?;
    let Keys {
        check: secret_check,
        secret_name,
        ring,
        next_change,
    } = reconcile_keys(context, &reference, &validated, previous, &fetched, now).await?;

    let config_name = sidecar_config_name(&validated.name);
    let config_check = if fetched.config_map.is_some() && owned_config.is_none() {
        Check::failed(
            "ConfigNotOwned",
            format!(
                "ConfigMap {config_name} exists and is not managed by this endpoint; Hookguard \
                 does not overwrite it: delete or rename it"
            ),
        )
    } else {
        let config_map = build_config_map(&validated, &endpoint_id).map_err(Error::Build)?;
        apply::apply_config_map(client, &config_map).await?;
        Check::ok("Rendered", format!("ConfigMap {config_name} is applied"))
    };
    let status = build_status(&Observed {
        previous,
        generation: validated.generation,
        endpoint_id: Some(endpoint_id),
        secret_name,
        config_name: Some(config_name),
        ring: ring.as_ref(),
        secret: secret_check.clone(),
        config: config_check.clone(),
        now,
    });
    let became_ready = !was_ready(previous) && secret_check.ok && config_check.ok;
    status::apply_status(client, &namespace, &name, &status).await?;

    for check in [&secret_check, &config_check] {
        if !check.ok {
            context
                .event(
                    &reference,
                    EventType::Warning,
                    check.reason,
                    check.message.clone(),
                )
                .await;
        }
    }
    if !secret_check.ok {
        return Err(Error::SecretRef(secret_check.message));
    }
    if !config_check.ok {
        return Err(Error::NotOwned(config_check.message));
    }
    if became_ready {
        tracing::info!(%namespace, %name, "endpoint ready");
    }
    let wait = next_change.map_or(RESYNC, |at| {
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

/// The keys' side of a reconcile: the generated Secret planned and applied, or the
/// `secretRef` checked.
struct Keys {
    check: Check,
    secret_name: Option<String>,
    ring: Option<rotation::KeyRing>,
    next_change: Option<Timestamp>,
}

async fn reconcile_keys(
    context: &Context,
    reference: &ObjectReference,
    validated: &ValidatedEndpoint,
    previous: Option<&WebhookEndpointStatus>,
    fetched: &fetch::Fetched,
    now: Timestamp,
) -> Result<Keys, Error> {
    match &validated.secret {
        SecretPlan::Generate {
            grace_period,
            every,
        } => {
            // A Secret of that name that this endpoint does not control is someone's data:
            // never overwrite it. (A new endpoint of an old name also waits here until the
            // garbage collector has removed the old endpoint's Secret.)
            if let Some(existing) = &fetched.generated
                && !controlled_by(existing, reference)
            {
                let secret_name = signing_secret_name(&validated.name);
                return Ok(Keys {
                    check: Check::failed(
                        "SecretNotOwned",
                        format!(
                            "Secret {secret_name} exists and is not managed by this endpoint; \
                             Hookguard does not overwrite it: delete or rename it, or use it with \
                             spec.secret.secretRef"
                        ),
                    ),
                    secret_name: None,
                    ring: None,
                    next_change: None,
                });
            }
            let plan = plan_keys(
                validated,
                previous,
                fetched.generated.as_ref(),
                *grace_period,
                *every,
                now,
            )?;
            let secret = build_secret(validated, &plan.ring).map_err(Error::Build)?;
            apply::apply_secret(&context.client, &secret).await?;
            publish_key_events(context, reference, &plan.changes).await;
            let ids: Vec<&str> = plan
                .ring
                .keys
                .iter()
                .map(|key| key.meta.id.as_str())
                .collect();
            let secret_name = secret.metadata.name.unwrap_or_default();
            Ok(Keys {
                check: Check::ok(
                    "Generated",
                    format!("Secret {secret_name} holds keys {}", ids.join(", ")),
                ),
                secret_name: Some(secret_name),
                next_change: plan.next_change,
                ring: Some(plan.ring),
            })
        }
        SecretPlan::Reference { name: secret, key } => {
            let namespace = &validated.namespace;
            let check = match fetched.referenced {
                Some(Referenced::Present) => {
                    Check::ok("Referenced", format!("Secret {secret} has key {key}"))
                }
                Some(Referenced::KeyMissing) => Check::failed(
                    "SecretRefKeyMissing",
                    format!("Secret {secret} has no key {key:?} (or it is empty); add it"),
                ),
                Some(Referenced::SecretMissing) | None => Check::failed(
                    "SecretRefMissing",
                    format!(
                        "Secret {secret} not found in namespace {namespace}; create it with key {key:?}"
                    ),
                ),
            };
            Ok(Keys {
                check,
                secret_name: Some(secret.clone()),
                ring: None,
                next_change: None,
            })
        }
    }
}

/// Whether `object` names the endpoint behind `owner` (by UID) as its controller.
fn controlled_by(object: &impl kube::Resource, owner: &ObjectReference) -> bool {
    object
        .meta()
        .owner_references
        .as_ref()
        .is_some_and(|references| {
            references
                .iter()
                .any(|r| r.controller == Some(true) && Some(&r.uid) == owner.uid.as_ref())
        })
}

fn was_ready(status: Option<&WebhookEndpointStatus>) -> bool {
    status.is_some_and(|status| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == build::READY && c.status == "True")
    })
}

/// The stable endpoint ID: the status's; else the one the ConfigMap carries (the status was
/// lost, the ID must not change: it namespaces the dedup records); else a new one.
fn endpoint_id(
    previous: Option<&WebhookEndpointStatus>,
    config_map: Option<&ConfigMap>,
) -> Result<String, Error> {
    if let Some(id) = previous.and_then(|status| status.endpoint_id.clone()) {
        return Ok(id);
    }
    let from_config = config_map
        .and_then(|cm| cm.data.as_ref())
        .and_then(|data| data.get(hookguard_api::config::CONFIG_FILE_NAME))
        .and_then(|text| serde_json::from_str::<hookguard_api::config::EndpointConfig>(text).ok())
        .map(|config| config.endpoint_id)
        .filter(|id| !id.is_empty());
    if let Some(id) = from_config {
        return Ok(id);
    }
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(Error::Random)?;
    Ok(hex::encode(bytes))
}

fn plan_keys(
    validated: &ValidatedEndpoint,
    previous: Option<&WebhookEndpointStatus>,
    secret: Option<&Secret>,
    grace_period: Duration,
    every: Option<Duration>,
    now: Timestamp,
) -> Result<rotation::Plan, Error> {
    // A Secret of the same name that this endpoint does not control is taken over by the
    // forced apply; its keys are not trusted as ours.
    let secret = secret.filter(|secret| {
        secret
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|owner| owner.uid == validated.owner.uid && owner.controller == Some(true))
    });
    let data: BTreeMap<String, String> = secret
        .and_then(|secret| secret.data.as_ref())
        .map(|data| {
            data.iter()
                .filter_map(|(id, value)| {
                    Some((id.clone(), String::from_utf8(value.0.clone()).ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    let meta: KeyRingMeta = secret
        .and_then(|secret| secret.metadata.annotations.as_ref())
        .and_then(|annotations| annotations.get(ANNOTATION_KEYS))
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let highest_seen = previous
        .into_iter()
        .flat_map(|status| &status.keys)
        .filter_map(|key| rotation::key_number(&key.id))
        .max()
        .unwrap_or(0);
    let last_rotate_request = meta
        .last_rotate_request
        .clone()
        .or_else(|| previous.and_then(|status| status.last_rotate_request.clone()));
    let input = PlanInput {
        scheme: validated.config.scheme,
        existing: rotation::existing_keys(&data, &meta, now),
        last_rotate_request,
        rotate_request: validated.rotate_request.as_deref(),
        highest_seen,
        grace_period,
        every,
        now,
    };
    rotation::plan(input, &mut rotation::os_random).map_err(Error::Random)
}

async fn publish_key_events(
    context: &Context,
    reference: &ObjectReference,
    changes: &rotation::Changes,
) {
    if let Some(id) = &changes.generated {
        context
            .event(
                reference,
                EventType::Normal,
                "KeyGenerated",
                format!("generated signing key {id}"),
            )
            .await;
    }
    if let Some(id) = &changes.rotated_to {
        context
            .event(
                reference,
                EventType::Normal,
                "Rotated",
                format!(
                    "rotated to signing key {id}; the previous key stays valid for the grace period"
                ),
            )
            .await;
    }
    if !changes.expired.is_empty() {
        context
            .event(
                reference,
                EventType::Normal,
                "KeyExpired",
                format!(
                    "removed expired signing key(s) {}",
                    changes.expired.join(", ")
                ),
            )
            .await;
    }
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

    #[test]
    fn the_endpoint_id_survives_a_lost_status_through_the_config_map() {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pay-sidecar"},
            "data": {"endpoint.json": r#"{"name":"pay","endpointId":"abc","path":"/h","scheme":"Generic","upstream":{"port":1},"secretDir":"/s"}"#},
        }))
        .unwrap();
        assert_eq!(endpoint_id(None, Some(&cm)).unwrap(), "abc");
        let fresh = endpoint_id(None, None).unwrap();
        assert_eq!(fresh.len(), 32);
        let status = WebhookEndpointStatus {
            endpoint_id: Some("kept".into()),
            ..WebhookEndpointStatus::default()
        };
        assert_eq!(endpoint_id(Some(&status), Some(&cm)).unwrap(), "kept");
    }
}
