//! The signature vectors as data, and the real `hookguard-sidecar` binary at their clock: what
//! `tests/vectors_sidecar.rs` runs every vector through.
//!
//! Vector files come from two directories ([`vector_files`]): the shared ones beside the
//! repository (`$HOOKGUARD_VECTORS_DIR`, else `../shared/vectors`) and the repository's own
//! `vectors/`; the format is `shared/vectors/README.md`'s. [`VectorEndpoint`] turns a vector
//! into the endpoint file and key files a receiver of it would have.
//!
//! Every vector carries its verifier's clock (`now_unix`) and the boundary cases sit exactly at
//! `±tolerance_s`, so [`FrozenSidecar`] runs the binary under libfaketime with the realtime
//! clock *stopped* at that second (an absolute `FAKETIME` without `@` is a stopped clock; `@`
//! would start one running there) and the monotonic clock untouched
//! (`FAKETIME_DONT_FAKE_MONOTONIC=1`), so the sidecar's timeouts, leases and TTLs run as usual.
//! [`FrozenSidecar::check_clock`] proves the pin from outside.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::outcome_of;
use crate::net::free_port;
use crate::sidecar::Answer;

/// Where libfaketime is installed besides Debian's multiarch directory (where the `faketime`
/// package puts it); `HOOKGUARD_LIBFAKETIME` names another.
const LIBFAKETIME_DIRS: [&str; 3] = [
    "/usr/lib/faketime",
    "/usr/lib64/faketime",
    "/usr/local/lib/faketime",
];
/// The variant for multi-threaded programs: the sidecar runs a tokio runtime.
const LIBFAKETIME: &str = "libfaketimeMT.so.1";
/// The event type no vector has: an endpoint subscribed only to it filters every delivery.
pub const UNSUBSCRIBED_EVENT_TYPE: &str = "hookguard.test.unsubscribed";
/// How long a start may take, readiness included (generous: the suite runs tests in parallel).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one request to the sidecar.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The clock probe's endpoint, key and tolerance (see [`FrozenSidecar::check_clock`]).
const CLOCK_PROBE: &str = "clock-probe";
const CLOCK_PROBE_KEY: &str = "hookguard-clock-probe-key";

/// Which directory a vector file is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The shared directory beside the repository.
    Shared,
    /// The repository's `vectors/`.
    Repository,
}

/// One vector file: a scheme's vectors and dedup sequences.
#[derive(Debug, Clone, Deserialize)]
pub struct VectorFile {
    /// The file's scheme, e.g. `generic-hex` ([`config_scheme`] maps it).
    pub scheme: String,
    /// The vectors.
    #[serde(default)]
    pub vectors: Vec<Vector>,
    /// Sequences of vectors sent to one fresh receiver.
    #[serde(default)]
    pub dedup_sequences: Vec<DedupSequence>,
}

/// What the receiver must conclude about a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// The signature (and timestamp) verify.
    Valid,
    /// The delivery is refused.
    Invalid,
}

/// One signed (or mis-signed) request and the verdict on it.
#[derive(Debug, Clone, Deserialize)]
pub struct Vector {
    /// `<scheme>/<name>`.
    pub id: String,
    /// The shared secret as the sender's dashboard shows it; null for asymmetric keys.
    #[serde(default)]
    pub secret: Option<String>,
    /// The public key (`SendGrid`, Standard Webhooks `v1a`), when `secret` is null.
    #[serde(default)]
    pub public_key: Option<String>,
    /// Further keys the receiver holds (a rotation).
    #[serde(default)]
    pub other_keys: Option<Vec<String>>,
    /// The request headers as sent.
    pub headers: BTreeMap<String, String>,
    /// The raw body, standard base64.
    pub body_b64: String,
    /// The receiver's clock, Unix seconds.
    pub now_unix: i64,
    /// The receiver's tolerance; null when the scheme signs no timestamp.
    #[serde(default)]
    pub tolerance_s: Option<u64>,
    /// The verdict.
    pub expect: Expect,
    /// `valid`, `signature`, `timestamp`, `header`, `body`, `strictness`, `quirk` or `dedup`.
    #[serde(default)]
    pub category: String,
    /// For valid vectors: the delivery ID the receiver deduplicates on.
    #[serde(default)]
    pub dedup_key: Option<String>,
    /// Twilio and Square: the public URL as the sender called it, query included.
    #[serde(default)]
    pub url: Option<String>,
    /// For valid vectors: the event type the receiver extracts.
    #[serde(default)]
    pub event_type: Option<String>,
    /// For invalid vectors: the receiver's status (400 or 401).
    #[serde(default)]
    pub expect_status: Option<u16>,
    /// Zoom's `endpoint.url_validation`: the JSON the receiver answers itself.
    #[serde(default)]
    pub expect_response: Option<Value>,
}

