//! The operator against the real control plane (kube-apiserver, etcd, kube-controller-manager):
//! endpoints become Ready with a Secret and ConfigMap the sidecar accepts, children are
//! repaired, `secretRef` waits for its Secret, invalid specs are refused by the CEL rules,
//! rotation keeps two keys for the grace period then one, garbage collection removes the
//! children, the operator never writes `spec`, and with two operator processes only the
//! leader reconciles until it is killed.
//!
//! The in-process operator acts as a ServiceAccount holding exactly the rules of
//! `operator/RBAC.md`, so a missing permission fails here. Each test has its own namespace
//! and an operator scoped to it.

// Tests fail by panicking; each scenario reads top to bottom as one story, so long.
#![allow(clippy::unwrap_used, clippy::panic, clippy::too_many_lines)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use bytes::Bytes;
use clap::Parser as _;
use hookguard_api::crd::WebhookEndpoint;
use hookguard_api::names::{FIELD_MANAGER, sidecar_config_name, signing_secret_name};
use hookguard_sidecar::sign;
use hookguard_tests::app::TestApp;
use hookguard_tests::control_plane::{TestNamespace, with_namespace};
use hookguard_tests::operator::{
    InProcess, children, condition, config, endpoint, eventually, install_crd, materialize,
    operator_binary, operator_client, secret_keys, wait_condition,
};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const READY_WITHIN: Duration = Duration::from_secs(30);
/// Bound on a change the operator makes because a watch told it (a deleted child, an edited
/// Secret): far inside the 5-minute retry, so only a watch can have brought it in time, and
/// generous for a 2-core machine under load (15 s was seen exceeded there once).
const BY_A_WATCH: Duration = Duration::from_secs(60);

/// A sidecar started on the files under `root` (as `materialize` wrote them).
async fn start_sidecar(root: &Path) -> anyhow::Result<hookguard_sidecar::Running> {
    let config_dir = root.join("endpoints").to_string_lossy().into_owned();
    let args = hookguard_sidecar::Args::try_parse_from([
        "hookguard-sidecar",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--config-dir",
        &config_dir,
    ])?;
    let settings = hookguard_sidecar::Settings::try_from(args)?;
    let endpoints = hookguard_sidecar::load_endpoints(&settings.config_dir)
        .map_err(|err| anyhow::anyhow!("the sidecar refuses the operator's files: {err}"))?;
    Ok(hookguard_sidecar::start(settings, &endpoints).await?)
}

/// POSTs a Generic-scheme delivery signed with `key` and returns the status code.
async fn post_signed(
    sidecar: &hookguard_sidecar::Running,
    path: &str,
    key: &str,
    id: &str,
) -> anyhow::Result<u16> {
    let body = format!(r#"{{"delivery":"{id}"}}"#);
    let signature = sign::generic(key.as_bytes(), body.as_bytes());
    let request = hyper::Request::post(format!("http://{}{path}", sidecar.addr))
        .header("x-signature", signature)
        .header("x-delivery-id", id)
        .body(Full::new(Bytes::from(body)))?;
    let client = HttpClient::builder(TokioExecutor::new()).build_http();
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request)).await??;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await?;
    Ok(status)
}

async fn get_text(url: &str) -> anyhow::Result<(u16, String)> {
    let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        client.get(url.parse().context("url")?),
    )
    .await??;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The operator's field manager appears on the endpoint only for the status subresource.
fn assert_never_wrote_spec(endpoint: &WebhookEndpoint) {
    let ours: Vec<_> = endpoint
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| entry.manager.as_deref() == Some(FIELD_MANAGER))
        .collect();
    assert!(!ours.is_empty(), "the operator wrote no status");
    for entry in ours {
        assert_eq!(
            entry.subresource.as_deref(),
            Some("status"),
            "the operator owns fields outside status: {entry:?}"
        );
        let fields = serde_json::to_string(&entry.fields_v1).unwrap();
        assert!(!fields.contains("f:spec"), "{fields}");
    }
}

/// Creates endpoint `name` with `spec` and waits until the operator reports it Ready.
async fn create_ready(
    api: &Api<WebhookEndpoint>,
    name: &str,
    spec: &str,
) -> anyhow::Result<WebhookEndpoint> {
    api.create(&PostParams::default(), &endpoint(name, spec)?)
        .await?;
    wait_condition(api, name, "Ready", "True", READY_WITHIN).await
}

fn generic_spec(path: &str, port: u16, extra: &str) -> String {
    format!("{{scheme: Generic, path: {path}, upstream: {{port: {port}}}{extra}}}")
}

