//! Traces the `udp_echo` fixture, whose connections are embedder resources
//! (`tracer-resource`), and checks that the tracer reports exactly what the app
//! declared: ids, types, triggers, before/after counts and destroys, while its
//! Tokio tasks still match Tokio's own hooks. Needs root (BPF) and the binaries
//! from `cargo xtask build`; without them the tests fail and say why.

use tracer_tests::{
    Profile, compare, fixture_bin, report, require_root,
    resources::{self, RESOURCE_ID_BIT},
    run_traced,
};

fn traced_resources_match_what_the_app_declared(profile: Profile) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("udp_echo", profile).unwrap_or_else(|e| panic!("{e}"));
    let run = run_traced(&fixture, &[]).unwrap_or_else(|e| panic!("udp_echo ({profile:?}): {e}"));
    assert!(
        run.status.success(),
        "udp_echo ({profile:?}): tracer failed\n{}",
        run.describe()
    );
    let declared = resources::declared(&run.ground_truth_text).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        declared.len() >= 10,
        "udp_echo ({profile:?}) declared only {} resources\n{}",
        declared.len(),
        run.describe()
    );
    assert!(declared.keys().all(|id| id & RESOURCE_ID_BIT != 0));
    let traced = resources::traced(&run.tracer);
    let mismatches = resources::compare(&declared, &traced);
    assert!(
        mismatches.is_empty(),
        "{}\n{}",
        report(&format!("udp_echo resources ({profile:?})"), &mismatches),
        run.describe()
    );
    let task_mismatches = compare(&run.ground_truth, &resources::tasks_only(&run.tracer));
    assert!(
        task_mismatches.is_empty(),
        "{}\n{}",
        report(&format!("udp_echo tasks ({profile:?})"), &task_mismatches),
        run.describe()
    );
}

#[test]
fn udp_echo_release_resources_match_what_the_app_declared() {
    traced_resources_match_what_the_app_declared(Profile::Release);
}

#[test]
fn udp_echo_debug_resources_match_what_the_app_declared() {
    traced_resources_match_what_the_app_declared(Profile::Debug);
}
