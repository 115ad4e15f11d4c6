//! Signature verification: everything the sidecar knows about each sender's scheme.
//!
//! Sits right after the body has been read (up to the endpoint's limit) and before anything
//! touches the dedup store: [`Verifier::verify`] checks the signature over the **raw** body
//! bytes and, for schemes that sign one, the timestamp; only then does the pipeline ask
//! [`Verifier::delivery_id`] for the idempotency key and [`Verifier::event_type`] for the
//! event filter. Everything here is pure (no IO, no clock: the caller passes `now`), so the
//! vectors in `../shared/vectors/` can drive it directly.
//!
//! Keys are keyed into an HMAC once, at load time ([`SigningKey`]); a request only clones that
//! state. Presented signatures are decoded to bytes and compared in constant time; with several
//! keys (rotation) and several presented signatures (Stripe, Standard Webhooks) any pair may
//! match. No error, `Debug` output or log line carries key material or signature values.

mod common;
mod delivery;
mod generic;
mod github;
mod shopify;
mod slack;
mod standard_webhooks;
mod stripe;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use http::{HeaderMap, HeaderName, StatusCode};
use sha2::Sha256;

use crate::rescue::Outcome;

pub use delivery::Delivery;
pub use hookguard_api::Scheme;

/// One signing key, keyed into HMAC-SHA256 once at load time.
///
/// Verification clones the keyed state, so the key pads are not recomputed per request.
/// `Debug` prints the id only.
#[derive(Clone)]
pub struct SigningKey {
    id: String,
    mac: Hmac<Sha256>,
    /// [`hookguard_api::admin::key_fingerprint`] of the file's content, for `GET /keys`.
    fingerprint: String,
}

impl SigningKey {
    /// Builds a key for `scheme` from a secret file's bytes.
    ///
    /// `id` is the key's file name (for logs and status). `secret` is the file content exactly
    /// as mounted; one trailing `"\n"` or `"\r\n"` is stripped because secrets are often
    /// created with `echo`, nothing else is. Standard Webhooks secrets are `whsec_` (optional)
    /// followed by standard base64 of the key bytes; every other scheme uses the bytes verbatim,
    /// as its sender does (a Stripe `whsec_…` secret included).
    pub fn new(scheme: Scheme, id: impl Into<String>, secret: &[u8]) -> Result<Self, KeyError> {
        let fingerprint = hookguard_api::admin::key_fingerprint(secret);
        let secret = strip_one_newline(secret);
        let mac = if scheme == Scheme::StandardWebhooks {
            let encoded = secret.strip_prefix(b"whsec_").unwrap_or(secret);
            if encoded.is_empty() {
                return Err(KeyError::Empty);
            }
            // The decoded key lives only as long as this call; the HMAC keeps its own pads.
            let key = common::BASE64_LENIENT_PADDING
                .decode(encoded)
                .map_err(|_| KeyError::NotBase64)?;
            new_mac(&key)?
        } else {
            new_mac(secret)?
        };
        Ok(Self {
            id: id.into(),
            mac,
            fingerprint,
        })
    }

    /// The key's id (its file name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The public fingerprint of the key file's content
    /// ([`hookguard_api::admin::key_fingerprint`]), computed when the key was loaded.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A fresh HMAC state keyed with this key.
    fn mac(&self) -> Hmac<Sha256> {
        self.mac.clone()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn strip_one_newline(secret: &[u8]) -> &[u8] {
    secret
        .strip_suffix(b"\r\n")
        .or_else(|| secret.strip_suffix(b"\n"))
        .unwrap_or(secret)
}

fn new_mac(key: &[u8]) -> Result<Hmac<Sha256>, KeyError> {
    if key.is_empty() {
        // HMAC would accept it, but an empty key authenticates nothing.
        return Err(KeyError::Empty);
    }
    <Hmac<Sha256> as hmac::Mac>::new_from_slice(key).map_err(|_| KeyError::Unusable)
}

/// Why a secret file cannot be used as a signing key. Never carries the material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The file is empty (after one trailing newline, and a `whsec_` prefix, were removed).
    #[error(
        "the signing secret is empty: write the secret into the file (one trailing newline is ignored)"
    )]
    Empty,
    /// A Standard Webhooks secret whose part after `whsec_` is not base64.
    #[error(
        "the signing secret is not valid for Standard Webhooks: a Standard Webhooks secret is `whsec_` followed by base64 (standard alphabet) of the key bytes"
    )]
    NotBase64,
    /// The HMAC implementation refused the key (HMAC-SHA256 accepts any length, so this
    /// indicates a bug rather than a bad file).
    #[error("the signing secret could not be used as an HMAC-SHA256 key")]
    Unusable,
}

// Where the delivery ID comes from, and the Generic scheme's headers: parsed by the shared
// rules (`hookguard_api::validation`), so the operator and the sidecar agree on them.
pub use hookguard_api::validation::{GenericHeaders, KeySource};

/// Everything needed to build a [`Verifier`] for one endpoint.
#[derive(Debug, Clone)]
pub struct VerifierSettings {
    /// The sender's scheme.
    pub scheme: Scheme,
    /// Header names; used by the Generic scheme only.
    pub generic: GenericHeaders,
    /// Where the delivery ID comes from; `None`: the scheme's default.
    pub key_source: Option<KeySource>,
    /// The accepted keys; any one may match (rotation). With none, every delivery is refused.
    pub keys: Vec<SigningKey>,
    /// For schemes with a signed timestamp: `|now - ts| <= tolerance` (whole seconds,
    /// inclusive) is accepted.
    pub tolerance: Duration,
}

