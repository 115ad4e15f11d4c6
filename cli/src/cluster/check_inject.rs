//! `hookguard check-inject (deployment/NAME | -l k=v[,k=v])`: would these pods get the
//! sidecar, for which endpoints, and why not. istioctl `x check-inject` style: one line per
//! Hookguard webhook that could see the pods, then a table `ENDPOINT INJECTED REASON` with a
//! sentence each.
//!
//! It decides as the webhook does ([`super::inject_select`]): the live
//! `MutatingWebhookConfiguration`'s `namespaceSelector` and `objectSelector` (and its
//! host-network condition), then the `hookguard.dev/endpoints` annotation or the endpoints'
//! `podSelector`s, each chosen endpoint Ready and on its own path. Exit 1 when nothing would
//! be injected.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use hookguard_api::crd::WebhookEndpoint;
use hookguard_api::names::{ANNOTATION_ENDPOINTS, LABEL_INJECT};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, PodTemplateSpec};
use kube::api::ListParams;
use kube::{Api, Client};
use serde::Serialize;

use super::inject_select::{self, Map, Via, labels_text, selector_text};
use crate::common::style::{self, BAD, DIM, GOOD, WARN};
use crate::common::{Context, Exit};

/// The webhook inside Hookguard's configuration.
const WEBHOOK_NAME: &str = "inject.hookguard.dev";

/// `check-inject`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The workload whose pod template to check: deployment/NAME (also statefulset/,
    /// daemonset/, replicaset/, job/, pod/).
    #[arg(
        value_name = "KIND/NAME",
        required_unless_present = "selector",
        conflicts_with = "selector"
    )]
    pub target: Option<String>,
    /// Check pods with these labels instead (what-if, before deploying): k=v[,k=v].
    #[arg(short = 'l', long = "selector", value_name = "LABELS")]
    pub selector: Option<String>,
}

/// The answer (`-o json|yaml`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    target: String,
    namespace: String,
    labels: Map,
    #[serde(skip_serializing_if = "Map::is_empty")]
    annotations: Map,
    webhooks: Vec<WebhookRow>,
    endpoints: Vec<EndpointRow>,
    /// The endpoints whose sidecar the pods would get.
    injected: Vec<String>,
    /// Why nothing would be injected, when nothing would.
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookRow {
    configuration: String,
    sees: bool,
    reason: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EndpointRow {
    endpoint: String,
    injected: bool,
    reason: String,
}

/// What the pods look like to the webhook.
struct Template {
    target: String,
    labels: Map,
    annotations: Map,
    host_network: bool,
}

/// Runs `check-inject`.
pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<Exit> {
    let (client, namespace) = ctx.kube.client().await?;
    let template = match (&args.target, &args.selector) {
        (Some(target), _) => workload_template(&client, &namespace, target).await?,
        (None, Some(selector)) => Template {
            target: format!("pods labelled {selector}"),
            labels: parse_labels(selector)?,
            annotations: Map::new(),
            host_network: false,
        },
        (None, None) => bail!("name a workload (deployment/NAME) or labels (-l k=v)"),
    };
    let namespace_labels = namespace_labels(&client, &namespace).await;
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let configs = configs
        .list(&ListParams::default())
        .await
        .context("listing MutatingWebhookConfigurations")?
        .items;
    let endpoints: Api<WebhookEndpoint> = Api::namespaced(client.clone(), &namespace);
    let endpoints = endpoints
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing WebhookEndpoints in {namespace}"))?
        .items;
    let report = decide(
        &template,
        &namespace,
        &namespace_labels,
        &configs,
        &endpoints,
    );
    if !ctx.print_data(&report)? {
        print_text(&report);
    }
    Ok(if report.injected.is_empty() {
        Exit::Failure
    } else {
        Exit::Ok
    })
}

/// `k=v,k2=v2` as a label map.
fn parse_labels(text: &str) -> anyhow::Result<Map> {
    let mut labels = Map::new();
    for pair in text
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("-l {text:?}: write labels as k=v[,k=v], not {pair:?}"))?;
        let key = key.trim();
        anyhow::ensure!(!key.is_empty(), "-l {text:?}: a label has an empty key");
        labels.insert(
            key.to_owned(),
            value.trim().trim_start_matches('=').to_owned(),
        );
    }
    Ok(labels)
}

