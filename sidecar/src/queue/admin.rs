//! The queue on the admin port: counts, and the dead-letter queue to list, inspect, replay
//! and purge. Served only to loopback clients (`kubectl port-forward`, `kubectl exec`): a
//! dead letter holds the sender's payload, and replay and purge change what the app gets.
//!
//! | request | answer |
//! |---|---|
//! | `GET /queue` | every endpoint of this sidecar with its mode, what the store promises, and its counts |
//! | `GET /queue/<endpoint>/dead?after=<id>&limit=<n>` | dead letters, oldest first, `limit` (default 100, at most 1000) after `after`; `next` is the `after` of the next page |
//! | `GET /queue/<endpoint>/dead/<id>` | one dead letter with its stored request (headers, and the body as UTF-8 or base64) |
//! | `POST /queue/<endpoint>/dead/<id>/replay` | puts it back in the queue with its attempts reset |
//! | `POST /queue/<endpoint>/dead/replay?rate=<n>&limit=<n>` | replays up to `limit` (default 1000) at `rate` per second (default 10, at most 1000), oldest first |
//! | `DELETE /queue/<endpoint>/dead/<id>` | purges it: gone, and its ID is remembered as done for the replay window |
//! | `DELETE /queue/<endpoint>/dead` | purges every dead letter |
//!
//! `<endpoint>` is the `WebhookEndpoint`'s name. Answers are JSON; errors are
//! `{"error": "..."}` with 400, 404 or 503.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use super::decode_headers;
use crate::config::Endpoint;
use crate::service::Sidecar;

/// Most dead letters one page lists, and the default `limit` of a page.
const PAGE_MAX: usize = 1000;
const PAGE_DEFAULT: usize = 100;
/// Most replays per second of a bulk replay, and its default.
const RATE_MAX: u32 = 1000;
const RATE_DEFAULT: u32 = 10;

/// Answers one `/queue` request from a loopback client.
pub async fn handle(
    sidecar: &Sidecar,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Response<Full<Bytes>> {
    let segments: Vec<&str> = path
        .strip_prefix("/queue")
        .unwrap_or(path)
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let query = Query(query);
    let result = match (method, segments.as_slice()) {
        (&Method::GET, []) => return overview(sidecar).await,
        (&Method::GET, [endpoint, "dead"]) => list(sidecar, endpoint, &query).await,
        (&Method::GET, [endpoint, "dead", id]) => inspect(sidecar, endpoint, id).await,
        (&Method::POST, [endpoint, "dead", id, "replay"]) => {
            replay_one(sidecar, endpoint, id).await
        }
        (&Method::POST, [endpoint, "dead", "replay"]) => {
            replay_all(sidecar, endpoint, &query).await
        }
        (&Method::DELETE, [endpoint, "dead", id]) => purge_one(sidecar, endpoint, id).await,
        (&Method::DELETE, [endpoint, "dead"]) => purge_all(sidecar, endpoint).await,
        (_, [] | [_, "dead", ..]) => Err((
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} {path} is not a queue request; see GET /queue"),
        )),
        _ => Err((
            StatusCode::NOT_FOUND,
            format!("no such queue resource: {path}"),
        )),
    };
    match result {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err((status, message)) => json_response(status, &json!({"error": message})),
    }
}

/// A request's query string.
struct Query<'a>(Option<&'a str>);

impl Query<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }

    /// The parameter `name` as a number from 1 to `max`, `default` when absent.
    fn number<T: std::str::FromStr + PartialOrd + From<u8> + fmt::Display + Copy>(
        &self,
        name: &str,
        default: T,
        max: T,
    ) -> Result<T, Failure> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse::<T>()
                .ok()
                .filter(|n| *n >= T::from(1) && *n <= max)
                .ok_or_else(|| {
                    (
                        StatusCode::BAD_REQUEST,
                        format!("{name} must be a whole number from 1 to {max}, not {text:?}"),
                    )
                }),
        }
    }
}

