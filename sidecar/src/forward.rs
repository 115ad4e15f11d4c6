//! Forwarding a verified, claimed delivery to the app, and settling the claim by the app's
//! answer: commit on 2xx (before the 2xx is passed on), release on a definite failure, keep
//! on an ambiguous one.
//!
//! The call to the app runs in its own task, so it outlives the sender's request: when the
//! app is slower than the upstream time-out the sender gets 504 at once, while the task
//! keeps waiting until the claim's lease ends and records a late 2xx as done. If the sender
//! hangs up, the delivery is still settled the same way.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, HOST};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;

use hookguard_api::names::{HEADER_DELIVERY_ID, HEADER_ENDPOINT};

use crate::background::Background;
use crate::config::Endpoint;
use crate::dedup::{Claim, DedupStore, Store};
use crate::metrics::{Metrics, StoreOperation};
use crate::rescue::{Outcome, ProxyBody, answer};
use crate::route::Route;

/// Headers that describe one connection, not the message; never forwarded either way.
const HOP_BY_HOP: [HeaderName; 7] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The app's answer, settled: what happened and what the sender gets.
type Settled = (Outcome, Response<ProxyBody>);

/// Sends deliveries to the app over a pooled keep-alive client.
#[derive(Debug, Clone)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client<HttpConnector, Full<Bytes>>,
    upstream_host: String,
    store: Store,
    metrics: Arc<Metrics>,
    tasks: Background,
}

impl Forwarder {
    /// A forwarder to `upstream_host` (normally `127.0.0.1`).
    pub fn new(
        upstream_host: String,
        store: Store,
        metrics: Arc<Metrics>,
        tasks: Background,
    ) -> Forwarder {
        Forwarder {
            inner: Arc::new(Inner {
                client: upstream_client(),
                upstream_host,
                store,
                metrics,
                tasks,
            }),
        }
    }

    /// Builds the request to the app from the verified request's parts: the same headers
    /// minus hop-by-hop ones and any `x-hookguard-*` the sender set, plus `X-Forwarded-For`,
    /// `X-Forwarded-Proto`, and the documented `X-Hookguard-Delivery-Id` / `-Endpoint`.
    pub fn request(
        &self,
        endpoint: &Endpoint,
        parts: Parts,
        body: Bytes,
        delivery_id: Option<&str>,
        peer: SocketAddr,
    ) -> Result<Request<Full<Bytes>>, http::Error> {
        let path = endpoint
            .upstream_path
            .as_deref()
            .unwrap_or_else(|| parts.uri.path());
        let uri = match parts.uri.query() {
            Some(query) => format!(
                "http://{}:{}{path}?{query}",
                self.inner.upstream_host, endpoint.upstream_port
            ),
            None => format!(
                "http://{}:{}{path}",
                self.inner.upstream_host, endpoint.upstream_port
            ),
        };
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        if headers
            .keys()
            .any(|name| name.as_str().starts_with("x-hookguard-"))
        {
            let spoofed: Vec<HeaderName> = headers
                .keys()
                .filter(|n| n.as_str().starts_with("x-hookguard-"))
                .cloned()
                .collect();
            for name in spoofed {
                headers.remove(name);
            }
        }
        let peer_ip = peer.ip().to_string();
        let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(earlier) => format!("{earlier}, {peer_ip}"),
            None => peer_ip,
        };
        headers.insert(X_FORWARDED_FOR, HeaderValue::try_from(forwarded_for)?);
        if !headers.contains_key(&X_FORWARDED_PROTO) {
            headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        }
        if let Some(delivery_id) = delivery_id {
            headers.insert(HEADER_DELIVERY_ID, HeaderValue::try_from(delivery_id)?);
        }
        headers.insert(
            HEADER_ENDPOINT,
            HeaderValue::try_from(endpoint.name.as_str())?,
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        if !headers.contains_key(HOST) {
            headers.insert(
                HOST,
                HeaderValue::try_from(format!(
                    "{}:{}",
                    self.inner.upstream_host, endpoint.upstream_port
                ))?,
            );
        }
        let mut request = Request::builder()
            .method(parts.method)
            .uri(uri.parse::<Uri>()?)
            .body(Full::new(body))?;
        *request.headers_mut() = headers;
        Ok(request)
    }

