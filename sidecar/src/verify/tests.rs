//! Unit tests for the schemes beyond what the shared vectors cover: rotation, aliases, parsing
//! edge cases, delivery-ID bounds, and that no secret leaks into errors or `Debug`.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use rstest::rstest;

use super::common::parse_unix_seconds;
use super::*;

const NOW: i64 = 1_764_000_000;
const SECRET: &[u8] = b"s3cr3t-verbatim-key-material";
const OTHER: &[u8] = b"an-older-key-still-in-grace";
const BODY: &[u8] =
    br#"{"id":"evt_1","type":"invoice.paid","event_id":"Ev1","event":{"type":"app_mention"}}"#;

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    crate::sign::hmac_sha256(key, parts).to_vec()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn verifier(scheme: Scheme, secrets: &[&[u8]]) -> Verifier {
    let keys = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| SigningKey::new(scheme, format!("k{i}"), s).unwrap())
        .collect();
    Verifier::new(VerifierSettings {
        scheme,
        generic: GenericHeaders::default(),
        key_source: None,
        keys,
        tolerance: Duration::from_secs(300),
        public_url: None,
    })
}

fn generic_request(key: &[u8], id: &str) -> HeaderMap {
    let sig = hex::encode(mac(key, &[BODY]));
    headers(&[("x-signature", &sig), ("x-delivery-id", id)])
}

fn stripe_header(ts: &str, keys: &[&[u8]]) -> String {
    let mut value = format!("t={ts}");
    for key in keys {
        let sig = hex::encode(mac(key, &[ts.as_bytes(), b".", BODY]));
        write!(value, ",v1={sig}").unwrap();
    }
    value
}

#[rstest]
#[case::first_key(SECRET, true)]
#[case::second_key(OTHER, true)]
#[case::neither(b"not-a-configured-key", false)]
fn rotation_accepts_either_key(#[case] signer: &[u8], #[case] ok: bool) {
    for scheme in [Scheme::Generic, Scheme::GitHub, Scheme::Shopify] {
        let v = verifier(scheme, &[SECRET, OTHER]);
        let sig = mac(signer, &[BODY]);
        let h = match scheme {
            Scheme::Generic => generic_request(signer, "d-1"),
            Scheme::GitHub => headers(&[(
                "x-hub-signature-256",
                &format!("sha256={}", hex::encode(&sig)),
            )]),
            _ => headers(&[
                ("x-shopify-hmac-sha256", &STANDARD.encode(&sig)),
                ("x-shopify-topic", "orders/create"),
            ]),
        };
        let result = v.verify(&h, BODY, NOW);
        if ok {
            assert_eq!(result, Ok(()), "{scheme:?}");
        } else {
            assert_eq!(result, Err(Rejection::SignatureMismatch), "{scheme:?}");
            assert_eq!(result.unwrap_err().status(), StatusCode::UNAUTHORIZED);
        }
    }
}

#[test]
fn no_keys_refuses_everything() {
    let v = verifier(Scheme::Generic, &[]);
    let h = generic_request(SECRET, "d-1");
    assert_eq!(v.verify(&h, BODY, NOW), Err(Rejection::SignatureMismatch));
}

#[rstest]
#[case::webhook("webhook")]
#[case::svix("svix")]
#[case::svix_mixed_case("Svix")]
fn standard_webhooks_accepts_svix_aliases(#[case] prefix: &str) {
    let key = b"0123456789abcdef0123456789abcdef";
    let secret = format!("whsec_{}", STANDARD.encode(key));
    let v = verifier(Scheme::StandardWebhooks, &[secret.as_bytes()]);
    let ts = NOW.to_string();
    let sig = STANDARD.encode(mac(key, &[b"msg_1.", ts.as_bytes(), b".", BODY]));
    let h = headers(&[
        (&format!("{prefix}-id"), "msg_1"),
        (&format!("{prefix}-timestamp"), &ts),
        (&format!("{prefix}-signature"), &format!("v1a,xyz v1,{sig}")),
    ]);
    assert_eq!(v.verify(&h, BODY, NOW), Ok(()));
    let delivery = Delivery::new(&h, BODY);
    assert_eq!(v.delivery_id(&delivery), Ok(Cow::Borrowed("msg_1")));
    assert_eq!(v.event_type(&delivery).as_deref(), Some("invoice.paid"));
}

