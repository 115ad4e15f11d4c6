//! The six images of the one-node test cluster: what each holds and how its binary is built.
//! The image names here are the one source of truth for the node harness and the e2e tests;
//! all live under `localhost/hookguard/`, so a missing image fails on loopback instead of
//! resolving a registry.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use super::{DirEntry, FileEntry, ImageSpec, with_shared_libraries, write_docker_archive};
use crate::control_plane::K8S_VERSION;

/// The pod sandbox image (containerd's `sandbox_image`); its tag is pause.c's `VERSION`.
pub const PAUSE_IMAGE: &str = "localhost/hookguard/pause:3.10.1";
/// Cluster DNS; its tag is the version `tests/control-plane/coredns/go.mod` requires.
pub const COREDNS_IMAGE: &str = "localhost/hookguard/coredns:1.14.7";
/// The operator, laid out as the Dockerfile's `operator` stage.
pub const OPERATOR_IMAGE: &str = "localhost/hookguard/hookguard-operator:dev";
/// The sidecar, laid out as the Dockerfile's `sidecar` stage.
pub const SIDECAR_IMAGE: &str = "localhost/hookguard/hookguard-sidecar:dev";
/// The chart's bundled Redis, from the OS package; the tag is the version that package has
/// (checked at build time).
pub const REDIS_IMAGE: &str = "localhost/hookguard/redis:7.0.15";
/// The e2e test app (`tests/src/bin/e2e-app.rs`).
pub const TEST_APP_IMAGE: &str = "localhost/hookguard/test-app:dev";

/// distroless's `nonroot` user, which the Dockerfile's `USER 65532:65532` and the chart's
/// securityContext expect.
const NONROOT: &str = "65532:65532";
/// distroless's `PATH`.
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Chooses the cargo profile of the operator and sidecar binaries: `debug` (the default)
/// or `release` (what the Dockerfile ships). A cold release build takes 17 minutes on this
/// project's 2-core machines and a one-line change 5 more (thin LTO), while the suite has
/// the debug binaries built already.
pub const PROFILE_ENV: &str = "HOOKGUARD_IMAGES_PROFILE";

/// An image archive on disk, ready for `ctr -n k8s.io images import`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// Full reference, one of the `*_IMAGE` constants.
    pub name: String,
    /// The docker-archive tar.
    pub path: PathBuf,
    /// How long building it (binary included) took.
    pub took: Duration,
}

/// `${HOOKGUARD_CACHE:-$HOME/.cache/hookguard}`.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    match std::env::var_os("HOOKGUARD_CACHE") {
        Some(cache) => Ok(PathBuf::from(cache)),
        None => Ok(
            PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
                .join(".cache/hookguard"),
        ),
    }
}

/// Where the archives go: `<cache>/images/<short name>.tar`.
pub fn images_dir() -> anyhow::Result<PathBuf> {
    Ok(cache_dir()?.join("images"))
}

/// Builds all six images, pause and `CoreDNS` first (the node needs those before any pod).
pub fn build_all() -> anyhow::Result<Vec<BuiltImage>> {
    Ok(vec![
        build_pause()?,
        build_coredns()?,
        build_operator()?,
        build_sidecar()?,
        build_redis()?,
        build_test_app()?,
    ])
}

/// [`PAUSE_IMAGE`]: Kubernetes' own `pause.c` from the `k8s.io/kubernetes` module that
/// `tests/control-plane/build.sh` downloads, compiled static with gcc as its Makefile does.
pub fn build_pause() -> anyhow::Result<BuiltImage> {
    let start = Instant::now();
    let source = go_mod_cache()?
        .join(format!("k8s.io/kubernetes@{K8S_VERSION}"))
        .join("build/pause/linux/pause.c");
    ensure!(
        source.is_file(),
        "{} is missing: run tests/control-plane/build.sh first (it downloads the \
         k8s.io/kubernetes {K8S_VERSION} module into the Go module cache)",
        source.display()
    );
    let scratch = tempfile::tempdir()?;
    let binary = scratch.path().join("pause");
    run(Command::new("gcc")
        .args(["-Os", "-Wall", "-Werror", "-static"])
        .arg(format!("-DVERSION=v{}", tag(PAUSE_IMAGE)))
        .arg("-o")
        .arg(&binary)
        .arg(&source))?;
    finish(&pause_spec(&binary), start)
}

