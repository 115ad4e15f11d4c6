//! Hookguard as a user runs it, on a real one-node cluster (`hookguard_tests::node`): the
//! images built here, `helm install` with the bundled Redis, a `WebhookEndpoint` and a
//! two-replica app with the injected native sidecar, deliveries signed with the Standard
//! Webhooks reference library sent to the app's Service `ClusterIP`, then faults with real pods
//! (key rotation mid-traffic, the leading operator pod deleted, a sidecar container killed,
//! the bundled Redis killed), `helm upgrade` and `helm uninstall`.
//!
//! The story runs once, top to bottom, on one installation (each step builds on the one
//! before), and ends with a table: per scenario, deliveries sent, reached the app,
//! duplicates absorbed, 401s, and `LOST` / `FALSE_2XX` / `DUP_AT_APP` / `CONC_AT_APP`.
//!
//! How deliveries are sent: like a sender, each delivery is retried on anything but a 2xx or
//! a 4xx other than 409 (409 means "in flight, retry"), up to [`ATTEMPTS`] times, from a thread
//! inside the node's network namespace ([`Cluster::on_the_node`]): kube-proxy's rules and the
//! CNI bridge carry it to the pods, and nothing is routed on the host.
//!
//! Needs root (the node) and `make images` (the image archives); `make e2e` does both.

// Tests fail by panicking; the story reads top to bottom, so long.
#![allow(clippy::unwrap_used, clippy::panic, clippy::too_many_lines)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use futures::StreamExt as _;
use hookguard_api::names::SIDECAR_CONTAINER;
use hookguard_tests::image;
use hookguard_tests::node::Cluster;
use hookguard_tests::wait::{eventually, eventually_value};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;

const RELEASE: &str = "hookguard";
const SYSTEM: &str = "hookguard-system";
const SHOP: &str = "shop";
const ENDPOINT: &str = "orders";
const WEBHOOK_PATH: &str = "/webhooks/orders";
/// The endpoint's rotation grace period: long enough for the kubelet to bring the new key to
/// both pods, short enough to see the old key refused afterwards.
const GRACE: Duration = Duration::from_secs(60);
/// A sender's attempts per delivery (one every [`RETRY_EVERY`]).
const ATTEMPTS: u32 = 120;
const RETRY_EVERY: Duration = Duration::from_millis(250);
/// Bound on anything the cluster does by itself (a rollout, a restart, a mounted update).
const SETTLE: Duration = Duration::from_secs(180);

#[test]
fn hookguard_runs_on_a_real_node_from_helm_install_to_uninstall() {
    let started = Instant::now();
    let images = image::build_all().expect("building the images (make images)");
    let images_took = started.elapsed();
    let cluster = Cluster::start().expect("starting the one-node cluster");
    let cluster_up = cluster.started_in();
    // The story runs as a program on the node would (its own runtime on a thread inside the
    // node's network namespace), so the Service and pod addresses are reachable without a
    // route on the host.
    let result = cluster
        .on_the_node(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(story(&cluster, &images))
        })
        .and_then(|result| result);
    if let Err(error) = &result {
        eprintln!("{}", cluster.report());
        eprintln!("{}", cluster.keep_logs());
        eprintln!("e2e failed: {error:#}");
    }
    let stopped = cluster.stop();
    let table = result.unwrap();
    let stopped_in = stopped.expect("tearing the node down");
    println!(
        "images {:.0}s (cached archives are reused), node up in {:.0}s, e2e {:.0}s, teardown {:.0}s",
        images_took.as_secs_f64(),
        cluster_up.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        stopped_in.as_secs_f64()
    );
    println!("{table}");
}

/// One scenario's tally.
#[derive(Debug, Default, Clone)]
struct Tally {
    name: &'static str,
    /// Distinct valid deliveries the sender sent (each possibly several times).
    sent: usize,
    /// Distinct valid deliveries that reached the app.
    reached: usize,
    /// Copies answered 2xx without reaching the app (duplicates of a processed delivery).
    absorbed: usize,
    /// Tampered copies refused with 401.
    refused: usize,
    /// Tampered copies sent.
    tampered: usize,
    /// Valid deliveries that never reached the app.
    lost: usize,
    /// 2xx answers for a delivery the app never got, or for a tampered one.
    false_2xx: usize,
    /// Valid deliveries that reached the app more than once.
    dup_at_app: usize,
    /// Valid deliveries that reached the app in both pods (processed in parallel).
    conc_at_app: usize,
    /// Answers seen along the way, by status (0: connection error).
    statuses: BTreeMap<u16, usize>,
}

async fn story(cluster: &Cluster, images: &[image::BuiltImage]) -> anyhow::Result<String> {
    for built in images {
        cluster
            .import_image(&built.path)
            .with_context(|| format!("importing {}", built.name))?;
    }
    let client = cluster.client().await?;
    let mut tallies = Vec::new();

    install(cluster).await?;
    let endpoint = declare(cluster, &client).await?;
    let http = Http::new();

    // Valid deliveries, each sent three times at once over the Service, spread over both
    // pods; and tampered copies, which must be refused and never reach the app.
    let happy = Sender::new(&http, &endpoint.service_url, &endpoint.newest_key().await?)?;
    let ids = ids("happy", 120);
    let mut tally = Tally {
        name: "steady traffic, duplicate storm",
        ..Tally::default()
    };
    let sent = happy.storm(&ids, 3).await?;
    happy.tampered("tampered", 40, &mut tally).await?;
    count_at_app(&http, &endpoint, &sent, &mut tally).await?;
    tallies.push(tally);
    cli_on_pods(cluster, &http, &endpoint).await?;

    tallies.push(rotation(cluster, &http, &endpoint).await?);
    tallies.push(operator_failover(cluster, &client, &http, &endpoint).await?);
    tallies.push(sidecar_killed(cluster, &client, &http, &endpoint).await?);
    tallies.push(redis_killed(cluster, &client, &http, &endpoint, &ids).await?);
    tallies.push(queue_mode(cluster, &http, &endpoint).await?);
    upgrade_and_uninstall(cluster, &client, &endpoint).await?;

    let table = table(&tallies);
    for tally in &tallies {
        ensure!(
            tally.lost == 0 && tally.false_2xx == 0,
            "{}: LOST {} FALSE_2XX {}\n{table}",
            tally.name,
            tally.lost,
            tally.false_2xx
        );
    }
    Ok(table)
}

