//! Support for the injection tests: the operator's admission webhook run in this process on
//! 127.0.0.1, registered with the shared control plane by URL and scoped to the test's own
//! namespace (the control plane is shared by tests running in parallel), plus the
//! `WebhookEndpoint`, Secret and `ConfigMap` an endpoint's pods mount, made by hand in the exact
//! format the reconciler writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use hookguard_api::config::{CONFIG_FILE_NAME, EndpointConfig};
use hookguard_api::crd::WebhookEndpoint;
use hookguard_api::names::{SIDECAR_SECRET_ROOT, sidecar_config_name, signing_secret_name};
use hookguard_operator::admission::manifests::{self, WebhookClient};
use hookguard_operator::admission::render::{InjectionConfig, SidecarResources};
use hookguard_operator::admission::{AdmissionSettings, serve_on};
use hookguard_operator::certs::{CertMode, CertSettings};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt as _};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::control_plane::{ControlPlane, TestNamespace};

/// The sidecar image the test webhook injects (never pulled: there is no kubelet).
pub const TEST_IMAGE: &str = "hookguard-sidecar:test";

pub use crate::wait::eventually;

/// Applies the `WebhookEndpoint` CRD (idempotent) and waits until it is established.
pub async fn ensure_crd(client: &Client) -> anyhow::Result<()> {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let crd = WebhookEndpoint::crd();
    let name = crd.metadata.name.clone().context("the CRD has no name")?;
    crds.patch(
        &name,
        &PatchParams::apply("hookguard-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .context("applying the WebhookEndpoint CRD")?;
    eventually(
        "the WebhookEndpoint CRD is established",
        Duration::from_secs(30),
        || {
            let crds = crds.clone();
            let name = name.clone();
            async move {
                let crd = crds.get(&name).await?;
                Ok(crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True"))
            }
        },
    )
    .await
}

/// Creates `WebhookEndpoint` `name` (Generic scheme, path `/<name>`, upstream `app_port`) with
/// its signing Secret (`k1` = `secret`) and sidecar `ConfigMap`, and marks it Ready (or not)
/// through the status subresource, as the reconciler would.
pub async fn create_endpoint(
    ns: &TestNamespace,
    name: &str,
    app_port: u16,
    secret: &str,
    pod_selector: Option<serde_json::Value>,
    ready: bool,
) -> anyhow::Result<()> {
    create_endpoint_at(
        ns,
        name,
        &format!("/{name}"),
        app_port,
        secret,
        pod_selector,
        ready,
    )
    .await
}

/// [`create_endpoint`] serving `path`.
pub async fn create_endpoint_at(
    ns: &TestNamespace,
    name: &str,
    path: &str,
    app_port: u16,
    secret: &str,
    pod_selector: Option<serde_json::Value>,
    ready: bool,
) -> anyhow::Result<()> {
    let mut spec = json!({
        "scheme": "Generic", "path": path,
        "upstream": {"port": app_port, "timeout": "2s"},
    });
    if let Some(selector) = pod_selector {
        spec["podSelector"] = selector;
    }
    let endpoints: Api<WebhookEndpoint> = ns.api();
    endpoints
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "hookguard.dev/v1alpha1", "kind": "WebhookEndpoint",
                "metadata": {"name": name}, "spec": spec,
            }))?,
        )
        .await
        .with_context(|| format!("creating WebhookEndpoint {name}"))?;
    let mut config = crate::sidecar::generic_endpoint(name, app_port);
    config.secret_dir = format!("{SIDECAR_SECRET_ROOT}/{name}");
    ns.api::<ConfigMap>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": sidecar_config_name(name)},
                "data": {CONFIG_FILE_NAME: serde_json::to_string(&config)?},
            }))?,
        )
        .await?;
    ns.api::<Secret>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": signing_secret_name(name)},
                "stringData": {"k1": secret},
            }))?,
        )
        .await?;
    let (status, reason) = if ready {
        ("True", "Reconciled")
    } else {
        ("False", "SecretMissing")
    };
    endpoints
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "endpointId": format!("{name}-id"),
                "secretName": signing_secret_name(name),
                "configName": sidecar_config_name(name),
                "conditions": [{
                    "type": "Ready", "status": status, "reason": reason,
                    "message": if ready { "ready" } else { "the signing Secret is missing" },
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }],
            }})),
        )
        .await
        .with_context(|| format!("setting WebhookEndpoint {name}'s status"))?;
    Ok(())
}

