//! Step 1 of the reconcile pipeline (IO): reads the endpoint itself afresh ([`endpoint`]),
//! then what its reconcile depends on: its generated Secret (the key ring lives there), its
//! ConfigMap (the endpoint ID survives a lost status there) and a `secretRef`'s Secret; and,
//! when the cache shows a path conflict, the namespace's endpoints ([`namespace_endpoints`]).
//!
//! Plain GETs rather than caches: a reconcile needs the material of one Secret, and keeping
//! every Secret of the cluster in memory to save a request would cost far more.

use hookguard_api::crd::WebhookEndpoint;
use hookguard_api::names::{sidecar_config_name, signing_secret_name};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::{Api, Client};

/// A read failed. Transient: the API server or the network.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Reading the endpoint itself failed.
    #[error("reading the WebhookEndpoint")]
    GetEndpoint(#[source] kube::Error),
    /// Listing the namespace's endpoints failed.
    #[error("listing the namespace's WebhookEndpoints")]
    ListEndpoints(#[source] kube::Error),
    /// Reading a Secret failed.
    #[error("reading Secret {name}")]
    GetSecret {
        /// The Secret.
        name: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// Reading the ConfigMap failed.
    #[error("reading ConfigMap {name}")]
    GetConfigMap {
        /// The ConfigMap.
        name: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

/// What a `secretRef` points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Referenced {
    /// The Secret and key exist (the key is not empty).
    Present,
    /// No such Secret.
    SecretMissing,
    /// The Secret exists but lacks the key (or it is empty).
    KeyMissing,
}

/// The endpoint's surroundings.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// The operator's signing Secret, if it exists (generated keys or a public key; not for a
    /// `secretRef`).
    pub generated: Option<Secret>,
    /// The sidecar ConfigMap, if it exists.
    pub config_map: Option<ConfigMap>,
    /// A `secretRef`'s state (reference only).
    pub referenced: Option<Referenced>,
}

/// The endpoint as the API server has it now, or `None` once it is gone.
///
/// The reconcile is handed the watch cache's copy, and its status is the operator's memory
/// (the endpoint ID, the key IDs and times). That copy can lag the status this operator wrote
/// a moment ago: planning from it after, say, a deleted Secret would reuse key ID `k1` for new
/// material, and after a lost ConfigMap could even choose a new endpoint ID. A GET without a
/// resourceVersion is a consistent read.
pub async fn endpoint(
    client: &Client,
    cached: &WebhookEndpoint,
) -> Result<Option<WebhookEndpoint>, FetchError> {
    let namespace = cached.metadata.namespace.as_deref().unwrap_or_default();
    let name = cached.metadata.name.as_deref().unwrap_or_default();
    Api::<WebhookEndpoint>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(FetchError::GetEndpoint)
}

/// The endpoints of `namespace` as the API server has them now (a list without a
/// resourceVersion is a consistent read); objects that do not deserialize are left out.
///
/// Read only when the cache shows another endpoint on the same path: the cache may still
/// hold one just deleted, or miss one just moved, and a path must not stay blocked (or be
/// granted twice) on that.
pub async fn namespace_endpoints(
    client: &Client,
    namespace: &str,
) -> Result<Vec<WebhookEndpoint>, FetchError> {
    let listed = Api::<DeserializeGuard<WebhookEndpoint>>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(FetchError::ListEndpoints)?;
    Ok(listed
        .items
        .into_iter()
        .filter_map(|guard| guard.0.ok())
        .collect())
}

/// Reads the endpoint's Secret(s) and ConfigMap.
pub async fn fetch(client: &Client, endpoint: &WebhookEndpoint) -> Result<Fetched, FetchError> {
    let namespace = endpoint.metadata.namespace.as_deref().unwrap_or_default();
    let name = endpoint.metadata.name.as_deref().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);

    let get_secret = |secret_name: String| {
        let secrets = secrets.clone();
        async move {
            secrets
                .get_opt(&secret_name)
                .await
                .map_err(|source| FetchError::GetSecret {
                    name: secret_name,
                    source,
                })
        }
    };
    let config_name = sidecar_config_name(name);
    let config_map =
        config_maps
            .get_opt(&config_name)
            .await
            .map_err(|source| FetchError::GetConfigMap {
                name: config_name,
                source,
            })?;

    let mut fetched = Fetched {
        config_map,
        ..Fetched::default()
    };
    match &endpoint.spec.secret.secret_ref {
        Some(reference) => {
            let secret = get_secret(reference.name.clone()).await?;
            fetched.referenced = Some(match secret {
                None => Referenced::SecretMissing,
                Some(secret) if has_key(&secret, &reference.key) => Referenced::Present,
                Some(_) => Referenced::KeyMissing,
            });
        }
        None => fetched.generated = get_secret(signing_secret_name(name)).await?,
    }
    Ok(fetched)
}

fn has_key(secret: &Secret, key: &str) -> bool {
    let in_data = secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .is_some_and(|value| !value.0.is_empty());
    let in_string_data = secret
        .string_data
        .as_ref()
        .and_then(|data| data.get(key))
        .is_some_and(|value| !value.is_empty());
    in_data || in_string_data
}