#[test]
fn standard_webhooks_secret_without_prefix_is_accepted() {
    let key = SigningKey::new(
        Scheme::StandardWebhooks,
        "k",
        STANDARD.encode(b"key").as_bytes(),
    );
    assert!(key.is_ok());
}

#[rstest]
#[case::good_first(&[SECRET, b"wrong"])]
#[case::good_last(&[b"wrong".as_slice(), b"also wrong", SECRET])]
#[case::old_key(&[OTHER])]
fn stripe_accepts_any_v1(#[case] signers: &[&[u8]]) {
    let v = verifier(Scheme::Stripe, &[SECRET, OTHER]);
    let value = format!("{},v0=deadbeef", stripe_header(&NOW.to_string(), signers));
    let h = headers(&[("stripe-signature", &value)]);
    assert_eq!(v.verify(&h, BODY, NOW), Ok(()));
    let delivery = Delivery::new(&h, BODY);
    assert_eq!(v.delivery_id(&delivery).as_deref(), Ok("evt_1"));
    assert_eq!(v.event_type(&delivery).as_deref(), Some("invoice.paid"));
}

#[test]
fn stripe_too_many_signatures_is_malformed() {
    let v = verifier(Scheme::Stripe, &[SECRET]);
    let value = stripe_header(&NOW.to_string(), &[b"x".as_slice(); 9]);
    let h = headers(&[("stripe-signature", &value)]);
    let err = v.verify(&h, BODY, NOW).unwrap_err();
    assert!(matches!(err, Rejection::MalformedHeader { .. }), "{err}");
}

#[rstest]
#[case::letters("abc")]
#[case::empty("")]
#[case::negative("-5")]
#[case::plus("+5")]
#[case::space(" 5")]
#[case::fraction("1764000000.5")]
#[case::overflow("9223372036854775808")]
#[case::huge("99999999999999999999999999")]
fn malformed_timestamps_are_400(#[case] ts: &str) {
    let stripe = verifier(Scheme::Stripe, &[SECRET]);
    let value = format!("t={ts},v1={}", "ab".repeat(32));
    let err = stripe
        .verify(&headers(&[("stripe-signature", &value)]), BODY, NOW)
        .unwrap_err();
    assert!(
        matches!(err, Rejection::MalformedHeader { .. }),
        "stripe {ts:?}: {err}"
    );
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);

    let slack = verifier(Scheme::Slack, &[SECRET]);
    let h = headers(&[
        ("x-slack-request-timestamp", ts),
        ("x-slack-signature", &format!("v0={}", "ab".repeat(32))),
    ]);
    let err = slack.verify(&h, BODY, NOW).unwrap_err();
    assert!(
        matches!(err, Rejection::MalformedHeader { .. }),
        "slack {ts:?}: {err}"
    );
}

