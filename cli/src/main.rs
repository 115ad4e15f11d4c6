//! `hookguard`, the Hookguard CLI, also installed as `kubectl-hookguard` (a kubectl plugin:
//! `kubectl hookguard ...`).
//!
//! Offline commands ([`offline`]) need no cluster: `sign`, `send` and `verify` use the
//! sidecar's own signing and verifying code, so what they say is what the sidecar does.
//! Cluster commands ([`cluster`]) read the API server with kubectl's flags and reach sidecars
//! through a port-forward ([`sidecar_access`]).
//!
//! Output: data on stdout (`-o json|yaml` where the output is data), logs and errors on
//! stderr, colour only on a terminal and never with `NO_COLOR`. Exit codes are [`Exit`]'s.

mod app;
mod cluster;
mod common;
mod completion;
mod offline;
mod sidecar_access;

use std::process::ExitCode;

use crate::common::Exit;

fn main() -> ExitCode {
    let invocation = app::Invocation::from_env();
    let cli = invocation.parse();
    common::init_logging(cli.globals.verbose);
    cli.globals.color.write_global();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            anstream::eprintln!("error: cannot start the async runtime: {error}");
            return Exit::Failure.into();
        }
    };
    let exit = runtime.block_on(app::run(cli, &invocation));
    match exit {
        Ok(exit) => exit.into(),
        Err(error) => {
            anstream::eprintln!("error: {error:#}");
            Exit::Failure.into()
        }
    }
}
