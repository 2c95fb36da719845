//! Ground-truth comparison for tracer's integration tests.
//!
//! The fixture apps in `tests/fixtures` write what Tokio's own task hooks saw (JSON
//! lines, see that crate's docs) to the file named by `TRACER_GROUND_TRUTH`; the
//! tracer prints async_hooks-style JSON lines on stdout. This crate parses both,
//! runs fixtures under the tracer, and [`compare`]s the two, returning every
//! difference as a readable message so one failing test shows all of them.
//!
//! What ground truth knows, per kind of task (checked on Tokio 1.54.1):
//! - ordinary tasks: `spawn` (with the parent from `try_id()`), every poll start/end
//!   with its thread, and `terminate` (also for aborted tasks and for tasks cancelled
//!   at runtime shutdown) — all from Tokio's hooks;
//! - `spawn_blocking` tasks: Tokio only calls `on_task_terminate`; the app records the
//!   spawn and the one run of the closure itself;
//! - `spawn_local` tasks on a `LocalSet`: Tokio calls no hook at all; the app records
//!   the spawn and wraps the future to record polls and the end;
//! - the runtime's own blocking tasks (the multi_thread worker launchers): only a
//!   `terminate` record (when the runtime shuts down). They are compared too: the
//!   tracer sees them, so they must be reported as `tokio.blocking`, spawned outside
//!   any task (trigger 0), polled exactly once on the thread that terminated them.
//!   A fixture that never drops a multi_thread runtime would leave them unknown to
//!   ground truth; no fixture does that. One is spawned from inside a task: the
//!   launcher `block_in_place` starts to take over the worker's core. The app
//!   records where that call starts and ends; task ids are handed out in spawn
//!   order, so the runtime blocking task whose id lies between the last id seen
//!   before the call and the first task spawned after it is that launcher, and its
//!   parent is the task that called `block_in_place`;
//! - on Tokio before 1.44 (no poll hooks; the fixture says so in its first record,
//!   `hooks {task_polls: false}`), ordinary tasks have no poll records, so
//!   [`compare`] checks everything about them but their poll counts and threads
//!   (see [`GroundTruth::task_polls`]).

#![warn(missing_docs)]

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Environment variable the fixtures read to find their ground-truth file.
pub const GROUND_TRUTH_ENV: &str = "TRACER_GROUND_TRUTH";

// ---------------------------------------------------------------------------
// Ground truth
// ---------------------------------------------------------------------------

/// One line of a fixture's ground-truth file, as written by `tracer-fixtures`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum GtRecord {
    /// `on_task_spawn`; `parent` is `task::try_id()` inside the hook.
    Spawn {
        /// Task id.
        id: u64,
        /// Task polled on the spawning thread, `None` outside any task.
        parent: Option<u64>,
        /// Spawning thread.
        tid: i64,
        /// CLOCK_MONOTONIC ns.
        #[serde(default)]
        ts_ns: u64,
    },
    /// `on_before_task_poll`, or the app itself (`src: "app"`) for blocking/local tasks.
    PollStart {
        /// Task id.
        id: u64,
        /// Polling thread.
        tid: i64,
        /// CLOCK_MONOTONIC ns.
        #[serde(default)]
        ts_ns: u64,
    },
    /// `on_after_task_poll`, or the app itself for blocking/local tasks.
    PollEnd {
        /// Task id.
        id: u64,
        /// Polling thread.
        tid: i64,
        /// CLOCK_MONOTONIC ns.
        #[serde(default)]
        ts_ns: u64,
    },
    /// `on_task_terminate` (future finished or cancelled), or the app for local tasks.
    Terminate {
        /// Task id.
        id: u64,
        /// Thread completing or cancelling the task.
        tid: i64,
        /// CLOCK_MONOTONIC ns.
        #[serde(default)]
        ts_ns: u64,
    },
    /// The app called `spawn_blocking`; Tokio's hooks do not report this spawn.
    SpawnBlocking {
        /// Task id (`JoinHandle::id`).
        id: u64,
        /// Task polled on the spawning thread, `None` outside any task.
        parent: Option<u64>,
        /// Spawning thread.
        tid: i64,
        /// CLOCK_MONOTONIC ns.
        #[serde(default)]
        ts_ns: u64,
    },
    /// The app called `spawn_local`; a LocalSet runs no hooks at all.
    SpawnLocal {
        /// Task id (`JoinHandle::id`).
        id: u64,
        /// Task polled on the spawning thread, `None` outside any task.
        parent: Option<u64>,
        /// Spawning thread.
        tid: i64,
        /// CLOCK_MONOTONIC ns.
        #[serde(default)]
        ts_ns: u64,
    },
    /// The app forgot this task's JoinHandle, so its memory is never freed.
    Leaked {
        /// Task id.
        id: u64,
        /// CLOCK_MONOTONIC ns.
        #[serde(default)]
        ts_ns: u64,
    },
    /// Last record; whether the runtime was dropped (so all other tasks were freed).
    End {
        /// The runtime was dropped before this record.
        runtime_dropped: bool,
        /// CLOCK_MONOTONIC ns.
        #[serde(default)]
        ts_ns: u64,
    },
    /// First record: whether Tokio's poll hooks recorded ordinary tasks' polls.
    Hooks {
        /// `on_before_task_poll`/`on_after_task_poll` were installed.
        task_polls: bool,
    },
    /// The app is about to call `block_in_place` in task `id`.
    BlockInPlaceStart {
        /// The calling task.
        id: u64,
    },
    /// `block_in_place` returned in task `id`.
    BlockInPlaceEnd {
        /// The calling task.
        id: u64,
    },
    /// A record about something other than Tokio tasks (the embedder resources
    /// of `resource_*` records, see [`resources`]), folded elsewhere.
    #[serde(other)]
    Other,
}

/// How a task was created, which decides the tracer's expected `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// `tokio::spawn` and friends: `tokio.task`.
    Task,
    /// `spawn_blocking` from the app: `tokio.blocking`.
    Blocking,
    /// The runtime's own blocking tasks (known only from `terminate`): `tokio.blocking`.
    RuntimeBlocking,
    /// `spawn_local` on a LocalSet: `tokio.local`.
    Local,
}

impl TaskKind {
    /// The `type` string the tracer must print in `init` for this kind.
    pub fn tracer_type(self) -> &'static str {
        match self {
            TaskKind::Task => "tokio.task",
            TaskKind::Blocking | TaskKind::RuntimeBlocking => "tokio.blocking",
            TaskKind::Local => "tokio.local",
        }
    }
}

