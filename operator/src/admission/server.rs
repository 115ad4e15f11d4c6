//! The HTTPS server: TLS with the hot-swappable certificate from [`crate::certs`], HTTP/1.1
//! by hyper, `POST /mutate` to the [`Webhook`], everything else 404. Stops accepting on
//! shutdown and gives open connections a few seconds to finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::handler::Webhook;
use super::manifests::WEBHOOK_PATH;
use crate::certs::CertResolver;

/// Largest `AdmissionReview` accepted: the API server's own request limit is 3 MiB, and a
/// review carries the object once (CREATE has no oldObject).
const MAX_BODY: usize = 3 << 20;
/// Time a connection gets for the TLS handshake, and to send a request head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time open connections get to finish after shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("binding {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// rustls refused the TLS settings.
    #[error("setting up TLS")]
    Tls(#[source] rustls::Error),
}

/// Binds the webhook's address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Bind(addr, e))
}

/// Serves `webhook` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    resolver: Arc<CertResolver>,
    webhook: Arc<Webhook>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(ServeError::Tls)?
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accepting a webhook connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let webhook = webhook.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    super::metrics::metrics().connections.inc();
                    tls
                }
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = service_fn(move |request| {
                let webhook = webhook.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&webhook, request).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT);
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "webhook connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
    Ok(())
}

async fn handle(webhook: &Webhook, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() != WEBHOOK_PATH {
        return plain(StatusCode::NOT_FOUND, "not found");
    }
    if request.method() != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "POST an AdmissionReview");
    }
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "request too large"),
    };
    let answer = webhook.review(&body).await;
    let mut response = Response::new(Full::new(Bytes::from(answer)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}
