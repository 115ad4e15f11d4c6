use hookguard_api::crd::WebhookEndpoint;
use serde_json::json;

use super::*;
use crate::admission::handler::admit;
use kube::core::admission::{AdmissionRequest, AdmissionReview};

fn config() -> InjectionConfig {
    InjectionConfig {
        image: "sidecar:test".into(),
        image_pull_policy: "IfNotPresent".into(),
        store: "redis://redis:6379/0".into(),
        store_password: Some(("redis".into(), "password".into())),
        store_cluster: false,
        resources: SidecarResources {
            cpu_request: Some("10m".into()),
            memory_request: Some("16Mi".into()),
            cpu_limit: None,
            memory_limit: Some("64Mi".into()),
        },
    }
}

fn endpoint(name: &str, ready: bool, selector: Option<serde_json::Value>) -> WebhookEndpoint {
    let mut spec =
        json!({"scheme": "Generic", "path": format!("/{name}"), "upstream": {"port": 8080}});
    if let Some(selector) = selector {
        spec["podSelector"] = selector;
    }
    serde_json::from_value(json!({
        "apiVersion": "hookguard.dev/v1alpha1", "kind": "WebhookEndpoint",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": spec,
        "status": {
            "secretName": format!("{name}-signing"),
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                "reason": if ready {"Reconciled"} else {"SecretMissing"}, "message": "m",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        },
    }))
    .unwrap()
}

#[allow(clippy::needless_pass_by_value)] // call sites read better with json!(…) inline
fn pod(annotations: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"generateName": "web-", "namespace": "shop",
            "labels": {"app": "payments", "hookguard.dev/inject": "true"},
            "annotations": annotations},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "app"}],
            "containers": [{"name": "app", "image": "app", "ports": [{"containerPort": 8080}]}],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }))
    .unwrap()
}

fn request(pod: &Pod) -> AdmissionRequest<Pod> {
    let review: AdmissionReview<Pod> = serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE", "userInfo": {},
            "object": pod, "dryRun": false,
        },
    }))
    .unwrap();
    review.try_into().unwrap()
}

#[test]
fn injects_a_native_sidecar_first_with_volumes_and_a_locked_down_context() {
    let a = endpoint("a", true, Some(json!({"matchLabels": {"app": "payments"}})));
    let b = endpoint("other", true, Some(json!({"matchLabels": {"app": "else"}})));
    let pod = pod(json!({}));
    let selected = select_endpoints(&pod, "shop", &[&b, &a]).unwrap();
    assert_eq!(selected.len(), 1);
    let out = render_pod(&pod, &selected, &config()).unwrap();
    let spec = out.spec.as_ref().unwrap();
    let init = spec.init_containers.as_ref().unwrap();
    assert_eq!(init[0].name, SIDECAR_CONTAINER);
    assert_eq!(init[1].name, "migrate");
    let sidecar = &init[0];
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    let sc = sidecar.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_owned()][..])
    );
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    let mounts = sidecar.volume_mounts.as_ref().unwrap();
    assert!(
        mounts
            .iter()
            .all(|m| m.read_only == Some(true) && m.sub_path.is_none())
    );
    assert!(
        mounts
            .iter()
            .any(|m| m.mount_path == "/etc/hookguard/endpoints/a")
    );
    assert!(
        mounts
            .iter()
            .any(|m| m.mount_path == "/etc/hookguard/secrets/a")
    );
    let volumes = spec.volumes.as_ref().unwrap();
    assert_eq!(volumes.len(), 3);
    assert_eq!(volumes[1].config_map.as_ref().unwrap().name, "a-sidecar");
    assert_eq!(
        volumes[2].secret.as_ref().unwrap().secret_name.as_deref(),
        Some("a-signing")
    );
    assert!(sidecar.startup_probe.is_some() && sidecar.readiness_probe.is_some());
    let env = sidecar.env.as_ref().unwrap();
    let value = |name: &str| env.iter().find(|e| e.name == name).cloned().unwrap();
    assert_eq!(
        value("HOOKGUARD_STORE").value.as_deref(),
        Some("redis://redis:6379/0")
    );
    let password = value("HOOKGUARD_STORE_PASSWORD")
        .value_from
        .unwrap()
        .secret_key_ref
        .unwrap();
    assert_eq!(
        (password.name.as_str(), password.key.as_str()),
        ("redis", "password")
    );
    let injected = &out.metadata.annotations.as_ref().unwrap()[ANNOTATION_INJECTED];
    let hex = injected.strip_prefix("sha256:").unwrap();
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "a whole SHA-256 in hex: {injected}"
    );
    assert!(
        env.iter().all(|e| e.name != "HOOKGUARD_STORE_MODE"),
        "standalone is the sidecar's default"
    );
    let pod_name = value("POD_NAME").value_from.unwrap().field_ref.unwrap();
    assert_eq!(
        pod_name.field_path, "metadata.name",
        "the sidecar names itself after its pod (delivery log, /keys)"
    );
}

