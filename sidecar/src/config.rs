//! Configuration, parsed and validated before any port is bound.
//!
//! Two sources: process settings from flags or environment ([`Args`] → [`Settings`]), and one
//! endpoint file per endpoint in the config directory ([`load_endpoints`] → [`Endpoint`]).
//! Every error names where the value came from (flag, or file and field) and how to fix it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hookguard_api::config::{
    CONFIG_FILE_NAME, EndpointConfig, GenericOptions, IdempotencyKey, Replay, Scheme,
    StoreUnavailable,
};
use hookguard_api::names::env;
use hookguard_api::units::{parse_duration, parse_size};
use http::HeaderName;

use crate::dedup::{MemoryLimits, RedisOptions};
use crate::verify::{GenericHeaders, KeySource, SigningKey, Verifier, VerifierSettings};

/// Largest `maxBodySize` an endpoint may set: every body is buffered whole before it is
/// verified, so this caps the memory one request can hold.
pub const MAX_BODY_SIZE_LIMIT: u64 = 64 << 20;

/// Command-line flags; each also reads an environment variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "hookguard-sidecar",
    version,
    about = "Verifies webhook deliveries and proxies them to the app on localhost."
)]
pub struct Args {
    /// Address for webhook traffic.
    #[arg(long, env = env::LISTEN, default_value = "0.0.0.0:9880")]
    pub listen: String,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, env = env::ADMIN_LISTEN, default_value = "0.0.0.0:9881")]
    pub admin_listen: String,
    /// Directory with one endpoint file per endpoint (`<name>.json`, or `<name>/endpoint.json` as a ConfigMap volume mounts it).
    #[arg(long, env = env::CONFIG_DIR, default_value = "/etc/hookguard/endpoints")]
    pub config_dir: PathBuf,
    /// Dedup store: `memory` (one replica only) or a `redis://` / `rediss://` URL.
    #[arg(long, env = env::STORE, default_value = "memory")]
    pub store: String,
    /// `standalone`, or `cluster` for a Redis Cluster (then --store may list several seed
    /// nodes, comma-separated: redis://a:6379,redis://b:6379).
    #[arg(long, env = env::STORE_MODE, value_enum, default_value_t = StoreMode::Standalone)]
    pub store_mode: StoreMode,
    /// Redis password (`AUTH`); better from a Secret through the environment than in the URL.
    #[arg(long, env = env::STORE_PASSWORD, hide_env_values = true)]
    pub store_password: Option<String>,
    /// PEM file with the CA of the Redis server's certificate, for `rediss://` URLs; unset: the system's roots.
    #[arg(long, env = env::STORE_CA_FILE)]
    pub store_ca_file: Option<PathBuf>,
    /// Deadline for one store command; past it the store counts as unavailable.
    #[arg(long, env = env::STORE_TIMEOUT, default_value = "250ms")]
    pub store_timeout: String,
    /// In-memory store: most entries kept; the oldest is evicted first.
    #[arg(long, env = env::MEMORY_MAX_ENTRIES, default_value_t = 100_000)]
    pub memory_max_entries: usize,
    /// In-memory store: most bytes kept (keys and bookkeeping), e.g. `16Mi`.
    #[arg(long, env = env::MEMORY_MAX_BYTES, default_value = "16Mi")]
    pub memory_max_bytes: String,
    /// Host of the app container.
    #[arg(long, env = env::UPSTREAM_HOST, default_value = "127.0.0.1")]
    pub upstream_host: String,
    /// Time a client has to send the request head.
    #[arg(long, env = env::HEADER_READ_TIMEOUT, default_value = "10s")]
    pub header_read_timeout: String,
    /// Time a client has to send the request body.
    #[arg(long, env = env::BODY_READ_TIMEOUT, default_value = "30s")]
    pub body_read_timeout: String,
    /// Time in-flight deliveries get to finish after SIGTERM.
    #[arg(long, env = env::SHUTDOWN_GRACE, default_value = "20s")]
    pub shutdown_grace: String,
    /// Most client connections served at once (each may buffer one body up to its endpoint's
    /// maxBodySize before verification, so this bounds that memory); more wait to be accepted.
    #[arg(long, env = env::MAX_CONNECTIONS, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_connections: u32,
    /// Log format: `text` or `json`.
    #[arg(long, env = env::LOG_FORMAT, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `hookguard_sidecar=debug`.
    #[arg(long, env = env::LOG, default_value = "info")]
    pub log: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How the Redis store is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreMode {
    /// One server, or a proxy in front of several.
    Standalone,
    /// A Redis Cluster.
    Cluster,
}