/// Verifies one endpoint's deliveries. Built once per configuration (re)load; `Debug` shows
/// key ids, never key material.
#[derive(Debug, Clone)]
pub struct Verifier {
    scheme: Scheme,
    generic: GenericHeaders,
    key_source: Option<KeySource>,
    keys: Vec<SigningKey>,
    tolerance_secs: u64,
}

impl Verifier {
    /// Builds the verifier.
    pub fn new(settings: VerifierSettings) -> Self {
        Self {
            scheme: settings.scheme,
            generic: settings.generic,
            key_source: settings.key_source,
            keys: settings.keys,
            tolerance_secs: settings.tolerance.as_secs(),
        }
    }

    /// The endpoint's scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The keys, in the order they are tried.
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// Checks the signature (and, where the scheme signs one, the timestamp) of a delivery.
    ///
    /// Nothing else may happen to the delivery, in particular no dedup claim, before this
    /// returns `Ok`. Header problems are found before the timestamp, and the timestamp before
    /// any HMAC is computed, so malformed and stale requests are cheap to refuse.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now_unix: i64) -> Result<(), Rejection> {
        match self.scheme {
            Scheme::Generic => generic::verify(self, headers, body),
            Scheme::StandardWebhooks => standard_webhooks::verify(self, headers, body, now_unix),
            Scheme::Stripe => stripe::verify(self, headers, body, now_unix),
            Scheme::GitHub => github::verify(self, headers, body),
            Scheme::Slack => slack::verify(self, headers, body, now_unix),
            Scheme::Shopify => shopify::verify(self, headers, body),
        }
    }

    /// Refuses a signed timestamp too far from `now_unix`.
    fn check_timestamp(&self, ts: i64, now_unix: i64) -> Result<(), Rejection> {
        if now_unix.abs_diff(ts) <= self.tolerance_secs {
            Ok(())
        } else {
            Err(Rejection::TimestampOutsideTolerance)
        }
    }

    /// Whether any key's MAC over the concatenation of `parts` equals any candidate.
    fn check_signature(
        &self,
        parts: &[&[u8]],
        candidates: &common::Candidates,
    ) -> Result<(), Rejection> {
        // A presented signature of the wrong length cannot match: skip the HMAC work.
        if candidates.is_empty() {
            return Err(Rejection::SignatureMismatch);
        }
        for key in &self.keys {
            let mut mac = key.mac();
            // Fed piece by piece: the signed content is never copied into a new buffer.
            for part in parts {
                mac.update(part);
            }
            let computed = mac.finalize().into_bytes();
            if candidates.contains(computed.as_slice()) {
                return Ok(());
            }
        }
        Err(Rejection::SignatureMismatch)
    }
}

/// Why a delivery was refused. `Display` is for logs: it names the header or the problem,
/// never a header value, a signature or a key.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// A header the scheme requires is absent.
    #[error("required header `{0}` is missing")]
    MissingHeader(HeaderName),
    /// A required header is present but cannot be used: unparseable, wrong prefix or encoding,
    /// no signature of a supported version, empty, or sent more than once.
    #[error("header `{header}` is malformed: {problem}")]
    MalformedHeader {
        /// The header.
        header: HeaderName,
        /// What is wrong with it, in a few words.
        problem: &'static str,
    },
    /// No presented signature matches any key.
    #[error("signature does not match any signing key")]
    SignatureMismatch,
    /// The signed timestamp is further from the sidecar's clock than the tolerance.
    #[error("signed timestamp is outside the replay tolerance")]
    TimestampOutsideTolerance,
    /// The delivery carries no delivery ID where the endpoint expects one.
    #[error("delivery ID is missing")]
    MissingDeliveryId,
    /// The delivery ID is empty, longer than 256 bytes, or has characters outside
    /// `[A-Za-z0-9._~:@+/=-]`.
    #[error("delivery ID is not 1 to 256 characters of [A-Za-z0-9._~:@+/=-]")]
    InvalidDeliveryId,
}

impl Rejection {
    /// Every [`metric_label`](Self::metric_label), so each endpoint's rejection series can be
    /// created once at config load and the label set stays bounded.
    pub const METRIC_LABELS: [&'static str; 6] = [
        "missing_header",
        "malformed_header",
        "signature_mismatch",
        "timestamp_outside_tolerance",
        "missing_delivery_id",
        "invalid_delivery_id",
    ];

    /// What the sender is answered: [`Outcome::BadRequest`] for a request that is not a
    /// well-formed delivery, [`Outcome::Unauthorized`] for one that is well-formed but not
    /// authentic (or too old).
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::MissingHeader(_)
            | Self::MalformedHeader { .. }
            | Self::MissingDeliveryId
            | Self::InvalidDeliveryId => Outcome::BadRequest,
            Self::SignatureMismatch | Self::TimestampOutsideTolerance => Outcome::Unauthorized,
        }
    }

    /// The HTTP status the sender gets: that of the [`outcome`](Self::outcome)'s answer, 400
    /// or 401.
    pub fn status(&self) -> StatusCode {
        self.outcome().status()
    }

    /// A fixed label for the rejection metric, one of [`METRIC_LABELS`](Self::METRIC_LABELS).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing_header",
            Self::MalformedHeader { .. } => "malformed_header",
            Self::SignatureMismatch => "signature_mismatch",
            Self::TimestampOutsideTolerance => "timestamp_outside_tolerance",
            Self::MissingDeliveryId => "missing_delivery_id",
            Self::InvalidDeliveryId => "invalid_delivery_id",
        }
    }
}
