//! Shopify: base64 HMAC-SHA256 of the raw body in `X-Shopify-Hmac-Sha256`. The newer header
//! family without the `X-` prefix (`shopify-hmac-sha256`, …) is accepted too.

use http::{HeaderMap, HeaderName};

use super::common::{self, Candidates};
use super::{Rejection, Verifier};

static SIGNATURE: HeaderName = HeaderName::from_static("x-shopify-hmac-sha256");
static SIGNATURE_NEW: HeaderName = HeaderName::from_static("shopify-hmac-sha256");
pub(super) static TOPIC: HeaderName = HeaderName::from_static("x-shopify-topic");
pub(super) static TOPIC_NEW: HeaderName = HeaderName::from_static("shopify-topic");
pub(super) static WEBHOOK_ID: HeaderName = HeaderName::from_static("x-shopify-webhook-id");
pub(super) static WEBHOOK_ID_NEW: HeaderName = HeaderName::from_static("shopify-webhook-id");

pub(super) fn verify(v: &Verifier, headers: &HeaderMap, body: &[u8]) -> Result<(), Rejection> {
    let (name, value) = common::required_either(headers, &SIGNATURE, &SIGNATURE_NEW)?;
    // Shopify's library refuses a delivery without its topic; so do we (vectors README,
    // "strictness"). Event filtering depends on it as well.
    common::required_either(headers, &TOPIC, &TOPIC_NEW)?;
    let presented =
        common::decode_base64(value).map_err(|()| common::malformed(name, "expected base64"))?;
    v.check_signature(&[body], &Candidates::one(presented))
}
