//! Wake ground truth: the fixtures' logged wakes (`wake {id, waker}` from tasks
//! spawned with `spawn_wake_logged`, `yields {id, count}`) and Tokio's own
//! `schedule_latency` in `poll_start`, against the tracer's `wake` events and
//! `before`'s `sched_ns`.
//!
//! A logged waker is `task::try_id()` at the wake. Inside a runtime worker but
//! outside any user task that is the worker's launcher (a runtime blocking task):
//! the tracer reports no waker there (0), as outside any task.

use super::*;
use std::collections::HashMap;

/// A tracer `wake` line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct WakeLine {
    async_id: u64,
    waker_id: Option<u64>,
    #[serde(rename = "self")]
    self_wake: bool,
}

/// A tracer `before` line's wait.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct BeforeLine {
    async_id: u64,
    sched_ns: Option<u64>,
    ts_ns: u64,
}

/// What the ground truth says about wakes and waits.
#[derive(Debug, Default)]
pub struct WakeTruth {
    /// Tasks whose every wake is logged.
    pub logged: BTreeSet<u64>,
    /// (woken, waker) of every logged wake, the waker 0 outside user tasks.
    pub edges: BTreeMap<(u64, u64), usize>,
    /// `yield_now` calls per task.
    pub yields: BTreeMap<u64, u64>,
    /// Tokio's schedule latency of each hook-recorded poll, per task, in order.
    pub sched: BTreeMap<u64, Vec<Wait>>,
}

/// One poll's wait: how long, and when the poll was seen to start (Tokio's
/// poll-start hook, or the tracer's `before`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// The wait, in ns.
    pub sched_ns: u64,
    /// When the poll started, in ns of `CLOCK_MONOTONIC`.
    pub polled_at: u64,
}

impl Wait {
    /// When the wait began.
    pub fn queued_at(&self) -> u64 {
        self.polled_at.saturating_sub(self.sched_ns)
    }
}

#[derive(Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Record {
    Wake {
        id: u64,
        waker: Option<u64>,
    },
    WakeLogged {
        id: u64,
    },
    Yields {
        id: u64,
        count: u64,
    },
    PollStart {
        id: u64,
        sched_ns: Option<u64>,
        ts_ns: u64,
    },
    #[serde(other)]
    Other,
}

impl WakeTruth {
    /// Reads the wake records of a ground-truth file; `truth` (the same file,
    /// folded) says which tasks are the runtime's own.
    pub fn parse(text: &str, truth: &GroundTruth) -> Result<Self, String> {
        let runtime = |id: u64| {
            truth
                .tasks
                .get(&id)
                .is_some_and(|t| t.kind == TaskKind::RuntimeBlocking)
        };
        let mut out = Self::default();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record: Record = serde_json::from_str(line)
                .map_err(|e| format!("ground truth line {}: {e}: {line}", n + 1))?;
            match record {
                Record::Wake { id, waker } => {
                    let waker = waker.filter(|w| !runtime(*w)).unwrap_or(0);
                    *out.edges.entry((id, waker)).or_default() += 1;
                }
                Record::WakeLogged { id } => {
                    out.logged.insert(id);
                }
                Record::Yields { id, count } => {
                    out.yields.insert(id, count);
                }
                Record::PollStart {
                    id,
                    sched_ns: Some(sched_ns),
                    ts_ns,
                } => out.sched.entry(id).or_default().push(Wait {
                    sched_ns,
                    polled_at: ts_ns,
                }),
                Record::PollStart { sched_ns: None, .. } | Record::Other => {}
            }
        }
        Ok(out)
    }

    /// Logged wakes in all.
    pub fn wakes(&self) -> usize {
        self.edges.values().sum()
    }
}

/// How the tracer's wakes and waits compare with the ground truth.
#[derive(Debug, Default)]
pub struct WakeComparison {
    /// Logged wakes the tracer reported with the same (woken, waker).
    pub edges_matched: usize,
    /// Logged wakes in all.
    pub edges_logged: usize,
    /// Polls with a Tokio schedule latency.
    pub polls: usize,
    /// Of those, the tracer's wait began within the tolerance of Tokio's.
    pub within: usize,
    /// Every difference that is a failure whatever the tolerance.
    pub mismatches: Vec<String>,
    /// The polls outside the tolerance: (task, Tokio's ns, tracer's ns, when
    /// the tracer's wait began minus when Tokio's did).
    pub outside: Vec<(u64, u64, u64, i64)>,
}

impl WakeComparison {
    /// Fraction of polls whose wait began within the tolerance of Tokio's.
    pub fn within_fraction(&self) -> f64 {
        self.within as f64 / self.polls.max(1) as f64
    }
}

