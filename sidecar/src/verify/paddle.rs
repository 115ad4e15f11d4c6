//! Paddle Billing: `Paddle-Signature: ts=<unix seconds>;h1=<lower-case hex>[;h1=…]` over
//! `{ts}:{body}`. Any `h1` may match (Paddle sends several while a secret rotates); other
//! keys are ignored, so a future signature version does not break the endpoint. Paddle's
//! SDKs allow 5 seconds of clock difference by default, and so does the scheme's default
//! tolerance.

use http::{HeaderMap, HeaderName};

use super::common::{self, Candidates};
use super::{Rejection, Verifier};

static SIGNATURE: HeaderName = HeaderName::from_static("paddle-signature");

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
    for element in value.split(|&b| b == b';') {
        let Some((key, val)) = split_once(element, b'=') else {
            return Err(malformed("an element is not `key=value`"));
        };
        match key {
            b"ts" if ts_raw.is_some() => return Err(malformed("more than one `ts` element")),
            b"ts" => ts_raw = Some(val),
            b"h1" => {
                let presented = common::decode_lower_hex(val)
                    .map_err(|()| malformed("`h1` is not lower-case hex"))?;
                candidates
                    .push(presented)
                    .map_err(|()| malformed("too many signatures"))?;
            }
            _ => {}
        }
    }
    let ts_raw = ts_raw.ok_or_else(|| malformed("no `ts` element"))?;
    let ts =
        common::parse_unix_seconds(ts_raw).ok_or_else(|| malformed("`ts` is not unix seconds"))?;
    if candidates.none_seen() {
        return Err(malformed("no `h1` signature"));
    }
    v.check_timestamp(ts, now_unix)?;
    v.check_signature(&[ts_raw, b":", body], &candidates)
}

fn split_once(bytes: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == sep)?;
    Some((&bytes[..at], &bytes[at + 1..]))
}
