//! What the offline commands read: the scheme, secrets (files or environment variables), a
//! body (file, string or stdin), a captured request's headers, durations and the clock.
//! Everything read here is bad input (exit 2) when it cannot be used.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hookguard_api::Scheme;
use hookguard_sidecar::verify::{KeyError, SigningKey};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Why an input cannot be used. Never carries secret material. (The CLI crate has no
/// thiserror; Display and Error are written out below.)
#[derive(Debug)]
pub enum InputError {
    /// A secret file could not be read.
    ReadSecretFile(PathBuf, std::io::Error),
    /// A `--secret-env` variable is unset or not UTF-8.
    SecretEnvMissing(String),
    /// The secret (named) cannot be a key of this scheme.
    BadSecret(String, Scheme, KeyError),
    /// A body or headers file (what, path) could not be read.
    ReadFile(&'static str, PathBuf, std::io::Error),
    /// Both the body and the headers were asked from stdin.
    StdinTwice,
    /// A line (1-based; 0 for a JSON document) of the headers file is not `Name: value`.
    HeaderLine(usize, String),
    /// A `--header` is not `Name: value`.
    HeaderFlag(String),
    /// An input that makes no sense with the other flags.
    Conflict(String),
    /// `sign` and `send` cannot sign this scheme's deliveries.
    NotSignable(hookguard_sidecar::sign::NotSignable),
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ReadSecretFile(path, _) => {
                write!(f, "cannot read the secret file {}", path.display())
            }
            Self::SecretEnvMissing(var) => {
                write!(
                    f,
                    "the environment variable {var} (from --secret-env) is not set"
                )
            }
            Self::BadSecret(id, scheme, _) => {
                write!(f, "the secret {id} cannot be used for {}", scheme.as_str())
            }
            Self::ReadFile(what, path, _) => {
                write!(f, "cannot read {what} from {}", path.display())
            }
            Self::StdinTwice => {
                f.write_str("only one of --body-file and --headers-file can be `-` (stdin)")
            }
            Self::HeaderLine(0, problem) => write!(f, "headers file: {problem}"),
            Self::HeaderLine(line, problem) => write!(f, "headers file line {line}: {problem}"),
            Self::HeaderFlag(text) => write!(
                f,
                "--header {text:?}: expected `Name: value` with a valid header name and value"
            ),
            Self::Conflict(text) => f.write_str(text),
            Self::NotSignable(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for InputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::ReadSecretFile(_, source) | Self::ReadFile(_, _, source) => Some(source),
            Self::BadSecret(_, _, source) => Some(source),
            _ => None,
        }
    }
}

/// Parses `--scheme`: the configuration names (`StandardWebhooks`) or kebab case
/// (`standard-webhooks`), any case.
pub fn parse_scheme(text: &str) -> Result<Scheme, String> {
    let wanted: String = text
        .chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .collect::<String>()
        .to_ascii_lowercase();
    Scheme::ALL
        .into_iter()
        .find(|scheme| scheme.as_str().to_ascii_lowercase() == wanted)
        .ok_or_else(|| format!("unknown scheme {text:?}; one of: {SCHEME_NAMES}"))
}

/// The scheme names as `--scheme` takes them, for help texts.
pub const SCHEME_NAMES: &str = "generic, standard-webhooks, stripe, github, slack, shopify, twilio, zoom, paddle, linear, square, mailgun, sendgrid";

pub use crate::common::parse_duration;

/// Now, in unix seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A random delivery ID shaped like a UUID v4, accepted by every scheme's ID rules.
pub fn random_id() -> String {
    let mut bytes = [0_u8; 16];
    // Without the OS's randomness, fall back to the clock: a test ID needs to differ between
    // runs, not to be unguessable.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// One secret as given: its name (file name or variable name) and its bytes exactly as read.
#[derive(Clone)]
pub struct Secret {
    /// The file's name or the variable's name: what findings and `matchedKey` call it.
    pub id: String,
    /// The bytes as read; the sidecar's rules (one trailing newline stripped, Standard
    /// Webhooks decoding) are applied by whoever uses them.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Reads the secrets, files first, in the order given.
pub fn load_secrets(files: &[PathBuf], envs: &[String]) -> Result<Vec<Secret>, InputError> {
    let mut secrets = Vec::with_capacity(files.len() + envs.len());
    for path in files {
        let bytes = std::fs::read(path)
            .map_err(|source| InputError::ReadSecretFile(path.clone(), source))?;
        secrets.push(Secret {
            id: file_id(path),
            bytes,
        });
    }
    for var in envs {
        let value = std::env::var(var).map_err(|_| InputError::SecretEnvMissing(var.clone()))?;
        secrets.push(Secret {
            id: format!("${var}"),
            bytes: value.into_bytes(),
        });
    }
    Ok(secrets)
}

fn file_id(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

/// The same lenient base64 the sidecar decodes Standard Webhooks secrets with (padding
/// optional, trailing bits allowed).
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The raw HMAC key a sender of `scheme` signs with, from a secret as the sidecar reads it
/// (`SigningKey::new`'s rules: one trailing newline stripped; Standard Webhooks: optional
/// `whsec_`, then base64). The sidecar's own loader checks the secret first, so a secret
/// `sign` accepts is one the sidecar accepts; a unit test pins that both agree.
pub fn sender_key(scheme: Scheme, secret: &Secret) -> Result<Vec<u8>, InputError> {
    SigningKey::new(scheme, secret.id.clone(), &secret.bytes)
        .map_err(|source| InputError::BadSecret(secret.id.clone(), scheme, source))?;
    let bytes = strip_one_newline(&secret.bytes);
    if scheme != Scheme::StandardWebhooks {
        return Ok(bytes.to_vec());
    }
    let encoded = bytes.strip_prefix(b"whsec_").unwrap_or(bytes);
    BASE64_LENIENT
        .decode(encoded)
        .map_err(|_| InputError::BadSecret(secret.id.clone(), scheme, KeyError::NotBase64))
}

/// What the sidecar strips from a secret file: one trailing `\n` or `\r\n`.
pub fn strip_one_newline(secret: &[u8]) -> &[u8] {
    secret
        .strip_suffix(b"\r\n")
        .or_else(|| secret.strip_suffix(b"\n"))
        .unwrap_or(secret)
}

/// Reads a file, or stdin for `-`.
pub fn read_file_or_stdin(what: &'static str, path: &Path) -> Result<Vec<u8>, InputError> {
    let error = |source| InputError::ReadFile(what, path.to_owned(), source);
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).map_err(error)?;
        Ok(bytes)
    } else {
        std::fs::read(path).map_err(error)
    }
}

/// Parses captured request headers: `Name: value` lines as `curl -D`, `curl -v` (`> ` lines)
/// or a proxy log write them, or a JSON object of names to a string (or a list of strings).
/// Status and request lines (`HTTP/1.1 200 OK`, `POST /hook HTTP/1.1`), HTTP/2 pseudo-headers
/// and blank lines are skipped. A name given twice is kept twice, as it arrived.
pub fn parse_headers(text: &[u8]) -> Result<HeaderMap, InputError> {
    let text = String::from_utf8_lossy(text);
    if text.trim_start().starts_with('{') {
        return parse_json_headers(&text);
    }
    let mut headers = HeaderMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let line = line
            .strip_prefix("> ")
            .or_else(|| line.strip_prefix("< "))
            .unwrap_or(line);
        if line.trim().is_empty()
            || line.starts_with(':')
            || line.starts_with('*')
            || line.starts_with("HTTP/")
            || is_request_line(line)
        {
            continue;
        }
        let bad = |problem: &str| InputError::HeaderLine(index + 1, problem.to_owned());
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("expected `Name: value`"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| bad("not a valid header name"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| bad("the value has characters a header cannot carry"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

fn is_request_line(line: &str) -> bool {
    let mut words = line.split(' ');
    let (Some(method), Some(_), Some(version)) = (words.next(), words.next(), words.next()) else {
        return false;
    };
    method.bytes().all(|b| b.is_ascii_uppercase()) && version.starts_with("HTTP/")
}

fn parse_json_headers(text: &str) -> Result<HeaderMap, InputError> {
    let bad = |problem: String| InputError::HeaderLine(0, problem);
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|error| {
            bad(format!(
                "not a JSON object of header names to values: {error}"
            ))
        })?;
    let mut headers = HeaderMap::new();
    for (name, value) in object {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad(format!("{name:?} is not a valid header name")))?;
        let values = match value {
            serde_json::Value::String(one) => vec![one],
            serde_json::Value::Array(many) => many
                .into_iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => Ok(s),
                    _ => Err(bad(format!("{name}: values must be strings"))),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(bad(format!("{name}: a value must be a string or a list"))),
        };
        for value in values {
            let value = HeaderValue::from_str(&value)
                .map_err(|_| bad(format!("{name}: the value is not a valid header value")))?;
            headers.append(header.clone(), value);
        }
    }
    Ok(headers)
}

/// Parses a `--header Name: value` flag.
pub fn parse_header_flag(text: &str) -> Result<(HeaderName, HeaderValue), InputError> {
    let bad = || InputError::HeaderFlag(text.to_owned());
    let (name, value) = text.split_once(':').ok_or_else(bad)?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
    let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
    Ok((name, value))
}

/// Single-quotes `text` for a POSIX shell.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    #[test]
    fn scheme_names_are_taken_in_any_case_and_in_kebab_case() {
        assert_eq!(
            parse_scheme("standard-webhooks"),
            Ok(Scheme::StandardWebhooks)
        );
        assert_eq!(
            parse_scheme("StandardWebhooks"),
            Ok(Scheme::StandardWebhooks)
        );
        assert_eq!(parse_scheme("GITHUB"), Ok(Scheme::GitHub));
        assert!(parse_scheme("svix2").unwrap_err().contains("stripe"));
        for name in SCHEME_NAMES.split(", ") {
            assert!(parse_scheme(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn curl_and_proxy_header_dumps_parse() {
        let dump = b"POST /hook HTTP/1.1\r\nHost: x\r\n> Stripe-Signature: t=1, v1=ab\r\n:authority: x\r\n\r\nX-A: 1\nx-a: 2\n";
        let headers = parse_headers(dump).unwrap();
        assert_eq!(headers["stripe-signature"], "t=1, v1=ab");
        assert_eq!(headers.get_all("x-a").iter().count(), 2);
        assert_eq!(headers.len(), 4);
        let json = br#"{"Webhook-Id": "m1", "x-b": ["1", "2"]}"#;
        let headers = parse_headers(json).unwrap();
        assert_eq!(headers["webhook-id"], "m1");
        assert_eq!(headers.get_all("x-b").iter().count(), 2);
        assert!(matches!(
            parse_headers(b"no colon here"),
            Err(InputError::HeaderLine(1, _))
        ));
    }

    /// `sign`'s key derivation and the sidecar's `SigningKey` agree: what `sign` signs with a
    /// secret, the sidecar verifies with the same secret file.
    #[test]
    fn sender_keys_are_what_the_sidecar_verifies_with() {
        use hookguard_sidecar::sign::{Delivery, headers};
        use hookguard_sidecar::verify::{GenericHeaders, Verifier, VerifierSettings};
        let raw = b"0123456789abcdef0123456789abcdef";
        for scheme in Scheme::ALL {
            if hookguard_sidecar::sign::signable(scheme).is_err() {
                continue;
            }
            let text = if scheme == Scheme::StandardWebhooks {
                format!("whsec_{}\n", STANDARD.encode(raw))
            } else {
                "s3cr3t\n".to_owned()
            };
            let secret = Secret {
                id: "k1".into(),
                bytes: text.clone().into_bytes(),
            };
            let key = sender_key(scheme, &secret).unwrap();
            let delivery = Delivery {
                id: "m1",
                timestamp: 1000,
                event_type: "t",
                body: br#"{"webhookTimestamp":1000000}"#,
            };
            let mut map = HeaderMap::new();
            for (name, value) in headers(scheme, &key, &delivery).unwrap() {
                map.insert(name, HeaderValue::from_str(&value).unwrap());
            }
            let verifier = Verifier::new(VerifierSettings {
                scheme,
                generic: GenericHeaders::default(),
                key_source: None,
                keys: vec![SigningKey::new(scheme, "k1", text.as_bytes()).unwrap()],
                tolerance: std::time::Duration::from_secs(300),
                public_url: None,
            });
            let body = br#"{"webhookTimestamp":1000000}"#;
            assert_eq!(verifier.verify(&map, body, 1000), Ok(()), "{scheme:?}");
        }
    }
}
