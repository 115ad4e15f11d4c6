//! The sidecar against a real three-node Redis Cluster (redis-server with cluster mode, joined
//! by `redis-cli --cluster create`): deliveries of many endpoints land on different nodes,
//! and each delivery's keys share one slot, so the claim scripts run where the slot lives.

// clippy.toml allows unwrap/panic inside #[test] functions only; the harness beside them is
// test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hookguard_tests::app::{Scoreboard, TestApp};
use hookguard_tests::redis::RedisServer;
use hookguard_tests::sidecar::{SidecarHarness, generic_endpoint};

const SECRET: &str = "cluster-secret";

/// How long `redis-cli --cluster create` may take to create and join the cluster.
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// Three masters, no replicas, on 127.0.0.1. Each node is a [`RedisServer`] in cluster mode:
/// started on free ports (client and bus) with retries, its log kept, stopped when dropped.
struct Cluster {
    nodes: Vec<RedisServer>,
}

impl Cluster {
    fn start() -> Cluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::start_cluster_node().unwrap())
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let mut create = Command::new("redis-cli");
        create
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"]);
        let (created, output) = run_within(create, CREATE_TIMEOUT);
        assert!(created, "cluster create failed:\n{output}");
        let cluster = Cluster { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let infos: Vec<String> = cluster
                .nodes
                .iter()
                .map(|node| {
                    redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query::<String>(&mut node.connect().unwrap())
                        .unwrap_or_else(|error| format!("CLUSTER INFO failed: {error}"))
                })
                .collect();
            if infos.iter().all(|info| info.contains("cluster_state:ok")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster never reached state ok: {infos:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// Keys stored on each node (each node answers only for its own slots).
    fn keys_per_node(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|node| node.keys("hg:*").unwrap().len())
            .collect()
    }

    fn seed_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.nodes[0].port())
    }
}

/// Runs `command` to completion, killing it past `timeout`. Returns whether it succeeded, and
/// its stdout and stderr (kept in files, so a chatty command cannot block on a full pipe).
fn run_within(mut command: Command, timeout: Duration) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("redis-cli must be installed: apt-get install redis-tools");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = format!(
        "{}\n--- stdout ---\n{}--- stderr ---\n{}",
        status.map_or_else(
            || format!("killed after {timeout:?}"),
            |status| status.to_string()
        ),
        std::fs::read_to_string(&stdout).unwrap_or_default(),
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    (status.is_some_and(|status| status.success()), output)
}

#[tokio::test]
async fn deliveries_are_deduplicated_across_a_redis_cluster() {
    let cluster = Cluster::start();
    let app = TestApp::ok().await.unwrap();
    // Endpoints' IDs are the hash tags: twelve endpoints spread over the three masters.
    let endpoints: Vec<_> = (0..12)
        .map(|i| (generic_endpoint(&format!("ep{i}"), app.port()), SECRET))
        .collect();
    let seed = cluster.seed_url();
    // A generous store deadline: this test asserts exact statuses, and a claim slowed past
    // the deadline (a loaded machine) would turn into a 503.
    let sidecar = SidecarHarness::start(
        endpoints,
        &[
            "--store",
            &seed,
            "--store-mode",
            "cluster",
            "--store-timeout",
            "2s",
        ],
    )
    .await
    .unwrap();
    let board = Scoreboard::default();
    for i in 0..12 {
        let id = format!("evt-{i}");
        let body = format!("{{\"n\":{i}}}");
        for attempt in 0..2 {
            let answer = sidecar
                .post_generic(&format!("/ep{i}"), SECRET, &id, &body)
                .await
                .unwrap();
            board.record(&app, &id, answer.status, answer.outcome.as_deref());
            let expected = if attempt == 0 {
                None
            } else {
                Some("duplicate")
            };
            assert_eq!(
                (answer.status, answer.outcome.as_deref()),
                (200, expected),
                "{id} attempt {attempt}"
            );
        }
    }
    let per_node = cluster.keys_per_node();
    assert_eq!(
        per_node.iter().sum::<usize>(),
        24,
        "an ID key and a body key per delivery: {per_node:?}"
    );
    assert!(
        per_node.iter().filter(|n| **n > 0).count() >= 2,
        "keys landed on several nodes: {per_node:?}"
    );
    assert_eq!(
        app.total_arrivals(),
        12,
        "each delivery reached the app once"
    );
    let report = board.report(&app);
    assert_eq!(
        (report.lost, report.false_2xx, report.dup_at_app),
        (0, 0, 0),
        "{report:?}"
    );
    // The delivery log: one stream per endpoint, under its hash tag (so on its slot's node),
    // written in pipelines per stream.
    for i in 0..12 {
        let path = format!("/deliveries?endpoint=ep{i}");
        hookguard_tests::wait::eventually(
            &format!("ep{i}'s log holds both answers"),
            Duration::from_secs(15),
            async || {
                let (status, body) = sidecar.admin(&path).await?;
                let page: hookguard_api::admin::DeliveryPage = serde_json::from_str(&body)?;
                let outcomes: Vec<&str> = page.records.iter().map(|r| r.outcome.as_str()).collect();
                Ok(status == 200 && outcomes == ["forwarded", "duplicate"])
            },
        )
        .await
        .unwrap();
    }
}
