//! Unit tests of the comparison itself, on small hand-made inputs (no root needed).

use super::*;
use serde_json::json;

/// Ground truth of a tiny app: a runtime blocking task (1), a parent task (3) with
/// a child (4), a spawn_blocking task (5), a local task (6), a leaked task (7) and
/// a task cancelled at shutdown (8).
fn gt_lines(runtime_dropped: bool) -> String {
    let mut v = vec![
        json!({"event":"spawn","id":3,"parent":null,"tid":10}),
        json!({"event":"poll_start","id":3,"tid":11}),
        json!({"event":"spawn","id":4,"parent":3,"tid":11}),
        json!({"event":"spawn_blocking","id":5,"parent":3,"tid":11}),
        json!({"event":"poll_end","id":3,"tid":11}),
        json!({"event":"poll_start","id":5,"tid":13,"src":"app"}),
        json!({"event":"poll_end","id":5,"tid":13,"src":"app"}),
        json!({"event":"terminate","id":5,"tid":13}),
        json!({"event":"poll_start","id":4,"tid":12}),
        json!({"event":"terminate","id":4,"tid":12}),
        json!({"event":"poll_end","id":4,"tid":12}),
        json!({"event":"poll_start","id":3,"tid":12}),
        json!({"event":"terminate","id":3,"tid":12}),
        json!({"event":"poll_end","id":3,"tid":12}),
        json!({"event":"spawn_local","id":6,"parent":null,"tid":10}),
        json!({"event":"poll_start","id":6,"tid":10,"src":"app"}),
        json!({"event":"poll_end","id":6,"tid":10,"src":"app"}),
        json!({"event":"terminate","id":6,"tid":10,"src":"app"}),
        json!({"event":"spawn","id":7,"parent":null,"tid":10}),
        json!({"event":"poll_start","id":7,"tid":11}),
        json!({"event":"terminate","id":7,"tid":11}),
        json!({"event":"poll_end","id":7,"tid":11}),
        json!({"event":"leaked","id":7}),
        json!({"event":"spawn","id":8,"parent":null,"tid":10}),
        json!({"event":"poll_start","id":8,"tid":11}),
        json!({"event":"poll_end","id":8,"tid":11}),
    ];
    if runtime_dropped {
        v.push(json!({"event":"terminate","id":8,"tid":11}));
        v.push(json!({"event":"terminate","id":1,"tid":11}));
    }
    v.push(json!({"event":"end","runtime_dropped":runtime_dropped}));
    v.iter().map(|x| x.to_string() + "\n").collect()
}

fn init(id: u64, ty: &str, trigger: u64, tid: i64) -> serde_json::Value {
    json!({"event":"init","async_id":id,"type":ty,"trigger_id":trigger,"existing":false,"pid":9,"tid":tid})
}

fn ev(kind: &str, id: u64, tid: i64) -> serde_json::Value {
    json!({"event":kind,"async_id":id,"pid":9,"tid":tid})
}

fn after(id: u64, tid: i64, completed: bool) -> serde_json::Value {
    json!({"event":"after","async_id":id,"pid":9,"tid":tid,"completed":completed})
}

/// The tracer output that matches `gt_lines(runtime_dropped)` exactly.
fn tracer_events(runtime_dropped: bool) -> Vec<serde_json::Value> {
    let mut v = vec![
        init(1, "tokio.blocking", 0, 10),
        ev("before", 1, 11),
        init(3, "tokio.task", 0, 10),
        ev("before", 3, 11),
        init(4, "tokio.task", 3, 11),
        init(5, "tokio.blocking", 3, 11),
        after(3, 11, false),
        ev("before", 5, 13),
        ev("resolve", 5, 13),
        after(5, 13, true),
        ev("destroy", 5, 13),
        ev("before", 4, 12),
        ev("resolve", 4, 12),
        after(4, 12, true),
        ev("destroy", 4, 12),
        ev("before", 3, 12),
        ev("resolve", 3, 12),
        after(3, 12, true),
        ev("destroy", 3, 12),
        init(6, "tokio.local", 0, 10),
        ev("before", 6, 10),
        ev("resolve", 6, 10),
        after(6, 10, true),
        ev("destroy", 6, 10),
        init(7, "tokio.task", 0, 10),
        ev("before", 7, 11),
        ev("resolve", 7, 11),
        after(7, 11, true),
        init(8, "tokio.task", 0, 10),
        ev("before", 8, 11),
        after(8, 11, false),
    ];
    if runtime_dropped {
        v.extend([
            ev("resolve", 8, 11),
            ev("destroy", 8, 11),
            ev("resolve", 1, 11),
            after(1, 11, true),
            ev("destroy", 1, 11),
        ]);
    } else {
        // The runtime's blocking task never ends when the runtime is not dropped,
        // and ground truth then never hears of it: leave it out.
        v.retain(|e| e["async_id"] != 1);
    }
    // Timestamps in output order.
    for (i, e) in v.iter_mut().enumerate() {
        e["ts_ns"] = json!(1000 + i as u64);
    }
    v
}

