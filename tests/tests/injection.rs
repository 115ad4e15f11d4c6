//! Sidecar injection against the real control plane: the API server calls the operator's
//! admission webhook (run in this process, HTTPS on 127.0.0.1, registered by URL with the
//! caBundle the webhook writes itself) for pods created in each test's namespace.

// Each test's future is awaited once, at the top of its own runtime; boxing it buys nothing.
#![allow(clippy::large_futures)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use clap::Parser as _;
use hookguard_api::crd::WebhookEndpoint;
use hookguard_api::names::{
    ANNOTATION_ENDPOINTS, ANNOTATION_INJECTED, LABEL_INJECT, SIDECAR_ADMIN_PORT_NAME,
    SIDECAR_CONFIG_ROOT, SIDECAR_CONTAINER, SIDECAR_PORT_NAME, SIDECAR_SECRET_ROOT,
};
use hookguard_operator::admission::handler::{Webhook, admit};
use hookguard_operator::admission::manifests::{self, REQUIRE_SIDECAR_MESSAGE};
use hookguard_operator::certs::{CA_BUNDLE_FIELD_MANAGER, CertPair, issue_ca, issue_serving};
use hookguard_sidecar::sign;
use hookguard_tests::app::{TestApp, outcome_of};
use hookguard_tests::control_plane::{TestNamespace, with_namespace};
use hookguard_tests::injection::{
    OTHER_INIT_CONTAINER, OtherWebhook, TestWebhook, TestWebhookOptions, create_endpoint,
    create_endpoint_at, dry_run, ensure_crd, eventually, injection_config, materialize_mounts, pod,
    remap_endpoint_files, sidecar_of,
};
use hookguard_tests::redis::RedisServer;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use kube::runtime::{reflector, watcher};
use kube::{Api, Resource as _};
use serde_json::json;

const SECRET: &str = "whsec-test-secret";
const REDIS_PASSWORD: &str = "redis-test-password";

fn labelled() -> [(&'static str, &'static str); 2] {
    [(LABEL_INJECT, "true"), ("app", "pay")]
}

/// The message of a refused API call.
fn refusal(result: kube::Result<Pod>) -> anyhow::Result<String> {
    match result {
        Ok(pod) => bail!("admitted, expected a refusal: {:?}", pod.metadata.name),
        Err(kube::Error::Api(status)) => Ok(status.message),
        Err(other) => Err(other.into()),
    }
}

/// The admission request the API server would send for `pod`.
fn request_for(pod: &Pod, namespace: &str) -> anyhow::Result<AdmissionRequest<Pod>> {
    let review: AdmissionReview<Pod> = serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "second-pass", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace, "operation": "CREATE", "userInfo": {},
            "object": pod, "dryRun": true,
        },
    }))?;
    Ok(review.try_into()?)
}

fn check_sidecar(pod: &Pod, endpoint: &str) -> anyhow::Result<()> {
    let spec = pod.spec.as_ref().context("no spec")?;
    let init = spec.init_containers.as_deref().unwrap_or_default();
    ensure!(
        init.first().map(|c| c.name.as_str()) == Some(SIDECAR_CONTAINER),
        "the sidecar must be the first init container: {init:?}"
    );
    ensure!(
        init.iter().filter(|c| c.name == SIDECAR_CONTAINER).count() == 1,
        "exactly one sidecar"
    );
    let sidecar = &init[0];
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    assert_eq!(
        sidecar.image.as_deref(),
        Some(hookguard_tests::injection::TEST_IMAGE)
    );
    let ports: Vec<_> = sidecar
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.name.as_deref())
        .collect();
    assert_eq!(ports, [SIDECAR_PORT_NAME, SIDECAR_ADMIN_PORT_NAME]);
    let security = sidecar
        .security_context
        .as_ref()
        .context("no securityContext")?;
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_owned()])
    );
    assert_eq!(
        security.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
    for (probe, path) in [
        (&sidecar.startup_probe, "/healthz"),
        (&sidecar.readiness_probe, "/readyz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .context("no probe")?;
        assert_eq!(get.path.as_deref(), Some(path));
    }
    let resources = sidecar.resources.as_ref().context("no resources")?;
    assert_eq!(
        resources.requests.as_ref().context("requests")?["cpu"].0,
        "10m"
    );
    let mounts: BTreeMap<&str, (&str, Option<bool>)> = sidecar
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.mount_path.as_str(), (m.name.as_str(), m.read_only)))
        .collect();
    let config_path = format!("{SIDECAR_CONFIG_ROOT}/{endpoint}");
    let secret_path = format!("{SIDECAR_SECRET_ROOT}/{endpoint}");
    assert_eq!(
        mounts.get(config_path.as_str()).map(|m| m.1),
        Some(Some(true)),
        "{mounts:?}"
    );
    assert_eq!(
        mounts.get(secret_path.as_str()).map(|m| m.1),
        Some(Some(true)),
        "{mounts:?}"
    );
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let config_volume = volumes
        .iter()
        .find(|v| Some(v.name.as_str()) == mounts.get(config_path.as_str()).map(|m| m.0))
        .context("config volume")?;
    assert_eq!(
        config_volume.config_map.as_ref().map(|c| c.name.as_str()),
        Some(format!("{endpoint}-sidecar").as_str())
    );
    let secret_volume = volumes
        .iter()
        .find(|v| Some(v.name.as_str()) == mounts.get(secret_path.as_str()).map(|m| m.0))
        .context("secret volume")?;
    assert_eq!(
        secret_volume
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref()),
        Some(format!("{endpoint}-signing").as_str())
    );
    ensure!(
        pod.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ANNOTATION_INJECTED)),
        "the injection is recorded in {ANNOTATION_INJECTED}"
    );
    Ok(())
}

