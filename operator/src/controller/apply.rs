//! Step 4 of the reconcile pipeline (IO): server-side apply of the children under the one
//! field manager, forced, so the operator's desired state wins over hand edits of the fields
//! it owns (and a hand-deleted child is simply created again).

use hookguard_api::names::FIELD_MANAGER;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

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
    /// The API server refused or could not be reached.
    #[error("applying {kind} {name}")]
    Apply {
        /// The kind.
        kind: &'static str,
        /// The object.
        name: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

/// A namespaced core/v1 child the operator writes: a Secret or a ConfigMap.
pub trait Child:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Serialize
    + DeserializeOwned
    + Clone
    + std::fmt::Debug
{
    /// The kind, for the apply body and errors.
    const KIND: &'static str;
}

impl Child for Secret {
    const KIND: &'static str = "Secret";
}

impl Child for ConfigMap {
    const KIND: &'static str = "ConfigMap";
}

/// Applies a child.
pub async fn apply<K: Child>(client: &Client, object: &K) -> Result<(), ApplyError> {
    let meta = object.meta();
    let (Some(name), Some(namespace)) = (&meta.name, &meta.namespace) else {
        return Err(ApplyError::Unnamed(K::KIND));
    };
    let body = typed(object, K::KIND)?;
    Api::<K>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
        .map(drop)
        .map_err(|source| ApplyError::Apply {
            kind: K::KIND,
            name: name.clone(),
            source,
        })
}

/// The object as JSON with `apiVersion: v1` and `kind`, which an apply body needs and
/// k8s-openapi's structs leave out.
fn typed<T: Serialize>(object: &T, kind: &'static str) -> Result<serde_json::Value, ApplyError> {
    let mut value =
        serde_json::to_value(object).map_err(|source| ApplyError::Serialize { kind, source })?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".to_owned(), "v1".into());
        map.insert("kind".to_owned(), kind.into());
    }
    Ok(value)
}
