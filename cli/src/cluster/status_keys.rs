//! An endpoint's signing keys as its Secret holds them: the operator's Secret
//! (`<name>-signing`, times in `hookguard.dev/keys`: generated keys, or the
//! `spec.secret.publicKey` copied there) or the `spec.secretRef` Secret. Read by
//! `status` (IDs, times, fingerprints) and `secret` (the value, on request only).
//!
//! A key's value lives in [`SigningKey::value`], which is never serialized or printed by
//! `Debug`; everything else here is safe to show.

use anyhow::Context as _;
use hookguard_api::admin::key_fingerprint;
use hookguard_api::crd::WebhookEndpoint;
use hookguard_api::keys::KeyRingMeta;
use hookguard_api::names::{ANNOTATION_KEYS, signing_secret_name};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client};
use serde::Serialize;

/// Where the keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum KeySource {
    /// Generated and rotated by the operator.
    Generated,
    /// A Secret the sender issued (`spec.secretRef`).
    SecretRef,
    /// The sender's public key (`spec.secret.publicKey`), copied by the operator.
    PublicKey,
}

/// One key, without its value unless asked for.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningKey {
    /// The key ID (the Secret's data key).
    pub id: String,
    /// When it was generated (generated keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// When a rotated-out key stops being valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// [`key_fingerprint`] of the value.
    pub fingerprint: String,
    /// The value, as stored. Never serialized.
    #[serde(skip)]
    pub value: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// An endpoint's keys, newest (current) first.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRing {
    /// The Secret holding them.
    pub secret_name: String,
    /// Generated, `secretRef` or `publicKey`.
    pub source: KeySource,
    /// The keys, newest first.
    pub keys: Vec<SigningKey>,
}

impl KeyRing {
    /// The key senders sign with now.
    pub fn current(&self) -> Option<&SigningKey> {
        self.keys.first()
    }
}

/// Reads `endpoint`'s keys from its Secret.
pub async fn read_keys(client: &Client, endpoint: &WebhookEndpoint) -> anyhow::Result<KeyRing> {
    let namespace = endpoint
        .metadata
        .namespace
        .as_deref()
        .context("the endpoint has no namespace")?;
    let name = endpoint.metadata.name.as_deref().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(reference) = &endpoint.spec.secret.secret_ref {
        let secret = secrets
            .get(&reference.name)
            .await
            .with_context(|| format!("reading Secret {} (spec.secretRef)", reference.name))?;
        let value = secret
            .data
            .as_ref()
            .and_then(|data| data.get(&reference.key))
            .with_context(|| {
                format!(
                    "Secret {} has no key {:?} (spec.secretRef.key)",
                    reference.name, reference.key
                )
            })?
            .0
            .clone();
        return Ok(KeyRing {
            secret_name: reference.name.clone(),
            source: KeySource::SecretRef,
            keys: vec![SigningKey {
                id: reference.key.clone(),
                created_at: None,
                expires_at: None,
                fingerprint: key_fingerprint(&value),
                value,
            }],
        });
    }
    let secret_name = endpoint
        .status
        .as_ref()
        .and_then(|status| status.secret_name.clone())
        .unwrap_or_else(|| signing_secret_name(name));
    let secret = secrets
        .get(&secret_name)
        .await
        .with_context(|| format!("reading the signing Secret {secret_name}"))?;
    let source = if endpoint.spec.secret.public_key.is_some() {
        KeySource::PublicKey
    } else {
        KeySource::Generated
    };
    Ok(KeyRing {
        keys: generated_keys(&secret)?,
        secret_name,
        source,
    })
}

