//! The command line: global flags, the command list, plugin-mode detection and dispatch.

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::common::{Exit, Globals};
use crate::{cluster, completion, offline};

/// Receive webhooks safely on Kubernetes: sign, send and verify deliveries, and inspect the
/// endpoints, sidecars and install of Hookguard.
#[derive(Debug, Parser)]
#[command(
    name = "hookguard",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub globals: Globals,
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The headers a sender would send for a body and a secret (offline).
    Sign(offline::sign::Args),
    /// Send a signed test delivery to a URL and show the answer (offline: no cluster needed).
    Send(offline::send::Args),
    /// Check a captured request against a secret and, when it fails, say why (offline).
    Verify(offline::verify::Args),
    /// An endpoint's whole chain: conditions, keys, config, pods, sidecars, recent deliveries.
    #[command(after_help = "Examples:
  hookguard status payments-stripe -n shop
  hookguard status webhookendpoint/payments-stripe -n shop -o json

Exit status: 0 when the endpoint is Ready and every pod that selects it has its sidecar, else 1.")]
    Status(cluster::status::Args),
    /// Is Hookguard installed and healthy? CRD, operator, webhook, policy, RBAC, store.
    #[command(after_help = "Examples:
  hookguard check
  hookguard check --wait 2m            # right after helm install
  hookguard check -o json | jq '.categories[].checks[] | select(.result != \"success\")'

Exit status: 0 when no check failed (warnings do not fail), 1 when one did, 124 when --wait ran out.")]
    Check(cluster::check::Args),
    /// Would a Deployment's (or a label set's) pods get the sidecar, for which endpoints, and
    /// why not.
    #[command(after_help = "Examples:
  hookguard check-inject deployment/payments -n shop
  hookguard check-inject -l app=payments,hookguard.dev/inject=true -n shop   # before deploying

Exit status: 0 when the pods would get the sidecar, 1 when nothing would be injected.")]
    CheckInject(cluster::check_inject::Args),
    /// Rotate an endpoint's signing key and wait until every sidecar verifies with it.
    #[command(after_help = "Examples:
  hookguard rotate payments-github -n shop
  hookguard rotate payments-github -n shop --no-wait

Exit status: 0 once every sidecar verifies with the new key, 1 on an error (an endpoint with a
secretRef or a publicKey is rotated by its sender, not here), 124 when --timeout ran out.")]
    Rotate(cluster::rotate::Args),
    /// Print an endpoint's current signing secret, to paste into the sender's dashboard.
    #[command(after_help = "Examples:
  hookguard secret payments-github -n shop            # key IDs and fingerprints only
  hookguard secret payments-github -n shop --show > key.txt")]
    Secret(cluster::secret::Args),
    /// Follow an endpoint's delivery log (every replica's deliveries, metadata only).
    #[command(after_help = "Examples:
  hookguard tail payments-stripe -n shop -f
  hookguard tail payments-stripe -n shop --outcome unauthorized,bad_request --since 1h
  hookguard tail payments-stripe -n shop -f -o json | jq .reason")]
    Tail(cluster::tail::Args),
    /// Queue mode's dead-letter queue: list, show, replay, purge.
    #[command(subcommand)]
    Dlq(cluster::dlq::Command),
    /// Print a shell completion script.
    Completion(completion::Args),
    /// Cobra's completion protocol, for the `kubectl_complete-hookguard` shim.
    #[command(name = "__complete", hide = true)]
    Complete(completion::CompleteArgs),
}

/// How the binary was invoked: as `hookguard` or as the kubectl plugin.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// `hookguard` or `kubectl hookguard`: what help, usage and hints print.
    pub display_name: &'static str,
    /// Invoked as `kubectl_complete-hookguard`, the file kubectl (1.26+) runs to complete a
    /// plugin's arguments: the arguments are those of `__complete`.
    pub completion_shim: bool,
}

impl Invocation {
    /// Reads `argv[0]`: a file name starting with `kubectl-` or `kubectl_` (the plugin names
    /// kubectl looks for on PATH) means plugin mode.
    pub fn from_env() -> Self {
        let argv0 = std::env::args_os().next().unwrap_or_default();
        Self::from_argv0(&argv0)
    }