#[tokio::test]
async fn endpoint_becomes_ready_and_the_sidecar_accepts_its_signature() {
    with_namespace("op-ready", |ns| async move {
        let operator = InProcess::solo(&ns).await?;
        let api: Api<WebhookEndpoint> = ns.api();
        let app = TestApp::ok().await?;
        api.create(
            &PostParams::default(),
            &endpoint("orders", &generic_spec("/orders", app.port(), ""))?,
        )
        .await?;
        // One endpoint of every other scheme: the sidecar must accept each key encoding.
        let others = [
            ("svix", "StandardWebhooks"),
            ("stripe", "Stripe"),
            ("gh", "GitHub"),
            ("slack", "Slack"),
            ("shop", "Shopify"),
        ];
        for (name, scheme) in others {
            let spec = format!("{{scheme: {scheme}, path: /{name}, upstream: {{port: 8080}}}}");
            api.create(&PostParams::default(), &endpoint(name, &spec)?)
                .await?;
        }

        let ready = wait_condition(&api, "orders", "Ready", "True", READY_WITHIN).await?;
        let status = ready.status.clone().context("no status")?;
        let id = status.endpoint_id.clone().context("no endpointId")?;
        assert!(
            id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
        assert_eq!(status.secret_name.as_deref(), Some("orders-signing"));
        assert_eq!(status.config_name.as_deref(), Some("orders-sidecar"));
        assert_eq!(status.keys.len(), 1);
        assert_eq!(status.keys[0].id, "k1");
        assert!(status.keys[0].created_at.is_some() && status.keys[0].expires_at.is_none());
        for type_ in ["Ready", "SecretReady", "ConfigReady"] {
            let c = status.conditions.iter().find(|c| c.type_ == type_).unwrap();
            assert_eq!(c.status, "True", "{c:?}");
            assert_eq!(c.observed_generation, ready.metadata.generation);
            assert!(!c.reason.is_empty() && !c.message.is_empty(), "{c:?}");
        }
        assert_never_wrote_spec(&ready);

        let (secret, config_map) = children(&ns, "orders").await?;
        let uid = ready.metadata.uid.clone().unwrap();
        for meta in [&secret.metadata, &config_map.metadata] {
            let labels = meta.labels.clone().unwrap_or_default();
            assert_eq!(labels["app.kubernetes.io/managed-by"], "hookguard");
            assert_eq!(labels["hookguard.dev/endpoint"], "orders");
            let owner = &meta.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.uid.as_str(), owner.controller),
                (uid.as_str(), Some(true))
            );
        }
        let keys = secret_keys(&secret);
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["k1"]);
        let material = keys["k1"].clone();
        assert_eq!(material.len(), 64, "hex of 32 random bytes");
        let config_text = serde_json::to_string(&config_map.data).unwrap();
        assert!(
            !config_text.contains(&material),
            "secret material in the ConfigMap"
        );

        // The kubelet's files, read by the sidecar's own loader, then a signed delivery.
        let root = tempfile::tempdir()?;
        let orders = materialize(root.path(), &config_map, &keys)?;
        assert_eq!(orders.endpoint_id, id);
        for (name, _) in others {
            wait_condition(&api, name, "Ready", "True", READY_WITHIN).await?;
            let (secret, config_map) = children(&ns, name).await?;
            materialize(root.path(), &config_map, &secret_keys(&secret))?;
        }
        let svix = secret_keys(&children(&ns, "svix").await?.0);
        assert!(
            svix["k1"].starts_with("whsec_"),
            "Standard Webhooks key format"
        );
        let sidecar = start_sidecar(root.path()).await?;
        assert_eq!(
            post_signed(&sidecar, "/orders", &material, "d-1").await?,
            200
        );
        assert_eq!(app.arrivals("d-1"), 1);
        assert_eq!(
            post_signed(&sidecar, "/orders", "not-the-key", "d-2").await?,
            401
        );
        assert_eq!(app.arrivals("d-2"), 0);
        sidecar.shutdown();

        // Operations: probes, metrics, Events.
        // The leader turns ready once its cache reports synced, checked every 200 ms, which
        // can trail the first reconcile by that much: wait as a readiness probe would.
        let readyz = format!("{}/readyz", operator.metrics_url());
        eventually(
            "the leader's /readyz answers 200",
            Duration::from_secs(5),
            || {
                let readyz = readyz.clone();
                async move { Ok(get_text(&readyz).await?.0 == 200) }
            },
        )
        .await
        .with_context(|| operator.metrics_text())?;
        // A reconcile is counted after it returns, a moment after the status it wrote.
        let metrics_url = format!("{}/metrics", operator.metrics_url());
        let samples = [
            "hookguard_operator_reconciles_total{result=\"ok\",error=\"\"}",
            "hookguard_operator_leader 1",
            "hookguard_operator_endpoints 6",
            "hookguard_operator_reconcile_duration_seconds_count",
        ];
        eventually(
            "the metrics show the reconciles",
            Duration::from_secs(10),
            || {
                let metrics_url = metrics_url.clone();
                async move {
                    let (_, metrics) = get_text(&metrics_url).await?;
                    let missing: Vec<&str> = samples
                        .into_iter()
                        .filter(|s| !metrics.contains(s))
                        .collect();
                    ensure!(missing.is_empty(), "{missing:?} missing:\n{metrics}");
                    Ok(true)
                }
            },
        )
        .await?;
        let events: Api<Event> = ns.api();
        let reasons: Vec<String> = events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|event| event.reason)
            .collect();
        assert!(reasons.iter().any(|r| r == "KeyGenerated"), "{reasons:?}");
        operator.stop().await;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn deleted_children_come_back_and_secret_ref_waits_for_its_secret() {
    with_namespace("op-repair", |ns| async move {
        let operator = InProcess::solo(&ns).await?;
        let api: Api<WebhookEndpoint> = ns.api();
        let ready = create_ready(&api, "repair", &generic_spec("/r", 8080, "")).await?;
        let id = ready.status.unwrap().endpoint_id.unwrap();
        let secrets: Api<Secret> = ns.api();
        let config_maps: Api<ConfigMap> = ns.api();

        // A deleted Secret comes back. Its material is lost, so a fresh key under a new ID,
        // k2 (an old ID never names new material); unless a reconcile already in flight had
        // read the Secret just before the deletion: its apply then puts k1 back as it was.
        let before = secret_keys(&secrets.get("repair-signing").await?);
        secrets
            .delete(&signing_secret_name("repair"), &DeleteParams::default())
            .await?;
        eventually("the Secret is back", BY_A_WATCH, || {
            let secrets = secrets.clone();
            async move {
                Ok(secrets
                    .get_opt("repair-signing")
                    .await?
                    .is_some_and(|s| !secret_keys(&s).is_empty()))
            }
        })
        .await?;
        let back = secret_keys(&secrets.get("repair-signing").await?);
        let fresh = back.len() == 1 && back.contains_key("k2");
        ensure!(
            back == before || fresh,
            "the Secret came back with keys {:?} (before: {:?})",
            back.keys(),
            before.keys()
        );
        if let Some(k1) = back.get("k1") {
            ensure!(before.get("k1") == Some(k1), "key ID k1 names new material");
        }
        eprintln!(
            "the deleted Secret came back with {}",
            if fresh {
                "a fresh key k2"
            } else {
                "k1 restored by a reconcile in flight"
            }
        );
        if fresh {
            // The lost key is reported, naming it and its replacement.
            let events: Api<Event> = ns.api();
            eventually("a Warning names the lost key", BY_A_WATCH, || {
                let events = events.clone();
                async move {
                    Ok(events
                        .list(&ListParams::default())
                        .await?
                        .items
                        .iter()
                        .any(|event| {
                            event.reason.as_deref() == Some("SigningKeysLost")
                                && event.type_.as_deref() == Some("Warning")
                                && event.note.as_deref().is_some_and(|note| {
                                    note.contains("key(s) k1") && note.contains("new key k2")
                                })
                        }))
                }
            })
            .await?;
        }

        // A deleted ConfigMap comes back with the same endpoint ID; an edited one is repaired.
        config_maps
            .delete(&sidecar_config_name("repair"), &DeleteParams::default())
            .await?;
        let has_id = |cm: &ConfigMap| {
            cm.data
                .as_ref()
                .and_then(|d| d.get("endpoint.json"))
                .is_some_and(|text| text.contains(&id))
        };
        eventually("the ConfigMap is back", BY_A_WATCH, || {
            let config_maps = config_maps.clone();
            async move {
                Ok(config_maps
                    .get_opt("repair-sidecar")
                    .await?
                    .is_some_and(|cm| has_id(&cm)))
            }
        })
        .await?;
        config_maps
            .patch(
                "repair-sidecar",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"endpoint.json": "{}"}})),
            )
            .await?;
        eventually("the edited ConfigMap is repaired", BY_A_WATCH, || {
            let config_maps = config_maps.clone();
            async move { Ok(has_id(&config_maps.get("repair-sidecar").await?)) }
        })
        .await?;
        let status = api.get("repair").await?.status.unwrap();
        assert_eq!(status.endpoint_id.as_deref(), Some(id.as_str()));
        assert_eq!(
            status
                .keys
                .iter()
                .map(|k| k.id.as_str())
                .collect::<Vec<_>>(),
            back.keys().map(String::as_str).collect::<Vec<_>>(),
            "the status lists the Secret's keys"
        );

        // A Secret already named like the generated one, but someone else's: left alone.
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "taken-signing"}, "stringData": {"mine": "keep me"},
                }))?,
            )
            .await?;
        api.create(
            &PostParams::default(),
            &endpoint("taken", &generic_spec("/taken", 8080, ""))?,
        )
        .await?;
        let blocked = wait_condition(&api, "taken", "SecretReady", "False", READY_WITHIN).await?;
        let (_, reason, message) = condition(&blocked, "SecretReady").unwrap();
        assert_eq!(reason, "SecretNotOwned");
        assert!(
            message.contains("taken-signing") && message.contains("secretRef"),
            "{message}"
        );
        let untouched = secrets.get("taken-signing").await?;
        assert_eq!(
            secret_keys(&untouched).keys().collect::<Vec<_>>(),
            ["mine"],
            "not overwritten"
        );
        // Its owner deletes it: the endpoint gets its own, without waiting for a retry.
        secrets
            .delete("taken-signing", &DeleteParams::default())
            .await?;
        wait_condition(&api, "taken", "Ready", "True", BY_A_WATCH).await?;

        // Likewise a ConfigMap of the sidecar config's name, e.g. a deleted namesake's not yet
        // collected: its endpoint ID is not adopted and it is not overwritten.
        config_maps
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "namesake-sidecar"},
                    "data": {"endpoint.json": "{\"endpointId\": \"someone-elses-id\"}"},
                }))?,
            )
            .await?;
        api.create(
            &PostParams::default(),
            &endpoint("namesake", &generic_spec("/namesake", 8080, ""))?,
        )
        .await?;
        let blocked =
            wait_condition(&api, "namesake", "ConfigReady", "False", READY_WITHIN).await?;
        let (_, reason, message) = condition(&blocked, "ConfigReady").unwrap();
        assert_eq!(reason, "ConfigNotOwned");
        assert!(message.contains("namesake-sidecar"), "{message}");
        assert_eq!(condition(&blocked, "Ready").unwrap().0, "False");
        let status = blocked.status.clone().unwrap();
        assert_ne!(
            status.endpoint_id.as_deref(),
            Some("someone-elses-id"),
            "no adopted dedup records"
        );
        let untouched = config_maps.get("namesake-sidecar").await?;
        assert!(
            untouched.data.unwrap()["endpoint.json"].contains("someone-elses-id"),
            "not overwritten"
        );

        // secretRef to a Secret that does not exist yet.
        let spec = generic_spec(
            "/byref",
            8080,
            ", secret: {secretRef: {name: sender-secret, key: token}}",
        );
        api.create(&PostParams::default(), &endpoint("byref", &spec)?)
            .await?;
        let waiting = wait_condition(&api, "byref", "SecretReady", "False", READY_WITHIN).await?;
        let (_, reason, message) = condition(&waiting, "SecretReady").unwrap();
        assert_eq!(reason, "SecretRefMissing");
        assert!(message.contains("sender-secret"), "{message}");
        assert_eq!(condition(&waiting, "Ready").unwrap().0, "False");
        assert!(secrets.get_opt("byref-signing").await?.is_none());
        assert!(config_maps.get_opt("byref-sidecar").await?.is_some());

        // The Secret without the key: still not ready, and the message says which key.
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "sender-secret"}, "stringData": {"other": "x"},
                }))?,
            )
            .await?;
        eventually("SecretReady names the missing key", BY_A_WATCH, || {
            let api = api.clone();
            async move {
                let endpoint = api.get("byref").await?;
                Ok(
                    condition(&endpoint, "SecretReady").is_some_and(|(_, reason, msg)| {
                        reason == "SecretRefKeyMissing" && msg.contains("token")
                    }),
                )
            }
        })
        .await?;
        let started = Instant::now();
        secrets
            .patch(
                "sender-secret",
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"token": "whsec_from_the_sender"}})),
            )
            .await?;
        let ready = wait_condition(&api, "byref", "Ready", "True", BY_A_WATCH).await?;
        // The Secret watch, not the 5-minute retry, brought it.
        assert!(started.elapsed() < BY_A_WATCH);
        assert_eq!(
            ready.status.unwrap().secret_name.as_deref(),
            Some("sender-secret")
        );
        operator.stop().await;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn invalid_specs_are_rejected_by_the_api_server_with_the_cel_message() {
    with_namespace("op-cel", |ns| async move {
        install_crd(&ns.client).await?;
        let api: Api<WebhookEndpoint> = ns.api();
        let cases = [
            (
                "{scheme: Generic, path: /a, upstream: {port: 80}, secret: {generate: {}, secretRef: {name: s}}}",
                "set exactly one of secret.generate, secret.secretRef and secret.publicKey",
            ),
            (
                "{scheme: Generic, path: /a, upstream: {port: 80}, replay: {tolerance: 10m, window: 15m}}",
                "replay.window must be at least twice replay.tolerance",
            ),
            (
                "{scheme: Generic, path: webhooks, upstream: {port: 80}}",
                "path must start with '/'",
            ),
            (
                "{scheme: Stripe, path: /a, upstream: {port: 80}, generic: {signatureHeader: X}}",
                "spec.generic applies only to scheme Generic",
            ),
            (
                "{scheme: Generic, path: /a, upstream: {port: 80}, rotation: {every: 10m}}",
                "rotation.every is a duration of at least 1h",
            ),
        ];
        for (n, (spec, expected)) in cases.iter().enumerate() {
            let err = api
                .create(&PostParams::default(), &endpoint(&format!("bad-{n}"), spec)?)
                .await
                .expect_err(expected);
            let kube::Error::Api(status) = err else {
                panic!("expected an API error for {spec}, got {err:?}");
            };
            assert_eq!(status.code, 422, "{status:?}");
            assert!(status.message.contains(expected), "{spec}: {}", status.message);
        }
        api.create(&PostParams::default(), &endpoint("good", &generic_spec("/a", 80, ""))?)
            .await?;
        Ok(())
    })
    .await;
}

