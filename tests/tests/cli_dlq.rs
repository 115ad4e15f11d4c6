//! `hookguard dlq` against a real sidecar in queue mode: the real CLI binary, through the
//! sidecar's loopback-only `/queue` admin API (`--sidecar URL`).

// clippy.toml allows unwrap/panic inside #[test] functions only; the helpers beside them are
// test code too.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use hookguard_tests::app::{Reply, TestApp};
use hookguard_tests::cli::{Run, run};
use hookguard_tests::sidecar::{SidecarHarness, generic_endpoint};
use hookguard_tests::wait::eventually;

const SECRET: &str = "dlq-test-secret";

/// Runs the CLI on a blocking thread, so the sidecar in this runtime keeps answering it.
async fn cli(args: &[&str]) -> Run {
    let owned: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let borrowed: Vec<&str> = owned.iter().map(String::as_str).collect();
        run(&borrowed).unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_lists_shows_purges_with_yes_and_replays() {
    // Built first (it may wait for the build lock), so no wait below includes the build.
    tokio::task::spawn_blocking(hookguard_tests::cli::cli_binary)
        .await
        .unwrap()
        .unwrap();
    let app = TestApp::start(|_, attempt| Reply {
        // Fails until replayed: the third arrival of a delivery succeeds.
        status: if attempt >= 2 { 200 } else { 500 },
        delay: Duration::ZERO,
    })
    .await
    .unwrap();
    let mut endpoint = generic_endpoint("queued", app.port());
    endpoint.delivery = serde_json::from_value(serde_json::json!({
        "mode": "Queue", "durability": "Memory", "maxAttempts": 1,
    }))
    .unwrap();
    let sidecar = SidecarHarness::start(vec![(endpoint, SECRET)], &[])
        .await
        .unwrap();
    for id in ["d-1", "d-2"] {
        let body = format!("{{\"id\":\"{id}\",\"payload\":\"hello {id}\"}}");
        let answer = sidecar
            .post_generic("/queued", SECRET, id, &body)
            .await
            .unwrap();
        assert_eq!(answer.outcome.as_deref(), Some("queued"));
    }
    let url = sidecar.admin_url();
    let listed = async || -> anyhow::Result<Vec<String>> {
        let run = cli(&["dlq", "list", "queued", "--sidecar", &url, "-o", "json"]).await;
        anyhow::ensure!(run.code == 0, "{run:#?}");
        let groups: serde_json::Value = serde_json::from_str(&run.stdout)?;
        Ok(groups[0]["deadLetters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["deliveryId"].as_str().map(str::to_owned))
            .collect())
    };
    eventually(
        "both deliveries are dead-lettered",
        Duration::from_secs(15),
        async || Ok(listed().await?.len() == 2),
    )
    .await
    .unwrap();

    let text = cli(&["dlq", "list", "queued", "--sidecar", &url]).await;
    assert_eq!(text.code, 0, "{text:#?}");
    assert!(
        text.stdout.contains("d-1") && text.stdout.contains("d-2"),
        "{text:#?}"
    );
    let shown = cli(&["dlq", "show", "d-1", "queued", "--sidecar", &url]).await;
    assert_eq!(shown.code, 0, "{shown:#?}");
    assert!(
        shown.stdout.contains("hello d-1"),
        "the stored body: {shown:#?}"
    );

    let refused = cli(&["dlq", "purge", "d-1", "queued", "--sidecar", &url]).await;
    assert_eq!(refused.code, 2, "{refused:#?}");
    assert!(refused.stderr.contains("--yes"), "{refused:#?}");
    assert_eq!(
        listed().await.unwrap().len(),
        2,
        "nothing purged without --yes"
    );
    let purged = cli(&["dlq", "purge", "d-1", "queued", "--sidecar", &url, "--yes"]).await;
    assert_eq!(purged.code, 0, "{purged:#?}");
    assert!(purged.stdout.contains("d-1"), "{purged:#?}");
    assert_eq!(listed().await.unwrap(), ["d-2"]);

    let replayed = cli(&["dlq", "replay", "--all", "queued", "--sidecar", &url]).await;
    assert_eq!(replayed.code, 0, "{replayed:#?}");
    assert!(replayed.stdout.contains("d-2"), "{replayed:#?}");
    eventually(
        "the replayed delivery reaches the app",
        Duration::from_secs(15),
        async || Ok(app.arrivals("d-2") == 2 && listed().await?.is_empty()),
    )
    .await
    .unwrap();
    assert_eq!(
        app.arrivals("d-1"),
        1,
        "a purged delivery is not sent again"
    );

    let missing = cli(&["dlq", "show", "d-1", "queued", "--sidecar", &url]).await;
    assert_eq!(missing.code, 1, "{missing:#?}");
    assert!(
        missing.stderr.contains("not in the dead-letter queue"),
        "{missing:#?}"
    );
}
