//! Test support for Hookguard's integration and end-to-end tests.
//!
//! Every service here is real and local: `redis-server` from the OS packages (and Valkey 8
//! from Debian's backports, `tests/valkey-deps.sh`, for `WAITAOF`), a Kubernetes
//! control plane built from its Go modules (`tests/control-plane/build.sh`), and a one-node
//! cluster ([`node`]: kubelet, containerd, kube-proxy, in a network namespace of its own) that
//! runs the images [`image`] builds. Each server binds 127.0.0.1 on a free port (the node: its
//! own namespace's addresses) and is stopped when its handle is dropped. [`vectors`] runs the
//! real sidecar binary under libfaketime (Debian's `faketime`), its clock stopped at the
//! signature vectors' `now_unix`.

pub mod admin;
pub mod app;
pub mod cargo;
pub mod cli;
pub mod control_plane;
pub mod image;
pub mod injection;
pub mod net;
pub mod node;
pub mod operator;
pub mod redis;
pub mod sidecar;
pub mod vectors;
pub mod wait;
