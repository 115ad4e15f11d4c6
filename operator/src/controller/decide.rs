//! Step 3 of the reconcile pipeline (pure, no client required): from what was read, decide
//! what to write. Ownership refusals, the endpoint ID, the key plan, the children, the status
//! and its conditions, and the Events all come from here; the driver in `mod.rs` only reads,
//! applies and publishes what [`decide`] returns.

use std::collections::BTreeMap;

use hookguard_api::config::{CONFIG_FILE_NAME, EndpointConfig};
use hookguard_api::crd::WebhookEndpointStatus;
use hookguard_api::names::{sidecar_config_name, signing_secret_name};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;

use super::Error;
use super::build::{self, Check, Observed, build_config_map, build_secret, build_status};
use super::fetch::{Fetched, Referenced};
use super::rotation::{
    self, ANNOTATION_KEYS, KEY_BYTES, Key, KeyEncoding, KeyMeta, KeyRing, KeyRingMeta, PlanInput,
};
use super::validate::{SecretPlan, ValidatedEndpoint};

/// The key ID (the file name in the Secret and the sidecar) of a `publicKey` endpoint's key.
pub const PUBLIC_KEY_ID: &str = "public-key";

/// A source of random key material (the OS's in production, a fixed one in tests).
pub type Random<'a> = &'a mut dyn FnMut() -> Result<[u8; KEY_BYTES], getrandom::Error>;

/// What a reconcile read, and when.
#[derive(Debug)]
pub struct Facts<'a> {
    /// The checked spec.
    pub validated: &'a ValidatedEndpoint,
    /// The status as the API server has it (the operator's memory of IDs and keys).
    pub previous: Option<&'a WebhookEndpointStatus>,
    /// The children and the referenced Secret.
    pub fetched: &'a Fetched,
    /// The clock.
    pub now: Timestamp,
}

/// An Event to publish on the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Normal or Warning.
    pub type_: EventType,
    /// `PascalCase` reason.
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

/// What to write, in order: the Secret, the ConfigMap, the status, then the Events.
#[derive(Debug)]
pub struct Decision {
    /// The operator's Secret to apply, generated keys or the public key (none for a
    /// `secretRef`, or a name taken by another).
    pub secret: Option<Secret>,
    /// The ConfigMap to apply (none when its name is taken by another object).
    pub config_map: Option<ConfigMap>,
    /// The status to apply.
    pub status: WebhookEndpointStatus,
    /// Events to publish.
    pub notes: Vec<Note>,
    /// The endpoint turns Ready with this status.
    pub became_ready: bool,
    /// When the keys must be looked at again (an expiry or a scheduled rotation).
    pub next_change: Option<Timestamp>,
    /// Why the endpoint is not Ready, once the above is written: a permanent error.
    pub refusal: Option<Error>,
}

