//! The pure middle of the webhook: which endpoints a pod serves ([`select_endpoints`]), the
//! pod with the sidecar injected ([`render_pod`]) and the JSON patch between the two
//! ([`patch`]). No IO: the handler feeds it the request's pod and a snapshot of the cache.
//!
//! Rendering replaces whatever an earlier pass injected (the sidecar container and the
//! `hg-` volumes) before inserting the fresh ones, so rendering an already injected pod
//! yields the same pod and an empty patch (reinvocation and a second pass change nothing).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hookguard_api::crd::WebhookEndpoint;
use hookguard_api::names::{
    ANNOTATION_CPU_LIMIT, ANNOTATION_CPU_REQUEST, ANNOTATION_ENDPOINTS, ANNOTATION_INJECTED,
    ANNOTATION_MEMORY_LIMIT, ANNOTATION_MEMORY_REQUEST, SIDECAR_ADMIN_PORT,
    SIDECAR_ADMIN_PORT_NAME, SIDECAR_CONFIG_ROOT, SIDECAR_CONTAINER, SIDECAR_PORT,
    SIDECAR_PORT_NAME, SIDECAR_SECRET_ROOT, env, sidecar_config_name,
};
use hookguard_api::validation::{self, PathConflict};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, ObjectFieldSelector, Pod, Probe, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::{Selector, SelectorExt as _};
use sha2::{Digest as _, Sha256};

/// Prefix of every volume the webhook injects; a re-render removes them by it.
const VOLUME_PREFIX: &str = "hg-";
/// The user the sidecar runs as (the distroless `nonroot` user).
const SIDECAR_UID: i64 = 65532;
/// File name of the key mounted from a sender-issued Secret (`spec.secret.secretRef`).
pub const SECRET_REF_FILE: &str = "current";

/// How the operator is configured to inject the sidecar (from its flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectionConfig {
    /// The sidecar image.
    pub image: String,
    /// Its pull policy.
    pub image_pull_policy: String,
    /// The dedup store: `memory` or a `redis://` / `rediss://` URL without password.
    pub store: String,
    /// A Secret (`name`, `key`) in the pod's namespace holding the store's password.
    pub store_password: Option<(String, String)>,
    /// A Redis Cluster (`store` then lists seed nodes, comma-separated).
    pub store_cluster: bool,
    /// Default resources of the sidecar.
    pub resources: SidecarResources,
}

/// The sidecar's resources; `None` leaves that request or limit unset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SidecarResources {
    /// CPU request, e.g. `10m`.
    pub cpu_request: Option<String>,
    /// Memory request, e.g. `16Mi`.
    pub memory_request: Option<String>,
    /// CPU limit.
    pub cpu_limit: Option<String>,
    /// Memory limit, e.g. `64Mi`.
    pub memory_limit: Option<String>,
}

/// What the sidecar needs to know about one selected endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedEndpoint {
    /// The endpoint's name.
    pub name: String,
    /// The Secret holding its signing keys.
    pub secret_name: String,
    /// For a sender-issued Secret: the key to mount as [`SECRET_REF_FILE`].
    pub secret_key: Option<String>,
}

/// Why a pod cannot be injected: the admission is denied with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The annotation names an endpoint the namespace does not have.
    #[error(
        "WebhookEndpoint {name:?} named in annotation {ANNOTATION_ENDPOINTS} does not exist in namespace {namespace:?}: create it, or correct the annotation"
    )]
    EndpointNotFound {
        /// The missing endpoint.
        name: String,
        /// The pod's namespace.
        namespace: String,
    },
    /// A selected endpoint has no Ready condition set to True.
    #[error(
        "WebhookEndpoint {name:?} in namespace {namespace:?} is not Ready ({why}): fix it (kubectl describe webhookendpoint {name} -n {namespace}) and create the pod again once it is Ready"
    )]
    EndpointNotReady {
        /// The endpoint.
        name: String,
        /// The pod's namespace.
        namespace: String,
        /// The Ready condition's message, or what is missing.
        why: String,
    },
    /// The pod opted in but no endpoint applies to it.
    #[error(
        "the pod is labelled for Hookguard injection but no WebhookEndpoint in namespace {namespace:?} selects it: name endpoints in annotation {ANNOTATION_ENDPOINTS}, give an endpoint a matching spec.podSelector, or remove the label"
    )]
    NoEndpoint {
        /// The pod's namespace.
        namespace: String,
    },
    /// Two of the pod's endpoints serve one path: its sidecar could route only one.
    #[error(
        "WebhookEndpoints {:?} and {:?} in namespace {namespace:?} both serve path {}: a pod's sidecar routes a path to one endpoint; name only one of them in annotation {ANNOTATION_ENDPOINTS}, or give each its own spec.path",
        .conflict.first, .conflict.second, .conflict.path
    )]
    PathConflict {
        /// The two endpoints and their path.
        conflict: PathConflict,
        /// The pod's namespace.
        namespace: String,
    },
    /// The endpoints annotation is empty or malformed.
    #[error(
        "annotation {ANNOTATION_ENDPOINTS} {value:?} is not a comma-separated list of WebhookEndpoint names"
    )]
    BadEndpointsAnnotation {
        /// The annotation's value.
        value: String,
    },
    /// A resource annotation is not a Kubernetes quantity.
    #[error("annotation {annotation} {value:?} is not a quantity such as 100m, 64Mi or 1")]
    BadQuantity {
        /// The annotation.
        annotation: &'static str,
        /// Its value.
        value: String,
    },
}

