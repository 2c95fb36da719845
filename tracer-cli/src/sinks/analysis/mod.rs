//! What a session did, after the fact: the trigger tree, per-task statistics with
//! warnings, and timelines for Perfetto and browsers. Everything here consumes a
//! stream of [`HookEvent`]s, live (through [`ReportSink`]) or from a file, and
//! keeps one aggregate per task, never every event.
//!
//! Task ids are per process, so a task is known by its (pid, task id)
//! [`TaskKey`]: a `--follow-forks` session keeps its processes apart.

pub mod by_name;
pub mod chrome;
pub mod commands;
pub mod histogram;
pub mod stats;
pub mod svg;
pub mod tree;
pub mod warnings;

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    time::Duration,
};

use crate::{
    model::TaskKey,
    model::event::{AwaitFrame, HookEvent, HookKind, ResourceType},
    sinks::output::{SessionEnd, SessionInfo, Sink},
};
use anyhow::bail;

/// One finished poll (`before` → `after`) of one task on one thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Poll {
    /// The process of the task.
    pub pid: u32,
    /// The task polled.
    pub async_id: u64,
    /// The thread that ran the poll.
    pub tid: u32,
    /// `before`, CLOCK_MONOTONIC ns.
    pub start_ns: u64,
    /// `after`, CLOCK_MONOTONIC ns.
    pub end_ns: u64,
}

impl Poll {
    /// How long the poll ran.
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// Everything kept about one task: its identity and running totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRecord {
    /// Its process.
    pub pid: u32,
    /// Tokio's task id.
    pub async_id: u64,
    /// `tokio.task`, `tokio.blocking`, …
    pub resource_type: ResourceType,
    /// What it runs (`my_app::handle`), when known.
    pub name: Option<String>,
    /// Where it was spawned (`src/main.rs:85:9`), when known.
    pub location: Option<String>,
    /// The task of the same process that spawned it; 0 outside any task; `None` when unknown (it
    /// existed before the tracer attached, or its `init` was never seen).
    pub trigger_id: Option<u64>,
    /// It existed before the tracer attached.
    pub existing: bool,
    /// `init` (or first sight), CLOCK_MONOTONIC ns.
    pub start_ns: u64,
    /// `resolve`: its future finished or was cancelled.
    pub resolve_ns: Option<u64>,
    /// `destroy`: its memory was freed.
    pub destroy_ns: Option<u64>,
    /// Polls that finished.
    pub polls: u64,
    /// Sum of poll durations.
    pub busy_ns: u64,
    /// The longest poll.
    pub longest_poll_ns: u64,
    /// Polls longer than the blocking threshold the records were collected with.
    pub blocking_polls: u64,
    /// Times its waker was woken.
    pub wakes: u64,
    /// Of those, by itself (in its poll, or deferred by `yield_now`).
    pub self_wakes: u64,
    /// How long it waited for a worker before each poll whose wait is known.
    pub sched: histogram::Histogram,
    /// Waits longer than the scheduling threshold the records were collected with.
    pub long_waits: u64,
    /// Its wakes by waking task (0: no task), where the waker is known.
    pub wakers: BTreeMap<u64, u64>,
    /// Where it is parked: the await chain of its last poll, when that poll
    /// returned Pending with a chain; `None` once it runs again or ends.
    pub awaiting: Option<Vec<AwaitFrame>>,
    /// Polls running now, by thread, with their start.
    open_polls: Vec<(u32, u64)>,
    /// Index of the poll-time histogram of its group (see [`PollGroup`]), once polled.
    group: Option<usize>,
}

/// Tasks whose poll times are summed together: one process's tasks of one
/// name (unnamed ones by type).
pub type PollGroup = (u32, Option<String>, ResourceType);

/// A task's state when the session ended, as tokio-console names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// A poll was running.
    Running,
    /// Alive, waiting to be woken.
    Idle,
    /// Its future finished or was cancelled.
    Done,
}

impl TaskState {
    /// The lower-case name shown in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Idle => "idle",
            Self::Done => "done",
        }
    }
}

impl TaskRecord {
    /// (pid, task id): what tells it apart across processes.
    pub fn key(&self) -> TaskKey {
        (self.pid, self.async_id)
    }

