//! Step 5 of the reconcile pipeline (IO): the status, by server-side apply on the status
//! subresource under the operator's field manager. Only `status` is sent, so the operator
//! never owns a field of `spec` or `metadata` (GitOps tools own those).

use hookguard_api::crd::{WebhookEndpoint, WebhookEndpointStatus};
use hookguard_api::names::FIELD_MANAGER;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

/// Writing the status failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The status patch was refused or did not arrive.
    #[error("applying the status of WebhookEndpoint {name}")]
    PatchStatus {
        /// The endpoint.
        name: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

/// Applies `status` to endpoint `namespace/name`.
pub async fn apply_status(
    client: &Client,
    namespace: &str,
    name: &str,
    status: &WebhookEndpointStatus,
) -> Result<(), StatusError> {
    let body = serde_json::json!({
        "apiVersion": "hookguard.dev/v1alpha1",
        "kind": "WebhookEndpoint",
        "status": status,
    });
    Api::<WebhookEndpoint>::namespaced(client.clone(), namespace)
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
        .map(drop)
        .map_err(|source| StatusError::PatchStatus {
            name: name.to_owned(),
            source,
        })
}