impl RenderError {
    /// Whether this denial follows from the namespace's endpoints (which exist, which are
    /// Ready, which select the pod): a cache can show those late, so the webhook confirms
    /// such a denial with the API server before answering.
    pub fn depends_on_endpoints(&self) -> bool {
        matches!(
            self,
            RenderError::EndpointNotFound { .. }
                | RenderError::EndpointNotReady { .. }
                | RenderError::NoEndpoint { .. }
                | RenderError::PathConflict { .. }
        )
    }

    /// The `reason` label of the skipped-injection metric and the event.
    pub fn reason(&self) -> &'static str {
        match self {
            RenderError::EndpointNotFound { .. } => "EndpointNotFound",
            RenderError::EndpointNotReady { .. } => "EndpointNotReady",
            RenderError::NoEndpoint { .. } => "NoEndpointSelected",
            RenderError::PathConflict { .. } => "PathConflict",
            RenderError::BadEndpointsAnnotation { .. } => "BadEndpointsAnnotation",
            RenderError::BadQuantity { .. } => "BadResourceAnnotation",
        }
    }
}

/// Picks the endpoints `pod` serves among `endpoints` (the namespace's, from the cache): those
/// named in [`ANNOTATION_ENDPOINTS`], else every one whose `podSelector` matches the pod's
/// labels. Each must be Ready. Sorted by name, so the rendering does not depend on cache
/// order.
pub fn select_endpoints(
    pod: &Pod,
    namespace: &str,
    endpoints: &[&WebhookEndpoint],
) -> Result<Vec<SelectedEndpoint>, RenderError> {
    let by_name: BTreeMap<&str, &WebhookEndpoint> = endpoints
        .iter()
        .filter_map(|ep| Some((ep.metadata.name.as_deref()?, *ep)))
        .collect();
    let annotation = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_ENDPOINTS));
    let mut chosen: Vec<&WebhookEndpoint> = if let Some(value) = annotation {
        let names: Vec<&str> = value.split(',').map(str::trim).collect();
        if names.iter().any(|n| !is_dns_subdomain(n)) {
            return Err(RenderError::BadEndpointsAnnotation {
                value: value.clone(),
            });
        }
        let mut chosen = Vec::new();
        for name in names {
            let ep = by_name
                .get(name)
                .ok_or_else(|| RenderError::EndpointNotFound {
                    name: name.to_owned(),
                    namespace: namespace.to_owned(),
                })?;
            chosen.push(*ep);
        }
        chosen
    } else {
        let empty = BTreeMap::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        by_name
            .values()
            .filter(|ep| {
                ep.spec.pod_selector.as_ref().is_some_and(|selector| {
                    // A selector the API server accepted always converts; one that does not
                    // selects nothing rather than everything.
                    Selector::try_from(selector.clone()).is_ok_and(|s| s.matches(labels))
                })
            })
            .copied()
            .collect()
    };
    if chosen.is_empty() {
        return Err(RenderError::NoEndpoint {
            namespace: namespace.to_owned(),
        });
    }
    chosen.sort_by_key(|ep| ep.metadata.name.as_deref());
    chosen.dedup_by_key(|ep| ep.metadata.name.as_deref());
    validation::distinct_paths(chosen.iter().map(|ep| {
        (
            ep.metadata.name.as_deref().unwrap_or_default(),
            ep.spec.path.as_str(),
        )
    }))
    .map_err(|conflict| RenderError::PathConflict {
        conflict,
        namespace: namespace.to_owned(),
    })?;
    let mut selected = Vec::with_capacity(chosen.len());
    for ep in chosen {
        selected.push(selected_endpoint(ep, namespace)?);
    }
    Ok(selected)
}

