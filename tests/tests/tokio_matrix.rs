//! Fidelity across Tokio versions and build profiles: the fixture apps' sources
//! built against Tokio 1.43.4, 1.47.5 and 1.54.1 (`cargo xtask build`), in debug,
//! release, release with thin LTO, and release with fat LTO and one codegen unit,
//! each traced with
//! `tracer run --json` and compared with ground truth. Each version has one test
//! per profile, each running both fixtures (multi_thread, with `block_in_place`;
//! current_thread, with a LocalSet); both run the shared scenarios (spawn tree,
//! spawn_blocking, JoinSet, abort, a panicking task, a leaked JoinHandle, a
//! pending task).
//!
//! What is compared per version: everything [`tracer_tests::compare`] checks. On Tokio 1.43 the
//! runtime has no poll hooks (they appeared in 1.44), so ground truth has no poll
//! records for ordinary tasks and their poll counts and threads are not compared
//! (spawn_blocking and LocalSet tasks' polls, which the app records itself, are);
//! the tests assert that ground truth says so, so the weaker comparison is never
//! applied by accident. Fat-LTO builds, and (1.54) one codegen unit, inline the
//! boxed cell's drop glue (the tracer probes the cell's own glue instead) and
//! some spawn paths: every difference from ground truth must be a spawn the
//! tracer says it did not see. `opt-level = 1` and `"z"` inline both cell glues
//! into `Harness::dealloc` (probed then) and match exactly. `panic = "abort"`
//! inlines the whole free path of some task types: it matches but for their
//! destroys, which the summary counts as tasks resolved and never destroyed.
//!
//! Needs root and the builds; without them the tests fail and say why.

use std::path::Path;
use std::process::Command;

use tracer_tests::{
    GROUND_TRUTH_ENV, Profile, TaskKind, TracedRun, assert_matches_ground_truth,
    assert_matches_ground_truth_but_missing_destroys,
    assert_matches_ground_truth_but_unseen_spawns, fixture_bin, matrix_fixture_bin, require_root,
    run_traced, temp_path, tracer_bin,
};

const FIXTURES: [&str; 2] = ["multi_thread", "current_thread"];

/// Traces both fixtures of `version` built in `profile` under `tracer run`, and
/// hands each run to `check` with what it is (fixture, version, profile).
fn trace_each_fixture(version: &str, profile: Profile, check: impl Fn(&str, &TracedRun, &str)) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    for name in FIXTURES {
        let what = format!("{name} on Tokio {version} ({profile:?})");
        let fixture = matrix_fixture_bin(name, version, profile).unwrap_or_else(|e| panic!("{e}"));
        let run = run_traced(&fixture, &[]).unwrap_or_else(|e| panic!("{what}: {e}"));
        check(name, &run, &what);
    }
}

/// Traces both fixtures of `version` built in `profile` and requires ground truth
/// exactly, with ordinary tasks' polls compared only if `task_polls`.
fn traces_match_ground_truth(version: &str, profile: Profile, task_polls: bool) {
    trace_each_fixture(version, profile, |name, run, what| {
        assert_matches_ground_truth(run, what);
        let gt = &run.ground_truth;
        assert_eq!(
            gt.task_polls,
            task_polls,
            "{what}: ground truth should {} poll records from Tokio's poll hooks",
            if task_polls { "have" } else { "lack" }
        );
        if name == "multi_thread" {
            // The launcher `block_in_place` spawns, from inside a task.
            assert!(
                gt.tasks
                    .values()
                    .any(|t| t.kind == TaskKind::RuntimeBlocking && t.parent.is_some()),
                "{what}: ground truth has no block_in_place launcher"
            );
        }
    });
}

