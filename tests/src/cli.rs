//! Runs the real `hookguard` CLI binary, as a user does: built once per test binary
//! ([`crate::cargo::build_binary`]), or the one named by `HOOKGUARD_CLI_BIN`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The CLI binary's path.
pub fn cli_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    if let Some(binary) = std::env::var_os("HOOKGUARD_CLI_BIN") {
        return Ok(PathBuf::from(binary));
    }
    BUILT
        .get_or_init(|| {
            crate::cargo::build_binary("hookguard-cli", "hookguard")
                .map_err(|err| format!("{err:#}"))
        })
        .clone()
        .map_err(|err| anyhow::anyhow!(err))
}

/// `hookguard ARGS` with colour off and logs quiet, ready to run. `NO_COLOR` is set so an
/// assertion on text never meets an escape code.
pub fn hookguard(args: &[&str]) -> anyhow::Result<Command> {
    let mut command = Command::new(cli_binary()?);
    command
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("HOOKGUARD_LOG")
        .env_remove("KUBECONFIG");
    Ok(command)
}

/// The CLI's answer: exit code and both streams as text.
#[derive(Debug, Clone)]
pub struct Run {
    /// The exit code (`-1` if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `hookguard ARGS` to the end.
pub fn run(args: &[&str]) -> anyhow::Result<Run> {
    Ok(hookguard(args)?.output()?.into())
}

/// Runs `hookguard ARGS` against the cluster of `kubeconfig`.
pub fn run_against(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<Run> {
    let mut command = hookguard(args)?;
    command.arg("--kubeconfig").arg(kubeconfig);
    Ok(command.output()?.into())
}
