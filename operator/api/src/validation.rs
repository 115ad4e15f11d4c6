//! The one definition of a valid endpoint.
//!
//! The operator checks a `WebhookEndpoint` with [`check`] before it reports Ready, the
//! admission webhook refuses a pod whose endpoints share a path with [`distinct_paths`], and
//! the sidecar loads its files with the same two functions; the CRD's CEL rules
//! (`crd.rs`) state the same rules for the API server, and a test against a real API server
//! proves the two agree case by case. So a spec the operator reports Ready is a
//! configuration the sidecar loads, and a refusal reads the same wherever it happens.
//!
//! The endpoint file does not say where its keys come from; [`secret_source`] and
//! [`public_key`] state the rules of a `WebhookEndpoint`'s `spec.secret` (who may choose the
//! secret, which schemes take a public key and how one is written) for the operator, and the
//! sidecar reads a public key file with [`public_key_bytes`].
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
    /// The public URL the sender calls, for schemes that sign it (Twilio, Square).
    pub public_url: Option<PublicUrl>,
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
    let public_url = public_url(config.scheme, config.public_url.as_deref())?;
    let (tolerance, window) = replay(config.scheme, &config.replay)?;
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
        public_url,
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
    if !percent_encodings_complete(path) {
        return Err(Invalid::new(
            field,
            format!("{path:?}: '%' must start a percent-encoding such as %20"),
        ));
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

fn replay(scheme: Scheme, replay: &Replay) -> Result<(Duration, Duration), Invalid> {
    let (tolerance_text, named) = if let Some(text) = replay.tolerance.as_deref() {
        (text, text.to_owned())
    } else {
        let text = scheme.default_tolerance();
        (text, format!("{text}, the {} default", scheme.as_str()))
    };
    let tolerance = positive_duration("replay.tolerance", tolerance_text)?;
    let window = duration("replay.window", &replay.window)?;
    if window < tolerance.saturating_mul(2) {
        return Err(Invalid::new("replay.window", window_too_short(&named)));
    }
    Ok((tolerance, window))
}

/// The problem of a `replay.window` shorter than twice the tolerance, `tolerance` as the
/// message names it (the CRD's CEL message says the same).
pub fn window_too_short(tolerance: &str) -> String {
    format!(
        "must be at least twice replay.tolerance ({tolerance}), or a replayed delivery could outlive its dedup record"
    )
}

/// Longest `publicUrl`.
pub const MAX_PUBLIC_URL_LENGTH: usize = 2048;

/// `publicUrl`, parsed: the URL the sender calls, as the sender signs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// Exactly as configured (`https://host[:port]/path`).
    pub url: String,
    /// The same URL with the scheme's default port written out (`:443` for https, `:80`
    /// for http) where the configured one omits it, or left out where it names it; `None`
    /// when the URL names another port. Twilio's SDKs accept either form.
    pub other_form: Option<String>,
}

