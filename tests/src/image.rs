//! Container images for the one-node test cluster, built without a registry or a container
//! engine: a deterministic docker-archive writer ([`write_docker_archive`]: `manifest.json`, a
//! config JSON and one layer tar) that `ctr -n k8s.io images import` loads, and the six images
//! the cluster runs ([`build_all`]; names in [`PAUSE_IMAGE`] and its siblings).
//!
//! Deterministic means the same spec and the same input files give the same bytes: every
//! entry has mtime 0 and uid/gid 0 (unless a directory says otherwise), entries are sorted by
//! path, and host symlinks are dereferenced (the image holds real files). Importing the same
//! tar twice is then a no-op for containerd.

mod catalog;
#[cfg(test)]
mod dockerfile;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Seek as _, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub use catalog::{
    BuiltImage, COREDNS_IMAGE, OPERATOR_IMAGE, PAUSE_IMAGE, PROFILE_ENV, REDIS_IMAGE,
    SIDECAR_IMAGE, TEST_APP_IMAGE, build_all, build_coredns, build_operator, build_pause,
    build_redis, build_sidecar, build_test_app, cache_dir, images_dir,
};

/// The one timestamp every image carries (config `created`, history, tar mtimes).
const EPOCH: &str = "1970-01-01T00:00:00Z";

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// A file on the host, read through symlinks.
    Host(PathBuf),
    /// Bytes given here (`/etc/passwd` and the like).
    Inline(Vec<u8>),
}

/// One regular file in the image, owned by root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Where the bytes come from.
    pub source: FileSource,
    /// Absolute path in the image.
    pub dest: String,
    /// Permission bits.
    pub mode: u32,
}

impl FileEntry {
    /// A host file copied to `dest`.
    pub fn host(src: impl Into<PathBuf>, dest: impl Into<String>, mode: u32) -> FileEntry {
        FileEntry {
            source: FileSource::Host(src.into()),
            dest: dest.into(),
            mode,
        }
    }

    /// A file with the given contents.
    pub fn inline(contents: impl Into<Vec<u8>>, dest: impl Into<String>, mode: u32) -> FileEntry {
        FileEntry {
            source: FileSource::Inline(contents.into()),
            dest: dest.into(),
            mode,
        }
    }
}

/// A directory to create (parents of files are created `0755 root` without asking).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Absolute path in the image.
    pub path: String,
    /// Permission bits, e.g. `0o1777` for `/tmp`.
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
}

impl DirEntry {
    /// A directory owned by root.
    pub fn new(path: impl Into<String>, mode: u32) -> DirEntry {
        DirEntry {
            path: path.into(),
            mode,
            uid: 0,
            gid: 0,
        }
    }

    /// The same directory, owned by `uid:gid`.
    #[must_use]
    pub fn owned_by(self, uid: u64, gid: u64) -> DirEntry {
        DirEntry { uid, gid, ..self }
    }
}

/// What goes into an image: its name, its config and its one layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSpec {
    /// Full reference, e.g. `localhost/hookguard/pause:3.10.1`.
    pub name: String,
    /// `Entrypoint`; empty for none.
    pub entrypoint: Vec<String>,
    /// `Cmd`; empty for none.
    pub cmd: Vec<String>,
    /// `User`, numeric (`65532:65532`) so the kubelet can check `runAsNonRoot`.
    pub user: Option<String>,
    /// `Env`, `NAME=value`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `ExposedPorts`, e.g. `8080/tcp`.
    pub exposed_ports: Vec<String>,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// Regular files.
    pub files: Vec<FileEntry>,
    /// Directories beyond the parents of the files.
    pub dirs: Vec<DirEntry>,
}

/// One layer entry, keyed by its path without the leading `/`.
enum Node<'a> {
    Dir { mode: u32, uid: u64, gid: u64 },
    File(&'a FileEntry),
}