#[test]
fn a_cluster_store_is_passed_to_the_sidecar() {
    let config = InjectionConfig {
        store_cluster: true,
        ..config()
    };
    let store_env = store_env(&config);
    let mode = store_env
        .iter()
        .find(|e| e.name == "HOOKGUARD_STORE_MODE")
        .unwrap();
    assert_eq!(mode.value.as_deref(), Some("cluster"));
}

#[test]
fn rendering_twice_changes_nothing() {
    let a = endpoint("a", true, None);
    let pod = pod(json!({ANNOTATION_ENDPOINTS: "a"}));
    let first = admit(&request(&pod), &[&a], &config());
    assert_eq!(first.result, "injected");
    let selected = select_endpoints(&pod, "shop", &[&a]).unwrap();
    let once = render_pod(&pod, &selected, &config()).unwrap();
    let twice = render_pod(&once, &selected, &config()).unwrap();
    assert_eq!(once, twice);
    assert!(patch(&once, &twice).unwrap().0.is_empty());
    // The API server defaults the added fields before a reinvocation sees them.
    let mut defaulted = serde_json::to_value(&once).unwrap();
    defaulted["spec"]["initContainers"][0]["terminationMessagePath"] =
        json!("/dev/termination-log");
    defaulted["spec"]["initContainers"][0]["readinessProbe"]["timeoutSeconds"] = json!(1);
    defaulted["spec"]["volumes"][1]["configMap"]["defaultMode"] = json!(420);
    let defaulted: Pod = serde_json::from_value(defaulted).unwrap();
    let reinvoked = admit(&request(&defaulted), &[&a], &config());
    assert_eq!(reinvoked.result, "unchanged");
    assert!(reinvoked.response.patch.is_none());
    let again = admit(&request(&once), &[&a], &config());
    assert_eq!(again.result, "unchanged");
    assert!(again.response.patch.is_none());

    // The patch the API server gets, applied to the pod, gives the rendered pod.
    let mut applied = serde_json::to_value(&pod).unwrap();
    let ops: json_patch::Patch =
        serde_json::from_slice(first.response.patch.as_ref().unwrap()).unwrap();
    json_patch::patch(&mut applied, &ops).unwrap();
    assert_eq!(applied, serde_json::to_value(&once).unwrap());
}

#[test]
fn an_unknown_or_unready_endpoint_is_denied_by_name() {
    let ready = endpoint("a", true, None);
    let not_ready = endpoint("b", false, None);
    let missing = admit(
        &request(&pod(json!({ANNOTATION_ENDPOINTS: "a,nope"}))),
        &[&ready],
        &config(),
    );
    assert!(!missing.response.allowed);
    assert!(
        missing.response.result.message.contains("\"nope\""),
        "{}",
        missing.response.result.message
    );
    assert_eq!(missing.skipped.unwrap().0, "EndpointNotFound");

    let unready = admit(
        &request(&pod(json!({ANNOTATION_ENDPOINTS: "b"}))),
        &[&not_ready],
        &config(),
    );
    assert!(!unready.response.allowed);
    assert!(
        unready.response.result.message.contains("\"b\"")
            && unready.response.result.message.contains("not Ready")
    );

    let none = admit(&request(&pod(json!({}))), &[&ready], &config());
    assert!(!none.response.allowed);
    assert_eq!(none.skipped.unwrap().0, "NoEndpointSelected");
}

#[test]
fn resources_come_from_flags_and_annotations_and_bad_ones_are_denied() {
    let a = endpoint("a", true, None);
    let pod_ = pod(
        json!({ANNOTATION_ENDPOINTS: "a", ANNOTATION_CPU_LIMIT: "500m", ANNOTATION_MEMORY_REQUEST: "32Mi"}),
    );
    let selected = select_endpoints(&pod_, "shop", &[&a]).unwrap();
    let out = render_pod(&pod_, &selected, &config()).unwrap();
    let resources = out.spec.unwrap().init_containers.unwrap()[0]
        .resources
        .clone()
        .unwrap();
    assert_eq!(resources.limits.as_ref().unwrap()["cpu"].0, "500m");
    assert_eq!(resources.limits.as_ref().unwrap()["memory"].0, "64Mi");
    assert_eq!(resources.requests.as_ref().unwrap()["memory"].0, "32Mi");
    assert_eq!(resources.requests.as_ref().unwrap()["cpu"].0, "10m");

    let bad = admit(
        &request(&pod(
            json!({ANNOTATION_ENDPOINTS: "a", ANNOTATION_CPU_LIMIT: "lots"}),
        )),
        &[&a],
        &config(),
    );
    assert!(!bad.response.allowed);
    assert!(bad.response.result.message.contains(ANNOTATION_CPU_LIMIT));
}