/// The tolerance on when one wait began is max(floor, 10 % of Tokio's wait), for
/// the two clocks (Tokio reads its clock just after the tracer's probe returns).
/// The floor of optimised builds: 20 µs.
///
/// Waits are compared by when they began, not by their length: a wait ends at
/// the poll, which the tracer sees at `raw::poll`, after the fixture's
/// poll-start hook has written its record; that write can wait on the file lock
/// for another thread's record (over 100 µs seen), which is the hook's cost, not
/// a difference in what the tracer infers.
pub const RELEASE_FLOOR_NS: u64 = 20_000;

/// The floor of debug builds: 50 µs. There nearly every probe site starts with
/// an instruction the kernel single-steps rather than emulates (unoptimised code
/// starts with `sub $n,%rsp`), about 12 µs a trap on the test VM, each between
/// the tracer's stamp and Tokio's. In optimised builds two sites still start
/// that way (`waker::wake_by_ref` and `remote_abort`, `sub $0x18,%rsp`), which
/// puts those waits' start 20-35 µs early, as a thread preempted between a
/// probe and Tokio's clock does: those are the polls outside a release run's
/// tolerance (3-8 % of them, more on a loaded machine).
pub const DEBUG_FLOOR_NS: u64 = 50_000;

/// The tolerance on one `sched_ns`: max(`floor_ns`, 10 % of Tokio's value).
pub fn sched_tolerance_ns(tokio_ns: u64, floor_ns: u64) -> u64 {
    (tokio_ns / 10).max(floor_ns)
}

/// Compares a traced run's wakes and waits with its ground truth: the (woken,
/// waker) multiset of the logged tasks exactly; every `yield_now` a self-wake;
/// every wake by the task itself marked `self`; and, in order per task, every
/// poll Tokio measured has a `sched_ns`, whose wait began within
/// [`sched_tolerance_ns`] of Tokio's or not.
pub fn compare_wakes(
    truth: &WakeTruth,
    stdout: &str,
    floor_ns: u64,
) -> Result<WakeComparison, String> {
    let mut edges: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    let mut self_wakes: HashMap<u64, u64> = HashMap::new();
    let mut sched: BTreeMap<u64, Vec<(Option<u64>, u64)>> = BTreeMap::new();
    let mut out = WakeComparison::default();
    for line in stdout.lines() {
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(value) => value,
            Err(_) => continue,
        };
        match value.get("event").and_then(|e| e.as_str()) {
            Some("wake") => {
                let wake: WakeLine =
                    serde_json::from_value(value).map_err(|e| format!("{e}: {line}"))?;
                let Some(waker) = wake.waker_id else {
                    return Err(format!("wake without a waker_id: {line}"));
                };
                if waker == wake.async_id && !wake.self_wake {
                    out.mismatches
                        .push(format!("task {waker} woke itself, not marked self: {line}"));
                }
                *self_wakes.entry(wake.async_id).or_default() += u64::from(wake.self_wake);
                if truth.logged.contains(&wake.async_id) {
                    *edges.entry((wake.async_id, waker)).or_default() += 1;
                }
            }
            Some("before") => {
                let before: BeforeLine =
                    serde_json::from_value(value).map_err(|e| format!("{e}: {line}"))?;
                sched
                    .entry(before.async_id)
                    .or_default()
                    .push((before.sched_ns, before.ts_ns));
            }
            _ => {}
        }
    }
    out.edges_logged = truth.wakes();
    for (edge, &logged) in &truth.edges {
        let seen = edges.get(edge).copied().unwrap_or(0);
        out.edges_matched += seen.min(logged);
        if seen != logged {
            out.mismatches.push(format!(
                "wake of {} by {}: logged {logged} times, traced {seen}",
                edge.0, edge.1
            ));
        }
    }
    for (edge, &seen) in &edges {
        if !truth.edges.contains_key(edge) {
            out.mismatches.push(format!(
                "wake of {} by {}: traced {seen} times, never logged",
                edge.0, edge.1
            ));
        }
    }
    for (&id, &count) in &truth.yields {
        let seen = self_wakes.get(&id).copied().unwrap_or(0);
        if seen != count {
            out.mismatches.push(format!(
                "task {id} yielded {count} times; {seen} of its wakes marked self"
            ));
        }
    }
    for (&id, tokio) in &truth.sched {
        let traced = sched.get(&id).map_or(&[][..], Vec::as_slice);
        if traced.len() != tokio.len() {
            out.mismatches.push(format!(
                "task {id}: Tokio measured {} polls, the tracer reported {}",
                tokio.len(),
                traced.len()
            ));
        }
        for (n, (tokio, &(traced_ns, ts_ns))) in tokio.iter().zip(traced).enumerate() {
            out.polls += 1;
            let Some(traced_ns) = traced_ns else {
                out.mismatches.push(format!(
                    "task {id} poll {n}: sched_ns null, Tokio {} ns",
                    tokio.sched_ns
                ));
                continue;
            };
            let traced = Wait {
                sched_ns: traced_ns,
                polled_at: ts_ns,
            };
            let offset = traced.queued_at() as i64 - tokio.queued_at() as i64;
            if offset.unsigned_abs() <= sched_tolerance_ns(tokio.sched_ns, floor_ns) {
                out.within += 1;
            } else {
                out.outside.push((id, tokio.sched_ns, traced_ns, offset));
            }
        }
    }
    Ok(out)
}

