//! Runs every signature vector through `hookguard_sidecar::verify`: a new vector needs a JSON
//! entry, no code. (`tests/tests/vectors_sidecar.rs` sends the same vectors through the real
//! sidecar binary.)
//!
//! Two directories: the shared vectors, `$HOOKGUARD_VECTORS_DIR`, else `../shared/vectors`
//! beside the repository; and the repository's own `vectors/` (the senders added later, made
//! by `vectors/make/make.sh`). All failures are collected and reported together, so one run
//! shows every disagreement.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hookguard_api::EndpointConfig;
use hookguard_sidecar::verify::{
    Delivery, GenericHeaders, PublicUrl, Scheme, SigningKey, Verifier, VerifierSettings,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::Value;

/// Tolerance when a vector has none (its scheme signs no timestamp, so any value works).
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

fn vectors_dir() -> PathBuf {
    std::env::var_os("HOOKGUARD_VECTORS_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors")),
        PathBuf::from,
    )
}

fn repo_vectors_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../vectors"))
}

fn scheme_of(name: &str) -> Option<Scheme> {
    Some(match name {
        "generic-hex" => Scheme::Generic,
        "standard-webhooks" => Scheme::StandardWebhooks,
        "stripe" => Scheme::Stripe,
        "github" => Scheme::GitHub,
        "slack" => Scheme::Slack,
        "shopify" => Scheme::Shopify,
        "twilio" => Scheme::Twilio,
        "zoom" => Scheme::Zoom,
        "paddle" => Scheme::Paddle,
        "linear" => Scheme::Linear,
        "square" => Scheme::Square,
        "mailgun" => Scheme::Mailgun,
        "sendgrid" => Scheme::SendGrid,
        _ => return None,
    })
}

/// The keys the vector's receiver holds: `secret` (or `public_key`), then `other_keys`.
fn keys_of(scheme: Scheme, vector: &Value) -> Result<Vec<SigningKey>, String> {
    let first = vector["secret"]
        .as_str()
        .or_else(|| vector["public_key"].as_str())
        .ok_or("the vector has neither secret nor public_key")?;
    let others = vector["other_keys"].as_array().into_iter().flatten();
    std::iter::once(first)
        .chain(others.filter_map(Value::as_str))
        .enumerate()
        .map(|(i, key)| {
            SigningKey::new(scheme, format!("k{}", i + 1), key.as_bytes())
                .map_err(|e| format!("key {} refused: {e}", i + 1))
        })
        .collect()
}

/// The vector's `url` split as the sidecar is configured: `publicUrl` and the query.
fn url_of(vector: &Value) -> Result<(Option<PublicUrl>, Option<String>), String> {
    let Some(url) = vector["url"].as_str() else {
        return Ok((None, None));
    };
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query.to_owned())),
        None => (url, None),
    };
    let config: EndpointConfig = serde_json::from_value(serde_json::json!({
        "name": "v", "endpointId": "v", "path": "/v", "scheme": "Twilio",
        "upstream": {"port": 8080}, "secretDir": "/s", "publicUrl": base,
    }))
    .map_err(|e| e.to_string())?;
    let checked = hookguard_api::validation::check(&config).map_err(|e| e.to_string())?;
    Ok((checked.public_url, query))
}

#[derive(Default)]
struct Counts {
    valid: usize,
    invalid: usize,
    failed: usize,
}

/// What one vector produced: its delivery ID when it verified.
type IdOutcome = Option<Result<String, String>>;

