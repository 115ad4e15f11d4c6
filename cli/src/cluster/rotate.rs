//! `hookguard rotate ENDPOINT`: asks the operator for a new signing key and waits until every
//! sidecar verifies with it.
//!
//! The request is the annotation [`ANNOTATION_ROTATE`] on the `WebhookEndpoint`, set to a new
//! value (the time) with a merge patch. The operator adds a key to the signing Secret and
//! records the request in the Secret's [`ANNOTATION_KEYS`]; once `lastRotateRequest` is our
//! value, the newest key there is the new one. Its [`key_fingerprint`] is computed from the
//! Secret's data, and each sidecar's `GET /keys` is polled until it reports that fingerprint
//! for the endpoint: the kubelet has synced the Secret volume and the sidecar reloaded. Only
//! fingerprints cross the wire; no key material leaves the Secret or the pod.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Serialize;

use hookguard_api::admin::{PATH_KEYS, SidecarKeys, key_fingerprint};
use hookguard_api::crd::WebhookEndpoint;
use hookguard_api::keys::KeyRingMeta;
use hookguard_api::names::{ANNOTATION_KEYS, ANNOTATION_ROTATE, signing_secret_name};

use crate::common::style::{self, BAD, BOLD, DIM, GOOD, WARN};
use crate::common::{Context, Exit, parse_duration};
use crate::sidecar_access::{self, Target};

/// How often the Secret and the sidecars are asked again.
const POLL: Duration = Duration::from_millis(500);

/// `rotate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The WebhookEndpoint whose signing key to rotate.
    pub endpoint: String,
    /// A sidecar's admin URL to wait for instead of the endpoint's pods (repeat for several),
    /// e.g. `http://127.0.0.1:9881`.
    #[arg(long = "sidecar", value_name = "URL")]
    pub sidecars: Vec<String>,
    /// How long to wait for the operator and every sidecar.
    #[arg(long, default_value = "2m", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// Request the rotation and return without waiting.
    #[arg(long)]
    pub no_wait: bool,
}

/// What `-o json|yaml` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    endpoint: String,
    namespace: String,
    rotate_request: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_key: Option<NewKey>,
    sidecars: Vec<SidecarState>,
    /// When the previous keys stop verifying.
    #[serde(skip_serializing_if = "Option::is_none")]
    old_keys_expire_at: Option<Timestamp>,
    done: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct NewKey {
    id: String,
    fingerprint: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct SidecarState {
    target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    has_new_key: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
}

/// Runs `rotate`.
pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<Exit> {
    let text = !matches!(
        ctx.output,
        crate::common::Output::Json | crate::common::Output::Yaml
    );
    let (client, namespace) = ctx.kube.client().await?;
    let endpoints: Api<WebhookEndpoint> = Api::namespaced(client.clone(), &namespace);
    let name = &args.endpoint;
    if !rotatable(&endpoints, name, &namespace).await? {
        return Ok(Exit::Failure);
    }

    let request = request_rotation(&endpoints, name).await?;
    let mut report = Report {
        endpoint: name.clone(),
        namespace: namespace.clone(),
        rotate_request: request.clone(),
        new_key: None,
        sidecars: Vec::new(),
        old_keys_expire_at: None,
        done: false,
    };
    if text {
        anstream::println!(
            "{} rotation requested: {ANNOTATION_ROTATE}={request} on {name}",
            style::paint(GOOD, style::PASS)
        );
    }
    if args.no_wait {
        report.done = true;
        ctx.print_data(&report)?;
        return Ok(Exit::Ok);
    }
    let deadline = tokio::time::Instant::now() + args.timeout;

    // 1. The operator adds the key.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret_name = signing_secret_name(name);
    let (new_key, expires_at) = match wait_for_operator(&secrets, &secret_name, &request, deadline)
        .await
    {
        Ok(found) => found,
        Err(last_error) => {
            anstream::eprintln!(
                "{} the operator did not rotate {name} within {}: {last_error}. Is the operator running? \
                 See its Events with kubectl describe whe {name} -n {namespace}.",
                style::paint(BAD, style::FAIL),
                humanize(args.timeout)
            );
            ctx.print_data(&report)?;
            return Ok(Exit::Timeout);
        }
    };
    if text {
        anstream::println!(
            "{} the operator added key {} ({}) to Secret {secret_name}",
            style::paint(GOOD, style::PASS),
            new_key.id,
            new_key.fingerprint
        );
    }
    report.new_key = Some(new_key.clone());
    report.old_keys_expire_at = expires_at;

    // 2. Every sidecar loads it.
    let targets =
        sidecar_access::endpoint_targets(&client, &namespace, name, &args.sidecars).await?;
    if targets.is_empty() && text {
        anstream::println!(
            "{} no running pod serves {name} in {namespace}: no sidecar to wait for",
            style::paint(WARN, style::WARNING)
        );
    }
    report.sidecars = wait_for_sidecars(&client, &targets, name, &new_key, deadline, text).await;
    if report.sidecars.iter().any(|s| !s.has_new_key) {
        if text {
            explain_missing(
                &report.sidecars,
                &new_key,
                args.timeout,
                expires_at,
                ctx.bin,
            );
        }
        ctx.print_data(&report)?;
        return Ok(Exit::Timeout);
    }

    report.done = true;
    if !ctx.print_data(&report)? {
        print_done(&new_key, expires_at);
    }
    Ok(Exit::Ok)
}

/// Sets [`ANNOTATION_ROTATE`] to a new value, the time now, and returns it.
async fn request_rotation(endpoints: &Api<WebhookEndpoint>, name: &str) -> anyhow::Result<String> {
    let request = Timestamp::now().to_string();
    endpoints
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {ANNOTATION_ROTATE: request}}
            })),
        )
        .await
        .with_context(|| {
            format!("setting {ANNOTATION_ROTATE} on {name} (needs patch on webhookendpoints)")
        })?;
    Ok(request)
}

