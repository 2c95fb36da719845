//! Runs each ground-truth fixture under `tracer run --json` and checks that the
//! tracer reports exactly what Tokio's own hooks saw. Needs root (BPF) and the
//! binaries from `cargo xtask build`; without them the tests fail and say why.

use tracer_tests::{Profile, assert_matches_ground_truth, fixture_bin, require_root, run_traced};

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
