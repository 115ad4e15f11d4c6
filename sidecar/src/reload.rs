//! Hot reload of endpoint files and signing keys.
//!
//! Kubernetes updates a mounted ConfigMap or Secret by writing a new hidden directory and
//! swapping the `..data` symlink; a watch on a file sees nothing, so the watches are on the
//! directories (the config directory recursively, each secret directory), and any change
//! reloads everything. SIGHUP reloads too. A bad load keeps the last good configuration,
//! logs every problem, and sets `hookguard_config_last_reload_ok` to 0.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::load_endpoints;
use crate::service::Sidecar;

/// Changes arriving within this pause are handled by one reload (a Secret swap touches
/// several entries).
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Reloads from `config_dir` now; on failure the current endpoints stay in force.
pub async fn reload(sidecar: &Sidecar, config_dir: &Path) -> bool {
    let dir = config_dir.to_owned();
    let loaded = tokio::task::spawn_blocking(move || load_endpoints(&dir)).await;
    match loaded {
        Ok(Ok(endpoints)) => {
            sidecar.replace_endpoints(&endpoints);
            tracing::info!(endpoints = endpoints.len(), "configuration reloaded");
            true
        }
        Ok(Err(errors)) => {
            for error in &errors.0 {
                tracing::error!(%error, "configuration reload failed; keeping the last good configuration");
            }
            sidecar.metrics().reload(false, 0);
            false
        }
        Err(error) => {
            tracing::error!(%error, "configuration reload task failed; keeping the last good configuration");
            sidecar.metrics().reload(false, 0);
            false
        }
    }
}

/// Watches the config and secret directories and reloads on change until `stop`.
pub fn spawn(
    sidecar: Arc<Sidecar>,
    config_dir: PathBuf,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, notify::Error> {
    let (changed_tx, mut changed_rx) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            // A full channel already means "reload pending".
            let _ = changed_tx.try_send(());
        }
    })?;
    watcher.watch(&config_dir, RecursiveMode::Recursive)?;
    let mut secret_watches = secret_dirs(&sidecar);
    for dir in &secret_watches {
        watch_dir(&mut watcher, dir);
    }
    Ok(tokio::spawn(async move {
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let hup = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => break,
                Some(()) = changed_rx.recv() => tokio::time::sleep(DEBOUNCE).await,
                Some(()) = hup => {}
            }
            while changed_rx.try_recv().is_ok() {}
            if reload(&sidecar, &config_dir).await {
                let now = secret_dirs(&sidecar);
                for dir in secret_watches.difference(&now) {
                    let _ = watcher.unwatch(dir);
                }
                for dir in now.difference(&secret_watches) {
                    watch_dir(&mut watcher, dir);
                }
                secret_watches = now;
            }
        }
    }))
}

fn secret_dirs(sidecar: &Sidecar) -> BTreeSet<PathBuf> {
    sidecar
        .routes()
        .endpoints()
        .map(|e| e.secret_dir.clone())
        .collect()
}

fn watch_dir(watcher: &mut notify::RecommendedWatcher, dir: &Path) {
    if let Err(error) = watcher.watch(dir, RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), %error, "cannot watch the secret directory; key changes there need a SIGHUP");
    }
}
