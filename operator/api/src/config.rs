//! The sidecar's endpoint configuration: one JSON file per endpoint in the config directory.
//!
//! The operator renders a `WebhookEndpoint` into this shape (a ConfigMap key named
//! [`CONFIG_FILE_NAME`]); a person running the sidecar by hand writes the same file. It holds
//! no secret material: [`EndpointConfig::secret_dir`] points at the mounted Secret, and every
//! regular file there is one valid signing key (several during a rotation's grace period).
//!
//! Values stay as written (durations like `"10s"`, sizes like `"1Mi"`); the sidecar validates
//! the whole file before it uses any of it and names the field and the fix when it cannot.

use serde::{Deserialize, Serialize};

/// File name of an endpoint's configuration inside its ConfigMap volume.
pub const CONFIG_FILE_NAME: &str = "endpoint.json";
/// Default replay tolerance: how far a signed timestamp may be from the sidecar's clock
/// (per scheme: [`Scheme::default_tolerance`]).
pub const DEFAULT_TOLERANCE: &str = "5m";
/// Default dedup window: how long a processed delivery ID is remembered.
pub const DEFAULT_WINDOW: &str = "24h";
/// Default time the app has to answer a forwarded delivery.
pub const DEFAULT_UPSTREAM_TIMEOUT: &str = "10s";
/// Default largest accepted body.
pub const DEFAULT_MAX_BODY_SIZE: &str = "1Mi";

/// One endpoint served by the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointConfig {
    /// The `WebhookEndpoint`'s name; appears in logs and metric labels.
    pub name: String,
    /// Stable endpoint ID; namespaces this endpoint's keys in the dedup store.
    pub endpoint_id: String,
    /// Request path served for this endpoint, e.g. `/webhooks/stripe`.
    pub path: String,
    /// How deliveries are signed.
    pub scheme: Scheme,
    /// Header names for the `Generic` scheme; refused for other schemes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic: Option<GenericOptions>,
    /// The URL the sender calls, as configured at the sender (`https://host/path`, no
    /// query): Twilio and Square sign it. Required for those schemes, refused for others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Where verified deliveries go.
    pub upstream: Upstream,
    /// Directory holding the signing keys, one file each (the mounted Secret).
    pub secret_dir: String,
    /// Replay protection.
    #[serde(default)]
    pub replay: Replay,
    /// Where the idempotency (delivery) key comes from; the scheme's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<IdempotencyKey>,
    /// Event types to forward; other types are answered 200 and marked filtered. Empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    /// Largest accepted body, e.g. `1Mi`; larger requests get 413.
    #[serde(default = "default_max_body_size")]
    pub max_body_size: String,
    /// What to do when the dedup store cannot answer in time.
    #[serde(default)]
    pub store_unavailable: StoreUnavailable,
    /// How verified deliveries reach the app: the sender waits for it (`Sync`), or the
    /// sidecar answers once the delivery is durably queued (`Queue`).
    #[serde(default, skip_serializing_if = "Delivery::is_default")]
    pub delivery: Delivery,
}

/// Signature schemes Hookguard verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
pub enum Scheme {
    /// Lower-case hex HMAC-SHA256 of the raw body in one header (default `X-Signature`).
    Generic,
    /// Standard Webhooks / Svix: `webhook-id`, `webhook-timestamp`, `webhook-signature`;
    /// `v1` (HMAC, `whsec_` secrets) and `v1a` (ed25519, `whpk_` public keys).
    StandardWebhooks,
    /// Stripe: `Stripe-Signature: t=…,v1=…`.
    Stripe,
    /// GitHub: `X-Hub-Signature-256: sha256=…`.
    GitHub,
    /// Slack: `X-Slack-Signature: v0=…` over `v0:{timestamp}:{body}`.
    Slack,
    /// Shopify: `X-Shopify-Hmac-Sha256`, base64 HMAC of the body.
    Shopify,
    /// Twilio: `X-Twilio-Signature`, base64 HMAC-SHA1 (or SHA-256) of the public URL and the
    /// sorted form parameters.
    Twilio,
    /// Zoom: `x-zm-signature: v0=…` over `v0:{timestamp}:{body}`; the sidecar answers the
    /// `endpoint.url_validation` challenge itself.
    Zoom,
    /// Paddle Billing: `Paddle-Signature: ts=…;h1=…` over `{ts}:{body}`.
    Paddle,
    /// Linear: `Linear-Signature`, hex HMAC of the body; the body's `webhookTimestamp` (ms).
    Linear,
    /// Square: `x-square-hmacsha256-signature`, base64 HMAC of the notification URL + body.
    Square,
    /// Mailgun: the body's `signature` block, HMAC of timestamp + token (the body itself is
    /// not signed).
    Mailgun,
    /// SendGrid Event Webhook: ECDSA P-256 over timestamp + body, checked with a public key.
    SendGrid,
}