/// A SendGrid Event Webhook verification key (a P-256 public key, base64 DER).
const SENDGRID_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEyTNmjB73HmMlMEzDevoAeizGRViGh06fg6Dyj3w3i9IzakbbXyN5ew/WORUKmo4GUSDpHu+0YsYgVopyGh7Nw==";

#[tokio::test]
async fn a_public_key_lands_in_the_endpoints_own_secret_and_an_issued_secret_is_never_generated() {
    with_namespace("op-pubkey", |ns| async move {
        let _operator = InProcess::solo(&ns).await?;
        let api: Api<WebhookEndpoint> = ns.api();
        let spec = format!(
            "{{scheme: SendGrid, path: /events, upstream: {{port: 8080}}, secret: {{publicKey: '{SENDGRID_KEY}'}}}}"
        );
        let ready = create_ready(&api, "grid", &spec).await?;
        let status = ready.status.clone().context("no status")?;
        assert_eq!(status.secret_name.as_deref(), Some("grid-signing"));
        let ids: Vec<_> = status.keys.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["public-key"]);
        assert!(status.keys[0].created_at.is_some() && status.keys[0].expires_at.is_none());
        let (secret, config_map) = children(&ns, "grid").await?;
        let keys = secret_keys(&secret);
        assert_eq!(
            keys,
            std::collections::BTreeMap::from([("public-key".to_owned(), SENDGRID_KEY.to_owned())])
        );
        let owner = &secret.metadata.owner_references.clone().unwrap()[0];
        assert_eq!(owner.uid, ready.metadata.uid.clone().unwrap());
        // The kubelet's files, read by the sidecar's own loader.
        let root = tempfile::tempdir()?;
        materialize(root.path(), &config_map, &keys)?;
        hookguard_sidecar::load_endpoints(&root.path().join("endpoints"))
            .map_err(|err| anyhow::anyhow!("the sidecar refuses the operator's files: {err}"))?;

        // Twilio issues its secret: the default `secret: {generate: {}}` is refused, naming it.
        let err = api
            .create(
                &PostParams::default(),
                &endpoint(
                    "voice",
                    "{scheme: Twilio, path: /voice, publicUrl: 'https://example.com/voice', upstream: {port: 8080}}",
                )?,
            )
            .await
            .expect_err("a generated Twilio secret");
        let kube::Error::Api(status) = err else {
            panic!("expected an API error, got {err:?}");
        };
        assert_eq!(status.code, 422, "{status:?}");
        assert!(
            status.message.contains(
                "Twilio issues the signing secret (the Auth Token): store it in a Secret and set spec.secret.secretRef"
            ),
            "{}",
            status.message
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn rotation_keeps_two_keys_during_the_grace_period_then_one() {
    with_namespace("op-rotate", |ns| async move {
        install_crd(&ns.client).await?;
        let client = operator_client(&ns).await?;
        let operator = InProcess::start(config(&ns.name, "first", None), client.clone()).await?;
        let api: Api<WebhookEndpoint> = ns.api();
        let app = TestApp::ok().await?;
        let spec = generic_spec("/rot", app.port(), ", rotation: {gracePeriod: 8s}");
        api.create(&PostParams::default(), &endpoint("rot", &spec)?)
            .await?;
        wait_condition(&api, "rot", "Ready", "True", READY_WITHIN).await?;
        let k1 = secret_keys(&children(&ns, "rot").await?.0)["k1"].clone();

        api.patch(
            "rot",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"hookguard.dev/rotate": "2026-11-27"}}}),
            ),
        )
        .await?;
        let secrets: Api<Secret> = ns.api();
        eventually("the Secret holds k1 and k2", BY_A_WATCH, || {
            let secrets = secrets.clone();
            async move {
                let keys = secret_keys(&secrets.get("rot-signing").await?);
                Ok(keys.len() == 2 && keys.contains_key("k2"))
            }
        })
        .await?;
        let (secret, config_map) = children(&ns, "rot").await?;
        let keys = secret_keys(&secret);
        assert_eq!(keys["k1"], k1);
        let k2 = keys["k2"].clone();
        let mut status = api.get("rot").await?.status.unwrap();
        for _ in 0..50 {
            if status.keys.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            status = api.get("rot").await?.status.unwrap();
        }
        assert_eq!(
            status
                .keys
                .iter()
                .map(|k| k.id.as_str())
                .collect::<Vec<_>>(),
            ["k2", "k1"]
        );
        assert!(status.keys[0].expires_at.is_none());
        let expires_at = status.keys[1]
            .expires_at
            .clone()
            .context("k1 has no expiresAt")?;
        assert_eq!(status.last_rotate_request.as_deref(), Some("2026-11-27"));

        // During the grace period the sidecar accepts both keys.
        let during = tempfile::tempdir()?;
        materialize(during.path(), &config_map, &keys)?;
        let sidecar = start_sidecar(during.path()).await?;
        assert_eq!(post_signed(&sidecar, "/rot", &k1, "old-key").await?, 200);
        assert_eq!(post_signed(&sidecar, "/rot", &k2, "new-key").await?, 200);
        sidecar.shutdown();

        // A restart in the middle of the grace period: the times live in the Secret.
        operator.stop().await;
        let operator = InProcess::start(config(&ns.name, "second", None), client).await?;

        eventually(
            "k1 is removed at its expiry",
            Duration::from_secs(20),
            || {
                let secrets = secrets.clone();
                async move { Ok(secret_keys(&secrets.get("rot-signing").await?).len() == 1) }
            },
        )
        .await?;
        let now = k8s_openapi::jiff::Timestamp::now();
        assert!(
            now >= expires_at.0,
            "removed before its expiry: {now} < {}",
            expires_at.0
        );
        let (secret, config_map) = children(&ns, "rot").await?;
        let keys = secret_keys(&secret);
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["k2"]);
        let after = tempfile::tempdir()?;
        materialize(after.path(), &config_map, &keys)?;
        let sidecar = start_sidecar(after.path()).await?;
        assert_eq!(
            post_signed(&sidecar, "/rot", &k1, "old-key-late").await?,
            401
        );
        assert_eq!(post_signed(&sidecar, "/rot", &k2, "new-key-2").await?, 200);
        sidecar.shutdown();
        let status = wait_condition(&api, "rot", "Ready", "True", READY_WITHIN)
            .await?
            .status
            .unwrap();
        eventually("status shows one key", BY_A_WATCH, || {
            let api = api.clone();
            async move { Ok(api.get("rot").await?.status.unwrap().keys.len() == 1) }
        })
        .await?;
        // The same annotation value does not rotate again.
        assert_eq!(status.last_rotate_request.as_deref(), Some("2026-11-27"));
        assert!(!secret_keys(&secrets.get("rot-signing").await?).contains_key("k3"));
        operator.stop().await;
        Ok(())
    })
    .await;
}

