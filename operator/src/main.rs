//! `hookguard-operator`: `crd` prints the CRD; `run` runs the controller (leader only) and
//! the admission webhook (every replica) until SIGTERM or SIGINT.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand};
use hookguard_operator::admission::{self, AdmissionArgs, AdmissionSettings};
use hookguard_operator::config::{LogFormat, OperatorConfig, RunArgs};
use tokio_util::sync::CancellationToken;

/// Exit code for a configuration that cannot work (`EX_USAGE`).
const EXIT_USAGE: u8 = 64;

#[derive(Debug, Parser)]
#[command(name = "hookguard-operator", version, about = "The Hookguard operator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the WebhookEndpoint CRD as YAML.
    Crd,
    /// Run the operator: the reconciler (while leader) and the admission webhook.
    Run(Box<Run>),
}

#[derive(Debug, clap::Args)]
struct Run {
    #[command(flatten)]
    operator: RunArgs,
    #[command(flatten)]
    admission: AdmissionArgs,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Crd => match hookguard_operator::crdgen::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("hookguard-operator: cannot render the CRD: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Run(run) => {
            // Every flag is checked before anything connects or binds: a bad value exits 64
            // with one line naming the flag, its environment variable and the fix.
            let run = *run;
            let log_format = run.operator.log_format;
            let log = run.operator.log.clone();
            let config = match OperatorConfig::try_from(run.operator) {
                Ok(config) => config,
                Err(error) => return usage(error.flag(), &error.problem()),
            };
            let mut admission = match AdmissionSettings::try_from(run.admission) {
                Ok(admission) => admission,
                Err(error) => return usage(error.flag, &error.problem),
            };
            admission.watch_namespaces.clone_from(&config.namespaces);
            if let Err(error) = init_logs(log_format, &log) {
                return usage("log", &error.to_string());
            }
            match serve(config, admission) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "hookguard-operator failed");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Reports a flag that cannot work, as the sidecar does: `--flag (env VAR): problem`, exit 64.
fn usage(flag: &str, problem: &str) -> ExitCode {
    let command = Cli::command();
    let env = command
        .find_subcommand("run")
        .into_iter()
        .flat_map(clap::Command::get_arguments)
        .find(|arg| arg.get_long() == Some(flag))
        .and_then(clap::Arg::get_env)
        .map(|env| format!(" (env {})", env.to_string_lossy()))
        .unwrap_or_default();
    eprintln!("hookguard-operator: --{flag}{env}: {problem}");
    ExitCode::from(EXIT_USAGE)
}

fn init_logs(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never in a file or a log collector.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    }
    .map_err(|error| anyhow::anyhow!(error))
}

#[tokio::main]
async fn serve(config: OperatorConfig, admission: AdmissionSettings) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the API server (in-cluster or KUBECONFIG)")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));

    // The webhook outlives the stop signal by --shutdown-delay: a terminating pod leaves its
    // Service's endpoints, kube-proxy's rules and the API server's open connections a moment
    // after, and a call refused meanwhile would fail the pod it admits. The reconciler stops
    // (and releases its Lease) at once.
    let webhook_stop = CancellationToken::new();
    tokio::spawn({
        let (shutdown, webhook_stop) = (shutdown.clone(), webhook_stop.clone());
        let delay = admission.shutdown_delay;
        async move {
            shutdown.cancelled().await;
            if !delay.is_zero() {
                tracing::info!(
                    ?delay,
                    "the admission webhook keeps serving before it stops"
                );
                tokio::time::sleep(delay).await;
            }
            webhook_stop.cancel();
        }
    });
    let admission = tokio::spawn({
        let client = client.clone();
        let shutdown = shutdown.clone();
        async move {
            let result = admission::serve(admission, client, webhook_stop).await;
            // Without its webhook a replica is not doing its job: stop it all.
            shutdown.cancel();
            result
        }
    });
    let operator = hookguard_operator::start(config, client, shutdown.clone()).await;
    let operator = match operator {
        Ok(operator) => operator,
        Err(error) => {
            shutdown.cancel();
            let _ = admission.await;
            return Err(error).context("starting the operator");
        }
    };
    operator.wait().await;
    admission
        .await
        .context("the admission task panicked")?
        .context("the admission webhook")?;
    tracing::info!("stopped");
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        () = terminate => tracing::info!("SIGTERM: shutting down"),
    }
    shutdown.cancel();
}
