//! Runs the Hookguard operator against the test control plane: installs the generated CRD,
//! grants a ServiceAccount exactly the rules of `operator/RBAC.md`, starts the operator
//! in-process (scoped to one test namespace) or as the real binary, and materializes an
//! endpoint's ConfigMap and Secret the way the kubelet mounts them.
//!
//! The binary: `CARGO_BIN_EXE_hookguard-operator` exists only for the operator crate's own
//! integration tests, and the harness lives here, so [`operator_binary`] runs
//! `cargo build -p hookguard-operator --bin hookguard-operator` once per test binary (a
//! no-op when it is up to date; `cargo test` has released the build lock by then) and uses
//! `<target dir>/<profile>/hookguard-operator` next to the test executable, so a
//! `CARGO_TARGET_DIR` of the user's is honoured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use hookguard_api::config::{CONFIG_FILE_NAME, EndpointConfig};
use hookguard_api::crd::WebhookEndpoint;
use hookguard_api::names::{sidecar_config_name, signing_secret_name};
use hookguard_operator::config::{LeaderConfig, OperatorConfig};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::control_plane::TestNamespace;
pub use crate::wait::eventually;

/// The generated CRD, as committed.
pub const CRD_YAML: &str = include_str!("../../crds/hookguard.dev_webhookendpoints.yaml");
/// The CRD's name.
pub const CRD_NAME: &str = "webhookendpoints.hookguard.dev";
/// The ServiceAccount the in-process operator acts as.
pub const OPERATOR_ACCOUNT: &str = "hookguard-operator";

/// The reconciler's rules from `operator/RBAC.md`, namespaced form (`--namespace`).
pub fn operator_rules() -> serde_json::Value {
    json!([
        {"apiGroups": ["hookguard.dev"], "resources": ["webhookendpoints"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["hookguard.dev"], "resources": ["webhookendpoints/status"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "create", "patch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "patch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "patch"]},
    ])
}

/// Applies the CRD from `crds/` (idempotent) and waits until it is established.
pub async fn install_crd(client: &Client) -> anyhow::Result<()> {
    let crd: CustomResourceDefinition = serde_yaml::from_str(CRD_YAML)?;
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    crds.patch(
        CRD_NAME,
        &PatchParams::apply("hookguard-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .context("applying the WebhookEndpoint CRD")?;
    eventually("the CRD is established", Duration::from_secs(30), || {
        let crds = crds.clone();
        async move {
            let crd = crds.get(CRD_NAME).await?;
            Ok(crd
                .status
                .and_then(|status| status.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True"))
        }
    })
    .await
}

/// Creates ServiceAccount [`OPERATOR_ACCOUNT`] in the namespace with a Role of exactly
/// [`operator_rules`], and returns a client acting as it once RBAC lets it list endpoints.
pub async fn operator_client(ns: &TestNamespace) -> anyhow::Result<Client> {
    ns.api::<ServiceAccount>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": OPERATOR_ACCOUNT}}))?,
        )
        .await?;
    ns.api::<Role>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": OPERATOR_ACCOUNT}, "rules": operator_rules(),
            }))?,
        )
        .await?;
    ns.api::<RoleBinding>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": OPERATOR_ACCOUNT},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": OPERATOR_ACCOUNT},
                "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_ACCOUNT, "namespace": ns.name}],
            }))?,
        )
        .await?;
    let client = ns.client_as_service_account(OPERATOR_ACCOUNT).await?;
    let endpoints: Api<WebhookEndpoint> = Api::namespaced(client.clone(), &ns.name);
    eventually(
        "RBAC lets the operator list endpoints",
        Duration::from_secs(20),
        || {
            let endpoints = endpoints.clone();
            async move {
                Ok(endpoints
                    .list(&kube::api::ListParams::default())
                    .await
                    .is_ok())
            }
        },
    )
    .await?;
    Ok(client)
}

/// The config of an in-process operator scoped to `namespace`, metrics on a free port.
pub fn config(namespace: &str, identity: &str, leader: Option<Duration>) -> OperatorConfig {
    OperatorConfig {
        namespaces: vec![namespace.to_owned()],
        metrics_listen: ([127, 0, 0, 1], 0).into(),
        leader: leader.map(|lease_duration| LeaderConfig {
            lease_name: "hookguard-operator".to_owned(),
            lease_namespace: namespace.to_owned(),
            lease_duration,
        }),
        identity: identity.to_owned(),
    }
}

/// An operator running in this process; stopped when dropped.
#[derive(Debug)]
pub struct InProcess {
    /// Cancels it.
    pub shutdown: CancellationToken,
    /// The running operator.
    pub running: Option<hookguard_operator::Running>,
}

impl InProcess {
    /// Starts the operator with `config` and `client`.
    pub async fn start(config: OperatorConfig, client: Client) -> anyhow::Result<InProcess> {
        let shutdown = CancellationToken::new();
        let running = hookguard_operator::start(config, client, shutdown.clone()).await?;
        Ok(InProcess {
            shutdown,
            running: Some(running),
        })
    }

