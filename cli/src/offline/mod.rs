//! Commands that need no cluster: they work from a body, headers and a secret.

pub mod send;
pub mod sign;
pub mod verify;