/// A pod spec: one app container; `labels` and `annotations` as given.
pub fn pod(
    name: Option<&str>,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) -> anyhow::Result<Pod> {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    let mut metadata = json!({"labels": labels, "annotations": annotations});
    match name {
        Some(name) => metadata["name"] = json!(name),
        None => metadata["generateName"] = json!("web-"),
    }
    Ok(serde_json::from_value(json!({
        "metadata": metadata,
        "spec": {"containers": [{"name": "app", "image": "app:test", "ports": [{"containerPort": 8080}]}]},
    }))?)
}

/// The injected sidecar container of `pod`, if any.
pub fn sidecar_of(pod: &Pod) -> Option<&Container> {
    pod.spec
        .as_ref()?
        .init_containers
        .as_ref()?
        .iter()
        .find(|c| c.name == hookguard_api::names::SIDECAR_CONTAINER)
}

/// Creates `pod` as a server-side dry run: admitted (webhooks and policies run), not stored.
pub async fn dry_run(api: &Api<Pod>, pod: &Pod) -> kube::Result<Pod> {
    api.create(
        &PostParams {
            dry_run: true,
            ..PostParams::default()
        },
        pod,
    )
    .await
}

/// The admission webhook of one test, serving on 127.0.0.1 with its own certificate Secret
/// in its own operator namespace.
pub struct TestWebhook {
    /// `https://127.0.0.1:<port>/mutate`.
    pub url: String,
    /// The `MutatingWebhookConfiguration`'s name.
    pub config_name: String,
    /// The operator namespace (holds the certificate Secret; never injected).
    pub operator_namespace: String,
    /// The certificate Secret's name.
    pub cert_secret: String,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    client: Client,
}

/// How a [`TestWebhook`] is set up.
#[derive(Debug, Clone)]
pub struct TestWebhookOptions {
    /// Serving certificate lifetime.
    pub cert_validity: Duration,
    /// Register the webhook twice (a second pass through the same webhook at admission).
    pub twice: bool,
    /// Namespaces routed to it besides the test's own (the exclusions still apply).
    pub also_namespaces: Vec<String>,
    /// The sidecar's store.
    pub store: String,
    /// A Secret (`name`, `key`) in the pod's namespace with the store's password.
    pub store_password: Option<(String, String)>,
    /// External certificate mode: `tls.crt`/`tls.key` in this folder; the test sets the
    /// caBundle (cert-manager's CA injector's job).
    pub external_cert_dir: Option<PathBuf>,
    /// Another replica: share this operator namespace (and so the certificate Secret) and
    /// register nothing; the first replica's configuration is `config_name`.
    pub replica_of: Option<(String, String)>,
}

impl Default for TestWebhookOptions {
    fn default() -> Self {
        TestWebhookOptions {
            cert_validity: Duration::from_secs(3600),
            twice: false,
            also_namespaces: Vec::new(),
            store: "memory".into(),
            store_password: None,
            external_cert_dir: None,
            replica_of: None,
        }
    }
}

/// The injection settings the tests use.
pub fn injection_config(store: &str) -> InjectionConfig {
    InjectionConfig {
        image: TEST_IMAGE.into(),
        image_pull_policy: "IfNotPresent".into(),
        store: store.into(),
        store_password: None,
        store_cluster: false,
        resources: SidecarResources {
            cpu_request: Some("10m".into()),
            memory_request: Some("16Mi".into()),
            cpu_limit: None,
            memory_limit: Some("64Mi".into()),
        },
    }
}

