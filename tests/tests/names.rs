//! Spawn locations and names against ground truth: each fixture's
//! `on_task_spawn` records Tokio's `spawned_at()`, which the tracer's `location`
//! on that task's `init` must equal exactly; a location the tracer cannot know
//! must be `null`, never another one. Likewise each future the fixtures spawn
//! through `spawn_typed` has its `type_name` recorded, and the tracer's `name` on
//! that task must be it, written the way users read it (rules below, written
//! here independently of the tracer's); a task the tracer cannot name must be
//! `null`, for the one reason it may have (the linker folded its drop glue).
//! Needs root (BPF) and the fixture builds.

use std::collections::BTreeMap;

use serde_json::Value;
use tracer_tests::{
    Privileges, Profile, expected_task_name, fixture_bin, ground_truth_future_types,
    ground_truth_polls, require_root, run_traced, run_traced_with,
};

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

/// Why the tracer may leave a task unnamed in these tests: the linker folded
/// identical drop glue of different futures (release builds).
const FOLDED: &str = "folded";

/// Per fixture and profile: tasks whose future type the fixture recorded, how
/// many of them the tracer named (all rightly), how many it left unnamed, and
/// the wrong ones described.
struct NameReport {
    truth: usize,
    named: usize,
    unnamed: usize,
    wrong: Vec<String>,
}

fn compare_names(fixture_name: &str, profile: Profile) -> NameReport {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin(fixture_name, profile).unwrap_or_else(|e| panic!("{e}"));
    let label = format!("{fixture_name} ({profile:?})");
    let run = run_traced(&fixture, &[]).unwrap_or_else(|e| panic!("{label}: {e}"));
    assert!(run.status.success(), "{}", run.describe());
    let truth = ground_truth_future_types(&run.ground_truth_text);
    assert!(
        !truth.is_empty(),
        "{label}: no future_type in the ground truth"
    );
    let inits: Vec<_> = run
        .tracer
        .events
        .iter()
        .filter(|event| event.event == tracer_tests::HookKind::Init)
        .collect();
    let traced: BTreeMap<u64, Option<String>> = inits
        .iter()
        .map(|event| (event.async_id, event.name.clone()))
        .collect();
    let mut report = NameReport {
        truth: truth.len(),
        named: 0,
        unnamed: 0,
        wrong: Vec::new(),
    };
    for (id, type_name) in &truth {
        let expected = expected_task_name(type_name);
        match traced.get(id) {
            Some(Some(name)) if *name == expected => report.named += 1,
            Some(None) => report.unnamed += 1,
            other => report.wrong.push(format!(
                "task {id} ({type_name}): expected {expected}, traced {other:?}"
            )),
        }
    }
    // Every unnamed task is counted in the summary, and only for the folding reason.
    let unnamed_inits = inits.iter().filter(|event| event.name.is_none()).count();
    let reasons: Vec<(usize, &str)> = run
        .stderr
        .lines()
        .filter_map(|line| {
            let (count, reason) = line
                .trim_start_matches("tracer:")
                .trim()
                .split_once(" unnamed: ")?;
            Some((count.parse().ok()?, reason))
        })
        .collect();
    let counted: usize = reasons.iter().map(|(count, _)| count).sum();
    assert_eq!(
        counted, unnamed_inits,
        "{label}: the summary counts {counted} unnamed tasks, the output has {unnamed_inits}:\n{}",
        run.stderr
    );
    for (count, reason) in &reasons {
        assert!(
            reason.contains(FOLDED),
            "{label}: {count} tasks unnamed for a reason other than folding: {reason}"
        );
    }
    let methods = run
        .stderr
        .lines()
        .find_map(|line| line.strip_prefix("tracer: names: "))
        .unwrap_or("(no naming line)");
    eprintln!(
        "{label}: names matched {}/{} typed tasks, {} unnamed (linker folding), {} wrong; \
         {} of {} tasks named in all; {methods}",
        report.named,
        report.truth,
        report.unnamed,
        report.wrong.len(),
        inits.len() - unnamed_inits,
        inits.len()
    );
    report
}

#[test]
fn debug_builds_name_every_task_exactly() {
    for name in ["multi_thread", "current_thread"] {
        let report = compare_names(name, Profile::Debug);
        assert!(report.wrong.is_empty(), "{name}: {:#?}", report.wrong);
        assert_eq!(report.unnamed, 0, "{name}: tasks left unnamed");
        assert_eq!(report.named, report.truth);
    }
}

