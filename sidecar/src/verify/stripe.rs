//! Stripe: `Stripe-Signature: t=<unix seconds>,v1=<lower-case hex>[,v1=…][,v0=…]`, elements in
//! any order, over `{t}.{body}`. Several `v1` elements appear while the sender rolls its secret;
//! any may match. `v0` (a legacy test-mode scheme) and unknown elements are ignored.

use http::{HeaderMap, HeaderName};

use super::common::{self, Candidates};
use super::{Rejection, Verifier};

static SIGNATURE: HeaderName = HeaderName::from_static("stripe-signature");

pub(super) fn verify(
    v: &Verifier,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<(), Rejection> {
    let value = common::required(headers, &SIGNATURE)?;
    let malformed = |problem| common::malformed(&SIGNATURE, problem);

    let mut ts_raw: Option<&[u8]> = None;
    let mut candidates = Candidates::default();
    for element in value.split(|&b| b == b',') {
        let mut kv = element.splitn(2, |&b| b == b'=');
        let (Some(key), Some(val)) = (kv.next(), kv.next()) else {
            // Stripe's own libraries skip elements that are not `key=value`.
            continue;
        };
        match key {
            b"t" if ts_raw.is_some() => return Err(malformed("more than one `t` element")),
            b"t" => ts_raw = Some(val),
            b"v1" => {
                let presented = common::decode_lower_hex(val)
                    .map_err(|()| malformed("`v1` is not lower-case hex"))?;
                candidates
                    .push(presented)
                    .map_err(|()| malformed("too many signatures"))?;
            }
            _ => {}
        }
    }
    let ts_raw = ts_raw.ok_or_else(|| malformed("no `t` element"))?;
    let ts =
        common::parse_unix_seconds(ts_raw).ok_or_else(|| malformed("`t` is not unix seconds"))?;
    if candidates.none_seen() {
        return Err(malformed("no `v1` signature"));
    }
    v.check_timestamp(ts, now_unix)?;
    v.check_signature(&[ts_raw, b".", body], &candidates)
}
