//! The `awaiting` of every Pending poll's `after`, live: `tracer run --json` on
//! the `await_points` fixture (built with full type DWARF for the fixture crate
//! only), whose every `.await` writes (task id, depth, fn, file:line, leaf)
//! to the ground truth just before awaiting. At the return of a poll that did
//! not complete, the task's await chain is the last record of each depth up to
//! the deepest one written since, written before the poll returned; the
//! `after`'s chain must be exactly that, on both runtime flavours, for every
//! Pending poll of the fixture's tasks. A recording of a session that ends
//! while the tasks are parked shows each one in `tree` and `stats` parked at
//! its last chain. A task in a `tokio::join!` or `tokio::select!`
//! (`--forks`) carries its whole tree: its chain down to the macro's call,
//! then the fork (`{"future": "tokio::join!", "branches": [...]}`) with the
//! chain of each pending branch, compared whole (which branches, and each
//! one's chain) with the ground truth's (its records inside branch `b`, and
//! `branch_done`); the recording of such a session shows the same trees in
//! `tree` and `stats` after replay. A fat-LTO build carries the same trees.
//! Needs root and `cargo xtask build`.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tracer_tests::{
    Privileges, Profile,
    awaits::{ParkedFixture, final_trees, ground_truth_awaits, traced_tree, tree_at},
    fixture_bin, require_root, run_traced_with, temp_path, tracer_bin,
};

/// When the fixture wrote `parked`: every task is parked for good by then, and
/// the polls after it are those of the aborts that end the run. Those are not
/// judged: an abort's poll may find the future already dropped by another
/// worker (the runtime shutting down cancels idle tasks), so it runs no future
/// and has no chain, while the ground truth, written only at `.await`s, still
/// names the last one.
fn parked_at(text: &str) -> u64 {
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("ground truth is JSON lines"))
        .find(|record| record["event"] == "parked")
        .and_then(|record| record["ts_ns"].as_u64())
        .expect("the fixture writes `parked` with its ts_ns")
}

