//! `hookguard-operator run`'s flags and environment, parsed into a typed [`OperatorConfig`]
//! before anything binds a port or calls the API server.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hookguard_api::units::parse_duration;

/// Where a pod finds its own namespace (the ServiceAccount volume).
const IN_CLUSTER_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// Below this the renewals (every third of the lease) would hammer the API server.
const MIN_LEASE: Duration = Duration::from_secs(3);

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The controller's flags (the admission webhook's are flattened next to them in `main`).
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Namespace(s) to reconcile, repeated or comma-separated; none: all namespaces.
    #[arg(
        long = "namespace",
        env = "HOOKGUARD_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "HOOKGUARD_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,
    /// Run the controller only while holding a Lease (for several replicas).
    #[arg(long, env = "HOOKGUARD_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the Lease.
    #[arg(
        long,
        env = "HOOKGUARD_LEASE_NAME",
        default_value = "hookguard-operator"
    )]
    pub lease_name: String,
    /// Namespace of the Lease; in a pod, its own namespace by default.
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease and in Events; default: the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long a Lease stays valid without renewal: the longest a standby waits to take over
    /// from a dead leader. Renewed every third of it.
    #[arg(long, env = "HOOKGUARD_LEASE_DURATION", default_value = "15s")]
    pub lease_duration: String,
    /// Log format.
    #[arg(long, env = "HOOKGUARD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `hookguard_operator=debug,kube=info`.
    #[arg(long, env = "HOOKGUARD_LOG", default_value = "info")]
    pub log: String,
}

/// Leader election settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderConfig {
    /// The Lease's name.
    pub lease_name: String,
    /// The Lease's namespace.
    pub lease_namespace: String,
    /// Validity of the Lease after a renewal, whole seconds.
    pub lease_duration: Duration,
}

/// The operator's typed configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorConfig {
    /// Namespaces to reconcile; empty: all.
    pub namespaces: Vec<String>,
    /// Metrics and probes address.
    pub metrics_listen: SocketAddr,
    /// `None`: no leader election, this replica always runs the controller.
    pub leader: Option<LeaderConfig>,
    /// This replica's identity.
    pub identity: String,
}

/// A flag value that cannot work.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `--lease-duration` does not parse or is too short.
    LeaseDuration(String),
    /// Leader election on, but no namespace for the Lease.
    NoLeaseNamespace,
    /// An empty namespace name in the list.
    EmptyNamespace,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--{}: {}", self.flag(), self.problem())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// The flag at fault, without its dashes.
    pub fn flag(&self) -> &'static str {
        match self {
            ConfigError::LeaseDuration(_) => "lease-duration",
            ConfigError::NoLeaseNamespace => "lease-namespace",
            ConfigError::EmptyNamespace => "namespace",
        }
    }

    /// What is wrong and how to fix it, without the flag.
    pub fn problem(&self) -> String {
        match self {
            ConfigError::LeaseDuration(problem) => problem.clone(),
            ConfigError::NoLeaseNamespace => "required with leader election outside a pod; \
                set it, or pass --leader-election=false for a single replica"
                .to_owned(),
            ConfigError::EmptyNamespace => {
                "an empty namespace name; list names separated by commas".to_owned()
            }
        }
    }
}

impl TryFrom<RunArgs> for OperatorConfig {
    type Error = ConfigError;

    fn try_from(args: RunArgs) -> Result<Self, Self::Error> {
        if args
            .namespaces
            .iter()
            .any(|namespace| namespace.trim().is_empty())
        {
            return Err(ConfigError::EmptyNamespace);
        }
        let identity = args
            .identity
            .filter(|id| !id.is_empty())
            .unwrap_or_else(hostname);
        let leader = if args.leader_election {
            let lease_duration = parse_duration(&args.lease_duration)
                .map_err(|error| ConfigError::LeaseDuration(error.to_string()))?;
            if lease_duration < MIN_LEASE || lease_duration.subsec_nanos() != 0 {
                return Err(ConfigError::LeaseDuration(format!(
                    "{:?} must be whole seconds, at least 3s",
                    args.lease_duration
                )));
            }
            let lease_namespace = args
                .lease_namespace
                .filter(|namespace| !namespace.is_empty())
                .or_else(|| in_cluster_namespace(Path::new(IN_CLUSTER_NAMESPACE)))
                .ok_or(ConfigError::NoLeaseNamespace)?;
            Some(LeaderConfig {
                lease_name: args.lease_name,
                lease_namespace,
                lease_duration,
            })
        } else {
            None
        };
        Ok(OperatorConfig {
            namespaces: args.namespaces,
            metrics_listen: args.metrics_listen,
            leader,
            identity,
        })
    }
}

fn in_cluster_namespace(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|namespace| !namespace.is_empty())
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("hookguard-operator-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> Result<OperatorConfig, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("op").chain(args.iter().copied())).unwrap();
        OperatorConfig::try_from(cli.run)
    }

    #[test]
    fn the_flags_are_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_become_a_typed_config() {
        let config = parse(&[
            "--namespace",
            "a,b",
            "--namespace",
            "c",
            "--lease-namespace",
            "ops",
            "--identity",
            "me",
            "--lease-duration",
            "6s",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .unwrap();
        assert_eq!(config.namespaces, ["a", "b", "c"]);
        assert_eq!(config.identity, "me");
        let leader = config.leader.unwrap();
        assert_eq!(leader.lease_namespace, "ops");
        assert_eq!(leader.lease_name, "hookguard-operator");
        assert_eq!(leader.lease_duration, Duration::from_secs(6));
    }

    #[test]
    fn leader_election_needs_a_namespace_outside_a_pod() {
        if Path::new(IN_CLUSTER_NAMESPACE).exists() {
            return;
        }
        assert_eq!(parse(&[]), Err(ConfigError::NoLeaseNamespace));
        let single = parse(&["--leader-election=false"]).unwrap();
        assert_eq!(single.leader, None);
        assert!(single.namespaces.is_empty());
    }

    #[test]
    fn a_bad_lease_duration_is_refused() {
        let err = parse(&["--lease-namespace", "x", "--lease-duration", "1500ms"]).unwrap_err();
        assert!(err.to_string().contains("whole seconds"), "{err}");
    }
}