#[tokio::test]
async fn a_labelled_pod_gets_the_sidecar_and_other_pods_are_unchanged() {
    with_namespace("inj-basic", |ns| async move {
        ensure_crd(&ns.client).await?;
        create_endpoint(
            &ns,
            "pay",
            8080,
            SECRET,
            Some(json!({"matchLabels": {"app": "pay"}})),
            true,
        )
        .await?;
        let webhook = TestWebhook::start_reachable(
            &ns,
            TestWebhookOptions {
                // Registered twice: the API server runs the second copy on the first one's
                // output, a real second pass.
                twice: true,
                also_namespaces: vec!["kube-system".into()],
                ..TestWebhookOptions::default()
            },
            "pay",
        )
        .await?;
        let pods: Api<Pod> = ns.api();

        // Selected by the endpoint's podSelector, no annotation.
        let created = pods
            .create(&PostParams::default(), &pod(Some("web"), &labelled(), &[])?)
            .await?;
        check_sidecar(&created, "pay")?;
        let app = &created.spec.as_ref().context("spec")?.containers[0];
        assert_eq!(app.name, "app", "the app container is untouched");

        // A second pass through the handler on its own output changes nothing.
        let endpoint = ns.api::<WebhookEndpoint>().get("pay").await?;
        let again = admit(
            &request_for(&created, &ns.name)?,
            &[&endpoint],
            &injection_config("memory"),
        );
        assert!(again.response.allowed);
        assert!(
            again.response.patch.is_none(),
            "second pass patched: {:?}",
            again.response.patch
        );

        // Not labelled: the API server does not even call the webhook.
        let plain = pods
            .create(
                &PostParams::default(),
                &pod(Some("plain"), &[("app", "pay")], &[])?,
            )
            .await?;
        assert!(sidecar_of(&plain).is_none());
        assert!(
            plain
                .spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .is_none_or(|v| v.iter().all(|v| !v.name.starts_with("hg-")))
        );
        assert!(
            plain
                .metadata
                .annotations
                .as_ref()
                .is_none_or(|a| !a.contains_key(ANNOTATION_INJECTED))
        );

        // Labelled, but in kube-system: excluded by the configuration.
        let system: Api<Pod> = Api::namespaced(ns.client.clone(), "kube-system");
        let in_system = dry_run(
            &system,
            &pod(None, &labelled(), &[(ANNOTATION_ENDPOINTS, "pay")])?,
        )
        .await?;
        assert!(
            sidecar_of(&in_system).is_none(),
            "kube-system must never be injected"
        );

        // Labelled, but host network: excluded by the match condition.
        let mut host = pod(None, &labelled(), &[])?;
        host.spec.as_mut().context("spec")?.host_network = Some(true);
        assert!(sidecar_of(&dry_run(&pods, &host).await?).is_none());

        webhook.unregister().await;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_missing_or_unready_endpoint_is_denied_with_its_name() {
    with_namespace("inj-deny", |ns| async move {
        ensure_crd(&ns.client).await?;
        create_endpoint(&ns, "pay", 8080, SECRET, None, true).await?;
        create_endpoint(&ns, "slow", 8080, SECRET, None, false).await?;
        let webhook =
            TestWebhook::start_reachable(&ns, TestWebhookOptions::default(), "pay").await?;
        let pods: Api<Pod> = ns.api();

        let unknown = refusal(
            pods.create(
                &PostParams::default(),
                &pod(
                    Some("a"),
                    &labelled(),
                    &[(ANNOTATION_ENDPOINTS, "pay,ghost")],
                )?,
            )
            .await,
        )?;
        assert!(
            unknown.contains("\"ghost\"") && unknown.contains("does not exist"),
            "{unknown}"
        );
        assert!(unknown.contains(&ns.name), "names the namespace: {unknown}");
        assert!(
            unknown.contains("read from the API server just now"),
            "says the cache was not the only source: {unknown}"
        );

        let unready = refusal(
            pods.create(
                &PostParams::default(),
                &pod(Some("b"), &labelled(), &[(ANNOTATION_ENDPOINTS, "slow")])?,
            )
            .await,
        )?;
        assert!(
            unready.contains("\"slow\"") && unready.contains("not Ready"),
            "{unready}"
        );

        let unselected = refusal(
            pods.create(
                &PostParams::default(),
                &pod(Some("c"), &[(LABEL_INJECT, "true")], &[])?,
            )
            .await,
        )?;
        assert!(unselected.contains("no WebhookEndpoint"), "{unselected}");

        let bad_quantity = refusal(
            pods.create(
                &PostParams::default(),
                &pod(
                    Some("d"),
                    &labelled(),
                    &[
                        (ANNOTATION_ENDPOINTS, "pay"),
                        ("hookguard.dev/sidecar-cpu-limit", "lots"),
                    ],
                )?,
            )
            .await,
        )?;
        assert!(
            bad_quantity.contains("hookguard.dev/sidecar-cpu-limit"),
            "{bad_quantity}"
        );

        // The refusal is also visible afterwards: a Warning event on the pod.
        let events: Api<Event> = ns.api();
        eventually(
            "a Warning event names the missing endpoint",
            Duration::from_secs(20),
            || {
                let events = events.clone();
                async move {
                    let list = events.list(&ListParams::default()).await?;
                    Ok(list.items.iter().any(|e| {
                        e.type_.as_deref() == Some("Warning")
                            && e.reason.as_deref() == Some("EndpointNotFound")
                            && e.note.as_deref().is_some_and(|n| n.contains("ghost"))
                    }))
                }
            },
        )
        .await?;
        webhook.unregister().await;
        Ok(())
    })
    .await;
}

/// The race that a reflector cache alone loses (`kubectl apply -f dir/`, a GitOps sync): an
/// endpoint made Ready and, at once, a pod naming it. Every pod must be injected on its first
/// creation, never refused with "does not exist" because the cache had not seen the endpoint.
#[tokio::test]
async fn an_endpoint_and_a_pod_created_back_to_back_inject_on_the_first_creation() {
    with_namespace("inj-b2b", |ns| async move {
        ensure_crd(&ns.client).await?;
        create_endpoint(&ns, "pay", 8080, SECRET, None, true).await?;
        let webhook = TestWebhook::start_reachable(&ns, TestWebhookOptions::default(), "pay").await?;
        let pods: Api<Pod> = ns.api();
        let stale = || {
            hookguard_operator::admission::metrics::metrics()
                .confirmations
                .get_or_create(&hookguard_operator::admission::metrics::ResultLabel {
                    result: "stale_cache",
                })
                .get()
        };
        let stale_before = stale();
        for i in 0..10 {
            let name = format!("pay-{i}");
            create_endpoint(&ns, &name, 8080, SECRET, None, true).await?;
            let created = pods
                .create(
                    &PostParams::default(),
                    &pod(Some(&name), &labelled(), &[(ANNOTATION_ENDPOINTS, &name)])?,
                )
                .await
                .with_context(|| format!("pod {name}, created right after its endpoint"))?;
            check_sidecar(&created, &name)?;
        }
        // Process-wide counter (tests run in parallel): a figure, not an assertion.
        eprintln!(
            "back to back: 10 of 10 injected at once; the cache had not seen the endpoint yet for {} of them",
            stale() - stale_before
        );
        webhook.unregister().await;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn two_endpoints_on_one_path_are_denied_naming_both() {
    with_namespace("inj-path", |ns| async move {
        ensure_crd(&ns.client).await?;
        create_endpoint(&ns, "pay", 8080, SECRET, None, true).await?;
        create_endpoint_at(&ns, "twin", "/pay", 8080, SECRET, None, true).await?;
        let webhook =
            TestWebhook::start_reachable(&ns, TestWebhookOptions::default(), "pay").await?;
        let pods: Api<Pod> = ns.api();
        let shared_path = refusal(
            pods.create(
                &PostParams::default(),
                &pod(
                    Some("p"),
                    &labelled(),
                    &[(ANNOTATION_ENDPOINTS, "twin,pay")],
                )?,
            )
            .await,
        )?;
        assert!(
            shared_path.contains("\"pay\" and \"twin\"") && shared_path.contains("path /pay"),
            "names both endpoints and the path: {shared_path}"
        );
        let one = pods
            .create(
                &PostParams::default(),
                &pod(Some("q"), &labelled(), &[(ANNOTATION_ENDPOINTS, "twin")])?,
            )
            .await?;
        assert!(sidecar_of(&one).is_some(), "one of them alone is injected");
        webhook.unregister().await;
        Ok(())
    })
    .await;
}

/// The cache-miss path, made certain: a webhook whose cache never hears of the namespace's
/// endpoints (listed once, empty, then frozen) and which may read the real API server. What
/// the API server has decides; a denial says it was read there; a cache that never listed is
/// bridged by the same read.
#[tokio::test]
async fn a_denial_is_confirmed_with_the_api_server_before_it_is_answered() {
    with_namespace("inj-miss", |ns| async move {
        ensure_crd(&ns.client).await?;
        create_endpoint(&ns, "pay", 8080, SECRET, None, true).await?;
        create_endpoint(&ns, "slow", 8080, SECRET, None, false).await?;
        let frozen = || {
            let (reader, mut writer) = reflector::store::<WebhookEndpoint>();
            writer.apply_watcher_event(&watcher::Event::Init);
            writer.apply_watcher_event(&watcher::Event::InitDone);
            reader
        };
        let webhook = |store| {
            Webhook::new(
                store,
                injection_config("memory"),
                "op".into(),
                None,
                Duration::from_secs(1),
            )
            .confirming_with(ns.client.clone(), Duration::from_secs(2))
        };
        let stale = webhook(frozen());
        let injected = answer(&stale, &ns.name, "pay").await?;
        ensure!(
            injected["allowed"] == true && !injected["patch"].is_null(),
            "injected from the API server's view: {injected}"
        );
        let missing = answer(&stale, &ns.name, "ghost").await?;
        let message = missing["status"]["message"].as_str().unwrap_or_default();
        ensure!(
            missing["allowed"] == false
                && message.contains("\"ghost\"")
                && message.contains("read from the API server just now"),
            "{missing}"
        );
        let unready = answer(&stale, &ns.name, "slow").await?;
        let message = unready["status"]["message"].as_str().unwrap_or_default();
        ensure!(
            unready["allowed"] == false
                && message.contains("not Ready")
                && message.contains("read from the API server just now"),
            "{unready}"
        );

        // The operator is starting: the cache has not listed at all.
        let (never_listed, _writer) = reflector::store::<WebhookEndpoint>();
        let starting_webhook = webhook(never_listed);
        let starting = answer(&starting_webhook, &ns.name, "pay").await?;
        ensure!(
            starting["allowed"] == true && !starting["patch"].is_null(),
            "injected while the cache loads: {starting}"
        );
        let missing_while_starting = answer(&starting_webhook, &ns.name, "ghost").await?;
        let message = missing_while_starting["status"]["message"]
            .as_str()
            .unwrap_or_default();
        ensure!(
            missing_while_starting["allowed"] == false
                && message.contains("\"ghost\"")
                && message.contains("read from the API server just now"),
            "{missing_while_starting}"
        );

        // A cache hit is answered from the cache, without asking the API server: an endpoint
        // only the cache knows (Ready there, absent from the API server) is injected.
        let (hit, mut writer) = reflector::store::<WebhookEndpoint>();
        let mut only_in_cache = ns.api::<WebhookEndpoint>().get("pay").await?;
        only_in_cache.metadata.name = Some("cached-only".into());
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(only_in_cache));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let from_cache = answer(&webhook(hit), &ns.name, "cached-only").await?;
        ensure!(
            from_cache["allowed"] == true && !from_cache["patch"].is_null(),
            "a cache hit must not need the API server: {from_cache}"
        );

        // Without a client (benchmarks, tests) the cache's word is final, as before.
        let cache_only = Webhook::new(
            frozen(),
            injection_config("memory"),
            "op".into(),
            None,
            Duration::from_secs(1),
        );
        let denied = answer(&cache_only, &ns.name, "pay").await?;
        ensure!(denied["allowed"] == false, "{denied}");
        Ok(())
    })
    .await;
}

/// `handler`'s response to a review of a labelled pod in `namespace` naming `endpoints`.
async fn answer(
    handler: &Webhook,
    namespace: &str,
    endpoints: &str,
) -> anyhow::Result<serde_json::Value> {
    let body = review_body(namespace, endpoints)?;
    let review: serde_json::Value = serde_json::from_slice(&handler.review(&body).await)?;
    Ok(review["response"].clone())
}

/// An `AdmissionReview` for a labelled pod in `namespace` naming `endpoints`.
fn review_body(namespace: &str, endpoints: &str) -> anyhow::Result<Vec<u8>> {
    let mut probe = pod(
        Some("probe"),
        &labelled(),
        &[(ANNOTATION_ENDPOINTS, endpoints)],
    )?;
    probe.metadata.namespace = Some(namespace.to_owned());
    Ok(serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "probe", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace, "operation": "CREATE", "userInfo": {},
            "object": probe, "dryRun": true,
        },
    }))?)
}

#[tokio::test]
async fn a_deployments_pods_get_the_same_sidecar() {
    with_namespace("inj-deploy", |ns| async move {
        ensure_crd(&ns.client).await?;
        create_endpoint(&ns, "pay", 8080, SECRET, Some(json!({"matchLabels": {"app": "pay"}})), true).await?;
        let webhook = TestWebhook::start_reachable(&ns, TestWebhookOptions::default(), "pay").await?;

        let template = json!({
            "metadata": {"labels": {LABEL_INJECT: "true", "app": "pay"}},
            "spec": {"containers": [{"name": "app", "image": "app:test", "ports": [{"containerPort": 8080}]}]},
        });
        let deployment: Deployment = ns
            .api::<Deployment>()
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "web"},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "pay"}}, "template": template},
                }))?,
            )
            .await?;
        // No controllers for Deployments run here: create what they would, through the API.
        let mut rs_template = template.clone();
        rs_template["metadata"]["labels"]["pod-template-hash"] = json!("5d8f7");
        let replica_set: ReplicaSet = ns
            .api::<ReplicaSet>()
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {
                        "name": "web-5d8f7", "labels": {"app": "pay", "pod-template-hash": "5d8f7"},
                        "ownerReferences": [deployment.controller_owner_ref(&()).context("owner ref")?],
                    },
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": {"app": "pay", "pod-template-hash": "5d8f7"}},
                        "template": rs_template,
                    },
                }))?,
            )
            .await?;
        let mut from_rs: Pod = serde_json::from_value(rs_template.clone())?;
        from_rs.metadata.generate_name = Some("web-5d8f7-".into());
        from_rs.metadata.owner_references =
            Some(vec![replica_set.controller_owner_ref(&()).context("owner ref")?]);
        let pods: Api<Pod> = ns.api();
        let created = pods.create(&PostParams::default(), &from_rs).await?;
        check_sidecar(&created, "pay")?;
        assert!(created.metadata.name.as_deref().is_some_and(|n| n.starts_with("web-5d8f7-")));

        // The same sidecar and volumes as a pod created directly.
        let direct = pods
            .create(&PostParams::default(), &serde_json::from_value({
                let mut direct = rs_template;
                direct["metadata"]["name"] = json!("direct");
                direct
            })?)
            .await?;
        let injected = |pod: &Pod| {
            let spec = pod.spec.clone().unwrap_or_default();
            (
                sidecar_of(pod).cloned(),
                spec.volumes,
                pod.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_INJECTED).cloned()),
            )
        };
        assert_eq!(injected(&created), injected(&direct));
        webhook.unregister().await;
        Ok(())
    })
    .await;
}