// ---------------------------------------------------------------------------------------
// The CLI against real pods

/// `hookguard` as a user runs it against this cluster: `check` green on the helm install;
/// `status` and `tail` reaching both app pods' sidecars through real port-forwards (kubelet
/// streaming into the pods' loopback), after the happy traffic.
async fn cli_on_pods(cluster: &Cluster, http: &Http, endpoint: &Endpoint) -> anyhow::Result<()> {
    let run = |args: &'static [&'static str]| {
        let kubeconfig = cluster.kubeconfig().to_path_buf();
        tokio::task::spawn_blocking(move || hookguard_tests::cli::run_against(&kubeconfig, args))
    };
    let check = run(&["check", "-o", "json"]).await??;
    let report: Value = serde_json::from_str(&check.stdout).context("check -o json")?;
    ensure!(
        check.code == 0 && report["success"] == true,
        "hookguard check on the helm install: {check:?}"
    );

    let status = run(&["status", ENDPOINT, "-n", SHOP, "-o", "json"]).await??;
    let report: Value = serde_json::from_str(&status.stdout).context("status -o json")?;
    ensure!(status.code == 0, "hookguard status: {status:?}");
    let pods = report["pods"]["pods"]
        .as_array()
        .context("status: no pods")?;
    for pod in &endpoint.pods {
        ensure!(
            pods.iter()
                .any(|p| p["name"] == pod.name.as_str() && p["injected"] == true),
            "status does not show {} injected: {pods:?}",
            pod.name
        );
    }
    let sidecars = report["sidecars"]["sidecars"]
        .as_array()
        .context("status: no sidecars")?;
    ensure!(
        sidecars.len() == endpoint.pods.len()
            && sidecars
                .iter()
                .all(|s| s["ready"] == true && s["currentKeyLoaded"] == true),
        "every sidecar ready with the current key, reached by port-forward: {sidecars:?}"
    );

    // One delivery straight to each pod's sidecar: the Service may have sent the storm to one
    // pod (kube-proxy can program a pod that just became ready after the storm began).
    let key = endpoint.newest_key().await?;
    for pod in &endpoint.pods {
        let sender = Sender::new(http, &Endpoint::sidecar_url(pod), &key)?;
        let (status, seen) = sender
            .deliver(&format!("cli-{}-{}", pod.name, nonce()))
            .await?;
        ensure!(
            (200..300).contains(&status),
            "a delivery straight to {}: {seen:?}",
            pod.name
        );
    }
    let tail = run(&["tail", ENDPOINT, "-n", SHOP, "-o", "json"]).await??;
    ensure!(tail.code == 0, "hookguard tail: {tail:?}");
    let records: Vec<Value> = serde_json::from_str(&tail.stdout).context("tail -o json")?;
    for pod in &endpoint.pods {
        ensure!(
            records
                .iter()
                .any(|r| r["instance"] == pod.name.as_str() && r["outcome"] == "forwarded"),
            "the shared delivery log has no forwarded delivery from {}: {} records",
            pod.name,
            records.len()
        );
    }
    ensure!(
        records.iter().any(|r| r["outcome"] == "duplicate"),
        "the duplicate storm shows in the log"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Install and declare

/// `helm install` with the bundled Redis and the images built here; both operator replicas
/// Ready, one of them holding the Lease.
async fn install(cluster: &Cluster) -> anyhow::Result<()> {
    let chart = repo().join("charts/hookguard");
    let (operator_repo, operator_tag) = split(image::OPERATOR_IMAGE);
    let (sidecar_repo, sidecar_tag) = split(image::SIDECAR_IMAGE);
    let (redis_repo, redis_tag) = split(image::REDIS_IMAGE);
    let chart = chart.display().to_string();
    let values = [
        format!("operator.image.repository={operator_repo}"),
        format!("operator.image.tag={operator_tag}"),
        "operator.image.pullPolicy=Never".to_owned(),
        format!("sidecar.image.repository={sidecar_repo}"),
        format!("sidecar.image.tag={sidecar_tag}"),
        "sidecar.image.pullPolicy=Never".to_owned(),
        format!("redis.bundled.image.repository={redis_repo}"),
        format!("redis.bundled.image.tag={redis_tag}"),
        "redis.bundled.image.pullPolicy=Never".to_owned(),
    ];
    let mut args = vec![
        "install",
        RELEASE,
        &chart,
        "-n",
        SYSTEM,
        "--create-namespace",
        "--wait",
        "--timeout",
        "5m",
    ];
    for value in &values {
        args.extend(["--set-string", value]);
    }
    run(cluster.helm().args(&args))?;

    let operators = operator_pods(cluster).await?;
    ensure!(
        operators.len() == 2,
        "two operator replicas, found {operators:?}"
    );
    let holder = eventually_holder(cluster, None).await?;
    ensure!(
        operators.contains(&holder),
        "the Lease holder {holder} is not one of {operators:?}"
    );
    // The API server calls the webhook through its Service (the injections below can come
    // from nowhere else: the operator runs only in these pods).
    let service = run(cluster.kubectl().args([
        "get",
        "mutatingwebhookconfiguration",
        RELEASE,
        "-o",
        "jsonpath={.webhooks[0].clientConfig.service.namespace}/{.webhooks[0].clientConfig.service.name}",
    ]))?;
    ensure!(
        service == format!("{SYSTEM}/{RELEASE}-webhook"),
        "the webhook is called at {service:?}"
    );
    Ok(())
}

/// What the story needs to know about the endpoint and its app.
struct Endpoint {
    service_url: String,
    pods: Vec<AppPod>,
    client: kube::Client,
}

#[derive(Debug, Clone)]
struct AppPod {
    name: String,
    ip: String,
}

impl Endpoint {
    /// The signing keys, newest first, as the sender is given them.
    async fn keys(&self) -> anyhow::Result<Vec<String>> {
        let endpoints: Api<hookguard_api::crd::WebhookEndpoint> =
            Api::namespaced(self.client.clone(), SHOP);
        let status = endpoints.get(ENDPOINT).await?.status.context("no status")?;
        let secret: Secret = Api::namespaced(self.client.clone(), SHOP)
            .get(&hookguard_api::names::signing_secret_name(ENDPOINT))
            .await?;
        let data = secret.data.unwrap_or_default();
        status
            .keys
            .iter()
            .map(|key| {
                data.get(&key.id)
                    .map(|value| String::from_utf8_lossy(&value.0).into_owned())
                    .with_context(|| format!("key {} missing from the Secret", key.id))
            })
            .collect()
    }

    async fn newest_key(&self) -> anyhow::Result<String> {
        self.keys().await?.into_iter().next().context("no key")
    }

    /// The pod's sidecar metrics, on its admin port.
    fn metrics_url(pod: &AppPod) -> String {
        format!(
            "http://{}:{}/metrics",
            pod.ip,
            hookguard_api::names::SIDECAR_ADMIN_PORT
        )
    }

    fn sidecar_url(pod: &AppPod) -> String {
        format!(
            "http://{}:{}{WEBHOOK_PATH}",
            pod.ip,
            hookguard_api::names::SIDECAR_PORT
        )
    }
}

/// The README's steps 4 and 5 on the node: an endpoint with a generated key, a two-replica
/// app labelled for injection and its Service on the sidecar's named port.
async fn declare(cluster: &Cluster, client: &kube::Client) -> anyhow::Result<Endpoint> {
    let (app_repo, app_tag) = split(image::TEST_APP_IMAGE);
    let grace = format!("{}s", GRACE.as_secs());
    let manifest = format!(
        r"
apiVersion: v1
kind: Namespace
metadata: {{name: {SHOP}}}
---
apiVersion: hookguard.dev/v1alpha1
kind: WebhookEndpoint
metadata: {{name: {ENDPOINT}, namespace: {SHOP}}}
spec:
  scheme: StandardWebhooks
  path: {WEBHOOK_PATH}
  upstream: {{port: 8080}}
  podSelector: {{matchLabels: {{app: orders}}}}
  rotation: {{gracePeriod: {grace}}}
"
    );
    apply(cluster, &manifest)?;
    run(cluster.kubectl().args([
        "-n",
        SHOP,
        "wait",
        "--for=condition=Ready",
        &format!("whe/{ENDPOINT}"),
        "--timeout=60s",
    ]))?;
    let app = format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: orders, namespace: {SHOP}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: orders}}}}
  template:
    metadata: {{labels: {{app: orders, hookguard.dev/inject: "true"}}}}
    spec:
      securityContext: {{runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: {{type: RuntimeDefault}}}}
      containers:
        - name: app
          image: {app_repo}:{app_tag}
          imagePullPolicy: Never
          ports: [{{containerPort: 8080}}]
          readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 2}}
          securityContext: {{readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
          resources: {{requests: {{cpu: 10m, memory: 16Mi}}, limits: {{memory: 64Mi}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: orders, namespace: {SHOP}}}
spec:
  selector: {{app: orders}}
  ports: [{{port: 80, targetPort: hookguard}}]
"#
    );
    apply(cluster, &app)?;
    run(cluster.kubectl().args([
        "-n",
        SHOP,
        "rollout",
        "status",
        "deploy/orders",
        "--timeout=180s",
    ]))?;

    let pods = app_pods(client).await?;
    ensure!(pods.len() == 2, "two app pods, found {}", pods.len());
    for pod in &pods {
        check_injected(pod)?;
        check_process(cluster, pod, SIDECAR_CONTAINER)?;
    }
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), SHOP);
    let cluster_ip = services
        .get("orders")
        .await?
        .spec
        .and_then(|spec| spec.cluster_ip)
        .context("Service orders has no ClusterIP")?;
    Ok(Endpoint {
        service_url: format!("http://{cluster_ip}:80{WEBHOOK_PATH}"),
        pods: pods
            .iter()
            .map(|pod| AppPod {
                name: pod.metadata.name.clone().unwrap_or_default(),
                ip: pod
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.clone())
                    .unwrap_or_default(),
            })
            .collect(),
        client: client.clone(),
    })
}