    /// When it ended: freed, else finished; `None` while it lives.
    pub fn end_ns(&self) -> Option<u64> {
        self.destroy_ns.or(self.resolve_ns)
    }

    /// From `init` to its end, or to `session_end_ns` if it never ended.
    pub fn lifetime_ns(&self, session_end_ns: u64) -> u64 {
        self.end_ns()
            .unwrap_or(session_end_ns)
            .saturating_sub(self.start_ns)
    }

    /// Time alive but not being polled.
    pub fn idle_ns(&self, session_end_ns: u64) -> u64 {
        self.lifetime_ns(session_end_ns)
            .saturating_sub(self.busy_ns)
    }

    /// How exports title it: `app::handle #5`, `tokio.task 5` without a name.
    pub fn title(&self) -> String {
        task_title(self.name.as_deref(), &self.resource_type, self.async_id)
    }

    /// Its state at the end of the session.
    pub fn state(&self) -> TaskState {
        if self.resolve_ns.is_some() || self.destroy_ns.is_some() {
            TaskState::Done
        } else if self.open_polls.is_empty() {
            TaskState::Idle
        } else {
            TaskState::Running
        }
    }

    /// A task first seen by an event other than its `init`: the stream started
    /// after it, so it counts as existing, spawned at that event.
    fn unannounced(event: &HookEvent) -> Self {
        Self {
            pid: event.pid,
            async_id: event.async_id,
            resource_type: ResourceType::TOKIO_TASK,
            name: None,
            location: None,
            trigger_id: None,
            existing: true,
            start_ns: event.ts_ns,
            resolve_ns: None,
            destroy_ns: None,
            polls: 0,
            busy_ns: 0,
            longest_poll_ns: 0,
            blocking_polls: 0,
            wakes: 0,
            self_wakes: 0,
            sched: histogram::Histogram::default(),
            long_waits: 0,
            wakers: BTreeMap::new(),
            awaiting: None,
            open_polls: Vec::new(),
            group: None,
        }
    }

    /// Closes the poll that the `after` `event` ends on its thread and adds it
    /// to the totals (a blocking one if longer than `blocking_threshold_ns`);
    /// `None` if no poll of the task is open there.
    fn end_poll(&mut self, event: &HookEvent, blocking_threshold_ns: u64) -> Option<Poll> {
        let index = self
            .open_polls
            .iter()
            .position(|(tid, _)| *tid == event.tid)?;
        let (_, start_ns) = self.open_polls.swap_remove(index);
        let poll = Poll {
            pid: event.pid,
            async_id: event.async_id,
            tid: event.tid,
            start_ns,
            end_ns: event.ts_ns,
        };
        let took = poll.duration_ns();
        self.polls += 1;
        self.busy_ns += took;
        self.longest_poll_ns = self.longest_poll_ns.max(took);
        if took > blocking_threshold_ns {
            self.blocking_polls += 1;
        }
        Some(poll)
    }
}

/// The slowest a poll may be before it counts as blocking the runtime, as in
/// tokio-console's default.
pub const DEFAULT_BLOCKING_THRESHOLD: Duration = Duration::from_millis(10);

/// The longest a task may wait for a worker before the wait gets a warning.
pub const DEFAULT_SCHED_THRESHOLD: Duration = Duration::from_millis(10);

/// Folds hook events into one [`TaskRecord`] per task: the state tree and stats
/// read from. Memory grows with the number of tasks, not of events.
#[derive(Clone, Debug)]
pub struct Collector {
    tasks: BTreeMap<TaskKey, TaskRecord>,
    /// Index of each group's histogram in `poll_times`.
    groups: std::collections::HashMap<PollGroup, usize>,
    /// Poll durations of each group.
    poll_times: Vec<histogram::Histogram>,
    blocking_threshold_ns: u64,
    sched_threshold_ns: u64,
    first_ns: Option<u64>,
    last_ns: u64,
}

impl Collector {
    /// An empty collector counting polls longer than `blocking_threshold` as blocking.
    pub fn new(blocking_threshold: Duration) -> Self {
        Self {
            tasks: BTreeMap::new(),
            groups: std::collections::HashMap::new(),
            poll_times: Vec::new(),
            blocking_threshold_ns: blocking_threshold.as_nanos() as u64,
            sched_threshold_ns: DEFAULT_SCHED_THRESHOLD.as_nanos() as u64,
            first_ns: None,
            last_ns: 0,
        }
    }

