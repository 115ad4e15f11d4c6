//! Standard Webhooks (Svix and the senders built on it): `webhook-id`, `webhook-timestamp`
//! and `webhook-signature`, a space-separated list of `v1,<base64>` entries over
//! `{id}.{timestamp}.{body}`. Svix's `svix-*` header names are accepted as aliases.

use http::{HeaderMap, HeaderName};

use super::common::{self, Candidates};
use super::{Rejection, Verifier};

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
    for entry in value.split(|&b| b == b' ').filter(|e| !e.is_empty()) {
        let mut parts = entry.splitn(2, |&b| b == b',');
        let (Some(version), Some(signature)) = (parts.next(), parts.next()) else {
            return Err(malformed("entry is not `<version>,<signature>`"));
        };
        // Other versions (e.g. the asymmetric `v1a`) are not ours to check; the sender
        // includes a `v1` entry when it signs with a shared secret.
        if version != b"v1" {
            continue;
        }
        let presented =
            common::decode_base64(signature).map_err(|()| malformed("`v1` is not base64"))?;
        candidates
            .push(presented)
            .map_err(|()| malformed("too many signatures"))?;
    }
    if candidates.none_seen() {
        return Err(malformed("no `v1` signature"));
    }
    v.check_timestamp(ts, now_unix)?;
    v.check_signature(&[id, b".", ts_raw, b".", body], &candidates)
}