fn print_done(new_key: &NewKey, expires_at: Option<Timestamp>) {
    match expires_at {
        Some(at) => anstream::println!(
            "{} every sidecar verifies with {}; the previous key stays valid until {} (the grace period), then only {} does",
            style::paint(GOOD, style::PASS),
            new_key.id,
            style::paint(BOLD, at),
            new_key.id
        ),
        None => anstream::println!(
            "{} every sidecar verifies with {}",
            style::paint(GOOD, style::PASS),
            new_key.id
        ),
    }
}

/// Whether the operator can rotate `name`'s key; says why not when it cannot.
async fn rotatable(
    endpoints: &Api<WebhookEndpoint>,
    name: &str,
    namespace: &str,
) -> anyhow::Result<bool> {
    let endpoint = endpoints
        .get_opt(name)
        .await
        .with_context(|| format!("reading WebhookEndpoint {name} in {namespace}"))?;
    let Some(endpoint) = endpoint else {
        anstream::eprintln!(
            "{} no WebhookEndpoint {name} in namespace {namespace} (list them with kubectl get whe -n {namespace})",
            style::paint(BAD, style::FAIL)
        );
        return Ok(false);
    };
    if let Some(reference) = &endpoint.spec.secret.secret_ref {
        anstream::eprintln!(
            "{} {name} verifies with a secret the sender issued (spec.secret.secretRef: Secret {}, key {}); \
             the operator cannot rotate it. Rotate it at the sender, then update that Secret: the sidecars \
             reload it by themselves.",
            style::paint(BAD, style::FAIL),
            reference.name,
            reference.key
        );
        return Ok(false);
    }
    if endpoint.spec.secret.public_key.is_some() {
        anstream::eprintln!(
            "{} {name} verifies with the sender's public key (spec.secret.publicKey); there is no secret \
             for the operator to rotate. When the sender changes its key, put the new one in \
             spec.secret.publicKey: the sidecars reload it by themselves.",
            style::paint(BAD, style::FAIL),
        );
        return Ok(false);
    }
    Ok(true)
}

