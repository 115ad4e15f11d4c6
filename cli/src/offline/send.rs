//! `hookguard send`: POSTs a signed test delivery to a URL (a sidecar, through a
//! port-forward or an ingress) and prints each answer: status, latency, the sidecar's
//! `x-hookguard-outcome` and the first line of the body. `--dup`, `--tamper` and `--stale`
//! make the deliveries a sidecar must deduplicate or refuse.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookguard_api::Scheme;
use hookguard_api::names::HEADER_OUTCOME;
use hookguard_sidecar::sign::{Delivery, headers};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use super::input::{self, InputError, parse_duration, parse_header_flag, read_file_or_stdin};
use hookguard_api::report::chain;

use super::sign::{Signer, default_event_type};
use crate::common::style::{self, BAD, DIM, GOOD};
use crate::common::{Context, Exit};

const AFTER_HELP: &str = "\
Exit status: 0 when the answers are what the flags predict: every answer 2xx for a plain
send (and for each --dup copy, which a sidecar answers 200 with outcome `duplicate`); a
refusal, 400 or 401, for --tamper, and for --stale on a scheme that signs a timestamp
(Standard Webhooks, Stripe, Slack; a 2xx there means the endpoint accepted a forged or
replayed delivery). 1 otherwise, or when no answer came; 124 when --timeout ran
out; 2 on bad input. Every answer is printed either way.

Examples:
  # A Stripe-signed test event to a sidecar reached through kubectl port-forward:
  hookguard send http://localhost:8080/hooks/stripe --scheme stripe --secret-file whsec.txt

  # The same delivery three times: the sidecar forwards the first, answers the others as
  # duplicates:
  hookguard send http://localhost:8080/hooks/gh --scheme github --secret-file k1 --dup 2

  # Must be refused: a body changed after signing, and a 10-minute-old timestamp:
  hookguard send http://localhost:8080/hooks/sw --scheme standard-webhooks --secret-file k1 --tamper
  hookguard send http://localhost:8080/hooks/sw --scheme standard-webhooks --secret-file k1 --stale 10m

Only http:// URLs: reach an in-cluster sidecar with `kubectl port-forward`.";

/// `send`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP, next_help_heading = "Send options")]
pub struct Args {
    /// Where to POST the delivery, an http:// URL (the sidecar's port and the endpoint's
    /// path).
    #[arg(value_name = "URL", help_heading = "Arguments")]
    pub url: String,
    #[command(flatten)]
    pub signer: Signer,
    /// The body, read as raw bytes; `-` reads stdin. Default: a small JSON event whose `id`
    /// and `event_id` are the delivery ID (the dedup keys Stripe and Slack use).
    #[arg(long, value_name = "FILE", conflicts_with = "body")]
    pub body_file: Option<PathBuf>,
    /// The body as a string, sent as given.
    #[arg(long, value_name = "STRING")]
    pub body: Option<String>,
    /// The event type: X-GitHub-Event / X-Shopify-Topic, and `type` in the default body.
    #[arg(long, value_name = "TYPE")]
    pub event_type: Option<String>,
    /// The delivery ID. Default: a random UUID.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Send the same delivery (same ID, same signature, same body) N more times, one after
    /// the other, to see deduplication.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub dup: u32,
    /// Change one byte of the body after signing: the endpoint must refuse it (401).
    #[arg(long)]
    pub tamper: bool,
    /// Sign with a timestamp this old (e.g. 10m): an endpoint of a scheme with a signed
    /// timestamp (Standard Webhooks, Stripe, Slack) must refuse it.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stale: Option<Duration>,
    /// An extra request header, `Name: value` (repeatable); replaces a header of the same
    /// name, signature headers included.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// How long to wait for each answer.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
}

/// One answer, as printed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    /// 1 for the first request, 2… for the `--dup` copies.
    request: u32,
    status: u16,
    latency_ms: f64,
    /// `x-hookguard-outcome`: set on answers the sidecar made itself.
    outcome: Option<String>,
    body_first_line: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Output<'a> {
    url: &'a str,
    delivery_id: &'a str,
    /// What the flags predict: `accepted` or `refused`.
    expect: &'static str,
    /// Whether the answers are what the flags predict (the exit status).
    as_expected: bool,
    answers: Vec<Answer>,
}

enum Failure {
    Input(InputError),
    Timeout(u32),
    Other(anyhow::Error),
}

impl From<InputError> for Failure {
    fn from(error: InputError) -> Self {
        Failure::Input(error)
    }
}

/// Runs `send`.
pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<Exit> {
    match send(&args, ctx).await {
        Ok(exit) => Ok(exit),
        Err(Failure::Input(error)) => {
            anstream::eprintln!("error: {}", chain(&error));
            Ok(Exit::Usage)
        }
        Err(Failure::Timeout(n)) => {
            anstream::eprintln!(
                "error: request {n}: no answer within {}",
                super::diagnose::human_secs(args.timeout.as_secs())
            );
            Ok(Exit::Timeout)
        }
        Err(Failure::Other(error)) => Err(error),
    }
}

struct Prepared {
    id: String,
    headers: HeaderMap,
    body: Bytes,
}

