use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, Parser as _};
use hookguard_api::config::{CONFIG_FILE_NAME, Scheme};
use rstest::rstest;
use serde_json::{Value, json};

use super::*;

fn minimal(secret_dir: &Path) -> Value {
    json!({
        "name": "payments",
        "endpointId": "ep-1",
        "path": "/webhooks/payments",
        "scheme": "Generic",
        "upstream": {"port": 8080},
        "secretDir": secret_dir,
    })
}

/// A config dir with one endpoint file built by `edit`, and a secret dir with one key.
fn setup(edit: impl FnOnce(&mut Value)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("k1"), "s3cret-material\n").unwrap();
    let endpoints = dir.path().join("endpoints");
    std::fs::create_dir(&endpoints).unwrap();
    let mut config = minimal(&secrets);
    edit(&mut config);
    std::fs::write(
        endpoints.join("payments.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    (dir, endpoints)
}

fn load_error(edit: impl FnOnce(&mut Value)) -> String {
    let (_dir, endpoints) = setup(edit);
    load_endpoints(&endpoints).unwrap_err().to_string()
}

#[test]
fn args_are_consistent() {
    Args::command().debug_assert();
}

#[test]
fn a_minimal_endpoint_loads_with_defaults() {
    let (_dir, endpoints) = setup(|_| {});
    let loaded = load_endpoints(&endpoints).unwrap();
    let endpoint = loaded.route("/webhooks/payments").unwrap();
    assert_eq!(endpoint.upstream_timeout, Duration::from_secs(10));
    assert_eq!(endpoint.lease, Duration::from_secs(25));
    assert_eq!(endpoint.window, Duration::from_secs(24 * 3600));
    assert_eq!(endpoint.max_body_size, 1 << 20);
    assert!(
        endpoint.dedup_on_body,
        "Generic signs neither ID nor timestamp"
    );
    assert_eq!(endpoint.verifier.scheme(), Scheme::Generic);
    assert!(loaded.route("/other").is_none());
}

#[rstest]
#[case::tolerance(|c: &mut Value| c["replay"] = json!({"tolerance": "5 minutes"}), "field `replay.tolerance`", "1h30m")]
#[case::window(|c: &mut Value| c["replay"] = json!({"tolerance": "10m", "window": "15m"}), "field `replay.window`", "twice")]
#[case::generic_on_stripe(|c: &mut Value| { c["scheme"] = json!("Stripe"); c["generic"] = json!({}); }, "field `generic`", "only the Generic scheme")]
#[case::path(|c: &mut Value| c["path"] = json!("webhooks"), "field `path`", "must start with '/'")]
#[case::body_size(|c: &mut Value| c["maxBodySize"] = json!("1GB"), "field `maxBodySize`", "64Ki")]
#[case::body_too_big(|c: &mut Value| c["maxBodySize"] = json!("1Gi"), "field `maxBodySize`", "between 1 and 64Mi")]
#[case::pointer(|c: &mut Value| c["idempotencyKey"] = json!({"jsonPointer": "id"}), "field `idempotencyKey.jsonPointer`", "/id")]
#[case::header(|c: &mut Value| c["idempotencyKey"] = json!({"header": "bad header"}), "field `idempotencyKey.header`", "header name")]
#[case::port(|c: &mut Value| c["upstream"] = json!({"port": 0}), "field `upstream.port`", "1 to 65535")]
#[case::timeout(|c: &mut Value| c["upstream"] = json!({"port": 1, "timeout": "0s"}), "field `upstream.timeout`", "longer than zero")]
#[case::endpoint_id(|c: &mut Value| c["endpointId"] = json!("a{b}"), "field `endpointId`", "A-Z")]
#[case::events_generic(|c: &mut Value| c["eventTypes"] = json!(["a"]), "field `eventTypes`", "eventTypeHeader")]
#[case::secret_dir(|c: &mut Value| c["secretDir"] = json!("/nonexistent/hookguard"), "field `secretDir`", "mount the endpoint's signing Secret")]
#[case::unknown_field(|c: &mut Value| c["maxBodySise"] = json!("1Mi"), "unknown field `maxBodySise`", "payments.json")]
fn bad_values_are_refused_with_file_field_and_fix(
    #[case] edit: fn(&mut Value),
    #[case] field: &str,
    #[case] fix: &str,
) {
    let message = load_error(edit);
    assert!(
        message.contains("payments.json"),
        "names the file: {message}"
    );
    assert!(message.contains(field), "names the field: {message}");
    assert!(message.contains(fix), "says how to fix it: {message}");
}

#[test]
fn a_bad_standard_webhooks_key_is_refused_without_showing_it() {
    let (dir, endpoints) = setup(|c| c["scheme"] = json!("StandardWebhooks"));
    std::fs::write(dir.path().join("secrets/k1"), "whsec_not*base64*at*all").unwrap();
    let message = load_endpoints(&endpoints).unwrap_err().to_string();
    assert!(
        message.contains("field `secretDir`") && message.contains("k1"),
        "{message}"
    );
    assert!(
        !message.contains("not*base64"),
        "the key must not appear in the error: {message}"
    );
}

#[test]
fn an_empty_secret_dir_is_refused() {
    let (dir, endpoints) = setup(|_| {});
    std::fs::remove_file(dir.path().join("secrets/k1")).unwrap();
    let message = load_endpoints(&endpoints).unwrap_err().to_string();
    assert!(message.contains("holds no key file"), "{message}");
}

#[test]
fn two_endpoints_on_one_path_name_both_files() {
    let (dir, endpoints) = setup(|_| {});
    let other = minimal(&dir.path().join("secrets"));
    std::fs::write(
        endpoints.join("other.json"),
        serde_json::to_vec(&other).unwrap(),
    )
    .unwrap();
    let message = load_endpoints(&endpoints).unwrap_err().to_string();
    assert!(
        message.contains("other.json") && message.contains("payments.json"),
        "{message}"
    );
}

#[test]
fn every_bad_file_is_reported_at_once() {
    let (_dir, endpoints) = setup(|_| {});
    std::fs::write(endpoints.join("a.json"), "{").unwrap();
    std::fs::write(endpoints.join("b.json"), "{\"name\": 1}").unwrap();
    let errors = load_endpoints(&endpoints).unwrap_err();
    assert_eq!(errors.0.len(), 2, "{errors}");
}

#[test]
fn an_empty_dir_and_a_stray_file_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let message = load_endpoints(dir.path()).unwrap_err().to_string();
    assert!(message.contains("no endpoint configuration"), "{message}");
    std::fs::write(dir.path().join("notes.txt"), "").unwrap();
    let message = load_endpoints(dir.path()).unwrap_err().to_string();
    assert!(
        message.contains("notes.txt") && message.contains("not an endpoint file"),
        "{message}"
    );
}

