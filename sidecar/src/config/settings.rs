//! Process settings from flags or environment: [`Args`] → [`Settings`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use hookguard_api::names::env;
use hookguard_api::units::{parse_duration, parse_size};
use hookguard_api::validation::{self, StoreError, StoreKind};

use crate::dedup::{MemoryLimits, RedisOptions};
use crate::delivery_log::LogSettings;

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
    /// Delivery log (`GET /deliveries`): most records kept per endpoint, shared by the
    /// replicas in Redis (trimmed approximately there); `0` turns the log off.
    #[arg(long, env = env::DELIVERY_LOG_MAX_RECORDS, default_value_t = 10_000)]
    pub delivery_log_max_records: usize,
    /// Delivery log: oldest record kept, e.g. `24h`.
    #[arg(long, env = env::DELIVERY_LOG_MAX_AGE, default_value = "24h")]
    pub delivery_log_max_age: String,
    /// This sidecar's name in the delivery log and `/keys`: the pod name (the injected
    /// container gets it from the downward API); unset, `<host name>-<process ID>`.
    #[arg(long, env = env::POD_NAME)]
    pub instance: Option<String>,
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
    /// The delivery log's bounds and this sidecar's instance name.
    pub delivery_log: LogSettings,
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

    /// [`Settings::parse`], then the one file a flag names: the Redis CA.
    fn try_from(args: Args) -> Result<Self, Self::Error> {
        let mut settings = Settings::parse(&args)?;
        if let (StoreSettings::Redis(options), Some(path)) =
            (&mut settings.store, &args.store_ca_file)
        {
            options.ca_pem = Some(std::fs::read(path).map_err(|e| SettingsError {
                flag: "store-ca-file",
                env: env::STORE_CA_FILE,
                problem: format!(
                    "cannot read {}: {e}; mount the Redis CA certificate there",
                    path.display()
                ),
            })?);
        }
        Ok(settings)
    }
}

impl Settings {
    /// Parses and checks every flag; no IO (a `--store-ca-file` is read by
    /// [`Settings::try_from`]).
    pub fn parse(args: &Args) -> Result<Settings, SettingsError> {
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
        let store = store_settings(args)?;
        Ok(Settings {
            listen: addr("listen", env::LISTEN, &args.listen)?,
            admin_listen: addr("admin-listen", env::ADMIN_LISTEN, &args.admin_listen)?,
            config_dir: args.config_dir.clone(),
            store,
            store_timeout: duration("store-timeout", env::STORE_TIMEOUT, &args.store_timeout)?,
            upstream_host: args.upstream_host.clone(),
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
            delivery_log: LogSettings {
                max_records: args.delivery_log_max_records,
                max_age: duration(
                    "delivery-log-max-age",
                    env::DELIVERY_LOG_MAX_AGE,
                    &args.delivery_log_max_age,
                )?,
                instance: args
                    .instance
                    .as_deref()
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .map_or_else(crate::delivery_log::default_instance, str::to_owned),
            },
        })
    }
}

/// The store settings from `--store` and its companions (the CA file is read later).
fn store_settings(args: &Args) -> Result<StoreSettings, SettingsError> {
    let cluster = args.store_mode == StoreMode::Cluster;
    match validation::store(&args.store, cluster) {
        Err(error @ StoreError::NotAStore) => Err(SettingsError {
            flag: "store",
            env: env::STORE,
            problem: format!("{error} (several, comma-separated, only with --store-mode cluster)"),
        }),
        Err(error @ StoreError::ClusterNeedsRedis) => Err(SettingsError {
            flag: "store-mode",
            env: env::STORE_MODE,
            problem: format!("{error}: set --store to redis://host:port"),
        }),
        Ok(StoreKind::Memory) => {
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
            Ok(StoreSettings::Memory(MemoryLimits {
                max_entries: args.memory_max_entries,
                max_bytes,
            }))
        }
        Ok(StoreKind::Redis) => {
            if args.store_ca_file.is_some() && !args.store.starts_with("rediss://") {
                return Err(SettingsError {
                    flag: "store-ca-file",
                    env: env::STORE_CA_FILE,
                    problem: "a CA only applies to TLS: use a rediss:// URL in --store".into(),
                });
            }
            Ok(StoreSettings::Redis(RedisOptions {
                url: args.store.clone(),
                password: args.store_password.clone(),
                ca_pem: None,
                cluster,
            }))
        }
    }
}
