//! `completion SHELL` (a static script from `clap_complete`) and the hidden `__complete`, which
//! speaks Cobra's protocol for kubectl's plugin completion (`kubectl_complete-hookguard`, a
//! link to this binary): candidates one per line, then `:4` (no file completion).

use clap_complete::Shell;

use crate::app::Invocation;
use crate::common::{Context, Exit};

/// `completion`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `__complete`: the words typed so far, the last one being completed.
#[derive(Debug, clap::Args)]
pub struct CompleteArgs {
    /// The words after the plugin name.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub words: Vec<String>,
}

/// Prints the script for `args.shell`.
pub fn run(args: &Args, invocation: &Invocation) -> Exit {
    let mut command = invocation.command();
    let name = invocation.display_name.replace(' ', "-");
    clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
    Exit::Ok
}

/// Cobra's directive for "no file completion".
const NO_FILE_COMPLETION: &str = ":4";

/// Prints the candidates for the last word: a command name first, then flags, then for
/// commands that take an endpoint the WebhookEndpoint names of the namespace.
pub async fn complete(args: CompleteArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let command = crate::app::Invocation::from_env().command();
    let (current, before) = args
        .words
        .split_last()
        .map_or(("", &[][..]), |(last, rest)| (last.as_str(), rest));
    let mut candidates: Vec<String> = Vec::new();
    let subcommand = before.iter().find(|word| !word.starts_with('-'));
    match subcommand {
        None if !current.starts_with('-') => {
            candidates.extend(
                command
                    .get_subcommands()
                    .filter(|sub| !sub.is_hide_set())
                    .map(|sub| sub.get_name().to_owned())
                    .filter(|name| name.starts_with(current)),
            );
        }
        _ if current.starts_with('-') => {
            let sub = subcommand.and_then(|name| command.find_subcommand(name));
            let args = command
                .get_arguments()
                .chain(sub.into_iter().flat_map(clap::Command::get_arguments));
            candidates.extend(
                args.filter_map(clap::Arg::get_long)
                    .map(|long| format!("--{long}"))
                    .filter(|flag| flag.starts_with(current)),
            );
        }
        Some(name) if ENDPOINT_COMMANDS.contains(&name.as_str()) => {
            // kubectl passes the typed flags as words: honour the ones that pick the cluster.
            let mut kube = ctx.kube.clone();
            apply_typed_flags(&mut kube, before);
            // Best effort: without a cluster there is simply nothing to offer.
            if let Ok(names) = crate::cluster::endpoint_names(&kube).await {
                candidates.extend(names.into_iter().filter(|n| n.starts_with(current)));
            }
        }
        Some(_) | None => {}
    }
    for candidate in candidates {
        println!("{candidate}");
    }
    println!("{NO_FILE_COMPLETION}");
    Ok(Exit::Ok)
}

/// Applies `-n NS`, `--namespace[=]NS`, `--context[=]C` and `--kubeconfig[=]PATH` found among
/// the typed `words` to `kube`.
fn apply_typed_flags(kube: &mut crate::common::KubeArgs, words: &[String]) {
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (word.as_str(), None),
        };
        if !["-n", "--namespace", "--context", "--kubeconfig"].contains(&flag) {
            continue;
        }
        let Some(value) = inline.or_else(|| words.next().cloned()) else {
            break;
        };
        match flag {
            "--context" => kube.context = Some(value),
            "--kubeconfig" => kube.kubeconfig = Some(value.into()),
            _ => kube.namespace = Some(value),
        }
    }
}

/// The commands whose first argument is a WebhookEndpoint name.
const ENDPOINT_COMMANDS: &[&str] = &["status", "rotate", "secret", "tail"];

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn typed_cluster_flags_pick_the_namespace_context_and_kubeconfig() {
        let mut kube = crate::app::Cli::parse_from(["hookguard", "completion", "bash"])
            .globals
            .kube;
        let words: Vec<String> = [
            "status",
            "-n",
            "shop",
            "--context=prod",
            "--kubeconfig",
            "/k",
        ]
        .map(str::to_owned)
        .to_vec();
        apply_typed_flags(&mut kube, &words);
        assert_eq!(kube.namespace.as_deref(), Some("shop"));
        assert_eq!(kube.context.as_deref(), Some("prod"));
        assert_eq!(kube.kubeconfig, Some("/k".into()));
    }
}
