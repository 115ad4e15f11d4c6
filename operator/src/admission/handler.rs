//! One admission review: parse, decide from the cache, answer. [`admit`] is the pure
//! decision (unit-tested, and benchmarked); [`Webhook`] adds the cache, the metrics and the
//! Warning event for a skipped injection.
//!
//! The cache is a reflector and can lag the API server by a moment, so a denial that rests on
//! the endpoints' state (not found, not Ready, none selected) is never answered from the cache
//! alone: [`Webhook::confirming_with`] gives the webhook a client for one bounded, direct list
//! of the namespace's endpoints, and the decision is made again from what it returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use hookguard_api::crd::WebhookEndpoint;
use hookguard_api::names::LABEL_INJECT;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::ListParams;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Api, Client};

use super::metrics::{ReasonLabel, ResultLabel, metrics};
use super::render::{self, InjectionConfig, RenderError};

/// What [`admit`] decided.
#[derive(Debug)]
pub struct Decision {
    /// The answer to the API server.
    pub response: AdmissionResponse,
    /// `injected`, `unchanged` or `denied`.
    pub result: &'static str,
    /// For a denied injection: why, and the message.
    pub skipped: Option<(&'static str, String)>,
    /// Whether the denial follows from the endpoints' state, which a cache can show late
    /// ([`RenderError::depends_on_endpoints`]).
    pub depends_on_endpoints: bool,
}

/// Decides one request from `endpoints`, the namespace's `WebhookEndpoints`.
pub fn admit(
    request: &AdmissionRequest<Pod>,
    endpoints: &[&WebhookEndpoint],
    config: &InjectionConfig,
) -> Decision {
    let response = AdmissionResponse::from(request);
    let unchanged = |response| Decision {
        response,
        result: "unchanged",
        skipped: None,
        depends_on_endpoints: false,
    };
    // The configuration sends only pod CREATEs of opted-in pods; anything else is let
    // through untouched rather than second-guessed.
    let Some(pod) = request.object.as_ref() else {
        return unchanged(response);
    };
    let opted_in = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_INJECT))
        .is_some_and(|v| v == "true");
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    if request.operation != Operation::Create || !opted_in || host_network {
        return unchanged(response);
    }
    let namespace = request.namespace.clone().unwrap_or_default();
    let rendered = render::select_endpoints(pod, &namespace, endpoints)
        .and_then(|selected| render::render_pod(pod, &selected, config));
    let desired = match rendered {
        Ok(desired) => desired,
        Err(error) => return denied(response, &error),
    };
    let warnings = render::warnings(&desired);
    let patch = match render::patch(pod, &desired) {
        Ok(patch) => patch,
        Err(error) => {
            return Decision {
                response: response.deny(format!("hookguard could not build the patch: {error}")),
                result: "error",
                skipped: Some(("PatchFailed", error.to_string())),
                depends_on_endpoints: false,
            };
        }
    };
    let mut response = response;
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    if patch.0.is_empty() {
        return unchanged(response);
    }
    match response.with_patch(patch) {
        Ok(response) => Decision {
            response,
            result: "injected",
            skipped: None,
            depends_on_endpoints: false,
        },
        Err(error) => Decision {
            response: AdmissionResponse::from(request)
                .deny(format!("hookguard could not encode the patch: {error}")),
            result: "error",
            skipped: Some(("PatchFailed", error.to_string())),
            depends_on_endpoints: false,
        },
    }
}

fn denied(response: AdmissionResponse, error: &RenderError) -> Decision {
    let message = error.to_string();
    let mut response = response.deny(&message);
    error.reason().clone_into(&mut response.result.reason);
    response.result.code = 403;
    Decision {
        response,
        result: "denied",
        skipped: Some((error.reason(), message)),
        depends_on_endpoints: error.depends_on_endpoints(),
    }
}

impl Decision {
    /// A denial with `message`, for a `reason` outside [`RenderError`].
    fn deny(request: &AdmissionRequest<Pod>, reason: &'static str, message: String) -> Decision {
        Decision {
            response: AdmissionResponse::from(request).deny(&message),
            result: "denied",
            skipped: Some((reason, message)),
            depends_on_endpoints: false,
        }
    }

    /// Appends `note` to a denial's message (the answer's and the event's).
    fn note(mut self, note: &str) -> Decision {
        if let Some((_, message)) = &mut self.skipped {
            message.push_str(note);
            self.response.result.message.push_str(note);
        }
        self
    }
}