/// A running app pod has the native sidecar, non-root on a read-only root filesystem, and
/// both containers started and ready (so their probes passed).
fn check_injected(pod: &Pod) -> anyhow::Result<()> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let sidecar = hookguard_tests::injection::sidecar_of(pod)
        .with_context(|| format!("{name}: no {SIDECAR_CONTAINER} init container"))?;
    ensure!(
        sidecar.restart_policy.as_deref() == Some("Always"),
        "{name}: the sidecar is not a native sidecar"
    );
    let security = sidecar
        .security_context
        .as_ref()
        .context("sidecar without securityContext")?;
    ensure!(
        security.run_as_non_root == Some(true),
        "{name}: runAsNonRoot"
    );
    ensure!(
        security.read_only_root_filesystem == Some(true),
        "{name}: readOnlyRootFilesystem"
    );
    let status = pod.status.as_ref().context("no status")?;
    let sidecar_status = status
        .init_container_statuses
        .iter()
        .flatten()
        .find(|s| s.name == SIDECAR_CONTAINER)
        .context("no sidecar status")?;
    ensure!(
        sidecar_status.ready && sidecar_status.started == Some(true),
        "{name}: the sidecar is not started and ready: {sidecar_status:?}"
    );
    let app = status
        .container_statuses
        .iter()
        .flatten()
        .find(|s| s.name == "app")
        .context("no app status")?;
    ensure!(app.ready, "{name}: the app is not ready");
    Ok(())
}

