//! The `WebhookEndpoint` custom resource (`hookguard.dev/v1alpha1`).
//!
//! The schema, its defaults and its CEL rules come from these types; `crds/` holds the
//! generated YAML and a test fails when it is stale. Doc comments become the descriptions
//! `kubectl explain webhookendpoint.spec` shows, so they are written for the user.
//! The operator never writes `spec`; it reports through `status` only.

// The doc comments below are what `kubectl explain` prints: plain prose, no Markdown.
#![allow(clippy::doc_markdown)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use kube::core::Message;

use crate::config::{
    DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_QUEUED, DeliveryMode, Durability,
    GenericOptions, Scheme, StoreUnavailable,
};
use crate::names::{SIDECAR_ADMIN_PORT, SIDECAR_PORT};
use crate::validation::{
    self, MAX_ATTEMPTS, MAX_BODY_SIZE, MAX_CONCURRENCY, MAX_EVENT_TYPE_LENGTH,
    MAX_PUBLIC_KEY_LENGTH, MAX_PUBLIC_URL_LENGTH, MAX_RETRY_DELAY, MAX_RETRY_DELAY_LENGTH,
    MAX_RETRY_SCHEDULE, PEM_PUBLIC_KEY_BEGIN, PEM_PUBLIC_KEY_END, SecretKind, WHPK_PREFIX,
};

/// Matches a duration such as `500ms`, `30s`, `5m` or `1h30m` (whole numbers per unit).
const DURATION_PATTERN: &str = "^([0-9]+(ns|us|ms|s|m|h))+$";
/// Matches an integer byte size with an optional unit such as `65536`, `64Ki` or `1Mi`.
const SIZE_PATTERN: &str = "^[0-9]+(Ki|Mi|Gi|k|M|G)?$";

// The rules below state `validation.rs` for the API server; `tests/tests/validity.rs` sends a
// table of valid and invalid specs to a real API server and fails where the two disagree.

/// CEL: a URL path of RFC 3986 path characters only (anything else percent-encoded).
const PATH_CHARS_RULE: &str = r#"self.matches(r"^[A-Za-z0-9._~!$&'()*+,;=:@/%-]*$")"#;
/// CEL: no `.` or `..` segment.
const PATH_DOT_SEGMENT_RULE: &str = r#"!self.matches(r"(^|/)[.][.]?(/|$)")"#;
/// CEL: every `%` starts a two-digit hex encoding.
const PATH_PERCENT_RULE: &str =
    r#"!self.matches(r"%([^0-9A-Fa-f]|$|[0-9A-Fa-f]([^0-9A-Fa-f]|$))")"#;
/// CEL: an HTTP header name (RFC 9110 token).
const HEADER_NAME_RULE: &str = r#"self.matches(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")"#;

/// [`HEADER_NAME_RULE`] for the optional field `name` of `self`.
fn header_rule(name: &str) -> String {
    format!(
        "!has(self.{name}) || {}",
        HEADER_NAME_RULE.replace("self.", &format!("self.{name}."))
    )
}
const PATH_CHARS_MESSAGE: &str =
    "a path holds only URL path characters: percent-encode others (a space is %20)";
const PATH_DOT_SEGMENT_MESSAGE: &str =
    "a path has no '.' or '..' segment: HTTP clients resolve those away before sending";
const PATH_PERCENT_MESSAGE: &str = "in a path, '%' starts a percent-encoding such as %20";
const HEADER_NAME_MESSAGE: &str =
    "a header name holds letters, digits and - (such as X-Delivery-Id)";

fn port_rule() -> String {
    format!("self != {SIDECAR_PORT} && self != {SIDECAR_ADMIN_PORT}")
}
fn port_message() -> Message {
    Message::Message(format!(
        "upstream.port must be the app container's port, not the sidecar's own ({SIDECAR_PORT}, {SIDECAR_ADMIN_PORT}): deliveries would loop"
    ))
}
fn event_types_rule() -> String {
    format!("self.all(t, size(t) >= 1 && size(t) <= {MAX_EVENT_TYPE_LENGTH})")
}
fn event_types_message() -> Message {
    Message::Message(format!(
        "each of eventTypes is 1 to {MAX_EVENT_TYPE_LENGTH} characters, such as invoice.paid"
    ))
}
fn body_size_rule() -> String {
    format!(
        "!self.matches('{SIZE_PATTERN}') || (quantity(self).isGreaterThan(quantity('0')) && quantity(self).compareTo(quantity('{MAX_BODY_SIZE}')) <= 0)"
    )
}

