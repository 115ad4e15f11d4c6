//! Generic, Hookguard's reference scheme: lower-case hex HMAC-SHA256 of the raw body in one
//! configurable header (default `X-Signature`), and a required delivery-ID header.

use http::HeaderMap;

use super::common::{self, Candidates};
use super::{KeySource, Rejection, Verifier};

pub(super) fn verify(v: &Verifier, headers: &HeaderMap, body: &[u8]) -> Result<(), Rejection> {
    let name = &v.generic.signature;
    let signature = common::required(headers, name)?;
    // Nothing signed here stops replays, so a delivery without its ID is refused up front
    // rather than forwarded undeduplicated. A JSON-pointer key is checked after verification.
    let id_header = match &v.key_source {
        None => Some(&v.generic.delivery_id),
        Some(KeySource::Header(header)) => Some(header),
        Some(KeySource::JsonPointer(_)) => None,
    };
    if let Some(id_header) = id_header {
        common::required(headers, id_header)?;
    }
    let presented = common::decode_lower_hex(signature)
        .map_err(|()| common::malformed(name, "expected lower-case hex without a prefix"))?;
    v.check_signature(&[body], &Candidates::one(presented))
}
