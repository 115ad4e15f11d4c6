//! `hookguard sign`: the headers a sender of a scheme would send with a body, signed by the
//! sidecar's sender-side code (`hookguard_sidecar::sign`), as header lines, JSON, or a ready
//! `curl` command.

use std::path::PathBuf;

use hookguard_api::Scheme;
use hookguard_api::report::chain;
use hookguard_sidecar::sign::{Delivery, headers};

use super::input::{
    self, InputError, Secret, load_secrets, parse_scheme, read_file_or_stdin, sender_key,
    shell_quote,
};
use crate::common::{Context, Exit};

const AFTER_HELP: &str = "\
Examples:
  # The headers Stripe would send with this body:
  hookguard sign --scheme stripe --secret-file whsec.txt --body-file event.json

  # A curl command that sends it (the body is passed untouched, with --data-binary @file):
  hookguard sign --scheme github --secret-env GH_SECRET --body-file push.json \\
      --curl http://localhost:8080/hooks/github | sh

  # A body from stdin, a fixed ID and timestamp (reproducible), as JSON:
  echo -n '{\"a\":1}' | hookguard sign --scheme standard-webhooks --secret-file k1 \\
      --body-file - --id msg_1 --timestamp 1764000000 -o json

The secret is read as the sidecar reads a key file: one trailing newline is ignored; a
Standard Webhooks secret is `whsec_` + base64 and is decoded, every other scheme uses it
verbatim.";

/// `sign`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP, next_help_heading = "Sign options")]
#[command(group = clap::ArgGroup::new("payload").required(true))]
pub struct Args {
    #[command(flatten)]
    pub signer: Signer,
    /// The delivery ID (webhook-id, X-GitHub-Delivery, …). Default: a random UUID.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// The signed timestamp, unix seconds. Default: now.
    #[arg(long, value_name = "UNIX", allow_negative_numbers = true)]
    pub timestamp: Option<i64>,
    /// The event type, for the schemes that send it in a header (X-GitHub-Event,
    /// X-Shopify-Topic). Default: ping (GitHub), orders/create (Shopify).
    #[arg(long, value_name = "TYPE")]
    pub event_type: Option<String>,
    /// The body, read as raw bytes; `-` reads stdin.
    #[arg(long, value_name = "FILE", group = "payload")]
    pub body_file: Option<PathBuf>,
    /// The body as a string, signed as given (no trailing newline added).
    #[arg(long, value_name = "STRING", group = "payload")]
    pub body: Option<String>,
    /// Print a curl command that POSTs the signed body to URL instead of the header lines.
    #[arg(long, value_name = "URL")]
    pub curl: Option<String>,
}

/// The default event type of a scheme that sends one in a header.
pub fn default_event_type(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::GitHub => "ping",
        Scheme::Shopify => "orders/create",
        _ => "test.event",
    }
}

/// Who signs, for `sign` and `send`: the scheme and the one secret.
#[derive(Debug, clap::Args)]
#[group(skip)]
#[command(group = clap::ArgGroup::new("secret").required(true))]
pub struct Signer {
    /// The sender's scheme: generic, standard-webhooks, stripe, github, slack, shopify, zoom,
    /// paddle, linear (Twilio, Square, Mailgun and SendGrid deliveries cannot be signed here).
    #[arg(long, value_parser = parse_scheme, value_name = "SCHEME")]
    pub scheme: Scheme,
    /// A file holding the signing secret, exactly as the endpoint's key file holds it.
    #[arg(long, value_name = "FILE", group = "secret")]
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding the signing secret.
    #[arg(long, value_name = "VAR", group = "secret")]
    pub secret_env: Option<String>,
}