/// One path per namespace: the later endpoint is told who holds it, gets no children, and
/// becomes Ready once the holder is gone (a watch, not the five-minute retry).
#[tokio::test]
async fn a_second_endpoint_on_a_path_waits_until_the_path_is_free() {
    with_namespace("op-path", |ns| async move {
        let operator = InProcess::solo(&ns).await?;
        let api: Api<WebhookEndpoint> = ns.api();
        create_ready(&api, "alpha", &generic_spec("/shared", 8080, "")).await?;
        api.create(
            &PostParams::default(),
            &endpoint("beta", &generic_spec("/shared", 8080, ""))?,
        )
        .await?;
        let waiting = wait_condition(&api, "beta", "Ready", "False", READY_WITHIN).await?;
        let (_, reason, message) = condition(&waiting, "Ready").context("no Ready")?;
        ensure!(reason == "PathConflict", "{reason}: {message}");
        ensure!(
            message.contains("alpha and beta both serve path /shared")
                && message.contains("alpha was created first"),
            "{message}"
        );
        let config_maps: Api<ConfigMap> = ns.api();
        ensure!(
            config_maps
                .get_opt(&sidecar_config_name("beta"))
                .await?
                .is_none(),
            "a waiting endpoint renders no sidecar configuration"
        );
        let alpha = api.get("alpha").await?;
        ensure!(
            condition(&alpha, "Ready").is_some_and(|(status, _, _)| status == "True"),
            "the holder stays Ready"
        );

        // BY_A_WATCH is far below the 300 s retry of a permanent error: only a watch makes it.
        api.delete("alpha", &DeleteParams::default()).await?;
        wait_condition(&api, "beta", "Ready", "True", BY_A_WATCH).await?;
        operator.stop().await;
        Ok(())
    })
    .await;
}

