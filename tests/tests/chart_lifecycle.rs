//! `helm install`, `helm upgrade` with changed values and `helm uninstall` of
//! `charts/hookguard` into the real control plane, with the chart installing the CRD. Its own
//! test binary, so its own control plane: the CRD is cluster-scoped and owned by one release.
//! There is no kubelet, so the operator pods never run: the test checks the objects.

mod chart_support;

use std::time::Duration;

use anyhow::{Context as _, ensure};
use chart_support::{CLUSTER_KINDS, chart_arg, cluster_scoped, helm, kubectl};
use hookguard_tests::control_plane::{TestNamespace, with_namespace};
use hookguard_tests::wait::eventually_blocking;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

/// The release; named like the chart, so the full name is `hookguard`, the operator's
/// defaults (webhook configuration `hookguard`, policy `hookguard-require-sidecar`).
const RELEASE: &str = "hookguard";
/// The caBundle field manager of the operator (operator/ADMISSION.md).
const CA_BUNDLE_MANAGER: &str = "hookguard-operator-cabundle";

#[tokio::test]
async fn install_upgrade_uninstall_leaves_only_the_crd() {
    with_namespace("chart-lifecycle", |ns| async move {
        let plane = ns.plane;
        let chart = chart_arg()?;
        let selector = format!("app.kubernetes.io/instance={RELEASE}");
        let before = cluster_scoped(plane, CLUSTER_KINDS, &selector)?;
        ensure!(before.is_empty(), "leftovers before install: {before:?}");

        helm(plane, &["install", RELEASE, &chart, "-n", &ns.name])?;
        check_installed(&ns, &selector).await?;
        let deployments: Api<Deployment> = ns.api();

        // The operator writes the CA bundle under its own field manager; an upgrade must keep
        // it (no caBundle in the chart, so Helm has no opinion about it).
        let configs: Api<MutatingWebhookConfiguration> = Api::all(ns.client.clone());
        configs
            .patch(
                RELEASE,
                &PatchParams::apply(CA_BUNDLE_MANAGER),
                &Patch::Apply(json!({
                    "apiVersion": "admissionregistration.k8s.io/v1",
                    "kind": "MutatingWebhookConfiguration",
                    "metadata": {"name": RELEASE},
                    "webhooks": [{
                        "name": "inject.hookguard.dev",
                        "clientConfig": {"caBundle": "Y2EtYnVuZGxl"},
                    }],
                })),
            )
            .await
            .context("writing the caBundle as the operator does")?;

        helm(
            plane,
            &[
                "upgrade",
                RELEASE,
                &chart,
                "-n",
                &ns.name,
                "--set",
                "operator.replicas=3",
                "--set",
                "operator.resources.limits.memory=512Mi",
                "--set",
                "webhook.timeoutSeconds=3",
            ],
        )?;
        let upgraded = deployments.get(RELEASE).await?;
        let spec = upgraded.spec.context("no spec")?;
        ensure!(spec.replicas == Some(3), "upgrade to three replicas");
        let limits = spec.template.spec.context("no pod spec")?.containers[0]
            .resources
            .clone()
            .and_then(|resources| resources.limits)
            .unwrap_or_default();
        ensure!(
            limits.get("memory").map(|quantity| quantity.0.as_str()) == Some("512Mi"),
            "{limits:?}"
        );
        let config = configs.get(RELEASE).await?;
        let webhook = &config.webhooks.context("no webhooks")?[0];
        ensure!(webhook.timeout_seconds == Some(3), "upgraded timeout");
        ensure!(
            webhook
                .client_config
                .ca_bundle
                .as_ref()
                .is_some_and(|bundle| bundle.0 == b"ca-bundle"),
            "helm upgrade removed the operator's caBundle"
        );

        check_uninstall(&ns, &selector, &chart).await
    })
    .await;
}

