//! The Tokio version × build profile matrix (issue 8).
use tracer_tests::{Profile, compare, matrix_fixture_bin, report, require_root, run_traced};

fn outcome(version: &str, profile: Profile) -> Vec<String> {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let mut all = Vec::new();
    for name in ["multi_thread", "current_thread"] {
        let fixture = matrix_fixture_bin(name, version, profile).unwrap_or_else(|e| panic!("{e}"));
        let run = run_traced(&fixture, &[]).unwrap_or_else(|e| panic!("{e}"));
        let m = compare(&run.ground_truth, &run.tracer);
        all.push(format!("{name} {version} {profile:?}: status {} task_polls {} tasks {} mismatches {}\n{}\n{}", run.status, run.ground_truth.task_polls, run.ground_truth.tasks.len(), m.len(), report("x", &m), run.describe()));
    }
    all
}

#[test]
fn explore() {
    for v in ["1.43.4", "1.47.5", "1.54.1"] {
        for p in [Profile::Debug, Profile::Release, Profile::ReleaseLto] {
            for o in outcome(v, p) { eprintln!("{o}"); }
        }
    }
}
