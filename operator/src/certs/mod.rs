//! The admission webhook's TLS: a CA and serving certificate the operator makes itself (or
//! files cert-manager mounts), hot-swapped into the rustls server without a restart.
//!
//! Self-managed mode keeps everything in one Secret that all replicas share: whoever finds it
//! missing creates it (the API server's `AlreadyExists` decides a race, and the loser reads
//! back what won); whoever finds the serving certificate past 2/3 of its lifetime renews it
//! with an update conditioned on the `resourceVersion` it read (a `Conflict` means another
//! replica did it first). Every replica re-reads the Secret periodically and serves what it
//! holds. The CA bundle goes into the `MutatingWebhookConfiguration` by server-side apply of
//! `webhooks[*].clientConfig.caBundle` only, under [`CA_BUNDLE_FIELD_MANAGER`].
//!
//! A serving certificate renewal reuses the CA, so the API server's bundle stays valid and
//! nothing is ever refused. When the CA itself reaches 2/3 of its lifetime a new one is put
//! first in the bundle next to the old one; serving certificates switch to it only at their
//! next renewal, by which time the API server has long had the new bundle.

mod issue;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use prometheus_client::metrics::gauge::Gauge;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use issue::{CertPair, IssueError, issue_ca, issue_serving, names_all, validity};

/// Field manager of the CA bundle in the `MutatingWebhookConfiguration`; separate from the
/// reconciler's so neither takes the other's fields.
pub const CA_BUNDLE_FIELD_MANAGER: &str = "hookguard-operator-cabundle";
/// How often the CA bundle is written even when unchanged.
const REAPPLY_EVERY: Duration = Duration::from_secs(60);
/// Secret key of the CA bundle (current CA first).
pub const KEY_CA_BUNDLE: &str = "ca.crt";
/// The current CA's private key.
pub const KEY_CA_KEY: &str = "ca.key";
/// The serving certificate (PEM).
pub const KEY_TLS_CERT: &str = "tls.crt";
/// The serving key (PEM).
pub const KEY_TLS_KEY: &str = "tls.key";

/// Who owns the webhook's certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CertMode {
    /// The operator's own CA, kept in a shared Secret; it writes the CA bundle.
    #[value(name = "self")]
    SelfManaged,
    /// cert-manager (or anyone) mounts `tls.crt`/`tls.key` into `--cert-dir` and injects the
    /// CA bundle; the operator only reads and reloads the files.
    External,
}

/// Validated certificate settings.
#[derive(Debug, Clone)]
pub struct CertSettings {
    /// Who owns the certificates.
    pub mode: CertMode,
    /// Directory of `tls.crt`/`tls.key` in external mode.
    pub dir: PathBuf,
    /// The shared Secret, self mode.
    pub secret: String,
    /// The operator's namespace (the Secret's, and the Service's).
    pub namespace: String,
    /// DNS names of the serving certificate.
    pub dns_names: Vec<String>,
    /// The `MutatingWebhookConfiguration` to write the CA bundle into; `None` writes none.
    pub webhook_config: Option<String>,
    /// Serving certificate lifetime.
    pub validity: Duration,
    /// CA lifetime.
    pub ca_validity: Duration,
}