/// CEL: a duration written as [`DURATION_PATTERN`], longer than zero and at most
/// [`MAX_RETRY_DELAY`]; `var` names the value.
fn bounded_duration_rule(var: &str) -> String {
    let max_hours = MAX_RETRY_DELAY.as_secs() / 3600;
    format!(
        "{var}.matches('{DURATION_PATTERN}') && duration({var}) > duration('0s') && duration({var}) <= duration('{max_hours}h')"
    )
}
fn retry_schedule_rule() -> String {
    format!("self.all(d, {})", bounded_duration_rule("d"))
}
fn retry_schedule_length_message() -> Message {
    Message::Message(format!(
        "delivery.retrySchedule lists 1 to {MAX_RETRY_SCHEDULE} delays, such as [5s, 5m, 30m]"
    ))
}
/// [`MAX_RETRY_DELAY`] as a message writes it: `720h (30 days)`.
fn max_delay_text() -> String {
    let hours = MAX_RETRY_DELAY.as_secs() / 3600;
    format!("{hours}h ({} days)", hours / 24)
}
fn retry_schedule_message() -> Message {
    Message::Message(format!(
        "each delay of delivery.retrySchedule is a positive duration of at most {}, such as 5s, 5m or 1h30m",
        max_delay_text()
    ))
}
fn max_age_message() -> Message {
    Message::Message(format!(
        "delivery.maxAge is a positive duration of at most {}, such as 72h",
        max_delay_text()
    ))
}
/// A CEL string literal holding `text`.
fn cel_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// CEL: the names of the schemes `pick` selects, as a list literal.
fn scheme_list(pick: impl Fn(Scheme) -> bool) -> String {
    let names: Vec<String> = Scheme::ALL
        .into_iter()
        .filter(|scheme| pick(*scheme))
        .map(|scheme| format!("'{}'", scheme.as_str()))
        .collect();
    format!("[{}]", names.join(", "))
}

/// CEL: a map literal from each scheme's name to `value`'s text, for the schemes that have
/// one; `[self.scheme]` after it picks the endpoint's.
fn scheme_map(value: impl Fn(Scheme) -> Option<String>) -> String {
    let entries: Vec<String> = Scheme::ALL
        .into_iter()
        .filter_map(|scheme| {
            let text = value(scheme)?;
            Some(format!("'{}': {}", scheme.as_str(), cel_string(&text)))
        })
        .collect();
    format!("{{{}}}", entries.join(", "))
}

/// A CEL message expression: the text `value` gives the endpoint's scheme. Every rule using
/// one fails only for schemes the map holds.
fn scheme_message(value: impl Fn(Scheme) -> Option<String>) -> Message {
    Message::Expression(format!("{}[self.scheme]", scheme_map(value)))
}

/// CEL at the spec: `publicUrl` is set for the schemes that sign the URL they call.
fn public_url_required_rule() -> String {
    format!(
        "has(self.publicUrl) || !(self.scheme in {})",
        scheme_list(Scheme::signs_public_url)
    )
}
fn public_url_required_message() -> Message {
    scheme_message(|scheme| Some(validation::public_url(scheme, None).err()?.problem))
}
/// CEL at the spec: `publicUrl` is set only for the schemes that sign the URL they call.
fn public_url_refused_rule() -> String {
    format!(
        "!has(self.publicUrl) || self.scheme in {}",
        scheme_list(Scheme::signs_public_url)
    )
}
fn public_url_refused_message() -> Message {
    scheme_message(|scheme| {
        Some(
            validation::public_url(scheme, Some("https://example.com/"))
                .err()?
                .problem,
        )
    })
}
/// CEL: a 16-bit port, as digits (leading zeros allowed, as the Rust rule does).
const PORT_PATTERN: &str =
    "([0-9]{1,4}|[0-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";
fn public_url_rule() -> String {
    format!("self.matches('^https?://[A-Za-z0-9.-]+(:{PORT_PATTERN})?(/.*)?$')")
}
/// CEL: the path of an absolute URL holds URL path characters only.
const PUBLIC_URL_PATH_RULE: &str =
    r#"self.matches(r"^https?://[^/]*(/[A-Za-z0-9._~!$&'()*+,;=:@/%-]*)?$")"#;

/// CEL at the spec: `secret.generate` only where the receiver chooses the secret.
fn generate_rule() -> String {
    format!(
        "!has(self.secret) || !has(self.secret.generate) || self.scheme in {}",
        scheme_list(Scheme::receiver_chooses_secret)
    )
}
fn generate_message() -> Message {
    scheme_message(|scheme| {
        Some(
            validation::secret_source(scheme, SecretKind::Generate)
                .err()?
                .problem,
        )
    })
}
/// CEL at the spec: `secret.publicKey` only for schemes checked with a public key.
fn public_key_refused_rule() -> String {
    format!(
        "!has(self.secret) || !has(self.secret.publicKey) || self.scheme in {}",
        scheme_list(Scheme::takes_public_key)
    )
}
fn public_key_refused_message() -> Message {
    scheme_message(|scheme| {
        Some(
            validation::secret_source(scheme, SecretKind::PublicKey)
                .err()?
                .problem,
        )
    })
}

