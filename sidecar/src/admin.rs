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
        // Canonical: a dual-stack listener sees 127.0.0.1 as ::ffff:127.0.0.1.
        if !peer.ip().to_canonical().is_loopback() {
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
    let mut refused: Vec<&str> = routes
        .endpoints()
        .filter(|e| e.queued() && !promise.satisfies(e.delivery.durability))
        .map(|e| e.name.as_str())
        .collect();
    if !refused.is_empty() {
        refused.sort_unstable();
        if promise == Promise::Unknown {
            return Err(format!(
                "queue mode for {refused:?}: the store's durability is not known yet (it is checked when the store connects)"
            ));
        }
        return Err(format!(
            "queue mode with durability Disk for {refused:?}, but the store keeps deliveries {promise}; \
             make Redis fsync (appendonly yes + appendfsync always, or Redis/Valkey 7.2+ with AOF) \
             or accept the risk with spec.delivery.durability: Memory"
        ));
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

#[cfg(test)]
mod tests {
    //! The loopback guard of `/queue`, called with the peer address the admin listener would
    //! pass, on the request-path tests' sidecar (in-memory store).

    use std::time::Duration;

    use http_body_util::BodyExt;
    use serde_json::json;

    use super::*;

    fn sidecar() -> Sidecar {
        crate::service::tests::sidecar_with(
            json!({
                "name": "e", "endpointId": "e1", "path": "/hook", "scheme": "Generic",
                "upstream": {"port": 9},
            }),
            Duration::from_secs(5),
        )
    }

    /// Status and body of `method path` from `peer`.
    async fn call(sidecar: &Sidecar, method: Method, path: &str, peer: &str) -> (u16, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        let response = handle(sidecar, &request, peer.parse().unwrap()).await;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    const QUEUE_REQUESTS: [(Method, &str); 5] = [
        (Method::GET, "/queue"),
        (Method::GET, "/queue/x/dead"),
        (Method::GET, "/queue/e/dead/d1"),
        (Method::POST, "/queue/e/dead/replay?rate=10"),
        (Method::DELETE, "/queue/e/dead"),
    ];

    #[tokio::test]
    async fn the_queue_refuses_a_peer_off_the_pod_and_names_port_forward() {
        let sidecar = sidecar();
        for peer in ["10.0.0.7:5000", "[2001:db8::7]:5000"] {
            for (method, path) in QUEUE_REQUESTS {
                let (status, body) = call(&sidecar, method.clone(), path, peer).await;
                assert_eq!(status, 403, "{method} {path} from {peer}: {body}");
                assert!(
                    body.contains("kubectl port-forward"),
                    "{method} {path} from {peer}: {body}"
                );
            }
        }
        // The rest of the admin port stays open to probes and scrapers off the pod.
        for path in ["/healthz", "/readyz", "/metrics"] {
            let (status, body) = call(&sidecar, Method::GET, path, "10.0.0.7:5000").await;
            assert_eq!(status, 200, "{path}: {body}");
        }
        // Only `/queue` and what is under it is guarded: a look-alike path is no queue request.
        let (status, _) = call(&sidecar, Method::GET, "/queueish", "10.0.0.7:5000").await;
        assert_eq!(status, 404);
    }

    #[tokio::test]
    async fn the_queue_answers_a_loopback_peer() {
        let sidecar = sidecar();
        for peer in ["127.0.0.1:5000", "127.8.9.10:5000", "[::1]:5000"] {
            let (status, body) = call(&sidecar, Method::GET, "/queue", peer).await;
            assert_eq!(status, 200, "{peer}: {body}");
            let overview: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(overview["endpoints"][0]["name"], "e", "{body}");
            let (status, body) = call(&sidecar, Method::GET, "/queue/x/dead", peer).await;
            assert_eq!(
                (status, body.contains(r#"serves no endpoint \"x\""#)),
                (404, true),
                "{peer}: {body}"
            );
            for (method, path) in QUEUE_REQUESTS {
                let (status, body) = call(&sidecar, method.clone(), path, peer).await;
                assert_ne!(status, 403, "{method} {path} from {peer}: {body}");
            }
        }
    }

    /// With `--admin-listen [::]:9881` (a dual-stack socket), a client of 127.0.0.1, such as
    /// `kubectl port-forward`, arrives as the IPv4-mapped `::ffff:127.0.0.1`: a loopback
    /// client all the same.
    #[tokio::test]
    async fn the_queue_answers_a_loopback_peer_of_a_dual_stack_listener() {
        let sidecar = sidecar();
        let (status, body) = call(&sidecar, Method::GET, "/queue", "[::ffff:127.0.0.1]:5000").await;
        assert_eq!(status, 200, "{body}");
        let (status, _) = call(&sidecar, Method::GET, "/queue", "[::ffff:10.0.0.7]:5000").await;
        assert_eq!(
            status, 403,
            "an IPv4-mapped address off the pod is still refused"
        );
    }
}
