//! Test fixtures: endpoints from YAML, through the real types.

use hookguard_api::crd::WebhookEndpoint;

/// A `WebhookEndpoint` named `pay` in namespace `shop` (uid set, as stored objects have)
/// with the given `spec: …` YAML.
pub fn endpoint(spec_yaml: &str) -> WebhookEndpoint {
    let yaml = format!(
        "apiVersion: hookguard.dev/v1alpha1\nkind: WebhookEndpoint\n\
         metadata: {{name: pay, namespace: shop, uid: 1f0e7c1a-0000-4000-8000-000000000001, generation: 2}}\n{spec_yaml}\n"
    );
    serde_yaml::from_str(&yaml).unwrap_or_else(|error| panic!("fixture {yaml}: {error}"))
}
