//! A real one-node Kubernetes cluster for the tests: etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, containerd 1.6, the kubelet and kube-proxy
//! (iptables), all inside a network namespace of their own, plus `CoreDNS` as a pod. Pods
//! really run here, unlike on the loopback [`ControlPlane`](crate::control_plane::ControlPlane).
//!
//! The recipe is `shared/research/real-node.md` §8-9 (measured on this project's machines):
//! `nsenter --net` (never `ip netns exec`, which hides the cgroup mounts), `failCgroupV1:
//! false`, containerd's `restrict_oom_score_adj`, a direct kubelet kubeconfig and serving
//! certificate instead of TLS bootstrap, the Service CIDR routed to a veth whose peer is
//! down. The host reaches the API server over a veth at [`Cluster::node_ip`].
//!
//! It needs root, the OS packages of `make node-deps` and the binaries of
//! `tests/control-plane/build.sh`; without them [`Cluster::start`] fails and says which.
//! Everything is named `hg-<pid>` (netns, cgroups, host veth, the run folder under
//! `<temp>/hookguard-node/`). One script, `teardown.sh`, undoes it all: [`Cluster::stop`]
//! runs it, a watchdog runs it when the owning process is gone without stopping (a shared
//! cluster lives in a `static`), and every start sweeps what crashed runs left.

mod config;
mod host;
mod pki;

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kube::{Client, Config};

pub use config::{DNS_SERVICE_IP, KUBERNETES_SERVICE_IP, NODE_NAME, POD_CIDR, SERVICE_CIDR};
pub use host::{KUBELET_SYSCTLS, leftovers, read_sysctls, sweep};

use crate::admin::Admin;
use crate::control_plane::process::describe;
use crate::wait::eventually_value_blocking;

/// The node components `build.sh` builds besides the control plane's.
const NODE_BINARIES: [&str; 3] = ["kubelet", "kube-proxy", "kube-scheduler"];

/// How long the API server may take to report `/readyz` ok.
const API_READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the node may take to be `Ready` without taints, once the kubelet runs.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `CoreDNS` may take to be Available.
const DNS_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The configuration files of the components that take one.
struct ComponentConfigs {
    containerd: PathBuf,
    kubelet: PathBuf,
    kube_proxy: PathBuf,
    /// The cgroup folders containerd (and so its shims) joins.
    runtime_cgroups: Vec<PathBuf>,
}

/// kube-apiserver's flags: Node and RBAC authorization, `NodeRestriction` and (by default)
/// `ServiceAccount` admission, the default endpoint reconciler advertising the node IP.
fn apiserver_args(pki: &pki::NodePki, node_ip: Ipv4Addr) -> Vec<String> {
    vec![
        "--etcd-servers=http://127.0.0.1:2379".to_owned(),
        "--bind-address=0.0.0.0".to_owned(),
        format!("--advertise-address={node_ip}"),
        format!("--secure-port={}", config::API_PORT),
        arg("cert-dir", &pki.ca_cert.with_file_name("apiserver-certs")),
        arg("tls-cert-file", &pki.apiserver.cert),
        arg("tls-private-key-file", &pki.apiserver.key),
        arg("client-ca-file", &pki.ca_cert),
        "--authorization-mode=Node,RBAC".to_owned(),
        "--enable-admission-plugins=NodeRestriction".to_owned(),
        "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
        arg("service-account-key-file", &pki.service_account_public_key),
        arg("service-account-signing-key-file", &pki.service_account_key),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--allow-privileged=true".to_owned(),
        arg("kubelet-client-certificate", &pki.admin.cert),
        arg("kubelet-client-key", &pki.admin.key),
        arg("kubelet-certificate-authority", &pki.ca_cert),
        // The node's name does not resolve on the host; its IP is in the cert.
        "--kubelet-preferred-address-types=InternalIP".to_owned(),
    ]
}

/// `--flag=path`.
fn arg(flag: &str, path: &Path) -> String {
    format!("--{flag}={}", path.display())
}

/// One component process, logging to `<run>/<name>.log`.
#[derive(Debug)]
struct Component {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Component {
    fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!(
                "{} exited ({status}); see {}",
                self.name,
                self.log.display()
            );
        }
        Ok(())
    }
}