/// Everything ground truth says about one task.
#[derive(Debug, Clone, PartialEq)]
pub struct GtTask {
    /// Kind of task (from which record introduced it).
    pub kind: TaskKind,
    /// Task being polled on the spawning thread; `None` outside any task.
    pub parent: Option<u64>,
    /// CLOCK_MONOTONIC time of the spawn record (0 when unknown).
    pub spawn_ts: u64,
    /// Threads of the poll starts, in order.
    pub poll_start_tids: Vec<i64>,
    /// Threads of the poll ends, in order.
    pub poll_end_tids: Vec<i64>,
    /// Time of each poll start (for attach tests).
    pub poll_start_ts: Vec<u64>,
    /// Whether the task's future finished or was cancelled.
    pub terminated: bool,
    /// Thread that ran the termination (for runtime blocking tasks: the thread
    /// that polled them).
    pub terminate_tid: Option<i64>,
    /// JoinHandle forgotten: never freed.
    pub leaked: bool,
}

/// A whole ground-truth file, folded per task.
#[derive(Debug, Clone, PartialEq)]
pub struct GroundTruth {
    /// Tasks by Tokio task id.
    pub tasks: BTreeMap<u64, GtTask>,
    /// `Some(runtime_dropped)` from the end record; `None` if the app did not finish.
    pub end: Option<bool>,
    /// Whether ordinary tasks' polls were recorded (Tokio's poll hooks, 1.44+). A
    /// file without a `hooks` record comes from a fixture with the hooks.
    pub task_polls: bool,
}

impl GroundTruth {
    /// Parses a ground-truth file's text (one JSON object per line).
    pub fn parse(text: &str) -> Result<GroundTruth, String> {
        let mut records = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let r: GtRecord = serde_json::from_str(line)
                .map_err(|e| format!("ground truth line {}: {e}: {line}", n + 1))?;
            records.push(r);
        }
        Ok(Self::from_records(&records))
    }

    /// Reads and parses a ground-truth file.
    pub fn read(path: &Path) -> Result<GroundTruth, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read ground truth {}: {e}", path.display()))?;
        Self::parse(&text)
    }

    /// Folds records (in file order) into per-task facts.
    pub fn from_records(records: &[GtRecord]) -> GroundTruth {
        let mut gt = GroundTruth {
            tasks: BTreeMap::new(),
            end: None,
            task_polls: true,
        };
        // `block_in_place` calls: (caller, highest id seen before the call, first id
        // spawned after it).
        let mut block_in_place: Vec<(u64, u64, Option<u64>)> = Vec::new();
        let mut open_block_in_place: Option<(u64, u64)> = None;
        let mut highest_id = 0;
        fn entry(gt: &mut GroundTruth, id: u64) -> &mut GtTask {
            gt.tasks.entry(id).or_insert(GtTask {
                kind: TaskKind::RuntimeBlocking,
                parent: None,
                spawn_ts: 0,
                poll_start_tids: vec![],
                poll_end_tids: vec![],
                poll_start_ts: vec![],
                terminated: false,
                terminate_tid: None,
                leaked: false,
            })
        }
        for r in records {
            match *r {
                GtRecord::Spawn { id, .. }
                | GtRecord::SpawnBlocking { id, .. }
                | GtRecord::SpawnLocal { id, .. } => {
                    for call in block_in_place.iter_mut() {
                        call.2.get_or_insert(id);
                    }
                }
                _ => {}
            }
            match *r {
                GtRecord::Spawn {
                    id, parent, ts_ns, ..
                }
                | GtRecord::SpawnBlocking {
                    id, parent, ts_ns, ..
                }
                | GtRecord::SpawnLocal {
                    id, parent, ts_ns, ..
                } => {
                    let t = entry(&mut gt, id);
                    t.kind = match r {
                        GtRecord::Spawn { .. } => TaskKind::Task,
                        GtRecord::SpawnBlocking { .. } => TaskKind::Blocking,
                        _ => TaskKind::Local,
                    };
                    t.parent = parent;
                    t.spawn_ts = ts_ns;
                }
                GtRecord::PollStart { id, tid, ts_ns } => {
                    let t = entry(&mut gt, id);
                    t.poll_start_tids.push(tid);
                    t.poll_start_ts.push(ts_ns);
                }
                GtRecord::PollEnd { id, tid, .. } => entry(&mut gt, id).poll_end_tids.push(tid),
                GtRecord::Terminate { id, tid, .. } => {
                    let t = entry(&mut gt, id);
                    t.terminated = true;
                    t.terminate_tid = Some(tid);
                }
                GtRecord::Leaked { id, .. } => entry(&mut gt, id).leaked = true,
                GtRecord::End {
                    runtime_dropped, ..
                } => gt.end = Some(runtime_dropped),
                GtRecord::Hooks { task_polls } => gt.task_polls = task_polls,
                GtRecord::BlockInPlaceStart { id } => open_block_in_place = Some((id, highest_id)),
                GtRecord::BlockInPlaceEnd { id } => {
                    if let Some((caller, before)) = open_block_in_place.take()
                        && caller == id
                    {
                        block_in_place.push((caller, before, None));
                    }
                }
                GtRecord::Other => {}
            }
            if let Some(id) = r.task_id() {
                highest_id = highest_id.max(id);
            }
        }
        // The blocking closure's own poll records can precede the app's
        // spawn_blocking record, so kinds are settled only after the whole file.
        // A task with no spawn record at all is one the runtime made itself.
        for t in gt.tasks.values_mut() {
            if t.kind == TaskKind::RuntimeBlocking && t.poll_start_tids.is_empty() {
                // Known only from `terminate`: the thread that terminated it polled it.
                if let Some(tid) = t.terminate_tid {
                    t.poll_start_tids.push(tid);
                    t.poll_end_tids.push(tid);
                    t.poll_start_ts.push(0);
                }
            }
        }
        for (id, t) in gt.tasks.iter_mut() {
            if t.kind != TaskKind::RuntimeBlocking {
                continue;
            }
            if let Some(&(caller, _, _)) = block_in_place
                .iter()
                .find(|(_, before, after)| *id > *before && after.is_none_or(|a| *id < a))
            {
                t.parent = Some(caller);
            }
        }
        gt
    }
}

