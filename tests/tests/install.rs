//! The user's install path from the README: `cargo xtask install --root DIR
//! --setcap` puts a `tracer` in DIR/bin holding the capabilities tracing needs, and
//! user `nobody`, with no capabilities of its own, then traces a program it starts
//! exactly. Needs root (apt, setcap) and `cargo xtask build` (the install reuses
//! its release build).

use std::{os::unix::fs::PermissionsExt as _, process::Command};

use tracer_tests::{
    Privileges, Profile, assert_matches_ground_truth, fixture_bin, require_root, run_traced_by,
    workspace_root,
};

/// Runs `cargo xtask install ARGS` at the workspace root; panics with its output
/// when it fails.
fn xtask_install(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .args(["xtask", "install"])
        .args(args)
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "cargo xtask install {args:?} failed ({})\n{stderr}",
        output.status
    );
    stderr
}

#[test]
fn an_installed_tracer_with_setcap_traces_as_nobody_exactly() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let dest = workspace_root()
        .join("target")
        .join(format!("install-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dest);
    let stderr = xtask_install(&["--root", dest.to_str().expect("UTF-8 path"), "--setcap"]);
    let tracer = dest.join("bin/tracer");
    assert!(tracer.is_file(), "no {}\n{stderr}", tracer.display());
    for dir in [dest.as_path(), &dest.join("bin")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let caps = Command::new("getcap")
        .arg(&tracer)
        .output()
        .expect("getcap runs");
    let caps = String::from_utf8_lossy(&caps.stdout);
    assert!(
        ["cap_bpf", "cap_perfmon", "cap_sys_ptrace", "=ep"]
            .iter()
            .all(|part| caps.contains(part)),
        "getcap {}: {caps}",
        tracer.display()
    );
    assert!(stderr.contains("without sudo"), "no usage hint\n{stderr}");

    let fixture = fixture_bin("current_thread", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let run = run_traced_by(&tracer, Privileges::Nobody, &[], &fixture, &[])
        .unwrap_or_else(|e| panic!("installed tracer as nobody: {e}"));
    assert_matches_ground_truth(
        &run,
        "current_thread, installed tracer with file capabilities, as nobody",
    );
    let _ = std::fs::remove_dir_all(&dest);
}
