//! `hookguard dlq`: the dead-letter queue of a queue-mode endpoint, through the sidecar's
//! loopback-only admin API `/queue` (see `sidecar/src/queue/admin.rs`), reached by
//! port-forward or `--sidecar URL`.
//!
//! With Redis the queue is shared by the endpoint's replicas, so one sidecar answers for all;
//! with the in-memory store each pod has its own, so every pod is asked (`GET /queue` says
//! which store a sidecar uses).

use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::{Context as _, bail};
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::style::{self, BAD, BOLD, DIM, GOOD};
use crate::common::{Context, Exit};
use crate::sidecar_access::{self, Target};

/// Where to find the sidecar(s).
#[derive(Debug, Clone, clap::Args)]
pub struct Reach {
    /// A sidecar's admin URL to ask instead of the endpoint's pods (repeat for several),
    /// e.g. `http://127.0.0.1:9881`.
    #[arg(long = "sidecar", value_name = "URL")]
    pub sidecars: Vec<String>,
}

/// `dlq`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List an endpoint's dead letters, oldest first.
    List {
        /// The WebhookEndpoint.
        endpoint: String,
        /// At most this many per sidecar.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        #[command(flatten)]
        reach: Reach,
    },
    /// Show one dead letter with its stored request (headers and body).
    Show {
        /// The delivery ID.
        id: String,
        /// The WebhookEndpoint.
        endpoint: String,
        #[command(flatten)]
        reach: Reach,
    },
    /// Put a dead letter (or all of them) back in the queue, attempts reset.
    #[command(
        override_usage = "hookguard dlq replay <ID> <ENDPOINT> [OPTIONS]\n       hookguard dlq replay --all <ENDPOINT> [OPTIONS]"
    )]
    Replay {
        /// The delivery ID and the WebhookEndpoint (only the endpoint with --all).
        #[arg(num_args = 1..=2, value_names = ["ID", "ENDPOINT"], required = true)]
        args: Vec<String>,
        /// Every dead letter of the endpoint.
        #[arg(long)]
        all: bool,
        /// With --all: replays per second.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
        rate: u32,
        #[command(flatten)]
        reach: Reach,
    },
    /// Delete a dead letter (or all of them); its ID stays a duplicate for the replay window.
    #[command(
        override_usage = "hookguard dlq purge <ID> <ENDPOINT> --yes [OPTIONS]\n       hookguard dlq purge --all <ENDPOINT> --yes [OPTIONS]"
    )]
    Purge {
        /// The delivery ID and the WebhookEndpoint (only the endpoint with --all).
        #[arg(num_args = 1..=2, value_names = ["ID", "ENDPOINT"], required = true)]
        args: Vec<String>,
        /// Every dead letter of the endpoint.
        #[arg(long)]
        all: bool,
        /// Do it: purging cannot be undone.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        reach: Reach,
    },
}

/// A dead letter as `GET /queue/<endpoint>/dead` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeadLetter {
    delivery_id: String,
    reason: String,
    failed_at_ms: u64,
    received_at_ms: u64,
    attempts: u32,
    size: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeadPage {
    dead_letters: Vec<DeadLetter>,
    next: Option<String>,
}

/// What `-o json|yaml` prints for `list`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    sidecar: String,
    dead_letters: Vec<DeadLetter>,
}

/// Runs `dlq`.
pub async fn run(command: Command, ctx: &Context) -> anyhow::Result<Exit> {
    match command {
        Command::List {
            endpoint,
            limit,
            reach,
        } => list(ctx, &endpoint, limit, &reach).await,
        Command::Show {
            id,
            endpoint,
            reach,
        } => show(ctx, &endpoint, &id, &reach).await,
        Command::Replay {
            args,
            all,
            rate,
            reach,
        } => {
            let Some((id, endpoint)) = split(&args, all)? else {
                return Ok(Exit::Usage);
            };
            let path = match &id {
                Some(id) => format!("/queue/{}/dead/{}/replay", encode(&endpoint), encode(id)),
                None => format!("/queue/{}/dead/replay?rate={rate}", encode(&endpoint)),
            };
            change(
                ctx,
                &endpoint,
                http::Method::POST,
                &path,
                "replayed",
                &reach,
            )
            .await
        }
        Command::Purge {
            args,
            all,
            yes,
            reach,
        } => {
            let Some((id, endpoint)) = split(&args, all)? else {
                return Ok(Exit::Usage);
            };
            if !yes {
                anstream::eprintln!(
                    "{} purging deletes {} for good (the sender's retries stay duplicates): add --yes",
                    style::paint(BAD, style::FAIL),
                    id.as_deref().map_or_else(
                        || format!("every dead letter of {endpoint}"),
                        |id| format!("dead letter {id}")
                    )
                );
                return Ok(Exit::Usage);
            }
            let path = match &id {
                Some(id) => format!("/queue/{}/dead/{}", encode(&endpoint), encode(id)),
                None => format!("/queue/{}/dead", encode(&endpoint)),
            };
            change(
                ctx,
                &endpoint,
                http::Method::DELETE,
                &path,
                "purged",
                &reach,
            )
            .await
        }
    }
}

