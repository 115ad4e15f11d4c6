//! Step 2 of the reconcile pipeline (pure): checks a `WebhookEndpoint` and turns it into a
//! [`ValidatedEndpoint`], so nothing after this step sees an optional or unparsed spec field.
//!
//! The rules are [`hookguard_api::validation`]'s, the ones the sidecar loads its file with:
//! this step renders the spec into the sidecar's configuration and checks that, so a spec
//! reported Ready is a file the sidecar accepts. The CRD's CEL rules state the same rules for
//! the API server; an object stored under an older schema (or written with validation off)
//! still becomes a clear condition here, never a ConfigMap the sidecar cannot load. Only what
//! the file cannot express (metadata, rotation) is checked here alone; the secret source is
//! checked with the shared rules the CRD states too ([`validation::secret_source`],
//! [`validation::public_key`]).

use std::time::Duration;

use hookguard_api::config::{Delivery, EndpointConfig, IdempotencyKey, Replay, Upstream};
use hookguard_api::crd::{DeliverySpec, WebhookEndpoint, WebhookEndpointSpec};
use hookguard_api::names::SIDECAR_SECRET_ROOT;
use hookguard_api::validation::{self, Invalid};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource as _;

use super::rotation::KeyEncoding;

/// The CRD's lower bound for `rotation.every`: rotating more often would churn senders.
const MIN_ROTATION_EVERY: Duration = Duration::from_secs(3600);
/// Stands in for the endpoint ID while the spec is checked: the reconciler chooses the real
/// one later (it must stay stable), always of the form the rules accept.
const ENDPOINT_ID_UNDECIDED: &str = "undecided";

/// Why a spec cannot be reconciled. All of these are permanent: only a spec change helps.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValidateError {
    /// The object lacks a name, namespace or uid (never true for a stored object).
    #[error("the object has no {0}")]
    MissingMetadata(&'static str),
    /// A field breaks the shared rules; the text the sidecar would print, under `spec.`.
    #[error("spec.{}: {}", .0.field, .0.problem)]
    Field(Invalid),
    /// Not exactly one of `secret.generate`, `secret.secretRef` and `secret.publicKey`.
    #[error(
        "set exactly one of spec.secret.generate, spec.secret.secretRef and spec.secret.publicKey"
    )]
    SecretSource,
    /// The secret source cannot serve the scheme (a generated secret where the sender issues
    /// it, a public key where it signs with a secret), or the public key is malformed.
    #[error("spec.{}: {}", .0.field, .0.problem)]
    Secret(Invalid),
    /// Not exactly one of `idempotencyKey.header` and `idempotencyKey.jsonPointer`.
    #[error("set exactly one of spec.idempotencyKey.header and spec.idempotencyKey.jsonPointer")]
    IdempotencyKey,
}

impl From<Invalid> for ValidateError {
    fn from(invalid: Invalid) -> Self {
        ValidateError::Field(invalid)
    }
}

