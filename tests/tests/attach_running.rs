//! Attaches `tracer trace --json -p PID` to the `long_running` fixture mid-run:
//! tasks spawned after attach must match ground truth exactly; tasks that existed
//! before are reported at first sight as `existing` with no trigger, and no task
//! id is ever invented. Needs root and `cargo xtask build`; fails otherwise.

use std::time::Duration;
use tracer_tests::{HookKind, Profile, compare_attached, report, require_root, run_attached};

fn attach_matches_ground_truth(profile: Profile) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let (run, target_status) = run_attached(6, Duration::from_secs(1), profile)
        .unwrap_or_else(|e| panic!("long_running ({profile:?}): {e}"));
    assert!(
        target_status.success(),
        "long_running exited with {target_status}\n{}",
        run.describe()
    );
    assert!(
        run.status.success(),
        "tracer trace failed\n{}",
        run.describe()
    );
    assert_eq!(
        run.ground_truth.end,
        Some(true),
        "long_running did not finish cleanly\n{}",
        run.describe()
    );
    let existing = run
        .tracer
        .events
        .iter()
        .filter(|e| e.event == HookKind::Init && e.existing == Some(true))
        .count();
    let mismatches = compare_attached(&run.ground_truth, &run.tracer);
    assert!(
        mismatches.is_empty(),
        "{}\n({existing} existing tasks reported)\n{}",
        report(
            &format!("attach to long_running ({profile:?})"),
            &mismatches
        ),
        run.describe()
    );
}

#[test]
fn attach_to_running_release_app_reports_new_tasks_exactly_and_old_ones_as_existing() {
    attach_matches_ground_truth(Profile::Release);
}

#[test]
fn attach_to_running_debug_app_reports_new_tasks_exactly_and_old_ones_as_existing() {
    attach_matches_ground_truth(Profile::Debug);
}
