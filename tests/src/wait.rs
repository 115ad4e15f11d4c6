//! Waiting for a condition in tests: poll, bounded, and say what was awaited when it fails.
//! The one polling helper of the suite, for async checks ([`eventually`],
//! [`eventually_value`]) and for blocking ones such as `kubectl` ([`eventually_blocking`],
//! [`eventually_value_blocking`]).

use std::time::{Duration, Instant};

/// How often a check runs.
const POLL: Duration = Duration::from_millis(100);

/// Polls `check` every 100 ms until it returns true, or fails after `timeout` naming `what`
/// and the last error or unmet condition.
pub async fn eventually(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    eventually_value(what, timeout, async || Ok(check().await?.then_some(()))).await
}

/// Polls `check` every 100 ms until it returns a value, or fails after `timeout` naming
/// `what` and the last error.
pub async fn eventually_value<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => "condition not met".to_owned(),
            Err(err) => format!("{err:#}"),
        };
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting until {what} ({last})");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually`] for a blocking check, on the calling thread.
pub fn eventually_blocking(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    eventually_value_blocking(what, timeout, || Ok(check()?.then_some(())))
}

/// [`eventually_value`] for a blocking check, on the calling thread.
pub fn eventually_value_blocking<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => "condition not met".to_owned(),
            Err(err) => format!("{err:#}"),
        };
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting until {what} ({last})");
        }
        std::thread::sleep(POLL);
    }
}
