//! `hookguard check`: is Hookguard installed and healthy? linkerd-check style: categories of
//! checks, each `√` (passed), `‼` (warning: works, but look at it) or `×` (failed), and for
//! each finding an indented error and a hint link (`README.md#check-<code>`).
//!
//! `--wait` runs the checks again until none fails or the time is up (exit 124). Exit 1 when
//! any check failed; warnings never fail. `-o json|yaml` gives
//! `{success, categories: [{name, checks: [{description, result, error?, hint?}]}]}`.
//!
//! The checks themselves are in [`super::check_install`].

use std::time::{Duration, Instant};

use serde::Serialize;

use super::check_install::{self, Finding};
use crate::common::style::{self, BAD, BOLD, DIM, GOOD, WARN};
use crate::common::{Context, Exit, parse_duration};

/// Where the hints point: the README's troubleshooting sections, one anchor per check.
pub const HINT_BASE: &str = "https://github.com/hookguard/hookguard/blob/main/README.md";

/// Pause between two rounds of `--wait`.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// `check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run the failing checks again until they pass or this much time has passed (e.g. 5m);
    /// then exit 124.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,
    /// The namespace the chart was installed into (the operator's).
    #[arg(long, value_name = "NAME", default_value = "hookguard-system")]
    pub operator_namespace: String,
}

/// A check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Passed.
    Success,
    /// Works, but look at it.
    Warning,
    /// Failed.
    Error,
}

/// One check as printed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// What was checked, as a statement that holds when it passes.
    pub description: String,
    /// Passed, warning or failed.
    pub result: Outcome,
    /// What was found, when it did not pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where the fix is described, when it did not pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The hint anchor's code (`crd-exists`, ...).
    pub code: &'static str,
}

/// A category of checks.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Category {
    /// Its name.
    pub name: &'static str,
    /// Its checks, in order.
    pub checks: Vec<CheckResult>,
}

/// The whole answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Results {
    /// No check failed.
    pub success: bool,
    /// The categories, in order.
    pub categories: Vec<Category>,
}

impl CheckResult {
    /// A result from a check's code, description and finding.
    pub fn new(code: &'static str, description: impl Into<String>, finding: Finding) -> Self {
        let (result, error) = match finding {
            Finding::Pass => (Outcome::Success, None),
            Finding::Warn(error) => (Outcome::Warning, Some(error)),
            Finding::Fail(error) => (Outcome::Error, Some(error)),
        };
        CheckResult {
            description: description.into(),
            hint: error.is_some().then(|| format!("{HINT_BASE}#check-{code}")),
            result,
            error,
            code,
        }
    }
}

/// Runs `check`.
pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let mut results = check_install::run_all(ctx, &args.operator_namespace).await;
    if let Some(wait) = args.wait {
        while !results.success && started.elapsed() < wait {
            let left = wait.saturating_sub(started.elapsed());
            tokio::time::sleep(RETRY_INTERVAL.min(left)).await;
            if started.elapsed() >= wait {
                break;
            }
            results = check_install::run_all(ctx, &args.operator_namespace).await;
        }
    }
    if !ctx.print_data(&results)? {
        print_text(&results);
    }
    Ok(match (results.success, args.wait) {
        (true, _) => Exit::Ok,
        (false, Some(wait)) => {
            anstream::eprintln!("the checks still fail after --wait {}", humanize(wait));
            Exit::Timeout
        }
        (false, None) => Exit::Failure,
    })
}

fn humanize(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds >= 60 && seconds.is_multiple_of(60) {
        format!("{}m", seconds / 60)
    } else if duration.subsec_millis() == 0 {
        format!("{seconds}s")
    } else {
        format!("{}ms", duration.as_millis())
    }
}

fn print_text(results: &Results) {
    anstream::println!("{}", style::paint(BOLD, "Hookguard checks"));
    anstream::println!("{}", style::paint(BOLD, "================"));
    for category in &results.categories {
        anstream::println!();
        anstream::println!("{}", category.name);
        anstream::println!("{}", "-".repeat(category.name.chars().count()));
        for check in &category.checks {
            let mark = match check.result {
                Outcome::Success => style::paint(GOOD, style::PASS),
                Outcome::Warning => style::paint(WARN, style::WARNING),
                Outcome::Error => style::paint(BAD, style::FAIL),
            };
            anstream::println!("{mark} {}", check.description);
            if let Some(error) = &check.error {
                for line in error.lines() {
                    anstream::println!("    {line}");
                }
            }
            if let Some(hint) = &check.hint {
                anstream::println!("    {}", style::paint(DIM, format!("see {hint} for hints")));
            }
        }
    }
    anstream::println!();
    let verdict = if results.success {
        style::paint(GOOD, style::PASS)
    } else {
        style::paint(BAD, style::FAIL)
    };
    anstream::println!("Status check results are {verdict}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finding_carries_its_hint_only_when_it_did_not_pass() {
        let passed = CheckResult::new("crd-exists", "the CRD exists", Finding::Pass);
        assert_eq!(passed.result, Outcome::Success);
        assert!(passed.hint.is_none() && passed.error.is_none());
        let failed = CheckResult::new("crd-exists", "the CRD exists", Finding::Fail("gone".into()));
        assert_eq!(failed.result, Outcome::Error);
        assert_eq!(
            failed.hint.as_deref(),
            Some(format!("{HINT_BASE}#check-crd-exists").as_str())
        );
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["result"], "error");
        assert_eq!(json["error"], "gone");
    }
}