/// The objects of a fresh install with default values: the Deployment's flags and
/// securityContext, the cluster-scoped objects, and the kept CRD.
async fn check_installed(ns: &TestNamespace, selector: &str) -> anyhow::Result<()> {
    let plane = ns.plane;
    let deployments: Api<Deployment> = ns.api();
    let deployment = deployments.get(RELEASE).await?;
    let spec = deployment.spec.clone().context("no spec")?;
    ensure!(spec.replicas == Some(2), "two replicas by default");
    let pod = spec.template.spec.context("no pod spec")?;
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap_or_default();
    for flag in [
        "--leader-election=true",
        "--webhook-config-name=hookguard",
        "--webhook-service=hookguard-webhook",
        "--cert-secret=hookguard-webhook-cert",
    ] {
        ensure!(
            args.iter().any(|arg| arg == flag),
            "{flag} missing from {args:?}"
        );
    }
    let security = container
        .security_context
        .clone()
        .context("no securityContext")?;
    ensure!(security.read_only_root_filesystem == Some(true));
    ensure!(security.allow_privilege_escalation == Some(false));
    ensure!(security.run_as_non_root == Some(true));

    let mut installed = cluster_scoped(plane, CLUSTER_KINDS, selector)?;
    installed.sort();
    ensure!(
        installed
            == [
                "clusterrole.rbac.authorization.k8s.io/hookguard-reconciler",
                "clusterrole.rbac.authorization.k8s.io/hookguard-webhook-ca",
                "clusterrolebinding.rbac.authorization.k8s.io/hookguard-reconciler",
                "clusterrolebinding.rbac.authorization.k8s.io/hookguard-webhook-ca",
                "mutatingwebhookconfiguration.admissionregistration.k8s.io/hookguard",
                "validatingadmissionpolicy.admissionregistration.k8s.io/hookguard-require-sidecar",
                "validatingadmissionpolicybinding.admissionregistration.k8s.io/hookguard-require-sidecar",
            ],
        "{installed:#?}"
    );
    let crd: serde_json::Value = serde_json::from_str(&kubectl(
        plane,
        &["get", "crd", "webhookendpoints.hookguard.dev", "-o", "json"],
    )?)?;
    ensure!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep",
        "{}",
        crd["metadata"]
    );

    Ok(())
}

/// `helm uninstall` leaves no cluster-scoped object but the CRD and no namespaced one; a new
/// install adopts the kept CRD.
async fn check_uninstall(ns: &TestNamespace, selector: &str, chart: &str) -> anyhow::Result<()> {
    let plane = ns.plane;
    let deployments: Api<Deployment> = ns.api();
    helm(plane, &["uninstall", RELEASE, "-n", &ns.name, "--wait"])?;
    let after = cluster_scoped(plane, CLUSTER_KINDS, selector)?;
    ensure!(after.is_empty(), "cluster-scoped leftovers: {after:?}");
    ensure!(
        deployments.get_opt(RELEASE).await?.is_none(),
        "the Deployment is gone"
    );
    let left = kubectl(plane, &["get", "crd", "-l", selector, "-o", "name"])?;
    ensure!(
        left.trim()
            == "customresourcedefinition.apiextensions.k8s.io/webhookendpoints.hookguard.dev",
        "the CRD stays (crds.keep): {left}"
    );
    let namespaced = kubectl(
        plane,
        &[
            "get",
            "all,roles,rolebindings,serviceaccounts,poddisruptionbudgets",
            "-n",
            &ns.name,
            "-l",
            selector,
            "-o",
            "name",
        ],
    )?;
    ensure!(
        namespaced.trim().is_empty(),
        "namespaced leftovers: {namespaced}"
    );

    // Helm's convention: the kept CRD is adopted again by a new install of the release.
    helm(plane, &["install", RELEASE, chart, "-n", &ns.name])?;
    eventually_blocking(
        "the reinstalled release is deployed",
        Duration::from_secs(30),
        || {
            let status: serde_json::Value = serde_json::from_str(&helm(
                plane,
                &["status", RELEASE, "-n", &ns.name, "-o", "json"],
            )?)?;
            Ok(status["info"]["status"] == "deployed")
        },
    )?;
    helm(plane, &["uninstall", RELEASE, "-n", &ns.name, "--wait"])?;
    let after = cluster_scoped(plane, CLUSTER_KINDS, selector)?;
    ensure!(after.is_empty(), "cluster-scoped leftovers: {after:?}");
    Ok(())
}