    /// Forwards `request` and settles `claim` (absent when the store was skipped under the
    /// Allow policy) by the app's answer.
    pub async fn forward(
        &self,
        route: &Route,
        request: Request<Full<Bytes>>,
        claim: Option<Claim>,
    ) -> Settled {
        let (answer_tx, answer_rx) = oneshot::channel();
        let inner = Arc::clone(&self.inner);
        let endpoint = Arc::clone(&route.endpoint);
        let metrics = route.metrics.clone();
        self.inner.tasks.spawn(async move {
            let started = Instant::now();
            let mut call = pin!(inner.client.request(request));
            let in_time = tokio::select! {
                result = &mut call => Some(result),
                () = tokio::time::sleep(endpoint.upstream_timeout) => None,
            };
            if let Some(result) = in_time {
                metrics.upstream(started.elapsed());
                let settled = inner.settle(result, claim.as_ref(), &endpoint).await;
                // The sender may have gone; the delivery is settled either way.
                let _ = answer_tx.send(settled);
                return;
            }
            let _ = answer_tx.send((Outcome::UpstreamTimeout, answer(Outcome::UpstreamTimeout, 0)));
            // Keep the claim and keep listening until shortly before the lease ends, so no
            // retry reaches the app while this copy may still be running there.
            let patience = endpoint.lease.saturating_sub(started.elapsed() + Duration::from_secs(1));
            if let Ok(result) = tokio::time::timeout(patience, call).await {
                metrics.upstream(started.elapsed());
                let (outcome, _) = inner.settle(result, claim.as_ref(), &endpoint).await;
                inner.metrics.late_answer(outcome.label());
                tracing::info!(endpoint = %endpoint.name, outcome = outcome.label(), "late app answer settled");
            } else {
                inner.metrics.late_answer("abandoned");
                tracing::warn!(endpoint = %endpoint.name, "app did not answer within the claim's lease; the claim lapses and the next retry is forwarded");
            }
        });
        answer_rx
            .await
            .unwrap_or_else(|_| (Outcome::UpstreamBroken, answer(Outcome::UpstreamBroken, 0)))
    }

    /// Releases a claim (compare-and-delete by token); a failure leaves it to expire.
    pub async fn release(&self, claim: &Claim) {
        self.inner.release(claim).await;
    }
}

impl Inner {
    async fn settle(
        self: &Arc<Self>,
        result: Result<Response<Incoming>, hyper_util::client::legacy::Error>,
        claim: Option<&Claim>,
        endpoint: &Arc<Endpoint>,
    ) -> Settled {
        match result {
            Ok(response) if response.status().is_success() => {
                if let Some(claim) = claim {
                    self.commit(claim, endpoint).await;
                }
                (Outcome::Forwarded, pass_on(response))
            }
            Ok(response) => {
                if let Some(claim) = claim {
                    self.release(claim).await;
                }
                (Outcome::AppRejected, pass_on(response))
            }
            // Refused before a byte was sent: a definite failure.
            Err(error) if error.is_connect() => {
                tracing::warn!(endpoint = %endpoint.name, error = %error, "app unreachable");
                if let Some(claim) = claim {
                    self.release(claim).await;
                }
                (
                    Outcome::UpstreamUnreachable,
                    answer(Outcome::UpstreamUnreachable, 0),
                )
            }
            // The app may have received it: keep the claim until its lease ends.
            Err(error) => {
                tracing::warn!(endpoint = %endpoint.name, error = %error, "connection to the app broke after sending");
                (Outcome::UpstreamBroken, answer(Outcome::UpstreamBroken, 0))
            }
        }
    }

    /// Records the delivery as done. If the store fails, the app's 2xx is still passed on
    /// (the app did accept it; withholding the 2xx would only provoke a retry), and the
    /// commit is retried in the background until the lease ends.
    async fn commit(self: &Arc<Self>, claim: &Claim, endpoint: &Arc<Endpoint>) {
        let Err(error) = self.store.commit(claim, endpoint.window).await else {
            return;
        };
        self.metrics
            .store_error(StoreOperation::commit, error.metric_label());
        tracing::warn!(endpoint = %endpoint.name, error = %error, "recording the delivery as done failed; retrying in the background");
        let inner = Arc::clone(self);
        let claim = claim.clone();
        let endpoint = Arc::clone(endpoint);
        self.tasks.spawn(async move {
            let deadline = Instant::now() + endpoint.lease;
            let mut pause = Duration::from_millis(100);
            while Instant::now() + pause < deadline {
                tokio::time::sleep(pause).await;
                match inner.store.commit(&claim, endpoint.window).await {
                    Ok(()) => return,
                    Err(error) => inner.metrics.store_error(StoreOperation::commit, error.metric_label()),
                }
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            tracing::error!(endpoint = %endpoint.name, "could not record a delivery as done before its lease ended; a retry of it may reach the app again");
        });
    }

    async fn release(&self, claim: &Claim) {
        if let Err(error) = self.store.release(claim).await {
            self.metrics
                .store_error(StoreOperation::release, error.metric_label());
            tracing::warn!(error = %error, "releasing a claim failed; it expires with its lease");
        }
    }
}

/// A pooled keep-alive client to the app on localhost: connects in at most a second (the
/// app is local: a slow connect means it is not listening), no Nagle delay.
pub fn upstream_client() -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// The app's answer as the sender gets it: status, headers minus hop-by-hop ones, and the
/// body streamed through.
fn pass_on(response: Response<Incoming>) -> Response<ProxyBody> {
    let mut response = response.map(Either::Right);
    strip_hop_by_hop(response.headers_mut());
    response
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // `Connection` may name further per-connection headers.
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named.into_iter().chain(HOP_BY_HOP) {
        headers.remove(name);
    }
}
