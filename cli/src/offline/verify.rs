//! `hookguard verify`: checks a captured request (headers and raw body) with the sidecar's
//! verifier and, when it fails, prints the diagnosis ([`super::diagnose`]).

use std::path::PathBuf;
use std::time::Duration;

use hookguard_api::Scheme;

use super::diagnose::{self, Case, Level, Report};
use super::input::{self, InputError, parse_duration, parse_scheme, read_file_or_stdin};
use crate::common::style::{self, BAD, BOLD, DIM, GOOD, WARN};
use crate::common::{Context, Exit};
use hookguard_api::report::chain;

const AFTER_HELP: &str = "\
Exit status: 0 VALID, 1 INVALID (the diagnosis says why), 2 bad input (an unreadable or
malformed file, a bad flag).

Examples:
  # A request captured with `curl -D headers.txt` or copied from a proxy log:
  hookguard verify --scheme stripe --secret-file whsec.txt \\
      --headers-file headers.txt --body-file body.json

  # During a rotation: try both keys, say which one matched:
  hookguard verify --scheme standard-webhooks --secret-file k1 --secret-file k2 \\
      --headers-file h.json --body-file body.bin -o json

  # An old capture: judge it by the clock of the moment it was received:
  hookguard verify --scheme slack --secret-env SLACK_SIGNING_SECRET \\
      --headers-file h.txt --body-file body.txt --now 1764000000

The headers file holds `Name: value` lines (curl -D / curl -v / proxy logs; status and
request lines are skipped) or a JSON object of names to values. The body file must hold the
exact bytes received. Findings have stable codes (HG-Vnnn); secrets and signatures are
never printed, only key fingerprints.";

/// `verify`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP, next_help_heading = "Verify options")]
#[command(group = clap::ArgGroup::new("secret").required(true).multiple(true))]
pub struct Args {
    /// The endpoint's scheme: generic, standard-webhooks, stripe, github, slack, shopify,
    /// twilio, zoom, paddle, linear, square, mailgun, sendgrid.
    #[arg(long, value_parser = parse_scheme, value_name = "SCHEME")]
    pub scheme: Scheme,
    /// A file holding a signing secret, exactly as the endpoint's key file holds it. Repeat
    /// for the keys of a rotation: any may match, and the output says which did.
    #[arg(long, value_name = "FILE", group = "secret")]
    pub secret_file: Vec<PathBuf>,
    /// An environment variable holding a signing secret. Repeatable, like --secret-file.
    #[arg(long, value_name = "VAR", group = "secret")]
    pub secret_env: Vec<String>,
    /// The captured request's headers: `Name: value` lines or a JSON object; `-` reads
    /// stdin.
    #[arg(long, value_name = "FILE")]
    pub headers_file: PathBuf,
    /// The captured request's raw body, byte for byte; `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub body_file: PathBuf,
    /// How far a signed timestamp may be from the clock (as the endpoint's replay
    /// tolerance).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m")]
    pub tolerance: Duration,
    /// The clock to check the timestamp against, unix seconds. Default: now.
    #[arg(long, value_name = "UNIX")]
    pub now: Option<i64>,
    /// The full URL the sender called, query included: Twilio and Square sign it (the
    /// endpoint's publicUrl plus the request's query).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

/// Runs `verify`.
// `async` like every command's `run`, which `app.rs` awaits alike.
#[allow(clippy::unused_async)]
pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<Exit> {
    let report = match check(&args) {
        Ok(report) => report,
        Err(error) => {
            anstream::eprintln!("error: {}", chain(&error));
            return Ok(Exit::Usage);
        }
    };
    if !ctx.print_data(&report)? {
        print_text(&report);
    }
    Ok(if report.valid {
        Exit::Ok
    } else {
        Exit::Failure
    })
}

fn check(args: &Args) -> Result<Report, InputError> {
    if args.headers_file.as_os_str() == "-" && args.body_file.as_os_str() == "-" {
        return Err(InputError::StdinTwice);
    }
    let secrets = input::load_secrets(&args.secret_file, &args.secret_env)?;
    let headers = input::parse_headers(&read_file_or_stdin("the headers", &args.headers_file)?)?;
    let body = read_file_or_stdin("the body", &args.body_file)?;
    Ok(diagnose::diagnose(&Case {
        scheme: args.scheme,
        secrets: &secrets,
        headers: &headers,
        body: &body,
        now: args.now.unwrap_or_else(input::now_unix),
        tolerance: args.tolerance,
        url: args.url.as_deref(),
    }))
}

fn print_text(report: &Report) {
    if report.valid {
        let key = report
            .matched_key
            .as_deref()
            .map(|key| format!(" (key {key} matched)"))
            .unwrap_or_default();
        anstream::println!("{}{key}", style::paint(GOOD, "VALID"));
    } else {
        let why = report.rejection.as_deref().unwrap_or("refused");
        anstream::println!("{}: {why}", style::paint(BAD, "INVALID"));
    }
    for f in &report.findings {
        let (mark, color) = match f.level {
            Level::Error => (style::FAIL, BAD),
            Level::Warning => (style::WARNING, WARN),
            Level::Info => ("i", DIM),
        };
        anstream::println!(
            "{} {} {}",
            style::paint(color, mark),
            style::paint(BOLD, f.code),
            f.text
        );
        anstream::println!("    fix: {}", f.fix);
        anstream::println!("    {}", style::paint(DIM, format!("see {}", f.docs)));
    }
}