    /// Counts waits for a worker longer than `threshold` (default
    /// [`DEFAULT_SCHED_THRESHOLD`]).
    pub fn with_sched_threshold(self, threshold: Duration) -> Self {
        Self {
            sched_threshold_ns: threshold.as_nanos() as u64,
            ..self
        }
    }

    /// Takes one event; returns the poll it finished, if it is an `after`.
    pub fn record(&mut self, event: &HookEvent) -> Option<Poll> {
        self.first_ns.get_or_insert(event.ts_ns);
        self.last_ns = self.last_ns.max(event.ts_ns);
        let task = self
            .tasks
            .entry((event.pid, event.async_id))
            .or_insert_with(|| TaskRecord::unannounced(event));
        match &event.kind {
            HookKind::Init {
                resource_type,
                trigger_id,
                existing,
                name,
                location,
            } => {
                task.resource_type = resource_type.clone();
                task.name = name.clone();
                task.location = location.clone();
                task.trigger_id = *trigger_id;
                task.existing = *existing;
                task.start_ns = event.ts_ns;
                None
            }
            HookKind::Before { sched_ns } => {
                task.open_polls.push((event.tid, event.ts_ns));
                task.awaiting = None;
                if let Some(sched_ns) = *sched_ns {
                    task.sched.record(sched_ns);
                    task.long_waits += u64::from(sched_ns > self.sched_threshold_ns);
                }
                None
            }
            HookKind::After { awaiting, .. } => {
                task.awaiting.clone_from(awaiting);
                let poll = task.end_poll(event, self.blocking_threshold_ns)?;
                let group = match task.group {
                    Some(group) => group,
                    None => {
                        let key = (task.pid, task.name.clone(), task.resource_type.clone());
                        let next = self.poll_times.len();
                        let group = *self.groups.entry(key).or_insert(next);
                        task.group = Some(group);
                        group
                    }
                };
                if group == self.poll_times.len() {
                    self.poll_times.push(histogram::Histogram::default());
                }
                self.poll_times[group].record(poll.duration_ns());
                Some(poll)
            }
            HookKind::Resolve => {
                task.resolve_ns = Some(event.ts_ns);
                task.awaiting = None;
                None
            }
            HookKind::Destroy => {
                task.destroy_ns = Some(event.ts_ns);
                task.awaiting = None;
                None
            }
            HookKind::Wake {
                self_wake,
                waker_id,
            } => {
                task.wakes += 1;
                task.self_wakes += u64::from(*self_wake);
                if let Some(waker) = waker_id {
                    *task.wakers.entry(*waker).or_default() += 1;
                }
                None
            }
        }
    }

    /// The tasks collected so far, for a live view that reads them as they grow.
    pub fn tasks(&self) -> &BTreeMap<TaskKey, TaskRecord> {
        &self.tasks
    }

    /// Forgets a task: a live view drops tasks some time after they are done, so
    /// its memory stays bounded however long it runs.
    pub fn forget(&mut self, key: &TaskKey) -> Option<TaskRecord> {
        self.tasks.remove(key)
    }

    /// What has been collected so far, with tasks that are still alive measured up
    /// to `now_ns`, leaving the collector to go on: `tracer top` asks for one
    /// every refresh, for the warnings and the trigger tree.
    pub fn snapshot(&self, info: &SessionInfo, now_ns: u64) -> Analysis {
        Analysis {
            pids: self.tasks.keys().map(|(pid, _)| *pid).collect(),
            start_ns: info.start_ns.min(self.first_ns.unwrap_or(info.start_ns)),
            end_ns: self.last_ns.max(info.start_ns).max(now_ns),
            pid: info.pid,
            exe: info.exe.display().to_string(),
            tasks: self.tasks.clone(),
            poll_times: self
                .groups
                .iter()
                .map(|(group, index)| (group.clone(), self.poll_times[*index].clone()))
                .collect(),
            blocking_threshold_ns: self.blocking_threshold_ns,
            sched_threshold_ns: self.sched_threshold_ns,
        }
    }

