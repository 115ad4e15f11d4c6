//! The one place that turns an outcome the sidecar decided into an HTTP answer.
//!
//! Answers carry a fixed, generic body and an `x-hookguard-outcome` header; why a request
//! was refused goes to the log line and the metric label, never to the client.

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use hookguard_api::names::HEADER_OUTCOME;

/// The body of every answer: the sidecar's own (`Left`) or the app's, streamed (`Right`).
pub type ProxyBody = Either<Full<Bytes>, Incoming>;

/// What happened to a request; one metric label and one log word each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The app answered 2xx; the delivery is recorded as done.
    Forwarded,
    /// The app answered non-2xx; its answer is passed on and the claim released.
    AppRejected,
    /// Already processed: answered 200 without reaching the app.
    Duplicate,
    /// Another copy is at the app right now: 409 with `Retry-After`.
    InFlight,
    /// The event type is not subscribed: 200 without reaching the app.
    Filtered,
    /// No endpoint serves the path.
    NotFound,
    /// Not a POST.
    MethodNotAllowed,
    /// The body is larger than the endpoint allows.
    TooLarge,
    /// The client did not send the body in time.
    BodyTimeout,
    /// The body could not be read (the client broke the connection).
    BodyError,
    /// A signature or delivery-ID header is missing or malformed.
    BadRequest,
    /// The signature does not match, or the timestamp is outside the tolerance.
    Unauthorized,
    /// The dedup store is unavailable and the endpoint's policy is Reject.
    StoreUnavailable,
    /// The app did not answer within the upstream time-out.
    UpstreamTimeout,
    /// The app refused the connection; nothing was sent.
    UpstreamUnreachable,
    /// The connection to the app broke after the request was sent.
    UpstreamBroken,
    /// Queue mode: stored as durably as the endpoint asks; answered 200, delivered later.
    Queued,
    /// Queue mode: the endpoint holds its most deliveries or bytes: 503 with `Retry-After`.
    QueueFull,
    /// Queue mode: the store cannot make the delivery as durable as the endpoint asks (or
    /// did not confirm it in time): 503 with `Retry-After`.
    NotDurable,
    /// The sender's endpoint check (Zoom's `endpoint.url_validation`), verified and answered
    /// by the sidecar itself: 200 with the challenge's answer; the app is not involved.
    Challenge,
}

impl Outcome {
    /// Every outcome, in declaration order (the index is the discriminant).
    pub const ALL: [Outcome; 20] = [
        Outcome::Forwarded,
        Outcome::AppRejected,
        Outcome::Duplicate,
        Outcome::InFlight,
        Outcome::Filtered,
        Outcome::NotFound,
        Outcome::MethodNotAllowed,
        Outcome::TooLarge,
        Outcome::BodyTimeout,
        Outcome::BodyError,
        Outcome::BadRequest,
        Outcome::Unauthorized,
        Outcome::StoreUnavailable,
        Outcome::UpstreamTimeout,
        Outcome::UpstreamUnreachable,
        Outcome::UpstreamBroken,
        Outcome::Queued,
        Outcome::QueueFull,
        Outcome::NotDurable,
        Outcome::Challenge,
    ];

