//! The Hookguard verifier sidecar.
//!
//! A request flows through: route by path → method → body read up to the endpoint's limit →
//! [`verify`] the signature and timestamp on the raw bytes → extract and bound the delivery
//! ID → event filter → [`dedup`] claim → [`forward`] to the app → commit or release the claim.
//! [`rescue`] is the one place that turns a rejection into an HTTP answer.

pub mod dedup;
pub mod verify;