    /// Installs the CRD and starts one operator (no leader election) for `ns`, acting as the
    /// ServiceAccount with exactly the operator's rules: what most tests need.
    pub async fn solo(ns: &TestNamespace) -> anyhow::Result<InProcess> {
        install_crd(&ns.client).await?;
        InProcess::start(config(&ns.name, "solo", None), operator_client(ns).await?).await
    }

    /// `http://<metrics address>`.
    pub fn metrics_url(&self) -> String {
        self.running
            .as_ref()
            .map(|running| format!("http://{}", running.metrics_addr))
            .unwrap_or_default()
    }

    /// The metrics text.
    pub fn metrics_text(&self) -> String {
        self.running
            .as_ref()
            .map(|running| running.metrics.encode())
            .unwrap_or_default()
    }

    /// Stops it and waits until it has stopped (the Lease released).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.wait().await;
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A `WebhookEndpoint` named `name` from the YAML of its spec.
pub fn endpoint(name: &str, spec_yaml: &str) -> anyhow::Result<WebhookEndpoint> {
    let yaml = format!(
        "apiVersion: hookguard.dev/v1alpha1\nkind: WebhookEndpoint\nmetadata: {{name: {name}}}\nspec: {spec_yaml}\n"
    );
    Ok(serde_yaml::from_str(&yaml)?)
}

/// The status of condition `type_` (`"True"`, `"False"`), if present.
pub fn condition(endpoint: &WebhookEndpoint, type_: &str) -> Option<(String, String, String)> {
    endpoint
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until endpoint `name` reports `type_` = `status` for its current generation and
/// returns it.
pub async fn wait_condition(
    api: &Api<WebhookEndpoint>,
    name: &str,
    type_: &str,
    status: &str,
    timeout: Duration,
) -> anyhow::Result<WebhookEndpoint> {
    let found = std::sync::Arc::new(std::sync::Mutex::new(None));
    eventually(&format!("{name} has {type_}={status}"), timeout, || {
        let api = api.clone();
        let found = std::sync::Arc::clone(&found);
        async move {
            let endpoint = api.get(name).await?;
            let current = endpoint.status.as_ref().and_then(|s| s.observed_generation)
                == endpoint.metadata.generation;
            let matches = current
                && condition(&endpoint, type_).is_some_and(|(actual, _, _)| actual == status);
            if matches {
                *found
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(endpoint);
            }
            Ok(matches)
        }
    })
    .await?;
    let endpoint = found
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    endpoint.context("no endpoint")
}

/// The generated Secret's keys, as the sidecar would read the files.
pub fn secret_keys(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| (key.clone(), String::from_utf8_lossy(&value.0).into_owned()))
        .collect()
}

/// Writes an endpoint's ConfigMap and keys the way the kubelet mounts them:
/// `<root>/endpoints/<name>/endpoint.json` and `<root>/secrets/<name>/<key>`, with
/// `secretDir` pointed at the latter (in a pod it is `/etc/hookguard/secrets/<name>`).
/// Returns the config as written.
pub fn materialize(
    root: &Path,
    config_map: &ConfigMap,
    keys: &BTreeMap<String, String>,
) -> anyhow::Result<EndpointConfig> {
    let text = config_map
        .data
        .as_ref()
        .and_then(|data| data.get(CONFIG_FILE_NAME))
        .context("the ConfigMap has no endpoint.json")?;
    let mut config: EndpointConfig = serde_json::from_str(text)?;
    let secret_dir = root.join("secrets").join(&config.name);
    if secret_dir.exists() {
        std::fs::remove_dir_all(&secret_dir)?;
    }
    std::fs::create_dir_all(&secret_dir)?;
    for (key, value) in keys {
        std::fs::write(secret_dir.join(key), value)?;
    }
    config.secret_dir = secret_dir.to_string_lossy().into_owned();
    let config_dir = root.join("endpoints").join(&config.name);
    std::fs::create_dir_all(&config_dir)?;
    std::fs::write(
        config_dir.join(CONFIG_FILE_NAME),
        serde_json::to_vec_pretty(&config)?,
    )?;
    Ok(config)
}

/// The endpoint's generated Secret and ConfigMap.
pub async fn children(ns: &TestNamespace, name: &str) -> anyhow::Result<(Secret, ConfigMap)> {
    let secret = ns.api::<Secret>().get(&signing_secret_name(name)).await?;
    let config_map = ns
        .api::<ConfigMap>()
        .get(&sidecar_config_name(name))
        .await?;
    Ok((secret, config_map))
}

/// Builds the operator binary (once per test binary) and returns its path; a binary named
/// by `HOOKGUARD_OPERATOR_BIN` is used as it is.
pub fn operator_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    if let Some(binary) = std::env::var_os("HOOKGUARD_OPERATOR_BIN") {
        return Ok(PathBuf::from(binary));
    }
    BUILT
        .get_or_init(|| {
            crate::cargo::build_binary("hookguard-operator", "hookguard-operator")
                .map_err(|err| format!("{err:#}"))
        })
        .clone()
        .map_err(|err| anyhow::anyhow!(err))
}
