//! Proof that the chart's RBAC is enough: the real `hookguard-operator` binary, run outside
//! the cluster with a token of the chart's ServiceAccount (TokenRequest API, not the admin),
//! started with exactly the arguments of the chart's Deployment, reconciles an endpoint to
//! Ready and serves injection, first with self-managed certificates (it creates its
//! certificate Secret and writes the CA bundle), then after `helm upgrade` to cert-manager
//! mode (the test plays cert-manager), where the API server itself calls it for a new pod.
//!
//! Needs `target/debug/hookguard-operator` (or `HOOKGUARD_OPERATOR_BIN`) built from the
//! current sources: `cargo build -p hookguard-operator` first (`make test` does). A test
//! cannot build it itself: the outer `cargo test` holds the build lock.
//!
//! No kubelet and no Service routing here: the API server cannot reach the webhook Service's
//! cluster IP, so the self-managed phase calls the webhook directly (with the certificate's
//! DNS name, verified against the CA the operator wrote), and the cert-manager phase points
//! the webhook configuration at `https://127.0.0.1:<port>` (an admin change standing in for
//! the Service; the operator never touches `clientConfig` but for the CA bundle).

mod chart_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail, ensure};
use base64::Engine as _;
use chart_support::{
    CLUSTER_KINDS, STUB_CRDS, apply, chart_arg, cluster_scoped, create_namespace, eventually, helm,
    kubectl, repo_root,
};
use hookguard_tests::control_plane::{ControlPlane, TestNamespace, with_namespace};
use hookguard_tests::net::free_port;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const RELEASE: &str = "hookguard";
const ENDPOINT: &str = "payments";

/// The operator binary, checked to be newer than the operator's sources.
fn operator_binary() -> anyhow::Result<PathBuf> {
    let binary = std::env::var_os("HOOKGUARD_OPERATOR_BIN").map_or_else(
        || repo_root().join("target/debug/hookguard-operator"),
        PathBuf::from,
    );
    ensure!(
        binary.is_file(),
        "{} is missing: run `cargo build -p hookguard-operator` before this test",
        binary.display()
    );
    let built = fs::metadata(&binary)?.modified()?;
    let newest = newest_source(&repo_root().join("operator"))?;
    ensure!(
        built >= newest,
        "{} is older than the operator's sources: run `cargo build -p hookguard-operator`",
        binary.display()
    );
    Ok(binary)
}

/// The newest modification time of a `.rs` file under `dir`.
fn newest_source(dir: &Path) -> anyhow::Result<SystemTime> {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            newest = newest.max(newest_source(&path)?);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            newest = newest.max(fs::metadata(&path)?.modified()?);
        }
    }
    Ok(newest)
}

/// A running operator process, killed when dropped.
struct Operator {
    child: Child,
    log: PathBuf,
    metrics: u16,
    webhook: u16,
}

