//! The `awaiting` of every Pending poll's `after`, live: `tracer run --json` on
//! the `await_points` fixture (built with full type DWARF for the fixture crate
//! only), whose every `.await` writes (task id, depth, fn, file:line, leaf)
//! to the ground truth just before awaiting. At the return of a poll that did
//! not complete, the task's await chain is the last record of each depth up to
//! the deepest one written since, written before the poll returned; the
//! `after`'s chain must be exactly that, on both runtime flavours, for every
//! Pending poll of the fixture's tasks. Needs root and `cargo xtask build`.

use std::collections::BTreeMap;

use serde_json::Value;
use tracer_tests::{Privileges, Profile, fixture_bin, require_root, run_traced_with};

/// One level as the comparison sees it: (fn, at) of an `.await`, or ("", type)
/// of the leaf future.
type Level = (String, String);

/// One `await` record of the ground truth.
struct Await {
    ts_ns: u64,
    depth: usize,
    function: String,
    at: String,
    leaf: Option<String>,
}

/// Each task's `await` records, in the order written.
fn ground_truth_awaits(text: &str) -> BTreeMap<u64, Vec<Await>> {
    let mut awaits: BTreeMap<u64, Vec<Await>> = BTreeMap::new();
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).expect("ground truth is JSON lines");
        if record["event"] != "await" {
            continue;
        }
        awaits
            .entry(record["id"].as_u64().expect("await id"))
            .or_default()
            .push(Await {
                ts_ns: record["ts_ns"].as_u64().expect("await ts_ns"),
                depth: record["depth"].as_u64().expect("await depth") as usize,
                function: record["fn"].as_str().unwrap().to_owned(),
                at: record["at"].as_str().unwrap().to_owned(),
                leaf: record["leaf"].as_str().map(str::to_owned),
            });
    }
    awaits
}

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

/// The chain of a task at `ts_ns` from its records: the last record of each
/// depth up to the deepest written since, then the leaf.
fn chain_at(awaits: &[Await], ts_ns: u64) -> Vec<Level> {
    let mut stack: Vec<&Await> = Vec::new();
    for record in awaits.iter().take_while(|a| a.ts_ns < ts_ns) {
        stack.truncate(record.depth);
        stack.push(record);
    }
    let leaf = stack.last().and_then(|a| a.leaf.clone());
    let mut chain: Vec<Level> = stack
        .iter()
        .map(|a| (a.function.clone(), a.at.clone()))
        .collect();
    chain.extend(leaf.map(|leaf| (String::new(), leaf)));
    chain
}

/// An `after`'s chain as the comparison sees it: its `.await`s, and the last
/// frame when it is a future (combinators in between are not in the ground
/// truth).
fn traced_chain(frames: &[Value]) -> Vec<Level> {
    let mut chain: Vec<Level> = frames
        .iter()
        .filter(|f| f.get("at").is_some())
        .map(|f| {
            (
                f["fn"].as_str().unwrap().to_owned(),
                f["at"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    if let Some(future) = frames.last().and_then(|f| f["future"].as_str()) {
        chain.push((String::new(), future.to_owned()));
    }
    chain
}

/// Traces the fixture with `args` and compares the chain of every Pending
/// poll of its tasks with the ground truth.
fn every_pending_poll_is_parked_at_its_ground_truth(args: &[&str]) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture =
        fixture_bin("await_points", Profile::ReleaseAwait).unwrap_or_else(|e| panic!("{e}"));
    let run =
        run_traced_with(Privileges::Root, &[], &fixture, args).unwrap_or_else(|e| panic!("{e}"));
    assert!(run.status.success(), "{}", run.describe());
    assert!(
        run.stderr.contains("tracer: await chains: "),
        "no await chains announced:\n{}",
        run.stderr
    );
    let awaits = ground_truth_awaits(&run.ground_truth_text);
    assert_eq!(awaits.len(), 5, "the fixture has five tasks");
    let parked_ns = parked_at(&run.ground_truth_text);
    let mut pending = 0usize;
    let mut mismatches = Vec::new();
    let mut lines = 0usize;
    for line in run.stdout.lines() {
        let event: Value = serde_json::from_str(line).expect("tracer --json is JSON lines");
        if event["event"] != "after" || event["completed"] == true {
            continue;
        }
        let Some(task) = event["async_id"].as_u64().and_then(|id| awaits.get(&id)) else {
            continue;
        };
        let ts_ns = event["ts_ns"].as_u64().expect("after ts_ns");
        if ts_ns > parked_ns {
            continue;
        }
        lines += 1;
        let expected = chain_at(task, ts_ns);
        if expected.is_empty() {
            // A poll before the task's first await record cannot be judged.
            continue;
        }
        pending += 1;
        let got = event["awaiting"]
            .as_array()
            .map(|frames| traced_chain(frames));
        if got.as_ref() != Some(&expected) && mismatches.len() < 20 {
            mismatches.push(format!(
                "task {} at {ts_ns}: traced {}, ground truth {expected:?}",
                event["async_id"], event["awaiting"]
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} Pending polls, chains differ (first 20):\n{}",
        pending,
        mismatches.join("\n")
    );
    assert!(
        pending >= 5 * 20,
        "only {pending} of {lines} Pending polls judged"
    );
    eprintln!("{pending} of {pending} Pending polls' await chains match ground truth");
}

#[test]
fn every_pending_poll_of_a_multi_thread_runtime_carries_its_ground_truth_chain() {
    every_pending_poll_is_parked_at_its_ground_truth(&["--cycles", "50", "--seconds", "1"]);
}

#[test]
fn every_pending_poll_of_a_current_thread_runtime_carries_its_ground_truth_chain() {
    every_pending_poll_is_parked_at_its_ground_truth(&[
        "--cycles",
        "50",
        "--seconds",
        "1",
        "--current-thread",
    ]);
}
