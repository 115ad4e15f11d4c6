//! The diagnosis behind `hookguard verify`: when the sidecar's verifier refuses a captured
//! request, try the known mistakes in priority order and name the one that matches.
//!
//! Every trial goes through the sidecar's own [`Verifier`], with the request changed the way
//! the mistake would have changed it (a re-encoded header, a different reading of the
//! secret, a re-serialized body): the mistake that makes the signature verify is the cause.
//! The order follows `research/cli.md` §3: (a) scheme and headers, (b) the signature's
//! encoding, (c) the timestamp, (d) the secret's form, (e) the body's transforms, (f)
//! "matches nothing". Findings have stable codes ([`code`]); no finding prints a secret or a
//! computed signature (fingerprints only).

use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hookguard_api::Scheme;
use hookguard_api::admin::key_fingerprint;
use hookguard_sidecar::verify::{
    GenericHeaders, KeyError, PublicUrl, Rejection, SigningKey, Verifier, VerifierSettings,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

use super::input::{Secret, strip_one_newline};
use super::json_forms::{self, Variant};

/// Where every finding points for the longer story.
pub const DOCS: &str = "https://github.com/hookguard/hookguard/blob/main/README.md#troubleshooting";

/// The finding codes. Stable: scripts and docs refer to them.
pub mod code {
    /// Headers of another scheme are present, not this scheme's (wrong `--scheme`).
    pub const OTHER_SCHEME: &str = "HG-V001";
    /// A header the scheme requires is missing (present vs expected listed).
    pub const MISSING_HEADER: &str = "HG-V002";
    /// Svix's `svix-*` names on a Standard Webhooks request: accepted aliases.
    pub const SVIX_ALIASES: &str = "HG-V003";
    /// The signature is encoded the wrong way (hex vs base64, case, prefix).
    pub const SIGNATURE_ENCODING: &str = "HG-V004";
    /// A header is present but malformed, and no known mix-up explains it.
    pub const MALFORMED_HEADER: &str = "HG-V005";
    /// Which of several keys (rotation) matched.
    pub const ROTATION_KEY: &str = "HG-V006";
    /// A Stripe API key (`sk_`, `pk_`, `rk_`) given where the signing secret belongs.
    pub const API_KEY: &str = "HG-V010";
    /// Whitespace in the secret that the sidecar does not strip.
    pub const SECRET_WHITESPACE: &str = "HG-V011";
    /// Standard Webhooks endpoint, but the sender uses the secret verbatim (a Stripe
    /// `whsec_`, or raw key bytes in the file).
    pub const SECRET_VERBATIM: &str = "HG-V012";
    /// A verbatim-secret scheme, but the sender signs with the base64-decoded `whsec_` key
    /// (a Standard Webhooks secret).
    pub const SECRET_DECODED: &str = "HG-V013";
    /// The secret is base64 of the real secret (a Kubernetes Secret encoded twice).
    pub const SECRET_DOUBLE_BASE64: &str = "HG-V014";
    /// The secret cannot be a key of this scheme at all.
    pub const SECRET_UNUSABLE: &str = "HG-V015";
    /// The signed timestamp is outside the tolerance.
    pub const STALE_TIMESTAMP: &str = "HG-V020";
    /// The JSON body was parsed and re-serialized.
    pub const BODY_RESERIALIZED: &str = "HG-V030";
    /// A trailing newline or whitespace was added to or removed from the body.
    pub const BODY_TRAILING_NEWLINE: &str = "HG-V031";
    /// The body's line endings were changed (CRLF vs LF).
    pub const BODY_LINE_ENDINGS: &str = "HG-V032";
    /// The form body was URL-encoded again, differently.
    pub const BODY_FORM_REENCODED: &str = "HG-V033";
    /// The body arrived base64-encoded.
    pub const BODY_BASE64: &str = "HG-V034";
    /// The body's character encoding was changed (UTF-8 vs Latin-1, double-encoded).
    pub const BODY_CHARSET: &str = "HG-V035";
    /// Nothing known matches: the body or the secret differs.
    pub const NO_MATCH: &str = "HG-V090";
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// A cause: why the request is refused.
    Error,
    /// Worth fixing, but not (alone) why it is refused.
    Warning,
    /// For information.
    Info,
}

/// One diagnosis line.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Stable code, `HG-Vnnn` ([`code`]).
    pub code: &'static str,
    /// How much it matters.
    pub level: Level,
    /// What was found, one line.
    #[serde(rename = "finding")]
    pub text: String,
    /// What to do about it.
    pub fix: String,
    /// Where to read more.
    pub docs: &'static str,
}

fn finding(
    code: &'static str,
    level: Level,
    text: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        code,
        level,
        text: text.into(),
        fix: fix.into(),
        docs: DOCS,
    }
}

