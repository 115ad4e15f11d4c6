//! The one definition of a valid endpoint.
//!
//! The operator checks a `WebhookEndpoint` with [`check`] before it reports Ready, the
//! admission webhook refuses a pod whose endpoints share a path with [`distinct_paths`], and
//! the sidecar loads its files with the same two functions; the CRD's CEL rules
//! (`crd.rs`) state the same rules for the API server, and a test against a real API server
//! proves the two agree case by case. So a spec the operator reports Ready is a
//! configuration the sidecar loads, and a refusal reads the same wherever it happens.
//!
//! Pure: no IO. Keys and CA files are the sidecar's to load.

use std::time::Duration;

use http::HeaderName;

use crate::config::{
    Delivery, DeliveryMode, Durability, EndpointConfig, GenericOptions, IdempotencyKey, Replay,
    Scheme, Upstream,
};
use crate::names::{SIDECAR_ADMIN_PORT, SIDECAR_PORT};
use crate::units::{parse_duration, parse_size};

/// Largest `maxBodySize`: every body is buffered whole before it is verified, so this caps
/// the memory one request can hold.
pub const MAX_BODY_SIZE: u64 = 64 << 20;
/// Longest `path` and `upstream.path`.
pub const MAX_PATH_LENGTH: usize = 1024;
/// Longest header name in `generic` and `idempotencyKey.header`.
pub const MAX_HEADER_NAME_LENGTH: usize = 256;
/// Most entries in `eventTypes`, and the longest entry.
pub const MAX_EVENT_TYPES: usize = 256;
/// Longest entry of `eventTypes`.
pub const MAX_EVENT_TYPE_LENGTH: usize = 256;
/// Longest endpoint ID.
pub const MAX_ENDPOINT_ID_LENGTH: usize = 64;
/// Most entries in `delivery.retrySchedule`.
pub const MAX_RETRY_SCHEDULE: usize = 32;
/// Most `delivery.maxAttempts`.
pub const MAX_ATTEMPTS: u32 = 1000;
/// Most `delivery.maxConcurrency`.
pub const MAX_CONCURRENCY: u32 = 1000;
/// Longest text of one delay in `delivery.retrySchedule` (the CRD's CEL cost budget needs a
/// bound).
pub const MAX_RETRY_DELAY_LENGTH: usize = 64;
/// Largest `delivery.maxQueuedBytes`.
pub const MAX_QUEUED_BYTES: u64 = 1 << 40;
/// Longest delay in `delivery.retrySchedule`, and longest `delivery.maxAge`: 30 days.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);
/// The Generic scheme's signature header when `generic.signatureHeader` is unset.
pub const DEFAULT_GENERIC_SIGNATURE_HEADER: &str = "x-signature";
/// The Generic scheme's delivery-ID header when `generic.deliveryIdHeader` is unset.
pub const DEFAULT_GENERIC_DELIVERY_ID_HEADER: &str = "x-delivery-id";

/// One field that cannot be used: which, and what is wrong with the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Invalid {
    /// The field as written in the endpoint file, e.g. `upstream.path`; the same name under
    /// `spec.` in a `WebhookEndpoint`.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl Invalid {
    fn new(field: &'static str, problem: impl Into<String>) -> Invalid {
        Invalid {
            field,
            problem: problem.into(),
        }
    }
}

/// Header names of the Generic scheme, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericHeaders {
    /// Carries the lower-case hex HMAC-SHA256 of the body.
    pub signature: HeaderName,
    /// Carries the delivery ID; required on every delivery.
    pub delivery_id: HeaderName,
    /// Carries the event type, if the sender sends one.
    pub event_type: Option<HeaderName>,
}

impl Default for GenericHeaders {
    fn default() -> Self {
        GenericHeaders {
            signature: HeaderName::from_static(DEFAULT_GENERIC_SIGNATURE_HEADER),
            delivery_id: HeaderName::from_static(DEFAULT_GENERIC_DELIVERY_ID_HEADER),
            event_type: None,
        }
    }
}

