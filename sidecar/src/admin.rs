//! The admin port: `/healthz` (the process serves; it is bound only after the config and keys
//! are loaded, so it is also the startup probe), `/readyz` (not draining, and the store
//! answers — or every endpoint may forward without it — and can make queued deliveries as
//! durable as their endpoints ask), `/metrics`; and for loopback clients only, `/queue`
//! ([`crate::queue::admin`]), `/keys` (the loaded keys' IDs and fingerprints) and
//! `/deliveries` (the [`crate::delivery_log`]), as [`hookguard_api::admin`] defines them.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

use hookguard_api::StoreUnavailable;
use hookguard_api::admin::{
    DeliveryPage, EndpointKeys, LoadedKey, MAX_PAGE, PATH_DELIVERIES, PATH_KEYS, SidecarKeys,
};

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
    let queue = path == "/queue" || path.starts_with("/queue/");
    let loopback_only = queue || path == PATH_KEYS || path == PATH_DELIVERIES;
    // Canonical: a dual-stack listener sees 127.0.0.1 as ::ffff:127.0.0.1.
    if loopback_only && !peer.ip().to_canonical().is_loopback() {
        return text(
            StatusCode::FORBIDDEN,
            format!(
                "{} is served to loopback clients only: use kubectl port-forward\n",
                if queue { "the queue" } else { path }
            ),
        );
    }
    if queue {
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
        PATH_KEYS => json(StatusCode::OK, &keys(sidecar)),
        PATH_DELIVERIES => deliveries(sidecar, request.uri().query()).await,
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

/// `GET /keys`: every endpoint's keys as loaded, by name.
fn keys(sidecar: &Sidecar) -> SidecarKeys {
    let routes = sidecar.routes();
    let mut endpoints: Vec<EndpointKeys> = routes
        .endpoints()
        .map(|endpoint| EndpointKeys {
            name: endpoint.name.clone(),
            keys: endpoint
                .verifier
                .keys()
                .iter()
                .map(|key| LoadedKey {
                    id: key.id().to_owned(),
                    fingerprint: key.fingerprint().to_owned(),
                })
                .collect(),
        })
        .collect();
    endpoints.sort_by(|a, b| a.name.cmp(&b.name));
    SidecarKeys {
        instance: sidecar.delivery_log().instance().to_owned(),
        endpoints,
    }
}

/// `GET /deliveries?endpoint=<name>&after=<cursor>&limit=<n>`.
async fn deliveries(sidecar: &Sidecar, query: Option<&str>) -> Response<Full<Bytes>> {
    let param = |name: &str| {
        query?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then(|| percent_decode(value))
        })
    };
    let error = |status, message: String| json(status, &serde_json::json!({"error": message}));
    let Some(name) = param("endpoint").filter(|n| !n.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "name the endpoint: /deliveries?endpoint=<name>".into(),
        );
    };
    let limit = match param("limit") {
        None => MAX_PAGE,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n >= 1 => n.min(MAX_PAGE),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("limit must be a whole number from 1 to {MAX_PAGE}, not {text:?}"),
                );
            }
        },
    };
    let routes = sidecar.routes();
    let Some(endpoint) = routes.endpoints().find(|e| e.name == name) else {
        let mut names: Vec<&str> = routes.endpoints().map(|e| e.name.as_str()).collect();
        names.sort_unstable();
        return error(
            StatusCode::NOT_FOUND,
            format!("this sidecar serves no endpoint {name:?}; it serves {names:?}"),
        );
    };
    let after = param("after");
    let page: Result<DeliveryPage, _> = sidecar
        .delivery_log()
        .page(sidecar.store(), endpoint, after.as_deref(), limit)
        .await;
    match page {
        Ok(page) => json(StatusCode::OK, &page),
        Err(failure) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{failure}; try again once the store answers (/readyz)"),
        ),
    }
}

/// `%XX` and `+` decoded; a malformed escape is kept as it is.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, byte) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
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

    #[tokio::test]
    async fn keys_and_deliveries_are_served_to_loopback_peers_only() {
        let sidecar = sidecar();
        for path in ["/keys", "/deliveries?endpoint=e"] {
            for peer in [
                "10.0.0.7:5000",
                "[2001:db8::7]:5000",
                "[::ffff:10.0.0.7]:5000",
            ] {
                let (status, body) = call(&sidecar, Method::GET, path, peer).await;
                assert_eq!(status, 403, "{path} from {peer}: {body}");
                assert!(body.contains("kubectl port-forward"), "{body}");
            }
            for peer in ["127.0.0.1:5000", "[::1]:5000", "[::ffff:127.0.0.1]:5000"] {
                let (status, body) = call(&sidecar, Method::GET, path, peer).await;
                assert_eq!(status, 200, "{path} from {peer}: {body}");
            }
        }
        let (_, body) = call(&sidecar, Method::GET, "/keys", "127.0.0.1:5000").await;
        let keys: SidecarKeys = serde_json::from_str(&body).unwrap();
        assert_eq!(keys.endpoints[0].name, "e");
        assert_eq!(keys.endpoints[0].keys[0].id, "k1");
        assert_eq!(
            keys.endpoints[0].keys[0].fingerprint,
            hookguard_api::admin::key_fingerprint(b"service-test-secret")
        );
        let (status, body) = call(
            &sidecar,
            Method::GET,
            "/deliveries?endpoint=x",
            "127.0.0.1:5000",
        )
        .await;
        assert_eq!(status, 404, "{body}");
        let (status, body) = call(&sidecar, Method::GET, "/deliveries", "127.0.0.1:5000").await;
        assert_eq!(status, 400, "{body}");
    }

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(percent_decode("1-0%2F7"), "1-0/7");
        assert_eq!(percent_decode("a+b%zz%4"), "a b%zz%4");
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