impl Operator {
    /// Starts the binary with the chart Deployment's arguments, its addresses moved to free
    /// loopback ports, `$(POD_*)` filled in, and `cert_dir` for cert-manager's mount.
    fn start(
        ns: &TestNamespace,
        kubeconfig: &Path,
        dir: &Path,
        cert_dir: &Path,
        name: &str,
        chart_args: &[String],
    ) -> anyhow::Result<Self> {
        let metrics = free_port()?;
        let webhook = free_port()?;
        let args: Vec<String> = chart_args
            .iter()
            .map(|arg| {
                arg.replace("$(POD_NAMESPACE)", &ns.name)
                    .replace("$(POD_NAME)", name)
                    .replace("0.0.0.0:8080", &format!("127.0.0.1:{metrics}"))
                    .replace("0.0.0.0:9443", &format!("127.0.0.1:{webhook}"))
                    .replace(
                        "/etc/hookguard/webhook-certs",
                        cert_dir.to_str().unwrap_or_default(),
                    )
            })
            .collect();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(operator_binary()?)
            .args(&args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", &ns.name)
            .env("POD_NAME", name)
            .stdout(Stdio::from(fs::File::create(&log)?))
            .stderr(Stdio::from(fs::File::create(
                dir.join(format!("{name}.err")),
            )?))
            .spawn()
            .context("starting hookguard-operator")?;
        let operator = Self {
            child,
            log,
            metrics,
            webhook,
        };
        eventually(
            "the operator answers /healthz",
            Duration::from_secs(30),
            || {
                operator.ensure_running()?;
                let out = Command::new("curl")
                    .args(["-sf", &format!("http://127.0.0.1:{metrics}/healthz")])
                    .output()?;
                Ok(out.status.success())
            },
        )
        .map_err(|err| operator.with_log(err))?;
        Ok(operator)
    }

    fn ensure_running(&self) -> anyhow::Result<()> {
        // `try_wait` needs `&mut`; a process that exited shows up in /proc as gone or zombie.
        let status =
            fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        if status.is_empty() || status.contains(") Z ") {
            bail!("hookguard-operator exited");
        }
        Ok(())
    }

    /// `err` with the tail of the operator's log.
    fn with_log(&self, err: anyhow::Error) -> anyhow::Error {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let err_log = fs::read_to_string(self.log.with_extension("err")).unwrap_or_default();
        let tail = |text: &str| {
            text.lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        };
        err.context(format!("operator log:\n{}\n{}", tail(&log), tail(&err_log)))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A kubeconfig with a fresh token of the chart's ServiceAccount (TokenRequest API).
fn service_account_kubeconfig(
    plane: &ControlPlane,
    namespace: &str,
    dir: &Path,
) -> anyhow::Result<PathBuf> {
    let token = kubectl(
        plane,
        &["create", "token", RELEASE, "-n", namespace, "--duration=1h"],
    )?;
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": plane.server(),
            "certificate-authority": plane.pki().ca_cert,
        }}],
        "users": [{"name": "operator", "user": {"token": token.trim()}}],
        "contexts": [{"name": "test", "context": {
            "cluster": "test", "user": "operator", "namespace": namespace,
        }}],
        "current-context": "test",
    });
    let path = dir.join("operator.kubeconfig");
    fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    let whoami = success_json(
        plane
            .kubectl()
            .env("KUBECONFIG", &path)
            .args(["auth", "whoami", "-o", "json"]),
    )?;
    ensure!(
        whoami["status"]["userInfo"]["username"]
            == format!("system:serviceaccount:{namespace}:{RELEASE}"),
        "the token is not the ServiceAccount's: {whoami}"
    );
    Ok(path)
}

fn success_json(command: &mut Command) -> anyhow::Result<Value> {
    let out = command.output()?;
    let stdout = chart_support::success("command", &out)?;
    Ok(serde_json::from_str(&stdout)?)
}

/// The operator container's arguments in the installed Deployment.
async fn chart_args(ns: &TestNamespace) -> anyhow::Result<Vec<String>> {
    let deployment = ns.api::<Deployment>().get(RELEASE).await?;
    deployment
        .spec
        .and_then(|spec| spec.template.spec)
        .and_then(|pod| pod.containers.into_iter().next())
        .and_then(|container| container.args)
        .context("the Deployment has no operator args")
}

/// A labelled pod serving [`ENDPOINT`].
fn app_pod(name: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "payments", "hookguard.dev/inject": "true"},
            "annotations": {"hookguard.dev/endpoints": ENDPOINT},
        },
        "spec": {"containers": [{"name": "app", "image": "payments:1", "ports": [{"containerPort": 8080}]}]},
    }))?)
}