/// The verdict and the findings.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Whether the sidecar would accept the request.
    pub valid: bool,
    /// The id of the key that verified it.
    pub matched_key: Option<String>,
    /// What the sidecar's verifier says when it refuses (its log text: no values).
    pub rejection: Option<String>,
    /// The diagnosis, most important first.
    pub findings: Vec<Finding>,
}

#[cfg(test)]
impl Report {
    /// The codes of the findings, in order.
    pub fn codes(&self) -> Vec<&'static str> {
        self.findings.iter().map(|f| f.code).collect()
    }
}

/// A captured request to check.
#[derive(Debug)]
pub struct Case<'a> {
    /// The endpoint's scheme.
    pub scheme: Scheme,
    /// The keys, in order; any may match (rotation).
    pub secrets: &'a [Secret],
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The raw body.
    pub body: &'a [u8],
    /// The verifier's clock.
    pub now: i64,
    /// The replay tolerance.
    pub tolerance: Duration,
    /// The full URL the sender called, query included: Twilio and Square sign it.
    pub url: Option<&'a str>,
}

/// No timestamp check: for trials of the signature alone.
const ANY_TIME: Duration = Duration::from_secs(u64::MAX);

/// A key built for a trial, with the secret it came from.
struct Trial<'s> {
    secret: &'s Secret,
    key: SigningKey,
}

/// A verifier of `scheme`; `url` (the URL the sender called) becomes its public URL.
fn verifier(
    scheme: Scheme,
    url: Option<&str>,
    keys: Vec<SigningKey>,
    tolerance: Duration,
) -> Verifier {
    Verifier::new(VerifierSettings {
        scheme,
        generic: GenericHeaders::default(),
        key_source: None,
        keys,
        tolerance,
        public_url: url.map(|url| PublicUrl {
            url: split_url(url).0.to_owned(),
            other_form: None,
        }),
    })
}

/// `url` split at its query: the public URL, and the query the request carried.
fn split_url(url: &str) -> (&str, Option<&str>) {
    match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    }
}

/// Checks the request with `verifier`, with the query of `url`.
fn check(
    verifier: &Verifier,
    url: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), Rejection> {
    let query = url.and_then(|url| split_url(url).1);
    verifier.verify_request(query, headers, body, now)
}

/// The first trial key that verifies `headers` and `body` (timestamp not checked).
fn first_match<'s>(
    scheme: Scheme,
    url: Option<&str>,
    trials: &'s [Trial<'s>],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Option<&'s Secret> {
    trials.iter().find_map(|trial| {
        check(
            &verifier(scheme, url, vec![trial.key.clone()], ANY_TIME),
            url,
            headers,
            body,
            now,
        )
        .is_ok()
        .then_some(trial.secret)
    })
}

/// The request as the sidecar reads it, then the diagnosis when it refuses.
pub fn diagnose(case: &Case<'_>) -> Report {
    let mut findings = Vec::new();
    svix_aliases(case, &mut findings);

    let mut key_errors = Vec::new();
    let mut trials = Vec::new();
    for secret in case.secrets {
        match SigningKey::new(case.scheme, secret.id.clone(), &secret.bytes) {
            Ok(key) => trials.push(Trial { secret, key }),
            Err(error) => key_errors.push((secret, error)),
        }
    }
    let keys: Vec<SigningKey> = trials.iter().map(|t| t.key.clone()).collect();
    let strict = verifier(case.scheme, case.url, keys, case.tolerance);
    let rejection = match check(&strict, case.url, case.headers, case.body, case.now) {
        Ok(()) => {
            let matched = trials.iter().position(|trial| {
                let single = verifier(
                    case.scheme,
                    case.url,
                    vec![trial.key.clone()],
                    case.tolerance,
                );
                check(&single, case.url, case.headers, case.body, case.now).is_ok()
            });
            let matched_key = matched.map(|i| trials[i].secret.id.clone());
            if let (Some(i), true) = (matched, case.secrets.len() > 1) {
                let secret = trials[i].secret;
                let number = case
                    .secrets
                    .iter()
                    .position(|s| std::ptr::eq(s, secret))
                    .unwrap_or(i);
                findings.push(finding(
                    code::ROTATION_KEY,
                    Level::Info,
                    format!(
                        "key {} ({}) matched, number {} of the {} keys given",
                        secret.id,
                        key_fingerprint(&secret.bytes),
                        number + 1,
                        case.secrets.len()
                    ),
                    "nothing to do; once the sender signs with the newest key only, remove the others",
                ));
            }
            for (secret, error) in &key_errors {
                findings.push(finding(
                    code::SECRET_UNUSABLE,
                    Level::Warning,
                    format!(
                        "the secret {} cannot be a {} key: {error}",
                        secret.id,
                        case.scheme.as_str()
                    ),
                    "a sidecar refuses a key file it cannot load: fix or remove it",
                ));
            }
            return Report {
                valid: true,
                matched_key,
                rejection: None,
                findings,
            };
        }
        Err(rejection) => rejection,
    };
    let mut report = Report {
        valid: false,
        matched_key: None,
        rejection: Some(rejection.to_string()),
        findings,
    };
    diagnose_refusal(case, &trials, &key_errors, &rejection, &mut report);
    if !report.findings.iter().any(|f| f.level == Level::Error) {
        report.findings.push(no_match(case));
    }
    report
}

