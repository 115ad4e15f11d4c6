//! Runs every signature vector in the shared `vectors/` directory through
//! `hookguard_sidecar::verify`: a new vector needs a JSON entry, no code.
//!
//! The directory is `$HOOKGUARD_VECTORS_DIR`, else `../shared/vectors` beside the repository.
//! All failures are collected and reported together, so one run shows every disagreement.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hookguard_sidecar::verify::{
    Delivery, GenericHeaders, Scheme, SigningKey, Verifier, VerifierSettings,
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

fn scheme_of(name: &str) -> Option<Scheme> {
    Some(match name {
        "generic-hex" => Scheme::Generic,
        "standard-webhooks" => Scheme::StandardWebhooks,
        "stripe" => Scheme::Stripe,
        "github" => Scheme::GitHub,
        "slack" => Scheme::Slack,
        "shopify" => Scheme::Shopify,
        _ => return None,
    })
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
    let secret = vector["secret"].as_str().unwrap_or_default();
    let key = match SigningKey::new(scheme, "vector", secret.as_bytes()) {
        Ok(key) => key,
        Err(e) => return (vec![format!("key refused: {e}")], None),
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
        keys: vec![key],
        tolerance,
    });

    let result = verifier.verify(&headers, &body, now);
    let expect = vector["expect"].as_str().unwrap_or_default();
    let category = vector["category"].as_str().unwrap_or_default();
    match (expect, result) {
        ("valid", Ok(())) => {
            let delivery = Delivery::new(&headers, &body);
            let id = verifier
                .delivery_id(&delivery)
                .map(std::borrow::Cow::into_owned)
                .map_err(|e| e.to_string());
            match (&vector["dedup_key"], &id) {
                (Value::String(want), Ok(got)) if want == got => {}
                (Value::Null, Err(_)) => {}
                (want, got) => {
                    problems.push(format!("delivery_id: want {want}, got {got:?}"));
                }
            }
            return (problems, Some(id));
        }
        ("valid", Err(e)) => problems.push(format!("expected valid, got {e} ({})", e.status())),
        ("invalid", Ok(())) => problems.push(format!("expected invalid ({category}), got Ok")),
        ("invalid", Err(e)) => {
            let status = e.status();
            let ok = match category {
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
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "cannot read the signature vectors at {}: {e}; set HOOKGUARD_VECTORS_DIR to the \
             shared vectors directory",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();

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

        // The dedup helper owns what happens to a sequence; here, every step must present
        // the same key to the store.
        for sequence in file["dedup_sequences"].as_array().into_iter().flatten() {
            let description = sequence["description"].as_str().unwrap_or_default();
            let keys: Vec<_> = sequence["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|step| {
                    let vector = step["vector"].as_str().unwrap_or_default();
                    (vector, ids.get(vector).cloned().flatten())
                })
                .collect();
            let first = keys.first().and_then(|(_, id)| id.clone());
            if !matches!(first, Some(Ok(_))) || keys.iter().any(|(_, id)| *id != first) {
                failures.push(format!(
                    "{name} dedup sequence {description:?}: delivery IDs differ: {keys:?}"
                ));
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
