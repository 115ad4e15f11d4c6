//! Hookguard's API: the names the operator and the sidecar agree on, and the sidecar's
//! endpoint configuration file format.
//!
//! This crate has no client and does no IO. The operator renders [`config::EndpointConfig`]
//! into a ConfigMap; the sidecar reads the same type from the mounted file. Both check it with
//! [`validation::check`], the one definition of a valid endpoint.

pub mod admin;
pub mod config;
#[cfg(feature = "crd")]
pub mod crd;
#[cfg(feature = "crd")]
pub mod keys;
pub mod names;
pub mod report;
pub mod units;
pub mod validation;

pub use config::{
    Delivery, DeliveryMode, Durability, EndpointConfig, GenericOptions, IdempotencyKey, Replay,
    Scheme, StoreUnavailable, Upstream,
};
