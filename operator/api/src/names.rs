//! Names shared by the operator, the sidecar and the chart: labels, annotations, headers and
//! environment variables. One constant each, so a rename is one change.

/// Label set on every object Hookguard manages.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "hookguard";
/// Label naming the `WebhookEndpoint` an object belongs to.
pub const LABEL_ENDPOINT: &str = "hookguard.dev/endpoint";
/// Pod label that opts a pod into sidecar injection (value `"true"`).
pub const LABEL_INJECT: &str = "hookguard.dev/inject";
/// Pod annotation listing the endpoints to serve, comma-separated.
pub const ANNOTATION_ENDPOINTS: &str = "hookguard.dev/endpoints";
/// Endpoint annotation whose new value triggers one key rotation.
pub const ANNOTATION_ROTATE: &str = "hookguard.dev/rotate";

/// Header the sidecar adds to a forwarded request: the verified delivery ID.
pub const HEADER_DELIVERY_ID: &str = "x-hookguard-delivery-id";
/// Header the sidecar adds to a forwarded request: the endpoint's name.
pub const HEADER_ENDPOINT: &str = "x-hookguard-endpoint";
/// Header on answers the sidecar makes itself (never on the app's answers): why it answered.
pub const HEADER_OUTCOME: &str = "x-hookguard-outcome";

/// Environment variables the sidecar reads (each also a `--flag`).
pub mod env {
    /// Address for webhook traffic, e.g. `0.0.0.0:9880`.
    pub const LISTEN: &str = "HOOKGUARD_LISTEN";
    /// Address for `/healthz`, `/readyz` and `/metrics`.
    pub const ADMIN_LISTEN: &str = "HOOKGUARD_ADMIN_LISTEN";
    /// Directory of endpoint configuration files.
    pub const CONFIG_DIR: &str = "HOOKGUARD_CONFIG_DIR";
    /// Dedup store: `memory`, or a `redis://` / `rediss://` URL.
    pub const STORE: &str = "HOOKGUARD_STORE";
    /// Deadline for one store command.
    pub const STORE_TIMEOUT: &str = "HOOKGUARD_STORE_TIMEOUT";
    /// In-memory store: maximum number of entries.
    pub const MEMORY_MAX_ENTRIES: &str = "HOOKGUARD_MEMORY_MAX_ENTRIES";
    /// In-memory store: maximum accounted bytes.
    pub const MEMORY_MAX_BYTES: &str = "HOOKGUARD_MEMORY_MAX_BYTES";
    /// Host of the app container (normally loopback).
    pub const UPSTREAM_HOST: &str = "HOOKGUARD_UPSTREAM_HOST";
    /// Time allowed for a client to send the request head.
    pub const HEADER_READ_TIMEOUT: &str = "HOOKGUARD_HEADER_READ_TIMEOUT";
    /// Time allowed for a client to send the request body.
    pub const BODY_READ_TIMEOUT: &str = "HOOKGUARD_BODY_READ_TIMEOUT";
    /// Time allowed for in-flight requests to finish after SIGTERM.
    pub const SHUTDOWN_GRACE: &str = "HOOKGUARD_SHUTDOWN_GRACE";
    /// `text` or `json`.
    pub const LOG_FORMAT: &str = "HOOKGUARD_LOG_FORMAT";
    /// A `tracing` filter, e.g. `info` or `hookguard_sidecar=debug`.
    pub const LOG: &str = "HOOKGUARD_LOG";
}