    /// Everything collected so far.
    pub fn finish(self, info: &SessionInfo) -> Analysis {
        Analysis {
            pids: self.tasks.keys().map(|(pid, _)| *pid).collect(),
            start_ns: info.start_ns.min(self.first_ns.unwrap_or(info.start_ns)),
            end_ns: self.last_ns.max(info.start_ns),
            pid: info.pid,
            exe: info.exe.display().to_string(),
            tasks: self.tasks,
            poll_times: self
                .groups
                .into_iter()
                .map(|(group, index)| (group, self.poll_times[index].clone()))
                .collect(),
            blocking_threshold_ns: self.blocking_threshold_ns,
            sched_threshold_ns: self.sched_threshold_ns,
        }
    }
}

/// A whole session summarised per task: what tree, stats and warnings read.
#[derive(Clone, Debug)]
pub struct Analysis {
    /// Session start (CLOCK_MONOTONIC ns); times are shown relative to it.
    pub start_ns: u64,
    /// The last event's time: tasks still alive are measured up to here.
    pub end_ns: u64,
    /// The traced process (or the one [`Analysis::only_process`] kept).
    pub pid: u32,
    /// Its executable, as known.
    pub exe: String,
    /// The processes with tasks: more than one when children were followed.
    pub pids: BTreeSet<u32>,
    /// Every task seen, by (pid, task id).
    pub tasks: BTreeMap<TaskKey, TaskRecord>,
    /// The durations of the polls of each group of tasks (`stats --by name`).
    pub poll_times: BTreeMap<PollGroup, histogram::Histogram>,
    /// The threshold `blocking_polls` were counted with.
    pub blocking_threshold_ns: u64,
    /// The threshold `long_waits` were counted with.
    pub sched_threshold_ns: u64,
}

impl Analysis {
    /// Reads a whole event stream.
    pub fn from_events(
        info: &SessionInfo,
        events: impl Iterator<Item = anyhow::Result<HookEvent>>,
        blocking_threshold: Duration,
    ) -> anyhow::Result<Self> {
        let mut collector = Collector::new(blocking_threshold);
        for event in events {
            collector.record(&event?);
        }
        Ok(collector.finish(info))
    }

    /// Keeps the tasks of process `pid` only (`--pid`).
    pub fn only_process(&mut self, pid: u32) -> anyhow::Result<()> {
        if !self.pids.contains(&pid) {
            let known: Vec<String> = self.pids.iter().map(u32::to_string).collect();
            bail!(
                "--pid {pid}: no task of process {pid} in this session; its processes: {}",
                known.join(", ")
            );
        }
        self.tasks.retain(|(task_pid, _), _| *task_pid == pid);
        self.poll_times
            .retain(|(group_pid, _, _), _| *group_pid == pid);
        self.pids = BTreeSet::from([pid]);
        self.pid = pid;
        Ok(())
    }

    /// Whether tasks of more than one process are present (`--follow-forks`):
    /// the text outputs then name each task's process.
    pub fn several_processes(&self) -> bool {
        self.pids.len() > 1
    }

    /// How text names `task`: `#5`, or `pid 42 #5` when several processes are present.
    pub fn task_label(&self, task: &TaskRecord) -> String {
        if self.several_processes() {
            format!("pid {} #{}", task.pid, task.async_id)
        } else {
            format!("#{}", task.async_id)
        }
    }

    /// `ns` as seconds since the session started.
    pub fn relative_s(&self, ns: u64) -> f64 {
        ns.saturating_sub(self.start_ns) as f64 / 1e9
    }
}

/// How exports title a task: its name and id (`app::handle #5`), or, without
/// a name, its type and id (`tokio.task 5`).
pub fn task_title(name: Option<&str>, resource_type: &ResourceType, async_id: u64) -> String {
    match name {
        Some(name) => format!("{name} #{async_id}"),
        None => format!("{} {async_id}", resource_type.as_str()),
    }
}

/// A duration for people: `850ns`, `12.3µs`, `4.56ms`, `1.23s`.
pub fn human_duration(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.1}µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

/// What `--tree` / `--stats` on a live `trace` or `run` print at the end.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// Print the trigger tree.
    pub tree: bool,
    /// Print the per-task table and warnings.
    pub stats: bool,
    /// JSON instead of text.
    pub json: bool,
    /// Threshold, warnings and order of the table.
    pub stats_options: commands::StatsOptions,
}

