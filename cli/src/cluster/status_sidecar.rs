//! One sidecar as `status` sees it through its admin API: ready (`/readyz`), whether it has
//! loaded the endpoint's current key (`/keys`, fingerprints only) and its recent outcomes
//! (`/deliveries`). An unreachable sidecar, or one too old to serve an endpoint (404), is
//! reported as unknown, never fatal.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hookguard_api::admin::{
    DeliveryPage, LoadedKey, MAX_PAGE, PATH_DELIVERIES, PATH_KEYS, RecordKind, SidecarKeys,
};
use kube::Client;
use serde::Serialize;

use crate::common::style::{self, BAD, GOOD, WARN};
use crate::sidecar_access::{self, Target};

/// How many records the outcome counts cover: the most recent ones.
const RECENT_RECORDS: usize = MAX_PAGE;
/// Pages read at most to reach the newest records.
const MAX_PAGES: usize = 20;

/// What one sidecar said.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarReport {
    /// `pod/NAME -n NS` or the URL.
    pub target: String,
    /// `/readyz` answered 200; absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Why `ready` is unknown or false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_error: Option<String>,
    /// The keys it verifies this endpoint with (IDs and fingerprints).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_keys: Option<Vec<LoadedKey>>,
    /// Whether one of them is the Secret's current key; absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_key_loaded: Option<bool>,
    /// Why the keys are unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_error: Option<String>,
    /// Outcome counts of the most recent records, by kind (`request`, `attempt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<BTreeMap<String, BTreeMap<String, u64>>>,
    /// How many records the counts cover.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<usize>,
    /// Why the outcomes are unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries_error: Option<String>,
}

/// Asks `target` about `endpoint`; `current` is the Secret's newest key fingerprint.
pub async fn ask(
    client: &Client,
    target: &Target,
    endpoint: &str,
    current: Option<&str>,
) -> SidecarReport {
    let mut report = SidecarReport {
        target: target.to_string(),
        ready: None,
        ready_error: None,
        loaded_keys: None,
        current_key_loaded: None,
        keys_error: None,
        outcomes: None,
        records: None,
        deliveries_error: None,
    };
    match sidecar_access::get(Some(client), target, "/readyz").await {
        Ok(answer) if answer.status == 200 => report.ready = Some(true),
        Ok(answer) => {
            report.ready = Some(false);
            report.ready_error = Some(format!(
                "/readyz answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body).trim()
            ));
        }
        Err(error) => {
            // Unreachable: the rest would fail the same way.
            report.ready_error = Some(format!("unknown: {error:#}"));
            return report;
        }
    }
    match keys(client, target, endpoint).await {
        Ok(loaded) => {
            report.current_key_loaded =
                current.map(|current| loaded.iter().any(|key| key.fingerprint == current));
            report.loaded_keys = Some(loaded);
        }
        Err(error) => report.keys_error = Some(format!("unknown: {error:#}")),
    }
    match outcomes(client, target, endpoint).await {
        Ok((counts, records)) => {
            report.outcomes = Some(counts);
            report.records = Some(records);
        }
        Err(error) => report.deliveries_error = Some(format!("unknown: {error:#}")),
    }
    report
}

async fn keys(client: &Client, target: &Target, endpoint: &str) -> anyhow::Result<Vec<LoadedKey>> {
    let answer = sidecar_access::get(Some(client), target, PATH_KEYS).await?;
    if answer.status == 404 {
        anyhow::bail!("this sidecar serves no {PATH_KEYS} (an older version)");
    }
    let keys: SidecarKeys = answer.json(PATH_KEYS)?;
    keys.endpoints
        .into_iter()
        .find(|loaded| loaded.name == endpoint)
        .map(|loaded| loaded.keys)
        .ok_or_else(|| anyhow::anyhow!("the sidecar does not serve endpoint {endpoint}"))
}

/// Counts by kind and outcome over the newest [`RECENT_RECORDS`] records.
async fn outcomes(
    client: &Client,
    target: &Target,
    endpoint: &str,
) -> anyhow::Result<(BTreeMap<String, BTreeMap<String, u64>>, usize)> {
    let mut recent = std::collections::VecDeque::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut query = format!(
            "{PATH_DELIVERIES}?endpoint={}&limit={MAX_PAGE}",
            encode(endpoint)
        );
        if let Some(cursor) = &after {
            query.push_str("&after=");
            query.push_str(&encode(cursor));
        }
        let answer = sidecar_access::get(Some(client), target, &query).await?;
        if answer.status == 404 {
            anyhow::bail!("this sidecar serves no {PATH_DELIVERIES} (an older version)");
        }
        let page: DeliveryPage = answer.json(PATH_DELIVERIES)?;
        let full = page.records.len() >= MAX_PAGE;
        for record in page.records {
            if recent.len() == RECENT_RECORDS {
                recent.pop_front();
            }
            recent.push_back(record);
        }
        if !full || after.as_deref() == Some(page.cursor.as_str()) {
            break;
        }
        after = Some(page.cursor);
    }
    let mut counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for record in &recent {
        let kind = match record.kind {
            RecordKind::Request => "request",
            RecordKind::Attempt => "attempt",
        };
        *counts
            .entry(kind.to_owned())
            .or_default()
            .entry(record.outcome.clone())
            .or_default() += 1;
    }
    Ok((counts, recent.len()))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The text lines of one sidecar.
pub fn print(report: &SidecarReport) {
    let (mark, ready) = match report.ready {
        Some(true) => (style::paint(GOOD, style::PASS), "ready".to_owned()),
        Some(false) => (
            style::paint(BAD, style::FAIL),
            format!(
                "not ready: {}",
                report.ready_error.as_deref().unwrap_or_default()
            ),
        ),
        None => (
            style::paint(WARN, style::WARNING),
            report.ready_error.clone().unwrap_or_default(),
        ),
    };
    anstream::println!("  {mark} {}: {ready}", report.target);
    if report.ready.is_none() {
        return;
    }
    match (&report.current_key_loaded, &report.keys_error) {
        (Some(true), _) => anstream::println!(
            "      {} has loaded the current key",
            style::paint(GOOD, style::PASS)
        ),
        (Some(false), _) => anstream::println!(
            "      {} has NOT loaded the current key (loaded: {}): the kubelet may not have swapped the Secret yet",
            style::paint(BAD, style::FAIL),
            report
                .loaded_keys
                .iter()
                .flatten()
                .map(|key| format!("{} {}", key.id, key.fingerprint))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (None, Some(error)) => {
            anstream::println!("      {} keys {error}", style::paint(WARN, style::WARNING));
        }
        (None, None) => {}
    }
    if let Some(outcomes) = &report.outcomes {
        if outcomes.is_empty() {
            anstream::println!("      no deliveries recorded");
        }
        for (kind, counts) in outcomes {
            anstream::println!(
                "      last {} {kind}s: {}",
                counts.values().sum::<u64>(),
                super::status::counts_text(counts)
            );
        }
    } else if let Some(error) = &report.deliveries_error {
        anstream::println!(
            "      {} deliveries {error}",
            style::paint(WARN, style::WARNING)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(encode("pay-1.x"), "pay-1.x");
        assert_eq!(encode("a b&c=d"), "a%20b%26c%3Dd");
    }
}
