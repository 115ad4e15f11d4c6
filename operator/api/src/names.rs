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
/// Annotation on the generated signing Secret holding the key ring's IDs and times as JSON
/// (`keys::KeyRingMeta`, feature `crd`).
pub const ANNOTATION_KEYS: &str = "hookguard.dev/keys";

/// Pod annotation recording what the webhook injected (a digest of the rendered sidecar), so
/// a second pass through the webhook changes nothing.
pub const ANNOTATION_INJECTED: &str = "hookguard.dev/injected";
/// Pod annotations overriding the sidecar's resources.
pub const ANNOTATION_CPU_REQUEST: &str = "hookguard.dev/sidecar-cpu-request";
/// See [`ANNOTATION_CPU_REQUEST`].
pub const ANNOTATION_MEMORY_REQUEST: &str = "hookguard.dev/sidecar-memory-request";
/// See [`ANNOTATION_CPU_REQUEST`].
pub const ANNOTATION_CPU_LIMIT: &str = "hookguard.dev/sidecar-cpu-limit";
/// See [`ANNOTATION_CPU_REQUEST`].
pub const ANNOTATION_MEMORY_LIMIT: &str = "hookguard.dev/sidecar-memory-limit";

/// The operator's field manager for server-side apply, everywhere it writes.
pub const FIELD_MANAGER: &str = "hookguard-operator";

/// The sidecar container's name in an injected pod.
pub const SIDECAR_CONTAINER: &str = "hookguard-sidecar";
/// The sidecar's webhook port; the app's Service targets it by [`SIDECAR_PORT_NAME`].
pub const SIDECAR_PORT: u16 = 9880;
/// Name of the sidecar's webhook port.
pub const SIDECAR_PORT_NAME: &str = "hookguard";
/// The sidecar's admin port (`/healthz`, `/readyz`, `/metrics`).
pub const SIDECAR_ADMIN_PORT: u16 = 9881;
/// Name of the sidecar's admin port.
pub const SIDECAR_ADMIN_PORT_NAME: &str = "hookguard-admin";
/// Where endpoint ConfigMaps are mounted in the sidecar: `<root>/<endpoint>/endpoint.json`.
pub const SIDECAR_CONFIG_ROOT: &str = "/etc/hookguard/endpoints";
/// Where signing Secrets are mounted in the sidecar: `<root>/<endpoint>/<key id>`.
pub const SIDECAR_SECRET_ROOT: &str = "/etc/hookguard/secrets";

/// Name of the signing Secret the operator generates for an endpoint.
pub fn signing_secret_name(endpoint: &str) -> String {
    format!("{endpoint}-signing")
}

/// Suffix of the sidecar ConfigMap's name ([`sidecar_config_name`]).
pub const SIDECAR_CONFIG_SUFFIX: &str = "-sidecar";

/// Name of the sidecar ConfigMap the operator renders for an endpoint.
pub fn sidecar_config_name(endpoint: &str) -> String {
    format!("{endpoint}{SIDECAR_CONFIG_SUFFIX}")
}

/// Header the sidecar adds to a forwarded request: the verified delivery ID.
pub const HEADER_DELIVERY_ID: &str = "x-hookguard-delivery-id";
/// Header the sidecar adds to a queued delivery: which attempt this is (1 for the first).
pub const HEADER_ATTEMPT: &str = "x-hookguard-attempt";
/// Header the sidecar adds to a queued delivery: when the sidecar received it, in Unix
/// seconds.
pub const HEADER_RECEIVED_AT: &str = "x-hookguard-received-at";
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
    /// `standalone` (one Redis server) or `cluster` (a Redis Cluster; the store URL lists
    /// seed nodes, comma-separated).
    pub const STORE_MODE: &str = "HOOKGUARD_STORE_MODE";
    /// Password for the Redis store (`AUTH`), kept out of the URL; set it from a Secret.
    pub const STORE_PASSWORD: &str = "HOOKGUARD_STORE_PASSWORD";
    /// PEM file with the CA that signed the Redis server's certificate (`rediss://`).
    pub const STORE_CA_FILE: &str = "HOOKGUARD_STORE_CA_FILE";
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
    /// Most client connections served at once; past it, new ones wait in the listen backlog.
    pub const MAX_CONNECTIONS: &str = "HOOKGUARD_MAX_CONNECTIONS";
    /// Time allowed for in-flight requests to finish after SIGTERM.
    pub const SHUTDOWN_GRACE: &str = "HOOKGUARD_SHUTDOWN_GRACE";
    /// `text` or `json`.
    pub const LOG_FORMAT: &str = "HOOKGUARD_LOG_FORMAT";
    /// A `tracing` filter, e.g. `info` or `hookguard_sidecar=debug`.
    pub const LOG: &str = "HOOKGUARD_LOG";
    /// Delivery log: most records kept per endpoint (about, with Redis: trimmed with `~`);
    /// `0` turns the log off.
    pub const DELIVERY_LOG_MAX_RECORDS: &str = "HOOKGUARD_DELIVERY_LOG_MAX_RECORDS";
    /// Delivery log: oldest record kept, e.g. `24h`.
    pub const DELIVERY_LOG_MAX_AGE: &str = "HOOKGUARD_DELIVERY_LOG_MAX_AGE";
    /// The pod's name (downward API `metadata.name`): the sidecar's instance name in the
    /// delivery log and `/keys`; unset, the host name and process ID.
    pub const POD_NAME: &str = "POD_NAME";
}