/// Where processed deliveries are remembered.
#[derive(Debug, Clone)]
pub enum StoreSettings {
    /// In this process, bounded; for a single replica and the local demo.
    Memory(MemoryLimits),
    /// A Redis server, shared by replicas.
    Redis(RedisOptions),
}

/// Validated process settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Webhook listen address.
    pub listen: SocketAddr,
    /// Admin listen address.
    pub admin_listen: SocketAddr,
    /// Endpoint config directory.
    pub config_dir: PathBuf,
    /// Dedup store.
    pub store: StoreSettings,
    /// Deadline for one store command.
    pub store_timeout: Duration,
    /// Host of the app container.
    pub upstream_host: String,
    /// Time a client has to send the request head.
    pub header_read_timeout: Duration,
    /// Time a client has to send the request body.
    pub body_read_timeout: Duration,
    /// Time in-flight deliveries get after SIGTERM.
    pub shutdown_grace: Duration,
    /// Most client connections served at once.
    pub max_connections: usize,
}

/// A flag or environment value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("--{flag} (env {env}): {problem}")]
pub struct SettingsError {
    /// The flag's name.
    pub flag: &'static str,
    /// The matching environment variable.
    pub env: &'static str,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl TryFrom<Args> for Settings {
    type Error = SettingsError;

    fn try_from(args: Args) -> Result<Self, Self::Error> {
        let addr = |flag, env, value: &str| {
            value.parse::<SocketAddr>().map_err(|_| SettingsError {
                flag,
                env,
                problem: format!("{value:?} is not a socket address; write it like 0.0.0.0:9880 or 127.0.0.1:9880"),
            })
        };
        let duration = |flag, env, value: &str| {
            let parsed = parse_duration(value).map_err(|e| SettingsError {
                flag,
                env,
                problem: e.to_string(),
            })?;
            if parsed.is_zero() {
                return Err(SettingsError {
                    flag,
                    env,
                    problem: "must be longer than zero".into(),
                });
            }
            Ok(parsed)
        };
        let store = store_settings(&args)?;
        Ok(Settings {
            listen: addr("listen", env::LISTEN, &args.listen)?,
            admin_listen: addr("admin-listen", env::ADMIN_LISTEN, &args.admin_listen)?,
            config_dir: args.config_dir,
            store,
            store_timeout: duration("store-timeout", env::STORE_TIMEOUT, &args.store_timeout)?,
            upstream_host: args.upstream_host,
            header_read_timeout: duration(
                "header-read-timeout",
                env::HEADER_READ_TIMEOUT,
                &args.header_read_timeout,
            )?,
            body_read_timeout: duration(
                "body-read-timeout",
                env::BODY_READ_TIMEOUT,
                &args.body_read_timeout,
            )?,
            shutdown_grace: duration("shutdown-grace", env::SHUTDOWN_GRACE, &args.shutdown_grace)?,
            max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        })
    }
}