/// Decides a reconcile of a valid endpoint.
pub fn decide(facts: &Facts<'_>, random: Random<'_>) -> Result<Decision, Error> {
    let Facts {
        validated,
        previous,
        fetched,
        now,
    } = *facts;
    let owner = validated.owner.uid.as_str();
    // A ConfigMap of that name that this endpoint does not control is someone else's, or a
    // deleted namesake's not yet collected: neither adopt its endpoint ID (that would inherit
    // another endpoint's dedup records, and answer new deliveries as duplicates) nor
    // overwrite it.
    let owned_config = fetched
        .config_map
        .as_ref()
        .filter(|config_map| controlled_by(*config_map, owner));
    let endpoint_id = endpoint_id(previous, owned_config, random)?;
    let keys = keys(validated, previous, fetched, now, random)?;

    let config_name = sidecar_config_name(&validated.name);
    let (config_map, config_check) = if fetched.config_map.is_some() && owned_config.is_none() {
        let check = Check::failed(
            "ConfigNotOwned",
            format!(
                "ConfigMap {config_name} exists and is not managed by this endpoint; Hookguard \
                 does not overwrite it: delete or rename it"
            ),
        );
        (None, check)
    } else {
        let config_map = build_config_map(validated, &endpoint_id).map_err(Error::Build)?;
        let check = Check::ok("Rendered", format!("ConfigMap {config_name} is applied"));
        (Some(config_map), check)
    };
    let status = build_status(&Observed {
        previous,
        generation: validated.generation,
        endpoint_id: Some(endpoint_id),
        secret_name: keys.secret_name,
        config_name: Some(config_name),
        ring: keys.ring.as_ref(),
        secret: keys.check.clone(),
        config: config_check.clone(),
        now,
    });

    let mut notes = keys.notes;
    for check in [&keys.check, &config_check] {
        if !check.ok {
            notes.push(Note {
                type_: EventType::Warning,
                reason: check.reason,
                message: check.message.clone(),
            });
        }
    }
    let became_ready = !was_ready(previous) && keys.check.ok && config_check.ok;
    if became_ready {
        notes.push(Note {
            type_: EventType::Normal,
            reason: "Ready",
            message: format!(
                "{}; {}: pods serving this endpoint verify deliveries to {}",
                keys.check.message, config_check.message, validated.config.path
            ),
        });
    }
    let refusal = if !keys.check.ok {
        Some(Error::SecretRef(keys.check.message.clone()))
    } else if !config_check.ok {
        Some(Error::NotOwned(config_check.message.clone()))
    } else {
        None
    };
    Ok(Decision {
        secret: keys.secret,
        config_map,
        status,
        notes,
        became_ready,
        next_change: keys.next_change,
        refusal,
    })
}

/// The keys' side of a reconcile: the generated Secret planned, the public key's Secret
/// built, or the `secretRef` checked.
struct Keys {
    check: Check,
    secret: Option<Secret>,
    secret_name: Option<String>,
    ring: Option<rotation::KeyRing>,
    next_change: Option<Timestamp>,
    notes: Vec<Note>,
}

fn keys(
    validated: &ValidatedEndpoint,
    previous: Option<&WebhookEndpointStatus>,
    fetched: &Fetched,
    now: Timestamp,
    random: Random<'_>,
) -> Result<Keys, Error> {
    let refused = |check| Keys {
        check,
        secret: None,
        secret_name: None,
        ring: None,
        next_change: None,
        notes: Vec::new(),
    };
    // A Secret of the operator's name that this endpoint does not control is someone's data:
    // never overwrite it. (A new endpoint of an old name also waits here until the garbage
    // collector has removed the old endpoint's Secret.)
    let foreign = fetched
        .generated
        .as_ref()
        .is_some_and(|existing| !controlled_by(existing, &validated.owner.uid));
    if foreign && !matches!(validated.secret, SecretPlan::Reference { .. }) {
        let secret_name = signing_secret_name(&validated.name);
        return Ok(refused(Check::failed(
            "SecretNotOwned",
            format!(
                "Secret {secret_name} exists and is not managed by this endpoint; Hookguard \
                 does not overwrite it: delete or rename it, or use it with \
                 spec.secret.secretRef"
            ),
        )));
    }
    match &validated.secret {
        SecretPlan::Generate {
            encoding,
            grace_period,
            every,
        } => {
            // The status remembers the key IDs, never the material: when the Secret is gone,
            // the keys it held are gone with it, and senders still signing with them fail.
            let lost: Vec<String> = match &fetched.generated {
                Some(_) => Vec::new(),
                None => previous
                    .into_iter()
                    .flat_map(|status| &status.keys)
                    .filter(|key| rotation::key_number(&key.id).is_some())
                    .filter(|key| key.expires_at.as_ref().is_none_or(|at| at.0 > now))
                    .map(|key| key.id.clone())
                    .collect(),
            };
            let input = plan_input(
                validated,
                previous,
                fetched.generated.as_ref(),
                (*encoding, *grace_period, *every),
                now,
            );
            let plan = rotation::plan(input, random).map_err(Error::Random)?;
            let secret = build_secret(validated, &plan.ring).map_err(Error::Build)?;
            let secret_name = secret.metadata.name.clone().unwrap_or_default();
            let ids: Vec<&str> = plan.ring.keys.iter().map(|k| k.meta.id.as_str()).collect();
            let notes = key_notes(&plan.changes, &secret_name, &lost);
            Ok(Keys {
                check: Check::ok(
                    "Generated",
                    format!("Secret {secret_name} holds keys {}", ids.join(", ")),
                ),
                secret: Some(secret),
                secret_name: Some(secret_name),
                next_change: plan.next_change,
                notes,
                ring: Some(plan.ring),
            })
        }
        SecretPlan::PublicKey { key } => public_key(validated, key, fetched, now),
        SecretPlan::Reference { name: secret, key } => {
            let namespace = &validated.namespace;
            let check = match fetched.referenced {
                Some(Referenced::Present) => {
                    Check::ok("Referenced", format!("Secret {secret} has key {key}"))
                }
                Some(Referenced::KeyMissing) => Check::failed(
                    "SecretRefKeyMissing",
                    format!("Secret {secret} has no key {key:?} (or it is empty); add it"),
                ),
                Some(Referenced::SecretMissing) | None => Check::failed(
                    "SecretRefMissing",
                    format!(
                        "Secret {secret} not found in namespace {namespace}; create it with key {key:?}"
                    ),
                ),
            };
            Ok(Keys {
                secret_name: Some(secret.clone()),
                ..refused(check)
            })
        }
    }
}