/// Where a delivery's idempotency key comes from, when the endpoint overrides its scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A request header.
    Header(HeaderName),
    /// An RFC 6901 JSON pointer into the body, e.g. `/id`; its value must be a string or an
    /// integer.
    JsonPointer(String),
}

/// An endpoint configuration that passed [`check`], with every value parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The Generic scheme's headers (defaults for other schemes; unused there).
    pub generic: GenericHeaders,
    /// Where the idempotency key comes from; `None`: the scheme's default.
    pub key_source: Option<KeySource>,
    /// Time the app has to answer.
    pub upstream_timeout: Duration,
    /// Largest accepted distance of a signed timestamp from the clock.
    pub tolerance: Duration,
    /// How long a processed delivery is remembered.
    pub window: Duration,
    /// Largest accepted body in bytes.
    pub max_body_size: u64,
    /// How deliveries reach the app.
    pub delivery: CheckedDelivery,
}

/// `delivery`, parsed. The queue fields are checked in `Sync` mode too, so switching the
/// mode never uncovers an old mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedDelivery {
    /// Sync or Queue.
    pub mode: DeliveryMode,
    /// What a queue-mode 2xx promises.
    pub durability: Durability,
    /// Delay before each retry; never empty.
    pub retry_schedule: Vec<Duration>,
    /// Most attempts, at least 1.
    pub max_attempts: u32,
    /// Oldest age still attempted.
    pub max_age: Duration,
    /// Most deliveries at the app at once, per sidecar; at least 1.
    pub max_concurrency: u32,
    /// Most deliveries started per second, per sidecar.
    pub rate_limit: Option<u32>,
    /// Delivery stopped; admission continues up to the caps.
    pub paused: bool,
    /// Most deliveries held; at least 1.
    pub max_queued: u64,
    /// Most body bytes held; at least the largest body.
    pub max_queued_bytes: u64,
}

impl CheckedDelivery {
    /// The delay before retry number `retry` (1 = the first retry, after attempt 1 failed):
    /// the schedule's entry, or its last entry past its end.
    pub fn delay_before_retry(&self, retry: u32) -> Duration {
        let index = usize::try_from(retry.saturating_sub(1)).unwrap_or(usize::MAX);
        self.retry_schedule
            .get(index)
            .or(self.retry_schedule.last())
            .copied()
            .unwrap_or(Duration::from_secs(5))
    }
}

/// Checks every field of one endpoint's configuration, in file order, and parses them.
/// Returns the first problem: the operator turns it into a condition, the sidecar into a
/// refusal to load, both with this text.
pub fn check(config: &EndpointConfig) -> Result<Checked, Invalid> {
    if config.name.is_empty() || config.name.len() > 253 {
        return Err(Invalid::new(
            "name",
            "must be 1 to 253 characters (the WebhookEndpoint's name)",
        ));
    }
    if config.endpoint_id.is_empty()
        || config.endpoint_id.len() > MAX_ENDPOINT_ID_LENGTH
        || !config
            .endpoint_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(Invalid::new(
            "endpointId",
            "must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_', '.'",
        ));
    }
    url_path("path", &config.path)?;
    let generic = generic_headers(config.scheme, config.generic.as_ref())?;
    let upstream_timeout = upstream(&config.upstream)?;
    if config.secret_dir.is_empty() {
        return Err(Invalid::new(
            "secretDir",
            "must name the directory the signing Secret is mounted at",
        ));
    }
    let (tolerance, window) = replay(&config.replay)?;
    let key_source = match &config.idempotency_key {
        None => None,
        Some(IdempotencyKey::Header(name)) => Some(KeySource::Header(header_name(
            "idempotencyKey.header",
            name,
        )?)),
        Some(IdempotencyKey::JsonPointer(pointer)) => {
            json_pointer(pointer)?;
            Some(KeySource::JsonPointer(pointer.clone()))
        }
    };
    event_types(config.scheme, &generic, &config.event_types)?;
    let max_body_size = max_body_size(&config.max_body_size)?;
    let delivery = delivery(&config.delivery, max_body_size)?;
    Ok(Checked {
        generic,
        key_source,
        upstream_timeout,
        tolerance,
        window,
        max_body_size,
        delivery,
    })
}

