//! The least privilege tracing needs, tested by running the tracer as user
//! `nobody` holding only CAP_BPF and CAP_PERFMON (through `setpriv`): that is
//! enough for a program it starts and for a running process of the same user, and
//! exactly what tracing another user's process lacks (CAP_SYS_PTRACE) is named.
//! Needs root (to hand the capabilities out) and `cargo xtask build`.

use std::{process::Stdio, time::Duration};

use tracer_tests::{
    GROUND_TRUTH_ENV, Privileges, Profile, assert_matches_ground_truth, compare_attached,
    fixture_bin, report, require_root, run_attached_with, run_traced_with, temp_path, tracer_bin,
};

#[test]
fn bpf_and_perfmon_alone_trace_a_launched_program_exactly() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("multi_thread", Profile::Debug).unwrap_or_else(|e| panic!("{e}"));
    let run = run_traced_with(Privileges::NobodyWithBpfAndPerfmon, &[], &fixture, &[])
        .unwrap_or_else(|e| panic!("multi_thread as nobody: {e}"));
    assert_matches_ground_truth(&run, "multi_thread, tracer with CAP_BPF+CAP_PERFMON only");
}

#[test]
fn bpf_and_perfmon_alone_attach_to_a_running_process_of_the_same_user() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let (run, target_status) = run_attached_with(
        Privileges::Nobody,
        Privileges::NobodyWithBpfAndPerfmon,
        4,
        Duration::from_secs(1),
        Profile::Release,
    )
    .unwrap_or_else(|e| panic!("long_running as nobody: {e}"));
    assert!(
        target_status.success(),
        "target: {target_status}\n{}",
        run.describe()
    );
    assert!(run.status.success(), "tracer failed\n{}", run.describe());
    assert!(
        !run.tracer.events.is_empty(),
        "no events traced\n{}",
        run.describe()
    );
    let mismatches = compare_attached(&run.ground_truth, &run.tracer);
    assert!(
        mismatches.is_empty(),
        "{}\n{}",
        report(
            "attach as nobody with CAP_BPF+CAP_PERFMON only",
            &mismatches
        ),
        run.describe()
    );
}

#[test]
fn tracing_another_users_process_without_cap_sys_ptrace_is_refused_naming_it() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("long_running", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    // A root-owned target, then a tracer running as nobody.
    let mut target = Privileges::Root
        .command(&fixture)
        .args(["--seconds", "20"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("long_running starts");
    let output = Privileges::NobodyWithBpfAndPerfmon
        .command(&tracer)
        .args(["trace", "--json", "-p", &target.id().to_string()])
        .output()
        .expect("setpriv (util-linux) runs");
    let target_still_running = target.try_wait().expect("target status").is_none();
    let _ = target.kill();
    let _ = target.wait();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "exit status:\n{stderr}");
    assert!(
        stderr.contains("CAP_SYS_PTRACE"),
        "stderr lacks CAP_SYS_PTRACE:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "tracer panicked:\n{stderr}");
    assert!(output.stdout.is_empty(), "events printed despite the error");
    assert!(target_still_running, "the refused tracer harmed its target");
}

#[test]
fn bpf_stats_without_cap_sys_admin_are_refused_by_name_before_the_program_runs() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("multi_thread", Profile::Debug).unwrap_or_else(|e| panic!("{e}"));
    let gt_path = temp_path("bpf-stats-refused");
    let output = Privileges::NobodyWithBpfAndPerfmon
        .command(&tracer_bin().unwrap_or_else(|e| panic!("{e}")))
        .args(["run", "--bpf-stats", "--json", "--"])
        .arg(&fixture)
        .env(GROUND_TRUTH_ENV, &gt_path)
        .stdin(Stdio::null())
        .output()
        .expect("start the tracer");
    let ran = gt_path.exists();
    let _ = std::fs::remove_file(&gt_path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "tracer accepted it\n{stderr}");
    assert!(output.stdout.is_empty(), "events printed\n{stderr}");
    for needle in ["--bpf-stats", "CAP_SYS_ADMIN", "without --bpf-stats"] {
        assert!(stderr.contains(needle), "no {needle:?} in\n{stderr}");
    }
    assert!(!ran, "the program ran (it wrote ground truth)\n{stderr}");
}
