//! The key ring of a generated signing Secret, and rotation (pure).
//!
//! The Secret is the source of truth: its data holds one key per ID (`k1`, `k2`, …) and its
//! annotation [`ANNOTATION_KEYS`] holds each key's creation and expiry times and the last
//! rotation request acted on, so rotation survives an operator restart and a lost status
//! (status is rebuilt from the Secret; it only mirrors IDs and times).
//!
//! [`plan`] decides, from what exists and the clock, which keys the Secret must hold now and
//! when the next change is due (a rotated-out key's expiry or the next scheduled rotation),
//! so the reconciler requeues at that instant instead of polling.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use hookguard_api::config::Scheme;
use hookguard_api::validation::{self, Invalid};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub use hookguard_api::keys::{KeyMeta, KeyRingMeta};
pub use hookguard_api::names::ANNOTATION_KEYS;

/// Random bytes per generated key: HMAC-SHA256's block-size-independent full strength.
pub const KEY_BYTES: usize = 32;

/// A key with its material. The material never leaves the Secret: no `Debug` of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// ID and times.
    pub meta: KeyMeta,
    /// The secret as the sidecar reads it from the key file.
    pub material: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

/// The keys a Secret must hold now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRing {
    /// Newest (current) first.
    pub keys: Vec<Key>,
    /// The rotation request acted on.
    pub last_rotate_request: Option<String>,
}

impl KeyRing {
    /// The metadata to store in [`ANNOTATION_KEYS`] and mirror in status.
    pub fn meta(&self) -> KeyRingMeta {
        KeyRingMeta {
            keys: self.keys.iter().map(|key| key.meta.clone()).collect(),
            last_rotate_request: self.last_rotate_request.clone(),
        }
    }
}

/// What changed in [`plan`], for Events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The first key was generated (or regenerated after the Secret was lost).
    pub generated: Option<String>,
    /// A rotation added this key ID.
    pub rotated_to: Option<String>,
    /// Keys dropped because their grace period ended.
    pub expired: Vec<String>,
}

/// The outcome of [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The keys to apply.
    pub ring: KeyRing,
    /// What changed.
    pub changes: Changes,
    /// When the ring must be looked at again (an expiry or a scheduled rotation).
    pub next_change: Option<Timestamp>,
}

/// What [`plan`] works from.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// How new keys are written.
    pub encoding: KeyEncoding,
    /// The keys the Secret holds now (material and annotation joined), any order.
    pub existing: Vec<Key>,
    /// The Secret's last acted-on rotation request, else the status's.
    pub last_rotate_request: Option<String>,
    /// The `hookguard.dev/rotate` annotation's value.
    pub rotate_request: Option<&'a str>,
    /// Highest key number ever reported (status), so a lost Secret never reuses an ID.
    pub highest_seen: u64,
    /// `spec.rotation.gracePeriod`.
    pub grace_period: Duration,
    /// `spec.rotation.every`.
    pub every: Option<Duration>,
    /// The clock.
    pub now: Timestamp,
}

/// Joins a Secret's data and its [`ANNOTATION_KEYS`]: a data key without times counts as
/// created `now` (it was there before the annotation existed); times without data are
/// dropped (the material is gone).
pub fn existing_keys(
    data: &BTreeMap<String, String>,
    meta: &KeyRingMeta,
    now: Timestamp,
) -> Vec<Key> {
    data.iter()
        .map(|(id, material)| {
            let meta = meta
                .keys
                .iter()
                .find(|key| &key.id == id)
                .cloned()
                .unwrap_or_else(|| KeyMeta {
                    id: id.clone(),
                    created_at: now,
                    expires_at: None,
                });
            Key {
                meta,
                material: material.clone(),
            }
        })
        .collect()
}

/// The number in a key ID `k<n>`.
pub fn key_number(id: &str) -> Option<u64> {
    id.strip_prefix('k')?.parse().ok()
}