/// The sidecar's flags from the injected container's environment, as the binary reads them:
/// `HOOKGUARD_CONFIG_DIR` → `--config-dir`, `POD_NAME` → `--instance` (the flag reading it),
/// a `secretKeyRef` resolved from the real Secret and a `fieldRef` from the pod as the kubelet
/// would. Paths are remapped under `root` (where the mounts were laid out) and
/// the listen addresses moved to free loopback ports (the pod's own network namespace would
/// have them free); nothing else is rewritten.
async fn sidecar_argv(
    ns: &TestNamespace,
    pod: &Pod,
    container: &Container,
    root: &std::path::Path,
) -> anyhow::Result<Vec<String>> {
    let mut argv = vec!["hookguard-sidecar".to_owned()];
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), None) => value.clone(),
            (None, Some(source)) if source.field_ref.is_some() => {
                let field = source.field_ref.as_ref().map(|f| f.field_path.as_str());
                ensure!(
                    field == Some("metadata.name"),
                    "only metadata.name is used: {field:?}"
                );
                pod.metadata.name.clone().context("the pod has no name")?
            }
            (None, Some(source)) => {
                let selector = source
                    .secret_key_ref
                    .as_ref()
                    .context("only secretKeyRef is used")?;
                let secret = ns
                    .api::<k8s_openapi::api::core::v1::Secret>()
                    .get(&selector.name)
                    .await?;
                let bytes = secret
                    .data
                    .and_then(|d| d.get(&selector.key).cloned())
                    .with_context(|| {
                        format!("Secret {} has no key {}", selector.name, selector.key)
                    })?;
                String::from_utf8(bytes.0)?
            }
            _ => bail!(
                "env {} has neither or both of value and valueFrom",
                var.name
            ),
        };
        let flag = if var.name == hookguard_api::names::env::POD_NAME {
            "instance".to_owned()
        } else {
            var.name
                .strip_prefix("HOOKGUARD_")
                .with_context(|| format!("unexpected env {}", var.name))?
                .to_lowercase()
                .replace('_', "-")
        };
        let value = match flag.as_str() {
            "listen" | "admin-listen" => "127.0.0.1:0".to_owned(),
            "config-dir" => root
                .join(value.trim_start_matches('/'))
                .to_string_lossy()
                .into_owned(),
            _ => value,
        };
        argv.push(format!("--{flag}"));
        argv.push(value);
    }
    Ok(argv)
}