/// The Ready check and the facts the rendering needs from one endpoint.
fn selected_endpoint(
    ep: &WebhookEndpoint,
    namespace: &str,
) -> Result<SelectedEndpoint, RenderError> {
    let name = ep.metadata.name.clone().unwrap_or_default();
    let not_ready = |why: String| RenderError::EndpointNotReady {
        name: name.clone(),
        namespace: namespace.to_owned(),
        why,
    };
    let status = ep
        .status
        .as_ref()
        .ok_or_else(|| not_ready("the operator has not reported its status yet".into()))?;
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    match ready {
        Some(c) if c.status == "True" => {}
        Some(c) => {
            return Err(not_ready(format!(
                "Ready is {}: {}: {}",
                c.status, c.reason, c.message
            )));
        }
        None => return Err(not_ready("it has no Ready condition yet".into())),
    }
    let secret_name = status
        .secret_name
        .clone()
        .ok_or_else(|| not_ready("its status names no signing Secret".into()))?;
    let secret_key = ep.spec.secret.secret_ref.as_ref().map(|r| r.key.clone());
    Ok(SelectedEndpoint {
        name,
        secret_name,
        secret_key,
    })
}

/// Whether `name` can be a Kubernetes object name (RFC 1123 subdomain).
fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The sidecar's resources: the configured defaults, overridden by the pod's annotations.
fn resources(pod: &Pod, defaults: &SidecarResources) -> Result<ResourceRequirements, RenderError> {
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let pick =
        |annotation: &'static str, default: &Option<String>| match annotations.get(annotation) {
            Some(value) if is_quantity(value) => Ok(Some(value.clone())),
            Some(value) => Err(RenderError::BadQuantity {
                annotation,
                value: value.clone(),
            }),
            None => Ok(default.clone()),
        };
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    for (is_limit, key, annotation, default) in [
        (false, "cpu", ANNOTATION_CPU_REQUEST, &defaults.cpu_request),
        (
            false,
            "memory",
            ANNOTATION_MEMORY_REQUEST,
            &defaults.memory_request,
        ),
        (true, "cpu", ANNOTATION_CPU_LIMIT, &defaults.cpu_limit),
        (
            true,
            "memory",
            ANNOTATION_MEMORY_LIMIT,
            &defaults.memory_limit,
        ),
    ] {
        if let Some(value) = pick(annotation, default)? {
            let map = if is_limit { &mut limits } else { &mut requests };
            map.insert(key.to_owned(), Quantity(value));
        }
    }
    Ok(ResourceRequirements {
        requests: (!requests.is_empty()).then_some(requests),
        limits: (!limits.is_empty()).then_some(limits),
        ..ResourceRequirements::default()
    })
}

/// Whether `value` is a Kubernetes quantity: a decimal number with an optional binary
/// (`Ki`…`Ei`), decimal (`n`, `u`, `m`, `k`, `M`…`E`) or exponent (`e3`) suffix.
pub fn is_quantity(value: &str) -> bool {
    let number_end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(number_end);
    let number = number.strip_prefix(['+', '-']).unwrap_or(number);
    let digits_ok = !number.is_empty()
        && number.matches('.').count() <= 1
        && number.bytes().any(|b| b.is_ascii_digit())
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let suffix_ok = matches!(
        suffix,
        "" | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
            | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
    ) || suffix
        .strip_prefix(['e', 'E'])
        .map(|exp| exp.strip_prefix(['+', '-']).unwrap_or(exp))
        .is_some_and(|exp| !exp.is_empty() && exp.bytes().all(|b| b.is_ascii_digit()));
    digits_ok && suffix_ok
}

/// A volume name (an RFC 1123 label) for `kind` of `endpoint`: readable when it fits, a
/// digest of the endpoint name when the name is too long or has dots.
fn volume_name(kind: &str, endpoint: &str) -> String {
    let readable = format!("{VOLUME_PREFIX}{kind}-{endpoint}");
    if readable.len() <= 63 && !endpoint.contains('.') {
        return readable;
    }
    let digest = Sha256::digest(endpoint.as_bytes());
    let mut short = String::with_capacity(16);
    for byte in &digest[..8] {
        let _ = write!(short, "{byte:02x}");
    }
    format!("{VOLUME_PREFIX}{kind}-{short}")
}

