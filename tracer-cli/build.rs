//! Builds the BPF programs of `tracer-ebpf` (with the pinned nightly toolchain
//! `tracer_ebpf::TOOLCHAIN` and bpf-linker, see `cargo xtask setup`) and leaves the object in `OUT_DIR`, where
//! `src/probes` embeds it.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let metadata_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("tracer-cli has no parent directory"))?
        .join("tracer-ebpf");
    let root_dir = metadata_root
        .to_str()
        .context("the tracer-ebpf path is not UTF-8")?;
    aya_build::build_ebpf(
        [Package {
            name: "tracer-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::Custom(tracer_ebpf::TOOLCHAIN),
    )
    .context("building the BPF programs failed: run `cargo xtask setup` to install bpf-linker and the pinned nightly toolchain with rust-src")
}