/// Where the signing keys come from, with every value parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretPlan {
    /// The operator generates and rotates the keys in its own Secret.
    Generate {
        /// How new keys are written (the scheme's).
        encoding: KeyEncoding,
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
    /// The sender's public key from the spec, copied into the operator's own Secret as its
    /// only key; never rotated (the sender changes it, then the spec).
    PublicKey {
        /// The key as written (checked with [`validation::public_key`]).
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
    let config = sidecar_config(&name, &endpoint.spec)?;
    validation::check(&EndpointConfig {
        endpoint_id: ENDPOINT_ID_UNDECIDED.to_owned(),
        ..config.clone()
    })?;
    let secret = secret_plan(&endpoint.spec)?;
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

/// The sidecar's configuration for `spec`, unchecked, with the endpoint ID left empty. Fails
/// only where the file cannot express the spec: a port outside 0–65535, or both idempotency
/// key sources.
pub fn sidecar_config(
    name: &str,
    spec: &WebhookEndpointSpec,
) -> Result<EndpointConfig, ValidateError> {
    let port = match u16::try_from(spec.upstream.port) {
        Ok(port) => port,
        // Outside what the file can hold: refused with the shared rule's words.
        Err(_) => validation::port(i64::from(spec.upstream.port))?,
    };
    let idempotency_key = match &spec.idempotency_key {
        None => None,
        Some(key) => match (&key.header, &key.json_pointer) {
            (Some(header), None) => Some(IdempotencyKey::Header(header.clone())),
            (None, Some(pointer)) => Some(IdempotencyKey::JsonPointer(pointer.clone())),
            _ => return Err(ValidateError::IdempotencyKey),
        },
    };
    Ok(EndpointConfig {
        name: name.to_owned(),
        endpoint_id: String::new(),
        path: spec.path.clone(),
        scheme: spec.scheme,
        generic: spec.generic.clone(),
        public_url: spec.public_url.clone(),
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
        store_unavailable: spec.store_unavailable,
        delivery: spec.delivery.as_ref().map(delivery).unwrap_or_default(),
    })
}

/// `spec.delivery` in the file's form, field for field; unset is the file's default.
fn delivery(spec: &DeliverySpec) -> Delivery {
    Delivery {
        mode: spec.mode,
        durability: spec.durability,
        retry_schedule: spec.retry_schedule.clone(),
        max_attempts: spec.max_attempts,
        max_age: spec.max_age.clone(),
        max_concurrency: spec.max_concurrency,
        rate_limit: spec.rate_limit,
        paused: spec.paused,
        max_queued: spec.max_queued,
        max_queued_bytes: spec.max_queued_bytes.clone(),
    }
}

/// Where the keys come from, parsed.
fn secret_plan(spec: &WebhookEndpointSpec) -> Result<SecretPlan, ValidateError> {
    let source = &spec.secret;
    match (&source.generate, &source.secret_ref, &source.public_key) {
        (Some(_), None, None) => {
            let encoding = KeyEncoding::for_scheme(spec.scheme).map_err(ValidateError::Secret)?;
            let grace_period =
                validation::duration("rotation.gracePeriod", &spec.rotation.grace_period)?;
            let every = match &spec.rotation.every {
                None => None,
                Some(text) => {
                    let every = validation::duration("rotation.every", text)?;
                    if every < MIN_ROTATION_EVERY {
                        return Err(ValidateError::Field(Invalid {
                            field: "rotation.every",
                            problem: format!(
                                "{text} is too short: must be at least 1h, or senders churn"
                            ),
                        }));
                    }
                    Some(every)
                }
            };
            Ok(SecretPlan::Generate {
                encoding,
                grace_period,
                every,
            })
        }
        (None, Some(reference), None) => Ok(SecretPlan::Reference {
            name: reference.name.clone(),
            key: reference.key.clone(),
        }),
        (None, None, Some(key)) => {
            validation::public_key(spec.scheme, key).map_err(ValidateError::Secret)?;
            Ok(SecretPlan::PublicKey { key: key.clone() })
        }
        _ => Err(ValidateError::SecretSource),
    }
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
                encoding: KeyEncoding::WhsecHex,
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

    #[test]
    fn delivery_maps_field_for_field_and_stays_out_of_the_file_when_default() {
        let valid = validate(&endpoint(
            "spec: {scheme: Stripe, path: /h, upstream: {port: 1},\n  \
             delivery: {mode: Queue, durability: Memory, retrySchedule: [1s, 1m], maxAttempts: 3,\n  \
             maxAge: 1h, maxConcurrency: 2, rateLimit: 5, paused: true, maxQueued: 100,\n  \
             maxQueuedBytes: 1Gi}}",
        ))
        .unwrap();
        assert_eq!(
            valid.config.delivery,
            Delivery {
                mode: hookguard_api::DeliveryMode::Queue,
                durability: hookguard_api::Durability::Memory,
                retry_schedule: vec!["1s".into(), "1m".into()],
                max_attempts: 3,
                max_age: "1h".into(),
                max_concurrency: 2,
                rate_limit: Some(5),
                paused: true,
                max_queued: 100,
                max_queued_bytes: "1Gi".into(),
            }
        );

        for spec in [
            "spec: {scheme: Stripe, path: /h, upstream: {port: 1}}",
            "spec: {scheme: Stripe, path: /h, upstream: {port: 1}, delivery: {}}",
        ] {
            let valid = validate(&endpoint(spec)).unwrap();
            assert_eq!(valid.config.delivery, Delivery::default(), "{spec}");
            let file = serde_json::to_string(&valid.config).unwrap();
            assert!(!file.contains("delivery"), "{file}");
        }
    }

    const SENDGRID_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEyTNmjB73HmMlMEzDevoAeizGRViGh06fg6Dyj3w3i9IzakbbXyN5ew/WORUKmo4GUSDpHu+0YsYgVopyGh7Nw==";

    #[test]
    fn public_url_and_an_unset_tolerance_reach_the_file() {
        let valid = validate(&endpoint(
            "spec: {scheme: Twilio, path: /voice, upstream: {port: 1}, publicUrl: 'https://example.com/voice',\n  \
             secret: {secretRef: {name: auth-token, key: token}}}",
        ))
        .unwrap();
        assert_eq!(
            valid.config.public_url.as_deref(),
            Some("https://example.com/voice")
        );
        assert_eq!(valid.config.replay.tolerance, None, "the scheme's default");
        let file = serde_json::to_string(&valid.config).unwrap();
        assert!(
            file.contains(r#""publicUrl":"https://example.com/voice""#),
            "{file}"
        );
        assert!(!file.contains("tolerance"), "{file}");

        let set = validate(&endpoint(
            "spec: {scheme: Stripe, path: /h, upstream: {port: 1}, replay: {tolerance: 1m}}",
        ))
        .unwrap();
        assert_eq!(set.config.replay.tolerance.as_deref(), Some("1m"));
    }

    #[test]
    fn a_public_key_is_checked_and_carried() {
        let valid = validate(&endpoint(&format!(
            "spec: {{scheme: SendGrid, path: /events, upstream: {{port: 1}}, secret: {{publicKey: '{SENDGRID_KEY}'}}}}"
        )))
        .unwrap();
        assert_eq!(
            valid.secret,
            SecretPlan::PublicKey {
                key: SENDGRID_KEY.into()
            }
        );
    }

    /// Refusals of the secret source and of the new schemes' rules, with the words the CRD's
    /// CEL rules use.
    #[rstest::rstest]
    #[case::twilio_generated(
        "scheme: Twilio, path: /h, upstream: {port: 80}, publicUrl: 'https://example.com/h'",
        "spec.secret.generate: Twilio issues the signing secret (the Auth Token): store it in a Secret and set spec.secret.secretRef"
    )]
    #[case::zoom_generated(
        "scheme: Zoom, path: /h, upstream: {port: 80}, secret: {generate: {}}",
        "Zoom issues the signing secret (the app's Secret Token)"
    )]
    #[case::sendgrid_generated(
        "scheme: SendGrid, path: /h, upstream: {port: 80}",
        "set spec.secret.publicKey to it"
    )]
    #[case::public_key_on_stripe(
        "scheme: Stripe, path: /h, upstream: {port: 80}, secret: {publicKey: 'whpk_Yaqhe59L0dNBvZ45MDCeSVPwo/TN1WPwclvSyOSbYPA='}",
        "spec.secret.publicKey: Stripe signs with a shared secret"
    )]
    #[case::short_public_key(
        "scheme: SendGrid, path: /h, upstream: {port: 80}, secret: {publicKey: MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE}",
        "spec.secret.publicKey: decodes to 27 bytes, not the 91 of a P-256 public key; paste SendGrid's Verification Key"
    )]
    #[case::whsec_as_public_key(
        "scheme: StandardWebhooks, path: /h, upstream: {port: 80}, secret: {publicKey: whsec_abc}",
        "is a signing secret (whsec_…), not a public key"
    )]
    #[case::three_sources(
        "scheme: SendGrid, path: /h, upstream: {port: 80}, secret: {publicKey: x, secretRef: {name: s}}",
        "set exactly one of spec.secret.generate, spec.secret.secretRef and spec.secret.publicKey"
    )]
    #[case::no_public_url(
        "scheme: Square, path: /h, upstream: {port: 80}, secret: {secretRef: {name: s}}",
        "spec.publicUrl: Square signs the URL it calls"
    )]
    #[case::twilio_event_types(
        "scheme: Twilio, path: /h, upstream: {port: 80}, publicUrl: 'https://e.com/h', secret: {secretRef: {name: s}}, eventTypes: [a]",
        "spec.eventTypes: Twilio deliveries carry no single event type to filter on"
    )]
    #[case::paddle_window(
        "scheme: Paddle, path: /h, upstream: {port: 80}, secret: {secretRef: {name: s}}, replay: {window: 9s}",
        "spec.replay.window: must be at least twice replay.tolerance (5s, the Paddle default)"
    )]
    fn secret_sources_and_sender_rules_are_refused(#[case] spec: &str, #[case] expected: &str) {
        let err = validate(&endpoint(&format!("spec: {{{spec}}}"))).unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }

    #[rstest::rstest]
    #[case::relative_path("path: hook, upstream: {port: 80}", "spec.path")]
    #[case::port_zero("path: /h, upstream: {port: 0}", "spec.upstream.port: 0 is not a port")]
    #[case::port_too_big(
        "path: /h, upstream: {port: 70000}",
        "spec.upstream.port: 70000 is not a port"
    )]
    #[case::sidecar_port("path: /h, upstream: {port: 9880}", "sidecar's own port")]
    #[case::upstream_fragment("path: /h, upstream: {port: 80, path: '/a#b'}", "spec.upstream.path")]
    #[case::bad_header(
        "path: /h, upstream: {port: 80}, idempotencyKey: {header: bad header}",
        "spec.idempotencyKey.header"
    )]
    #[case::empty_event_type("path: /h, upstream: {port: 80}, eventTypes: ['']", "spec.eventTypes")]
    #[case::dot_segment("path: /webhooks/../x, upstream: {port: 80}", "'..' segment")]
    #[case::space("path: /web hooks, upstream: {port: 80}", "%20")]
    #[case::bad_timeout(
        "path: /h, upstream: {port: 80, timeout: 10x}",
        "spec.upstream.timeout"
    )]
    #[case::zero_timeout("path: /h, upstream: {port: 80, timeout: 0s}", "longer than zero")]
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
    #[case::default_window(
        "path: /h, upstream: {port: 80}, replay: {window: 9m}",
        "(5m, the Stripe default)"
    )]
    #[case::both_keys(
        "path: /h, upstream: {port: 80}, idempotencyKey: {header: a, jsonPointer: /b}",
        "idempotencyKey"
    )]
    #[case::empty_schedule(
        "path: /h, upstream: {port: 80}, delivery: {retrySchedule: []}",
        "spec.delivery.retrySchedule: must list 1 to 32"
    )]
    #[case::zero_delay(
        "path: /h, upstream: {port: 80}, delivery: {retrySchedule: [5s, 0s]}",
        "spec.delivery.retrySchedule: must be longer than zero"
    )]
    #[case::long_delay(
        "path: /h, upstream: {port: 80}, delivery: {retrySchedule: [721h]}",
        "longer than 720h"
    )]
    #[case::no_attempts(
        "path: /h, upstream: {port: 80}, delivery: {maxAttempts: 0}",
        "spec.delivery.maxAttempts"
    )]
    #[case::no_concurrency(
        "path: /h, upstream: {port: 80}, delivery: {maxConcurrency: 0}",
        "spec.delivery.maxConcurrency"
    )]
    #[case::zero_rate(
        "path: /h, upstream: {port: 80}, delivery: {rateLimit: 0}",
        "delivery.paused: true"
    )]
    #[case::queue_below_body(
        "path: /h, upstream: {port: 80}, maxBodySize: 2Mi, delivery: {maxQueuedBytes: 1Mi}",
        "smaller than maxBodySize"
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