fn diagnose_refusal(
    case: &Case<'_>,
    trials: &[Trial<'_>],
    key_errors: &[(&Secret, KeyError)],
    rejection: &Rejection,
    report: &mut Report,
) {
    let findings = &mut report.findings;
    // (a) Scheme and headers: nothing else can be checked without them.
    if let Some(other) = other_scheme(case) {
        findings.push(other);
        return;
    }
    if let Rejection::MissingHeader(name) = rejection {
        findings.push(missing_header(case, name));
        return;
    }
    // (b) The signature's encoding.
    if let Some(found) = signature_encoding(case, trials) {
        findings.push(found);
        return;
    }
    if let Rejection::MalformedHeader { .. }
    | Rejection::MissingDeliveryId
    | Rejection::InvalidDeliveryId = rejection
    {
        findings.push(finding(
            code::MALFORMED_HEADER,
            Level::Error,
            format!("{rejection} (no known encoding mix-up explains it)"),
            format!(
                "send the header as {} senders do: {}",
                case.scheme.as_str(),
                expected_format(case.scheme)
            ),
        ));
        return;
    }
    // (c) The timestamp: the signature alone may be valid.
    if *rejection == Rejection::TimestampOutsideTolerance {
        let signature_valid = first_match(
            case.scheme,
            case.url,
            trials,
            case.headers,
            case.body,
            case.now,
        );
        findings.push(stale(case, signature_valid));
        if signature_valid.is_some() {
            return;
        }
    }
    // (d) The secret's form.
    if let Some(found) = secret_form(case, findings) {
        findings.push(found);
        return;
    }
    if let Some((secret, error)) = key_errors.first() {
        findings.push(finding(
            code::SECRET_UNUSABLE,
            Level::Error,
            format!(
                "the secret {} cannot be a {} key: {error}",
                secret.id,
                case.scheme.as_str()
            ),
            "copy the signing secret again from the sender's dashboard, exactly as shown",
        ));
        return;
    }
    // (e) The body's transforms.
    if let Some(found) = body_transform(case, trials) {
        findings.push(found);
    }
}

// (a) ------------------------------------------------------------------------------------

/// The headers that carry each scheme's signature (its own names and accepted aliases).
fn signature_headers(scheme: Scheme) -> &'static [&'static str] {
    match scheme {
        Scheme::Generic => &["x-signature"],
        Scheme::StandardWebhooks => &["webhook-signature", "svix-signature"],
        Scheme::Stripe => &["stripe-signature"],
        Scheme::GitHub => &["x-hub-signature-256", "x-hub-signature"],
        Scheme::Slack => &["x-slack-signature"],
        Scheme::Shopify => &["x-shopify-hmac-sha256", "shopify-hmac-sha256"],
        Scheme::Twilio => &["x-twilio-signature"],
        Scheme::Zoom => &["x-zm-signature"],
        Scheme::Paddle => &["paddle-signature"],
        Scheme::Linear => &["linear-signature"],
        Scheme::Square => &["x-square-hmacsha256-signature", "x-square-signature"],
        // The signature block is in the body.
        Scheme::Mailgun => &[],
        Scheme::SendGrid => &["x-twilio-email-event-webhook-signature"],
    }
}

/// The headers a sender of `scheme` sends, as `hookguard_sidecar::sign` writes them (for the
/// schemes it cannot sign, the signature headers).
fn expected_headers(scheme: Scheme) -> Vec<&'static str> {
    let delivery = hookguard_sidecar::sign::Delivery {
        id: "x",
        timestamp: 0,
        event_type: "x",
        body: b"",
    };
    match hookguard_sidecar::sign::headers(scheme, b"k", &delivery) {
        Ok(signed) => signed.into_iter().map(|(name, _)| name).collect(),
        Err(_) => signature_headers(scheme).to_vec(),
    }
}

fn present<'n>(headers: &HeaderMap, names: &[&'n str]) -> Vec<&'n str> {
    names
        .iter()
        .copied()
        .filter(|name| headers.contains_key(*name))
        .collect()
}