/// Decides the key ring. `random` supplies key material (the OS RNG in production, fixed
/// bytes in tests).
pub fn plan(
    input: PlanInput<'_>,
    random: &mut dyn FnMut() -> Result<[u8; KEY_BYTES], getrandom::Error>,
) -> Result<Plan, getrandom::Error> {
    let PlanInput {
        encoding,
        existing,
        last_rotate_request,
        rotate_request,
        highest_seen,
        grace_period,
        every,
        now,
    } = input;
    let mut changes = Changes::default();
    let mut next_number = existing
        .iter()
        .filter_map(|key| key_number(&key.meta.id))
        .chain([highest_seen])
        .max()
        .unwrap_or(0)
        + 1;
    let mut new_key = |created_at: Timestamp| -> Result<Key, getrandom::Error> {
        let id = format!("k{next_number}");
        next_number += 1;
        Ok(Key {
            meta: KeyMeta {
                id,
                created_at,
                expires_at: None,
            },
            material: encode_key(encoding, &random()?),
        })
    };

    let (mut keys, expired): (Vec<Key>, Vec<Key>) = existing
        .into_iter()
        .partition(|key| key.meta.expires_at.is_none_or(|at| at > now));
    changes.expired = expired.into_iter().map(|key| key.meta.id).collect();
    changes.expired.sort();
    // Newest first; the current key is the newest without an expiry.
    keys.sort_by(|a, b| {
        (b.meta.created_at, key_number(&b.meta.id))
            .cmp(&(a.meta.created_at, key_number(&a.meta.id)))
    });

    let has_current = keys
        .first()
        .is_some_and(|key| key.meta.expires_at.is_none());
    let requested = rotate_request.is_some() && rotate_request != last_rotate_request.as_deref();
    if has_current {
        let due = every.is_some_and(|every| {
            keys.first()
                .is_some_and(|current| add(current.meta.created_at, every) <= now)
        });
        if requested || due {
            let expires_at = add(now, grace_period);
            // Every older key that was still current gets the grace period; a key already
            // counting down keeps its earlier expiry.
            for key in &mut keys {
                if key.meta.expires_at.is_none() {
                    key.meta.expires_at = Some(expires_at);
                }
            }
            if grace_period.is_zero() {
                changes
                    .expired
                    .extend(keys.iter().map(|key| key.meta.id.clone()));
                keys.clear();
            }
            let key = new_key(now)?;
            changes.rotated_to = Some(key.meta.id.clone());
            keys.insert(0, key);
        }
    } else {
        // First key, or the Secret was lost: a fresh key, and a pending request is satisfied
        // by it rather than rotating twice.
        let key = new_key(now)?;
        changes.generated = Some(key.meta.id.clone());
        keys.insert(0, key);
    }

    let next_expiry = keys.iter().filter_map(|key| key.meta.expires_at).min();
    let next_rotation =
        every.and_then(|every| keys.first().map(|key| add(key.meta.created_at, every)));
    let next_change = [next_expiry, next_rotation].into_iter().flatten().min();
    Ok(Plan {
        ring: KeyRing {
            keys,
            last_rotate_request: rotate_request.map(str::to_owned).or(last_rotate_request),
        },
        changes,
        next_change,
    })
}

/// How generated key material is written for a scheme, as its senders hand out secrets
/// and as the sidecar's key loader reads them. Only schemes whose receiver chooses the secret
/// have one: for a scheme whose sender issues it there is no encoding, so no key can be
/// generated for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEncoding {
    /// Lower-case hex, used verbatim as the HMAC key (what a person pastes into the
    /// sender's settings): Generic, GitHub, Slack, Shopify.
    Hex,
    /// `whsec_` + lower-case hex: Stripe uses its secret string verbatim as the HMAC key,
    /// so any printable form works; this one looks like Stripe's own and is shell-safe.
    WhsecHex,
    /// `whsec_` + standard base64 of the bytes (the sidecar decodes it): StandardWebhooks.
    WhsecBase64,
}

