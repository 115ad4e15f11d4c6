//! Signing keys: each file of an endpoint's secret directory, read once at load time into
//! what its scheme checks signatures with.
//!
//! - a shared secret, keyed into HMAC-SHA256 (and, for Twilio, also HMAC-SHA1) once, so a
//!   request only clones the keyed state;
//! - a public key: Standard Webhooks `v1a` (`whpk_…`, ed25519) or SendGrid's verification key
//!   (ECDSA P-256, base64 DER as the dashboard shows it, or the same in PEM).
//!
//! `Debug` prints the id only; no error carries key material.

use std::fmt;

use base64::Engine as _;
use hmac::Hmac;
use hmac::digest::KeyInit;
use p256::pkcs8::DecodePublicKey as _;
use sha1::Sha1;
use sha2::Sha256;

use super::Scheme;
use super::common::BASE64_LENIENT_PADDING;

/// One signing key of an endpoint.
#[derive(Clone)]
pub struct SigningKey {
    id: String,
    material: Material,
    /// [`hookguard_api::admin::key_fingerprint`] of the file's content, for `GET /keys`.
    fingerprint: String,
}

/// What a key checks signatures with.
#[derive(Clone)]
pub(super) enum Material {
    /// A shared secret keyed into HMAC-SHA256.
    Hmac(Hmac<Sha256>),
    /// Twilio's Auth Token (HMAC-SHA1) or a Webhooks-Rule key (HMAC-SHA256): the request
    /// says which, so the key is ready for both.
    Twilio {
        sha1: Hmac<Sha1>,
        sha256: Hmac<Sha256>,
    },
    /// A Standard Webhooks `v1a` public key.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// A SendGrid verification key.
    P256(p256::ecdsa::VerifyingKey),
}

