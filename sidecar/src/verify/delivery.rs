//! Delivery-ID (idempotency key) and event-type extraction, run after [`Verifier::verify`]
//! passed and before the dedup claim and the event filter.
//!
//! The ID is the dedup store's key, so it is bounded and charset-checked here: a verified
//! sender cannot make the sidecar store arbitrary bytes or huge keys.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt;

use http::{HeaderMap, HeaderName};
use serde_json::Value;

use super::common;
use super::{
    KeySource, Rejection, Scheme, Verifier, github, linear, mailgun, shopify, slack,
    standard_webhooks, twilio,
};

/// Longest accepted delivery ID, in bytes.
const MAX_ID_LEN: usize = 256;

/// A received request's parts. The body is parsed as JSON at most once, and only when a
/// JSON pointer is asked for.
pub struct Delivery<'a> {
    headers: &'a HeaderMap,
    body: &'a [u8],
    /// `None` inside: the body is not JSON.
    json: OnceCell<Option<Value>>,
}

impl<'a> Delivery<'a> {
    /// Wraps a request's headers and raw body.
    pub fn new(headers: &'a HeaderMap, body: &'a [u8]) -> Self {
        Self {
            headers,
            body,
            json: OnceCell::new(),
        }
    }

    /// The request's headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The raw body.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    fn json_pointer(&self, pointer: &str) -> Option<&Value> {
        self.json
            .get_or_init(|| serde_json::from_slice(self.body).ok())
            .as_ref()?
            .pointer(pointer)
    }

    fn json_str(&self, pointer: &str) -> Option<Cow<'_, str>> {
        match self.json_pointer(pointer)? {
            Value::String(s) if !s.is_empty() => Some(Cow::Borrowed(s.as_str())),
            _ => None,
        }
    }
}

impl fmt::Debug for Delivery<'_> {
    // Headers carry signatures and the body may carry anything: neither is printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("headers", &self.headers.len())
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// The idempotency key of a verified delivery, from the endpoint's key source or the
    /// scheme's default.
    ///
    /// The key must be 1 to 256 bytes of `[A-Za-z0-9._~:@+/=-]`; from a JSON pointer a string
    /// or an integer is accepted. Absent: [`Rejection::MissingDeliveryId`]; anything else
    /// unusable: [`Rejection::InvalidDeliveryId`].
    pub fn delivery_id<'a>(&self, delivery: &'a Delivery<'a>) -> Result<Cow<'a, str>, Rejection> {
        let headers = delivery.headers;
        match &self.key_source {
            Some(KeySource::Header(name)) => id_from_header(headers, name),
            Some(KeySource::JsonPointer(pointer)) => id_from_json(delivery, pointer),
            None => match self.scheme {
                Scheme::Generic => id_from_header(headers, &self.generic.delivery_id),
                Scheme::StandardWebhooks => {
                    id_from_either(headers, &standard_webhooks::ID, &standard_webhooks::ID_SVIX)
                }
                Scheme::Stripe => id_from_json(delivery, "/id"),
                Scheme::GitHub => id_from_header(headers, &github::DELIVERY),
                Scheme::Slack => slack_id(delivery),
                Scheme::Shopify => {
                    id_from_either(headers, &shopify::WEBHOOK_ID, &shopify::WEBHOOK_ID_NEW)
                }
                Scheme::Twilio => id_from_header(headers, &twilio::IDEMPOTENCY_TOKEN),
                Scheme::Linear => id_from_header(headers, &linear::DELIVERY),
                Scheme::Paddle | Scheme::Square => id_from_json(delivery, "/event_id"),
                // The token is what Mailgun signs: the replay key its documentation names.
                Scheme::Mailgun => {
                    let signed = mailgun::signed(headers, delivery.body)
                        .map_err(|_| Rejection::MissingDeliveryId)?;
                    match signed.token {
                        Cow::Borrowed(token) => checked_id(token.as_bytes()).map(Cow::Borrowed),
                        Cow::Owned(token) => {
                            checked_id(token.as_bytes())?;
                            Ok(Cow::Owned(token))
                        }
                    }
                }
                // Neither sends an ID: the digest of the signed body is one (a retry carries
                // the same body).
                Scheme::Zoom | Scheme::SendGrid => Ok(Cow::Owned(format!(
                    "sha256:{}",
                    common::sha256_hex(delivery.body)
                ))),
            },
        }
    }

    /// Whether a verified request is the sender's endpoint handshake rather than an event:
    /// Slack's `url_verification`, signed but without an event ID. Answering its challenge is
    /// idempotent (and a repeat must be answered again, not as a duplicate), so the sidecar
    /// forwards it without a claim.
    pub fn is_handshake(&self, delivery: &Delivery<'_>) -> bool {
        self.scheme == Scheme::Slack
            && delivery.json_str("/type").as_deref() == Some("url_verification")
    }

    /// Whether the sender needs the app's own answer (its body), so the delivery must be
    /// forwarded while the sender waits even in queue mode: Slack's URL verification (the
    /// app echoes the challenge), and Slack's interactive and slash-command payloads, which
    /// come form-encoded and whose answer the user sees.
    pub fn needs_app_answer(&self, delivery: &Delivery<'_>) -> bool {
        self.scheme == Scheme::Slack
            && (self.is_handshake(delivery) || common::is_form(delivery.headers))
    }

    /// The delivery's event type, if the scheme (or, for Generic, the configuration) says
    /// where to find it and the delivery carries one.
    pub fn event_type<'a>(&self, delivery: &'a Delivery<'a>) -> Option<Cow<'a, str>> {
        let headers = delivery.headers;
        match self.scheme {
            Scheme::Generic => header_str(headers, self.generic.event_type.as_ref()?),
            Scheme::StandardWebhooks | Scheme::Stripe | Scheme::Linear | Scheme::Square => {
                delivery.json_str("/type")
            }
            Scheme::GitHub => header_str(headers, &github::EVENT),
            // Events API callbacks wrap the event; other payloads carry a top-level type; a
            // slash command names its command, an interactive payload its type.
            Scheme::Slack if common::is_form(headers) => slack::form_event_type(delivery.body),
            Scheme::Slack => delivery
                .json_str("/event/type")
                .or_else(|| delivery.json_str("/type")),
            Scheme::Shopify => header_str(headers, &shopify::TOPIC)
                .or_else(|| header_str(headers, &shopify::TOPIC_NEW)),
            Scheme::Zoom => delivery.json_str("/event"),
            Scheme::Paddle => delivery.json_str("/event_type"),
            Scheme::Mailgun => delivery.json_str("/event-data/event"),
            Scheme::Twilio | Scheme::SendGrid => None,
        }
    }
}