/// Waits, as the kubelet does, until `probe` (an HTTP GET on the admin port) answers 200.
async fn wait_probe_passes(
    probe: Option<&k8s_openapi::api::core::v1::Probe>,
    admin: std::net::SocketAddr,
    within: Duration,
) -> anyhow::Result<()> {
    let path = probe
        .and_then(|p| p.http_get.as_ref())
        .and_then(|get| get.path.clone())
        .context("no HTTP probe")?;
    let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let url = format!("http://{admin}{path}");
    eventually(&format!("{path} passes"), within, async || {
        let response = client
            .request(hyper::Request::get(&url).body(Full::new(Bytes::new()))?)
            .await?;
        Ok(response.status().as_u16() == 200)
    })
    .await
}

/// Runs the injected `sidecar` of `created` as the kubelet would: its mounts laid out from the
/// real Secret and ConfigMap, its environment as flags; waits until its startup probe passes
/// and checks its liveness probe. Returns it with the folder holding its files.
async fn run_injected_sidecar(
    ns: &TestNamespace,
    created: &Pod,
    sidecar: &Container,
) -> anyhow::Result<(hookguard_sidecar::Running, tempfile::TempDir)> {
    let root = tempfile::tempdir()?;
    materialize_mounts(ns, created, sidecar, root.path()).await?;
    let config_dir = root
        .path()
        .join(SIDECAR_CONFIG_ROOT.trim_start_matches('/'));
    remap_endpoint_files(&config_dir, root.path())?;
    let argv = sidecar_argv(ns, created, sidecar, root.path()).await?;
    ensure!(
        !argv
            .iter()
            .any(|a| a.contains(REDIS_PASSWORD) && a.starts_with("redis://")),
        "the password stays out of the URL"
    );
    let settings =
        hookguard_sidecar::Settings::try_from(hookguard_sidecar::Args::try_parse_from(&argv)?)?;
    let endpoints = hookguard_sidecar::load_endpoints(&settings.config_dir)?;
    let running = hookguard_sidecar::start(settings, &endpoints).await?;

    // The kubelet's probes, on the paths the container declares.
    let admin = running.admin_addr;
    wait_probe_passes(
        sidecar.startup_probe.as_ref(),
        admin,
        Duration::from_secs(10),
    )
    .await?;
    wait_probe_passes(
        sidecar.liveness_probe.as_ref(),
        admin,
        Duration::from_secs(10),
    )
    .await?;

    Ok((running, root))
}