/// Whether a JSON patch from the webhook adds the sidecar init container.
fn patch_adds_sidecar(patch: &Value) -> bool {
    patch.as_array().is_some_and(|ops| {
        ops.iter().any(|op| {
            op["path"] == "/spec/initContainers"
                && op["value"].as_array().is_some_and(|containers| {
                    containers.iter().any(|c| c["name"] == "hookguard-sidecar")
                })
        })
    })
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one story, phase by phase
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
        let kubeconfig = service_account_kubeconfig(plane, &ns.name, dir.path())?;
        let cert_dir = dir.path().join("webhook-certs");
        let operator = Operator::start(&ns, &kubeconfig, dir.path(), &cert_dir, "operator-0", &chart_args(&ns).await?)?;

        let endpoints = format!("webhookendpoints.hookguard.dev/{ENDPOINT}");
        apply(
            plane,
            &format!(
                "apiVersion: hookguard.dev/v1alpha1\nkind: WebhookEndpoint\nmetadata: {{name: {ENDPOINT}, namespace: {app}}}\n\
                 spec: {{scheme: Stripe, path: /webhooks/stripe, upstream: {{port: 8080}}, podSelector: {{matchLabels: {{app: payments}}}}}}\n"
            ),
        )?;
        eventually("the endpoint is Ready", Duration::from_secs(60), || {
            operator.ensure_running()?;
            let ready = kubectl(
                plane,
                &["get", &endpoints, "-n", &app, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"],
            )?;
            Ok(ready == "True")
        })
        .map_err(|err| operator.with_log(err))?;
        kubectl(plane, &["get", "secret", &format!("{ENDPOINT}-signing"), "-n", &app])?;
        kubectl(plane, &["get", "configmap", &format!("{ENDPOINT}-sidecar"), "-n", &app])?;
        let lease = kubectl(plane, &["get", "lease", RELEASE, "-n", &ns.name, "-o", "jsonpath={.spec.holderIdentity}"])?;
        ensure!(lease == "operator-0", "the Lease holder: {lease:?}");

        // It made its certificate Secret and wrote the CA bundle under its own field manager.
        let cert_secret = format!("{RELEASE}-webhook-cert");
        let ca = eventually_value(
            "the operator writes the CA bundle",
            || {
                let config: Value = serde_json::from_str(&kubectl(plane, &["get", "mutatingwebhookconfiguration", RELEASE, "-o", "json", "--show-managed-fields"])?)?;
                let bundle = config["webhooks"][0]["clientConfig"]["caBundle"].as_str().unwrap_or_default().to_owned();
                let managers: Vec<String> = config["metadata"]["managedFields"].as_array().into_iter().flatten()
                    .filter_map(|entry| entry["manager"].as_str().map(str::to_owned)).collect();
                Ok((!bundle.is_empty() && managers.iter().any(|m| m == "hookguard-operator-cabundle")).then_some(bundle))
            },
        )
        .map_err(|err| operator.with_log(err))?;
        let secret_ca = kubectl(plane, &["get", "secret", &cert_secret, "-n", &ns.name, "-o", "jsonpath={.data.ca\\.crt}"])?;
        ensure!(secret_ca == ca, "the CA bundle is the Secret's CA");
        let ca_file = dir.path().join("ca.crt");
        fs::write(&ca_file, base64::engine::general_purpose::STANDARD.decode(&ca)?)?;

        // It serves injection, under the certificate's name, verified against that CA.
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
        let answer = eventually_value("the webhook injects the sidecar", || {
            let out = Command::new("curl")
                .args([
                    "-sS", "--fail",
                    "--resolve", &format!("{service_host}:{}:127.0.0.1", operator.webhook),
                    "--cacert", ca_file.to_str().unwrap_or_default(),
                    "-H", "content-type: application/json",
                    "--data-binary", &review.to_string(),
                    &format!("https://{service_host}:{}/mutate", operator.webhook),
                ])
                .output()?;
            if !out.status.success() {
                return Ok(None);
            }
            let answer: Value = serde_json::from_slice(&out.stdout)?;
            let patch = decode_patch(&answer["response"]["patch"])?;
            Ok(patch_adds_sidecar(&patch).then_some(answer))
        })
        .map_err(|err| operator.with_log(err))?;
        ensure!(answer["response"]["allowed"] == true, "{answer}");
        drop(operator);

        // Phase 2: cert-manager mode. The upgrade drops the operator's rights on the webhook
        // configuration and on Secrets of its namespace.
        helm(plane, &["upgrade", RELEASE, &chart, "-n", &ns.name, "--set", "webhook.certManager.enabled=true"])?;
        let selector = format!("app.kubernetes.io/instance={RELEASE}");
        let cluster = cluster_scoped(plane, CLUSTER_KINDS, &selector)?;
        ensure!(!cluster.iter().any(|name| name.ends_with("/hookguard-webhook-ca")), "{cluster:?}");

        // The test plays cert-manager: a serving certificate in the mounted folder (also valid
        // for 127.0.0.1, where the API server reaches the operator here) and the CA injected.
        let ca_pem = issue_serving_certificate(&cert_dir, &[&service_host, "127.0.0.1"])?;
        let operator = Operator::start(&ns, &kubeconfig, dir.path(), &cert_dir, "operator-1", &chart_args(&ns).await?)?;
        let configs: Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> =
            Api::all(ns.client.clone());
        configs
            .patch(
                RELEASE,
                &PatchParams::default(),
                &Patch::Json::<()>(serde_json::from_value(json!([{
                    "op": "replace",
                    "path": "/webhooks/0/clientConfig",
                    "value": {
                        "url": format!("https://127.0.0.1:{}/mutate", operator.webhook),
                        "caBundle": base64::engine::general_purpose::STANDARD.encode(&ca_pem),
                    },
                }]))?),
            )
            .await?;

        // The API server calls the operator for a new labelled pod; the policy lets it in.
        let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &app);
        let mut attempt = 0;
        let pod = eventually_value_async("the API server injects the sidecar", || {
            attempt += 1;
            let pods = pods.clone();
            let name = format!("payments-{attempt}");
            async move {
                match pods.create(&PostParams::default(), &app_pod(&name)?).await {
                    Ok(pod) => Ok(Some(pod)),
                    // The policy refuses the pod until the webhook answers (fail closed).
                    Err(kube::Error::Api(status)) if status.message.contains("hookguard-sidecar") => Ok(None),
                    Err(err) => Err(err.into()),
                }
            }
        })
        .await
        .map_err(|err| operator.with_log(err))?;
        let init: Vec<String> = pod.spec.and_then(|spec| spec.init_containers).unwrap_or_default()
            .into_iter().map(|container| container.name).collect();
        ensure!(init == ["hookguard-sidecar"], "{init:?}");
        let annotations = pod.metadata.annotations.unwrap_or_default();
        ensure!(annotations.contains_key("hookguard.dev/injected"), "{annotations:?}");

        // With the operator down, the webhook fails open and the policy keeps opted-in pods out.
        drop(operator);
        let refused = pods
            .create(&PostParams::default(), &app_pod("while-down")?)
            .await
            .expect_err("a labelled pod without the sidecar must be refused");
        let kube::Error::Api(status) = refused else { bail!("unexpected error: {refused}") };
        ensure!(status.message.contains("has no hookguard-sidecar"), "{}", status.message);
        Ok(())
    })
    .await;
}