/// Asserts that a traced run's wakes match its ground truth exactly and that at
/// least `min_within` of Tokio's measured polls have a `sched_ns` within
/// [`sched_tolerance_ns`]; prints the figures. Fails on an empty ground truth.
pub fn assert_wakes_match(
    run: &TracedRun,
    what: &str,
    floor_ns: u64,
    min_within: f64,
) -> WakeComparison {
    let truth = WakeTruth::parse(&run.ground_truth_text, &run.ground_truth)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        truth.wakes() > 0 && !truth.yields.is_empty(),
        "{what}: no logged wakes in the ground truth: does the fixture run the wake scenarios?"
    );
    assert!(
        !truth.sched.is_empty(),
        "{what}: no schedule latency in the ground truth: build the fixtures with the schedule_latency feature"
    );
    let comparison =
        compare_wakes(&truth, &run.stdout, floor_ns).unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!(
        "{what}: wake edges matched {}/{}; waits began within tolerance of Tokio's for {}/{} polls ({:.1} %)",
        comparison.edges_matched,
        comparison.edges_logged,
        comparison.within,
        comparison.polls,
        100.0 * comparison.within_fraction()
    );
    assert!(
        comparison.mismatches.is_empty(),
        "{}\n{}",
        report(what, &comparison.mismatches),
        run.describe()
    );
    assert!(
        comparison.within_fraction() >= min_within,
        "{what}: waits began within max({} µs, 10 % of the wait) of Tokio's for only {}/{} polls (need {:.0} %); outside (task, Tokio ns, tracer ns, tracer's start - Tokio's): {:?}",
        floor_ns / 1000,
        comparison.within,
        comparison.polls,
        100.0 * min_within,
        comparison.outside
    );
    comparison
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth() -> WakeTruth {
        let text = r#"{"event":"terminate","id":1,"tid":5}
{"event":"wake_logged","id":7}
{"event":"wake","id":7,"waker":8,"tid":5}
{"event":"wake","id":7,"waker":1,"tid":5}
{"event":"wake","id":7,"waker":null,"tid":5}
{"event":"yields","id":7,"count":1}
{"event":"poll_start","id":7,"tid":5,"sched_ns":100000,"ts_ns":1000000}
"#;
        let folded = GroundTruth::parse(text).unwrap();
        WakeTruth::parse(text, &folded).unwrap()
    }

    #[test]
    fn a_runtime_task_or_no_task_as_waker_is_no_waker() {
        let truth = truth();
        assert_eq!(
            truth.edges,
            BTreeMap::from([((7, 0), 2), ((7, 8), 1)]),
            "task 1 is a runtime blocking task (terminate only)"
        );
    }

    #[test]
    fn a_missing_wake_a_wrong_waker_and_a_late_wait_are_reported() {
        let stdout = r#"{"event":"wake","waker_id":9,"self":true,"async_id":7}
{"event":"wake","waker_id":0,"self":false,"async_id":7}
{"event":"before","sched_ns":150000,"async_id":7,"ts_ns":1001000}
"#;
        let out = compare_wakes(&truth(), stdout, RELEASE_FLOOR_NS).unwrap();
        assert_eq!(out.edges_matched, 1);
        assert_eq!(out.mismatches.len(), 3, "{:?}", out.mismatches);
        assert_eq!((out.within, out.polls), (0, 1));
    }

    #[test]
    fn exact_wakes_and_a_close_wait_match() {
        let stdout = r#"{"event":"wake","waker_id":8,"self":false,"async_id":7}
{"event":"wake","waker_id":0,"self":true,"async_id":7}
{"event":"wake","waker_id":0,"self":false,"async_id":7}
{"event":"before","sched_ns":119000,"async_id":7,"ts_ns":1010000}
"#;
        let out = compare_wakes(&truth(), stdout, RELEASE_FLOOR_NS).unwrap();
        assert!(out.mismatches.is_empty(), "{:?}", out.mismatches);
        assert_eq!((out.edges_matched, out.within, out.polls), (3, 1, 1));
    }
}
