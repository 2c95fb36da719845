//! `cargo xtask fuzz`: runs the recording reader's fuzz target (fuzz/, its own
//! workspace) with cargo-fuzz on the pinned nightly toolchain (the one setup installs), installing cargo-fuzz when
//! it is missing.

use std::{path::Path, process::Command};

use anyhow::{Result, bail};

use crate::{
    process::{cargo, probe, run},
    setup::BPF_TOOLCHAIN,
};

/// The fuzz target that reads recordings.
const TARGET: &str = "reader";

/// `cargo install cargo-fuzz --locked`, into `root` (cargo's default when `None`);
/// `setup --rehearse` runs it into a scratch root, so CI proves it works.
pub fn cargo_fuzz_install(root: Option<&Path>) -> Command {
    let mut cmd = cargo();
    cmd.args(["install", "cargo-fuzz", "--locked"]);
    if let Some(root) = root {
        cmd.arg("--root").arg(root);
    }
    cmd
}

/// Fuzzes the reader for `seconds`; fails if the fuzzer finds a crash (the input
/// is left in fuzz/artifacts/reader/).
pub fn fuzz(root: &Path, seconds: u64) -> Result<()> {
    let installed =
        probe(Command::new("rustup").args(["run", BPF_TOOLCHAIN, "cargo", "fuzz", "--version"]))?
            .is_some_and(|output| output.status.success());
    if installed {
        eprintln!("ok: cargo-fuzz present");
    } else {
        eprintln!("installing: cargo-fuzz (cargo install)");
        run(&mut cargo_fuzz_install(None))?;
    }
    let fuzz_dir = root.join("fuzz");
    if !fuzz_dir.join("Cargo.toml").is_file() {
        bail!("{} has no fuzz crate", fuzz_dir.display());
    }
    run(Command::new("rustup")
        .current_dir(root)
        .args(["run", BPF_TOOLCHAIN, "cargo", "fuzz", "run", TARGET, "--"])
        .arg(format!("-max_total_time={seconds}")))
}
