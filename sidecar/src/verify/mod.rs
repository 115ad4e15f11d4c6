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
mod keys;
mod linear;
mod mailgun;
mod paddle;
mod sendgrid;
mod shopify;
mod slack;
mod square;
mod standard_webhooks;
mod stripe;
#[cfg(test)]
mod tests;
mod twilio;
mod zoom;

use std::time::Duration;

use hmac::Mac as _;
use http::{HeaderMap, HeaderName, StatusCode};

use crate::rescue::Outcome;

pub use delivery::Delivery;
pub use hookguard_api::Scheme;
pub use hookguard_api::validation::PublicUrl;
pub use keys::{KeyError, SigningKey};

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
    /// The URL the sender calls, for schemes that sign it (Twilio, Square).
    pub public_url: Option<PublicUrl>,
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
    public_url: Option<PublicUrl>,
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
            public_url: settings.public_url,
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

    /// Checks the signature (and, where the scheme signs one, the timestamp) of a delivery
    /// that came without a query string. See [`Verifier::verify_request`].
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now_unix: i64) -> Result<(), Rejection> {
        self.verify_request(None, headers, body, now_unix)
    }

    /// Checks the signature (and, where the scheme signs one, the timestamp) of a delivery.
    /// `query` is the request's query string as received (without `?`): Twilio and Square
    /// sign the URL they call, query included.
    ///
    /// Nothing else may happen to the delivery, in particular no dedup claim, before this
    /// returns `Ok`. Header problems are found before the timestamp, and the timestamp before
    /// any signature is computed, so malformed and stale requests are cheap to refuse.
    pub fn verify_request(
        &self,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), Rejection> {
        match self.scheme {
            Scheme::Generic => generic::verify(self, headers, body),
            Scheme::StandardWebhooks => standard_webhooks::verify(self, headers, body, now_unix),
            Scheme::Stripe => stripe::verify(self, headers, body, now_unix),
            Scheme::GitHub => github::verify(self, headers, body),
            Scheme::Slack => slack::verify(self, headers, body, now_unix),
            Scheme::Shopify => shopify::verify(self, headers, body),
            Scheme::Twilio => twilio::verify(self, query, headers, body),
            Scheme::Zoom => zoom::verify(self, headers, body, now_unix),
            Scheme::Paddle => paddle::verify(self, headers, body, now_unix),
            Scheme::Linear => linear::verify(self, headers, body, now_unix),
            Scheme::Square => square::verify(self, query, headers, body),
            Scheme::Mailgun => mailgun::verify(self, headers, body, now_unix),
            Scheme::SendGrid => sendgrid::verify(self, headers, body, now_unix),
        }
    }

    /// The answer the sidecar gives itself, without the app, to a verified request that is
    /// the sender's endpoint check rather than an event: Zoom's `endpoint.url_validation`,
    /// whose answer needs the secret the app does not hold. `None` for everything else.
    pub fn self_answer(&self, delivery: &Delivery<'_>) -> Option<bytes::Bytes> {
        match self.scheme {
            Scheme::Zoom => zoom::url_validation_answer(self, delivery),
            _ => None,
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

    /// Whether any HMAC-SHA256 key's MAC over the concatenation of `parts` equals any
    /// candidate.
    fn check_signature(
        &self,
        parts: &[&[u8]],
        candidates: &common::Candidates,
    ) -> Result<(), Rejection> {
        if self.matching_key(parts, candidates).is_some() {
            Ok(())
        } else {
            Err(Rejection::SignatureMismatch)
        }
    }

    /// The first HMAC-SHA256 key whose MAC over the concatenation of `parts` equals any
    /// candidate.
    fn matching_key(
        &self,
        parts: &[&[u8]],
        candidates: &common::Candidates,
    ) -> Option<&SigningKey> {
        // A presented signature of the wrong length cannot match: skip the HMAC work.
        if candidates.is_empty() {
            return None;
        }
        self.keys.iter().find(|key| {
            let Some(mut mac) = key.hmac_sha256() else {
                return false;
            };
            // Fed piece by piece: the signed content is never copied into a new buffer.
            for part in parts {
                mac.update(part);
            }
            candidates.contains(mac.finalize().into_bytes().as_slice())
        })
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
    /// A part of the body the scheme needs before it can check the signature (Linear's
    /// `webhookTimestamp`, Mailgun's signature block) is absent or unusable.
    #[error("the body is malformed: {0}")]
    MalformedBody(&'static str),
}

impl Rejection {
    /// Every [`metric_label`](Self::metric_label), so each endpoint's rejection series can be
    /// created once at config load and the label set stays bounded.
    pub const METRIC_LABELS: [&'static str; 7] = [
        "missing_header",
        "malformed_header",
        "signature_mismatch",
        "timestamp_outside_tolerance",
        "missing_delivery_id",
        "invalid_delivery_id",
        "malformed_body",
    ];

    /// What the sender is answered: [`Outcome::BadRequest`] for a request that is not a
    /// well-formed delivery, [`Outcome::Unauthorized`] for one that is well-formed but not
    /// authentic (or too old).
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::MissingHeader(_)
            | Self::MalformedHeader { .. }
            | Self::MissingDeliveryId
            | Self::InvalidDeliveryId
            | Self::MalformedBody(_) => Outcome::BadRequest,
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
            Self::MalformedBody(_) => "malformed_body",
        }
    }
}
