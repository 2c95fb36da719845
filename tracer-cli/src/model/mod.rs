//! Turns raw probe hits into async_hooks events: one state machine per live task.
//!
//! The rules:
//! - a spawn is an `init` with the trigger the BPF side found; a second spawn of
//!   the same task (two probed functions on one spawn path) is the same `init`;
//! - a task first seen at any other event existed before the tracer attached: it
//!   gets an `init` marked `existing`, with no trigger, just before that event;
//! - `after` says `completed` when the task's future completed during that poll;
//! - a free is reported once even when two probed sites see the same free
//!   (`raw::dealloc` calls the `Box<Cell>` drop glue, and both are probed);
//! - a task freed inside its own last poll is reported destroyed when that poll
//!   returns, after its `after`: `destroy` is always a task's last event;
//! - a poll's `after` is reported only on the thread whose `before` was reported:
//!   after a gap in the stream (ring-buffer drops), a return whose start was lost
//!   is counted, never reported as an `after` without its `before`;
//! - a task is forgotten at `destroy`, so memory follows live tasks, not history
//!   (plus a fixed window of recently destroyed ids, to fold a second free).
//! - tasks are told apart by process and id: with `--follow-forks` several
//!   processes report, and each has its own task ids;
//! - a wake is reported as it comes, `self` when the task woke itself in its
//!   poll or its wake is the one it deferred (`yield_now`); its state bits say
//!   whether it queued the task, which is when the task's wait starts
//!   (`before`'s `sched_ns`, see [`crate::model::sched`]).

pub mod awaiting;
pub mod event;
pub mod names;
pub mod resources;
pub mod sched;
pub mod task_filter;

use std::collections::{HashMap, HashSet, VecDeque};

use tracer_common::{RawEvent, RawKind, RawSpawnEvent, SpawnKind, fork::TreeEvent};

use crate::{
    model::event::{HookEvent, HookKind, ResourceType},
    model::names::NameTable,
    model::sched::Wait,
    model::task_filter::{TaskFilter, TaskGlobs},
};

/// Where a task that existed before attach is first seen, which says what names it.
#[derive(Clone, Copy, Debug)]
enum FirstSight {
    /// At the poll site with this slot (a poll cookie; 0: unknown).
    Polled(u32),
    /// At a record that carries the address naming the task (a Tokio wake's
    /// task vtable, a Go run's start function).
    Carried(u64),
    /// At a completion or a free: nothing names it.
    Elsewhere,
}

/// A ring-buffer record as a `T` (a plain-old-data event such as [`RawEvent`]), if
/// it has `T`'s size.
pub fn decode<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    (bytes.len() == size_of::<T>())
        // SAFETY: the size matches and `T: Pod` accepts every bit pattern.
        .then(|| unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// What the model knows about one live task.
#[derive(Debug, Default)]
struct TaskState {
    /// Threads running a poll of this task that has not returned yet. Usually none
    /// or one, but at a poll boundary the next poll may start on another thread
    /// before the previous `raw::poll` has returned (the task was already idle and
    /// rescheduled).
    polling_on: Vec<u32>,
    /// The thread whose running poll completed the task.
    completed_on: Option<u32>,
    /// Its memory was freed inside the poll that is running now (a task that
    /// completes drops its last reference at the end of its own poll): `destroy`
    /// is reported when that poll returns, so it is always the last event.
    freed_in_poll: bool,
    /// Since when it has been waiting to be polled, as far as known.
    wait: Wait,
}

/// Events the model could not place, reported in the summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ModelAnomalies {
    /// Raw events whose kind or detail this tracer does not know.
    pub undecodable: u64,
    /// Poll returns for a task that was not being polled (its start was lost).
    pub orphan_returns: u64,
    /// Poll starts of a task already being polled on that thread: the previous
    /// poll's return was lost, so its `before` has no `after`.
    pub lost_returns: u64,
    /// Parts of `join!`/`select!` await trees the BPF walk could not read
    /// (pending branches over its bounds, unreadable forks): each is a `?`
    /// frame in its `after`'s `awaiting`.
    pub tree_gaps: u64,
}

