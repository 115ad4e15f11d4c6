//! Leader election on a `coordination.k8s.io` Lease (`kube-lease-manager`): only the holder
//! runs the controller; on losing the Lease the controller is stopped before anything else
//! happens, and a standby takes over once the Lease expires (at most its duration after the
//! last renewal). On shutdown the Lease is released so a standby need not wait.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::LeaderConfig;
use crate::metrics::Metrics;

/// Retry delay when the Lease cannot be created or read at start.
const START_RETRY: Duration = Duration::from_secs(2);
/// Time allowed to release the Lease on shutdown.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `work` while this replica holds the Lease, until `shutdown`. `work` gets a token
/// cancelled when leadership is lost (or on shutdown) and must return soon after.
pub async fn lead<F, Fut>(
    client: Client,
    config: &LeaderConfig,
    identity: &str,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    work: F,
) where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let seconds = config.lease_duration.as_secs().max(3);
    let manager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
            .with_namespace(&config.lease_namespace)
            .with_identity(identity)
            .with_duration(seconds)
            // Renew when a third of the lease is left: two chances before it lapses.
            .with_grace((seconds / 3).max(1))
            .build()
            .await;
        match built {
            Ok(manager) => break manager,
            Err(error) => {
                tracing::warn!(%error, lease = %config.lease_name, "cannot use the Lease; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(START_RETRY) => {}
                }
            }
        }
    };
    let (mut leading, manager_task) = manager.watch().await;
    let mut running: Option<(CancellationToken, JoinHandle<()>)> = None;
    loop {
        let is_leader = *leading.borrow_and_update();
        if is_leader && running.is_none() {
            tracing::info!(%identity, lease = %config.lease_name, "became leader; starting the controller");
            metrics.set_leader(true);
            let token = shutdown.child_token();
            running = Some((token.clone(), tokio::spawn(work(token))));
        } else if !is_leader && let Some((token, task)) = running.take() {
            tracing::warn!(%identity, "lost the Lease; stopping the controller");
            token.cancel();
            let _ = task.await;
            metrics.set_leader(false);
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = leading.changed() => if changed.is_err() {
                // The lease task ended on its own: without it this replica could neither lead
                // nor know it does not. Stop the process; Kubernetes starts a fresh one.
                tracing::error!("leader election stopped; shutting down");
                shutdown.cancel();
                break;
            },
        }
    }
    if let Some((token, task)) = running.take() {
        token.cancel();
        let _ = task.await;
        metrics.set_leader(false);
    }
    // Closing the channel makes the manager release the Lease.
    drop(leading);
    match tokio::time::timeout(RELEASE_TIMEOUT, manager_task).await {
        Ok(Ok(Ok(_))) => tracing::info!("released the Lease"),
        Ok(Ok(Err(error))) => tracing::warn!(%error, "releasing the Lease"),
        Ok(Err(error)) => tracing::warn!(%error, "the lease task failed"),
        Err(_) => {
            tracing::warn!("releasing the Lease timed out; a standby takes over when it expires");
        }
    }
}
