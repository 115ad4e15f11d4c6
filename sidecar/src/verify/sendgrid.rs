//! SendGrid Event Webhook: `X-Twilio-Email-Event-Webhook-Signature: <base64 DER>`, an ECDSA
//! P-256 / SHA-256 signature over `{X-Twilio-Email-Event-Webhook-Timestamp}{body}` (no
//! separator; the body is the JSON array of events with its trailing `\r\n`), checked with
//! the endpoint's verification key (a public key: nothing secret is held).
//!
//! SendGrid documents no replay window and its SDKs check none; Hookguard holds the signed
//! timestamp to the endpoint's tolerance. ECDSA signatures with a high `s` are as valid as
//! their low-`s` twin, and SendGrid sends both, so both verify.

use http::{HeaderMap, HeaderName};
use p256::ecdsa::Signature;
use p256::ecdsa::signature::DigestVerifier as _;
use sha2::Digest as _;

use super::common;
use super::keys::Material;
use super::{Rejection, Verifier};

static SIGNATURE: HeaderName = HeaderName::from_static("x-twilio-email-event-webhook-signature");
static TIMESTAMP: HeaderName = HeaderName::from_static("x-twilio-email-event-webhook-timestamp");

/// Longest DER encoding of a P-256 signature (two 33-byte integers and their headers).
const MAX_DER: usize = 72;

pub(super) fn verify(
    v: &Verifier,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<(), Rejection> {
    let value = common::required(headers, &SIGNATURE)?;
    let ts_raw = common::required(headers, &TIMESTAMP)?;
    let ts = common::parse_unix_seconds(ts_raw)
        .ok_or_else(|| common::malformed(&TIMESTAMP, "expected unix seconds"))?;
    let mut buf = [0_u8; MAX_DER];
    let der = common::decode_base64_into(value, &mut buf)
        .map_err(|()| common::malformed(&SIGNATURE, "expected base64"))?;
    v.check_timestamp(ts, now_unix)?;
    // A well-formed header that is no DER signature cannot match, like a wrong-length MAC.
    let signature = der
        .and_then(|der| Signature::from_der(der).ok())
        .ok_or(Rejection::SignatureMismatch)?;
    let signature = signature.normalize_s().unwrap_or(signature);
    let digest = sha2::Sha256::new().chain_update(ts_raw).chain_update(body);
    let matched = v.keys.iter().any(|key| match key.material() {
        Material::P256(public) => public.verify_digest(digest.clone(), &signature).is_ok(),
        _ => false,
    });
    if matched {
        Ok(())
    } else {
        Err(Rejection::SignatureMismatch)
    }
}
