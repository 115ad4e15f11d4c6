//! A real Kubernetes control plane for the tests, as `envtest` gives Go operators:
//! `etcd`, `kube-apiserver` (RBAC on, generated certificates) and `kube-controller-manager`
//! (garbage collector, namespace and service-account controllers), with no kubelet, so pods
//! are admitted but never run.
//!
//! The binaries come from `tests/control-plane/build.sh`, which builds them from their Go
//! modules into `${HOOKGUARD_CACHE:-$HOME/.cache/hookguard}/k8s-<version>/bin` (override the
//! folder with `HOOKGUARD_K8S_BIN`). When they are missing, starting fails and says so: the
//! suite never passes by skipping.
//!
//! One control plane serves a whole test binary ([`ControlPlane::shared`]); each test gets
//! its own namespace through [`with_namespace`], which also keeps the components' logs and
//! prints their tails when the test fails. Every `#[tokio::test]` has its own runtime, so
//! clients are built per test from the written kubeconfig rather than shared.

mod certs;
pub(crate) mod process;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{env, fs};

use anyhow::Context as _;
use futures::FutureExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client, Config};

pub use certs::{PkiFiles, write_pki};
use process::Component;

use crate::admin::Admin;

use crate::net::{free_port, wait_for_tcp};

/// The Kubernetes release the binaries are built from (keep in step with `build.sh`).
pub const K8S_VERSION: &str = "v1.35.4";

/// How many times [`ControlPlane::start`] tries when a port was taken under its feet.
const START_ATTEMPTS: u32 = 3;

/// How long the API server may take to report `/readyz` ok.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The folder holding `kube-apiserver`, `kube-controller-manager`, `etcd`, `kubectl` and
/// `helm`, checked to contain all five.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let dir = if let Some(dir) = env::var_os("HOOKGUARD_K8S_BIN") {
        PathBuf::from(dir)
    } else {
        let cache = match env::var_os("HOOKGUARD_CACHE") {
            Some(cache) => PathBuf::from(cache),
            None => PathBuf::from(env::var_os("HOME").context("HOME is not set")?)
                .join(".cache/hookguard"),
        };
        cache.join(format!("k8s-{K8S_VERSION}/bin"))
    };
    let missing: Vec<&str> = [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kubectl",
        "helm",
    ]
    .into_iter()
    .filter(|name| !dir.join(name).is_file())
    .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "the test control plane binaries {missing:?} are missing from {}: \
             run tests/control-plane/build.sh first (the README's test command does)",
            dir.display()
        );
    }
    Ok(dir)
}

/// A running control plane. Dropping it stops the processes and removes its folder (unless a
/// failure asked to keep the logs); the watchdog does the same if the process just exits.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    admin: Admin,
    server: String,
    pki: PkiFiles,
    components: Mutex<Vec<Component>>,
    watchdog: Mutex<Child>,
    started_in: Duration,
    namespaces: AtomicU32,
}