/// `publicUrl` for `scheme`: required exactly when the scheme signs the URL it calls, and
/// then `http(s)://host[:port][/path]`, a host name of letters, digits, `.` and `-`, a
/// port up to 65535, URL path characters only, no query or fragment, at most
/// [`MAX_PUBLIC_URL_LENGTH`] characters. The CRD's CEL rules state the same.
pub fn public_url(scheme: Scheme, url: Option<&str>) -> Result<Option<PublicUrl>, Invalid> {
    let field = "publicUrl";
    let Some(url) = url else {
        if scheme.signs_public_url() {
            return Err(Invalid::new(
                field,
                format!(
                    "{} signs the URL it calls: set publicUrl to that URL exactly as configured at the sender, such as https://example.com/webhooks/{}",
                    scheme.as_str(),
                    scheme.cli_name()
                ),
            ));
        }
        return Ok(None);
    };
    if !scheme.signs_public_url() {
        return Err(Invalid::new(
            field,
            format!(
                "only the Twilio and Square schemes sign the URL they call; remove publicUrl (this endpoint is {})",
                scheme.as_str()
            ),
        ));
    }
    let bad = |why: &str| {
        Invalid::new(
            field,
            format!(
                "{url:?} {why}: write the URL the sender calls, such as https://example.com/webhooks/{}",
                scheme.cli_name()
            ),
        )
    };
    if url.len() > MAX_PUBLIC_URL_LENGTH {
        return Err(bad("is too long (at most 2048 characters)"));
    }
    if url.contains('?') || url.contains('#') {
        return Err(bad(
            "has a query or fragment; the sidecar adds the query of each request itself",
        ));
    }
    let Some((uri_scheme, rest)) = url
        .split_once("://")
        .filter(|(uri_scheme, _)| *uri_scheme == "https" || *uri_scheme == "http")
    else {
        return Err(bad("is not an absolute http or https URL"));
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err(bad("holds user information"));
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return Err(bad(
            "has no host name of letters, digits, '.' and '-' after the scheme",
        ));
    }
    let port = match port {
        None => None,
        Some(text) => Some(
            Some(text)
                .filter(|text| {
                    (1..=5).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
                })
                .and_then(|text| text.parse::<u16>().ok())
                .ok_or_else(|| bad("has a port that is not a number from 0 to 65535"))?,
        ),
    };
    if let Some(c) = path.chars().find(|c| !is_path_char(*c)) {
        return Err(bad(&format!(
            "holds {c:?} in its path, which a URL cannot carry as is: percent-encode it (a space is %20)"
        )));
    }
    if !percent_encodings_complete(path) {
        return Err(bad("has a '%' that starts no percent-encoding such as %20"));
    }
    let default_port = if uri_scheme == "https" { 443 } else { 80 };
    let prefix = format!("{uri_scheme}://");
    let other_form = match port {
        None => Some(format!("{prefix}{host}:{default_port}{path}")),
        Some(port) if port == default_port => Some(format!("{prefix}{host}{path}")),
        Some(_) => None,
    };
    Ok(Some(PublicUrl {
        url: url.to_owned(),
        other_form,
    }))
}

/// Whether every `%` of `text` starts a two-digit hex encoding.
fn percent_encodings_complete(text: &str) -> bool {
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        let hex = rest.get(at + 1..at + 3).unwrap_or_default();
        if hex.len() != 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        rest = &rest[at + 3..];
    }
    true
}

/// Where an endpoint's signing keys come from: one of `secret.generate`, `secret.secretRef`
/// and `secret.publicKey` of a `WebhookEndpoint` (the endpoint file only names the
/// directory the keys are mounted at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// The operator generates the secret.
    Generate,
    /// A Secret holds what the sender issued.
    SecretRef,
    /// The sender's public key, in the spec.
    PublicKey,
}

/// What the sender calls the secret it issues (Twilio: the Auth Token); `None` where the
/// receiver chooses the secret ([`Scheme::receiver_chooses_secret`]).
pub fn issued_secret(scheme: Scheme) -> Option<&'static str> {
    match scheme {
        Scheme::Generic
        | Scheme::StandardWebhooks
        | Scheme::Stripe
        | Scheme::GitHub
        | Scheme::Slack
        | Scheme::Shopify => None,
        Scheme::Twilio => Some("the Auth Token"),
        Scheme::Zoom => Some("the app's Secret Token"),
        Scheme::Paddle => Some("the notification destination's endpoint secret key"),
        Scheme::Linear => Some("the webhook's signing secret"),
        Scheme::Square => Some("the subscription's signature key"),
        Scheme::Mailgun => Some("the HTTP webhook signing key"),
        Scheme::SendGrid => Some("the Event Webhook's verification key"),
    }
}

/// The refusal of `secret.generate` for a scheme whose sender issues the secret: what the
/// sender calls it and where it goes instead.
pub fn generate_refused(scheme: Scheme) -> Invalid {
    let name = issued_secret(scheme).unwrap_or("its signing secret");
    let problem = if scheme.takes_public_key() {
        format!(
            "{} issues the key ({name}, a public key): set spec.secret.publicKey to it as the dashboard shows it, or store it in a Secret and set spec.secret.secretRef",
            scheme.as_str()
        )
    } else {
        format!(
            "{} issues the signing secret ({name}): store it in a Secret and set spec.secret.secretRef",
            scheme.as_str()
        )
    };
    Invalid::new("secret.generate", problem)
}