/// The pause image: upstream's layout (`build/pause/Dockerfile`: `/pause`, user 65535).
pub(crate) fn pause_spec(binary: &Path) -> ImageSpec {
    ImageSpec {
        name: PAUSE_IMAGE.into(),
        entrypoint: vec!["/pause".into()],
        user: Some("65535:65535".into()),
        files: vec![FileEntry::host(binary, "/pause", 0o755)],
        ..ImageSpec::default()
    }
}

/// [`COREDNS_IMAGE`]: the minimal `CoreDNS` of `tests/control-plane/coredns`, built once into
/// `<cache>/k8s-<version>/bin/coredns` beside the control plane (skipped when present).
pub fn build_coredns() -> anyhow::Result<BuiltImage> {
    let start = Instant::now();
    let bin = cache_dir()?.join(format!("k8s-{K8S_VERSION}/bin"));
    let binary = bin.join("coredns");
    if !binary.is_file() {
        std::fs::create_dir_all(&bin)?;
        let scratch = tempfile::tempdir_in(&bin)?;
        let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("control-plane/coredns");
        run(Command::new(go()?)
            .current_dir(&module)
            .env("CGO_ENABLED", "0")
            .args(["build", "-trimpath", "-ldflags", "-s -w", "-o"])
            .arg(scratch.path().join("coredns"))
            .arg("."))?;
        std::fs::rename(scratch.path().join("coredns"), &binary)?;
    }
    finish(&coredns_spec(&binary), start)
}

/// The `CoreDNS` image: upstream's layout (`/coredns`, ports 53), but as root: the Kubernetes
/// manifest (`cluster/addons/dns/coredns`) adds `NET_BIND_SERVICE` to bind port 53, and a
/// non-root process only keeps an added capability through file capabilities, which this
/// writer does not set.
pub(crate) fn coredns_spec(binary: &Path) -> ImageSpec {
    ImageSpec {
        name: COREDNS_IMAGE.into(),
        entrypoint: vec!["/coredns".into()],
        user: Some("0:0".into()),
        exposed_ports: vec!["53/tcp".into(), "53/udp".into()],
        files: vec![
            FileEntry::host(binary, "/coredns", 0o755),
            FileEntry::host(CA_BUNDLE, CA_BUNDLE, 0o644),
        ],
        dirs: vec![DirEntry::new("/tmp", 0o1777)],
        ..ImageSpec::default()
    }
}

/// A runtime stage of the repository's Dockerfile, the layout the Rust images copy.
#[derive(Debug)]
pub(crate) struct RuntimeStage {
    /// The Dockerfile's `--target`.
    pub stage: &'static str,
    pub image: &'static str,
    /// The binary, copied to `/usr/local/bin/<binary>`.
    pub binary: &'static str,
    pub cmd: &'static [&'static str],
    pub ports: &'static [&'static str],
    pub description: &'static str,
}

pub(crate) const OPERATOR_STAGE: RuntimeStage = RuntimeStage {
    stage: "operator",
    image: OPERATOR_IMAGE,
    binary: "hookguard-operator",
    cmd: &["run"],
    ports: &["8080/tcp", "9443/tcp"],
    description: "Reconciles WebhookEndpoints and injects the Hookguard sidecar",
};

pub(crate) const SIDECAR_STAGE: RuntimeStage = RuntimeStage {
    stage: "sidecar",
    image: SIDECAR_IMAGE,
    binary: "hookguard-sidecar",
    cmd: &[],
    ports: &["9880/tcp", "9881/tcp"],
    description: "Verifies webhook signatures, rejects replays and duplicates, proxies to the app",
};

/// [`OPERATOR_IMAGE`] from `cargo build` in the profile [`PROFILE_ENV`] names.
pub fn build_operator() -> anyhow::Result<BuiltImage> {
    build_rust_stage(&OPERATOR_STAGE)
}

/// [`SIDECAR_IMAGE`] from `cargo build` in the profile [`PROFILE_ENV`] names.
pub fn build_sidecar() -> anyhow::Result<BuiltImage> {
    build_rust_stage(&SIDECAR_STAGE)
}

