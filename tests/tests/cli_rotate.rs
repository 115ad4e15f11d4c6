//! `hookguard rotate` and `hookguard tail` as a user runs them: the real CLI binary against
//! the real control plane, the operator in-process, and two real sidecars sharing one real
//! `redis-server`. There is no kubelet here: a background task copies the signing Secret into
//! the sidecars' directories whenever it changes, as the kubelet updates a mounted Secret.

// clippy.toml allows unwrap/panic inside #[test] functions only; the helpers beside them are
// test code too, and each test tells one story in order.
#![allow(clippy::unwrap_used, clippy::panic, clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hookguard_api::admin::DeliveryRecord;
use hookguard_api::crd::WebhookEndpoint;
use hookguard_api::names::signing_secret_name;
use hookguard_tests::app::TestApp;
use hookguard_tests::cli::{Run, run_against};
use hookguard_tests::control_plane::{TestNamespace, with_namespace};
use hookguard_tests::operator::{
    InProcess, children, endpoint, materialize, secret_keys, wait_condition,
};
use hookguard_tests::redis::RedisServer;
use hookguard_tests::sidecar::SidecarHarness;
use hookguard_tests::wait::eventually;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use tokio_util::sync::CancellationToken;

const READY_WITHIN: Duration = Duration::from_secs(30);