impl ControlPlane {
    /// The control plane shared by every test in this test binary, started on first use.
    /// A failed start is remembered, so every test fails with the same message.
    pub fn shared() -> anyhow::Result<&'static Self> {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::start().map_err(|err| format!("{err:#}")))
            .as_ref()
            .map_err(|err| anyhow::anyhow!("the shared test control plane did not start: {err}"))
    }

    /// Starts a new control plane and waits until the API server is ready. Blocking; takes a
    /// few seconds.
    pub fn start() -> anyhow::Result<Self> {
        let begun = Instant::now();
        let bin = bin_dir()?;
        let mut attempt = 1;
        loop {
            let mut plane = Self::prepare(bin.clone())?;
            match plane.boot() {
                Ok(()) => {
                    plane.started_in = begun.elapsed();
                    return Ok(plane);
                }
                // A free port can be taken by another process before the component binds
                // it; start again on new ports (dropping `plane` cleans up this attempt).
                Err(_) if attempt < START_ATTEMPTS && plane.lost_port_race() => attempt += 1,
                Err(err) => {
                    let report = plane.keep_logs();
                    return Err(
                        err.context(format!("starting the test control plane failed\n{report}"))
                    );
                }
            }
        }
    }

    /// A new folder with its watchdog and certificates, no process started yet.
    fn prepare(bin: PathBuf) -> anyhow::Result<Self> {
        let dir = make_dir()?;
        let watchdog = process::spawn_watchdog(&dir)?;
        let plane = Self {
            admin: Admin::new(dir.join("kubeconfig"), bin, &dir),
            pki: certs::write_pki(&dir)?,
            dir,
            server: String::new(),
            components: Mutex::new(Vec::new()),
            watchdog: Mutex::new(watchdog),
            started_in: Duration::ZERO,
            namespaces: AtomicU32::new(0),
        };
        Ok(plane)
    }

    /// Whether a component failed because its port was taken.
    fn lost_port_race(&self) -> bool {
        self.components().iter().any(|component| {
            fs::read_to_string(component.log())
                .is_ok_and(|log| log.contains("address already in use"))
        })
    }

    fn boot(&mut self) -> anyhow::Result<()> {
        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let data_dir = self.dir.join("etcd-data");
        self.spawn(
            "etcd",
            &[
                "--name=hookguard-test".to_owned(),
                format!("--data-dir={}", data_dir.display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                format!("--initial-cluster=hookguard-test=http://127.0.0.1:{etcd_peer_port}"),
                // Tests only: durability is worthless here and fsync dominates start-up.
                "--unsafe-no-fsync=true".to_owned(),
                "--log-level=warn".to_owned(),
            ],
        )?;
        self.wait_until("etcd accepts connections", Duration::from_secs(30), || {
            Ok(wait_for_tcp(
                ([127, 0, 0, 1], etcd_port).into(),
                Duration::from_millis(100),
            )
            .is_ok())
        })?;

        let port = free_port()?;
        self.server = format!("https://127.0.0.1:{port}");
        self.write_kubeconfig()?;
        let pki = &self.pki;
        let apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", self.dir.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", pki.serving_cert.display()),
            format!("--tls-private-key-file={}", pki.serving_key.display()),
            format!("--client-ca-file={}", pki.ca_cert.display()),
            "--authorization-mode=Node,RBAC".to_owned(),
            format!("--service-account-issuer={}/", self.server),
            format!(
                "--service-account-key-file={}",
                pki.service_account_public_key.display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                pki.service_account_key.display()
            ),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--allow-privileged=true".to_owned(),
            // As envtest: no token controller mounts tokens into pods (there is no kubelet),
            // so this plugin would only reject pods created before their namespace's
            // `default` ServiceAccount exists.
            "--disable-admission-plugins=ServiceAccount".to_owned(),
            // The `kubernetes` Service's endpoints would point at 127.0.0.1, which Endpoints
            // validation rejects; nothing in the tests needs them.
            "--endpoint-reconciler-type=none".to_owned(),
        ];
        self.spawn("kube-apiserver", &apiserver_args)?;
        let mut last = String::new();
        self.wait_until("kube-apiserver /readyz is ok", READY_TIMEOUT, || {
            let out = self.run_kubectl(&["get", "--raw=/readyz"])?;
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(out.status.success())
        })
        .with_context(|| format!("last /readyz answer: {last}"))?;

        self.spawn(
            "kube-controller-manager",
            &[
                format!("--kubeconfig={}", self.admin.kubeconfig().display()),
                "--controllers=garbagecollector,namespace,serviceaccount,serviceaccount-token"
                    .to_owned(),
                "--use-service-account-credentials=false".to_owned(),
                format!(
                    "--service-account-private-key-file={}",
                    pki.service_account_key.display()
                ),
                format!("--root-ca-file={}", pki.ca_cert.display()),
                "--leader-elect=false".to_owned(),
                // No metrics/health endpoint: nothing scrapes it, and it saves a port.
                "--secure-port=0".to_owned(),
            ],
        )?;
        // Catch a controller manager that dies straight away (bad flag, cannot connect).
        std::thread::sleep(Duration::from_millis(300));
        self.components()
            .iter_mut()
            .try_for_each(Component::ensure_running)
    }

    fn spawn(&self, name: &'static str, args: &[String]) -> anyhow::Result<()> {
        let component = Component::spawn(name, &self.admin.bin().join(name), args, &self.dir)?;
        self.components().push(component);
        Ok(())
    }

    fn components(&self) -> std::sync::MutexGuard<'_, Vec<Component>> {
        self.components
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Polls `ready` until it is true, failing early when a component has exited.
    fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.components()
                .iter_mut()
                .try_for_each(Component::ensure_running)?;
            if ready()? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                anyhow::bail!("timed out after {timeout:?} waiting until {what}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn write_kubeconfig(&self) -> anyhow::Result<()> {
        // JSON is YAML; serde_json gets the quoting right.
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "hookguard-test", "cluster": {
                "server": self.server,
                "certificate-authority": self.pki.ca_cert,
            }}],
            "users": [{"name": "admin", "user": {
                "client-certificate": self.pki.admin_cert,
                "client-key": self.pki.admin_key,
            }}],
            "contexts": [{"name": "hookguard-test", "context": {
                "cluster": "hookguard-test",
                "user": "admin",
                "namespace": "default",
            }}],
            "current-context": "hookguard-test",
        });
        fs::write(self.admin.kubeconfig(), serde_json::to_vec_pretty(&config)?)
            .with_context(|| format!("writing {}", self.admin.kubeconfig().display()))
    }

    /// The admin kubeconfig (client certificate in group `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        self.admin.kubeconfig()
    }

    /// The API server's URL, `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The generated certificate and key files.
    pub fn pki(&self) -> &PkiFiles {
        &self.pki
    }

    /// The folder with the certificates, etcd's data and the components' logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder with the binaries, including `kubectl` and `helm`.
    pub fn bin_dir(&self) -> &Path {
        self.admin.bin()
    }

    /// How long [`ControlPlane::start`] took until `/readyz` was ok.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The client configuration of the admin kubeconfig.
    pub async fn config(&self) -> anyhow::Result<Config> {
        self.admin.config().await
    }

    /// An admin client. Build one per test: a client belongs to the runtime it was made in.
    pub async fn client(&self) -> anyhow::Result<Client> {
        self.admin.client().await
    }

    /// A client that acts as `user` in `groups`, through impersonation by the admin.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> anyhow::Result<Client> {
        let mut config = self.config().await?;
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups =
            Some(groups.iter().map(|group| (*group).to_owned()).collect());
        Ok(Client::try_from(config)?)
    }

    /// A client that acts as `ServiceAccount` `name` in `namespace`, with the user name and
    /// groups the API server gives a real token of that account.
    pub async fn client_as_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<Client> {
        self.client_as(
            &format!("system:serviceaccount:{namespace}:{name}"),
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{namespace}"),
                "system:authenticated",
            ],
        )
        .await
    }

    /// `kubectl` (1.35) set up for this control plane through `KUBECONFIG`.
    pub fn kubectl(&self) -> Command {
        self.admin.kubectl()
    }

    /// `helm` set up for this control plane through `KUBECONFIG`, with its cache, config and
    /// data folders inside the control plane's folder.
    pub fn helm(&self) -> Command {
        self.admin.helm()
    }

    /// Runs `kubectl` with `args` and returns its output, whatever its exit status.
    pub fn run_kubectl(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.admin.run_kubectl(args)
    }

    /// Runs `helm` with `args` and returns its output, whatever its exit status.
    pub fn run_helm(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.admin.run_helm(args)
    }

    /// Marks the folder to be kept and returns each component's state and log tail, for a
    /// failure message.
    pub fn keep_logs(&self) -> String {
        let marker = self.dir.join(process::KEEP_MARKER);
        let kept = match fs::write(&marker, b"") {
            Ok(()) => format!("logs are kept in {}", self.dir.display()),
            Err(err) => format!("could not mark {} to be kept: {err}", self.dir.display()),
        };
        format!(
            "test control plane ({}): {kept}\n{}",
            self.server,
            process::report(&mut self.components(), 30)
        )
    }

    /// Creates a fresh namespace named `<prefix>-<n>` and returns it with an admin client.
    pub async fn create_namespace(&self, prefix: &str) -> anyhow::Result<(String, Client)> {
        let n = self.namespaces.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{n}");
        let client = self.client().await?;
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok((name, client))
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for component in self.components().iter_mut().rev() {
            component.stop();
        }
        let mut watchdog = self.watchdog.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = watchdog.kill();
        let _ = watchdog.wait();
        if !self.dir.join(process::KEEP_MARKER).exists() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A test's own namespace on the shared control plane, with an admin client.
#[derive(Clone)]
pub struct TestNamespace {
    /// The shared control plane.
    pub plane: &'static ControlPlane,
    /// The namespace's name.
    pub name: String,
    /// An admin client, made in the test's runtime.
    pub client: Client,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .field("server", &self.plane.server)
            .finish_non_exhaustive()
    }
}