#[test]
fn timestamp_parse_bounds() {
    assert_eq!(parse_unix_seconds(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(parse_unix_seconds(b"9223372036854775808"), None);
    assert_eq!(parse_unix_seconds(b"0"), Some(0));
    assert_eq!(parse_unix_seconds(b"007"), Some(7));
}

#[test]
fn extreme_timestamps_do_not_overflow() {
    let v = verifier(Scheme::Stripe, &[SECRET]);
    assert_eq!(
        v.check_timestamp(i64::MAX, i64::MIN),
        Err(Rejection::TimestampOutsideTolerance)
    );
    assert_eq!(
        v.check_timestamp(0, i64::MAX),
        Err(Rejection::TimestampOutsideTolerance)
    );
    assert_eq!(v.check_timestamp(NOW - 300, NOW), Ok(()));
    assert_eq!(
        v.check_timestamp(NOW + 301, NOW),
        Err(Rejection::TimestampOutsideTolerance)
    );
}

#[test]
fn stale_timestamp_is_refused_before_the_signature() {
    // A stale request with a wrong signature reports the timestamp: no HMAC was needed.
    let v = verifier(Scheme::Stripe, &[SECRET]);
    let value = format!("t={},v1={}", NOW - 3600, "ab".repeat(32));
    let err = v.verify(&headers(&[("stripe-signature", &value)]), BODY, NOW);
    assert_eq!(err, Err(Rejection::TimestampOutsideTolerance));
}

#[rstest]
#[case::max_len(&"a".repeat(256), true)]
#[case::too_long(&"a".repeat(257), false)]
#[case::space("a b", false)]
#[case::empty("", false)]
#[case::every_allowed_char("AZaz09._~:@+/=-", true)]
#[case::percent("a%20b", false)]
#[case::quote("a\"b", false)]
fn delivery_id_bounds_and_charset(#[case] id: &str, #[case] ok: bool) {
    let v = verifier(Scheme::Generic, &[SECRET]);
    let h = generic_request(SECRET, id);
    let delivery = Delivery::new(&h, BODY);
    let got = v.delivery_id(&delivery);
    if ok {
        assert_eq!(got.as_deref(), Ok(id));
    } else {
        assert_eq!(got, Err(Rejection::InvalidDeliveryId));
        assert_eq!(
            Rejection::InvalidDeliveryId.status(),
            StatusCode::BAD_REQUEST
        );
    }
}

#[test]
fn non_ascii_or_repeated_id_header_is_invalid() {
    let v = verifier(Scheme::GitHub, &[SECRET]);
    let mut h = HeaderMap::new();
    h.insert(
        "x-github-delivery",
        HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
    );
    assert_eq!(
        v.delivery_id(&Delivery::new(&h, BODY)),
        Err(Rejection::InvalidDeliveryId)
    );
    let h = headers(&[("x-github-delivery", "a"), ("x-github-delivery", "b")]);
    assert_eq!(
        v.delivery_id(&Delivery::new(&h, BODY)),
        Err(Rejection::InvalidDeliveryId)
    );
    let h = HeaderMap::new();
    assert_eq!(
        v.delivery_id(&Delivery::new(&h, BODY)),
        Err(Rejection::MissingDeliveryId)
    );
}

#[rstest]
#[case::string(br#"{"k":"abc"}"#, Ok("abc"))]
#[case::integer(br#"{"k":12345}"#, Ok("12345"))]
#[case::negative(br#"{"k":-7}"#, Ok("-7"))]
#[case::float(br#"{"k":1.5}"#, Err(Rejection::InvalidDeliveryId))]
#[case::object(br#"{"k":{}}"#, Err(Rejection::InvalidDeliveryId))]
#[case::bad_chars(br#"{"k":"a b"}"#, Err(Rejection::InvalidDeliveryId))]
#[case::null(br#"{"k":null}"#, Err(Rejection::MissingDeliveryId))]
#[case::absent(br#"{"j":1}"#, Err(Rejection::MissingDeliveryId))]
#[case::not_json(b"k=abc", Err(Rejection::MissingDeliveryId))]
fn delivery_id_from_json_pointer(#[case] body: &[u8], #[case] want: Result<&str, Rejection>) {
    let mut v = verifier(Scheme::Generic, &[SECRET]);
    v.key_source = Some(KeySource::JsonPointer("/k".to_owned()));
    let h = HeaderMap::new();
    let delivery = Delivery::new(&h, body);
    assert_eq!(
        v.delivery_id(&delivery).as_deref().map_err(Clone::clone),
        want
    );
}

#[test]
fn generic_requires_its_delivery_id_header() {
    let v = verifier(Scheme::Generic, &[SECRET]);
    let sig = hex::encode(mac(SECRET, &[BODY]));
    let h = headers(&[("x-signature", &sig)]);
    let err = v.verify(&h, BODY, NOW).unwrap_err();
    assert_eq!(
        err,
        Rejection::MissingHeader(HeaderName::from_static("x-delivery-id"))
    );
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn generic_custom_headers_and_event_type() {
    let v = Verifier::new(VerifierSettings {
        scheme: Scheme::Generic,
        generic: GenericHeaders {
            signature: HeaderName::from_static("x-acme-sig"),
            delivery_id: HeaderName::from_static("x-acme-id"),
            event_type: Some(HeaderName::from_static("x-acme-event")),
        },
        key_source: None,
        keys: vec![SigningKey::new(Scheme::Generic, "k", SECRET).unwrap()],
        tolerance: Duration::from_secs(300),
        public_url: None,
    });
    let sig = hex::encode(mac(SECRET, &[BODY]));
    let h = headers(&[
        ("X-Acme-Sig", &sig),
        ("X-Acme-Id", "id-9"),
        ("X-Acme-Event", "ping"),
    ]);
    assert_eq!(v.verify(&h, BODY, NOW), Ok(()));
    let delivery = Delivery::new(&h, BODY);
    assert_eq!(v.delivery_id(&delivery).as_deref(), Ok("id-9"));
    assert_eq!(v.event_type(&delivery).as_deref(), Some("ping"));
}

#[test]
fn event_types_per_scheme() {
    let h = headers(&[
        ("x-github-event", "push"),
        ("shopify-topic", "orders/create"),
    ]);
    let delivery = Delivery::new(&h, BODY);
    let event = |scheme| {
        verifier(scheme, &[SECRET])
            .event_type(&delivery)
            .map(Cow::into_owned)
    };
    assert_eq!(event(Scheme::GitHub).as_deref(), Some("push"));
    assert_eq!(event(Scheme::Shopify).as_deref(), Some("orders/create"));
    assert_eq!(event(Scheme::Slack).as_deref(), Some("app_mention"));
    assert_eq!(event(Scheme::Stripe).as_deref(), Some("invoice.paid"));
    assert_eq!(event(Scheme::Generic), None);

    let body = br#"{"type":"url_verification"}"#;
    let delivery = Delivery::new(&h, body);
    let slack = verifier(Scheme::Slack, &[SECRET]);
    assert_eq!(
        slack.event_type(&delivery).as_deref(),
        Some("url_verification")
    );
}

#[test]
fn shopify_requires_a_topic() {
    let v = verifier(Scheme::Shopify, &[SECRET]);
    let h = headers(&[(
        "x-shopify-hmac-sha256",
        &STANDARD.encode(mac(SECRET, &[BODY])),
    )]);
    let err = v.verify(&h, BODY, NOW).unwrap_err();
    assert_eq!(
        err,
        Rejection::MissingHeader(HeaderName::from_static("x-shopify-topic"))
    );
}

#[test]
fn repeated_signature_header_is_malformed() {
    let v = verifier(Scheme::GitHub, &[SECRET]);
    let sig = format!("sha256={}", hex::encode(mac(SECRET, &[BODY])));
    let h = headers(&[("x-hub-signature-256", &sig), ("x-hub-signature-256", &sig)]);
    let err = v.verify(&h, BODY, NOW).unwrap_err();
    assert!(matches!(err, Rejection::MalformedHeader { .. }), "{err}");
}

#[rstest]
#[case::trailing_lf(b"s3cr3t-verbatim-key-material\n", true)]
#[case::trailing_crlf(b"s3cr3t-verbatim-key-material\r\n", true)]
#[case::two_newlines(b"s3cr3t-verbatim-key-material\n\n", false)]
#[case::leading_space(b" s3cr3t-verbatim-key-material", false)]
fn one_trailing_newline_is_stripped(#[case] file: &[u8], #[case] same: bool) {
    let v = verifier(Scheme::Generic, &[file]);
    let result = v.verify(&generic_request(SECRET, "d"), BODY, NOW);
    assert_eq!(result.is_ok(), same);
}

#[rstest]
#[case::empty(Scheme::Generic, b"", KeyError::Empty)]
#[case::newline_only(Scheme::Stripe, b"\n", KeyError::Empty)]
#[case::prefix_only(Scheme::StandardWebhooks, b"whsec_\n", KeyError::Empty)]
#[case::not_base64(
    Scheme::StandardWebhooks,
    b"whsec_s3cr3t!material*",
    KeyError::NotBase64
)]
fn key_errors_explain_without_material(
    #[case] scheme: Scheme,
    #[case] secret: &[u8],
    #[case] want: KeyError,
) {
    let err = SigningKey::new(scheme, "key-file", secret).unwrap_err();
    assert_eq!(err, want);
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(!shown.contains("material"), "{shown}");
}

#[test]
fn not_base64_message_says_how_to_fix() {
    let msg = KeyError::NotBase64.to_string();
    assert!(msg.contains("`whsec_` followed by base64"), "{msg}");
}

#[test]
fn debug_never_shows_secrets_or_signatures() {
    let key = SigningKey::new(Scheme::Generic, "k1", SECRET).unwrap();
    let v = verifier(Scheme::Generic, &[SECRET]);
    let h = generic_request(SECRET, "d-1");
    let sig = h["x-signature"].to_str().unwrap().to_owned();
    let delivery = Delivery::new(&h, BODY);
    let shown = format!("{key:?} {v:?} {delivery:?}");
    assert!(shown.contains("k1"), "{shown}");
    for needle in ["s3cr3t", &hex::encode(SECRET), &sig, "evt_1"] {
        assert!(!shown.contains(needle), "{needle} in {shown}");
    }
}

#[test]
fn rejection_display_never_shows_values() {
    let v = verifier(Scheme::Stripe, &[SECRET]);
    for value in ["t=zzqq,v1=ab", "v1=ZZQQ", &stripe_header("1", &[b"zzqq"])] {
        let err = v
            .verify(&headers(&[("stripe-signature", value)]), BODY, NOW)
            .unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.to_lowercase().contains("zzqq"), "{shown}");
        assert!(
            !shown.contains(&value[value.len().saturating_sub(6)..]),
            "{shown}"
        );
    }
}

