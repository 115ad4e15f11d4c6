//! Running the real `hookguard-operator` binary against the test control plane as the
//! chart's ServiceAccount: a token from the `TokenRequest` API, the chart Deployment's own
//! arguments, a serving certificate where the test plays cert-manager.
//!
//! The binary comes from [`operator_binary`]: built from the current sources into the target
//! directory this test runs from (wherever `CARGO_TARGET_DIR` put it), or
//! `HOOKGUARD_OPERATOR_BIN`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use base64::Engine as _;
use hookguard_tests::control_plane::{ControlPlane, TestNamespace};
use hookguard_tests::net::free_port;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use hookguard_tests::wait::{eventually_blocking, eventually_value};

use super::{apply, kubectl, success};
use hookguard_tests::injection::dry_run;
pub use hookguard_tests::operator::operator_binary;

/// The endpoint the tests declare.
pub const ENDPOINT: &str = "payments";

/// A running operator process, killed when dropped.
pub struct Operator {
    child: Child,
    log: PathBuf,
    /// The metrics/health port.
    pub metrics: u16,
    /// The webhook port.
    pub webhook: u16,
}

impl Operator {
    /// Starts the binary with the chart Deployment's arguments, its addresses moved to free
    /// loopback ports, `$(POD_*)` filled in, and `cert_dir` for cert-manager's mount.
    pub fn start(
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
        eventually_blocking(
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

    pub fn ensure_running(&self) -> anyhow::Result<()> {
        // `try_wait` needs `&mut`; a process that exited shows up in /proc as gone or zombie.
        let status =
            fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        if status.is_empty() || status.contains(") Z ") {
            bail!("hookguard-operator exited");
        }
        Ok(())
    }

    /// `err` with the tail of the operator's log.
    pub fn with_log(&self, err: anyhow::Error) -> anyhow::Error {
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

/// A kubeconfig with a fresh token of the chart's ServiceAccount (`TokenRequest` API).
pub fn service_account_kubeconfig(
    plane: &ControlPlane,
    namespace: &str,
    account: &str,
    dir: &Path,
) -> anyhow::Result<PathBuf> {
    let token = kubectl(
        plane,
        &["create", "token", account, "-n", namespace, "--duration=1h"],
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
            == format!("system:serviceaccount:{namespace}:{account}"),
        "the token is not the ServiceAccount's: {whoami}"
    );
    Ok(path)
}

pub fn success_json(command: &mut Command) -> anyhow::Result<Value> {
    let out = command.output()?;
    let stdout = success("command", &out)?;
    Ok(serde_json::from_str(&stdout)?)
}

/// The operator container's arguments in the installed Deployment.
pub async fn chart_args(ns: &TestNamespace, deployment: &str) -> anyhow::Result<Vec<String>> {
    let deployment = ns.api::<Deployment>().get(deployment).await?;
    deployment
        .spec
        .and_then(|spec| spec.template.spec)
        .and_then(|pod| pod.containers.into_iter().next())
        .and_then(|container| container.args)
        .context("the Deployment has no operator args")
}

/// A labelled pod serving [`ENDPOINT`].
pub fn app_pod(name: &str) -> anyhow::Result<Pod> {
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
pub fn patch_adds_sidecar(patch: &Value) -> bool {
    patch.as_array().is_some_and(|ops| {
        ops.iter().any(|op| {
            op["path"] == "/spec/initContainers"
                && op["value"].as_array().is_some_and(|containers| {
                    containers.iter().any(|c| c["name"] == "hookguard-sidecar")
                })
        })
    })
}

/// Writes `tls.crt`/`tls.key` for `names` (DNS names or IPs) into `dir`, signed by a new CA;
/// returns the CA's PEM.
pub fn issue_serving_certificate(dir: &Path, names: &[&str]) -> anyhow::Result<String> {
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

/// An `AdmissionReview` patch: base64 of the JSON patch (or the bytes as a number array).
pub fn decode_patch(patch: &Value) -> anyhow::Result<Value> {
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

/// Declares [`ENDPOINT`] in `app` and waits until `operator` has made it Ready, with its
/// Secret and ConfigMap.
pub fn create_ready_endpoint(
    plane: &ControlPlane,
    app: &str,
    operator: &Operator,
) -> anyhow::Result<()> {
    // The chart installs the CRD from its templates, and Helm does not wait for it.
    kubectl(
        plane,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/webhookendpoints.hookguard.dev",
        ],
    )?;
    apply(
        plane,
        &format!(
            "apiVersion: hookguard.dev/v1alpha1\nkind: WebhookEndpoint\n\
             metadata: {{name: {ENDPOINT}, namespace: {app}}}\n\
             spec: {{scheme: Stripe, path: /webhooks/stripe, upstream: {{port: 8080}}, \
             podSelector: {{matchLabels: {{app: payments}}}}}}\n"
        ),
    )?;
    let endpoint = format!("webhookendpoints.hookguard.dev/{ENDPOINT}");
    eventually_blocking("the endpoint is Ready", Duration::from_secs(60), || {
        operator.ensure_running()?;
        let ready = kubectl(
            plane,
            &[
                "get",
                &endpoint,
                "-n",
                app,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        )?;
        Ok(ready == "True")
    })
    .map_err(|err| operator.with_log(err))?;
    kubectl(
        plane,
        &["get", "secret", &format!("{ENDPOINT}-signing"), "-n", app],
    )?;
    kubectl(
        plane,
        &[
            "get",
            "configmap",
            &format!("{ENDPOINT}-sidecar"),
            "-n",
            app,
        ],
    )?;
    Ok(())
}

/// Plays cert-manager for webhook configuration `config`: writes a serving certificate for
/// `service_host` and 127.0.0.1 into `cert_dir` (the operator's `--cert-dir`).
pub fn issue_certificate_as_cert_manager(
    cert_dir: &Path,
    service_host: &str,
) -> anyhow::Result<String> {
    issue_serving_certificate(cert_dir, &[service_host, "127.0.0.1"])
}

/// Injects `ca_pem` into webhook configuration `config` (cert-manager's CA injector's job)
/// and points it at `https://127.0.0.1:<port>` (standing in for the Service, which the API
/// server cannot reach without kube-proxy), then waits until the API server calls it: the API
/// server loads webhook configurations asynchronously, and until then it fails open.
pub async fn point_webhook_at(
    ns: &TestNamespace,
    config: &str,
    port: u16,
    ca_pem: &str,
    app: &str,
) -> anyhow::Result<()> {
    let configs: Api<MutatingWebhookConfiguration> = Api::all(ns.client.clone());
    configs
        .patch(
            config,
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(json!([{
                "op": "replace",
                "path": "/webhooks/0/clientConfig",
                "value": {
                    "url": format!("https://127.0.0.1:{port}/mutate"),
                    "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem),
                },
            }]))?),
        )
        .await?;
    // A pod naming an endpoint that does not exist: only the webhook refuses it that way
    // (before, the call fails open and the policy refuses it for the missing sidecar).
    let mut probe = app_pod("webhook-probe")?;
    probe
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("hookguard.dev/endpoints".into(), "absent-probe".into());
    let started = Instant::now();
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), app);
    eventually_value(
        "the API server calls the webhook",
        Duration::from_secs(60),
        || {
            let (pods, probe) = (pods.clone(), probe.clone());
            async move {
                Ok(match dry_run(&pods, &probe).await {
                    Err(kube::Error::Api(status)) => {
                        status.message.contains("\"absent-probe\"").then_some(())
                    }
                    _ => None,
                })
            }
        },
    )
    .await?;
    eprintln!(
        "the API server called the re-pointed webhook after {:?}",
        started.elapsed()
    );
    Ok(())
}

/// Waits until the API server enforces the chart's admission policy, with the check the
/// chart's README gives users: a labelled pod, created as a server-side dry run while the
/// webhook cannot be reached (it fails open), is refused for the missing sidecar. The API
/// server compiles new policies asynchronously, at most once a second.
pub async fn wait_policy_in_force(ns: &TestNamespace, app: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    eventually_value(
        "the admission policy is in force",
        Duration::from_secs(60),
        || {
            let out = ns.plane.run_kubectl(&[
                "-n",
                app,
                "run",
                "hookguard-check",
                "--image=pause",
                "--labels=hookguard.dev/inject=true",
                "--dry-run=server",
                "-o",
                "jsonpath={.spec.initContainers[*].name}",
            ]);
            async move {
                let out = out?;
                let stderr = String::from_utf8_lossy(&out.stderr);
                if !out.status.success() {
                    ensure!(
                        stderr.contains("has no hookguard-sidecar"),
                        "refused, but not by the policy: {stderr}"
                    );
                    return Ok(Some(()));
                }
                ensure!(
                    out.stdout.is_empty(),
                    "the webhook must not be reachable while the policy is probed: {}",
                    String::from_utf8_lossy(&out.stdout)
                );
                Ok(None)
            }
        },
    )
    .await?;
    let took = started.elapsed();
    eprintln!("the admission policy was in force {took:?} after the chart was installed");
    Ok(took)
}

/// Creates one labelled pod in `app`, once: the webhook is in force ([`point_webhook_at`])
/// and the endpoint Ready, so it must come back injected on this first creation.
pub async fn create_injected_pod(
    ns: &TestNamespace,
    app: &str,
    operator: &Operator,
) -> anyhow::Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), app);
    let pod = pods
        .create(&PostParams::default(), &app_pod("payments-0")?)
        .await
        .map_err(|err| {
            operator
                .with_log(anyhow::Error::new(err).context("the first pod created must be injected"))
        })?;
    let init: Vec<String> = pod
        .spec
        .clone()
        .and_then(|spec| spec.init_containers)
        .unwrap_or_default()
        .into_iter()
        .map(|container| container.name)
        .collect();
    ensure!(init == ["hookguard-sidecar"], "{init:?}");
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    ensure!(
        annotations.contains_key("hookguard.dev/injected"),
        "{annotations:?}"
    );
    Ok(pod)
}

/// With the operator down, the webhook fails open and the admission policy keeps a labelled
/// pod without the sidecar out, saying why.
pub async fn check_refused_while_down(ns: &TestNamespace, app: &str) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), app);
    let refused = pods
        .create(&PostParams::default(), &app_pod("while-down")?)
        .await;
    let Err(kube::Error::Api(status)) = refused else {
        bail!("a labelled pod without the sidecar must be refused: {refused:?}")
    };
    ensure!(
        status.message.contains("has no hookguard-sidecar"),
        "{}",
        status.message
    );
    Ok(())
}
