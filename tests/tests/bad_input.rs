//! Bad input gets a clear error that names the problem and the fix, and a failing
//! exit status; never a panic, never partial output. Needs root and `cargo xtask
//! build`; fails otherwise.

use std::process::{Command, Output};

use tracer_tests::{Privileges, Profile, assert_refused, fixture_bin, require_root, tracer_bin};

fn tracer(args: &[&str]) -> Output {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    Command::new(tracer)
        .args(args)
        .output()
        .expect("tracer runs")
}

#[test]
fn unprivileged_user_is_told_which_capabilities_are_missing_and_how_to_grant_them() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let output = Privileges::Nobody
        .command(&tracer)
        .args(["trace", "-p", "1"])
        .output()
        .expect("setpriv (util-linux) runs");
    assert_refused(
        &output,
        &[
            "needs CAP_BPF and CAP_PERFMON",
            "setcap cap_bpf,cap_perfmon",
        ],
    );
}

#[test]
fn unknown_pid_is_reported_as_no_such_process() {
    let free_pid = (1..=4_000_000u32)
        .rev()
        .find(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        .expect("a free pid");
    let output = tracer(&["trace", "-p", &free_pid.to_string()]);
    assert_refused(&output, &[&format!("no such process: {free_pid}")]);
}

#[test]
fn kernel_thread_is_refused_as_not_a_user_program() {
    // pid 2 is kthreadd on Linux.
    let output = tracer(&["trace", "-p", "2"]);
    assert_refused(
        &output,
        &["process 2 has no executable: it is a kernel thread"],
    );
}

#[test]
fn program_without_tokio_is_refused_naming_the_executable() {
    let no_tokio = fixture_bin("no_tokio", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let output = tracer(&["run", "--", no_tokio.to_str().unwrap()]);
    assert_refused(
        &output,
        &[
            &format!("no supported runtime found in {}", no_tokio.display()),
            "Tokio or Go",
        ],
    );
}

#[test]
fn stripped_binary_is_refused_with_how_to_keep_symbols() {
    let stripped = fixture_bin("multi_thread", Profile::Stripped).unwrap_or_else(|e| panic!("{e}"));
    let output = tracer(&["run", "--", stripped.to_str().unwrap()]);
    assert_refused(
        &output,
        &[
            &format!("{} is stripped", stripped.display()),
            "strip = false",
            "debug = \"line-tables-only\"",
        ],
    );
}

#[test]
fn missing_command_is_reported_by_name() {
    let output = tracer(&["run", "--", "/nonexistent/server"]);
    assert_refused(
        &output,
        &[
            "cannot start /nonexistent/server",
            "No such file or directory",
        ],
    );
}

#[test]
fn zombie_pid_is_refused_as_having_nothing_left_to_trace() {
    // A child that has exited and that this test does not reap yet is a zombie.
    let mut child = std::process::Command::new("/bin/true")
        .spawn()
        .expect("/bin/true starts");
    let pid = child.id();
    let state = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                Some(
                    stat.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .next()?
                        .to_owned(),
                )
            })
    };
    while state().as_deref() != Some("Z") {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let output = tracer(&["trace", "-p", &pid.to_string()]);
    child.wait().expect("reap the zombie");
    assert_refused(
        &output,
        &[
            &format!("process {pid} is a zombie"),
            "nothing left to trace",
        ],
    );
}

/// `e_machine` in an ELF header: a little-endian u16 at byte 18.
const E_MACHINE: usize = 18;
/// `EM_AARCH64`.
const EM_AARCH64: u16 = 183;

#[test]
fn binary_for_another_machine_is_refused_before_it_is_started() {
    let fixture = fixture_bin("multi_thread", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let mut elf = std::fs::read(&fixture).expect("fixture binary");
    elf[E_MACHINE..E_MACHINE + 2].copy_from_slice(&EM_AARCH64.to_le_bytes());
    let copy = tracer_tests::temp_path("aarch64");
    std::fs::write(&copy, &elf).expect("write the aarch64 copy");
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("make it executable");
    let output = tracer(&["run", "--", copy.to_str().unwrap()]);
    std::fs::remove_file(&copy).expect("remove the copy");
    assert_refused(
        &output,
        &[&format!(
            "{} is an aarch64 binary; tracer traces x86_64 programs on this machine",
            copy.display()
        )],
    );
    // Refused by reading it, not by trying to run it.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("cannot start"), "{stderr}");
}