/// Writes `spec` as a docker archive (the `docker save` format) to `out`, atomically.
pub fn write_docker_archive(spec: &ImageSpec, out: &Path) -> anyhow::Result<()> {
    ensure!(
        spec.name.contains(':'),
        "image name {:?} has no tag",
        spec.name
    );
    let tree = layer_tree(spec)?;
    let dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    let mut layer = HashingWriter::new(tempfile::tempfile_in(dir)?);
    write_layer(&tree, &mut layer).context("writing the layer")?;
    let (mut layer_file, layer_len, layer_digest) = layer.finish();
    layer_file.seek(SeekFrom::Start(0))?;

    let config = serde_json::to_vec(&config_json(spec, &layer_digest))?;
    let config_digest = hex(&Sha256::digest(&config));
    let config_name = format!("{config_digest}.json");
    let layer_name = format!("{layer_digest}/layer.tar");
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": [spec.name],
        "Layers": [layer_name],
    }]))?;

    let archive = tempfile::NamedTempFile::new_in(dir)?;
    let mut builder = tar::Builder::new(io::BufWriter::new(archive));
    append(&mut builder, &layer_name, 0o644, layer_len, &mut layer_file)?;
    append(
        &mut builder,
        &config_name,
        0o644,
        len(&config),
        &mut config.as_slice(),
    )?;
    append(
        &mut builder,
        "manifest.json",
        0o644,
        len(&manifest),
        &mut manifest.as_slice(),
    )?;
    let archive = builder
        .into_inner()?
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    // Readable by all, like any build output (a temporary file starts at 0600).
    archive
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    archive.as_file().sync_all()?;
    archive
        .persist(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// `spec`'s config JSON (the image config of the docker/OCI image spec).
fn config_json(spec: &ImageSpec, layer_digest: &str) -> Value {
    let mut config = serde_json::Map::new();
    if let Some(user) = &spec.user {
        config.insert("User".into(), json!(user));
    }
    if !spec.env.is_empty() {
        config.insert("Env".into(), json!(spec.env));
    }
    if !spec.entrypoint.is_empty() {
        config.insert("Entrypoint".into(), json!(spec.entrypoint));
    }
    if !spec.cmd.is_empty() {
        config.insert("Cmd".into(), json!(spec.cmd));
    }
    if let Some(dir) = &spec.working_dir {
        config.insert("WorkingDir".into(), json!(dir));
    }
    if !spec.exposed_ports.is_empty() {
        let ports: serde_json::Map<String, Value> = spec
            .exposed_ports
            .iter()
            .map(|port| (port.clone(), json!({})))
            .collect();
        config.insert("ExposedPorts".into(), Value::Object(ports));
    }
    if !spec.labels.is_empty() {
        config.insert("Labels".into(), json!(spec.labels));
    }
    json!({
        "architecture": "amd64",
        "os": "linux",
        "created": EPOCH,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
        "history": [{"created": EPOCH, "created_by": "hookguard-tests image writer"}],
    })
}

/// Every entry of the layer, parents included, sorted so a parent precedes its children.
fn layer_tree(spec: &ImageSpec) -> anyhow::Result<BTreeMap<String, Node<'_>>> {
    let mut tree = BTreeMap::new();
    for dir in &spec.dirs {
        let path = relative(&dir.path)?;
        add_parents(&mut tree, &path);
        let node = Node::Dir {
            mode: dir.mode,
            uid: dir.uid,
            gid: dir.gid,
        };
        if let Some(Node::File(_)) = tree.insert(path, node) {
            bail!("{} is both a file and a directory", dir.path);
        }
    }
    for file in &spec.files {
        let path = relative(&file.dest)?;
        add_parents(&mut tree, &path);
        match tree.get(&path) {
            Some(Node::Dir { .. }) => bail!("{} is both a file and a directory", file.dest),
            Some(Node::File(other)) if *other != file => {
                bail!("{} is given twice with different contents", file.dest);
            }
            _ => {}
        }
        tree.insert(path, Node::File(file));
    }
    Ok(tree)
}

fn add_parents(tree: &mut BTreeMap<String, Node<'_>>, path: &str) {
    let mut end = 0;
    while let Some(slash) = path[end..].find('/') {
        end += slash;
        tree.entry(path[..end].to_owned()).or_insert(Node::Dir {
            mode: 0o755,
            uid: 0,
            gid: 0,
        });
        end += 1;
    }
}