impl SigningKey {
    /// Builds a key for `scheme` from a secret file's bytes.
    ///
    /// `id` is the key's file name (for logs and status). `secret` is the file content exactly
    /// as mounted; one trailing `"\n"` or `"\r\n"` is stripped because secrets are often
    /// created with `echo`, nothing else is.
    /// - Standard Webhooks: `whsec_` (optional) followed by standard base64 of the HMAC key
    ///   bytes, or `whpk_` followed by standard base64 of a 32-byte ed25519 public key (`v1a`).
    /// - SendGrid: the verification key, standard base64 of its DER `SubjectPublicKeyInfo`, or
    ///   the same as PEM.
    /// - every other scheme: the bytes verbatim, as its sender uses them (a Stripe `whsec_…`
    ///   secret included).
    pub fn new(scheme: Scheme, id: impl Into<String>, secret: &[u8]) -> Result<Self, KeyError> {
        let fingerprint = hookguard_api::admin::key_fingerprint(secret);
        let secret = strip_one_newline(secret);
        let material = match scheme {
            Scheme::StandardWebhooks => standard_webhooks_key(secret)?,
            Scheme::SendGrid => Material::P256(sendgrid_key(secret)?),
            Scheme::Twilio => Material::Twilio {
                sha1: new_sha1_mac(secret)?,
                sha256: new_mac(secret)?,
            },
            Scheme::Generic
            | Scheme::Stripe
            | Scheme::GitHub
            | Scheme::Slack
            | Scheme::Shopify
            | Scheme::Zoom
            | Scheme::Paddle
            | Scheme::Linear
            | Scheme::Square
            | Scheme::Mailgun => Material::Hmac(new_mac(secret)?),
        };
        Ok(Self {
            id: id.into(),
            material,
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

    /// A fresh HMAC-SHA256 state keyed with this key, if it is a shared secret.
    pub(super) fn hmac_sha256(&self) -> Option<Hmac<Sha256>> {
        match &self.material {
            Material::Hmac(mac) | Material::Twilio { sha256: mac, .. } => Some(mac.clone()),
            Material::Ed25519(_) | Material::P256(_) => None,
        }
    }

    pub(super) fn material(&self) -> &Material {
        &self.material
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

fn nonempty(key: &[u8]) -> Result<&[u8], KeyError> {
    if key.is_empty() {
        // HMAC would accept it, but an empty key authenticates nothing.
        return Err(KeyError::Empty);
    }
    Ok(key)
}

fn new_mac(key: &[u8]) -> Result<Hmac<Sha256>, KeyError> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(nonempty(key)?).map_err(|_| KeyError::Unusable)
}

fn new_sha1_mac(key: &[u8]) -> Result<Hmac<Sha1>, KeyError> {
    <Hmac<Sha1> as KeyInit>::new_from_slice(nonempty(key)?).map_err(|_| KeyError::Unusable)
}

fn standard_webhooks_key(secret: &[u8]) -> Result<Material, KeyError> {
    if secret.starts_with(b"whpk_") {
        let bytes = public_key_bytes(Scheme::StandardWebhooks, secret)?;
        let bytes: [u8; ed25519_dalek::PUBLIC_KEY_LENGTH] = bytes
            .try_into()
            .map_err(|_| KeyError::NotEd25519PublicKey)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| KeyError::NotEd25519PublicKey)?;
        return Ok(Material::Ed25519(key));
    }
    if secret.starts_with(b"whsk_") {
        return Err(KeyError::PrivateKey);
    }
    let encoded = secret.strip_prefix(b"whsec_").unwrap_or(secret);
    if encoded.is_empty() {
        return Err(KeyError::Empty);
    }
    // The decoded key lives only as long as this call; the HMAC keeps its own pads.
    let key = BASE64_LENIENT_PADDING
        .decode(encoded)
        .map_err(|_| KeyError::NotBase64)?;
    Ok(Material::Hmac(new_mac(&key)?))
}

fn sendgrid_key(secret: &[u8]) -> Result<p256::ecdsa::VerifyingKey, KeyError> {
    let der = public_key_bytes(Scheme::SendGrid, secret)?;
    p256::ecdsa::VerifyingKey::from_public_key_der(&der).map_err(|_| KeyError::NotP256PublicKey)
}

/// The key's bytes, by the rules the operator checks `secret.publicKey` with (one
/// definition: `hookguard_api::validation::public_key_bytes`).
fn public_key_bytes(scheme: Scheme, text: &[u8]) -> Result<Vec<u8>, KeyError> {
    let text = std::str::from_utf8(text)
        .map_err(|_| KeyError::PublicKeyFormat("is not text".to_owned()))?;
    hookguard_api::validation::public_key_bytes(scheme, text)
        .map_err(|invalid| KeyError::PublicKeyFormat(invalid.problem))
}

/// Why a secret file cannot be used as a signing key. Never carries the material.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
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
    /// A public key file that is not in the form its scheme takes (what is wrong, and what
    /// to paste; a public key is no secret).
    #[error("the public key {0}")]
    PublicKeyFormat(String),
    /// A `whpk_` key whose 32 bytes are not an ed25519 point.
    #[error(
        "the public key is not valid for Standard Webhooks v1a: it is `whpk_` followed by standard base64 of the 32-byte ed25519 public key, as the sender shows it"
    )]
    NotEd25519PublicKey,
    /// A `whsk_` key: the sender's private signing key.
    #[error(
        "this is a Standard Webhooks signing (private) key, `whsk_…`: it belongs to the sender; give the receiver its public key, `whpk_…`"
    )]
    PrivateKey,
    /// A SendGrid key whose bytes are not a P-256 public key.
    #[error(
        "the key is not a SendGrid verification key: paste the Verification Key from SendGrid's Event Webhook settings (base64 of a P-256 public key), or the same key as PEM"
    )]
    NotP256PublicKey,
    /// The HMAC implementation refused the key (HMAC accepts any length, so this indicates a
    /// bug rather than a bad file).
    #[error("the signing secret could not be used as an HMAC key")]
    Unusable,
}
