use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::catalog::{
    self, OPERATOR_STAGE, RuntimeStage, SIDECAR_STAGE, runtime_spec, short_name, tag,
};
use super::*;

/// Every entry of a tar: path → (header, contents).
fn entries(tar_bytes: &[u8]) -> BTreeMap<String, (tar::Header, Vec<u8>)> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let header = entry.header().clone();
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).unwrap();
        assert!(out.insert(path, (header, contents)).is_none());
    }
    out
}

fn sample_spec(dir: &Path) -> ImageSpec {
    let real = dir.join("real-binary");
    std::fs::write(&real, b"#!not really\n").unwrap();
    let link = dir.join("link-to-binary");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    ImageSpec {
        name: "localhost/hookguard/sample:1".into(),
        entrypoint: vec!["/usr/local/bin/sample".into()],
        cmd: vec!["run".into()],
        user: Some("65532:65532".into()),
        env: vec!["PATH=/usr/bin".into()],
        exposed_ports: vec!["8080/tcp".into()],
        labels: BTreeMap::from([("a".into(), "b".into())]),
        files: vec![
            FileEntry::host(&link, "/usr/local/bin/sample", 0o755),
            FileEntry::inline("nonroot:x:65532:\n", "/etc/group", 0o644),
        ],
        dirs: vec![
            DirEntry::new("/tmp", 0o1777),
            DirEntry::new("/home/nonroot", 0o700).owned_by(65532, 65532),
        ],
        ..ImageSpec::default()
    }
}

#[test]
fn the_archive_is_a_docker_archive_whose_digests_match() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sample.tar");
    write_docker_archive(&sample_spec(dir.path()), &out).unwrap();
    let outer = entries(&std::fs::read(&out).unwrap());

    let manifest: Value = serde_json::from_slice(&outer["manifest.json"].1).unwrap();
    let manifest = &manifest[0];
    assert_eq!(manifest["RepoTags"][0], "localhost/hookguard/sample:1");
    let config_name = manifest["Config"].as_str().unwrap();
    let layer_name = manifest["Layers"][0].as_str().unwrap();
    assert_eq!(outer.len(), 3, "{:?}", outer.keys());

    let config_bytes = &outer[config_name].1;
    assert_eq!(
        format!("{}.json", hex(&Sha256::digest(config_bytes))),
        config_name
    );
    let layer_bytes = &outer[layer_name].1;
    let layer_digest = hex(&Sha256::digest(layer_bytes));
    assert_eq!(layer_name, format!("{layer_digest}/layer.tar"));
    let config: Value = serde_json::from_slice(config_bytes).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!("sha256:{layer_digest}")
    );
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/sample"])
    );
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["run"]));
    assert_eq!(
        config["config"]["ExposedPorts"]["8080/tcp"],
        serde_json::json!({})
    );
    assert_eq!(config["config"]["Labels"]["a"], "b");
}

#[test]
fn the_layer_holds_real_files_with_parents_owners_and_no_times() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sample.tar");
    write_docker_archive(&sample_spec(dir.path()), &out).unwrap();
    let outer = entries(&std::fs::read(&out).unwrap());
    let layer_name = outer.keys().find(|k| k.ends_with("/layer.tar")).unwrap();
    let layer = entries(&outer[layer_name].1);

    let paths: Vec<&str> = layer.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "etc/",
            "etc/group",
            "home/",
            "home/nonroot/",
            "tmp/",
            "usr/",
            "usr/local/",
            "usr/local/bin/",
            "usr/local/bin/sample"
        ]
    );
    let (binary, contents) = &layer["usr/local/bin/sample"];
    assert_eq!(
        binary.entry_type(),
        tar::EntryType::Regular,
        "symlink followed"
    );
    assert_eq!(contents, b"#!not really\n");
    assert_eq!(binary.mode().unwrap(), 0o755);
    assert_eq!(layer["tmp/"].0.mode().unwrap(), 0o1777);
    assert_eq!(layer["tmp/"].0.entry_type(), tar::EntryType::Directory);
    assert_eq!(layer["home/nonroot/"].0.uid().unwrap(), 65532);
    assert_eq!(layer["home/nonroot/"].0.gid().unwrap(), 65532);
    for (path, (header, _)) in &layer {
        assert_eq!(header.mtime().unwrap(), 0, "{path}");
        if path != "home/nonroot/" {
            assert_eq!(
                (header.uid().unwrap(), header.gid().unwrap()),
                (0, 0),
                "{path}"
            );
        }
    }
}

