//! Placeholder until the control-plane harness lands.