#[tokio::test]
async fn the_injected_sidecar_verifies_and_deduplicates_a_delivery() {
    with_namespace("inj-e2e", |ns| async move {
        ensure_crd(&ns.client).await?;
        let app = TestApp::ok().await?;
        create_endpoint(&ns, "pay", app.port(), SECRET, None, true).await?;
        // A Redis with a password, which the sidecar gets from a Secret of the pod's
        // namespace through its environment.
        let redis = RedisServer::start()?;
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg(REDIS_PASSWORD)
            .query::<()>(&mut redis.connect()?)?;
        ns.api::<k8s_openapi::api::core::v1::Secret>()
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "redis"}, "stringData": {"password": REDIS_PASSWORD},
                }))?,
            )
            .await?;
        let webhook = TestWebhook::start_reachable(
            &ns,
            TestWebhookOptions {
                store: redis.url(),
                store_password: Some(("redis".into(), "password".into())),
                ..TestWebhookOptions::default()
            },
            "pay",
        )
        .await?;
        let created = ns
            .api::<Pod>()
            .create(
                &PostParams::default(),
                &pod(Some("web"), &labelled(), &[(ANNOTATION_ENDPOINTS, "pay")])?,
            )
            .await?;
        let sidecar = sidecar_of(&created).context("no sidecar")?.clone();
        // Everything is in the environment; the image's entrypoint is the binary.
        assert!(sidecar.command.is_none() && sidecar.args.is_none());

        let (running, _root) = run_injected_sidecar(&ns, &created, &sidecar).await?;
        // The kubelet sends traffic once the readiness probe passes (the store answers).
        wait_probe_passes(
            sidecar.readiness_probe.as_ref(),
            running.admin_addr,
            Duration::from_secs(30),
        )
        .await?;
        let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let body = r#"{"id":"evt_1","type":"invoice.paid"}"#;
        let deliver = |signature: String| {
            let client = client.clone();
            let url = format!("http://{}/pay", running.addr);
            async move {
                let request = hyper::Request::post(url)
                    .header("x-signature", signature)
                    .header("x-delivery-id", "d1")
                    .body(Full::new(Bytes::from_static(body.as_bytes())))?;
                let response = client.request(request).await?;
                let status = response.status().as_u16();
                let outcome = outcome_of(response.headers());
                let _ = response.into_body().collect().await?;
                Ok::<_, anyhow::Error>((status, outcome))
            }
        };
        let forged = deliver(sign::generic(b"wrong", body.as_bytes())).await?;
        assert_eq!(forged.0, 401, "{forged:?}");
        assert_eq!(
            app.total_arrivals(),
            0,
            "a forged delivery never reaches the app"
        );
        let first = deliver(sign::generic(SECRET.as_bytes(), body.as_bytes())).await?;
        assert_eq!(first.0, 200, "{first:?}");
        assert_eq!(app.commits("d1"), 1);
        let duplicate = deliver(sign::generic(SECRET.as_bytes(), body.as_bytes())).await?;
        assert_eq!(duplicate.0, 200, "{duplicate:?}");
        assert_eq!(duplicate.1.as_deref(), Some("duplicate"), "{duplicate:?}");
        assert_eq!(app.arrivals("d1"), 1, "the duplicate never reaches the app");
        // The delivery was recorded in Redis, through the password from the Secret.
        let mut authed = redis::Client::open(format!(
            "redis://:{REDIS_PASSWORD}@127.0.0.1:{}/0",
            redis.port()
        ))?
        .get_connection()?;
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut authed)?;
        ensure!(!keys.is_empty(), "no dedup record in Redis");
        running.shutdown();
        running.wait().await;
        webhook.unregister().await;
        Ok(())
    })
    .await;
}

/// A Redis outage must not hold back the app: the injected sidecar's startup probe (which
/// gates the app container) passes without the store, while its readiness probe (which
/// gates traffic) fails until the store answers.
#[tokio::test]
async fn a_redis_outage_holds_back_traffic_but_not_the_app_container() {
    with_namespace("inj-outage", |ns| async move {
        ensure_crd(&ns.client).await?;
        create_endpoint(&ns, "pay", 8080, SECRET, None, true).await?;
        // Nothing listens there: the store is down for the whole test.
        let down = format!("redis://127.0.0.1:{}/0", hookguard_tests::net::free_port()?);
        let webhook = TestWebhook::start_reachable(
            &ns,
            TestWebhookOptions {
                store: down,
                ..TestWebhookOptions::default()
            },
            "pay",
        )
        .await?;
        let created = ns
            .api::<Pod>()
            .create(
                &PostParams::default(),
                &pod(Some("web"), &labelled(), &[(ANNOTATION_ENDPOINTS, "pay")])?,
            )
            .await?;
        let sidecar = sidecar_of(&created).context("no sidecar")?.clone();
        // Waits for the startup probe, as the kubelet does before starting the app.
        let (running, _root) = run_injected_sidecar(&ns, &created, &sidecar).await?;
        let readiness = sidecar
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|get| get.path.clone())
            .context("no readiness probe")?;
        let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let response = client
            .request(
                hyper::Request::get(format!("http://{}{readiness}", running.admin_addr))
                    .body(Full::new(Bytes::new()))?,
            )
            .await?;
        assert_eq!(
            response.status().as_u16(),
            503,
            "no traffic while the store is down"
        );
        running.shutdown();
        running.wait().await;
        webhook.unregister().await;
        Ok(())
    })
    .await;
}

