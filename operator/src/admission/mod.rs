//! The mutating admission webhook that injects the sidecar, served by every replica.
//!
//! [`run`] starts three things: a reflector cache of `WebhookEndpoints` (admissions read it,
//! never the API), the certificate maintainer ([`crate::certs`]) and the HTTPS server
//! ([`server`]). A request goes [`handler::Webhook::review`] → [`render::select_endpoints`]
//! → [`render::render_pod`] → [`render::patch`]; [`manifests`] renders the objects that
//! route pods here and guard them when the webhook is down.

pub mod handler;
pub mod manifests;
pub mod metrics;
pub mod render;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use hookguard_api::crd::WebhookEndpoint;
use hookguard_api::units::parse_duration;
use hookguard_api::validation::{self, StoreError};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

pub use metrics::register_metrics;

use crate::certs::{CertMode, CertResolver, CertSettings};
use manifests::WEBHOOK_PATH;
use render::{InjectionConfig, SidecarResources};

/// How long a review waits for the endpoint cache's first list when it cannot ask the API
/// server (the webhook in production always can; see [`DIRECT_READ_TIMEOUT`]).
const CACHE_WAIT: Duration = Duration::from_secs(2);
/// Bound on the direct read that confirms a denial from the cache. With the rest of a review
/// it must fit the API server's call time-out ([`manifests::TIMEOUT_SECONDS`]), or the API
/// server gives up first and, failing open, leaves the pod to the policy.
const DIRECT_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Flags of the admission webhook, flattened into `hookguard-operator run`.
#[derive(Debug, Clone, clap::Args)]
pub struct AdmissionArgs {
    /// Address the admission webhook serves HTTPS on (path /mutate).
    #[arg(long, env = "HOOKGUARD_WEBHOOK_LISTEN", default_value = "0.0.0.0:9443")]
    pub webhook_listen: String,
    /// The webhook's Service; the serving certificate names `<service>.<namespace>.svc`.
    #[arg(
        long,
        env = "HOOKGUARD_WEBHOOK_SERVICE",
        default_value = "hookguard-webhook"
    )]
    pub webhook_service: String,
    /// The operator's namespace: the Service's and the certificate Secret's; never injected.
    #[arg(long, env = "POD_NAMESPACE", default_value = "hookguard-system")]
    pub webhook_namespace: String,
    /// The `MutatingWebhookConfiguration` whose caBundle the operator writes (self cert mode).
    #[arg(
        long,
        env = "HOOKGUARD_WEBHOOK_CONFIG_NAME",
        default_value = "hookguard"
    )]
    pub webhook_config_name: String,
    /// Development: the URL the API server calls for an operator running outside the cluster,
    /// e.g. `https://10.0.0.5:9443/mutate`. The operator then writes the whole
    /// `MutatingWebhookConfiguration` (--webhook-config-name) pointing at it, scoped to
    /// --namespace when given, and in self cert mode its serving certificate also names the
    /// URL's host. Empty: the chart's configuration, which calls the Service.
    #[arg(long, env = "HOOKGUARD_WEBHOOK_URL", default_value = "")]
    pub webhook_url: String,
    /// `self`: the operator's own CA and certificate; `external`: cert-manager's files in --cert-dir.
    #[arg(long, env = "HOOKGUARD_CERT_MODE", value_enum, default_value = "self")]
    pub cert_mode: CertMode,
    /// Directory holding tls.crt and tls.key (external cert mode); re-read when they change.
    #[arg(
        long,
        env = "HOOKGUARD_CERT_DIR",
        default_value = "/etc/hookguard/webhook-certs"
    )]
    pub cert_dir: PathBuf,
    /// Secret in the operator's namespace holding the CA and serving certificate (self mode).
    #[arg(
        long,
        env = "HOOKGUARD_CERT_SECRET",
        default_value = "hookguard-webhook-cert"
    )]
    pub cert_secret: String,
    /// Lifetime of the serving certificate; it is renewed at 2/3 of it.
    #[arg(long, env = "HOOKGUARD_CERT_VALIDITY", default_value = "8760h")]
    pub cert_validity: String,
    /// Lifetime of the CA; a successor joins the bundle at 2/3 of it.
    #[arg(long, env = "HOOKGUARD_CA_VALIDITY", default_value = "87600h")]
    pub ca_validity: String,
    /// The sidecar image injected into pods.
    #[arg(long, env = "HOOKGUARD_SIDECAR_IMAGE", default_value = concat!("ghcr.io/hookguard/hookguard-sidecar:", env!("CARGO_PKG_VERSION")))]
    pub sidecar_image: String,
    /// The sidecar's imagePullPolicy.
    #[arg(
        long,
        env = "HOOKGUARD_SIDECAR_IMAGE_PULL_POLICY",
        default_value = "IfNotPresent"
    )]
    pub sidecar_image_pull_policy: String,
    /// The sidecars' dedup store: `memory` or a redis:// / rediss:// URL without password.
    #[arg(long, env = "HOOKGUARD_SIDECAR_STORE", default_value = "memory")]
    pub sidecar_store: String,
    /// The sidecars' store layout: `standalone`, or `cluster` for a Redis Cluster (then
    /// --sidecar-store may list several seed URLs, comma-separated).
    #[arg(long, env = "HOOKGUARD_SIDECAR_STORE_MODE", default_value = "standalone", value_parser = ["standalone", "cluster"])]
    pub sidecar_store_mode: String,
    /// `name/key` of a Secret in each pod's namespace holding the store's password.
    #[arg(long, env = "HOOKGUARD_SIDECAR_STORE_PASSWORD_SECRET")]
    pub sidecar_store_password_secret: Option<String>,
    /// The sidecar's CPU request (empty: none); per pod: hookguard.dev/sidecar-cpu-request.
    #[arg(long, env = "HOOKGUARD_SIDECAR_CPU_REQUEST", default_value = "10m")]
    pub sidecar_cpu_request: String,
    /// The sidecar's memory request; per pod: hookguard.dev/sidecar-memory-request.
    #[arg(long, env = "HOOKGUARD_SIDECAR_MEMORY_REQUEST", default_value = "16Mi")]
    pub sidecar_memory_request: String,
    /// The sidecar's CPU limit (empty: none); per pod: hookguard.dev/sidecar-cpu-limit.
    #[arg(long, env = "HOOKGUARD_SIDECAR_CPU_LIMIT", default_value = "")]
    pub sidecar_cpu_limit: String,
    /// The sidecar's memory limit; per pod: hookguard.dev/sidecar-memory-limit.
    #[arg(long, env = "HOOKGUARD_SIDECAR_MEMORY_LIMIT", default_value = "64Mi")]
    pub sidecar_memory_limit: String,
    /// After SIGTERM or SIGINT the webhook keeps answering this long (the reconciler stops and
    /// releases its Lease at once): the API server and kube-proxy take a moment to stop
    /// sending to a terminating pod. `0s`: stop at once. Keep it under the pod's
    /// terminationGracePeriodSeconds.
    #[arg(long, env = "HOOKGUARD_SHUTDOWN_DELAY", default_value = "5s")]
    pub shutdown_delay: String,
}

