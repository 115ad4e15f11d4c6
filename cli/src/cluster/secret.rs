//! `hookguard secret ENDPOINT [--key ID] [--show]`: an endpoint's signing keys, to paste the
//! current one into the sender's dashboard.
//!
//! Without `--show` only IDs and fingerprints are printed (`-o json|yaml` too). With `--show`
//! the key's value goes to stdout exactly as stored, nothing added when stdout is not a
//! terminal (so `hookguard secret pay --show | pbcopy` copies just the secret), and a warning
//! goes to stderr. The value is never logged.

use std::io::{IsTerminal as _, Write as _};

use anyhow::Context as _;
use hookguard_api::config::Scheme;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use super::status_keys::{self, KeyRing, KeySource, SigningKey, age};
use crate::common::style::{self, DIM, GOOD, WARN};
use crate::common::{Context, Exit};

/// `secret`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The endpoint: NAME or webhookendpoint/NAME.
    #[arg(value_name = "ENDPOINT")]
    pub endpoint: String,
    /// This key instead of the current (newest) one.
    #[arg(long, value_name = "ID")]
    pub key: Option<String>,
    /// Print the key's value to stdout (it is a secret: keep it out of logs and chats).
    #[arg(long)]
    pub show: bool,
}

/// The listing (`-o json|yaml`): no values.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Listing<'a> {
    endpoint: &'a str,
    namespace: &'a str,
    scheme: &'a Scheme,
    #[serde(flatten)]
    ring: &'a KeyRing,
}

/// Runs `secret`.
pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<Exit> {
    let name = status_keys::endpoint_name(&args.endpoint)?;
    let (client, namespace) = ctx.kube.client().await?;
    let endpoint = status_keys::get_endpoint(&client, &namespace, name).await?;
    let ring = status_keys::read_keys(&client, &endpoint).await?;
    let key = match &args.key {
        Some(id) => ring
            .keys
            .iter()
            .find(|key| &key.id == id)
            .with_context(|| {
                format!(
                    "Secret {} has no key {id:?}; its keys: {}",
                    ring.secret_name,
                    ring.keys
                        .iter()
                        .map(|key| key.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?,
        None => ring
            .current()
            .with_context(|| format!("Secret {} holds no key yet", ring.secret_name))?,
    };
    if args.show {
        show(key, &ring, endpoint.spec.scheme, &namespace, name)?;
        return Ok(Exit::Ok);
    }
    let listing = Listing {
        endpoint: name,
        namespace: &namespace,
        scheme: &endpoint.spec.scheme,
        ring: &ring,
    };
    if !ctx.print_data(&listing)? {
        print_listing(&ring, key, ctx.bin, name, Timestamp::now());
    }
    Ok(Exit::Ok)
}

fn show(
    key: &SigningKey,
    ring: &KeyRing,
    scheme: Scheme,
    namespace: &str,
    name: &str,
) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&key.value).context("writing to stdout")?;
    if stdout.is_terminal() {
        stdout.write_all(b"\n").context("writing to stdout")?;
    }
    stdout.flush().context("writing to stdout")?;
    if ring.source == KeySource::PublicKey {
        anstream::eprintln!(
            "this is the sender's public key of {namespace}/{name} (spec.secret.publicKey; key {}, {}, Secret {}): it verifies deliveries and cannot sign them.",
            key.id,
            key.fingerprint,
            ring.secret_name,
        );
        return Ok(());
    }
    let form = match scheme {
        Scheme::StandardWebhooks => {
            " The sender expects it in the whsec_ form it is stored in (whsec_ + base64): paste it as is."
        }
        _ if ring.source == KeySource::SecretRef => {
            " It is the secret the sender issued (spec.secretRef)."
        }
        _ => " Paste it into the sender's settings as is.",
    };
    anstream::eprintln!(
        "{} this is the signing secret of {namespace}/{name} (key {}, {}, Secret {}): anyone who has it can sign deliveries; keep it out of logs, tickets and chats.{form}",
        style::paint(WARN, style::WARNING),
        key.id,
        key.fingerprint,
        ring.secret_name,
    );
    Ok(())
}

fn print_listing(ring: &KeyRing, selected: &SigningKey, bin: &str, name: &str, now: Timestamp) {
    anstream::println!("Secret {}:", ring.secret_name);
    anstream::println!("  {:<10} {:<8} FINGERPRINT", "ID", "AGE");
    for (i, key) in ring.keys.iter().enumerate() {
        let note = match (i, key.expires_at) {
            (0, _) => style::paint(GOOD, "current"),
            (_, Some(at)) if at > now => format!("valid for {}", age(now, at)),
            (_, Some(_)) => "expired".to_owned(),
            _ => String::new(),
        };
        anstream::println!(
            "  {:<10} {:<8} {:<24} {note}",
            key.id,
            key.created_at
                .map_or_else(|| "-".to_owned(), |at| age(at, now)),
            key.fingerprint
        );
    }
    let key_flag = if ring
        .current()
        .is_some_and(|current| current.id == selected.id)
    {
        String::new()
    } else {
        format!(" --key {}", selected.id)
    };
    anstream::println!(
        "{}",
        style::paint(
            DIM,
            format!(
                "the value is a secret and not shown: `{bin} secret {name}{key_flag} --show` prints it to stdout"
            )
        )
    );
}