fn build_rust_stage(stage: &RuntimeStage) -> anyhow::Result<BuiltImage> {
    let start = Instant::now();
    let profile = match std::env::var(PROFILE_ENV) {
        Err(std::env::VarError::NotPresent) => "debug".to_owned(),
        Ok(profile) if profile == "debug" || profile == "release" => profile,
        Ok(other) => bail!("{PROFILE_ENV}={other:?}: use debug or release"),
        Err(err) => bail!("{PROFILE_ENV}: {err}"),
    };
    let built = cargo_build(
        &profile,
        &[
            "-p",
            "hookguard-operator",
            "-p",
            "hookguard-sidecar",
            "--bin",
            "hookguard-operator",
            "--bin",
            "hookguard-sidecar",
        ],
    )?
    .join(stage.binary);
    let scratch = tempfile::tempdir()?;
    let binary = strip_debug_info(&built, scratch.path())?;
    let mut spec = runtime_spec(stage, &binary);
    spec.files = with_shared_libraries(spec.files)?;
    finish(&spec, start).with_context(|| format!("the Dockerfile's {} stage", stage.stage))
}

/// The Dockerfile's runtime stage: `distroless/cc-debian12:nonroot` plus the binary.
pub(crate) fn runtime_spec(stage: &RuntimeStage, binary: &Path) -> ImageSpec {
    let dest = format!("/usr/local/bin/{}", stage.binary);
    let labels = BTreeMap::from(
        [
            ("org.opencontainers.image.title", stage.binary),
            ("org.opencontainers.image.description", stage.description),
            (
                "org.opencontainers.image.source",
                "https://github.com/hookguard/hookguard",
            ),
            ("org.opencontainers.image.licenses", "Apache-2.0"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let mut spec = distroless_cc(stage.image, FileEntry::host(binary, dest.clone(), 0o755));
    spec.entrypoint = vec![dest];
    spec.cmd = strings(stage.cmd);
    spec.exposed_ports = strings(stage.ports);
    spec.labels = labels;
    spec
}

/// What `gcr.io/distroless/cc-debian12:nonroot` gives a glibc binary, around `binary`: the
/// user `nonroot` (65532) in `/etc/passwd` and `/etc/group` with its home, `/tmp` (1777),
/// the CA bundle, `nsswitch.conf`, distroless's `PATH` and `SSL_CERT_FILE`. The libc closure
/// is added by [`with_shared_libraries`] at build time.
fn distroless_cc(name: &str, binary: FileEntry) -> ImageSpec {
    ImageSpec {
        name: name.into(),
        user: Some(NONROOT.into()),
        env: vec![PATH_ENV.into(), format!("SSL_CERT_FILE={CA_BUNDLE}")],
        working_dir: Some("/home/nonroot".into()),
        files: vec![binary, FileEntry::host(CA_BUNDLE, CA_BUNDLE, 0o644)]
            .into_iter()
            .chain(user_files())
            .collect(),
        dirs: vec![
            DirEntry::new("/tmp", 0o1777),
            DirEntry::new("/home/nonroot", 0o700).owned_by(65532, 65532),
        ],
        ..ImageSpec::default()
    }
}

/// distroless's `/etc/passwd`, `/etc/group` and `/etc/nsswitch.conf`.
fn user_files() -> Vec<FileEntry> {
    vec![
        FileEntry::inline(
            "root:x:0:0:root:/root:/sbin/nologin\n\
             nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
             nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
            "/etc/passwd",
            0o644,
        ),
        FileEntry::inline(
            "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n",
            "/etc/group",
            0o644,
        ),
        FileEntry::inline(
            "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n",
            "/etc/nsswitch.conf",
            0o644,
        ),
    ]
}

/// [`REDIS_IMAGE`]: Debian's `redis-server` and `redis-cli` with their libraries. No
/// entrypoint: the chart runs `args: [redis-server, …]` and probes with `redis-cli ping`.
pub fn build_redis() -> anyhow::Result<BuiltImage> {
    let start = Instant::now();
    let version = output(Command::new("redis-server").arg("--version"))
        .context("redis-server is needed for the Redis image (apt-get install redis-server)")?;
    let want = tag(REDIS_IMAGE);
    ensure!(
        version.contains(&format!("v={want} ")),
        "REDIS_IMAGE is tagged {want} but the installed redis-server says {:?}; \
         change REDIS_IMAGE to the installed version",
        version.trim()
    );
    let mut spec = redis_spec(Path::new("/usr/bin"));
    spec.files = with_shared_libraries(spec.files)?;
    finish(&spec, start)
}

/// The Redis image, with the binaries from `bin` (`/usr/bin` on Debian).
pub(crate) fn redis_spec(bin: &Path) -> ImageSpec {
    let mut spec = distroless_cc(
        REDIS_IMAGE,
        FileEntry::host(bin.join("redis-server"), "/usr/bin/redis-server", 0o755),
    );
    spec.files.push(FileEntry::host(
        bin.join("redis-cli"),
        "/usr/bin/redis-cli",
        0o755,
    ));
    spec.cmd = vec!["redis-server".into()];
    spec.working_dir = None;
    spec.exposed_ports = vec!["6379/tcp".into()];
    spec
}

/// [`TEST_APP_IMAGE`]: `e2e-app`, always a debug build (the suite has the debug
/// `hookguard-tests` library built already; a release one would recompile it).
pub fn build_test_app() -> anyhow::Result<BuiltImage> {
    let start = Instant::now();
    let binary =
        cargo_build("debug", &["-p", "hookguard-tests", "--bin", "e2e-app"])?.join("e2e-app");
    let scratch = tempfile::tempdir()?;
    let mut spec = test_app_spec(&strip_debug_info(&binary, scratch.path())?);
    spec.files = with_shared_libraries(spec.files)?;
    finish(&spec, start)
}

pub(crate) fn test_app_spec(binary: &Path) -> ImageSpec {
    let dest = "/usr/local/bin/e2e-app";
    let mut spec = distroless_cc(TEST_APP_IMAGE, FileEntry::host(binary, dest, 0o755));
    spec.entrypoint = vec![dest.into()];
    spec.exposed_ports = vec!["8080/tcp".into()];
    spec
}

/// A copy of `binary` in `dir` without debug info (symbols stay, so backtraces keep their
/// function names): the debug operator shrinks from 240 to 54 MB, the release one from 82.
fn strip_debug_info(binary: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let name = binary
        .file_name()
        .context("a binary path without a file name")?;
    let stripped = dir.join(name);
    run(Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&stripped)
        .arg(binary))?;
    Ok(stripped)
}

/// Writes `spec` to `<images dir>/<short name>.tar`.
fn finish(spec: &ImageSpec, start: Instant) -> anyhow::Result<BuiltImage> {
    let path = images_dir()?.join(format!("{}.tar", short_name(&spec.name)));
    write_docker_archive(spec, &path).with_context(|| format!("writing image {}", spec.name))?;
    Ok(BuiltImage {
        name: spec.name.clone(),
        path,
        took: start.elapsed(),
    })
}

/// `localhost/hookguard/pause:3.10.1` → `3.10.1`.
pub(crate) fn tag(image: &str) -> &str {
    image.rsplit_once(':').map_or("", |(_, tag)| tag)
}

/// `localhost/hookguard/pause:3.10.1` → `pause`.
pub(crate) fn short_name(image: &str) -> &str {
    let repository = image.rsplit_once(':').map_or(image, |(repo, _)| repo);
    repository.rsplit('/').next().unwrap_or(repository)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// `go` on PATH, else `/usr/local/go/bin/go` (as `tests/control-plane/build.sh` looks).
fn go() -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("go"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/local/go/bin/go")])
        .find(|go| go.is_file())
        .context("Go is not installed (need go on PATH or /usr/local/go/bin/go)")
}

fn go_mod_cache() -> anyhow::Result<PathBuf> {
    let dir = output(Command::new(go()?).args(["env", "GOMODCACHE"]))?;
    Ok(PathBuf::from(dir.trim()))
}

/// Runs `cargo build --locked <args>` in `profile` and returns `<target dir>/<profile>`.
fn cargo_build(profile: &str, args: &[&str]) -> anyhow::Result<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("tests/ has no parent")?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from);
    let mut build = crate::cargo::build();
    build
        .current_dir(workspace)
        .args(args)
        .env("CARGO_TARGET_DIR", &target);
    if profile == "release" {
        build.arg("--release");
    }
    run(&mut build)?;
    Ok(target.join(profile))
}

/// Runs a command with inherited output (builds report progress) and fails on non-zero.
fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("running {}", describe(command)))?;
    if !status.success() {
        bail!("{} failed: {status}", describe(command));
    }
    Ok(())
}

fn output(command: &mut Command) -> anyhow::Result<String> {
    let out = command
        .output()
        .with_context(|| format!("running {}", describe(command)))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            describe(command),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}