#[rstest]
#[case(
    Rejection::MissingHeader(HeaderName::from_static("x")),
    400,
    "missing_header"
)]
#[case(Rejection::MalformedHeader { header: HeaderName::from_static("x"), problem: "p" }, 400, "malformed_header")]
#[case(Rejection::SignatureMismatch, 401, "signature_mismatch")]
#[case(
    Rejection::TimestampOutsideTolerance,
    401,
    "timestamp_outside_tolerance"
)]
#[case(Rejection::MissingDeliveryId, 400, "missing_delivery_id")]
#[case(Rejection::InvalidDeliveryId, 400, "invalid_delivery_id")]
fn status_and_metric_label(#[case] rejection: Rejection, #[case] status: u16, #[case] label: &str) {
    assert_eq!(rejection.status().as_u16(), status);
    assert_eq!(rejection.metric_label(), label);
}

#[test]
fn metric_labels_lists_every_label_in_order() {
    let one_of_each = [
        Rejection::MissingHeader(HeaderName::from_static("x")),
        Rejection::MalformedHeader {
            header: HeaderName::from_static("x"),
            problem: "p",
        },
        Rejection::SignatureMismatch,
        Rejection::TimestampOutsideTolerance,
        Rejection::MissingDeliveryId,
        Rejection::InvalidDeliveryId,
        Rejection::MalformedBody("b"),
    ];
    assert_eq!(
        one_of_each.map(|rejection| rejection.metric_label()),
        Rejection::METRIC_LABELS
    );
}
