//! `cargo xtask test`: setup, build, then the workspace's tests, as CI runs them.

use std::path::Path;

use anyhow::Result;

use crate::{
    build_cmd::{build, cargo_at_root},
    process::{require_root, run},
    setup::setup,
};

/// Runs setup, the release build, then `cargo test` with `args` appended; fails if
/// any step fails. The integration tests load BPF programs, so this needs root.
///
/// `cargo test` without `--workspace` tests the default members, which are every
/// member but `tracer-ebpf`: that crate is `no_std` BPF code built only for
/// `bpfel-unknown-none` by `tracer-cli`'s build script, and it does not build (or
/// test) for the host.
pub fn test(root: &Path, args: &[String]) -> Result<()> {
    require_root("`cargo xtask test` (the integration tests load BPF programs)")?;
    setup()?;
    build(root, false)?;
    // `cargo test` builds tracer-cli again (dev profile), so it needs bpf-linker too.
    let mut cmd = cargo_at_root(root)?;
    cmd.arg("test").args(args);
    run(&mut cmd)
}