/// The policy and its binding, renamed for this test and bound to its namespace only.
async fn apply_policy(ns: &TestNamespace, operator_namespace: &str) -> anyhow::Result<String> {
    let name = format!("{}-{}", manifests::POLICY_NAME, ns.name);
    let mut policy = manifests::validating_admission_policy(operator_namespace)?;
    policy.metadata.name = Some(name.clone());
    let mut binding = manifests::validating_admission_policy_binding()?;
    binding.metadata.name = Some(name.clone());
    let spec = binding.spec.as_mut().context("binding spec")?;
    spec.policy_name = Some(name.clone());
    spec.match_resources = Some(serde_json::from_value(json!({
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns.name}},
    }))?);
    Api::<ValidatingAdmissionPolicy>::all(ns.client.clone())
        .create(&PostParams::default(), &policy)
        .await?;
    Api::<ValidatingAdmissionPolicyBinding>::all(ns.client.clone())
        .create(&PostParams::default(), &binding)
        .await?;
    Ok(name)
}

#[tokio::test]
async fn with_the_operator_down_opted_in_pods_are_rejected_by_the_policy() {
    with_namespace("inj-down", |ns| async move {
        ensure_crd(&ns.client).await?;
        create_endpoint(&ns, "pay", 8080, SECRET, None, true).await?;
        let mut webhook = TestWebhook::start(&ns, TestWebhookOptions::default()).await?;
        let policy = apply_policy(&ns, &webhook.operator_namespace).await?;
        webhook.wait_reachable(&ns, "pay").await?;
        let pods: Api<Pod> = ns.api();
        let injected = pods
            .create(
                &PostParams::default(),
                &pod(
                    Some("injected"),
                    &labelled(),
                    &[(ANNOTATION_ENDPOINTS, "pay")],
                )?,
            )
            .await?;
        check_sidecar(&injected, "pay")?;

        webhook.stop().await;

        // Fail open: a pod that did not opt in is created as if Hookguard were not there.
        let plain = pods
            .create(
                &PostParams::default(),
                &pod(Some("plain"), &[("app", "pay")], &[])?,
            )
            .await?;
        assert!(sidecar_of(&plain).is_none());

        // Closed for opted-in pods: the webhook is ignored, the policy rejects.
        let opted_in = pod(None, &labelled(), &[(ANNOTATION_ENDPOINTS, "pay")])?;
        eventually(
            "the policy rejects an opted-in pod without sidecar",
            Duration::from_secs(30),
            || {
                let pods = pods.clone();
                let opted_in = opted_in.clone();
                async move {
                    match dry_run(&pods, &opted_in).await {
                        Ok(pod) => {
                            ensure!(
                                sidecar_of(&pod).is_none(),
                                "the webhook is stopped but injected"
                            );
                            Ok(false)
                        }
                        Err(kube::Error::Api(_)) => Ok(true),
                        Err(other) => Err(other.into()),
                    }
                }
            },
        )
        .await?;
        let last = refusal(pods.create(&PostParams::default(), &opted_in).await)?;
        assert!(last.contains(REQUIRE_SIDECAR_MESSAGE), "{last}");
        assert!(last.contains(&policy), "names the policy: {last}");

        // A pod that carries the sidecar passes the same policy.
        let mut again: Pod = injected.clone();
        again.metadata = kube::api::ObjectMeta {
            name: Some("again".into()),
            labels: injected.metadata.labels.clone(),
            annotations: injected.metadata.annotations.clone(),
            ..Default::default()
        };
        dry_run(&pods, &again)
            .await
            .context("an injected pod passes the policy")?;

        for name in [&policy] {
            let _ = Api::<ValidatingAdmissionPolicyBinding>::all(ns.client.clone())
                .delete(name, &DeleteParams::default())
                .await;
            let _ = Api::<ValidatingAdmissionPolicy>::all(ns.client.clone())
                .delete(name, &DeleteParams::default())
                .await;
        }
        webhook.unregister().await;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn the_serving_certificate_is_renewed_while_the_api_server_keeps_calling() {
    with_namespace("inj-renew", |ns| async move {
        ensure_crd(&ns.client).await?;
        create_endpoint(&ns, "pay", 8080, SECRET, None, true).await?;
        let webhook = TestWebhook::start_reachable(
            &ns,
            TestWebhookOptions {
                cert_validity: Duration::from_secs(6),
                ..TestWebhookOptions::default()
            },
            "pay",
        )
        .await?;
        let pods: Api<Pod> = ns.api();
        let probe = pod(None, &labelled(), &[(ANNOTATION_ENDPOINTS, "pay")])?;
        let mut seen = vec![webhook.serving_cert().await?];
        let mut admissions = 0;
        let started = Instant::now();
        while seen.len() < 4 {
            ensure!(
                started.elapsed() < Duration::from_secs(40),
                "only {} certificates in 40 s",
                seen.len()
            );
            // failurePolicy Ignore would hide a failed call: every pod must come back injected.
            let admitted = dry_run(&pods, &probe).await?;
            ensure!(
                sidecar_of(&admitted).is_some(),
                "admission {admissions} was not injected (certificate {})",
                seen.len()
            );
            admissions += 1;
            let current = webhook.serving_cert().await?;
            if seen.last() != Some(&current) {
                seen.push(current);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "{admissions} admissions across {} serving certificates in {:?}",
            seen.len(),
            started.elapsed()
        );
        let expiry = hookguard_operator::admission::metrics::metrics()
            .cert_expiry
            .get();
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs(),
        )?;
        ensure!(
            expiry > now,
            "the expiry metric ({expiry}) is in the future"
        );
        webhook.unregister().await;
        Ok(())
    })
    .await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

async fn time_loop<F, Fut>(n: usize, mut once: F) -> anyhow::Result<(Duration, Duration)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        once().await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok((percentile(&times, 0.5), percentile(&times, 0.99)))
}

/// Admission latency: the handler alone (parse, cache lookup among 200 endpoints, render,
/// diff, encode) in process, and a dry-run pod creation through the API server with and
/// without the webhook call. Figures go to stderr; DESIGN.md's target is p99 ≤ 5 ms.
#[tokio::test]
async fn admission_latency() {
    with_namespace("inj-latency", |ns| async move {
        ensure_crd(&ns.client).await?;
        create_endpoint(&ns, "pay", 8080, SECRET, Some(json!({"matchLabels": {"app": "pay"}})), true).await?;

        let (reader, mut writer) = reflector::store::<WebhookEndpoint>();
        writer.apply_watcher_event(&watcher::Event::Init);
        let real = ns.api::<WebhookEndpoint>().get("pay").await?;
        for i in 0..200 {
            let mut other = real.clone();
            other.metadata.name = Some(format!("other-{i}"));
            other.metadata.namespace = Some(if i % 2 == 0 { ns.name.clone() } else { "elsewhere".into() });
            other.spec.pod_selector = Some(serde_json::from_value(json!({"matchLabels": {"app": format!("x{i}")}}))?);
            writer.apply_watcher_event(&watcher::Event::InitApply(other));
        }
        writer.apply_watcher_event(&watcher::Event::InitApply(real));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let handler = Arc::new(Webhook::new(reader, injection_config("memory"), "op".into(), None, Duration::from_secs(1)));
        let mut probe = pod(Some("bench"), &labelled(), &[])?;
        probe.metadata.namespace = Some(ns.name.clone());
        let body = serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "bench", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": ns.name, "operation": "CREATE", "userInfo": {},
                "object": probe, "dryRun": true,
            },
        }))?;
        let (handler_p50, handler_p99) = time_loop(2000, || {
            let handler = handler.clone();
            let body = body.clone();
            async move {
                let answer = handler.review(&body).await;
                ensure!(answer.windows(5).any(|w| w == b"patch"), "not injected");
                Ok(())
            }
        })
        .await?;
        // The cache-miss path: a cache that has not seen the endpoint, so the handler lists
        // the namespace's endpoints from the API server and decides from those.
        let (missing, mut writer) = reflector::store::<WebhookEndpoint>();
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let miss_handler = Arc::new(
            Webhook::new(missing, injection_config("memory"), "op".into(), None, Duration::from_secs(1))
                .confirming_with(ns.client.clone(), Duration::from_secs(2)),
        );
        let (miss_p50, miss_p99) = time_loop(200, || {
            let handler = miss_handler.clone();
            let body = body.clone();
            async move {
                let answer = handler.review(&body).await;
                ensure!(answer.windows(5).any(|w| w == b"patch"), "not injected on a cache miss");
                Ok(())
            }
        })
        .await?;

        let webhook = TestWebhook::start_reachable(&ns, TestWebhookOptions::default(), "pay").await?;
        let pods: Api<Pod> = ns.api();
        let opted_in = pod(None, &labelled(), &[])?;
        let plain = pod(None, &[("app", "pay")], &[])?;
        let connections = || hookguard_operator::admission::metrics::metrics().connections.get();
        let connections_before = connections();
        let (with_p50, with_p99) = time_loop(200, || {
            let pods = pods.clone();
            let opted_in = opted_in.clone();
            async move {
                ensure!(sidecar_of(&dry_run(&pods, &opted_in).await?).is_some());
                Ok(())
            }
        })
        .await?;
        let api_server_connections = connections() - connections_before;
        let (without_p50, without_p99) = time_loop(200, || {
            let pods = pods.clone();
            let plain = plain.clone();
            async move {
                dry_run(&pods, &plain).await?;
                Ok(())
            }
        })
        .await?;
        let mut https = webhook.round_trips(&body, 2000).await?;
        https.sort();
        let (https_p50, https_p99) = (percentile(&https, 0.5), percentile(&https, 0.99));
        eprintln!(
            "admission latency: handler p50 {handler_p50:?} p99 {handler_p99:?} (2000 reviews, 201 endpoints in the namespace's cache); \
             handler on a cache miss (a direct list of the namespace's one endpoint from the API server) p50 {miss_p50:?} p99 {miss_p99:?} (200); \
             over HTTPS, one kept-alive connection: p50 {https_p50:?} p99 {https_p99:?} (2000); \
             dry-run pod create through the API server: with webhook p50 {with_p50:?} p99 {with_p99:?}, \
             without (not opted in) p50 {without_p50:?} p99 {without_p99:?} (200 each); \
             the API server opened {api_server_connections} TLS connections for its 200 calls"
        );
        webhook.unregister().await;
        Ok(())
    })
    .await;
}

