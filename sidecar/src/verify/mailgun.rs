//! Mailgun: the signature travels **in the body**: JSON `{"signature": {"timestamp",
//! "token", "signature"}, "event-data": {…}}` (or, from legacy webhooks and routes, the form
//! fields `timestamp`, `token` and `signature`), a lower-case hex HMAC-SHA256 of
//! `{timestamp}{token}` under the HTTP webhook signing key.
//!
//! The body itself is **not** signed: the signature proves only that Mailgun minted the
//! `(timestamp, token)` pair. The token is therefore the delivery ID, so a signature block
//! seen once is a duplicate whatever body comes with it, and the timestamp is held to the
//! tolerance.

use std::borrow::Cow;

use http::HeaderMap;

use super::common::{self, Candidates};
use super::{Rejection, Verifier};

#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    signature: Option<Block<'a>>,
}

#[derive(serde::Deserialize)]
struct Block<'a> {
    #[serde(borrow, default)]
    timestamp: Option<Stamp<'a>>,
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    signature: Option<Cow<'a, str>>,
}

/// Mailgun writes the timestamp as a string of digits; a number is taken too.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Stamp<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Number(u64),
}

/// The signature block of a Mailgun body.
pub(super) struct Signed<'a> {
    timestamp: Cow<'a, str>,
    pub(super) token: Cow<'a, str>,
    signature: Cow<'a, str>,
}

/// Reads the signature block from a JSON body, or from the fields of a form body.
pub(super) fn signed<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<Signed<'a>, Rejection> {
    const MISSING: Rejection = Rejection::MalformedBody(
        "a Mailgun body carries signature.timestamp, signature.token and signature.signature",
    );
    if common::is_form(headers) {
        let field = |name| common::form_field(body, name).ok_or(MISSING);
        return Ok(Signed {
            timestamp: field("timestamp")?,
            token: field("token")?,
            signature: field("signature")?,
        });
    }
    let envelope: Envelope<'a> = serde_json::from_slice(body).map_err(|_| MISSING)?;
    let block = envelope.signature.ok_or(MISSING)?;
    let timestamp = match block.timestamp.ok_or(MISSING)? {
        Stamp::Text(text) => text,
        Stamp::Number(n) => Cow::Owned(n.to_string()),
    };
    Ok(Signed {
        timestamp,
        token: block.token.ok_or(MISSING)?,
        signature: block.signature.ok_or(MISSING)?,
    })
}

pub(super) fn verify(
    v: &Verifier,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<(), Rejection> {
    let signed = signed(headers, body)?;
    let presented = common::decode_lower_hex(signed.signature.as_bytes())
        .map_err(|()| Rejection::MalformedBody("the Mailgun signature is not lower-case hex"))?;
    let ts = common::parse_unix_seconds(signed.timestamp.as_bytes()).ok_or(
        Rejection::MalformedBody("the Mailgun signature timestamp is not unix seconds"),
    )?;
    if signed.token.is_empty() {
        return Err(Rejection::MalformedBody(
            "the Mailgun signature token is empty",
        ));
    }
    v.check_timestamp(ts, now_unix)?;
    v.check_signature(
        &[signed.timestamp.as_bytes(), signed.token.as_bytes()],
        &Candidates::one(presented),
    )
}
