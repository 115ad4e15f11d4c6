//! `images`: builds the one-node test cluster's images as docker-archive tars into
//! `${HOOKGUARD_CACHE:-$HOME/.cache/hookguard}/images/` (`make images`), and prints one
//! `<name> <path>` line per image. With arguments, only those images (`images pause coredns`).
//! Importing them (`ctr -n k8s.io images import`) is the node harness's job.

use hookguard_tests::image::{self, BuiltImage};

type Build = fn() -> anyhow::Result<BuiltImage>;

fn main() -> anyhow::Result<()> {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let builders: [(&str, Build); 6] = [
        ("pause", image::build_pause),
        ("coredns", image::build_coredns),
        ("hookguard-operator", image::build_operator),
        ("hookguard-sidecar", image::build_sidecar),
        ("redis", image::build_redis),
        ("test-app", image::build_test_app),
    ];
    if let Some(unknown) = wanted
        .iter()
        .find(|w| !builders.iter().any(|(name, _)| name == w))
    {
        let names: Vec<&str> = builders.iter().map(|(name, _)| *name).collect();
        anyhow::bail!("no image {unknown:?}; the images are {names:?}");
    }
    for (name, build) in builders {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == name) {
            continue;
        }
        let built = build()?;
        let size = std::fs::metadata(&built.path)?.len();
        eprintln!(
            "images: {name}: {}.{} MB in {:.1}s",
            size / 1_000_000,
            size / 100_000 % 10,
            built.took.as_secs_f64()
        );
        println!("{} {}", built.name, built.path.display());
    }
    Ok(())
}