/// Validated admission settings.
#[derive(Debug, Clone)]
pub struct AdmissionSettings {
    /// HTTPS listen address.
    pub listen: SocketAddr,
    /// The operator's namespace.
    pub namespace: String,
    /// Certificates.
    pub certs: CertSettings,
    /// How long the webhook keeps serving after a stop signal.
    pub shutdown_delay: Duration,
    /// `--webhook-url`, checked and with its path: the configuration the operator writes
    /// itself (development, outside the cluster). `None`: the chart's.
    pub webhook_url: Option<String>,
    /// What to inject.
    pub injection: InjectionConfig,
    /// Namespaces whose `WebhookEndpoints` the webhook reads; empty: all. The operator's
    /// `--namespace`: a namespace-scoped install may not list cluster-wide.
    pub watch_namespaces: Vec<String>,
}

/// A flag that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("--{flag}: {problem}")]
pub struct SettingsError {
    /// The flag.
    pub flag: &'static str,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl TryFrom<AdmissionArgs> for AdmissionSettings {
    type Error = SettingsError;

    fn try_from(args: AdmissionArgs) -> Result<Self, Self::Error> {
        let bad = |flag, problem: String| SettingsError { flag, problem };
        let listen = args.webhook_listen.parse().map_err(|_| {
            bad(
                "webhook-listen",
                format!(
                    "{:?} is not a socket address such as 0.0.0.0:9443",
                    args.webhook_listen
                ),
            )
        })?;
        let duration = |flag, value: &str| match parse_duration(value) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(bad(flag, "must be longer than zero".into())),
            Err(e) => Err(bad(flag, e.to_string())),
        };
        let validity = duration("cert-validity", &args.cert_validity)?;
        let ca_validity = duration("ca-validity", &args.ca_validity)?;
        let shutdown_delay = parse_duration(&args.shutdown_delay)
            .map_err(|e| bad("shutdown-delay", e.to_string()))?;
        let store = args.sidecar_store.clone();
        let store_cluster = args.sidecar_store_mode == "cluster";
        match validation::store(&store, store_cluster) {
            Ok(_) => {}
            Err(error @ StoreError::NotAStore) => {
                return Err(bad(
                    "sidecar-store",
                    format!(
                        "{store:?}: {error} (several, comma-separated, only with --sidecar-store-mode cluster)"
                    ),
                ));
            }
            Err(error @ StoreError::ClusterNeedsRedis) => {
                return Err(bad(
                    "sidecar-store-mode",
                    format!("{error} in --sidecar-store"),
                ));
            }
        }
        let store_password = password_secret(args.sidecar_store_password_secret.as_deref())?;
        let quantity = |flag, value: &str| {
            if value.is_empty() {
                Ok(None)
            } else if render::is_quantity(value) {
                Ok(Some(value.to_owned()))
            } else {
                Err(bad(
                    flag,
                    format!("{value:?} is not a quantity such as 10m or 64Mi"),
                ))
            }
        };
        let resources = SidecarResources {
            cpu_request: quantity("sidecar-cpu-request", &args.sidecar_cpu_request)?,
            memory_request: quantity("sidecar-memory-request", &args.sidecar_memory_request)?,
            cpu_limit: quantity("sidecar-cpu-limit", &args.sidecar_cpu_limit)?,
            memory_limit: quantity("sidecar-memory-limit", &args.sidecar_memory_limit)?,
        };
        let service = &args.webhook_service;
        let namespace = &args.webhook_namespace;
        let mut dns_names = vec![
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ];
        let webhook_url = development_url(&args.webhook_url, &args.webhook_config_name)?;
        if let Some((_, host)) = &webhook_url {
            dns_names.push(host.clone());
        }
        Ok(AdmissionSettings {
            shutdown_delay,
            webhook_url: webhook_url.map(|(url, _)| url),
            watch_namespaces: Vec::new(),
            listen,
            namespace: namespace.clone(),
            certs: CertSettings {
                mode: args.cert_mode,
                dir: args.cert_dir,
                secret: args.cert_secret,
                namespace: namespace.clone(),
                dns_names,
                webhook_config: (args.cert_mode == CertMode::SelfManaged
                    && !args.webhook_config_name.is_empty())
                .then_some(args.webhook_config_name),
                validity,
                ca_validity,
            },
            injection: InjectionConfig {
                image: args.sidecar_image,
                image_pull_policy: args.sidecar_image_pull_policy,
                store,
                store_password,
                store_cluster,
                resources,
            },
        })
    }
}

