//! Step 3 of the reconcile pipeline (pure): the desired Secret, ConfigMap and status from a
//! [`ValidatedEndpoint`]. No client; unit-tested without an API server.

use std::collections::BTreeMap;

use hookguard_api::config::CONFIG_FILE_NAME;
use hookguard_api::crd::{KeyStatus, WebhookEndpointStatus};
use hookguard_api::names::{
    LABEL_ENDPOINT, LABEL_MANAGED_BY, MANAGED_BY, sidecar_config_name, signing_secret_name,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::rotation::{ANNOTATION_KEYS, KeyRing};
use super::validate::ValidatedEndpoint;

/// Condition type: everything below is true.
pub const READY: &str = "Ready";
/// Condition type: the signing keys exist (generated, the public key stored, or the
/// referenced Secret and key).
pub const SECRET_READY: &str = "SecretReady";
/// Condition type: the sidecar ConfigMap is applied.
pub const CONFIG_READY: &str = "ConfigReady";

/// The labels every child carries: selectable by the operator's watches and by people.
pub fn labels(endpoint: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_ENDPOINT.to_owned(), endpoint.to_owned()),
    ])
}

fn child_meta(endpoint: &ValidatedEndpoint, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(endpoint.namespace.clone()),
        labels: Some(labels(&endpoint.name)),
        owner_references: Some(vec![endpoint.owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// The operator's signing Secret: one data key per key ID (generated keys, or the one
/// public key), the times in [`ANNOTATION_KEYS`].
pub fn build_secret(
    endpoint: &ValidatedEndpoint,
    ring: &KeyRing,
) -> Result<Secret, serde_json::Error> {
    let mut meta = child_meta(endpoint, signing_secret_name(&endpoint.name));
    meta.annotations = Some(BTreeMap::from([(
        ANNOTATION_KEYS.to_owned(),
        serde_json::to_string(&ring.meta())?,
    )]));
    // `data`, not `stringData`: server-side apply compares `data`, so re-applying the same
    // keys is a no-op and a key left out really disappears.
    let data = ring
        .keys
        .iter()
        .map(|key| {
            (
                key.meta.id.clone(),
                k8s_openapi::ByteString(key.material.clone().into_bytes()),
            )
        })
        .collect();
    Ok(Secret {
        metadata: meta,
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    })
}

/// The sidecar ConfigMap: one key, [`CONFIG_FILE_NAME`], holding the `EndpointConfig` JSON.
pub fn build_config_map(
    endpoint: &ValidatedEndpoint,
    endpoint_id: &str,
) -> Result<ConfigMap, serde_json::Error> {
    let mut config = endpoint.config.clone();
    endpoint_id.clone_into(&mut config.endpoint_id);
    Ok(ConfigMap {
        metadata: child_meta(endpoint, sidecar_config_name(&endpoint.name)),
        data: Some(BTreeMap::from([(
            CONFIG_FILE_NAME.to_owned(),
            serde_json::to_string_pretty(&config)?,
        )])),
        ..ConfigMap::default()
    })
}

/// One condition as the reconcile sees it, before times are filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// True or false.
    pub ok: bool,
    /// `PascalCase` reason.
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

impl Check {
    /// A true condition.
    pub fn ok(reason: &'static str, message: impl Into<String>) -> Check {
        Check {
            ok: true,
            reason,
            message: message.into(),
        }
    }
    /// A false condition.
    pub fn failed(reason: &'static str, message: impl Into<String>) -> Check {
        Check {
            ok: false,
            reason,
            message: message.into(),
        }
    }
}

/// What the reconcile found, for [`build_status`].
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// The previous status (for times and the endpoint ID).
    pub previous: Option<&'a WebhookEndpointStatus>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The endpoint ID to report.
    pub endpoint_id: Option<String>,
    /// The Secret holding the keys (generated or referenced), when known.
    pub secret_name: Option<String>,
    /// The ConfigMap, when applied.
    pub config_name: Option<String>,
    /// The key ring of a generated Secret.
    pub ring: Option<&'a KeyRing>,
    /// The keys' outcome.
    pub secret: Check,
    /// The ConfigMap's outcome.
    pub config: Check,
    /// The clock, for transitions.
    pub now: Timestamp,
}

/// The status to apply. `lastTransitionTime` changes only when a condition's status flips.
pub fn build_status(observed: &Observed<'_>) -> WebhookEndpointStatus {
    let previous = observed.previous;
    let ready = match (&observed.secret, &observed.config) {
        (secret, config) if secret.ok && config.ok => Check::ok(
            "Reconciled",
            "the signing keys and the sidecar configuration are in place",
        ),
        (secret, _) if !secret.ok => Check::failed(secret.reason, secret.message.clone()),
        (_, config) => Check::failed(config.reason, config.message.clone()),
    };
    let conditions = [
        (READY, &ready),
        (SECRET_READY, &observed.secret),
        (CONFIG_READY, &observed.config),
    ]
    .into_iter()
    .map(|(type_, check)| condition(previous, type_, check, observed.generation, observed.now))
    .collect();
    WebhookEndpointStatus {
        endpoint_id: observed.endpoint_id.clone(),
        secret_name: observed.secret_name.clone(),
        config_name: observed.config_name.clone(),
        keys: match observed.ring {
            Some(ring) => ring
                .keys
                .iter()
                .map(|key| KeyStatus {
                    id: key.meta.id.clone(),
                    created_at: Some(Time(key.meta.created_at)),
                    expires_at: key.meta.expires_at.map(Time),
                })
                .collect(),
            None => Vec::new(),
        },
        last_rotate_request: observed
            .ring
            .and_then(|ring| ring.last_rotate_request.clone()),
        observed_generation: observed.generation,
        conditions,
    }
}

fn condition(
    previous: Option<&WebhookEndpointStatus>,
    type_: &str,
    check: &Check,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if check.ok { "True" } else { "False" };
    let last_transition_time = previous
        .and_then(|previous| previous.conditions.iter().find(|c| c.type_ == type_))
        .filter(|old| old.status == status)
        .map_or(Time(now), |old| old.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: check.reason.to_owned(),
        message: check.message.clone(),
        observed_generation: generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests {
    use hookguard_api::config::EndpointConfig;

    use super::*;
    use crate::controller::fixtures::endpoint;
    use crate::controller::rotation::{Key, KeyMeta};
    use crate::controller::validate::validate;

    fn ring() -> KeyRing {
        KeyRing {
            keys: vec![
                Key {
                    meta: KeyMeta {
                        id: "k2".into(),
                        created_at: Timestamp::from_second(2_000).unwrap(),
                        expires_at: None,
                    },
                    material: "new".into(),
                },
                Key {
                    meta: KeyMeta {
                        id: "k1".into(),
                        created_at: Timestamp::from_second(1_000).unwrap(),
                        expires_at: Some(Timestamp::from_second(3_000).unwrap()),
                    },
                    material: "old".into(),
                },
            ],
            last_rotate_request: Some("r".into()),
        }
    }

    #[test]
    fn the_config_map_is_the_sidecar_file_with_no_secret() {
        let valid = validate(&endpoint(
            "spec: {scheme: Generic, path: /in, upstream: {port: 8080, path: /app, timeout: 3s},\n  \
             generic: {signatureHeader: X-Sig, eventTypeHeader: X-Event}, eventTypes: [a],\n  \
             maxBodySize: 64Ki,\n  \
             storeUnavailable: Allow, replay: {tolerance: 1m, window: 1h}}",
        ))
        .unwrap();
        let cm = build_config_map(&valid, "abc123").unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some("pay-sidecar"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(cm.metadata.labels, Some(labels("pay")));
        let owner = &cm.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("WebhookEndpoint", "pay")
        );
        let data = cm.data.unwrap();
        assert_eq!(data.len(), 1);
        let config: EndpointConfig = serde_json::from_str(&data["endpoint.json"]).unwrap();
        let expected: EndpointConfig = serde_json::from_value(serde_json::json!({
            "name": "pay", "endpointId": "abc123", "path": "/in", "scheme": "Generic",
            "generic": {"signatureHeader": "X-Sig", "eventTypeHeader": "X-Event"},
            "upstream": {"port": 8080, "path": "/app", "timeout": "3s"},
            "secretDir": "/etc/hookguard/secrets/pay",
            "replay": {"tolerance": "1m", "window": "1h"},
            "eventTypes": ["a"], "maxBodySize": "64Ki", "storeUnavailable": "Allow",
        }))
        .unwrap();
        assert_eq!(config, expected);
    }

    #[test]
    fn the_secret_holds_each_key_and_their_times() {
        let valid = validate(&endpoint(
            "spec: {scheme: Generic, path: /in, upstream: {port: 1}}",
        ))
        .unwrap();
        let secret = build_secret(&valid, &ring()).unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("pay-signing"));
        let data = secret.data.unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), ["k1", "k2"]);
        assert_eq!(data["k2"].0, b"new");
        let times = &secret.metadata.annotations.unwrap()[ANNOTATION_KEYS];
        assert!(
            times.contains("\"k1\"") && !times.contains("old"),
            "{times}"
        );
    }

    #[test]
    fn status_reports_keys_without_material_and_keeps_transition_times() {
        let ring = ring();
        let then = Timestamp::from_second(10).unwrap();
        let observed = Observed {
            previous: None,
            generation: Some(3),
            endpoint_id: Some("id".into()),
            secret_name: Some("pay-signing".into()),
            config_name: Some("pay-sidecar".into()),
            ring: Some(&ring),
            secret: Check::ok("Generated", "ok"),
            config: Check::ok("Rendered", "ok"),
            now: then,
        };
        let first = build_status(&observed);
        assert_eq!(first.keys.len(), 2);
        assert_eq!(
            first.keys[1].expires_at,
            Some(Time(Timestamp::from_second(3_000).unwrap()))
        );
        assert!(!serde_json::to_string(&first).unwrap().contains("old"));
        assert_eq!(first.last_rotate_request.as_deref(), Some("r"));
        assert!(
            first
                .conditions
                .iter()
                .all(|c| c.status == "True" && c.observed_generation == Some(3))
        );

        // Later: SecretReady flips, ConfigReady does not.
        let later = Timestamp::from_second(99).unwrap();
        let second = build_status(&Observed {
            previous: Some(&first),
            secret: Check::failed("SecretRefMissing", "Secret x not found"),
            now: later,
            ..observed
        });
        let by_type = |t: &str| {
            second
                .conditions
                .iter()
                .find(|c| c.type_ == t)
                .unwrap()
                .clone()
        };
        assert_eq!(by_type(SECRET_READY).last_transition_time, Time(later));
        assert_eq!(by_type(CONFIG_READY).last_transition_time, Time(then));
        assert_eq!(by_type(READY).status, "False");
        assert_eq!(by_type(READY).reason, "SecretRefMissing");
    }
}
