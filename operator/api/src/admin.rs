//! The sidecar's admin API as the CLI reads it: key fingerprints and the delivery log.
//!
//! The sidecar serves these on its admin port ([`crate::names::SIDECAR_ADMIN_PORT`]) to
//! loopback clients only, as it does `/queue`: `hookguard` reaches them through a port-forward
//! to the pod, or directly with `--sidecar URL` for a sidecar run as a process. Both sides
//! use these types, so the JSON cannot drift between them.
//!
//! Nothing here carries key material, a signature or a body: a key is named by its ID and its
//! [`key_fingerprint`], a delivery by its metadata.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// `GET` path of [`SidecarKeys`].
pub const PATH_KEYS: &str = "/keys";
/// `GET` path of a [`DeliveryPage`]; query parameters are [`DeliveryQuery`]'s.
pub const PATH_DELIVERIES: &str = "/deliveries";

/// A public fingerprint of a signing secret: `sha256:` and the first 16 hex digits of the
/// SHA-256 of the secret as stored (one trailing `"\n"` or `"\r\n"` removed, as the sidecar
/// removes it when loading a key file). Generated keys are 32 random bytes, so a fingerprint
/// reveals nothing usable; it lets the CLI match a Secret's key with what a sidecar loaded.
pub fn key_fingerprint(secret: &[u8]) -> String {
    let secret = secret
        .strip_suffix(b"\r\n")
        .or_else(|| secret.strip_suffix(b"\n"))
        .unwrap_or(secret);
    let digest = Sha256::digest(secret);
    format!("sha256:{}", hex::encode(&digest[..8]))
}

/// `GET /keys`: the keys one sidecar verifies with right now, per endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarKeys {
    /// The sidecar instance: the pod name (`POD_NAME`), else the host name and process ID.
    pub instance: String,
    /// Every endpoint the sidecar serves.
    pub endpoints: Vec<EndpointKeys>,
}

/// One endpoint's loaded keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointKeys {
    /// The endpoint name.
    pub name: String,
    /// The keys as loaded, in the order the sidecar tries them.
    pub keys: Vec<LoadedKey>,
}

/// A key a sidecar loaded: its ID (file name) and [`key_fingerprint`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadedKey {
    /// The key ID (`k1`, `k2`, ...).
    pub id: String,
    /// [`key_fingerprint`] of the key file's content.
    pub fingerprint: String,
}

/// What produced a [`DeliveryRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RecordKind {
    /// A sender's request, answered by the sidecar.
    Request,
    /// Queue mode: one attempt of a queued delivery at the app.
    Attempt,
}

/// One line of the delivery log. Metadata only: never a body, a signature or a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    /// When the request was answered (or the attempt settled), Unix milliseconds.
    pub at_ms: i64,
    /// The endpoint name.
    pub endpoint: String,
    /// The sidecar instance that recorded it ([`SidecarKeys::instance`]).
    pub instance: String,
    /// A request or a queued attempt.
    pub kind: RecordKind,
    /// The delivery ID, once the signature was verified (never for a rejected request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// The event type, once verified, for schemes that carry one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// For a request, the `X-Hookguard-Outcome` value (`forwarded`, `duplicate`,
    /// `unauthorized`, `queued`, ...); for an attempt, `delivered`, `retry_scheduled` or
    /// `dead_lettered`.
    pub outcome: String,
    /// Why, when the outcome alone does not say (e.g. `timestamp_too_old`,
    /// `signature_mismatch`, the app's status for an attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The HTTP status answered to the sender (request) or by the app (attempt; 0 when the
    /// app gave no answer).
    pub status: u16,
    /// Time from the request's arrival to its answer (or the attempt's duration), microseconds.
    pub latency_us: u64,
    /// Queue mode: the attempt number, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

/// Query parameters of `GET /deliveries`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryQuery {
    /// Only this endpoint's records (required).
    pub endpoint: String,
    /// Only records after this cursor (a previous page's [`DeliveryPage::cursor`]); from the
    /// oldest kept record when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// At most this many records (the sidecar caps it at [`MAX_PAGE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// The most records one `GET /deliveries` returns.
pub const MAX_PAGE: usize = 1000;

/// `GET /deliveries`: records oldest first, and the cursor to ask for the next page with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPage {
    /// The records, oldest first.
    pub records: Vec<DeliveryRecord>,
    /// Pass as `after` to get what was recorded since (unchanged when nothing was). Opaque:
    /// with Redis `<stream ID>/<sequence>` (the shared stream, and this sidecar's own records
    /// of requests that failed verification), with the in-memory store `<sequence>`.
    pub cursor: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_ignores_one_trailing_newline_and_nothing_else() {
        let plain = key_fingerprint(b"secret");
        assert!(plain.starts_with("sha256:") && plain.len() == 23, "{plain}");
        assert_eq!(key_fingerprint(b"secret\n"), plain);
        assert_eq!(key_fingerprint(b"secret\r\n"), plain);
        assert_ne!(key_fingerprint(b"secret "), plain);
        assert_ne!(key_fingerprint(b"secret\n\n"), plain);
    }
}