impl TestWebhook {
    /// Starts the webhook for `ns` and registers it (without caBundle: the webhook writes it).
    /// [`TestWebhook::start_reachable`] also waits until the API server calls it.
    pub async fn start(
        ns: &TestNamespace,
        options: TestWebhookOptions,
    ) -> anyhow::Result<TestWebhook> {
        let plane: &ControlPlane = ns.plane;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!(
            "https://{}{}",
            listener.local_addr()?,
            manifests::WEBHOOK_PATH
        );
        let cert_secret = "hookguard-webhook-cert".to_owned();
        let (operator_namespace, config_name, client) =
            if let Some((namespace, config)) = &options.replica_of {
                (namespace.clone(), config.clone(), plane.client().await?)
            } else {
                let (operator_namespace, client) =
                    plane.create_namespace(&format!("{}-op", ns.name)).await?;
                let config_name = format!("hookguard-{}", ns.name);
                let mut configuration = manifests::mutating_webhook_configuration(
                    &config_name,
                    &operator_namespace,
                    &WebhookClient::Url(url.clone()),
                    None,
                )?;
                scope_to(&mut configuration, &ns.name, &options.also_namespaces)?;
                if options.twice
                    && let Some(webhooks) = configuration.webhooks.as_mut()
                {
                    let mut again = webhooks[0].clone();
                    again.name = "again.inject.hookguard.dev".into();
                    webhooks.push(again);
                }
                Api::<MutatingWebhookConfiguration>::all(client.clone())
                    .create(&PostParams::default(), &configuration)
                    .await
                    .context("registering the webhook")?;
                (operator_namespace, config_name, client)
            };

        let settings = AdmissionSettings {
            watch_namespaces: Vec::new(),
            shutdown_delay: Duration::ZERO,
            webhook_url: None,
            listen: listener.local_addr()?,
            namespace: operator_namespace.clone(),
            certs: CertSettings {
                mode: if options.external_cert_dir.is_some() {
                    CertMode::External
                } else {
                    CertMode::SelfManaged
                },
                dir: options.external_cert_dir.clone().unwrap_or_default(),
                secret: cert_secret.clone(),
                namespace: operator_namespace.clone(),
                dns_names: vec!["127.0.0.1".into()],
                webhook_config: options
                    .external_cert_dir
                    .is_none()
                    .then(|| config_name.clone()),
                validity: options.cert_validity,
                ca_validity: Duration::from_secs(24 * 3600),
            },
            injection: InjectionConfig {
                store_password: options.store_password.clone(),
                store_cluster: false,
                ..injection_config(&options.store)
            },
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let client = client.clone();
            let stop = stop.clone();
            async move {
                if let Err(error) = serve_on(listener, settings, client, stop).await {
                    eprintln!("the test webhook stopped: {error:?}");
                }
            }
        });
        let webhook = TestWebhook {
            url,
            config_name,
            operator_namespace,
            cert_secret,
            stop,
            task: Some(task),
            client,
        };
        Ok(webhook)
    }

    /// [`TestWebhook::start`], then [`TestWebhook::wait_reachable`] for `endpoint`: the usual
    /// start of an injection test.
    pub async fn start_reachable(
        ns: &TestNamespace,
        options: TestWebhookOptions,
        endpoint: &str,
    ) -> anyhow::Result<TestWebhook> {
        let webhook = TestWebhook::start(ns, options).await?;
        webhook.wait_reachable(ns, endpoint).await?;
        Ok(webhook)
    }

    /// Waits until the API server injects a dry-run pod selected by `endpoint` through it.
    pub async fn wait_reachable(&self, ns: &TestNamespace, endpoint: &str) -> anyhow::Result<()> {
        let pods: Api<Pod> = ns.api();
        let probe = pod(
            None,
            &[(hookguard_api::names::LABEL_INJECT, "true")],
            &[(hookguard_api::names::ANNOTATION_ENDPOINTS, endpoint)],
        )?;
        eventually(
            "the API server calls the webhook",
            Duration::from_secs(60),
            || {
                let pods = pods.clone();
                let probe = probe.clone();
                async move { Ok(sidecar_of(&dry_run(&pods, &probe).await?).is_some()) }
            },
        )
        .await
    }

    /// Stops serving (the operator is down) and waits until the port is closed.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// The certificate Secret's `tls.crt`.
    pub async fn serving_cert(&self) -> anyhow::Result<Vec<u8>> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), &self.operator_namespace)
            .get(&self.cert_secret)
            .await?;
        Ok(secret
            .data
            .and_then(|d| d.get("tls.crt").map(|b| b.0.clone()))
            .unwrap_or_default())
    }

    /// Whether a new TLS connection to the webhook verifies with `ca_pem` as the only root,
    /// i.e. whether it now serves a certificate of that CA.
    pub async fn serves_cert_of(&self, ca_pem: &[u8]) -> anyhow::Result<bool> {
        Ok(self.connect(ca_pem).await.is_ok())
    }

    /// POSTs `body` to the webhook `n` times over one kept-alive HTTPS connection, as the API
    /// server does, and returns each round trip's time (TLS handshake excluded).
    pub async fn round_trips(&self, body: &[u8], n: usize) -> anyhow::Result<Vec<Duration>> {
        use http_body_util::{BodyExt as _, Full};
        let secret = Api::<Secret>::namespaced(self.client.clone(), &self.operator_namespace)
            .get(&self.cert_secret)
            .await?;
        let ca = secret
            .data
            .and_then(|d| d.get("ca.crt").map(|b| b.0.clone()))
            .context("no ca.crt")?;
        let stream = self.connect(&ca).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let request = hyper::Request::post(manifests::WEBHOOK_PATH)
                .header("host", "127.0.0.1")
                .header("content-type", "application/json")
                .body(Full::new(bytes::Bytes::copy_from_slice(body)))?;
            let started = std::time::Instant::now();
            let response = sender.send_request(request).await?;
            let answer = response.into_body().collect().await?.to_bytes();
            times.push(started.elapsed());
            anyhow::ensure!(answer.starts_with(b"{"), "not an AdmissionReview answer");
        }
        Ok(times)
    }

    async fn connect(
        &self,
        ca_pem: &[u8],
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let addr = self
            .url
            .trim_start_matches("https://")
            .trim_end_matches(manifests::WEBHOOK_PATH)
            .to_owned();
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile_certs(ca_pem)? {
            roots.add(cert)?;
        }
        let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let stream = tokio::net::TcpStream::connect(&addr).await?;
        stream.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?.to_owned();
        Ok(connector.connect(name, stream).await?)
    }

    /// Removes the webhook configuration (best effort).
    pub async fn unregister(&self) {
        let _ = Api::<MutatingWebhookConfiguration>::all(self.client.clone())
            .delete(&self.config_name, &DeleteParams::default())
            .await;
    }
}

