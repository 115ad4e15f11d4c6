//! `hookguard tail ENDPOINT`: the delivery log (`GET /deliveries`) of the endpoint's sidecars,
//! one line per answer or queued attempt.
//!
//! Every target is asked and the pages are merged by time. With Redis the verified records
//! are one log shared by the replicas, so each arrives from every target and is shown once
//! (identical records are the same record); the refused requests are each sidecar's own, as
//! is the whole log with the in-memory store. `--follow` polls each target with its cursor.

use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::jiff::Timestamp;

use hookguard_api::admin::{DeliveryPage, DeliveryRecord, MAX_PAGE, PATH_DELIVERIES, RecordKind};

use crate::common::style::{self, BAD, DIM, GOOD, WARN};
use crate::common::{Context, Exit, Output, parse_duration};
use crate::sidecar_access::{self, Target};

/// How often `--follow` asks again.
const POLL: Duration = Duration::from_secs(1);
/// Records remembered to show a shared record once.
const SEEN: usize = 100_000;

/// `tail`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The WebhookEndpoint whose deliveries to show.
    pub endpoint: String,
    /// A sidecar's admin URL to read instead of the endpoint's pods (repeat for several),
    /// e.g. `http://127.0.0.1:9881`.
    #[arg(long = "sidecar", value_name = "URL")]
    pub sidecars: Vec<String>,
    /// Only these outcomes, comma-separated (`forwarded`, `duplicate`, `unauthorized`,
    /// `queued`, `delivered`, `retry_scheduled`, `dead_lettered`, ...).
    #[arg(long, value_delimiter = ',', value_name = "OUTCOME")]
    pub outcome: Vec<String>,
    /// Only deliveries of this event type.
    #[arg(long, value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Only records of the last DURATION, e.g. 10m.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub since: Option<Duration>,
    /// Keep printing new records until Ctrl-C.
    #[arg(short, long)]
    pub follow: bool,
    /// Show at most the last N records of what is already logged.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// One target and where its log was read up to.
struct Source {
    target: Target,
    cursor: Option<String>,
}

/// Runs `tail`.
pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<Exit> {
    // `--sidecar URL` needs no cluster.
    let (client, targets) = if args.sidecars.is_empty() {
        let (client, namespace) = ctx.kube.client().await?;
        let targets =
            sidecar_access::endpoint_targets(&client, &namespace, &args.endpoint, &[]).await?;
        if targets.is_empty() {
            anstream::eprintln!(
                "{} no running pod serves {} in {namespace}; name a sidecar with --sidecar URL",
                style::paint(BAD, style::FAIL),
                args.endpoint
            );
            return Ok(Exit::Failure);
        }
        (Some(client), targets)
    } else {
        let targets = args.sidecars.iter().cloned().map(Target::Url).collect();
        (None, targets)
    };
    let mut sources: Vec<Source> = targets
        .into_iter()
        .map(|target| Source {
            target,
            cursor: None,
        })
        .collect();
    let mut seen = Seen::default();
    let filter = Filter::new(&args);

    let records = read_new(
        client.as_ref(),
        &mut sources,
        &args.endpoint,
        &mut seen,
        true,
    )
    .await?;
    let mut records: Vec<DeliveryRecord> =
        records.into_iter().filter(|r| filter.keeps(r)).collect();
    if let Some(limit) = args.limit {
        let skip = records.len().saturating_sub(limit);
        records.drain(..skip);
    }
    if !args.follow {
        if !ctx.print_data(&records)? {
            for record in &records {
                anstream::println!("{}", line(record));
            }
        }
        return Ok(Exit::Ok);
    }
    print_stream(ctx.output, &records)?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(Exit::Ok),
            () = tokio::time::sleep(POLL) => {}
        }
        let records = read_new(
            client.as_ref(),
            &mut sources,
            &args.endpoint,
            &mut seen,
            false,
        )
        .await?;
        let records: Vec<DeliveryRecord> =
            records.into_iter().filter(|r| filter.keeps(r)).collect();
        print_stream(ctx.output, &records)?;
    }
}

/// Reads every target's records after its cursor, to the end, merged by time and each shown
/// once. A target that cannot be read is reported and skipped; all failing is an error on the
/// first read (later, while following, a warning).
async fn read_new(
    client: Option<&kube::Client>,
    sources: &mut [Source],
    endpoint: &str,
    seen: &mut Seen,
    first: bool,
) -> anyhow::Result<Vec<DeliveryRecord>> {
    let mut records = Vec::new();
    let mut failures = Vec::new();
    for source in sources.iter_mut() {
        match read_source(client, source, endpoint).await {
            Ok(mut read) => records.append(&mut read),
            Err(error) => failures.push(format!("{}: {error:#}", source.target)),
        }
    }
    if first && failures.len() == sources.len() {
        anyhow::bail!("no sidecar could be read:\n  {}", failures.join("\n  "));
    }
    for failure in failures {
        anstream::eprintln!("{} {failure}", style::paint(WARN, style::WARNING));
    }
    records.sort_by_key(|r| r.at_ms);
    Ok(records.into_iter().filter(|r| seen.first_time(r)).collect())
}

