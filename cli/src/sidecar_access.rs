//! Reaching a sidecar's admin API ([`hookguard_api::admin`], `/queue`), which it serves to
//! loopback clients only.
//!
//! In a cluster the CLI opens a port-forward to the pod's admin port through the API server
//! (what `kubectl port-forward` does; RBAC: `create` on `pods/portforward`), so the request
//! arrives on the pod's loopback. For a sidecar run as a process (development, tests),
//! `--sidecar http://127.0.0.1:9881` names it directly.

use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};

use hookguard_api::names::{SIDECAR_ADMIN_PORT, SIDECAR_CONFIG_SUFFIX, SIDECAR_CONTAINER};

/// How long one admin request may take, port-forward included.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// One sidecar to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A sidecar's admin base URL, e.g. `http://127.0.0.1:9881`.
    Url(String),
    /// An injected pod, reached by port-forward.
    Pod {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Url(url) => f.write_str(url),
            Target::Pod { namespace, name } => write!(f, "pod/{name} -n {namespace}"),
        }
    }
}

/// An admin answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON of `T`, when the status is 2xx; else an error with the body's text.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> anyhow::Result<T> {
        if !(200..300).contains(&self.status) {
            bail!(
                "{what}: the sidecar answered {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body).trim()
            );
        }
        serde_json::from_slice(&self.body).with_context(|| format!("{what}: unexpected answer"))
    }
}

/// Sends `method path_and_query` (e.g. `GET /keys`) to `target`'s admin port.
pub async fn request(
    client: Option<&Client>,
    target: &Target,
    method: http::Method,
    path_and_query: &str,
) -> anyhow::Result<Answer> {
    tokio::time::timeout(ADMIN_TIMEOUT, send(client, target, method, path_and_query))
        .await
        .with_context(|| format!("{target}: no answer within {ADMIN_TIMEOUT:?}"))?
        .with_context(|| format!("asking {target} for {path_and_query}"))
}

/// `GET path_and_query` on `target`.
pub async fn get(
    client: Option<&Client>,
    target: &Target,
    path_and_query: &str,
) -> anyhow::Result<Answer> {
    request(client, target, http::Method::GET, path_and_query).await
}

async fn send(
    client: Option<&Client>,
    target: &Target,
    method: http::Method,
    path_and_query: &str,
) -> anyhow::Result<Answer> {
    let request = |authority: &str| {
        http::Request::builder()
            .method(method.clone())
            .uri(path_and_query)
            .header(http::header::HOST, authority)
            .body(Full::new(Bytes::new()))
            .context("building the admin request")
    };
    let (status, body) = match target {
        Target::Url(base) => {
            let uri: http::Uri = format!("{}{path_and_query}", base.trim_end_matches('/'))
                .parse()
                .with_context(|| format!("--sidecar {base} is not a URL"))?;
            let authority = uri
                .authority()
                .with_context(|| format!("--sidecar {base} has no host:port"))?
                .to_string();
            let stream = tokio::net::TcpStream::connect(&authority)
                .await
                .with_context(|| format!("connecting to {authority}"))?;
            exchange(TokioIo::new(stream), request(&authority)?).await?
        }
        Target::Pod { namespace, name } => {
            let client = client.context("a pod target needs a cluster client")?;
            let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
            let mut forward = pods
                .portforward(name, &[SIDECAR_ADMIN_PORT])
                .await
                .context("opening a port-forward (needs create on pods/portforward)")?;
            let stream = forward
                .take_stream(SIDECAR_ADMIN_PORT)
                .context("the port-forward has no stream")?;
            let answer = exchange(TokioIo::new(stream), request("localhost")?).await;
            forward.abort();
            answer?
        }
    };
    Ok(Answer { status, body })
}

async fn exchange<I>(io: I, request: http::Request<Full<Bytes>>) -> anyhow::Result<(u16, Bytes)>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .context("HTTP handshake")?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.context("sending")?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .context("reading the answer")?
        .to_bytes();
    driver.abort();
    Ok((status, body))
}

/// The sidecars serving `endpoint` in `namespace`: `explicit` (`--sidecar URL`s) when given,
/// else every running pod with a `hookguard-sidecar` container whose endpoint list names it.
pub async fn endpoint_targets(
    client: &Client,
    namespace: &str,
    endpoint: &str,
    explicit: &[String],
) -> anyhow::Result<Vec<Target>> {
    if !explicit.is_empty() {
        return Ok(explicit.iter().cloned().map(Target::Url).collect());
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing pods in {namespace}"))?;
    Ok(list
        .items
        .iter()
        .filter(|pod| serves(pod, endpoint))
        .filter_map(|pod| {
            Some(Target::Pod {
                namespace: namespace.to_owned(),
                name: pod.metadata.name.clone()?,
            })
        })
        .collect())
}

/// Whether `pod` is running a Hookguard sidecar that serves `endpoint`: it has the
/// `hookguard-sidecar` container and mounts the endpoint's sidecar ConfigMap (the webhook
/// mounts one per endpoint it injected).
pub fn serves(pod: &Pod, endpoint: &str) -> bool {
    let running = pod
        .status
        .as_ref()
        .and_then(|status| status.phase.as_deref())
        == Some("Running");
    running && injected_endpoints(pod).iter().any(|name| name == endpoint)
}

/// The endpoints the webhook injected into `pod` (empty when it has no sidecar), read from
/// the sidecar ConfigMap volumes it mounted.
pub fn injected_endpoints(pod: &Pod) -> Vec<String> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let has_sidecar = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|container| container.name == SIDECAR_CONTAINER);
    if !has_sidecar {
        return Vec::new();
    }
    spec.volumes
        .iter()
        .flatten()
        .filter_map(|volume| {
            volume
                .config_map
                .as_ref()?
                .name
                .strip_suffix(SIDECAR_CONFIG_SUFFIX)
        })
        .map(str::to_owned)
        .collect()
}