impl Scheme {
    /// Every scheme, in documentation order.
    pub const ALL: [Scheme; 13] = [
        Scheme::Generic,
        Scheme::StandardWebhooks,
        Scheme::Stripe,
        Scheme::GitHub,
        Scheme::Slack,
        Scheme::Shopify,
        Scheme::Twilio,
        Scheme::Zoom,
        Scheme::Paddle,
        Scheme::Linear,
        Scheme::Square,
        Scheme::Mailgun,
        Scheme::SendGrid,
    ];

    /// The name as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Generic => "Generic",
            Scheme::StandardWebhooks => "StandardWebhooks",
            Scheme::Stripe => "Stripe",
            Scheme::GitHub => "GitHub",
            Scheme::Slack => "Slack",
            Scheme::Shopify => "Shopify",
            Scheme::Twilio => "Twilio",
            Scheme::Zoom => "Zoom",
            Scheme::Paddle => "Paddle",
            Scheme::Linear => "Linear",
            Scheme::Square => "Square",
            Scheme::Mailgun => "Mailgun",
            Scheme::SendGrid => "SendGrid",
        }
    }

    /// The name as the CLI's `--scheme` writes it (kebab case; the CLI accepts
    /// [`Scheme::as_str`] too).
    pub fn cli_name(self) -> &'static str {
        match self {
            Scheme::Generic => "generic",
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::Stripe => "stripe",
            Scheme::GitHub => "github",
            Scheme::Slack => "slack",
            Scheme::Shopify => "shopify",
            Scheme::Twilio => "twilio",
            Scheme::Zoom => "zoom",
            Scheme::Paddle => "paddle",
            Scheme::Linear => "linear",
            Scheme::Square => "square",
            Scheme::Mailgun => "mailgun",
            Scheme::SendGrid => "sendgrid",
        }
    }

    /// Whether the scheme's default delivery ID is covered by the signature (a signed ID
    /// header, an ID inside the signed body, or a digest of what is signed). Where it is not,
    /// a captured delivery could be replayed under a fresh ID header, so the sidecar also
    /// deduplicates on the hash of the verified body.
    pub fn default_id_is_signed(self) -> bool {
        !matches!(
            self,
            Scheme::Generic | Scheme::GitHub | Scheme::Shopify | Scheme::Twilio | Scheme::Linear
        )
    }

    /// The replay tolerance when `replay.tolerance` is unset: the sender's own SDK default
    /// where it is tighter than [`DEFAULT_TOLERANCE`] (Paddle 5 s, Linear 1 m).
    pub fn default_tolerance(self) -> &'static str {
        match self {
            Scheme::Paddle => "5s",
            Scheme::Linear => "1m",
            _ => DEFAULT_TOLERANCE,
        }
    }

    /// Whether the signed bytes include the public URL the sender calls, so the endpoint
    /// must say it (`publicUrl`).
    pub fn signs_public_url(self) -> bool {
        matches!(self, Scheme::Twilio | Scheme::Square)
    }

    /// Whether the receiver may choose the signing secret, so the operator can generate it.
    /// The other senders issue their secret (or, for SendGrid, a public key): it comes from
    /// a `secretRef` (or `publicKey`).
    pub fn receiver_chooses_secret(self) -> bool {
        matches!(
            self,
            Scheme::Generic
                | Scheme::StandardWebhooks
                | Scheme::Stripe
                | Scheme::GitHub
                | Scheme::Slack
                | Scheme::Shopify
        )
    }

    /// Whether deliveries are checked with a public key (SendGrid; Standard Webhooks `v1a`).
    pub fn takes_public_key(self) -> bool {
        matches!(self, Scheme::SendGrid | Scheme::StandardWebhooks)
    }

    /// Whether deliveries carry one event type `eventTypes` can filter on (Generic: when
    /// `generic.eventTypeHeader` names it). Twilio sends none, SendGrid batches events of
    /// several types into one request.
    pub fn has_event_type(self) -> bool {
        !matches!(self, Scheme::Twilio | Scheme::SendGrid)
    }
}