/// How many destroyed task ids the model remembers to fold the second free of a
/// task: the two probed frees of one task run back to back on one thread, so the
/// second comes within a few events of the first.
const RECENTLY_DESTROYED: usize = 1024;

/// A task across processes: (pid, task id), since task ids are per process.
pub type TaskKey = (u32, u64);

/// The last [`RECENTLY_DESTROYED`] destroyed tasks (Tokio never reuses an id).
#[derive(Debug, Default)]
struct RecentIds {
    order: VecDeque<TaskKey>,
    set: HashSet<TaskKey>,
}

impl RecentIds {
    fn contains(&self, key: TaskKey) -> bool {
        self.set.contains(&key)
    }

    fn insert(&mut self, key: TaskKey) {
        if self.order.len() == RECENTLY_DESTROYED
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        self.order.push_back(key);
        self.set.insert(key);
    }
}

/// The per-task state machine: feed it [`RawEvent`]s in ring-buffer order.
#[derive(Debug, Default)]
pub struct TaskModel {
    /// Live tasks by (pid, task id).
    tasks: HashMap<TaskKey, TaskState>,
    recently_destroyed: RecentIds,
    anomalies: ModelAnomalies,
    /// No poll probes feed the BPF poll stack (`--no-polls`), so spawn triggers
    /// are unknown and reported as `None`, never as a guess.
    lifecycle_only: bool,
    /// Names and locations for `init`s (empty: none are looked up).
    names: NameTable,
    /// `--task`: only tasks whose name matches are reported.
    filter: Option<TaskFilter>,
    /// Await-chain tables by poll site, for the `awaiting` of a Pending poll's
    /// `after` (none: no chains are read).
    chains: Option<awaiting::ChainTable>,
    /// The tree record being applied ([`TaskModel::apply_tree`]): its poll
    /// end's chain is the tree's.
    tree: Option<TreeEvent>,
    /// The type of a task spawned by the runtime's plain spawn path, and of one
    /// that existed before attach when nothing else says its type.
    default_type: DefaultType,
}

/// [`TaskModel`]'s default type: the runtime's plain task type.
#[derive(Debug)]
struct DefaultType(ResourceType);

impl Default for DefaultType {
    fn default() -> Self {
        Self(ResourceType::TOKIO_TASK)
    }
}

impl TaskModel {
    /// A model that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A model for a session without poll probes (`--no-polls`): its `init`s
    /// carry no trigger.
    pub fn lifecycle_only() -> Self {
        Self {
            lifecycle_only: true,
            ..Self::default()
        }
    }

    /// Tasks of the runtime's plain spawn path, and tasks that existed before
    /// attach, are of type `default_type` (`tokio.task` unless told).
    pub fn with_default_type(self, default_type: ResourceType) -> Self {
        Self {
            default_type: DefaultType(default_type),
            ..self
        }
    }

    /// The model names tasks from `names`.
    pub fn with_names(self, names: NameTable) -> Self {
        Self { names, ..self }
    }

    /// The model decodes the await chains poll ends carry with `chains`.
    pub fn with_chains(self, chains: Option<awaiting::ChainTable>) -> Self {
        Self { chains, ..self }
    }

    /// The model reports only the tasks whose name `globs` match (none: all).
    pub fn with_task_filter(self, globs: TaskGlobs) -> Self {
        let filter = (!globs.is_empty()).then(|| TaskFilter::new(globs));
        Self { filter, ..self }
    }

    /// The `--task` filter's counts, when there is one.
    pub fn task_filter(&self) -> Option<&TaskFilter> {
        self.filter.as_ref()
    }

    /// The names the model gives, with its counts of unnamed tasks.
    pub fn names(&self) -> &NameTable {
        &self.names
    }

