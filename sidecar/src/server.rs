//! Binding the two ports and running until shutdown.
//!
//! [`start`] takes validated settings and loaded endpoints, so nothing is bound before the
//! configuration is known to be good. Shutdown stops accepting, lets open connections finish
//! their current request, and waits for background settlements, all within the grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::background::Background;
use crate::config::{Endpoints, Settings, StoreSettings};
use crate::dedup::{Store, StoreError};
use crate::metrics::Metrics;
use crate::service::{ServiceSettings, Sidecar};
use crate::{admin, reload};

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store settings cannot be used.
    #[error("dedup store")]
    Store(#[source] StoreError),
    /// A port cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The config directory cannot be watched.
    #[error("cannot watch the config directory for changes")]
    Watch(#[source] notify::Error),
}

/// A running sidecar.
#[derive(Debug)]
pub struct Running {
    /// The bound webhook address.
    pub addr: SocketAddr,
    /// The bound admin address.
    pub admin_addr: SocketAddr,
    sidecar: Arc<Sidecar>,
    stop: CancellationToken,
    background: Background,
    done: JoinHandle<()>,
}

impl Running {
    /// The shared state (for tests and reloads).
    pub fn sidecar(&self) -> &Arc<Sidecar> {
        &self.sidecar
    }

    /// Begins graceful shutdown.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Stops at once, as a crash would: open connections are dropped mid-request and late
    /// app answers are no longer awaited; claims are neither committed nor released and lapse
    /// with their leases. A second SIGTERM during the drain does this.
    pub fn abort(&self) {
        self.control().abort();
    }

    /// A handle that can stop the sidecar after [`Running::wait`] took it.
    pub fn control(&self) -> Control {
        Control {
            stop: self.stop.clone(),
            background: self.background.clone(),
        }
    }

    /// Waits until shutdown has finished.
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Stops a running sidecar; see [`Running::shutdown`] and [`Running::abort`].
#[derive(Debug, Clone)]
pub struct Control {
    stop: CancellationToken,
    background: Background,
}

impl Control {
    /// Begins graceful shutdown.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Stops at once; see [`Running::abort`].
    pub fn abort(&self) {
        self.background.kill();
        self.stop.cancel();
    }
}

/// Builds the store, binds both ports and starts serving.
pub async fn start(settings: Settings, endpoints: &Endpoints) -> Result<Running, StartError> {
    let metrics = Arc::new(Metrics::new());
    let store = match &settings.store {
        StoreSettings::Memory(limits) => {
            Store::memory(*limits, metrics.memory_evictions(), settings.store_timeout)
        }
        StoreSettings::Redis(options) => {
            Store::redis_with(options, settings.store_timeout).map_err(StartError::Store)?
        }
    };
    let background = Background::default();
    let service_settings = ServiceSettings {
        upstream_host: settings.upstream_host.clone(),
        body_read_timeout: settings.body_read_timeout,
        delivery_log: settings.delivery_log.clone(),
    };
    let sidecar = Arc::new(Sidecar::new(
        endpoints,
        store,
        metrics,
        service_settings,
        background.clone(),
    ));

    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let listener = bind(settings.listen).await?;
    let admin_listener = bind(settings.admin_listen).await?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: settings.listen,
        source,
    })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: settings.admin_listen,
            source,
        })?;

    let stop = CancellationToken::new();
    let watcher = reload::spawn(
        Arc::clone(&sidecar),
        settings.config_dir.clone(),
        stop.clone(),
    )
    .map_err(StartError::Watch)?;
    let admin = tokio::spawn(serve_admin(
        admin_listener,
        Arc::clone(&sidecar),
        stop.clone(),
    ));
    let done = tokio::spawn(serve(
        listener,
        Arc::clone(&sidecar),
        settings,
        stop.clone(),
        background.clone(),
        async move {
            let _ = watcher.await;
            let _ = admin.await;
        },
    ));
    tracing::info!(%addr, %admin_addr, endpoints = endpoints.len(), store = sidecar.store().kind(), "hookguard-sidecar serving");
    Ok(Running {
        addr,
        admin_addr,
        sidecar,
        stop,
        background,
        done,
    })
}

async fn serve(
    listener: TcpListener,
    sidecar: Arc<Sidecar>,
    settings: Settings,
    stop: CancellationToken,
    background: Background,
    others: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(tokio::sync::Semaphore::new(settings.max_connections));
    loop {
        // A permit per connection bounds the bodies buffered before verification; without
        // one the next connection waits in the kernel's backlog.
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let sidecar = Arc::clone(&sidecar);
        let service = service_fn(move |request| {
            let sidecar = Arc::clone(&sidecar);
            async move { Ok::<_, std::convert::Infallible>(sidecar.handle(request, peer).await) }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        let killed = background.killed().clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                result = connection => if let Err(error) = result {
                    tracing::debug!(%error, %peer, "connection ended with an error");
                },
                // Abort: drop the connection mid-request, as a crash would.
                () = killed.cancelled() => {}
            }
        });
    }
    sidecar.start_draining();
    drop(listener);
    let deadline = Instant::now() + settings.shutdown_grace;
    tracing::info!(grace = ?settings.shutdown_grace, "shutting down: finishing open requests");
    let killed = background.killed().clone();
    let drained = async {
        if tokio::time::timeout_at(deadline.into(), graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("grace period ended with connections still open");
        }
        // Queue workers stop taking; what is at the app finishes with the late answers.
        let workers = sidecar.workers().drain();
        tokio::time::timeout_at(deadline.into(), async {
            tokio::join!(background.drain(), workers);
        })
        .await
        .is_ok()
    };
    let finished = tokio::select! {
        finished = drained => finished,
        () = killed.cancelled() => {
            tracing::warn!("aborted: open requests and late app answers dropped");
            true
        }
    };
    if !finished {
        tracing::warn!(
            "grace period ended with late app answers still pending; their claims lapse with their leases"
        );
    }
    others.await;
    tracing::info!("stopped");
}

async fn serve_admin(listener: TcpListener, sidecar: Arc<Sidecar>, stop: CancellationToken) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5));
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let sidecar = Arc::clone(&sidecar);
        let service = service_fn(move |request| {
            let sidecar = Arc::clone(&sidecar);
            async move {
                Ok::<_, std::convert::Infallible>(admin::handle(&sidecar, &request, peer).await)
            }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