fn headers_of(vector: &Value) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    let object = vector["headers"]
        .as_object()
        .ok_or("`headers` is not an object")?;
    for (name, value) in object {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("{name}: {e}"))?;
        let value = value.as_str().ok_or("header value is not a string")?;
        let value = HeaderValue::from_str(value).map_err(|e| format!("{name}: {e}"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Runs one vector; returns what differed (empty when it passed) and the delivery-ID outcome.
fn run_vector(scheme: Scheme, vector: &Value) -> (Vec<String>, IdOutcome) {
    let mut problems = Vec::new();
    let keys = match keys_of(scheme, vector) {
        Ok(keys) => keys,
        Err(e) => return (vec![e], None),
    };
    let (public_url, query) = match url_of(vector) {
        Ok(url) => url,
        Err(e) => return (vec![format!("bad url in the vector: {e}")], None),
    };
    let headers = match headers_of(vector) {
        Ok(headers) => headers,
        Err(e) => return (vec![format!("bad headers in the vector: {e}")], None),
    };
    let body = match STANDARD.decode(vector["body_b64"].as_str().unwrap_or_default()) {
        Ok(body) => body,
        Err(e) => return (vec![format!("bad body_b64: {e}")], None),
    };
    let tolerance = vector["tolerance_s"]
        .as_u64()
        .map_or(DEFAULT_TOLERANCE, Duration::from_secs);
    let now = vector["now_unix"].as_i64().unwrap_or_default();
    let verifier = Verifier::new(VerifierSettings {
        scheme,
        generic: GenericHeaders::default(),
        key_source: None,
        keys,
        tolerance,
        public_url,
    });

    let mut result = verifier.verify_request(query.as_deref(), &headers, &body, now);
    // An invalid vector may be refused for its delivery ID (400), after the signature passed.
    if vector["expect"] == "invalid" && result.is_ok() {
        let delivery = Delivery::new(&headers, &body);
        if verifier.self_answer(&delivery).is_none() {
            result = verifier.delivery_id(&delivery).map(|_| ());
        }
    }
    let expect = vector["expect"].as_str().unwrap_or_default();
    let category = vector["category"].as_str().unwrap_or_default();
    match (expect, result) {
        ("valid", Ok(())) => {
            let delivery = Delivery::new(&headers, &body);
            let id = verifier
                .delivery_id(&delivery)
                .map(std::borrow::Cow::into_owned)
                .map_err(|e| e.to_string());
            // A request the sidecar answers itself (Zoom's challenge) has no delivery ID.
            let self_answer = verifier.self_answer(&delivery);
            match (&vector["expect_response"], &self_answer) {
                (Value::Null, None) => {}
                (Value::Null, Some(_)) => problems.push("answered by the sidecar".into()),
                (want, got) => {
                    let got: Option<Value> =
                        got.as_ref().and_then(|b| serde_json::from_slice(b).ok());
                    if got.as_ref() != Some(want) {
                        problems.push(format!("self answer: want {want}, got {got:?}"));
                    }
                }
            }
            match (&vector["dedup_key"], &id) {
                (Value::String(want), Ok(got)) if want == got => {}
                (Value::Null, _) if self_answer.is_some() => {}
                (Value::Null, Err(_)) => {}
                (want, got) => {
                    problems.push(format!("delivery_id: want {want}, got {got:?}"));
                }
            }
            if let Some(want) = vector.get("event_type") {
                let got = verifier
                    .event_type(&delivery)
                    .map(std::borrow::Cow::into_owned);
                if want.as_str() != got.as_deref() {
                    problems.push(format!("event_type: want {want}, got {got:?}"));
                }
            }
            return (problems, Some(id));
        }
        ("valid", Err(e)) => problems.push(format!("expected valid, got {e} ({})", e.status())),
        ("invalid", Ok(())) => problems.push(format!("expected invalid ({category}), got Ok")),
        ("invalid", Err(e)) => {
            let status = e.status();
            let ok = match category {
                _ if vector["expect_status"].is_u64() => {
                    vector["expect_status"].as_u64() == Some(u64::from(status.as_u16()))
                }
                "header" => status == StatusCode::BAD_REQUEST,
                "signature" | "timestamp" | "body" => status == StatusCode::UNAUTHORIZED,
                "strictness" => {
                    status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED
                }
                _ => status.is_client_error(),
            };
            if !ok {
                problems.push(format!("category {category}: got {e} ({status})"));
            }
        }
        (other, _) => problems.push(format!("unknown expect {other:?}")),
    }
    (problems, None)
}

#[test]
fn every_vector_agrees_with_the_verifier() {
    let dir = vectors_dir();
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in [vectors_dir(), repo_vectors_dir()] {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot read the signature vectors at {}: {e}; set HOOKGUARD_VECTORS_DIR to the \
                 shared vectors directory",
                dir.display()
            )
        });
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        found.sort();
        files.extend(found);
    }

    let mut failures: Vec<String> = Vec::new();
    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    let mut found: Vec<Scheme> = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let file: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let name = file["scheme"].as_str().unwrap_or_default().to_owned();
        let Some(scheme) = scheme_of(&name) else {
            failures.push(format!("{}: unknown scheme {name:?}", path.display()));
            continue;
        };
        found.push(scheme);
        let count = counts.entry(name.clone()).or_default();

        let mut ids: HashMap<String, IdOutcome> = HashMap::new();
        for vector in file["vectors"].as_array().into_iter().flatten() {
            let id = vector["id"].as_str().unwrap_or("<no id>").to_owned();
            let (problems, delivery_id) = run_vector(scheme, vector);
            if vector["expect"] == "valid" {
                count.valid += 1;
            } else {
                count.invalid += 1;
            }
            if !problems.is_empty() {
                count.failed += 1;
            }
            failures.extend(problems.into_iter().map(|p| format!("{id}: {p}")));
            ids.insert(id, delivery_id);
        }

        // The store's behaviour is the sidecar's (`vectors_sidecar.rs` runs the sequences);
        // here, a `duplicate` step must present a key an earlier step did, a `forward` step
        // one no earlier step did.
        for sequence in file["dedup_sequences"].as_array().into_iter().flatten() {
            let description = sequence["description"].as_str().unwrap_or_default();
            let mut seen: Vec<String> = Vec::new();
            for step in sequence["steps"].as_array().into_iter().flatten() {
                let vector = step["vector"].as_str().unwrap_or_default();
                let Some(Some(Ok(key))) = ids.get(vector) else {
                    failures.push(format!(
                        "{name} dedup sequence {description:?}: {vector} has no delivery ID"
                    ));
                    continue;
                };
                let duplicate = seen.contains(key);
                let want_duplicate = step["expect_action"] == "duplicate";
                if duplicate != want_duplicate {
                    failures.push(format!(
                        "{name} dedup sequence {description:?}: {vector} (key {key}) would be {}",
                        if duplicate {
                            "a duplicate"
                        } else {
                            "forwarded"
                        }
                    ));
                }
                seen.push(key.clone());
            }
        }
    }

    for (name, count) in &counts {
        println!(
            "{name}: {} vectors ({} valid, {} invalid), {} failed",
            count.valid + count.invalid,
            count.valid,
            count.invalid,
            count.failed
        );
    }
    let missing: Vec<_> = Scheme::ALL
        .iter()
        .filter(|scheme| !found.contains(scheme))
        .collect();
    assert!(
        missing.is_empty(),
        "no vector file in {} for {missing:?}",
        dir.display()
    );
    assert!(
        failures.is_empty(),
        "{} vector failure(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
