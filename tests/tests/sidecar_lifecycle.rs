//! The sidecar's life around the requests: mounted files swapped the way the kubelet swaps
//! them, a bad reload, slow clients, the admin port, and graceful shutdown. Memory store;
//! the Redis-backed scenarios are in `sidecar_redis.rs`.

// clippy.toml allows unwrap/panic inside #[test] functions only; the helpers beside them are
// test code too. A scenario reads best as one function, however long.
#![allow(clippy::unwrap_used, clippy::panic, clippy::too_many_lines)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use hookguard_tests::app::{Reply, TestApp};
use hookguard_tests::sidecar::{SidecarHarness, generic_endpoint, write_endpoint};

/// Replaces the files of a directory the way the kubelet updates a Secret or ConfigMap
/// volume: write a new hidden timestamped directory, point a temporary `..data` symlink at
/// it, rename that over `..data` (atomic), and keep per-file symlinks into `..data/`.
fn kubelet_update(dir: &Path, files: &[(&str, &str)], generation: u32) {
    let timestamped = format!("..2026_11_27_12_00_{generation:02}.{generation}");
    std::fs::create_dir_all(dir.join(&timestamped)).unwrap();
    for (name, content) in files {
        std::fs::write(dir.join(&timestamped).join(name), content).unwrap();
    }
    let _ = std::fs::remove_file(dir.join("..data_tmp"));
    std::os::unix::fs::symlink(&timestamped, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    for (name, _) in files {
        if std::fs::symlink_metadata(dir.join(name)).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
    }
}

/// The status the sidecar answers a Generic delivery signed with `key`.
async fn status(sidecar: &SidecarHarness, path: &str, key: &str, id: &str, body: &str) -> u16 {
    sidecar
        .post_generic(path, key, id, body)
        .await
        .unwrap()
        .status
}

/// Waits up to 10 s for `check`.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let waited =
        hookguard_tests::wait::eventually(
            what,
            Duration::from_secs(10),
            async || Ok(check().await),
        )
        .await;
    if let Err(error) = waited {
        panic!("{error:#}");
    }
}

#[tokio::test]
async fn a_rotated_secret_volume_is_picked_up_and_a_bad_one_keeps_the_last_good_keys() {
    let app = TestApp::ok().await.unwrap();
    let sidecar = SidecarHarness::start(
        vec![(generic_endpoint("rotating", app.port()), "placeholder")],
        &[],
    )
    .await
    .unwrap();
    // Re-lay the secret directory as a real Secret volume, with the old key.
    let keys = sidecar.dir().join("secrets/rotating");
    std::fs::remove_file(keys.join("k1")).unwrap();
    kubelet_update(&keys, &[("k1", "old-key")], 1);
    eventually("the volume layout reload", async || {
        status(&sidecar, "/rotating", "old-key", "r-1", "{\"n\":1}").await == 200
    })
    .await;

    // Rotation: the new key becomes current while the old one stays valid.
    kubelet_update(&keys, &[("k1", "old-key"), ("k2", "new-key")], 2);
    eventually("the new key", async || {
        status(&sidecar, "/rotating", "new-key", "r-2", "{\"n\":2}").await == 200
    })
    .await;
    assert_eq!(
        status(&sidecar, "/rotating", "old-key", "r-3", "{\"n\":3}").await,
        200,
        "grace period: old key still valid"
    );

    // The grace period ends: the old key is removed from the Secret.
    kubelet_update(&keys, &[("k2", "new-key")], 3);
    eventually("the old key's removal", async || {
        status(&sidecar, "/rotating", "old-key", "r-4", "{\"n\":4}").await == 401
    })
    .await;

    // A broken endpoint file: the last good configuration stays in force, and says so.
    let reloads_before = sidecar
        .metric("hookguard_config_reloads_total{result=\"failure\"}")
        .await
        .unwrap();
    std::fs::write(
        sidecar.dir().join("endpoints/rotating/endpoint.json"),
        "{\"name\": ",
    )
    .unwrap();
    eventually("the failed reload", async || {
        sidecar
            .metric("hookguard_config_reloads_total{result=\"failure\"}")
            .await
            .unwrap()
            > reloads_before
    })
    .await;
    assert_eq!(
        sidecar
            .metric("hookguard_config_last_reload_ok")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        status(&sidecar, "/rotating", "new-key", "r-5", "{\"n\":5}").await,
        200,
        "last good config still serves"
    );

    // A new endpoint appears next to a fixed file.
    write_endpoint(
        sidecar.dir(),
        generic_endpoint("rotating", app.port()),
        "new-key",
    )
    .unwrap();
    write_endpoint(
        sidecar.dir(),
        generic_endpoint("added", app.port()),
        "added-key",
    )
    .unwrap();
    eventually("the added endpoint", async || {
        status(&sidecar, "/added", "added-key", "a-1", "{}").await == 200
    })
    .await;
    assert_eq!(
        sidecar
            .metric("hookguard_config_last_reload_ok")
            .await
            .unwrap(),
        1
    );
    assert_eq!(sidecar.metric("hookguard_endpoints").await.unwrap(), 2);
}