/// Whether `object` names the endpoint of UID `owner` as its controller.
fn controlled_by(object: &impl kube::Resource, owner: &str) -> bool {
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == owner)
}

fn was_ready(status: Option<&WebhookEndpointStatus>) -> bool {
    status.is_some_and(|status| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == build::READY && c.status == "True")
    })
}

/// The stable endpoint ID: the status's; else the one the ConfigMap carries (the status was
/// lost, the ID must not change: it namespaces the dedup records); else a new one.
fn endpoint_id(
    previous: Option<&WebhookEndpointStatus>,
    config_map: Option<&ConfigMap>,
    random: Random<'_>,
) -> Result<String, Error> {
    if let Some(id) = previous.and_then(|status| status.endpoint_id.clone()) {
        return Ok(id);
    }
    let from_config = config_map
        .and_then(|cm| cm.data.as_ref())
        .and_then(|data| data.get(CONFIG_FILE_NAME))
        .and_then(|text| serde_json::from_str::<EndpointConfig>(text).ok())
        .map(|config| config.endpoint_id)
        .filter(|id| !id.is_empty());
    if let Some(id) = from_config {
        return Ok(id);
    }
    let bytes = random().map_err(Error::Random)?;
    Ok(hex::encode(&bytes[..16]))
}

/// The keys of a `publicKey` endpoint: the key as the one entry of the endpoint's own Secret.
fn public_key(
    validated: &ValidatedEndpoint,
    key: &str,
    fetched: &Fetched,
    now: Timestamp,
) -> Result<Keys, Error> {
    let (ring, stored) = public_key_ring(key, fetched.generated.as_ref(), now);
    let secret = build_secret(validated, &ring).map_err(Error::Build)?;
    let secret_name = secret.metadata.name.clone().unwrap_or_default();
    let notes = if stored {
        vec![Note {
            type_: EventType::Normal,
            reason: "PublicKeyStored",
            message: format!(
                "stored the sender's public key from spec.secret.publicKey in Secret {secret_name}"
            ),
        }]
    } else {
        Vec::new()
    };
    Ok(Keys {
        check: Check::ok(
            "PublicKey",
            format!(
                "Secret {secret_name} holds the sender's public key (spec.secret.publicKey) as {PUBLIC_KEY_ID}"
            ),
        ),
        secret: Some(secret),
        secret_name: Some(secret_name),
        ring: Some(ring),
        next_change: None,
        notes,
    })
}

