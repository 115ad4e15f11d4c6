//! Proof that the chart's RBAC is enough: the real `hookguard-operator` binary, run outside
//! the cluster with a token of the chart's ServiceAccount (`TokenRequest` API, not the admin),
//! started with exactly the arguments of the chart's Deployment, reconciles an endpoint to
//! Ready and serves injection, first with self-managed certificates (it creates its
//! certificate Secret and writes the CA bundle), then after `helm upgrade` to cert-manager
//! mode (the test plays cert-manager), where the API server itself calls it for a new pod.
//! Its own test binary (own control plane): an operator in cluster mode reconciles every
//! namespace, so it must not meet another test's.
//!
//! The operator binary is built from the current sources (`chart_support::operator`).
//!
//! No kubelet and no Service routing here: the API server cannot reach the webhook Service's
//! cluster IP, so the self-managed phase calls the webhook directly (with the certificate's
//! DNS name, verified against the CA the operator wrote), and the cert-manager phase points
//! the webhook configuration at `https://127.0.0.1:<port>` (an admin change standing in for
//! the Service; the operator never touches `clientConfig` but for the CA bundle).

mod chart_support;

use std::fs;
use std::process::Command;
use std::time::Duration;

use anyhow::ensure;
use base64::Engine as _;
use chart_support::operator::{
    Operator, app_pod, chart_args, check_refused_while_down, create_injected_pod,
    create_ready_endpoint, decode_patch, issue_certificate_as_cert_manager, patch_adds_sidecar,
    point_webhook_at, service_account_kubeconfig, wait_policy_in_force,
};
use chart_support::{
    CLUSTER_KINDS, STUB_CRDS, apply, chart_arg, cluster_scoped, create_namespace, helm, kubectl,
};
use hookguard_tests::control_plane::{TestNamespace, with_namespace};
use hookguard_tests::wait::eventually_value_blocking;
use serde_json::{Value, json};

/// Named like the chart: the full name is `hookguard`, the operator's defaults.
const RELEASE: &str = "hookguard";

#[tokio::test]
async fn operator_with_the_chart_service_account_reconciles_and_serves_injection() {
    with_namespace("chart-operator", |ns| async move {
        let plane = ns.plane;
        let chart = chart_arg()?;
        let dir = tempfile::tempdir()?;
        apply(plane, STUB_CRDS)?; // cert-manager's kinds, for the second phase
        let app = format!("{}-app", ns.name);
        create_namespace(plane, &app)?;

        // Phase 1: the default chart (self-managed certificates), operator with its token.
        helm(plane, &["install", RELEASE, &chart, "-n", &ns.name])?;
        wait_policy_in_force(&ns, &app).await?;
        let kubeconfig = service_account_kubeconfig(plane, &ns.name, RELEASE, dir.path())?;
        let cert_dir = dir.path().join("webhook-certs");
        let operator = Operator::start(
            &ns,
            &kubeconfig,
            dir.path(),
            &cert_dir,
            "operator-0",
            &chart_args(&ns, RELEASE).await?,
        )?;
        create_ready_endpoint(plane, &app, &operator)?;
        // The chart names the Lease <fullname>-operator.
        let lease_name = format!("{RELEASE}-operator");
        let lease = kubectl(
            plane,
            &[
                "get",
                "lease",
                &lease_name,
                "-n",
                &ns.name,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
        )?;
        ensure!(lease == "operator-0", "the Lease holder: {lease:?}");
        check_self_managed_injection(&ns, &app, &operator, dir.path())?;
        drop(operator);

        // Phase 2: cert-manager mode. The upgrade drops the operator's rights on the webhook
        // configuration and on Secrets of its namespace.
        helm(
            plane,
            &[
                "upgrade",
                RELEASE,
                &chart,
                "-n",
                &ns.name,
                "--set",
                "webhook.certManager.enabled=true",
            ],
        )?;
        let selector = format!("app.kubernetes.io/instance={RELEASE}");
        let cluster = cluster_scoped(plane, CLUSTER_KINDS, &selector)?;
        ensure!(
            !cluster
                .iter()
                .any(|name| name.ends_with("/hookguard-webhook-ca")),
            "{cluster:?}"
        );
        let service_host = format!("{RELEASE}-webhook.{}.svc", ns.name);
        let ca_pem = issue_certificate_as_cert_manager(&cert_dir, &service_host)?;
        let operator = Operator::start(
            &ns,
            &kubeconfig,
            dir.path(),
            &cert_dir,
            "operator-1",
            &chart_args(&ns, RELEASE).await?,
        )?;
        point_webhook_at(&ns, RELEASE, operator.webhook, &ca_pem, &app).await?;
        create_injected_pod(&ns, &app, &operator).await?;
        drop(operator);
        check_refused_while_down(&ns, &app).await
    })
    .await;
}

/// Self-managed certificates: the operator made its certificate Secret, wrote the CA bundle
/// under its own field manager, and answers an `AdmissionReview` under the certificate's name,
/// verified against that CA, with the sidecar.
fn check_self_managed_injection(
    ns: &TestNamespace,
    app: &str,
    operator: &Operator,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let plane = ns.plane;
    let ca = eventually_value_blocking(
        "the operator writes the CA bundle",
        Duration::from_secs(60),
        || {
            let config: Value = serde_json::from_str(&kubectl(
                plane,
                &[
                    "get",
                    "mutatingwebhookconfiguration",
                    RELEASE,
                    "-o",
                    "json",
                    "--show-managed-fields",
                ],
            )?)?;
            let bundle = config["webhooks"][0]["clientConfig"]["caBundle"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let by_operator = config["metadata"]["managedFields"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|entry| entry["manager"] == "hookguard-operator-cabundle");
            Ok((!bundle.is_empty() && by_operator).then_some(bundle))
        },
    )
    .map_err(|err| operator.with_log(err))?;
    let secret_ca = kubectl(
        plane,
        &[
            "get",
            "secret",
            &format!("{RELEASE}-webhook-cert"),
            "-n",
            &ns.name,
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ],
    )?;
    ensure!(secret_ca == ca, "the CA bundle is the Secret's CA");
    let ca_file = dir.join("ca.crt");
    fs::write(
        &ca_file,
        base64::engine::general_purpose::STANDARD.decode(&ca)?,
    )?;

    let service_host = format!("{RELEASE}-webhook.{}.svc", ns.name);
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "11111111-2222-3333-4444-555555555555",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": app,
            "operation": "CREATE",
            "userInfo": {"username": "test"},
            "object": app_pod("direct")?,
            "dryRun": false,
        },
    });
    let answer = eventually_value_blocking(
        "the webhook injects the sidecar",
        Duration::from_secs(60),
        || {
            let out = Command::new("curl")
                .args([
                    "-sS",
                    "--fail",
                    "--resolve",
                    &format!("{service_host}:{}:127.0.0.1", operator.webhook),
                    "--cacert",
                    ca_file.to_str().unwrap_or_default(),
                    "-H",
                    "content-type: application/json",
                    "--data-binary",
                    &review.to_string(),
                    &format!("https://{service_host}:{}/mutate", operator.webhook),
                ])
                .output()?;
            if !out.status.success() {
                return Ok(None);
            }
            let answer: Value = serde_json::from_slice(&out.stdout)?;
            let patch = decode_patch(&answer["response"]["patch"])?;
            Ok(patch_adds_sidecar(&patch).then_some(answer))
        },
    )
    .map_err(|err| operator.with_log(err))?;
    ensure!(answer["response"]["allowed"] == true, "{answer}");
    Ok(())
}
