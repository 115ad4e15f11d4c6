//! Twilio: `X-Twilio-Signature: <base64>`, an HMAC of the public URL Twilio called (query
//! included) followed by the form parameters sorted by name, each as `name` + `value`.
//!
//! - The Auth Token signs with HMAC-SHA1; a Webhooks-Rule key with HMAC-SHA256, which the
//!   request announces in `X-Twilio-Webhooks-Signature-Settings: …,algorithm=HMAC_SHA256`.
//! - JSON (and every other non-form) body is signed through the URL: Twilio adds
//!   `bodySHA256=<hex SHA-256 of the body>` to the query, and that must match the body.
//! - The URL is the endpoint's `publicUrl` (what Twilio is configured to call; behind a proxy
//!   the sidecar cannot see it) plus the request's query. Like Twilio's SDKs, the URL is also
//!   tried with the default port written out, or left out.
//! - No timestamp: replay protection is dedup on `I-Twilio-Idempotency-Token` and the body.

use std::borrow::Cow;

use hmac::Mac as _;
use http::{HeaderMap, HeaderName};
use subtle::ConstantTimeEq as _;

use super::common;
use super::keys::Material;
use super::{Rejection, Verifier};

static SIGNATURE: HeaderName = HeaderName::from_static("x-twilio-signature");
static SETTINGS: HeaderName = HeaderName::from_static("x-twilio-webhooks-signature-settings");
pub(super) static IDEMPOTENCY_TOKEN: HeaderName =
    HeaderName::from_static("i-twilio-idempotency-token");

/// Most form parameters signed; Twilio sends a few dozen.
const MAX_PARAMS: usize = 1024;

/// Decoded form parameters, borrowing the body where nothing needed decoding.
type Params<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Sha1,
    Sha256,
}

pub(super) fn verify(
    v: &Verifier,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Rejection> {
    let value = common::required(headers, &SIGNATURE)?;
    let algorithm = algorithm(headers)?;
    let mut buf = [0_u8; 40];
    let presented = common::decode_base64_into(value, &mut buf)
        .map_err(|()| common::malformed(&SIGNATURE, "expected base64"))?
        .unwrap_or_default();
    let Some(url) = &v.public_url else {
        // The configuration check requires publicUrl for Twilio.
        return Err(Rejection::SignatureMismatch);
    };

    let params = if common::is_form(headers) {
        sorted_params(body)?
    } else {
        // Not a form: the body is covered only through `bodySHA256` in the signed URL.
        let declared = query_param(query, "bodySHA256");
        if !body.is_empty() || declared.is_some() {
            let declared = declared.ok_or(Rejection::MalformedBody(
                "a non-form Twilio body is signed through the bodySHA256 query parameter, and the request has none",
            ))?;
            let actual = common::sha256_hex(body);
            if !bool::from(actual.as_bytes().ct_eq(declared.as_bytes())) {
                return Err(Rejection::SignatureMismatch);
            }
        }
        Vec::new()
    };

    let forms = std::iter::once(url.url.as_str()).chain(url.other_form.as_deref());
    for form in forms {
        for key in &v.keys {
            let Material::Twilio { sha1, sha256 } = key.material() else {
                continue;
            };
            let matched = match algorithm {
                Algorithm::Sha1 => {
                    let mut mac = sha1.clone();
                    feed(&mut mac, form, query, &params);
                    bool::from(mac.finalize().into_bytes().as_slice().ct_eq(presented))
                }
                Algorithm::Sha256 => {
                    let mut mac = sha256.clone();
                    feed(&mut mac, form, query, &params);
                    bool::from(mac.finalize().into_bytes().as_slice().ct_eq(presented))
                }
            };
            if matched {
                return Ok(());
            }
        }
    }
    Err(Rejection::SignatureMismatch)
}

fn feed<M: hmac::Mac>(mac: &mut M, url: &str, query: Option<&str>, params: &Params<'_>) {
    mac.update(url.as_bytes());
    if let Some(query) = query {
        mac.update(b"?");
        mac.update(query.as_bytes());
    }
    for (name, value) in params {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
}

/// `X-Twilio-Webhooks-Signature-Settings`: absent means the Auth Token's HMAC-SHA1.
fn algorithm(headers: &HeaderMap) -> Result<Algorithm, Rejection> {
    let Some(value) = common::single(headers, &SETTINGS)? else {
        return Ok(Algorithm::Sha1);
    };
    let named = value
        .as_bytes()
        .split(|&b| b == b',')
        .find_map(|part| part.trim_ascii().strip_prefix(b"algorithm="));
    match named {
        None | Some(b"HMAC_SHA1") => Ok(Algorithm::Sha1),
        Some(b"HMAC_SHA256") => Ok(Algorithm::Sha256),
        Some(_) => Err(common::malformed(
            &SETTINGS,
            "algorithm is neither HMAC_SHA1 nor HMAC_SHA256",
        )),
    }
}

/// The form parameters, decoded, sorted by name and then value, each distinct pair once (as
/// Twilio's SDKs sign them).
fn sorted_params(body: &[u8]) -> Result<Params<'_>, Rejection> {
    let mut params: Vec<_> = form_urlencoded::parse(body).take(MAX_PARAMS + 1).collect();
    if params.len() > MAX_PARAMS {
        return Err(Rejection::MalformedBody("more than 1024 form parameters"));
    }
    params.sort();
    params.dedup();
    Ok(params)
}

/// The value of `name` in a raw query string, as sent (Twilio writes hex there, nothing to
/// decode).
fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}
