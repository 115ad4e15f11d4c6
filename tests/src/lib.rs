//! Test support for Hookguard's integration and end-to-end tests.
//!
//! Every service here is real and local: `redis-server` from the OS packages and a Kubernetes
//! control plane built from its Go modules (`tests/control-plane/build.sh`). Each server binds
//! 127.0.0.1 on a free port and is stopped when its handle is dropped.

pub mod app;
pub mod control_plane;
pub mod injection;
pub mod net;
pub mod operator;
pub mod redis;
pub mod sidecar;
pub mod wait;
