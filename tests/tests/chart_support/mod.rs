//! Helpers shared by the chart tests (`tests/tests/chart*.rs`): running `helm` and `kubectl`
//! against the test control plane, and the chart's paths.

#![allow(dead_code)] // each chart test binary uses a different subset

pub mod operator;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, bail};
use hookguard_tests::control_plane::ControlPlane;

/// `charts/hookguard`.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/hookguard")
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The chart folder as a `&str` argument.
pub fn chart_arg() -> anyhow::Result<String> {
    chart_dir()
        .to_str()
        .map(str::to_owned)
        .context("the chart path is not UTF-8")
}

/// A value set under `charts/hookguard/ci/`, as a path argument.
pub fn ci_values(name: &str) -> anyhow::Result<String> {
    let path = chart_dir().join("ci").join(name);
    anyhow::ensure!(path.is_file(), "{} is missing", path.display());
    path.to_str()
        .map(str::to_owned)
        .context("the values path is not UTF-8")
}

/// The value sets under `charts/hookguard/ci/`, sorted.
pub fn all_ci_values() -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(chart_dir().join("ci"))?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            std::path::Path::new(name)
                .extension()
                .is_some_and(|ext| ext == "yaml")
        })
        .collect();
    names.sort();
    names.iter().map(|name| ci_values(name)).collect()
}

/// stdout of a successful command; otherwise an error with both streams.
pub fn success(what: &str, out: &Output) -> anyhow::Result<String> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// stderr of a command that must fail; an error when it succeeded.
pub fn failure(what: &str, out: &Output) -> anyhow::Result<String> {
    if out.status.success() {
        bail!(
            "{what} succeeded but must fail:\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs `command` with `input` on stdin.
pub fn run_with_stdin(mut command: Command, input: &str) -> anyhow::Result<Output> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning")?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    stdin.write_all(input.as_bytes())?;
    drop(stdin);
    Ok(child.wait_with_output()?)
}

/// `helm <args>`, which must succeed; its stdout.
pub fn helm(plane: &ControlPlane, args: &[&str]) -> anyhow::Result<String> {
    success(&format!("helm {}", args.join(" ")), &plane.run_helm(args)?)
}

/// `kubectl <args>`, which must succeed; its stdout.
pub fn kubectl(plane: &ControlPlane, args: &[&str]) -> anyhow::Result<String> {
    success(
        &format!("kubectl {}", args.join(" ")),
        &plane.run_kubectl(args)?,
    )
}

/// `helm template <release> charts/hookguard -n <namespace> <extra>`.
pub fn template(
    plane: &ControlPlane,
    release: &str,
    namespace: &str,
    extra: &[&str],
) -> anyhow::Result<String> {
    let chart = chart_arg()?;
    let mut args = vec!["template", release, &chart, "-n", namespace];
    args.extend_from_slice(extra);
    helm(plane, &args)
}

/// `kubectl apply --dry-run=server --server-side -f -` of `manifest`; its stdout.
pub fn server_dry_run(plane: &ControlPlane, manifest: &str) -> anyhow::Result<String> {
    let mut command = plane.kubectl();
    command.args([
        "apply",
        "--dry-run=server",
        "--server-side",
        "--field-manager=chart-test",
        "-f",
        "-",
    ]);
    success(
        "kubectl apply --dry-run=server --server-side",
        &run_with_stdin(command, manifest)?,
    )
}

/// `kubectl apply --server-side -f -` of `manifest`.
pub fn apply(plane: &ControlPlane, manifest: &str) -> anyhow::Result<String> {
    let mut command = plane.kubectl();
    command.args([
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=chart-test",
        "-f",
        "-",
    ]);
    success(
        "kubectl apply --server-side",
        &run_with_stdin(command, manifest)?,
    )
}

/// Stand-ins for the CRDs of the kinds the chart creates from other projects (cert-manager's
/// `Certificate` and `Issuer`, the Prometheus Operator's `ServiceMonitor`), so the API server can
/// accept those objects. Their schemas accept anything: what is checked here is that the
/// chart's kinds, API versions and scopes are right; the projects validate their own fields.
pub const STUB_CRDS: &str = r"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: certificates.cert-manager.io}
spec:
  group: cert-manager.io
  scope: Namespaced
  names: {plural: certificates, singular: certificate, kind: Certificate, listKind: CertificateList}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: issuers.cert-manager.io}
spec:
  group: cert-manager.io
  scope: Namespaced
  names: {plural: issuers, singular: issuer, kind: Issuer, listKind: IssuerList}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {plural: servicemonitors, singular: servicemonitor, kind: ServiceMonitor, listKind: ServiceMonitorList}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
";

/// Installs [`STUB_CRDS`] and Hookguard's own CRD from `crds/`, and waits until they are
/// served. Idempotent (server-side apply), so tests running in parallel may all call it.
pub fn install_crds(plane: &ControlPlane) -> anyhow::Result<()> {
    let ours =
        std::fs::read_to_string(repo_root().join("crds/hookguard.dev_webhookendpoints.yaml"))?;
    apply(plane, &format!("{STUB_CRDS}\n---\n{ours}"))?;
    kubectl(
        plane,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/certificates.cert-manager.io",
            "crd/issuers.cert-manager.io",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/webhookendpoints.hookguard.dev",
        ],
    )?;
    Ok(())
}

/// Creates namespace `name` (an admin action; fine if it exists).
pub fn create_namespace(plane: &ControlPlane, name: &str) -> anyhow::Result<()> {
    apply(
        plane,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"),
    )
    .map(drop)
}

/// Names (`kind/name`) of the cluster-scoped objects of `kinds` carrying `selector`.
pub fn cluster_scoped(
    plane: &ControlPlane,
    kinds: &str,
    selector: &str,
) -> anyhow::Result<Vec<String>> {
    let out = kubectl(plane, &["get", kinds, "-l", selector, "-o", "name"])?;
    Ok(out.lines().map(str::to_owned).collect())
}

/// The cluster-scoped kinds the chart creates, besides the CRD.
pub const CLUSTER_KINDS: &str = "clusterroles.rbac.authorization.k8s.io,\
clusterrolebindings.rbac.authorization.k8s.io,\
mutatingwebhookconfigurations.admissionregistration.k8s.io,\
validatingadmissionpolicies.admissionregistration.k8s.io,\
validatingadmissionpolicybindings.admissionregistration.k8s.io";