/// Traces the fixture with `args` and compares the await tree (the chain,
/// and in a fork each pending branch's chain) of every Pending poll of its
/// tasks with the ground truth.
fn every_pending_poll_is_parked_at_its_ground_truth(profile: Profile, args: &[&str]) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("await_points", profile).unwrap_or_else(|e| panic!("{e}"));
    let run =
        run_traced_with(Privileges::Root, &[], &fixture, args).unwrap_or_else(|e| panic!("{e}"));
    assert!(run.status.success(), "{}", run.describe());
    assert!(
        run.stderr.contains("tracer: await chains: "),
        "no await chains announced:\n{}",
        run.stderr
    );
    let awaits = ground_truth_awaits(&run.ground_truth_text);
    let parked_ns = parked_at(&run.ground_truth_text);
    let forks = args.contains(&"--forks");
    assert_eq!(
        awaits.len(),
        if forks { 7 } else { 5 },
        "the fixture has five tasks, and two more with --forks"
    );
    let mut pending = 0usize;
    let mut at_forks = 0usize;
    let mut branches = 0usize;
    let mut mismatches = Vec::new();
    let mut lines = 0usize;
    let mut resolved = std::collections::BTreeSet::new();
    for line in run.stdout.lines() {
        let event: Value = serde_json::from_str(line).expect("tracer --json is JSON lines");
        if event["event"] == "resolve" {
            // A cancelled task can still be polled once (it was queued): that
            // poll runs no future, so it has no chain.
            resolved.extend(event["async_id"].as_u64());
        }
        if event["event"] != "after"
            || event["completed"] == true
            || event["async_id"]
                .as_u64()
                .is_some_and(|id| resolved.contains(&id))
        {
            continue;
        }
        let Some(task) = event["async_id"].as_u64().and_then(|id| awaits.get(&id)) else {
            continue;
        };
        lines += 1;
        let ts_ns = event["ts_ns"].as_u64().expect("after ts_ns");
        if ts_ns >= parked_ns {
            continue;
        }
        let expected = tree_at(task, ts_ns);
        if expected.chain.is_empty() {
            // A poll before the task's first await record cannot be judged.
            continue;
        }
        pending += 1;
        if expected
            .chain
            .last()
            .is_some_and(|(_, leaf)| leaf == "tokio::join!" || leaf == "tokio::select!")
        {
            at_forks += 1;
            branches += expected.branches.len();
        }
        let got = event["awaiting"]
            .as_array()
            .map(|frames| traced_tree(frames));
        if got.as_ref() != Some(&expected) && mismatches.len() < 20 {
            mismatches.push(format!(
                "task {} at {ts_ns}: traced {}, ground truth {expected:?}",
                event["async_id"], event["awaiting"]
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} Pending polls, trees differ (first 20):\n{}",
        pending,
        mismatches.join("\n")
    );
    assert!(
        pending >= 5 * 20,
        "only {pending} of {lines} Pending polls judged"
    );
    if forks {
        assert!(
            at_forks >= 2 * 20 && branches >= 2 * at_forks,
            "only {at_forks} Pending polls judged in a join! or select! ({branches} pending branches)"
        );
    }
    eprintln!(
        "{pending} of {pending} Pending polls' await trees match ground truth ({at_forks} in a join! or select!, whole trees: {branches} pending branches)"
    );
}

#[test]
fn every_pending_poll_of_a_multi_thread_runtime_carries_its_ground_truth_chain() {
    every_pending_poll_is_parked_at_its_ground_truth(
        Profile::ReleaseAwait,
        &["--cycles", "50", "--seconds", "1"],
    );
}

#[test]
fn every_pending_poll_in_a_join_or_select_carries_its_whole_tree_of_pending_branches() {
    every_pending_poll_is_parked_at_its_ground_truth(
        Profile::ReleaseAwait,
        &["--cycles", "50", "--seconds", "1", "--forks"],
    );
}

#[test]
fn every_pending_poll_in_a_fork_of_a_current_thread_runtime_carries_its_whole_tree() {
    every_pending_poll_is_parked_at_its_ground_truth(
        Profile::ReleaseAwait,
        &[
            "--cycles",
            "50",
            "--seconds",
            "1",
            "--forks",
            "--current-thread",
        ],
    );
}

#[test]
fn every_pending_poll_of_a_split_debuginfo_build_carries_its_chain_from_the_dwp() {
    every_pending_poll_is_parked_at_its_ground_truth(
        Profile::ReleaseAwaitDwp,
        &["--cycles", "50", "--seconds", "1"],
    );
}

#[test]
fn every_pending_poll_of_a_fat_lto_build_carries_its_ground_truth_tree() {
    every_pending_poll_is_parked_at_its_ground_truth(
        Profile::ReleaseAwaitLto,
        &["--cycles", "50", "--seconds", "1", "--forks"],
    );
}

#[test]
fn every_pending_poll_of_a_current_thread_runtime_carries_its_ground_truth_chain() {
    every_pending_poll_is_parked_at_its_ground_truth(
        Profile::ReleaseAwait,
        &["--cycles", "50", "--seconds", "1", "--current-thread"],
    );
}

/// Runs `tracer ARGS…` to completion: its stdout.
fn tracer_output(args: &[&str]) -> String {
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let output = Command::new(tracer)
        .args(args)
        .output()
        .expect("tracer runs");
    assert!(
        output.status.success(),
        "tracer {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every node of a `tree --json` forest, by task id.
fn tree_nodes(nodes: &[Value], out: &mut std::collections::BTreeMap<u64, Value>) {
    for node in nodes {
        out.insert(node["async_id"].as_u64().expect("async_id"), node.clone());
        tree_nodes(node["children"].as_array().map_or(&[], Vec::as_slice), out);
    }
}

#[test]
fn tasks_parked_when_the_session_ends_are_shown_at_their_ground_truth_tree_after_replay() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture =
        fixture_bin("await_points", Profile::ReleaseAwait).unwrap_or_else(|e| panic!("{e}"));
    // Enough cycles (1 ms sleeps, about 2 ms a cycle with --forks) that the
    // tracer attaches while they run, so each task's last Pending poll is seen.
    let parked = ParkedFixture::start(
        &fixture,
        &["--cycles", "1500", "--seconds", "60", "--forks"],
    );
    let recording = temp_path("parked-recording");
    let tracer = Command::new(tracer_bin().unwrap_or_else(|e| panic!("{e}")))
        .args(["record", "-p", &parked.pid().to_string(), "-o"])
        .arg(&recording)
        .arg("--force")
        .stderr(Stdio::piped())
        .spawn()
        .expect("tracer starts");
    parked.wait_parked();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
    let finished = tracer.wait_with_output().expect("tracer exits");
    assert!(
        finished.status.success(),
        "tracer record exited with {}:\n{}",
        finished.status,
        String::from_utf8_lossy(&finished.stderr)
    );
    let truth = final_trees(&parked.truth_text());
    parked.stop();
    assert_eq!(truth.len(), 7, "the fixture parks seven tasks with --forks");

    let path = recording.to_str().expect("temp paths are UTF-8");
    let tree: Value = serde_json::from_str(&tracer_output(&["tree", "--json", path]))
        .expect("tree --json is JSON");
    let mut nodes = std::collections::BTreeMap::new();
    for root in tree["roots"].as_array().expect("roots") {
        tree_nodes(root["children"].as_array().expect("children"), &mut nodes);
    }
    let stats: Value = serde_json::from_str(&tracer_output(&["stats", "--json", path]))
        .expect("stats --json is JSON");
    let rows: std::collections::BTreeMap<u64, Value> = stats["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|row| (row["async_id"].as_u64().expect("async_id"), row.clone()))
        .collect();
    let text = tracer_output(&["tree", path]);
    let _ = std::fs::remove_file(&recording);
    let mut forked = 0;
    for (id, expected) in &truth {
        let node = nodes
            .get(id)
            .unwrap_or_else(|| panic!("task {id} not in the tree"));
        let frames = node["awaiting"].as_array().map_or(&[][..], Vec::as_slice);
        assert_eq!(
            traced_tree(frames),
            *expected,
            "task {id} in the tree: {node}"
        );
        forked += usize::from(!expected.branches.is_empty());
        let parked_at = rows[id]["parked_at"].as_str().unwrap_or_default();
        let levels = expected
            .chain
            .iter()
            .chain(expected.branches.values().flatten());
        for (_, at) in levels {
            assert!(
                parked_at.contains(at.as_str()),
                "task {id}: stats says parked at {parked_at:?}, ground truth {expected:?}"
            );
        }
        assert!(
            text.lines()
                .any(|line| line.contains(&format!("#{id} ")) && line.contains(" parked at ")),
            "task {id} not shown parked in the text tree:\n{text}"
        );
    }
    assert_eq!(forked, 2, "two tasks park in a join! and a select!");
    eprintln!(
        "{} of {} tasks parked at the end ({forked} in a fork) are shown at their ground-truth tree after record and replay",
        truth.len(),
        truth.len()
    );
}
