//! The CLI's cluster read commands (`status`, `check`, `check-inject`, `secret`), run as the
//! real `hookguard` binary against the real control plane, as a user runs them.
//!
//! Parallel-safe on the shared control plane: each test works in its own namespace, a chart
//! install is namespace-scoped (`rbac.namespaced=true`, so its webhook and policy only cover
//! that test's app namespace) and named after its namespace, and cluster-scoped objects carry
//! the namespace in their names. The missing-CRD case gets a control plane of its own, since
//! the CRD is shared by every test here.
//!
//! No kubelet runs, so what the kubelet and the controllers would report is written by the
//! test the way they write it: the operator Deployment's ready replicas (status
//! subresource), the Services' `EndpointSlices`, the webhook's caBundle (the operator's job in
//! self cert mode). The leader Lease is held by a real operator, in process.

mod chart_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use hookguard_api::admin::key_fingerprint;
use hookguard_api::crd::WebhookEndpoint;
use hookguard_operator::admission::manifests::development_webhook_configuration;
use hookguard_operator::config::{LeaderConfig, OperatorConfig};
use hookguard_tests::cli::{Run, run_against};
use hookguard_tests::control_plane::{ControlPlane, TestNamespace, with_namespace};
use hookguard_tests::injection::{create_endpoint, ensure_crd};
use hookguard_tests::net::free_port;
use hookguard_tests::operator::{
    InProcess, children, endpoint, install_crd, materialize, wait_condition,
};
use hookguard_tests::sidecar::SidecarHarness;
use hookguard_tests::wait::eventually;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// Runs the CLI off the async runtime, so an in-process operator keeps renewing its Lease
/// and answering while the CLI works.
async fn hookguard(plane: &'static ControlPlane, args: &[&str]) -> anyhow::Result<Run> {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_against(plane.kubeconfig(), &args)
    })
    .await?
}

fn json_of(run: &Run) -> anyhow::Result<Value> {
    serde_json::from_str(&run.stdout).with_context(|| format!("not JSON: {run:?}"))
}

/// A secret's data key as the text it holds.
fn secret_value(secret: &Secret, key: &str) -> anyhow::Result<String> {
    let bytes = &secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .with_context(|| format!("no key {key} in the Secret"))?
        .0;
    Ok(String::from_utf8(bytes.clone())?)
}