/// Header names of the `Generic` scheme.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenericOptions {
    /// Header carrying the lower-case hex signature. Default `X-Signature`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(length(min = 1, max = 256)))]
    pub signature_header: Option<String>,
    /// Header carrying the delivery ID. Default `X-Delivery-Id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(length(min = 1, max = 256)))]
    pub delivery_id_header: Option<String>,
    /// Header carrying the event type, used by `eventTypes`. No default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(length(min = 1, max = 256)))]
    pub event_type_header: Option<String>,
}

/// The app container the sidecar forwards to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Upstream {
    /// The app's port on localhost.
    pub port: u16,
    /// Path on the app; default: the request's own path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Time the app has to answer, e.g. `10s`.
    #[serde(default = "default_upstream_timeout")]
    pub timeout: String,
}

/// Replay protection settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Replay {
    /// Largest accepted distance between a signed timestamp and the sidecar's clock; unset:
    /// the scheme's default ([`Scheme::default_tolerance`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<String>,
    /// How long a processed delivery is remembered; at least twice the tolerance.
    #[serde(default = "default_window")]
    pub window: String,
}

impl Default for Replay {
    fn default() -> Self {
        Replay {
            tolerance: None,
            window: default_window(),
        }
    }
}

/// Where the idempotency key of a delivery comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum IdempotencyKey {
    /// A request header, e.g. `X-Delivery-Id`.
    Header(String),
    /// A JSON pointer into the body, e.g. `/id`.
    JsonPointer(String),
}

/// What the sidecar does when the dedup store is unavailable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
pub enum StoreUnavailable {
    /// Answer 503 with `Retry-After`; the sender retries later. The safe default.
    #[default]
    Reject,
    /// Forward without deduplication and count it in a metric.
    Allow,
}

/// Default retry schedule of queue mode: the delay before each retry after a failed attempt
/// (Svix's schedule, about 27.6 hours in all).
pub const DEFAULT_RETRY_SCHEDULE: [&str; 7] = ["5s", "5m", "30m", "2h", "5h", "10h", "10h"];
/// Default most attempts of one queued delivery: the first and one per scheduled retry.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Default oldest age of a queued delivery still attempted; older ones are dead-lettered.
pub const DEFAULT_MAX_AGE: &str = "72h";
/// Default most deliveries of one endpoint at one app (per sidecar) at once.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 10;
/// Default most deliveries one endpoint holds in the queue (waiting, retrying or dead).
pub const DEFAULT_MAX_QUEUED: u64 = 10_000;
/// Default most body bytes one endpoint holds in the queue.
pub const DEFAULT_MAX_QUEUED_BYTES: &str = "64Mi";

/// How verified deliveries reach the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delivery {
    /// `Sync` (the default) or `Queue`.
    #[serde(default)]
    pub mode: DeliveryMode,
    /// Queue mode: what a 2xx to the sender promises.
    #[serde(default)]
    pub durability: Durability,
    /// Queue mode: the delay before each retry, e.g. `["5s", "5m", "30m"]`; past its end the
    /// last delay repeats until `maxAttempts` or `maxAge`.
    #[serde(default = "default_retry_schedule")]
    pub retry_schedule: Vec<String>,
    /// Queue mode: most attempts of one delivery before it is dead-lettered.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Queue mode: a delivery older than this is dead-lettered instead of retried.
    #[serde(default = "default_max_age")]
    pub max_age: String,
    /// Queue mode: most deliveries at the app at once, per sidecar.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: u32,
    /// Queue mode: most deliveries started per second, per sidecar; unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Queue mode: stop delivering (deliveries are still accepted up to the caps).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Queue mode: most deliveries held for this endpoint (waiting, retrying or dead-lettered);
    /// past it senders get 503 with `Retry-After`.
    #[serde(default = "default_max_queued")]
    pub max_queued: u64,
    /// Queue mode: most bytes held for this endpoint (stored requests), e.g. `64Mi`.
    #[serde(default = "default_max_queued_bytes")]
    pub max_queued_bytes: String,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            mode: DeliveryMode::default(),
            durability: Durability::default(),
            retry_schedule: default_retry_schedule(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_age: default_max_age(),
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            rate_limit: None,
            paused: false,
            max_queued: DEFAULT_MAX_QUEUED,
            max_queued_bytes: default_max_queued_bytes(),
        }
    }
}