/// Polls the signing Secret until it records `request` as done; the last problem seen when
/// `deadline` passes first.
async fn wait_for_operator(
    secrets: &Api<Secret>,
    secret_name: &str,
    request: &str,
    deadline: tokio::time::Instant,
) -> Result<(NewKey, Option<Timestamp>), String> {
    let mut last_error = String::from("the operator has not acted on the request yet");
    loop {
        match rotated(secrets, secret_name, request).await {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => {}
            Err(error) => last_error = format!("{error:#}"),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(last_error);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls every target's `/keys` until each verifies `endpoint` with the new key or `deadline`
/// passes; prints each as it gets there.
async fn wait_for_sidecars(
    client: &kube::Client,
    targets: &[Target],
    endpoint: &str,
    new_key: &NewKey,
    deadline: tokio::time::Instant,
    text: bool,
) -> Vec<SidecarState> {
    let mut states: Vec<SidecarState> = targets
        .iter()
        .map(|target| SidecarState {
            target: target.to_string(),
            instance: None,
            has_new_key: false,
            last_error: None,
        })
        .collect();
    if text && !targets.is_empty() {
        anstream::println!(
            "waiting for {} sidecar(s) to load {} {}",
            targets.len(),
            new_key.id,
            style::paint(
                DIM,
                "(the kubelet syncs Secret volumes within about a minute)"
            )
        );
    }
    loop {
        for (target, state) in targets.iter().zip(states.iter_mut()) {
            if state.has_new_key {
                continue;
            }
            match loaded(client, target, endpoint, &new_key.fingerprint).await {
                Ok((instance, has)) => {
                    if has && text {
                        anstream::println!(
                            "  {} {target} ({instance}) verifies with {}",
                            style::paint(GOOD, style::YES),
                            new_key.id
                        );
                    }
                    state.instance = Some(instance);
                    state.has_new_key = has;
                    state.last_error = None;
                }
                Err(error) => state.last_error = Some(format!("{error:#}")),
            }
        }
        if states.iter().all(|s| s.has_new_key) || tokio::time::Instant::now() >= deadline {
            return states;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Says which sidecars lack the new key after `timeout`, and why that usually is.
fn explain_missing(
    states: &[SidecarState],
    new_key: &NewKey,
    timeout: Duration,
    expires_at: Option<Timestamp>,
    bin: &str,
) {
    anstream::eprintln!(
        "{} after {}, these sidecars do not verify with {} yet:",
        style::paint(BAD, style::FAIL),
        humanize(timeout),
        new_key.id
    );
    for state in states.iter().filter(|s| !s.has_new_key) {
        let instance = state.instance.as_deref().map(|i| format!(" ({i})"));
        let error = state.last_error.as_deref().map(|e| format!(": {e}"));
        anstream::eprintln!(
            "  {} {}{}{}",
            style::paint(BAD, style::NO),
            state.target,
            instance.unwrap_or_default(),
            error.unwrap_or_default()
        );
    }
    let until = expires_at.map(|at| format!(" (until {at})"));
    anstream::eprintln!(
        "The kubelet updates a mounted Secret within about a minute (its sync period plus its cache); \
         a sidecar whose reload failed keeps its last good keys (see hookguard_config_last_reload_ok \
         on its /metrics, and its log). Until then the old key still verifies{}; run {bin} rotate \
         again with a longer --timeout, or wait.",
        until.unwrap_or_default()
    );
}

/// The new key and when the older ones expire, once the Secret records `request` as done.
async fn rotated(
    secrets: &Api<Secret>,
    secret_name: &str,
    request: &str,
) -> anyhow::Result<Option<(NewKey, Option<Timestamp>)>> {
    let Some(secret) = secrets
        .get_opt(secret_name)
        .await
        .with_context(|| format!("reading Secret {secret_name}"))?
    else {
        anyhow::bail!("the signing Secret {secret_name} does not exist yet");
    };
    let Some(text) = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_KEYS))
    else {
        return Ok(None);
    };
    let ring: KeyRingMeta = serde_json::from_str(text)
        .with_context(|| format!("the annotation {ANNOTATION_KEYS} on {secret_name}"))?;
    if ring.last_rotate_request.as_deref() != Some(request) {
        return Ok(None);
    }
    let Some(newest) = ring.keys.first() else {
        return Ok(None);
    };
    let Some(material) = secret.data.as_ref().and_then(|d| d.get(&newest.id)) else {
        return Ok(None);
    };
    let expires_at = ring.keys[1..].iter().filter_map(|k| k.expires_at).max();
    Ok(Some((
        NewKey {
            id: newest.id.clone(),
            fingerprint: key_fingerprint(&material.0),
        },
        expires_at,
    )))
}

/// The sidecar's instance name and whether it verifies `endpoint` with `fingerprint`.
async fn loaded(
    client: &kube::Client,
    target: &Target,
    endpoint: &str,
    fingerprint: &str,
) -> anyhow::Result<(String, bool)> {
    let keys: SidecarKeys = sidecar_access::get(Some(client), target, PATH_KEYS)
        .await?
        .json("GET /keys")?;
    let has = keys
        .endpoints
        .iter()
        .filter(|e| e.name == endpoint)
        .flat_map(|e| &e.keys)
        .any(|k| k.fingerprint == fingerprint);
    Ok((keys.instance, has))
}

fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else if secs > 0 {
        format!("{secs}s")
    } else {
        format!("{}ms", duration.as_millis())
    }
}