/// Creates `pay` (podSelector app=web) with the in-process operator and waits until Ready.
async fn ready_endpoint(ns: &TestNamespace, name: &str, scheme: &str) -> anyhow::Result<()> {
    let api: Api<WebhookEndpoint> = ns.api();
    api.create(
        &PostParams::default(),
        &endpoint(
            name,
            &format!(
                "{{scheme: {scheme}, path: /{name}, upstream: {{port: 8080}}, podSelector: {{matchLabels: {{app: web}}}}}}"
            ),
        )?,
    )
    .await?;
    wait_condition(&api, name, "Ready", "True", Duration::from_secs(60)).await?;
    Ok(())
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one user story, told in order
async fn status_shows_a_ready_endpoint_its_key_fingerprints_and_a_pod_without_the_sidecar() {
    with_namespace("cli-status", |ns| async move {
        let operator = InProcess::solo(&ns).await?;
        ready_endpoint(&ns, "pay", "Generic").await?;
        let secret = ns.api::<Secret>().get("pay-signing").await?;
        let value = secret_value(&secret, "k1")?;
        let fingerprint = key_fingerprint(value.as_bytes());

        // Ready and no pod selects it yet: healthy.
        let run = hookguard(ns.plane, &["status", "pay", "-n", &ns.name]).await?;
        ensure!(
            run.code == 0,
            "a Ready endpoint without pods is healthy: {run:?}"
        );
        ensure!(run.stdout.contains("Ready=True"), "{}", run.stdout);
        ensure!(
            run.stdout.contains("Keys (Secret pay-signing, generated)"),
            "{}",
            run.stdout
        );
        let key_line = run
            .stdout
            .lines()
            .find(|line| line.trim_start().starts_with("k1 "))
            .with_context(|| format!("no line for key k1:\n{}", run.stdout))?;
        ensure!(
            key_line.contains(&fingerprint),
            "{key_line:?} lacks {fingerprint}"
        );
        ensure!(key_line.contains("current"), "{key_line:?}");

        // A pod its podSelector matches, without the opt-in label: no sidecar, exit 1.
        ns.api::<Pod>()
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "web-1", "labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "app:1"}]},
                }))?,
            )
            .await?;
        let run = hookguard(ns.plane, &["status", "webhookendpoint/pay", "-n", &ns.name]).await?;
        ensure!(
            run.code == 1,
            "a selected pod without the sidecar is a failure: {run:?}"
        );
        let pod_line = run
            .stdout
            .lines()
            .find(|line| line.trim_start().starts_with("web-1"))
            .with_context(|| format!("no line for pod web-1:\n{}", run.stdout))?;
        ensure!(
            pod_line.contains('✘') && pod_line.contains("no hookguard.dev/inject=true label"),
            "{pod_line:?}"
        );
        ensure!(
            run.stdout.contains("pod web-1 has no sidecar for it"),
            "{}",
            run.stdout
        );

        let json_run =
            hookguard(ns.plane, &["status", "pay", "-n", &ns.name, "-o", "json"]).await?;
        ensure!(json_run.code == 1, "{json_run:?}");
        let report = json_of(&json_run)?;
        ensure!(report["healthy"] == false, "{report:#}");
        ensure!(report["endpoint"]["ready"] == true, "{report:#}");
        ensure!(report["endpoint"]["scheme"] == "Generic", "{report:#}");
        let keys = report["keys"]["keys"].as_array().context("keys")?;
        ensure!(keys.len() == 1 && keys[0]["id"] == "k1", "{report:#}");
        ensure!(keys[0]["fingerprint"] == fingerprint.as_str(), "{report:#}");
        ensure!(report["config"]["present"] == true, "{report:#}");
        let pods = report["pods"]["pods"].as_array().context("pods")?;
        ensure!(
            pods.len() == 1
                && pods[0]["name"] == "web-1"
                && pods[0]["injected"] == false
                && pods[0]["selectedBy"] == "podSelector",
            "{report:#}"
        );

        // A sidecar run as a process with the endpoint's config and key, and one that is not
        // there: the first answers with its key and outcomes, the second is unknown, not fatal.
        let scratch = tempfile::tempdir()?;
        let (_, config_map) = children(&ns, "pay").await?;
        let config = materialize(scratch.path(), &config_map, &BTreeMap::new())?;
        let sidecar = SidecarHarness::start(vec![(config, value.as_str())], &[]).await?;
        let wrong = sidecar
            .post_generic("/pay", "not-the-key", "d-1", "{}")
            .await?;
        ensure!(wrong.status == 401, "{wrong:?}");
        // The sidecar writes its delivery log behind the answer: wait until it holds the
        // record, so the CLI's count below is deterministic.
        eventually(
            "the sidecar logged the delivery",
            Duration::from_secs(10),
            || {
                let sidecar = &sidecar;
                async move {
                    let (status, body) = sidecar.admin("/deliveries?endpoint=pay").await?;
                    Ok(status == 200 && body.contains("unauthorized"))
                }
            },
        )
        .await?;
        let admin = sidecar.admin_url();
        let gone = format!("http://127.0.0.1:{}", free_port()?);
        let with_sidecars = hookguard(
            ns.plane,
            &[
                "status",
                "pay",
                "-n",
                &ns.name,
                "--sidecar",
                &admin,
                "--sidecar",
                &gone,
                "-o",
                "json",
            ],
        )
        .await?;
        let report = json_of(&with_sidecars)?;
        let sidecars = report["sidecars"]["sidecars"]
            .as_array()
            .context("sidecars")?;
        ensure!(sidecars.len() == 2, "{report:#}");
        ensure!(
            sidecars[0]["ready"] == true
                && sidecars[0]["currentKeyLoaded"] == true
                && sidecars[0]["loadedKeys"][0]["fingerprint"] == fingerprint.as_str(),
            "{report:#}"
        );
        ensure!(
            sidecars[0]["outcomes"]["request"]["unauthorized"] == 1,
            "{report:#}"
        );
        ensure!(
            sidecars[1].get("ready").is_none()
                && sidecars[1]["readyError"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("unknown")),
            "{report:#}"
        );
        ensure!(
            report["problems"].as_array().is_some_and(|p| p.len() == 1),
            "an unreachable sidecar is no problem of the endpoint: {report:#}"
        );
        let text = hookguard(
            ns.plane,
            &["status", "pay", "-n", &ns.name, "--sidecar", &admin],
        )
        .await?;
        ensure!(
            text.stdout.contains("has loaded the current key")
                && text.stdout.contains("unauthorized 1"),
            "{}",
            text.stdout
        );
        sidecar.stop().await;

        for run in [&run, &json_run, &with_sidecars, &text] {
            ensure!(
                !run.stdout.contains(&value) && !run.stderr.contains(&value),
                "the secret value was printed: {run:?}"
            );
        }
        operator.stop().await;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn secret_lists_fingerprints_and_show_prints_exactly_the_value() {
    with_namespace("cli-secret", |ns| async move {
        let operator = InProcess::solo(&ns).await?;
        ready_endpoint(&ns, "svix", "StandardWebhooks").await?;
        let secret = ns.api::<Secret>().get("svix-signing").await?;
        let value = secret_value(&secret, "k1")?;
        ensure!(
            value.starts_with("whsec_"),
            "the stored form: {}",
            value.len()
        );

        let listing = hookguard(ns.plane, &["secret", "svix", "-n", &ns.name]).await?;
        ensure!(listing.code == 0, "{listing:?}");
        ensure!(
            listing.stdout.contains(&key_fingerprint(value.as_bytes()))
                && listing.stdout.contains("--show"),
            "{}",
            listing.stdout
        );
        ensure!(
            !listing.stdout.contains(&value) && !listing.stderr.contains(&value),
            "the listing printed the value"
        );

        let shown = hookguard(ns.plane, &["secret", "svix", "-n", &ns.name, "--show"]).await?;
        ensure!(shown.code == 0, "{shown:?}");
        ensure!(
            shown.stdout == value,
            "stdout is not exactly the Secret's value"
        );
        ensure!(
            shown.stderr.contains("signing secret") && shown.stderr.contains("whsec_ form"),
            "{}",
            shown.stderr
        );
        ensure!(
            !shown.stderr.contains(&value),
            "the warning holds the value"
        );

        let missing = hookguard(
            ns.plane,
            &["secret", "svix", "-n", &ns.name, "--show", "--key", "k9"],
        )
        .await?;
        ensure!(
            missing.code != 0 && missing.stdout.is_empty() && missing.stderr.contains("k1"),
            "{missing:?}"
        );
        operator.stop().await;
        Ok(())
    })
    .await;
}