/// CEL: `key` (an expression) is a public key of `scheme` as [`validation::public_key`]
/// reads it; `None` where the scheme takes none.
fn public_key_cel(scheme: Scheme, key: &str) -> Option<String> {
    let trimmed = format!("{key}.trim()");
    match scheme {
        Scheme::SendGrid => {
            // The DER header of a P-256 SubjectPublicKeyInfo is 27 bytes, 36 base64
            // characters; the 64 bytes of the point follow, the last one alone in its group.
            let der = "'^MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE[A-Za-z0-9+/]{85}[AQgw]==$'";
            let (begin, end) = (PEM_PUBLIC_KEY_BEGIN.len(), PEM_PUBLIC_KEY_END.len());
            Some(format!(
                "{trimmed}.matches({der}) || ({trimmed}.startsWith('{PEM_PUBLIC_KEY_BEGIN}') && {trimmed}.endsWith('{PEM_PUBLIC_KEY_END}') && size({trimmed}) >= {} && {trimmed}.substring({begin}, size({trimmed}) - {end}).replace(' ', '').replace('\\n', '').replace('\\r', '').replace('\\t', '').matches({der}))",
                begin + end
            ))
        }
        // 32 bytes: 43 base64 characters (the last holding two bits) and one '='.
        Scheme::StandardWebhooks => Some(format!(
            "{trimmed}.matches('^{WHPK_PREFIX}[A-Za-z0-9+/]{{42}}[AEIMQUYcgkosw048]=$')"
        )),
        _ => None,
    }
}
/// CEL at the spec: `secret.publicKey` is a public key of the scheme (schemes that take
/// none are the rule above's).
fn public_key_rule() -> String {
    let formats: Vec<String> = Scheme::ALL
        .into_iter()
        .filter_map(|scheme| {
            let format = public_key_cel(scheme, "self.secret.publicKey")?;
            Some(format!(
                "(self.scheme == '{}' && ({format}))",
                scheme.as_str()
            ))
        })
        .collect();
    format!(
        "!has(self.secret) || !has(self.secret.publicKey) || !(self.scheme in {}) || {}",
        scheme_list(Scheme::takes_public_key),
        formats.join(" || ")
    )
}
fn public_key_message() -> Message {
    scheme_message(|scheme| {
        Some(format!(
            "secret.publicKey must be {}",
            validation::public_key_format(scheme)?
        ))
    })
}

/// CEL at the spec: `eventTypes` only for schemes whose deliveries carry one event type.
fn event_types_scheme_rule() -> String {
    format!(
        "!has(self.eventTypes) || size(self.eventTypes) == 0 || self.scheme in {}",
        scheme_list(Scheme::has_event_type)
    )
}
fn event_types_scheme_message() -> Message {
    scheme_message(|scheme| (!scheme.has_event_type()).then(|| validation::no_event_type(scheme)))
}

/// CEL at the spec: with `replay.tolerance` unset, the window is at least twice the
/// scheme's default tolerance. (Set, [`ReplaySpec`]'s own rule compares the two.)
fn default_window_rule() -> String {
    let defaults = scheme_map(|scheme| Some(scheme.default_tolerance().to_owned()));
    format!(
        "!has(self.replay) || has(self.replay.tolerance) || !has(self.replay.window) || !self.replay.window.matches('{DURATION_PATTERN}') || duration(self.replay.window) >= duration({defaults}[self.scheme]) + duration({defaults}[self.scheme])"
    )
}
fn default_window_message() -> Message {
    scheme_message(|scheme| {
        Some(format!(
            "replay.window {}",
            validation::window_too_short(&format!(
                "{}, the {} default",
                scheme.default_tolerance(),
                scheme.as_str()
            ))
        ))
    })
}
/// CEL at `replay`: a set tolerance fits twice into the window. Either written wrongly is
/// its own field's error.
fn window_rule() -> String {
    format!(
        "!has(self.tolerance) || !self.tolerance.matches('{DURATION_PATTERN}') || !self.window.matches('{DURATION_PATTERN}') || duration(self.window) >= duration(self.tolerance) + duration(self.tolerance)"
    )
}
fn window_message() -> Message {
    let text = validation::window_too_short("\u{1}");
    let (before, after) = text.split_once('\u{1}').unwrap_or((&text, ""));
    Message::Expression(format!(
        "{} + self.tolerance + {}",
        cel_string(&format!("replay.window {before}")),
        cel_string(after)
    ))
}

/// CEL at the spec: `delivery.maxQueuedBytes` holds at least one body of `maxBodySize`. Either
/// size written wrongly is its own field's error.
fn queued_bytes_rule() -> String {
    format!(
        "!has(self.delivery) || !has(self.delivery.maxQueuedBytes) || !self.delivery.maxQueuedBytes.matches('{SIZE_PATTERN}') || !self.maxBodySize.matches('{SIZE_PATTERN}') || quantity(self.delivery.maxQueuedBytes).compareTo(quantity(self.maxBodySize)) >= 0"
    )
}