fn svix_aliases(case: &Case<'_>, findings: &mut Vec<Finding>) {
    if case.scheme != Scheme::StandardWebhooks {
        return;
    }
    let svix = present(
        case.headers,
        &["svix-id", "svix-timestamp", "svix-signature"],
    );
    if svix.is_empty() {
        return;
    }
    let webhook = present(case.headers, &expected_headers(Scheme::StandardWebhooks));
    let both = if webhook.is_empty() {
        String::new()
    } else {
        format!(
            "; {} present too, and a webhook-* header wins over its svix-* alias",
            webhook.join(", ")
        )
    };
    findings.push(finding(
        code::SVIX_ALIASES,
        Level::Info,
        format!(
            "found {} (Svix's names, as Clerk and Resend send them); Standard Webhooks expects {}; the sidecar accepts the svix-* names as aliases{both}",
            svix.join(", "),
            expected_headers(Scheme::StandardWebhooks).join(", ")
        ),
        "nothing to do: the svix-* headers are verified like the webhook-* ones",
    ));
}

fn other_scheme(case: &Case<'_>) -> Option<Finding> {
    if !present(case.headers, signature_headers(case.scheme)).is_empty() {
        return None;
    }
    let (other, names) = Scheme::ALL.into_iter().find_map(|other| {
        let names = present(case.headers, signature_headers(other));
        (other != case.scheme && !names.is_empty()).then_some((other, names))
    })?;
    let trials: Vec<Trial<'_>> = case
        .secrets
        .iter()
        .filter_map(|secret| {
            let key = SigningKey::new(other, secret.id.clone(), &secret.bytes).ok()?;
            Some(Trial { secret, key })
        })
        .collect();
    let verdict = match first_match(other, case.url, &trials, case.headers, case.body, case.now) {
        Some(secret) => format!(
            "; the signature verifies as {} with key {}",
            other.as_str(),
            secret.id
        ),
        None => String::new(),
    };
    Some(finding(
        code::OTHER_SCHEME,
        Level::Error,
        format!(
            "the request carries {} headers ({}), none of {}'s ({}){verdict}",
            other.as_str(),
            names.join(", "),
            case.scheme.as_str(),
            signature_headers(case.scheme).join(", ")
        ),
        format!(
            "check with --scheme {}, and set the endpoint's scheme to {} if that is the sender",
            other.cli_name(),
            other.as_str()
        ),
    ))
}

fn missing_header(case: &Case<'_>, name: &HeaderName) -> Finding {
    let expected = expected_headers(case.scheme);
    let mut relevant = expected.clone();
    if case.scheme == Scheme::StandardWebhooks {
        relevant.extend(["svix-id", "svix-timestamp", "svix-signature"]);
    }
    relevant.extend(signature_headers(case.scheme));
    relevant.sort_unstable();
    relevant.dedup();
    let found = present(case.headers, &relevant);
    let found = if found.is_empty() {
        "none".to_owned()
    } else {
        found.join(", ")
    };
    let aliases = if case.scheme == Scheme::StandardWebhooks {
        " (svix-id, svix-timestamp, svix-signature are accepted as aliases)"
    } else {
        ""
    };
    finding(
        code::MISSING_HEADER,
        Level::Error,
        format!(
            "required header `{name}` is missing; present: {found}; {} expects: {}{aliases}",
            case.scheme.as_str(),
            expected.join(", ")
        ),
        "capture the request exactly as the sender sent it (curl -D, a proxy log), and check that no ingress, WAF or proxy in between drops headers",
    )
}

fn expected_format(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Generic => {
            "`x-signature: <lower-case hex HMAC-SHA256 of the body>` and `x-delivery-id`"
        }
        Scheme::StandardWebhooks => {
            "`webhook-signature: v1,<base64>`, `webhook-timestamp: <unix seconds>`, `webhook-id`"
        }
        Scheme::Stripe => "`stripe-signature: t=<unix seconds>,v1=<lower-case hex>`",
        Scheme::GitHub => "`x-hub-signature-256: sha256=<lower-case hex>`",
        Scheme::Slack => {
            "`x-slack-signature: v0=<lower-case hex>` and `x-slack-request-timestamp: <unix seconds>`"
        }
        Scheme::Shopify => "`x-shopify-hmac-sha256: <base64>` and `x-shopify-topic`",
        Scheme::Twilio => {
            "`x-twilio-signature: <base64>` and `i-twilio-idempotency-token`; the URL Twilio called (--url)"
        }
        Scheme::Zoom => {
            "`x-zm-signature: v0=<lower-case hex>` and `x-zm-request-timestamp: <unix seconds>`"
        }
        Scheme::Paddle => "`paddle-signature: ts=<unix seconds>;h1=<lower-case hex>`",
        Scheme::Linear => {
            "`linear-signature: <lower-case hex>` and `linear-delivery`; the body's webhookTimestamp (ms)"
        }
        Scheme::Square => {
            "`x-square-hmacsha256-signature: <base64>`; the notification URL as configured (--url)"
        }
        Scheme::Mailgun => {
            "a body with `signature: {timestamp, token, signature}` (JSON) or those form fields"
        }
        Scheme::SendGrid => {
            "`x-twilio-email-event-webhook-signature: <base64 DER>` and `x-twilio-email-event-webhook-timestamp`"
        }
    }
}

