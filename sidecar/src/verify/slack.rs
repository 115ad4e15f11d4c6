//! Slack: `X-Slack-Signature: v0=<lower-case hex>` over `v0:{timestamp}:{body}`, with the
//! timestamp in `X-Slack-Request-Timestamp`.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName};

use super::common;
use super::{Rejection, Verifier};

pub(super) static TIMESTAMP: HeaderName = HeaderName::from_static("x-slack-request-timestamp");
static SIGNATURE: HeaderName = HeaderName::from_static("x-slack-signature");

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
