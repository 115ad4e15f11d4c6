//! `cargo build` from inside a test or a tool of this crate, without the variables cargo gave
//! the running process.
//!
//! Cargo hands a test (or `cargo run`) its package's variables (`CARGO_MANIFEST_DIR`,
//! `CARGO_PKG_*`, ...). Passed on to a nested build they reach build scripts that track them
//! (ring's tracks `CARGO_MANIFEST_DIR`), so that build and the next `cargo` run from a shell
//! would each find the other's artifacts stale and recompile ring, kube and the operator
//! (about a minute on 2 cores, while the binary's other tests run).

use std::process::Command;

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