/// `--sidecar-store-password-secret`: `name/key`, or nothing when unset or empty.
fn password_secret(value: Option<&str>) -> Result<Option<(String, String)>, SettingsError> {
    match value {
        None | Some("") => Ok(None),
        Some(value) => match value.split_once('/') {
            Some((name, key)) if !name.is_empty() && !key.is_empty() => {
                Ok(Some((name.to_owned(), key.to_owned())))
            }
            _ => Err(SettingsError {
                flag: "sidecar-store-password-secret",
                problem: format!("{value:?} is not <secret name>/<key>"),
            }),
        },
    }
}

/// Checks `--webhook-url` (empty: not set); returns it with the path the webhook serves, and
/// its host as the serving certificate must name it (an IPv6 address without brackets).
fn development_url(
    value: &str,
    configuration: &str,
) -> Result<Option<(String, String)>, SettingsError> {
    let bad = |problem| SettingsError {
        flag: "webhook-url",
        problem,
    };
    if value.is_empty() {
        return Ok(None);
    }
    if configuration.is_empty() {
        return Err(bad(
            "needs --webhook-config-name, the MutatingWebhookConfiguration it writes".into(),
        ));
    }
    parse_development_url(value).map(Some).map_err(bad)
}

fn parse_development_url(value: &str) -> Result<(String, String), String> {
    let uri: http::Uri = value.parse().map_err(|_| {
        format!("{value:?} is not a URL such as https://10.0.0.5:9443{WEBHOOK_PATH}")
    })?;
    if uri.scheme_str() != Some("https") {
        return Err(format!(
            "{value:?}: the API server calls webhooks over https only (https://<host>:<port>{WEBHOOK_PATH})"
        ));
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("{value:?} has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(format!(
            "{value:?}: the API server refuses user information in a webhook URL"
        ));
    }
    if uri.query().is_some() {
        return Err(format!(
            "{value:?}: the API server refuses a query in a webhook URL"
        ));
    }
    match uri.path() {
        "" | "/" | WEBHOOK_PATH => {}
        other => {
            return Err(format!(
                "{value:?}: the webhook serves {WEBHOOK_PATH} only, not {other}"
            ));
        }
    }
    let host = authority.host();
    let port = authority
        .port_u16()
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    let url = format!("https://{host}{port}{WEBHOOK_PATH}");
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok((url, host))
}