async fn workload_template(
    client: &Client,
    namespace: &str,
    target: &str,
) -> anyhow::Result<Template> {
    let (kind, name) = target.split_once('/').with_context(|| {
        format!("{target:?}: name the workload as KIND/NAME, e.g. deployment/web")
    })?;
    let kind = kind.to_ascii_lowercase();
    let kind = kind.split('.').next().unwrap_or_default();
    let template: PodTemplateSpec = match kind {
        "deployment" | "deployments" | "deploy" => {
            get::<Deployment>(client, namespace, name).await?.spec.map(|s| s.template)
        }
        "statefulset" | "statefulsets" | "sts" => {
            get::<StatefulSet>(client, namespace, name).await?.spec.map(|s| s.template)
        }
        "daemonset" | "daemonsets" | "ds" => {
            get::<DaemonSet>(client, namespace, name).await?.spec.map(|s| s.template)
        }
        "replicaset" | "replicasets" | "rs" => get::<ReplicaSet>(client, namespace, name)
            .await?
            .spec
            .and_then(|s| s.template),
        "job" | "jobs" => get::<Job>(client, namespace, name).await?.spec.map(|s| s.template),
        "pod" | "pods" | "po" => {
            let pod = get::<Pod>(client, namespace, name).await?;
            Some(PodTemplateSpec {
                metadata: Some(pod.metadata),
                spec: pod.spec,
            })
        }
        other => bail!(
            "{target:?}: unknown kind {other:?}: use deployment, statefulset, daemonset, replicaset, job or pod"
        ),
    }
    .with_context(|| format!("{target} has no pod template"))?;
    let metadata = template.metadata.unwrap_or_default();
    Ok(Template {
        target: format!("{kind}/{name}"),
        labels: metadata.labels.unwrap_or_default(),
        annotations: metadata.annotations.unwrap_or_default(),
        host_network: template
            .spec
            .and_then(|spec| spec.host_network)
            .unwrap_or(false),
    })
}

async fn get<K>(client: &Client, namespace: &str, name: &str) -> anyhow::Result<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let kind = K::kind(&K::DynamicType::default()).to_string();
    api.get_opt(name)
        .await
        .with_context(|| format!("reading {kind} {namespace}/{name}"))?
        .with_context(|| format!("{kind} {name} not found in namespace {namespace}"))
}

/// The namespace's labels; the API server always sets `kubernetes.io/metadata.name`, so
/// that alone stands in when the namespace cannot be read.
async fn namespace_labels(client: &Client, namespace: &str) -> Map {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut labels = match api.get_opt(namespace).await {
        Ok(Some(found)) => found.metadata.labels.unwrap_or_default(),
        _ => Map::new(),
    };
    labels
        .entry("kubernetes.io/metadata.name".to_owned())
        .or_insert_with(|| namespace.to_owned());
    labels
}