/// A webhook endpoint: where a sender's deliveries arrive, how they are signed, and where
/// verified deliveries go. The operator creates its signing Secret and the sidecar
/// configuration; pods labelled `hookguard.dev/inject: "true"` get the verifying sidecar.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hookguard.dev",
    version = "v1alpha1",
    kind = "WebhookEndpoint",
    plural = "webhookendpoints",
    shortname = "whe",
    category = "hookguard",
    namespaced,
    status = "WebhookEndpointStatus",
    printcolumn = r#"{"name":"Scheme","type":"string","jsonPath":".spec.scheme"}"#,
    printcolumn = r#"{"name":"Path","type":"string","jsonPath":".spec.path"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","priority":1,"jsonPath":".status.secretName"}"#,
    printcolumn = r#"{"name":"Keys","type":"string","priority":1,"jsonPath":".status.keys[*].id"}"#,
    printcolumn = r#"{"name":"Upstream","type":"integer","priority":1,"jsonPath":".spec.upstream.port"}"#
)]
#[x_kube(validation = Rule::new("!has(self.generic) || self.scheme == 'Generic'").message("spec.generic applies only to scheme Generic: remove it or set scheme: Generic"))]
#[x_kube(validation = Rule::new(queued_bytes_rule()).message("delivery.maxQueuedBytes must be at least maxBodySize, or the largest delivery would never fit in the queue: raise it (e.g. 64Mi) or lower maxBodySize").field_path(".delivery.maxQueuedBytes"))]
#[x_kube(validation = Rule::new("self.scheme != 'Generic' || !has(self.eventTypes) || size(self.eventTypes) == 0 || (has(self.generic) && has(self.generic.eventTypeHeader))").message("the Generic scheme needs spec.generic.eventTypeHeader to filter by spec.eventTypes"))]
#[x_kube(validation = Rule::new(event_types_scheme_rule()).message(event_types_scheme_message()).field_path(".eventTypes"))]
#[x_kube(validation = Rule::new(public_url_required_rule()).message(public_url_required_message()).field_path(".publicUrl"))]
#[x_kube(validation = Rule::new(public_url_refused_rule()).message(public_url_refused_message()).field_path(".publicUrl"))]
#[x_kube(validation = Rule::new(generate_rule()).message(generate_message()).field_path(".secret.generate"))]
#[x_kube(validation = Rule::new(public_key_refused_rule()).message(public_key_refused_message()).field_path(".secret.publicKey"))]
#[x_kube(validation = Rule::new(public_key_rule()).message(public_key_message()).field_path(".secret.publicKey"))]
#[x_kube(validation = Rule::new(default_window_rule()).message(default_window_message()).field_path(".replay.window"))]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpointSpec {
    /// How the sender signs deliveries: Generic (hex HMAC-SHA256 of the body in one header),
    /// StandardWebhooks (Svix and senders built on it), Stripe, GitHub, Slack, Shopify,
    /// Twilio, Zoom, Paddle (Billing), Linear, Square, Mailgun or SendGrid (its Event
    /// Webhook). Twilio, Zoom, Paddle, Linear, Square, Mailgun and SendGrid issue the secret
    /// themselves: give it with secret.secretRef (SendGrid: secret.publicKey).
    pub scheme: Scheme,

    /// The URL the sender calls, exactly as configured at the sender, e.g.
    /// `https://example.com/webhooks/twilio`: Twilio and Square sign it, so it is required for
    /// them and refused for other schemes. An http or https URL with a host name, at most
    /// 2048 characters, without a query or fragment (the sidecar adds each request's query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_PUBLIC_URL_LENGTH))]
    #[x_kube(validation = Rule::new("!self.contains('?') && !self.contains('#')").message("publicUrl holds no query or fragment: write the URL as configured at the sender without them; the sidecar adds the query of each request itself"))]
    #[x_kube(validation = Rule::new(public_url_rule()).message("publicUrl is an absolute http or https URL with a host name (letters, digits, '.' and '-') and an optional port, such as https://example.com/webhooks/twilio"))]
    #[x_kube(validation = Rule::new(PUBLIC_URL_PATH_RULE).message("the path of publicUrl holds only URL path characters: percent-encode others (a space is %20)"))]
    #[x_kube(validation = Rule::new(PATH_PERCENT_RULE).message("in publicUrl, '%' starts a percent-encoding such as %20"))]
    pub public_url: Option<String>,

    /// The path the sidecar serves for this endpoint, e.g. /webhooks/stripe. Point the
    /// sender at the app's Service with this path.
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.contains('?') && !self.contains('#')").message("path must start with '/' and hold no query or fragment, e.g. /webhooks/stripe"))]
    #[x_kube(validation = Rule::new(PATH_CHARS_RULE).message(PATH_CHARS_MESSAGE))]
    #[x_kube(validation = Rule::new(PATH_DOT_SEGMENT_RULE).message(PATH_DOT_SEGMENT_MESSAGE))]
    #[x_kube(validation = Rule::new(PATH_PERCENT_RULE).message(PATH_PERCENT_MESSAGE))]
    #[schemars(length(min = 1, max = 1024))]
    pub path: String,

    /// Where verified deliveries go: the app container on localhost.
    pub upstream: UpstreamSpec,

    /// Where the signing secret comes from: generated and rotated by the operator (the
    /// default), or a Secret the sender issued, or the sender's public key.
    #[serde(default)]
    pub secret: SecretSource,

    /// Header names for the Generic scheme; not allowed with other schemes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(header_rule("signatureHeader")).message(HEADER_NAME_MESSAGE).field_path(".signatureHeader"))]
    #[x_kube(validation = Rule::new(header_rule("deliveryIdHeader")).message(HEADER_NAME_MESSAGE).field_path(".deliveryIdHeader"))]
    #[x_kube(validation = Rule::new(header_rule("eventTypeHeader")).message(HEADER_NAME_MESSAGE).field_path(".eventTypeHeader"))]
    pub generic: Option<GenericOptions>,

    /// Key rotation of a generated secret.
    #[serde(default)]
    pub rotation: RotationSpec,

    /// Replay protection: timestamp tolerance and how long processed deliveries are
    /// remembered.
    #[serde(default)]
    pub replay: ReplaySpec,

    /// Where a delivery's idempotency key (delivery ID) comes from. Unset: the scheme's
    /// default (Generic: X-Delivery-Id; StandardWebhooks: webhook-id; Stripe: /id;
    /// GitHub: X-GitHub-Delivery; Slack: /event_id, else the signed timestamp and a digest
    /// of the body for slash commands and interactivity; Shopify: X-Shopify-Webhook-Id;
    /// Twilio: the I-Twilio-Idempotency-Token header; Zoom: the SHA-256 of the body; Paddle:
    /// /event_id; Linear: the Linear-Delivery header; Square: /event_id; Mailgun: the token of
    /// the body's signature block; SendGrid: the SHA-256 of the body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<IdempotencyKeySpec>,

    /// Event types to forward; deliveries of other types are answered 200 and not
    /// forwarded. Empty: all types. Not for Twilio (no event type) or SendGrid (one request
    /// batches events of several types).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new(event_types_rule()).message(event_types_message()))]
    pub event_types: Vec<String>,

    /// Largest accepted request body, e.g. 1Mi or 64Ki (at most 64Mi); larger requests get 413.
    #[serde(default = "default_max_body_size")]
    #[x_kube(validation = Rule::new(format!("self.matches('{SIZE_PATTERN}')")).message("maxBodySize is an integer with an optional unit: 65536, 64Ki, 1Mi"))]
    #[x_kube(validation = Rule::new(body_size_rule()).message("maxBodySize must be between 1 and 64Mi"))]
    pub max_body_size: String,

    /// What the sidecar does when the dedup store (Redis) cannot answer: Reject answers 503
    /// so the sender retries later (safe); Allow forwards without deduplication. Sync mode
    /// only: in Queue mode the store is the queue, and a store that cannot answer always
    /// means 503.
    #[serde(default)]
    pub store_unavailable: StoreUnavailable,

    /// How verified deliveries reach the app. Unset: mode Sync, the sender waits for the
    /// app's answer. The queue settings are checked in Sync mode too, so switching to Queue
    /// never uncovers an old mistake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,

    /// Pods (labelled hookguard.dev/inject: "true") in this namespace that serve this
    /// endpoint, when they do not name endpoints in their hookguard.dev/endpoints annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

