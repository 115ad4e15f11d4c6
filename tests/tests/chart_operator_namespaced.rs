//! Namespace-scoped mode, proven with the real binary: the chart with `rbac.namespaced=true`
//! and cert-manager holds no cluster-scoped right at all, and `hookguard-operator`, run with
//! a token of its ServiceAccount and the chart Deployment's arguments, reconciles an endpoint
//! in a watched namespace and, through the API server, injects the sidecar there. Its own
//! test binary (own control plane), so no other operator or webhook interferes.
//!
//! The operator binary is built from the current sources (`chart_support::operator`).

mod chart_support;

use anyhow::ensure;
use chart_support::operator::{
    Operator, chart_args, check_refused_while_down, create_injected_pod, create_ready_endpoint,
    issue_certificate_as_cert_manager, point_webhook_at, service_account_kubeconfig,
    wait_policy_in_force,
};
use chart_support::{
    CLUSTER_KINDS, STUB_CRDS, apply, chart_arg, cluster_scoped, create_namespace, helm,
};
use hookguard_tests::control_plane::with_namespace;

const RELEASE: &str = "hookguard";

#[tokio::test]
async fn namespaced_operator_reconciles_and_injects_with_only_namespaced_rights() {
    with_namespace("chart-operator-ns", |ns| async move {
        let plane = ns.plane;
        let chart = chart_arg()?;
        let dir = tempfile::tempdir()?;
        apply(plane, STUB_CRDS)?;
        let app = format!("{}-app", ns.name);
        create_namespace(plane, &app)?;
        let watch = format!("watchNamespaces={{{app}}}");
        helm(
            plane,
            &[
                "install",
                RELEASE,
                &chart,
                "-n",
                &ns.name,
                "--set",
                "rbac.namespaced=true",
                "--set",
                &watch,
                "--set",
                "webhook.certManager.enabled=true",
            ],
        )?;
        let selector = format!("app.kubernetes.io/instance={RELEASE}");
        let rbac = cluster_scoped(
            plane,
            "clusterroles.rbac.authorization.k8s.io,clusterrolebindings.rbac.authorization.k8s.io",
            &selector,
        )?;
        ensure!(rbac.is_empty(), "no cluster-scoped RBAC: {rbac:?}");
        ensure!(cluster_scoped(plane, CLUSTER_KINDS, &selector)?.len() == 3);
        wait_policy_in_force(&ns, &app).await?;

        let kubeconfig = service_account_kubeconfig(plane, &ns.name, RELEASE, dir.path())?;
        let cert_dir = dir.path().join("webhook-certs");
        let service_host = format!("{RELEASE}-webhook.{}.svc", ns.name);
        let ca_pem = issue_certificate_as_cert_manager(&cert_dir, &service_host)?;
        let operator = Operator::start(
            &ns,
            &kubeconfig,
            dir.path(),
            &cert_dir,
            "operator-0",
            &chart_args(&ns, RELEASE).await?,
        )?;
        point_webhook_at(&ns, RELEASE, operator.webhook, &ca_pem, &app).await?;
        // The race that found the namespaced flake: the pod right after the endpoint is Ready.
        create_ready_endpoint(plane, &app, &operator)?;
        create_injected_pod(&ns, &app, &operator).await?;
        drop(operator);
        check_refused_while_down(&ns, &app).await
    })
    .await;
}
