//! Runs a real sidecar in this process, on 127.0.0.1 ports, with config and key files in a
//! temporary directory exactly as the operator's ConfigMap and Secret volumes lay them out,
//! and sends it signed deliveries.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use hookguard_api::config::{CONFIG_FILE_NAME, EndpointConfig};
use hookguard_sidecar::{Args, Running, Settings, load_endpoints, start};

use crate::app::outcome_of;

/// A generic endpoint config for tests: `/hook` → the app's `/hook`, keys in the secret dir.
pub fn generic_endpoint(name: &str, app_port: u16) -> EndpointConfig {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "endpointId": format!("{name}-id"),
        "path": format!("/{name}"),
        "scheme": "Generic",
        "upstream": {"port": app_port, "timeout": "2s"},
        "secretDir": "",
    }))
    .unwrap_or_else(|e| unreachable!("static test config: {e}"))
}

/// A sidecar under test and the directory holding its files.
#[derive(Debug)]
pub struct SidecarHarness {
    dir: tempfile::TempDir,
    running: Option<Running>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// An answer as the sender sees it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// `x-hookguard-outcome`, on answers the sidecar made itself.
    pub outcome: Option<String>,
    /// `Retry-After`, if any.
    pub retry_after: Option<String>,
    /// Body text.
    pub body: String,
}

impl SidecarHarness {
    /// Writes each `(config, secret)` as `<dir>/endpoints/<name>/endpoint.json` and
    /// `<dir>/secrets/<name>/k1`, then starts the sidecar with `extra_args` (e.g.
    /// `["--store", url]`).
    pub async fn start(
        endpoints: Vec<(EndpointConfig, &str)>,
        extra_args: &[&str],
    ) -> anyhow::Result<SidecarHarness> {
        SidecarHarness::start_on(endpoints, "127.0.0.1:0", extra_args).await
    }

    /// [`SidecarHarness::start`] on a given webhook address, e.g. the one a crashed sidecar
    /// used, so senders find the new one where the old one was.
    pub async fn start_on(
        endpoints: Vec<(EndpointConfig, &str)>,
        listen: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<SidecarHarness> {
        let harness = SidecarHarness::launch(endpoints, listen, extra_args).await?;
        harness.wait_ready(Duration::from_secs(10)).await?;
        Ok(harness)
    }

    /// [`SidecarHarness::start`] without waiting for `/readyz`: for a test of a sidecar that
    /// serves but stays unready.
    pub async fn start_unready(
        endpoints: Vec<(EndpointConfig, &str)>,
        extra_args: &[&str],
    ) -> anyhow::Result<SidecarHarness> {
        SidecarHarness::launch(endpoints, "127.0.0.1:0", extra_args).await
    }

    async fn launch(
        endpoints: Vec<(EndpointConfig, &str)>,
        listen: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<SidecarHarness> {
        let dir = tempfile::tempdir()?;
        for (config, secret) in endpoints {
            write_endpoint(dir.path(), config, secret)?;
        }
        let config_dir = dir.path().join("endpoints");
        let mut argv = vec![
            "hookguard-sidecar",
            "--listen",
            listen,
            "--admin-listen",
            "127.0.0.1:0",
            "--config-dir",
        ];
        let config_dir_text = config_dir.to_string_lossy().into_owned();
        argv.push(&config_dir_text);
        argv.extend_from_slice(extra_args);
        let settings = Settings::try_from(Args::try_parse_from(argv)?)?;
        let endpoints = load_endpoints(&settings.config_dir)?;
        let running = start(settings, &endpoints).await?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(SidecarHarness {
            dir,
            running: Some(running),
            client,
        })
    }

    /// Polls `/readyz` until it answers 200, as a kubelet would before sending traffic.
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (status, body) = self.admin("/readyz").await?;
            if status == 200 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("the sidecar was not ready within {within:?}: {body}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The directory holding `endpoints/` and `secrets/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The running sidecar.
    pub fn running(&self) -> &Running {
        self.running
            .as_ref()
            .unwrap_or_else(|| unreachable!("running until dropped"))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.running().addr)
    }

    /// `http://127.0.0.1:<admin port>`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.running().admin_addr)
    }

    /// A sender for this sidecar's webhook port.
    pub fn sender(&self) -> Sender {
        Sender {
            client: self.client.clone(),
            base_url: self.base_url(),
        }
    }

    /// Sends a Generic-scheme delivery signed with `secret` to `path`.
    pub async fn post_generic(
        &self,
        path: &str,
        secret: &str,
        id: &str,
        body: &str,
    ) -> anyhow::Result<Answer> {
        self.sender().post_generic(path, secret, id, body).await
    }

    /// Sends a POST with the given headers.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> anyhow::Result<Answer> {
        self.sender().post(path, headers, body).await
    }