/// Why the webhook stopped.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// The HTTPS server failed.
    #[error("serving the admission webhook")]
    Serve(#[from] server::ServeError),
    /// `--webhook-url`: the `MutatingWebhookConfiguration` could not be rendered (a bug).
    #[error("rendering the MutatingWebhookConfiguration for --webhook-url")]
    Render(#[source] serde_json::Error),
    /// `--webhook-url`: the `MutatingWebhookConfiguration` pointing at it could not be written.
    #[error("writing MutatingWebhookConfiguration {0} for --webhook-url")]
    WriteConfiguration(String, #[source] kube::Error),
}

/// Serves the admission webhook until `shutdown` with validated settings, reading the
/// `WebhookEndpoints` of `settings.watch_namespaces` (empty: all namespaces).
pub async fn serve(
    settings: AdmissionSettings,
    client: Client,
    shutdown: CancellationToken,
) -> Result<(), AdmissionError> {
    let listener = server::bind(settings.listen).await?;
    serve_on(listener, settings, client, shutdown).await
}

/// [`serve`] on a listener already bound (tests bind port 0 and read the address first).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    settings: AdmissionSettings,
    client: Client,
    shutdown: CancellationToken,
) -> Result<(), AdmissionError> {
    let metrics = metrics::metrics();
    // One reflector per watched namespace (or one for the cluster): a namespace-scoped
    // install has no right to list WebhookEndpoints cluster-wide.
    let scopes: Vec<Option<String>> = if settings.watch_namespaces.is_empty() {
        vec![None]
    } else {
        settings
            .watch_namespaces
            .iter()
            .cloned()
            .map(Some)
            .collect()
    };
    let mut stores = Vec::new();
    for scope in scopes {
        let (reader, writer) = reflector::store::<WebhookEndpoint>();
        let endpoints: Api<WebhookEndpoint> = match &scope {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        };
        let cache = watcher(endpoints, watcher::Config::default().any_semantic())
            .default_backoff()
            .reflect(writer)
            .touched_objects()
            .for_each(|event| async move {
                if let Err(error) = event {
                    tracing::warn!(error = %hookguard_api::report::chain(&error), "WebhookEndpoint watch failed; retrying");
                }
            });
        let cache_stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = cache => {}
                () = cache_stop.cancelled() => {}
            }
        });
        stores.push((scope, reader));
    }

    if let Some(url) = &settings.webhook_url
        && let Some(name) = &settings.certs.webhook_config
    {
        apply_development_configuration(&client, name, url, &settings).await?;
    }

    let resolver = Arc::new(CertResolver::default());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(crate::certs::maintain(
        settings.certs.clone(),
        client.clone(),
        resolver.clone(),
        metrics.cert_expiry.clone(),
        ready_tx,
        shutdown.clone(),
    ));
    // Serve only with a certificate; until then the API server's call fails and, with
    // failurePolicy Ignore, the policy explains the missing sidecar.
    tokio::select! {
        _ = ready_rx => {}
        () = shutdown.cancelled() => return Ok(()),
    }

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "hookguard-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let webhook = Arc::new(
        handler::Webhook::new(
            handler::EndpointCache::scoped(stores),
            settings.injection,
            settings.namespace,
            Some(recorder),
            CACHE_WAIT,
        )
        .confirming_with(client, DIRECT_READ_TIMEOUT),
    );
    server::serve(listener, resolver, webhook, shutdown).await?;
    Ok(())
}