/// The store settings from `--store` and its companions; reads the CA file, if any.
fn store_settings(args: &Args) -> Result<StoreSettings, SettingsError> {
    Ok(
        if args.store == "memory" && args.store_mode == StoreMode::Cluster {
            return Err(SettingsError {
                flag: "store-mode",
                env: env::STORE_MODE,
                problem: "cluster needs a Redis store: set --store to redis://host:port".into(),
            });
        } else if args.store == "memory" {
            let max_bytes = parse_size(&args.memory_max_bytes).map_err(|e| SettingsError {
                flag: "memory-max-bytes",
                env: env::MEMORY_MAX_BYTES,
                problem: e.to_string(),
            })?;
            let max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX);
            if args.memory_max_entries == 0 || max_bytes < 4096 {
                return Err(SettingsError {
                    flag: "memory-max-entries",
                    env: env::MEMORY_MAX_ENTRIES,
                    problem: "the in-memory store needs at least 1 entry and 4Ki bytes".into(),
                });
            }
            StoreSettings::Memory(MemoryLimits {
                max_entries: args.memory_max_entries,
                max_bytes,
            })
        } else if args
            .store
            .split(',')
            .all(|url| url.trim().starts_with("redis://") || url.trim().starts_with("rediss://"))
            && (args.store_mode == StoreMode::Cluster || !args.store.contains(','))
        {
            let ca_pem = match &args.store_ca_file {
                None => None,
                Some(path) => Some(std::fs::read(path).map_err(|e| SettingsError {
                    flag: "store-ca-file",
                    env: env::STORE_CA_FILE,
                    problem: format!(
                        "cannot read {}: {e}; mount the Redis CA certificate there",
                        path.display()
                    ),
                })?),
            };
            if ca_pem.is_some() && !args.store.starts_with("rediss://") {
                return Err(SettingsError {
                    flag: "store-ca-file",
                    env: env::STORE_CA_FILE,
                    problem: "a CA only applies to TLS: use a rediss:// URL in --store".into(),
                });
            }
            StoreSettings::Redis(RedisOptions {
                url: args.store.clone(),
                password: args.store_password.clone(),
                ca_pem,
                cluster: args.store_mode == StoreMode::Cluster,
            })
        } else {
            return Err(SettingsError {
                flag: "store",
                env: env::STORE,
                problem:
                    "expected `memory` or a URL like redis://host:6379/0 or rediss://host:6380/0 \
             (several, comma-separated, only with --store-mode cluster)"
                        .into(),
            });
        },
    )
}

/// One endpoint, validated, with its keys loaded: nothing optional is left.
#[derive(Debug)]
pub struct Endpoint {
    /// The endpoint's name (logs, metrics).
    pub name: String,
    /// Stable ID; namespaces the store keys.
    pub endpoint_id: String,
    /// Path served.
    pub path: String,
    /// Signature verification and key extraction.
    pub verifier: Verifier,
    /// The app's port on the upstream host.
    pub upstream_port: u16,
    /// Path on the app; `None` keeps the request's path.
    pub upstream_path: Option<String>,
    /// Time the app has to answer before the sender gets 504.
    pub upstream_timeout: Duration,
    /// How long a claim holds: the upstream time-out plus a margin (see [`lease_for`]).
    pub lease: Duration,
    /// How long a processed delivery is remembered.
    pub window: Duration,
    /// Event types forwarded; empty means all.
    pub event_types: Vec<String>,
    /// Largest accepted body.
    pub max_body_size: u64,
    /// What to do when the store is unavailable.
    pub store_unavailable: StoreUnavailable,
    /// Also deduplicate on the body hash: the delivery ID is not signed (schemes that sign
    /// neither ID nor timestamp, or an `idempotencyKey.header` override).
    pub dedup_on_body: bool,
    /// The files this endpoint was read from, watched for changes.
    pub secret_dir: PathBuf,
}

/// The lease of a claim for an endpoint: twice the upstream time-out plus five seconds, so
/// a delivery whose app answer is late is still awaited (and recorded) while retries of it
/// get 409 instead of a second concurrent copy at the app.
pub fn lease_for(upstream_timeout: Duration) -> Duration {
    upstream_timeout.saturating_mul(2) + Duration::from_secs(5)
}

