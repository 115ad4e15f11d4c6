//! Smoke test of the one-node cluster (`hookguard_tests::node`), checked the way a user
//! would: the node is Ready with no taints; a Deployment with a native sidecar, non-root,
//! read-only root filesystem and local images runs and is Ready; `CoreDNS` (a pod reaching the
//! `kubernetes` Service's `ClusterIP`) is Available with endpoints; from inside a pod,
//! `kubectl exec` reaches Redis through its Service's `ClusterIP` and through its DNS name (the
//! Redis image has `redis-cli`; the pod goes through its own Service, so hairpin works too);
//! `kubectl logs` shows Redis's log; and after the teardown no netns, veth, mount, cgroup or
//! process is left and the kubelet's sysctls have their values from before.
//!
//! Needs root and `make node-deps`; without them the test fails and says so.

use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use hookguard_tests::image::{self, PAUSE_IMAGE, REDIS_IMAGE};
use hookguard_tests::node::{Cluster, NODE_NAME, leftovers, read_sysctls, sweep};
use hookguard_tests::wait::eventually_value_blocking;
use k8s_openapi::api::core::v1::Node;
use kube::Api;

const NAMESPACE: &str = "smoke";

fn manifests() -> String {
    let security = "
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}";
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {NAMESPACE}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: sidecar, namespace: {NAMESPACE}}}
spec:
  selector: {{matchLabels: {{app: sidecar}}}}
  template:
    metadata: {{labels: {{app: sidecar}}}}
    spec:
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        seccompProfile: {{type: RuntimeDefault}}
      initContainers:
        - name: native-sidecar
          image: {PAUSE_IMAGE}
          imagePullPolicy: Never
          restartPolicy: Always{security}
          resources: {{limits: {{cpu: 50m, memory: 16Mi}}}}
      containers:
        - name: main
          image: {PAUSE_IMAGE}
          imagePullPolicy: Never{security}
          resources: {{limits: {{cpu: 50m, memory: 16Mi}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: redis, namespace: {NAMESPACE}}}
spec:
  selector: {{matchLabels: {{app: redis}}}}
  template:
    metadata: {{labels: {{app: redis}}}}
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        seccompProfile: {{type: RuntimeDefault}}
      containers:
        - name: redis
          image: {REDIS_IMAGE}
          imagePullPolicy: Never
          args: [redis-server, --save, "", --appendonly, "no", --protected-mode, "no"]{security}
          ports: [{{containerPort: 6379, name: redis}}]
          readinessProbe:
            exec: {{command: [redis-cli, ping]}}
            periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata: {{name: redis, namespace: {NAMESPACE}}}
spec:
  selector: {{app: redis}}
  ports: [{{port: 6379, targetPort: redis}}]
"#
    )
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn kubectl_ok(cluster: &Cluster, args: &[&str]) -> anyhow::Result<String> {
    let out = cluster.run_kubectl(args)?;
    ensure!(
        out.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        text(&out)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn checks(cluster: &Cluster) -> anyhow::Result<()> {
    check_node_and_dns(cluster)?;
    check_workloads(cluster)
}

/// The node is Ready, untainted, on containerd; `CoreDNS` is ready behind its Service.
fn check_node_and_dns(cluster: &Cluster) -> anyhow::Result<()> {
    // The node, through the typed client.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let node: Node = runtime.block_on(async {
        let client = cluster.client().await?;
        anyhow::Ok(Api::<Node>::all(client).get(NODE_NAME).await?)
    })?;
    let status = node.status.context("node has no status")?;
    let ready = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    ensure!(ready, "node {NODE_NAME} is not Ready");
    let taints = node.spec.and_then(|spec| spec.taints).unwrap_or_default();
    ensure!(taints.is_empty(), "node has taints: {taints:?}");
    let runtime_version = status.node_info.map(|info| info.container_runtime_version);
    ensure!(
        runtime_version
            .as_deref()
            .is_some_and(|v| v.starts_with("containerd://")),
        "container runtime {runtime_version:?}"
    );

    // CoreDNS reaches the API server through the `kubernetes` ClusterIP (in-cluster config),
    // so its being Available proves pod → ClusterIP; its Service needs endpoints.
    let ready_replicas = kubectl_ok(
        cluster,
        &[
            "-n",
            "kube-system",
            "get",
            "deployment",
            "coredns",
            "-o",
            "jsonpath={.status.readyReplicas}/{.status.conditions[?(@.type==\"Available\")].status}",
        ],
    )?;
    ensure!(
        ready_replicas == "1/True",
        "CoreDNS ready replicas/Available: {ready_replicas:?}"
    );
    let dns_endpoints = kubectl_ok(
        cluster,
        &[
            "-n",
            "kube-system",
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=kube-dns",
            "-o",
            "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[*]}",
        ],
    )?;
    ensure!(
        !dns_endpoints.trim().is_empty(),
        "kube-dns has no ready endpoints"
    );

    Ok(())
}

