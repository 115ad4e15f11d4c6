//! The Hookguard verifier sidecar.
//!
//! A request flows through [`service`]: [`route`] by path → method → body read up to the
//! endpoint's limit → [`verify`] the signature and timestamp on the raw bytes → extract and
//! bound the delivery ID → event filter → [`dedup`] claim → [`forward`] to the app → commit
//! or release the claim, in [`background`] work if that outlives the request. [`rescue`] is
//! the one place that turns an outcome into an answer. Modules depend one way: `service`
//! uses `forward`, never the reverse; what both need (`route`, `background`) sits below them.
//! [`config`] is parsed before anything is bound; [`server`] binds and drains; [`reload`]
//! follows mounted ConfigMaps and Secrets; [`admin`] serves health and [`metrics`], and the
//! [`delivery_log`] every answer is recorded in. [`sign`]
//! is the sender's side of each scheme, for tests and tools.
//!
//! In queue mode (`delivery.mode: Queue`) the request path ends at the [`queue`] instead: the
//! verified delivery is admitted in place of the claim and answered once stored, and a
//! [`queue::worker`] delivers it to the app later.

pub mod admin;
pub mod background;
pub mod config;
pub mod dedup;
pub mod delivery_log;
pub mod forward;
pub mod metrics;
pub mod queue;
pub mod reload;
pub mod rescue;
pub mod route;
pub mod server;
pub mod service;
pub mod sign;
pub mod verify;

pub use config::{Args, Settings, load_endpoints};
pub use server::{Running, start};