#[test]
fn two_writes_are_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let spec = sample_spec(dir.path());
    let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    write_docker_archive(&spec, &a).unwrap();
    write_docker_archive(&spec, &b).unwrap();
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}

#[test]
fn bad_paths_and_conflicts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.tar");
    for dest in ["relative/path", "/a/../b", "/a//b", "/"] {
        let spec = ImageSpec {
            name: "x:1".into(),
            files: vec![FileEntry::inline("", dest, 0o644)],
            ..ImageSpec::default()
        };
        assert!(write_docker_archive(&spec, &out).is_err(), "{dest}");
    }
    let spec = ImageSpec {
        name: "x:1".into(),
        files: vec![FileEntry::inline("", "/tmp", 0o644)],
        dirs: vec![DirEntry::new("/tmp", 0o1777)],
        ..ImageSpec::default()
    };
    assert!(write_docker_archive(&spec, &out).is_err());
    let spec = ImageSpec {
        name: "untagged".into(),
        ..ImageSpec::default()
    };
    assert!(write_docker_archive(&spec, &out).is_err());
    assert!(!out.exists());
}

#[test]
fn ldd_output_is_parsed() {
    let output = "\tlinux-vdso.so.1 (0x00007ffd3b9f2000)\n\
                  \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0e1c000000)\n\
                  \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e1be00000)\n\
                  \t/lib64/ld-linux-x86-64.so.2 (0x00007f0e1c4a0000)\n";
    assert_eq!(
        parse_ldd(output).unwrap(),
        [
            "/lib/x86_64-linux-gnu/libgcc_s.so.1",
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/ld-linux-x86-64.so.2"
        ]
    );
    assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
}

#[test]
fn a_dynamic_binary_gets_its_loader_and_libc() {
    // This test executable is linked against glibc like the operator and the sidecar.
    let exe = std::env::current_exe().unwrap();
    let files = with_shared_libraries(vec![FileEntry::host(&exe, "/bin/x", 0o755)]).unwrap();
    let dests: Vec<&str> = files.iter().map(|f| f.dest.as_str()).collect();
    assert_eq!(dests[0], "/bin/x");
    assert!(dests.contains(&"/lib64/ld-linux-x86-64.so.2"), "{dests:?}");
    assert!(dests.iter().any(|d| d.ends_with("/libc.so.6")), "{dests:?}");
    // Non-executables are not asked about.
    let plain = with_shared_libraries(vec![FileEntry::host(&exe, "/x", 0o644)]).unwrap();
    assert_eq!(plain.len(), 1);
}

/// The operator and sidecar images are laid out as the Dockerfile's runtime stages say, so
/// the images the cluster tests run cannot drift from the ones users build.
#[test]
fn the_rust_images_match_the_dockerfile_stages() {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile"))
            .unwrap();
    let stages = dockerfile::stages(&dockerfile).unwrap();
    for stage in [&OPERATOR_STAGE, &SIDECAR_STAGE] {
        check_stage(stage, &stages[stage.stage]);
    }
}

