//! The cluster objects that route pods to the webhook and guard opted-in pods: the
//! `MutatingWebhookConfiguration` and the `ValidatingAdmissionPolicy` with its binding. Pure
//! renderers, so the tests install exactly what the chart installs.
//!
//! The chart (`charts/hookguard`) templates the same fields; keep them in step:
//!
//! `MutatingWebhookConfiguration` `<config name>` (default `hookguard`), one webhook
//! `inject.hookguard.dev`:
//! - `clientConfig.service`: `{namespace: <operator ns>, name: <service>, path: /mutate, port: 443}`;
//!   no `caBundle` (the operator writes it with server-side apply, field manager
//!   `hookguard-operator-cabundle`; with cert-manager its CA injector does)
//! - `rules`: `[{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods], scope: Namespaced}]`
//! - `objectSelector.matchLabels`: `{hookguard.dev/inject: "true"}`
//! - `namespaceSelector.matchExpressions`: `[{key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, <operator ns>]}]`
//! - `matchConditions`: `[{name: not-host-network, expression: "!has(object.spec.hostNetwork) || !object.spec.hostNetwork"}]`
//! - `failurePolicy: Ignore`, `timeoutSeconds: 5`, `sideEffects: None`,
//!   `reinvocationPolicy: IfNeeded`, `admissionReviewVersions: [v1]`, `matchPolicy: Equivalent`
//!
//! `ValidatingAdmissionPolicy` `hookguard-require-sidecar` (`admissionregistration.k8s.io/v1`):
//! - `failurePolicy: Fail`; `matchConstraints.resourceRules`: pods, CREATE;
//!   `matchConstraints.objectSelector` and `namespaceSelector` as the webhook's
//! - `matchConditions`: the same `not-host-network` condition (host-network pods are never injected)
//! - `validations[0].expression`: [`REQUIRE_SIDECAR_EXPRESSION`], `message`: [`REQUIRE_SIDECAR_MESSAGE`], `reason: Forbidden`
//!
//! `ValidatingAdmissionPolicyBinding` `hookguard-require-sidecar`: `policyName` the policy,
//! `validationActions: [Deny]`.

use hookguard_api::names::{LABEL_INJECT, SIDECAR_CONTAINER};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::json;

/// Name of the one webhook inside the configuration.
pub const WEBHOOK_NAME: &str = "inject.hookguard.dev";
/// The path the webhook serves.
pub const WEBHOOK_PATH: &str = "/mutate";
/// Name of the policy and its binding.
pub const POLICY_NAME: &str = "hookguard-require-sidecar";
/// Host-network pods are never injected (the sidecar's ports would collide on the node).
pub const NOT_HOST_NETWORK: &str = "!has(object.spec.hostNetwork) || !object.spec.hostNetwork";
/// Upper bound on the time the API server waits for the webhook before ignoring it.
pub const TIMEOUT_SECONDS: i32 = 5;

/// The policy's CEL: an opted-in pod must carry the sidecar as an init container.
pub fn require_sidecar_expression() -> String {
    format!(
        "has(object.spec.initContainers) && object.spec.initContainers.exists(c, c.name == '{SIDECAR_CONTAINER}')"
    )
}

/// The policy's message.
pub const REQUIRE_SIDECAR_MESSAGE: &str = "this pod is labelled hookguard.dev/inject=true but has no hookguard-sidecar: the Hookguard operator may be down or the WebhookEndpoint is not Ready; check the operator's pods and `kubectl get webhookendpoints`, then create the pod again";

/// Where the API server reaches the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookClient {
    /// A Service in the cluster (production): namespace, name, port.
    Service {
        /// The Service's namespace.
        namespace: String,
        /// The Service's name.
        name: String,
        /// The Service port.
        port: i32,
    },
    /// A URL (tests: `https://127.0.0.1:<port>/mutate`).
    Url(String),
}

/// The namespace selector shared by the webhook and the policy: never `kube-system`, never
/// the operator's own namespace (the operator must be able to start when it is down).
fn namespace_selector(operator_namespace: &str) -> serde_json::Value {
    json!({ "matchExpressions": [{
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": ["kube-system", operator_namespace],
    }]})
}