impl GtRecord {
    /// The task a record is about, if any.
    fn task_id(&self) -> Option<u64> {
        match *self {
            GtRecord::Spawn { id, .. }
            | GtRecord::PollStart { id, .. }
            | GtRecord::PollEnd { id, .. }
            | GtRecord::Terminate { id, .. }
            | GtRecord::SpawnBlocking { id, .. }
            | GtRecord::SpawnLocal { id, .. }
            | GtRecord::Leaked { id, .. }
            | GtRecord::BlockInPlaceStart { id }
            | GtRecord::BlockInPlaceEnd { id } => Some(id),
            GtRecord::End { .. } | GtRecord::Hooks { .. } | GtRecord::Other => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Tracer output
// ---------------------------------------------------------------------------

/// The async_hooks event kinds the tracer prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    /// Resource created.
    Init,
    /// Poll about to run.
    Before,
    /// Poll returned.
    After,
    /// Future finished or was cancelled.
    Resolve,
    /// Task memory freed.
    Destroy,
}

/// One `--json` line of the tracer's output (unknown fields are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TracerEvent {
    /// Which hook.
    pub event: HookKind,
    /// Tokio task id.
    pub async_id: u64,
    /// `init` only: `tokio.task`, `tokio.blocking`, `tokio.local`.
    #[serde(rename = "type", default)]
    pub ty: Option<String>,
    /// `init` only: spawning task, 0 outside tasks, null when `existing`.
    #[serde(default)]
    pub trigger_id: Option<u64>,
    /// `init` only: the task existed before the tracer attached.
    #[serde(default)]
    pub existing: Option<bool>,
    /// `init` only: the task's name (its future type), null when unknown.
    #[serde(default)]
    pub name: Option<String>,
    /// `init` only: where it was spawned (`file:line:col`), null when unknown.
    #[serde(default)]
    pub location: Option<String>,
    /// `after` only: whether the future completed in this poll.
    #[serde(default)]
    pub completed: Option<bool>,
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: i64,
}

/// Parsed tracer stdout: hook events in output order, plus lines that were JSON
/// objects with another `event` (kept for display, not compared).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TracerOutput {
    /// Hook events in the order printed.
    pub events: Vec<TracerEvent>,
    /// Other JSON lines (status or statistics records).
    pub other: Vec<serde_json::Value>,
}

impl TracerOutput {
    /// Parses `tracer ... --json` stdout; a line that is not a JSON object, or a hook
    /// event with missing fields, is an error (the output format is the contract).
    pub fn parse(text: &str) -> Result<TracerOutput, String> {
        let mut out = TracerOutput::default();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| format!("tracer stdout line {} is not JSON ({e}): {line}", n + 1))?;
            let kind = v.get("event").and_then(|e| e.as_str()).unwrap_or("");
            if ["init", "before", "after", "resolve", "destroy"].contains(&kind) {
                let ev: TracerEvent = serde_json::from_value(v)
                    .map_err(|e| format!("tracer stdout line {}: {e}: {line}", n + 1))?;
                out.events.push(ev);
            } else {
                out.other.push(v);
            }
        }
        Ok(out)
    }

    /// The events of process `pid` only, in output order (task ids are per
    /// process, so a traced family is compared one process at a time).
    pub fn of_pid(&self, pid: u32) -> TracerOutput {
        TracerOutput {
            events: self
                .events
                .iter()
                .filter(|e| e.pid == pid)
                .cloned()
                .collect(),
            other: self.other.clone(),
        }
    }

    /// Events grouped per task id, each in output order.
    pub fn per_task(&self) -> BTreeMap<u64, Vec<&TracerEvent>> {
        let mut m: BTreeMap<u64, Vec<&TracerEvent>> = BTreeMap::new();
        for e in &self.events {
            m.entry(e.async_id).or_default().push(e);
        }
        m
    }
}

// ---------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------

fn count(evs: &[&TracerEvent], k: HookKind) -> usize {
    evs.iter().filter(|e| e.event == k).count()
}

fn tids(evs: &[&TracerEvent], k: HookKind) -> Vec<i64> {
    evs.iter().filter(|e| e.event == k).map(|e| e.tid).collect()
}

/// Checks the order of one task's events, whatever ground truth says:
/// init first (exactly once), before/after alternating starting with before, at
/// most one resolve and no poll starting after it, at most one destroy and nothing
/// after it, timestamps non-decreasing, and `completed: true` only on the last
/// `after` of a task that resolves. `resolve` may come inside the last poll
/// (Tokio completes a task from inside `raw::poll`, so `Harness::complete` runs
/// before the poll returns) or after it (cancellation at shutdown).
/// `partial` relaxes "init first" rules for tasks first seen mid-poll after attach.
fn check_order(id: u64, evs: &[&TracerEvent], partial: bool, out: &mut Vec<String>) {
    let inits = count(evs, HookKind::Init);
    if inits != 1 {
        out.push(format!(
            "task {id}: {inits} init events, expected exactly 1"
        ));
    }
    if evs.first().map(|e| e.event) != Some(HookKind::Init) {
        out.push(format!(
            "task {id}: first event is {:?}, not init",
            evs.first().map(|e| e.event)
        ));
    }
    // Polls are paired per thread: at a poll boundary the next poll may start on
    // another thread before the previous `raw::poll` has returned (the task was
    // already idle and rescheduled), so two polls of one task can overlap briefly.
    let mut open_polls: Vec<i64> = Vec::new();
    let mut resolved = false;
    let mut destroyed = false;
    let mut last_ts = 0;
    let mut first_poll_event = true;
    let mut last_before_tid = None;
    let mut completed: Vec<(usize, i64)> = Vec::new();
    for (i, e) in evs.iter().enumerate() {
        if e.ts_ns < last_ts {
            out.push(format!(
                "task {id}: event #{i} ({:?}) has ts_ns {} before the previous {last_ts}",
                e.event, e.ts_ns
            ));
        }
        last_ts = last_ts.max(e.ts_ns);
        if destroyed {
            out.push(format!("task {id}: {:?} after destroy", e.event));
        }
        match e.event {
            HookKind::Init => {}
            HookKind::Before => {
                if open_polls.contains(&e.tid) {
                    out.push(format!(
                        "task {id}: before #{i} while already in a poll on thread {} (missing after)",
                        e.tid
                    ));
                }
                if resolved {
                    out.push(format!("task {id}: poll starts after resolve"));
                }
                if !completed.is_empty() {
                    out.push(format!("task {id}: poll starts after a completed poll"));
                }
                open_polls.push(e.tid);
                last_before_tid = Some(e.tid);
                first_poll_event = false;
            }
            HookKind::After => {
                match open_polls.iter().position(|tid| *tid == e.tid) {
                    Some(index) => {
                        open_polls.remove(index);
                    }
                    None if partial && first_poll_event => {}
                    None => out.push(format!(
                        "task {id}: after #{i} without a before on thread {}",
                        e.tid
                    )),
                }
                if e.completed == Some(true) {
                    completed.push((i, e.tid));
                }
                first_poll_event = false;
            }
            HookKind::Resolve => {
                if resolved {
                    out.push(format!("task {id}: resolved twice"));
                }
                resolved = true;
            }
            HookKind::Destroy => {
                if !open_polls.is_empty() {
                    out.push(format!("task {id}: destroyed during a poll"));
                }
                destroyed = true;
            }
        }
    }
    if !open_polls.is_empty() && destroyed {
        out.push(format!("task {id}: last poll never ended"));
    }
    if completed.len() > 1 {
        out.push(format!(
            "task {id}: {} polls report completed=true",
            completed.len()
        ));
    }
    if let Some(&(i, tid)) = completed.first() {
        if last_before_tid.is_some_and(|last| last != tid) {
            out.push(format!(
                "task {id}: after #{i} reports completed=true but is not the end of the last poll"
            ));
        }
        if !resolved {
            out.push(format!(
                "task {id}: a poll reports completed=true but there is no resolve"
            ));
        }
    }
}