/// `[ID] ENDPOINT`: the ID (none with `--all`) and the endpoint; `None` after a usage error.
fn split(args: &[String], all: bool) -> anyhow::Result<Option<(Option<String>, String)>> {
    match (args, all) {
        ([endpoint], true) => Ok(Some((None, endpoint.clone()))),
        ([id, endpoint], false) => Ok(Some((Some(id.clone()), endpoint.clone()))),
        ([_], false) => {
            anstream::eprintln!(
                "{} name the delivery ID and the endpoint (ID ENDPOINT), or --all ENDPOINT",
                style::paint(BAD, style::FAIL)
            );
            Ok(None)
        }
        (_, true) => {
            anstream::eprintln!(
                "{} --all takes the endpoint only, not a delivery ID",
                style::paint(BAD, style::FAIL)
            );
            Ok(None)
        }
        _ => bail!("expected [ID] ENDPOINT"),
    }
}

/// The sidecars to ask: with Redis (one shared queue) the first that answers, with the
/// in-memory store all of them.
async fn targets(
    ctx: &Context,
    endpoint: &str,
    reach: &Reach,
) -> anyhow::Result<(Option<kube::Client>, Vec<Target>)> {
    let (client, targets) = if reach.sidecars.is_empty() {
        let (client, namespace) = ctx.kube.client().await?;
        let targets = sidecar_access::endpoint_targets(&client, &namespace, endpoint, &[]).await?;
        if targets.is_empty() {
            bail!(
                "no running pod serves {endpoint} in {namespace}; name a sidecar with --sidecar URL"
            );
        }
        (Some(client), targets)
    } else {
        (
            None,
            reach.sidecars.iter().cloned().map(Target::Url).collect(),
        )
    };
    let mut last_error = None;
    for target in &targets {
        match sidecar_access::get(client.as_ref(), target, "/queue").await {
            Ok(answer) => match answer.json::<Value>("GET /queue") {
                Ok(overview) if overview["store"] == "memory" => {
                    return Ok((client, targets));
                }
                Ok(_) => return Ok((client, vec![target.clone()])),
                Err(error) => last_error = Some(error),
            },
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no sidecar to ask")))
}

async fn list(ctx: &Context, endpoint: &str, limit: u32, reach: &Reach) -> anyhow::Result<Exit> {
    let (client, targets) = targets(ctx, endpoint, reach).await?;
    let mut listed = Vec::new();
    for target in &targets {
        let path = format!("/queue/{}/dead?limit={limit}", encode(endpoint));
        let page: DeadPage = sidecar_access::get(client.as_ref(), target, &path)
            .await?
            .json("GET /queue/<endpoint>/dead")?;
        if page.next.is_some() {
            tracing::info!(%target, "more dead letters than --limit");
        }
        listed.push(Listed {
            sidecar: target.to_string(),
            dead_letters: page.dead_letters,
        });
    }
    if ctx.print_data(&listed)? {
        return Ok(Exit::Ok);
    }
    let many = listed.len() > 1;
    for group in &listed {
        if many {
            anstream::println!("{}", style::paint(BOLD, &group.sidecar));
        }
        if group.dead_letters.is_empty() {
            anstream::println!(
                "{} no dead letters for {endpoint}",
                style::paint(GOOD, style::PASS)
            );
            continue;
        }
        anstream::println!(
            "{}",
            style::paint(
                DIM,
                "FAILED AT                 DELIVERY ID  ATTEMPTS  SIZE  REASON"
            )
        );
        for dead in &group.dead_letters {
            anstream::println!(
                "{}  {}  {}  {}  {}",
                time(dead.failed_at_ms),
                dead.delivery_id,
                dead.attempts,
                dead.size,
                dead.reason
            );
        }
    }
    Ok(Exit::Ok)
}

async fn show(ctx: &Context, endpoint: &str, id: &str, reach: &Reach) -> anyhow::Result<Exit> {
    let (client, targets) = targets(ctx, endpoint, reach).await?;
    let path = format!("/queue/{}/dead/{}", encode(endpoint), encode(id));
    let mut last = None;
    for target in &targets {
        let answer = sidecar_access::get(client.as_ref(), target, &path).await?;
        if answer.status == 404 && targets.len() > 1 {
            last = Some(answer);
            continue;
        }
        return print_shown(
            ctx,
            &answer.json::<Value>("GET /queue/<endpoint>/dead/<id>")?,
        );
    }
    match last {
        Some(answer) => {
            let error = answer.json::<Value>("GET /queue/<endpoint>/dead/<id>");
            anstream::eprintln!(
                "{} {}",
                style::paint(BAD, style::FAIL),
                error.err().map(|e| format!("{e:#}")).unwrap_or_default()
            );
            Ok(Exit::Failure)
        }
        None => bail!("no sidecar to ask"),
    }
}

fn print_shown(ctx: &Context, shown: &Value) -> anyhow::Result<Exit> {
    if ctx.print_data(shown)? {
        return Ok(Exit::Ok);
    }
    let dead = &shown["deadLetter"];
    let request = &shown["request"];
    anstream::println!(
        "{} {}",
        style::paint(BOLD, "delivery"),
        dead["deliveryId"].as_str().unwrap_or("?")
    );
    anstream::println!("  reason:    {}", dead["reason"].as_str().unwrap_or("?"));
    anstream::println!("  attempts:  {}", dead["attempts"]);
    anstream::println!(
        "  received:  {}",
        time(dead["receivedAtMs"].as_u64().unwrap_or(0))
    );
    anstream::println!(
        "  failed:    {}",
        time(dead["failedAtMs"].as_u64().unwrap_or(0))
    );
    anstream::println!("  replayed:  {}", shown["replayed"]);
    anstream::println!("{}", style::paint(BOLD, "request"));
    anstream::println!("  POST {}", request["path"].as_str().unwrap_or("/"));
    for header in request["headers"].as_array().into_iter().flatten() {
        anstream::println!(
            "  {}: {}",
            header[0].as_str().unwrap_or(""),
            header[1].as_str().unwrap_or("")
        );
    }
    anstream::println!();
    let mut stdout = anstream::stdout().lock();
    stdout.write_all(request["body"].as_str().unwrap_or("").as_bytes())?;
    if request["bodyEncoding"] == "base64" {
        write!(
            stdout,
            "\n{}",
            style::paint(DIM, "(the body is not UTF-8: shown as base64)")
        )?;
    }
    writeln!(stdout)?;
    stdout.flush().context("writing to stdout")?;
    Ok(Exit::Ok)
}

/// A replay or purge: sent to each target (one with Redis); the IDs done are printed.
async fn change(
    ctx: &Context,
    endpoint: &str,
    method: http::Method,
    path: &str,
    done: &str,
    reach: &Reach,
) -> anyhow::Result<Exit> {
    let (client, targets) = targets(ctx, endpoint, reach).await?;
    let mut ids: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    for target in &targets {
        let answer = sidecar_access::request(client.as_ref(), target, method.clone(), path).await?;
        match answer.json::<Value>(&format!("{method} {path}")) {
            Ok(value) => ids.extend(
                value[done]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|id| id.as_str().map(str::to_owned)),
            ),
            Err(error) => errors.push(format!("{target}: {error:#}")),
        }
    }
    if ids.is_empty() && !errors.is_empty() {
        for error in &errors {
            anstream::eprintln!("{} {error}", style::paint(BAD, style::FAIL));
        }
        return Ok(Exit::Failure);
    }
    if !ctx.print_data(&serde_json::json!({ done: ids }))? {
        anstream::println!(
            "{} {done} {} dead letter(s) of {endpoint}",
            style::paint(GOOD, style::PASS),
            ids.len()
        );
        for id in &ids {
            anstream::println!("  {id}");
        }
    }
    Ok(Exit::Ok)
}

fn time(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| ms.to_string(), |t| format!("{t:.3}"))
}

fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:@+=".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}