/// The `MutatingWebhookConfiguration` `name`, without `caBundle` unless `ca_bundle` is given
/// (tests pass their CA; the operator writes it with server-side apply).
pub fn mutating_webhook_configuration(
    name: &str,
    operator_namespace: &str,
    client: &WebhookClient,
    ca_bundle: Option<&[u8]>,
) -> Result<MutatingWebhookConfiguration, serde_json::Error> {
    let mut client_config = match client {
        WebhookClient::Service {
            namespace,
            name,
            port,
        } => json!({ "service": {
            "namespace": namespace, "name": name, "path": WEBHOOK_PATH, "port": port,
        }}),
        WebhookClient::Url(url) => json!({ "url": url }),
    };
    if let Some(ca) = ca_bundle {
        client_config["caBundle"] = json!(base64_encode(ca));
    }
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": { "name": name, "labels": { "app.kubernetes.io/managed-by": "hookguard" } },
        "webhooks": [{
            "name": WEBHOOK_NAME,
            "clientConfig": client_config,
            "rules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                "resources": ["pods"], "scope": "Namespaced",
            }],
            "objectSelector": { "matchLabels": { LABEL_INJECT: "true" } },
            "namespaceSelector": namespace_selector(operator_namespace),
            "matchConditions": [{ "name": "not-host-network", "expression": NOT_HOST_NETWORK }],
            "failurePolicy": "Ignore",
            "matchPolicy": "Equivalent",
            "timeoutSeconds": TIMEOUT_SECONDS,
            "sideEffects": "None",
            "reinvocationPolicy": "IfNeeded",
            "admissionReviewVersions": ["v1"],
        }],
    }))
}

/// The configuration `--webhook-url` writes (an operator outside the cluster): calls `url`,
/// and when `namespaces` is not empty only for pods in them, so a developer's operator scoped
/// with `--namespace` leaves the rest of a shared cluster alone.
pub fn development_webhook_configuration(
    name: &str,
    operator_namespace: &str,
    url: &str,
    namespaces: &[String],
) -> Result<MutatingWebhookConfiguration, serde_json::Error> {
    let client = WebhookClient::Url(url.to_owned());
    let mut configuration =
        mutating_webhook_configuration(name, operator_namespace, &client, None)?;
    if !namespaces.is_empty() {
        let only_these: LabelSelector = serde_json::from_value(json!({ "matchExpressions": [{
            "key": "kubernetes.io/metadata.name",
            "operator": "In",
            "values": namespaces,
        }]}))?;
        for webhook in configuration.webhooks.iter_mut().flatten() {
            webhook.namespace_selector = Some(only_these.clone());
        }
    }
    Ok(configuration)
}

/// The `ValidatingAdmissionPolicy` rejecting opted-in pods without the sidecar.
pub fn validating_admission_policy(
    operator_namespace: &str,
) -> Result<ValidatingAdmissionPolicy, serde_json::Error> {
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": { "name": POLICY_NAME, "labels": { "app.kubernetes.io/managed-by": "hookguard" } },
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [{
                    "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                    "resources": ["pods"], "scope": "Namespaced",
                }],
                "objectSelector": { "matchLabels": { LABEL_INJECT: "true" } },
                "namespaceSelector": namespace_selector(operator_namespace),
            },
            "matchConditions": [{ "name": "not-host-network", "expression": NOT_HOST_NETWORK }],
            "validations": [{
                "expression": require_sidecar_expression(),
                "message": REQUIRE_SIDECAR_MESSAGE,
                "reason": "Forbidden",
            }],
        },
    }))
}

/// The binding that puts [`validating_admission_policy`] into force.
pub fn validating_admission_policy_binding()
-> Result<ValidatingAdmissionPolicyBinding, serde_json::Error> {
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": { "name": POLICY_NAME, "labels": { "app.kubernetes.io/managed-by": "hookguard" } },
        "spec": { "policyName": POLICY_NAME, "validationActions": ["Deny"] },
    }))
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_fails_open_and_only_sees_opted_in_pod_creations() {
        let config = mutating_webhook_configuration(
            "hookguard",
            "hookguard-system",
            &WebhookClient::Service {
                namespace: "hookguard-system".into(),
                name: "hookguard-webhook".into(),
                port: 443,
            },
            None,
        )
        .unwrap();
        let webhook = &config.webhooks.unwrap()[0];
        assert_eq!(webhook.failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(webhook.side_effects, "None");
        assert_eq!(webhook.reinvocation_policy.as_deref(), Some("IfNeeded"));
        assert!(webhook.timeout_seconds.unwrap() <= 5);
        assert!(webhook.client_config.ca_bundle.is_none());
        let rules = webhook.rules.as_ref().unwrap();
        assert_eq!(
            rules[0].operations.as_deref(),
            Some(&["CREATE".to_owned()][..])
        );
        let labels = webhook
            .object_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap();
        assert_eq!(labels[LABEL_INJECT], "true");
        let excluded = &webhook
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            excluded.values.as_deref().unwrap(),
            ["kube-system", "hookguard-system"]
        );
    }

    #[test]
    fn the_policy_fails_closed_and_names_the_sidecar() {
        let policy = validating_admission_policy("ops").unwrap();
        let spec = policy.spec.unwrap();
        assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
        let validation = &spec.validations.unwrap()[0];
        assert!(validation.expression.contains(SIDECAR_CONTAINER));
        assert!(
            validation
                .message
                .as_deref()
                .unwrap()
                .contains("operator may be down")
        );
        let binding = validating_admission_policy_binding().unwrap();
        assert_eq!(
            binding.spec.unwrap().policy_name.as_deref(),
            Some(POLICY_NAME)
        );
    }
}