    /// Applies a record that carries what names its task ([`RawSpawnEvent`]): a
    /// spawn's `init` is named by that address (a Tokio task vtable, a Go start
    /// function) and located by the `location` candidate; a wake's or a poll's
    /// address names a task first seen through it.
    pub fn apply_spawn(&mut self, raw: &RawSpawnEvent, out: impl FnMut(HookEvent)) {
        self.apply_with(&raw.event, Some((raw.vtable, raw.location)), out);
    }

    /// Applies a poll end whose await chain ends at a `join!` or `select!`,
    /// with its pending branches' chains ([`TreeEvent`]).
    pub fn apply_tree(&mut self, raw: &TreeEvent, out: impl FnMut(HookEvent)) {
        self.tree = Some(*raw);
        self.apply_with(&raw.event, None, out);
        self.tree = None;
    }

    /// Events the model had to set aside so far.
    pub fn anomalies(&self) -> ModelAnomalies {
        self.anomalies
    }

    /// Counts a ring-buffer record that is not a [`RawEvent`] at all.
    pub fn count_undecodable(&mut self) {
        self.anomalies.undecodable += 1;
    }

    /// Tasks alive now (spawned or seen, not yet destroyed).
    #[cfg(test)]
    pub fn live_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Everything the model holds, in entries: live tasks and remembered ids.
    #[cfg(test)]
    pub fn tracked_entries(&self) -> usize {
        self.tasks.len() + self.recently_destroyed.order.len() + self.recently_destroyed.set.len()
    }

    /// Applies one raw event, handing the resulting hook events (zero to two) to `out`.
    pub fn apply(&mut self, raw: &RawEvent, out: impl FnMut(HookEvent)) {
        self.apply_with(raw, None, out);
    }

    /// [`TaskModel::apply`], with a spawn's (vtable, location candidate),
    /// through the `--task` filter if there is one.
    fn apply_with(
        &mut self,
        raw: &RawEvent,
        spawn: Option<(u64, u64)>,
        mut out: impl FnMut(HookEvent),
    ) {
        match self.filter.take() {
            None => self.apply_unfiltered(raw, spawn, out),
            Some(mut filter) => {
                self.apply_unfiltered(raw, spawn, |event| {
                    if let Some(event) = filter.pass(event) {
                        out(event);
                    }
                });
                self.filter = Some(filter);
            }
        }
    }

    /// [`TaskModel::apply_with`] for every task.
    fn apply_unfiltered(
        &mut self,
        raw: &RawEvent,
        spawn: Option<(u64, u64)>,
        mut out: impl FnMut(HookEvent),
    ) {
        let Ok(kind) = RawKind::try_from(raw.kind) else {
            self.anomalies.undecodable += 1;
            return;
        };
        let out = &mut out;
        match kind {
            RawKind::Spawn => self.spawned(raw, spawn, out),
            RawKind::PollStart => self.poll_started(raw, spawn, out),
            RawKind::PollEnd => self.poll_ended(raw, out),
            RawKind::Complete => {
                let tid = raw.tid();
                let task = self.known(key_of(raw), FirstSight::Elsewhere, out, &hook(raw));
                if task.polling_on.contains(&tid) {
                    task.completed_on = Some(tid);
                }
                out(hook(raw)(HookKind::Resolve));
            }
            RawKind::Wake => self.woken(raw, spawn, out),
            RawKind::Abort => {
                // An abort is no wake (no waker is woken), but it queues an idle task.
                if let Some(task) = self.tasks.get_mut(&key_of(raw)) {
                    task.wait.aborted(raw.ts_ns, raw.detail);
                }
            }
            RawKind::Free => self.freed(raw, out),
        }
    }