    /// GETs a path on the admin port and returns status and body.
    pub async fn admin(&self, path: &str) -> anyhow::Result<(u16, String)> {
        self.admin_request(hyper::Method::GET, path).await
    }

    /// Sends a request without a body to a path on the admin port (e.g. `POST` or `DELETE`
    /// on `/queue/...`) and returns status and body.
    pub async fn admin_request(
        &self,
        method: hyper::Method,
        path: &str,
    ) -> anyhow::Result<(u16, String)> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.admin_url()))
            .body(Full::new(Bytes::new()))?;
        let response =
            tokio::time::timeout(Duration::from_secs(10), self.client.request(request)).await??;
        let status = response.status().as_u16();
        let body =
            String::from_utf8_lossy(&response.into_body().collect().await?.to_bytes()).into_owned();
        Ok((status, body))
    }

    /// The value of one counter or gauge sample, e.g.
    /// `hookguard_requests_total{endpoint="a",outcome="duplicate"}`; 0 when absent.
    pub async fn metric(&self, sample: &str) -> anyhow::Result<u64> {
        let (_, text) = self.admin("/metrics").await?;
        let value = text
            .lines()
            .find_map(|line| {
                line.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map_or(Ok(0), str::parse)?;
        Ok(value)
    }

    /// Stops the sidecar as a crash would (see `Running::abort`) and waits for it.
    pub async fn abort(mut self) {
        if let Some(running) = self.running.take() {
            running.abort();
            running.wait().await;
        }
    }

    /// Stops the sidecar gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown();
            running.wait().await;
        }
    }
}

impl Drop for SidecarHarness {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.shutdown();
        }
    }
}

/// Sends signed deliveries to a sidecar's webhook port; outlives any one sidecar, so a test
/// can keep sending across a restart on the same address.
#[derive(Debug, Clone)]
pub struct Sender {
    client: Client<HttpConnector, Full<Bytes>>,
    base_url: String,
}

impl Sender {
    /// A sender for `http://<addr>`.
    pub fn new(addr: std::net::SocketAddr) -> Sender {
        Sender {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base_url: format!("http://{addr}"),
        }
    }

    /// Sends a Generic-scheme delivery signed with `secret` to `path`.
    pub async fn post_generic(
        &self,
        path: &str,
        secret: &str,
        id: &str,
        body: &str,
    ) -> anyhow::Result<Answer> {
        let signature = hookguard_sidecar::sign::generic(secret.as_bytes(), body.as_bytes());
        self.post(
            path,
            &[("x-signature", &signature), ("x-delivery-id", id)],
            body,
        )
        .await
    }

    /// Sends a POST with the given headers.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> anyhow::Result<Answer> {
        let mut request = hyper::Request::post(format!("{}{path}", self.base_url));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body.to_owned())))?;
        let response =
            tokio::time::timeout(Duration::from_secs(30), self.client.request(request)).await??;
        let status = response.status().as_u16();
        let outcome = outcome_of(response.headers());
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body =
            String::from_utf8_lossy(&response.into_body().collect().await?.to_bytes()).into_owned();
        Ok(Answer {
            status,
            outcome,
            retry_after,
            body,
        })
    }
}

/// Writes one endpoint's config and key the way Kubernetes volumes lay them out.
pub fn write_endpoint(
    dir: &Path,
    mut config: EndpointConfig,
    secret: &str,
) -> anyhow::Result<PathBuf> {
    let secret_dir = dir.join("secrets").join(&config.name);
    std::fs::create_dir_all(&secret_dir)?;
    std::fs::write(secret_dir.join("k1"), secret)?;
    config.secret_dir = secret_dir.to_string_lossy().into_owned();
    let config_dir = dir.join("endpoints").join(&config.name);
    std::fs::create_dir_all(&config_dir)?;
    let file = config_dir.join(CONFIG_FILE_NAME);
    std::fs::write(&file, serde_json::to_vec_pretty(&config)?)?;
    Ok(file)
}