/// A running one-node cluster. [`Cluster::stop`] (or dropping it) tears everything down.
#[derive(Debug)]
pub struct Cluster {
    name: String,
    run: PathBuf,
    admin: Admin,
    socket: PathBuf,
    node_ip: Ipv4Addr,
    host_ip: Ipv4Addr,
    components: Mutex<Vec<Component>>,
    watchdog: Mutex<Option<Child>>,
    started_in: Duration,
    stopped: bool,
}

impl Cluster {
    /// The cluster shared by every test in this test binary, started on first use. A failed
    /// start is remembered, so every test fails with the same message. The watchdog tears
    /// it down when the test binary exits.
    pub fn shared() -> anyhow::Result<&'static Self> {
        static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::start().map_err(|err| format!("{err:#}")))
            .as_ref()
            .map_err(|err| anyhow::anyhow!("the shared one-node cluster did not start: {err}"))
    }

    /// Starts the cluster and waits until it is usable: `/readyz` ok, the node `Ready` with
    /// no taints, kube-proxy healthy, `CoreDNS` ready behind its Service. Blocking; takes tens of seconds.
    pub fn start() -> anyhow::Result<Self> {
        let begun = Instant::now();
        host::preflight()?;
        let bin = bin_dir()?;
        let coredns_template = coredns_template(&bin)?;
        let images = base_images()?;
        let swept = host::sweep().context("sweeping what earlier runs left")?;
        if !swept.trim().is_empty() {
            eprintln!("{}", swept.trim_end());
        }

        let name = format!("hg-{}", std::process::id());
        let run = host::base_dir().join(&name);
        if run.exists() {
            // A kept folder of a finished run whose pid this process now has.
            let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
            if mounts.contains(&format!(" {}/", run.display())) {
                anyhow::bail!(
                    "{} is left from an earlier run and still has mounts under it; unmount \
                     them (grep {} /proc/mounts) and remove it",
                    run.display(),
                    run.display()
                );
            }
            fs::remove_dir_all(&run).with_context(|| format!("removing {}", run.display()))?;
        }
        fs::create_dir_all(&run).with_context(|| format!("creating {}", run.display()))?;
        let socket = run.join("containerd/containerd.sock");
        host::write_state(
            &run,
            &host::RunState {
                name: &name,
                socket: &socket,
                network: &name,
            },
        )?;
        let watchdog = host::spawn_watchdog(&run)?;
        let mut cluster = Self {
            admin: Admin::new(run.join("pki/admin.kubeconfig"), bin, &run),
            name,
            run,
            socket,
            node_ip: Ipv4Addr::UNSPECIFIED,
            host_ip: Ipv4Addr::UNSPECIFIED,
            components: Mutex::new(Vec::new()),
            watchdog: Mutex::new(Some(watchdog)),
            started_in: Duration::ZERO,
            stopped: false,
        };
        match cluster.boot(&coredns_template, &images) {
            Ok(()) => {
                cluster.started_in = begun.elapsed();
                Ok(cluster)
            }
            Err(err) => {
                let report = cluster.keep_logs();
                Err(err.context(format!("starting the one-node cluster failed\n{report}")))
            }
        }
    }

    fn boot(&mut self, coredns_template: &str, images: &[PathBuf]) -> anyhow::Result<()> {
        host::save_sysctls(&self.run)?;
        let (host_ip, node_ip) = host::pick_link_addresses()?;
        self.host_ip = host_ip;
        self.node_ip = node_ip;
        host::create_netns(&self.name, host_ip, node_ip)?;
        let runtime_cgroups = host::create_cgroups(&self.name)?;

        let server = format!("https://{node_ip}:{}", config::API_PORT);
        let pki = pki::write(&self.run.join("pki"), node_ip, &server)?;
        let cni_dir = self.run.join("net.d");
        fs::create_dir_all(&cni_dir)?;
        let paths = config::Paths {
            run: &self.run,
            containerd_socket: &self.socket,
            cni_conf_dir: &cni_dir,
        };
        let write_json = |file: &str, value: &serde_json::Value| -> anyhow::Result<PathBuf> {
            let path = self.run.join(file);
            fs::write(&path, serde_json::to_vec_pretty(value)?)
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
        write_json(
            "net.d/10-hookguard.conflist",
            &config::cni_conflist(&self.name, &self.run.join("cni-ipam")),
        )?;
        let containerd_config = self.run.join("containerd.toml");
        fs::write(
            &containerd_config,
            config::containerd_toml(paths, crate::image::PAUSE_IMAGE),
        )?;
        let kubelet_config = write_json(
            "kubelet.json",
            &config::kubelet_config(
                node_ip,
                &self.name,
                paths,
                config::KubeletFiles {
                    ca_cert: &pki.ca_cert,
                    serving_cert: &pki.kubelet_serving.cert,
                    serving_key: &pki.kubelet_serving.key,
                    pod_logs: &self.run.join("pod-logs"),
                },
            ),
        )?;
        let proxy_config = write_json(
            "kube-proxy.json",
            &config::kube_proxy_config(node_ip, &pki.kube_proxy_kubeconfig),
        )?;

        self.start_components(
            &pki,
            &ComponentConfigs {
                containerd: containerd_config,
                kubelet: kubelet_config,
                kube_proxy: proxy_config,
                runtime_cgroups,
            },
            images,
        )?;
        self.wait_ready(coredns_template)
    }

    /// Starts the control plane and containerd, imports the images, then starts the node.
    fn start_components(
        &self,
        pki: &pki::NodePki,
        configs: &ComponentConfigs,
        images: &[PathBuf],
    ) -> anyhow::Result<()> {
        let node_ip = self.node_ip;
        let (containerd_config, kubelet_config, proxy_config) =
            (&configs.containerd, &configs.kubelet, &configs.kube_proxy);
        self.spawn(
            "etcd",
            &[
                "--name=hookguard-node".to_owned(),
                arg("data-dir", &self.run.join("etcd")),
                "--listen-client-urls=http://127.0.0.1:2379".to_owned(),
                "--advertise-client-urls=http://127.0.0.1:2379".to_owned(),
                "--listen-peer-urls=http://127.0.0.1:2380".to_owned(),
                "--initial-advertise-peer-urls=http://127.0.0.1:2380".to_owned(),
                "--initial-cluster=hookguard-node=http://127.0.0.1:2380".to_owned(),
                "--unsafe-no-fsync=true".to_owned(),
                "--log-level=warn".to_owned(),
            ],
            &[],
        )?;
        self.spawn(
            "containerd",
            &[arg("config", containerd_config)],
            &configs.runtime_cgroups,
        )?;
        self.spawn("kube-apiserver", &apiserver_args(pki, node_ip), &[])?;

        self.wait_until(
            "containerd's socket exists",
            Duration::from_secs(30),
            || Ok(self.socket.exists().then_some(())),
        )?;
        for image in images {
            self.import_image(image)?;
        }

        let mut last = String::new();
        self.wait_until("kube-apiserver /readyz is ok", API_READY_TIMEOUT, || {
            let out = self.run_kubectl(&["get", "--raw=/readyz"])?;
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(out.status.success().then_some(()))
        })
        .with_context(|| format!("last /readyz answer: {last}"))?;

        self.spawn(
            "kube-controller-manager",
            &[
                arg("kubeconfig", &pki.admin_kubeconfig),
                "--use-service-account-credentials=false".to_owned(),
                arg("service-account-private-key-file", &pki.service_account_key),
                arg("root-ca-file", &pki.ca_cert),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                "--leader-elect=false".to_owned(),
                "--secure-port=0".to_owned(),
                // 2 cores: a busy machine (cargo building beside the tests) can delay the
                // kubelet's status updates; the default 50 s would mark the node NotReady.
                "--node-monitor-grace-period=180s".to_owned(),
            ],
            &[],
        )?;
        self.spawn(
            "kube-scheduler",
            &[
                arg("kubeconfig", &pki.admin_kubeconfig),
                "--leader-elect=false".to_owned(),
                "--secure-port=0".to_owned(),
            ],
            &[],
        )?;
        self.spawn(
            "kubelet",
            &[
                arg("config", kubelet_config),
                arg("kubeconfig", &pki.kubelet_kubeconfig),
                format!("--hostname-override={NODE_NAME}"),
                format!("--node-ip={node_ip}"),
                arg("root-dir", &self.run.join("kubelet")),
                "--v=1".to_owned(),
            ],
            &[],
        )?;
        self.spawn("kube-proxy", &[arg("config", proxy_config)], &[])?;
        Ok(())
    }

    /// Deploys `CoreDNS` and waits on the readiness gates (real-node.md §9.8).
    fn wait_ready(&self, coredns_template: &str) -> anyhow::Result<()> {
        let node_ip = self.node_ip;
        let mut last = String::new();
        let manifest = config::coredns_manifest(coredns_template, crate::image::COREDNS_IMAGE)?;
        let manifest_path = self.run.join("coredns.yaml");
        fs::write(&manifest_path, manifest)?;
        // The API server may still be creating its bootstrap RBAC and kube-system.
        self.wait_until("CoreDNS's manifest applies", API_READY_TIMEOUT, || {
            let out = self.run_kubectl(&["apply", "-f", &manifest_path.to_string_lossy()])?;
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            Ok(out.status.success().then_some(()))
        })
        .with_context(|| format!("last kubectl apply error: {last}"))?;

        self.wait_until(
            "the node is Ready with no taints",
            NODE_READY_TIMEOUT,
            || {
                let out = self.run_kubectl(&["get", "node", NODE_NAME, "-o", "json"])?;
                if !out.status.success() {
                    last = String::from_utf8_lossy(&out.stderr).into_owned();
                    return Ok(None);
                }
                let node: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                let ready = node["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                let taints = &node["spec"]["taints"];
                last = format!("ready: {ready}, taints: {taints}");
                Ok((ready && taints.as_array().is_none_or(Vec::is_empty)).then_some(()))
            },
        )
        .with_context(|| format!("last node state: {last}"))?;
        let health: SocketAddr = (node_ip, config::PROXY_HEALTH_PORT).into();
        self.wait_until("kube-proxy /healthz is ok", NODE_READY_TIMEOUT, || {
            Ok(http_get_ok(health, "/healthz").then_some(()))
        })?;
        // Not the Deployment's Available condition: with one replica and maxUnavailable 1
        // it is True with no pod ready. CoreDNS is ready once its kubernetes plugin has
        // synced through the `kubernetes` ClusterIP; then its Service needs the endpoint.
        self.wait_until(
            "CoreDNS is ready with a kube-dns endpoint",
            DNS_READY_TIMEOUT,
            || {
                let out = self.run_kubectl(&[
                    "-n",
                    "kube-system",
                    "get",
                    "endpointslices",
                    "-l",
                    "kubernetes.io/service-name=kube-dns",
                    "-o",
                    "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[*]}",
                ])?;
                Ok((out.status.success() && !out.stdout.trim_ascii().is_empty()).then_some(()))
            },
        )?;
        Ok(())
    }

    /// Starts `name` from the bin folder inside the netns, logging to `<run>/<name>.log`,
    /// and records its pid and start time for the teardown. With `cgroups`, the process
    /// joins those cgroup folders before it execs (so containerd's shims are found there).
    fn spawn(
        &self,
        name: &'static str,
        args: &[String],
        cgroups: &[PathBuf],
    ) -> anyhow::Result<()> {
        let log = self.run.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let program = if name == "containerd" {
            PathBuf::from("/usr/bin/containerd")
        } else {
            self.admin.bin().join(name)
        };
        let mut join = String::from("set -e; ");
        for dir in cgroups {
            let _ = write!(join, "echo $$ > '{}/cgroup.procs'; ", dir.display());
        }
        join.push_str("exec \"$@\"");
        let child = Command::new("sh")
            .arg("-c")
            .arg(join)
            .arg(name)
            .arg("nsenter")
            .arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(&program)
            .args(args)
            .current_dir(&self.run)
            .env(
                "PATH",
                format!(
                    "{}:/usr/sbin:/usr/bin:/sbin:/bin",
                    self.admin.bin().display()
                ),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        let start = host::start_time(child.id())?;
        let mut pids = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run.join("pids"))?;
        writeln!(pids, "{} {start} {name}", child.id())?;
        self.components().push(Component { name, child, log });
        Ok(())
    }

    fn components(&self) -> std::sync::MutexGuard<'_, Vec<Component>> {
        self.components
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Polls `ready` until it gives a value, failing early when a component has exited.
    fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        let mut dead = None;
        let value = eventually_value_blocking(what, timeout, || {
            if let Err(err) = self
                .components()
                .iter_mut()
                .try_for_each(Component::ensure_running)
            {
                dead = Some(format!("{err:#}"));
                return Ok(Some(None));
            }
            Ok(ready()?.map(Some))
        })?;
        match (value, dead) {
            (Some(value), _) => Ok(value),
            (None, dead) => anyhow::bail!(
                "{} while waiting until {what}",
                dead.unwrap_or_else(|| "a component exited".to_owned())
            ),
        }
    }

    /// The admin kubeconfig (`system:masters`), reachable from the host over the veth.
    pub fn kubeconfig(&self) -> &Path {
        self.admin.kubeconfig()
    }

    /// The node's IP: the API server (`:6443`), the kubelet (`:10250`) and kube-proxy's
    /// health port listen there, reachable from the host.
    pub fn node_ip(&self) -> Ipv4Addr {
        self.node_ip
    }

    /// The host's end of the veth: a server the test runs on this address (not 127.0.0.1)
    /// is reachable from the API server, e.g. a webhook registered by `url`. Not from pods:
    /// the host has no route to the pod network.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// The run's name, `hg-<pid>`: its netns (`/run/netns/<name>`), cgroups and host veth.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `work` on a thread of its own that has joined the node's network namespace, as a
    /// program on the node: Service `ClusterIP`s and pod IPs are reachable there (through
    /// kube-proxy's rules and the CNI bridge) and nothing is routed or changed on the host,
    /// so two clusters never collide. Threads and processes `work` starts (a tokio runtime's,
    /// `kubectl`) inherit the namespace; the API server is reachable from inside as well.
    pub fn on_the_node<T: Send>(&self, work: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        use std::os::fd::AsFd as _;

        let path = format!("/run/netns/{}", self.name);
        let netns = File::open(&path).with_context(|| format!("opening {path}"))?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // setns(2): changes only this thread, which `work` then runs on.
                    rustix::thread::move_into_link_name_space(
                        netns.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )
                    .with_context(|| format!("joining the node's network namespace {path}"))?;
                    Ok(work())
                })
                .join()
                .map_err(|_| anyhow::anyhow!("the thread on the node panicked"))?
        })
    }

    /// The run folder: logs, certificates, configuration, containerd's and kubelet's state.
    pub fn dir(&self) -> &Path {
        &self.run
    }

    /// The folder with the binaries, including `kubectl` and `helm`.
    pub fn bin_dir(&self) -> &Path {
        self.admin.bin()
    }

    /// containerd's socket (for `ctr -a`).
    pub fn containerd_socket(&self) -> &Path {
        &self.socket
    }

    /// How long [`Cluster::start`] took until every readiness gate passed.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The components' `(pid, start time)`s, to check after a teardown that none is left.
    pub fn component_pids(&self) -> Vec<(u32, String)> {
        fs::read_to_string(self.run.join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut fields = line.split(' ');
                Some((fields.next()?.parse().ok()?, fields.next()?.to_owned()))
            })
            .collect()
    }

    /// The client configuration of the admin kubeconfig.
    pub async fn config(&self) -> anyhow::Result<Config> {
        self.admin.config().await
    }

    /// An admin client. Build one per test: a client belongs to the runtime it was made in.
    pub async fn client(&self) -> anyhow::Result<Client> {
        self.admin.client().await
    }

    /// `kubectl` with `KUBECONFIG` set and the bin folder first on `PATH`.
    pub fn kubectl(&self) -> Command {
        self.admin.kubectl()
    }

    /// `helm` like [`Cluster::kubectl`], with its cache, config and data in the run folder.
    pub fn helm(&self) -> Command {
        self.admin.helm()
    }

    /// Runs `kubectl` with `args` and returns its output, whatever its exit status.
    pub fn run_kubectl(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.admin.run_kubectl(args)
    }

    /// Imports a docker-archive or OCI tar into containerd's `k8s.io` namespace, where the
    /// kubelet finds it (pods must use `imagePullPolicy: Never` or `IfNotPresent`).
    pub fn import_image(&self, tar: &Path) -> anyhow::Result<()> {
        let out = Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(tar)
            .output()
            .context("running ctr")?;
        if !out.status.success() {
            anyhow::bail!(
                "importing {} into containerd failed ({}): {}",
                tar.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// A diagnostics dump for a failure: each component's state and log tail, the pods,
    /// recent events, containerd's images and the route to the `kubernetes` `ClusterIP`.
    pub fn report(&self) -> String {
        let mut out = format!(
            "one-node cluster {} (node IP {}, run folder {}; root {} CAP_SYS_RESOURCE, so \
             containerd clamps oom_score_adj)\n",
            self.name,
            self.node_ip,
            self.run.display(),
            if host::lacks_sys_resource() {
                "lacks"
            } else {
                "has"
            },
        );
        for component in self.components().iter_mut() {
            out.push_str(&describe(
                component.name,
                &mut component.child,
                &component.log,
                25,
            ));
        }
        let mut section = |title: &str, command: &mut Command| {
            let text = match command.output() {
                Ok(o) => format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(err) => format!("(could not run: {err})"),
            };
            let _ = writeln!(out, "--- {title}:\n{}", text.trim_end());
        };
        section(
            "kubectl get pods -A -o wide",
            self.kubectl()
                .args(["get", "pods", "-A", "-o", "wide", "--request-timeout=10s"]),
        );
        section(
            "events",
            self.kubectl().args([
                "get",
                "events",
                "-A",
                "--sort-by=.lastTimestamp",
                "--request-timeout=10s",
            ]),
        );
        section(
            "ctr images ls -q",
            Command::new("ctr")
                .arg("-a")
                .arg(&self.socket)
                .args(["-n", "k8s.io", "images", "ls", "-q"]),
        );
        section(
            "ip route get 10.0.0.1 (in the netns)",
            Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", self.name))
                .args(["--", "ip", "route", "get", KUBERNETES_SERVICE_IP]),
        );
        out
    }

    /// Marks the run folder to be kept after the teardown (logs, certificates, configs;
    /// not the images or etcd) and returns [`Cluster::report`].
    pub fn keep_logs(&self) -> String {
        let _ = fs::write(self.run.join("keep"), b"");
        format!(
            "{}logs are kept in {} after the teardown",
            self.report(),
            self.run.display()
        )
    }

    /// Tears the cluster down (real-node.md §9.9, in order): kube-proxy and the kubelet, the
    /// pods, the control plane and containerd, the shims, whatever is still in the run's
    /// cgroups; then the mounts under the run folder, the cgroups, the veth and netns, the
    /// sysctls the kubelet changed, and the files it left outside the run folder.
    pub fn stop(mut self) -> anyhow::Result<Duration> {
        self.teardown()
    }

    fn teardown(&mut self) -> anyhow::Result<Duration> {
        let begun = Instant::now();
        if self.stopped {
            return Ok(Duration::ZERO);
        }
        self.stopped = true;
        let result = host::run_script("down", &[&self.run]);
        for component in self.components().iter_mut() {
            // Already gone after the script; reap (or, if the script failed, kill) them.
            let _ = component.child.kill();
            let _ = component.child.wait();
        }
        if let Some(mut watchdog) = self
            .watchdog
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let output = result?;
        if output.contains("could not") || output.contains("still") {
            anyhow::bail!("the teardown of {} was incomplete:\n{output}", self.name);
        }
        Ok(begun.elapsed())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(err) = self.teardown() {
            eprintln!("{err:#}");
        }
    }
}

/// The bin folder of `build.sh`, checked to hold the node components too.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let dir = crate::control_plane::bin_dir()?;
    let missing: Vec<&str> = NODE_BINARIES
        .into_iter()
        .filter(|name| !dir.join(name).is_file())
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "the node binaries {missing:?} are missing from {}: run \
             tests/control-plane/build.sh (it builds them beside the control plane)",
            dir.display()
        );
    }
    Ok(dir)
}

/// The `CoreDNS` addon template `build.sh` copies next to the bin folder.
fn coredns_template(bin: &Path) -> anyhow::Result<String> {
    let path = bin
        .parent()
        .map(|release| release.join("addons/coredns.yaml.in"))
        .context("the bin folder has no parent")?;
    fs::read_to_string(&path).with_context(|| {
        format!(
            "reading the CoreDNS addon manifest {}: run tests/control-plane/build.sh",
            path.display()
        )
    })
}

/// The images every node needs: the sandbox (pause) image and `CoreDNS`, as tars.
fn base_images() -> anyhow::Result<Vec<PathBuf>> {
    Ok(vec![
        crate::image::build_pause()?.path,
        crate::image::build_coredns()?.path,
    ])
}

/// Whether `GET path` on `addr` answers 200.
fn http_get_ok(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}
