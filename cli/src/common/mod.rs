//! What every command shares: global flags, the exit codes, output formats, colour and the
//! Kubernetes client built from kubectl's flags.

mod kube_args;
pub mod style;

use std::io::Write as _;

use clap::ValueEnum;
use serde::Serialize;

pub use kube_args::{KubeArgs, parse_duration};

/// The exit codes, stable for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything checked out.
    Ok = 0,
    /// A failure was found (an invalid signature, a red check, an unhealthy endpoint) or an
    /// error stopped the command.
    Failure = 1,
    /// Bad usage: an unknown flag, a missing argument, an unreadable input file.
    Usage = 2,
    /// `--wait` / `--timeout` ran out before the condition held.
    Timeout = 124,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}

/// How data is printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people: aligned text, colour on a terminal.
    #[default]
    Text,
    /// One JSON document on stdout, camelCase keys.
    Json,
    /// The same document as YAML.
    Yaml,
}

/// Colour on stdout and stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    /// On a terminal, unless `NO_COLOR` is set (`CLICOLOR_FORCE` forces it).
    #[default]
    Auto,
    /// Always, even into a pipe.
    Always,
    /// Never.
    Never,
}

/// The global flags.
#[derive(Debug, clap::Args)]
pub struct Globals {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Output format, for commands whose output is data.
    #[arg(
        short = 'o',
        long,
        global = true,
        value_enum,
        default_value_t,
        help_heading = "Output options"
    )]
    pub output: Output,
    /// When to colour the output.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        value_name = "WHEN",
        help_heading = "Output options"
    )]
    pub color: ColorWhen,
    /// More log detail on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Output options")]
    pub verbose: u8,
}

impl ColorWhen {
    /// Makes the choice anstream's streams follow.
    pub fn write_global(self) {
        let choice = match self {
            ColorWhen::Auto => anstream::ColorChoice::Auto,
            ColorWhen::Always => anstream::ColorChoice::Always,
            ColorWhen::Never => anstream::ColorChoice::Never,
        };
        choice.write_global();
    }
}

/// Logs go to stderr, so they never mix with `-o json` on stdout. `HOOKGUARD_LOG` (an
/// env-filter directive) overrides `-v`.
pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOOKGUARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// What a command runs with.
#[derive(Debug)]
pub struct Context {
    /// kubectl's flags.
    pub kube: KubeArgs,
    /// `-o`.
    pub output: Output,
    /// `hookguard` or `kubectl hookguard`, for hints that name a command.
    pub bin: &'static str,
}

impl Context {
    /// From the parsed global flags.
    pub fn new(globals: Globals, bin: &'static str) -> Self {
        Self {
            kube: globals.kube,
            output: globals.output,
            bin,
        }
    }

    /// Prints `value` as JSON or YAML per `-o`; `false` (nothing printed) for `-o text`, when
    /// the caller prints its own text.
    pub fn print_data<T: Serialize>(&self, value: &T) -> anyhow::Result<bool> {
        let text = match self.output {
            Output::Text => return Ok(false),
            Output::Json => {
                let mut text = serde_json::to_string_pretty(value)?;
                text.push('\n');
                text
            }
            Output::Yaml => serde_yaml::to_string(value)?,
        };
        let mut stdout = anstream::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        Ok(true)
    }
}