/// The app container the sidecar forwards verified deliveries to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamSpec {
    /// The app container's port on localhost.
    #[schemars(range(min = 1, max = 65535))]
    #[x_kube(validation = Rule::new(port_rule()).message(port_message()))]
    pub port: i32,

    /// Path on the app; unset: the same path as the request (the request's query is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.contains('?') && !self.contains('#')").message("upstream.path must start with '/' and hold no query or fragment"))]
    #[x_kube(validation = Rule::new(PATH_CHARS_RULE).message(PATH_CHARS_MESSAGE))]
    #[x_kube(validation = Rule::new(PATH_DOT_SEGMENT_RULE).message(PATH_DOT_SEGMENT_MESSAGE))]
    #[x_kube(validation = Rule::new(PATH_PERCENT_RULE).message(PATH_PERCENT_MESSAGE))]
    #[schemars(length(min = 1, max = 1024))]
    pub path: Option<String>,

    /// Time the app has to answer, e.g. 10s; then the sender gets 504 and the delivery stays
    /// claimed until the app answers or the claim's lease ends.
    #[serde(default = "default_upstream_timeout")]
    #[x_kube(validation = Rule::new(format!("self.matches('{DURATION_PATTERN}') && duration(self) > duration('0s')")).message("upstream.timeout is a positive duration such as 10s"))]
    pub timeout: String,
}