/// kube-controller-manager's garbage collector picks up a new CRD kind at its next
/// discovery resync (every 30 s), so this can take up to ~45 s; bounded at 90 s.
#[tokio::test]
async fn deleting_the_endpoint_garbage_collects_its_children() {
    with_namespace("op-gc", |ns| async move {
        let operator = InProcess::solo(&ns).await?;
        let api: Api<WebhookEndpoint> = ns.api();
        create_ready(&api, "gone", &generic_spec("/g", 8080, "")).await?;
        let (secrets, config_maps): (Api<Secret>, Api<ConfigMap>) = (ns.api(), ns.api());
        api.delete("gone", &DeleteParams::background()).await?;
        eventually(
            "the children are garbage-collected",
            Duration::from_secs(90),
            || {
                let (secrets, config_maps) = (secrets.clone(), config_maps.clone());
                async move {
                    Ok(secrets.get_opt("gone-signing").await?.is_none()
                        && config_maps.get_opt("gone-sidecar").await?.is_none())
                }
            },
        )
        .await?;
        operator.stop().await;
        Ok(())
    })
    .await;
}

/// One `hookguard-operator run` process.
struct Process {
    child: Child,
    metrics: String,
    log: std::path::PathBuf,
}

impl Process {
    fn spawn(ns: &TestNamespace, identity: &str, dir: &Path) -> anyhow::Result<Process> {
        let metrics_port = hookguard_tests::net::free_port()?;
        let webhook_port = hookguard_tests::net::free_port()?;
        let log = dir.join(format!("{identity}.log"));
        let child = Command::new(operator_binary()?)
            .args([
                "run",
                "--namespace",
                &ns.name,
                "--lease-namespace",
                &ns.name,
            ])
            .args([
                "--identity",
                identity,
                "--lease-duration",
                "5s",
                "--log-format",
                "json",
            ])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(["--webhook-listen", &format!("127.0.0.1:{webhook_port}")])
            .args(["--webhook-namespace", &ns.name])
            .env("KUBECONFIG", ns.plane.kubeconfig())
            .env("HOOKGUARD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting hookguard-operator")?;
        Ok(Process {
            child,
            metrics: format!("http://127.0.0.1:{metrics_port}"),
            log,
        })
    }