impl Vector {
    /// The receiver's keys in order: `secret` (else `public_key`), then `other_keys`.
    pub fn keys(&self) -> Vec<String> {
        let first = self.secret.as_ref().or(self.public_key.as_ref());
        first
            .into_iter()
            .chain(self.other_keys.iter().flatten())
            .cloned()
            .collect()
    }

    /// The raw body.
    pub fn body(&self) -> anyhow::Result<Bytes> {
        Ok(STANDARD
            .decode(&self.body_b64)
            .context("body_b64 is not standard base64")?
            .into())
    }

    /// `url` without its query, and the query (without `?`).
    pub fn public_url(&self) -> Option<(&str, Option<&str>)> {
        let url = self.url.as_deref()?;
        Some(match url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (url, None),
        })
    }
}

/// Vectors sent in order to one fresh receiver.
#[derive(Debug, Clone, Deserialize)]
pub struct DedupSequence {
    /// What it shows.
    #[serde(default)]
    pub description: String,
    /// The steps.
    pub steps: Vec<Step>,
}

/// One delivery of a [`DedupSequence`].
#[derive(Debug, Clone, Deserialize)]
pub struct Step {
    /// The vector's `id`.
    pub vector: String,
    /// What the receiver does with it.
    pub expect_action: Action,
}

/// What the receiver does with a step's delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Forwards it to the app.
    Forward,
    /// Answers it as a duplicate; the app does not see it.
    Duplicate,
}

/// A vector file found on disk: where, and its content or why it cannot be read.
#[derive(Debug)]
pub struct FoundFile {
    /// Its path.
    pub path: PathBuf,
    /// Which directory it is from.
    pub source: Source,
    /// Its parsed content.
    pub file: anyhow::Result<VectorFile>,
}

impl FoundFile {
    /// `shared/<file name>` or `vectors/<file name>`, for messages.
    pub fn label(&self) -> String {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match self.source {
            Source::Shared => format!("shared/{name}"),
            Source::Repository => format!("vectors/{name}"),
        }
    }
}

/// `$HOOKGUARD_VECTORS_DIR`, else `../shared/vectors` beside the repository.
pub fn shared_vectors_dir() -> PathBuf {
    std::env::var_os("HOOKGUARD_VECTORS_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors")),
        PathBuf::from,
    )
}

/// The repository's `vectors/`.
pub fn repository_vectors_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../vectors"))
}

/// Every `*.json` of both directories, sorted by name within each. The shared directory must
/// exist; the repository's may not (yet).
pub fn vector_files() -> anyhow::Result<Vec<FoundFile>> {
    let shared = shared_vectors_dir();
    let mut found = json_files(&shared, Source::Shared).with_context(|| {
        format!(
            "cannot read the shared signature vectors at {}; set HOOKGUARD_VECTORS_DIR to that \
             directory",
            shared.display()
        )
    })?;
    let repository = repository_vectors_dir();
    if repository.is_dir() {
        found.extend(json_files(&repository, Source::Repository)?);
    }
    Ok(found)
}

fn json_files(dir: &Path, source: Source) -> anyhow::Result<Vec<FoundFile>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|path| {
            let file = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))
                .and_then(|text| {
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is not a vector file", path.display()))
                });
            FoundFile { path, source, file }
        })
        .collect())
}