/// Kubernetes mounts a ConfigMap as `..2026_…/endpoint.json`, `..data -> ..2026_…` and
/// `endpoint.json -> ..data/endpoint.json`; the hidden entries must be skipped.
#[test]
fn configmap_volume_layout_loads() {
    let (dir, _) = setup(|_| {});
    let config = serde_json::to_vec(&minimal(&dir.path().join("secrets"))).unwrap();
    let volume = dir.path().join("volumes/payments");
    let timestamped = volume.join("..2026_11_27_12_00_00.000000001");
    std::fs::create_dir_all(&timestamped).unwrap();
    std::fs::write(timestamped.join(CONFIG_FILE_NAME), config).unwrap();
    std::os::unix::fs::symlink("..2026_11_27_12_00_00.000000001", volume.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/endpoint.json", volume.join(CONFIG_FILE_NAME)).unwrap();
    let loaded = load_endpoints(&dir.path().join("volumes")).unwrap();
    assert_eq!(loaded.len(), 1);
}

#[test]
fn keys_are_every_visible_file_of_the_secret_dir() {
    let (dir, endpoints) = setup(|_| {});
    std::fs::write(dir.path().join("secrets/k2"), "another").unwrap();
    std::fs::write(dir.path().join("secrets/.hidden"), "").unwrap();
    let loaded = load_endpoints(&endpoints).unwrap();
    let endpoint = loaded.route("/webhooks/payments").unwrap();
    let debug = format!("{:?}", endpoint.verifier);
    assert!(debug.contains("k1") && debug.contains("k2"), "{debug}");
    assert!(
        !debug.contains("s3cret-material") && !debug.contains("another"),
        "no key material in Debug: {debug}"
    );
}

#[rstest]
#[case(&["--listen", "9880"], "--listen", "socket address")]
#[case(&["--store", "memcached://x"], "--store", "redis://host:6379/0")]
#[case(&["--store-timeout", "soon"], "--store-timeout", "1h30m")]
#[case(&["--memory-max-bytes", "12"], "--memory-max-entries", "4Ki")]
#[case(&["--store", "rediss://r:6380", "--store-ca-file", "/nonexistent/ca.pem"], "--store-ca-file", "mount the Redis CA")]
#[case(&["--store", "redis://r:6379", "--store-ca-file", "/dev/null"], "--store-ca-file", "rediss://")]
#[case(&["--store-mode", "cluster"], "--store-mode", "redis://host:port")]
#[case(&["--store", "redis://a:1,redis://b:2"], "--store", "only with --store-mode cluster")]
fn bad_flags_are_refused_with_the_flag_and_env(
    #[case] flags: &[&str],
    #[case] flag: &str,
    #[case] fix: &str,
) {
    let args =
        Args::try_parse_from(std::iter::once("hookguard-sidecar").chain(flags.iter().copied()))
            .unwrap();
    let message = Settings::try_from(args).unwrap_err().to_string();
    assert!(
        message.starts_with(flag) && message.contains("HOOKGUARD_"),
        "{message}"
    );
    assert!(message.contains(fix), "{message}");
}

#[test]
fn flag_defaults_make_valid_settings() {
    let settings =
        Settings::try_from(Args::try_parse_from(["hookguard-sidecar"]).unwrap()).unwrap();
    assert_eq!(settings.listen.port(), 9880);
    assert_eq!(settings.admin_listen.port(), 9881);
    assert!(matches!(settings.store, StoreSettings::Memory(_)));
    assert_eq!(settings.store_timeout, Duration::from_millis(250));
}

#[test]
fn an_unsigned_delivery_id_header_binds_dedup_to_the_body_even_on_signed_schemes() {
    let body_bound = |edit: fn(&mut Value)| {
        let (_dir, endpoints) = setup(edit);
        load_endpoints(&endpoints)
            .unwrap()
            .route("/webhooks/payments")
            .unwrap()
            .dedup_on_body
    };
    assert!(
        !body_bound(|c| c["scheme"] = json!("Slack")),
        "Slack's /event_id is in the signed body"
    );
    assert!(body_bound(|c| {
        c["scheme"] = json!("Slack");
        c["idempotencyKey"] = json!({"header": "X-Request-Id"});
    }));
    assert!(!body_bound(|c| {
        c["scheme"] = json!("Slack");
        c["idempotencyKey"] = json!({"jsonPointer": "/event/id"});
    }));
}
