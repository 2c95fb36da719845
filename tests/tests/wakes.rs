//! Runs the ground-truth fixtures under `tracer run --json` and checks the wakes
//! and waits against what the fixtures logged: every (woken, waker) of the tasks
//! whose waker logs its wakes, exactly, on both runtime flavours, debug and
//! release; every `yield_now` a self-wake; and a `sched_ns` on every poll, whose
//! wait began within max(20 µs, 10 % of the wait) of when Tokio's own
//! `schedule_latency` says it began, for at least 95 % of polls in debug builds
//! and 92 % in release builds.
//!
//! The waits outside are timing, not inference: the two sites of optimised
//! builds whose first instruction the kernel single-steps (`waker::wake_by_ref`
//! and `remote_abort`) put the tracer's stamp 20-35 µs before Tokio's, and a
//! thread preempted between a probe and Tokio's clock does the same: a release
//! run of multi_thread lands at 94-97 % on this VM when it is quiet, and lower
//! right after heavy builds (a clean-clone CI run, with one more single-stepped
//! spawn probe since removed, saw 86.7-92.7 %). In debug builds the probes' own cost shows more:
//! there nearly every site starts with an instruction the kernel single-steps
//! (`sub $n,%rsp`), about 12 µs a trap on the test VM (Linux 6.18,
//! Firecracker), each between the tracer's stamp and Tokio's; so debug runs
//! allow 50 µs where release runs allow 20 µs (see
//! `tracer_tests::wakes::DEBUG_FLOOR_NS`).

use tracer_tests::{
    Privileges, Profile, assert_matches_ground_truth, fixture_bin, require_root, run_traced,
    run_traced_with,
    wakes::{DEBUG_FLOOR_NS, RELEASE_FLOOR_NS, assert_wakes_match},
};

/// One traced fixture at a time: the waits are timings, and parallel runs on a
/// small machine would measure each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn traced_wakes_match(name: &str, profile: Profile) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let fixture = fixture_bin(name, profile).unwrap_or_else(|e| panic!("{e}"));
    let what = format!("{name} ({profile:?})");
    let floor_ns = match profile {
        Profile::Debug => DEBUG_FLOOR_NS,
        _ => RELEASE_FLOOR_NS,
    };
    let min_within = match profile {
        Profile::Debug => 0.95,
        _ => 0.92,
    };
    // The exact checks hold in every run; the share within tolerance is a timing,
    // so a run disturbed by the machine's other work gets up to four more tries.
    let mut shares = Vec::new();
    let mut outside = Vec::new();
    for _ in 0..RUNS {
        let run = run_traced(&fixture, &[]).unwrap_or_else(|e| panic!("{name} ({profile:?}): {e}"));
        assert_matches_ground_truth(&run, &what);
        let comparison = assert_wakes_match(&run, &what, floor_ns, 0.0);
        shares.push(format!(
            "{}/{} ({:.1} %)",
            comparison.within,
            comparison.polls,
            100.0 * comparison.within_fraction()
        ));
        if comparison.within_fraction() >= min_within {
            return;
        }
        outside = comparison.outside;
    }
    panic!(
        "{what}: waits began within max({} µs, 10 % of the wait) of Tokio's for too few polls in each of {RUNS} runs (need {:.0} %): {}; outside in the last run (task, Tokio ns, tracer ns, tracer's start - Tokio's): {outside:?}",
        floor_ns / 1000,
        100.0 * min_within,
        shares.join(", ")
    );
}

/// Runs of a fixture before its waits count as too far from Tokio's.
const RUNS: usize = 5;

#[test]
fn multi_thread_debug_wakes_match_ground_truth() {
    traced_wakes_match("multi_thread", Profile::Debug);
}

#[test]
fn multi_thread_release_wakes_match_ground_truth() {
    traced_wakes_match("multi_thread", Profile::Release);
}

#[test]
fn current_thread_debug_wakes_match_ground_truth() {
    traced_wakes_match("current_thread", Profile::Debug);
}

#[test]
fn current_thread_release_wakes_match_ground_truth() {
    traced_wakes_match("current_thread", Profile::Release);
}

/// The woken task of every `wake` line, and whether any had a waker.
fn woken(stdout: &str) -> (std::collections::BTreeMap<u64, usize>, bool) {
    let mut woken = std::collections::BTreeMap::new();
    let mut any_waker = false;
    for line in stdout.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        if value["event"] == "wake" {
            *woken
                .entry(value["async_id"].as_u64().unwrap())
                .or_default() += 1;
            any_waker |= !value["waker_id"].is_null();
        }
    }
    (woken, any_waker)
}

#[test]
fn no_polls_adds_no_wake_probe_unless_wakes_is_given() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let fixture = fixture_bin("current_thread", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let plain = run_traced_with(Privileges::Root, &["--no-polls"], &fixture, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(plain.status.success(), "{}", plain.describe());
    assert!(
        woken(&plain.stdout).0.is_empty() && !plain.stderr.contains(" wake,"),
        "--no-polls traced wakes\n{}",
        plain.describe()
    );
    let with_wakes = run_traced_with(Privileges::Root, &["--no-polls", "--wakes"], &fixture, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(with_wakes.status.success(), "{}", with_wakes.describe());
    let (woken, any_waker) = woken(&with_wakes.stdout);
    assert!(!any_waker, "--no-polls --wakes cannot know the waker");
    let truth = tracer_tests::wakes::WakeTruth::parse(
        &with_wakes.ground_truth_text,
        &with_wakes.ground_truth,
    )
    .unwrap();
    assert!(!truth.logged.is_empty());
    for id in &truth.logged {
        let logged: usize = truth
            .edges
            .iter()
            .filter(|((woken, _), _)| woken == id)
            .map(|(_, count)| count)
            .sum();
        assert_eq!(
            woken.get(id).copied().unwrap_or(0),
            logged,
            "wakes of task {id}"
        );
    }
}