/// The endpoint file's `scheme` for a vector file's `scheme`.
pub fn config_scheme(file_scheme: &str) -> Option<&'static str> {
    Some(match file_scheme {
        "generic-hex" => "Generic",
        "standard-webhooks" => "StandardWebhooks",
        "stripe" => "Stripe",
        "github" => "GitHub",
        "slack" => "Slack",
        "shopify" => "Shopify",
        "twilio" => "Twilio",
        "zoom" => "Zoom",
        "paddle" => "Paddle",
        "linear" => "Linear",
        "square" => "Square",
        "mailgun" => "Mailgun",
        "sendgrid" => "SendGrid",
        _ => return None,
    })
}

/// Whether the scheme signs the public URL, so the endpoint needs `publicUrl` and the request
/// carries the URL's query.
pub fn signs_public_url(scheme: &str) -> bool {
    matches!(scheme, "Twilio" | "Square")
}

/// One endpoint of a vector sidecar: the receiver a vector (or a sequence) is sent to.
#[derive(Debug, Clone)]
pub struct VectorEndpoint {
    /// Its name, endpoint ID and (with a leading `/`) path.
    pub name: String,
    /// `scheme` as the endpoint file writes it.
    pub scheme: &'static str,
    /// `replay.tolerance` in seconds; `None` leaves the default.
    pub tolerance_s: Option<u64>,
    /// `publicUrl`, for the schemes that sign it.
    pub public_url: Option<String>,
    /// `eventTypes`; empty: all.
    pub event_types: Vec<String>,
    /// Key file contents: `k1`, `k2`, ….
    pub keys: Vec<String>,
}

impl VectorEndpoint {
    /// The receiver of `vector` as the vector describes it.
    pub fn for_vector(name: String, scheme: &'static str, vector: &Vector) -> VectorEndpoint {
        VectorEndpoint {
            name,
            scheme,
            tolerance_s: vector.tolerance_s,
            public_url: vector
                .public_url()
                .filter(|_| signs_public_url(scheme))
                .map(|(base, _)| base.to_owned()),
            event_types: Vec::new(),
            keys: vector.keys(),
        }
    }

    /// The endpoint the clock probe of [`FrozenSidecar::check_clock`] is sent to.
    pub fn clock_probe() -> VectorEndpoint {
        VectorEndpoint {
            name: CLOCK_PROBE.to_owned(),
            scheme: "Stripe",
            tolerance_s: Some(1),
            public_url: None,
            event_types: Vec::new(),
            keys: vec![CLOCK_PROBE_KEY.to_owned()],
        }
    }

    /// `/<name>`.
    pub fn path(&self) -> String {
        format!("/{}", self.name)
    }

    /// The request target for `vector`: the path, plus the URL's query where the scheme signs
    /// the URL.
    pub fn target(&self, vector: &Vector) -> String {
        match vector.public_url() {
            Some((_, Some(query))) if self.public_url.is_some() => {
                format!("{}?{query}", self.path())
            }
            _ => self.path(),
        }
    }

    /// The endpoint file. Written as JSON rather than through `EndpointConfig`, so fields of
    /// schemes still being added (`publicUrl`) need no type.
    pub fn config(&self, app_port: u16, secret_dir: &Path) -> Value {
        let mut config = json!({
            "name": self.name,
            "endpointId": self.name,
            "path": self.path(),
            "scheme": self.scheme,
            "upstream": {"port": app_port, "timeout": "10s"},
            "secretDir": secret_dir.to_string_lossy(),
        });
        if let Some(tolerance) = self.tolerance_s {
            // The window must be at least twice the tolerance.
            let window = tolerance.saturating_mul(2).max(24 * 3600);
            config["replay"] =
                json!({"tolerance": format!("{tolerance}s"), "window": format!("{window}s")});
        }
        if let Some(url) = &self.public_url {
            config["publicUrl"] = json!(url);
        }
        if !self.event_types.is_empty() {
            config["eventTypes"] = json!(self.event_types);
        }
        config
    }
}

