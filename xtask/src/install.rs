//! `cargo xtask install`: the user's install path. tracer embeds BPF programs that
//! its build script compiles with the nightly toolchain and `bpf-linker`, so it is
//! installed from this checkout, after setup, with `cargo install --path`; and,
//! on request, given the capabilities tracing needs so that it runs without sudo.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};

use crate::{
    build_cmd::cargo_at_root,
    process::{cargo_bin_dir, require_root, run},
    setup::{Scope, setup},
};

/// The capabilities `--setcap` grants: loading BPF programs, attaching them to
/// perf events (uprobes), and reading another user's process.
pub const CAPABILITIES: &str = "cap_bpf,cap_perfmon,cap_sys_ptrace+ep";

/// Installs `tracer` into `dest`/bin (cargo's bin directory when `None`) and, with
/// `setcap`, grants it [`CAPABILITIES`]. Prints where it went and how to run it.
pub fn install(root: &Path, dest: Option<&Path>, setcap: bool) -> Result<()> {
    setup(Scope::Build)?;
    // `--path` builds in the workspace's target directory, so a release build that
    // `cargo xtask build` or `demo` already made is reused, not redone.
    let mut cmd = cargo_at_root(root)?;
    cmd.args(["install", "--path", "tracer-cli", "--locked", "--force"]);
    if let Some(dest) = dest {
        cmd.arg("--root").arg(dest);
    }
    run(&mut cmd)?;
    let binary = installed_binary(dest)?;
    if setcap {
        require_root("granting capabilities with setcap")?;
        run(Command::new("setcap").arg(CAPABILITIES).arg(&binary))
            .context("setcap is in Debian's libcap2-bin package")?;
        eprintln!(
            "ok: installed {} with {CAPABILITIES}: any user can now run `tracer run -- CMD` \
             and `tracer trace -p PID` without sudo",
            binary.display()
        );
    } else {
        eprintln!(
            "ok: installed {}; run it as root (sudo {0} …), or grant it capabilities: \
             sudo setcap {CAPABILITIES} {0}",
            binary.display()
        );
    }
    Ok(())
}

/// Where `cargo install` put the binary.
fn installed_binary(dest: Option<&Path>) -> Result<PathBuf> {
    let bin = match dest {
        Some(dest) => dest.join("bin"),
        None => cargo_bin_dir().context("neither CARGO_HOME nor HOME is set")?,
    };
    Ok(bin.join("tracer"))
}