/// Compares the full life of one task that the tracer saw being spawned. Without
/// `task_polls` (no poll hooks in this Tokio) an ordinary task's polls are not
/// compared; blocking and local tasks' polls are recorded by the app itself.
fn check_task_full(
    id: u64,
    t: &GtTask,
    evs: &[&TracerEvent],
    gt: &GroundTruth,
    runtime_dropped: bool,
    out: &mut Vec<String>,
) {
    check_order(id, evs, false, out);
    if let Some(init) = evs.iter().find(|e| e.event == HookKind::Init) {
        if init.existing != Some(false) {
            out.push(format!(
                "task {id}: init has existing={:?}, expected false",
                init.existing
            ));
        }
        let want = t.kind.tracer_type();
        if init.ty.as_deref() != Some(want) {
            out.push(format!(
                "task {id} ({:?}): type {:?}, expected {want:?}",
                t.kind, init.ty
            ));
        }
        let want_trigger = t.parent.unwrap_or(0);
        if init.trigger_id != Some(want_trigger) {
            out.push(format!(
                "task {id}: trigger_id {:?}, ground-truth parent {:?} (expected {want_trigger})",
                init.trigger_id, t.parent
            ));
        }
    }
    if gt.task_polls || t.kind != TaskKind::Task {
        check_polls(id, t, evs, out);
    }
    check_end(id, t, evs, runtime_dropped, out);
}

fn check_polls(id: u64, t: &GtTask, evs: &[&TracerEvent], out: &mut Vec<String>) {
    let (b, a) = (tids(evs, HookKind::Before), tids(evs, HookKind::After));
    if b.len() != t.poll_start_tids.len() || a.len() != t.poll_end_tids.len() {
        out.push(format!(
            "task {id}: {} before / {} after, ground truth {} poll_start / {} poll_end",
            b.len(),
            a.len(),
            t.poll_start_tids.len(),
            t.poll_end_tids.len()
        ));
    }
    if b != t.poll_start_tids {
        out.push(format!(
            "task {id}: before tids {b:?}, ground truth poll_start tids {:?}",
            t.poll_start_tids
        ));
    }
    // Poll ends are compared per thread, not in order: see `check_order`.
    let (mut a_sorted, mut gt_sorted) = (a.clone(), t.poll_end_tids.clone());
    a_sorted.sort_unstable();
    gt_sorted.sort_unstable();
    if a_sorted != gt_sorted {
        out.push(format!(
            "task {id}: after tids {a:?}, ground truth poll_end tids {:?}",
            t.poll_end_tids
        ));
    }
}

fn check_end(
    id: u64,
    t: &GtTask,
    evs: &[&TracerEvent],
    runtime_dropped: bool,
    out: &mut Vec<String>,
) {
    let resolves = count(evs, HookKind::Resolve);
    let want_resolves = usize::from(t.terminated);
    if resolves != want_resolves {
        out.push(format!(
            "task {id}: {resolves} resolve events, expected {want_resolves} (ground truth terminated: {})",
            t.terminated
        ));
    }
    let destroys = count(evs, HookKind::Destroy);
    if t.leaked {
        if destroys != 0 {
            out.push(format!(
                "task {id}: leaked JoinHandle, yet {destroys} destroy events"
            ));
        }
    } else if runtime_dropped {
        if destroys != 1 {
            out.push(format!(
                "task {id}: {destroys} destroy events, expected 1 (runtime dropped)"
            ));
        }
    } else if destroys > 1 || (destroys == 1 && !t.terminated) {
        out.push(format!(
            "task {id}: {destroys} destroy events for a task that {} (runtime not dropped)",
            if t.terminated {
                "terminated"
            } else {
                "never terminated"
            }
        ));
    }
}

fn end_of(gt: &GroundTruth, out: &mut Vec<String>) -> bool {
    match gt.end {
        Some(d) => d,
        None => {
            out.push("ground truth has no end record: the fixture did not finish".into());
            true
        }
    }
}

fn check_pids(tr: &TracerOutput, out: &mut Vec<String>) {
    let pids: BTreeSet<u32> = tr.events.iter().map(|e| e.pid).collect();
    if pids.len() > 1 {
        out.push(format!("events from several pids: {pids:?}"));
    }
}

/// Compares a whole traced run (`tracer run`) with ground truth and returns every
/// mismatch (empty = identical): same task ids, types, triggers, poll counts and
/// threads in order, resolve exactly for terminated tasks, destroy for every task
/// when the runtime was dropped (none for leaked ones, none for unterminated ones
/// otherwise), and per-task event order. Poll counts and threads of ordinary tasks
/// are compared only when ground truth has them ([`GroundTruth::task_polls`]).
pub fn compare(gt: &GroundTruth, tr: &TracerOutput) -> Vec<String> {
    let mut out = Vec::new();
    let dropped = end_of(gt, &mut out);
    check_pids(tr, &mut out);
    let per = tr.per_task();
    let gt_ids: BTreeSet<u64> = gt.tasks.keys().copied().collect();
    let tr_ids: BTreeSet<u64> = per.keys().copied().collect();
    let missing: Vec<_> = gt_ids.difference(&tr_ids).collect();
    let extra: Vec<_> = tr_ids.difference(&gt_ids).collect();
    if !missing.is_empty() {
        out.push(format!(
            "tasks in ground truth but never reported by the tracer: {missing:?}"
        ));
    }
    if !extra.is_empty() {
        out.push(format!(
            "tasks reported by the tracer but unknown to ground truth: {extra:?}"
        ));
    }
    for (id, t) in &gt.tasks {
        if let Some(evs) = per.get(id) {
            check_task_full(*id, t, evs, gt, dropped, &mut out);
        }
    }
    out
}