fn prepare(args: &Args) -> Result<Prepared, InputError> {
    if !args.url.starts_with("http://") {
        return Err(InputError::Conflict(format!(
            "{}: only http:// URLs are supported (reach an in-cluster sidecar with kubectl port-forward)",
            args.url
        )));
    }
    let key = args.signer.key()?;
    let id = args.id.clone().unwrap_or_else(input::random_id);
    let event_type = args
        .event_type
        .as_deref()
        .unwrap_or_else(|| default_event_type(args.signer.scheme));
    let stale = args
        .stale
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let timestamp = input::now_unix().saturating_sub(stale);
    let mut body = match (&args.body_file, &args.body) {
        (Some(path), _) => read_file_or_stdin("the body", path)?,
        (None, Some(text)) => text.clone().into_bytes(),
        (None, None) => serde_json::json!({
            "id": id,
            "event_id": id,
            "type": event_type,
            "created": timestamp,
        })
        .to_string()
        .into_bytes(),
    };
    let signed = headers(
        args.signer.scheme,
        &key,
        &Delivery {
            id: &id,
            timestamp,
            event_type,
            body: &body,
        },
    )
    .map_err(InputError::NotSignable)?;
    let mut map = HeaderMap::new();
    if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() {
        map.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    for (name, value) in signed {
        let value = HeaderValue::from_str(&value)
            .map_err(|_| InputError::Conflict(format!("--id {id:?} cannot go in a header")))?;
        map.insert(HeaderName::from_static(name), value);
    }
    for text in &args.headers {
        let (name, value) = parse_header_flag(text)?;
        map.insert(name, value);
    }
    if args.tamper {
        // After signing: the signature no longer covers these bytes.
        let middle = body.len() / 2;
        match body.get_mut(middle) {
            Some(byte) => *byte ^= 0x01,
            None => body.push(b'x'),
        }
    }
    Ok(Prepared {
        id,
        headers: map,
        body: Bytes::from(body),
    })
}

async fn send(args: &Args, ctx: &Context) -> Result<Exit, Failure> {
    let prepared = prepare(args)?;
    let signs_timestamp = matches!(
        args.signer.scheme,
        Scheme::StandardWebhooks | Scheme::Stripe | Scheme::Slack
    );
    if args.stale.is_some() && !signs_timestamp {
        anstream::eprintln!(
            "note: {} signs no timestamp, so an endpoint cannot tell a stale delivery from a fresh one (only deduplication protects it): expect it accepted",
            args.signer.scheme.as_str()
        );
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let expect_refusal = args.tamper || (args.stale.is_some() && signs_timestamp);
    let mut answers = Vec::new();
    for n in 1..=args.dup.saturating_add(1) {
        let mut request = hyper::Request::post(&args.url)
            .body(Full::new(prepared.body.clone()))
            .map_err(|error| {
                Failure::Input(InputError::Conflict(format!("{}: {error}", args.url)))
            })?;
        *request.headers_mut() = prepared.headers.clone();
        let started = Instant::now();
        let exchange = async {
            let response = client.request(request).await?;
            let status = response.status().as_u16();
            let outcome = response
                .headers()
                .get(HEADER_OUTCOME)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, outcome, body))
        };
        let (status, outcome, body) = tokio::time::timeout(args.timeout, exchange)
            .await
            .map_err(|_| Failure::Timeout(n))?
            .map_err(|error| {
                Failure::Other(error.context(format!("request {n} to {}", args.url)))
            })?;
        let latency = started.elapsed();
        let answer = Answer {
            request: n,
            status,
            latency_ms: (latency.as_secs_f64() * 10_000.0).round() / 10.0,
            outcome,
            body_first_line: first_line(&body),
        };
        if ctx.output == crate::common::Output::Text {
            print_answer(&answer, expect_refusal);
        }
        answers.push(answer);
    }
    let refused = |a: &Answer| matches!(a.status, 400 | 401);
    let as_expected = if expect_refusal {
        answers.iter().all(refused)
    } else {
        answers.iter().all(|a| (200..300).contains(&a.status))
    };
    let output = Output {
        url: &args.url,
        delivery_id: &prepared.id,
        expect: if expect_refusal {
            "refused"
        } else {
            "accepted"
        },
        as_expected,
        answers,
    };
    if !ctx.print_data(&output).map_err(Failure::Other)? {
        let verdict = if as_expected {
            style::paint(GOOD, format!("{} as expected", output.expect))
        } else {
            style::paint(BAD, format!("expected {}: not so", output.expect))
        };
        anstream::println!("delivery {}: {verdict}", prepared.id);
    }
    Ok(if as_expected { Exit::Ok } else { Exit::Failure })
}

fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or_default();
    let mut out: String = line.chars().take(200).collect();
    if out.len() < line.len() {
        out.push('…');
    }
    out
}

fn print_answer(answer: &Answer, expect_refusal: bool) {
    let good = if expect_refusal {
        matches!(answer.status, 400 | 401)
    } else {
        (200..300).contains(&answer.status)
    };
    let status = style::paint(if good { GOOD } else { BAD }, answer.status);
    let outcome = answer.outcome.as_deref().unwrap_or("- (the app's answer)");
    anstream::println!(
        "#{}  {status}  {:>7.1} ms  outcome: {outcome}  {}",
        answer.request,
        answer.latency_ms,
        style::paint(DIM, &answer.body_first_line)
    );
}
