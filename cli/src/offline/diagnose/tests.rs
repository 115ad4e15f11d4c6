//! One test per finding, built from the senders' vectors in `../shared/vectors/` where one
//! fits, else signed with `hookguard_sidecar::sign`.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hookguard_api::Scheme;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::{Level, Report, code, diagnose};
use crate::offline::diagnose::Case;
use crate::offline::input::Secret;

const NOW: i64 = 1_764_000_000;
const TOLERANCE: std::time::Duration = std::time::Duration::from_secs(300);

fn vectors_dir() -> PathBuf {
    std::env::var_os("HOOKGUARD_VECTORS_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors")),
        PathBuf::from,
    )
}

fn scheme_of(name: &str) -> Scheme {
    match name {
        "generic-hex" => Scheme::Generic,
        "standard-webhooks" => Scheme::StandardWebhooks,
        "stripe" => Scheme::Stripe,
        "github" => Scheme::GitHub,
        "slack" => Scheme::Slack,
        "shopify" => Scheme::Shopify,
        other => panic!("unknown scheme {other}"),
    }
}

/// One vector, as a verify input.
#[derive(Debug, Clone)]
struct Vector {
    scheme: Scheme,
    secret: String,
    headers: HeaderMap,
    body: Vec<u8>,
    now: i64,
    expect_valid: bool,
}

fn all_vectors() -> Vec<(String, Vector)> {
    let mut out = Vec::new();
    for file in [
        "generic-hex",
        "standard-webhooks",
        "stripe",
        "github",
        "slack",
        "shopify",
    ] {
        let path = vectors_dir().join(format!("{file}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let doc: Value = serde_json::from_str(&text).unwrap();
        for v in doc["vectors"].as_array().unwrap() {
            let mut headers = HeaderMap::new();
            for (name, value) in v["headers"].as_object().unwrap() {
                headers.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value.as_str().unwrap()).unwrap(),
                );
            }
            out.push((
                v["id"].as_str().unwrap().to_owned(),
                Vector {
                    scheme: scheme_of(v["scheme"].as_str().unwrap()),
                    secret: v["secret"].as_str().unwrap().to_owned(),
                    headers,
                    body: STANDARD.decode(v["body_b64"].as_str().unwrap()).unwrap(),
                    now: v["now_unix"].as_i64().unwrap(),
                    expect_valid: v["expect"] == "valid",
                },
            ));
        }
    }
    out
}

fn vector(id: &str) -> Vector {
    all_vectors()
        .into_iter()
        .find(|(vid, _)| vid == id)
        .unwrap_or_else(|| panic!("no vector {id}"))
        .1
}

fn secrets(texts: &[&[u8]]) -> Vec<Secret> {
    texts
        .iter()
        .enumerate()
        .map(|(i, bytes)| Secret {
            id: format!("k{}", i + 1),
            bytes: bytes.to_vec(),
        })
        .collect()
}

fn check(scheme: Scheme, keys: &[&[u8]], headers: &HeaderMap, body: &[u8], now: i64) -> Report {
    let secrets = secrets(keys);
    let report = diagnose(&Case {
        scheme,
        secrets: &secrets,
        headers,
        body,
        now,
        tolerance: TOLERANCE,
        url: None,
    });
    // Whatever the finding, no secret is ever printed.
    let json = serde_json::to_string(&report).unwrap();
    for secret in keys {
        let text = String::from_utf8_lossy(secret);
        let text = text.trim();
        if text.len() >= 8 {
            assert!(!json.contains(text), "the report prints a secret: {json}");
        }
    }
    report
}

fn check_vector(v: &Vector, scheme: Scheme, keys: &[&[u8]]) -> Report {
    check(scheme, keys, &v.headers, &v.body, v.now)
}

/// The first error-level finding's code: the cause the diagnosis names.
fn cause(report: &Report) -> &'static str {
    assert!(!report.valid, "expected INVALID: {report:#?}");
    report
        .findings
        .iter()
        .find(|f| f.level == Level::Error)
        .unwrap_or_else(|| panic!("no cause found: {report:#?}"))
        .code
}

