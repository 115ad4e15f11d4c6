//! What the node cluster needs from and changes on the host: the checks before anything
//! starts (root, tools, cgroup v1 hierarchies), the run folder and its recorded state, the
//! network namespace with its veth and Service route, the cgroup root, the saved sysctls, and
//! the one teardown script (`teardown.sh`) with the watchdog and the start-time sweep that
//! run it. Everything is named `hg-<pid>` after the owning process.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::{env, fs};

use anyhow::Context as _;

use super::config::SERVICE_CIDR;

/// The teardown, watchdog and sweep script (see its header).
const TEARDOWN_SCRIPT: &str = include_str!("teardown.sh");

/// The sysctls the kubelet sets machine-wide at start (`setupKernelTunables` in
/// `pkg/kubelet/cm/container_manager_linux.go`, 1.35), saved before and restored after.
pub const KUBELET_SYSCTLS: [&str; 6] = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
];

/// Host folders the kubelet and containerd write to whatever their configuration says; the
/// teardown removes those a run created (when empty again).
const HOST_DIRS: [&str; 10] = [
    "/var/lib/kubelet/device-plugins",
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/lib/cni/results",
    "/var/lib/cni",
    "/run/containerd/s",
    "/run/containerd/fifo",
    "/run/containerd/runc/k8s.io",
    "/run/containerd/runc",
    "/run/containerd",
];

/// OS programs the node runs, with the package that has each (`make node-deps`).
const OS_TOOLS: [(&str, &str); 11] = [
    ("/usr/bin/containerd", "containerd"),
    ("/usr/bin/containerd-shim-runc-v2", "containerd"),
    ("/usr/bin/ctr", "containerd"),
    ("/usr/sbin/runc", "runc"),
    ("/usr/lib/cni/bridge", "containernetworking-plugins"),
    ("/usr/lib/cni/host-local", "containernetworking-plugins"),
    ("/usr/lib/cni/loopback", "containernetworking-plugins"),
    ("/usr/lib/cni/portmap", "containernetworking-plugins"),
    ("/usr/sbin/iptables", "iptables"),
    ("/usr/bin/nsenter", "util-linux"),
    ("/usr/bin/flock", "util-linux"),
];

/// Fails, saying what and why, when this machine cannot run the node.
pub fn preflight() -> anyhow::Result<()> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("");
    if uid != "0" {
        anyhow::bail!(
            "the one-node cluster needs root (effective uid is {uid}): it creates a network \
             namespace and veth, cgroups for the pods, overlay and tmpfs mounts, and runs \
             containerd, runc and the kubelet, which all need root"
        );
    }
    let missing: Vec<String> = OS_TOOLS
        .iter()
        .filter(|(path, _)| !Path::new(path).is_file())
        .map(|(path, package)| format!("{path} (package {package})"))
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "the one-node cluster needs {}: run `make node-deps` \
             (tests/control-plane/node-deps.sh) to install them",
            missing.join(", ")
        );
    }
    for tool in ["ip", "mount", "umount", "sha256sum"] {
        if which(tool).is_none() {
            anyhow::bail!("the one-node cluster needs `{tool}` on PATH (iproute2/util-linux)");
        }
    }
    for hierarchy in ["cpu", "cpuacct", "cpuset", "memory", "pids"] {
        if !Path::new("/sys/fs/cgroup")
            .join(hierarchy)
            .join("cgroup.procs")
            .is_file()
        {
            anyhow::bail!(
                "the one-node cluster expects the cgroup v1 hierarchy {hierarchy} at \
                 /sys/fs/cgroup/{hierarchy} (this harness's kubelet runs on cgroup v1 with \
                 failCgroupV1: false and cgroupRoot in its own per-hierarchy folders)"
            );
        }
    }
    Ok(())
}

/// Whether root lacks `CAP_SYS_RESOURCE` (bit 24 of `CapEff`), as on this project's machines;
/// containerd then needs `restrict_oom_score_adj`, which the config always sets.
pub fn lacks_sys_resource() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim();
            u64::from_str_radix(hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 24) == 0)
}

fn which(tool: &str) -> Option<PathBuf> {
    env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(tool))
        .find(|path| path.is_file())
}

/// The folder holding every run's folder: `<temp>/hookguard-node`.
pub fn base_dir() -> PathBuf {
    env::temp_dir().join("hookguard-node")
}

/// The start time (clock ticks since boot, field 22 of `/proc/<pid>/stat`) of a process, so
/// a recorded pid is never mistaken for a later process with the same number.
pub fn start_time(pid: u32) -> anyhow::Result<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let after_comm = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest)
        .context("parsing /proc/<pid>/stat")?;
    after_comm
        .split_whitespace()
        .nth(19)
        .map(str::to_owned)
        .context("no start time in /proc/<pid>/stat")
}