fn text(v: &[serde_json::Value]) -> String {
    v.iter().map(|x| x.to_string() + "\n").collect()
}

fn run(gt: &str, tr: &[serde_json::Value]) -> Vec<String> {
    let gt = GroundTruth::parse(gt).unwrap();
    let tr = TracerOutput::parse(&text(tr)).unwrap();
    compare(&gt, &tr)
}

fn assert_caught(m: &[String], needle: &str) {
    assert!(
        m.iter().any(|x| x.contains(needle)),
        "expected a mismatch containing {needle:?}, got:\n{}",
        m.join("\n")
    );
}

fn modified(f: impl FnOnce(&mut Vec<serde_json::Value>)) -> Vec<String> {
    let mut tr = tracer_events(true);
    f(&mut tr);
    run(&gt_lines(true), &tr)
}

fn set(v: &mut [serde_json::Value], kind: &str, id: u64, field: &str, val: serde_json::Value) {
    let i = pos(v, kind, id);
    v[i][field] = val;
}

fn pos(v: &[serde_json::Value], kind: &str, id: u64) -> usize {
    v.iter()
        .position(|e| e["event"] == kind && e["async_id"] == id)
        .unwrap()
}

#[test]
fn ground_truth_parses_into_tasks_with_kinds() {
    let gt = GroundTruth::parse(&gt_lines(true)).unwrap();
    assert_eq!(gt.end, Some(true));
    assert_eq!(gt.tasks[&1].kind, TaskKind::RuntimeBlocking);
    assert_eq!(gt.tasks[&1].poll_start_tids, vec![11]);
    assert_eq!(gt.tasks[&3].parent, None);
    assert_eq!(gt.tasks[&4].parent, Some(3));
    assert_eq!(gt.tasks[&5].kind, TaskKind::Blocking);
    assert_eq!(gt.tasks[&6].kind, TaskKind::Local);
    assert!(gt.tasks[&7].leaked);
    assert_eq!(gt.tasks[&3].poll_start_tids, vec![11, 12]);
}

#[test]
fn matching_run_with_dropped_runtime_has_no_mismatch() {
    let m = run(&gt_lines(true), &tracer_events(true));
    assert!(m.is_empty(), "{}", m.join("\n"));
}

#[test]
fn matching_run_without_runtime_drop_has_no_mismatch() {
    let m = run(&gt_lines(false), &tracer_events(false));
    assert!(m.is_empty(), "{}", m.join("\n"));
}

#[test]
fn missing_task_is_caught() {
    let m = modified(|v| v.retain(|e| e["async_id"] != 4));
    assert_caught(&m, "never reported by the tracer: [4]");
}

#[test]
fn invented_task_is_caught() {
    let m = modified(|v| {
        let mut e = init(99, "tokio.task", 0, 10);
        e["ts_ns"] = json!(9999);
        v.push(e);
    });
    assert_caught(&m, "unknown to ground truth: [99]");
}

#[test]
fn wrong_trigger_is_caught() {
    let m = modified(|v| set(v, "init", 4, "trigger_id", json!(0)));
    assert_caught(&m, "task 4: trigger_id Some(0)");
}

#[test]
fn null_trigger_for_task_spawned_outside_tasks_is_caught() {
    let m = modified(|v| set(v, "init", 3, "trigger_id", json!(null)));
    assert_caught(&m, "task 3: trigger_id None");
}

#[test]
fn missing_poll_is_caught() {
    let m = modified(|v| {
        let b = pos(v, "before", 3);
        v.remove(b);
        let a = pos(v, "after", 3);
        v.remove(a);
    });
    assert_caught(
        &m,
        "task 3: 1 before / 1 after, ground truth 2 poll_start / 2 poll_end",
    );
}