/// The `WebhookEndpoints` the webhook answers from: one reflector store for the whole cluster,
/// or one per watched namespace.
#[derive(Clone)]
pub struct EndpointCache {
    scopes: Vec<(Option<String>, Store<WebhookEndpoint>)>,
}

impl EndpointCache {
    /// A cache of per-scope stores; a `None` scope covers every namespace.
    pub fn scoped(scopes: Vec<(Option<String>, Store<WebhookEndpoint>)>) -> EndpointCache {
        EndpointCache { scopes }
    }

    /// The store that holds `namespace`'s endpoints, if that namespace is watched.
    fn for_namespace(&self, namespace: &str) -> Option<&Store<WebhookEndpoint>> {
        self.scopes
            .iter()
            .find(|(scope, _)| scope.as_deref().is_none_or(|scope| scope == namespace))
            .map(|(_, store)| store)
    }

    fn watched(&self) -> String {
        let names: Vec<&str> = self
            .scopes
            .iter()
            .filter_map(|(scope, _)| scope.as_deref())
            .collect();
        names.join(", ")
    }
}

impl std::fmt::Debug for EndpointCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scopes: Vec<&str> = self
            .scopes
            .iter()
            .map(|(scope, _)| scope.as_deref().unwrap_or("*"))
            .collect();
        f.debug_struct("EndpointCache")
            .field("scopes", &scopes)
            .finish()
    }
}

impl From<Store<WebhookEndpoint>> for EndpointCache {
    /// One store covering every namespace.
    fn from(store: Store<WebhookEndpoint>) -> EndpointCache {
        EndpointCache {
            scopes: vec![(None, store)],
        }
    }
}

/// The webhook: the cache, what to inject and how to report.
pub struct Webhook {
    endpoints: EndpointCache,
    config: InjectionConfig,
    operator_namespace: String,
    recorder: Option<Recorder>,
    cache_wait: Duration,
    api_server: Option<DirectRead>,
}

/// The client and time bound for reading a namespace's endpoints from the API server itself.
#[derive(Clone)]
struct DirectRead {
    client: Client,
    timeout: Duration,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("config", &self.config)
            .field("operator_namespace", &self.operator_namespace)
            .field("confirms", &self.api_server.is_some())
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// A webhook answering from `endpoints` alone; `recorder` publishes Warning events (none
    /// in benchmarks); a review waits up to `cache_wait` for the cache's first list.
    pub fn new(
        endpoints: impl Into<EndpointCache>,
        config: InjectionConfig,
        operator_namespace: String,
        recorder: Option<Recorder>,
        cache_wait: Duration,
    ) -> Webhook {
        Webhook {
            endpoints: endpoints.into(),
            config,
            operator_namespace,
            recorder,
            cache_wait,
            api_server: None,
        }
    }

    /// Confirms every denial that rests on the endpoints' state (and answers while the cache
    /// has not listed yet) with one direct list from the API server through `client`, given
    /// at most `timeout`.
    #[must_use]
    pub fn confirming_with(mut self, client: Client, timeout: Duration) -> Webhook {
        self.api_server = Some(DirectRead { client, timeout });
        self
    }

    /// Answers one `AdmissionReview` body with the response review's JSON.
    pub async fn review(&self, body: &[u8]) -> Vec<u8> {
        let started = Instant::now();
        let (response, result) = match parse(body) {
            Ok(request) => {
                let decision = self.decide(&request).await;
                if let Some((reason, message)) = &decision.skipped {
                    metrics()
                        .skipped
                        .get_or_create(&ReasonLabel { reason })
                        .inc();
                    tracing::info!(
                        namespace = request.namespace.as_deref().unwrap_or_default(),
                        pod = pod_name(&request),
                        reason,
                        message = message.as_str(),
                        "injection denied"
                    );
                    if !request.dry_run {
                        self.publish(&request, reason, message);
                    }
                }
                (decision.response, decision.result)
            }
            Err(message) => (AdmissionResponse::invalid(message), "error"),
        };
        metrics()
            .requests
            .get_or_create(&ResultLabel { result })
            .inc();
        metrics().duration.observe(started.elapsed().as_secs_f64());
        let review: AdmissionReview<DynamicObject> = response.into_review();
        serde_json::to_vec(&review).unwrap_or_default()
    }

