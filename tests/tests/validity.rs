//! One contract for a valid endpoint, checked where it is stated three ways:
//!
//! - the CRD's CEL rules against the shared Rust rules (`hookguard_api::validation`, through
//!   the operator's `validate`), case by case, on a real API server: a spec the API server
//!   stores is one the operator accepts, and the reverse;
//! - the operator's rendering against the sidecar's loading, on generated specs: every spec
//!   the operator accepts renders a file the sidecar loads, and every rendered file the
//!   sidecar refuses belongs to a spec the operator refuses with the same words.

// The helpers build fixed test inputs: a failure there is the test's failure.
#![allow(clippy::unwrap_used, clippy::panic)]

use hookguard_api::crd::WebhookEndpoint;
use hookguard_operator::controller::build::build_config_map;
use hookguard_operator::controller::validate::{ValidateError, sidecar_config, validate};
use hookguard_tests::control_plane::with_namespace;
use hookguard_tests::operator::{endpoint, install_crd};
use kube::api::{Api, PostParams};
use proptest::prelude::*;

/// The spec every case starts from: valid, and the smallest there is.
const BASE: &str = "scheme: Generic, path: /a, upstream: {port: 8080}";

/// `(spec fields added to or replacing BASE's, whether the rules accept it)`.
const CASES: &[(&str, bool)] = &[
    ("", true),
    ("path: /a%20b", true),
    ("path: '/v1/hooks;x=1'", true),
    ("path: /~u/a.b", true),
    ("path: /a..b", true),
    ("path: webhooks", false),
    ("path: '/a?b=1'", false),
    ("path: '/a#b'", false),
    ("path: /web hooks", false),
    ("path: /webhooks/../x", false),
    ("path: /./x", false),
    ("path: /x/..", false),
    ("path: /a%2", false),
    ("path: /a%zz", false),
    ("path: /a<b>", false),
    ("upstream: {port: 8080, path: /in}", true),
    ("upstream: {port: 8080, path: '/a#b'}", false),
    ("upstream: {port: 8080, path: '/a?x=1'}", false),
    ("upstream: {port: 8080, path: in}", false),
    ("upstream: {port: 8080, path: /x/../y}", false),
    ("upstream: {port: 65535}", true),
    ("upstream: {port: 9879}", true),
    ("upstream: {port: 9880}", false),
    ("upstream: {port: 9881}", false),
    ("upstream: {port: 0}", false),
    ("upstream: {port: 70000}", false),
    ("upstream: {port: 8080, timeout: 1h30m}", true),
    ("upstream: {port: 8080, timeout: 1.5s}", false),
    ("upstream: {port: 8080, timeout: 0s}", false),
    ("upstream: {port: 8080, timeout: soon}", false),
    ("idempotencyKey: {header: X-Request-Id}", true),
    ("idempotencyKey: {header: bad header}", false),
    ("idempotencyKey: {header: ''}", false),
    ("idempotencyKey: {jsonPointer: /id}", true),
    ("idempotencyKey: {jsonPointer: id}", false),
    ("idempotencyKey: {header: X-Id, jsonPointer: /id}", false),
    (
        "generic: {signatureHeader: X-Sig, deliveryIdHeader: X-Id, eventTypeHeader: X-Event}, eventTypes: [a.b]",
        true,
    ),
    ("generic: {signatureHeader: a b}", false),
    ("generic: {eventTypeHeader: 'x:y'}, eventTypes: [a]", false),
    ("eventTypes: [a]", false),
    ("scheme: Stripe, eventTypes: [invoice.paid]", true),
    ("scheme: Stripe, eventTypes: ['']", false),
    ("scheme: Stripe, generic: {}", false),
    ("maxBodySize: 64Mi", true),
    ("maxBodySize: '1'", true),
    ("maxBodySize: 64Ki", true),
    ("maxBodySize: 2M", true),
    ("maxBodySize: 128Mi", false),
    ("maxBodySize: 65Mi", false),
    ("maxBodySize: '0'", false),
    ("maxBodySize: 1.5Mi", false),
    ("maxBodySize: 1MB", false),
    ("replay: {tolerance: 5m, window: 10m}", true),
    ("replay: {tolerance: 5m, window: 9m}", false),
    ("replay: {tolerance: 0s, window: 1h}", false),
    ("replay: {tolerance: 5m, window: 1d}", false),
    ("rotation: {every: 720h, gracePeriod: 1h}", true),
    ("rotation: {every: 30m}", false),
    ("rotation: {gracePeriod: '0'}", false),
    ("secret: {secretRef: {name: s}}", true),
    ("secret: {generate: {}, secretRef: {name: s}}", false),
    ("secret: {}", false),
    ("delivery: {}", true),
    (
        "delivery: {mode: Queue, durability: Disk, retrySchedule: [5s, 1m, 1h30m], maxAttempts: 1000, maxAge: 720h, maxConcurrency: 1000, rateLimit: 1, paused: true, maxQueued: 1, maxQueuedBytes: 1Mi}",
        true,
    ),
    ("delivery: {mode: Queue, durability: Memory}", true),
    (
        "delivery: {mode: Queue, retrySchedule: [720h], maxAttempts: 1}",
        true,
    ),
    (
        "delivery: {retrySchedule: [1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s]}",
        true,
    ),
    (
        "delivery: {retrySchedule: [1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s]}",
        false,
    ),
    ("delivery: {retrySchedule: []}", false),
    ("delivery: {retrySchedule: [5s, 0s]}", false),
    ("delivery: {retrySchedule: [721h]}", false),
    ("delivery: {retrySchedule: [719h60m1s]}", false),
    ("delivery: {retrySchedule: [1.5s]}", false),
    ("delivery: {retrySchedule: [1d]}", false),
    ("delivery: {retrySchedule: ['0']}", false),
    ("delivery: {maxAttempts: 0}", false),
    ("delivery: {maxAttempts: 1001}", false),
    ("delivery: {maxAge: 1h30m}", true),
    ("delivery: {maxAge: 0s}", false),
    ("delivery: {maxAge: 721h}", false),
    ("delivery: {maxAge: forever}", false),
    ("delivery: {maxConcurrency: 1}", true),
    ("delivery: {maxConcurrency: 0}", false),
    ("delivery: {maxConcurrency: 1001}", false),
    ("delivery: {rateLimit: 4294967295}", true),
    ("delivery: {rateLimit: 0}", false),
    ("delivery: {maxQueued: 0}", false),
    ("maxBodySize: 64Mi, delivery: {maxQueuedBytes: 64Mi}", true),
    (
        "maxBodySize: 64Ki, delivery: {maxQueuedBytes: '65536'}",
        true,
    ),
    ("delivery: {maxQueuedBytes: 512Ki}", false),
    ("maxBodySize: 2Mi, delivery: {maxQueuedBytes: 2M}", false),
    ("delivery: {maxQueuedBytes: '0'}", false),
    ("delivery: {maxQueuedBytes: 1.5Gi}", false),
    ("delivery: {maxQueuedBytes: 256MB}", false),
    ("delivery: {maxQueuedBytes: lots}", false),
    ("delivery: {maxQueuedBytes: ' 64Mi'}", false),
    ("delivery: {maxQueuedBytes: 1024Gi}", true),
    ("delivery: {maxQueuedBytes: 1025Gi}", false),
    ("delivery: {maxQueuedBytes: '99999999999999999999'}", false),
    (
        "delivery: {retrySchedule: ['0000000000000000000000000000000000000000000000000000000000000005s']}",
        false,
    ),
    // publicUrl: required exactly for the schemes that sign it, and a plain http(s) URL.
    (
        "scheme: Twilio, secret: {secretRef: {name: t}}, publicUrl: https://example.com/webhooks/twilio",
        true,
    ),
    (
        "scheme: Square, secret: {secretRef: {name: t}}, publicUrl: 'http://hooks.example.com:8080/sq'",
        true,
    ),
    (
        "scheme: Twilio, secret: {secretRef: {name: t}}, publicUrl: https://example.com",
        true,
    ),
    (
        "scheme: Twilio, secret: {secretRef: {name: t}}, publicUrl: 'https://example.com:65535/a%20b;x=1'",
        true,
    ),
    ("scheme: Twilio, secret: {secretRef: {name: t}}", false),
    ("scheme: Square, secret: {secretRef: {name: t}}", false),
    ("publicUrl: https://example.com/a", false),
    ("scheme: Stripe, publicUrl: https://example.com/a", false),
    (
        "scheme: Twilio, secret: {secretRef: {name: t}}, publicUrl: 'https://example.com/a?x=1'",
        false,
    ),
    (
        "scheme: Twilio, secret: {secretRef: {name: t}}, publicUrl: 'https://example.com/a#f'",
        false,
    ),
    (
        "scheme: Twilio, secret: {secretRef: {name: t}}, publicUrl: ftp://example.com/a",
        false,
    ),
    (
        "scheme: Twilio, secret: {secretRef: {name: t}}, publicUrl: 'HTTPS://example.com/a'",
        false,
    ),
    (
        "scheme: Twilio, secret: {secretRef: {name: t}}, publicUrl: example.com/a",
        false,
    ),
    (
        "scheme: Twilio, secret: {secretRef: {name: t}}, publicUrl: 'https://user@example.com/a'",
        false,
    ),
    (
        "scheme: Twilio, secret: {secretRef: {name: t}}, publicUrl: 'https://example.com:65536/a'",
        false,
    ),
    (
        "scheme: Twilio, secret: {secretRef: {name: t}}, publicUrl: 'https://example.com:/a'",
        false,
    ),
    (
        "scheme: Twilio, secret: {secretRef: {name: t}}, publicUrl: 'https:///a'",
        false,
    ),
    (
        "scheme: Twilio, secret: {secretRef: {name: t}}, publicUrl: 'https://exa_mple.com/a'",
        false,
    ),
    (
        "scheme: Twilio, secret: {secretRef: {name: t}}, publicUrl: 'https://example.com/a b'",
        false,
    ),
    (
        "scheme: Twilio, secret: {secretRef: {name: t}}, publicUrl: 'https://example.com/a%2'",
        false,
    ),
    (
        "scheme: Twilio, secret: {secretRef: {name: t}}, publicUrl: ''",
        false,
    ),
    // Senders that issue the secret: never generated.
    ("scheme: Twilio, publicUrl: https://example.com/t", false),
    ("scheme: Zoom", false),
    ("scheme: Zoom, secret: {generate: {}}", false),
    ("scheme: Paddle", false),
    ("scheme: Linear", false),
    ("scheme: Mailgun", false),
    ("scheme: SendGrid", false),
    ("scheme: Zoom, secret: {secretRef: {name: z}}", true),
    ("scheme: Paddle, secret: {secretRef: {name: p}}", true),
    ("scheme: Linear, secret: {secretRef: {name: l}}", true),
    ("scheme: Mailgun, secret: {secretRef: {name: m}}", true),
    ("scheme: SendGrid, secret: {secretRef: {name: g}}", true),
    // publicKey: exactly one source, only where a public key checks deliveries, well formed.
    (
        "scheme: SendGrid, secret: {publicKey: 'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEyTNmjB73HmMlMEzDevoAeizGRViGh06fg6Dyj3w3i9IzakbbXyN5ew/WORUKmo4GUSDpHu+0YsYgVopyGh7Nw=='}",
        true,
    ),
    (
        "scheme: SendGrid, secret: {publicKey: \"  MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEyTNmjB73HmMlMEzDevoAeizGRViGh06fg6Dyj3w3i9IzakbbXyN5ew/WORUKmo4GUSDpHu+0YsYgVopyGh7Nw==\\n\"}",
        true,
    ),
    (
        "scheme: SendGrid, secret: {publicKey: \"-----BEGIN PUBLIC KEY-----\\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEyTNmjB73HmMlMEzDevoAeizGRVi\\nGh06fg6Dyj3w3i9IzakbbXyN5ew/WORUKmo4GUSDpHu+0YsYgVopyGh7Nw==\\n-----END PUBLIC KEY-----\\n\"}",
        true,
    ),
    (
        "scheme: SendGrid, secret: {publicKey: \"-----BEGIN PUBLIC KEY-----\\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEyTNmjB73HmMlMEzDevoAeizGRVi\\nGh06fg6Dyj3w3i9IzakbbXyN5ew/WORUKmo4GUSDpHu+0YsYgVopyGh7Nw==\\n\"}",
        false,
    ),
    (
        "scheme: SendGrid, secret: {publicKey: 'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEyTNmjB73HmMlMEzDevoAeizGRVi'}",
        false,
    ),
    (
        "scheme: SendGrid, secret: {publicKey: 'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEyTNmjB73HmMlMEzDevoAeizGRViGh06fg6Dyj3w3i9IzakbbXyN5ew/WORUKmo4GUSDpHu+0YsYgVopyGh7Nx=='}",
        false,
    ),
    (
        "scheme: SendGrid, secret: {publicKey: 'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQgDQgAEEyTNmjB73HmMlMEzDevoAeizGRViGh06fg6Dyj3w3i9IzakbbXyN5ew/WORUKmo4GUSDpHu+0YsYgVopyGh7Nw=='}",
        false,
    ),
    (
        "scheme: SendGrid, secret: {publicKey: 'whpk_Yaqhe59L0dNBvZ45MDCeSVPwo/TN1WPwclvSyOSbYPA='}",
        false,
    ),
    (
        "scheme: SendGrid, secret: {publicKey: 'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEyTNmjB73HmMlMEzDevoAeizGRViGh06fg6Dyj3w3i9IzakbbXyN5ew/WORUKmo4GUSDpHu+0YsYgVopyGh7Nw==', secretRef: {name: g}}",
        false,
    ),
    (
        "scheme: SendGrid, secret: {publicKey: 'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEyTNmjB73HmMlMEzDevoAeizGRViGh06fg6Dyj3w3i9IzakbbXyN5ew/WORUKmo4GUSDpHu+0YsYgVopyGh7Nw==', generate: {}}",
        false,
    ),
    (
        "scheme: StandardWebhooks, secret: {publicKey: 'whpk_Yaqhe59L0dNBvZ45MDCeSVPwo/TN1WPwclvSyOSbYPA='}",
        true,
    ),
    (
        "scheme: StandardWebhooks, secret: {publicKey: 'whsec_Yaqhe59L0dNBvZ45MDCeSVPwo/TN1WPwclvSyOSbYPA='}",
        false,
    ),
    (
        "scheme: StandardWebhooks, secret: {publicKey: 'whpk_Yaqhe59L0dNBvZ45MDCeSVPwo/TN1WPwclvSyOSbYP='}",
        false,
    ),
    (
        "scheme: StandardWebhooks, secret: {publicKey: 'Yaqhe59L0dNBvZ45MDCeSVPwo/TN1WPwclvSyOSbYPA='}",
        false,
    ),
    (
        "secret: {publicKey: 'whpk_Yaqhe59L0dNBvZ45MDCeSVPwo/TN1WPwclvSyOSbYPA='}",
        false,
    ),
    (
        "scheme: Zoom, secret: {publicKey: 'whpk_Yaqhe59L0dNBvZ45MDCeSVPwo/TN1WPwclvSyOSbYPA='}",
        false,
    ),
    ("scheme: SendGrid, secret: {publicKey: ''}", false),
    // eventTypes: not where deliveries carry no single event type.
    (
        "scheme: Twilio, secret: {secretRef: {name: t}}, publicUrl: https://example.com/t, eventTypes: [a]",
        false,
    ),
    (
        "scheme: SendGrid, secret: {secretRef: {name: g}}, eventTypes: [delivered]",
        false,
    ),
    (
        "scheme: Zoom, secret: {secretRef: {name: z}}, eventTypes: [meeting.started]",
        true,
    ),
    // An unset tolerance is the scheme's default, and the window holds twice it.
    ("replay: {}", true),
    ("replay: {tolerance: 5m}", true),
    ("replay: {window: 10m}", true),
    ("replay: {window: 9m}", false),
    (
        "scheme: Paddle, secret: {secretRef: {name: p}}, replay: {window: 10s}",
        true,
    ),
    (
        "scheme: Paddle, secret: {secretRef: {name: p}}, replay: {window: 9s}",
        false,
    ),
    (
        "scheme: Paddle, secret: {secretRef: {name: p}}, replay: {tolerance: 1m, window: 2m}",
        true,
    ),
    (
        "scheme: Linear, secret: {secretRef: {name: l}}, replay: {window: 2m}",
        true,
    ),
    (
        "scheme: Linear, secret: {secretRef: {name: l}}, replay: {window: 119s}",
        false,
    ),
    ("scheme: Stripe, replay: {window: 9m59s}", false),
];