/// Runs the teardown script in `mode` with `args`, waiting for it.
pub fn run_script(mode: &str, args: &[&Path]) -> anyhow::Result<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(TEARDOWN_SCRIPT)
        .arg("hookguard-node")
        .arg(mode)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running the node teardown script (sh)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        anyhow::bail!(
            "node teardown script `{mode}` failed ({}): {text}",
            out.status
        );
    }
    Ok(text)
}

/// Tears down what crashed earlier runs left (their owner is gone), and our netns and
/// cgroups whose run folder is gone. Waits for a teardown a watchdog is running.
pub fn sweep() -> anyhow::Result<String> {
    let base = base_dir();
    fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    run_script("sweep", &[&base])
}

/// Starts the watchdog that tears the run down once this process is gone (a shared cluster
/// lives in a `static`, which is never dropped).
pub fn spawn_watchdog(run: &Path) -> anyhow::Result<Child> {
    let log = fs::File::create(run.join("watchdog.log"))?;
    Command::new("sh")
        .arg("-c")
        .arg(TEARDOWN_SCRIPT)
        .arg("hookguard-node")
        .arg("watch")
        .arg(std::process::id().to_string())
        .arg(run)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the node watchdog (sh)")
}

/// What a run records for its teardown, as `state.env` (shell assignments).
#[derive(Debug)]
pub struct RunState<'a> {
    /// The run's name, `hg-<pid>`: netns, cgroup folders, host veth.
    pub name: &'a str,
    /// containerd's socket.
    pub socket: &'a Path,
    /// The CNI network name (libcni names its cache files after it).
    pub network: &'a str,
}

/// Writes `state.env` (before anything is created, so a crash at any later point is swept)
/// and records which host folders exist already.
pub fn write_state(run: &Path, state: &RunState<'_>) -> anyhow::Result<()> {
    let owner = std::process::id();
    let created: Vec<&str> = HOST_DIRS
        .into_iter()
        .filter(|dir| !Path::new(dir).exists())
        .collect();
    let created_kubelet = u8::from(!Path::new("/var/lib/kubelet").exists());
    let mut env = String::new();
    for (key, value) in [
        ("OWNER", owner.to_string()),
        ("OWNER_START", start_time(owner)?),
        ("NETNS", state.name.to_owned()),
        ("CGROUP", state.name.to_owned()),
        ("VETH", state.name.to_owned()),
        ("SOCK", state.socket.display().to_string()),
        ("NET_NAME", state.network.to_owned()),
        ("CREATED_VAR_LIB_KUBELET", created_kubelet.to_string()),
        ("CREATED_DIRS", created.join(" ")),
    ] {
        if value.contains('\'') {
            anyhow::bail!("{key} {value:?} cannot go into state.env");
        }
        let _ = writeln!(env, "{key}='{value}'");
    }
    fs::write(run.join("state.env"), env).context("writing state.env")
}

/// Saves the kubelet's sysctls (or, when another run is alive, its saved copy, which holds
/// the values from before any kubelet ran).
pub fn save_sysctls(run: &Path) -> anyhow::Result<()> {
    let base = base_dir();
    if let Ok(entries) = fs::read_dir(&base) {
        for entry in entries.flatten() {
            let other = entry.path();
            if other != run && other.join("sysctl.saved").is_file() && !other.join("down").exists()
            {
                fs::copy(other.join("sysctl.saved"), run.join("sysctl.saved"))?;
                return Ok(());
            }
        }
    }
    let mut saved = String::new();
    for (key, value) in read_sysctls()? {
        let _ = writeln!(saved, "{key} {value}");
    }
    fs::write(run.join("sysctl.saved"), saved).context("writing sysctl.saved")
}

