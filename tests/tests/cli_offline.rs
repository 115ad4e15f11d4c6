//! The CLI's offline commands, through the real `hookguard` binary as a user runs it:
//! `sign` (checked by the sidecar's own verifier, and its `--curl` command run by curl
//! against a real sidecar), `send` against a real sidecar (forwarded, duplicate, tampered,
//! stale), `verify` with its exit codes and diagnoses (`-o json`), and the help texts in
//! both invocations (`hookguard`, `kubectl hookguard`).

// clippy.toml allows unwrap/panic inside #[test] functions only; the helpers beside them are
// test code too.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use hookguard_api::Scheme;
use hookguard_api::config::EndpointConfig;
use hookguard_sidecar::verify::{GenericHeaders, SigningKey, Verifier, VerifierSettings};
use hookguard_tests::app::TestApp;
use hookguard_tests::cli::{Run, cli_binary, run};
use hookguard_tests::sidecar::SidecarHarness;

/// A Standard Webhooks secret as a sender issues it.
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn vectors_dir() -> PathBuf {
    std::env::var_os("HOOKGUARD_VECTORS_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors")),
        PathBuf::from,
    )
}

/// One vector of `shared/vectors/<file>.json`.
fn vector(file: &str, id: &str) -> Value {
    let path = vectors_dir().join(format!("{file}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("no vector {id}"))
        .clone()
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

fn hookguard(args: &[&str]) -> Run {
    run(args).unwrap()
}

/// `hookguard ARGS` off the async runtime's thread, so a sidecar on the same runtime keeps
/// serving while the CLI waits for it.
async fn hookguard_async(args: Vec<String>) -> Run {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args).unwrap()
    })
    .await
    .unwrap()
}

fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {run:#?}"))
}

/// `name: value` lines into a header map.
fn header_lines(text: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in text.lines() {
        let (name, value) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("not a header line: {line:?}"));
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn verifier(scheme: Scheme, secret: &[u8]) -> Verifier {
    Verifier::new(VerifierSettings {
        scheme,
        generic: GenericHeaders::default(),
        key_source: None,
        keys: vec![SigningKey::new(scheme, "k1", secret).unwrap()],
        tolerance: Duration::from_secs(300),
        public_url: None,
    })
}

#[test]
fn sign_prints_headers_the_sidecar_verifies() {
    let dir = tempfile::tempdir().unwrap();
    // `webhookTimestamp` (ms) is Linear's signed clock.
    let body =
        "{\"id\":\"evt_1\",\"webhookTimestamp\":1764000000000,\"note\":\"caf\u{e9} \u{1f389}\"}\n";
    let body_file = write(dir.path(), "body.json", body);
    for scheme in Scheme::ALL {
        if let Err(why) = hookguard_sidecar::sign::signable(scheme) {
            let secret_file = write(dir.path(), "k1", "a-shared-secret\n");
            let args = [
                "sign",
                "--scheme",
                scheme.cli_name(),
                "--secret-file",
                &secret_file,
                "--body",
                "{}",
            ];
            let out = hookguard(&args);
            assert_eq!(out.code, 2, "{scheme:?} cannot be signed: {out:#?}");
            assert!(
                out.stderr.contains(why.why),
                "{scheme:?} says why: {out:#?}"
            );
            continue;
        }
        // As `kubectl create secret` from an `echo`ed file: one trailing newline.
        let secret = if scheme == Scheme::StandardWebhooks {
            format!("{SW_SECRET}\n")
        } else {
            "a-shared-secret\n".to_owned()
        };
        let secret_file = write(dir.path(), "k1", &secret);
        let out = hookguard(&[
            "sign",
            "--scheme",
            scheme.cli_name(),
            "--secret-file",
            &secret_file,
            "--body-file",
            &body_file,
            "--id",
            "delivery-1",
            "--timestamp",
            "1764000000",
        ]);
        assert_eq!(out.code, 0, "{scheme:?}: {out:#?}");
        let headers = header_lines(&out.stdout);
        let verifier = verifier(scheme, secret.as_bytes());
        assert_eq!(
            verifier.verify(&headers, body.as_bytes(), 1_764_000_000),
            Ok(()),
            "{scheme:?}: {}",
            out.stdout
        );
        assert!(
            verifier
                .verify(&headers, body.trim_end().as_bytes(), 1_764_000_000)
                .is_err(),
            "{scheme:?}: the signature covers the body's exact bytes"
        );

        // -o json: the same headers.
        let out = hookguard(&[
            "sign",
            "--scheme",
            scheme.cli_name(),
            "--secret-file",
            &secret_file,
            "--body-file",
            &body_file,
            "--id",
            "delivery-1",
            "--timestamp",
            "1764000000",
            "-o",
            "json",
        ]);
        let json = json_of(&out);
        let from_json: HeaderMap = json["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v.as_str().unwrap()).unwrap(),
                )
            })
            .collect();
        assert_eq!(from_json, headers, "{scheme:?}");
    }
}

