//! Slack: `X-Slack-Signature: v0=<lower-case hex>` over `v0:{timestamp}:{body}`, with the
//! timestamp in `X-Slack-Request-Timestamp`.

use http::{HeaderMap, HeaderName};

use super::common::{self, Candidates};
use super::{Rejection, Verifier};

static TIMESTAMP: HeaderName = HeaderName::from_static("x-slack-request-timestamp");
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
