//! Step 2 of the reconcile pipeline (pure): checks a `WebhookEndpoint` and turns it into a
//! [`ValidatedEndpoint`], so nothing after this step sees an optional or unparsed spec field.
//!
//! The CRD's OpenAPI bounds and CEL rules already reject most bad specs at the API server;
//! this repeats the checks the sidecar would refuse anyway, because an object stored under an
//! older schema (or written with validation off) must become a clear condition, not a
//! ConfigMap the sidecar cannot load.

use std::time::Duration;

use hookguard_api::config::{
    EndpointConfig, IdempotencyKey, Replay, Scheme, StoreUnavailable, Upstream,
};
use hookguard_api::crd::{WebhookEndpoint, WebhookEndpointSpec};
use hookguard_api::names::SIDECAR_SECRET_ROOT;
use hookguard_api::units::{UnitError, parse_duration, parse_size};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource as _;

/// The sidecar refuses bodies larger than this.
const MAX_BODY_SIZE: u64 = 64 * 1024 * 1024;
/// The CRD's lower bound for `rotation.every`: rotating more often would churn senders.
const MIN_ROTATION_EVERY: Duration = Duration::from_secs(3600);

/// Why a spec cannot be reconciled. All of these are permanent: only a spec change helps.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValidateError {
    /// The object lacks a name, namespace or uid (never true for a stored object).
    #[error("the object has no {0}")]
    MissingMetadata(&'static str),
    /// `spec.path` is not an absolute path.
    #[error("spec.path {0:?} must start with '/' and hold no query or fragment")]
    Path(String),
    /// `spec.upstream.port` is outside 1–65535.
    #[error("spec.upstream.port {0} is not a port (1-65535)")]
    Port(i32),
    /// `spec.upstream.path` is not an absolute path.
    #[error("spec.upstream.path {0:?} must start with '/'")]
    UpstreamPath(String),
    /// A duration field does not parse or is out of bounds.
    #[error("{field}: {reason}")]
    Duration {
        /// The field, e.g. `spec.replay.window`.
        field: &'static str,
        /// What is wrong, with the fix.
        reason: String,
    },
    /// `spec.maxBodySize` does not parse or exceeds 64Mi.
    #[error("spec.maxBodySize: {0}")]
    MaxBodySize(String),
    /// Not exactly one of `secret.generate` and `secret.secretRef`.
    #[error("set exactly one of spec.secret.generate and spec.secret.secretRef")]
    SecretSource,
    /// `spec.generic` with a scheme other than Generic.
    #[error("spec.generic applies only to scheme Generic")]
    GenericOptions,
    /// Not exactly one of `idempotencyKey.header` and `idempotencyKey.jsonPointer`.
    #[error("set exactly one of spec.idempotencyKey.header and spec.idempotencyKey.jsonPointer")]
    IdempotencyKey,
}

/// Where the signing keys come from, with every value parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretPlan {
    /// The operator generates and rotates the keys in its own Secret.
    Generate {
        /// How long a rotated-out key stays valid.
        grace_period: Duration,
        /// Rotate when the current key is this old.
        every: Option<Duration>,
    },
    /// A Secret the user manages; its `key` becomes the sidecar's only key file.
    Reference {
        /// The Secret's name, in the endpoint's namespace.
        name: String,
        /// The key in it.
        key: String,
    },
}

/// A `WebhookEndpoint` that passed validation: what `build` needs and nothing optional.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedEndpoint {
    /// The endpoint's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// `metadata.generation`, reported as `observedGeneration`.
    pub generation: Option<i64>,
    /// Controller owner reference for the children.
    pub owner: OwnerReference,
    /// The sidecar configuration, except `endpointId` (decided by the reconciler: it must
    /// stay stable) which is left empty here.
    pub config: EndpointConfig,
    /// Where the keys come from.
    pub secret: SecretPlan,
    /// The current value of the `hookguard.dev/rotate` annotation.
    pub rotate_request: Option<String>,
}