/// What the kernel says of a running container's process (as `id` and `mount` inside it
/// would, but the sidecar image has no shell): uid and gid 65532, `/` mounted read-only.
fn check_process(cluster: &Cluster, pod: &Pod, container: &str) -> anyhow::Result<()> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let id = container_id(pod, container)?;
    let tasks = run(ctr(cluster).args(["tasks", "ls"]))?;
    let pid = tasks
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some(id.as_str())).then(|| fields.next().map(str::to_owned))?
        })
        .with_context(|| format!("containerd lists no task {id} ({name}/{container})"))?;
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for field in ["Uid:", "Gid:"] {
        let ids: Vec<&str> = proc_status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .context("no such field")?
            .split_whitespace()
            .collect();
        ensure!(
            ids.iter().all(|id| *id == "65532"),
            "{name}/{container} runs with {field} {ids:?}, not 65532"
        );
    }
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
    let root = mounts
        .lines()
        .find(|line| line.split_whitespace().nth(4) == Some("/"))
        .context("no root mount")?;
    let options = root.split_whitespace().nth(5).unwrap_or_default();
    ensure!(
        options.split(',').any(|o| o == "ro"),
        "{name}/{container}'s root filesystem is mounted {options}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Faults

/// Rotation by annotation mid-traffic: deliveries signed with the old key keep flowing over
/// the Service; each sidecar (reading the Secret the kubelet updates) accepts both keys
/// during the grace period, then only the new one.
async fn rotation(cluster: &Cluster, http: &Http, endpoint: &Endpoint) -> anyhow::Result<Tally> {
    let mut tally = Tally {
        name: "key rotation mid-traffic",
        ..Tally::default()
    };
    let old = endpoint.newest_key().await?;
    let mut traffic = Background::start(http, &endpoint.service_url, &old, "rotation")?;
    run(cluster.kubectl().args([
        "-n",
        SHOP,
        "annotate",
        "--overwrite",
        &format!("whe/{ENDPOINT}"),
        "hookguard.dev/rotate=e2e-1",
    ]))?;
    let keys = eventually_value("the endpoint holds two keys", SETTLE, async || {
        let keys = endpoint.keys().await?;
        Ok((keys.len() == 2).then_some(keys))
    })
    .await?;
    ensure!(keys[1] == old, "the old key is second after a rotation");
    let new = keys[0].clone();
    for pod in &endpoint.pods {
        let url = Endpoint::sidecar_url(pod);
        let with_new = Sender::new(http, &url, &new)?;
        eventually(
            &format!(
                "{} accepts the new key (the kubelet updated the Secret)",
                pod.name
            ),
            SETTLE,
            async || Ok(with_new.once_status(&unique("probe-new")).await? == 200),
        )
        .await?;
        let with_old = Sender::new(http, &url, &old)?;
        ensure!(
            with_old.once_status(&unique("probe-old")).await? == 200,
            "{} refused the old key during the grace period",
            pod.name
        );
    }
    let sent = traffic.stop().await;
    // After the grace period the old key leaves the Secret, then the mounted files.
    for pod in &endpoint.pods {
        let url = Endpoint::sidecar_url(pod);
        let with_old = Sender::new(http, &url, &old)?;
        eventually(
            &format!("{} refuses the old key after the grace period", pod.name),
            GRACE + SETTLE,
            async || Ok(with_old.once_status(&unique("probe-expired")).await? == 401),
        )
        .await?;
        let with_new = Sender::new(http, &url, &new)?;
        ensure!(
            with_new.once_status(&unique("probe-still-new")).await? == 200,
            "{} refused the new key",
            pod.name
        );
    }
    count_at_app(http, endpoint, &sent, &mut tally).await?;
    Ok(tally)
}

/// The leading operator pod is deleted: the other replica takes the Lease, and the API
/// server keeps injecting through the Service (whichever replica answers).
async fn operator_failover(
    cluster: &Cluster,
    client: &kube::Client,
    http: &Http,
    endpoint: &Endpoint,
) -> anyhow::Result<Tally> {
    let mut tally = Tally {
        name: "leading operator pod deleted",
        ..Tally::default()
    };
    let key = endpoint.newest_key().await?;
    let mut traffic = Background::start(http, &endpoint.service_url, &key, "failover")?;
    let leader = eventually_holder(cluster, None).await?;
    run(cluster
        .kubectl()
        .args(["-n", SYSTEM, "delete", "pod", &leader, "--wait=false"]))?;
    // Probed from the deletion until the old pod is gone, its whole termination included.
    let (injected, refused) = injections_while(client, async {
        let new_leader = eventually_holder(cluster, Some(&leader)).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), SYSTEM);
        eventually(&format!("{leader} is gone"), SETTLE, async || {
            Ok(pods.get_opt(&leader).await?.is_none())
        })
        .await?;
        Ok(new_leader)
    })
    .await;
    let new_leader = injected.1?;
    ensure!(new_leader != leader, "the Lease stayed with {leader}");
    let sent = traffic.stop().await;
    // Injection works after the failover, whoever answers.
    eventually(
        "an opted-in pod is injected after the failover",
        SETTLE,
        async || dry_run_injected(client).await,
    )
    .await?;
    println!(
        "failover: {leader} -> {new_leader}; injections during it: {} injected, {refused} refused",
        injected.0
    );
    // The deleted pod keeps answering while it leaves the webhook's Service
    // (--shutdown-delay), so no pod created meanwhile is refused.
    ensure!(
        refused == 0,
        "{refused} pods were refused during the failover"
    );
    count_at_app(http, endpoint, &sent, &mut tally).await?;
    Ok(tally)
}

/// One sidecar container is killed (SIGKILL through containerd): the kubelet restarts it,
/// and a sender's retries after the errors get every delivery through once.
async fn sidecar_killed(
    cluster: &Cluster,
    client: &kube::Client,
    http: &Http,
    endpoint: &Endpoint,
) -> anyhow::Result<Tally> {
    let mut tally = Tally {
        name: "sidecar container killed",
        ..Tally::default()
    };
    let key = endpoint.newest_key().await?;
    let victim = &endpoint.pods[0];
    let mut traffic = Background::start(http, &endpoint.service_url, &key, "sidecar-kill")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    kill_until_restarted(cluster, client, SHOP, &victim.name, SIDECAR_CONTAINER).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = traffic.stop().await;
    count_at_app(http, endpoint, &sent, &mut tally).await?;
    Ok(tally)
}

