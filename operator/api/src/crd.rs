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

use crate::config::{GenericOptions, Scheme, StoreUnavailable};
use crate::names::{SIDECAR_ADMIN_PORT, SIDECAR_PORT};
use crate::validation::{MAX_BODY_SIZE, MAX_EVENT_TYPE_LENGTH};

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
#[x_kube(validation = Rule::new("self.scheme != 'Generic' || !has(self.eventTypes) || size(self.eventTypes) == 0 || (has(self.generic) && has(self.generic.eventTypeHeader))").message("the Generic scheme needs spec.generic.eventTypeHeader to filter by spec.eventTypes"))]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpointSpec {
    /// How the sender signs deliveries: Generic (hex HMAC-SHA256 of the body in one header),
    /// StandardWebhooks (Svix and senders built on it), Stripe, GitHub, Slack or Shopify.
    pub scheme: Scheme,

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
    /// default), or a Secret the sender issued.
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
    /// GitHub: X-GitHub-Delivery; Slack: /event_id; Shopify: X-Shopify-Webhook-Id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<IdempotencyKeySpec>,

    /// Event types to forward; deliveries of other types are answered 200 and not
    /// forwarded. Empty: all types.
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
    /// so the sender retries later (safe); Allow forwards without deduplication.
    #[serde(default)]
    pub store_unavailable: StoreUnavailable,

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

/// Where the signing secret comes from. Exactly one of `generate` and `secretRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.generate) != has(self.secretRef)").message("set exactly one of secret.generate and secret.secretRef"))]
pub struct SecretSource {
    /// The operator generates the secret (32 random bytes, encoded as the scheme expects)
    /// into the Secret `<name>-signing` and rotates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<GenerateSecret>,

    /// A Secret the sender issued (e.g. Stripe's whsec_…), in this namespace. Rotate it by
    /// updating the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
}

impl Default for SecretSource {
    fn default() -> Self {
        SecretSource {
            generate: Some(GenerateSecret {}),
            secret_ref: None,
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
#[x_kube(validation = Rule::new("duration(self.window) >= duration(self.tolerance) + duration(self.tolerance)").message("replay.window must be at least twice replay.tolerance, or a replayed delivery could outlive its dedup record"))]
pub struct ReplaySpec {
    /// Largest accepted distance between a signed timestamp and the sidecar's clock, e.g. 5m
    /// (schemes that sign a timestamp: StandardWebhooks, Stripe, Slack).
    #[serde(default = "default_tolerance")]
    #[x_kube(validation = Rule::new(format!("self.matches('{DURATION_PATTERN}') && duration(self) > duration('0s')")).message("replay.tolerance is a positive duration such as 5m"))]
    pub tolerance: String,

    /// How long a processed delivery is remembered, e.g. 24h; at least twice the tolerance.
    #[serde(default = "default_window")]
    #[x_kube(validation = Rule::new(format!("self.matches('{DURATION_PATTERN}')")).message("replay.window is a duration such as 24h"))]
    pub window: String,
}

impl Default for ReplaySpec {
    fn default() -> Self {
        ReplaySpec {
            tolerance: default_tolerance(),
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
fn default_tolerance() -> String {
    crate::config::DEFAULT_TOLERANCE.to_owned()
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

    #[test]
    fn the_crd_carries_the_cel_rules_and_columns() {
        let crd = serde_json::to_string(&WebhookEndpoint::crd()).unwrap();
        for expected in [
            "x-kubernetes-validations",
            "set exactly one of secret.generate and secret.secretRef",
            "\"whe\"",
            "Ready",
        ] {
            assert!(crd.contains(expected), "{expected}");
        }
    }
}
