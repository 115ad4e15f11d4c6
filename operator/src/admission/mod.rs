//! The mutating admission webhook that injects the sidecar. (Interface placeholder: the
//! injection work replaces this module; the operator's `run` already calls [`run`].)

use tokio_util::sync::CancellationToken;

/// Flags of the admission webhook, flattened into `hookguard-operator run`.
#[derive(Debug, Clone, clap::Args)]
pub struct AdmissionArgs {
    /// Address the admission webhook serves HTTPS on.
    #[arg(long, env = "HOOKGUARD_WEBHOOK_LISTEN", default_value = "0.0.0.0:9443")]
    pub webhook_listen: String,
}

/// Serves the admission webhook until `shutdown`.
pub async fn run(_args: AdmissionArgs, _client: kube::Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    shutdown.cancelled().await;
    Ok(())
}
