//! Which endpoints a pod serves and why it would or would not get the sidecar, as the
//! operator's webhook decides it (`operator/src/admission/render.rs`, `select_endpoints`):
//! the endpoints named in `hookguard.dev/endpoints`, else every endpoint of the namespace whose
//! `podSelector` matches the pod's labels; each must be Ready. Shared by `status` (pods that
//! select an endpoint) and `check-inject` (pod templates and label sets).
//!
//! The rules are restated here rather than taken from `hookguard-operator`, which would pull
//! the webhook server, certificate and metrics crates into the CLI; label selectors are
//! kube's own [`Selector`], the one the webhook uses.

use std::collections::BTreeMap;

use hookguard_api::crd::WebhookEndpoint;
use hookguard_api::names::{ANNOTATION_ENDPOINTS, LABEL_INJECT};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhook;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt as _};

/// Labels or annotations.
pub type Map = BTreeMap<String, String>;

/// How an endpoint comes to be chosen for a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Named in the `hookguard.dev/endpoints` annotation.
    Annotation,
    /// Its `spec.podSelector` matches the pod's labels.
    PodSelector,
}

/// Whether `labels` opt the pod into injection (`hookguard.dev/inject: "true"`).
pub fn opted_in(labels: &Map) -> bool {
    labels.get(LABEL_INJECT).map(String::as_str) == Some("true")
}

