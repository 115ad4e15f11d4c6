//! Cost of verifying one valid delivery per scheme, at 1 KiB and 64 KiB: `verify` alone, and
//! `verify` followed by `delivery_id` (which parses the body as JSON for Stripe and Slack).
//!
//! Run with `cargo bench -p hookguard-sidecar --bench verify`.

#![allow(
    clippy::expect_used,
    reason = "a broken bench setup must stop the run loudly; this is not the request path"
)]

use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hookguard_sidecar::sign;
use hookguard_sidecar::verify::{
    Delivery, GenericHeaders, Scheme, SigningKey, Verifier, VerifierSettings,
};
use http::{HeaderMap, HeaderName, HeaderValue};

const NOW: i64 = 1_764_000_000;
const SIZES: [(usize, &str); 2] = [(1024, "1KiB"), (64 * 1024, "64KiB")];
/// Standard Webhooks keys are base64 in the secret; every other scheme uses the bytes as is.
const RAW_KEY: &[u8] = b"bench-signing-key-0123456789abcdef";

/// A JSON body of exactly `len` bytes carrying the fields every scheme's defaults read.
fn body(len: usize) -> Vec<u8> {
    // `webhookTimestamp` (ms) is Linear's signed clock: NOW.
    let head = br#"{"id":"evt_bench_1","event_id":"Ev0001","type":"invoice.paid","webhookTimestamp":1764000000000,"pad":""#;
    let tail = br#""}"#;
    let mut body = head.to_vec();
    body.resize(len - tail.len(), b'x');
    body.extend_from_slice(tail);
    body
}

/// Headers of a validly signed delivery of `body` for `scheme`, signed the sender's way.
fn signed_headers(scheme: Scheme, body: &[u8]) -> HeaderMap {
    let delivery = sign::Delivery {
        id: "6f593534-ea4b-48e3-a8d8-99e7dddd24c1",
        timestamp: NOW,
        event_type: "orders/create",
        body,
    };
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let signed = sign::headers(scheme, RAW_KEY, &delivery).expect("a signable scheme");
    for (name, value) in signed {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).expect("ASCII header value"),
        );
    }
    headers
}

fn verifier(scheme: Scheme) -> Verifier {
    let secret = if scheme == Scheme::StandardWebhooks {
        format!("whsec_{}", STANDARD.encode(RAW_KEY)).into_bytes()
    } else {
        RAW_KEY.to_vec()
    };
    let key = SigningKey::new(scheme, "bench", &secret).expect("valid bench key");
    Verifier::new(VerifierSettings {
        scheme,
        generic: GenericHeaders::default(),
        key_source: None,
        keys: vec![key],
        tolerance: Duration::from_secs(300),
        public_url: None,
    })
}

fn bench_verify(c: &mut Criterion) {
    for scheme in Scheme::ALL {
        if sign::signable(scheme).is_err() {
            continue;
        }
        let verifier = verifier(scheme);
        let mut group = c.benchmark_group(scheme.as_str());
        for (len, label) in SIZES {
            let body = body(len);
            let headers = signed_headers(scheme, &body);
            // A bench of a refusing path would measure the wrong thing.
            assert!(
                verifier.verify(&headers, &body, NOW).is_ok(),
                "{scheme:?} setup"
            );
            let delivery = Delivery::new(&headers, &body);
            assert!(verifier.delivery_id(&delivery).is_ok(), "{scheme:?} id");

            group.throughput(Throughput::Bytes(len as u64));
            group.bench_function(BenchmarkId::new("verify", label), |b| {
                b.iter(|| verifier.verify(black_box(&headers), black_box(&body), NOW));
            });
            group.bench_function(BenchmarkId::new("verify+delivery_id", label), |b| {
                b.iter(|| {
                    let headers = black_box(&headers);
                    let body = black_box(&body);
                    verifier.verify(headers, body, NOW)?;
                    let delivery = Delivery::new(headers, body);
                    verifier.delivery_id(&delivery).map(|id| id.len())
                });
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    targets = bench_verify
}
criterion_main!(benches);