#[tokio::test]
async fn admin_port_reports_health_readiness_and_metrics() {
    let app = TestApp::ok().await.unwrap();
    let sidecar = SidecarHarness::start(vec![(generic_endpoint("adm", app.port()), "k")], &[])
        .await
        .unwrap();
    assert_eq!(sidecar.admin("/healthz").await.unwrap().0, 200);
    assert_eq!(sidecar.admin("/readyz").await.unwrap().0, 200);
    sidecar
        .post_generic("/adm", "k", "m-1", "{}")
        .await
        .unwrap();
    let (status, metrics) = sidecar.admin("/metrics").await.unwrap();
    assert_eq!(status, 200);
    for family in [
        "hookguard_requests_total{endpoint=\"adm\",outcome=\"forwarded\"} 1",
        "hookguard_request_duration_seconds_bucket",
        "hookguard_upstream_duration_seconds_count{endpoint=\"adm\"} 1",
        "hookguard_memory_store_entries 2",
    ] {
        assert!(metrics.contains(family), "{family} in:\n{metrics}");
    }
    assert_eq!(sidecar.admin("/nope").await.unwrap().0, 404);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let app = TestApp::ok().await.unwrap();
    let sidecar = SidecarHarness::start(
        vec![(generic_endpoint("slowloris", app.port()), "k")],
        &["--header-read-timeout", "300ms"],
    )
    .await
    .unwrap();
    // Async IO: the sidecar runs on this test's runtime, and a blocking read would stall it.
    let mut stream = tokio::net::TcpStream::connect(sidecar.running().addr)
        .await
        .unwrap();
    stream
        .write_all(b"POST /slowloris HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the sidecar kept waiting for the rest of the headers"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed after the header-read time-out, took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let app = TestApp::start(|_, _| Reply {
        status: 200,
        delay: Duration::from_millis(700),
    })
    .await
    .unwrap();
    let sidecar = Arc::new(
        SidecarHarness::start(vec![(generic_endpoint("draining", app.port()), "k")], &[])
            .await
            .unwrap(),
    );
    let in_flight = tokio::spawn({
        let sidecar = Arc::clone(&sidecar);
        async move {
            sidecar
                .post_generic("/draining", "k", "s-1", "{}")
                .await
                .unwrap()
        }
    });
    // Shut down only once the request is in flight: the app has it, so the sidecar has
    // accepted and read it (a request not yet read when shutdown begins may be cut off).
    eventually("the request reaches the app", async || {
        app.arrivals("s-1") == 1
    })
    .await;
    sidecar.running().shutdown();
    let answer = in_flight.await.unwrap();
    assert_eq!(
        (answer.status, answer.outcome.as_deref()),
        (200, None),
        "the request in flight got the app's answer"
    );
    assert_eq!(app.commits("s-1"), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        std::net::TcpStream::connect(sidecar.running().addr).is_err(),
        "no new connections after shutdown began"
    );
}

#[tokio::test]
async fn connections_past_the_limit_wait_until_one_closes() {
    let app = TestApp::ok().await.unwrap();
    let sidecar = SidecarHarness::start(
        vec![(generic_endpoint("limited", app.port()), "k")],
        &["--max-connections", "1"],
    )
    .await
    .unwrap();
    let addr = sidecar.running().addr;
    // An unsigned request: the sidecar answers 400 itself, which is all this test needs.
    let request = b"POST /limited HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    first.write_all(request).await.unwrap();
    let mut buffer = [0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(5), first.read(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 400"),
        "the first connection is served"
    );

    // The first connection stays open (keep-alive): the second waits to be accepted.
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    second.write_all(request).await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buffer)).await;
    assert!(
        waiting.is_err(),
        "a connection past the limit is not served while the first is open"
    );
    drop(first);
    let read = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 400"),
        "served once the first closed"
    );
}
