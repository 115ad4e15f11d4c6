//! `hookguard` as a kubectl plugin, through the real `kubectl` (1.35, the control plane's):
//! on PATH as `kubectl-hookguard` it is `kubectl hookguard`, and as
//! `kubectl_complete-hookguard` it answers kubectl's completion of the plugin's arguments,
//! endpoint names read from the real API server included.

use std::path::{Path, PathBuf};
use std::process::Command;

use hookguard_api::crd::WebhookEndpoint;
use hookguard_tests::cli::{Run, cli_binary};
use hookguard_tests::control_plane::{bin_dir, with_namespace};
use hookguard_tests::operator::{endpoint, install_crd};
use kube::Api;
use kube::api::PostParams;

/// A PATH holding the CLI under its two plugin names, then the control plane's kubectl.
fn plugin_path(dir: &Path) -> anyhow::Result<std::ffi::OsString> {
    let binary = cli_binary()?;
    for name in ["kubectl-hookguard", "kubectl_complete-hookguard"] {
        std::os::unix::fs::symlink(&binary, dir.join(name))?;
    }
    let mut paths: Vec<PathBuf> = vec![dir.to_path_buf(), bin_dir()?];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    Ok(std::env::join_paths(paths)?)
}

fn kubectl(
    path: &std::ffi::OsStr,
    kubeconfig: Option<&Path>,
    args: &[&str],
) -> anyhow::Result<Run> {
    let mut command = Command::new(bin_dir()?.join("kubectl"));
    command.args(args).env("PATH", path).env("NO_COLOR", "1");
    match kubeconfig {
        Some(file) => command.env("KUBECONFIG", file),
        None => command.env_remove("KUBECONFIG"),
    };
    Ok(command.output()?.into())
}

#[test]
fn kubectl_hookguard_help_names_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let path = plugin_path(dir.path()).unwrap();
    let run = kubectl(&path, None, &["hookguard", "--help"]).unwrap();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("Usage: kubectl hookguard"),
        "{}",
        run.stdout
    );
    for command in ["sign", "verify", "status", "check-inject", "rotate", "tail"] {
        assert!(
            run.stdout.contains(command),
            "{command} missing from:\n{}",
            run.stdout
        );
    }
    // A subcommand's usage line too, and kubectl lists the plugin.
    let sub = kubectl(&path, None, &["hookguard", "status", "--help"]).unwrap();
    assert!(
        sub.stdout.contains("Usage: kubectl hookguard status"),
        "{}",
        sub.stdout
    );
    let list = kubectl(&path, None, &["plugin", "list"]).unwrap();
    assert!(list.stdout.contains("kubectl-hookguard"), "{list:?}");
}

#[tokio::test]
async fn kubectl_completes_the_plugins_commands_and_endpoint_names() {
    with_namespace("cli-complete", |ns| async move {
        install_crd(&ns.client).await?;
        let endpoints: Api<WebhookEndpoint> = Api::namespaced(ns.client.clone(), &ns.name);
        for name in ["orders-github", "orders-stripe"] {
            let spec = "{scheme: Generic, path: /x, upstream: {port: 8080}}";
            let spec = spec.replace("/x", &format!("/{name}"));
            endpoints
                .create(&PostParams::default(), &endpoint(name, &spec)?)
                .await?;
        }
        let dir = tempfile::tempdir()?;
        let path = plugin_path(dir.path())?;
        let kubeconfig = Some(ns.plane.kubeconfig());

        let commands = kubectl(&path, kubeconfig, &["__complete", "hookguard", "st"])?;
        let lines: Vec<&str> = commands.stdout.lines().collect();
        anyhow::ensure!(lines.contains(&"status"), "{commands:?}");
        anyhow::ensure!(
            !lines.contains(&"sign"),
            "only what starts with `st`: {commands:?}"
        );

        let names = kubectl(
            &path,
            kubeconfig,
            &[
                "__complete",
                "hookguard",
                "status",
                "-n",
                &ns.name,
                "orders-",
            ],
        )?;
        let lines: Vec<&str> = names.stdout.lines().collect();
        anyhow::ensure!(
            lines.contains(&"orders-github") && lines.contains(&"orders-stripe"),
            "endpoint names of {}: {names:?}",
            ns.name
        );
        anyhow::ensure!(lines.last() == Some(&":4"), "no file completion: {names:?}");
        Ok(())
    })
    .await;
}

#[test]
fn completion_scripts_load_in_their_shell() {
    // bash itself checks the script: it must define the completion function and register it.
    let script = hookguard_tests::cli::run(&["completion", "bash"]).unwrap();
    assert_eq!(script.code, 0, "{script:?}");
    let check = Command::new("bash")
        .arg("-c")
        .arg(format!("{}\ncomplete -p hookguard", script.stdout))
        .output()
        .unwrap();
    let registered = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && registered.contains("hookguard"),
        "{registered} {}",
        String::from_utf8_lossy(&check.stderr)
    );
    for shell in ["zsh", "fish"] {
        let run = hookguard_tests::cli::run(&["completion", shell]).unwrap();
        assert!(
            run.code == 0 && run.stdout.contains("hookguard"),
            "{shell}: {run:?}"
        );
    }
}
