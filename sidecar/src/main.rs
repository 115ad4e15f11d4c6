//! `hookguard-sidecar`: parse and validate everything, then bind, serve, and drain on
//! SIGTERM. Configuration errors exit with code 64 and one line per problem on stderr.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use hookguard_sidecar::config::LogFormat;
use hookguard_sidecar::{Args, Settings, load_endpoints, start};
use tracing_subscriber::EnvFilter;

/// `EX_USAGE` from sysexits.h: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = match EnvFilter::try_new(&args.log) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!(
                "hookguard-sidecar: --log {:?}: {error}; write a filter like info or hookguard_sidecar=debug",
                args.log
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match args.log_format {
        LogFormat::Json => logs.json().flatten_event(true).init(),
        LogFormat::Text => logs.init(),
    }
    let settings = match Settings::try_from(args) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("hookguard-sidecar: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let endpoints = match load_endpoints(&settings.config_dir) {
        Ok(endpoints) => endpoints,
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("hookguard-sidecar: {error}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // TOKIO_WORKER_THREADS sets the worker count (tokio reads it); the default is one per core.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hookguard-sidecar: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let running = match start(settings, &endpoints).await {
            Ok(running) => running,
            Err(error) => {
                eprintln!(
                    "hookguard-sidecar: {}",
                    hookguard_api::report::chain(&error)
                );
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        running.shutdown();
        // A second signal during the drain stops at once.
        let control = running.control();
        let done = running.wait();
        tokio::pin!(done);
        tokio::select! {
            () = &mut done => {}
            () = wait_for_signal() => {
                tracing::warn!("second signal: aborting the drain");
                control.abort();
                done.await;
            }
        }
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