    /// A spawn: the task's `init`, typed by its spawn path (or what its name
    /// implies), named by the address the record carries.
    fn spawned(
        &mut self,
        raw: &RawEvent,
        spawn: Option<(u64, u64)>,
        out: &mut impl FnMut(HookEvent),
    ) {
        let resource_type = match SpawnKind::try_from(raw.detail) {
            Ok(SpawnKind::Task) => self.default_type.0.clone(),
            Ok(SpawnKind::Blocking) => ResourceType::TOKIO_BLOCKING,
            Ok(SpawnKind::Local) => ResourceType::TOKIO_LOCAL,
            Err(_) => {
                self.anomalies.undecodable += 1;
                return;
            }
        };
        let key = key_of(raw);
        if let Some(task) = self.tasks.get_mut(&key) {
            // A second spawn site on the same path (`bind` around `bind_inner`).
            task.wait.spawn_seen_again(raw.ts_ns);
            return;
        }
        self.tasks.insert(
            key,
            TaskState {
                wait: Wait::spawned(raw.ts_ns),
                ..TaskState::default()
            },
        );
        let (vtable, location) = spawn.unwrap_or((0, 0));
        let identity = self.names.spawned(vtable, location);
        out(hook(raw)(HookKind::Init {
            resource_type: identity.resource_type.unwrap_or(resource_type),
            trigger_id: (!self.lifecycle_only).then_some(raw.trigger_id),
            existing: false,
            name: identity.name,
            location: identity.location,
        }));
    }

    /// A poll begins: `before`, with how long the task waited to be polled.
    fn poll_started(
        &mut self,
        raw: &RawEvent,
        spawn: Option<(u64, u64)>,
        out: &mut impl FnMut(HookEvent),
    ) {
        let seen = spawn.map_or(FirstSight::Polled(raw.detail), |(address, _)| {
            FirstSight::Carried(address)
        });
        let tid = raw.tid();
        let task = self.known(key_of(raw), seen, out, &hook(raw));
        // Already polling on this thread: that poll's return was lost.
        let lost = task.polling_on.contains(&tid);
        if !lost {
            task.polling_on.push(tid);
        }
        let sched_ns = task.wait.polled(raw.ts_ns);
        self.anomalies.lost_returns += u64::from(lost);
        out(hook(raw)(HookKind::Before { sched_ns }));
    }

    /// A poll returns: `after` (completed if the task's future finished in it),
    /// and `destroy` if the task was freed inside it.
    fn poll_ended(&mut self, raw: &RawEvent, out: &mut impl FnMut(HookEvent)) {
        let (key, tid) = (key_of(raw), raw.tid());
        let Some((task, index)) = self.tasks.get_mut(&key).and_then(|task| {
            let index = task.polling_on.iter().position(|t| *t == tid)?;
            Some((task, index))
        }) else {
            self.anomalies.orphan_returns += 1;
            return;
        };
        task.polling_on.swap_remove(index);
        task.wait.poll_ended(raw.ts_ns);
        let completed = task.completed_on == Some(tid);
        if completed {
            task.completed_on = None;
        }
        let destroy = task.freed_in_poll && task.polling_on.is_empty();
        // A task that completed in its poll is never read (the BPF side
        // skips it too): its memory may be reused already.
        let tree = self.tree.take();
        let decoded = match (&self.chains, tracer_common::chain::parse(raw.detail)) {
            (Some(chains), Some((slot, levels))) if !completed => match tree {
                Some(tree) => chains.decode_tree(slot, &tree),
                None => chains.decode(slot, levels, raw.trigger_id),
            },
            _ => None,
        };
        let awaiting = decoded.map(|tree| {
            self.anomalies.tree_gaps += tree.gaps;
            tree.frames
        });
        out(hook(raw)(HookKind::After {
            completed,
            awaiting,
        }));
        if destroy {
            self.forget(key);
            out(hook(raw)(HookKind::Destroy));
        }
    }

    /// A wake: `wake`, with the waker and whether the task woke itself.
    fn woken(
        &mut self,
        raw: &RawEvent,
        spawn: Option<(u64, u64)>,
        out: &mut impl FnMut(HookEvent),
    ) {
        let lifecycle_only = self.lifecycle_only;
        let seen = spawn.map_or(FirstSight::Elsewhere, |(address, _)| {
            FirstSight::Carried(address)
        });
        let task = self.known(key_of(raw), seen, out, &hook(raw));
        let self_wake = task
            .wait
            .woken(raw.ts_ns, raw.detail, raw.trigger_id == raw.task_id);
        out(hook(raw)(HookKind::Wake {
            waker_id: (!lifecycle_only).then_some(raw.trigger_id),
            self_wake,
        }));
    }