async fn read_source(
    client: Option<&kube::Client>,
    source: &mut Source,
    endpoint: &str,
) -> anyhow::Result<Vec<DeliveryRecord>> {
    let mut records = Vec::new();
    loop {
        let mut path = format!(
            "{PATH_DELIVERIES}?endpoint={}&limit={MAX_PAGE}",
            encode(endpoint)
        );
        if let Some(cursor) = &source.cursor {
            path.push_str("&after=");
            path.push_str(&encode(cursor));
        }
        let page: DeliveryPage = sidecar_access::get(client, &source.target, &path)
            .await?
            .json("GET /deliveries")?;
        let full = page.records.len() >= MAX_PAGE;
        let moved = source.cursor.as_deref() != Some(page.cursor.as_str());
        records.extend(page.records);
        source.cursor = Some(page.cursor);
        if !full || !moved {
            return Ok(records);
        }
    }
}

/// What `--outcome`, `--event-type` and `--since` keep.
struct Filter {
    outcomes: Vec<String>,
    event_type: Option<String>,
    since_ms: Option<i64>,
}

impl Filter {
    fn new(args: &Args) -> Filter {
        let since_ms = args.since.map(|since| {
            Timestamp::now().as_millisecond() - i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        });
        Filter {
            outcomes: args
                .outcome
                .iter()
                .map(|o| o.trim().to_ascii_lowercase())
                .filter(|o| !o.is_empty())
                .collect(),
            event_type: args.event_type.clone(),
            since_ms,
        }
    }

    fn keeps(&self, record: &DeliveryRecord) -> bool {
        (self.outcomes.is_empty() || self.outcomes.contains(&record.outcome))
            && self
                .event_type
                .as_ref()
                .is_none_or(|t| record.event_type.as_ref() == Some(t))
            && self.since_ms.is_none_or(|since| record.at_ms >= since)
    }
}

/// The records shown so far, bounded.
#[derive(Default)]
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    fn first_time(&mut self, record: &DeliveryRecord) -> bool {
        let Ok(key) = serde_json::to_string(record) else {
            return true;
        };
        if !self.set.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > SEEN
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        true
    }
}

/// While following: JSON lines for `-o json` (YAML documents for `-o yaml`), else text lines.
fn print_stream(output: Output, records: &[DeliveryRecord]) -> anyhow::Result<()> {
    let mut stdout = anstream::stdout().lock();
    for record in records {
        match output {
            Output::Text => writeln!(stdout, "{}", line(record))?,
            Output::Json => writeln!(stdout, "{}", serde_json::to_string(record)?)?,
            Output::Yaml => write!(stdout, "---\n{}", serde_yaml::to_string(record)?)?,
        }
    }
    stdout.flush().context("writing to stdout")?;
    Ok(())
}

/// `TIME  endpoint  outcome  status  latency  [delivery id]  event-type  instance  reason`.
fn line(record: &DeliveryRecord) -> String {
    let time = Timestamp::from_millisecond(record.at_ms)
        .map_or_else(|_| record.at_ms.to_string(), |t| format!("{t:.3}"));
    let outcome = match record.attempt {
        Some(attempt) if record.kind == RecordKind::Attempt => {
            format!("{}#{attempt}", record.outcome)
        }
        _ => record.outcome.clone(),
    };
    let outcome_style = match record.outcome.as_str() {
        "forwarded" | "delivered" | "queued" | "duplicate" | "filtered" => GOOD,
        "in_flight" | "retry_scheduled" | "app_rejected" => WARN,
        _ => BAD,
    };
    let status = if record.status == 0 {
        "-".to_owned()
    } else {
        record.status.to_string()
    };
    let mut text = format!(
        "{}  {}  {}  {:>3}  {:>8}  {}  {}  {}",
        style::paint(DIM, time),
        record.endpoint,
        style::paint(outcome_style, format!("{outcome:<16}")),
        status,
        latency(record.latency_us),
        record
            .delivery_id
            .as_deref()
            .map_or_else(|| "-".to_owned(), |id| format!("[{id}]")),
        record.event_type.as_deref().unwrap_or("-"),
        record.instance,
    );
    if let Some(reason) = &record.reason {
        text.push_str("  ");
        text.push_str(reason);
    }
    text
}

fn latency(micros: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // Shown with one decimal.
    let value = micros as f64;
    if micros < 1000 {
        format!("{micros}µs")
    } else if micros < 1_000_000 {
        format!("{:.1}ms", value / 1000.0)
    } else {
        format!("{:.2}s", value / 1_000_000.0)
    }
}

/// Percent-encodes a query value (endpoint names and cursors need little).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_read_at_a_glance() {
        assert_eq!(latency(350), "350µs");
        assert_eq!(latency(1250), "1.2ms");
        assert_eq!(latency(2_100_000), "2.10s");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("1-0/7"), "1-0%2F7");
        assert_eq!(encode("orders"), "orders");
    }
}