/// The generated Secret's keys in the order of its `hookguard.dev/keys` annotation (newest
/// first); keys missing from the annotation follow, by ID.
fn generated_keys(secret: &Secret) -> anyhow::Result<Vec<SigningKey>> {
    let meta: KeyRingMeta = match secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(ANNOTATION_KEYS))
    {
        Some(text) => serde_json::from_str(text)
            .with_context(|| format!("annotation {ANNOTATION_KEYS} is not the key ring's JSON"))?,
        None => KeyRingMeta::default(),
    };
    let data = secret.data.clone().unwrap_or_default();
    let mut keys: Vec<SigningKey> = meta
        .keys
        .iter()
        .filter_map(|key| {
            let value = data.get(&key.id)?.0.clone();
            Some(SigningKey {
                id: key.id.clone(),
                created_at: Some(key.created_at),
                expires_at: key.expires_at,
                fingerprint: key_fingerprint(&value),
                value,
            })
        })
        .collect();
    for (id, value) in &data {
        if !keys.iter().any(|key| &key.id == id) {
            keys.push(SigningKey {
                id: id.clone(),
                created_at: None,
                expires_at: None,
                fingerprint: key_fingerprint(&value.0),
                value: value.0.clone(),
            });
        }
    }
    Ok(keys)
}

/// The endpoint name in `NAME`, `webhookendpoint/NAME`, `webhookendpoints/NAME` or
/// `whe/NAME` (kubectl's ways of naming one).
pub fn endpoint_name(arg: &str) -> anyhow::Result<&str> {
    let name = match arg.split_once('/') {
        None => arg,
        Some((kind, name)) => {
            let kind = kind.to_ascii_lowercase();
            let known = [
                "webhookendpoint",
                "webhookendpoints",
                "whe",
                "webhookendpoint.hookguard.dev",
                "webhookendpoints.hookguard.dev",
            ];
            anyhow::ensure!(
                known.contains(&kind.as_str()),
                "{arg:?}: name a WebhookEndpoint as NAME or webhookendpoint/NAME"
            );
            name
        }
    };
    anyhow::ensure!(!name.is_empty(), "{arg:?}: the endpoint name is empty");
    Ok(name)
}

/// Reads WebhookEndpoint `name` in `namespace`, saying so when it does not exist.
pub async fn get_endpoint(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<WebhookEndpoint> {
    let api: Api<WebhookEndpoint> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(endpoint)) => Ok(endpoint),
        Ok(None) => anyhow::bail!(
            "WebhookEndpoint {name} not found in namespace {namespace} (kubectl get webhookendpoints -n {namespace})"
        ),
        Err(error) => Err(anyhow::Error::new(error)
            .context(format!("reading WebhookEndpoint {namespace}/{name}"))),
    }
}

/// A short age such as `3d4h`, `5m` or `12s`.
pub fn age(since: Timestamp, now: Timestamp) -> String {
    let seconds = now.as_second().saturating_sub(since.as_second()).max(0);
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_annotation_and_extra_data_keys_come_last() {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pay-signing", "annotations": {ANNOTATION_KEYS:
                r#"{"keys":[{"id":"k2","createdAt":"2026-01-02T00:00:00Z"},{"id":"k1","createdAt":"2026-01-01T00:00:00Z","expiresAt":"2026-01-03T00:00:00Z"}]}"#}},
            "data": {"k1": "b25l", "k2": "dHdv", "zz": "eHg="},
        }))
        .unwrap();
        let keys = generated_keys(&secret).unwrap();
        let ids: Vec<&str> = keys.iter().map(|key| key.id.as_str()).collect();
        assert_eq!(ids, ["k2", "k1", "zz"]);
        assert_eq!(keys[0].fingerprint, key_fingerprint(b"two"));
        assert!(keys[1].expires_at.is_some());
        let json = serde_json::to_string(&keys).unwrap();
        assert!(!json.contains("two") && !json.contains("dHdv"), "{json}");
        assert!(!format!("{keys:?}").contains("two"));
    }

    #[test]
    fn ages_are_short() {
        let now: Timestamp = "2026-01-10T00:00:00Z".parse().unwrap();
        let at = |text: &str| text.parse::<Timestamp>().unwrap();
        assert_eq!(age(at("2026-01-09T23:59:30Z"), now), "30s");
        assert_eq!(age(at("2026-01-09T22:55:00Z"), now), "1h5m");
        assert_eq!(age(at("2026-01-07T20:00:00Z"), now), "2d4h");
    }
}