/// The current values of [`KUBELET_SYSCTLS`].
pub fn read_sysctls() -> anyhow::Result<Vec<(String, String)>> {
    KUBELET_SYSCTLS
        .iter()
        .map(|key| {
            let path = Path::new("/proc/sys").join(key);
            let value =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            Ok(((*key).to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// The /30 between host and node: `(host, node)` addresses, one not used on the host yet.
pub fn pick_link_addresses() -> anyhow::Result<(Ipv4Addr, Ipv4Addr)> {
    let used = String::from_utf8_lossy(&command("ip", &["-o", "-4", "addr", "show"])?).into_owned();
    let start = std::process::id() % 16_384;
    for offset in 0..16_384 {
        let index = (start + offset) % 16_384;
        let [_, _, high, low] = (index * 4).to_be_bytes();
        let host = Ipv4Addr::new(10, 201, high, low + 1);
        if !used.contains(&format!(" {host}/")) {
            return Ok((host, Ipv4Addr::new(10, 201, high, low + 2)));
        }
    }
    anyhow::bail!("no free /30 in 10.201.0.0/16 for the node's veth")
}

/// Creates the netns `name` with a veth to the host (host `host/30` ↔ node `node/30`) and a
/// route for the Service CIDR to a veth whose peer is down: a connection to a `ClusterIP`
/// needs a route before kube-proxy's DNAT applies, and this kernel has no dummy device.
pub fn create_netns(name: &str, host: Ipv4Addr, node: Ipv4Addr) -> anyhow::Result<()> {
    let netns = format!("--net=/run/netns/{name}");
    let inside = |args: &[&str]| -> anyhow::Result<()> {
        let mut full = vec![netns.as_str(), "--", "ip"];
        full.extend_from_slice(args);
        command("nsenter", &full).map(drop)
    };
    command("ip", &["netns", "add", name])?;
    inside(&["link", "set", "lo", "up"])?;
    let peer = format!("{name}n");
    command(
        "ip",
        &[
            "link", "add", name, "type", "veth", "peer", "name", &peer, "netns", name,
        ],
    )?;
    command("ip", &["addr", "add", &format!("{host}/30"), "dev", name])?;
    command("ip", &["link", "set", name, "up"])?;
    inside(&["addr", "add", &format!("{node}/30"), "dev", &peer])?;
    inside(&["link", "set", &peer, "up"])?;
    inside(&[
        "link", "add", "hgsvc0", "type", "veth", "peer", "name", "hgsvc1",
    ])?;
    inside(&["link", "set", "hgsvc0", "up"])?;
    inside(&["route", "add", SERVICE_CIDR, "dev", "hgsvc0"])?;
    Ok(())
}

/// Creates the cgroup root `name` in every hierarchy (the kubelet requires it to exist), and
/// `name/runtime` for containerd and its shims. Returns the `runtime` folders.
pub fn create_cgroups(name: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut runtime = Vec::new();
    for entry in fs::read_dir("/sys/fs/cgroup").context("reading /sys/fs/cgroup")? {
        let hierarchy = entry?.path();
        if !hierarchy.join("cgroup.procs").is_file() {
            continue;
        }
        for dir in [hierarchy.join(name), hierarchy.join(name).join("runtime")] {
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            if hierarchy.ends_with("cpuset") {
                let parent = dir.parent().context("cpuset parent")?;
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value = fs::read_to_string(parent.join(file))?;
                    fs::write(dir.join(file), value.trim())
                        .with_context(|| format!("writing {}", dir.join(file).display()))?;
                }
            }
        }
        runtime.push(hierarchy.join(name).join("runtime"));
    }
    Ok(runtime)
}

/// Runs `program` with `args`, failing with its output when it fails.
pub fn command(program: &str, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "`{program} {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// What is left of run `name` (folder `run`) on the host: for the tests' teardown checks.
/// `pids` are the components' `(pid, start time)`s, read before the teardown.
pub fn leftovers(name: &str, run: &Path, pids: &[(u32, String)]) -> Vec<String> {
    let mut left = Vec::new();
    if Path::new("/run/netns").join(name).exists() {
        left.push(format!("netns {name}"));
    }
    if let Ok(links) = command("ip", &["-o", "link", "show"])
        && String::from_utf8_lossy(&links).contains(&format!(": {name}@"))
    {
        left.push(format!("veth {name}"));
    }
    if let Ok(mounts) = fs::read_to_string("/proc/mounts") {
        let prefix = format!("{}/", run.display());
        left.extend(
            mounts
                .lines()
                .filter_map(|line| line.split(' ').nth(1))
                .filter(|target| {
                    target.starts_with(&prefix) || *target == format!("/run/netns/{name}")
                })
                .map(|target| format!("mount {target}")),
        );
    }
    if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
        left.extend(
            entries
                .flatten()
                .map(|entry| entry.path().join(name))
                .filter(|dir| dir.exists())
                .map(|dir| format!("cgroup {}", dir.display())),
        );
    }
    for (pid, start) in pids {
        if start_time(*pid).is_ok_and(|now| now == *start) && !is_zombie(*pid) {
            left.push(format!("process {pid} (a component)"));
        }
    }
    // Shims and anything else started with a path of the run folder.
    let run_path = run.display().to_string();
    if let Ok(procs) = fs::read_dir("/proc") {
        for entry in procs.flatten() {
            if entry.file_name().to_string_lossy().parse::<u32>().is_err() {
                continue;
            }
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&run_path) && !cmdline.contains("hookguard-node watch") {
                left.push(format!(
                    "process {}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    left
}

/// Whether `pid` is a zombie (exited, not reaped yet).
fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}
