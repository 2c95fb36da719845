//! Spawn locations and names against ground truth: each fixture's
//! `on_task_spawn` records Tokio's `spawned_at()`, which the tracer's `location`
//! on that task's `init` must equal exactly; a location the tracer cannot know
//! must be `null`, never another one. Needs root (BPF) and the fixture builds.

use std::collections::BTreeMap;

use serde_json::Value;
use tracer_tests::{Profile, fixture_bin, require_root, run_traced};

/// (matched, missing, wrong) locations, and the wrong ones described.
fn compare_locations(name: &str, profile: Profile) -> (usize, usize, Vec<String>) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin(name, profile).unwrap_or_else(|e| panic!("{e}"));
    let run = run_traced(&fixture, &[]).unwrap_or_else(|e| panic!("{name} ({profile:?}): {e}"));
    assert!(run.status.success(), "{}", run.describe());
    let truth: BTreeMap<u64, String> = run
        .ground_truth_text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record["event"] == "spawn")
        .filter_map(|record| {
            Some((
                record["id"].as_u64()?,
                record["location"].as_str()?.to_owned(),
            ))
        })
        .collect();
    assert!(
        !truth.is_empty(),
        "{name} ({profile:?}): no spawn in the ground truth"
    );
    let traced: BTreeMap<u64, Option<String>> = run
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["event"] == "init")
        .filter_map(|event| {
            Some((
                event["async_id"].as_u64()?,
                event["location"].as_str().map(str::to_owned),
            ))
        })
        .collect();
    let (mut matched, mut missing, mut wrong) = (0, 0, Vec::new());
    for (id, expected) in &truth {
        match traced.get(id) {
            Some(Some(location)) if location == expected => matched += 1,
            Some(None) => missing += 1,
            other => wrong.push(format!("task {id}: expected {expected}, traced {other:?}")),
        }
    }
    eprintln!(
        "{name} ({profile:?}): locations matched {matched}/{}, {missing} null",
        truth.len()
    );
    (matched, missing, wrong)
}

#[test]
fn debug_builds_locate_every_spawn_exactly() {
    for name in ["multi_thread", "current_thread"] {
        let (matched, missing, wrong) = compare_locations(name, Profile::Debug);
        assert!(wrong.is_empty(), "{name}: {wrong:#?}");
        assert_eq!(missing, 0, "{name}: {missing} spawns without location");
        assert!(matched > 0);
    }
}

#[test]
fn release_builds_never_give_a_wrong_location() {
    for name in ["multi_thread", "current_thread"] {
        let (matched, _, wrong) = compare_locations(name, Profile::Release);
        assert!(wrong.is_empty(), "{name}: {wrong:#?}");
        assert!(matched > 0, "{name}: no spawn located");
    }
}
