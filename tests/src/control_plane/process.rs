//! The control plane's processes: each component runs with its output in a log file in the
//! control plane's folder, and a watchdog cleans up after the test process however it ends.
//!
//! Why a watchdog: the shared control plane lives in a `static`, and statics are never
//! dropped, so no `Drop` runs when the test binary exits (nor on a panic that aborts, nor
//! when the binary is killed). Making children die with their parent needs
//! `prctl(PR_SET_PDEATHSIG)`, which is unsafe code (forbidden here). Instead one small `sh`
//! loop per control plane polls the test process with `kill -0` twice a second; once that
//! process is gone (or is a zombie not yet reaped) it kills every pid listed in
//! `<dir>/pids` and removes the folder, unless a failing test left a `<dir>/keep` marker, in
//! which case it leaves the logs there. Components and the watchdog run in their own process
//! groups so a Ctrl-C in a terminal reaches only the test process (or `dev-cluster`), whose
//! exit then triggers the cleanup.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

/// Name of the file listing the pids the watchdog kills.
const PIDS_FILE: &str = "pids";
/// Name of the marker file that makes the watchdog keep the folder (and its logs).
pub const KEEP_MARKER: &str = "keep";

/// The watchdog's script; `$1` is the pid to watch, `$2` the control plane folder.
const WATCHDOG_SCRIPT: &str = r#"
parent="$1" dir="$2"
while kill -0 "$parent" 2>/dev/null && ! grep -qs '^State:[[:space:]]*Z' "/proc/$parent/status"; do
    sleep 0.5
done
if [ -f "$dir/pids" ]; then kill -9 $(cat "$dir/pids") 2>/dev/null; fi
if [ -e "$dir/keep" ]; then
    echo "hookguard control plane: logs kept in $dir" >&2
else
    rm -rf "$dir"
fi
"#;

/// One running component (etcd, kube-apiserver, kube-controller-manager).
#[derive(Debug)]
pub struct Component {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Component {
    /// Starts `program` with `args`, logging to `<dir>/<name>.log`, and registers its pid with
    /// the watchdog.
    pub fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        let mut pids = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(PIDS_FILE))?;
        writeln!(pids, "{}", child.id())?;
        Ok(Self { name, child, log })
    }

    /// The component's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Fails when the process has exited (the caller reports the logs).
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!("{} exited ({status})", self.name);
        }
        Ok(())
    }

    /// Kills the process and reaps it.
    pub fn stop(&mut self) {
        // Errors mean it has already exited, which is what we want.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the watchdog for the control plane in `dir` (see the module docs).
pub fn spawn_watchdog(dir: &Path) -> anyhow::Result<Child> {
    Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG_SCRIPT)
        .arg("hookguard-control-plane-watchdog")
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .context("starting the control plane watchdog (sh)")
}

/// The last `lines` lines of a log file, or why it could not be read.
pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}

/// A report with each component's state and log tail, for a failed start or test.
pub fn report(components: &mut [Component], lines: usize) -> String {
    let mut out = String::new();
    for component in components {
        out.push_str(&describe(
            component.name,
            &mut component.child,
            &component.log,
            lines,
        ));
    }
    out
}

/// One component's part of a report: whether it still runs, and its log's last `lines`.
pub fn describe(name: &str, child: &mut Child, log: &Path, lines: usize) -> String {
    let state = match child.try_wait() {
        Ok(None) => "running".to_owned(),
        Ok(Some(status)) => format!("exited ({status})"),
        Err(err) => format!("unknown ({err})"),
    };
    format!(
        "--- {name} {state}, log {} (last {lines} lines):\n{}\n",
        log.display(),
        tail(log, lines)
    )
}