fn check_stage(stage: &RuntimeStage, dockerfile: &dockerfile::Stage) {
    let spec = runtime_spec(stage, Path::new("/nonexistent"));
    let name = stage.stage;
    assert!(
        dockerfile.from.contains("distroless/cc"),
        "{name}: the Dockerfile's base is {}, which runtime_spec no longer imitates",
        dockerfile.from
    );
    let binary_dests: Vec<&str> = spec
        .files
        .iter()
        .filter(|f| f.source == FileSource::Host("/nonexistent".into()))
        .map(|f| f.dest.as_str())
        .collect();
    assert_eq!(binary_dests, dockerfile.copies, "{name}: COPY destination");
    assert_eq!(spec.user, dockerfile.user, "{name}: USER");
    assert_eq!(spec.entrypoint, dockerfile.entrypoint, "{name}: ENTRYPOINT");
    assert_eq!(spec.cmd, dockerfile.cmd, "{name}: CMD");
    assert_eq!(
        spec.exposed_ports, dockerfile.exposed_ports,
        "{name}: EXPOSE"
    );
    assert_eq!(spec.labels, dockerfile.labels, "{name}: LABEL");
}

#[test]
fn the_dockerfile_parser_reads_what_the_stages_use() {
    let stages = dockerfile::stages(
        "FROM rust AS builder\nRUN x \\\n  && y\n\
         FROM base:1 AS app\n# comment\nLABEL a=\"one two\" \\\n      b=c\n\
         COPY --from=builder /out/x /usr/bin/x\nUSER 1:1\nEXPOSE 80 53/udp\n\
         CMD [\"old\"]\nENTRYPOINT [\"/usr/bin/x\"]\nCMD [\"run\", \"--v\"]\n",
    )
    .unwrap();
    let app = &stages["app"];
    assert_eq!(app.from, "base:1");
    assert_eq!(app.copies, ["/usr/bin/x"]);
    assert_eq!(app.user.as_deref(), Some("1:1"));
    assert_eq!(app.entrypoint, ["/usr/bin/x"]);
    assert_eq!(app.cmd, ["run", "--v"]);
    assert_eq!(app.exposed_ports, ["80/tcp", "53/udp"]);
    assert_eq!(app.labels["a"], "one two");
    assert_eq!(app.labels["b"], "c");
    assert!(dockerfile::stages("FROM a AS b\nCMD run\n").is_err());
}

#[test]
fn the_coredns_tag_is_the_version_its_module_requires() {
    let go_mod = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("control-plane/coredns/go.mod"),
    )
    .unwrap();
    let required = format!(
        "require github.com/coredns/coredns v{}\n",
        tag(COREDNS_IMAGE)
    );
    assert!(go_mod.contains(&required), "go.mod lacks {required:?}");
}

#[test]
fn every_image_is_local_and_has_its_own_archive_name() {
    let images = [
        PAUSE_IMAGE,
        COREDNS_IMAGE,
        OPERATOR_IMAGE,
        SIDECAR_IMAGE,
        REDIS_IMAGE,
        TEST_APP_IMAGE,
    ];
    let names: std::collections::BTreeSet<&str> = images.iter().map(|i| short_name(i)).collect();
    assert_eq!(names.len(), images.len());
    for image in images {
        assert!(image.starts_with("localhost/hookguard/"), "{image}");
        assert!(!tag(image).is_empty(), "{image}");
    }
    assert_eq!(short_name(PAUSE_IMAGE), "pause");
    assert_eq!(tag(PAUSE_IMAGE), "3.10.1");
}

#[test]
fn the_redis_image_has_no_entrypoint_and_both_binaries() {
    let spec = catalog::redis_spec(Path::new("/usr/bin"));
    assert!(spec.entrypoint.is_empty());
    assert_eq!(spec.user.as_deref(), Some("65532:65532"));
    for binary in ["/usr/bin/redis-server", "/usr/bin/redis-cli"] {
        assert!(spec.files.iter().any(|f| f.dest == binary), "{binary}");
    }
    assert!(
        spec.env
            .iter()
            .any(|e| e.starts_with("PATH=") && e.contains("/usr/bin"))
    );
}
