//! The sidecar against a real three-node Redis Cluster (redis-server with cluster mode, joined
//! by `redis-cli --cluster create`): deliveries of many endpoints land on different nodes,
//! and each delivery's keys share one slot, so the claim scripts run where the slot lives.

// clippy.toml allows unwrap/panic inside #[test] functions only; the harness beside them is
// test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hookguard_tests::app::{Scoreboard, TestApp};
use hookguard_tests::net::{free_port, wait_for_tcp};
use hookguard_tests::sidecar::{SidecarHarness, generic_endpoint};

const SECRET: &str = "cluster-secret";

/// Three masters, no replicas, on 127.0.0.1.
struct Cluster {
    nodes: Vec<(u16, Child)>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let port = free_port().unwrap();
            let node_dir = dir.path().join(format!("node{i}"));
            std::fs::create_dir(&node_dir).unwrap();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed: apt-get install redis-server (make test does it)");
            wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(10)).unwrap();
            nodes.push((port, child));
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed: apt-get install redis-tools");
        assert!(
            created.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = Cluster { nodes, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster
            .nodes
            .iter()
            .all(|(port, _)| Cluster::cli(*port, &["cluster", "info"]).contains("cluster_state:ok"))
        {
            assert!(
                Instant::now() < deadline,
                "the cluster never reached state ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    fn cli(port: u16, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Keys stored on each node (each node answers only for its own slots).
    fn keys_per_node(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|(port, _)| {
                Cluster::cli(*port, &["--scan", "--pattern", "hg:*"])
                    .lines()
                    .count()
            })
            .collect()
    }

    fn seed_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.nodes[0].0)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
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
    let sidecar = SidecarHarness::start(endpoints, &["--store", &seed, "--store-mode", "cluster"])
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
}
