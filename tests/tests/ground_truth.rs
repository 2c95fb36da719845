//! Runs each ground-truth fixture under `tracer run --json` and checks that the
//! tracer reports exactly what Tokio's own hooks saw. Needs root (BPF) and the
//! binaries from `cargo xtask build`; without them the tests fail and say why.

use tracer_tests::{
    Privileges, Profile, assert_matches_ground_truth, fixture_bin, require_root, run_traced,
    run_traced_with,
};

fn traced_run_matches_ground_truth(name: &str, profile: Profile) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin(name, profile).unwrap_or_else(|e| panic!("{e}"));
    let run = run_traced(&fixture, &[]).unwrap_or_else(|e| panic!("{name} ({profile:?}): {e}"));
    assert_matches_ground_truth(&run, &format!("{name} ({profile:?})"));
}

#[test]
fn multi_thread_debug_trace_matches_ground_truth() {
    traced_run_matches_ground_truth("multi_thread", Profile::Debug);
}

#[test]
fn multi_thread_release_trace_matches_ground_truth() {
    traced_run_matches_ground_truth("multi_thread", Profile::Release);
}

#[test]
fn current_thread_debug_trace_matches_ground_truth_without_runtime_drop() {
    traced_run_matches_ground_truth("current_thread", Profile::Debug);
}

#[test]
fn current_thread_release_trace_matches_ground_truth_without_runtime_drop() {
    traced_run_matches_ground_truth("current_thread", Profile::Release);
}

/// Runs the kernel counted for program `name` in the `--bpf-stats` summary line.
fn program_runs(stderr: &str, name: &str) -> Option<u64> {
    let line = stderr
        .lines()
        .find(|line| line.starts_with("tracer: BPF program time (--bpf-stats): "))?;
    let (_, rest) = line.split_once(&format!("; {name} "))?;
    rest.split(" runs").next()?.parse().ok()
}

#[test]
fn bpf_stats_count_one_program_run_per_poll_start_poll_end_and_wake_and_leave_the_trace_exact() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("multi_thread", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let run = run_traced_with(Privileges::Root, &["--bpf-stats"], &fixture, &[])
        .unwrap_or_else(|e| panic!("--bpf-stats: {e}"));
    assert_matches_ground_truth(&run, "multi_thread with --bpf-stats");
    for (program, event) in [
        ("poll_enter", "before"),
        ("poll_return", "after"),
        ("task_wake", "wake"),
    ] {
        let events = run
            .stdout
            .lines()
            .filter(|line| line.contains(&format!("\"event\":\"{event}\"")))
            .count() as u64;
        assert!(events > 0, "no {event} events\n{}", run.describe());
        assert_eq!(
            program_runs(&run.stderr, program),
            Some(events),
            "{program} runs against {event} events\n{}",
            run.describe()
        );
    }
}