/// A live sink that keeps per-task aggregates and prints the tree and/or stats
/// on stdout when the session ends.
pub struct ReportSink {
    options: ReportOptions,
    info: Option<SessionInfo>,
    collector: Collector,
}

impl ReportSink {
    /// A sink that will report as `options` say.
    pub fn new(options: ReportOptions) -> Self {
        let collector = options.stats_options.collector();
        Self {
            options,
            info: None,
            collector,
        }
    }

    /// Prints the reports for a session that ended at `end_ns`.
    fn report(&mut self, end_ns: u64) -> anyhow::Result<()> {
        let Some(info) = &self.info else {
            return Ok(());
        };
        let collector =
            std::mem::replace(&mut self.collector, self.options.stats_options.collector());
        let mut analysis = collector.finish(info);
        analysis.end_ns = analysis.end_ns.max(end_ns);
        let mut out = anstream::stdout().lock();
        if self.options.tree {
            let tree = tree::TriggerTree::build(&analysis, &tree::TreeOptions::default())?;
            if self.options.json {
                tree::write_json(&mut out, &tree)?;
            } else {
                tree::write_text(&mut out, &analysis, &tree)?;
            }
        }
        if self.options.stats && self.options.stats_options.by == stats::GroupBy::Name {
            let table = by_name::NameTable::new(&analysis, self.options.stats_options.sort);
            if self.options.json {
                by_name::write_json(&mut out, &table)?;
            } else {
                by_name::write_text(&mut out, &analysis, &table)?;
            }
        } else if self.options.stats {
            let stats = &self.options.stats_options;
            let table = stats::Table::new(&analysis, stats.sort, stats.many_polls);
            if self.options.json {
                stats::write_json(&mut out, &table)?;
            } else {
                stats::write_text(&mut out, &analysis, &table)?;
            }
        }
        Ok(())
    }
}

impl Sink for ReportSink {
    fn begin(&mut self, info: &SessionInfo) -> io::Result<()> {
        self.info = Some(info.clone());
        Ok(())
    }

    fn event(&mut self, event: &HookEvent) -> io::Result<()> {
        self.collector.record(event);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn end(&mut self, end: &SessionEnd) -> io::Result<()> {
        self.report(end.end_ns).map_err(io::Error::other)
    }
}

#[cfg(test)]
pub(crate) mod test_events {
    //! Hand-made event streams for the analysis unit tests.

    use std::path::PathBuf;

    use super::*;
    use crate::model::event::AwaitBranch;

    /// A session starting at 1 s, pid 1.
    pub fn info() -> SessionInfo {
        SessionInfo {
            pid: 1,
            exe: PathBuf::from("/bin/app"),
            runtime: "tokio".to_owned(),
            start_ns: 1_000_000_000,
            start_unix_ns: 0,
        }
    }

    fn event(kind: HookKind, async_id: u64, ms: u64, tid: u32) -> HookEvent {
        HookEvent {
            kind,
            async_id,
            ts_ns: 1_000_000_000 + ms * 1_000_000,
            pid: 1,
            tid,
        }
    }

    /// `init` of a fresh task at `ms` on thread `tid`.
    pub fn init(async_id: u64, trigger: u64, ms: u64, tid: u32) -> HookEvent {
        event(
            HookKind::Init {
                resource_type: ResourceType::TOKIO_TASK,
                trigger_id: Some(trigger),
                existing: false,
                name: None,
                location: None,
            },
            async_id,
            ms,
            tid,
        )
    }

    /// `init` of a task that existed at attach.
    pub fn existing(async_id: u64, ms: u64) -> HookEvent {
        event(
            HookKind::Init {
                resource_type: ResourceType::TOKIO_TASK,
                trigger_id: None,
                existing: true,
                name: None,
                location: None,
            },
            async_id,
            ms,
            10,
        )
    }

    /// `before` and `after` of one poll from `from` to `to` ms on `tid`.
    pub fn poll(async_id: u64, from: u64, to: u64, tid: u32) -> [HookEvent; 2] {
        [
            event(HookKind::Before { sched_ns: None }, async_id, from, tid),
            event(
                HookKind::After {
                    completed: false,
                    awaiting: None,
                },
                async_id,
                to,
                tid,
            ),
        ]
    }

