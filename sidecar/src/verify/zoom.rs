//! Zoom: `x-zm-signature: v0=<lower-case hex>` over `v0:{x-zm-request-timestamp}:{body}`.
//!
//! Zoom documents no replay window and its SDK checks none; Hookguard holds the signed
//! timestamp to the endpoint's tolerance like every other signed timestamp. The
//! `endpoint.url_validation` challenge (sent when the endpoint is saved and every 72 hours)
//! is answered by the sidecar itself: its answer is an HMAC of the challenge under the
//! secret, which the app does not hold.

use bytes::Bytes;
use hmac::Mac as _;
use http::{HeaderMap, HeaderName};

use super::common;
use super::{Delivery, Rejection, Verifier};

static TIMESTAMP: HeaderName = HeaderName::from_static("x-zm-request-timestamp");
static SIGNATURE: HeaderName = HeaderName::from_static("x-zm-signature");

/// The event of Zoom's endpoint check.
const URL_VALIDATION: &str = "endpoint.url_validation";
/// Longest `plainToken` answered; Zoom's are 22 characters.
const MAX_PLAIN_TOKEN: usize = 256;

pub(super) fn verify(
    v: &Verifier,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<(), Rejection> {
    let (ts_raw, ts, candidates) = common::v0_signature(headers, &TIMESTAMP, &SIGNATURE)?;
    v.check_timestamp(ts, now_unix)?;
    v.check_signature(&[b"v0:", ts_raw, b":", body], &candidates)
}

#[derive(serde::Deserialize)]
struct Validation<'a> {
    #[serde(borrow)]
    event: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    payload: Option<Payload<'a>>,
}

#[derive(serde::Deserialize)]
struct Payload<'a> {
    #[serde(borrow, rename = "plainToken")]
    plain_token: Option<std::borrow::Cow<'a, str>>,
}

/// For a verified `endpoint.url_validation`: `{"plainToken": …, "encryptedToken": hex
/// HMAC-SHA256(secret, plainToken)}`, under the key that verified the request.
pub(super) fn url_validation_answer(v: &Verifier, delivery: &Delivery<'_>) -> Option<Bytes> {
    let body = delivery.body();
    let parsed: Validation<'_> = serde_json::from_slice(body).ok()?;
    if parsed.event.as_deref() != Some(URL_VALIDATION) {
        return None;
    }
    let token = parsed.payload?.plain_token?;
    if token.is_empty() || token.len() > MAX_PLAIN_TOKEN {
        return None;
    }
    let (ts_raw, _, candidates) =
        common::v0_signature(delivery.headers(), &TIMESTAMP, &SIGNATURE).ok()?;
    let key = v.matching_key(&[b"v0:", ts_raw, b":", body], &candidates)?;
    let mut mac = key.hmac_sha256()?;
    mac.update(token.as_bytes());
    let answer = serde_json::json!({
        "plainToken": token,
        "encryptedToken": hex::encode(mac.finalize().into_bytes()),
    });
    serde_json::to_vec(&answer).ok().map(Bytes::from)
}