/// The bundled Redis is killed: while it is down the sidecars answer 503 (the sender
/// retries), and after the kubelet restarts it (same emptyDir, append-only file) every
/// delivery processed before is still known: a resend is answered 2xx and does not reach
/// the app again.
async fn redis_killed(
    cluster: &Cluster,
    client: &kube::Client,
    http: &Http,
    endpoint: &Endpoint,
    earlier: &[String],
) -> anyhow::Result<Tally> {
    let mut tally = Tally {
        name: "bundled Redis killed",
        ..Tally::default()
    };
    let key = endpoint.newest_key().await?;
    let redis = pods_named(client, SYSTEM, "app.kubernetes.io/component=redis").await?;
    let redis = redis.first().context("no bundled Redis pod")?.clone();
    let mut traffic = Background::start(http, &endpoint.service_url, &key, "redis-kill")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    kill_until_restarted(cluster, client, SYSTEM, &redis, "redis").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = traffic.stop().await;
    let unavailable = sent.statuses.get(&503).copied().unwrap_or(0);
    println!("redis restart: {unavailable} answers were 503 while it was down");
    // Fail closed (storeUnavailable: Reject, the default): while Redis is down the sidecar
    // answers 503 and the sender's retry gets through after.
    ensure!(
        unavailable > 0,
        "no 503 while the bundled Redis was down: the sidecar did not notice the outage"
    );
    count_at_app(http, endpoint, &sent, &mut tally).await?;

    // Dedup survived the restart: resending the first scenario's deliveries reaches nobody.
    let before = at_app(http, endpoint).await?;
    let resend = Sender::new(http, &endpoint.service_url, &key)?;
    let again = resend.storm(earlier, 1).await?;
    let after = at_app(http, endpoint).await?;
    let reached_again: usize = earlier
        .iter()
        .map(|id| after.count(id) - before.count(id))
        .sum();
    tally.absorbed += again.acked.len();
    tally.dup_at_app += reached_again;
    ensure!(
        again.given_up.is_empty(),
        "resent deliveries were not answered 2xx after the Redis restart: {:?}",
        again.given_up
    );
    ensure!(
        reached_again == 0,
        "{reached_again} deliveries processed before the Redis restart reached the app again"
    );
    Ok(tally)
}