/// The kubelet's part: every 200 ms, the endpoint's signing Secret is read and each directory's
/// `secrets/<endpoint>/` is made to hold exactly its keys (new files written, changed ones
/// rewritten, removed ones deleted), which the sidecars' reload watchers pick up. Stops when
/// the token is cancelled.
fn kubelet_stand_in(
    ns: &TestNamespace,
    endpoint: &str,
    roots: Vec<PathBuf>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let secrets: Api<Secret> = ns.api();
    let secret_name = signing_secret_name(endpoint);
    let endpoint = endpoint.to_owned();
    tokio::spawn(async move {
        loop {
            if let Ok(secret) = secrets.get(&secret_name).await {
                let keys = secret_keys(&secret);
                for root in &roots {
                    if let Err(error) = sync_keys(&root.join("secrets").join(&endpoint), &keys) {
                        eprintln!("kubelet stand-in: {error:#}");
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    })
}

fn sync_keys(dir: &Path, keys: &BTreeMap<String, String>) -> anyhow::Result<()> {
    for (key, value) in keys {
        let file = dir.join(key);
        if std::fs::read_to_string(&file).ok().as_deref() != Some(value.as_str()) {
            std::fs::write(&file, value)?;
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keys.contains_key(&name) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Creates endpoint `name` (Generic, a `grace` grace period), waits until it is Ready, and
/// starts one sidecar per instance name on its files, sharing `redis`.
async fn endpoint_with_sidecars(
    ns: &TestNamespace,
    name: &str,
    grace: &str,
    app: &TestApp,
    redis: &RedisServer,
    instances: &[&str],
) -> anyhow::Result<(Vec<SidecarHarness>, String)> {
    let api: Api<WebhookEndpoint> = ns.api();
    let spec = format!(
        "{{scheme: Generic, path: /{name}, upstream: {{port: {}}}, rotation: {{gracePeriod: {grace}}}}}",
        app.port()
    );
    api.create(&PostParams::default(), &endpoint(name, &spec)?)
        .await?;
    wait_condition(&api, name, "Ready", "True", READY_WITHIN).await?;
    let (secret, config_map) = children(ns, name).await?;
    let keys = secret_keys(&secret);
    let k1 = keys["k1"].clone();
    // The operator's endpoint.json, as the ConfigMap volume would mount it.
    let scratch = tempfile::tempdir()?;
    let config = materialize(scratch.path(), &config_map, &keys)?;
    let url = redis.url();
    let mut sidecars = Vec::new();
    for instance in instances {
        sidecars.push(
            SidecarHarness::start(
                vec![(config.clone(), k1.as_str())],
                &["--store", &url, "--instance", instance],
            )
            .await?,
        );
    }
    Ok((sidecars, k1))
}

/// Builds the CLI (once per test binary; it may wait for the build lock) before a scenario
/// starts its clocks.
async fn build_cli() -> anyhow::Result<()> {
    tokio::task::spawn_blocking(hookguard_tests::cli::cli_binary).await??;
    Ok(())
}

/// Runs the CLI on a blocking thread, so the sidecars in this runtime keep answering it.
async fn cli(ns: &TestNamespace, args: &[&str]) -> anyhow::Result<Run> {
    let kubeconfig = ns.plane.kubeconfig().to_owned();
    let mut owned: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    owned.extend(["-n".to_owned(), ns.name.clone()]);
    tokio::task::spawn_blocking(move || {
        let borrowed: Vec<&str> = owned.iter().map(String::as_str).collect();
        run_against(&kubeconfig, &borrowed)
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotate_waits_for_every_sidecar_then_the_old_key_expires_and_tail_shows_both() {
    with_namespace("cli-rotate", |ns| async move {
        build_cli().await?;
        let redis = RedisServer::start()?;
        let operator = InProcess::solo(&ns).await?;
        let app = TestApp::ok().await?;
        // The grace period must outlast what `rotate` waits for (the operator's rotation, the
        // stand-in kubelet's sync, both reloads) on a loaded machine, or the "both keys pass
        // during the grace period" step could find it over; 15 s leaves room, and the step
        // after it waits for its end by condition.
        let (sidecars, k1) =
            endpoint_with_sidecars(&ns, "rot", "15s", &app, &redis, &["pod-1", "pod-2"]).await?;
        let stop = CancellationToken::new();
        let kubelet = kubelet_stand_in(
            &ns,
            "rot",
            sidecars.iter().map(|s| s.dir().to_owned()).collect(),
            stop.clone(),
        );
        for (n, sidecar) in sidecars.iter().enumerate() {
            let answer = sidecar
                .post_generic(
                    "/rot",
                    &k1,
                    &format!("before-{n}"),
                    &format!("{{\"n\":{n}}}"),
                )
                .await?;
            assert_eq!(answer.status, 200, "k1 verifies before the rotation");
        }
        let urls: Vec<String> = sidecars.iter().map(SidecarHarness::admin_url).collect();
        let run = cli(
            &ns,
            &[
                "rotate",
                "rot",
                "--sidecar",
                &urls[0],
                "--sidecar",
                &urls[1],
                "--timeout",
                "90s",
            ],
        )
        .await?;
        assert_eq!(run.code, 0, "{run:#?}");
        for url in &urls {
            assert!(
                run.stdout.contains(url.as_str()),
                "progress per sidecar: {run:#?}"
            );
        }
        assert!(
            run.stdout.contains("pod-1") && run.stdout.contains("pod-2"),
            "{run:#?}"
        );
        assert!(run.stdout.contains("stays valid until"), "{run:#?}");

        // Both keys verify during the grace period, on both sidecars: rotate returned only
        // once both had loaded the new key.
        let (secret, _) = children(&ns, "rot").await?;
        let keys = secret_keys(&secret);
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["k1", "k2"]);
        let k2 = keys["k2"].clone();
        for (n, sidecar) in sidecars.iter().enumerate() {
            for (key, label) in [(&k1, "old"), (&k2, "new")] {
                let id = format!("grace-{label}-{n}");
                let answer = sidecar
                    .post_generic("/rot", key, &id, &format!("{{\"id\":\"{id}\"}}"))
                    .await?;
                assert_eq!(
                    answer.status, 200,
                    "the {label} key during the grace period"
                );
            }
        }

        // After the grace period the operator removes k1, the stand-in kubelet syncs the
        // Secret, the sidecars reload: the old key gets 401, the new one still verifies.
        for (n, sidecar) in sidecars.iter().enumerate() {
            let mut attempt = 0u32;
            eventually(
                "the old key is refused after the grace period",
                Duration::from_secs(90),
                async || {
                    attempt += 1;
                    let id = format!("late-old-{n}-{attempt}");
                    let answer = sidecar
                        .post_generic("/rot", &k1, &id, &format!("{{\"id\":\"{id}\"}}"))
                        .await?;
                    Ok(answer.status == 401)
                },
            )
            .await?;
            let id = format!("late-new-{n}");
            let answer = sidecar
                .post_generic("/rot", &k2, &id, &format!("{{\"id\":\"{id}\"}}"))
                .await?;
            assert_eq!(answer.status, 200, "the new key after the grace period");
        }
        // One sidecar's log shows the other's verified deliveries too: one log in Redis.
        let run = cli(&ns, &["tail", "rot", "--sidecar", &urls[0], "-o", "json"]).await?;
        assert_eq!(run.code, 0, "{run:#?}");
        let records: Vec<DeliveryRecord> = serde_json::from_str(&run.stdout)?;
        let instances: std::collections::BTreeSet<&str> =
            records.iter().map(|r| r.instance.as_str()).collect();
        assert_eq!(instances, ["pod-1", "pod-2"].into(), "{records:#?}");
        assert!(
            records
                .iter()
                .any(|r| r.delivery_id.as_deref() == Some("grace-new-1") && r.instance == "pod-2"),
            "{records:#?}"
        );
        // The refusals are pod-1's own (unverified requests stay off the shared store).
        assert!(
            records.iter().any(|r| r.status == 401
                && r.instance == "pod-1"
                && r.reason.as_deref() == Some("signature_mismatch")),
            "{records:#?}"
        );
        let text = cli(
            &ns,
            &[
                "tail",
                "rot",
                "--sidecar",
                &urls[0],
                "--outcome",
                "unauthorized",
            ],
        )
        .await?;
        assert_eq!(text.code, 0, "{text:#?}");
        assert!(
            !text.stdout.is_empty() && text.stdout.lines().all(|l| l.contains("unauthorized")),
            "{text:#?}"
        );

        stop.cancel();
        kubelet.await?;
        operator.stop().await;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotate_times_out_naming_the_sidecar_whose_secret_was_not_synced() {
    with_namespace("cli-rotate-stale", |ns| async move {
        build_cli().await?;
        let redis = RedisServer::start()?;
        let operator = InProcess::solo(&ns).await?;
        let app = TestApp::ok().await?;
        let (sidecars, _) =
            endpoint_with_sidecars(&ns, "stale", "1h", &app, &redis, &["synced", "forgotten"])
                .await?;
        let stop = CancellationToken::new();
        // Only the first sidecar's directory follows the Secret.
        let kubelet = kubelet_stand_in(&ns, "stale", vec![sidecars[0].dir().to_owned()], stop.clone());
        let urls: Vec<String> = sidecars.iter().map(SidecarHarness::admin_url).collect();
        let run = cli(
            &ns,
            &["rotate", "stale", "--sidecar", &urls[0], "--sidecar", &urls[1], "--timeout", "8s"],
        )
        .await?;
        assert_eq!(run.code, 124, "{run:#?}");
        assert!(run.stdout.contains(&urls[0]), "the synced one is reported done: {run:#?}");
        let missing = run
            .stderr
            .lines()
            .filter(|l| l.contains("http://"))
            .collect::<Vec<_>>();
        assert_eq!(missing.len(), 1, "{run:#?}");
        assert!(missing[0].contains(&urls[1]) && missing[0].contains("forgotten"), "{run:#?}");
        assert!(run.stderr.contains("kubelet"), "names the likely cause: {run:#?}");

        // A sender-issued secret cannot be rotated by the operator: said, exit 1.
        let api: Api<WebhookEndpoint> = ns.api();
        let spec = format!(
            "{{scheme: Generic, path: /issued, upstream: {{port: {}}}, secret: {{secretRef: {{name: issued-by-sender}}}}}}",
            app.port()
        );
        api.create(&PostParams::default(), &endpoint("issued", &spec)?)
            .await?;
        let run = cli(&ns, &["rotate", "issued", "--timeout", "5s"]).await?;
        assert_eq!(run.code, 1, "{run:#?}");
        assert!(
            run.stderr.contains("spec.secret.secretRef") && run.stderr.contains("issued-by-sender"),
            "{run:#?}"
        );
        let annotations = api.get("issued").await?.metadata.annotations.unwrap_or_default();
        assert!(
            !annotations.contains_key(hookguard_api::names::ANNOTATION_ROTATE),
            "nothing was requested"
        );
        stop.cancel();
        kubelet.await?;
        operator.stop().await;
        Ok(())
    })
    .await;
}