/// `upstream.port`: a port the app can listen on that is not the sidecar's own.
pub fn port(value: i64) -> Result<u16, Invalid> {
    let port = u16::try_from(value)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| {
            Invalid::new(
                "upstream.port",
                format!("{value} is not a port: use the app's port, 1 to 65535"),
            )
        })?;
    if port == SIDECAR_PORT || port == SIDECAR_ADMIN_PORT {
        return Err(Invalid::new(
            "upstream.port",
            format!(
                "{port} is the sidecar's own port ({SIDECAR_PORT} receives deliveries, \
                 {SIDECAR_ADMIN_PORT} serves health and metrics): deliveries would loop; \
                 use the app container's port"
            ),
        ));
    }
    Ok(port)
}

/// A duration as Kubernetes objects write it: whole numbers with units, e.g. `30s`, `1h30m`.
/// Stricter than [`parse_duration`] (no `1.5s`, no bare `0`, no spaces) so a value passes
/// here exactly when it passes the CRD's pattern.
pub fn duration(field: &'static str, text: &str) -> Result<Duration, Invalid> {
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_digit() || b"nsumh".contains(&b))
        && text.starts_with(|c: char| c.is_ascii_digit())
        && text.ends_with(['s', 'm', 'h']);
    let parsed = parse_duration(text).map_err(|err| Invalid::new(field, err.to_string()));
    if !plain {
        // The parser's message says how to write one; use it even when it would accept.
        return Err(parsed.err().unwrap_or_else(|| {
            Invalid::new(
                field,
                format!("{text:?} is not a duration: write whole numbers with units, like 500ms, 30s, 5m or 1h30m"),
            )
        }));
    }
    parsed
}

/// A duration longer than zero.
pub fn positive_duration(field: &'static str, text: &str) -> Result<Duration, Invalid> {
    let value = duration(field, text)?;
    if value.is_zero() {
        return Err(Invalid::new(field, "must be longer than zero"));
    }
    Ok(value)
}

/// Two endpoints served by one sidecar share a path; only one could receive deliveries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{first} and {second} both serve path {path}: one sidecar routes a path to one endpoint; give each endpoint its own path (spec.path)"
)]
pub struct PathConflict {
    /// The shared path.
    pub path: String,
    /// The endpoint met first.
    pub first: String,
    /// The endpoint met second.
    pub second: String,
}

/// Checks that no two of `endpoints` (name, path) share a path, naming the first pair that
/// does.
pub fn distinct_paths<'a>(
    endpoints: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), PathConflict> {
    let mut seen: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for (name, path) in endpoints {
        if let Some(first) = seen.insert(path, name) {
            return Err(PathConflict {
                path: path.to_owned(),
                first: first.to_owned(),
                second: name.to_owned(),
            });
        }
    }
    Ok(())
}

/// The sidecar's dedup store, as `--store` (and the operator's `--sidecar-store`) name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// `memory`: in the sidecar's process, for one replica.
    Memory,
    /// One or (Cluster only) several `redis://` / `rediss://` URLs.
    Redis,
}

/// A store value that cannot work; the caller names its own flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Neither `memory` nor Redis URLs, or several URLs without cluster mode (the caller
    /// names its mode flag).
    #[error("expected `memory` or a URL like redis://host:6379/0 or rediss://host:6380/0")]
    NotAStore,
    /// Cluster mode with the in-memory store.
    #[error("cluster mode needs a Redis store such as redis://host:6379")]
    ClusterNeedsRedis,
}

/// Checks a store value and its mode (`cluster`: a Redis Cluster, whose seed URLs may be
/// several, comma-separated).
pub fn store(value: &str, cluster: bool) -> Result<StoreKind, StoreError> {
    if value == "memory" {
        return if cluster {
            Err(StoreError::ClusterNeedsRedis)
        } else {
            Ok(StoreKind::Memory)
        };
    }
    let urls = value
        .split(',')
        .all(|url| url.trim().starts_with("redis://") || url.trim().starts_with("rediss://"));
    if urls && (cluster || !value.contains(',')) {
        Ok(StoreKind::Redis)
    } else {
        Err(StoreError::NotAStore)
    }
}