/// [`CASES`] and the cases too long to write out.
fn cases() -> Vec<(String, bool)> {
    let mut cases: Vec<(String, bool)> = CASES
        .iter()
        .map(|(fields, valid)| ((*fields).to_owned(), *valid))
        .collect();
    let url = |length: usize| {
        let prefix = "https://example.com/";
        format!(
            "scheme: Twilio, secret: {{secretRef: {{name: t}}}}, publicUrl: '{prefix}{}'",
            "a".repeat(length - prefix.len())
        )
    };
    cases.push((url(2048), true));
    cases.push((url(2049), false));
    cases.push((
        format!(
            "scheme: SendGrid, secret: {{publicKey: '{}'}}",
            "A".repeat(1025)
        ),
        false,
    ));
    cases
}

/// BASE with `fields` merged in (a later key replaces an earlier one in a YAML flow map
/// only through this merge: `serde_yaml` refuses duplicates).
fn spec(fields: &str) -> String {
    let mut merged: serde_yaml::Mapping = serde_yaml::from_str(&format!("{{{BASE}}}")).unwrap();
    let extra: serde_yaml::Mapping = serde_yaml::from_str(&format!("{{{fields}}}")).unwrap();
    merged.extend(extra);
    serde_yaml::to_string(&merged).unwrap()
}

