//! `dev-cluster`: the tests' control plane (etcd, kube-apiserver, kube-controller-manager) in
//! the foreground, for trying Hookguard by hand with `kubectl` and `helm`. Stops and cleans
//! up on Ctrl-C. Run `tests/control-plane/build.sh` first (`make cluster` does both).

use hookguard_tests::control_plane::ControlPlane;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
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