/// An error answer: status and message.
type Failure = (StatusCode, String);

/// `GET /queue/<endpoint>/dead`.
async fn list(sidecar: &Sidecar, name: &str, query: &Query<'_>) -> Result<Value, Failure> {
    let limit = query.number("limit", PAGE_DEFAULT, PAGE_MAX)?;
    let endpoint = endpoint_named(sidecar, name)?;
    let page = sidecar
        .store()
        .dead_letters(&endpoint.endpoint_id, query.get("after"), limit)
        .await
        .map_err(unavailable)?;
    let next = (page.len() == limit)
        .then(|| page.last().map(|d| d.delivery_id.clone()))
        .flatten();
    Ok(json!({"deadLetters": page, "next": next}))
}

/// `GET /queue/<endpoint>/dead/<id>`.
async fn inspect(sidecar: &Sidecar, name: &str, delivery_id: &str) -> Result<Value, Failure> {
    let endpoint = endpoint_named(sidecar, name)?;
    let (dead, delivery) = sidecar
        .store()
        .dead_letter_of(&endpoint.endpoint_id, delivery_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| not_dead(delivery_id))?;
    let headers: Vec<(String, String)> = decode_headers(&delivery.request.headers)
        .unwrap_or_default()
        .iter()
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let (body, encoding) = match std::str::from_utf8(&delivery.request.body) {
        Ok(text) => (text.to_owned(), "utf-8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&delivery.request.body),
            "base64",
        ),
    };
    Ok(json!({
        "deadLetter": dead,
        "request": {
            "path": delivery.request.path_and_query,
            "headers": headers,
            "body": body,
            "bodyEncoding": encoding,
        },
        "replayed": delivery.replayed,
    }))
}

/// `POST /queue/<endpoint>/dead/<id>/replay`.
async fn replay_one(sidecar: &Sidecar, name: &str, delivery_id: &str) -> Result<Value, Failure> {
    let endpoint = endpoint_named(sidecar, name)?;
    let id = &endpoint.endpoint_id;
    if !sidecar
        .store()
        .replay(id, delivery_id)
        .await
        .map_err(unavailable)?
    {
        return Err(not_dead(delivery_id));
    }
    sidecar.workers().wake(id);
    tracing::info!(endpoint = %name, delivery_id, "dead letter replayed");
    Ok(json!({"replayed": [delivery_id]}))
}

/// `POST /queue/<endpoint>/dead/replay`.
async fn replay_all(sidecar: &Sidecar, name: &str, query: &Query<'_>) -> Result<Value, Failure> {
    let rate = query.number("rate", RATE_DEFAULT, RATE_MAX)?;
    let limit = query.number("limit", PAGE_MAX, usize::MAX)?;
    let endpoint = endpoint_named(sidecar, name)?;
    let id = &endpoint.endpoint_id;
    let pause = Duration::from_secs(1) / rate;
    let replayed = each_dead(sidecar, id, limit, Bulk::Replay { pause }).await?;
    tracing::info!(endpoint = %name, count = replayed.len(), "dead letters replayed");
    Ok(json!({"replayed": replayed}))
}

/// `DELETE /queue/<endpoint>/dead/<id>`.
async fn purge_one(sidecar: &Sidecar, name: &str, delivery_id: &str) -> Result<Value, Failure> {
    let endpoint = endpoint_named(sidecar, name)?;
    let purged = sidecar
        .store()
        .purge(&endpoint.endpoint_id, delivery_id, endpoint.window)
        .await
        .map_err(unavailable)?;
    if !purged {
        return Err(not_dead(delivery_id));
    }
    tracing::info!(endpoint = %name, delivery_id, "dead letter purged");
    Ok(json!({"purged": [delivery_id]}))
}

