//! The Redis store over TLS with a password, against a real `redis-server` started with
//! `--tls-port` and `--requirepass`: what managed Redis offerings require.

// clippy.toml allows unwrap/panic inside #[test] functions only; the helper beside them is
// test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hookguard_sidecar::dedup::{ClaimOutcome, DedupStore, DeliveryKeys, RedisOptions, Store};
use hookguard_tests::control_plane::write_pki;
use hookguard_tests::net::free_port;

const PASSWORD: &str = "tls-test-password";

/// A TLS-only redis-server whose certificate is signed by a fresh test CA.
struct TlsRedis {
    child: Child,
    port: u16,
    ca_pem: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    fn start() -> TlsRedis {
        let dir = tempfile::tempdir().unwrap();
        let pki = write_pki(dir.path()).unwrap();
        let port = free_port().unwrap();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--tls-cert-file")
            .arg(&pki.serving_cert)
            .arg("--tls-key-file")
            .arg(&pki.serving_key)
            .arg("--tls-ca-cert-file")
            .arg(&pki.ca_cert)
            .args([
                "--tls-auth-clients",
                "no",
                "--requirepass",
                PASSWORD,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server must be installed: apt-get install redis-server (make test does it)",
            );
        hookguard_tests::net::wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(10))
            .unwrap();
        TlsRedis {
            child,
            port,
            ca_pem: std::fs::read(&pki.ca_cert).unwrap(),
            _dir: dir,
        }
    }

    fn options(&self, password: Option<&str>, ca_pem: Option<Vec<u8>>) -> RedisOptions {
        RedisOptions {
            url: format!("rediss://localhost:{}/0", self.port),
            password: password.map(str::to_owned),
            ca_pem,
            cluster: false,
        }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the store answers a PING within 5 s.
async fn eventually_ready(store: &Store) -> bool {
    hookguard_tests::wait::eventually("the store answers", Duration::from_secs(5), async || {
        Ok(store.ping().await.is_ok())
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn claims_work_over_tls_with_a_password_and_the_servers_ca() {
    let redis = TlsRedis::start();
    let store = Store::redis_with(
        &redis.options(Some(PASSWORD), Some(redis.ca_pem.clone())),
        Duration::from_secs(1),
    )
    .unwrap();
    assert!(
        eventually_ready(&store).await,
        "the store never connected over TLS"
    );
    let keys = DeliveryKeys::new("tls-ep", "evt-1", None);
    let ClaimOutcome::Claimed(claim) = store
        .claim(keys.clone(), Duration::from_secs(5))
        .await
        .unwrap()
    else {
        panic!("first claim must win");
    };
    store.commit(&claim, Duration::from_secs(60)).await.unwrap();
    assert!(matches!(
        store.claim(keys, Duration::from_secs(5)).await.unwrap(),
        ClaimOutcome::Done
    ));
}

#[tokio::test]
async fn a_wrong_ca_or_a_missing_password_never_connects() {
    let redis = TlsRedis::start();
    let other_ca = {
        let dir = tempfile::tempdir().unwrap();
        std::fs::read(write_pki(dir.path()).unwrap().ca_cert).unwrap()
    };
    let wrong_ca = Store::redis_with(
        &redis.options(Some(PASSWORD), Some(other_ca)),
        Duration::from_secs(1),
    )
    .unwrap();
    let no_password = Store::redis_with(
        &redis.options(None, Some(redis.ca_pem.clone())),
        Duration::from_secs(1),
    )
    .unwrap();
    // The right settings connect within the same time, so the two failures are not slowness.
    let right = Store::redis_with(
        &redis.options(Some(PASSWORD), Some(redis.ca_pem.clone())),
        Duration::from_secs(1),
    )
    .unwrap();
    assert!(eventually_ready(&right).await);
    assert!(
        wrong_ca.ping().await.is_err(),
        "a certificate from another CA must be refused"
    );
    assert!(
        no_password.ping().await.is_err(),
        "without the password the server refuses commands"
    );
    assert!(
        no_password
            .claim(
                DeliveryKeys::new("tls-ep", "evt-2", None),
                Duration::from_secs(5)
            )
            .await
            .is_err()
    );
}
