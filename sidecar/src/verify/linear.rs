//! Linear: `Linear-Signature: <lower-case hex>` HMAC-SHA256 of the body. The signed body's
//! `webhookTimestamp` (a JSON number, milliseconds) is the freshness check, as Linear's SDK
//! does it; the `Linear-Timestamp` header is not signed and not used. The delivery ID,
//! `Linear-Delivery`, is not signed either, so the body hash is claimed too.

use http::{HeaderMap, HeaderName};

use super::common::{self, Candidates};
use super::{Rejection, Verifier};

static SIGNATURE: HeaderName = HeaderName::from_static("linear-signature");
pub(super) static DELIVERY: HeaderName = HeaderName::from_static("linear-delivery");

#[derive(serde::Deserialize)]
struct Stamp {
    #[serde(rename = "webhookTimestamp")]
    webhook_timestamp: Option<serde_json::Number>,
}

pub(super) fn verify(
    v: &Verifier,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<(), Rejection> {
    let value = common::required(headers, &SIGNATURE)?;
    let presented = common::decode_lower_hex(value)
        .map_err(|()| common::malformed(&SIGNATURE, "expected lower-case hex"))?;
    let stamp: Stamp = serde_json::from_slice(body).map_err(|_| {
        Rejection::MalformedBody("a Linear body is a JSON object with a numeric webhookTimestamp")
    })?;
    let ts_ms =
        stamp
            .webhook_timestamp
            .and_then(|n| n.as_i64())
            .ok_or(Rejection::MalformedBody(
                "webhookTimestamp is missing or not a whole number of milliseconds",
            ))?;
    let tolerance_ms = i128::from(v.tolerance_secs) * 1000;
    if (i128::from(now_unix) * 1000 - i128::from(ts_ms)).abs() > tolerance_ms {
        return Err(Rejection::TimestampOutsideTolerance);
    }
    v.check_signature(&[body], &Candidates::one(presented))
}
