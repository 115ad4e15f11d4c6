//! The sender's side of each scheme: the headers a sender puts on a delivery it signs. The
//! other half of [`crate::verify`], for the tests, the benchmarks and tools that send test
//! deliveries; the sidecar itself never signs.
//!
//! Keys are the raw HMAC key bytes. A StandardWebhooks secret as a sender issues it
//! (`whsec_` + base64) decodes to them; every other scheme uses its secret verbatim.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use hookguard_api::config::Scheme;
use sha2::Sha256;

/// HMAC-SHA256 of the concatenated `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC-SHA256 takes a key of any length"));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The Generic scheme's signature of `body`: lower-case hex HMAC-SHA256.
pub fn generic(key: &[u8], body: &[u8]) -> String {
    hex::encode(hmac_sha256(key, &[body]))
}

/// What a sender signs besides the body.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The delivery ID (sent in a header by Generic, StandardWebhooks, GitHub, Shopify).
    pub id: &'a str,
    /// Unix seconds (signed by StandardWebhooks, Stripe, Slack).
    pub timestamp: i64,
    /// The event type, for the schemes that send it in a header (GitHub's `X-GitHub-Event`,
    /// Shopify's `X-Shopify-Topic`); the others carry it in the body.
    pub event_type: &'a str,
    /// The raw body.
    pub body: &'a [u8],
}

/// A scheme whose deliveries [`headers`] cannot sign, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{scheme:?} deliveries cannot be signed here: {why}")]
pub struct NotSignable {
    /// The scheme.
    pub scheme: Scheme,
    /// Why, in a few words.
    pub why: &'static str,
}

/// Whether [`headers`] can sign deliveries of `scheme`.
pub fn signable(scheme: Scheme) -> Result<(), NotSignable> {
    let why = match scheme {
        Scheme::Twilio | Scheme::Square => "the signature covers the public URL the sender calls",
        Scheme::Mailgun => "the signature travels inside the body, next to the event",
        Scheme::SendGrid => "SendGrid signs with its private ECDSA key, which only SendGrid holds",
        _ => return Ok(()),
    };
    Err(NotSignable { scheme, why })
}

/// The headers (lower-case names) a sender of `scheme` sends with `delivery`, signed with
/// `key`, the way the sender's own libraries do (`shared/vectors/` and `vectors/` hold their
/// output). `Err` for the schemes [`signable`] refuses.
pub fn headers(
    scheme: Scheme,
    key: &[u8],
    delivery: &Delivery<'_>,
) -> Result<Vec<(&'static str, String)>, NotSignable> {
    signable(scheme)?;
    let Delivery {
        id,
        timestamp,
        event_type,
        body,
    } = *delivery;
    let ts = timestamp.to_string();
    let mac = |parts: &[&[u8]]| hmac_sha256(key, parts);
    Ok(match scheme {
        Scheme::Generic => vec![
            ("x-signature", generic(key, body)),
            ("x-delivery-id", id.to_owned()),
        ],
        Scheme::StandardWebhooks => {
            let sig = STANDARD.encode(mac(&[id.as_bytes(), b".", ts.as_bytes(), b".", body]));
            vec![
                ("webhook-id", id.to_owned()),
                ("webhook-timestamp", ts),
                ("webhook-signature", format!("v1,{sig}")),
            ]
        }
        Scheme::Stripe => {
            let sig = hex::encode(mac(&[ts.as_bytes(), b".", body]));
            vec![("stripe-signature", format!("t={ts},v1={sig}"))]
        }
        Scheme::GitHub => vec![
            (
                "x-hub-signature-256",
                format!("sha256={}", hex::encode(mac(&[body]))),
            ),
            ("x-github-delivery", id.to_owned()),
            ("x-github-event", event_type.to_owned()),
        ],
        Scheme::Slack => {
            let sig = hex::encode(mac(&[b"v0:", ts.as_bytes(), b":", body]));
            vec![
                ("x-slack-request-timestamp", ts),
                ("x-slack-signature", format!("v0={sig}")),
            ]
        }
        Scheme::Shopify => vec![
            ("x-shopify-hmac-sha256", STANDARD.encode(mac(&[body]))),
            ("x-shopify-topic", event_type.to_owned()),
            ("x-shopify-webhook-id", id.to_owned()),
        ],
        Scheme::Zoom => {
            let sig = hex::encode(mac(&[b"v0:", ts.as_bytes(), b":", body]));
            vec![
                ("x-zm-request-timestamp", ts),
                ("x-zm-signature", format!("v0={sig}")),
            ]
        }
        Scheme::Paddle => {
            let sig = hex::encode(mac(&[ts.as_bytes(), b":", body]));
            vec![("paddle-signature", format!("ts={ts};h1={sig}"))]
        }
        // Linear's freshness is the body's own `webhookTimestamp`: the caller writes it.
        Scheme::Linear => vec![
            ("linear-signature", hex::encode(mac(&[body]))),
            ("linear-delivery", id.to_owned()),
            ("linear-event", event_type.to_owned()),
        ],
        Scheme::Twilio | Scheme::Square | Scheme::Mailgun | Scheme::SendGrid => {
            unreachable!("refused by signable() above")
        }
    })
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderName, HeaderValue};

    use super::*;
    use crate::verify::{GenericHeaders, SigningKey, Verifier, VerifierSettings};

    const NOW: i64 = 1_764_000_000;

    /// Every scheme's signed headers pass the verifier: the two halves agree. (The vectors
    /// in `shared/vectors/`, made with the senders' libraries, pin the verifier itself.)
    #[test]
    fn what_a_sender_signs_the_verifier_accepts() {
        let key = b"sign-test-key-material";
        let body = br#"{"id":"evt_1","event_id":"Ev1","webhookTimestamp":1764000000000}"#;
        for scheme in Scheme::ALL {
            if signable(scheme).is_err() {
                continue;
            }
            let secret = if scheme == Scheme::StandardWebhooks {
                format!("whsec_{}", STANDARD.encode(key)).into_bytes()
            } else {
                key.to_vec()
            };
            let verifier = Verifier::new(VerifierSettings {
                scheme,
                generic: GenericHeaders::default(),
                key_source: None,
                keys: vec![SigningKey::new(scheme, "k1", &secret).unwrap()],
                tolerance: std::time::Duration::from_secs(300),
                public_url: None,
            });
            let delivery = Delivery {
                id: "msg_1",
                timestamp: NOW,
                event_type: "orders/create",
                body,
            };
            let mut map = HeaderMap::new();
            for (name, value) in headers(scheme, key, &delivery).unwrap() {
                map.insert(
                    HeaderName::from_static(name),
                    HeaderValue::from_str(&value).unwrap(),
                );
            }
            assert!(verifier.verify(&map, body, NOW).is_ok(), "{scheme:?}");
            assert!(
                verifier.verify(&map, b"tampered", NOW).is_err(),
                "{scheme:?} signs the body"
            );
        }
    }
}