// (b) ------------------------------------------------------------------------------------

/// The other encodings of a presented hex signature.
fn from_hex_mixups(value: &str) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    if value.bytes().any(|b| b.is_ascii_uppercase()) && hex::decode(value).is_ok() {
        out.push((
            value.to_ascii_lowercase(),
            "upper-case hex where lower-case hex is expected",
        ));
    }
    if let Ok(bytes) = STANDARD.decode(value)
        && bytes.len() == 32
    {
        out.push((hex::encode(bytes), "base64 where hex is expected"));
    }
    out
}

/// The other encodings of a presented base64 signature.
fn from_base64_mixups(value: &str) -> Vec<(String, &'static str)> {
    match hex::decode(value) {
        Ok(bytes) if bytes.len() == 32 => {
            vec![(STANDARD.encode(bytes), "hex where base64 is expected")]
        }
        _ => Vec::new(),
    }
}

/// The signature header rewritten as each known mix-up would have to be undone.
fn reencodings(scheme: Scheme, headers: &HeaderMap) -> Vec<(HeaderMap, String)> {
    let Some((name, value)) = signature_headers(scheme).iter().find_map(|name| {
        let value = headers.get(*name)?.to_str().ok()?;
        Some((*name, value.trim().to_owned()))
    }) else {
        return Vec::new();
    };
    let mut rewritten: Vec<(String, String)> = Vec::new();
    let mut add = |new: String, what: String| rewritten.push((new, what));
    match scheme {
        Scheme::Generic => {
            if let Some(bare) = value.strip_prefix("sha256=") {
                add(
                    bare.to_owned(),
                    "a `sha256=` prefix (GitHub style) where the Generic scheme expects bare hex"
                        .into(),
                );
                for (fixed, what) in from_hex_mixups(bare) {
                    add(fixed, format!("a `sha256=` prefix and {what}"));
                }
            }
            for (fixed, what) in from_hex_mixups(&value) {
                add(fixed, what.into());
            }
        }
        Scheme::GitHub | Scheme::Slack | Scheme::Zoom => {
            let prefix = if scheme == Scheme::GitHub {
                "sha256="
            } else {
                "v0="
            };
            let bare = value.strip_prefix(prefix);
            if bare.is_none() {
                add(format!("{prefix}{value}"), format!("no `{prefix}` prefix"));
            }
            let inner = bare.unwrap_or(&value);
            for (fixed, what) in from_hex_mixups(inner) {
                add(format!("{prefix}{fixed}"), what.into());
            }
        }
        Scheme::Stripe => {
            let elements: Vec<&str> = value.split(',').collect();
            let mixups = elements.iter().enumerate().flat_map(|(i, element)| {
                element
                    .trim()
                    .strip_prefix("v1=")
                    .map(|sig| from_hex_mixups(sig).into_iter().map(move |m| (i, m)))
                    .into_iter()
                    .flatten()
            });
            for (i, (fixed, what)) in mixups.collect::<Vec<_>>() {
                let mut new = elements.clone();
                let element = format!("v1={fixed}");
                new[i] = &element;
                add(new.join(","), format!("{what} in a `v1=` element"));
            }
            if elements.iter().any(|e| e.starts_with(' ')) {
                let trimmed: Vec<&str> = elements.iter().map(|e| e.trim()).collect();
                add(trimmed.join(","), "spaces after the commas".into());
            }
        }
        Scheme::Shopify | Scheme::Twilio | Scheme::Square => {
            for (fixed, what) in from_base64_mixups(&value) {
                add(fixed, what.into());
            }
        }
        Scheme::Linear => {
            for (fixed, what) in from_hex_mixups(&value) {
                add(fixed, what.into());
            }
        }
        // Paddle's `h1=` elements, Mailgun's signature in the body and SendGrid's ECDSA have
        // no mix-up worth trying.
        Scheme::Paddle | Scheme::Mailgun | Scheme::SendGrid => {}
        Scheme::StandardWebhooks => {
            let entries: Vec<&str> = value.split(' ').filter(|e| !e.is_empty()).collect();
            for (i, entry) in entries.iter().enumerate() {
                let (prefix, sig) = entry.split_once(',').unwrap_or(("", entry));
                let mut mixups = from_base64_mixups(sig);
                if prefix.is_empty() {
                    mixups.push((sig.to_owned(), "no `v1,` prefix"));
                }
                for (fixed, what) in mixups {
                    let mut new = entries.clone();
                    let entry = format!("v1,{fixed}");
                    new[i] = &entry;
                    add(new.join(" "), what.into());
                }
            }
        }
    }
    rewritten
        .into_iter()
        .filter_map(|(new, what)| {
            let mut headers = headers.clone();
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(&new).ok()?,
            );
            Some((headers, format!("`{name}` carries {what}")))
        })
        .collect()
}

