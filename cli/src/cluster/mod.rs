//! Commands that read a cluster: kubectl's flags select it (`crate::common::KubeArgs`).

pub mod check;
pub mod check_inject;
mod check_install;
pub mod dlq;
mod inject_select;
pub mod rotate;
pub mod secret;
pub mod status;
mod status_keys;
mod status_sidecar;
pub mod tail;

use hookguard_api::crd::WebhookEndpoint;
use kube::Api;
use kube::api::ListParams;

use crate::common::KubeArgs;

/// The WebhookEndpoint names of the namespace `kube` selects (for completion).
pub async fn endpoint_names(kube: &KubeArgs) -> anyhow::Result<Vec<String>> {
    let (client, namespace) = kube.client().await?;
    let api: Api<WebhookEndpoint> = Api::namespaced(client, &namespace);
    let list = api.list_metadata(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|endpoint| endpoint.metadata.name)
        .collect())
}