/// Registers a Hookguard webhook configuration (as the operator writes it for
/// `--webhook-url`) scoped to `namespace`; removed by [`unregister`].
async fn register_scoped_webhook(ns: &TestNamespace) -> anyhow::Result<String> {
    let name = format!("hookguard-{}", ns.name);
    let config = development_webhook_configuration(
        &name,
        "hookguard-system",
        "https://127.0.0.1:1/mutate",
        std::slice::from_ref(&ns.name),
    )?;
    Api::<MutatingWebhookConfiguration>::all(ns.client.clone())
        .create(&PostParams::default(), &config)
        .await?;
    Ok(name)
}

async fn unregister(ns: &TestNamespace, name: &str) {
    let _ = Api::<MutatingWebhookConfiguration>::all(ns.client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

fn deployment(name: &str, labels: &BTreeMap<&str, &str>) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": labels.get("app")}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]},
            },
        },
    }))?)
}

/// The table row of `endpoint` in `check-inject`'s text.
fn row<'a>(run: &'a Run, endpoint: &str) -> anyhow::Result<&'a str> {
    run.stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some(endpoint))
        .with_context(|| format!("no row for {endpoint}:\n{}", run.stdout))
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one user story, told in order
async fn check_inject_explains_which_endpoints_a_deployment_would_get() {
    with_namespace("cli-inject", |ns| async move {
        ensure_crd(&ns.client).await?;
        let webhook = register_scoped_webhook(&ns).await?;
        let result = async {
            create_endpoint(
                &ns,
                "orders",
                8080,
                "s1",
                Some(json!({"matchLabels": {"app": "shop"}})),
                true,
            )
            .await?;
            create_endpoint(
                &ns,
                "refunds",
                8080,
                "s2",
                Some(json!({"matchLabels": {"tier": "front"}})),
                true,
            )
            .await?;
            create_endpoint(
                &ns,
                "billing",
                8080,
                "s3",
                Some(json!({"matchLabels": {"app": "billing"}})),
                true,
            )
            .await?;
            let deployments = ns.api::<Deployment>();
            deployments
                .create(
                    &PostParams::default(),
                    &deployment(
                        "shop",
                        &BTreeMap::from([
                            ("app", "shop"),
                            ("tier", "front"),
                            ("hookguard.dev/inject", "true"),
                        ]),
                    )?,
                )
                .await?;
            deployments
                .create(
                    &PostParams::default(),
                    &deployment(
                        "plain",
                        &BTreeMap::from([("app", "shop"), ("tier", "front")]),
                    )?,
                )
                .await?;

            let shop = hookguard(
                ns.plane,
                &["check-inject", "deployment/shop", "-n", &ns.name],
            )
            .await?;
            ensure!(shop.code == 0, "{shop:?}");
            ensure!(
                shop.stdout.contains(&format!("✔ webhook {webhook}")),
                "{}",
                shop.stdout
            );
            for endpoint in ["orders", "refunds"] {
                let line = row(&shop, endpoint)?;
                ensure!(
                    line.contains('✔') && line.contains("spec.podSelector"),
                    "{line:?}"
                );
            }
            let billing = row(&shop, "billing")?;
            ensure!(
                billing.contains('✘')
                    && billing.contains("spec.podSelector (app=billing) does not match"),
                "{billing:?}"
            );
            ensure!(
                shop.stdout
                    .contains("the pods get the sidecar for orders, refunds"),
                "{}",
                shop.stdout
            );

            let plain = hookguard(
                ns.plane,
                &["check-inject", "deployment/plain", "-n", &ns.name],
            )
            .await?;
            ensure!(plain.code == 1, "nothing would be injected: {plain:?}");
            let orders = row(&plain, "orders")?;
            ensure!(
                orders.contains('✘') && orders.contains("lack hookguard.dev/inject=true"),
                "{orders:?}"
            );
            ensure!(
                plain.stdout.contains("no hookguard.dev/inject=true label"),
                "{}",
                plain.stdout
            );

            // What-if by labels, as data.
            let what_if = hookguard(
                ns.plane,
                &[
                    "check-inject",
                    "-l",
                    "app=shop,hookguard.dev/inject=true",
                    "-n",
                    &ns.name,
                    "-o",
                    "json",
                ],
            )
            .await?;
            ensure!(what_if.code == 0, "{what_if:?}");
            let report = json_of(&what_if)?;
            ensure!(report["injected"] == json!(["orders"]), "{report:#}");

            // The same labels in a namespace the webhook does not cover.
            let elsewhere = hookguard(
                ns.plane,
                &[
                    "check-inject",
                    "-l",
                    "app=shop,hookguard.dev/inject=true",
                    "-n",
                    "default",
                ],
            )
            .await?;
            ensure!(elsewhere.code == 1, "{elsewhere:?}");
            Ok(())
        }
        .await;
        unregister(&ns, &webhook).await;
        result
    })
    .await;
}

