//! Commands that read a cluster: kubectl's flags select it (`crate::common::KubeArgs`).

pub mod check;
pub mod check_inject;
pub mod dlq;
pub mod rotate;
pub mod secret;
pub mod status;
pub mod tail;

use hookguard_api::crd::WebhookEndpoint;
use kube::Api;
use kube::api::ListParams;

use crate::common::Context;

/// The WebhookEndpoint names of the namespace (for completion).
pub async fn endpoint_names(ctx: &Context) -> anyhow::Result<Vec<String>> {
    let (client, namespace) = ctx.kube.client().await?;
    let api: Api<WebhookEndpoint> = Api::namespaced(client, &namespace);
    let list = api.list_metadata(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|endpoint| endpoint.metadata.name)
        .collect())
}
