//! Stripe: `Stripe-Signature: t=<unix seconds>,v1=<lower-case hex>[,v1=…][,v0=…]`, elements in
//! any order, over `{t}.{body}`. Several `v1` elements appear while the sender rolls its secret;
//! any may match. `v0` (a legacy test-mode scheme) and unknown elements are ignored, and so
//! (as Stripe's own libraries do) are elements that are not `key=value`.

use http::{HeaderMap, HeaderName};

use super::common::{self, Elements};
use super::{Rejection, Verifier};

static SIGNATURE: HeaderName = HeaderName::from_static("stripe-signature");

const ELEMENTS: Elements = common::elements!(b',', "t", "v1", skip_malformed: true);

pub(super) fn verify(
    v: &Verifier,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<(), Rejection> {
    let value = common::required(headers, &SIGNATURE)?;
    let (ts_raw, ts, candidates) = ELEMENTS.parse(&SIGNATURE, value)?;
    v.check_timestamp(ts, now_unix)?;
    v.check_signature(&[ts_raw, b".", body], &candidates)
}