    async fn decide(&self, request: &AdmissionRequest<Pod>) -> Decision {
        let namespace = request.namespace.as_deref().unwrap_or_default();
        // Never inject into the namespaces the configuration excludes, even if a hand-edited
        // configuration sends them here: the operator must start when its webhook is down.
        if namespace == "kube-system" || namespace == self.operator_namespace {
            return Decision {
                response: AdmissionResponse::from(request),
                result: "unchanged",
                skipped: None,
                depends_on_endpoints: false,
            };
        }
        let Some(store) = self.endpoints.for_namespace(namespace) else {
            let message = format!(
                "Hookguard serves only the namespaces {}; namespace {namespace} is not one of them: \
                 ask the platform team to add it to the operator's --namespace, or remove the \
                 hookguard.dev/inject label",
                self.endpoints.watched()
            );
            return Decision::deny(request, "NamespaceNotWatched", message);
        };
        // Before its first list an empty cache would wrongly report every named endpoint
        // missing: ask the API server instead, or, without a client, wait for the list.
        let ready = match &self.api_server {
            Some(_) => store
                .wait_until_ready()
                .now_or_never()
                .is_some_and(|r| r.is_ok()),
            None => matches!(
                tokio::time::timeout(self.cache_wait, store.wait_until_ready()).await,
                Ok(Ok(()))
            ),
        };
        if !ready {
            const STARTING: &str =
                "the Hookguard operator is starting and has not loaded the WebhookEndpoints yet";
            return match self.read_directly(namespace).await {
                Some(Ok(fresh)) => self.admit_fresh(request, &fresh),
                Some(Err(error)) => Decision::deny(
                    request,
                    "CacheNotReady",
                    format!(
                        "{STARTING}, and reading them from the API server failed ({error}): create the pod again in a few seconds"
                    ),
                ),
                None => Decision::deny(
                    request,
                    "CacheNotReady",
                    format!("{STARTING}: create the pod again in a few seconds"),
                ),
            };
        }
        let cached: Vec<Arc<WebhookEndpoint>> =
            store.state_filter(|ep| ep.metadata.namespace.as_deref() == Some(namespace));
        let cached: Vec<&WebhookEndpoint> = cached.iter().map(AsRef::as_ref).collect();
        let decision = admit(request, &cached, &self.config);
        if !decision.depends_on_endpoints {
            return decision;
        }
        // The cache may simply not have seen an endpoint created or made Ready a moment ago
        // (`kubectl apply -f dir/`, a GitOps sync): decide again from the API server's view.
        let confirmation = |result| {
            metrics()
                .confirmations
                .get_or_create(&ResultLabel { result })
                .inc();
        };
        match self.read_directly(namespace).await {
            None => decision,
            Some(Ok(fresh)) => {
                let fresh = self.admit_fresh(request, &fresh);
                confirmation(if fresh.depends_on_endpoints {
                    "confirmed"
                } else {
                    "stale_cache"
                });
                fresh
            }
            Some(Err(error)) => {
                confirmation("failed");
                decision.note(&format!(
                    " (so says the operator's cache; confirming it with the API server failed: \
                     {error}; if the endpoint exists and is Ready, create the pod again)"
                ))
            }
        }
    }

    /// [`admit`] from endpoints read from the API server; a denial says so.
    fn admit_fresh(&self, request: &AdmissionRequest<Pod>, fresh: &[WebhookEndpoint]) -> Decision {
        let decision = admit(request, &fresh.iter().collect::<Vec<_>>(), &self.config);
        if decision.depends_on_endpoints {
            decision.note(" (read from the API server just now, not from a cache)")
        } else {
            decision
        }
    }

    /// The namespace's endpoints as the API server has them now (a list without a
    /// resourceVersion is a consistent read), within the time bound; `None` without a client.
    async fn read_directly(&self, namespace: &str) -> Option<Result<Vec<WebhookEndpoint>, String>> {
        let read = self.api_server.as_ref()?;
        let api: Api<WebhookEndpoint> = Api::namespaced(read.client.clone(), namespace);
        let listed = tokio::time::timeout(read.timeout, api.list(&ListParams::default())).await;
        Some(match listed {
            Ok(Ok(list)) => Ok(list.items),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {:?}", read.timeout)),
        })
    }
    /// A Warning event on the pod, off the request path.
    fn publish(&self, request: &AdmissionRequest<Pod>, reason: &str, message: &str) {
        let Some(recorder) = self.recorder.clone() else {
            return;
        };
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: request.namespace.clone(),
            name: Some(pod_name(request).to_owned()),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            note: Some(message.chars().take(1000).collect()),
            action: "InjectSidecar".into(),
            secondary: None,
        };
        tokio::spawn(async move {
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::debug!(%error, "could not publish the skipped-injection event");
            }
        });
    }
}