fn signature_encoding(case: &Case<'_>, trials: &[Trial<'_>]) -> Option<Finding> {
    reencodings(case.scheme, case.headers)
        .into_iter()
        .find_map(|(headers, what)| {
            let secret = first_match(case.scheme, case.url, trials, &headers, case.body, case.now)?;
            Some(finding(
                code::SIGNATURE_ENCODING,
                Level::Error,
                format!("{what}; decoded, the signature matches key {}", secret.id),
                format!(
                    "the code that writes the header must encode the MAC as {} senders do: {}",
                    case.scheme.as_str(),
                    expected_format(case.scheme)
                ),
            ))
        })
}

// (c) ------------------------------------------------------------------------------------

/// The signed timestamp, for the schemes that sign one.
fn signed_timestamp(scheme: Scheme, headers: &HeaderMap) -> Option<i64> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let text = match scheme {
        Scheme::StandardWebhooks => get("webhook-timestamp").or_else(|| get("svix-timestamp"))?,
        Scheme::Slack => get("x-slack-request-timestamp")?,
        Scheme::Stripe => get("stripe-signature")?
            .split(',')
            .find_map(|element| element.trim().strip_prefix("t="))?,
        Scheme::Zoom => get("x-zm-request-timestamp")?,
        Scheme::SendGrid => get("x-twilio-email-event-webhook-timestamp")?,
        Scheme::Paddle => get("paddle-signature")?
            .split(';')
            .find_map(|element| element.trim().strip_prefix("ts="))?,
        // Linear's and Mailgun's timestamps are in the body; the others sign none.
        Scheme::Generic
        | Scheme::GitHub
        | Scheme::Shopify
        | Scheme::Twilio
        | Scheme::Square
        | Scheme::Linear
        | Scheme::Mailgun => return None,
    };
    text.trim().parse().ok()
}