/// Compares a run the tracer attached to mid-way (`tracer trace -p`): tasks whose
/// `init` says `existing: false` must match ground truth exactly as in [`compare`];
/// tasks first seen after attach must be `existing: true` with a null trigger, with
/// no more polls than ground truth and resolve/destroy only where possible; every id
/// must exist in ground truth; and every task ground truth saw spawned after the
/// tracer's first fresh `init` must be reported as fresh.
pub fn compare_attached(gt: &GroundTruth, tr: &TracerOutput) -> Vec<String> {
    let mut out = Vec::new();
    let dropped = end_of(gt, &mut out);
    check_pids(tr, &mut out);
    let per = tr.per_task();
    let mut first_fresh_ts = None;
    for (id, evs) in &per {
        let Some(t) = gt.tasks.get(id) else {
            out.push(format!(
                "task {id}: reported by the tracer but unknown to ground truth (invented)"
            ));
            continue;
        };
        let init = evs.iter().find(|e| e.event == HookKind::Init);
        match init.and_then(|i| i.existing) {
            Some(false) => {
                let ts = init.map(|i| i.ts_ns).unwrap_or(0);
                first_fresh_ts = Some(first_fresh_ts.map_or(ts, |f: u64| f.min(ts)));
                check_task_full(*id, t, evs, gt, dropped, &mut out);
            }
            Some(true) => {
                check_order(*id, evs, true, &mut out);
                let init = init.unwrap();
                if init.trigger_id.is_some() {
                    out.push(format!(
                        "task {id}: existing task with trigger_id {:?}, expected null",
                        init.trigger_id
                    ));
                }
                // A task that existed before attach was spawned unseen: which spawn
                // path made it is unknown, so the tracer reports the general class.
                let want = "tokio.task";
                if init.ty.as_deref() != Some(want) {
                    out.push(format!(
                        "task {id} ({:?}): type {:?}, expected {want:?}",
                        t.kind, init.ty
                    ));
                }
                let b = tids(evs, HookKind::Before);
                if b.len() > t.poll_start_tids.len() || !t.poll_start_tids.ends_with(&b) {
                    out.push(format!(
                        "task {id}: existing task's before tids {b:?} are not the last polls of ground truth {:?}",
                        t.poll_start_tids
                    ));
                }
                if count(evs, HookKind::Resolve) > usize::from(t.terminated) {
                    out.push(format!(
                        "task {id}: resolve reported but ground truth never terminated it"
                    ));
                }
                let destroys = count(evs, HookKind::Destroy);
                if destroys > 1 || (destroys == 1 && t.leaked) {
                    out.push(format!(
                        "task {id}: {destroys} destroy events (leaked: {})",
                        t.leaked
                    ));
                }
            }
            None => out.push(format!("task {id}: no init, or init without `existing`")),
        }
    }
    match first_fresh_ts {
        None => out.push("the tracer reported no task spawned after attach".into()),
        Some(t0) => {
            for (id, t) in &gt.tasks {
                let fresh = per
                    .get(id)
                    .and_then(|evs| evs.iter().find(|e| e.event == HookKind::Init))
                    .is_some_and(|i| i.existing == Some(false));
                if t.kind != TaskKind::RuntimeBlocking && t.spawn_ts > t0 && !fresh {
                    out.push(format!(
                        "task {id}: spawned after attach (ts {}) but not reported as a fresh init",
                        t.spawn_ts
                    ));
                }
            }
        }
    }
    out
}

/// Formats mismatches for a panic message, one per line.
pub fn report(what: &str, mismatches: &[String]) -> String {
    let mut s = format!(
        "{what}: {} mismatch(es) with ground truth:\n",
        mismatches.len()
    );
    for m in mismatches {
        let _ = writeln!(s, "  - {m}");
    }
    s
}

// ---------------------------------------------------------------------------
// Locating and running binaries
// ---------------------------------------------------------------------------

/// Build profile of a fixture binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `tests/fixtures/target/debug`.
    Debug,
    /// `tests/fixtures/target/release`.
    Release,
    /// `tests/fixtures/target/release-no-debuginfo`: release with symbols but
    /// no debug info (Cargo's default release).
    ReleaseNoDebuginfo,
    /// `tests/fixtures/target/stripped`: release without a symbol table.
    Stripped,
    /// `tests/fixtures/target/release-lto`: release with `lto = "fat"` and
    /// `codegen-units = 1`.
    ReleaseLto,
    /// `tests/fixtures/target/release-thin-lto`: release with `lto = "thin"`.
    ReleaseThinLto,
    /// `tests/fixtures/target/release-cgu1`: release with `codegen-units = 1`.
    ReleaseCgu1,
    /// `tests/fixtures/target/release-o1`: release with `opt-level = 1`.
    ReleaseO1,
    /// `tests/fixtures/target/release-oz`: release with `opt-level = "z"`.
    ReleaseOz,
    /// `tests/fixtures/target/release-panic-abort`: release with `panic = "abort"`.
    ReleasePanicAbort,
    /// `tests/fixtures/target/release-await`: release with full type DWARF for
    /// the fixture crate only (`await_points`).
    ReleaseAwait,
    /// `release-await-dwp`: the same DWARF in `await_points.dwp` beside the binary.
    ReleaseAwaitDwp,
    /// `release-await-lto`: the same DWARF under `lto = "fat"`, `codegen-units = 1`.
    ReleaseAwaitLto,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
            Profile::ReleaseNoDebuginfo => "release-no-debuginfo",
            Profile::Stripped => "stripped",
            Profile::ReleaseLto => "release-lto",
            Profile::ReleaseThinLto => "release-thin-lto",
            Profile::ReleaseCgu1 => "release-cgu1",
            Profile::ReleaseO1 => "release-o1",
            Profile::ReleaseOz => "release-oz",
            Profile::ReleasePanicAbort => "release-panic-abort",
            Profile::ReleaseAwait => "release-await",
            Profile::ReleaseAwaitDwp => "release-await-dwp",
            Profile::ReleaseAwaitLto => "release-await-lto",
        }
    }
}

/// Asserts a failed run whose stderr says every one of `needles`, with no events on stdout.
pub fn assert_refused(output: &std::process::Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "tracer succeeded:\n{stderr}");
    assert_eq!(output.status.code(), Some(1), "exit status:\n{stderr}");
    assert!(!stderr.contains("panicked"), "tracer panicked:\n{stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr lacks {needle:?}:\n{stderr}"
        );
    }
    assert!(
        output.stdout.is_empty(),
        "events printed despite the error: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// The root of the main workspace (parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of a fixture binary, or an error telling how to build it.
pub fn fixture_bin(name: &str, profile: Profile) -> Result<PathBuf, String> {
    let p = workspace_root()
        .join("tests/fixtures/target")
        .join(profile.dir())
        .join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "fixture binary {} is missing: run `cargo xtask build` first",
            p.display()
        ))
    }
}