/// How verified deliveries reach the app: the sender waits for the app (Sync), or the
/// sidecar answers as soon as the delivery is safely queued and delivers it later (Queue).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySpec {
    /// Sync (the default): the sidecar forwards each verified delivery while the sender
    /// waits, and the sender gets the app's answer. Queue: the sidecar answers 2xx as soon as
    /// the verified delivery is durably stored in Redis, then delivers it to the app with
    /// retries; a delivery out of attempts or too old goes to a dead-letter queue, from which
    /// it can be replayed. The app gets each delivery at least once, so it must tolerate a
    /// repeat. In Queue mode, Slack url_verification and interactive or slash-command
    /// payloads stay synchronous: Slack needs the app's own answer to those.
    #[serde(default)]
    pub mode: DeliveryMode,

    /// Queue mode: what a 2xx promises the sender. Disk (the default): the delivery is on
    /// Redis's disk before the 2xx; Redis must fsync each write before answering
    /// (appendonly yes with appendfsync always) or support WAITAOF (Redis or Valkey 7.2 and
    /// later), and the sidecar refuses queue mode when it can do neither. Memory: the 2xx
    /// follows the write to Redis's memory, accepting that a Redis crash (or a restart of a
    /// sidecar on its in-memory store) loses deliveries already answered.
    #[serde(default)]
    pub durability: Durability,

    /// Queue mode: the delay before each retry of a failed attempt, in order, e.g.
    /// [5s, 5m, 30m]; past the end of the list its last delay repeats until maxAttempts or
    /// maxAge ends the retries. 1 to 32 positive durations of at most 720h. Default: 5s, 5m,
    /// 30m, 2h, 5h, 10h, 10h.
    #[serde(default = "crate::config::default_retry_schedule")]
    #[schemars(length(max = MAX_RETRY_SCHEDULE), inner(length(max = MAX_RETRY_DELAY_LENGTH)))]
    #[x_kube(validation = Rule::new("size(self) >= 1").message(retry_schedule_length_message()))]
    #[x_kube(validation = Rule::new(retry_schedule_rule()).message(retry_schedule_message()))]
    pub retry_schedule: Vec<String>,

    /// Queue mode: most attempts of one delivery, the first included, before it goes to the
    /// dead-letter queue; 1 to 1000 (1: no retries). Default: 8.
    #[serde(default = "crate::config::default_max_attempts")]
    #[schemars(range(min = 1, max = MAX_ATTEMPTS))]
    pub max_attempts: u32,

    /// Queue mode: a delivery accepted longer ago than this goes to the dead-letter queue
    /// instead of being retried; a positive duration of at most 720h. Default: 72h.
    #[serde(default = "crate::config::default_max_age")]
    #[x_kube(validation = Rule::new(bounded_duration_rule("self")).message(max_age_message()))]
    pub max_age: String,

    /// Queue mode: most deliveries of this endpoint at the app at once, per sidecar: with
    /// three replicas the app can see three times as many. 1 to 1000. Default: 10.
    #[serde(default = "crate::config::default_max_concurrency")]
    #[schemars(range(min = 1, max = MAX_CONCURRENCY))]
    pub max_concurrency: u32,

    /// Queue mode: most deliveries started per second, per sidecar: with three replicas the
    /// app can see three times as many. At least 1. Unset (the default): no limit. To stop
    /// delivering, set paused instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = u32::MAX))]
    pub rate_limit: Option<u32>,

    /// Queue mode: true stops delivering to the app. The sidecar still verifies, stores and
    /// answers new deliveries until maxQueued or maxQueuedBytes is reached, then answers 503
    /// with Retry-After; set false to deliver what waits. Default: false.
    #[serde(default)]
    pub paused: bool,

    /// Queue mode: most deliveries held for this endpoint (waiting, retrying or
    /// dead-lettered); when full, senders get 503 with Retry-After and retry later. At least
    /// 1. Default: 10000.
    #[serde(default = "crate::config::default_max_queued")]
    #[schemars(range(min = 1))]
    pub max_queued: u64,

    /// Queue mode: most body bytes held for this endpoint, e.g. 64Mi or 1Gi; at least
    /// maxBodySize, so the largest delivery fits. When full, senders get 503 with
    /// Retry-After. Give Redis memory for the sum over its endpoints. Default: 64Mi.
    #[serde(default = "crate::config::default_max_queued_bytes")]
    #[x_kube(validation = Rule::new(format!("self.matches('{SIZE_PATTERN}')")).message("delivery.maxQueuedBytes is an integer with an optional unit: 67108864, 64Mi, 1Gi"))]
    #[x_kube(validation = Rule::new(format!("!self.matches('{SIZE_PATTERN}') || quantity(self).compareTo(quantity('1024Gi')) <= 0")).message("delivery.maxQueuedBytes is at most 1024Gi"))]
    pub max_queued_bytes: String,
}

