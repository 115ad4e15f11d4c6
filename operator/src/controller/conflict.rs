//! Which endpoint keeps a path that several in one namespace declare (pure).
//!
//! One sidecar routes a path to one endpoint, and the operator cannot know which pods will
//! serve which endpoints, so a path belongs to one endpoint per namespace. As with Gateway
//! API routes, the oldest endpoint keeps it (then the first by name); each later one is not
//! Ready (reason `PathConflict`, naming the holder) until its path or the holder changes.

use hookguard_api::crd::WebhookEndpoint;
use hookguard_api::validation::PathConflict;

/// The reason of the Ready condition of an endpoint that lost its path to another.
pub const REASON: &str = "PathConflict";

/// The endpoint among `namespace_endpoints` that holds `endpoint`'s path instead of it, if
/// any. `namespace_endpoints` may contain `endpoint` itself, and endpoints being deleted
/// (those hold nothing).
pub fn path_holder<'a>(
    endpoint: &WebhookEndpoint,
    namespace_endpoints: impl IntoIterator<Item = &'a WebhookEndpoint>,
) -> Option<&'a WebhookEndpoint> {
    let name = endpoint.metadata.name.as_deref()?;
    namespace_endpoints
        .into_iter()
        .filter(|other| other.metadata.name.as_deref().is_some_and(|n| n != name))
        .filter(|other| other.metadata.deletion_timestamp.is_none())
        .filter(|other| other.spec.path == endpoint.spec.path)
        .filter(|other| precedence(other) < precedence(endpoint))
        .min_by_key(|other| precedence(other))
}

/// The condition message of an endpoint whose path `holder` keeps.
pub fn message(endpoint: &WebhookEndpoint, holder: &WebhookEndpoint) -> String {
    let conflict = PathConflict {
        path: endpoint.spec.path.clone(),
        first: holder.metadata.name.clone().unwrap_or_default(),
        second: endpoint.metadata.name.clone().unwrap_or_default(),
    };
    format!(
        "{conflict}; {} was created first and keeps it",
        conflict.first
    )
}

/// Older first, then by name; an object without a creation time (never stored) last.
fn precedence(endpoint: &WebhookEndpoint) -> (bool, Option<k8s_openapi::jiff::Timestamp>, &str) {
    let created = endpoint
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|time| time.0);
    (
        created.is_none(),
        created,
        endpoint.metadata.name.as_deref().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(name: &str, path: &str, created: &str) -> WebhookEndpoint {
        serde_yaml::from_str(&format!(
            "apiVersion: hookguard.dev/v1alpha1\nkind: WebhookEndpoint\n\
             metadata: {{name: {name}, namespace: shop, creationTimestamp: '{created}'}}\n\
             spec: {{scheme: Stripe, path: {path}, upstream: {{port: 8080}}}}\n"
        ))
        .unwrap()
    }

    #[test]
    fn the_oldest_keeps_the_path_and_the_others_are_told_who_has_it() {
        let old = endpoint("zeta", "/x", "2026-01-01T00:00:00Z");
        let new = endpoint("alpha", "/x", "2026-02-01T00:00:00Z");
        let elsewhere = endpoint("beta", "/y", "2025-01-01T00:00:00Z");
        let all = [old.clone(), new.clone(), elsewhere.clone()];
        assert!(path_holder(&old, &all).is_none());
        assert!(path_holder(&elsewhere, &all).is_none());
        let holder = path_holder(&new, &all).unwrap();
        assert_eq!(holder.metadata.name.as_deref(), Some("zeta"));
        let message = message(&new, holder);
        assert!(
            message.contains("zeta and alpha both serve path /x")
                && message.contains("zeta was created first"),
            "{message}"
        );
    }

    #[test]
    fn created_in_the_same_second_the_first_name_keeps_it() {
        let a = endpoint("a", "/x", "2026-01-01T00:00:00Z");
        let b = endpoint("b", "/x", "2026-01-01T00:00:00Z");
        let all = [b.clone(), a.clone()];
        assert!(path_holder(&a, &all).is_none());
        assert_eq!(
            path_holder(&b, &all).and_then(|h| h.metadata.name.as_deref()),
            Some("a")
        );
    }

    #[test]
    fn an_endpoint_being_deleted_holds_nothing() {
        let mut old = endpoint("old", "/x", "2026-01-01T00:00:00Z");
        old.metadata.deletion_timestamp = old.metadata.creation_timestamp.clone();
        let new = endpoint("new", "/x", "2026-02-01T00:00:00Z");
        assert!(path_holder(&new, &[old, new.clone()]).is_none());
    }
}