/// Why the certificates could not be set up or refreshed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Making a certificate failed.
    #[error("issuing a certificate")]
    Issue(#[from] IssueError),
    /// Reading the certificate Secret failed.
    #[error("reading Secret {0}")]
    ReadSecret(String, #[source] kube::Error),
    /// Creating or updating the certificate Secret failed.
    #[error("writing Secret {0}")]
    WriteSecret(String, #[source] kube::Error),
    /// Other replicas kept writing the Secret between our read and our write.
    #[error("Secret {0} kept changing under us")]
    RacesLost(String),
    /// Writing the CA bundle failed.
    #[error("writing the CA bundle into MutatingWebhookConfiguration {0}")]
    WriteCaBundle(String, #[source] kube::Error),
    /// A certificate file could not be read.
    #[error("reading {0}")]
    ReadFile(PathBuf, #[source] std::io::Error),
    /// The certificate and key do not make a usable rustls key.
    #[error("loading the serving certificate into rustls")]
    Load(#[source] rustls::Error),
    /// The PEM holds no certificate or no key.
    #[error("the serving certificate PEM holds no {0}")]
    EmptyPem(&'static str),
}

/// The serving certificate the TLS server presents; swapped atomically on renewal, so
/// handshakes in progress finish with the old one and new ones get the new one.
#[derive(Debug, Default)]
pub struct CertResolver {
    current: ArcSwapOption<CertifiedKey>,
}

impl CertResolver {
    /// Installs a new certificate.
    pub fn set(&self, key: Arc<CertifiedKey>) {
        self.current.store(Some(key));
    }

    /// Whether a certificate is installed.
    pub fn is_ready(&self) -> bool {
        self.current.load().is_some()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

/// Loads a PEM certificate chain and key into a rustls key.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, CertError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &cert_pem[..])
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(CertError::EmptyPem("certificate"));
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .ok()
        .flatten()
        .ok_or(CertError::EmptyPem("private key"))?;
    let provider = rustls::crypto::ring::default_provider();
    let key = CertifiedKey::from_der(certs, key, &provider).map_err(CertError::Load)?;
    Ok(Arc::new(key))
}

/// Keeps the certificates current until `shutdown`: `resolver` always holds the newest
/// serving certificate and `expiry` its `notAfter` (Unix seconds). Returns after the first
/// certificate is installed through `ready`.
pub async fn maintain(
    settings: CertSettings,
    client: Client,
    resolver: Arc<CertResolver>,
    expiry: Gauge,
    ready: tokio::sync::oneshot::Sender<()>,
    shutdown: CancellationToken,
) {
    let mut ready = Some(ready);
    let mut state = State::default();
    loop {
        let wait = match refresh(&settings, &client, &resolver, &expiry, &mut state).await {
            Ok(next) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                next
            }
            Err(error) => {
                tracing::warn!(error = %hookguard_api::report::chain(&error), "webhook certificate refresh failed; retrying");
                Duration::from_secs(2)
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// What this replica last installed and applied.
#[derive(Debug, Default)]
struct State {
    cert_pem: Vec<u8>,
    applied_bundle: Vec<u8>,
    applied_at: Option<std::time::Instant>,
}

/// One refresh; returns the time until the next.
async fn refresh(
    settings: &CertSettings,
    client: &Client,
    resolver: &CertResolver,
    expiry: &Gauge,
    state: &mut State,
) -> Result<Duration, CertError> {
    let mut retry_soon = false;
    let pair = match settings.mode {
        CertMode::External => read_files(settings).await?,
        CertMode::SelfManaged => {
            let (pair, bundle) = ensure_secret(settings, client).await?;
            // Re-applied now and then too: a configuration deleted and re-created (without
            // caBundle, as the chart renders it) must get it back.
            let overdue = state
                .applied_at
                .is_none_or(|at| at.elapsed() >= REAPPLY_EVERY);
            if let Some(name) = &settings.webhook_config
                && (bundle != state.applied_bundle || overdue)
            {
                // Serving does not wait for the bundle: a missing configuration (not installed
                // yet, or disabled) is retried without holding up the certificate.
                match apply_ca_bundle(client, name, &bundle).await {
                    Ok(()) => {
                        state.applied_bundle = bundle;
                        state.applied_at = Some(std::time::Instant::now());
                    }
                    Err(error) => {
                        tracing::warn!(error = %hookguard_api::report::chain(&error), "cannot write the CA bundle yet; retrying");
                        retry_soon = true;
                    }
                }
            }
            pair
        }
    };
    if pair.cert_pem != state.cert_pem {
        resolver.set(certified_key(&pair.cert_pem, &pair.key_pem)?);
        state.cert_pem.clone_from(&pair.cert_pem);
        tracing::info!("webhook serving certificate loaded");
    }
    let (_, not_after) = validity(&pair.cert_pem)?;
    expiry.set(unix_seconds(not_after));
    // Re-read often enough to renew at 2/3 of the lifetime and to pick up another replica's
    // renewal (or cert-manager's) well before the old certificate expires; at most every
    // 30 s in production.
    let remaining = not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let next = (remaining / 8).clamp(Duration::from_millis(200), Duration::from_secs(30));
    Ok(if retry_soon {
        next.min(Duration::from_secs(2))
    } else {
        next
    })
}

/// External mode: the mounted files.
async fn read_files(settings: &CertSettings) -> Result<CertPair, CertError> {
    let read = |name: &str| {
        let path = settings.dir.join(name);
        async move {
            tokio::fs::read(&path)
                .await
                .map_err(|e| CertError::ReadFile(path, e))
        }
    };
    Ok(CertPair {
        cert_pem: read(KEY_TLS_CERT).await?,
        key_pem: read(KEY_TLS_KEY).await?,
    })
}

/// The decoded contents of the certificate Secret.
struct Stored {
    bundle: Vec<u8>,
    ca_key: Vec<u8>,
    pair: CertPair,
}

fn stored(secret: &Secret) -> Option<Stored> {
    let data = secret.data.as_ref()?;
    let get = |key: &str| data.get(key).map(|b| b.0.clone());
    Some(Stored {
        bundle: get(KEY_CA_BUNDLE)?,
        ca_key: get(KEY_CA_KEY)?,
        pair: CertPair {
            cert_pem: get(KEY_TLS_CERT)?,
            key_pem: get(KEY_TLS_KEY)?,
        },
    })
}

fn secret_object(
    settings: &CertSettings,
    stored: &Stored,
    resource_version: Option<String>,
) -> Secret {
    let data = BTreeMap::from([
        (KEY_CA_BUNDLE.to_owned(), ByteString(stored.bundle.clone())),
        (KEY_CA_KEY.to_owned(), ByteString(stored.ca_key.clone())),
        (
            KEY_TLS_CERT.to_owned(),
            ByteString(stored.pair.cert_pem.clone()),
        ),
        (
            KEY_TLS_KEY.to_owned(),
            ByteString(stored.pair.key_pem.clone()),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(settings.secret.clone()),
            namespace: Some(settings.namespace.clone()),
            resource_version,
            labels: Some(BTreeMap::from([(
                hookguard_api::names::LABEL_MANAGED_BY.to_owned(),
                hookguard_api::names::MANAGED_BY.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Whether a certificate we issued is past 2/3 of its lifetime (or unreadable) at `now`.
/// The lifetime is counted from issuance, not from the backdated `notBefore`.
fn due(pem: &[u8], now: SystemTime) -> bool {
    let Ok((not_before, not_after)) = validity(pem) else {
        return true;
    };
    let issued = not_before + issue::BACKDATE;
    let lifetime = not_after.duration_since(issued).unwrap_or_default();
    now >= issued + lifetime * 2 / 3
}

/// Self mode: makes sure the Secret holds a current CA and serving certificate; returns the
/// serving pair and the CA bundle it holds (whoever wrote it).
async fn ensure_secret(
    settings: &CertSettings,
    client: &Client,
) -> Result<(CertPair, Vec<u8>), CertError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &settings.namespace);
    let name = &settings.secret;
    // Two attempts: a lost race (AlreadyExists, Conflict) is settled by reading back.
    for _ in 0..3 {
        let existing = api
            .get_opt(name)
            .await
            .map_err(|e| CertError::ReadSecret(name.clone(), e))?;
        let now = SystemTime::now();
        let (current, resource_version) = match &existing {
            Some(secret) => (stored(secret), secret.metadata.resource_version.clone()),
            None => (None, None),
        };
        // Reissued when due, and when it does not name what the settings ask for (an
        // operator started with --webhook-url after one without).
        if let Some(current) = &current
            && !due(&current.pair.cert_pem, now)
            && names_all(&current.pair.cert_pem, &settings.dns_names)
        {
            return Ok((current.pair.clone(), current.bundle.clone()));
        }
        let next = renew(settings, current.as_ref(), now)?;
        let object = secret_object(settings, &next, resource_version);
        let written = if existing.is_some() {
            api.replace(name, &PostParams::default(), &object).await
        } else {
            api.create(&PostParams::default(), &object).await
        };
        match written {
            Ok(_) => {
                tracing::info!(secret = %name, "webhook certificate issued");
                return Ok((next.pair, next.bundle));
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!(secret = %name, "another replica wrote the certificate first");
            }
            Err(e) => return Err(CertError::WriteSecret(name.clone(), e)),
        }
    }
    // Three lost races in a row: report, the caller retries shortly.
    Err(CertError::RacesLost(name.clone()))
}

/// The next Secret contents: a new serving certificate, and a new CA when there is none or
/// the current one is past 2/3 of its lifetime (the old CA stays in the bundle).
fn renew(
    settings: &CertSettings,
    current: Option<&Stored>,
    now: SystemTime,
) -> Result<Stored, CertError> {
    let reusable_ca = current.filter(|c| {
        first_pem_cert(&c.bundle).is_some_and(|ca| !due(&ca, now))
            && issue::ca_key_matches(&c.bundle, &c.ca_key)
    });
    let (ca_cert, ca_key, bundle) = if let Some(c) = reusable_ca {
        let ca = first_pem_cert(&c.bundle).unwrap_or_default();
        (ca, c.ca_key.clone(), c.bundle.clone())
    } else {
        let ca = issue_ca(settings.ca_validity.max(settings.validity * 3), now)?;
        let mut bundle = ca.cert_pem.clone();
        // Keep the previous CA while certificates it signed may still be served.
        if let Some(old) = current.and_then(|c| first_pem_cert(&c.bundle))
            && validity(&old).is_ok_and(|(_, not_after)| not_after > now)
        {
            bundle.extend_from_slice(&old);
        }
        (ca.cert_pem, ca.key_pem, bundle)
    };
    let pair = issue_serving(
        &ca_cert,
        &ca_key,
        &settings.dns_names,
        settings.validity,
        now,
    )?;
    Ok(Stored {
        bundle,
        ca_key,
        pair,
    })
}

/// The first certificate of a PEM bundle, as PEM.
fn first_pem_cert(bundle: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(bundle).ok()?;
    let end_marker = "-----END CERTIFICATE-----";
    let end = text.find(end_marker)? + end_marker.len();
    let mut pem = text[..end].trim_start().as_bytes().to_vec();
    pem.push(b'\n');
    Some(pem)
}

/// Writes `bundle` into every webhook of the configuration `name`, owning nothing else.
pub async fn apply_ca_bundle(client: &Client, name: &str, bundle: &[u8]) -> Result<(), CertError> {
    use base64::Engine as _;
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    // The configuration comes from the chart; applying a partial object to a missing one
    // would try to create an invalid one, so read it first for its webhooks' names.
    let existing = api
        .get(name)
        .await
        .map_err(|e| CertError::WriteCaBundle(name.to_owned(), e))?;
    let current = existing.webhooks.iter().flatten().all(|w| {
        w.client_config
            .ca_bundle
            .as_ref()
            .is_some_and(|b| b.0 == bundle)
    });
    if current {
        return Ok(());
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(bundle);
    let webhooks: Vec<_> = existing
        .webhooks
        .iter()
        .flatten()
        .map(|w| json!({ "name": w.name, "clientConfig": { "caBundle": encoded } }))
        .collect();
    let patch = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": { "name": name },
        "webhooks": webhooks,
    });
    api.patch(
        name,
        &PatchParams::apply(CA_BUNDLE_FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|e| CertError::WriteCaBundle(name.to_owned(), e))?;
    tracing::info!(configuration = %name, "CA bundle written");
    Ok(())
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CertSettings {
        CertSettings {
            mode: CertMode::SelfManaged,
            dir: PathBuf::new(),
            secret: "s".into(),
            namespace: "ns".into(),
            dns_names: vec!["hookguard-webhook.ns.svc".into()],
            webhook_config: None,
            validity: Duration::from_secs(90),
            ca_validity: Duration::from_secs(3600),
        }
    }

    #[test]
    fn a_renewal_keeps_the_ca_until_it_is_due() {
        let now = SystemTime::now();
        let first = renew(&settings(), None, now).unwrap();
        assert!(!due(&first.pair.cert_pem, now));
        assert!(due(&first.pair.cert_pem, now + Duration::from_secs(61)));
        let second = renew(&settings(), Some(&first), now + Duration::from_secs(61)).unwrap();
        assert_eq!(second.bundle, first.bundle, "same CA, same bundle");
        assert_ne!(second.pair.cert_pem, first.pair.cert_pem);
        certified_key(&second.pair.cert_pem, &second.pair.key_pem).unwrap();

        let later = now + Duration::from_secs(2500);
        let third = renew(&settings(), Some(&second), later).unwrap();
        assert!(
            third.bundle.ends_with(&first.bundle),
            "old CA kept in the bundle"
        );
        assert!(third.bundle.len() > first.bundle.len());
    }

    #[test]
    fn first_pem_cert_takes_the_head_of_a_bundle() {
        let a = issue_ca(Duration::from_secs(60), SystemTime::now()).unwrap();
        let b = issue_ca(Duration::from_secs(60), SystemTime::now()).unwrap();
        let bundle = [a.cert_pem.clone(), b.cert_pem].concat();
        assert_eq!(first_pem_cert(&bundle).unwrap(), a.cert_pem);
    }
}