fn case_endpoint(n: usize, fields: &str) -> WebhookEndpoint {
    let spec = spec(fields);
    let indented = spec.replace('\n', "\n  ");
    endpoint(&format!("case-{n}"), &format!("\n  {indented}")).unwrap()
}

/// The field the operator names, as the API server would write its path.
fn rust_field(error: &ValidateError) -> String {
    match error {
        ValidateError::Field(invalid) | ValidateError::Secret(invalid) => {
            format!("spec.{}", invalid.field)
        }
        ValidateError::SecretSource => "spec.secret".to_owned(),
        ValidateError::IdempotencyKey => "spec.idempotencyKey".to_owned(),
        ValidateError::MissingMetadata(what) => format!("metadata.{what}"),
    }
}

#[test]
fn the_table_is_what_the_rust_rules_say() {
    for (n, (fields, valid)) in cases().iter().enumerate() {
        let mut endpoint = case_endpoint(n, fields);
        endpoint.metadata.namespace = Some("ns".into());
        endpoint.metadata.uid = Some("uid".into());
        let verdict = validate(&endpoint);
        assert_eq!(verdict.is_ok(), *valid, "{fields}: {verdict:?}");
    }
}

#[tokio::test]
async fn the_api_server_and_the_operator_agree_on_every_case() {
    with_namespace("validity", |ns| async move {
        install_crd(&ns.client).await?;
        let api: Api<WebhookEndpoint> = ns.api();
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let mut disagreements = Vec::new();
        for (n, (fields, valid)) in cases().iter().enumerate() {
            let endpoint = case_endpoint(n, fields);
            let stored = api.create(&dry_run, &endpoint).await;
            match (stored, valid) {
                (Ok(_), true) => {}
                (Err(kube::Error::Api(status)), false) if status.code == 422 => {
                    // The API server names the field (or its object) the operator names.
                    let mut checked = endpoint.clone();
                    checked.metadata.namespace = Some(ns.name.clone());
                    checked.metadata.uid = Some("uid".into());
                    let field = rust_field(&validate(&checked).unwrap_err());
                    let object: String = field.split('.').take(2).collect::<Vec<_>>().join(".");
                    if !status.message.contains(&object) {
                        disagreements.push(format!(
                            "{fields}: the operator names {field}, the API server: {}",
                            status.message
                        ));
                    }
                }
                (Ok(_), false) => disagreements.push(format!(
                    "{fields}: the API server stores it, the operator refuses it"
                )),
                (Err(error), _) => disagreements.push(format!(
                    "{fields}: the operator accepts it, the API server: {error}"
                )),
            }
        }
        anyhow::ensure!(disagreements.is_empty(), "{}", disagreements.join("\n"));

        // The CRD's wide columns are accepted and show.
        api.create(&PostParams::default(), &case_endpoint(0, ""))
            .await?;
        let wide = ns
            .plane
            .run_kubectl(&["get", "whe", "-n", &ns.name, "-o", "wide"])?;
        let table = String::from_utf8_lossy(&wide.stdout);
        anyhow::ensure!(wide.status.success(), "{wide:?}");
        for column in [
            "SCHEME", "PATH", "READY", "REASON", "SECRET", "KEYS", "UPSTREAM",
        ] {
            anyhow::ensure!(table.contains(column), "no {column} in:\n{table}");
        }
        anyhow::ensure!(table.contains("8080"), "the upstream port shows:\n{table}");
        Ok(())
    })
    .await;
}