fn text_of(report: &Report, code: &str) -> String {
    report
        .findings
        .iter()
        .find(|f| f.code == code)
        .unwrap_or_else(|| panic!("no {code}: {report:#?}"))
        .text
        .clone()
}

/// Signs `body` as a sender of `scheme` with the raw HMAC `key`.
fn signed(scheme: Scheme, key: &[u8], body: &[u8], timestamp: i64) -> HeaderMap {
    let delivery = hookguard_sidecar::sign::Delivery {
        id: "msg_2Lb6iHt3UHmeBhFQ",
        timestamp,
        event_type: "orders/create",
        body,
    };
    let mut map = HeaderMap::new();
    for (name, value) in hookguard_sidecar::sign::headers(scheme, key, &delivery).unwrap() {
        map.insert(name, HeaderValue::from_str(&value).unwrap());
    }
    map
}

#[test]
fn every_vector_gets_the_verdict_the_senders_libraries_give() {
    let vectors = all_vectors();
    assert!(vectors.len() > 80, "{} vectors", vectors.len());
    for (id, v) in vectors {
        let report = check_vector(&v, v.scheme, &[v.secret.as_bytes()]);
        assert_eq!(report.valid, v.expect_valid, "{id}: {report:#?}");
        if report.valid {
            assert_eq!(report.matched_key.as_deref(), Some("k1"), "{id}");
        } else {
            // An invalid request always gets a cause, at worst "matches nothing".
            cause(&report);
        }
    }
}

#[test]
fn hg_v001_headers_of_another_scheme() {
    let v = vector("stripe/valid-basic");
    let report = check_vector(&v, Scheme::StandardWebhooks, &[v.secret.as_bytes()]);
    assert_eq!(cause(&report), code::OTHER_SCHEME);
    let text = text_of(&report, code::OTHER_SCHEME);
    assert!(text.contains("Stripe headers (stripe-signature)"), "{text}");
    assert!(text.contains("verifies as Stripe with key k1"), "{text}");
}

#[test]
fn hg_v002_a_missing_header_lists_present_and_expected() {
    let v = vector("slack/invalid-missing-timestamp");
    let report = check_vector(&v, Scheme::Slack, &[v.secret.as_bytes()]);
    assert_eq!(cause(&report), code::MISSING_HEADER);
    let text = text_of(&report, code::MISSING_HEADER);
    assert!(
        text.contains("`x-slack-request-timestamp` is missing; present: x-slack-signature"),
        "{text}"
    );
}

#[test]
fn hg_v003_svix_headers_are_reported_as_accepted_aliases() {
    let v = vector("standard-webhooks/valid-svix-branded-headers");
    let report = check_vector(&v, Scheme::StandardWebhooks, &[v.secret.as_bytes()]);
    assert!(report.valid, "{report:#?}");
    assert_eq!(report.codes(), [code::SVIX_ALIASES]);
    let text = text_of(&report, code::SVIX_ALIASES);
    assert!(
        text.contains("svix-id, svix-timestamp, svix-signature"),
        "{text}"
    );
    assert!(
        text.contains("accepts the svix-* names as aliases"),
        "{text}"
    );

    // Missing one of them: present vs expected, and the aliases named.
    let mut headers = v.headers.clone();
    headers.remove("svix-timestamp");
    let report = check(
        Scheme::StandardWebhooks,
        &[v.secret.as_bytes()],
        &headers,
        &v.body,
        v.now,
    );
    assert_eq!(cause(&report), code::MISSING_HEADER);
    let text = text_of(&report, code::MISSING_HEADER);
    assert!(text.contains("present: svix-id, svix-signature"), "{text}");
    assert!(text.contains("accepted as aliases"), "{text}");
}

