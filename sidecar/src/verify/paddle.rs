//! Paddle Billing: `Paddle-Signature: ts=<unix seconds>;h1=<lower-case hex>[;h1=…]` over
//! `{ts}:{body}`. Any `h1` may match (Paddle sends several while a secret rotates); other
//! keys are ignored, so a future signature version does not break the endpoint. Paddle's
//! SDKs allow 5 seconds of clock difference by default, and so does the scheme's default
//! tolerance.

use http::{HeaderMap, HeaderName};

use super::common::{self, Elements};
use super::{Rejection, Verifier};

static SIGNATURE: HeaderName = HeaderName::from_static("paddle-signature");

const ELEMENTS: Elements = common::elements!(b';', "ts", "h1", skip_malformed: false);

pub(super) fn verify(
    v: &Verifier,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<(), Rejection> {
    let value = common::required(headers, &SIGNATURE)?;
    let (ts_raw, ts, candidates) = ELEMENTS.parse(&SIGNATURE, value)?;
    v.check_timestamp(ts, now_unix)?;
    v.check_signature(&[ts_raw, b":", body], &candidates)
}