/// Whether keys of `kind` can serve `scheme`: the operator generates only secrets the
/// receiver may choose, and a public key serves only schemes checked with one.
pub fn secret_source(scheme: Scheme, kind: SecretKind) -> Result<(), Invalid> {
    match kind {
        SecretKind::Generate if !scheme.receiver_chooses_secret() => Err(generate_refused(scheme)),
        SecretKind::PublicKey if !scheme.takes_public_key() => {
            let problem = match issued_secret(scheme) {
                Some(name) => format!(
                    "{} signs with a shared secret ({name}), not a key pair: remove spec.secret.publicKey, store the secret in a Secret and set spec.secret.secretRef",
                    scheme.as_str()
                ),
                None => format!(
                    "{} signs with a shared secret, not a key pair: remove spec.secret.publicKey; the operator generates the secret by default (or set spec.secret.secretRef)",
                    scheme.as_str()
                ),
            };
            Err(Invalid::new("secret.publicKey", problem))
        }
        _ => Ok(()),
    }
}

/// Longest `secret.publicKey`.
pub const MAX_PUBLIC_KEY_LENGTH: usize = 1024;
/// The armor of a PEM public key.
pub const PEM_PUBLIC_KEY_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
/// The end of [`PEM_PUBLIC_KEY_BEGIN`]'s block.
pub const PEM_PUBLIC_KEY_END: &str = "-----END PUBLIC KEY-----";
/// The DER header of a P-256 `SubjectPublicKeyInfo` up to its uncompressed point's `04`:
/// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING }.
pub const P256_SPKI_PREFIX: [u8; 27] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];
/// Length of a DER P-256 `SubjectPublicKeyInfo`.
pub const P256_SPKI_LENGTH: usize = 91;
/// Standard Webhooks' prefix of an ed25519 public key.
pub const WHPK_PREFIX: &str = "whpk_";

/// What a public key for `scheme` looks like, for messages; `None` where the scheme takes no
/// public key.
pub fn public_key_format(scheme: Scheme) -> Option<&'static str> {
    match scheme {
        Scheme::SendGrid => Some(
            "SendGrid's Verification Key as its Event Webhook settings show it: the base64 of a P-256 public key, 124 characters starting MFkw (or the same key in a -----BEGIN PUBLIC KEY----- block)",
        ),
        Scheme::StandardWebhooks => Some(
            "the sender's public key as its dashboard shows it: whpk_ and the base64 of a 32-byte ed25519 key, 49 characters in all",
        ),
        _ => None,
    }
}

/// Checks `secret.publicKey` (or a key file meant as one) for `scheme`: SendGrid takes the
/// standard base64 of a DER P-256 `SubjectPublicKeyInfo` (91 bytes), bare or in a PEM
/// `PUBLIC KEY` block; StandardWebhooks takes `whpk_` and the standard base64 of 32 bytes.
/// Whitespace around the key (and, in PEM, inside it) is ignored. Light: the point itself
/// is left to the verifier. The CRD's CEL rules state the same.
pub fn public_key(scheme: Scheme, text: &str) -> Result<(), Invalid> {
    public_key_bytes(scheme, text).map(drop)
}

