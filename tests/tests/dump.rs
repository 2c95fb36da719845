//! `tracer dump -p PID` on the running `await_points` fixture (built with full
//! type DWARF for the fixture crate only): every task the fixture parked must
//! be listed with the await chain its ground truth gives (each `.await` logged
//! with task id, fn and file:line just before awaiting, and the leaf future's
//! type), on both runtime flavours, with the binary's DWARF moved to a
//! separate file found by `.gnu_debuglink`, and split into a `.dwp` package
//! beside the binary, and under fat LTO. With `--forks`, a task parked in a `tokio::join!` and
//! one in a `tokio::select!` must be dumped as trees: the chain down to the
//! macro's call, then every pending branch's chain, and no branch that
//! finished or that `select!` disabled. No task may be invented. Needs root
//! (to read another process's memory) and `cargo xtask build`; fails otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tracer_tests::{
    Profile,
    awaits::{ParkedFixture, Tree, final_trees, traced_tree},
    fixture_bin, require_root, tracer_bin,
};

/// `tracer dump -p PID` of `fixture` with `args`: (stdout, stderr).
fn dump(fixture: &ParkedFixture, args: &[&str]) -> (String, String) {
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let output = Command::new(tracer)
        .args(["dump", "-p", &fixture.pid().to_string()])
        .args(args)
        .output()
        .expect("tracer runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "tracer dump failed:\n{stderr}");
    (String::from_utf8_lossy(&output.stdout).into_owned(), stderr)
}

/// A dumped task's tree as the comparison sees it.
fn dumped_tree(task: &Value) -> Tree {
    traced_tree(task["awaiting"].as_array().map_or(&[], Vec::as_slice))
}

/// Dumps the parked fixture and compares every ground-truth tree (a chain,
/// for a task in no `join!` or `select!`).
fn dump_matches_ground_truth(binary: &Path, args: &[&str], dump_args: &[&str]) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let parked = ParkedFixture::start(binary, args);
    parked.wait_parked();
    let (stdout, stderr) = dump(&parked, &[&["--json"], dump_args].concat());
    let truth = final_trees(&parked.truth_text());
    let dumped: BTreeMap<u64, Value> = stdout
        .lines()
        .map(|line| {
            let task: Value = serde_json::from_str(line).expect("dump --json is JSON lines");
            (task["id"].as_u64().expect("task id"), task)
        })
        .collect();
    let (text, _) = dump(&parked, dump_args);
    parked.stop();
    let mut mismatches = Vec::new();
    for (id, tree) in &truth {
        match dumped.get(id) {
            None => mismatches.push(format!("task {id}: not dumped")),
            Some(task) if dumped_tree(task) != *tree => mismatches.push(format!(
                "task {id}: dumped {:?}, ground truth {tree:?}",
                dumped_tree(task)
            )),
            Some(_) => {}
        }
    }
    for id in dumped.keys().filter(|id| !truth.contains_key(id)) {
        mismatches.push(format!("task {id}: dumped but never spawned by the app"));
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} trees differ:\n{}\ndump stderr: {stderr}",
        mismatches.len(),
        truth.len(),
        mismatches.join("\n")
    );
    let forks = args.contains(&"--forks");
    assert_eq!(
        truth.len(),
        if forks { 7 } else { 5 },
        "the fixture parks five tasks, and two more with --forks"
    );
    let branches: usize = truth.values().map(|tree| tree.branches.len()).sum();
    eprintln!(
        "{} of {} await trees match ground truth ({branches} pending branches)",
        truth.len(),
        truth.len()
    );
    assert!(
        text.lines()
            .any(|l| l.contains(" parked at src/bin/await_points.rs:")
                && l.ends_with("> tokio::time::sleep::Sleep")),
        "text dump:\n{text}"
    );
    if forks {
        assert_eq!(branches, 4, "two pending branches in each fork: {truth:?}");
        for fork in ["tokio::join! { 1: src/bin/", "tokio::select! { 0: src/bin/"] {
            assert!(
                text.lines().any(|l| l.contains(fork) && l.ends_with(" }")),
                "no {fork:?} in the text dump:\n{text}"
            );
        }
    }
}

fn await_points() -> PathBuf {
    fixture_bin("await_points", Profile::ReleaseAwait).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn dump_shows_every_parked_task_of_a_multi_thread_runtime_at_its_ground_truth_awaits() {
    dump_matches_ground_truth(&await_points(), &["--cycles", "20"], &[]);
}

#[test]
fn dump_shows_every_parked_task_of_a_current_thread_runtime_at_its_ground_truth_awaits() {
    dump_matches_ground_truth(
        &await_points(),
        &["--cycles", "20", "--current-thread"],
        &[],
    );
}

#[test]
fn dump_shows_the_pending_branches_of_a_join_and_a_select_of_a_multi_thread_runtime_as_trees() {
    dump_matches_ground_truth(&await_points(), &["--cycles", "20", "--forks"], &[]);
}

#[test]
fn dump_shows_the_pending_branches_of_a_join_and_a_select_of_a_current_thread_runtime_as_trees() {
    dump_matches_ground_truth(
        &await_points(),
        &["--cycles", "20", "--forks", "--current-thread"],
        &[],
    );
}

#[test]
fn dump_shows_every_parked_task_and_tree_of_a_fat_lto_build() {
    let binary =
        fixture_bin("await_points", Profile::ReleaseAwaitLto).unwrap_or_else(|e| panic!("{e}"));
    dump_matches_ground_truth(&binary, &["--cycles", "5", "--forks"], &[]);
}

/// Runs `objcopy` with `args`.
fn objcopy(args: &[&std::ffi::OsStr]) {
    let status = Command::new("objcopy")
        .args(args)
        .status()
        .expect("objcopy (binutils) runs");
    assert!(status.success(), "objcopy {args:?} failed");
}

#[test]
fn dump_reads_the_dwarf_of_a_stripped_binary_from_its_debuglink_file() {
    let dir = std::env::temp_dir().join(format!("tracer-dump-debuglink-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let debug = dir.join("await_points.debug");
    let stripped = dir.join("await_points");
    objcopy(&[
        "--only-keep-debug".as_ref(),
        await_points().as_os_str(),
        debug.as_os_str(),
    ]);
    let link = format!("--add-gnu-debuglink={}", debug.display());
    objcopy(&[
        "--strip-debug".as_ref(),
        link.as_ref(),
        await_points().as_os_str(),
        stripped.as_os_str(),
    ]);
    dump_matches_ground_truth(&stripped, &["--cycles", "5"], &[]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dump_reads_the_dwarf_package_beside_a_split_debuginfo_binary() {
    let binary =
        fixture_bin("await_points", Profile::ReleaseAwaitDwp).unwrap_or_else(|e| panic!("{e}"));
    let package = binary.with_extension("dwp");
    assert!(
        package.is_file(),
        "{} is missing: `split-debuginfo = \"packed\"` writes it (cargo xtask build)",
        package.display()
    );
    dump_matches_ground_truth(&binary, &["--cycles", "5"], &[]);
}