/// The key ring of a `publicKey` endpoint: the one key [`PUBLIC_KEY_ID`], created when the
/// Secret (this endpoint's, `secret`) first held this text; and whether it is new there.
fn public_key_ring(key: &str, secret: Option<&Secret>, now: Timestamp) -> (KeyRing, bool) {
    let held = secret
        .and_then(|secret| secret.data.as_ref())
        .and_then(|data| data.get(PUBLIC_KEY_ID))
        .is_some_and(|value| value.0 == key.as_bytes());
    let created_at = secret
        .filter(|_| held)
        .and_then(|secret| secret.metadata.annotations.as_ref())
        .and_then(|annotations| annotations.get(ANNOTATION_KEYS))
        .and_then(|text| serde_json::from_str::<KeyRingMeta>(text).ok())
        .and_then(|meta| meta.keys.into_iter().find(|k| k.id == PUBLIC_KEY_ID))
        .map_or(now, |meta| meta.created_at);
    let ring = KeyRing {
        keys: vec![Key {
            meta: KeyMeta {
                id: PUBLIC_KEY_ID.to_owned(),
                created_at,
                expires_at: None,
            },
            material: key.to_owned(),
        }],
        last_rotate_request: None,
    };
    (ring, !held)
}

/// The key plan's input from the Secret (when this endpoint controls it: a namesake's keys
/// are not trusted as ours), the previous status and the rotation settings (grace period,
/// schedule).
fn plan_input<'a>(
    validated: &'a ValidatedEndpoint,
    previous: Option<&WebhookEndpointStatus>,
    secret: Option<&Secret>,
    (encoding, grace_period, every): (
        KeyEncoding,
        std::time::Duration,
        Option<std::time::Duration>,
    ),
    now: Timestamp,
) -> PlanInput<'a> {
    let secret = secret.filter(|secret| controlled_by(*secret, &validated.owner.uid));
    // Generated keys only (`k<n>`): a public key left from an earlier spec is no key to keep.
    let data: BTreeMap<String, String> = secret
        .and_then(|secret| secret.data.as_ref())
        .map(|data| {
            data.iter()
                .filter(|(id, _)| rotation::key_number(id).is_some())
                .filter_map(|(id, value)| {
                    Some((id.clone(), String::from_utf8(value.0.clone()).ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    let meta: KeyRingMeta = secret
        .and_then(|secret| secret.metadata.annotations.as_ref())
        .and_then(|annotations| annotations.get(ANNOTATION_KEYS))
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let highest_seen = previous
        .into_iter()
        .flat_map(|status| &status.keys)
        .filter_map(|key| rotation::key_number(&key.id))
        .max()
        .unwrap_or(0);
    let last_rotate_request = meta
        .last_rotate_request
        .clone()
        .or_else(|| previous.and_then(|status| status.last_rotate_request.clone()));
    PlanInput {
        encoding,
        existing: rotation::existing_keys(&data, &meta, now),
        last_rotate_request,
        rotate_request: validated.rotate_request.as_deref(),
        highest_seen,
        grace_period,
        every,
        now,
    }
}

/// The Events of a key plan's changes; `lost` are the keys of a Secret `secret` that
/// disappeared (a Warning: senders using them now fail).
fn key_notes(changes: &rotation::Changes, secret: &str, lost: &[String]) -> Vec<Note> {
    let normal = |reason, message| Note {
        type_: EventType::Normal,
        reason,
        message,
    };
    let mut notes = Vec::new();
    if !lost.is_empty() {
        let new_key = changes
            .generated
            .as_ref()
            .map(|id| format!(" {id}"))
            .unwrap_or_default();
        notes.push(Note {
            type_: EventType::Warning,
            reason: "SigningKeysLost",
            message: format!(
                "Secret {secret} was deleted with signing key(s) {}: their material is gone, so \
                 deliveries signed with them now get 401; give the senders the new key{new_key}",
                lost.join(", "),
            ),
        });
    }
    if let Some(id) = &changes.generated {
        let why = if lost.is_empty() {
            ""
        } else {
            ", replacing the lost Secret"
        };
        notes.push(normal(
            "KeyGenerated",
            format!("generated signing key {id}{why}"),
        ));
    }
    if let Some(id) = &changes.rotated_to {
        notes.push(normal(
            "Rotated",
            format!(
                "rotated to signing key {id}; the previous key stays valid for the grace period"
            ),
        ));
    }
    if !changes.expired.is_empty() {
        notes.push(normal(
            "KeyExpired",
            format!(
                "removed expired signing key(s) {}",
                changes.expired.join(", ")
            ),
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::endpoint;
    use crate::controller::validate::validate;

    /// Deterministic key material: each draw is the next byte value repeated.
    fn counter() -> impl FnMut() -> Result<[u8; KEY_BYTES], getrandom::Error> {
        let mut next = 0u8;
        move || {
            next = next.wrapping_add(1);
            Ok([next; KEY_BYTES])
        }
    }

    fn decide_for(
        spec: &str,
        fetched: &Fetched,
        previous: Option<&WebhookEndpointStatus>,
    ) -> Decision {
        let validated = validate(&endpoint(spec)).unwrap();
        let facts = Facts {
            validated: &validated,
            previous,
            fetched,
            now: Timestamp::from_second(1_800_000_000).unwrap(),
        };
        decide(&facts, &mut counter()).unwrap()
    }

    const GENERATED: &str = "spec: {scheme: Stripe, path: /h, upstream: {port: 8080}}";

    fn owned_by(uid: &str) -> serde_json::Value {
        serde_json::json!([{"apiVersion": "hookguard.dev/v1alpha1", "kind": "WebhookEndpoint",
            "name": "pay", "uid": uid, "controller": true}])
    }

    #[test]
    fn a_new_endpoint_gets_an_id_a_key_its_children_and_turns_ready() {
        let decision = decide_for(GENERATED, &Fetched::default(), None);
        assert!(decision.refusal.is_none());
        assert!(decision.became_ready);
        let id = decision.status.endpoint_id.clone().unwrap();
        assert_eq!(id, hex::encode([1u8; 16]), "the first draw, hex");
        let secret = decision.secret.unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("pay-signing"));
        assert_eq!(
            decision.config_map.unwrap().metadata.name.as_deref(),
            Some("pay-sidecar")
        );
        let reasons: Vec<_> = decision.notes.iter().map(|note| note.reason).collect();
        assert_eq!(reasons, ["KeyGenerated", "Ready"]);
        let ready = &decision.notes[1];
        assert_eq!(ready.type_, EventType::Normal);
        assert!(
            ready.message.contains("deliveries to /h"),
            "{}",
            ready.message
        );
    }

    #[test]
    fn a_deleted_secret_is_reported_with_the_keys_it_took() {
        let previous: WebhookEndpointStatus = serde_json::from_value(serde_json::json!({
            "endpointId": "abc",
            "keys": [
                {"id": "k2", "createdAt": "2027-01-01T00:00:00Z"},
                {"id": "k1", "createdAt": "2026-12-01T00:00:00Z", "expiresAt": "2027-02-01T00:00:00Z"},
            ],
        }))
        .unwrap();
        let decision = decide_for(GENERATED, &Fetched::default(), Some(&previous));
        let ring: Vec<&str> = decision.status.keys.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(
            ring,
            ["k3"],
            "a new ID: an old one never names new material"
        );
        let lost = decision
            .notes
            .iter()
            .find(|note| note.reason == "SigningKeysLost")
            .expect("a Warning about the lost keys");
        assert_eq!(lost.type_, EventType::Warning);
        assert!(
            lost.message.contains("k2, k1") && lost.message.contains("new key k3"),
            "{}",
            lost.message
        );
        let generated = decision
            .notes
            .iter()
            .find(|note| note.reason == "KeyGenerated")
            .unwrap();
        assert_eq!(
            generated.message,
            "generated signing key k3, replacing the lost Secret"
        );
    }

    #[test]
    fn a_secret_of_the_name_owned_by_another_is_not_overwritten() {
        let foreign: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pay-signing", "ownerReferences": owned_by("someone-else")},
        }))
        .unwrap();
        let fetched = Fetched {
            generated: Some(foreign),
            ..Fetched::default()
        };
        let decision = decide_for(GENERATED, &fetched, None);
        assert!(decision.secret.is_none());
        assert!(
            matches!(decision.refusal, Some(Error::SecretRef(ref m)) if m.contains("not managed by this endpoint"))
        );
        assert!(!decision.became_ready);
        assert_eq!(decision.notes.last().unwrap().reason, "SecretNotOwned");
        assert_eq!(decision.notes.last().unwrap().type_, EventType::Warning);
    }

    #[test]
    fn a_config_map_of_the_name_owned_by_another_keeps_its_id_to_itself() {
        let foreign: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pay-sidecar", "ownerReferences": owned_by("someone-else")},
            "data": {"endpoint.json": r#"{"name":"pay","endpointId":"theirs","path":"/h","scheme":"Generic","upstream":{"port":1},"secretDir":"/s"}"#},
        }))
        .unwrap();
        let fetched = Fetched {
            config_map: Some(foreign),
            ..Fetched::default()
        };
        let decision = decide_for(GENERATED, &fetched, None);
        assert!(decision.config_map.is_none());
        assert_ne!(decision.status.endpoint_id.as_deref(), Some("theirs"));
        assert!(matches!(decision.refusal, Some(Error::NotOwned(_))));
    }

    #[test]
    fn a_missing_secret_ref_is_a_refusal_with_the_fix() {
        let spec = "spec: {scheme: Stripe, path: /h, upstream: {port: 8080}, secret: {secretRef: {name: stripe}}}";
        let fetched = Fetched {
            referenced: Some(Referenced::SecretMissing),
            ..Fetched::default()
        };
        let decision = decide_for(spec, &fetched, None);
        assert!(decision.secret.is_none());
        assert!(
            decision.config_map.is_some(),
            "the sidecar config does not wait for the Secret"
        );
        let Some(Error::SecretRef(message)) = decision.refusal else {
            panic!("{:?}", decision.refusal);
        };
        assert!(
            message.contains("create it with key \"secret\""),
            "{message}"
        );
    }

    const SENDGRID_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEyTNmjB73HmMlMEzDevoAeizGRViGh06fg6Dyj3w3i9IzakbbXyN5ew/WORUKmo4GUSDpHu+0YsYgVopyGh7Nw==";

    fn public_key_spec() -> String {
        format!(
            "spec: {{scheme: SendGrid, path: /events, upstream: {{port: 8080}}, secret: {{publicKey: '{SENDGRID_KEY}'}}}}"
        )
    }

    /// The Secret as the API server would return it after `decision` was applied: owned by
    /// the endpoint.
    fn applied(decision: &Decision) -> Secret {
        let mut secret = decision.secret.clone().unwrap();
        secret.metadata.owner_references =
            Some(serde_json::from_value(owned_by("1f0e7c1a-0000-4000-8000-000000000001")).unwrap());
        secret
    }

    #[test]
    fn a_public_key_becomes_the_one_key_of_the_endpoints_own_secret() {
        let decision = decide_for(&public_key_spec(), &Fetched::default(), None);
        assert!(decision.refusal.is_none(), "{:?}", decision.refusal);
        assert!(decision.became_ready);
        let secret = decision.secret.clone().unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("pay-signing"));
        let data = secret.data.clone().unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), [PUBLIC_KEY_ID]);
        assert_eq!(data[PUBLIC_KEY_ID].0, SENDGRID_KEY.as_bytes());
        assert_eq!(decision.status.secret_name.as_deref(), Some("pay-signing"));
        let keys = &decision.status.keys;
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].id, PUBLIC_KEY_ID);
        assert!(keys[0].created_at.is_some() && keys[0].expires_at.is_none());
        assert_eq!(decision.status.last_rotate_request, None);
        assert_eq!(decision.next_change, None, "nothing expires or rotates");
        let reasons: Vec<_> = decision.notes.iter().map(|note| note.reason).collect();
        assert_eq!(reasons, ["PublicKeyStored", "Ready"]);

        // The next reconcile, a rotation requested on the way: the same Secret, the same
        // creation time, nothing to say.
        let fetched = Fetched {
            generated: Some(applied(&decision)),
            ..Fetched::default()
        };
        let mut input = endpoint(&public_key_spec());
        input
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("hookguard.dev/rotate".into(), "now".into());
        let validated = validate(&input).unwrap();
        let facts = Facts {
            validated: &validated,
            previous: Some(&decision.status),
            fetched: &fetched,
            now: Timestamp::from_second(1_900_000_000).unwrap(),
        };
        let again = decide(&facts, &mut counter()).unwrap();
        assert_eq!(again.secret, decision.secret);
        assert_eq!(again.status.keys, decision.status.keys);
        assert!(again.notes.is_empty(), "{:?}", again.notes);
    }

    #[test]
    fn a_public_key_never_overwrites_a_foreign_secret() {
        let foreign: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pay-signing", "ownerReferences": owned_by("someone-else")},
        }))
        .unwrap();
        let fetched = Fetched {
            generated: Some(foreign),
            ..Fetched::default()
        };
        let decision = decide_for(&public_key_spec(), &fetched, None);
        assert!(decision.secret.is_none());
        assert!(
            matches!(decision.refusal, Some(Error::SecretRef(ref m)) if m.contains("not managed by this endpoint"))
        );
    }

    #[test]
    fn a_generated_secret_after_a_public_key_holds_only_generated_keys() {
        let first = decide_for(&public_key_spec(), &Fetched::default(), None);
        let fetched = Fetched {
            generated: Some(applied(&first)),
            ..Fetched::default()
        };
        let spec = "spec: {scheme: StandardWebhooks, path: /events, upstream: {port: 8080}}";
        let decision = decide_for(spec, &fetched, Some(&first.status));
        let secret = decision.secret.unwrap();
        let ids: Vec<_> = secret.data.unwrap().into_keys().collect();
        assert_eq!(ids, ["k1"]);
        let reasons: Vec<_> = decision.notes.iter().map(|note| note.reason).collect();
        assert_eq!(reasons, ["KeyGenerated"], "no keys lost, and Ready already");
    }

    #[test]
    fn the_endpoint_id_survives_a_lost_status_through_the_config_map() {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pay-sidecar"},
            "data": {"endpoint.json": r#"{"name":"pay","endpointId":"abc","path":"/h","scheme":"Generic","upstream":{"port":1},"secretDir":"/s"}"#},
        }))
        .unwrap();
        assert_eq!(endpoint_id(None, Some(&cm), &mut counter()).unwrap(), "abc");
        let fresh = endpoint_id(None, None, &mut counter()).unwrap();
        assert_eq!(fresh.len(), 32);
        let status = WebhookEndpointStatus {
            endpoint_id: Some("kept".into()),
            ..WebhookEndpointStatus::default()
        };
        assert_eq!(
            endpoint_id(Some(&status), Some(&cm), &mut counter()).unwrap(),
            "kept"
        );
    }
}
