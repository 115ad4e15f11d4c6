//! GitHub: `X-Hub-Signature-256: sha256=<lower-case hex>` over the raw body. The legacy
//! SHA-1 `X-Hub-Signature` is ignored.

use http::{HeaderMap, HeaderName};

use super::common::{self, Candidates};
use super::{Rejection, Verifier};

pub(super) static SIGNATURE: HeaderName = HeaderName::from_static("x-hub-signature-256");
pub(super) static DELIVERY: HeaderName = HeaderName::from_static("x-github-delivery");
pub(super) static EVENT: HeaderName = HeaderName::from_static("x-github-event");

pub(super) fn verify(v: &Verifier, headers: &HeaderMap, body: &[u8]) -> Result<(), Rejection> {
    let value = common::required(headers, &SIGNATURE)?;
    let hex = value
        .strip_prefix(b"sha256=")
        .ok_or_else(|| common::malformed(&SIGNATURE, "expected `sha256=` prefix"))?;
    let presented = common::decode_lower_hex(hex)
        .map_err(|()| common::malformed(&SIGNATURE, "expected lower-case hex"))?;
    v.check_signature(&[body], &Candidates::one(presented))
}