/// Checks `endpoint` and parses every value `build` needs.
pub fn validate(endpoint: &WebhookEndpoint) -> Result<ValidatedEndpoint, ValidateError> {
    let meta = &endpoint.metadata;
    let name = meta
        .name
        .clone()
        .ok_or(ValidateError::MissingMetadata("name"))?;
    let namespace = meta
        .namespace
        .clone()
        .ok_or(ValidateError::MissingMetadata("namespace"))?;
    let owner = endpoint
        .controller_owner_ref(&())
        .ok_or(ValidateError::MissingMetadata("uid"))?;
    let spec = &endpoint.spec;

    if !spec.path.starts_with('/') || spec.path.contains(['?', '#']) {
        return Err(ValidateError::Path(spec.path.clone()));
    }
    let port = u16::try_from(spec.upstream.port)
        .ok()
        .filter(|port| *port != 0)
        .ok_or(ValidateError::Port(spec.upstream.port))?;
    if let Some(path) = &spec.upstream.path
        && !path.starts_with('/')
    {
        return Err(ValidateError::UpstreamPath(path.clone()));
    }
    let timeout = duration("spec.upstream.timeout", &spec.upstream.timeout)?;
    positive("spec.upstream.timeout", timeout)?;
    let tolerance = duration("spec.replay.tolerance", &spec.replay.tolerance)?;
    positive("spec.replay.tolerance", tolerance)?;
    let window = duration("spec.replay.window", &spec.replay.window)?;
    if window < tolerance * 2 {
        return Err(ValidateError::Duration {
            field: "spec.replay.window",
            reason: "must be at least twice spec.replay.tolerance".to_owned(),
        });
    }
    let max_body = parse_size(&spec.max_body_size)
        .map_err(|err| ValidateError::MaxBodySize(err.to_string()))?;
    if max_body == 0 || max_body > MAX_BODY_SIZE {
        return Err(ValidateError::MaxBodySize(format!(
            "{:?} must be between 1 and 64Mi",
            spec.max_body_size
        )));
    }
    if spec.generic.is_some() && spec.scheme != Scheme::Generic {
        return Err(ValidateError::GenericOptions);
    }
    let idempotency_key = match &spec.idempotency_key {
        None => None,
        Some(key) => match (&key.header, &key.json_pointer) {
            (Some(header), None) => Some(IdempotencyKey::Header(header.clone())),
            (None, Some(pointer)) => Some(IdempotencyKey::JsonPointer(pointer.clone())),
            _ => return Err(ValidateError::IdempotencyKey),
        },
    };
    let secret = secret_plan(spec)?;

    let config = EndpointConfig {
        name: name.clone(),
        endpoint_id: String::new(),
        path: spec.path.clone(),
        scheme: spec.scheme,
        generic: spec.generic.clone(),
        upstream: Upstream {
            port,
            path: spec.upstream.path.clone(),
            timeout: spec.upstream.timeout.clone(),
        },
        secret_dir: format!("{SIDECAR_SECRET_ROOT}/{name}"),
        replay: Replay {
            tolerance: spec.replay.tolerance.clone(),
            window: spec.replay.window.clone(),
        },
        idempotency_key,
        event_types: spec.event_types.clone(),
        max_body_size: spec.max_body_size.clone(),
        store_unavailable: match spec.store_unavailable {
            StoreUnavailable::Reject => StoreUnavailable::Reject,
            StoreUnavailable::Allow => StoreUnavailable::Allow,
        },
    };
    Ok(ValidatedEndpoint {
        name,
        namespace,
        generation: meta.generation,
        owner,
        config,
        secret,
        rotate_request: meta
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(hookguard_api::names::ANNOTATION_ROTATE))
            .cloned(),
    })
}

/// Where the keys come from, parsed.
fn secret_plan(spec: &WebhookEndpointSpec) -> Result<SecretPlan, ValidateError> {
    match (&spec.secret.generate, &spec.secret.secret_ref) {
        (Some(_), None) => {
            let grace_period = duration("spec.rotation.gracePeriod", &spec.rotation.grace_period)?;
            let every = match &spec.rotation.every {
                None => None,
                Some(text) => {
                    let every = duration("spec.rotation.every", text)?;
                    if every < MIN_ROTATION_EVERY {
                        return Err(ValidateError::Duration {
                            field: "spec.rotation.every",
                            reason: "must be at least 1h".to_owned(),
                        });
                    }
                    Some(every)
                }
            };
            Ok(SecretPlan::Generate {
                grace_period,
                every,
            })
        }
        (None, Some(reference)) => Ok(SecretPlan::Reference {
            name: reference.name.clone(),
            key: reference.key.clone(),
        }),
        _ => Err(ValidateError::SecretSource),
    }
}