    async fn metric(&self, name: &str) -> anyhow::Result<Option<f64>> {
        let (_, text) = get_text(&format!("{}/metrics", self.metrics)).await?;
        Ok(text
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()))
    }

    async fn reconciles(&self) -> anyhow::Result<f64> {
        Ok(self
            .metric("hookguard_operator_reconciles_total{result=\"ok\",error=\"\"}")
            .await?
            .unwrap_or(0.0))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The README's "Developing the operator": `hookguard-operator run` on a workstation with
/// `--webhook-url`, and the API server calls its webhook there. The operator writes the
/// configuration itself, its certificate names the URL's host, and pods created through the
/// API server get the sidecar.
#[tokio::test]
async fn an_operator_outside_the_cluster_injects_through_its_webhook_url() {
    with_namespace("op-dev", |ns| async move {
        use hookguard_tests::injection::{dry_run, pod, sidecar_of};
        use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
        use k8s_openapi::api::core::v1::Pod;

        install_crd(&ns.client).await?;
        tokio::task::spawn_blocking(operator_binary).await??;
        // The operator's own namespace (its certificate Secret; never injected).
        let (home, _) = ns.plane.create_namespace("op-dev-home").await?;
        let configuration = format!("hookguard-dev-{}", ns.name);
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("operator.log");
        let webhook_port = hookguard_tests::net::free_port()?;
        let metrics_port = hookguard_tests::net::free_port()?;
        let url = format!("https://127.0.0.1:{webhook_port}");
        let mut operator = Process {
            child: Command::new(operator_binary()?)
                .args(["run", "--leader-election=false", "--namespace", &ns.name])
                .args(["--webhook-namespace", &home])
                .args(["--webhook-listen", &format!("127.0.0.1:{webhook_port}")])
                .args(["--webhook-url", &url])
                .args(["--webhook-config-name", &configuration])
                .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
                .env("KUBECONFIG", ns.plane.kubeconfig())
                .env("HOOKGUARD_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .spawn()
                .context("starting hookguard-operator")?,
            metrics: format!("http://127.0.0.1:{metrics_port}"),
            log: log.clone(),
        };
        let outcome: anyhow::Result<()> = async {
            let endpoints: Api<WebhookEndpoint> = ns.api();
            create_ready(&endpoints, "hooks", &generic_spec("/hooks", 8080, "")).await?;
            let pods: Api<Pod> = ns.api();
            let opted_in = pod(
                None,
                &[(hookguard_api::names::LABEL_INJECT, "true")],
                &[(hookguard_api::names::ANNOTATION_ENDPOINTS, "hooks")],
            )?;
            // Until the configuration carries the CA bundle and the webhook serves, the API
            // server fails open and admits the pod without the sidecar.
            let injected = eventually(
                "a pod created through the API server gets the sidecar",
                Duration::from_secs(60),
                async || Ok(sidecar_of(&dry_run(&pods, &opted_in).await?).is_some()),
            )
            .await;
            injected?;

            let written = Api::<MutatingWebhookConfiguration>::all(ns.client.clone())
                .get(&configuration)
                .await?;
            let webhook = &written.webhooks.context("no webhooks")?[0];
            ensure!(
                webhook.client_config.url.as_deref() == Some(&format!("{url}/mutate")[..]),
                "the configuration calls {:?}",
                webhook.client_config.url
            );
            ensure!(webhook.client_config.ca_bundle.is_some(), "no CA bundle");
            let selector = serde_json::to_value(&webhook.namespace_selector)?;
            ensure!(
                selector["matchExpressions"][0]["values"] == json!([ns.name]),
                "only the operator's --namespace is injected: {selector}"
            );
            Ok(())
        }
        .await;
        let _ = operator.child.kill();
        let _ = operator.child.wait();
        let _ = Api::<MutatingWebhookConfiguration>::all(ns.client.clone())
            .delete(&configuration, &DeleteParams::default())
            .await;
        let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(ns.client.clone())
            .delete(&home, &DeleteParams::default())
            .await;
        outcome.with_context(|| {
            format!(
                "operator log:\n{}",
                std::fs::read_to_string(&operator.log).unwrap_or_default()
            )
        })
    })
    .await;
}

#[tokio::test]
async fn two_operator_processes_only_the_leader_reconciles_and_the_standby_takes_over() {
    with_namespace("op-leader", |ns| async move {
        install_crd(&ns.client).await?;
        tokio::task::spawn_blocking(operator_binary).await??;
        let dir = tempfile::tempdir()?;
        let a = Process::spawn(&ns, "replica-a", dir.path())?;
        eventually("replica-a leads", Duration::from_secs(30), || {
            let a = &a;
            async move { Ok(a.metric("hookguard_operator_leader").await? == Some(1.0)) }
        })
        .await?;
        let b = Process::spawn(&ns, "replica-b", dir.path())?;
        eventually(
            "replica-b is up as a standby",
            Duration::from_secs(30),
            || {
                let b = &b;
                async move {
                    let (code, _) = get_text(&format!("{}/readyz", b.metrics)).await?;
                    Ok(code == 200 && b.metric("hookguard_operator_leader").await? == Some(0.0))
                }
            },
        )
        .await?;

        let api: Api<WebhookEndpoint> = ns.api();
        create_ready(&api, "first", &generic_spec("/1", 8080, "")).await?;
        // Counted after the reconcile returns, a moment after the status it wrote.
        eventually(
            "the leader counts its reconcile",
            Duration::from_secs(10),
            || {
                let a = &a;
                async move { Ok(a.reconciles().await? >= 1.0) }
            },
        )
        .await?;
        ensure!(b.reconciles().await? == 0.0, "the standby reconciled");

        // Kill the leader (no chance to release the Lease); the standby must take the Lease
        // once it expires (5 s) and reconcile. How long that took is a figure, not a test:
        // the bound below only catches a standby that never takes over.
        let mut a = a;
        a.child.kill()?;
        a.child.wait()?;
        let killed = Instant::now();
        api.create(
            &PostParams::default(),
            &endpoint("second", &generic_spec("/2", 8080, ""))?,
        )
        .await?;
        let leases = ns.api::<Lease>();
        eventually("replica-b holds the Lease", Duration::from_secs(60), || {
            let leases = leases.clone();
            async move {
                let lease = leases.get("hookguard-operator").await?;
                Ok(lease.spec.and_then(|s| s.holder_identity).as_deref() == Some("replica-b"))
            }
        })
        .await?;
        wait_condition(&api, "second", "Ready", "True", READY_WITHIN).await?;
        eprintln!(
            "replica-b took over and reconciled {:?} after the leader was killed",
            killed.elapsed()
        );
        assert_eq!(b.metric("hookguard_operator_leader").await?, Some(1.0));

        // JSON logs, one object per line.
        let log = std::fs::read_to_string(&a.log)?;
        let first = log.lines().next().context("replica-a logged nothing")?;
        let line: serde_json::Value = serde_json::from_str(first).context(first.to_owned())?;
        assert!(line.get("level").is_some(), "{line}");

        // SIGTERM: a clean exit that releases the Lease.
        let mut b = b;
        let pid = b.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(15);
        let exit = loop {
            if let Some(status) = b.child.try_wait()? {
                break status;
            }
            ensure!(
                Instant::now() < deadline,
                "replica-b did not stop on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        ensure!(
            exit.success(),
            "replica-b exited with {exit}: {}",
            std::fs::read_to_string(&b.log)?
        );
        let lease = ns.api::<Lease>().get("hookguard-operator").await?;
        assert_eq!(
            lease.spec.and_then(|s| s.holder_identity),
            None,
            "the Lease was not released"
        );
        Ok(())
    })
    .await;
}

/// A kubeconfig in `dir` naming an API server on a free local port, where nothing listens:
/// every connection is refused.
fn refusing_kubeconfig(dir: &Path) -> std::path::PathBuf {
    let kubeconfig = dir.join("kubeconfig");
    let port = hookguard_tests::net::free_port().unwrap();
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}'}}}}]\n\
             users: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    kubeconfig
}

/// Every flag is checked before the operator connects to anything: with an API server that
/// refuses connections, a bad flag still gets exit 64 and one line naming the flag, its
/// environment variable and the fix (a connection attempt would exit 1 with its error).
#[test]
fn every_flag_is_checked_before_connecting() {
    let binary = operator_binary().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = refusing_kubeconfig(dir.path());
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["--sidecar-store", "foo"],
            "--sidecar-store (env HOOKGUARD_SIDECAR_STORE)",
            "redis://",
        ),
        (
            &["--sidecar-store-mode", "cluster"],
            "--sidecar-store-mode (env HOOKGUARD_SIDECAR_STORE_MODE)",
            "Redis",
        ),
        (
            &["--webhook-listen", "9443"],
            "--webhook-listen (env HOOKGUARD_WEBHOOK_LISTEN)",
            "0.0.0.0:9443",
        ),
        (
            &["--cert-validity", "a year"],
            "--cert-validity (env HOOKGUARD_CERT_VALIDITY)",
            "1h30m",
        ),
        (
            &["--sidecar-memory-limit", "lots"],
            "--sidecar-memory-limit (env HOOKGUARD_SIDECAR_MEMORY_LIMIT)",
            "64Mi",
        ),
        (
            &["--sidecar-store-password-secret", "nokey"],
            "--sidecar-store-password-secret (env HOOKGUARD_SIDECAR_STORE_PASSWORD_SECRET)",
            "<secret name>/<key>",
        ),
        (
            &[
                "--lease-duration",
                "1500ms",
                "--leader-election=true",
                "--lease-namespace",
                "x",
            ],
            "--lease-duration (env HOOKGUARD_LEASE_DURATION)",
            "whole seconds",
        ),
        (
            &["--namespace", "a,,b"],
            "--namespace (env HOOKGUARD_NAMESPACES)",
            "separated by commas",
        ),
        (&["--log", "[[["], "--log (env HOOKGUARD_LOG)", ""),
    ];
    for (flags, names, fix) in cases {
        let output = Command::new(&binary)
            .args(["run", "--metrics-listen", "127.0.0.1:0"])
            .env("HOOKGUARD_LEADER_ELECTION", "false")
            .args(*flags)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("POD_NAMESPACE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{flags:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{flags:?}: one line: {stderr}");
        assert!(
            stderr.starts_with(&format!("hookguard-operator: {names}: ")) && stderr.contains(fix),
            "{flags:?}: {stderr}"
        );
    }
}