/// The pod's name, or its generateName prefix when the API server has not named it yet.
fn pod_name(request: &AdmissionRequest<Pod>) -> &str {
    if !request.name.is_empty() {
        return &request.name;
    }
    request
        .object
        .as_ref()
        .and_then(|p| p.metadata.generate_name.as_deref())
        .unwrap_or("")
}

fn parse(body: &[u8]) -> Result<AdmissionRequest<Pod>, String> {
    let review: AdmissionReview<Pod> =
        serde_json::from_slice(body).map_err(|e| format!("not an AdmissionReview: {e}"))?;
    review
        .try_into()
        .map_err(|e| format!("not an AdmissionReview request: {e}"))
}

#[cfg(test)]
mod tests {
    use kube::runtime::{reflector, watcher};
    use serde_json::json;

    use super::*;
    use crate::admission::render::SidecarResources;

    fn webhook(ready: bool) -> Webhook {
        let (reader, mut writer) = reflector::store::<WebhookEndpoint>();
        if ready {
            writer.apply_watcher_event(&watcher::Event::Init);
            writer.apply_watcher_event(&watcher::Event::InitDone);
        }
        let config = InjectionConfig {
            image: "i".into(),
            image_pull_policy: "IfNotPresent".into(),
            store: "memory".into(),
            store_password: None,
            store_cluster: false,
            resources: SidecarResources::default(),
        };
        Webhook::new(
            reader,
            config,
            "hookguard-system".into(),
            None,
            Duration::from_millis(50),
        )
    }

    fn review(namespace: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": namespace, "operation": "CREATE", "userInfo": {}, "dryRun": true,
                "object": {
                    "metadata": {"labels": {LABEL_INJECT: "true"},
                        "annotations": {"hookguard.dev/endpoints": "pay"}},
                    "spec": {"containers": [{"name": "app", "image": "a"}]},
                },
            },
        }))
        .unwrap()
    }

    async fn answer(webhook: &Webhook, body: &[u8]) -> serde_json::Value {
        serde_json::from_slice::<serde_json::Value>(&webhook.review(body).await).unwrap()["response"]
            .clone()
    }

    #[tokio::test]
    async fn the_operator_and_system_namespaces_are_never_injected() {
        let webhook = webhook(true);
        for namespace in ["hookguard-system", "kube-system"] {
            let response = answer(&webhook, &review(namespace)).await;
            assert_eq!(response["allowed"], true, "{response}");
            assert!(response.get("patch").is_none(), "{response}");
        }
        let elsewhere = answer(&webhook, &review("shop")).await;
        assert_eq!(elsewhere["allowed"], false, "{elsewhere}");
        assert!(
            elsewhere["status"]["message"]
                .as_str()
                .unwrap()
                .contains("\"pay\"")
        );
    }

    #[tokio::test]
    async fn a_namespace_outside_the_watched_ones_is_denied_with_what_to_do() {
        let (reader, mut writer) = reflector::store::<WebhookEndpoint>();
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let mut scoped = webhook(true);
        scoped.endpoints = EndpointCache::scoped(vec![(Some("shop".into()), reader)]);
        let outside = answer(&scoped, &review("billing")).await;
        assert_eq!(outside["allowed"], false, "{outside}");
        let message = outside["status"]["message"].as_str().unwrap();
        assert!(
            message.contains("shop")
                && message.contains("billing")
                && message.contains("--namespace"),
            "{message}"
        );
        let inside = answer(&scoped, &review("shop")).await;
        assert!(
            inside["status"]["message"]
                .as_str()
                .unwrap()
                .contains("\"pay\""),
            "{inside}"
        );
    }

    #[tokio::test]
    async fn a_cold_cache_denies_with_a_retry_hint_and_garbage_is_invalid() {
        let response = answer(&webhook(false), &review("shop")).await;
        assert_eq!(response["allowed"], false);
        assert!(
            response["status"]["message"]
                .as_str()
                .unwrap()
                .contains("starting"),
            "{response}"
        );
        let garbage = answer(&webhook(true), b"{}").await;
        assert_eq!(garbage["allowed"], false, "{garbage}");
    }

    #[test]
    fn port_clashes_and_the_reserved_name_are_warned_about() {
        let pod: Pod = serde_json::from_value(json!({"spec": {"containers": [
            {"name": "hookguard-sidecar", "image": "a", "ports": [{"containerPort": 9880}]},
        ]}}))
        .unwrap();
        let warnings = render::warnings(&pod);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }
}