/// Writes `<dir>/endpoints/<name>/endpoint.json` and `<dir>/secrets/<name>/k1…` for each
/// endpoint, as the operator's volumes lay them out; returns the config directory.
pub fn write_endpoints(
    dir: &Path,
    endpoints: &[VectorEndpoint],
    app_port: u16,
) -> anyhow::Result<PathBuf> {
    let config_dir = dir.join("endpoints");
    for endpoint in endpoints {
        let secret_dir = dir.join("secrets").join(&endpoint.name);
        std::fs::create_dir_all(&secret_dir)?;
        for (i, key) in endpoint.keys.iter().enumerate() {
            std::fs::write(secret_dir.join(format!("k{}", i + 1)), key)?;
        }
        let endpoint_dir = config_dir.join(&endpoint.name);
        std::fs::create_dir_all(&endpoint_dir)?;
        std::fs::write(
            endpoint_dir.join(hookguard_api::config::CONFIG_FILE_NAME),
            serde_json::to_vec_pretty(&endpoint.config(app_port, &secret_dir))?,
        )?;
    }
    Ok(config_dir)
}

/// libfaketime's thread-safe library, or an error saying how to install it.
pub fn libfaketime() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("HOOKGUARD_LIBFAKETIME").map(PathBuf::from) {
        if !path.is_file() {
            bail!(
                "HOOKGUARD_LIBFAKETIME names {}, which is no file",
                path.display()
            );
        }
        return Ok(path);
    }
    let multiarch = format!("/usr/lib/{}-linux-gnu/faketime", std::env::consts::ARCH);
    let dirs: Vec<&str> = std::iter::once(multiarch.as_str())
        .chain(LIBFAKETIME_DIRS)
        .collect();
    dirs.iter()
        .map(|dir| Path::new(dir).join(LIBFAKETIME))
        .find(|path| path.is_file())
        .with_context(|| {
            format!(
                "libfaketime is missing ({LIBFAKETIME} in none of {dirs:?}): run `make \
                 test-deps`, or `apt-get install faketime`, or set HOOKGUARD_LIBFAKETIME to the \
                 library. The vectors' boundary cases need the sidecar's clock stopped at their \
                 now_unix"
            )
        })
}

/// The `hookguard-sidecar` binary, built once per test binary.
pub fn sidecar_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            crate::cargo::build_binary("hookguard-sidecar", "hookguard-sidecar")
                .map_err(|err| format!("{err:#}"))
        })
        .clone()
        .map_err(|err| anyhow::anyhow!(err))
}