/// An absolute URL path as a sender would write it: no query, no fragment, no `.` or `..`
/// segment (clients resolve those away, so no delivery could arrive on it), and only the
/// characters RFC 3986 allows in a path (anything else percent-encoded).
fn url_path(field: &'static str, path: &str) -> Result<(), Invalid> {
    if !path.starts_with('/') || path.contains(['?', '#']) {
        return Err(Invalid::new(
            field,
            format!(
                "{path:?} must start with '/' and hold no query or fragment, e.g. /webhooks/stripe"
            ),
        ));
    }
    if path.len() > MAX_PATH_LENGTH {
        return Err(Invalid::new(
            field,
            format!("must be at most {MAX_PATH_LENGTH} characters"),
        ));
    }
    if let Some(bad) = path.chars().find(|c| !is_path_char(*c)) {
        return Err(Invalid::new(
            field,
            format!(
                "{path:?} holds {bad:?}, which a URL path cannot carry as is: percent-encode it (a space is %20) or leave it out"
            ),
        ));
    }
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(Invalid::new(
            field,
            format!(
                "{path:?} has a '.' or '..' segment, which HTTP clients resolve away before sending: write the path without it"
            ),
        ));
    }
    let mut rest = path;
    while let Some(at) = rest.find('%') {
        let hex = rest.get(at + 1..at + 3).unwrap_or_default();
        if hex.len() != 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Invalid::new(
                field,
                format!("{path:?}: '%' must start a percent-encoding such as %20"),
            ));
        }
        rest = &rest[at + 3..];
    }
    Ok(())
}

/// RFC 3986 `pchar` and `/`: unreserved, sub-delims, `:`, `@`, and `%` of an encoding.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/%".contains(c)
}

fn upstream(upstream: &Upstream) -> Result<Duration, Invalid> {
    port(i64::from(upstream.port))?;
    if let Some(path) = &upstream.path {
        url_path("upstream.path", path)?;
    }
    positive_duration("upstream.timeout", &upstream.timeout)
}

fn replay(replay: &Replay) -> Result<(Duration, Duration), Invalid> {
    let tolerance = positive_duration("replay.tolerance", &replay.tolerance)?;
    let window = duration("replay.window", &replay.window)?;
    if window < tolerance.saturating_mul(2) {
        return Err(Invalid::new(
            "replay.window",
            format!(
                "must be at least twice replay.tolerance ({}), or a replayed delivery could outlive its dedup record",
                replay.tolerance
            ),
        ));
    }
    Ok((tolerance, window))
}

fn generic_headers(
    scheme: Scheme,
    options: Option<&GenericOptions>,
) -> Result<GenericHeaders, Invalid> {
    let defaults = GenericHeaders::default();
    let Some(options) = options else {
        return Ok(defaults);
    };
    if scheme != Scheme::Generic {
        return Err(Invalid::new(
            "generic",
            format!(
                "only the Generic scheme takes header options; remove it or set scheme: Generic (this endpoint is {})",
                scheme.as_str()
            ),
        ));
    }
    let name = |field, value: &Option<String>| {
        value
            .as_deref()
            .map(|value| header_name(field, value))
            .transpose()
    };
    Ok(GenericHeaders {
        signature: name("generic.signatureHeader", &options.signature_header)?
            .unwrap_or(defaults.signature),
        delivery_id: name("generic.deliveryIdHeader", &options.delivery_id_header)?
            .unwrap_or(defaults.delivery_id),
        event_type: name("generic.eventTypeHeader", &options.event_type_header)?,
    })
}

