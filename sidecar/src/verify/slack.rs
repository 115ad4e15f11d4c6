//! Slack: `X-Slack-Signature: v0=<lower-case hex>` over `v0:{timestamp}:{body}`, with the
//! timestamp in `X-Slack-Request-Timestamp`.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName};

use super::common::{self, Candidates};
use super::{Rejection, Verifier};

pub(super) static TIMESTAMP: HeaderName = HeaderName::from_static("x-slack-request-timestamp");
static SIGNATURE: HeaderName = HeaderName::from_static("x-slack-signature");

pub(super) fn verify(
    v: &Verifier,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<(), Rejection> {
    let ts_raw = common::required(headers, &TIMESTAMP)?;
    let value = common::required(headers, &SIGNATURE)?;
    let ts = common::parse_unix_seconds(ts_raw)
        .ok_or_else(|| common::malformed(&TIMESTAMP, "expected unix seconds"))?;
    // v0 is the only version Slack defines; anything else cannot be checked.
    let hex = value
        .strip_prefix(b"v0=")
        .ok_or_else(|| common::malformed(&SIGNATURE, "expected `v0=` prefix"))?;
    let presented = common::decode_lower_hex(hex)
        .map_err(|()| common::malformed(&SIGNATURE, "expected lower-case hex"))?;
    v.check_timestamp(ts, now_unix)?;
    v.check_signature(&[b"v0:", ts_raw, b":", body], &Candidates::one(presented))
}

/// The event type of a form-encoded Slack payload: a slash command's `command` (such as
/// `/weather`), or an interactive payload's `type` (such as `block_actions`).
pub(super) fn form_event_type(body: &[u8]) -> Option<Cow<'_, str>> {
    if let Some(payload) = common::form_field(body, "payload") {
        #[derive(serde::Deserialize)]
        struct Kind {
            #[serde(rename = "type")]
            kind: Option<String>,
        }
        let kind: Kind = serde_json::from_str(&payload).ok()?;
        return kind.kind.filter(|k| !k.is_empty()).map(Cow::Owned);
    }
    common::form_field(body, "command").filter(|c| !c.is_empty())
}