/// Values for each field, valid and not, mixed by the property test below.
fn field_values() -> impl Strategy<Value = String> {
    let path = prop::sample::select(vec![
        "/a",
        "/a%20b",
        "/web hooks",
        "/x/../y",
        "/a#b",
        "/a?b",
        "a",
        "/%zz",
        "/b",
    ]);
    let upstream_path = prop::sample::select(vec![
        "",
        ", path: /in",
        ", path: '/a#b'",
        ", path: /../x",
        ", path: in",
    ]);
    let port = prop::sample::select(vec![1i64, 8080, 9880, 9881, 0, 65535, 70000]);
    let timeout = prop::sample::select(vec!["10s", "1.5s", "0s", "1h30m", "x"]);
    let key = prop::sample::select(vec![
        "",
        ", idempotencyKey: {header: X-Id}",
        ", idempotencyKey: {header: bad header}",
        ", idempotencyKey: {jsonPointer: /id}",
        ", idempotencyKey: {jsonPointer: id}",
    ]);
    let scheme = prop::sample::select(vec![
        "Generic",
        "Stripe",
        "GitHub",
        "Slack",
        "Twilio, secret: {secretRef: {name: s}}",
        "Paddle, secret: {secretRef: {name: s}}",
        "Linear, secret: {secretRef: {name: s}}",
        "SendGrid, secret: {publicKey: 'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEyTNmjB73HmMlMEzDevoAeizGRViGh06fg6Dyj3w3i9IzakbbXyN5ew/WORUKmo4GUSDpHu+0YsYgVopyGh7Nw=='}",
    ]);
    let url = prop::sample::select(vec![
        "",
        ", publicUrl: 'https://example.com/in'",
        ", publicUrl: 'https://example.com/in?x=1'",
    ]);
    let generic = prop::sample::select(vec![
        "",
        ", generic: {eventTypeHeader: X-Event}",
        ", generic: {signatureHeader: 'a b'}",
        ", generic: {}",
    ]);
    let events = prop::sample::select(vec!["", ", eventTypes: [a.b]", ", eventTypes: ['']"]);
    let body = prop::sample::select(vec!["1Mi", "64Mi", "128Mi", "0", "1.5Mi", "7"]);
    let replay = prop::sample::select(vec![
        "",
        ", replay: {tolerance: 5m, window: 10m}",
        ", replay: {tolerance: 5m, window: 9m}",
        ", replay: {tolerance: 0s, window: 1h}",
        ", replay: {window: 9s}",
        ", replay: {window: 10m}",
    ]);
    let delivery = prop::sample::select(vec![
        "",
        ", delivery: {}",
        ", delivery: {mode: Queue, durability: Memory, retrySchedule: [1s, 1h], rateLimit: 5, maxQueuedBytes: 1Gi}",
        ", delivery: {mode: Queue, paused: true, maxQueuedBytes: 64Ki}",
        ", delivery: {retrySchedule: []}",
        ", delivery: {retrySchedule: [5s, 0s]}",
        ", delivery: {mode: Queue, maxAge: 721h}",
        ", delivery: {maxAttempts: 0}",
        ", delivery: {rateLimit: 0}",
        ", delivery: {maxQueuedBytes: 1.5Gi}",
    ]);
    (
        (path, upstream_path, port, timeout, key),
        (scheme, url, generic, events, body, replay, delivery),
    )
        .prop_map(
            |(
                (path, upstream_path, port, timeout, key),
                (scheme, url, generic, events, body, replay, delivery),
            )| {
                format!(
                    "{{scheme: {scheme}{url}, path: '{path}', upstream: {{port: {port}, timeout: {timeout}{upstream_path}}}{key}{generic}{events}, maxBodySize: '{body}'{replay}{delivery}}}"
                )
            },
        )
}