impl TestNamespace {
    /// An API for namespaced objects of kind `K` in this namespace, as admin.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// A client acting as `ServiceAccount` `name` of this namespace.
    pub async fn client_as_service_account(&self, name: &str) -> anyhow::Result<Client> {
        self.plane.client_as_service_account(&self.name, name).await
    }
}

/// Runs `test` in a fresh namespace of the shared control plane.
///
/// When the test returns an error or panics, the control plane's logs are kept, their tails
/// printed, and the test fails; when it passes, its namespace is deleted.
///
/// # Panics
///
/// When the control plane cannot start or the namespace cannot be created, and when `test`
/// fails or panics: that is how the calling test fails.
#[allow(clippy::panic)] // failing the calling test is this function's job
pub async fn with_namespace<F, Fut>(prefix: &str, test: F)
where
    F: FnOnce(TestNamespace) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let plane = match ControlPlane::shared() {
        Ok(plane) => plane,
        Err(err) => panic!("{err:#}"),
    };
    let (name, client) = match plane.create_namespace(prefix).await {
        Ok(created) => created,
        Err(err) => panic!("{err:#}\n{}", plane.keep_logs()),
    };
    let namespace = TestNamespace {
        plane,
        name: name.clone(),
        client: client.clone(),
    };
    match std::panic::AssertUnwindSafe(test(namespace))
        .catch_unwind()
        .await
    {
        Ok(Ok(())) => {
            // Best effort: a namespace left behind does not affect other tests.
            let _ = Api::<Namespace>::all(client)
                .delete(&name, &DeleteParams::background())
                .await;
        }
        Ok(Err(err)) => panic!(
            "test in namespace {name} failed: {err:?}\n{}",
            plane.keep_logs()
        ),
        Err(payload) => {
            eprintln!("test in namespace {name} panicked\n{}", plane.keep_logs());
            std::panic::resume_unwind(payload);
        }
    }
}

/// Creates a new, empty folder for one control plane under the system temp folder.
fn make_dir() -> anyhow::Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let dir = env::temp_dir().join(format!(
        "hookguard-control-plane-{}-{nanos}",
        std::process::id()
    ));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