#[test]
fn sign_reads_stdin_and_env_and_refuses_bad_input() {
    let out = hookguard_tests::cli::hookguard(&[
        "sign",
        "--scheme",
        "stripe",
        "--secret-env",
        "HG_TEST_SECRET",
        "--body-file",
        "-",
        "--timestamp",
        "1764000000",
    ])
    .unwrap()
    .env("HG_TEST_SECRET", "whsec_test")
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .and_then(|mut child| {
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(b"{\"a\":1}")?;
        child.wait_with_output()
    })
    .unwrap();
    let out = Run::from(out);
    assert_eq!(out.code, 0, "{out:#?}");
    let headers = header_lines(&out.stdout);
    assert_eq!(
        verifier(Scheme::Stripe, b"whsec_test").verify(&headers, b"{\"a\":1}", 1_764_000_000),
        Ok(())
    );
    // A Standard Webhooks secret that is not base64: bad input, said why.
    let out = hookguard(&[
        "sign",
        "--scheme",
        "standard-webhooks",
        "--secret-env",
        "HG_TEST_UNSET_VARIABLE",
        "--body",
        "{}",
    ]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr.contains("HG_TEST_UNSET_VARIABLE"),
        "{}",
        out.stderr
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad", "whsec_!!!!");
    let out = hookguard(&[
        "sign",
        "--scheme",
        "standard-webhooks",
        "--secret-file",
        &bad,
        "--body",
        "{}",
    ]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("base64"), "{}", out.stderr);
}

fn endpoint(name: &str, scheme: Scheme, app_port: u16) -> EndpointConfig {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "endpointId": format!("{name}-id"),
        "path": format!("/{name}"),
        "scheme": scheme.as_str(),
        "upstream": {"port": app_port, "timeout": "2s"},
        "secretDir": "",
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_curl_prints_a_command_a_sidecar_accepts() {
    let app = TestApp::ok().await.unwrap();
    let sidecar = SidecarHarness::start(
        vec![(endpoint("gh", Scheme::GitHub, app.port()), "gh-secret")],
        &[],
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = write(dir.path(), "k1", "gh-secret");
    // Pretty JSON with a trailing newline: curl must send it byte for byte.
    let body = write(dir.path(), "push event.json", "{\n  \"ref\": \"main\"\n}\n");
    let url = format!("{}/gh", sidecar.base_url());
    let out = hookguard_async(
        [
            "sign",
            "--scheme",
            "github",
            "--secret-file",
            &secret,
            "--body-file",
            &body,
            "--id",
            "curl-1",
            "--curl",
            &url,
        ]
        .map(str::to_owned)
        .to_vec(),
    )
    .await;
    assert_eq!(out.code, 0, "{out:#?}");
    let command = out.stdout.trim().to_owned();
    assert!(command.starts_with("curl "), "{command}");
    assert!(
        command.contains(&format!("--data-binary '@{body}'")),
        "{command}"
    );
    assert!(
        command.contains("-H 'x-github-delivery: curl-1'"),
        "{command}"
    );
    let answer = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let answer = String::from_utf8_lossy(&answer.stdout).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(app.arrivals("curl-1"), 1);

    // GitHub signs no timestamp: a --stale delivery is accepted, and `send` says why.
    let out = hookguard_async(
        [
            "send",
            &url,
            "--scheme",
            "github",
            "--secret-file",
            &secret,
            "--stale",
            "1h",
            "--id",
            "stale-gh",
            "-o",
            "json",
        ]
        .map(str::to_owned)
        .to_vec(),
    )
    .await;
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(json_of(&out)["answers"][0]["status"], 200);
    assert!(
        out.stderr.contains("GitHub signs no timestamp"),
        "{}",
        out.stderr
    );
    assert_eq!(app.arrivals("stale-gh"), 1);
}

#[test]
fn send_gives_up_after_its_timeout_with_exit_124() {
    // Connections are accepted (by the kernel's backlog) and never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let secret = write(dir.path(), "k1", "s");
    let out = hookguard(&[
        "send",
        &url,
        "--scheme",
        "generic",
        "--secret-file",
        &secret,
        "--timeout",
        "1s",
    ]);
    assert_eq!(out.code, 124, "{out:#?}");
    assert!(
        out.stderr.contains("request 1: no answer within 1s"),
        "{}",
        out.stderr
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_shows_forwarded_duplicate_tampered_and_stale_answers() {
    let app = TestApp::ok().await.unwrap();
    let sidecar = SidecarHarness::start(
        vec![(
            endpoint("sw", Scheme::StandardWebhooks, app.port()),
            SW_SECRET,
        )],
        &[],
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = write(dir.path(), "k1", SW_SECRET);
    let url = format!("{}/sw", sidecar.base_url());
    let send = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "send",
            &url,
            "--scheme",
            "standard-webhooks",
            "--secret-file",
            &secret,
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        hookguard_async(args)
    };

    // The first copy is forwarded to the app, the two --dup copies are answered as duplicates.
    let out = send(&["--id", "dup-1", "--dup", "2", "-o", "json"]).await;
    assert_eq!(out.code, 0, "{out:#?}");
    let json = json_of(&out);
    let answers = json["answers"].as_array().unwrap();
    let seen: Vec<(u64, Option<&str>)> = answers
        .iter()
        .map(|a| (a["status"].as_u64().unwrap(), a["outcome"].as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (200, None),
            (200, Some("duplicate")),
            (200, Some("duplicate"))
        ]
    );
    assert_eq!(answers[0]["bodyFirstLine"], "app 200 OK");
    assert_eq!(json["asExpected"], true);
    assert_eq!(app.arrivals("dup-1"), 1, "the app saw the delivery once");

    // Text: one line per answer, with status, outcome and the body's first line.
    let out = send(&["--id", "dup-2", "--dup", "1"]).await;
    assert_eq!(out.code, 0, "{out:#?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("#1  200") && lines[0].ends_with("app 200 OK"),
        "{}",
        out.stdout
    );
    assert!(
        lines[1].starts_with("#2  200") && lines[1].contains("outcome: duplicate"),
        "{}",
        out.stdout
    );
    assert!(lines[2].contains("accepted as expected"), "{}", out.stdout);

    // A byte changed after signing: refused with 401, which is what --tamper expects.
    let out = send(&["--id", "tampered-1", "--tamper", "-o", "json"]).await;
    assert_eq!(out.code, 0, "{out:#?}");
    let json = json_of(&out);
    assert_eq!(json["answers"][0]["status"], 401);
    assert_eq!(json["answers"][0]["outcome"], "unauthorized");
    assert_eq!(json["expect"], "refused");
    assert_eq!(app.arrivals("tampered-1"), 0);

    // Signed ten minutes ago: outside the 5-minute tolerance.
    let out = send(&["--id", "stale-1", "--stale", "10m", "-o", "json"]).await;
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(json_of(&out)["answers"][0]["status"], 401);
    assert_eq!(app.arrivals("stale-1"), 0);

    // A wrong secret: the plain send is refused, and the exit status says so.
    let wrong = write(
        dir.path(),
        "wrong",
        format!("whsec_{}", STANDARD.encode(b"another key")),
    );
    let out = hookguard_async(
        [
            "send",
            &url,
            "--scheme",
            "standard-webhooks",
            "--secret-file",
            &wrong,
        ]
        .map(str::to_owned)
        .to_vec(),
    )
    .await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stdout.contains("401") && out.stdout.contains("outcome: unauthorized"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("expected accepted: not so"),
        "{}",
        out.stdout
    );
}

/// Writes a vector's headers (as a JSON object) and body; returns the two paths.
fn vector_files(dir: &Path, headers: &Value, body: &[u8]) -> (String, String) {
    let headers = write(dir, "headers.json", serde_json::to_vec(headers).unwrap());
    let body = write(dir, "body.bin", body);
    (headers, body)
}

fn verify_json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = hookguard(&all);
    (out.code, json_of(&out))
}

fn codes(json: &Value) -> Vec<String> {
    json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_owned())
        .collect()
}

/// The diagnoses `verify` must give, one line each: the vector, `--scheme`, the secret given
/// (`given`: the vector's; `base64`: base64 of it; `+ws`: with " \n\n" appended; anything
/// else: that literal), the body (`keep`, or `+nl`: a newline appended), the cause's code.
const DIAGNOSES: &[&str] = &[
    "stripe/valid-basic                          standard-webhooks  given   keep  HG-V001",
    "slack/invalid-missing-timestamp             slack              given   keep  HG-V002",
    "shopify/invalid-hex-encoding                shopify            given   keep  HG-V004",
    "generic-hex/invalid-prefixed                generic            given   keep  HG-V004",
    "stripe/valid-basic                          stripe             sk_live_51Habcdefghijklmno  keep  HG-V010",
    "github/valid-basic                          github             +ws     keep  HG-V011",
    "github/valid-basic                          github             base64  keep  HG-V014",
    "stripe/invalid-expired                      stripe             given   keep  HG-V020",
    "stripe/invalid-signed-reserialized-json     stripe             given   keep  HG-V030",
    "github/valid-basic                          github             given   +nl   HG-V031",
    "stripe/invalid-wrong-secret                 stripe             given   keep  HG-V090",
    "standard-webhooks/invalid-tampered-body     standard-webhooks  given   keep  HG-V090",
];

fn body_of(v: &Value) -> Vec<u8> {
    STANDARD.decode(v["body_b64"].as_str().unwrap()).unwrap()
}

#[test]
fn verify_invalid_exits_1_with_the_diagnosis_as_json() {
    let dir = tempfile::tempdir().unwrap();
    for line in DIAGNOSES {
        let [id, scheme, secret, body_as, code] = line.split_whitespace().collect::<Vec<_>>()[..]
        else {
            panic!("bad case {line}");
        };
        let v = vector(id.split('/').next().unwrap(), id);
        let given = v["secret"].as_str().unwrap();
        let secret_text = match secret {
            "given" => given.to_owned(),
            "base64" => STANDARD.encode(given),
            "+ws" => format!("{given} \n\n"),
            literal => literal.to_owned(),
        };
        let mut body = body_of(&v);
        if body_as == "+nl" {
            body.push(b'\n');
        }
        let secret_file = write(dir.path(), "secret", &secret_text);
        let (headers, body) = vector_files(dir.path(), &v["headers"], &body);
        let now = v["now_unix"].to_string();
        let (exit, json) = verify_json(&[
            "--scheme",
            scheme,
            "--secret-file",
            &secret_file,
            "--headers-file",
            &headers,
            "--body-file",
            &body,
            "--now",
            &now,
        ]);
        assert_eq!(exit, 1, "{id}: {json:#}");
        assert_eq!(json["valid"], false, "{id}");
        let first_error = json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["level"] == "error")
            .unwrap_or_else(|| panic!("{id}: no cause: {json:#}"));
        assert_eq!(first_error["code"], code, "{id}: {json:#}");
        for key in ["finding", "fix", "docs"] {
            assert!(
                !first_error[key].as_str().unwrap().is_empty(),
                "{id}: {key}"
            );
        }
        assert!(
            first_error["docs"]
                .as_str()
                .unwrap()
                .ends_with("README.md#troubleshooting")
        );
        // Never the secret itself.
        assert!(
            !json.to_string().contains(given),
            "{id}: the secret is printed"
        );
    }
}

#[test]
fn verify_valid_exits_0_and_names_the_rotation_key() {
    let dir = tempfile::tempdir().unwrap();
    // Valid, with svix-* headers (reported as accepted aliases), and which rotation key matched.
    let v = vector(
        "standard-webhooks",
        "standard-webhooks/valid-svix-branded-headers",
    );
    let (headers, body) = vector_files(dir.path(), &v["headers"], &body_of(&v));
    let old = write(
        dir.path(),
        "old",
        format!("whsec_{}", STANDARD.encode(b"the rotated-out key")),
    );
    let current = write(dir.path(), "current", v["secret"].as_str().unwrap());
    let now = v["now_unix"].to_string();
    let (exit, json) = verify_json(&[
        "--scheme",
        "standard-webhooks",
        "--secret-file",
        &old,
        "--secret-file",
        &current,
        "--headers-file",
        &headers,
        "--body-file",
        &body,
        "--now",
        &now,
    ]);
    assert_eq!(exit, 0, "{json:#}");
    assert_eq!(json["valid"], true);
    assert_eq!(json["matchedKey"], "current");
    assert_eq!(codes(&json), ["HG-V003", "HG-V006"]);

    // The default clock is now: the 2025 vector is stale today, its signature still valid.
    let (exit, json) = verify_json(&[
        "--scheme",
        "standard-webhooks",
        "--secret-file",
        &current,
        "--headers-file",
        &headers,
        "--body-file",
        &body,
    ]);
    assert_eq!(exit, 1);
    assert!(codes(&json).contains(&"HG-V020".to_owned()), "{json:#}");
    // A wider --tolerance accepts it.
    let (exit, _) = verify_json(&[
        "--scheme",
        "standard-webhooks",
        "--secret-file",
        &current,
        "--headers-file",
        &headers,
        "--body-file",
        &body,
        "--tolerance",
        "100000h",
    ]);
    assert_eq!(exit, 0);
}

/// One vector of the repository's `vectors/<file>.json` (the senders added later).
fn repo_vector(file: &str, id: &str) -> Value {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../vectors"))
        .join(format!("{file}.json"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("no vector {id} in {}", path.display()))
        .clone()
}

/// Twilio signs the URL it called: `--url` gives it, query included, and without it the
/// signature cannot match.
#[test]
fn verify_takes_the_url_twilio_signed() {
    let dir = tempfile::tempdir().unwrap();
    let v = repo_vector("twilio", "twilio/valid-sms-form");
    let (headers, body) = vector_files(dir.path(), &v["headers"], &body_of(&v));
    let secret = write(dir.path(), "token", v["secret"].as_str().unwrap());
    let now = v["now_unix"].to_string();
    let url = v["url"].as_str().unwrap();
    let args = |with_url: bool| {
        let mut args = vec![
            "--scheme",
            "twilio",
            "--secret-file",
            &secret,
            "--headers-file",
            &headers,
            "--body-file",
            &body,
            "--now",
            &now,
        ];
        if with_url {
            args.extend(["--url", url]);
        }
        args
    };
    let (exit, json) = verify_json(&args(true));
    assert_eq!((exit, &json["valid"]), (0, &Value::Bool(true)), "{json:#}");
    let (exit, json) = verify_json(&args(false));
    assert_eq!((exit, &json["valid"]), (1, &Value::Bool(false)), "{json:#}");
}

#[test]
fn verify_diagnoses_requests_made_with_sign() {
    let dir = tempfile::tempdir().unwrap();
    let sign = |scheme: &str, secret: &str, body: &str| {
        let secret = write(dir.path(), "signing-secret", secret);
        let body = write(dir.path(), "signed-body", body);
        let out = hookguard(&[
            "sign",
            "--scheme",
            scheme,
            "--secret-file",
            &secret,
            "--body-file",
            &body,
            "--timestamp",
            "1764000000",
        ]);
        assert_eq!(out.code, 0, "{out:#?}");
        write(dir.path(), "headers.txt", out.stdout)
    };
    let verify = |scheme: &str, secret: &str, headers: &str, body: &str| {
        let secret = write(dir.path(), "verify-secret", secret);
        let body = write(dir.path(), "received-body", body);
        let out = hookguard(&[
            "verify",
            "--scheme",
            scheme,
            "--secret-file",
            &secret,
            "--headers-file",
            headers,
            "--body-file",
            &body,
            "--now",
            "1764000000",
        ]);
        (out.code, out.stdout)
    };
    let body = r#"{"type":"invoice.paid","id":"evt_1"}"#;

    // A Stripe secret on a Standard Webhooks endpoint (verbatim vs decoded), both ways.
    let stripe_secret = "whsec_d6f3DNlLl71wMKNxJ9yxRIwHr3LZg0WZ";
    let headers = sign("stripe", stripe_secret, body);
    let (exit, text) = verify("stripe", stripe_secret, &headers, body);
    assert_eq!(
        (exit, text.lines().next()),
        (0, Some("VALID (key verify-secret matched)"))
    );
    let headers = write(
        dir.path(),
        "headers-as-sw.txt",
        format!(
            "webhook-id: msg_1\nwebhook-timestamp: 1764000000\nwebhook-signature: v1,{}\n",
            STANDARD.encode(hookguard_sidecar::sign::hmac_sha256(
                stripe_secret.as_bytes(),
                &[b"msg_1.1764000000.", body.as_bytes()]
            ))
        ),
    );
    let (exit, text) = verify("standard-webhooks", stripe_secret, &headers, body);
    assert_eq!(exit, 1);
    assert!(text.starts_with("INVALID: "), "{text}");
    assert!(
        text.contains("× HG-V012 ") && text.contains("looks like a Stripe secret"),
        "{text}"
    );
    let headers = sign("standard-webhooks", SW_SECRET, body);
    let (exit, text) = verify("generic", SW_SECRET, &headers, body);
    assert_eq!(exit, 1);
    assert!(text.contains("HG-V001"), "wrong scheme named first: {text}");

    // A Slack slash command whose form body a proxy re-encoded.
    let form = "command=%2Fdeploy&text=api%20v2&team_id=T1";
    let headers = sign("slack", "8f742231b10e8888abcd99yyyzzz85a5", form);
    let (exit, text) = verify(
        "slack",
        "8f742231b10e8888abcd99yyyzzz85a5",
        &headers,
        &form.replace("%20", "+"),
    );
    assert_eq!(exit, 1);
    assert!(text.contains("× HG-V033 "), "{text}");
    assert!(
        text.contains("fix: ") && text.contains("see https://"),
        "{text}"
    );
}

#[test]
fn verify_bad_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let secret = write(dir.path(), "k1", "s");
    let body = write(dir.path(), "body", "{}");
    let headers = write(
        dir.path(),
        "headers",
        "x-signature: ab\nnot a header line\n",
    );
    for (args, says) in [
        (
            vec![
                "--secret-file",
                &secret,
                "--headers-file",
                &headers,
                "--body-file",
                &body,
            ],
            "headers file line 2",
        ),
        (
            vec![
                "--secret-file",
                "/nonexistent/k1",
                "--headers-file",
                &headers,
                "--body-file",
                &body,
            ],
            "cannot read the secret file",
        ),
        (
            vec![
                "--secret-file",
                &secret,
                "--headers-file",
                "-",
                "--body-file",
                "-",
            ],
            "only one of",
        ),
        // A usage error, from clap: no secret at all.
        (
            vec!["--headers-file", &headers, "--body-file", &body],
            "--secret-file",
        ),
    ] {
        let mut all = vec!["verify", "--scheme", "generic"];
        all.extend(args);
        let out = hookguard(&all);
        assert_eq!(out.code, 2, "{all:?}: {out:#?}");
        assert!(out.stderr.contains(says), "{all:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{all:?}: {}", out.stdout);
    }
}

#[test]
fn help_texts_document_every_flag_and_plugin_mode_says_kubectl_hookguard() {
    let out = hookguard(&["--help"]);
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("Usage: hookguard "), "{}", out.stdout);
    for command in ["sign", "send", "verify"] {
        assert!(
            out.stdout.contains(&format!("  {command} ")),
            "{command}: {}",
            out.stdout
        );
        let help = hookguard(&[command, "--help"]);
        assert_eq!(help.code, 0, "{command}");
        assert!(
            help.stdout.contains("Examples:"),
            "{command}: {}",
            help.stdout
        );
        assert!(help.stdout.contains("--scheme <SCHEME>"), "{command}");
    }
    let send = hookguard(&["send", "--help"]).stdout;
    assert!(
        send.contains("Exit status: 0 when the answers are what the flags predict"),
        "{send}"
    );
    let verify = hookguard(&["verify", "--help"]).stdout;
    assert!(verify.contains("0 VALID, 1 INVALID"), "{verify}");

    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-hookguard");
    std::os::unix::fs::symlink(cli_binary().unwrap(), &plugin).unwrap();
    let out: Run = std::process::Command::new(&plugin)
        .args(["verify", "--help"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stdout.contains("Usage: kubectl hookguard verify "),
        "{}",
        out.stdout
    );
    let out: Run = std::process::Command::new(&plugin)
        .arg("--help")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
        .into();
    assert!(
        out.stdout.contains("Usage: kubectl hookguard "),
        "{}",
        out.stdout
    );
}
