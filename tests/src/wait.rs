//! Waiting for a condition in tests: poll, bounded, and say what was awaited when it fails.

use std::time::Duration;

/// Polls `check` every 100 ms until it returns true, or fails after `timeout` naming `what`
/// and the last error or unmet condition.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => "condition not met".to_owned(),
            Err(err) => format!("{err:#}"),
        };
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting until {what} ({last})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
