//! The Hookguard operator.
//!
//! [`controller`] reconciles each `WebhookEndpoint` into its signing Secret and sidecar
//! ConfigMap (leader only, see [`leader`]); [`admission`] serves the mutating webhook that
//! injects the sidecar (every replica). [`crdgen`] renders the CRD. [`start`] runs the
//! controller side in-process, as `hookguard-operator run` and the tests do.

pub mod admission;
pub mod certs;
pub mod config;
pub mod controller;
pub mod crdgen;
pub mod leader;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kube::Client;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{OperatorConfig, RunArgs};
use metrics::Metrics;

/// Starting the operator failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The metrics server could not start.
    #[error("starting the metrics server")]
    Metrics(#[from] metrics::ServeError),
}

/// A running operator (the controller side).
#[derive(Debug)]
pub struct Running {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_addr: SocketAddr,
    /// The metrics (and the leader state).
    pub metrics: Arc<Metrics>,
    task: JoinHandle<()>,
}

impl Running {
    /// Waits until the operator has stopped (after its shutdown token was cancelled).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Binds the metrics address and starts the controller (under leader election when
/// configured). Stops when `shutdown` is cancelled.
pub async fn start(
    config: OperatorConfig,
    client: Client,
    shutdown: CancellationToken,
) -> Result<Running, RunError> {
    let metrics = Arc::new(Metrics::default());
    let (metrics_addr, server) = metrics::serve(
        config.metrics_listen,
        Arc::clone(&metrics),
        client.clone(),
        shutdown.clone(),
    )
    .await?;
    tracing::info!(%metrics_addr, identity = %config.identity, "serving /metrics, /healthz, /readyz");

    let task = {
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let work = |token: CancellationToken| {
                controllers(client.clone(), &config, Arc::clone(&metrics), token)
            };
            if let Some(leader) = &config.leader {
                leader::lead(
                    client.clone(),
                    leader,
                    &config.identity,
                    Arc::clone(&metrics),
                    shutdown.clone(),
                    work,
                )
                .await;
            } else {
                metrics.set_leader(true);
                work(shutdown.clone()).await;
            }
            let _ = server.await;
        })
    };
    Ok(Running {
        metrics_addr,
        metrics,
        task,
    })
}

/// [`start`], then waits until it has stopped.
pub async fn run_with(
    config: OperatorConfig,
    client: Client,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    start(config, client, shutdown).await?.wait().await;
    Ok(())
}

/// One controller per namespace (kube-runtime watches one namespace or all), or one for all.
fn controllers(
    client: Client,
    config: &OperatorConfig,
    metrics: Arc<Metrics>,
    token: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let context = Arc::new(controller::Context::new(
        client.clone(),
        Arc::clone(&metrics),
        &config.identity,
    ));
    let total = scopes.len();
    let synced = Arc::new(AtomicUsize::new(0));
    let runs = scopes.into_iter().map(move |scope| {
        let synced = Arc::clone(&synced);
        let metrics = Arc::clone(&metrics);
        controller::run(
            client.clone(),
            scope,
            Arc::clone(&context),
            token.clone(),
            move || {
                if synced.fetch_add(1, Ordering::SeqCst) + 1 == total {
                    metrics.set_synced(true);
                }
            },
        )
    });
    async move {
        futures::future::join_all(runs).await;
    }
}
