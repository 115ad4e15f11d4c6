//! `dev-cluster`: the tests' control plane (etcd, kube-apiserver, kube-controller-manager) in
//! the foreground, for trying Hookguard by hand with `kubectl` and `helm`. Stops and cleans
//! up on Ctrl-C. Run `tests/control-plane/build.sh` first (`make cluster` does both).
//!
//! With `--node`, the one-node cluster instead (`hookguard_tests::node`: kubelet,
//! containerd, kube-proxy, scheduler and `CoreDNS` too, so pods run); needs root and
//! `make node-deps` (`make node-cluster` does it all).

use hookguard_tests::control_plane::ControlPlane;
use hookguard_tests::node::Cluster;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    if std::env::args().skip(1).any(|arg| arg == "--node") {
        return node().await;
    }
    eprintln!("starting etcd, kube-apiserver and kube-controller-manager ...");
    let plane = tokio::task::spawn_blocking(ControlPlane::start).await??;
    let bin = plane.bin_dir().display();
    let kubeconfig = plane.kubeconfig().display();
    println!(
        "control plane ready in {:.1}s at {}",
        plane.started_in().as_secs_f64(),
        plane.server()
    );
    println!("kubeconfig: {kubeconfig}");
    println!("logs and data: {}", plane.dir().display());
    println!();
    println!("  export KUBECONFIG={kubeconfig} PATH={bin}:$PATH");
    println!("  kubectl get namespaces");
    println!("  helm list -A");
    println!();
    println!("Ctrl-C stops it and removes the folder.");
    tokio::signal::ctrl_c().await?;
    eprintln!("stopping ...");
    drop(plane);
    Ok(())
}

async fn node() -> anyhow::Result<()> {
    eprintln!(
        "starting the one-node cluster (etcd, kube-apiserver, kube-controller-manager, \
         kube-scheduler, containerd, kubelet, kube-proxy, CoreDNS) ..."
    );
    let cluster = tokio::task::spawn_blocking(Cluster::start).await??;
    let bin = cluster.bin_dir().display();
    let kubeconfig = cluster.kubeconfig().display();
    let dir = cluster.dir().display();
    let name = cluster.name();
    println!(
        "one-node cluster {name} ready in {:.1}s; API server https://{}:6443",
        cluster.started_in().as_secs_f64(),
        cluster.node_ip()
    );
    println!("kubeconfig: {kubeconfig}");
    println!("logs, certificates and state: {dir}");
    println!();
    println!("  export KUBECONFIG={kubeconfig} PATH={bin}:$PATH");
    println!("  kubectl get nodes,pods -A -o wide");
    println!("  kubectl logs -n kube-system deploy/coredns");
    println!(
        "  ctr -a {} -n k8s.io images import IMAGE.tar   # then imagePullPolicy: Never",
        cluster.containerd_socket().display()
    );
    println!("  nsenter --net=/run/netns/{name} -- ip route        # a shell: ... -- bash");
    println!();
    println!("Ctrl-C stops it and removes everything (netns, cgroups, mounts, the folder).");
    tokio::signal::ctrl_c().await?;
    eprintln!("stopping ...");
    let took = tokio::task::spawn_blocking(move || cluster.stop()).await??;
    eprintln!("stopped in {:.1}s", took.as_secs_f64());
    Ok(())
}