/// [`public_key`], returning the decoded key: the DER `SubjectPublicKeyInfo` (SendGrid) or
/// the 32 raw ed25519 bytes (StandardWebhooks).
pub fn public_key_bytes(scheme: Scheme, text: &str) -> Result<Vec<u8>, Invalid> {
    use base64::Engine as _;

    secret_source(scheme, SecretKind::PublicKey)?;
    let field = "secret.publicKey";
    let format = public_key_format(scheme).unwrap_or("a public key");
    let bad = |why: &str| Invalid::new(field, format!("{why}; paste {format}"));
    if text.len() > MAX_PUBLIC_KEY_LENGTH {
        return Err(bad(&format!(
            "is longer than {MAX_PUBLIC_KEY_LENGTH} characters"
        )));
    }
    let text = text.trim();
    let base64 = base64::engine::general_purpose::STANDARD;
    if scheme == Scheme::StandardWebhooks {
        if text.starts_with("whsec_") {
            return Err(Invalid::new(
                field,
                "is a signing secret (whsec_…), not a public key: store it in a Secret and set spec.secret.secretRef, or remove spec.secret to have one generated",
            ));
        }
        let Some(encoded) = text.strip_prefix(WHPK_PREFIX) else {
            return Err(bad("does not start with whpk_"));
        };
        let bytes = base64
            .decode(encoded)
            .map_err(|_| bad("is not whpk_ followed by standard base64"))?;
        if bytes.len() != 32 {
            return Err(bad(&format!(
                "decodes to {} bytes, not the 32 of an ed25519 key",
                bytes.len()
            )));
        }
        return Ok(bytes);
    }
    let encoded = match text.strip_prefix(PEM_PUBLIC_KEY_BEGIN) {
        Some(inner) => inner
            .strip_suffix(PEM_PUBLIC_KEY_END)
            .ok_or_else(|| bad("has a BEGIN PUBLIC KEY line without its END PUBLIC KEY line"))?
            .replace([' ', '\n', '\r', '\t'], ""),
        None => text.to_owned(),
    };
    let bytes = base64
        .decode(&encoded)
        .map_err(|_| bad("is not standard base64"))?;
    if bytes.len() != P256_SPKI_LENGTH {
        return Err(bad(&format!(
            "decodes to {} bytes, not the {P256_SPKI_LENGTH} of a P-256 public key",
            bytes.len()
        )));
    }
    if !bytes.starts_with(&P256_SPKI_PREFIX) {
        return Err(bad("is not an ECDSA P-256 public key"));
    }
    Ok(bytes)
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
    if !event_types.is_empty() && !scheme.has_event_type() {
        return Err(Invalid::new("eventTypes", no_event_type(scheme)));
    }
    if !event_types.is_empty() && scheme == Scheme::Generic && generic.event_type.is_none() {
        return Err(Invalid::new(
            "eventTypes",
            "the Generic scheme needs generic.eventTypeHeader to tell event types apart",
        ));
    }
    Ok(())
}