/// The store settings as environment variables; a password comes from its Secret through
/// the environment, never in the URL (which appears in the pod spec).
fn store_env(config: &InjectionConfig) -> Vec<EnvVar> {
    let mut vars = vec![EnvVar {
        name: env::STORE.to_owned(),
        value: Some(config.store.clone()),
        value_from: None,
    }];
    if config.store_cluster && config.store != "memory" {
        vars.push(EnvVar {
            name: env::STORE_MODE.to_owned(),
            value: Some("cluster".to_owned()),
            value_from: None,
        });
    }
    if let Some((secret, key)) = &config.store_password
        && config.store != "memory"
    {
        vars.push(EnvVar {
            name: env::STORE_PASSWORD.to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.clone(),
                    key: key.clone(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
        });
    }
    vars
}

/// An HTTP probe on the sidecar's admin port.
fn admin_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(SIDECAR_ADMIN_PORT_NAME.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// The sidecar container and its volumes for `endpoints`.
#[allow(clippy::too_many_lines)] // one literal container spec; splitting it would scatter it
pub fn build_sidecar(
    endpoints: &[SelectedEndpoint],
    config: &InjectionConfig,
    resources: ResourceRequirements,
) -> (Container, Vec<Volume>) {
    let mut volumes = Vec::with_capacity(endpoints.len() * 2);
    let mut mounts = Vec::with_capacity(endpoints.len() * 2);
    for ep in endpoints {
        let config_volume = volume_name("config", &ep.name);
        let secret_volume = volume_name("secret", &ep.name);
        volumes.push(Volume {
            name: config_volume.clone(),
            config_map: Some(ConfigMapVolumeSource {
                name: sidecar_config_name(&ep.name),
                optional: Some(false),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        volumes.push(Volume {
            name: secret_volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(ep.secret_name.clone()),
                // The sidecar runs as a non-root user with no fsGroup: the files must be
                // world-readable inside the pod.
                default_mode: Some(0o444),
                items: ep.secret_key.as_ref().map(|key| {
                    vec![KeyToPath {
                        key: key.clone(),
                        path: SECRET_REF_FILE.to_owned(),
                        mode: None,
                    }]
                }),
                optional: Some(false),
            }),
            ..Volume::default()
        });
        // Whole-directory mounts, never subPath: the kubelet swaps the `..data` symlink on
        // updates, which the sidecar watches; a subPath mount would never change.
        mounts.push(VolumeMount {
            name: config_volume,
            mount_path: format!("{SIDECAR_CONFIG_ROOT}/{}", ep.name),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        mounts.push(VolumeMount {
            name: secret_volume,
            mount_path: format!("{SIDECAR_SECRET_ROOT}/{}", ep.name),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    let plain = |name: &str, value: String| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    };
    let mut env_vars = vec![
        plain(env::LISTEN, format!("0.0.0.0:{SIDECAR_PORT}")),
        plain(env::ADMIN_LISTEN, format!("0.0.0.0:{SIDECAR_ADMIN_PORT}")),
        plain(env::CONFIG_DIR, SIDECAR_CONFIG_ROOT.to_owned()),
    ];
    env_vars.extend(store_env(config));
    env_vars.push(plain(env::LOG_FORMAT, "json".to_owned()));
    // The sidecar's name in the delivery log and on `/keys`.
    env_vars.push(EnvVar {
        name: env::POD_NAME.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: "metadata.name".to_owned(),
            }),
            ..EnvVarSource::default()
        }),
    });
    let container = Container {
        name: SIDECAR_CONTAINER.to_owned(),
        image: Some(config.image.clone()),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        // A native sidecar: starts before the app, stops after it, never keeps a Job alive.
        restart_policy: Some("Always".to_owned()),
        env: Some(env_vars),
        ports: Some(vec![
            ContainerPort {
                name: Some(SIDECAR_PORT_NAME.to_owned()),
                container_port: i32::from(SIDECAR_PORT),
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some(SIDECAR_ADMIN_PORT_NAME.to_owned()),
                container_port: i32::from(SIDECAR_ADMIN_PORT),
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
        ]),
        // The app container starts once the sidecar has started: its config and keys are
        // loaded before the admin port is bound, so /healthz answering says exactly that.
        // Readiness also needs the store; gating start-up on it would hold every rollout of
        // every injected app hostage to a Redis outage.
        startup_probe: Some(admin_probe("/healthz", 1, 30)),
        readiness_probe: Some(admin_probe("/readyz", 5, 3)),
        liveness_probe: Some(admin_probe("/healthz", 10, 3)),
        resources: Some(resources),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(SIDECAR_UID),
            run_as_group: Some(SIDECAR_UID),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };
    (container, volumes)
}

/// The digest recorded in [`ANNOTATION_INJECTED`]: what was injected, so an operator can see
/// at a glance whether two pods got the same sidecar.
fn digest(container: &Container, volumes: &[Volume]) -> String {
    let mut hasher = Sha256::new();
    // Serializing k8s-openapi types cannot fail (no non-string map keys); an empty hash
    // input would only make the annotation less informative.
    hasher.update(serde_json::to_vec(container).unwrap_or_default());
    hasher.update(serde_json::to_vec(volumes).unwrap_or_default());
    // The whole digest, so the label is true: `sha256:` and 64 hex digits.
    let mut text = String::from("sha256:");
    for byte in hasher.finalize() {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// `pod` with the sidecar for `endpoints` injected; any earlier injection is replaced, so
/// rendering a rendered pod returns it unchanged.
pub fn render_pod(
    pod: &Pod,
    endpoints: &[SelectedEndpoint],
    config: &InjectionConfig,
) -> Result<Pod, RenderError> {
    let resources = resources(pod, &config.resources)?;
    let (sidecar, new_volumes) = build_sidecar(endpoints, config, resources);
    let digest = digest(&sidecar, &new_volumes);
    if already_injected(pod, &digest, &new_volumes) {
        // The API server defaults what a webhook adds (probe scheme, terminationMessagePath,
        // volume modes…) before a reinvocation or a second webhook sees it; re-rendering would
        // strip those defaults, so an injection recorded with the same digest is kept as is.
        return Ok(pod.clone());
    }
    let mut desired = pod.clone();
    desired
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ANNOTATION_INJECTED.to_owned(), digest);
    let spec = desired.spec.get_or_insert_with(Default::default);
    let mut init = spec.init_containers.take().unwrap_or_default();
    init.retain(|c| c.name != SIDECAR_CONTAINER);
    init.insert(0, sidecar);
    spec.init_containers = Some(init);
    let mut volumes = spec.volumes.take().unwrap_or_default();
    volumes.retain(|v| !v.name.starts_with(VOLUME_PREFIX));
    volumes.extend(new_volumes);
    spec.volumes = Some(volumes);
    Ok(desired)
}

/// Whether `pod` already carries this exact injection: the recorded digest, the sidecar
/// first among the init containers, and every volume.
fn already_injected(pod: &Pod, digest: &str, volumes: &[Volume]) -> bool {
    let recorded = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_INJECTED));
    let Some(spec) = &pod.spec else {
        return false;
    };
    let sidecar_first = spec
        .init_containers
        .as_ref()
        .and_then(|c| c.first())
        .is_some_and(|c| c.name == SIDECAR_CONTAINER);
    let present = spec.volumes.as_deref().unwrap_or_default();
    recorded.is_some_and(|r| r == digest)
        && sidecar_first
        && volumes
            .iter()
            .all(|v| present.iter().any(|p| p.name == v.name))
}

/// Softer problems worth a warning on an admitted pod.
pub fn warnings(pod: &Pod) -> Vec<String> {
    let mut warnings = Vec::new();
    let Some(spec) = &pod.spec else {
        return warnings;
    };
    for container in &spec.containers {
        if container.name == SIDECAR_CONTAINER {
            warnings.push(format!(
                "container {SIDECAR_CONTAINER:?} is reserved for the Hookguard sidecar (an init container); rename the app container"
            ));
        }
        for port in container.ports.iter().flatten() {
            let number = port.container_port;
            if number == i32::from(SIDECAR_PORT) || number == i32::from(SIDECAR_ADMIN_PORT) {
                warnings.push(format!(
                    "container {:?} uses port {number}, which the Hookguard sidecar listens on; the pod will fail to start",
                    container.name
                ));
            }
        }
    }
    warnings
}

/// The JSON patch turning `original` into `desired`; empty when they are the same.
pub fn patch(original: &Pod, desired: &Pod) -> Result<json_patch::Patch, serde_json::Error> {
    let original = serde_json::to_value(original)?;
    let desired = serde_json::to_value(desired)?;
    Ok(json_patch::diff(&original, &desired))
}

#[cfg(test)]
mod tests;