/// Field manager of the configuration `--webhook-url` writes; the CA bundle keeps its own
/// ([`crate::certs::CA_BUNDLE_FIELD_MANAGER`]), so neither takes the other's fields.
const DEVELOPMENT_FIELD_MANAGER: &str = "hookguard-operator-webhook-url";

/// `--webhook-url`: writes the whole configuration `name`, calling `url`, scoped to the
/// watched namespaces when there are any. The CA bundle follows from the certificate loop.
async fn apply_development_configuration(
    client: &Client,
    name: &str,
    url: &str,
    settings: &AdmissionSettings,
) -> Result<(), AdmissionError> {
    use kube::api::{Patch, PatchParams};

    let configuration = manifests::development_webhook_configuration(
        name,
        &settings.namespace,
        url,
        &settings.watch_namespaces,
    )
    .map_err(AdmissionError::Render)?;
    let api: Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> =
        Api::all(client.clone());
    api.patch(
        name,
        &PatchParams::apply(DEVELOPMENT_FIELD_MANAGER).force(),
        &Patch::Apply(&configuration),
    )
    .await
    .map_err(|e| AdmissionError::WriteConfiguration(name.to_owned(), e))?;
    tracing::info!(configuration = %name, %url, "webhook configuration written for --webhook-url");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> AdmissionArgs {
        use clap::Parser as _;

        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            admission: AdmissionArgs,
        }
        let argv = std::iter::once("test").chain(extra.iter().copied());
        Cli::try_parse_from(argv).unwrap().admission
    }

    #[test]
    fn a_development_url_is_checked_and_its_host_goes_into_the_certificate() {
        let settings =
            AdmissionSettings::try_from(args(&["--webhook-url", "https://10.201.0.1:9443"]))
                .unwrap();
        assert_eq!(
            settings.webhook_url.as_deref(),
            Some("https://10.201.0.1:9443/mutate")
        );
        assert!(settings.certs.dns_names.contains(&"10.201.0.1".to_owned()));
        assert!(
            settings
                .certs
                .dns_names
                .contains(&"hookguard-webhook.hookguard-system.svc".to_owned())
        );
        let v6 = AdmissionSettings::try_from(args(&["--webhook-url", "https://[::1]:9443/mutate"]))
            .unwrap();
        assert_eq!(v6.webhook_url.as_deref(), Some("https://[::1]:9443/mutate"));
        assert!(v6.certs.dns_names.contains(&"::1".to_owned()));

        let none = AdmissionSettings::try_from(args(&[])).unwrap();
        assert_eq!(none.shutdown_delay, Duration::from_secs(5));
        let at_once = AdmissionSettings::try_from(args(&["--shutdown-delay", "0s"])).unwrap();
        assert_eq!(at_once.shutdown_delay, Duration::ZERO);
        let error = AdmissionSettings::try_from(args(&["--shutdown-delay", "soon"])).unwrap_err();
        assert_eq!(error.flag, "shutdown-delay");
        assert_eq!(none.webhook_url, None);
        assert_eq!(none.certs.dns_names.len(), 2);

        for (url, words) in [
            ("http://10.0.0.5:9443/mutate", "https only"),
            ("https://10.0.0.5:9443/other", "serves /mutate only"),
            ("https://10.0.0.5:9443/mutate?x=1", "query"),
            ("https://user@10.0.0.5:9443/mutate", "user information"),
            ("10.0.0.5:9443", "https only"),
            ("https://", "not a URL"),
        ] {
            let error = AdmissionSettings::try_from(args(&["--webhook-url", url])).unwrap_err();
            assert_eq!(error.flag, "webhook-url");
            assert!(error.problem.contains(words), "{url}: {}", error.problem);
        }
        let error = AdmissionSettings::try_from(args(&[
            "--webhook-url",
            "https://10.0.0.5:9443",
            "--webhook-config-name",
            "",
        ]))
        .unwrap_err();
        assert!(error.problem.contains("--webhook-config-name"), "{error}");
    }

    #[test]
    fn a_confirmed_denial_fits_the_api_servers_call_timeout() {
        // A review does the direct read at most once (cache not ready, or a denial to
        // confirm), and leaves at least a second for TLS, parsing and rendering.
        let budget = Duration::from_secs(u64::from(manifests::TIMEOUT_SECONDS.unsigned_abs()));
        assert!(DIRECT_READ_TIMEOUT + Duration::from_secs(1) <= budget);
    }
}
