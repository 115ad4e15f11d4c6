//! The key ring's metadata as the operator stores it on the signing Secret, in the annotation
//! [`ANNOTATION_KEYS`]: the operator writes it, `hookguard status` and `hookguard rotate`
//! read it.

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

#[cfg(doc)]
use crate::names::ANNOTATION_KEYS;

/// One key's times, as stored in [`ANNOTATION_KEYS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyMeta {
    /// The key ID, also its data key in the Secret and its file name in the sidecar.
    pub id: String,
    /// When the key was generated.
    pub created_at: Timestamp,
    /// When a rotated-out key stops being valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// The annotation's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRingMeta {
    /// The keys, newest first.
    pub keys: Vec<KeyMeta>,
    /// The `hookguard.dev/rotate` value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotate_request: Option<String>,
}
