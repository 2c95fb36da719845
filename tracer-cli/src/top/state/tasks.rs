//! What `tracer top` keeps about one task beyond the [`TaskRecord`] the analysis
//! collects (polls, busy, trigger, state): the poll-time histogram, and the slots
//! that the task's name and location (from `init`) and its wakes and scheduling
//! delay (from `wake` events and `before`'s `sched_ns`) fill once the tracer
//! reports them. A slot that is `None` is shown as `-`: not measured, not zero.

use super::histogram::Histogram;
use crate::{
    model::TaskKey,
    sinks::analysis::{TaskRecord, TaskState},
};

/// Top's own per-task data.
#[derive(Clone, Debug, Default)]
pub struct TaskExtras {
    /// The task's name, from `init` (once the tracer names tasks).
    pub name: Option<String>,
    /// Where it was spawned (`src/main.rs:42:5`), from `init`.
    pub location: Option<String>,
    /// Duration of each finished poll.
    pub poll_times: Histogram,
    /// Scheduling delay of each poll (wake to poll), once `before` carries it.
    pub sched_times: Option<Histogram>,
    /// Times it was woken, once wake events exist.
    pub wakes: Option<u64>,
    /// Times it woke itself.
    pub self_wakes: Option<u64>,
    /// Woken and waiting for a worker: set by a wake, cleared by the next poll.
    pub scheduled: bool,
}

/// A task's state as the table shows it: the analysis's state, plus
/// `scheduled` (woken, not yet polled) once wakes are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RowState {
    /// A poll is running.
    Running,
    /// Woken, waiting for a worker.
    Scheduled,
    /// Alive, waiting to be woken.
    Idle,
    /// Its future finished or was cancelled.
    Done,
}

impl RowState {
    /// The name shown in the STATE column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Scheduled => "scheduled",
            Self::Idle => "idle",
            Self::Done => "done",
        }
    }
}

/// One row of the task table: everything a column shows, computed at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRow {
    /// (pid, task id).
    pub key: TaskKey,
    /// The name, or the resource type (`tokio.task`) for a task without one.
    pub name: String,
    /// The resource type (`tokio.task`, `tokio.blocking`, …): the filter looks at
    /// it too, so `/blocking` finds blocking tasks whatever they are named.
    pub resource_type: String,
    /// Its state now.
    pub state: RowState,
    /// Polls that finished.
    pub polls: u64,
    /// Time spent in polls.
    pub busy_ns: u64,
    /// Time alive but not polled.
    pub idle_ns: u64,
    /// 99th percentile of the scheduling delay, when measured.
    pub sched_p99_ns: Option<u64>,
    /// Wakes, when measured.
    pub wakes: Option<u64>,
    /// Self-wakes, when measured.
    pub self_wakes: Option<u64>,
    /// Spawn location, when known.
    pub location: Option<String>,
    /// The task that spawned it: 0 outside any task, `None` when unknown.
    pub trigger_id: Option<u64>,
}

impl TaskRow {
    /// The row of `record` at `now_ns`.
    pub fn new(record: &TaskRecord, extras: Option<&TaskExtras>, now_ns: u64) -> Self {
        let state = match record.state() {
            TaskState::Running => RowState::Running,
            TaskState::Done => RowState::Done,
            TaskState::Idle if extras.is_some_and(|extras| extras.scheduled) => RowState::Scheduled,
            TaskState::Idle => RowState::Idle,
        };
        Self {
            key: record.key(),
            name: display_name(record, extras),
            resource_type: record.resource_type.as_str().to_owned(),
            state,
            polls: record.polls,
            busy_ns: record.busy_ns,
            idle_ns: record.idle_ns(now_ns),
            sched_p99_ns: extras
                .and_then(|extras| extras.sched_times.as_ref())
                .and_then(|times| times.percentile(99.0)),
            wakes: extras.and_then(|extras| extras.wakes),
            self_wakes: extras.and_then(|extras| extras.self_wakes),
            location: extras.and_then(|extras| extras.location.clone()),
            trigger_id: record.trigger_id,
        }
    }
}

/// What a task is called on screen: its name, else its resource type.
pub fn display_name(record: &TaskRecord, extras: Option<&TaskExtras>) -> String {
    extras
        .and_then(|extras| extras.name.clone())
        .unwrap_or_else(|| record.resource_type.as_str().to_owned())
}