/// An endpoint file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config directory cannot be read.
    #[error(
        "cannot read config directory {dir}: {source}; mount the endpoint ConfigMaps there or pass --config-dir"
    )]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The config directory holds no endpoint.
    #[error(
        "no endpoint configuration in {0}: add <name>.json or <name>/{CONFIG_FILE_NAME} (see README, \"Configuration\")"
    )]
    NoEndpoints(PathBuf),
    /// A file cannot be read.
    #[error("{file}: cannot read: {source}")]
    ReadFile {
        /// The file.
        file: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid JSON for the endpoint schema.
    #[error("{file}: {source}; see README, \"Configuration\", for the fields")]
    Parse {
        /// The file.
        file: PathBuf,
        /// The JSON error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A field has a value that cannot be used.
    #[error("{file}: field `{field}`: {problem}")]
    Field {
        /// The file.
        file: PathBuf,
        /// The field, as written in the file.
        field: &'static str,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// A directory entry is neither an endpoint file nor an endpoint directory.
    #[error(
        "{0}: not an endpoint file: name it <name>.json, or put {CONFIG_FILE_NAME} in the directory, or remove it"
    )]
    Unexpected(PathBuf),
}

/// Every problem found in one load, so a person fixes them all at once.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The endpoints by path, as one immutable snapshot; a reload builds a new one.
#[derive(Debug, Default)]
pub struct Endpoints {
    by_path: HashMap<String, Arc<Endpoint>>,
}

impl Endpoints {
    /// The endpoint serving `path`, if any.
    pub fn route(&self, path: &str) -> Option<&Arc<Endpoint>> {
        self.by_path.get(path)
    }

    /// All endpoints, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.by_path.values()
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    /// Whether there is no endpoint.
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }
}