impl Delivery {
    /// Whether every field has its default (then the file leaves `delivery` out).
    pub fn is_default(&self) -> bool {
        *self == Delivery::default()
    }
}

/// Whether the sender waits for the app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
pub enum DeliveryMode {
    /// The sender waits for the app; the app's answer is the sender's.
    #[default]
    Sync,
    /// The sender gets 2xx once the delivery is durably queued; the sidecar then delivers it
    /// to the app with retries and a dead-letter queue.
    Queue,
}

/// What a queue-mode 2xx promises the sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
pub enum Durability {
    /// On disk: Redis fsynced the delivery (`appendfsync always`, or `WAITAOF` on Redis or
    /// Valkey 7.2 and later) before the 2xx. The sidecar refuses queue mode otherwise.
    #[default]
    Disk,
    /// In the store's memory only: a Redis crash (or, for the in-memory store, a sidecar
    /// restart) can lose deliveries already answered 2xx.
    Memory,
}

impl Durability {
    /// The name as written in configuration and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Disk => "Disk",
            Durability::Memory => "Memory",
        }
    }
}

pub(crate) fn default_retry_schedule() -> Vec<String> {
    DEFAULT_RETRY_SCHEDULE
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}
pub(crate) fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}
pub(crate) fn default_max_age() -> String {
    DEFAULT_MAX_AGE.to_owned()
}
pub(crate) fn default_max_concurrency() -> u32 {
    DEFAULT_MAX_CONCURRENCY
}
pub(crate) fn default_max_queued() -> u64 {
    DEFAULT_MAX_QUEUED
}
pub(crate) fn default_max_queued_bytes() -> String {
    DEFAULT_MAX_QUEUED_BYTES.to_owned()
}

fn default_window() -> String {
    DEFAULT_WINDOW.to_owned()
}
fn default_upstream_timeout() -> String {
    DEFAULT_UPSTREAM_TIMEOUT.to_owned()
}
fn default_max_body_size() -> String {
    DEFAULT_MAX_BODY_SIZE.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_file_gets_the_documented_defaults() {
        let config: EndpointConfig = serde_json::from_str(
            r#"{"name":"n","endpointId":"id","path":"/h","scheme":"Stripe",
                "upstream":{"port":8080},"secretDir":"/s"}"#,
        )
        .unwrap();
        assert_eq!(
            config.replay,
            Replay {
                tolerance: None,
                window: "24h".into()
            }
        );
        assert_eq!(config.upstream.timeout, "10s");
        assert_eq!(config.max_body_size, "1Mi");
        assert_eq!(config.store_unavailable, StoreUnavailable::Reject);
        assert_eq!(config.idempotency_key, None);
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let err = serde_json::from_str::<EndpointConfig>(
            r#"{"name":"n","endpointId":"id","path":"/h","scheme":"Stripe",
                "upstream":{"port":8080},"secretDir":"/s","maxBodySise":"1Mi"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("maxBodySise"), "{err}");
    }

    #[test]
    fn idempotency_key_is_one_of_header_or_pointer() {
        let key: IdempotencyKey = serde_json::from_str(r#"{"jsonPointer":"/id"}"#).unwrap();
        assert_eq!(key, IdempotencyKey::JsonPointer("/id".into()));
        assert!(
            serde_json::from_str::<IdempotencyKey>(r#"{"header":"a","jsonPointer":"/b"}"#).is_err()
        );
    }
}