/// Runs `tracer run --json -- fixture` and requires a refusal before the fixture
/// ran at all: non-zero exit, no event, no ground-truth file, and a message with
/// every one of `expected`.
fn refused_before_it_runs(fixture: &Path, expected: &[&str]) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let gt_path = temp_path("refused");
    let out = Command::new(tracer_bin().unwrap_or_else(|e| panic!("{e}")))
        .args(["run", "--json", "--"])
        .arg(fixture)
        .env(GROUND_TRUTH_ENV, &gt_path)
        .output()
        .expect("start the tracer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ran = gt_path.exists();
    let _ = std::fs::remove_file(&gt_path);
    let what = fixture.display();
    assert!(
        !out.status.success(),
        "{what}: tracer accepted it\n{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{what}: events printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!ran, "{what}: the program ran (it wrote ground truth)");
    for needle in expected {
        assert!(
            stderr.contains(needle),
            "{what}: no {needle:?} in\n{stderr}"
        );
    }
}

/// Traces both fixtures of `version` built in `profile`, a build that inlines
/// some of Tokio's spawn paths: everything matches ground truth but the inits
/// of the tasks whose spawn the tracer could not see, which say so (`existing`,
/// no trigger) and are counted in the summary; most spawns must be seen.
fn traces_match_ground_truth_but_inlined_spawns(version: &str, profile: Profile) {
    trace_each_fixture(version, profile, |_, run, what| {
        let (seen, tasks) = assert_matches_ground_truth_but_unseen_spawns(run, what);
        eprintln!("{what}: spawns seen for {seen} of {tasks} tasks, the rest counted as such");
        assert!(
            2 * seen > tasks,
            "{what}: only {seen} of {tasks} spawns seen\n{}",
            run.describe()
        );
    });
}

/// A copy of the release multi_thread fixture whose `tokio-1.54.1/` source paths
/// read `replacement` (same length) instead: the version the tracer detects.
fn with_tokio_paths(replacement: &str, tag: &str) -> std::path::PathBuf {
    let original = fixture_bin("multi_thread", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let mut bytes = std::fs::read(&original).expect("read the fixture");
    let from = b"tokio-1.54.1/";
    assert_eq!(from.len(), replacement.len());
    let mut patched = 0;
    let mut at = 0;
    while let Some(i) = bytes[at..].windows(from.len()).position(|w| w == from) {
        bytes[at + i..at + i + from.len()].copy_from_slice(replacement.as_bytes());
        at += i + from.len();
        patched += 1;
    }
    assert!(
        patched > 0,
        "no tokio-1.54.1/ path in {}",
        original.display()
    );
    let copy = temp_path(tag).with_extension("bin");
    std::fs::write(&copy, bytes).expect("write the copy");
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("make the copy executable");
    copy
}

#[test]
fn tokio_1_43_debug_trace_matches_ground_truth_except_ordinary_task_polls() {
    traces_match_ground_truth("1.43.4", Profile::Debug, false);
}

#[test]
fn tokio_1_43_release_trace_matches_ground_truth_except_ordinary_task_polls() {
    traces_match_ground_truth("1.43.4", Profile::Release, false);
}

#[test]
fn tokio_1_43_thin_lto_trace_matches_ground_truth_except_ordinary_task_polls() {
    traces_match_ground_truth("1.43.4", Profile::ReleaseThinLto, false);
}

#[test]
fn tokio_1_43_fat_lto_trace_matches_ground_truth_but_the_spawns_it_inlines() {
    traces_match_ground_truth_but_inlined_spawns("1.43.4", Profile::ReleaseLto);
}

#[test]
fn tokio_1_47_debug_trace_matches_ground_truth() {
    traces_match_ground_truth("1.47.5", Profile::Debug, true);
}

#[test]
fn tokio_1_47_release_trace_matches_ground_truth() {
    traces_match_ground_truth("1.47.5", Profile::Release, true);
}

#[test]
fn tokio_1_47_thin_lto_trace_matches_ground_truth() {
    traces_match_ground_truth("1.47.5", Profile::ReleaseThinLto, true);
}

#[test]
fn tokio_1_47_fat_lto_trace_matches_ground_truth_but_the_spawns_it_inlines() {
    traces_match_ground_truth_but_inlined_spawns("1.47.5", Profile::ReleaseLto);
}

#[test]
fn tokio_1_54_debug_trace_matches_ground_truth() {
    traces_match_ground_truth("1.54.1", Profile::Debug, true);
}

#[test]
fn tokio_1_54_release_trace_matches_ground_truth() {
    traces_match_ground_truth("1.54.1", Profile::Release, true);
}

#[test]
fn tokio_1_54_thin_lto_trace_matches_ground_truth() {
    traces_match_ground_truth("1.54.1", Profile::ReleaseThinLto, true);
}

#[test]
fn tokio_1_54_fat_lto_trace_matches_ground_truth_but_the_spawns_it_inlines() {
    traces_match_ground_truth_but_inlined_spawns("1.54.1", Profile::ReleaseLto);
}

#[test]
fn tokio_1_54_one_codegen_unit_trace_matches_ground_truth_but_the_spawns_it_inlines() {
    traces_match_ground_truth_but_inlined_spawns("1.54.1", Profile::ReleaseCgu1);
}

#[test]
fn tokio_1_54_opt_level_1_trace_matches_ground_truth() {
    traces_match_ground_truth("1.54.1", Profile::ReleaseO1, true);
}

#[test]
fn tokio_1_54_size_optimised_trace_matches_ground_truth() {
    traces_match_ground_truth("1.54.1", Profile::ReleaseOz, true);
}

#[test]
fn tokio_1_54_panic_abort_trace_matches_ground_truth_but_the_frees_it_inlines_which_it_counts() {
    trace_each_fixture("1.54.1", Profile::ReleasePanicAbort, |_, run, what| {
        let (missing, tasks) = assert_matches_ground_truth_but_missing_destroys(run, what);
        eprintln!("{what}: {missing} of {tasks} destroys missing, all counted in the summary");
    });
}

#[test]
fn unsupported_tokio_version_is_refused_by_name_before_it_runs() {
    let copy = with_tokio_paths("tokio-1.99.1/", "tokio-1-99");
    refused_before_it_runs(&copy, &["uses Tokio 1.99.1", "supports Tokio 1.43 to 1.54"]);
    let _ = std::fs::remove_file(copy);
}

#[test]
fn undetermined_tokio_version_is_refused_before_it_runs() {
    let copy = with_tokio_paths("tokio/src/xx/", "tokio-unknown");
    refused_before_it_runs(
        &copy,
        &[
            "cannot tell which Tokio version",
            "supports Tokio 1.43 to 1.54",
        ],
    );
    let _ = std::fs::remove_file(copy);
}