/// Reads and validates every endpoint in `dir`, loading each endpoint's keys.
pub fn load_endpoints(dir: &Path) -> Result<Endpoints, ConfigErrors> {
    let files = endpoint_files(dir).map_err(|e| ConfigErrors(vec![e]))?;
    let mut errors = Vec::new();
    let mut by_path: HashMap<String, (PathBuf, Arc<Endpoint>)> = HashMap::new();
    for file in files {
        match load_endpoint_file(&file) {
            Ok(endpoint) => {
                if let Some((other, _)) = by_path.get(&endpoint.path) {
                    errors.push(ConfigError::Field {
                        file: file.clone(),
                        field: "path",
                        problem: format!(
                            "{} is also served by {}; give each endpoint its own path",
                            endpoint.path,
                            other.display()
                        ),
                    });
                    continue;
                }
                by_path.insert(endpoint.path.clone(), (file, Arc::new(endpoint)));
            }
            Err(error) => errors.push(error),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    if by_path.is_empty() {
        return Err(ConfigErrors(vec![ConfigError::NoEndpoints(dir.to_owned())]));
    }
    Ok(Endpoints {
        by_path: by_path
            .into_iter()
            .map(|(path, (_, endpoint))| (path, endpoint))
            .collect(),
    })
}

/// The endpoint files in `dir`: `*.json` files, and `*/endpoint.json` for ConfigMap volumes.
/// Names starting with `.` are skipped: Kubernetes keeps its `..data` swap machinery there.
fn endpoint_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let read_dir = |dir: &Path| {
        std::fs::read_dir(dir).map_err(|source| ConfigError::ReadDir {
            dir: dir.to_owned(),
            source,
        })
    };
    let mut files = Vec::new();
    for entry in read_dir(dir)? {
        let entry = entry.map_err(|source| ConfigError::ReadDir {
            dir: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // Follow symlinks: a ConfigMap volume's files are links into `..data/`.
        let metadata = std::fs::metadata(&path).map_err(|source| ConfigError::ReadFile {
            file: path.clone(),
            source,
        })?;
        if metadata.is_dir() {
            let inner = path.join(CONFIG_FILE_NAME);
            if !inner.is_file() {
                return Err(ConfigError::Unexpected(path));
            }
            files.push(inner);
        } else if path.extension().is_some_and(|ext| ext == "json") {
            files.push(path);
        } else {
            return Err(ConfigError::Unexpected(path));
        }
    }
    files.sort();
    Ok(files)
}

/// Reads, parses and validates one endpoint file.
pub fn load_endpoint_file(file: &Path) -> Result<Endpoint, ConfigError> {
    let text = std::fs::read(file).map_err(|source| ConfigError::ReadFile {
        file: file.to_owned(),
        source,
    })?;
    let raw: EndpointConfig =
        serde_json::from_slice(&text).map_err(|source| ConfigError::Parse {
            file: file.to_owned(),
            source,
        })?;
    validate(file, raw)
}

/// Turns a parsed endpoint file into an [`Endpoint`], reading its keys from `secretDir`.
pub fn validate(file: &Path, raw: EndpointConfig) -> Result<Endpoint, ConfigError> {
    let field = |field: &'static str, problem: String| ConfigError::Field {
        file: file.to_owned(),
        field,
        problem,
    };

    if raw.name.is_empty() || raw.name.len() > 253 {
        return Err(field(
            "name",
            "must be 1 to 253 characters (the WebhookEndpoint's name)".into(),
        ));
    }
    if raw.endpoint_id.is_empty()
        || raw.endpoint_id.len() > 64
        || !raw
            .endpoint_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(field(
            "endpointId",
            "must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_', '.'".into(),
        ));
    }
    if !raw.path.starts_with('/') || raw.path.contains(['?', '#']) {
        return Err(field(
            "path",
            format!(
                "{:?} must start with '/' and hold no query or fragment",
                raw.path
            ),
        ));
    }

    let generic = generic_headers(file, raw.scheme, raw.generic)?;

    let upstream_timeout = parse_duration(&raw.upstream.timeout)
        .map_err(|e| field("upstream.timeout", e.to_string()))?;
    if upstream_timeout.is_zero() {
        return Err(field("upstream.timeout", "must be longer than zero".into()));
    }
    if raw.upstream.port == 0 {
        return Err(field(
            "upstream.port",
            "must be the app's port, 1 to 65535".into(),
        ));
    }
    if let Some(path) = &raw.upstream.path
        && (!path.starts_with('/') || path.contains('#'))
    {
        return Err(field(
            "upstream.path",
            format!("{path:?} must start with '/'"),
        ));
    }

    let (tolerance, window) = replay_durations(file, &raw.replay)?;

    let key_source = key_source(file, raw.idempotency_key)?;
    // A delivery ID from a header is signed by no scheme: with one, a captured delivery could be
    // replayed under fresh IDs within the tolerance, so the body hash is claimed too.
    let dedup_on_body =
        !raw.scheme.signs_id_or_timestamp() || matches!(key_source, Some(KeySource::Header(_)));

    let max_body_size =
        parse_size(&raw.max_body_size).map_err(|e| field("maxBodySize", e.to_string()))?;
    if max_body_size == 0 || max_body_size > MAX_BODY_SIZE_LIMIT {
        return Err(field("maxBodySize", "must be between 1 and 64Mi".into()));
    }
    if let Some(bad) = raw.event_types.iter().find(|t| t.is_empty()) {
        return Err(field(
            "eventTypes",
            format!("{bad:?}: event types must not be empty"),
        ));
    }
    if !raw.event_types.is_empty() && raw.scheme == Scheme::Generic && generic.event_type.is_none()
    {
        return Err(field(
            "eventTypes",
            "the Generic scheme needs generic.eventTypeHeader to tell event types apart".into(),
        ));
    }

    let secret_dir = PathBuf::from(&raw.secret_dir);
    let keys = load_keys(raw.scheme, &secret_dir).map_err(|problem| field("secretDir", problem))?;

    Ok(Endpoint {
        name: raw.name,
        endpoint_id: raw.endpoint_id,
        path: raw.path,
        verifier: Verifier::new(VerifierSettings {
            scheme: raw.scheme,
            generic,
            key_source,
            keys,
            tolerance,
        }),
        upstream_port: raw.upstream.port,
        upstream_path: raw.upstream.path,
        upstream_timeout,
        lease: lease_for(upstream_timeout),
        window,
        event_types: raw.event_types,
        max_body_size,
        store_unavailable: raw.store_unavailable,
        dedup_on_body,
        secret_dir,
    })
}

/// The replay tolerance and window, the window at least twice the tolerance.
fn replay_durations(file: &Path, replay: &Replay) -> Result<(Duration, Duration), ConfigError> {
    let field = |field: &'static str, problem: String| ConfigError::Field {
        file: file.to_owned(),
        field,
        problem,
    };
    let tolerance =
        parse_duration(&replay.tolerance).map_err(|e| field("replay.tolerance", e.to_string()))?;
    let window =
        parse_duration(&replay.window).map_err(|e| field("replay.window", e.to_string()))?;
    if tolerance.is_zero() {
        return Err(field("replay.tolerance", "must be longer than zero".into()));
    }
    if window < tolerance.saturating_mul(2) {
        return Err(field(
            "replay.window",
            format!(
                "must be at least twice replay.tolerance ({}), or a replayed delivery could outlive its dedup record",
                replay.tolerance
            ),
        ));
    }
    Ok((tolerance, window))
}