#[allow(clippy::too_many_lines)] // one decision, in the order the webhook takes it
fn decide(
    template: &Template,
    namespace: &str,
    namespace_labels: &Map,
    configs: &[MutatingWebhookConfiguration],
    endpoints: &[WebhookEndpoint],
) -> Report {
    let webhooks = webhook_rows(template, namespace, namespace_labels, configs);
    let seen = webhooks.iter().any(|row| row.sees);
    let mut rows = Vec::new();
    let mut chosen: Vec<&WebhookEndpoint> = Vec::new();
    let annotated = inject_select::annotated(&template.annotations);

    let mut sorted: Vec<&WebhookEndpoint> = endpoints.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for endpoint in &sorted {
        let name = endpoint.metadata.name.clone().unwrap_or_default();
        let via = inject_select::chosen_by(endpoint, &template.labels, &template.annotations);
        let selector = endpoint.spec.pod_selector.as_ref().map(selector_text);
        let reason = match via {
            Some(Via::Annotation) => format!("named in {ANNOTATION_ENDPOINTS}"),
            Some(Via::PodSelector) => format!(
                "spec.podSelector ({}) matches the pod labels",
                selector.clone().unwrap_or_default()
            ),
            None if annotated.is_some()
                && inject_select::selector_selects(endpoint, &template.labels) =>
            {
                format!(
                    "spec.podSelector matches, but annotation {ANNOTATION_ENDPOINTS} names only {}",
                    annotated.clone().unwrap_or_default().join(",")
                )
            }
            None if annotated.is_some() => format!("not named in {ANNOTATION_ENDPOINTS}"),
            None => match &selector {
                Some(selector) => format!(
                    "spec.podSelector ({selector}) does not match the pod labels ({})",
                    labels_text(&template.labels)
                ),
                None => format!(
                    "it has no spec.podSelector and {ANNOTATION_ENDPOINTS} does not name it"
                ),
            },
        };
        if via.is_some() {
            chosen.push(endpoint);
        }
        rows.push((name, via.is_some(), reason));
    }
    // Names in the annotation that are no endpoint: the webhook refuses such a pod.
    let mut missing = Vec::new();
    for name in annotated.iter().flatten() {
        if !sorted
            .iter()
            .any(|endpoint| endpoint.metadata.name.as_deref() == Some(name))
        {
            missing.push(name.clone());
            rows.push((
                name.clone(),
                false,
                format!(
                    "named in {ANNOTATION_ENDPOINTS}, but there is no WebhookEndpoint {name} in {namespace}"
                ),
            ));
        }
    }

    // The webhook's own refusals, which stop the whole pod, not one endpoint.
    let not_ready: Vec<(String, String)> = chosen
        .iter()
        .filter_map(|endpoint| {
            inject_select::ready(endpoint)
                .err()
                .map(|why| (endpoint.metadata.name.clone().unwrap_or_default(), why))
        })
        .collect();
    let conflict = path_conflict(&chosen);
    let opted_in = inject_select::opted_in(&template.labels);
    let summary = if !opted_in {
        Some(format!(
            "the pod template has no {LABEL_INJECT}=true label: the webhook never sees these pods (labels: {})",
            labels_text(&template.labels)
        ))
    } else if template.host_network {
        Some("the pods use hostNetwork: Hookguard never injects those (the sidecar's ports would collide on the node)".to_owned())
    } else if !seen {
        Some(if webhooks.is_empty() {
            format!(
                "no Hookguard injection webhook is registered (a MutatingWebhookConfiguration with webhook {WEBHOOK_NAME}): install the chart"
            )
        } else {
            format!("no Hookguard webhook covers these pods in namespace {namespace}")
        })
    } else if !missing.is_empty() {
        Some(format!(
            "the webhook refuses these pods: {ANNOTATION_ENDPOINTS} names {}, which does not exist",
            missing.join(",")
        ))
    } else if chosen.is_empty() {
        Some(format!(
            "no WebhookEndpoint in {namespace} selects these pods: the webhook refuses them (name endpoints in {ANNOTATION_ENDPOINTS}, give an endpoint a matching spec.podSelector, or remove the {LABEL_INJECT} label)"
        ))
    } else if !not_ready.is_empty() {
        Some(format!(
            "the webhook refuses these pods until {} is Ready",
            not_ready
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        conflict.as_ref().map(|(a, b, path)| {
            format!(
                "the webhook refuses these pods: {a} and {b} both serve path {path} (name only one in {ANNOTATION_ENDPOINTS})"
            )
        })
    };

    let injects = summary.is_none();
    let endpoints: Vec<EndpointRow> = rows
        .into_iter()
        .map(|(endpoint, selected, reason)| {
            let (injected, reason) = if !selected {
                (false, reason)
            } else if let Some((_, why)) = not_ready.iter().find(|(name, _)| *name == endpoint) {
                (false, format!("{reason}, but it is not Ready ({why})"))
            } else if injects {
                (true, reason)
            } else if !opted_in {
                (
                    false,
                    format!("{reason}, but the pods lack {LABEL_INJECT}=true"),
                )
            } else {
                (
                    false,
                    format!("{reason}, but the webhook injects nothing (see below)"),
                )
            };
            EndpointRow {
                endpoint,
                injected,
                reason,
            }
        })
        .collect();
    let injected = endpoints
        .iter()
        .filter(|row| row.injected)
        .map(|row| row.endpoint.clone())
        .collect();
    Report {
        target: template.target.clone(),
        namespace: namespace.to_owned(),
        labels: template.labels.clone(),
        annotations: template
            .annotations
            .iter()
            .filter(|(key, _)| key.starts_with("hookguard.dev/"))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        webhooks,
        endpoints,
        injected,
        summary,
    }
}

fn webhook_rows(
    template: &Template,
    namespace: &str,
    namespace_labels: &Map,
    configs: &[MutatingWebhookConfiguration],
) -> Vec<WebhookRow> {
    let mut rows = Vec::new();
    for config in configs {
        let name = config.metadata.name.clone().unwrap_or_default();
        for hook in config.webhooks.iter().flatten() {
            if hook.name != WEBHOOK_NAME {
                continue;
            }
            let (sees, reason) =
                match inject_select::webhook_sees(hook, &template.labels, namespace_labels) {
                    Err("namespaceSelector") => (
                        false,
                        format!(
                            "its namespaceSelector ({}) excludes namespace {namespace}",
                            hook.namespace_selector
                                .as_ref()
                                .map(selector_text)
                                .unwrap_or_default()
                        ),
                    ),
                    Err(_) => (
                        false,
                        format!(
                            "its objectSelector ({}) does not match the pod labels ({})",
                            hook.object_selector
                                .as_ref()
                                .map(selector_text)
                                .unwrap_or_default(),
                            labels_text(&template.labels)
                        ),
                    ),
                    Ok(()) if template.host_network => {
                        (false, "it skips host-network pods".to_owned())
                    }
                    Ok(()) => (
                        true,
                        format!(
                            "objectSelector ({}) and namespaceSelector match",
                            hook.object_selector
                                .as_ref()
                                .map_or_else(|| "everything".to_owned(), selector_text)
                        ),
                    ),
                };
            rows.push(WebhookRow {
                configuration: name.clone(),
                sees,
                reason,
            });
        }
    }
    rows
}

/// Two chosen endpoints on one path, as the webhook refuses them.
fn path_conflict(chosen: &[&WebhookEndpoint]) -> Option<(String, String, String)> {
    let mut by_path: BTreeMap<&str, &str> = BTreeMap::new();
    for endpoint in chosen {
        let name = endpoint.metadata.name.as_deref().unwrap_or_default();
        if let Some(first) = by_path.insert(endpoint.spec.path.as_str(), name) {
            return Some((
                first.to_owned(),
                name.to_owned(),
                endpoint.spec.path.clone(),
            ));
        }
    }
    None
}

fn print_text(report: &Report) {
    anstream::println!("{} in namespace {}", report.target, report.namespace);
    let seeing: Vec<&WebhookRow> = report.webhooks.iter().filter(|row| row.sees).collect();
    let shown: Vec<&WebhookRow> = if seeing.is_empty() {
        report.webhooks.iter().collect()
    } else {
        seeing.clone()
    };
    for row in shown {
        let mark = if row.sees {
            style::paint(GOOD, style::YES)
        } else {
            style::paint(BAD, style::NO)
        };
        anstream::println!("{mark} webhook {}: {}", row.configuration, row.reason);
    }
    if seeing.len() > 1 {
        anstream::println!(
            "{} {} Hookguard webhooks see these pods: each would inject the sidecar",
            style::paint(WARN, style::WARNING),
            seeing.len()
        );
    }
    anstream::println!();
    if report.endpoints.is_empty() {
        anstream::println!("no WebhookEndpoint in namespace {}", report.namespace);
    } else {
        let width = report
            .endpoints
            .iter()
            .map(|row| row.endpoint.len())
            .max()
            .unwrap_or(8)
            .max(8);
        anstream::println!("{:<width$}  INJECTED  REASON", "ENDPOINT");
        for row in &report.endpoints {
            let mark = if row.injected {
                style::paint(GOOD, style::YES)
            } else {
                style::paint(BAD, style::NO)
            };
            anstream::println!("{:<width$}  {mark}{:<7}  {}", row.endpoint, "", row.reason);
        }
    }
    anstream::println!();
    match &report.summary {
        Some(summary) => anstream::println!("{} {summary}", style::paint(BAD, style::FAIL)),
        None => anstream::println!(
            "{} the pods get the sidecar for {}",
            style::paint(GOOD, style::PASS),
            report.injected.join(", ")
        ),
    }
    if report.summary.is_some() && !report.labels.contains_key(LABEL_INJECT) {
        anstream::println!(
            "  {}",
            style::paint(
                DIM,
                format!("add the label {LABEL_INJECT}: \"true\" to the pod template")
            )
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(
        name: &str,
        path: &str,
        selector: &serde_json::Value,
        ready: bool,
    ) -> WebhookEndpoint {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "hookguard.dev/v1alpha1", "kind": "WebhookEndpoint",
            "metadata": {"name": name},
            "spec": {"scheme": "Generic", "path": path, "upstream": {"port": 8080}, "podSelector": selector},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                "reason": "R", "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        }))
        .unwrap()
    }

    fn config() -> MutatingWebhookConfiguration {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "hookguard"},
            "webhooks": [{"name": WEBHOOK_NAME, "clientConfig": {}, "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "objectSelector": {"matchLabels": {LABEL_INJECT: "true"}},
                "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]}}],
        }))
        .unwrap()
    }

    fn template(labels: &str) -> Template {
        Template {
            target: "deployment/web".into(),
            labels: parse_labels(labels).unwrap(),
            annotations: Map::new(),
            host_network: false,
        }
    }

    fn ns() -> Map {
        Map::from([("kubernetes.io/metadata.name".to_owned(), "shop".to_owned())])
    }

    #[test]
    fn two_matching_ready_endpoints_are_injected_and_others_say_why_not() {
        let endpoints = [
            endpoint(
                "a",
                "/a",
                &serde_json::json!({"matchLabels": {"app": "web"}}),
                true,
            ),
            endpoint(
                "b",
                "/b",
                &serde_json::json!({"matchLabels": {"tier": "front"}}),
                true,
            ),
            endpoint(
                "c",
                "/c",
                &serde_json::json!({"matchLabels": {"app": "other"}}),
                true,
            ),
        ];
        let report = decide(
            &template("app=web,tier=front,hookguard.dev/inject=true"),
            "shop",
            &ns(),
            &[config()],
            &endpoints,
        );
        assert_eq!(report.injected, ["a", "b"]);
        assert!(report.summary.is_none());
        assert!(
            report.endpoints[2].reason.contains("does not match"),
            "{:?}",
            report.endpoints[2]
        );
    }

    #[test]
    fn without_the_label_or_with_an_unready_endpoint_nothing_is_injected() {
        let endpoints = [endpoint(
            "a",
            "/a",
            &serde_json::json!({"matchLabels": {"app": "web"}}),
            false,
        )];
        let unlabelled = decide(&template("app=web"), "shop", &ns(), &[config()], &endpoints);
        assert!(unlabelled.injected.is_empty());
        assert!(
            unlabelled
                .summary
                .unwrap()
                .contains("no hookguard.dev/inject=true label")
        );
        assert!(!unlabelled.webhooks[0].sees);
        let unready = decide(
            &template("app=web,hookguard.dev/inject=true"),
            "shop",
            &ns(),
            &[config()],
            &endpoints,
        );
        assert!(unready.endpoints[0].reason.contains("not Ready"));
        let none = decide(
            &template("app=web,hookguard.dev/inject=true"),
            "shop",
            &ns(),
            &[],
            &endpoints,
        );
        assert!(
            none.summary
                .unwrap()
                .contains("no Hookguard injection webhook")
        );
    }

    #[test]
    fn labels_parse_like_kubectl() {
        let labels = parse_labels("app=web, tier=front").unwrap();
        assert_eq!(labels.get("tier").map(String::as_str), Some("front"));
        assert!(parse_labels("app").is_err());
    }
}