/// A chart install in `ns` made healthy the way a cluster would report it.
struct Install {
    app: String,
    fullname: String,
    operator: InProcess,
}

async fn install_chart(ns: &TestNamespace) -> anyhow::Result<Install> {
    let plane = ns.plane;
    install_crd(&ns.client).await?;
    let app = format!("{}-app", ns.name);
    chart_support::create_namespace(plane, &app)?;
    let chart = chart_support::chart_arg()?;
    let watch = format!("watchNamespaces={{{app}}}");
    chart_support::helm(
        plane,
        &[
            "install",
            &ns.name,
            &chart,
            "-n",
            &ns.name,
            "--set",
            "crds.install=false",
            "--set",
            "rbac.namespaced=true",
            "--set",
            &watch,
        ],
    )?;
    let fullname = format!("{}-hookguard", ns.name);

    // The Deployment controller and kubelet would report the replicas ready.
    ns.api::<Deployment>()
        .patch_status(
            &fullname,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2}}),
            ),
        )
        .await?;
    // The EndpointSlice controller would list the ready pods behind each Service.
    for (service, port) in [
        (format!("{fullname}-webhook"), 9443),
        (format!("{fullname}-redis"), 6379),
    ] {
        ns.api::<EndpointSlice>()
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": format!("{service}-x1"), "labels": {"kubernetes.io/service-name": service}},
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": true}}],
                    "ports": [{"port": port, "protocol": "TCP"}],
                }))?,
            )
            .await?;
    }
    // The operator writes the CA bundle at start-up (self cert mode).
    set_ca_bundle(ns, &fullname, "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==").await?;
    // A real operator holds the chart's Lease.
    let lease_name = format!("{fullname}-operator");
    let operator = InProcess::start(
        OperatorConfig {
            namespaces: vec![app.clone()],
            metrics_listen: ([127, 0, 0, 1], 0).into(),
            leader: Some(LeaderConfig {
                lease_name: lease_name.clone(),
                lease_namespace: ns.name.clone(),
                lease_duration: Duration::from_secs(15),
            }),
            identity: format!("{fullname}-0"),
        },
        ns.client.clone(),
    )
    .await?;
    let leases = ns.api::<Lease>();
    eventually(
        "the operator holds the Lease",
        Duration::from_secs(30),
        || {
            let (leases, lease_name) = (leases.clone(), lease_name.clone());
            async move {
                Ok(leases
                    .get_opt(&lease_name)
                    .await?
                    .and_then(|lease| lease.spec?.holder_identity)
                    .is_some())
            }
        },
    )
    .await?;
    Ok(Install {
        app,
        fullname,
        operator,
    })
}