/// An HTTP field name (RFC 9110 token), case-insensitive.
fn header_name(field: &'static str, value: &str) -> Result<HeaderName, Invalid> {
    let bad = || {
        Invalid::new(
            field,
            format!(
                "{value:?} is not an HTTP header name: use letters, digits and - (such as X-Delivery-Id), at most {MAX_HEADER_NAME_LENGTH} characters"
            ),
        )
    };
    if value.is_empty() || value.len() > MAX_HEADER_NAME_LENGTH {
        return Err(bad());
    }
    HeaderName::try_from(value).map_err(|_| bad())
}

fn json_pointer(pointer: &str) -> Result<(), Invalid> {
    if !pointer.starts_with('/') {
        return Err(Invalid::new(
            "idempotencyKey.jsonPointer",
            format!("{pointer:?} must start with '/', like /id or /data/id"),
        ));
    }
    Ok(())
}

fn event_types(
    scheme: Scheme,
    generic: &GenericHeaders,
    event_types: &[String],
) -> Result<(), Invalid> {
    if event_types.len() > MAX_EVENT_TYPES {
        return Err(Invalid::new(
            "eventTypes",
            format!("at most {MAX_EVENT_TYPES} event types"),
        ));
    }
    if let Some(bad) = event_types
        .iter()
        .find(|t| t.is_empty() || t.len() > MAX_EVENT_TYPE_LENGTH)
    {
        return Err(Invalid::new(
            "eventTypes",
            format!(
                "{bad:?}: each event type is 1 to {MAX_EVENT_TYPE_LENGTH} characters, such as invoice.paid"
            ),
        ));
    }
    if !event_types.is_empty() && scheme == Scheme::Generic && generic.event_type.is_none() {
        return Err(Invalid::new(
            "eventTypes",
            "the Generic scheme needs generic.eventTypeHeader to tell event types apart",
        ));
    }
    Ok(())
}

fn max_body_size(text: &str) -> Result<u64, Invalid> {
    let field = "maxBodySize";
    let size = parse_size(text).map_err(|err| Invalid::new(field, err.to_string()))?;
    if text.trim() != text {
        return Err(Invalid::new(
            field,
            format!("{text:?} has spaces around it: write it like 65536, 64Ki or 1Mi"),
        ));
    }
    if size == 0 || size > MAX_BODY_SIZE {
        return Err(Invalid::new(
            field,
            format!("{text} is out of range: must be between 1 and 64Mi"),
        ));
    }
    Ok(size)
}