fn duration(field: &'static str, text: &str) -> Result<Duration, ValidateError> {
    parse_duration(text).map_err(|err: UnitError| ValidateError::Duration {
        field,
        reason: err.to_string(),
    })
}

fn positive(field: &'static str, value: Duration) -> Result<(), ValidateError> {
    if value.is_zero() {
        return Err(ValidateError::Duration {
            field,
            reason: "must be positive".to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::endpoint;

    #[test]
    fn a_minimal_endpoint_validates_with_defaults() {
        let valid = validate(&endpoint(
            "spec: {scheme: Stripe, path: /hook, upstream: {port: 8080}}",
        ))
        .unwrap();
        assert_eq!(valid.name, "pay");
        assert_eq!(valid.namespace, "shop");
        assert_eq!(valid.config.secret_dir, "/etc/hookguard/secrets/pay");
        assert_eq!(valid.config.upstream.port, 8080);
        assert_eq!(
            valid.secret,
            SecretPlan::Generate {
                grace_period: Duration::from_secs(24 * 3600),
                every: None
            }
        );
        assert_eq!(valid.owner.kind, "WebhookEndpoint");
        assert_eq!(valid.owner.controller, Some(true));
        assert_eq!(valid.rotate_request, None);
    }

    #[test]
    fn a_secret_ref_and_rotation_annotation_are_carried() {
        let mut input = endpoint(
            "spec: {scheme: Stripe, path: /hook, upstream: {port: 8080},\n  secret: {secretRef: {name: stripe}}}",
        );
        input
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("hookguard.dev/rotate".into(), "one".into());
        let valid = validate(&input).unwrap();
        assert_eq!(
            valid.secret,
            SecretPlan::Reference {
                name: "stripe".into(),
                key: "secret".into()
            }
        );
        assert_eq!(valid.rotate_request.as_deref(), Some("one"));
    }

    #[test]
    fn idempotency_key_maps_to_the_sidecar_form() {
        let valid = validate(&endpoint(
            "spec: {scheme: Generic, path: /h, upstream: {port: 1}, idempotencyKey: {jsonPointer: /id}}",
        ))
        .unwrap();
        assert_eq!(
            valid.config.idempotency_key,
            Some(IdempotencyKey::JsonPointer("/id".into()))
        );
    }

    #[rstest::rstest]
    #[case::relative_path("path: hook, upstream: {port: 80}", "spec.path")]
    #[case::port_zero("path: /h, upstream: {port: 0}", "port 0")]
    #[case::port_too_big("path: /h, upstream: {port: 70000}", "port 70000")]
    #[case::bad_timeout(
        "path: /h, upstream: {port: 80, timeout: 10x}",
        "spec.upstream.timeout"
    )]
    #[case::zero_timeout("path: /h, upstream: {port: 80, timeout: 0s}", "positive")]
    #[case::short_window(
        "path: /h, upstream: {port: 80}, replay: {tolerance: 5m, window: 9m}",
        "twice"
    )]
    #[case::big_body("path: /h, upstream: {port: 80}, maxBodySize: 65Mi", "64Mi")]
    #[case::generic_on_stripe("path: /h, upstream: {port: 80}, generic: {}", "spec.generic")]
    #[case::two_sources(
        "path: /h, upstream: {port: 80}, secret: {generate: {}, secretRef: {name: s}}",
        "exactly one"
    )]
    #[case::no_source("path: /h, upstream: {port: 80}, secret: {}", "exactly one")]
    #[case::both_keys(
        "path: /h, upstream: {port: 80}, idempotencyKey: {header: a, jsonPointer: /b}",
        "idempotencyKey"
    )]
    #[case::fast_rotation(
        "path: /h, upstream: {port: 80}, rotation: {every: 30m}",
        "at least 1h"
    )]
    fn invalid_specs_name_the_field(#[case] spec: &str, #[case] expected: &str) {
        let err = validate(&endpoint(&format!("spec: {{scheme: Stripe, {spec}}}"))).unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
}