/// Queue mode on the node: the endpoint is patched to `delivery.mode: Queue` (as a GitOps
/// commit would), the kubelet swaps the ConfigMap, each sidecar reloads and finds that the
/// bundled Redis fsyncs every write (`appendfsync always`), so deliveries are answered
/// `queued` and then delivered to the apps once each.
async fn queue_mode(cluster: &Cluster, http: &Http, endpoint: &Endpoint) -> anyhow::Result<Tally> {
    let mut tally = Tally {
        name: "queue mode (Disk durability)",
        ..Tally::default()
    };
    run(cluster.kubectl().args([
        "patch",
        "webhookendpoint",
        ENDPOINT,
        "-n",
        SHOP,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"delivery":{"mode":"Queue","retrySchedule":["1s"]}}}"#,
    ]))?;
    for pod in &endpoint.pods {
        let metrics = Endpoint::metrics_url(pod);
        eventually(
            &format!(
                "{} runs the endpoint in queue mode on an fsync promise",
                pod.name
            ),
            SETTLE,
            async || {
                let text = http.get_text(&metrics).await?;
                Ok(text.contains("hookguard_queue_store_promise{promise=\"fsync\"} 1"))
            },
        )
        .await?;
    }
    let key = endpoint.newest_key().await?;
    let sender = Sender::new(http, &endpoint.service_url, &key)?;
    let ids = ids("queued", 60);
    let sent = sender.storm(&ids, 3).await?;
    ensure!(
        sent.given_up.is_empty(),
        "queued deliveries not answered 2xx: {:?}",
        sent.given_up
    );
    eventually("every queued delivery reached an app", SETTLE, async || {
        let at = at_app(http, endpoint).await?;
        Ok(ids.iter().all(|id| at.count(id) > 0))
    })
    .await?;
    count_at_app(http, endpoint, &sent, &mut tally).await?;
    let mut queued = 0;
    for pod in &endpoint.pods {
        let text = http.get_text(&Endpoint::metrics_url(pod)).await?;
        queued += text
            .lines()
            .filter(|line| {
                line.starts_with("hookguard_requests_total{") && line.contains("outcome=\"queued\"")
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    ensure!(
        queued == 60,
        "{queued} answers were `queued`, expected one per delivery (60)"
    );
    Ok(tally)
}

/// `helm upgrade` with a changed value rolls the operator with no failed injection; `helm
/// uninstall` leaves only what the chart's README says stays.
async fn upgrade_and_uninstall(
    cluster: &Cluster,
    client: &kube::Client,
    endpoint: &Endpoint,
) -> anyhow::Result<()> {
    let before = operator_pods(cluster).await?;
    let chart = repo().join("charts/hookguard").display().to_string();
    let (injected, refused) = injections_while(client, async {
        run(cluster.helm().args([
            "upgrade",
            RELEASE,
            &chart,
            "-n",
            SYSTEM,
            "--reuse-values",
            "--set",
            "operator.logFormat=text",
            "--wait",
            "--timeout",
            "5m",
        ]))
    })
    .await;
    injected.1?;
    let after = operator_pods(cluster).await?;
    ensure!(
        before.iter().all(|pod| !after.contains(pod)),
        "helm upgrade did not roll the operator: {before:?} -> {after:?}"
    );
    println!(
        "helm upgrade: {} injections during the roll, {refused} refused",
        injected.0
    );
    ensure!(
        refused == 0,
        "{refused} pods were refused during the upgrade"
    );

    run(cluster
        .helm()
        .args(["uninstall", RELEASE, "-n", SYSTEM, "--wait"]))?;
    let left = kubectl_lines(
        cluster,
        &[
            "get",
            "deployments,statefulsets,services,serviceaccounts,roles,rolebindings,secrets,configmaps,leases,poddisruptionbudgets",
            "-n",
            SYSTEM,
            "-o",
            "name",
        ],
    )?;
    let expected: BTreeSet<String> = [
        format!("secret/{RELEASE}-webhook-cert"),
        format!("lease.coordination.k8s.io/{RELEASE}-operator"),
        // Every namespace's own.
        "serviceaccount/default".to_owned(),
        "configmap/kube-root-ca.crt".to_owned(),
    ]
    .into();
    let left: BTreeSet<String> = left.into_iter().collect();
    ensure!(
        left == expected,
        "after helm uninstall {SYSTEM} holds {left:?}, the chart's README says {expected:?}"
    );
    let cluster_scoped = kubectl_lines(
        cluster,
        &[
            "get",
            "clusterroles,clusterrolebindings,mutatingwebhookconfigurations,validatingadmissionpolicies,validatingadmissionpolicybindings",
            "-l",
            "app.kubernetes.io/name=hookguard",
            "-o",
            "name",
        ],
    )?;
    ensure!(
        cluster_scoped.is_empty(),
        "cluster-scoped Hookguard objects left: {cluster_scoped:?}"
    );
    let crd = kubectl_lines(
        cluster,
        &["get", "crd", "webhookendpoints.hookguard.dev", "-o", "name"],
    )?;
    ensure!(crd.len() == 1, "the CRD is kept by policy");
    // The endpoint and its own children stay with the CRD.
    let secrets: Api<Secret> = Api::namespaced(endpoint.client.clone(), SHOP);
    ensure!(
        secrets
            .get_opt(&hookguard_api::names::signing_secret_name(ENDPOINT))
            .await?
            .is_some(),
        "the endpoint's signing Secret is gone"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Sending

/// An HTTP client for the Service and pod addresses (plain HTTP inside the cluster).
#[derive(Clone)]
struct Http {
    client: HttpClient<HttpConnector, Full<Bytes>>,
}

impl Http {
    fn new() -> Http {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Http {
            // A new connection per request, as most senders make: kube-proxy then picks a
            // pod per delivery, where a kept-alive connection would stay with one pod.
            client: HttpClient::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(connector),
        }
    }

    /// One POST; `0` for a connection error or a time-out.
    async fn post(&self, url: &str, headers: &[(&str, String)], body: &[u8]) -> u16 {
        let mut request = http::Request::post(url).header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let Ok(request) = request.body(Full::new(Bytes::copy_from_slice(body))) else {
            return 0;
        };
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            let response = self.client.request(request).await.ok()?;
            let status = response.status().as_u16();
            response.into_body().collect().await.ok()?;
            Some(status)
        })
        .await;
        answer.ok().flatten().unwrap_or(0)
    }

    /// The body of a GET that answered 2xx.
    async fn get(&self, url: &str) -> anyhow::Result<Bytes> {
        let request = http::Request::get(url).body(Full::new(Bytes::new()))?;
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .context("timed out")??;
        ensure!(
            response.status().is_success(),
            "GET {url}: {}",
            response.status()
        );
        Ok(response.into_body().collect().await?.to_bytes())
    }

    async fn get_text(&self, url: &str) -> anyhow::Result<String> {
        Ok(String::from_utf8_lossy(&self.get(url).await?).into_owned())
    }

    async fn get_json(&self, url: &str) -> anyhow::Result<Value> {
        Ok(serde_json::from_slice(&self.get(url).await?)?)
    }
}

/// A sender signing with the Standard Webhooks reference library.
struct Sender {
    http: Http,
    url: String,
    webhook: standardwebhooks::Webhook,
}

/// A delivery's final status and every status its attempts got.
type Attempts = (u16, Vec<u16>);

/// What one delivery's attempts came to.
#[derive(Debug, Default)]
struct Sent {
    ids: Vec<String>,
    /// Valid deliveries that got a 2xx at last.
    acked: BTreeSet<String>,
    /// Deliveries the sender gave up on (no 2xx within its attempts, or a permanent 4xx).
    given_up: BTreeSet<String>,
    /// 2xx answers beyond the first per delivery.
    extra_2xx: usize,
    refused: usize,
    tampered: usize,
    tampered_2xx: usize,
    statuses: BTreeMap<u16, usize>,
}

impl Sent {
    fn merge_into(&self, tally: &mut Tally) {
        tally.sent += self.ids.len();
        tally.absorbed += self.extra_2xx;
        tally.refused += self.refused;
        tally.tampered += self.tampered;
        tally.false_2xx += self.tampered_2xx;
        for (status, n) in &self.statuses {
            *tally.statuses.entry(*status).or_default() += n;
        }
    }
}

impl Sender {
    fn new(http: &Http, url: &str, key: &str) -> anyhow::Result<Sender> {
        Ok(Sender {
            http: http.clone(),
            url: url.to_owned(),
            webhook: standardwebhooks::Webhook::new(key)
                .map_err(|e| anyhow::anyhow!("the key is not a Standard Webhooks secret: {e}"))?,
        })
    }

    fn body(id: &str) -> Vec<u8> {
        format!(r#"{{"type":"order.created","data":{{"id":"{id}"}}}}"#).into_bytes()
    }

    fn headers(&self, id: &str, body: &[u8]) -> anyhow::Result<Vec<(&'static str, String)>> {
        let timestamp = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
        let signature = self
            .webhook
            .sign(id, timestamp, body)
            .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
        Ok(vec![
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ])
    }

    /// One attempt, signed now; its status.
    async fn once_status(&self, id: &str) -> anyhow::Result<u16> {
        let body = Self::body(id);
        let headers = self.headers(id, &body)?;
        Ok(self.http.post(&self.url, &headers, &body).await)
    }

    /// Sends `id` until a 2xx or a permanent refusal, as a sender retries; returns the final
    /// status and every status seen.
    async fn deliver(&self, id: &str) -> anyhow::Result<(u16, Vec<u16>)> {
        let body = Self::body(id);
        let mut seen = Vec::new();
        for _ in 0..ATTEMPTS {
            let headers = self.headers(id, &body)?;
            let status = self.http.post(&self.url, &headers, &body).await;
            seen.push(status);
            if (200..300).contains(&status) || (400..500).contains(&status) && status != 409 {
                return Ok((status, seen));
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
        Ok((seen.last().copied().unwrap_or(0), seen))
    }

    /// Every id `copies` times at once, 16 deliveries in flight.
    async fn storm(&self, ids: &[String], copies: usize) -> anyhow::Result<Sent> {
        let mut sent = Sent {
            ids: ids.to_vec(),
            ..Sent::default()
        };
        let this = self;
        let results: Vec<(String, anyhow::Result<Attempts>)> =
            futures::stream::iter(ids.iter().flat_map(|id| std::iter::repeat_n(id, copies)))
                .map(|id| async move { (id.clone(), this.deliver(id).await) })
                .buffer_unordered(16)
                .collect()
                .await;
        for (id, result) in results {
            let (status, seen) = result?;
            record(&mut sent, &id, status, &seen);
        }
        Ok(sent)
    }

    /// `n` deliveries whose body is changed after signing: each must get 401.
    async fn tampered(&self, prefix: &str, n: usize, tally: &mut Tally) -> anyhow::Result<()> {
        for i in 0..n {
            let id = format!("{prefix}-{i}-{}", nonce());
            let body = Self::body(&id);
            let headers = self.headers(&id, &body)?;
            let mut forged = body.clone();
            forged.extend_from_slice(b" ");
            let status = self.http.post(&self.url, &headers, &forged).await;
            tally.tampered += 1;
            *tally.statuses.entry(status).or_default() += 1;
            match status {
                401 => tally.refused += 1,
                200..=299 => tally.false_2xx += 1,
                other => bail!("a tampered delivery got {other}, not 401"),
            }
        }
        Ok(())
    }
}

fn record(sent: &mut Sent, id: &str, status: u16, seen: &[u16]) {
    for status in seen {
        *sent.statuses.entry(*status).or_default() += 1;
    }
    if (200..300).contains(&status) {
        if !sent.acked.insert(id.to_owned()) {
            sent.extra_2xx += 1;
        }
        // A copy answered 2xx while another copy is acked is the duplicate answer.
        sent.given_up.remove(id);
    } else if !sent.acked.contains(id) {
        sent.given_up.insert(id.to_owned());
    }
}

/// Deliveries sent one after another over the Service until stopped, each retried as a
/// sender does; what happened to them.
struct Background {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Sent>,
}

impl Background {
    fn start(
        http: &Http,
        url: &str,
        key: &str,
        prefix: &'static str,
    ) -> anyhow::Result<Background> {
        let sender = Sender::new(http, url, key)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut sent = Sent::default();
            let mut n = 0;
            while !flag.load(Ordering::Relaxed) {
                let id = format!("{prefix}-{n}-{}", nonce());
                n += 1;
                sent.ids.push(id.clone());
                match sender.deliver(&id).await {
                    Ok((status, seen)) => record(&mut sent, &id, status, &seen),
                    Err(_) => {
                        sent.given_up.insert(id);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            sent
        });
        Ok(Background { stop, task })
    }

    async fn stop(&mut self) -> Sent {
        self.stop.store(true, Ordering::Relaxed);
        (&mut self.task).await.unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------
// What reached the app

/// Each pod's record of the deliveries that reached its app container.
struct AtApp {
    per_pod: Vec<BTreeMap<String, usize>>,
}

impl AtApp {
    fn count(&self, id: &str) -> usize {
        self.per_pod
            .iter()
            .map(|pod| pod.get(id).copied().unwrap_or(0))
            .sum()
    }

    fn pods_with(&self, id: &str) -> usize {
        self.per_pod
            .iter()
            .filter(|pod| pod.contains_key(id))
            .count()
    }
}

async fn at_app(http: &Http, endpoint: &Endpoint) -> anyhow::Result<AtApp> {
    let mut per_pod = Vec::new();
    for pod in &endpoint.pods {
        let log = http
            .get_json(&format!("http://{}:8080/deliveries", pod.ip))
            .await
            .with_context(|| format!("reading {}'s deliveries", pod.name))?;
        ensure!(
            log["dropped"].as_u64() == Some(0),
            "{} dropped records: raise its --max-records",
            pod.name
        );
        let mut counts = BTreeMap::new();
        for record in log["deliveries"].as_array().into_iter().flatten() {
            let id = record["id"].as_str().unwrap_or_default().to_owned();
            *counts.entry(id).or_default() += 1;
        }
        per_pod.push(counts);
    }
    Ok(AtApp { per_pod })
}

/// Adds `sent` to `tally` with what reached the app: a valid delivery that never reached it
/// is `LOST`, and if it was answered 2xx that answer is a `FALSE_2XX` too.
async fn count_at_app(
    http: &Http,
    endpoint: &Endpoint,
    sent: &Sent,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    sent.merge_into(tally);
    let at = at_app(http, endpoint).await?;
    for id in &sent.ids {
        match at.count(id) {
            0 => {
                tally.lost += 1;
                if sent.acked.contains(id) {
                    tally.false_2xx += 1;
                }
            }
            1 => tally.reached += 1,
            _ => {
                tally.reached += 1;
                tally.dup_at_app += 1;
            }
        }
        if at.pods_with(id) > 1 {
            tally.conc_at_app += 1;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Cluster helpers

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `repository:tag` split at the tag's colon.
fn split(image: &str) -> (&str, &str) {
    image.rsplit_once(':').unwrap_or((image, "latest"))
}

fn run(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn apply(cluster: &Cluster, manifest: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("manifest.yaml");
    std::fs::write(&file, manifest)?;
    run(cluster
        .kubectl()
        .args(["apply", "-f", &file.display().to_string()]))?;
    Ok(())
}

fn kubectl_lines(cluster: &Cluster, args: &[&str]) -> anyhow::Result<Vec<String>> {
    Ok(run(cluster.kubectl().args(args))?
        .lines()
        .map(str::to_owned)
        .filter(|line| !line.is_empty())
        .collect())
}

async fn operator_pods(cluster: &Cluster) -> anyhow::Result<Vec<String>> {
    let client = cluster.client().await?;
    let mut pods = Vec::new();
    for pod in Api::<Pod>::namespaced(client, SYSTEM)
        .list(&ListParams::default().labels("app.kubernetes.io/component=operator"))
        .await?
    {
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready && pod.metadata.deletion_timestamp.is_none() {
            pods.push(pod.metadata.name.unwrap_or_default());
        }
    }
    pods.sort();
    Ok(pods)
}

async fn pods_named(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
) -> anyhow::Result<Vec<String>> {
    Ok(Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(selector))
        .await?
        .into_iter()
        .filter_map(|pod| pod.metadata.name)
        .collect())
}

async fn app_pods(client: &kube::Client) -> anyhow::Result<Vec<Pod>> {
    let mut pods: Vec<Pod> = Api::<Pod>::namespaced(client.clone(), SHOP)
        .list(&ListParams::default().labels("app=orders"))
        .await?
        .into_iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(pods)
}

/// The Lease holder, once there is one (and, with `not`, once it is someone else).
async fn eventually_holder(cluster: &Cluster, not: Option<&str>) -> anyhow::Result<String> {
    let lease = format!("{RELEASE}-operator");
    eventually_value("a replica holds the operator Lease", SETTLE, async || {
        let holder = run(cluster.kubectl().args([
            "-n",
            SYSTEM,
            "get",
            "lease",
            &lease,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]))
        .unwrap_or_default();
        let holder = holder.trim().to_owned();
        Ok((!holder.is_empty() && Some(holder.as_str()) != not).then_some(holder))
    })
    .await
}

/// SIGKILL to a container's process through containerd, as an OOM kill or a crash would
/// end it; returns once the kubelet has seen it exit, restarted it, and it is ready again.
async fn kill_until_restarted(
    cluster: &Cluster,
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    container: &str,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let object = pods.get(pod).await?;
    let restarts = container_status(&object, container).map_or(0, |s| s.restart_count);
    let id = container_id(&object, container)?;
    run(ctr(cluster).args(["tasks", "kill", "-s", "SIGKILL", &id]))?;
    eventually(
        &format!("the kubelet restarts {pod}'s {container}"),
        SETTLE,
        async || {
            let object = pods.get(pod).await?;
            Ok(container_status(&object, container)
                .is_some_and(|s| s.restart_count > restarts && s.ready))
        },
    )
    .await
}

/// The status of `container` (an init container, such as the native sidecar, or not).
fn container_status<'a>(
    pod: &'a Pod,
    container: &str,
) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    let status = pod.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find(|s| s.name == container)
}

/// containerd's ID of the running `container` of `pod`.
fn container_id(pod: &Pod, container: &str) -> anyhow::Result<String> {
    let id = container_status(pod, container)
        .and_then(|s| s.container_id.as_deref())
        .with_context(|| {
            format!(
                "{} has no running {container}",
                pod.metadata.name.as_deref().unwrap_or_default()
            )
        })?;
    Ok(id.trim_start_matches("containerd://").to_owned())
}

/// `ctr` (Debian's containerd package) on the node's containerd, in the CRI's namespace.
fn ctr(cluster: &Cluster) -> Command {
    let mut ctr = Command::new("ctr");
    ctr.arg("-a")
        .arg(cluster.containerd_socket())
        .args(["-n", "k8s.io"]);
    ctr
}

/// An opted-in pod, created as a server-side dry run, gets the sidecar.
async fn dry_run_injected(client: &kube::Client) -> anyhow::Result<bool> {
    let pod = hookguard_tests::injection::pod(
        None,
        &[
            (hookguard_api::names::LABEL_INJECT, "true"),
            ("app", "orders"),
        ],
        &[],
    )?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), SHOP);
    match hookguard_tests::injection::dry_run(&pods, &pod).await {
        Ok(admitted) => Ok(hookguard_tests::injection::sidecar_of(&admitted).is_some()),
        // The policy refuses an opted-in pod without the sidecar: the webhook was not reached.
        Err(kube::Error::Api(status)) if status.code == 403 || status.code == 422 => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Runs `work` while creating an opted-in pod (dry run) every 200 ms; returns `work`'s
/// result with the number injected, and the number refused or admitted without the sidecar.
async fn injections_while<T>(
    client: &kube::Client,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> ((usize, anyhow::Result<T>), usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let client = client.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut injected, mut refused) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                match dry_run_injected(&client).await {
                    Ok(true) => injected += 1,
                    Ok(false) | Err(_) => refused += 1,
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (injected, refused)
        })
    };
    let result = work.await;
    stop.store(true, Ordering::Relaxed);
    let (injected, refused) = probe.await.unwrap_or((0, usize::MAX));
    ((injected, result), refused)
}

// ---------------------------------------------------------------------------------------
// Ids and the table

fn nonce() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", nonce())
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    let run = nonce();
    (0..n).map(|i| format!("{prefix}-{run}-{i}")).collect()
}

fn table(tallies: &[Tally]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n| scenario | sent | reached app | duplicates absorbed | 401s (tampered) | LOST | FALSE_2XX | DUP_AT_APP | CONC_AT_APP | answers seen |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for t in tallies {
        let statuses: Vec<String> = t
            .statuses
            .iter()
            .map(|(status, n)| {
                let status = if *status == 0 {
                    "conn".to_owned()
                } else {
                    status.to_string()
                };
                format!("{status}×{n}")
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} | {} |",
            t.name,
            t.sent,
            t.reached,
            t.absorbed,
            t.refused,
            t.tampered,
            t.lost,
            t.false_2xx,
            t.dup_at_app,
            t.conc_at_app,
            statuses.join(" ")
        );
    }
    let _ = writeln!(
        out,
        "\nLOST: a valid delivery that never reached the app. FALSE_2XX: a 2xx for a delivery the app never got, or for a tampered one. DUP_AT_APP: reached the app more than once. CONC_AT_APP: reached the app in both pods."
    );
    out
}
