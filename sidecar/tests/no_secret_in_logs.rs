//! A full run of the real `hookguard-sidecar` binary at debug log level — deliveries that
//! pass, repeat, fail verification, go stale, and a reload with a broken key — then a grep of
//! every log line and the metrics for any secret, key or signature value. None may appear.

// clippy.toml allows unwrap/panic inside #[test] functions only; the helpers beside them are
// test code too. A scenario reads best as one function, however long.
#![allow(clippy::unwrap_used, clippy::panic, clippy::too_many_lines)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

const GENERIC_SECRET: &str = "generic-secret-value-4f9a1c";
const SVIX_KEY: &[u8] = b"svix-key-material-0123456789abcd";
const BROKEN_KEY_MARKER: &str = "broken-key-marker-7d2e";

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    hookguard_sidecar::sign::hmac_sha256(key, parts).to_vec()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_app() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service_fn(|_request| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                    Bytes::from_static(b"ok\n"),
                )))
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    port
}

#[tokio::test]
async fn no_secret_or_signature_appears_in_logs_or_metrics() {
    let app_port = start_app().await;
    let dir = tempfile::tempdir().unwrap();
    let endpoints = dir.path().join("endpoints");
    let generic_keys = dir.path().join("secrets/generic");
    let svix_keys = dir.path().join("secrets/svix");
    for d in [&endpoints, &generic_keys, &svix_keys] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(generic_keys.join("k1"), GENERIC_SECRET).unwrap();
    let svix_secret = format!("whsec_{}", STANDARD.encode(SVIX_KEY));
    std::fs::write(svix_keys.join("k1"), &svix_secret).unwrap();
    let endpoint = |name: &str, scheme: &str, keys: &std::path::Path| {
        json!({"name": name, "endpointId": name, "path": format!("/{name}"), "scheme": scheme,
               "upstream": {"port": app_port}, "secretDir": keys})
    };
    std::fs::write(
        endpoints.join("generic.json"),
        endpoint("generic", "Generic", &generic_keys).to_string(),
    )
    .unwrap();
    std::fs::write(
        endpoints.join("svix.json"),
        endpoint("svix", "StandardWebhooks", &svix_keys).to_string(),
    )
    .unwrap();

    let (port, admin_port) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookguard-sidecar"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin_port}"),
        ])
        .args([
            "--config-dir",
            endpoints.to_str().unwrap(),
            "--log-format",
            "json",
            "--log",
            "debug",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let client = Client::builder(TokioExecutor::new()).build_http();
    let send = |path: &str, headers: Vec<(&'static str, String)>, body: &'static str| {
        let mut request = hyper::Request::post(format!("http://127.0.0.1:{port}{path}"));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        let client = client.clone();
        async move {
            let response = client.request(request).await.unwrap();
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            status
        }
    };
    let ready_deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_err() {
        assert!(Instant::now() < ready_deadline, "the sidecar did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let body = r#"{"id":"evt-1","type":"invoice.paid"}"#;
    let generic_sig = hex::encode(hmac(GENERIC_SECRET.as_bytes(), &[body.as_bytes()]));
    let generic = |sig: &str, id: &str| {
        vec![
            ("x-signature", sig.to_owned()),
            ("x-delivery-id", id.to_owned()),
        ]
    };
    assert_eq!(
        send("/generic", generic(&generic_sig, "d-1"), body).await,
        200
    );
    assert_eq!(
        send("/generic", generic(&generic_sig, "d-1"), body).await,
        200
    );
    assert_eq!(
        send(
            "/generic",
            generic(&generic_sig, "d-2"),
            r#"{"id":"evt-1","type":"tampered"}"#
        )
        .await,
        401
    );
    let wrong = hex::encode(hmac(b"wrong", &[body.as_bytes()]));
    assert_eq!(send("/generic", generic(&wrong, "d-3"), body).await, 401);

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let svix = |ts: u64, id: &str| {
        let signature = STANDARD.encode(hmac(
            SVIX_KEY,
            &[
                id.as_bytes(),
                b".",
                ts.to_string().as_bytes(),
                b".",
                body.as_bytes(),
            ],
        ));
        (
            signature.clone(),
            vec![
                ("webhook-id", id.to_owned()),
                ("webhook-timestamp", ts.to_string()),
                ("webhook-signature", format!("v1,{signature}")),
            ],
        )
    };
    let (fresh_sig, fresh) = svix(now, "msg_1");
    assert_eq!(send("/svix", fresh, body).await, 200);
    let (stale_sig, stale) = svix(now - 3600, "msg_2");
    assert_eq!(send("/svix", stale, body).await, 401);

    // A broken key on reload: the error is logged, the key is not.
    std::fs::write(svix_keys.join("k1"), format!("whsec_{BROKEN_KEY_MARKER}!!")).unwrap();
    let metrics_url = format!("http://127.0.0.1:{admin_port}/metrics");
    let reload_deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let response = client
            .request(
                hyper::Request::get(&metrics_url)
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let text = String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        if text.contains("hookguard_config_last_reload_ok 0") {
            break text;
        }
        assert!(
            Instant::now() < reload_deadline,
            "the broken key file was never reloaded:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The last good key still verifies.
    let (_, again) = svix(now, "msg_3");
    assert_eq!(send("/svix", again, body).await, 200);

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let exit_deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < exit_deadline,
            "the sidecar did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "graceful shutdown exits 0: {status}");
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();

    // The logs are real: one line per delivery, the reload failure, the shutdown.
    for expected in [
        "\"outcome\":\"forwarded\"",
        "\"outcome\":\"duplicate\"",
        "\"outcome\":\"unauthorized\"",
        "configuration reload failed",
        "stopped",
    ] {
        assert!(
            logs.contains(expected),
            "expected {expected:?} in the logs:\n{logs}"
        );
    }
    let forbidden = [
        GENERIC_SECRET.to_owned(),
        svix_secret.clone(),
        STANDARD.encode(SVIX_KEY),
        String::from_utf8_lossy(SVIX_KEY).into_owned(),
        BROKEN_KEY_MARKER.to_owned(),
        generic_sig,
        wrong,
        fresh_sig,
        stale_sig,
    ];
    for secret in &forbidden {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret or signature value appears in the logs: {secret}"
        );
        assert!(
            !metrics.contains(secret.as_str()),
            "a secret or signature value appears in the metrics: {secret}"
        );
    }
}
