//! The answer table up to the claim, without sockets: requests built in memory go straight
//! into [`Sidecar::handle`]. Forwarding is covered by the tests in `tests/`, against a real
//! app, and with real Redis.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::Frame;
use http_body_util::Full;
use serde_json::json;

use hookguard_api::names::HEADER_OUTCOME;

use super::*;
use crate::dedup::MemoryLimits;
use crate::metrics::Metrics;

const SECRET: &str = "service-test-secret";

/// A sidecar serving one endpoint written as `config` (its secret is [`SECRET`]), with the
/// in-memory store; also the admin tests' fixture.
pub(crate) fn sidecar_with(config: serde_json::Value, body_read_timeout: Duration) -> Sidecar {
    let mut config = config;
    config["secretDir"] = json!("/unused: the key is given below");
    let config: hookguard_api::config::EndpointConfig = serde_json::from_value(config).unwrap();
    let key = crate::verify::SigningKey::new(config.scheme, "k1", SECRET.as_bytes()).unwrap();
    let endpoint = crate::config::Endpoint::from_config(config, vec![key]).unwrap();
    let endpoints = crate::config::Endpoints::new(vec![("e".into(), endpoint)]).unwrap();
    let metrics = Arc::new(Metrics::new());
    let limits = MemoryLimits {
        max_entries: 1000,
        max_bytes: 1 << 20,
    };
    let store = Store::memory(
        limits,
        metrics.memory_evictions(),
        Duration::from_millis(250),
    );
    let settings = ServiceSettings {
        upstream_host: "127.0.0.1".into(),
        body_read_timeout,
        delivery_log: crate::delivery_log::LogSettings::default(),
    };
    Sidecar::new(
        &endpoints,
        store,
        metrics,
        settings,
        crate::background::Background::default(),
    )
}

fn generic() -> Sidecar {
    sidecar_with(
        json!({"name": "e", "endpointId": "e1", "path": "/hook", "scheme": "Generic",
               "upstream": {"port": 9}, "maxBodySize": "1Ki"}),
        Duration::from_secs(5),
    )
}

fn signed(body: &'static str, id: &str) -> Request<Full<Bytes>> {
    Request::post("/hook")
        .header(
            "x-signature",
            crate::sign::generic(SECRET.as_bytes(), body.as_bytes()),
        )
        .header("x-delivery-id", id)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

async fn call<B>(sidecar: &Sidecar, request: Request<B>) -> (u16, String)
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let response = sidecar
        .handle(request, "127.0.0.1:5555".parse().unwrap())
        .await;
    let outcome = response
        .headers()
        .get(HEADER_OUTCOME)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status().as_u16(), outcome)
}

fn entries(sidecar: &Sidecar) -> u64 {
    sidecar.store().memory_usage().unwrap().0
}