/// Text logs written to a file carry no ANSI colour codes (colour only on a terminal).
#[tokio::test]
async fn text_logs_in_a_file_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = refusing_kubeconfig(dir.path());
    let log = dir.path().join("operator.log");
    let metrics_port = hookguard_tests::net::free_port().unwrap();
    let webhook_port = hookguard_tests::net::free_port().unwrap();
    let mut child = Command::new(operator_binary().unwrap())
        .args(["run", "--leader-election=false", "--log-format", "text"])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .args(["--webhook-listen", &format!("127.0.0.1:{webhook_port}")])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOOKGUARD_LOG", "info")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let logged = eventually(
        "the operator logs a line",
        Duration::from_secs(20),
        async || Ok(std::fs::read_to_string(&log)?.contains("INFO")),
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    logged.unwrap_or_else(|error| panic!("{error:#}: {text}"));
    assert!(!text.contains('\u{1b}'), "colour codes in a file: {text:?}");
}

#[test]
fn the_binary_refuses_a_config_that_cannot_work_and_prints_the_crd() {
    let binary = operator_binary().unwrap();
    let output = Command::new(&binary)
        .args(["run", "--metrics-listen", "127.0.0.1:0"])
        .env_remove("POD_NAMESPACE")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--lease-namespace"), "{stderr}");

    let crd = Command::new(&binary).arg("crd").output().unwrap();
    assert!(crd.status.success());
    assert_eq!(
        String::from_utf8_lossy(&crd.stdout),
        hookguard_tests::operator::CRD_YAML,
        "crds/ is stale: run `make generate`"
    );
}