impl KeyEncoding {
    /// The encoding of `scheme`'s generated keys, or why the operator cannot generate one
    /// (the sender issues the secret).
    pub fn for_scheme(scheme: Scheme) -> Result<KeyEncoding, Invalid> {
        match scheme {
            Scheme::Generic | Scheme::GitHub | Scheme::Slack | Scheme::Shopify => {
                Ok(KeyEncoding::Hex)
            }
            Scheme::Stripe => Ok(KeyEncoding::WhsecHex),
            Scheme::StandardWebhooks => Ok(KeyEncoding::WhsecBase64),
            Scheme::Twilio
            | Scheme::Zoom
            | Scheme::Paddle
            | Scheme::Linear
            | Scheme::Square
            | Scheme::Mailgun
            | Scheme::SendGrid => Err(validation::generate_refused(scheme)),
        }
    }
}

/// Encodes random bytes as `encoding` says.
pub fn encode_key(encoding: KeyEncoding, bytes: &[u8]) -> String {
    match encoding {
        KeyEncoding::WhsecBase64 => format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ),
        KeyEncoding::WhsecHex => format!("whsec_{}", hex::encode(bytes)),
        KeyEncoding::Hex => hex::encode(bytes),
    }
}

/// 32 bytes from the operating system's RNG.
pub fn os_random() -> Result<[u8; KEY_BYTES], getrandom::Error> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}