/// `/usr/bin/x` → `usr/bin/x`; refuses relative paths, `..`, `.` and empty components.
fn relative(path: &str) -> anyhow::Result<String> {
    let rest = path
        .strip_prefix('/')
        .with_context(|| format!("image path {path:?} is not absolute"))?;
    ensure!(
        !rest.is_empty()
            && rest
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."),
        "image path {path:?} is not a plain absolute path"
    );
    Ok(rest.to_owned())
}

fn write_layer(tree: &BTreeMap<String, Node<'_>>, out: impl Write) -> anyhow::Result<()> {
    let mut builder = tar::Builder::new(out);
    for (path, node) in tree {
        match node {
            Node::Dir { mode, uid, gid } => {
                let mut header = header(tar::EntryType::Directory, *mode, 0);
                header.set_uid(*uid);
                header.set_gid(*gid);
                builder.append_data(&mut header, format!("{path}/"), io::empty())?;
            }
            Node::File(file) => match &file.source {
                FileSource::Host(src) => {
                    let mut reader =
                        File::open(src).with_context(|| format!("reading {}", src.display()))?;
                    let size = reader.metadata()?.len();
                    let mut header = header(tar::EntryType::Regular, file.mode, size);
                    builder.append_data(&mut header, path, &mut reader)?;
                }
                FileSource::Inline(bytes) => {
                    let mut header = header(tar::EntryType::Regular, file.mode, len(bytes));
                    builder.append_data(&mut header, path, bytes.as_slice())?;
                }
            },
        }
    }
    builder.into_inner()?.flush()?;
    Ok(())
}

fn append(
    builder: &mut tar::Builder<impl Write>,
    path: &str,
    mode: u32,
    size: u64,
    data: &mut impl io::Read,
) -> anyhow::Result<()> {
    let mut header = header(tar::EntryType::Regular, mode, size);
    builder.append_data(&mut header, path, data)?;
    Ok(())
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn len(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// A writer that counts and hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The writer, the byte count and the lowercase hex sha256.
    fn finish(self) -> (W, u64, String) {
        (self.inner, self.len, hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `files` plus the shared libraries their executables load (`ldd`'s closure, the dynamic
/// loader `/lib64/ld-linux-x86-64.so.2` included), each at the path `ldd` names and copied
/// as a real file. Static executables (Go, `gcc -static`) add nothing.
pub fn with_shared_libraries(files: Vec<FileEntry>) -> anyhow::Result<Vec<FileEntry>> {
    let mut libraries = BTreeMap::new();
    for file in &files {
        let FileSource::Host(src) = &file.source else {
            continue;
        };
        if file.mode & 0o111 == 0 {
            continue;
        }
        for library in shared_libraries(src)? {
            libraries.entry(library.clone()).or_insert(library);
        }
    }
    let mut all = files;
    for library in libraries.into_values() {
        if all.iter().any(|f| f.dest == library) {
            continue;
        }
        all.push(FileEntry::host(&library, library.clone(), 0o755));
    }
    Ok(all)
}

/// The absolute paths `ldd` resolves for `binary`; empty for a static executable.
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<String>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd (libc-bin)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stdout.contains("not a dynamic executable")
        || stderr.contains("not a dynamic executable")
        || stdout.contains("statically linked")
    {
        return Ok(Vec::new());
    }
    ensure!(
        output.status.success(),
        "ldd {} failed: {stderr}",
        binary.display()
    );
    parse_ldd(&stdout).with_context(|| format!("ldd {}", binary.display()))
}

/// Parses `ldd` output: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` gives the path
/// after `=>`, `/lib64/ld-linux-x86-64.so.2 (0x…)` the loader, `linux-vdso.so.1 (0x…)` nothing.
fn parse_ldd(output: &str) -> anyhow::Result<Vec<String>> {
    let mut paths = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = match line.split_once("=>") {
            Some((name, target)) => {
                let target = target.trim();
                ensure!(
                    !target.starts_with("not found"),
                    "{} is not found",
                    name.trim()
                );
                target.split(" (").next().unwrap_or("").trim()
            }
            None => line.split(" (").next().unwrap_or("").trim(),
        };
        if path.starts_with('/') {
            paths.push(path.to_owned());
        }
    }
    Ok(paths)
}