async fn set_ca_bundle(ns: &TestNamespace, config: &str, bundle: &str) -> anyhow::Result<()> {
    Api::<MutatingWebhookConfiguration>::all(ns.client.clone())
        .patch(
            config,
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(json!([{
                "op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": bundle,
            }]))?),
        )
        .await?;
    Ok(())
}

/// The checks of a `check -o json` answer, by their hint code.
fn checks(report: &Value) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut found = BTreeMap::new();
    for category in report["categories"].as_array().context("categories")? {
        for check in category["checks"].as_array().context("checks")? {
            let code = check["code"].as_str().context("code")?.to_owned();
            found.insert(code, check.clone());
        }
    }
    Ok(found)
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one user story, told in order
async fn check_is_green_on_a_good_install_and_names_an_empty_ca_bundle() {
    with_namespace("cli-check", |ns| async move {
        let install = install_chart(&ns).await?;
        let operator_ns = ns.name.as_str();

        let green = hookguard(
            ns.plane,
            &[
                "check",
                "--operator-namespace",
                operator_ns,
                "-n",
                &install.app,
            ],
        )
        .await?;
        ensure!(green.code == 0, "a good install is green: {green:?}");
        ensure!(
            green.stdout.contains("Status check results are √"),
            "{}",
            green.stdout
        );
        ensure!(
            !green.stdout.contains('×') && !green.stdout.contains('‼'),
            "{}",
            green.stdout
        );
        let report = json_of(
            &hookguard(
                ns.plane,
                &[
                    "check",
                    "--operator-namespace",
                    operator_ns,
                    "-n",
                    &install.app,
                    "-o",
                    "json",
                ],
            )
            .await?,
        )?;
        ensure!(report["success"] == true, "{report:#}");
        let all = checks(&report)?;
        for code in [
            "api",
            "crd-exists",
            "crd-established",
            "crd-version",
            "operator-deployment",
            "operator-ready",
            "operator-leader",
            "webhook-config",
            "webhook-ca-bundle",
            "webhook-service",
            "policy",
            "policy-binding",
            "rbac-endpoints",
            "rbac-secrets",
            "rbac-portforward",
            "store",
        ] {
            let check = all
                .get(code)
                .with_context(|| format!("no check {code}: {report:#}"))?;
            ensure!(check["result"] == "success", "{code}: {check:#}");
        }
        ensure!(
            all["webhook-config"]["description"]
                .as_str()
                .is_some_and(|d| d.contains(&install.fullname)),
            "{report:#}"
        );

        // The CA bundle gone: the API server cannot call the webhook.
        set_ca_bundle(&ns, &install.fullname, "").await?;
        let red = hookguard(
            ns.plane,
            &["check", "--operator-namespace", operator_ns, "-o", "json"],
        )
        .await?;
        ensure!(red.code == 1, "{red:?}");
        let report = json_of(&red)?;
        ensure!(report["success"] == false, "{report:#}");
        let all = checks(&report)?;
        let ca = &all["webhook-ca-bundle"];
        ensure!(ca["result"] == "error", "{ca:#}");
        ensure!(
            ca["error"]
                .as_str()
                .is_some_and(|e| e.contains("empty caBundle")),
            "{ca:#}"
        );
        ensure!(
            ca["hint"]
                .as_str()
                .is_some_and(|h| h.ends_with("README.md#check-webhook-ca-bundle")),
            "{ca:#}"
        );
        let failed: Vec<&String> = all
            .iter()
            .filter(|(_, check)| check["result"] == "error")
            .map(|(code, _)| code)
            .collect();
        ensure!(
            failed == ["webhook-ca-bundle"],
            "only the CA bundle fails: {failed:?}"
        );
        let text = hookguard(ns.plane, &["check", "--operator-namespace", operator_ns]).await?;
        ensure!(text.code == 1, "{text:?}");
        ensure!(
            text.stdout.contains("× the webhook has a CA bundle")
                && text.stdout.contains("see https://")
                && text.stdout.contains("Status check results are ×"),
            "{}",
            text.stdout
        );
        install.operator.stop().await;
        Ok(())
    })
    .await;
}