/// Writes `config` (a rendered endpoint file) and one key of its scheme, and loads it as the
/// sidecar does.
fn sidecar_loads(config: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(config).unwrap();
    let key = if value["scheme"] == "SendGrid" {
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEyTNmjB73HmMlMEzDevoAeizGRViGh06fg6Dyj3w3i9IzakbbXyN5ew/WORUKmo4GUSDpHu+0YsYgVopyGh7Nw=="
    } else {
        "whsec_c2VjcmV0LWZvci10aGUtdGVzdHM="
    };
    std::fs::write(secrets.join("k1"), key).unwrap();
    value["secretDir"] = secrets.display().to_string().into();
    let file = dir.path().join("endpoint.json");
    std::fs::write(&file, serde_json::to_vec(&value).unwrap()).unwrap();
    hookguard_sidecar::config::load_endpoint_file(&file)
        .map(drop)
        .map_err(|error| error.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn what_the_operator_renders_the_sidecar_loads_and_refusals_read_the_same(spec in field_values()) {
        let mut endpoint = endpoint("pay", &spec).unwrap();
        endpoint.metadata.namespace = Some("shop".into());
        endpoint.metadata.uid = Some("uid".into());
        match validate(&endpoint) {
            Ok(valid) => {
                let config_map = build_config_map(&valid, "ep-1").unwrap();
                let data = config_map.data.unwrap();
                let rendered = data.values().next().unwrap();
                let loaded = sidecar_loads(rendered);
                prop_assert!(loaded.is_ok(), "{spec}: the operator accepts it, the sidecar: {loaded:?}");
            }
            Err(ValidateError::Field(invalid)) => {
                // Render without checking, as an operator that skipped a rule would, and let
                // the sidecar judge: it must refuse with the operator's words.
                let Ok(mut config) = sidecar_config("pay", &endpoint.spec) else {
                    // The file cannot express this spec (a port above 65535): nothing to load.
                    return Ok(());
                };
                config.endpoint_id = "ep-1".into();
                let loaded = sidecar_loads(&serde_json::to_string(&config).unwrap());
                let expected = format!("field `{}`: {}", invalid.field, invalid.problem);
                prop_assert!(
                    loaded.as_ref().is_err_and(|message| message.contains(&expected)),
                    "{spec}: the operator says {expected:?}, the sidecar {loaded:?}"
                );
            }
            Err(other) => prop_assert!(false, "{spec}: unexpected {other:?}"),
        }
    }
}