#[test]
fn poll_on_wrong_thread_is_caught() {
    let m = modified(|v| {
        let b = pos(v, "before", 3);
        v[b]["tid"] = json!(12);
    });
    assert_caught(&m, "task 3: before tids [12, 12]");
}

#[test]
fn missing_resolve_is_caught() {
    let m = modified(|v| {
        let r = pos(v, "resolve", 8);
        v.remove(r);
    });
    assert_caught(&m, "task 8: 0 resolve events, expected 1");
}

#[test]
fn resolve_of_pending_task_is_caught() {
    let mut tr = tracer_events(false);
    let n = tr.len();
    tr.push(json!({"event":"resolve","async_id":8,"pid":9,"tid":11,"ts_ns":1000 + n}));
    let m = run(&gt_lines(false), &tr);
    assert_caught(&m, "task 8: 1 resolve events, expected 0");
}

#[test]
fn destroy_of_never_terminated_task_is_caught() {
    let mut tr = tracer_events(false);
    let n = tr.len();
    tr.push(json!({"event":"destroy","async_id":8,"pid":9,"tid":11,"ts_ns":1000 + n}));
    let m = run(&gt_lines(false), &tr);
    assert_caught(&m, "never terminated (runtime not dropped)");
}

#[test]
fn missing_destroy_after_runtime_drop_is_caught() {
    let m = modified(|v| {
        let d = pos(v, "destroy", 3);
        v.remove(d);
    });
    assert_caught(&m, "task 3: 0 destroy events, expected 1");
}

#[test]
fn destroy_of_leaked_task_is_caught() {
    let m =
        modified(|v| v.push(json!({"event":"destroy","async_id":7,"pid":9,"tid":10,"ts_ns":5000})));
    assert_caught(&m, "task 7: leaked JoinHandle, yet 1 destroy");
}

#[test]
fn wrong_type_is_caught() {
    let m = modified(|v| {
        set(v, "init", 5, "type", json!("tokio.task"));
        set(v, "init", 6, "type", json!("tokio.task"));
    });
    assert_caught(
        &m,
        "task 5 (Blocking): type Some(\"tokio.task\"), expected \"tokio.blocking\"",
    );
    assert_caught(
        &m,
        "task 6 (Local): type Some(\"tokio.task\"), expected \"tokio.local\"",
    );
}

#[test]
fn event_before_init_is_caught() {
    let m = modified(|v| {
        let i = pos(v, "init", 4);
        let e = v.remove(i);
        let d = pos(v, "destroy", 4);
        v.insert(d + 1, e);
    });
    assert_caught(&m, "task 4: first event is Some(Before), not init");
    assert_caught(&m, "task 4: Init after destroy");
}

#[test]
fn poll_after_resolve_is_caught() {
    let m = modified(|v| {
        let r = pos(v, "resolve", 3);
        let e = v.remove(r);
        let b = v
            .iter()
            .rposition(|e| e["event"] == "before" && e["async_id"] == 3)
            .unwrap();
        v.insert(b - 1, e);
    });
    assert_caught(&m, "task 3: poll starts after resolve");
}

#[test]
fn unbalanced_polls_are_caught() {
    let m = modified(|v| {
        let a = pos(v, "after", 3);
        v.remove(a);
    });
    assert_caught(&m, "task 3: 2 before / 1 after");
}

#[test]
fn timestamps_going_backwards_are_caught() {
    let m = modified(|v| {
        let d = pos(v, "destroy", 3);
        v[d]["ts_ns"] = json!(1);
    });
    assert_caught(&m, "task 3: event #");
}

#[test]
fn completed_on_a_poll_that_is_not_last_is_caught() {
    let m = modified(|v| {
        let a = pos(v, "after", 3);
        v[a]["completed"] = json!(true);
    });
    assert_caught(&m, "task 3: 2 polls report completed=true");
}

#[test]
fn existing_task_in_a_full_run_is_caught() {
    let m = modified(|v| {
        let i = pos(v, "init", 4);
        v[i]["existing"] = json!(true);
        v[i]["trigger_id"] = json!(null);
    });
    assert_caught(&m, "task 4: init has existing=Some(true), expected false");
}