/// The sidecar and Redis Deployments run; exec, Service `ClusterIP`, DNS and logs work.
fn check_workloads(cluster: &Cluster) -> anyhow::Result<()> {
    let redis = image::build_redis()?;
    cluster.import_image(&redis.path)?;
    let manifest = cluster.dir().join("smoke.yaml");
    std::fs::write(&manifest, manifests())?;
    kubectl_ok(cluster, &["apply", "-f", &manifest.to_string_lossy()])?;
    for deployment in ["sidecar", "redis"] {
        kubectl_ok(
            cluster,
            &[
                "-n",
                NAMESPACE,
                "rollout",
                "status",
                &format!("deployment/{deployment}"),
                "--timeout=120s",
            ],
        )?;
    }
    // The native sidecar runs beside the main container: both started and ready.
    let ready = kubectl_ok(
        cluster,
        &[
            "-n",
            NAMESPACE,
            "get",
            "pods",
            "-l",
            "app=sidecar",
            "-o",
            "jsonpath={.items[0].status.initContainerStatuses[0].ready} \
             {.items[0].status.containerStatuses[0].ready} \
             {.items[0].status.conditions[?(@.type==\"Ready\")].status}",
        ],
    )?;
    ensure!(
        ready == "true true True",
        "sidecar pod readiness: {ready:?}"
    );

    // exec, ClusterIP, DNS (and hairpin: the Redis pod reaches itself through its Service).
    let cluster_ip = kubectl_ok(
        cluster,
        &[
            "-n",
            NAMESPACE,
            "get",
            "service",
            "redis",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
    )?;
    for host in [
        cluster_ip.as_str(),
        "redis.smoke.svc.cluster.local",
        "kubernetes.default.svc.cluster.local",
    ] {
        // kube-proxy may not have synced the new Service yet.
        eventually_value_blocking(
            &format!("redis-cli in the pod reaches {host}"),
            Duration::from_secs(30),
            || {
                let port = if host.starts_with("kubernetes.") {
                    "443"
                } else {
                    "6379"
                };
                let out = cluster.run_kubectl(&[
                    "-n",
                    NAMESPACE,
                    "exec",
                    "deploy/redis",
                    "--",
                    "redis-cli",
                    "-h",
                    host,
                    "-p",
                    port,
                    "ping",
                ])?;
                let answer = text(&out);
                if port == "443" {
                    // Not Redis: resolving and connecting is the point; the API server
                    // then drops the plain-text PING.
                    ensure!(
                        !answer.contains("Name or service not known")
                            && !answer.contains("Could not connect"),
                        "{answer}"
                    );
                    return Ok(Some(()));
                }
                Ok(answer.contains("PONG").then_some(()))
            },
        )?;
    }

    let logs = kubectl_ok(cluster, &["-n", NAMESPACE, "logs", "deploy/redis"])?;
    ensure!(
        logs.contains("Ready to accept connections"),
        "kubectl logs: {logs}"
    );
    Ok(())
}

#[test]
fn one_node_cluster_runs_pods_and_cleans_up() {
    // A crashed earlier run may have left the kubelet's sysctls changed; `start` would sweep
    // it anyway, but the values to compare with are those from before any kubelet ran.
    sweep().unwrap();
    let before = read_sysctls().unwrap();
    let begun = Instant::now();
    let cluster = Cluster::start().unwrap();
    eprintln!(
        "cluster {} ready in {:.1}s",
        cluster.name(),
        begun.elapsed().as_secs_f64()
    );
    if let Err(err) = checks(&cluster) {
        let report = cluster.keep_logs();
        let _ = cluster.stop();
        panic!("{err:?}\n{report}");
    }
    let (name, dir, pids) = (
        cluster.name().to_owned(),
        cluster.dir().to_owned(),
        cluster.component_pids(),
    );
    let took = cluster.stop().unwrap();
    eprintln!("cluster {name} torn down in {:.1}s", took.as_secs_f64());
    let left = leftovers(&name, &dir, &pids);
    assert!(left.is_empty(), "left after the teardown: {left:#?}");
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert_eq!(read_sysctls().unwrap(), before, "sysctls changed");
}