/// The problem of `eventTypes` on a scheme without an event type
/// ([`Scheme::has_event_type`]); the CRD's CEL message says the same.
pub fn no_event_type(scheme: Scheme) -> String {
    format!(
        "{} deliveries carry no single event type to filter on: remove eventTypes",
        scheme.as_str()
    )
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

    const SENDGRID_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEyTNmjB73HmMlMEzDevoAeizGRViGh06fg6Dyj3w3i9IzakbbXyN5ew/WORUKmo4GUSDpHu+0YsYgVopyGh7Nw==";
    const WHPK_KEY: &str = "whpk_Yaqhe59L0dNBvZ45MDCeSVPwo/TN1WPwclvSyOSbYPA=";

    #[test]
    fn public_keys_are_read_as_their_dashboards_show_them() {
        let der = public_key_bytes(Scheme::SendGrid, SENDGRID_KEY).unwrap();
        assert_eq!(der.len(), P256_SPKI_LENGTH);
        let pem = format!(
            "{PEM_PUBLIC_KEY_BEGIN}\n{}\n{}\n{PEM_PUBLIC_KEY_END}\n",
            &SENDGRID_KEY[..64],
            &SENDGRID_KEY[64..]
        );
        assert_eq!(public_key_bytes(Scheme::SendGrid, &pem).unwrap(), der);
        assert_eq!(
            public_key_bytes(Scheme::SendGrid, &format!(" {SENDGRID_KEY}\n")).unwrap(),
            der
        );
        assert_eq!(
            public_key_bytes(Scheme::StandardWebhooks, WHPK_KEY)
                .unwrap()
                .len(),
            32
        );
    }

    #[rstest::rstest]
    #[case::truncated(Scheme::SendGrid, &SENDGRID_KEY[..64], "decodes to 48 bytes, not the 91")]
    #[case::not_base64(Scheme::SendGrid, "not a key", "is not standard base64")]
    #[case::other_curve(
        Scheme::SendGrid,
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQgDQgAEEyTNmjB73HmMlMEzDevoAeizGRViGh06fg6Dyj3w3i9IzakbbXyN5ew/WORUKmo4GUSDpHu+0YsYgVopyGh7Nw==",
        "is not an ECDSA P-256 public key"
    )]
    #[case::pem_unclosed(
        Scheme::SendGrid,
        "-----BEGIN PUBLIC KEY-----\nMFkw",
        "without its END PUBLIC KEY line"
    )]
    #[case::whpk_for_sendgrid(Scheme::SendGrid, WHPK_KEY, "paste SendGrid's Verification Key")]
    #[case::no_prefix(
        Scheme::StandardWebhooks,
        "Yaqhe59L0dNBvZ45MDCeSVPwo/TN1WPwclvSyOSbYPA=",
        "does not start with whpk_"
    )]
    #[case::secret(
        Scheme::StandardWebhooks,
        "whsec_Yaqhe59L0dNBvZ45MDCeSVPwo/TN1WPwclvSyOSbYPA=",
        "is a signing secret"
    )]
    #[case::short(
        Scheme::StandardWebhooks,
        "whpk_Yaqhe59L0dNBvZ45MDCeSVPwo/TN1WPwclvSyOSb",
        "decodes to 30 bytes, not the 32"
    )]
    #[case::hmac_scheme(Scheme::Stripe, WHPK_KEY, "Stripe signs with a shared secret")]
    fn bad_public_keys_say_what_is_wrong_and_what_to_paste(
        #[case] scheme: Scheme,
        #[case] text: &str,
        #[case] expected: &str,
    ) {
        let invalid = public_key(scheme, text).unwrap_err();
        assert_eq!(invalid.field, "secret.publicKey");
        assert!(invalid.problem.contains(expected), "{invalid}");
    }

    #[test]
    fn secret_sources_follow_who_chooses_the_secret() {
        for scheme in Scheme::ALL {
            assert_eq!(
                secret_source(scheme, SecretKind::Generate).is_ok(),
                scheme.receiver_chooses_secret(),
                "{scheme:?}"
            );
            assert_eq!(
                issued_secret(scheme).is_none(),
                scheme.receiver_chooses_secret(),
                "{scheme:?}"
            );
            assert_eq!(
                secret_source(scheme, SecretKind::PublicKey).is_ok(),
                scheme.takes_public_key(),
                "{scheme:?}"
            );
            assert_eq!(
                public_key_format(scheme).is_some(),
                scheme.takes_public_key(),
                "{scheme:?}"
            );
            assert!(secret_source(scheme, SecretKind::SecretRef).is_ok());
        }
        assert_eq!(
            generate_refused(Scheme::Twilio).problem,
            "Twilio issues the signing secret (the Auth Token): store it in a Secret and set spec.secret.secretRef"
        );
    }

    #[test]
    fn public_urls_keep_their_other_port_form() {
        let twilio = |url: &str| public_url(Scheme::Twilio, Some(url));
        let url = twilio("https://example.com/voice").unwrap().unwrap();
        assert_eq!(
            url.other_form.as_deref(),
            Some("https://example.com:443/voice")
        );
        let url = twilio("http://example.com:80").unwrap().unwrap();
        assert_eq!(url.other_form.as_deref(), Some("http://example.com"));
        assert_eq!(
            twilio("https://example.com:8443/x")
                .unwrap()
                .unwrap()
                .other_form,
            None
        );
        for bad in [
            "https://example.com/a?b",
            "HTTPS://example.com/a",
            "https://u@example.com/a",
            "https://example.com:65536/a",
            "https://example.com:+80/a",
            "https://:80/a",
            "https://example.com/a b",
            "https://example.com/%zz",
            "example.com/a",
        ] {
            assert_eq!(twilio(bad).unwrap_err().field, "publicUrl", "{bad}");
        }
        assert!(public_url(Scheme::Square, None).is_err());
        assert!(public_url(Scheme::Stripe, Some("https://example.com/")).is_err());
        assert_eq!(public_url(Scheme::Stripe, None), Ok(None));
    }

    #[test]
    fn an_unset_tolerance_is_the_schemes_and_the_window_holds_twice_it() {
        let paddle = |window: &str| {
            check(&config(|c| {
                c["scheme"] = "Paddle".into();
                c["replay"] = serde_json::json!({ "window": window });
            }))
        };
        assert_eq!(paddle("10s").unwrap().tolerance, Duration::from_secs(5));
        let short = paddle("9s").unwrap_err();
        assert!(
            short.problem.contains("(5s, the Paddle default)"),
            "{short}"
        );
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