/// The Tokio version the fixtures in `tests/fixtures` are built with; the Tokio
/// matrix builds the same sources against other versions.
pub const FIXTURES_TOKIO: &str = "1.54.1";

/// Path of fixture `name` built against Tokio `version` (`tests/fixtures` for
/// [`FIXTURES_TOKIO`], else the Tokio matrix under `target/tokio-matrix`), or an
/// error telling how to build it.
pub fn matrix_fixture_bin(name: &str, version: &str, profile: Profile) -> Result<PathBuf, String> {
    if version == FIXTURES_TOKIO {
        return fixture_bin(name, profile);
    }
    let p = workspace_root()
        .join("target/tokio-matrix/target")
        .join(profile.dir())
        .join(format!("{name}-tokio-{}", version.replace('.', "-")));
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "Tokio {version} fixture {} is missing: run `cargo xtask build` first (it builds the Tokio matrix)",
            p.display()
        ))
    }
}

/// Path of the tracer (`$TRACER_BIN`, else `target/release/tracer`), or an error
/// telling how to build it.
pub fn tracer_bin() -> Result<PathBuf, String> {
    let p = match std::env::var_os("TRACER_BIN") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("target/release/tracer"),
    };
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "tracer binary {} is missing: run `cargo xtask build` first (or set TRACER_BIN)",
            p.display()
        ))
    }
}

/// Fails unless running as root: the tracer needs BPF, and tests must not skip.
pub fn require_root() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err("integration tests load BPF programs and must run as root (e.g. `sudo -E cargo xtask test`)".into())
    }
}

/// Everything a traced run produced.
#[derive(Debug)]
pub struct TracedRun {
    /// Tracer exit status.
    pub status: ExitStatus,
    /// Tracer stdout (JSON lines).
    pub stdout: String,
    /// Tracer stderr (the fixture's stderr too, when the tracer runs it).
    pub stderr: String,
    /// Parsed ground truth.
    pub ground_truth: GroundTruth,
    /// The ground-truth file as written, for records [`GroundTruth`] does not fold.
    pub ground_truth_text: String,
    /// The ground truth of the fixture's child process, if it wrote one (see
    /// [`child_ground_truth_path`]).
    pub child_ground_truth_text: Option<String>,
    /// Parsed tracer output.
    pub tracer: TracerOutput,
}

impl TracedRun {
    /// The run's outputs, for failure messages.
    pub fn describe(&self) -> String {
        let tail: String = self
            .stderr
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "tracer status: {}\ntracer stderr (last lines):\n{tail}",
            self.status
        )
    }
}

/// A unique temporary path for one ground-truth file.
pub fn temp_path(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "tracer-gt-{tag}-{}-{n}-{nanos}.jsonl",
        std::process::id()
    ))
}

/// Where a fixture's child process writes its ground truth: the parent's file
/// name plus `.child` (the `forking` fixture).
pub fn child_ground_truth_path(parent: &Path) -> PathBuf {
    let mut path = parent.as_os_str().to_owned();
    path.push(".child");
    PathBuf::from(path)
}

/// The pid that wrote a ground-truth file (every record carries it).
pub fn ground_truth_pid(text: &str) -> Result<u32, String> {
    let first = text.lines().next().ok_or("empty ground truth")?;
    let record: serde_json::Value =
        serde_json::from_str(first).map_err(|e| format!("ground truth: {e}: {first}"))?;
    record["pid"]
        .as_u64()
        .map(|pid| pid as u32)
        .ok_or_else(|| format!("ground truth record without a pid: {first}"))
}

/// Runs `tracer ARGS…` (`tree`, `stats`, `export`) and returns its stdout;
/// panics with its stderr if it fails.
pub fn tracer_stdout(args: &[&str]) -> String {
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let output = Command::new(&tracer).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "tracer {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The parent of every task in a `tracer tree --json` document (0: spawned
/// outside any task), by pid. Panics if a task appears twice in a process or
/// has an unknown trigger: `tracer run` sees every spawn.
pub fn tree_edges(tree: &serde_json::Value) -> BTreeMap<u32, BTreeMap<u64, u64>> {
    fn walk(nodes: &serde_json::Value, parent: u64, out: &mut BTreeMap<u64, u64>) {
        for node in nodes.as_array().unwrap() {
            let id = node["async_id"].as_u64().unwrap();
            assert!(
                out.insert(id, parent).is_none(),
                "task {id} appears twice in the tree"
            );
            walk(&node["children"], id, out);
        }
    }
    let mut found = BTreeMap::new();
    for root in tree["roots"].as_array().unwrap() {
        assert_eq!(
            root["root"], "outside_any_task",
            "`tracer run` sees every spawn, so no trigger may be unknown: {root}"
        );
        let pid = u32::try_from(root["pid"].as_u64().unwrap()).unwrap();
        walk(&root["children"], 0, found.entry(pid).or_default());
    }
    found
}

/// Ground truth's parent links, as [`tree_edges`] gives them for one process.
pub fn ground_truth_edges(truth: &GroundTruth) -> BTreeMap<u64, u64> {
    truth
        .tasks
        .iter()
        .map(|(id, task)| (*id, task.parent.unwrap_or(0)))
        .collect()
}

/// The poll count of every row of a `tracer stats --json` document, by pid.
pub fn stats_polls(stats: &serde_json::Value) -> BTreeMap<u32, BTreeMap<u64, u64>> {
    let mut found: BTreeMap<u32, BTreeMap<u64, u64>> = BTreeMap::new();
    for row in stats["tasks"].as_array().unwrap() {
        let pid = u32::try_from(row["pid"].as_u64().unwrap()).unwrap();
        let id = row["async_id"].as_u64().unwrap();
        let polls = row["polls"].as_u64().unwrap();
        assert!(
            found.entry(pid).or_default().insert(id, polls).is_none(),
            "two rows for task {id} of process {pid}"
        );
    }
    found
}

/// Ground truth's poll counts, as [`stats_polls`] gives them for one process.
pub fn ground_truth_polls(truth: &GroundTruth) -> BTreeMap<u64, u64> {
    truth
        .tasks
        .iter()
        .map(|(id, task)| (*id, task.poll_start_tids.len() as u64))
        .collect()
}

/// The name users read for a `std::any::type_name` of a future, written from
/// the rules the tracer documents, applied to the type and to each of its
/// generic arguments: `Pin<Box<X>>` and `Box<X>` are `X`, the default allocator
/// argument is not shown, a path ending in `::{{closure}}` (an async fn's or
/// block's state machine) is named by the function that holds it, and any other
/// `{{closure}}` is written `{closure}`.
pub fn expected_task_name(type_name: &str) -> String {
    let ty = type_name.trim();
    let Some(open) = ty.find('<') else {
        return closure_rule(ty);
    };
    let (mut depth, mut start, mut args, mut close) = (0, open + 1, Vec::new(), ty.len());
    for (at, c) in ty.char_indices().skip(open) {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => {
                depth -= 1;
                if depth == 0 {
                    args.push(&ty[start..at]);
                    close = at;
                    break;
                }
            }
            ',' if depth == 1 => {
                args.push(&ty[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    let head = &ty[..open];
    let suffix = &ty[(close + 1).min(ty.len())..];
    let args: Vec<String> = args
        .into_iter()
        .filter(|arg| arg.trim() != "alloc::alloc::Global")
        .map(expected_task_name)
        .collect();
    let wrapper = ["core::pin::Pin", "alloc::boxed::Box"].contains(&head);
    if wrapper && suffix.is_empty() && args.len() == 1 {
        return args[0].clone();
    }
    closure_rule(&format!("{head}<{}>{suffix}", args.join(", ")))
}

/// `…::{{closure}}` at the end names its holder; other closures read `{closure}`.
fn closure_rule(path: &str) -> String {
    let path = match path.strip_suffix("::{{closure}}") {
        Some(holder) if !holder.is_empty() => holder,
        _ => path,
    };
    path.replace("{{closure}}", "{closure}")
}

/// The `future_type` records of a ground-truth file: each task's future type
/// (`std::any::type_name`), by task id.
pub fn ground_truth_future_types(text: &str) -> BTreeMap<u64, String> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| record["event"] == "future_type")
        .filter_map(|record| Some((record["id"].as_u64()?, record["type"].as_str()?.to_owned())))
        .collect()
}

/// A spawned child whose stdout/stderr are drained by threads (so pipes never fill).
struct Running {
    child: std::process::Child,
    out: std::thread::JoinHandle<String>,
    err: std::thread::JoinHandle<String>,
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = r {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            s = String::from_utf8_lossy(&buf).into_owned();
        }
        s
    })
}

fn start(cmd: &mut Command) -> Result<Running, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    Ok(Running { child, out, err })
}