#[test]
fn missing_end_record_is_caught() {
    let gt: String = gt_lines(true)
        .lines()
        .filter(|l| !l.contains("\"end\""))
        .map(|l| format!("{l}\n"))
        .collect();
    let m = run(&gt, &tracer_events(true));
    assert_caught(&m, "no end record");
}

#[test]
fn malformed_lines_are_errors() {
    assert!(GroundTruth::parse("{\"event\":\"spawn\",\"id\":1}\n").is_err());
    assert!(TracerOutput::parse("not json\n").is_err());
    assert!(TracerOutput::parse("{\"event\":\"before\",\"async_id\":1}\n").is_err());
    let other = TracerOutput::parse("{\"event\":\"lost\",\"count\":3}\n").unwrap();
    assert_eq!(other.other.len(), 1);
}

/// Tracer output for an attach after task 3's first poll: tasks 1 and 3 are
/// existing (first seen later), the rest fresh.
fn attached_events() -> Vec<serde_json::Value> {
    let mut v = tracer_events(true);
    // Drop task 3's init and first poll: they happened before attach.
    for kind in ["init", "before", "after"] {
        let i = pos(&v, kind, 3);
        v.remove(i);
    }
    v.retain(|e| {
        !(e["async_id"] == 1
            && e["event"] != "resolve"
            && e["event"] != "after"
            && e["event"] != "destroy")
    });
    // Task 3 is first seen at its second poll; task 1 at its end.
    let b3 = v
        .iter()
        .position(|e| e["event"] == "before" && e["async_id"] == 3)
        .unwrap();
    v.insert(b3, json!({"event":"init","async_id":3,"type":"tokio.task","trigger_id":null,"existing":true,"pid":9,"tid":12}));
    let r1 = pos(&v, "resolve", 1);
    v.insert(r1, json!({"event":"init","async_id":1,"type":"tokio.task","trigger_id":null,"existing":true,"pid":9,"tid":11}));
    // Task 4's spawn (inside task 3's first poll) happened before attach too.
    let i4 = pos(&v, "init", 4);
    v[i4]["existing"] = json!(true);
    v[i4]["trigger_id"] = json!(null);
    for (i, e) in v.iter_mut().enumerate() {
        e["ts_ns"] = json!(1000 + i as u64);
    }
    v
}

fn gt_with_times() -> GroundTruth {
    // Ground truth spawn times: tasks 3 and 4 before attach (ts 0), others after.
    let mut gt = GroundTruth::parse(&gt_lines(true)).unwrap();
    for (id, t) in gt.tasks.iter_mut() {
        t.spawn_ts = if *id <= 4 { 0 } else { 5000 };
    }
    gt
}

#[test]
fn attached_run_matching_ground_truth_has_no_mismatch() {
    let tr = TracerOutput::parse(&text(&attached_events())).unwrap();
    let m = compare_attached(&gt_with_times(), &tr);
    assert!(m.is_empty(), "{}", m.join("\n"));
}

#[test]
fn attached_existing_task_with_trigger_is_caught() {
    let mut v = attached_events();
    let i = pos(&v, "init", 3);
    v[i]["trigger_id"] = json!(0);
    let m = compare_attached(&gt_with_times(), &TracerOutput::parse(&text(&v)).unwrap());
    assert_caught(
        &m,
        "task 3: existing task with trigger_id Some(0), expected null",
    );
}

#[test]
fn attached_invented_task_is_caught() {
    let mut v = attached_events();
    v.push(json!({"event":"init","async_id":77,"type":"tokio.task","trigger_id":null,"existing":true,"pid":9,"tid":11,"ts_ns":9999}));
    let m = compare_attached(&gt_with_times(), &TracerOutput::parse(&text(&v)).unwrap());
    assert_caught(
        &m,
        "task 77: reported by the tracer but unknown to ground truth (invented)",
    );
}

#[test]
fn attached_fresh_task_reported_as_existing_is_caught() {
    let mut v = attached_events();
    let i = pos(&v, "init", 8);
    v[i]["existing"] = json!(true);
    v[i]["trigger_id"] = json!(null);
    let m = compare_attached(&gt_with_times(), &TracerOutput::parse(&text(&v)).unwrap());
    assert_caught(&m, "task 8: spawned after attach");
}