impl Signer {
    /// The HMAC key bytes a sender of the scheme signs with, from the one secret.
    pub fn key(&self) -> Result<Vec<u8>, InputError> {
        // Before the key: SendGrid's is a public key, which signs nothing.
        hookguard_sidecar::sign::signable(self.scheme).map_err(InputError::NotSignable)?;
        let files: Vec<PathBuf> = self.secret_file.iter().cloned().collect();
        let envs: Vec<String> = self.secret_env.iter().cloned().collect();
        let secret: Secret = load_secrets(&files, &envs)?
            .into_iter()
            .next()
            .ok_or_else(|| InputError::Conflict("give --secret-file or --secret-env".to_owned()))?;
        sender_key(self.scheme, &secret)
    }
}

#[derive(serde::Serialize)]
struct Output<'a> {
    headers: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    curl: Option<&'a str>,
}

/// Runs `sign`.
// `async` like every command's `run`, which `app.rs` awaits alike.
#[allow(clippy::unused_async)]
pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<Exit> {
    match sign(&args, ctx) {
        Ok(exit) => Ok(exit),
        Err(Problem::Input(error)) => {
            anstream::eprintln!("error: {}", chain(&error));
            Ok(Exit::Usage)
        }
        Err(Problem::Other(error)) => Err(error),
    }
}

enum Problem {
    Input(InputError),
    Other(anyhow::Error),
}

impl From<InputError> for Problem {
    fn from(error: InputError) -> Self {
        Problem::Input(error)
    }
}

fn sign(args: &Args, ctx: &Context) -> Result<Exit, Problem> {
    let key = args.signer.key()?;
    let scheme = args.signer.scheme;
    let body = match (&args.body_file, &args.body) {
        (Some(path), _) => read_file_or_stdin("the body", path)?,
        (None, Some(text)) => text.clone().into_bytes(),
        (None, None) => Vec::new(),
    };
    let id = args.id.clone().unwrap_or_else(input::random_id);
    let event_type = args
        .event_type
        .as_deref()
        .unwrap_or_else(|| default_event_type(scheme));
    let delivery = Delivery {
        id: &id,
        timestamp: args.timestamp.unwrap_or_else(input::now_unix),
        event_type,
        body: &body,
    };
    let signed = headers(scheme, &key, &delivery).map_err(InputError::NotSignable)?;

    let curl = match &args.curl {
        Some(url) => Some(curl_command(url, &signed, args, &body)?),
        None => None,
    };
    let output = Output {
        headers: signed
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone().into()))
            .collect(),
        curl: curl.as_deref(),
    };
    if ctx.print_data(&output).map_err(Problem::Other)? {
        return Ok(Exit::Ok);
    }
    match curl {
        Some(curl) => anstream::println!("{curl}"),
        None => {
            for (name, value) in &signed {
                anstream::println!("{name}: {value}");
            }
        }
    }
    Ok(Exit::Ok)
}

fn curl_command(
    url: &str,
    signed: &[(&'static str, String)],
    args: &Args,
    body: &[u8],
) -> Result<String, InputError> {
    let mut parts = vec![
        "curl".to_owned(),
        "-sS".to_owned(),
        "-i".to_owned(),
        "-X".to_owned(),
        "POST".to_owned(),
        shell_quote(url),
    ];
    let json = serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
    if json {
        parts.push("-H".to_owned());
        parts.push(shell_quote("content-type: application/json"));
    }
    for (name, value) in signed {
        parts.push("-H".to_owned());
        parts.push(shell_quote(&format!("{name}: {value}")));
    }
    match (&args.body_file, &args.body) {
        (Some(path), _) if path.as_os_str() != "-" => {
            parts.push("--data-binary".to_owned());
            parts.push(shell_quote(&format!("@{}", path.display())));
        }
        // `--data-raw` sends the string as is, even one starting with `@`.
        (None, Some(text)) => {
            parts.push("--data-raw".to_owned());
            parts.push(shell_quote(text));
        }
        _ => {
            return Err(InputError::Conflict(
                "--curl needs the body in a file (--body-file FILE) or a string (--body): a body read from stdin cannot be read again by curl".to_owned(),
            ));
        }
    }
    Ok(parts.join(" "))
}