impl std::fmt::Debug for TestWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestWebhook")
            .field("url", &self.url)
            .field("config_name", &self.config_name)
            .finish_non_exhaustive()
    }
}

impl Drop for TestWebhook {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The certificates of a PEM bundle.
fn rustls_pemfile_certs(
    pem: &[u8],
) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject as _;
    Ok(rustls::pki_types::CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>()?)
}

/// Narrows the configuration to `namespace` (and `also`) on top of its own exclusions, so
/// parallel tests on the shared control plane never see each other's webhook.
pub fn scope_to(
    configuration: &mut MutatingWebhookConfiguration,
    namespace: &str,
    also: &[String],
) -> anyhow::Result<()> {
    let mut values = vec![namespace.to_owned()];
    values.extend(also.iter().cloned());
    for webhook in configuration.webhooks.iter_mut().flatten() {
        let selector = webhook
            .namespace_selector
            .get_or_insert_with(Default::default);
        selector
            .match_expressions
            .get_or_insert_with(Vec::new)
            .push(serde_json::from_value(json!({
                "key": "kubernetes.io/metadata.name", "operator": "In", "values": values,
            }))?);
    }
    Ok(())
}

/// Lays out the pod's volumes for `container` under `root` as the kubelet would (every key
/// of a `ConfigMap`, the selected keys of a Secret, each at `<root><mountPath>/<file>`), from
/// the real objects in `ns`.
pub async fn materialize_mounts(
    ns: &TestNamespace,
    pod: &Pod,
    container: &Container,
    root: &Path,
) -> anyhow::Result<()> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for mount in container.volume_mounts.iter().flatten() {
        anyhow::ensure!(
            mount.sub_path.is_none(),
            "subPath mount {}",
            mount.mount_path
        );
        let volume = volumes
            .iter()
            .find(|v| v.name == mount.name)
            .with_context(|| format!("no volume {}", mount.name))?;
        let dir = root.join(mount.mount_path.trim_start_matches('/'));
        std::fs::create_dir_all(&dir)?;
        if let Some(source) = &volume.config_map {
            let config = ns.api::<ConfigMap>().get(&source.name).await?;
            for (key, value) in config.data.unwrap_or_default() {
                std::fs::write(dir.join(key), value)?;
            }
        } else if let Some(source) = &volume.secret {
            let name = source
                .secret_name
                .clone()
                .context("secret volume without name")?;
            let data = ns
                .api::<Secret>()
                .get(&name)
                .await?
                .data
                .unwrap_or_default();
            match &source.items {
                Some(items) => {
                    for item in items {
                        let value = data
                            .get(&item.key)
                            .with_context(|| format!("no key {}", item.key))?;
                        std::fs::write(dir.join(&item.path), &value.0)?;
                    }
                }
                None => {
                    for (key, value) in data {
                        std::fs::write(dir.join(key), value.0)?;
                    }
                }
            }
        } else {
            anyhow::bail!("volume {} is neither a ConfigMap nor a Secret", mount.name);
        }
    }
    Ok(())
}