#[test]
fn quantities_are_recognised() {
    for good in ["1", "10m", "0.5", "64Mi", "1Gi", "1e3", "100k"] {
        assert!(is_quantity(good), "{good}");
    }
    for bad in ["", "m", "lots", "1.2.3", "10 m", "5MB"] {
        assert!(!is_quantity(bad), "{bad}");
    }
}

#[test]
fn a_secret_ref_mounts_only_its_key_as_current() {
    let mut ep = endpoint("stripe", true, None);
    ep.spec.secret =
        serde_json::from_value(json!({"secretRef": {"name": "whsec", "key": "secret"}})).unwrap();
    ep.status.as_mut().unwrap().secret_name = Some("whsec".into());
    let pod_ = pod(json!({ANNOTATION_ENDPOINTS: "stripe"}));
    let selected = select_endpoints(&pod_, "shop", &[&ep]).unwrap();
    let (_, volumes) = build_sidecar(&selected, &config(), ResourceRequirements::default());
    let secret = volumes[1].secret.as_ref().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("whsec"));
    let items = secret.items.as_ref().unwrap();
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        ("secret", SECRET_REF_FILE)
    );
}

#[test]
fn a_public_key_mounts_the_operators_secret_whole_like_a_generated_one() {
    let mut ep = endpoint("grid", true, None);
    ep.spec.secret = serde_json::from_value(json!({"publicKey": "MFkw"})).unwrap();
    ep.status.as_mut().unwrap().secret_name = Some("grid-signing".into());
    let pod_ = pod(json!({ANNOTATION_ENDPOINTS: "grid"}));
    let selected = select_endpoints(&pod_, "shop", &[&ep]).unwrap();
    let (_, volumes) = build_sidecar(&selected, &config(), ResourceRequirements::default());
    let secret = volumes[1].secret.as_ref().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("grid-signing"));
    assert_eq!(secret.items, None, "every key file, public-key among them");
}

#[test]
fn long_or_dotted_names_still_make_valid_volume_names() {
    let long = "a".repeat(200);
    for name in ["x.y", long.as_str()] {
        let volume = volume_name("secret", name);
        assert!(volume.len() <= 63 && !volume.contains('.'), "{volume}");
    }
    assert_eq!(volume_name("config", "pay"), "hg-config-pay");
}

#[test]
fn pods_not_opted_in_are_untouched() {
    let a = endpoint("a", true, Some(json!({})));
    let mut plain = pod(json!({}));
    plain
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .remove("hookguard.dev/inject");
    let decision = admit(&request(&plain), &[&a], &config());
    assert!(decision.response.allowed && decision.response.patch.is_none());
}

#[test]
fn two_endpoints_on_one_path_are_denied_naming_both() {
    let mut a = endpoint("a", true, Some(json!({"matchLabels": {"app": "payments"}})));
    let mut b = endpoint("b", true, None);
    a.spec.path = "/webhooks/pay".into();
    b.spec.path = "/webhooks/pay".into();
    let by_annotation = admit(
        &request(&pod(json!({ANNOTATION_ENDPOINTS: "b,a"}))),
        &[&a, &b],
        &config(),
    );
    assert!(!by_annotation.response.allowed);
    let message = &by_annotation.response.result.message;
    assert!(
        message.contains("\"a\" and \"b\"") && message.contains("/webhooks/pay"),
        "{message}"
    );
    assert_eq!(by_annotation.skipped.unwrap().0, "PathConflict");

    // One of them alone is fine; a selector plus an annotation naming the other is not
    // possible (the annotation wins), so the conflict needs both chosen.
    let alone = admit(
        &request(&pod(json!({ANNOTATION_ENDPOINTS: "b"}))),
        &[&a, &b],
        &config(),
    );
    assert_eq!(alone.result, "injected");
    b.spec.pod_selector = a.spec.pod_selector.clone();
    let by_selector = admit(&request(&pod(json!({}))), &[&a, &b], &config());
    assert_eq!(by_selector.skipped.unwrap().0, "PathConflict");
}