impl Default for DeliverySpec {
    fn default() -> Self {
        DeliverySpec {
            mode: DeliveryMode::default(),
            durability: Durability::default(),
            retry_schedule: crate::config::default_retry_schedule(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_age: crate::config::default_max_age(),
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            rate_limit: None,
            paused: false,
            max_queued: DEFAULT_MAX_QUEUED,
            max_queued_bytes: crate::config::default_max_queued_bytes(),
        }
    }
}

/// Where the signing secret comes from. Exactly one of `generate`, `secretRef` and
/// `publicKey`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.generate), has(self.secretRef), has(self.publicKey)].exists_one(set, set)").message("set exactly one of secret.generate, secret.secretRef and secret.publicKey"))]
pub struct SecretSource {
    /// The operator generates the secret (32 random bytes, encoded as the scheme expects)
    /// into the Secret `<name>-signing` and rotates it. Only for schemes where the receiver
    /// chooses the secret: Generic, StandardWebhooks, Stripe, GitHub, Slack, Shopify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<GenerateSecret>,

    /// A Secret the sender issued (e.g. Stripe's whsec_…, Twilio's Auth Token), in this
    /// namespace. Rotate it by updating the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,

    /// The sender's public key as its dashboard shows it: SendGrid's Event Webhook
    /// Verification Key (base64, starting MFkw; a PEM PUBLIC KEY block works too), or a
    /// Standard Webhooks sender's whpk_… key. A public key is no secret, so it may live in
    /// Git with the rest of the spec; the operator copies it into the Secret `<name>-signing`
    /// for the sidecar. SendGrid and StandardWebhooks only; to change it, edit it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_PUBLIC_KEY_LENGTH))]
    pub public_key: Option<String>,
}

impl Default for SecretSource {
    fn default() -> Self {
        SecretSource {
            generate: Some(GenerateSecret {}),
            secret_ref: None,
            public_key: None,
        }
    }
}

/// Generate the signing secret. No options yet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
pub struct GenerateSecret {}

/// A key of a Secret in the endpoint's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key in the Secret holding the signing secret. Default: secret.
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Rotation of a generated signing secret. Rotate once by setting the annotation
/// hookguard.dev/rotate to a new value, or on a schedule with `every`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationSpec {
    /// How long the previous key stays valid after a rotation, e.g. 24h, so senders can
    /// switch over.
    #[serde(default = "default_grace_period")]
    #[x_kube(validation = Rule::new(format!("self.matches('{DURATION_PATTERN}')")).message("rotation.gracePeriod is a duration such as 24h"))]
    pub grace_period: String,

    /// Rotate automatically when the current key is this old, e.g. 720h. Unset: only on
    /// request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(format!("self.matches('{DURATION_PATTERN}') && duration(self) >= duration('1h')")).message("rotation.every is a duration of at least 1h, such as 720h"))]
    pub every: Option<String>,
}

impl Default for RotationSpec {
    fn default() -> Self {
        RotationSpec {
            grace_period: default_grace_period(),
            every: None,
        }
    }
}

/// Replay protection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(window_rule()).message(window_message()).field_path(".window"))]
pub struct ReplaySpec {
    /// Largest accepted distance between a signed timestamp and the sidecar's clock, e.g. 5m
    /// (schemes that sign a timestamp: StandardWebhooks, Stripe, Slack, Zoom, Paddle,
    /// Linear, Mailgun, SendGrid). Unset: the scheme's default, the sender's own: 5s for
    /// Paddle, 1m for Linear, 5m for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(format!("self.matches('{DURATION_PATTERN}') && duration(self) > duration('0s')")).message("replay.tolerance is a positive duration such as 5m"))]
    pub tolerance: Option<String>,

    /// How long a processed delivery is remembered, e.g. 24h; at least twice the tolerance.
    #[serde(default = "default_window")]
    #[x_kube(validation = Rule::new(format!("self.matches('{DURATION_PATTERN}')")).message("replay.window is a duration such as 24h"))]
    pub window: String,
}

impl Default for ReplaySpec {
    fn default() -> Self {
        ReplaySpec {
            tolerance: None,
            window: default_window(),
        }
    }
}

/// Where the idempotency key comes from. Exactly one of `header` and `jsonPointer`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.header) != has(self.jsonPointer)").message("set exactly one of idempotencyKey.header and idempotencyKey.jsonPointer"))]
pub struct IdempotencyKeySpec {
    /// A request header, e.g. X-Delivery-Id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(HEADER_NAME_RULE).message(HEADER_NAME_MESSAGE))]
    #[schemars(length(min = 1, max = 256))]
    pub header: Option<String>,
    /// A JSON pointer into the body, e.g. /id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("idempotencyKey.jsonPointer starts with '/', e.g. /id"))]
    pub json_pointer: Option<String>,
}

