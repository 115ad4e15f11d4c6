//! Work that outlives the request that started it: late app answers and commit retries.
//!
//! Its own module because both sides use it: [`server`](crate::server) creates it, drains it
//! on graceful shutdown and kills it on abort; [`forward`](crate::forward) spawns into it.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Work that outlives a request (late app answers, commit retries): tracked, so graceful
/// shutdown waits for it, and killable, so an abort drops it like a crash would.
#[derive(Debug, Clone, Default)]
pub struct Background {
    tasks: TaskTracker,
    kill: CancellationToken,
}

impl Background {
    /// Spawns `work`; it ends early if the sidecar is aborted.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        let kill = self.kill.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = work => {}
                () = kill.cancelled() => {}
            }
        });
    }

    /// Stops accepting new work and waits for what runs.
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Drops all running work at once.
    pub fn kill(&self) {
        self.kill.cancel();
    }

    /// Cancelled when the sidecar is aborted.
    pub fn killed(&self) -> &CancellationToken {
        &self.kill
    }
}