/// The endpoint names the pod's `hookguard.dev/endpoints` annotation lists, if it has one.
pub fn annotated(annotations: &Map) -> Option<Vec<String>> {
    annotations.get(ANNOTATION_ENDPOINTS).map(|value| {
        value
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// Whether `selector` (an endpoint's `podSelector`) matches `labels`. A selector that does
/// not convert selects nothing, as in the webhook.
pub fn selector_matches(selector: &LabelSelector, labels: &Map) -> bool {
    Selector::try_from(selector.clone()).is_ok_and(|selector| selector.matches(labels))
}

/// How `endpoint` is chosen for a pod with `labels` and `annotations`, or `None`: with the
/// annotation only the endpoints it names, without it those whose `podSelector` matches.
pub fn chosen_by(endpoint: &WebhookEndpoint, labels: &Map, annotations: &Map) -> Option<Via> {
    let name = endpoint.metadata.name.as_deref()?;
    match annotated(annotations) {
        Some(names) => names.iter().any(|n| n == name).then_some(Via::Annotation),
        None => endpoint
            .spec
            .pod_selector
            .as_ref()
            .is_some_and(|selector| selector_matches(selector, labels))
            .then_some(Via::PodSelector),
    }
}

/// Whether `endpoint`'s `podSelector` matches `labels`, whatever the annotation says (for
/// explaining a pod whose annotation leaves a matching endpoint out).
pub fn selector_selects(endpoint: &WebhookEndpoint, labels: &Map) -> bool {
    endpoint
        .spec
        .pod_selector
        .as_ref()
        .is_some_and(|selector| selector_matches(selector, labels))
}

/// `Ok` when `endpoint` is Ready, else why not (the webhook refuses to inject it then).
pub fn ready(endpoint: &WebhookEndpoint) -> Result<(), String> {
    let Some(status) = endpoint.status.as_ref() else {
        return Err("the operator has not reported its status yet".to_owned());
    };
    match status.conditions.iter().find(|c| c.type_ == "Ready") {
        Some(c) if c.status == "True" => Ok(()),
        Some(c) => Err(format!(
            "Ready is {}: {}: {}",
            c.status, c.reason, c.message
        )),
        None => Err("it has no Ready condition yet".to_owned()),
    }
}

/// Whether the webhook `hook` sees a pod with `labels` in a namespace with `namespace_labels`
/// (its `objectSelector` and `namespaceSelector`; an absent selector matches everything).
/// `Err` names the selector that does not match.
pub fn webhook_sees(
    hook: &MutatingWebhook,
    labels: &Map,
    namespace_labels: &Map,
) -> Result<(), &'static str> {
    let matches = |selector: Option<&LabelSelector>, labels: &Map| {
        selector.is_none_or(|selector| selector_matches(selector, labels))
    };
    if !matches(hook.namespace_selector.as_ref(), namespace_labels) {
        return Err("namespaceSelector");
    }
    if !matches(hook.object_selector.as_ref(), labels) {
        return Err("objectSelector");
    }
    Ok(())
}

/// A label selector written as kubectl writes one: `a=b,c in (d,e)`.
pub fn selector_text(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    for expression in selector.match_expressions.iter().flatten() {
        let values = expression.values.clone().unwrap_or_default().join(",");
        parts.push(match expression.operator.as_str() {
            "Exists" => expression.key.clone(),
            "DoesNotExist" => format!("!{}", expression.key),
            "In" => format!("{} in ({values})", expression.key),
            "NotIn" => format!("{} notin ({values})", expression.key),
            other => format!("{} {other} ({values})", expression.key),
        });
    }
    if parts.is_empty() {
        "everything".to_owned()
    } else {
        parts.join(",")
    }
}

/// `k=v,k2=v2` for a label map.
pub fn labels_text(labels: &Map) -> String {
    if labels.is_empty() {
        return "none".to_owned();
    }
    labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(name: &str, selector: Option<serde_json::Value>) -> WebhookEndpoint {
        let mut spec =
            serde_json::json!({"scheme": "Generic", "path": "/x", "upstream": {"port": 8080}});
        if let Some(selector) = selector {
            spec["podSelector"] = selector;
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "hookguard.dev/v1alpha1", "kind": "WebhookEndpoint",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap()
    }

    fn map(pairs: &[(&str, &str)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_annotation_decides_when_present_else_the_pod_selector() {
        let selecting = endpoint(
            "pay",
            Some(serde_json::json!({"matchLabels": {"app": "pay"}})),
        );
        let other = endpoint("other", None);
        let labels = map(&[("app", "pay")]);
        assert_eq!(
            chosen_by(&selecting, &labels, &Map::new()),
            Some(Via::PodSelector)
        );
        assert_eq!(chosen_by(&other, &labels, &Map::new()), None);
        let named_other = map(&[(ANNOTATION_ENDPOINTS, "other, third")]);
        assert_eq!(chosen_by(&selecting, &labels, &named_other), None);
        assert!(selector_selects(&selecting, &labels));
        assert_eq!(
            chosen_by(&other, &labels, &named_other),
            Some(Via::Annotation)
        );
        assert_eq!(
            annotated(&named_other),
            Some(vec!["other".to_owned(), "third".to_owned()])
        );
    }

    #[test]
    fn selectors_read_like_kubectl_and_an_absent_selector_matches_all() {
        let selector: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"hookguard.dev/inject": "true"},
            "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "hg"]}],
        }))
        .unwrap();
        assert_eq!(
            selector_text(&selector),
            "hookguard.dev/inject=true,kubernetes.io/metadata.name notin (kube-system,hg)"
        );
        let hook: MutatingWebhook = serde_json::from_value(serde_json::json!({
            "name": "inject.hookguard.dev", "clientConfig": {}, "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "objectSelector": {"matchLabels": {"hookguard.dev/inject": "true"}},
        }))
        .unwrap();
        let ns = map(&[("kubernetes.io/metadata.name", "shop")]);
        assert_eq!(
            webhook_sees(&hook, &map(&[(LABEL_INJECT, "true")]), &ns),
            Ok(())
        );
        assert_eq!(
            webhook_sees(&hook, &map(&[("app", "x")]), &ns),
            Err("objectSelector")
        );
        assert!(opted_in(&map(&[(LABEL_INJECT, "true")])));
        assert!(!opted_in(&map(&[(LABEL_INJECT, "false")])));
    }
}
