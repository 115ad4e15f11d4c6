//! `cargo build` from inside a test or a tool of this crate, without the variables cargo gave
//! the running process.
//!
//! Cargo hands a test (or `cargo run`) its package's variables (`CARGO_MANIFEST_DIR`,
//! `CARGO_PKG_*`, ...). Passed on to a nested build they reach build scripts that track them
//! (ring's tracks `CARGO_MANIFEST_DIR`), so that build and the next `cargo` run from a shell
//! would each find the other's artifacts stale and recompile ring, kube and the operator
//! (about a minute on 2 cores, while the binary's other tests run).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// `cargo build --locked`, the package's variables removed; add the packages and flags.
pub fn build() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--locked"]);
    for (name, _) in std::env::vars_os() {
        let name_str = name.to_string_lossy();
        if name_str.starts_with("CARGO_PKG_")
            || name_str.starts_with("CARGO_BIN_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&name_str.as_ref())
        {
            build.env_remove(&name);
        }
    }
    build
}

/// Builds `package`'s binary `bin` into the target directory the running test executable is
/// in (same profile), and returns its path. `CARGO_BIN_EXE_*` exists only for a package's own
/// integration tests; these harnesses live here, so they build what they run (a no-op when it
/// is up to date; `cargo test` has released the build lock by then). Call it once per test
/// binary (behind a `OnceLock`).
pub fn build_binary(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    // target/<profile>/deps/<test exe> → target/<profile>/<bin>
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test executable is not in target/<profile>/deps")?;
    let mut command = build();
    command.args(["-p", package, "--bin", bin]);
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        command.arg("--release");
    }
    let target_dir = profile_dir.parent().context("no target dir")?;
    command.env("CARGO_TARGET_DIR", target_dir);
    let output = command.output().context("running cargo build")?;
    if !output.status.success() {
        bail!(
            "cargo build -p {package} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let binary = profile_dir.join(bin);
    if !binary.exists() {
        bail!("{} is missing after cargo build", binary.display());
    }
    Ok(binary)
}