/// A control plane without Hookguard's CRD (the shared one has it: other tests install it).
#[tokio::test]
async fn check_names_a_missing_crd_and_wait_times_out_with_124() -> anyhow::Result<()> {
    let plane = tokio::task::spawn_blocking(ControlPlane::start).await??;
    let kubeconfig = plane.kubeconfig().to_owned();
    let run = |args: &'static [&'static str]| {
        let kubeconfig = kubeconfig.clone();
        tokio::task::spawn_blocking(move || run_against(&kubeconfig, args))
    };
    let result = async {
        let red = run(&["check", "-o", "json"]).await??;
        ensure!(red.code == 1, "{red:?}");
        let report = json_of(&red)?;
        let all = checks(&report)?;
        let crd = &all["crd-exists"];
        ensure!(crd["result"] == "error", "{crd:#}");
        ensure!(
            crd["error"].as_str().is_some_and(
                |e| e.contains("no CustomResourceDefinition webhookendpoints.hookguard.dev")
            ),
            "{crd:#}"
        );
        ensure!(
            crd["hint"]
                .as_str()
                .is_some_and(|h| h.ends_with("#check-crd-exists")),
            "{crd:#}"
        );
        ensure!(all["api"]["result"] == "success", "{report:#}");

        let started = Instant::now();
        let waited = run(&["check", "--wait", "2s"]).await??;
        let took = started.elapsed();
        ensure!(waited.code == 124, "{waited:?}");
        ensure!(took >= Duration::from_secs(2), "gave up after {took:?}");
        ensure!(
            waited.stdout.contains("× the WebhookEndpoint CRD")
                && waited.stderr.contains("--wait 2s"),
            "{waited:?}"
        );
        Ok(())
    }
    .await;
    if result.is_err() {
        eprintln!("{}", plane.keep_logs());
    }
    drop(plane);
    result
}

#[tokio::test]
async fn an_endpoint_that_is_not_ready_fails_status_and_blocks_injection() {
    with_namespace("cli-unready", |ns| async move {
        ensure_crd(&ns.client).await?;
        let selector = json!({"matchLabels": {"app": "web"}});
        create_endpoint(&ns, "broken", 8080, "s1", Some(selector), false).await?;

        let status = hookguard(ns.plane, &["status", "broken", "-n", &ns.name]).await?;
        ensure!(status.code == 1, "{status:?}");
        ensure!(
            status.stdout.contains(
                "× the endpoint is not Ready: SecretMissing: the signing Secret is missing"
            ),
            "{}",
            status.stdout
        );

        let webhook = register_scoped_webhook(&ns).await?;
        let inject = hookguard(
            ns.plane,
            &[
                "check-inject",
                "-l",
                "app=web,hookguard.dev/inject=true",
                "-n",
                &ns.name,
            ],
        )
        .await;
        unregister(&ns, &webhook).await;
        let inject = inject?;
        ensure!(inject.code == 1, "{inject:?}");
        let broken = row(&inject, "broken")?;
        ensure!(
            broken.contains('✘') && broken.contains("it is not Ready (Ready is False"),
            "{broken:?}"
        );
        ensure!(
            inject
                .stdout
                .contains("the webhook refuses these pods until broken is Ready"),
            "{}",
            inject.stdout
        );
        Ok(())
    })
    .await;
}