    /// A wake of `woken` by `waker` at `ms` on `tid`.
    pub fn wake(woken: u64, waker: u64, self_wake: bool, ms: u64, tid: u32) -> HookEvent {
        event(
            HookKind::Wake {
                waker_id: Some(waker),
                self_wake,
            },
            woken,
            ms,
            tid,
        )
    }

    /// A poll from `from` to `to` ms on `tid` after a wait of `waited` ms.
    pub fn waited_poll(async_id: u64, waited: u64, from: u64, to: u64, tid: u32) -> [HookEvent; 2] {
        let [mut before, after] = poll(async_id, from, to, tid);
        before.kind = HookKind::Before {
            sched_ns: Some(waited * 1_000_000),
        };
        [before, after]
    }

    /// Task 5 is woken by task 6 and waits 12 ms, then yields three times (1 ms
    /// waits); task 6 is woken once by the driver.
    pub fn wake_session() -> Vec<HookEvent> {
        let mut events = vec![init(5, 0, 0, 10), init(6, 0, 0, 10)];
        events.extend(waited_poll(6, 1, 1, 2, 11));
        events.push(wake(5, 6, false, 2, 11));
        events.extend(waited_poll(5, 12, 14, 15, 12));
        for n in 0..3 {
            events.push(wake(5, 0, true, 15 + 2 * n, 12));
            events.extend(waited_poll(5, 1, 16 + 2 * n, 17 + 2 * n, 12));
        }
        events.push(wake(6, 0, false, 30, 11));
        events
    }

    /// `resolve` then `destroy` at `ms`.
    pub fn finish(async_id: u64, ms: u64) -> [HookEvent; 2] {
        [
            event(HookKind::Resolve, async_id, ms, 10),
            event(HookKind::Destroy, async_id, ms, 10),
        ]
    }

    /// A small session: task 1 spawned by main (thread 10) spawns 2 and 3 while
    /// polled on thread 11; 2 spawns 4 while polled on thread 12; task 9
    /// existed at attach and never ends; task 3 is never polled.
    pub fn session() -> Vec<HookEvent> {
        let mut events = vec![init(1, 0, 0, 10), existing(9, 0)];
        events.extend(poll(1, 1, 3, 11));
        events.insert(3, init(2, 1, 2, 11));
        events.insert(4, init(3, 1, 2, 11));
        events.extend(poll(2, 4, 20, 12));
        events.insert(events.len() - 1, init(4, 2, 5, 12));
        events.extend(poll(4, 21, 22, 11));
        events.extend(finish(4, 22));
        events.extend(poll(2, 23, 24, 12));
        events.extend(finish(2, 24));
        events.extend(poll(9, 25, 26, 11));
        events.extend(poll(1, 30, 31, 11));
        events.extend(finish(1, 31));
        events
    }

    /// The text of [`parked_session`]'s tree.
    pub const PARKED_AT: &str = "src/main.rs:32 > tokio::join! { 0: tokio::time::sleep::Sleep | 2: src/main.rs:42 > tokio::sync::oneshot::Receiver<u64> }";

    /// [`session`] with task 9's poll returning Pending parked in a `join!`
    /// ([`PARKED_AT`]).
    pub fn parked_session() -> Vec<HookEvent> {
        let future = |future: &str| AwaitFrame::Future {
            future: future.to_owned(),
        };
        let at = |function: &str, at: &str| AwaitFrame::Await {
            function: function.to_owned(),
            at: at.to_owned(),
        };
        let mut events = session();
        for event in &mut events {
            if event.async_id == 9
                && let HookKind::After { awaiting, .. } = &mut event.kind
            {
                *awaiting = Some(vec![
                    at("app::consumer", "src/main.rs:32"),
                    AwaitFrame::Fork {
                        future: "tokio::join!".to_owned(),
                        branches: vec![
                            AwaitBranch {
                                branch: 0,
                                awaiting: vec![future("tokio::time::sleep::Sleep")],
                            },
                            AwaitBranch {
                                branch: 2,
                                awaiting: vec![
                                    at("app::leaf", "src/main.rs:42"),
                                    future("tokio::sync::oneshot::Receiver<u64>"),
                                ],
                            },
                        ],
                    },
                ]);
            }
        }
        events
    }

