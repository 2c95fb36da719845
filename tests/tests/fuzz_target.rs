//! The recording-reader fuzz target (`fuzz/`, its own workspace, run by `cargo xtask
//! fuzz`) compiles tracer's own source files by path. This keeps it building when
//! those modules change: a fuzz target that no longer compiles fuzzes nothing.
//! Needs the pinned nightly toolchain (`cargo xtask setup`).

use std::process::Command;

use tracer_tests::workspace_root;

#[test]
fn fuzz_target_compiles_against_the_current_reader_modules() {
    let manifest = workspace_root().join("fuzz/Cargo.toml");
    let output = Command::new("rustup")
        .args([
            "run",
            tracer_ebpf::TOOLCHAIN,
            "cargo",
            "check",
            "--quiet",
            "--bin",
            "reader",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("rustup runs (cargo xtask setup installs the pinned nightly toolchain)");
    assert!(
        output.status.success(),
        "the fuzz target no longer compiles ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