/// What the operator observed and did. Never holds secret material.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpointStatus {
    /// Stable endpoint ID, generated once; namespaces this endpoint's dedup records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
    /// The Secret holding the signing keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The ConfigMap holding the sidecar configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_name: Option<String>,
    /// The valid signing keys, newest first: IDs and times, never the material.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyStatus>,
    /// The value of hookguard.dev/rotate last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotate_request: Option<String>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, SecretReady and ConfigReady.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One signing key, without its material.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    /// The key's ID: its file name in the Secret and in the sidecar.
    pub id: String,
    /// When the key was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Time>,
    /// When the key stops being valid (a previous key in its grace period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
}

fn default_max_body_size() -> String {
    crate::config::DEFAULT_MAX_BODY_SIZE.to_owned()
}
fn default_upstream_timeout() -> String {
    crate::config::DEFAULT_UPSTREAM_TIMEOUT.to_owned()
}
fn default_window() -> String {
    crate::config::DEFAULT_WINDOW.to_owned()
}
fn default_grace_period() -> String {
    DEFAULT_GRACE_PERIOD.to_owned()
}
fn default_secret_key() -> String {
    DEFAULT_SECRET_REF_KEY.to_owned()
}

/// Default grace period of a rotated-out key.
pub const DEFAULT_GRACE_PERIOD: &str = "24h";
/// Default key of a `secretRef`.
pub const DEFAULT_SECRET_REF_KEY: &str = "secret";

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::*;

    #[test]
    fn a_minimal_endpoint_parses_with_defaults() {
        let endpoint: WebhookEndpoint = serde_yaml::from_str(
            "apiVersion: hookguard.dev/v1alpha1\nkind: WebhookEndpoint\nmetadata: {name: pay, namespace: shop}\n\
             spec: {scheme: Stripe, path: /webhooks/stripe, upstream: {port: 8080}}\n",
        )
        .unwrap();
        assert_eq!(endpoint.spec.secret, SecretSource::default());
        assert_eq!(endpoint.spec.replay, ReplaySpec::default());
        assert_eq!(endpoint.spec.upstream.timeout, "10s");
        assert_eq!(endpoint.spec.rotation.grace_period, "24h");
    }

    /// The descriptions state the defaults in prose; the schema's defaults come from
    /// `config.rs`. This keeps the two saying the same.
    #[test]
    fn each_delivery_field_describes_its_default() {
        let crd = serde_json::to_value(WebhookEndpoint::crd()).unwrap();
        let fields = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["delivery"]["properties"];
        let fields = fields.as_object().unwrap();
        assert_eq!(fields.len(), 10);
        for (name, field) in fields {
            // Unwrapped as `crdgen` does.
            let description = field["description"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let Some(default) = field.get("default") else {
                assert!(description.contains("Unset (the default)"), "{name}");
                continue;
            };
            let written = match default {
                serde_json::Value::String(text) => text.clone(),
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|item| item.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            assert!(
                description.contains(&format!("Default: {written}."))
                    || description.contains(&format!("{written} (the default)")),
                "{name}: {description:?} does not name the default {written}"
            );
        }
    }

    /// The descriptions that list schemes name every one, and the per-scheme tolerances.
    #[test]
    fn descriptions_name_every_scheme() {
        let crd = serde_json::to_value(WebhookEndpoint::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        let text = |field: &serde_json::Value| {
            field["description"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let scheme = text(&spec["scheme"]);
        let key = text(&spec["idempotencyKey"]);
        let tolerance = text(&spec["replay"]["properties"]["tolerance"]);
        for each in Scheme::ALL {
            let name = each.as_str();
            assert!(scheme.contains(name), "scheme: {name}");
            assert!(key.contains(&format!("{name}:")), "idempotencyKey: {name}");
            if each.default_tolerance() != crate::config::DEFAULT_TOLERANCE {
                let named = format!("{} for {name}", each.default_tolerance());
                assert!(tolerance.contains(&named), "replay.tolerance: {named}");
            }
        }
        assert!(tolerance.contains(&format!(
            "{} for the others",
            crate::config::DEFAULT_TOLERANCE
        )));
    }

    #[test]
    fn a_public_key_rule_exists_for_every_scheme_that_takes_one() {
        for scheme in Scheme::ALL {
            assert_eq!(
                public_key_cel(scheme, "k").is_some(),
                scheme.takes_public_key(),
                "{scheme:?}"
            );
        }
    }

    #[test]
    fn the_crd_carries_the_cel_rules_and_columns() {
        let crd = serde_json::to_string(&WebhookEndpoint::crd()).unwrap();
        for expected in [
            "x-kubernetes-validations",
            "set exactly one of secret.generate, secret.secretRef and secret.publicKey",
            "\"whe\"",
            "Ready",
        ] {
            assert!(crd.contains(expected), "{expected}");
        }
    }
}