#[test]
fn release_builds_with_line_tables_name_every_task_exactly() {
    // `debug = "line-tables-only"` keeps DWARF's names of every `poll<T, S>`.
    for name in ["multi_thread", "current_thread"] {
        let report = compare_names(name, Profile::Release);
        assert!(report.wrong.is_empty(), "{name}: {:#?}", report.wrong);
        assert_eq!(report.unnamed, 0, "{name}: tasks left unnamed");
        assert_eq!(report.named, report.truth);
    }
}

#[test]
fn release_builds_without_debug_info_never_give_a_wrong_name() {
    // Symbols only: the drop glue names the tasks, except where the linker
    // folded it for several future types and nothing tells them apart.
    for name in ["multi_thread", "current_thread"] {
        let report = compare_names(name, Profile::ReleaseNoDebuginfo);
        assert!(report.wrong.is_empty(), "{name}: {:#?}", report.wrong);
        assert!(report.named > 0, "{name}: no task named");
        assert_eq!(report.named + report.unnamed, report.truth);
    }
}

/// `--task GLOB` with a glob made from the fixture's most common future type:
/// only the tasks whose name matches are reported, each with all its polls
/// (as Tokio's hooks counted them) and its trigger when the trigger is reported
/// too, and only their poll sites are probed.
#[test]
fn task_glob_reports_only_matching_tasks_with_their_ground_truth_events() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("multi_thread", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    // Which name to ask for: the one most tasks have in an unfiltered run.
    let all = run_traced(&fixture, &[]).unwrap_or_else(|e| panic!("{e}"));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for type_name in ground_truth_future_types(&all.ground_truth_text).values() {
        *counts.entry(expected_task_name(type_name)).or_default() += 1;
    }
    let (name, _) = counts
        .iter()
        .max_by_key(|(_, count)| **count)
        .expect("typed tasks");
    let glob = format!("{}*", name);
    let run = run_traced_with(Privileges::Root, &["--task", &glob], &fixture, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(run.status.success(), "{}", run.describe());
    let types = ground_truth_future_types(&run.ground_truth_text);
    let expected: BTreeMap<u64, u64> = ground_truth_polls(&run.ground_truth)
        .into_iter()
        .filter(|(id, _)| {
            types
                .get(id)
                .is_some_and(|ty| expected_task_name(ty).starts_with(name.as_str()))
        })
        .collect();
    assert!(expected.len() > 1, "{glob}: too few tasks to test");
    let per_task = run.tracer.per_task();
    let reported: Vec<u64> = per_task.keys().copied().collect();
    assert_eq!(
        reported,
        expected.keys().copied().collect::<Vec<_>>(),
        "{glob}: the tasks reported"
    );
    for (id, polls) in &expected {
        let events = &per_task[id];
        let befores = events
            .iter()
            .filter(|e| e.event == tracer_tests::HookKind::Before)
            .count() as u64;
        assert_eq!(befores, *polls, "task {id}: polls");
        let init = events
            .iter()
            .find(|e| e.event == tracer_tests::HookKind::Init)
            .unwrap();
        let parent = run.ground_truth.tasks[id].parent;
        let expected_trigger = parent.filter(|parent| expected.contains_key(parent));
        assert_eq!(init.trigger_id, expected_trigger, "task {id}: trigger");
        assert!(
            init.name
                .as_deref()
                .is_some_and(|n| n.starts_with(name.as_str())),
            "{init:?}"
        );
    }
    let probed = |stderr: &str| -> usize {
        let line = stderr
            .lines()
            .find(|line| line.contains("probe sites attached in"))
            .expect("the attach line");
        let at = line.find(" poll,").expect("a poll count");
        line[..at].rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (filtered, unfiltered) = (probed(&run.stderr), probed(&all.stderr));
    assert!(
        filtered > 0 && filtered < unfiltered,
        "--task probes {filtered} poll sites of {unfiltered}"
    );
    assert!(
        run.stderr
            .contains(&format!("{} tasks reported", expected.len())),
        "{}",
        run.stderr
    );
    eprintln!(
        "--task '{glob}': {} tasks reported, as ground truth says; {filtered} of {unfiltered} poll sites probed",
        expected.len()
    );
}