/// The endpoint files under `root` reference absolute in-pod paths (`secretDir`); the same
/// remapping the mounts got applies to them: `<root><path>`.
pub fn remap_endpoint_files(config_dir: &Path, root: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(config_dir)? {
        let file = entry?.path().join(CONFIG_FILE_NAME);
        let mut config: EndpointConfig = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
        config.secret_dir = root
            .join(config.secret_dir.trim_start_matches('/'))
            .to_string_lossy()
            .into_owned();
        std::fs::write(&file, serde_json::to_string(&config)?)?;
    }
    Ok(())
}

/// Another mutating webhook, as a second admission controller in the cluster would be: it
/// inserts an init container of its own at the front of every pod it sees (so the API server
/// reinvokes Hookguard's webhook, whose sidecar must end up first again).
pub struct OtherWebhook {
    /// `https://127.0.0.1:<port>/other`.
    pub url: String,
    /// Its CA, for the caBundle.
    pub ca_pem: Vec<u8>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for OtherWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtherWebhook")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Name of the init container [`OtherWebhook`] inserts.
pub const OTHER_INIT_CONTAINER: &str = "other-init";

impl OtherWebhook {
    /// Serves on 127.0.0.1 with a CA of its own.
    pub async fn start() -> anyhow::Result<OtherWebhook> {
        use hookguard_operator::certs::{certified_key, issue_ca, issue_serving};
        let now = std::time::SystemTime::now();
        let ca = issue_ca(Duration::from_secs(3600), now)?;
        let serving = issue_serving(
            &ca.cert_pem,
            &ca.key_pem,
            &["127.0.0.1".to_owned()],
            Duration::from_secs(3600),
            now,
        )?;
        let resolver = std::sync::Arc::new(hookguard_operator::certs::CertResolver::default());
        resolver.set(certified_key(&serving.cert_pem, &serving.key_pem)?);
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("https://{}/other", listener.local_addr()?);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        |request: hyper::Request<hyper::body::Incoming>| async move {
                            use http_body_util::BodyExt as _;
                            let body = request.into_body().collect().await?.to_bytes();
                            let answer = other_answer(&body).unwrap_or_default();
                            Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(answer),
                            )))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(OtherWebhook {
            url,
            ca_pem: ca.cert_pem,
            task,
        })
    }

    /// Registers it as `name`, after Hookguard's (the API server orders configurations by
    /// name), for `namespace` only.
    pub async fn register(
        &self,
        client: &Client,
        name: &str,
        namespace: &str,
    ) -> anyhow::Result<()> {
        use base64::Engine as _;
        let configuration: MutatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": name},
            "webhooks": [{
                "name": "other.example.com",
                "clientConfig": {
                    "url": self.url,
                    "caBundle": base64::engine::general_purpose::STANDARD.encode(&self.ca_pem),
                },
                "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                    "resources": ["pods"], "scope": "Namespaced"}],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "failurePolicy": "Fail", "sideEffects": "None", "timeoutSeconds": 5,
                "reinvocationPolicy": "Never", "admissionReviewVersions": ["v1"],
            }],
        }))?;
        Api::<MutatingWebhookConfiguration>::all(client.clone())
            .create(&PostParams::default(), &configuration)
            .await?;
        Ok(())
    }
}

impl Drop for OtherWebhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The other webhook's answer: insert [`OTHER_INIT_CONTAINER`] first, once.
fn other_answer(body: &[u8]) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    let review: serde_json::Value = serde_json::from_slice(body)?;
    let request = &review["request"];
    let init = &request["object"]["spec"]["initContainers"];
    let container = json!({"name": OTHER_INIT_CONTAINER, "image": "other:test"});
    let already = init
        .as_array()
        .is_some_and(|list| list.iter().any(|c| c["name"] == OTHER_INIT_CONTAINER));
    let patch = if already {
        json!([])
    } else if init.is_array() {
        json!([{"op": "add", "path": "/spec/initContainers/0", "value": container}])
    } else {
        json!([{"op": "add", "path": "/spec/initContainers", "value": [container]}])
    };
    Ok(serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {
            "uid": request["uid"], "allowed": true, "patchType": "JSONPatch",
            "patch": base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&patch)?),
        },
    }))?)
}