/// Applies `bundle` as every webhook's caBundle of `config`, as cert-manager's CA injector
/// would (its own field manager).
async fn inject_ca(client: &kube::Client, config: &str, bundle: &[u8]) -> anyhow::Result<()> {
    use base64::Engine as _;
    let api = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let existing = api.get(config).await?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bundle);
    let webhooks: Vec<_> = existing
        .webhooks
        .iter()
        .flatten()
        .map(|w| json!({"name": w.name, "clientConfig": {"caBundle": encoded}}))
        .collect();
    api.patch(
        config,
        &PatchParams::apply("test-ca-injector").force(),
        &Patch::Apply(json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": config}, "webhooks": webhooks,
        })),
    )
    .await?;
    Ok(())
}

/// Writes a serving certificate for 127.0.0.1 signed by `ca` into `dir`, replacing the files
/// by rename as a volume update would.
fn write_serving(dir: &std::path::Path, ca: &CertPair, validity: Duration) -> anyhow::Result<()> {
    let serving = issue_serving(
        &ca.cert_pem,
        &ca.key_pem,
        &["127.0.0.1".to_owned()],
        validity,
        std::time::SystemTime::now(),
    )?;
    for (name, bytes) in [
        ("tls.crt", &serving.cert_pem),
        ("tls.key", &serving.key_pem),
    ] {
        let staging = dir.join(format!(".{name}.new"));
        std::fs::write(&staging, bytes)?;
        std::fs::rename(&staging, dir.join(name))?;
    }
    Ok(())
}