    /// The analysis of [`parked_session`].
    pub fn parked_analysis() -> Analysis {
        let events = parked_session().into_iter().map(Ok);
        Analysis::from_events(&info(), events, DEFAULT_BLOCKING_THRESHOLD).unwrap()
    }

    /// [`session`] in process 1, then the same task ids in process 2 (a forked
    /// child: threads 20 to 22, everything 1 ms later), merged by time.
    pub fn two_processes() -> Vec<HookEvent> {
        let mut events = session();
        events.extend(session().into_iter().map(|mut event| {
            event.pid = 2;
            event.tid += 10;
            event.ts_ns += 1_000_000;
            event
        }));
        events.sort_by_key(|event| event.ts_ns);
        events
    }

    /// [`two_processes`] folded.
    pub fn two_process_analysis() -> Analysis {
        Analysis::from_events(
            &info(),
            two_processes().into_iter().map(Ok),
            DEFAULT_BLOCKING_THRESHOLD,
        )
        .unwrap()
    }

    /// [`session`] folded.
    pub fn analysis() -> Analysis {
        Analysis::from_events(
            &info(),
            session().into_iter().map(Ok),
            DEFAULT_BLOCKING_THRESHOLD,
        )
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::{test_events::*, *};

    #[test]
    fn polls_are_paired_per_thread_and_summed() {
        let analysis = analysis();
        let two = &analysis.tasks[&(1, 2)];
        assert_eq!(two.polls, 2);
        assert_eq!(two.busy_ns, 17_000_000);
        assert_eq!(two.longest_poll_ns, 16_000_000);
        assert_eq!(two.blocking_polls, 1);
        assert_eq!(two.trigger_id, Some(1));
        assert_eq!(two.lifetime_ns(analysis.end_ns), 22_000_000);
        assert_eq!(two.idle_ns(analysis.end_ns), 5_000_000);
        assert_eq!(two.state(), TaskState::Done);
    }

    #[test]
    fn unfinished_tasks_last_until_the_session_ends() {
        let analysis = analysis();
        let nine = &analysis.tasks[&(1, 9)];
        assert!(nine.existing);
        assert_eq!(nine.trigger_id, None);
        assert_eq!(nine.state(), TaskState::Idle);
        assert_eq!(nine.lifetime_ns(analysis.end_ns), 31_000_000);
        assert_eq!(analysis.tasks[&(1, 3)].polls, 0);
    }

    #[test]
    fn a_task_first_seen_mid_stream_counts_as_existing() {
        let mut collector = Collector::new(DEFAULT_BLOCKING_THRESHOLD);
        let [before, _] = poll(5, 1, 2, 3);
        collector.record(&before);
        let analysis = collector.finish(&info());
        let five = &analysis.tasks[&(1, 5)];
        assert!(five.existing);
        assert_eq!(five.trigger_id, None);
        assert_eq!(five.state(), TaskState::Running);
    }

    #[test]
    fn the_same_task_id_in_two_processes_is_two_tasks() {
        let mut analysis = two_process_analysis();
        assert_eq!(analysis.tasks.len(), 10);
        assert_eq!(analysis.pids, BTreeSet::from([1, 2]));
        assert!(analysis.several_processes());
        let child_two = &analysis.tasks[&(2, 2)];
        assert_eq!((child_two.polls, child_two.trigger_id), (2, Some(1)));
        assert_eq!(
            child_two.start_ns,
            analysis.tasks[&(1, 2)].start_ns + 1_000_000
        );
        assert_eq!(analysis.task_label(child_two), "pid 2 #2");

        analysis.only_process(2).unwrap();
        assert_eq!(analysis.tasks.len(), 5);
        assert_eq!((analysis.pid, analysis.several_processes()), (2, false));
        assert_eq!(analysis.task_label(&analysis.tasks[&(2, 2)]), "#2");
        let error = analysis.only_process(3).unwrap_err().to_string();
        assert!(error.contains("no task of process 3 in this session; its processes: 2"));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(850), "850ns");
        assert_eq!(human_duration(12_345), "12.3µs");
        assert_eq!(human_duration(4_560_000), "4.56ms");
        assert_eq!(human_duration(1_230_000_000), "1.23s");
    }
}