#[test]
fn attached_fresh_task_with_wrong_polls_is_caught() {
    let mut v = attached_events();
    let b = pos(&v, "before", 8);
    v[b]["tid"] = json!(99);
    let m = compare_attached(&gt_with_times(), &TracerOutput::parse(&text(&v)).unwrap());
    assert_caught(&m, "task 8: before tids [99]");
}

#[test]
fn report_lists_every_mismatch() {
    let r = report("x", &["a".into(), "b".into()]);
    assert!(r.contains("2 mismatch") && r.contains("  - a\n") && r.contains("  - b\n"));
}

/// `gt_lines(true)` as a Tokio without poll hooks writes it: a `hooks` record
/// saying so first, and no poll records for ordinary tasks.
fn gt_lines_without_poll_hooks() -> String {
    let mut lines = vec![json!({"event":"hooks","task_polls":false}).to_string() + "\n"];
    lines.extend(
        gt_lines(true)
            .lines()
            .filter(|l| !l.contains("\"poll_") || l.contains("\"src\":\"app\""))
            .map(|l| l.to_string() + "\n"),
    );
    lines.concat()
}

#[test]
fn without_poll_hooks_ordinary_task_polls_are_not_compared() {
    let gt = GroundTruth::parse(&gt_lines_without_poll_hooks()).unwrap();
    assert!(!gt.task_polls);
    assert!(gt.tasks[&3].poll_start_tids.is_empty());
    let tr = TracerOutput::parse(&text(&tracer_events(true))).unwrap();
    let m = compare(&gt, &tr);
    assert!(m.is_empty(), "{}", m.join("\n"));
}

#[test]
fn without_poll_hooks_everything_else_is_still_compared() {
    let gt = gt_lines_without_poll_hooks();
    // A wrong trigger of an ordinary task.
    let mut tr = tracer_events(true);
    set(&mut tr, "init", 4, "trigger_id", json!(0));
    assert_caught(&run(&gt, &tr), "task 4: trigger_id");
    // A missing poll of a spawn_blocking task, whose polls the app records.
    let mut tr = tracer_events(true);
    let i = pos(&tr, "before", 5);
    tr.remove(i);
    let i = tr
        .iter()
        .position(|e| e["event"] == "after" && e["async_id"] == 5)
        .unwrap();
    tr.remove(i);
    assert_caught(&run(&gt, &tr), "task 5: 0 before");
}

#[test]
fn block_in_place_launcher_gets_the_calling_task_as_parent() {
    let lines = [
        json!({"event":"spawn","id":3,"parent":null,"tid":10}),
        json!({"event":"block_in_place_start","id":3,"tid":11}),
        json!({"event":"block_in_place_end","id":3,"tid":11}),
        json!({"event":"spawn","id":5,"parent":null,"tid":10}),
        // Known only from `terminate`: 1 (a launcher from before) and 4 (the one
        // `block_in_place` started, between ids 3 and 5).
        json!({"event":"terminate","id":4,"tid":12}),
        json!({"event":"terminate","id":1,"tid":11}),
        json!({"event":"end","runtime_dropped":true}),
    ];
    let gt = GroundTruth::parse(&text(&lines)).unwrap();
    assert_eq!(gt.tasks[&4].kind, TaskKind::RuntimeBlocking);
    assert_eq!(gt.tasks[&4].parent, Some(3));
    assert_eq!(gt.tasks[&1].parent, None);
    assert_eq!(gt.tasks[&5].parent, None);
}

#[test]
fn expected_task_names_follow_the_documented_rules() {
    assert_eq!(
        expected_task_name("app::handle::{{closure}}"),
        "app::handle"
    );
    assert_eq!(
        expected_task_name("app::main::{{closure}}::{{closure}}"),
        "app::main::{closure}"
    );
    assert_eq!(
        expected_task_name(
            "core::pin::Pin<alloc::boxed::Box<app::big::{{closure}}, alloc::alloc::Global>>"
        ),
        "app::big"
    );
    assert_eq!(
        expected_task_name("core::future::pending::Pending<()>"),
        "core::future::pending::Pending<()>"
    );
    assert_eq!(
        expected_task_name("app::Wrap<app::main::{{closure}}::{{closure}}, u8>::{{closure}}"),
        "app::Wrap<app::main::{closure}, u8>"
    );
}