/// Writes `tls.crt`/`tls.key` for `names` (DNS names or IPs) into `dir`, signed by a new CA;
/// returns the CA's PEM.
fn issue_serving_certificate(dir: &Path, names: &[&str]) -> anyhow::Result<String> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test cert-manager CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let mut serving = CertificateParams::new(
        names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>(),
    )?;
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = serving.signed_by(&key, &ca)?;
    fs::create_dir_all(dir)?;
    fs::write(dir.join("tls.crt"), cert.pem())?;
    fs::write(dir.join("tls.key"), key.serialize_pem())?;
    fs::write(dir.join("ca.crt"), ca.pem())?;
    Ok(ca.pem())
}

/// An AdmissionReview patch: base64 of the JSON patch (or the bytes as a number array).
fn decode_patch(patch: &Value) -> anyhow::Result<Value> {
    let bytes = match patch {
        Value::String(text) => base64::engine::general_purpose::STANDARD.decode(text)?,
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_u64()
                    .and_then(|byte| u8::try_from(byte).ok())
                    .context("not a byte")
            })
            .collect::<anyhow::Result<Vec<u8>>>()?,
        Value::Null => return Ok(Value::Null),
        other => bail!("unexpected patch {other}"),
    };
    Ok(serde_json::from_slice(&bytes)?)
}

/// Polls `check` for 60 s until it returns a value.
fn eventually_value<T>(
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let mut found = None;
    eventually(what, Duration::from_secs(60), || {
        found = check()?;
        Ok(found.is_some())
    })?;
    found.context(what.to_owned())
}

/// [`eventually_value`] for an async check.
async fn eventually_value_async<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after 60s waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