#[test]
fn hg_v004_signature_encoding_mixups() {
    for (id, what) in [
        (
            "shopify/invalid-hex-encoding",
            "hex where base64 is expected",
        ),
        ("stripe/invalid-uppercase-hex", "upper-case hex"),
        ("slack/invalid-uppercase-hex", "upper-case hex"),
        ("github/invalid-uppercase-hex", "upper-case hex"),
        ("generic-hex/invalid-uppercase-hex", "upper-case hex"),
        ("generic-hex/invalid-prefixed", "a `sha256=` prefix"),
        ("github/invalid-no-prefix", "no `sha256=` prefix"),
    ] {
        let v = vector(id);
        let report = check_vector(&v, v.scheme, &[v.secret.as_bytes()]);
        assert_eq!(
            cause(&report),
            code::SIGNATURE_ENCODING,
            "{id}: {report:#?}"
        );
        let text = text_of(&report, code::SIGNATURE_ENCODING);
        assert!(text.contains(what), "{id}: {text}");
    }
    // A hex MAC in a Standard Webhooks `v1,` entry.
    let v = vector("standard-webhooks/valid-basic");
    let sig = v.headers["webhook-signature"].to_str().unwrap();
    let mac = STANDARD.decode(sig.strip_prefix("v1,").unwrap()).unwrap();
    let mut headers = v.headers.clone();
    headers.insert(
        "webhook-signature",
        HeaderValue::from_str(&format!("v1,{}", hex::encode(mac))).unwrap(),
    );
    let report = check(
        Scheme::StandardWebhooks,
        &[v.secret.as_bytes()],
        &headers,
        &v.body,
        v.now,
    );
    assert_eq!(cause(&report), code::SIGNATURE_ENCODING);
    assert!(text_of(&report, code::SIGNATURE_ENCODING).contains("hex where base64 is expected"));
}

#[test]
fn hg_v005_a_malformed_header_no_mixup_explains() {
    let v = vector("stripe/invalid-malformed-t");
    let report = check_vector(&v, Scheme::Stripe, &[v.secret.as_bytes()]);
    assert_eq!(cause(&report), code::MALFORMED_HEADER);
    assert!(text_of(&report, code::MALFORMED_HEADER).contains("`t` is not unix seconds"));
}

#[test]
fn hg_v006_which_rotation_key_matched() {
    let v = vector("standard-webhooks/valid-rotation-two-sigs");
    let other = format!("whsec_{}", STANDARD.encode(b"an older key, rotated out"));
    let report = check_vector(
        &v,
        Scheme::StandardWebhooks,
        &[other.as_bytes(), v.secret.as_bytes()],
    );
    assert!(report.valid, "{report:#?}");
    assert_eq!(report.matched_key.as_deref(), Some("k2"));
    assert_eq!(report.codes(), [code::ROTATION_KEY]);
    assert!(text_of(&report, code::ROTATION_KEY).contains("number 2 of the 2 keys"));
}

#[test]
fn hg_v010_a_stripe_api_key_instead_of_the_signing_secret() {
    let v = vector("stripe/valid-basic");
    let report = check_vector(&v, Scheme::Stripe, &[b"sk_test_51Habcdefghijklmnop"]);
    assert_eq!(cause(&report), code::API_KEY);
    assert!(text_of(&report, code::API_KEY).contains("starts with `sk_`"));
    assert!(!report.codes().contains(&code::NO_MATCH), "{report:#?}");
}