    /// The metric label and log word.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::AppRejected => "app_rejected",
            Outcome::Duplicate => "duplicate",
            Outcome::InFlight => "in_flight",
            Outcome::Filtered => "filtered",
            Outcome::NotFound => "not_found",
            Outcome::MethodNotAllowed => "method_not_allowed",
            Outcome::TooLarge => "too_large",
            Outcome::BodyTimeout => "body_timeout",
            Outcome::BodyError => "body_error",
            Outcome::BadRequest => "bad_request",
            Outcome::Unauthorized => "unauthorized",
            Outcome::StoreUnavailable => "store_unavailable",
            Outcome::UpstreamTimeout => "upstream_timeout",
            Outcome::UpstreamUnreachable => "upstream_unreachable",
            Outcome::UpstreamBroken => "upstream_broken",
            Outcome::Queued => "queued",
            Outcome::QueueFull => "queue_full",
            Outcome::NotDurable => "not_durable",
            Outcome::Challenge => "challenge",
        }
    }

    /// The status of the sidecar's own [`answer`] for this outcome (for [`Forwarded`] and
    /// [`AppRejected`] the app's answer is passed on instead).
    ///
    /// [`Forwarded`]: Outcome::Forwarded
    /// [`AppRejected`]: Outcome::AppRejected
    pub fn status(self) -> StatusCode {
        self.status_and_body().0
    }

    fn status_and_body(self) -> (StatusCode, &'static str) {
        match self {
            Outcome::Forwarded | Outcome::AppRejected => (StatusCode::OK, "ok\n"),
            Outcome::Duplicate => (StatusCode::OK, "duplicate\n"),
            Outcome::Filtered => (StatusCode::OK, "filtered\n"),
            Outcome::InFlight => (StatusCode::CONFLICT, "in flight, retry later\n"),
            Outcome::NotFound => (StatusCode::NOT_FOUND, "not found\n"),
            Outcome::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
            Outcome::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload too large\n"),
            Outcome::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "request timeout\n"),
            Outcome::BodyError | Outcome::BadRequest => (StatusCode::BAD_REQUEST, "bad request\n"),
            Outcome::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized\n"),
            Outcome::Queued => (StatusCode::OK, "queued\n"),
            // The real answer is built by [`challenge_answer`].
            Outcome::Challenge => (StatusCode::OK, "{}"),
            Outcome::StoreUnavailable | Outcome::QueueFull | Outcome::NotDurable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable, retry later\n",
            ),
            Outcome::UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n"),
            Outcome::UpstreamUnreachable | Outcome::UpstreamBroken => {
                (StatusCode::BAD_GATEWAY, "bad gateway\n")
            }
        }
    }
}

/// The sidecar's own answer for `outcome`. `retry_after` (seconds) is sent on 409 and 503.
pub fn answer(outcome: Outcome, retry_after: u64) -> Response<ProxyBody> {
    let (status, body) = outcome.status_and_body();
    let mut response = Response::new(Either::Left(Full::new(Bytes::from_static(body.as_bytes()))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(HEADER_OUTCOME, HeaderValue::from_static(outcome.label()));
    match outcome {
        Outcome::InFlight
        | Outcome::StoreUnavailable
        | Outcome::QueueFull
        | Outcome::NotDurable => {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
        }
        Outcome::MethodNotAllowed => {
            headers.insert(http::header::ALLOW, HeaderValue::from_static("POST"));
        }
        // The rest of the body is not read: close instead of draining it for keep-alive.
        Outcome::TooLarge | Outcome::BodyTimeout | Outcome::BodyError => {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    response
}

/// The sidecar's answer to a sender's endpoint check: `body` (JSON), status 200.
pub fn challenge_answer(body: Bytes) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Left(Full::new(body)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        HEADER_OUTCOME,
        HeaderValue::from_static(Outcome::Challenge.label()),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discriminants_index_all() {
        for (index, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, index, "{outcome:?}");
        }
    }

    #[test]
    fn answers_follow_the_contract_table() {
        let cases = [
            (Outcome::NotFound, 404),
            (Outcome::MethodNotAllowed, 405),
            (Outcome::TooLarge, 413),
            (Outcome::BadRequest, 400),
            (Outcome::Unauthorized, 401),
            (Outcome::Filtered, 200),
            (Outcome::Duplicate, 200),
            (Outcome::InFlight, 409),
            (Outcome::StoreUnavailable, 503),
            (Outcome::Queued, 200),
            (Outcome::QueueFull, 503),
            (Outcome::NotDurable, 503),
            (Outcome::UpstreamTimeout, 504),
            (Outcome::UpstreamUnreachable, 502),
        ];
        for (outcome, status) in cases {
            let response = answer(outcome, 7);
            assert_eq!(response.status().as_u16(), status, "{outcome:?}");
            assert_eq!(response.headers()[HEADER_OUTCOME], outcome.label());
        }
        assert_eq!(answer(Outcome::InFlight, 7).headers()[RETRY_AFTER], "7");
        assert_eq!(answer(Outcome::QueueFull, 30).headers()[RETRY_AFTER], "30");
        assert_eq!(
            answer(Outcome::StoreUnavailable, 0).headers()[RETRY_AFTER],
            "1"
        );
        assert!(
            !answer(Outcome::Duplicate, 7)
                .headers()
                .contains_key(RETRY_AFTER)
        );
    }
}