fn delivery(delivery: &Delivery, max_body_size: u64) -> Result<CheckedDelivery, Invalid> {
    if delivery.retry_schedule.is_empty() || delivery.retry_schedule.len() > MAX_RETRY_SCHEDULE {
        return Err(Invalid::new(
            "delivery.retrySchedule",
            format!("must list 1 to {MAX_RETRY_SCHEDULE} delays, like [5s, 5m, 30m]"),
        ));
    }
    let mut retry_schedule = Vec::with_capacity(delivery.retry_schedule.len());
    for text in &delivery.retry_schedule {
        if text.len() > MAX_RETRY_DELAY_LENGTH {
            return Err(Invalid::new(
                "delivery.retrySchedule",
                format!(
                    "each delay is at most {MAX_RETRY_DELAY_LENGTH} characters, like 5m or 1h30m"
                ),
            ));
        }
        let delay = positive_duration("delivery.retrySchedule", text)?;
        if delay > MAX_RETRY_DELAY {
            return Err(Invalid::new(
                "delivery.retrySchedule",
                format!("{text} is longer than 720h (30 days)"),
            ));
        }
        retry_schedule.push(delay);
    }
    if delivery.max_attempts == 0 || delivery.max_attempts > MAX_ATTEMPTS {
        return Err(Invalid::new(
            "delivery.maxAttempts",
            format!("must be 1 to {MAX_ATTEMPTS} (1: no retries)"),
        ));
    }
    let max_age = positive_duration("delivery.maxAge", &delivery.max_age)?;
    if max_age > MAX_RETRY_DELAY {
        return Err(Invalid::new(
            "delivery.maxAge",
            format!("{} is longer than 720h (30 days)", delivery.max_age),
        ));
    }
    if delivery.max_concurrency == 0 || delivery.max_concurrency > MAX_CONCURRENCY {
        return Err(Invalid::new(
            "delivery.maxConcurrency",
            format!("must be 1 to {MAX_CONCURRENCY} (1: one delivery at a time)"),
        ));
    }
    if delivery.rate_limit == Some(0) {
        return Err(Invalid::new(
            "delivery.rateLimit",
            "must be at least 1 delivery per second; to stop delivering set delivery.paused: true",
        ));
    }
    if delivery.max_queued == 0 {
        return Err(Invalid::new("delivery.maxQueued", "must be at least 1"));
    }
    let field = "delivery.maxQueuedBytes";
    let text = &delivery.max_queued_bytes;
    let max_queued_bytes = parse_size(text).map_err(|err| Invalid::new(field, err.to_string()))?;
    if text.trim() != text {
        return Err(Invalid::new(
            field,
            format!("{text:?} has spaces around it: write it like 64Mi or 1Gi"),
        ));
    }
    if max_queued_bytes > MAX_QUEUED_BYTES {
        return Err(Invalid::new(field, format!("{text} is more than 1024Gi")));
    }
    if max_queued_bytes < max_body_size {
        return Err(Invalid::new(
            field,
            format!(
                "{} is smaller than maxBodySize: the largest delivery would never fit",
                delivery.max_queued_bytes
            ),
        ));
    }
    Ok(CheckedDelivery {
        mode: delivery.mode,
        durability: delivery.durability,
        retry_schedule,
        max_attempts: delivery.max_attempts,
        max_age,
        max_concurrency: delivery.max_concurrency,
        rate_limit: delivery.rate_limit,
        paused: delivery.paused,
        max_queued: delivery.max_queued,
        max_queued_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(edit: impl FnOnce(&mut serde_json::Value)) -> EndpointConfig {
        let mut value = serde_json::json!({
            "name": "payments", "endpointId": "ep-1", "path": "/webhooks/payments",
            "scheme": "Generic", "upstream": {"port": 8080}, "secretDir": "/s",
        });
        edit(&mut value);
        serde_json::from_value(value).unwrap()
    }

    fn problem(edit: impl FnOnce(&mut serde_json::Value)) -> Invalid {
        check(&config(edit)).unwrap_err()
    }

    #[test]
    fn a_minimal_config_checks_with_the_documented_defaults() {
        let checked = check(&config(|_| {})).unwrap();
        assert_eq!(checked.upstream_timeout, Duration::from_secs(10));
        assert_eq!(checked.tolerance, Duration::from_secs(300));
        assert_eq!(checked.window, Duration::from_secs(24 * 3600));
        assert_eq!(checked.max_body_size, 1 << 20);
        assert_eq!(checked.generic, GenericHeaders::default());
        assert_eq!(checked.key_source, None);
    }

    /// The drift cases: each was Ready in the operator and refused by the sidecar.
    #[rstest::rstest]
    #[case::upstream_fragment(|c: &mut serde_json::Value| c["upstream"]["path"] = "/a#b".into(), "upstream.path")]
    #[case::upstream_query(|c: &mut serde_json::Value| c["upstream"]["path"] = "/a?b=1".into(), "upstream.path")]
    #[case::header_with_space(|c: &mut serde_json::Value| c["idempotencyKey"] = serde_json::json!({"header": "bad header"}), "idempotencyKey.header")]
    #[case::empty_event_type(|c: &mut serde_json::Value| { c["scheme"] = "Stripe".into(); c["eventTypes"] = serde_json::json!([""]); }, "eventTypes")]
    #[case::dot_segment(|c: &mut serde_json::Value| c["path"] = "/webhooks/../x".into(), "path")]
    #[case::single_dot(|c: &mut serde_json::Value| c["path"] = "/webhooks/./x".into(), "path")]
    #[case::space(|c: &mut serde_json::Value| c["path"] = "/web hooks".into(), "path")]
    #[case::bad_percent(|c: &mut serde_json::Value| c["path"] = "/a%2".into(), "path")]
    #[case::sidecar_port(|c: &mut serde_json::Value| c["upstream"]["port"] = 9880.into(), "upstream.port")]
    #[case::admin_port(|c: &mut serde_json::Value| c["upstream"]["port"] = 9881.into(), "upstream.port")]
    #[case::port_zero(|c: &mut serde_json::Value| c["upstream"]["port"] = 0.into(), "upstream.port")]
    #[case::big_body(|c: &mut serde_json::Value| c["maxBodySize"] = "128Mi".into(), "maxBodySize")]
    #[case::zero_body(|c: &mut serde_json::Value| c["maxBodySize"] = "0".into(), "maxBodySize")]
    #[case::fraction(|c: &mut serde_json::Value| c["upstream"]["timeout"] = "1.5s".into(), "upstream.timeout")]
    #[case::zero_timeout(|c: &mut serde_json::Value| c["upstream"]["timeout"] = "0s".into(), "upstream.timeout")]
    #[case::short_window(|c: &mut serde_json::Value| c["replay"] = serde_json::json!({"tolerance": "10m", "window": "15m"}), "replay.window")]
    #[case::generic_on_stripe(|c: &mut serde_json::Value| { c["scheme"] = "Stripe".into(); c["generic"] = serde_json::json!({}); }, "generic")]
    #[case::events_without_header(|c: &mut serde_json::Value| c["eventTypes"] = serde_json::json!(["a"]), "eventTypes")]
    #[case::pointer(|c: &mut serde_json::Value| c["idempotencyKey"] = serde_json::json!({"jsonPointer": "id"}), "idempotencyKey.jsonPointer")]
    #[case::endpoint_id(|c: &mut serde_json::Value| c["endpointId"] = "a{b}".into(), "endpointId")]
    fn each_bad_field_is_named(
        #[case] edit: fn(&mut serde_json::Value),
        #[case] field: &'static str,
    ) {
        assert_eq!(problem(edit).field, field);
    }

    #[test]
    fn paths_senders_can_use_pass() {
        for path in [
            "/",
            "/webhooks/stripe",
            "/a%20b",
            "/v1/hooks;x=1",
            "/~user/a.b",
            "/a..b",
        ] {
            check(&config(|c| c["path"] = path.into())).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }

    #[test]
    fn problems_say_what_to_do() {
        let port = problem(|c| c["upstream"]["port"] = 9880.into());
        assert!(port.problem.contains("app container's port"), "{port}");
        let space = problem(|c| c["path"] = "/web hooks".into());
        assert!(space.problem.contains("%20"), "{space}");
    }

    #[test]
    fn durations_follow_the_crd_pattern() {
        assert_eq!(duration("f", "1h30m"), Ok(Duration::from_secs(5400)));
        for bad in ["1.5s", "0", " 5m", "5m ", "", "5", "µs"] {
            assert!(duration("f", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stores_are_memory_or_redis_urls() {
        assert_eq!(store("memory", false), Ok(StoreKind::Memory));
        assert_eq!(store("rediss://r:6380/0", false), Ok(StoreKind::Redis));
        assert_eq!(store("redis://a:1,redis://b:2", true), Ok(StoreKind::Redis));
        assert_eq!(
            store("redis://a:1,redis://b:2", false),
            Err(StoreError::NotAStore)
        );
        assert_eq!(store("memcached://x", false), Err(StoreError::NotAStore));
        assert_eq!(store("foo", false), Err(StoreError::NotAStore));
        assert_eq!(store("memory", true), Err(StoreError::ClusterNeedsRedis));
    }

    #[test]
    fn a_shared_path_names_both_endpoints() {
        assert_eq!(distinct_paths([("a", "/x"), ("b", "/y")]), Ok(()));
        let conflict = distinct_paths([("a", "/x"), ("b", "/y"), ("c", "/x")]).unwrap_err();
        assert_eq!(
            (conflict.first.as_str(), conflict.second.as_str()),
            ("a", "c")
        );
        assert!(conflict.to_string().contains("a and c both serve path /x"));
    }
}