/// Waits up to `limit`; on timeout sends SIGINT, then SIGKILL, and returns an error.
fn finish(
    mut r: Running,
    limit: Duration,
    what: &str,
) -> Result<(ExitStatus, String, String), String> {
    let deadline = Instant::now() + limit;
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = r.child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if Instant::now() > deadline && !timed_out {
            timed_out = true;
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(r.child.id() as i32, libc::SIGINT) };
            std::thread::sleep(Duration::from_secs(3));
            if r.child.try_wait().map_err(|e| e.to_string())?.is_none() {
                let _ = r.child.kill();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = r.out.join().unwrap_or_default();
    let err = r.err.join().unwrap_or_default();
    if timed_out {
        return Err(format!(
            "{what} did not exit within {limit:?}; stderr:\n{err}"
        ));
    }
    Ok((status, out, err))
}

fn collect(
    status: ExitStatus,
    stdout: String,
    stderr: String,
    gt_path: &Path,
) -> Result<TracedRun, String> {
    let ground_truth_text = std::fs::read_to_string(gt_path)
        .map_err(|e| format!("cannot read ground truth {}: {e}", gt_path.display()));
    let _ = std::fs::remove_file(gt_path);
    let child_path = child_ground_truth_path(gt_path);
    let child_ground_truth_text = std::fs::read_to_string(&child_path).ok();
    let _ = std::fs::remove_file(&child_path);
    let ground_truth_text = ground_truth_text?;
    let ground_truth = GroundTruth::parse(&ground_truth_text);
    let tracer =
        TracerOutput::parse(&stdout).map_err(|e| format!("{e}\ntracer stderr:\n{stderr}"))?;
    Ok(TracedRun {
        status,
        stdout,
        stderr,
        ground_truth: ground_truth?,
        ground_truth_text,
        child_ground_truth_text,
        tracer,
    })
}

/// Asserts that a traced run succeeded, that ground truth saw tasks, and that the
/// tracer reported exactly what ground truth recorded ([`compare`]); `what` names
/// the run in failure messages.
pub fn assert_matches_ground_truth(run: &TracedRun, what: &str) {
    let mismatches = mismatches_of_successful_run(run, what);
    assert!(
        mismatches.is_empty(),
        "{}\n{}",
        report(what, &mismatches),
        run.describe()
    );
}

/// Asserts that a traced run succeeded and that ground truth saw tasks, and
/// returns what [`compare`] finds between them.
fn mismatches_of_successful_run(run: &TracedRun, what: &str) -> Vec<String> {
    assert!(
        run.status.success(),
        "{what}: tracer failed\n{}",
        run.describe()
    );
    assert!(
        !run.ground_truth.tasks.is_empty(),
        "{what}: empty ground truth; was the fixture built with tokio_unstable?\n{}",
        run.describe()
    );
    compare(&run.ground_truth, &run.tracer)
}

/// [`assert_matches_ground_truth`] for a build that inlines some task types'
/// free path entirely (`panic = "abort"`): the only differences allowed are
/// missing `destroy` events, and the summary must count at least that many
/// tasks that resolved and were never destroyed, so the loss is said. Returns
/// (destroys missing, tasks).
pub fn assert_matches_ground_truth_but_missing_destroys(
    run: &TracedRun,
    what: &str,
) -> (usize, usize) {
    let mismatches = mismatches_of_successful_run(run, what);
    let (missing, other): (Vec<String>, Vec<String>) = mismatches
        .into_iter()
        .partition(|line| line.contains(": 0 destroy events, expected 1"));
    assert!(
        other.is_empty(),
        "{}\n{}",
        report(what, &other),
        run.describe()
    );
    let said = run
        .stderr
        .lines()
        .find_map(|line| {
            line.strip_prefix("tracer: ")?
                .split_once(" of those alive at the end had resolved and were never destroyed")?
                .0
                .parse::<usize>()
                .ok()
        })
        .unwrap_or(0);
    assert!(
        said >= missing.len(),
        "{what}: {} destroys missing, but the summary counts {said} tasks resolved and never destroyed\n{}",
        missing.len(),
        run.describe()
    );
    (missing.len(), run.ground_truth.tasks.len())
}

/// [`assert_matches_ground_truth`] for a build that inlines some of Tokio's spawn
/// paths (`codegen-units = 1`, fat LTO), where the tracer cannot see every spawn:
/// the only differences allowed are tasks whose init says `existing` with no
/// trigger, as the tracer reports a task it first sees after its spawn; their
/// number must be the one the summary gives, and everything else (types, polls,
/// wakes' targets, resolves, destroys) must match. Returns (spawns seen, tasks).
pub fn assert_matches_ground_truth_but_unseen_spawns(
    run: &TracedRun,
    what: &str,
) -> (usize, usize) {
    let mismatches = mismatches_of_successful_run(run, what);
    let tasks = run.ground_truth.tasks.len();
    let task_of = |line: &str| {
        line.strip_prefix("task ")
            .and_then(|rest| rest.split(':').next())
            .and_then(|id| id.parse::<u64>().ok())
    };
    let unseen: BTreeSet<u64> = mismatches
        .iter()
        .filter(|line| line.ends_with(": init has existing=Some(true), expected false"))
        .filter_map(|line| task_of(line))
        .collect();
    let other: Vec<String> = mismatches
        .into_iter()
        .filter(|line| {
            let unseen_task = task_of(line).is_some_and(|id| unseen.contains(&id));
            let allowed = line.ends_with(": init has existing=Some(true), expected false")
                || line.contains(": trigger_id None, ground-truth parent");
            !(unseen_task && allowed)
        })
        .collect();
    assert!(
        other.is_empty(),
        "{}\n{}",
        report(what, &other),
        run.describe()
    );
    let summarised = format!("{} of them first seen after their spawn", unseen.len());
    assert!(
        unseen.is_empty() || run.stderr.contains(&summarised),
        "{what}: {} spawns unseen, but the summary does not say {summarised:?}\n{}",
        unseen.len(),
        run.describe()
    );
    (tasks - unseen.len(), tasks)
}

/// Whose privileges a test process runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privileges {
    /// As the test runner: root.
    Root,
    /// As user and group `nobody` (65534) with no capabilities at all.
    Nobody,
    /// As `nobody` holding only CAP_BPF and CAP_PERFMON (ambient, so they survive
    /// exec): the least a tracer needs for a process of its own user.
    NobodyWithBpfAndPerfmon,
}

