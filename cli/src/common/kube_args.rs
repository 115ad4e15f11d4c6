//! kubectl's connection flags, mapped onto kube's config loading the way kubectl reads them:
//! `--kubeconfig` (else `$KUBECONFIG`, else `~/.kube/config`, else in-cluster),
//! `--context`/`--cluster`/`--user`, `--as`/`--as-group`, `--request-timeout`, `-n`, `-A`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The flags.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Cluster options (as kubectl's)")]
pub struct KubeArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then the
    /// in-cluster service account).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The kubeconfig cluster to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub cluster: Option<String>,
    /// The kubeconfig user to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,
    /// The namespace (default: the context's, else `default`).
    #[arg(short, long, global = true, value_name = "NAME")]
    pub namespace: Option<String>,
    /// Every namespace, where a command lists things.
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
    /// Act as this user (impersonation).
    #[arg(long = "as", global = true, value_name = "USER")]
    pub as_user: Option<String>,
    /// Act as this group (impersonation; repeat for several).
    #[arg(long = "as-group", global = true, value_name = "GROUP")]
    pub as_group: Vec<String>,
    /// How long one API request may take, e.g. `30s` (default: no limit).
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub request_timeout: Option<Duration>,
}

impl KubeArgs {
    /// The client config these flags select.
    pub async fn config(&self) -> anyhow::Result<Config> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            cluster: self.cluster.clone(),
            user: self.user.clone(),
        };
        let mut config = if let Some(path) = &self.kubeconfig {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("reading --kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(file, &options)
                .await
                .with_context(|| format!("loading --kubeconfig {}", path.display()))?
        } else if self.context.is_some() || self.cluster.is_some() || self.user.is_some() {
            Config::from_kubeconfig(&options)
                .await
                .context("loading the kubeconfig")?
        } else {
            Config::infer().await.context(
                "no cluster to talk to: set --kubeconfig or $KUBECONFIG, or run in a pod",
            )?
        };
        if let Some(user) = &self.as_user {
            config.auth_info.impersonate = Some(user.clone());
        }
        if !self.as_group.is_empty() {
            config.auth_info.impersonate_groups = Some(self.as_group.clone());
        }
        if let Some(timeout) = self.request_timeout {
            config.read_timeout = Some(timeout);
            config.write_timeout = Some(timeout);
            config.connect_timeout = Some(timeout);
        }
        Ok(config)
    }

    /// A client and the namespace to work in (`-n`, else the context's).
    pub async fn client(&self) -> anyhow::Result<(Client, String)> {
        let config = self.config().await?;
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).context("building the Kubernetes client")?;
        Ok((client, namespace))
    }
}

/// A duration as kubectl and Kubernetes write them: `500ms`, `30s`, `5m`, `1h30m`; a bare
/// number is seconds (as kubectl's `--request-timeout`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    hookguard_api::units::parse_duration(text)
        .map_err(|error| format!("{error} (write it like 500ms, 30s, 5m or 1h30m)"))
}
