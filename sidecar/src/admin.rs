//! The admin port: `/healthz` (the process serves; it is bound only after the config and keys
//! are loaded, so it is also the startup probe), `/readyz` (not draining, and the store
//! answers — or every endpoint may forward without it — and can make queued deliveries as
//! durable as their endpoints ask), `/metrics`, and `/queue` ([`crate::queue::admin`], for
//! loopback clients only).

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

use hookguard_api::StoreUnavailable;

use crate::dedup::DedupStore;
use crate::metrics::StoreOperation;
use crate::queue::Promise;
use crate::service::Sidecar;

/// Answers one admin request from `peer`.
pub async fn handle<B>(
    sidecar: &Sidecar,
    request: &Request<B>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if path == "/queue" || path.starts_with("/queue/") {
        if !peer.ip().is_loopback() {
            return text(
                StatusCode::FORBIDDEN,
                "the queue is served to loopback clients only: use kubectl port-forward\n".into(),
            );
        }
        return crate::queue::admin::handle(sidecar, request.method(), path, request.uri().query())
            .await;
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        );
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match readiness(sidecar).await {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
        },
        "/metrics" => {
            let body = sidecar.metrics().encode(sidecar.store().memory_usage());
            let mut response = text(StatusCode::OK, body);
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

async fn readiness(sidecar: &Sidecar) -> Result<(), String> {
    if sidecar.is_draining() {
        return Err("shutting down".into());
    }
    let routes = sidecar.routes();
    let promise = sidecar.store().promise();
    if promise != Promise::Unknown {
        let mut refused: Vec<&str> = routes
            .endpoints()
            .filter(|e| e.queued() && !promise.satisfies(e.delivery.durability))
            .map(|e| e.name.as_str())
            .collect();
        if !refused.is_empty() {
            refused.sort_unstable();
            return Err(format!(
                "queue mode with durability Disk for {refused:?}, but the store keeps deliveries {promise}; \
                 make Redis fsync (appendonly yes + appendfsync always, or Redis/Valkey 7.2+ with AOF) \
                 or accept the risk with spec.delivery.durability: Memory"
            ));
        }
    }
    if let Err(error) = sidecar.store().ping().await {
        sidecar
            .metrics()
            .store_error(StoreOperation::ping, error.metric_label());
        let all_allow = routes
            .endpoints()
            .all(|e| e.store_unavailable == StoreUnavailable::Allow);
        if !all_allow {
            return Err(format!(
                "dedup store ({}) unavailable: {error}",
                sidecar.store().kind()
            ));
        }
    }
    Ok(())
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
