//! Square: `x-square-hmacsha256-signature: <base64>` HMAC-SHA256 of the notification URL
//! exactly as configured in Square (the endpoint's `publicUrl`, plus the request's query)
//! followed by the body. The legacy SHA-1 `x-square-signature` is not accepted. No
//! timestamp: the signed body's `event_id` is the delivery ID.

use http::{HeaderMap, HeaderName};

use super::common::{self, Candidates};
use super::{Rejection, Verifier};

static SIGNATURE: HeaderName = HeaderName::from_static("x-square-hmacsha256-signature");

pub(super) fn verify(
    v: &Verifier,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Rejection> {
    let value = common::required(headers, &SIGNATURE)?;
    let presented = common::decode_base64(value)
        .map_err(|()| common::malformed(&SIGNATURE, "expected base64"))?;
    let Some(url) = &v.public_url else {
        // The configuration check requires publicUrl for Square.
        return Err(Rejection::SignatureMismatch);
    };
    let candidates = Candidates::one(presented);
    match query {
        Some(query) => v.check_signature(
            &[url.url.as_bytes(), b"?", query.as_bytes(), body],
            &candidates,
        ),
        None => v.check_signature(&[url.url.as_bytes(), body], &candidates),
    }
}