/// `at + duration`, saturating at the far future (a 100-year grace period is not an error).
pub fn add(at: Timestamp, duration: Duration) -> Timestamp {
    SignedDuration::try_from(duration)
        .ok()
        .and_then(|duration| at.checked_add(duration).ok())
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn input(existing: Vec<Key>, now: Timestamp) -> PlanInput<'static> {
        PlanInput {
            encoding: KeyEncoding::Hex,
            existing,
            last_rotate_request: None,
            rotate_request: None,
            highest_seen: 0,
            grace_period: HOUR,
            every: None,
            now,
        }
    }

    fn counter() -> impl FnMut() -> Result<[u8; 32], getrandom::Error> {
        let mut n = 0u8;
        move || {
            n += 1;
            Ok([n; 32])
        }
    }

    fn ids(plan: &Plan) -> Vec<&str> {
        plan.ring.keys.iter().map(|k| k.meta.id.as_str()).collect()
    }

    #[test]
    fn the_first_key_is_generated_and_a_pending_request_is_absorbed() {
        let mut inp = input(vec![], t(0));
        inp.rotate_request = Some("r1");
        let plan = plan(inp, &mut counter()).unwrap();
        assert_eq!(ids(&plan), ["k1"]);
        assert_eq!(plan.ring.keys[0].material, hex::encode([1u8; 32]));
        assert_eq!(plan.changes.generated.as_deref(), Some("k1"));
        assert_eq!(plan.ring.last_rotate_request.as_deref(), Some("r1"));
        assert_eq!(plan.next_change, None);
    }

    #[test]
    fn a_new_annotation_value_rotates_once_and_the_old_key_expires_after_the_grace() {
        let first = plan(input(vec![], t(0)), &mut counter()).unwrap();
        let mut inp = input(first.ring.keys.clone(), t(100));
        inp.rotate_request = Some("r1");
        let rotated = plan(inp, &mut counter()).unwrap();
        assert_eq!(ids(&rotated), ["k2", "k1"]);
        assert_eq!(rotated.ring.keys[1].meta.expires_at, Some(t(3700)));
        assert_eq!(rotated.next_change, Some(t(3700)));
        assert_eq!(rotated.changes.rotated_to.as_deref(), Some("k2"));

        // The same request again changes nothing.
        let mut inp = input(rotated.ring.keys.clone(), t(200));
        inp.rotate_request = Some("r1");
        inp.last_rotate_request = rotated.ring.last_rotate_request.clone();
        let again = plan(inp, &mut counter()).unwrap();
        assert_eq!(again.ring, rotated.ring);
        assert_eq!(again.changes, Changes::default());

        // At the expiry the old key goes.
        let mut inp = input(rotated.ring.keys.clone(), t(3700));
        inp.rotate_request = Some("r1");
        inp.last_rotate_request = Some("r1".into());
        let after = plan(inp, &mut counter()).unwrap();
        assert_eq!(ids(&after), ["k2"]);
        assert_eq!(after.changes.expired, ["k1"]);
        assert_eq!(after.next_change, None);
    }

    #[test]
    fn a_schedule_rotates_when_the_current_key_is_old_enough() {
        let mut inp = input(vec![], t(0));
        inp.every = Some(2 * HOUR);
        let first = plan(inp.clone(), &mut counter()).unwrap();
        assert_eq!(first.next_change, Some(t(7200)));
        inp.existing = first.ring.keys;
        inp.now = t(7199);
        assert_eq!(ids(&plan(inp.clone(), &mut counter()).unwrap()), ["k1"]);
        inp.now = t(7200);
        let rotated = plan(inp, &mut counter()).unwrap();
        assert_eq!(ids(&rotated), ["k2", "k1"]);
        assert_eq!(rotated.next_change, Some(t(7200 + 3600)));
    }

    #[test]
    fn a_lost_secret_never_reuses_a_reported_id() {
        let mut inp = input(vec![], t(0));
        inp.highest_seen = 4;
        assert_eq!(ids(&plan(inp, &mut counter()).unwrap()), ["k5"]);
    }

    #[test]
    fn zero_grace_drops_the_old_key_at_once() {
        let first = plan(input(vec![], t(0)), &mut counter()).unwrap();
        let mut inp = input(first.ring.keys, t(10));
        inp.grace_period = Duration::ZERO;
        inp.rotate_request = Some("x");
        let rotated = plan(inp, &mut counter()).unwrap();
        assert_eq!(ids(&rotated), ["k2"]);
        assert_eq!(rotated.changes.expired, ["k1"]);
    }

    #[test]
    fn data_without_times_counts_as_created_now() {
        let data = BTreeMap::from([("k3".to_owned(), "abc".to_owned())]);
        let keys = existing_keys(&data, &KeyRingMeta::default(), t(5));
        assert_eq!(keys[0].meta.created_at, t(5));
        assert_eq!(keys[0].meta.id, "k3");
    }

    #[rstest::rstest]
    #[case(
        Scheme::StandardWebhooks,
        "whsec_AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
    )]
    #[case(
        Scheme::Stripe,
        "whsec_0101010101010101010101010101010101010101010101010101010101010101"
    )]
    #[case(
        Scheme::Generic,
        "0101010101010101010101010101010101010101010101010101010101010101"
    )]
    fn keys_are_encoded_per_scheme(#[case] scheme: Scheme, #[case] expected: &str) {
        let encoding = KeyEncoding::for_scheme(scheme).unwrap();
        assert_eq!(encode_key(encoding, &[1u8; 32]), expected);
    }

    /// The CRD refuses `secret.generate` by [`Scheme::receiver_chooses_secret`]; the
    /// operator, by having no encoding. The two say the same.
    #[test]
    fn only_schemes_whose_receiver_chooses_the_secret_have_an_encoding() {
        for scheme in Scheme::ALL {
            match KeyEncoding::for_scheme(scheme) {
                Ok(_) => assert!(scheme.receiver_chooses_secret(), "{scheme:?}"),
                Err(refusal) => {
                    assert!(!scheme.receiver_chooses_secret(), "{scheme:?}");
                    assert_eq!(refusal.field, "secret.generate");
                    assert!(
                        refusal.problem.contains("spec.secret.secretRef"),
                        "{refusal}"
                    );
                }
            }
        }
        let twilio = KeyEncoding::for_scheme(Scheme::Twilio).unwrap_err();
        assert_eq!(
            twilio.problem,
            "Twilio issues the signing secret (the Auth Token): store it in a Secret and set spec.secret.secretRef"
        );
    }
}