impl Privileges {
    /// A command that runs `program` with these privileges (through util-linux's
    /// `setpriv` for the unprivileged ones).
    pub fn command(self, program: &Path) -> Command {
        const NOBODY: [&str; 3] = ["--reuid=65534", "--regid=65534", "--clear-groups"];
        let caps: &[&str] = match self {
            Privileges::Root => return Command::new(program),
            Privileges::Nobody => &["--inh-caps=-all"],
            Privileges::NobodyWithBpfAndPerfmon => &[
                "--inh-caps=-all,+bpf,+perfmon",
                "--ambient-caps=-all,+bpf,+perfmon",
                "--bounding-set=-all,+bpf,+perfmon",
            ],
        };
        let mut cmd = Command::new("setpriv");
        cmd.args(NOBODY).args(caps).arg("--").arg(program);
        cmd
    }
}

/// Runs `tracer run --json -- <fixture> args…` with `TRACER_GROUND_TRUTH` set for
/// the child, and collects both outputs.
pub fn run_traced(fixture: &Path, args: &[&str]) -> Result<TracedRun, String> {
    run_traced_with(Privileges::Root, &[], fixture, args)
}

/// [`run_traced`], with the tracer (and so the fixture it starts) holding
/// `privileges`, and more tracer options (`tracer run --json OPTIONS -- …`).
pub fn run_traced_with(
    privileges: Privileges,
    options: &[&str],
    fixture: &Path,
    args: &[&str],
) -> Result<TracedRun, String> {
    run_traced_by(&tracer_bin()?, privileges, options, fixture, args)
}

/// [`run_traced_with`] with a given `tracer` binary (an installed copy, say).
pub fn run_traced_by(
    tracer: &Path,
    privileges: Privileges,
    options: &[&str],
    fixture: &Path,
    args: &[&str],
) -> Result<TracedRun, String> {
    let gt_path = temp_path("run");
    let r = start(
        privileges
            .command(tracer)
            .args(["run", "--json"])
            .args(options)
            .arg("--")
            .arg(fixture)
            .args(args)
            .env(GROUND_TRUTH_ENV, &gt_path),
    )?;
    let (status, out, err) = finish(r, Duration::from_secs(120), "tracer run")?;
    collect(status, out, err, &gt_path)
}

/// Starts `long_running --seconds <seconds>` with ground truth, waits `attach_after`,
/// runs `tracer trace --json -p PID` until the target exits (the tracer must exit
/// by itself soon after), and collects both outputs. Also returns the target's
/// exit status.
pub fn run_attached(
    seconds: u64,
    attach_after: Duration,
    profile: Profile,
) -> Result<(TracedRun, ExitStatus), String> {
    run_attached_with(
        Privileges::Root,
        Privileges::Root,
        seconds,
        attach_after,
        profile,
    )
}

/// [`run_attached`], with the target and the tracer each holding their own privileges.
pub fn run_attached_with(
    target_privileges: Privileges,
    tracer_privileges: Privileges,
    seconds: u64,
    attach_after: Duration,
    profile: Profile,
) -> Result<(TracedRun, ExitStatus), String> {
    let tracer = tracer_bin()?;
    let fixture = fixture_bin("long_running", profile)?;
    let gt_path = temp_path("attach");
    let target = start(
        target_privileges
            .command(&fixture)
            .args(["--seconds", &seconds.to_string()])
            .env(GROUND_TRUTH_ENV, &gt_path),
    )?;
    std::thread::sleep(attach_after);
    // Through `setpriv`, the child's pid is setpriv's, which execs the fixture.
    let pid = target.child.id().to_string();
    let tr = start(
        tracer_privileges
            .command(&tracer)
            .args(["trace", "--json", "-p", &pid]),
    )?;
    let (target_status, _, target_err) =
        finish(target, Duration::from_secs(seconds + 30), "long_running")?;
    let (status, out, err) = finish(
        tr,
        Duration::from_secs(15),
        "tracer trace (after its target exited)",
    )?;
    let run = collect(
        status,
        out,
        format!("{err}\n--- target stderr ---\n{target_err}"),
        &gt_path,
    )?;
    Ok((run, target_status))
}

pub mod resources;

/// Await chains against the `await_points` fixture's logged `.await`s.
pub mod awaits;

#[cfg(test)]
mod unit;

pub mod recording;

/// Wakes and waits against the fixtures' logged wakes and Tokio's schedule latency.
pub mod wakes;

/// Go ground truth: the fixtures' own `runtime/trace`, per goroutine.
pub mod go_truth;

/// Node.js ground truth: the workload fixture's own async_hooks events.
pub mod node_truth;