#[tokio::test]
async fn unknown_path_is_404_and_not_post_is_405() {
    let sidecar = generic();
    let request = Request::post("/elsewhere")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(call(&sidecar, request).await, (404, "not_found".into()));
    let request = Request::get("/hook").body(Full::new(Bytes::new())).unwrap();
    assert_eq!(
        call(&sidecar, request).await,
        (405, "method_not_allowed".into())
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_declared_or_streamed() {
    let sidecar = generic();
    let declared = Request::post("/hook")
        .header("content-length", "5000")
        .body(Full::new(Bytes::from(vec![b'a'; 5000])))
        .unwrap();
    assert_eq!(call(&sidecar, declared).await, (413, "too_large".into()));
    let streamed = Request::post("/hook")
        .body(Chunks(vec![
            Bytes::from(vec![b'a'; 600]),
            Bytes::from(vec![b'a'; 600]),
        ]))
        .unwrap();
    assert_eq!(call(&sidecar, streamed).await, (413, "too_large".into()));
}

#[tokio::test]
async fn a_body_that_stalls_gets_408() {
    let sidecar = sidecar_with(
        json!({"name": "e", "endpointId": "e1", "path": "/hook", "scheme": "Generic", "upstream": {"port": 9}}),
        Duration::from_millis(100),
    );
    let request = Request::post("/hook")
        .body(Stalled(Some(Bytes::from_static(b"{"))))
        .unwrap();
    assert_eq!(call(&sidecar, request).await, (408, "body_timeout".into()));
}

#[tokio::test]
async fn signature_problems_are_400_or_401_and_touch_no_store() {
    let sidecar = generic();
    let unsigned = Request::post("/hook")
        .header("x-delivery-id", "d1")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    assert_eq!(call(&sidecar, unsigned).await, (400, "bad_request".into()));
    let mut tampered = signed("{\"a\":1}", "d1");
    *tampered.body_mut() = Full::new(Bytes::from_static(b"{\"a\":2}"));
    assert_eq!(call(&sidecar, tampered).await, (401, "unauthorized".into()));
    let mut no_id = signed("{}", "d1");
    no_id.headers_mut().remove("x-delivery-id");
    assert_eq!(call(&sidecar, no_id).await, (400, "bad_request".into()));
    let bad_id = signed("{}", "has space");
    assert_eq!(call(&sidecar, bad_id).await, (400, "bad_request".into()));
    assert_eq!(
        entries(&sidecar),
        0,
        "nothing may reach the store before verification passes"
    );
}

/// The value of one sample in the sidecar's metrics text; 0 when absent.
fn metric(sidecar: &Sidecar, sample: &str) -> u64 {
    sidecar
        .metrics()
        .encode(None)
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .map_or(0, |value| value.parse().unwrap())
}

fn rejections(sidecar: &Sidecar, reason: &str) -> u64 {
    metric(
        sidecar,
        &format!("hookguard_rejections_total{{endpoint=\"e\",reason=\"{reason}\"}}"),
    )
}

#[tokio::test]
async fn each_rejection_is_counted_once_by_endpoint_and_reason() {
    let sidecar = generic();
    let mut tampered = signed("{\"a\":1}", "d1");
    *tampered.body_mut() = Full::new(Bytes::from_static(b"{\"a\":2}"));
    assert_eq!(call(&sidecar, tampered).await.0, 401);
    for _ in 0..2 {
        let unsigned = Request::post("/hook")
            .header("x-delivery-id", "d1")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        assert_eq!(call(&sidecar, unsigned).await.0, 400);
    }
    assert_eq!(call(&sidecar, signed("{}", "d2")).await.0, 502, "verified");
    assert_eq!(rejections(&sidecar, "signature_mismatch"), 1);
    assert_eq!(rejections(&sidecar, "missing_header"), 2);
    let total: u64 = Rejection::METRIC_LABELS
        .iter()
        .map(|reason| rejections(&sidecar, reason))
        .sum();
    assert_eq!(total, 3, "a verified delivery is no rejection");
}

#[tokio::test]
async fn unsubscribed_event_types_are_200_filtered_without_a_claim() {
    let sidecar = sidecar_with(
        json!({"name": "e", "endpointId": "e1", "path": "/hook", "scheme": "Generic", "upstream": {"port": 9},
               "generic": {"eventTypeHeader": "x-event"}, "eventTypes": ["invoice.paid"]}),
        Duration::from_secs(5),
    );
    let mut request = signed("{}", "d1");
    request
        .headers_mut()
        .insert("x-event", "customer.created".parse().unwrap());
    assert_eq!(call(&sidecar, request).await, (200, "filtered".into()));
    assert_eq!(entries(&sidecar), 0);
}

#[tokio::test]
async fn an_app_that_refuses_connections_gets_502_and_the_claim_is_released() {
    // Port 9 (discard) is closed on the test machine: the connection is refused.
    let sidecar = generic();
    assert_eq!(
        call(&sidecar, signed("{}", "d1")).await,
        (502, "upstream_unreachable".into())
    );
    assert_eq!(
        entries(&sidecar),
        0,
        "a definite failure releases the claim so the retry gets through"
    );
}

/// A body delivered in several frames.
struct Chunks(Vec<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = if self.0.is_empty() {
            None
        } else {
            Some(self.0.remove(0))
        };
        Poll::Ready(next.map(|chunk| Ok(Frame::data(chunk))))
    }
}

/// A body that sends one frame and then nothing, like a client that stops mid-body.
struct Stalled(Option<Bytes>);

impl Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.0.take() {
            Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            None => Poll::Pending,
        }
    }
}

fn slack_signed(body: &'static str) -> Request<Full<Bytes>> {
    let delivery = crate::sign::Delivery {
        id: "",
        timestamp: now_unix(),
        event_type: "",
        body: body.as_bytes(),
    };
    let mut request = Request::post("/slack");
    for (name, value) in crate::sign::headers(
        hookguard_api::config::Scheme::Slack,
        SECRET.as_bytes(),
        &delivery,
    )
    .unwrap()
    {
        request = request.header(name, value);
    }
    request
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::test]
async fn slack_url_verification_reaches_the_app_without_a_claim() {
    // Port 9 refuses: a forwarded request shows as 502, a refused one as 400.
    let sidecar = sidecar_with(
        json!({"name": "s", "endpointId": "s1", "path": "/slack", "scheme": "Slack", "upstream": {"port": 9}}),
        Duration::from_secs(5),
    );
    let handshake = slack_signed(r#"{"type":"url_verification","challenge":"abc","token":"t"}"#);
    assert_eq!(
        call(&sidecar, handshake).await,
        (502, "upstream_unreachable".into()),
        "forwarded"
    );
    let no_event_id = slack_signed(r#"{"type":"event_callback","event":{"type":"message"}}"#);
    assert_eq!(
        call(&sidecar, no_event_id).await,
        (400, "bad_request".into()),
        "events still need their ID"
    );
    let mut forged = slack_signed(r#"{"type":"url_verification","challenge":"abc"}"#);
    forged
        .headers_mut()
        .insert("x-slack-signature", "v0=00".parse().unwrap());
    assert_eq!(
        call(&sidecar, forged).await.0,
        401,
        "the handshake is verified like any request"
    );
    assert_eq!(entries(&sidecar), 0, "no claim for the handshake");
}