/// The real sidecar binary (memory store) on 127.0.0.1, its realtime clock stopped at one
/// second; killed (by its PID) when dropped.
#[derive(Debug)]
pub struct FrozenSidecar {
    child: Child,
    addr: SocketAddr,
    admin_addr: SocketAddr,
    log: PathBuf,
    now_unix: i64,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl FrozenSidecar {
    /// Starts `binary` on the endpoint files in `config_dir` with the clock at `now_unix`,
    /// logging to `log`, and waits until `/readyz` answers 200. A start that loses its port to
    /// another process is retried on new ports.
    pub async fn start(
        binary: &Path,
        libfaketime: &Path,
        config_dir: &Path,
        now_unix: i64,
        log: &Path,
    ) -> anyhow::Result<FrozenSidecar> {
        let mut attempt = 1;
        loop {
            match Self::try_start(binary, libfaketime, config_dir, now_unix, log).await {
                Err(err) if attempt < 3 && format!("{err:#}").contains("in use") => attempt += 1,
                result => return result,
            }
        }
    }

    async fn try_start(
        binary: &Path,
        libfaketime: &Path,
        config_dir: &Path,
        now_unix: i64,
        log: &Path,
    ) -> anyhow::Result<FrozenSidecar> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let admin_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let log_file = std::fs::File::create(log)?;
        let child = Command::new(binary)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--admin-listen")
            .arg(admin_addr.to_string())
            .arg("--config-dir")
            .arg(config_dir)
            .env("LD_PRELOAD", libfaketime)
            // An absolute time (no `@`, no `+`/`-`) is a stopped clock; `%s` spares a
            // calendar conversion, and UTC any daylight-saving ambiguity in it.
            .env("FAKETIME", now_unix.to_string())
            .env("FAKETIME_FMT", "%s")
            .env("TZ", "UTC")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            // File times stay real: the config watcher compares them.
            .env("NO_FAKE_STAT", "1")
            .env_remove("HOOKGUARD_LOG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut sidecar = FrozenSidecar {
            child,
            addr,
            admin_addr,
            log: log.to_owned(),
            now_unix,
            client: Client::builder(TokioExecutor::new())
                // A fresh connection per request: no request meets a connection the sidecar
                // is closing.
                .pool_max_idle_per_host(0)
                .build_http(),
        };
        sidecar.wait_ready().await?;
        Ok(sidecar)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the sidecar exited ({status}) before it was ready:\n{}",
                    self.log_text()
                );
            }
            if let Ok((200, _)) = self.admin("/readyz").await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the sidecar was not ready within {START_TIMEOUT:?}:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Its webhook address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// POSTs `body` with `headers` (names as written, values as bytes) to `target` (path and
    /// query). `Content-Length` and `Transfer-Encoding` come from the body, not the headers.
    pub async fn post(
        &self,
        target: &str,
        headers: &BTreeMap<String, String>,
        body: Bytes,
    ) -> anyhow::Result<Answer> {
        let mut request = hyper::Request::post(format!("http://{}{target}", self.addr));
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("transfer-encoding")
            {
                continue;
            }
            request = request.header(
                http::HeaderName::from_bytes(name.as_bytes())?,
                http::HeaderValue::from_bytes(value.as_bytes())?,
            );
        }
        let response = tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.client.request(request.body(Full::new(body))?),
        )
        .await??;
        let status = response.status().as_u16();
        let outcome = outcome_of(response.headers());
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            outcome,
            retry_after,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// GETs a path on the admin port: status and body.
    pub async fn admin(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let uri = format!("http://{}{path}", self.admin_addr).parse()?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.client.get(uri)).await??;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// The endpoints' rejection reasons so far, from `hookguard_rejections_total`.
    pub async fn rejection_reasons(&self) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
        let (status, text) = self.admin("/metrics").await?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("hookguard_rejections_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            if value.trim().parse::<f64>().unwrap_or(0.0) <= 0.0 {
                continue;
            }
            let label = |name: &str| {
                let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
                let end = labels[start..].find('"')? + start;
                Some(labels[start..end].to_owned())
            };
            if let (Some(endpoint), Some(reason)) = (label("endpoint"), label("reason")) {
                reasons.entry(endpoint).or_default().push(reason);
            }
        }
        Ok(reasons)
    }

    /// Proves the clock is stopped at `now_unix`: on [`VectorEndpoint::clock_probe`] (Stripe,
    /// tolerance 1 s), deliveries signed at `now_unix ± 1` pass and at `± 2` are refused, which
    /// holds only while the clock reads exactly that second. Call it a second or more after the
    /// start, so a clock merely *started* at `now_unix` has moved on and fails it.
    pub async fn check_clock(&self) -> anyhow::Result<()> {
        let mut wrong = Vec::new();
        for (offset, want) in [(-1_i64, 200_u16), (1, 200), (-2, 401), (2, 401)] {
            let timestamp = self.now_unix + offset;
            let body = format!(r#"{{"id":"evt_clock_{offset}","type":"hookguard.clock"}}"#);
            // Stripe's `t=…,v1=…`: hex HMAC-SHA256 of `{t}.{body}`.
            let mac = hookguard_sidecar::sign::hmac_sha256(
                CLOCK_PROBE_KEY.as_bytes(),
                &[timestamp.to_string().as_bytes(), b".", body.as_bytes()],
            );
            let signature = mac.iter().fold(String::new(), |mut hex, byte| {
                let _ = write!(hex, "{byte:02x}");
                hex
            });
            let headers = BTreeMap::from([
                (
                    "stripe-signature".to_owned(),
                    format!("t={timestamp},v1={signature}"),
                ),
                ("content-type".to_owned(), "application/json".to_owned()),
            ]);
            let answer = self
                .post(&format!("/{CLOCK_PROBE}"), &headers, body.into())
                .await?;
            if answer.status != want {
                wrong.push(format!(
                    "signed at now_unix{offset:+}: {} (want {want})",
                    answer.status
                ));
            }
        }
        if !wrong.is_empty() {
            bail!(
                "the sidecar's clock is not stopped at {} ({}): is libfaketime ({LIBFAKETIME}) \
                 loaded and FAKETIME honoured?",
                self.now_unix,
                wrong.join(", ")
            );
        }
        Ok(())
    }
}

impl Drop for FrozenSidecar {
    fn drop(&mut self) {
        // `Child::kill` signals this child's PID, never a name.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
