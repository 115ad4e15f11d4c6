//! Configuration, parsed and validated before any port is bound.
//!
//! Two sources: process settings from flags or environment ([`Args`] → [`Settings`], in
//! [`settings`]), and one endpoint file per endpoint in the config directory. An endpoint
//! file is checked by the rules the operator uses ([`hookguard_api::validation`]) and
//! assembled with its keys in [`endpoint`] (pure); [`load`] reads the files and the keys.
//! Every error names where the value came from (flag, or file and field) and how to fix it.

pub mod endpoint;
pub mod load;
pub mod settings;

pub use endpoint::{Endpoint, Endpoints, lease_for};
pub use load::{ConfigError, ConfigErrors, load_endpoint_file, load_endpoints};
pub use settings::{Args, LogFormat, Settings, SettingsError, StoreMode, StoreSettings};

#[cfg(test)]
mod tests;