    fn from_argv0(argv0: &std::ffi::OsStr) -> Self {
        let file = std::path::Path::new(argv0)
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let plugin = file.starts_with("kubectl-") || file.starts_with("kubectl_");
        Self {
            completion_shim: file.starts_with("kubectl_complete-"),
            display_name: if plugin {
                "kubectl hookguard"
            } else {
                "hookguard"
            },
        }
    }

    /// The clap command, named as invoked: as the plugin, usage lines and the examples in
    /// every command's help say `kubectl hookguard`.
    pub fn command(&self) -> clap::Command {
        let command = Cli::command()
            .bin_name(self.display_name)
            .display_name(self.display_name);
        if self.display_name == "hookguard" {
            return command;
        }
        let names: Vec<String> = command
            .get_subcommands()
            .map(|sub| sub.get_name().to_owned())
            .collect();
        names.iter().fold(command, |command, name| {
            command.mut_subcommand(name, |sub| match sub.get_after_help() {
                Some(help) => {
                    let help = help
                        .to_string()
                        .replace("\n  hookguard ", &format!("\n  {} ", self.display_name));
                    sub.after_help(help)
                }
                None => sub,
            })
        })
    }

    /// Parses the process's arguments; on a usage error prints it and exits 2.
    pub fn parse(&self) -> Cli {
        let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if self.completion_shim {
            args.insert(1.min(args.len()), "__complete".into());
        }
        let mut matches = self.command().get_matches_from(args);
        Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|error| error.exit())
    }
}

/// Runs the parsed command.
pub async fn run(cli: Cli, invocation: &Invocation) -> anyhow::Result<Exit> {
    let ctx = crate::common::Context::new(cli.globals, invocation.display_name);
    match cli.command {
        Command::Sign(args) => offline::sign::run(args, &ctx).await,
        Command::Send(args) => offline::send::run(args, &ctx).await,
        Command::Verify(args) => offline::verify::run(args, &ctx).await,
        Command::Status(args) => cluster::status::run(args, &ctx).await,
        Command::Check(args) => cluster::check::run(args, &ctx).await,
        Command::CheckInject(args) => cluster::check_inject::run(args, &ctx).await,
        Command::Rotate(args) => cluster::rotate::run(args, &ctx).await,
        Command::Secret(args) => cluster::secret::run(args, &ctx).await,
        Command::Tail(args) => cluster::tail::run(args, &ctx).await,
        Command::Dlq(command) => cluster::dlq::run(command, &ctx).await,
        Command::Completion(args) => Ok(completion::run(&args, invocation)),
        Command::Complete(args) => completion::complete(args, &ctx).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn as_the_plugin_every_example_says_kubectl_hookguard() {
        let plugin = Invocation::from_argv0(std::ffi::OsStr::new("kubectl-hookguard"));
        let command = plugin.command();
        let mut seen = 0;
        for sub in command.get_subcommands() {
            let Some(help) = sub.get_after_help().map(ToString::to_string) else {
                continue;
            };
            let unrenamed: Vec<&str> = help
                .lines()
                .filter(|line| line.trim_start().starts_with("hookguard "))
                .collect();
            assert!(unrenamed.is_empty(), "{}: {unrenamed:?}", sub.get_name());
            seen += help.matches("kubectl hookguard ").count();
        }
        assert!(seen >= 10, "examples rewritten: {seen}");
    }

    #[test]
    fn a_kubectl_plugin_file_name_switches_to_plugin_mode() {
        for (argv0, name) in [
            ("/usr/local/bin/kubectl-hookguard", "kubectl hookguard"),
            ("kubectl_complete-hookguard", "kubectl hookguard"),
            ("/usr/bin/hookguard", "hookguard"),
            ("./target/debug/hookguard", "hookguard"),
        ] {
            let invocation = Invocation::from_argv0(std::ffi::OsStr::new(argv0));
            assert_eq!(invocation.display_name, name, "{argv0}");
            assert_eq!(
                invocation.completion_shim,
                argv0.starts_with("kubectl_complete-"),
                "{argv0}"
            );
        }
    }
}