/// The top-level `type` of a JSON body, and Slack's `event.type`: read without building a
/// document (unknown fields are skipped), for the delivery log, which must stay cheap.
#[derive(serde::Deserialize)]
struct TypeOnly<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event: Option<InnerType<'a>>,
}

#[derive(serde::Deserialize)]
struct InnerType<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
}

impl Verifier {
    /// [`Verifier::event_type`] for the delivery log: the same answer, but a body not parsed
    /// yet is scanned for the type alone instead of parsed into a document.
    pub fn logged_event_type(&self, delivery: &Delivery<'_>) -> Option<String> {
        let json_scheme = matches!(
            self.scheme,
            Scheme::StandardWebhooks | Scheme::Stripe | Scheme::Slack
        );
        if !json_scheme || delivery.json.get().is_some() {
            return self.event_type(delivery).map(Cow::into_owned);
        }
        let parsed: TypeOnly<'_> = serde_json::from_slice(delivery.body).ok()?;
        let kind = if self.scheme == Scheme::Slack {
            parsed.event.and_then(|e| e.kind).or(parsed.kind)
        } else {
            parsed.kind
        };
        kind.filter(|k| !k.is_empty()).map(Cow::into_owned)
    }
}

/// Slack: the Events API's `event_id` for JSON bodies (an event without one is refused, as
/// before). Slash commands and interactive payloads (form bodies) and empty bodies carry no
/// ID: theirs is `{timestamp}:{hex SHA-256 of the body}`, bound to what is signed, so a
/// replay within the tolerance is a duplicate and after it the timestamp refuses it.
fn slack_id<'a>(delivery: &'a Delivery<'a>) -> Result<Cow<'a, str>, Rejection> {
    if !common::is_form(delivery.headers) && !delivery.body.is_empty() {
        return id_from_json(delivery, "/event_id");
    }
    let ts = delivery
        .headers
        .get(&slack::TIMESTAMP)
        .map(http::HeaderValue::as_bytes)
        .and_then(|ts| checked_id(ts).ok())
        .ok_or(Rejection::MissingDeliveryId)?;
    Ok(Cow::Owned(format!(
        "{ts}:{}",
        common::sha256_hex(delivery.body)
    )))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<Cow<'a, str>> {
    let value = headers.get(name)?.to_str().ok()?;
    (!value.is_empty()).then_some(Cow::Borrowed(value))
}

fn id_from_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Cow<'a, str>, Rejection> {
    // A repeated ID header is ambiguous: the app might read the other copy.
    match common::single(headers, name) {
        Ok(Some(value)) => checked_id(value.as_bytes()).map(Cow::Borrowed),
        Ok(None) => Err(Rejection::MissingDeliveryId),
        Err(_) => Err(Rejection::InvalidDeliveryId),
    }
}

fn id_from_either<'a>(
    headers: &'a HeaderMap,
    primary: &HeaderName,
    alias: &HeaderName,
) -> Result<Cow<'a, str>, Rejection> {
    match id_from_header(headers, primary) {
        Err(Rejection::MissingDeliveryId) => id_from_header(headers, alias),
        other => other,
    }
}

fn id_from_json<'a>(delivery: &'a Delivery<'a>, pointer: &str) -> Result<Cow<'a, str>, Rejection> {
    match delivery.json_pointer(pointer) {
        None | Some(Value::Null) => Err(Rejection::MissingDeliveryId),
        Some(Value::String(s)) => checked_id(s.as_bytes()).map(Cow::Borrowed),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Cow::Owned(n.to_string())),
        Some(_) => Err(Rejection::InvalidDeliveryId),
    }
}

/// Checks length and charset; the charset check also guarantees ASCII, hence UTF-8.
pub(super) fn checked_id(id: &[u8]) -> Result<&str, Rejection> {
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || b"._~:@+/=-".contains(b);
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.iter().all(allowed) {
        return Err(Rejection::InvalidDeliveryId);
    }
    std::str::from_utf8(id).map_err(|_| Rejection::InvalidDeliveryId)
}