/// `DELETE /queue/<endpoint>/dead`.
async fn purge_all(sidecar: &Sidecar, name: &str) -> Result<Value, Failure> {
    let endpoint = endpoint_named(sidecar, name)?;
    let id = &endpoint.endpoint_id;
    let window = endpoint.window;
    let purged = each_dead(sidecar, id, usize::MAX, Bulk::Purge { window }).await?;
    tracing::info!(endpoint = %name, count = purged.len(), "dead letters purged");
    Ok(json!({"purged": purged}))
}

/// What a bulk request does to each dead letter.
#[derive(Debug, Clone, Copy)]
enum Bulk {
    /// Replay it, then wait `pause` (the rate).
    Replay { pause: Duration },
    /// Purge it, its ID done for `window`.
    Purge { window: Duration },
}

/// Applies `bulk` to the endpoint's dead letters, oldest first, up to `limit`, a page at a
/// time; returns the IDs it applied to. Stops at a page where nothing applied (the list
/// changed under it), so it always ends.
async fn each_dead(
    sidecar: &Sidecar,
    endpoint_id: &str,
    limit: usize,
    bulk: Bulk,
) -> Result<Vec<String>, Failure> {
    let store = sidecar.store();
    let mut done = Vec::new();
    while done.len() < limit {
        let want = (limit - done.len()).min(PAGE_MAX);
        let page = store
            .dead_letters(endpoint_id, None, want)
            .await
            .map_err(unavailable)?;
        let before = done.len();
        for dead in page {
            let id = &dead.delivery_id;
            let applied = match bulk {
                Bulk::Replay { .. } => store.replay(endpoint_id, id).await,
                Bulk::Purge { window } => store.purge(endpoint_id, id, window).await,
            }
            .map_err(unavailable)?;
            if !applied {
                continue;
            }
            if let Bulk::Replay { pause } = bulk {
                sidecar.workers().wake(endpoint_id);
                tokio::time::sleep(pause).await;
            }
            done.push(dead.delivery_id);
        }
        if done.len() == before {
            break;
        }
    }
    Ok(done)
}

/// `GET /queue`.
async fn overview(sidecar: &Sidecar) -> Response<Full<Bytes>> {
    let routes = sidecar.routes();
    let mut endpoints: Vec<_> = routes.endpoints().collect();
    endpoints.sort_by(|a, b| a.name.cmp(&b.name));
    let promise = sidecar.store().promise();
    let mut out = Vec::new();
    for endpoint in endpoints {
        let stats = sidecar.store().queue_stats(&endpoint.endpoint_id).await;
        out.push(json!({
            "name": endpoint.name,
            "mode": if endpoint.queued() { "Queue" } else { "Sync" },
            "paused": endpoint.delivery.paused,
            "durability": endpoint.delivery.durability.as_str(),
            "stats": match stats {
                Ok(stats) => json!(stats),
                Err(error) => json!({"error": error.to_string()}),
            },
        }));
    }
    json_response(
        StatusCode::OK,
        &json!({
            "store": sidecar.store().kind(),
            "promise": promise.label(),
            "promiseDetail": promise.to_string(),
            "endpoints": out,
        }),
    )
}

/// The endpoint this sidecar serves under `name`.
fn endpoint_named(sidecar: &Sidecar, name: &str) -> Result<Arc<Endpoint>, Failure> {
    let routes = sidecar.routes();
    if let Some(endpoint) = routes.endpoints().find(|e| e.name == name) {
        return Ok(Arc::clone(endpoint));
    }
    let mut names: Vec<&str> = routes.endpoints().map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    Err((
        StatusCode::NOT_FOUND,
        format!("this sidecar serves no endpoint {name:?}; it serves {names:?}"),
    ))
}

#[allow(clippy::needless_pass_by_value)] // Used as `map_err(unavailable)`.
fn unavailable(error: crate::dedup::StoreError) -> Failure {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{error}; try again once the store answers (/readyz)"),
    )
}

fn not_dead(delivery_id: &str) -> Failure {
    (
        StatusCode::NOT_FOUND,
        format!("delivery {delivery_id:?} is not in the dead-letter queue"),
    )
}

fn json_response(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