#[test]
fn hg_v011_whitespace_the_sidecar_does_not_strip() {
    let v = vector("github/valid-basic");
    for (secret, what) in [
        (format!("{} ", v.secret), r#"trailing " ""#),
        (format!("{}\n\n", v.secret), r#"trailing "\n\n""#),
        (format!(" {}", v.secret), r#"leading " ""#),
        (
            format!("\t{}\r\n\r\n", v.secret),
            r#"leading "\t" and trailing "\r\n\r\n""#,
        ),
    ] {
        let report = check_vector(&v, Scheme::GitHub, &[secret.as_bytes()]);
        assert_eq!(cause(&report), code::SECRET_WHITESPACE, "{secret:?}");
        let text = text_of(&report, code::SECRET_WHITESPACE);
        assert!(text.contains(what), "{text}");
    }
    // One trailing newline is what the sidecar strips itself: valid, no finding.
    let report = check_vector(&v, Scheme::GitHub, &[format!("{}\n", v.secret).as_bytes()]);
    assert!(report.valid && report.findings.is_empty(), "{report:#?}");
    // A Standard Webhooks secret with a trailing space cannot even be decoded.
    let v = vector("standard-webhooks/valid-basic");
    let report = check_vector(
        &v,
        Scheme::StandardWebhooks,
        &[format!("{} \n", v.secret).as_bytes()],
    );
    assert_eq!(cause(&report), code::SECRET_WHITESPACE);
}

#[test]
fn hg_v012_a_verbatim_key_on_a_standard_webhooks_endpoint() {
    // A Stripe secret, used as Stripe uses it, on a StandardWebhooks endpoint.
    let stripe = vector("stripe/valid-basic").secret;
    let body = br#"{"type":"test"}"#;
    let headers = signed(Scheme::StandardWebhooks, stripe.as_bytes(), body, NOW);
    let report = check(
        Scheme::StandardWebhooks,
        &[stripe.as_bytes()],
        &headers,
        body,
        NOW,
    );
    assert_eq!(cause(&report), code::SECRET_VERBATIM);
    assert!(text_of(&report, code::SECRET_VERBATIM).contains("looks like a Stripe secret"));
    // The decoded key bytes written into the file instead of `whsec_…`.
    let raw = b"0123456789abcdefghijklmn";
    let headers = signed(Scheme::StandardWebhooks, raw, body, NOW);
    let report = check(Scheme::StandardWebhooks, &[raw], &headers, body, NOW);
    assert_eq!(cause(&report), code::SECRET_VERBATIM, "{report:#?}");
    assert!(text_of(&report, code::SECRET_VERBATIM).contains("raw key bytes"));
}

#[test]
fn hg_v013_a_standard_webhooks_secret_on_a_verbatim_scheme() {
    let v = vector("standard-webhooks/valid-basic");
    let decoded = STANDARD
        .decode(v.secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let body = br#"{"type":"test"}"#;
    let headers = signed(Scheme::Stripe, &decoded, body, NOW);
    let report = check(Scheme::Stripe, &[v.secret.as_bytes()], &headers, body, NOW);
    assert_eq!(cause(&report), code::SECRET_DECODED);
    assert!(text_of(&report, code::SECRET_DECODED).contains("Standard Webhooks"));
}

#[test]
fn hg_v014_a_secret_base64_encoded_twice() {
    let v = vector("github/valid-basic");
    for once in [v.secret.clone(), format!("{}\n", v.secret)] {
        let twice = STANDARD.encode(once.as_bytes());
        let report = check_vector(&v, Scheme::GitHub, &[twice.as_bytes()]);
        assert_eq!(cause(&report), code::SECRET_DOUBLE_BASE64, "{once:?}");
    }
    let v = vector("standard-webhooks/valid-basic");
    let twice = STANDARD.encode(v.secret.as_bytes());
    let report = check_vector(&v, Scheme::StandardWebhooks, &[twice.as_bytes()]);
    assert_eq!(cause(&report), code::SECRET_DOUBLE_BASE64, "{report:#?}");
}

#[test]
fn hg_v015_a_secret_that_is_no_key_of_the_scheme() {
    let v = vector("standard-webhooks/valid-basic");
    let report = check_vector(&v, Scheme::StandardWebhooks, &[b"whsec_!!!!not-base64!!!!"]);
    assert_eq!(cause(&report), code::SECRET_UNUSABLE);
    assert!(text_of(&report, code::SECRET_UNUSABLE).contains("base64"));
    // Beside a good key: valid, with a warning about the bad one.
    let report = check_vector(
        &v,
        Scheme::StandardWebhooks,
        &[b"whsec_!!!!not-base64!!!!", v.secret.as_bytes()],
    );
    assert!(report.valid, "{report:#?}");
    assert_eq!(report.codes(), [code::ROTATION_KEY, code::SECRET_UNUSABLE]);
    assert_eq!(report.findings[1].level, Level::Warning);
    assert!(text_of(&report, code::ROTATION_KEY).contains("number 2 of the 2 keys"));
}

#[test]
fn hg_v020_a_valid_signature_outside_the_tolerance() {
    for (id, when) in [
        ("stripe/invalid-expired", "5m1s old"),
        ("stripe/invalid-expired-1h", "1h old"),
        ("standard-webhooks/invalid-expired", "5m1s old"),
        ("standard-webhooks/invalid-future", "5m1s in the future"),
        ("slack/invalid-expired", "5m1s old"),
    ] {
        let v = vector(id);
        let report = check_vector(&v, v.scheme, &[v.secret.as_bytes()]);
        assert_eq!(cause(&report), code::STALE_TIMESTAMP, "{id}");
        let text = text_of(&report, code::STALE_TIMESTAMP);
        assert!(text.starts_with("signature VALID (key k1)"), "{id}: {text}");
        assert!(
            text.contains(&format!("{when}, outside the tolerance of 5m")),
            "{id}: {text}"
        );
    }
    // Stale and also wrongly signed: a warning, and the signature's own cause.
    let v = vector("stripe/invalid-expired");
    let other = "whsec_someOtherEndpointsSecret000";
    let report = check_vector(&v, Scheme::Stripe, &[other.as_bytes()]);
    assert_eq!(report.codes(), [code::STALE_TIMESTAMP, code::NO_MATCH]);
    assert_eq!(report.findings[0].level, Level::Warning);
}

#[test]
fn hg_v030_a_re_serialized_json_body() {
    for id in [
        "stripe/invalid-signed-reserialized-json",
        "github/invalid-signed-reserialized-json",
        "shopify/invalid-signed-reserialized-json",
        "slack/invalid-signed-reserialized-json",
        "standard-webhooks/invalid-signed-reserialized-json",
    ] {
        let v = vector(id);
        let report = check_vector(&v, v.scheme, &[v.secret.as_bytes()]);
        assert_eq!(cause(&report), code::BODY_RESERIALIZED, "{id}");
        assert!(
            text_of(&report, code::BODY_RESERIALIZED).contains("re-serialized as compact JSON"),
            "{id}: {report:#?}"
        );
    }
    let key = b"github-secret";
    for (sent, received, what) in [
        (
            "{\n  \"b\": 1,\n  \"a\": [\n    2\n  ]\n}",
            r#"{"b":1,"a":[2]}"#,
            "as 2-space pretty JSON (key",
        ),
        (
            r#"{"a":[2],"b":1}"#,
            r#"{"b":1,"a":[2]}"#,
            "compact JSON, sorted keys",
        ),
        (
            r#"{"url":"https:\/\/example.com\/x"}"#,
            r#"{"url":"https://example.com/x"}"#,
            "`/` escaped as `\\/`",
        ),
        (
            r#"{"name": "Zo\u00eb", "n": 1}"#,
            r#"{"name":"Zoë","n":1}"#,
            "Python json.dumps default",
        ),
    ] {
        let headers = signed(Scheme::GitHub, key, sent.as_bytes(), NOW);
        let report = check(Scheme::GitHub, &[key], &headers, received.as_bytes(), NOW);
        assert_eq!(cause(&report), code::BODY_RESERIALIZED, "{sent}");
        let text = text_of(&report, code::BODY_RESERIALIZED);
        assert!(text.contains(what), "{sent}: {text}");
    }
}

#[test]
fn hg_v031_a_trailing_newline_added_or_removed() {
    let v = vector("stripe/valid-basic");
    let body = [v.body.as_slice(), b"\n"].concat();
    let report = check(
        Scheme::Stripe,
        &[v.secret.as_bytes()],
        &v.headers,
        &body,
        v.now,
    );
    assert_eq!(cause(&report), code::BODY_TRAILING_NEWLINE);
    assert!(text_of(&report, code::BODY_TRAILING_NEWLINE).contains("a trailing newline was added"));

    let key = b"generic-secret";
    let mut headers = signed(Scheme::Generic, key, b"payload\n", NOW);
    headers.insert("x-delivery-id", HeaderValue::from_static("d-1"));
    let report = check(Scheme::Generic, &[key], &headers, b"payload", NOW);
    assert_eq!(cause(&report), code::BODY_TRAILING_NEWLINE);
    assert!(
        text_of(&report, code::BODY_TRAILING_NEWLINE)
            .contains("ended with a newline that was removed")
    );
}

#[test]
fn hg_v032_line_endings_changed() {
    let key = b"shopify-client-secret";
    for (sent, received, what) in [
        (
            "{\r\n  \"a\": 1,\r\n  \"b\": 2\r\n}\r\n",
            "{\n  \"a\": 1,\n  \"b\": 2\n}\n",
            "CRLF line endings were changed to LF",
        ),
        (
            "{\n  \"a\": 1,\n  \"b\": 2\n}\n",
            "{\r\n  \"a\": 1,\r\n  \"b\": 2\r\n}\r\n",
            "LF line endings were changed to CRLF",
        ),
    ] {
        let headers = signed(Scheme::Shopify, key, sent.as_bytes(), NOW);
        let report = check(Scheme::Shopify, &[key], &headers, received.as_bytes(), NOW);
        assert_eq!(cause(&report), code::BODY_LINE_ENDINGS, "{report:#?}");
        assert!(text_of(&report, code::BODY_LINE_ENDINGS).contains(what));
    }
}

#[test]
fn hg_v033_a_slack_form_body_re_encoded() {
    let key = b"8f742231b10e8888abcd99yyyzzz85a5";
    for (sent, received) in [
        (
            "command=%2Fdeploy&text=hello%20world&user_id=U1",
            "command=%2Fdeploy&text=hello+world&user_id=U1",
        ),
        (
            "command=%2Fdeploy&text=hello+world+%2A&user_id=U1",
            "command=%2Fdeploy&text=hello%20world%20*&user_id=U1",
        ),
    ] {
        let headers = signed(Scheme::Slack, key, sent.as_bytes(), NOW);
        let report = check(Scheme::Slack, &[key], &headers, received.as_bytes(), NOW);
        assert_eq!(
            cause(&report),
            code::BODY_FORM_REENCODED,
            "{sent}: {report:#?}"
        );
    }
}

#[test]
fn hg_v034_a_base64_encoded_body() {
    let v = vector("shopify/valid-basic");
    let wrapped = STANDARD.encode(&v.body);
    let report = check(
        Scheme::Shopify,
        &[v.secret.as_bytes()],
        &v.headers,
        wrapped.as_bytes(),
        v.now,
    );
    assert_eq!(cause(&report), code::BODY_BASE64);
}

#[test]
fn hg_v035_the_body_s_character_encoding_changed() {
    let key = b"github-secret";
    let utf8 = "{\"title\":\"caf\u{e9} \u{2026}\"}".as_bytes();
    // UTF-8 sent, Latin-1 bytes received.
    let sent = "{\"title\":\"caf\u{e9}\"}".as_bytes();
    let received = b"{\"title\":\"caf\xe9\"}";
    let headers = signed(Scheme::GitHub, key, sent, NOW);
    let report = check(Scheme::GitHub, &[key], &headers, received, NOW);
    assert_eq!(cause(&report), code::BODY_CHARSET, "{report:#?}");
    assert!(text_of(&report, code::BODY_CHARSET).contains("transcoded to Latin-1"));
    // UTF-8 sent, then encoded as UTF-8 again (mojibake: "Ã©").
    let twice: String = utf8.iter().map(|&b| char::from(b)).collect();
    let headers = signed(Scheme::GitHub, key, utf8, NOW);
    let report = check(Scheme::GitHub, &[key], &headers, twice.as_bytes(), NOW);
    assert_eq!(cause(&report), code::BODY_CHARSET, "{report:#?}");
    assert!(text_of(&report, code::BODY_CHARSET).contains("encoded twice"));
}

#[test]
fn hg_v090_nothing_known_matches() {
    for id in [
        "stripe/invalid-wrong-secret",
        "github/invalid-wrong-secret",
        "shopify/invalid-tampered-body",
        "standard-webhooks/invalid-tampered-body",
        "generic-hex/invalid-bitflip",
    ] {
        let v = vector(id);
        let report = check_vector(&v, v.scheme, &[v.secret.as_bytes()]);
        assert_eq!(report.codes(), [code::NO_MATCH], "{id}: {report:#?}");
        let text = text_of(&report, code::NO_MATCH);
        assert!(
            text.contains("k1 (sha256:"),
            "{id}: the key's fingerprint: {text}"
        );
    }
}
