//! The Hookguard operator.
//!
//! [`controller`] reconciles each `WebhookEndpoint` into its signing Secret and sidecar
//! ConfigMap (leader only); [`admission`] serves the mutating webhook that injects the sidecar
//! (every replica). [`crdgen`] renders the CRD.

pub mod admission;
pub mod certs;
pub mod crdgen;