#[tokio::test]
async fn external_certificates_are_reloaded_and_the_ca_bundle_left_alone() {
    with_namespace("inj-external", |ns| async move {
        ensure_crd(&ns.client).await?;
        create_endpoint(&ns, "pay", 8080, SECRET, None, true).await?;
        let dir = tempfile::tempdir()?;
        let now = std::time::SystemTime::now();
        let first_ca = issue_ca(Duration::from_secs(3600), now)?;
        // Short-lived, so the webhook re-reads the files every few seconds.
        write_serving(dir.path(), &first_ca, Duration::from_secs(24))?;
        let webhook = TestWebhook::start(
            &ns,
            TestWebhookOptions {
                external_cert_dir: Some(dir.path().to_owned()),
                ..TestWebhookOptions::default()
            },
        )
        .await?;
        inject_ca(&ns.client, &webhook.config_name, &first_ca.cert_pem).await?;
        webhook.wait_reachable(&ns, "pay").await?;

        // cert-manager renews with another CA: the webhook picks the files up and serves the
        // new certificate on new connections.
        let second_ca = issue_ca(Duration::from_secs(3600), now)?;
        ensure!(webhook.serves_cert_of(&first_ca.cert_pem).await?);
        ensure!(!webhook.serves_cert_of(&second_ca.cert_pem).await?);
        write_serving(dir.path(), &second_ca, Duration::from_secs(24))?;
        eventually(
            "the webhook serves the new files",
            Duration::from_secs(20),
            || webhook.serves_cert_of(&second_ca.cert_pem),
        )
        .await?;
        // The CA injector updates the bundle; the API server reaches the webhook again.
        inject_ca(&ns.client, &webhook.config_name, &second_ca.cert_pem).await?;
        webhook.wait_reachable(&ns, "pay").await?;

        // The operator never wrote the bundle in this mode.
        let config = Api::<MutatingWebhookConfiguration>::all(ns.client.clone())
            .get(&webhook.config_name)
            .await?;
        let managers: Vec<_> = config
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|f| f.manager.clone())
            .collect();
        ensure!(
            !managers.iter().any(|m| m == CA_BUNDLE_FIELD_MANAGER),
            "managers: {managers:?}"
        );
        webhook.unregister().await;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn two_replicas_agree_on_one_certificate() {
    with_namespace("inj-replicas", |ns| async move {
        ensure_crd(&ns.client).await?;
        create_endpoint(&ns, "pay", 8080, SECRET, None, true).await?;
        // Both start at once, racing to create the certificate Secret.
        let first = TestWebhook::start(&ns, TestWebhookOptions::default()).await?;
        let second = TestWebhook::start(
            &ns,
            TestWebhookOptions {
                replica_of: Some((first.operator_namespace.clone(), first.config_name.clone())),
                ..TestWebhookOptions::default()
            },
        )
        .await?;
        first.wait_reachable(&ns, "pay").await?;

        // Every pod through both replicas, failing closed: a replica serving a certificate the
        // bundle does not trust would reject the pod.
        let api = Api::<MutatingWebhookConfiguration>::all(ns.client.clone());
        let mut config = api.get(&first.config_name).await?;
        let webhooks = config.webhooks.as_mut().context("no webhooks")?;
        webhooks[0].failure_policy = Some("Fail".into());
        let mut other = webhooks[0].clone();
        other.name = "replica.inject.hookguard.dev".into();
        other.client_config.url = Some(second.url.clone());
        webhooks.push(other);
        api.replace(&first.config_name, &PostParams::default(), &config)
            .await?;

        let pods: Api<Pod> = ns.api();
        let probe = pod(None, &labelled(), &[(ANNOTATION_ENDPOINTS, "pay")])?;
        let mut injected = 0;
        let started = Instant::now();
        while injected < 10 {
            ensure!(
                started.elapsed() < Duration::from_secs(30),
                "only {injected} pods through both replicas"
            );
            match dry_run(&pods, &probe).await {
                Ok(pod) => {
                    ensure!(sidecar_of(&pod).is_some(), "admitted without sidecar");
                    injected += 1;
                }
                // The API server picks up the new configuration within a moment.
                Err(kube::Error::Api(status)) if status.message.contains("replica.inject") => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(other) => return Err(other.into()),
            }
        }
        let secrets = ns.plane.client().await.map(|c| {
            Api::<k8s_openapi::api::core::v1::Secret>::namespaced(c, &first.operator_namespace)
        })?;
        let bundle = secrets
            .get(&first.cert_secret)
            .await?
            .data
            .context("no data")?["ca.crt"]
            .0
            .clone();
        ensure!(
            String::from_utf8(bundle)?
                .matches("BEGIN CERTIFICATE")
                .count()
                == 1,
            "one CA for both replicas"
        );
        drop(second);
        first.unregister().await;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn another_webhook_after_ours_triggers_a_reinvocation_that_keeps_the_sidecar_first() {
    with_namespace("inj-reinvoke", |ns| async move {
        ensure_crd(&ns.client).await?;
        create_endpoint(&ns, "pay", 8080, SECRET, None, true).await?;
        let webhook =
            TestWebhook::start_reachable(&ns, TestWebhookOptions::default(), "pay").await?;
        let other = OtherWebhook::start().await?;
        let other_name = format!("zz-other-{}", ns.name);
        other.register(&ns.client, &other_name, &ns.name).await?;

        let pods: Api<Pod> = ns.api();
        let probe = pod(None, &labelled(), &[(ANNOTATION_ENDPOINTS, "pay")])?;
        // Once the other webhook is in force, its container is in every pod; ours, reinvoked
        // after it, puts the sidecar back in front.
        eventually("the other webhook runs", Duration::from_secs(30), || {
            let pods = pods.clone();
            let probe = probe.clone();
            async move {
                let admitted = dry_run(&pods, &probe).await?;
                Ok(admitted
                    .spec
                    .and_then(|s| s.init_containers)
                    .is_some_and(|c| c.iter().any(|c| c.name == OTHER_INIT_CONTAINER)))
            }
        })
        .await?;
        let created = pods.create(&PostParams::default(), &probe).await?;
        let names: Vec<String> = created
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .into_iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(names, [SIDECAR_CONTAINER, OTHER_INIT_CONTAINER]);
        check_sidecar(&created, "pay")?;

        let _ = Api::<MutatingWebhookConfiguration>::all(ns.client.clone())
            .delete(&other_name, &DeleteParams::default())
            .await;
        webhook.unregister().await;
        Ok(())
    })
    .await;
}
