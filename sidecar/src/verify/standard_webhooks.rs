//! Standard Webhooks (Svix and the senders built on it): `webhook-id`, `webhook-timestamp`
//! and `webhook-signature`, a space-separated list of `<version>,<base64>` entries over
//! `{id}.{timestamp}.{body}`. Svix's `svix-*` header names are accepted as aliases.
//!
//! - `v1`: HMAC-SHA256 under a `whsec_` secret;
//! - `v1a`: ed25519 under the sender's private key, checked with its `whpk_` public key.
//!
//! A `whsec_` key checks only `v1` entries and a `whpk_` key only `v1a` entries; any match
//! passes, other versions are skipped. The specification's libraries compare the padded
//! base64 string, so only the canonical encoding of a signature can match.

use ed25519_dalek::Signature;
use http::{HeaderMap, HeaderName};

use super::common::{self, Candidates};
use super::keys::Material;
use super::{Rejection, Verifier};

/// More `v1a` entries than this is no rotation (the same bound as for `v1`).
const MAX_ED25519: usize = 8;

pub(super) static ID: HeaderName = HeaderName::from_static("webhook-id");
pub(super) static ID_SVIX: HeaderName = HeaderName::from_static("svix-id");
static TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
static TIMESTAMP_SVIX: HeaderName = HeaderName::from_static("svix-timestamp");
static SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
static SIGNATURE_SVIX: HeaderName = HeaderName::from_static("svix-signature");

pub(super) fn verify(
    v: &Verifier,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<(), Rejection> {
    let (_, id) = common::required_either(headers, &ID, &ID_SVIX)?;
    let (ts_name, ts_raw) = common::required_either(headers, &TIMESTAMP, &TIMESTAMP_SVIX)?;
    let (sig_name, value) = common::required_either(headers, &SIGNATURE, &SIGNATURE_SVIX)?;
    let ts = common::parse_unix_seconds(ts_raw)
        .ok_or_else(|| common::malformed(ts_name, "expected unix seconds"))?;

    let malformed = |problem| common::malformed(sig_name, problem);
    let mut candidates = Candidates::default();
    let mut ed25519: Vec<Signature> = Vec::new();
    let mut ed25519_seen = 0;
    for entry in value.split(|&b| b == b' ').filter(|e| !e.is_empty()) {
        let mut parts = entry.splitn(2, |&b| b == b',');
        let (Some(version), Some(signature)) = (parts.next(), parts.next()) else {
            return Err(malformed("entry is not `<version>,<signature>`"));
        };
        match version {
            b"v1" => {
                let presented = common::decode_base64_canonical(signature)
                    .map_err(|()| malformed("`v1` is not base64"))?;
                candidates
                    .push(presented)
                    .map_err(|()| malformed("too many signatures"))?;
            }
            b"v1a" => {
                ed25519_seen += 1;
                if ed25519_seen > MAX_ED25519 {
                    return Err(malformed("too many signatures"));
                }
                if let Some(signature) =
                    decode_ed25519(signature).map_err(|()| malformed("`v1a` is not base64"))?
                {
                    ed25519.push(signature);
                }
            }
            // Versions this receiver does not know are the sender's to add.
            _ => {}
        }
    }
    if candidates.none_seen() && ed25519_seen == 0 {
        return Err(malformed("no `v1` or `v1a` signature"));
    }
    v.check_timestamp(ts, now_unix)?;
    let signed: [&[u8]; 5] = [id, b".", ts_raw, b".", body];
    if v.check_signature(&signed, &candidates).is_ok() || check_ed25519(v, &signed, &ed25519) {
        Ok(())
    } else {
        Err(Rejection::SignatureMismatch)
    }
}

/// A `v1a` entry: the canonical base64 of a 64-byte signature, or `None` (cannot match).
fn decode_ed25519(value: &[u8]) -> Result<Option<Signature>, ()> {
    let mut buf = [0_u8; ed25519_dalek::SIGNATURE_LENGTH + 8];
    let Some(bytes) = common::decode_base64_into(value, &mut buf)? else {
        return Ok(None);
    };
    let Ok(bytes) = <[u8; ed25519_dalek::SIGNATURE_LENGTH]>::try_from(bytes) else {
        return Ok(None);
    };
    if !common::is_canonical_base64(&bytes, value) {
        return Ok(None);
    }
    Ok(Some(Signature::from_bytes(&bytes)))
}

/// Whether any ed25519 key verifies any `v1a` signature. Ed25519 signs the whole message,
/// so it is assembled once, and only when there is something to check.
fn check_ed25519(v: &Verifier, signed: &[&[u8]], signatures: &[Signature]) -> bool {
    if signatures.is_empty() {
        return false;
    }
    let mut keys = v.keys.iter().filter_map(|key| match key.material() {
        Material::Ed25519(public) => Some(public),
        _ => None,
    });
    let Some(first) = keys.next() else {
        return false;
    };
    let message = signed.concat();
    std::iter::once(first).chain(keys).any(|public| {
        signatures
            .iter()
            .any(|signature| public.verify_strict(&message, signature).is_ok())
    })
}
