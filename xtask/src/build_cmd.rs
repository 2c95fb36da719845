//! `cargo xtask build`: the `tracer` binary and the fixture apps the tests trace.
//!
//! The BPF object needs no step here: `tracer-cli`'s build script builds it with
//! aya-build (nightly + `bpf-linker`) and embeds it. The fixtures are their own cargo
//! workspace, built from inside `tests/fixtures` so that its `.cargo/config.toml`
//! (`--cfg tokio_unstable`) applies; so is the Tokio version matrix built from
//! their sources (see [`crate::tokio_matrix`]). The Go fixtures are built with every
//! Go version the tests use (see [`crate::go_fixtures`]).

use std::{env, path::Path, process::Command};

use anyhow::Result;

use crate::{
    go_fixtures,
    process::{cargo, cargo_bin_dir, path_with, run},
    tokio_matrix,
};

/// The fixture workspace, relative to the workspace root.
pub const FIXTURES_DIR: &str = "tests/fixtures";

/// The bins the Tokio matrix and the build-setting tests run.
const RUNTIME_BINS: &[&str] = &["multi_thread", "current_thread"];

/// The bin the await-chain tests run.
const AWAIT_BINS: &[&str] = &["await_points"];

/// Each fixture build, as its cargo profile and the bins it builds (every bin
/// when none are named): debug, release, and release without symbols
/// (`stripped`), since the tests trace all three; the Tokio matrix's fat- and
/// thin-LTO rows for the fixtures' own Tokio; builds that inline Tokio
/// differently (one codegen unit, `opt-level = 1` and `"z"`, `panic =
/// "abort"`); and the
/// await-chain builds (full type DWARF for the fixture crate, also in a `.dwp`
/// beside the binary and under fat LTO).
pub const FIXTURE_BUILDS: [(&str, &[&str]); 13] = [
    ("dev", &[]),
    ("release", &[]),
    ("stripped", &[]),
    ("release-no-debuginfo", RUNTIME_BINS),
    ("release-lto", RUNTIME_BINS),
    ("release-thin-lto", RUNTIME_BINS),
    ("release-cgu1", RUNTIME_BINS),
    ("release-o1", RUNTIME_BINS),
    ("release-oz", RUNTIME_BINS),
    ("release-panic-abort", RUNTIME_BINS),
    ("release-await", AWAIT_BINS),
    ("release-await-dwp", AWAIT_BINS),
    ("release-await-lto", AWAIT_BINS),
];

/// Environment variables that would replace the fixtures' `--cfg tokio_unstable`
/// (or move the outputs away from where the tests look for them).
const OVERRIDING_VARS: [&str; 4] = [
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
];

/// Builds `tracer` (release, or debug when `debug`), the embedder crate's example
/// and every fixture profile.
pub fn build(root: &Path, debug: bool) -> Result<()> {
    build_cli(root, debug)?;
    build_examples(root)?;
    build_fixtures(root)?;
    go_fixtures::build(root)
}

/// What `cargo xtask demo` shows and nothing more: `tracer` (release) and the demo
/// server (release), not the test fixtures' other apps, profiles or Tokio matrix.
pub fn build_demo(root: &Path) -> Result<()> {
    build_cli(root, false)?;
    run(&mut fixtures_cargo(
        root,
        &["build", "--release", "--bin", DEMO_SERVER],
    ))
}

/// The demo server fixture, which `cargo xtask demo` traces.
pub const DEMO_SERVER: &str = "demo_server";

/// The embedder crate's example that the tests trace
/// (`target/release/examples/udp_echo`).
pub const RESOURCE_EXAMPLE: &str = "udp_echo";

/// A `cargo` command at the workspace root for anything that builds `tracer-cli`:
/// cargo's bin directory goes on PATH so aya-build finds a `bpf-linker` that `setup`
/// just installed there, and `CARGO_TARGET_DIR` is dropped because the tests and the
/// demo look for `target/release/tracer` under the root.
pub fn cargo_at_root(root: &Path) -> Result<Command> {
    let mut cmd = cargo();
    cmd.current_dir(root).env_remove("CARGO_TARGET_DIR");
    if let Some(bin) = cargo_bin_dir() {
        cmd.env("PATH", path_with(&[bin])?);
    }
    Ok(cmd)
}

/// `cargo build -p tracer-cli` at the workspace root.
fn build_cli(root: &Path, debug: bool) -> Result<()> {
    let mut cmd = cargo_at_root(root)?;
    cmd.args(["build", "-p", "tracer-cli"]);
    if !debug {
        cmd.arg("--release");
    }
    run(&mut cmd)
}

/// The embedder crate's examples (release), which the tests trace as users run them.
fn build_examples(root: &Path) -> Result<()> {
    let mut cmd = cargo_at_root(root)?;
    cmd.args([
        "build",
        "--release",
        "-p",
        "tracer-resource",
        "--example",
        RESOURCE_EXAMPLE,
    ]);
    run(&mut cmd)
}

/// A `cargo ARGS` command inside [`FIXTURES_DIR`], without the environment that
/// would override its `--cfg tokio_unstable` or move its outputs.
fn fixtures_cargo(root: &Path, args: &[&str]) -> Command {
    let mut cmd = cargo();
    cmd.current_dir(root.join(FIXTURES_DIR)).args(args);
    for var in OVERRIDING_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// The fixture apps in every profile the tests use, from inside [`FIXTURES_DIR`],
/// then the Tokio version matrix.
fn build_fixtures(root: &Path) -> Result<()> {
    for var in OVERRIDING_VARS {
        if env::var_os(var).is_some() {
            eprintln!(
                "note: ignoring {var} for the fixture builds (they need {FIXTURES_DIR}/.cargo/config.toml)"
            );
        }
    }
    for (profile, bins) in FIXTURE_BUILDS {
        let mut args = vec!["build", "--profile", profile];
        for bin in bins {
            args.extend(["--bin", bin]);
        }
        run(&mut fixtures_cargo(root, &args))?;
    }
    tokio_matrix::build(root, &OVERRIDING_VARS)
}
