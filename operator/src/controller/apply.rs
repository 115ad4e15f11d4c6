//! Step 4 of the reconcile pipeline (IO): server-side apply of the children under the one
//! field manager, forced, so the operator's desired state wins over hand edits of the fields
//! it owns (and a hand-deleted child is simply created again).

use hookguard_api::names::FIELD_MANAGER;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

/// Applying a child failed. Transient unless the API server keeps refusing.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The object has no name (a bug in `build`).
    #[error("the {0} to apply has no name or namespace")]
    Unnamed(&'static str),
    /// The object could not be serialized (a bug in `build`).
    #[error("serializing the {kind}")]
    Serialize {
        /// The kind.
        kind: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Applying the Secret failed.
    #[error("applying Secret {name}")]
    ApplySecret {
        /// The Secret.
        name: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// Applying the ConfigMap failed.
    #[error("applying ConfigMap {name}")]
    ApplyConfigMap {
        /// The ConfigMap.
        name: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

fn params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Applies the signing Secret.
pub async fn apply_secret(client: &Client, secret: &Secret) -> Result<(), ApplyError> {
    let (Some(name), Some(namespace)) = (&secret.metadata.name, &secret.metadata.namespace) else {
        return Err(ApplyError::Unnamed("Secret"));
    };
    let body = typed(secret, "Secret")?;
    Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(name, &params(), &Patch::Apply(body))
        .await
        .map(drop)
        .map_err(|source| ApplyError::ApplySecret {
            name: name.clone(),
            source,
        })
}

/// Applies the sidecar ConfigMap.
pub async fn apply_config_map(client: &Client, config_map: &ConfigMap) -> Result<(), ApplyError> {
    let (Some(name), Some(namespace)) = (&config_map.metadata.name, &config_map.metadata.namespace)
    else {
        return Err(ApplyError::Unnamed("ConfigMap"));
    };
    let body = typed(config_map, "ConfigMap")?;
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(name, &params(), &Patch::Apply(body))
        .await
        .map(drop)
        .map_err(|source| ApplyError::ApplyConfigMap {
            name: name.clone(),
            source,
        })
}

/// The object as JSON with `apiVersion: v1` and `kind`, which an apply body needs and
/// k8s-openapi's structs leave out.
fn typed<T: serde::Serialize>(
    object: &T,
    kind: &'static str,
) -> Result<serde_json::Value, ApplyError> {
    let mut value =
        serde_json::to_value(object).map_err(|source| ApplyError::Serialize { kind, source })?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".to_owned(), "v1".into());
        map.insert("kind".to_owned(), kind.into());
    }
    Ok(value)
}
