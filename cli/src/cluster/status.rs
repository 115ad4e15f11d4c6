//! `hookguard status ENDPOINT`: an endpoint's whole chain, top to bottom, as `cmctl status`
//! walks a certificate: the endpoint and its conditions, its keys (IDs, ages, fingerprints;
//! never a value), its sidecar ConfigMap, the pods that select it (injected or why not), each
//! sidecar's readiness, loaded keys and recent outcomes, and the endpoint's Events.
//!
//! Every section collects its own error, so one missing object does not hide the rest.
//! Exit 1 when the endpoint is not Ready or a pod that selects it has no sidecar for it.

use std::collections::BTreeMap;

use anyhow::Context as _;
use hookguard_api::crd::WebhookEndpoint;
use hookguard_api::names::{LABEL_INJECT, sidecar_config_name};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client};
use serde::Serialize;

use super::inject_select::{self, Map, Via};
use super::status_keys::{self, KeyRing, age};
use super::status_sidecar::{self, SidecarReport};
use crate::common::style::{self, BAD, BOLD, DIM, GOOD, WARN};
use crate::common::{Context, Exit};
use crate::sidecar_access::{Target, injected_endpoints};

/// How many Events the report shows.
const EVENTS_SHOWN: usize = 10;

/// `status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The endpoint: NAME or webhookendpoint/NAME.
    #[arg(value_name = "ENDPOINT")]
    pub endpoint: String,
    /// Ask these sidecar admin URLs (e.g. `http://127.0.0.1:9881`) instead of the injected
    /// pods (repeatable; for sidecars run as processes).
    #[arg(long = "sidecar", value_name = "URL")]
    pub sidecars: Vec<String>,
}

/// One section: its data, or why it could not be read.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Section<T> {
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    data: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl<T> From<anyhow::Result<T>> for Section<T> {
    fn from(result: anyhow::Result<T>) -> Self {
        match result {
            Ok(data) => Section {
                data: Some(data),
                error: None,
            },
            Err(error) => Section {
                data: None,
                error: Some(format!("{error:#}")),
            },
        }
    }
}