    /// A free: `destroy`, after the poll it happened in if there is one; the
    /// second probed site of one free is folded.
    fn freed(&mut self, raw: &RawEvent, out: &mut impl FnMut(HookEvent)) {
        let key = key_of(raw);
        if self.recently_destroyed.contains(key) {
            return;
        }
        let task = self.known(key, FirstSight::Elsewhere, out, &hook(raw));
        if !task.polling_on.is_empty() {
            task.freed_in_poll = true;
            return;
        }
        self.forget(key);
        out(hook(raw)(HookKind::Destroy));
    }

    /// Forgets a destroyed task, remembering its id to fold a second free.
    fn forget(&mut self, key: TaskKey) {
        self.tasks.remove(&key);
        self.recently_destroyed.insert(key);
    }

    /// The task's state, announcing it first with an `existing` init if unseen,
    /// named by where it is first seen.
    fn known(
        &mut self,
        key: TaskKey,
        seen: FirstSight,
        out: &mut impl FnMut(HookEvent),
        event: &impl Fn(HookKind) -> HookEvent,
    ) -> &mut TaskState {
        let names = &mut self.names;
        let default_type = &self.default_type.0;
        self.tasks.entry(key).or_insert_with(|| {
            let identity = match seen {
                FirstSight::Polled(slot) => names.existing(slot),
                FirstSight::Carried(address) => names.existing_woken(address),
                FirstSight::Elsewhere => names.existing(0),
            };
            out(event(HookKind::Init {
                resource_type: identity
                    .resource_type
                    .unwrap_or_else(|| default_type.clone()),
                trigger_id: None,
                existing: true,
                name: identity.name,
                location: identity.location,
            }));
            TaskState::default()
        })
    }
}

/// The task a raw record is about: (pid, task id).
fn key_of(raw: &RawEvent) -> TaskKey {
    (raw.pid(), raw.task_id)
}