/// The Generic scheme's header names; other schemes refuse the `generic` block.
fn generic_headers(
    file: &Path,
    scheme: Scheme,
    options: Option<GenericOptions>,
) -> Result<GenericHeaders, ConfigError> {
    let field = |field: &'static str, problem: String| ConfigError::Field {
        file: file.to_owned(),
        field,
        problem,
    };
    let Some(options) = options else {
        return Ok(GenericHeaders::default());
    };
    if scheme != Scheme::Generic {
        return Err(field(
            "generic",
            format!(
                "only the Generic scheme takes header options; remove it or set scheme: Generic (this endpoint is {})",
                scheme.as_str()
            ),
        ));
    }
    let header = |name: &'static str, value: String| {
        HeaderName::try_from(value.as_str())
            .map_err(|_| field(name, format!("{value:?} is not a valid HTTP header name")))
    };
    let defaults = GenericHeaders::default();
    Ok(GenericHeaders {
        signature: options
            .signature_header
            .map_or(Ok(defaults.signature), |v| {
                header("generic.signatureHeader", v)
            })?,
        delivery_id: options
            .delivery_id_header
            .map_or(Ok(defaults.delivery_id), |v| {
                header("generic.deliveryIdHeader", v)
            })?,
        event_type: options
            .event_type_header
            .map(|v| header("generic.eventTypeHeader", v))
            .transpose()?,
    })
}

/// Where the delivery ID comes from, when the endpoint overrides the scheme's default.
fn key_source(file: &Path, key: Option<IdempotencyKey>) -> Result<Option<KeySource>, ConfigError> {
    let field = |field: &'static str, problem: String| ConfigError::Field {
        file: file.to_owned(),
        field,
        problem,
    };
    match key {
        None => Ok(None),
        Some(IdempotencyKey::Header(name)) => HeaderName::try_from(name.as_str())
            .map(|name| Some(KeySource::Header(name)))
            .map_err(|_| {
                field(
                    "idempotencyKey.header",
                    format!("{name:?} is not a valid HTTP header name"),
                )
            }),
        Some(IdempotencyKey::JsonPointer(pointer)) if pointer.starts_with('/') => {
            Ok(Some(KeySource::JsonPointer(pointer)))
        }
        Some(IdempotencyKey::JsonPointer(pointer)) => Err(field(
            "idempotencyKey.jsonPointer",
            format!("{pointer:?} must start with '/', like /id or /data/id"),
        )),
    }
}

/// Loads every key file in a mounted Secret directory. The message never holds key bytes.
fn load_keys(scheme: Scheme, dir: &Path) -> Result<Vec<SigningKey>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "cannot read {}: {e}; mount the endpoint's signing Secret there",
            dir.display()
        )
    })?;
    let mut keys = Vec::new();
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        names.push((name, entry.path()));
    }
    names.sort();
    for (name, path) in names {
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
        let key = SigningKey::new(scheme, name.clone(), &bytes)
            .map_err(|e| format!("key file {}: {e}", path.display()))?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(format!(
            "{} holds no key file; the signing Secret must have at least one key",
            dir.display()
        ));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests;