/// The whole report (`-o json|yaml`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    name: String,
    namespace: String,
    /// Ready, and every pod that selects it has its sidecar.
    healthy: bool,
    /// What makes it unhealthy, one sentence each.
    problems: Vec<String>,
    endpoint: Section<EndpointInfo>,
    keys: Section<KeyRing>,
    config: Section<ConfigInfo>,
    pods: Section<PodsInfo>,
    sidecars: Section<SidecarsInfo>,
    events: Section<EventsInfo>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EndpointInfo {
    scheme: String,
    path: String,
    upstream: String,
    delivery_mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_generation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<Timestamp>,
    ready: bool,
    conditions: Vec<ConditionInfo>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConditionInfo {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    reason: String,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_generation: Option<i64>,
    last_transition_time: Timestamp,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigInfo {
    name: String,
    present: bool,
    /// The generation the operator last rendered it for (its `ConfigReady` condition).
    #[serde(skip_serializing_if = "Option::is_none")]
    rendered_generation: Option<i64>,
    up_to_date: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PodsInfo {
    pods: Vec<PodInfo>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PodInfo {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    phase: Option<String>,
    /// `annotation`, `podSelector`, or absent when the pod only matches the selector but
    /// its annotation leaves this endpoint out.
    #[serde(skip_serializing_if = "Option::is_none")]
    selected_by: Option<&'static str>,
    injected: bool,
    reason: String,
    #[serde(skip)]
    counts: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SidecarsInfo {
    sidecars: Vec<SidecarReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EventsInfo {
    events: Vec<EventInfo>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EventInfo {
    #[serde(rename = "type")]
    type_: String,
    reason: String,
    message: String,
    count: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen: Option<Timestamp>,
}

/// Runs `status`.
pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<Exit> {
    let name = status_keys::endpoint_name(&args.endpoint)?.to_owned();
    let (client, namespace) = ctx.kube.client().await?;
    // Without the endpoint there is nothing to walk: that alone is the answer.
    let endpoint = status_keys::get_endpoint(&client, &namespace, &name).await?;
    let now = Timestamp::now();
    let report = build(&client, &endpoint, &name, &namespace, &args.sidecars).await;
    if !ctx.print_data(&report)? {
        print_text(&report, now, ctx.bin);
    }
    Ok(if report.healthy {
        Exit::Ok
    } else {
        Exit::Failure
    })
}

async fn build(
    client: &Client,
    endpoint: &WebhookEndpoint,
    name: &str,
    namespace: &str,
    explicit: &[String],
) -> Report {
    let info = endpoint_info(endpoint);
    let keys: Section<KeyRing> = status_keys::read_keys(client, endpoint).await.into();
    let config: Section<ConfigInfo> = config_info(client, endpoint, namespace).await.into();
    let pods_result = list_pods(client, namespace).await;
    let pods: Section<PodsInfo> = pods_result
        .as_ref()
        .map(|pods| PodsInfo {
            pods: pod_infos(endpoint, pods),
        })
        .map_err(|error| anyhow::anyhow!("{error:#}"))
        .into();
    let current = keys
        .data
        .as_ref()
        .and_then(KeyRing::current)
        .map(|key| key.fingerprint.clone());
    let targets: Vec<Target> = if explicit.is_empty() {
        pods_result
            .iter()
            .flatten()
            .filter(|pod| crate::sidecar_access::serves(pod, name))
            .filter_map(|pod| {
                Some(Target::Pod {
                    namespace: namespace.to_owned(),
                    name: pod.metadata.name.clone()?,
                })
            })
            .collect()
    } else {
        explicit.iter().cloned().map(Target::Url).collect()
    };
    let mut sidecars = Vec::new();
    for target in &targets {
        sidecars.push(status_sidecar::ask(client, target, name, current.as_deref()).await);
    }
    let sidecars: Section<SidecarsInfo> = Ok(SidecarsInfo { sidecars }).into();
    let events: Section<EventsInfo> = events(client, endpoint, namespace).await.into();

    let mut problems = Vec::new();
    if !info.ready {
        let why = match info.conditions.iter().find(|c| c.type_ == "Ready") {
            None => "it has no Ready condition yet (is the operator running?)".to_owned(),
            Some(c) if c.status == "True" => format!(
                "the operator has not caught up with generation {} yet (observed {})",
                info.generation.unwrap_or_default(),
                info.observed_generation.unwrap_or_default()
            ),
            Some(c) => format!("{}: {}", c.reason, c.message),
        };
        problems.push(format!("the endpoint is not Ready: {why}"));
    }
    for pod in pods.data.iter().flat_map(|pods| &pods.pods) {
        if pod.counts && !pod.injected {
            problems.push(format!(
                "pod {} has no sidecar for it: {}",
                pod.name, pod.reason
            ));
        }
    }
    Report {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        healthy: problems.is_empty(),
        problems,
        endpoint: Ok(info).into(),
        keys,
        config,
        pods,
        sidecars,
        events,
    }
}

fn endpoint_info(endpoint: &WebhookEndpoint) -> EndpointInfo {
    let spec = &endpoint.spec;
    let status = endpoint.status.clone().unwrap_or_default();
    let conditions: Vec<ConditionInfo> = status
        .conditions
        .iter()
        .map(|c| ConditionInfo {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            observed_generation: c.observed_generation,
            last_transition_time: c.last_transition_time.0,
        })
        .collect();
    EndpointInfo {
        scheme: enum_text(&spec.scheme),
        path: spec.path.clone(),
        upstream: format!(
            "localhost:{}{} (timeout {})",
            spec.upstream.port,
            spec.upstream.path.as_deref().unwrap_or(""),
            spec.upstream.timeout
        ),
        delivery_mode: spec
            .delivery
            .as_ref()
            .map_or_else(|| "Sync".to_owned(), |delivery| enum_text(&delivery.mode)),
        endpoint_id: status.endpoint_id.clone(),
        generation: endpoint.metadata.generation,
        observed_generation: status.observed_generation,
        created_at: endpoint.metadata.creation_timestamp.as_ref().map(|t| t.0),
        ready: inject_select::ready(endpoint).is_ok()
            && status.observed_generation == endpoint.metadata.generation,
        conditions,
    }
}

/// A serde-named enum (`Scheme`, `DeliveryMode`) as the text the CRD shows.
fn enum_text<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

async fn config_info(
    client: &Client,
    endpoint: &WebhookEndpoint,
    namespace: &str,
) -> anyhow::Result<ConfigInfo> {
    let name = endpoint
        .status
        .as_ref()
        .and_then(|status| status.config_name.clone())
        .unwrap_or_else(|| sidecar_config_name(endpoint.metadata.name.as_deref().unwrap_or("")));
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let present = config_maps
        .get_opt(&name)
        .await
        .with_context(|| format!("reading ConfigMap {name}"))?
        .is_some();
    let rendered_generation = endpoint.status.as_ref().and_then(|status| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == "ConfigReady" && c.status == "True")
            .and_then(|c| c.observed_generation)
    });
    Ok(ConfigInfo {
        up_to_date: present && rendered_generation == endpoint.metadata.generation,
        name,
        present,
        rendered_generation,
    })
}

async fn list_pods(client: &Client, namespace: &str) -> anyhow::Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    Ok(pods
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing pods in {namespace}"))?
        .items)
}

/// The pods that select `endpoint` (or carry its sidecar, or match its selector but leave it
/// out of their annotation), each with whether it is injected and why (not).
fn pod_infos(endpoint: &WebhookEndpoint, pods: &[Pod]) -> Vec<PodInfo> {
    let name = endpoint.metadata.name.as_deref().unwrap_or_default();
    let endpoint_created = endpoint.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let mut infos = Vec::new();
    for pod in pods {
        let empty = Map::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
        let via = inject_select::chosen_by(endpoint, labels, annotations);
        let served = injected_endpoints(pod);
        let injected = served.iter().any(|served| served == name);
        let left_out = via.is_none() && inject_select::selector_selects(endpoint, labels);
        if via.is_none() && !injected && !left_out {
            continue;
        }
        let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let reason = if injected {
            match via {
                Some(Via::Annotation) => {
                    "its sidecar serves the endpoint (named in hookguard.dev/endpoints)".to_owned()
                }
                Some(Via::PodSelector) => {
                    "its sidecar serves the endpoint (spec.podSelector matches)".to_owned()
                }
                None => "its sidecar serves the endpoint, which it no longer selects: restart it to drop it".to_owned(),
            }
        } else if left_out {
            format!(
                "spec.podSelector matches, but its hookguard.dev/endpoints annotation names only {}",
                inject_select::annotated(annotations)
                    .unwrap_or_default()
                    .join(",")
            )
        } else if !inject_select::opted_in(labels) {
            format!("no {LABEL_INJECT}=true label: add it to the pod template")
        } else if let (Some(pod_created), Some(endpoint_created)) = (created, endpoint_created)
            && pod_created < endpoint_created
        {
            "created before the endpoint existed: restart it (kubectl rollout restart) to inject"
                .to_owned()
        } else if !served.is_empty() {
            format!(
                "its sidecar serves {} but not this endpoint: restart it to inject",
                served.join(",")
            )
        } else {
            "labelled and selected, but the webhook added no sidecar (operator down or endpoint not Ready at creation?): see the pod's events, then restart it".to_owned()
        };
        infos.push(PodInfo {
            name: pod.metadata.name.clone().unwrap_or_default(),
            phase: pod.status.as_ref().and_then(|status| status.phase.clone()),
            selected_by: via.map(|via| match via {
                Via::Annotation => "annotation",
                Via::PodSelector => "podSelector",
            }),
            injected,
            reason,
            counts: via.is_some(),
        });
    }
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    infos
}

async fn events(
    client: &Client,
    endpoint: &WebhookEndpoint,
    namespace: &str,
) -> anyhow::Result<EventsInfo> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let selector = match endpoint.metadata.uid.as_deref() {
        Some(uid) => format!("involvedObject.uid={uid}"),
        None => format!(
            "involvedObject.kind=WebhookEndpoint,involvedObject.name={}",
            endpoint.metadata.name.as_deref().unwrap_or_default()
        ),
    };
    let list = api
        .list(&ListParams::default().fields(&selector))
        .await
        .context("listing the endpoint's Events")?;
    let mut events: Vec<EventInfo> = list
        .items
        .into_iter()
        .map(|event| {
            let last_seen = event
                .last_timestamp
                .map(|t| t.0)
                .or(event.event_time.map(|t| t.0))
                .or(event
                    .series
                    .as_ref()
                    .and_then(|series| series.last_observed_time.as_ref().map(|t| t.0)))
                .or(event.metadata.creation_timestamp.map(|t| t.0));
            EventInfo {
                type_: event.type_.unwrap_or_default(),
                reason: event.reason.unwrap_or_default(),
                message: event.message.unwrap_or_default(),
                count: event
                    .series
                    .as_ref()
                    .and_then(|series| series.count)
                    .or(event.count)
                    .unwrap_or(1),
                last_seen,
            }
        })
        .collect();
    events.sort_by_key(|event| event.last_seen);
    let skip = events.len().saturating_sub(EVENTS_SHOWN);
    Ok(EventsInfo {
        events: events.split_off(skip),
    })
}

fn heading(text: &str) {
    anstream::println!("{}", style::paint(BOLD, text));
}

fn section_error(error: Option<&String>) {
    if let Some(error) = error {
        anstream::println!("  {} {error}", style::paint(BAD, style::FAIL));
    }
}

fn print_text(report: &Report, now: Timestamp, bin: &str) {
    print_endpoint(report, now);
    anstream::println!();
    print_keys(report, now, bin);
    anstream::println!();
    print_config(report);
    anstream::println!();
    print_pods(report);
    anstream::println!();
    print_sidecars(report);
    anstream::println!();
    print_events(report, now);
    anstream::println!();
    print_verdict(report);
}

fn print_endpoint(report: &Report, now: Timestamp) {
    heading(&format!(
        "WebhookEndpoint {}/{}",
        report.namespace, report.name
    ));
    section_error(report.endpoint.error.as_ref());
    if let Some(info) = &report.endpoint.data {
        let generation =
            |value: Option<i64>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
        anstream::println!("  Scheme:      {}", info.scheme);
        anstream::println!("  Path:        {}", info.path);
        anstream::println!("  Upstream:    {}", info.upstream);
        anstream::println!("  Delivery:    {}", info.delivery_mode);
        if let Some(id) = &info.endpoint_id {
            anstream::println!("  Endpoint ID: {id}");
        }
        let observed = if info.generation == info.observed_generation {
            style::paint(
                GOOD,
                format!("observed {}", generation(info.observed_generation)),
            )
        } else {
            style::paint(
                WARN,
                format!(
                    "observed {}: the operator has not caught up",
                    generation(info.observed_generation)
                ),
            )
        };
        anstream::println!(
            "  Generation:  {} ({observed})",
            generation(info.generation)
        );
        if info.conditions.is_empty() {
            anstream::println!("  Conditions:  none set (is the operator running?)");
        } else {
            anstream::println!("  Conditions:");
            for c in &info.conditions {
                let mark = if c.status == "True" {
                    style::paint(GOOD, style::PASS)
                } else {
                    style::paint(BAD, style::FAIL)
                };
                anstream::println!(
                    "    {mark} {}={}, reason {}: {} ({} ago)",
                    c.type_,
                    c.status,
                    c.reason,
                    c.message,
                    age(c.last_transition_time, now)
                );
            }
        }
    }
}

fn print_keys(report: &Report, now: Timestamp, bin: &str) {
    let Some(ring) = &report.keys.data else {
        heading("Keys");
        section_error(report.keys.error.as_ref());
        return;
    };
    let source = match ring.source {
        status_keys::KeySource::Generated => "generated",
        status_keys::KeySource::SecretRef => "spec.secretRef",
        status_keys::KeySource::PublicKey => "spec.secret.publicKey",
    };
    heading(&format!("Keys (Secret {}, {source})", ring.secret_name));
    anstream::println!("  {:<10} {:<8} {:<26} FINGERPRINT", "ID", "AGE", "EXPIRES");
    for (i, key) in ring.keys.iter().enumerate() {
        let expires = key.expires_at.map_or_else(
            || "-".to_owned(),
            |at| {
                if at <= now {
                    format!("expired {} ago", age(at, now))
                } else {
                    format!("in {}", age(now, at))
                }
            },
        );
        anstream::println!(
            "  {:<10} {:<8} {:<26} {:<24}{}",
            key.id,
            key.created_at
                .map_or_else(|| "-".to_owned(), |at| age(at, now)),
            expires,
            key.fingerprint,
            if i == 0 {
                style::paint(GOOD, " current")
            } else {
                String::new()
            }
        );
    }
    anstream::println!(
        "  {}",
        style::paint(
            DIM,
            format!(
                "values are never shown here: `{bin} secret {} --show`",
                report.name
            )
        )
    );
}

fn print_config(report: &Report) {
    heading("Sidecar config");
    section_error(report.config.error.as_ref());
    if let Some(config) = &report.config.data {
        if config.present {
            let rendered = config.rendered_generation.map_or_else(
                || "no ConfigReady generation recorded".to_owned(),
                |generation| format!("renders generation {generation}"),
            );
            let mark = if config.up_to_date {
                style::paint(GOOD, style::PASS)
            } else {
                style::paint(WARN, style::WARNING)
            };
            anstream::println!("  {mark} ConfigMap {} present, {rendered}", config.name);
        } else {
            anstream::println!(
                "  {} ConfigMap {} missing",
                style::paint(BAD, style::FAIL),
                config.name
            );
        }
    }
}

fn print_pods(report: &Report) {
    heading("Pods");
    section_error(report.pods.error.as_ref());
    if let Some(pods) = &report.pods.data {
        if pods.pods.is_empty() {
            anstream::println!(
                "  no pod selects it (spec.podSelector or annotation hookguard.dev/endpoints)"
            );
        } else {
            let width = pods
                .pods
                .iter()
                .map(|pod| pod.name.len())
                .max()
                .unwrap_or(3)
                .max(3);
            anstream::println!("  {:<width$}  {:<8}  REASON", "POD", "INJECTED");
            for pod in &pods.pods {
                let mark = if pod.injected {
                    style::paint(GOOD, style::YES)
                } else if pod.counts {
                    style::paint(BAD, style::NO)
                } else {
                    style::paint(WARN, style::NO)
                };
                // The mark is one column wide; pad by hand so escape codes do not count.
                anstream::println!("  {:<width$}  {mark}{:<7}  {}", pod.name, "", pod.reason);
            }
        }
    }
}

fn print_sidecars(report: &Report) {
    heading("Sidecars");
    if let Some(info) = &report.sidecars.data {
        if info.sidecars.is_empty() {
            anstream::println!(
                "  no running pod serves it (pass --sidecar URL for a sidecar run as a process)"
            );
        }
        for sidecar in &info.sidecars {
            status_sidecar::print(sidecar);
        }
    }
}

fn print_events(report: &Report, now: Timestamp) {
    heading("Events");
    section_error(report.events.error.as_ref());
    if let Some(events) = &report.events.data {
        if events.events.is_empty() {
            anstream::println!("  none");
        }
        for event in &events.events {
            let kind = if event.type_ == "Warning" {
                style::paint(WARN, &event.type_)
            } else {
                event.type_.clone()
            };
            let seen = event
                .last_seen
                .map_or_else(|| "-".to_owned(), |at| format!("{} ago", age(at, now)));
            let count = if event.count > 1 {
                format!(" (x{})", event.count)
            } else {
                String::new()
            };
            anstream::println!(
                "  {seen:<10} {kind} {}{count}: {}",
                event.reason,
                event.message
            );
        }
    }
}

fn print_verdict(report: &Report) {
    if report.healthy {
        anstream::println!("{} healthy", style::paint(GOOD, style::PASS));
    } else {
        for problem in &report.problems {
            anstream::println!("{} {problem}", style::paint(BAD, style::FAIL));
        }
    }
}

/// Counts by outcome, for the text.
pub fn counts_text(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(outcome, count)| format!("{outcome} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}