/// Makes the hook events of `raw`'s task, at its time and thread.
fn hook(raw: &RawEvent) -> impl Fn(HookKind) -> HookEvent + '_ {
    move |kind| HookEvent {
        kind,
        async_id: raw.task_id,
        ts_ns: raw.ts_ns,
        pid: raw.pid(),
        tid: raw.tid(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: RawKind, task_id: u64, tid: u32) -> RawEvent {
        RawEvent {
            ts_ns: 1,
            pid_tgid: (100u64 << 32) | tid as u64,
            task_id,
            trigger_id: 0,
            kind: kind as u32,
            detail: 0,
        }
    }

    fn run(model: &mut TaskModel, events: &[RawEvent]) -> Vec<HookEvent> {
        let mut out = Vec::new();
        for event in events {
            model.apply(event, |e| out.push(e));
        }
        out
    }

    fn names(events: &[HookEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.kind.name()).collect()
    }

    #[test]
    fn spawn_becomes_init_with_its_trigger_and_type() {
        let mut spawn = raw(RawKind::Spawn, 5, 1);
        spawn.trigger_id = 2;
        spawn.detail = SpawnKind::Blocking as u32;
        let out = run(&mut TaskModel::new(), &[spawn]);
        assert_eq!(
            out[0].kind,
            HookKind::Init {
                resource_type: ResourceType::TOKIO_BLOCKING,
                trigger_id: Some(2),
                existing: false,
                name: None,
                location: None
            }
        );
        assert_eq!((out[0].async_id, out[0].pid, out[0].tid), (5, 100, 1));
    }

    #[test]
    fn spawn_seen_by_two_sites_is_one_init() {
        let out = run(
            &mut TaskModel::new(),
            &[raw(RawKind::Spawn, 5, 1), raw(RawKind::Spawn, 5, 1)],
        );
        assert_eq!(names(&out), ["init"]);
    }

    #[test]
    fn lifecycle_only_spawn_has_no_trigger_rather_than_a_wrong_one() {
        let mut spawn = raw(RawKind::Spawn, 5, 1);
        spawn.trigger_id = 0;
        let out = run(&mut TaskModel::lifecycle_only(), &[spawn]);
        assert_eq!(
            out[0].kind,
            HookKind::Init {
                resource_type: ResourceType::TOKIO_TASK,
                trigger_id: None,
                existing: false,
                name: None,
                location: None
            }
        );
    }

    #[test]
    fn task_first_seen_polling_is_announced_as_existing_without_trigger() {
        let out = run(&mut TaskModel::new(), &[raw(RawKind::PollStart, 9, 1)]);
        assert_eq!(names(&out), ["init", "before"]);
        assert_eq!(
            out[0].kind,
            HookKind::Init {
                resource_type: ResourceType::TOKIO_TASK,
                trigger_id: None,
                existing: true,
                name: None,
                location: None
            }
        );
    }

    /// An `after` without an await chain, `completed` or not.
    fn after(completed: bool) -> HookKind {
        HookKind::After {
            completed,
            awaiting: None,
        }
    }

    #[test]
    fn after_reports_completion_only_for_the_poll_that_completed() {
        let mut model = TaskModel::new();
        let out = run(
            &mut model,
            &[
                raw(RawKind::Spawn, 1, 1),
                raw(RawKind::PollStart, 1, 1),
                raw(RawKind::PollEnd, 1, 1),
                raw(RawKind::PollStart, 1, 1),
                raw(RawKind::Complete, 1, 1),
                raw(RawKind::PollEnd, 1, 1),
            ],
        );
        assert_eq!(out[2].kind, after(false));
        assert_eq!(out[5].kind, after(true));
    }

    #[test]
    fn completion_belongs_to_the_poll_on_the_completing_thread() {
        let mut model = TaskModel::new();
        let out = run(
            &mut model,
            &[
                raw(RawKind::Spawn, 1, 1),
                raw(RawKind::PollStart, 1, 1),
                raw(RawKind::PollStart, 1, 2),
                raw(RawKind::Complete, 1, 2),
                raw(RawKind::PollEnd, 1, 1),
                raw(RawKind::PollEnd, 1, 2),
            ],
        );
        assert_eq!(out[4].kind, after(false));
        assert_eq!(out[5].kind, after(true));
    }

    #[test]
    fn one_free_seen_by_two_sites_is_one_destroy_and_forgets_the_task() {
        let mut model = TaskModel::new();
        let out = run(
            &mut model,
            &[
                raw(RawKind::Spawn, 1, 1),
                raw(RawKind::Free, 1, 1),
                raw(RawKind::Free, 1, 1),
                raw(RawKind::Spawn, 2, 1),
                raw(RawKind::Free, 2, 1),
            ],
        );
        assert_eq!(names(&out), ["init", "destroy", "init", "destroy"]);
        assert_eq!(model.live_tasks(), 0);
    }

    #[test]
    fn task_freed_inside_its_last_poll_is_destroyed_after_that_poll() {
        let mut model = TaskModel::new();
        let out = run(
            &mut model,
            &[
                raw(RawKind::Spawn, 1, 1),
                raw(RawKind::PollStart, 1, 1),
                raw(RawKind::Complete, 1, 1),
                raw(RawKind::Free, 1, 1),
                raw(RawKind::Free, 1, 1),
                raw(RawKind::PollEnd, 1, 1),
            ],
        );
        assert_eq!(
            names(&out),
            ["init", "before", "resolve", "after", "destroy"]
        );
        assert_eq!(out[3].kind, after(true));
        assert_eq!(model.live_tasks(), 0);
        assert_eq!(model.anomalies(), ModelAnomalies::default());
    }

    #[test]
    fn the_same_task_id_in_two_processes_is_two_tasks() {
        let mut model = TaskModel::new();
        let mut child_spawn = raw(RawKind::Spawn, 1, 7);
        child_spawn.pid_tgid = (200u64 << 32) | 7;
        let mut child_free = child_spawn;
        child_free.kind = RawKind::Free as u32;
        let out = run(
            &mut model,
            &[
                raw(RawKind::Spawn, 1, 1),
                child_spawn,
                raw(RawKind::PollStart, 1, 1),
                child_free,
                raw(RawKind::PollEnd, 1, 1),
            ],
        );
        assert_eq!(names(&out), ["init", "init", "before", "destroy", "after"]);
        assert_eq!(
            out.iter().map(|e| e.pid).collect::<Vec<_>>(),
            [100, 200, 100, 200, 100]
        );
        assert_eq!(model.live_tasks(), 1);
    }

    #[test]
    fn poll_return_without_start_is_counted_not_reported() {
        let mut model = TaskModel::new();
        let out = run(&mut model, &[raw(RawKind::PollEnd, 3, 1)]);
        assert!(out.is_empty());
        assert_eq!(model.anomalies().orphan_returns, 1);
    }

    #[test]
    fn after_a_lost_poll_start_no_after_is_reported_on_a_thread_without_before() {
        // Thread 2's poll start was dropped; thread 1 is polling the same task.
        let mut model = TaskModel::new();
        let out = run(
            &mut model,
            &[
                raw(RawKind::Spawn, 1, 1),
                raw(RawKind::PollStart, 1, 1),
                raw(RawKind::PollEnd, 1, 2),
                raw(RawKind::PollEnd, 1, 1),
            ],
        );
        assert_eq!(names(&out), ["init", "before", "after"]);
        assert_eq!(out[2].tid, 1);
        assert_eq!(model.anomalies().orphan_returns, 1);
    }

    #[test]
    fn after_a_lost_poll_return_the_next_poll_on_that_thread_pairs_once() {
        let mut model = TaskModel::new();
        let out = run(
            &mut model,
            &[
                raw(RawKind::Spawn, 1, 1),
                raw(RawKind::PollStart, 1, 1),
                // Its return was dropped.
                raw(RawKind::PollStart, 1, 1),
                raw(RawKind::PollEnd, 1, 1),
                raw(RawKind::Free, 1, 1),
            ],
        );
        assert_eq!(
            names(&out),
            ["init", "before", "before", "after", "destroy"]
        );
        assert_eq!(model.live_tasks(), 0);
        assert_eq!(model.anomalies().lost_returns, 1);
    }

    #[test]
    fn a_million_task_lives_on_ever_new_threads_leave_the_model_bounded() {
        // Each task is spawned on a long-lived thread and polled, completed and
        // freed (by both probed sites) on a thread seen once, as if threads came
        // and went: nothing may be kept per dead thread or per dead task.
        let mut model = TaskModel::new();
        let mut largest = 0;
        for id in 1..=1_000_000u64 {
            let tid = 1000 + id as u32;
            let events = [
                raw(RawKind::Spawn, id, 1),
                raw(RawKind::PollStart, id, tid),
                raw(RawKind::Complete, id, tid),
                raw(RawKind::Free, id, tid),
                raw(RawKind::Free, id, tid),
                raw(RawKind::PollEnd, id, tid),
            ];
            let mut emitted = 0;
            for event in &events {
                model.apply(event, |_| emitted += 1);
            }
            assert_eq!(emitted, 5, "task {id}: init before resolve after destroy");
            largest = largest.max(model.tracked_entries());
        }
        assert_eq!(model.live_tasks(), 0);
        assert!(
            largest <= 2 * RECENTLY_DESTROYED + 1,
            "the model grew to {largest} entries"
        );
        assert_eq!(model.anomalies(), ModelAnomalies::default());
    }

    #[test]
    fn unknown_raw_kind_is_counted() {
        let mut bad = raw(RawKind::Spawn, 1, 1);
        bad.kind = 99;
        let mut model = TaskModel::new();
        assert!(run(&mut model, &[bad]).is_empty());
        assert_eq!(model.anomalies().undecodable, 1);
    }
}