/// `7m12s`, `5m`, `1h`.
pub fn human_secs(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (value, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if value > 0 {
            let _ = write!(out, "{value}{unit}");
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

fn stale(case: &Case<'_>, signature_valid: Option<&Secret>) -> Finding {
    let age = signed_timestamp(case.scheme, case.headers).map(|ts| case.now - ts);
    let tolerance = human_secs(case.tolerance.as_secs());
    let when = match age {
        Some(age) if age >= 0 => format!("{} old", human_secs(age.unsigned_abs())),
        Some(age) => format!("{} in the future", human_secs(age.unsigned_abs())),
        None => "unreadable".to_owned(),
    };
    match signature_valid {
        Some(secret) => finding(
            code::STALE_TIMESTAMP,
            Level::Error,
            format!(
                "signature VALID (key {}), but the signed timestamp is {when}, outside the tolerance of {tolerance}",
                secret.id
            ),
            "a replayed capture or a request verified late (after a queue) is refused by design: send a fresh delivery; if the clock is off, fix NTP on the sender or the node; --now sets the clock this check uses",
        ),
        None => finding(
            code::STALE_TIMESTAMP,
            Level::Warning,
            format!(
                "the signed timestamp is {when}, outside the tolerance of {tolerance}; the signature does not match either"
            ),
            "fix the signature first (below); then send a fresh delivery: one outside the tolerance is refused anyway",
        ),
    }
}

// (d) ------------------------------------------------------------------------------------

fn describe_bytes(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

/// Keys the secret could have been meant as, each with its finding's code and text.
fn secret_readings(
    scheme: Scheme,
    secret: &Secret,
) -> Vec<(Vec<u8>, &'static str, String, String)> {
    let material = strip_one_newline(&secret.bytes);
    let mut out = Vec::new();
    // Whitespace beyond the one trailing newline the sidecar strips.
    let trimmed = material.trim_ascii();
    if trimmed != material && !trimmed.is_empty() {
        let start = material.len() - material.trim_ascii_start().len();
        let leading = &material[..start];
        let trailing = &secret.bytes[start + trimmed.len()..];
        let mut parts = Vec::new();
        if !leading.is_empty() {
            parts.push(format!("leading {}", describe_bytes(leading)));
        }
        if !trailing.is_empty() {
            parts.push(format!("trailing {}", describe_bytes(trailing)));
        }
        out.push((
            trimmed.to_vec(),
            code::SECRET_WHITESPACE,
            format!(
                "the secret {} has whitespace the sender's key does not: {} (the sidecar strips exactly one trailing newline, nothing else)",
                secret.id,
                parts.join(" and ")
            ),
            "write the secret without it: `printf %s \"$SECRET\" > file` or `kubectl create secret generic … --from-literal=…`, not `echo` or an editor that adds lines".to_owned(),
        ));
    }
    let material = trimmed;
    if scheme == Scheme::StandardWebhooks {
        // The sender used the file's text itself as the key.
        let verbatim = format!("whsec_{}", STANDARD.encode(material)).into_bytes();
        let (what, fix) = if material.starts_with(b"whsec_") {
            (
                "this looks like a Stripe secret: Stripe uses the whole `whsec_…` string as the key, Standard Webhooks base64-decodes what follows `whsec_`",
                "if the sender is Stripe, set the endpoint's scheme to Stripe (check with --scheme stripe); a Standard Webhooks sender's secret must verify decoded",
            )
        } else {
            (
                "the file seems to hold the raw key bytes; a Standard Webhooks secret is `whsec_` followed by base64 of them",
                "store the secret as the sender shows it (`whsec_…`), not decoded",
            )
        };
        out.push((
            verbatim,
            code::SECRET_VERBATIM,
            format!(
                "the signature matches the secret {} used verbatim as the key, not base64-decoded: {what}",
                secret.id
            ),
            fix.to_owned(),
        ));
    } else if let Some(encoded) = material.strip_prefix(b"whsec_")
        && let Ok(decoded) = STANDARD.decode(encoded)
    {
        out.push((
            decoded,
            code::SECRET_DECODED,
            format!(
                "the signature matches the secret {} base64-decoded after `whsec_`, as Standard Webhooks (Svix) senders sign; {} uses the secret verbatim",
                secret.id,
                scheme.as_str()
            ),
            "the sender is a Standard Webhooks sender: check with --scheme standard-webhooks and set the endpoint's scheme to StandardWebhooks".to_owned(),
        ));
    }
    // A Kubernetes Secret encoded twice: the file holds base64 of the real secret.
    if let Ok(decoded) = STANDARD.decode(material)
        && let Ok(text) = std::str::from_utf8(&decoded)
        && !text.trim().is_empty()
        && !text.trim_end().chars().any(char::is_control)
    {
        out.push((
            decoded.clone(),
            code::SECRET_DOUBLE_BASE64,
            format!(
                "the secret {} is base64 of the real secret: decoded once, it matches",
                secret.id
            ),
            "the Kubernetes Secret was encoded twice: put the secret itself under `stringData`, or base64 it once under `data` (`kubectl create secret generic … --from-literal=…` does it right)".to_owned(),
        ));
    }
    out
}

fn secret_form(case: &Case<'_>, findings: &mut Vec<Finding>) -> Option<Finding> {
    if case.scheme == Scheme::Stripe {
        for secret in case.secrets {
            let material = strip_one_newline(&secret.bytes).trim_ascii();
            if let Some(prefix) = [b"sk_".as_slice(), b"pk_", b"rk_"]
                .into_iter()
                .find(|p| material.starts_with(p))
            {
                findings.push(finding(
                    code::API_KEY,
                    Level::Error,
                    format!(
                        "the secret {} starts with `{}`: a Stripe API key, not a webhook signing secret",
                        secret.id,
                        String::from_utf8_lossy(prefix)
                    ),
                    "use the endpoint's signing secret (`whsec_…`, Dashboard → Developers → Webhooks → the endpoint → Signing secret); `stripe listen` prints a different one",
                ));
            }
        }
    }
    for secret in case.secrets {
        for (key, code, text, fix) in secret_readings(case.scheme, secret) {
            // Non-StandardWebhooks keys are verbatim; StandardWebhooks readings are already
            // written as `whsec_` + base64 of the key.
            let Ok(key) = SigningKey::new(case.scheme, secret.id.clone(), &key) else {
                continue;
            };
            let trial = [Trial { secret, key }];
            if first_match(
                case.scheme,
                case.url,
                &trial,
                case.headers,
                case.body,
                case.now,
            )
            .is_some()
            {
                return Some(finding(code, Level::Error, text, fix));
            }
        }
    }
    None
}

// (e) ------------------------------------------------------------------------------------

fn line_variants(body: &[u8]) -> Vec<Variant> {
    let mut out = Vec::new();
    let mut push = |name: &str, candidate: Vec<u8>| {
        if candidate != body {
            out.push(Variant {
                name: name.to_owned(),
                body: candidate,
            });
        }
    };
    push(
        "the sender's body ended with a newline that was removed",
        [body, b"\n"].concat(),
    );
    push(
        "the sender's body ended with CRLF that was removed",
        [body, b"\r\n"].concat(),
    );
    if let Some(stripped) = body.strip_suffix(b"\r\n") {
        push("a trailing CRLF was added to the body", stripped.to_vec());
    }
    if let Some(stripped) = body.strip_suffix(b"\n") {
        push(
            "a trailing newline was added to the body",
            stripped.to_vec(),
        );
    }
    push(
        "trailing whitespace was added to the body",
        body.trim_ascii_end().to_vec(),
    );
    out
}

fn line_ending_variants(body: &[u8]) -> Vec<Variant> {
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    if text.contains("\r\n") {
        out.push(Variant {
            name: "the sender's LF line endings were changed to CRLF".into(),
            body: text.replace("\r\n", "\n").into_bytes(),
        });
    } else if text.contains('\n') {
        out.push(Variant {
            name: "the sender's CRLF line endings were changed to LF".into(),
            body: text.replace('\n', "\r\n").into_bytes(),
        });
    }
    out
}

fn base64_variants(body: &[u8]) -> Vec<Variant> {
    match STANDARD.decode(body.trim_ascii()) {
        Ok(decoded) if !decoded.is_empty() => vec![Variant {
            name: "the body arrived base64-encoded".into(),
            body: decoded,
        }],
        _ => Vec::new(),
    }
}

fn charset_variants(body: &[u8]) -> Vec<Variant> {
    let mut out = Vec::new();
    if body.is_ascii() {
        return out;
    }
    // Received as UTF-8 (or double-encoded UTF-8) of what the sender sent as single bytes.
    if let Ok(text) = std::str::from_utf8(body)
        && let Ok(bytes) = text
            .chars()
            .map(|c| u8::try_from(u32::from(c)))
            .collect::<Result<Vec<u8>, _>>()
    {
        out.push(Variant {
            name: "the body was re-encoded to UTF-8 (or its UTF-8 encoded twice); the sender signed the bytes before that".into(),
            body: bytes,
        });
    }
    // Received as Latin-1 of what the sender sent as UTF-8.
    out.push(Variant {
        name: "the sender's UTF-8 body was transcoded to Latin-1 (ISO-8859-1)".into(),
        body: body
            .iter()
            .map(|&b| char::from(b))
            .collect::<String>()
            .into_bytes(),
    });
    out
}

fn body_transform(case: &Case<'_>, trials: &[Trial<'_>]) -> Option<Finding> {
    let raw_fix = "verify, and forward, the raw bytes the sender sent: read the body before any JSON or form middleware (express.raw(), request.get_data()), and remove forwarders that re-encode it (smee, API Gateway mapping templates)";
    let families: [(&'static str, Vec<Variant>, &str); 6] = [
        (
            code::BODY_TRAILING_NEWLINE,
            line_variants(case.body),
            "pass the body through byte for byte: whatever added or removed the trailing bytes (an editor, `echo`, a proxy, a capture tool) must not",
        ),
        (
            code::BODY_LINE_ENDINGS,
            line_ending_variants(case.body),
            "pass the body through byte for byte: check git autocrlf, text-mode file copies and proxies that rewrite line endings",
        ),
        (
            code::BODY_RESERIALIZED,
            json_forms::json_variants(case.body),
            raw_fix,
        ),
        (
            code::BODY_FORM_REENCODED,
            json_forms::form_variants(case.body),
            "verify the raw form body as received; do not decode and re-encode it (a proxy or framework re-encoded it)",
        ),
        (
            code::BODY_CHARSET,
            charset_variants(case.body),
            "hash the raw bytes as received, never a decoded string: something between the sender and the capture changed the body's character encoding",
        ),
        (
            code::BODY_BASE64,
            base64_variants(case.body),
            "decode the body before verifying (API Gateway `isBase64Encoded`, Vercel); the sender signed the decoded bytes",
        ),
    ];
    for (code, variants, fix) in families {
        for variant in variants {
            if let Some(secret) = first_match(
                case.scheme,
                case.url,
                trials,
                case.headers,
                &variant.body,
                case.now,
            ) {
                let text = if code == code::BODY_RESERIALIZED {
                    format!(
                        "the signature matches this body re-serialized as {} (key {}): something parsed the JSON and wrote it again before it was captured",
                        variant.name, secret.id
                    )
                } else {
                    format!(
                        "the signature matches the body with one change: {} (key {})",
                        variant.name, secret.id
                    )
                };
                return Some(finding(code, Level::Error, text, fix));
            }
        }
    }
    None
}

// (f) ------------------------------------------------------------------------------------

fn no_match(case: &Case<'_>) -> Finding {
    let keys = case
        .secrets
        .iter()
        .map(|s| format!("{} ({})", s.id, key_fingerprint(&s.bytes)))
        .collect::<Vec<_>>()
        .join(", ");
    let stripe = if case.scheme == Scheme::Stripe {
        " (the secret `stripe listen` prints is not the dashboard endpoint's)"
    } else {
        ""
    };
    finding(
        code::NO_MATCH,
        Level::Error,
        format!(
            "the signature matches none of the {} keys tried ({keys}), and no known transform of the body or the secret makes it match: the body or the secret differs",
            case.secrets.len()
        ),
        format!(
            "check that the secret is this endpoint's, for this environment{stripe}, and that the body is the exact bytes received (no edits, a complete capture)"
        ),
    )
}

#[cfg(test)]
mod tests;
