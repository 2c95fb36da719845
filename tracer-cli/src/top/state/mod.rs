//! What `tracer top` knows, updated from the hook-event stream and read by the
//! views; nothing here draws. One [`TopState`] serves a live session and a
//! recording alike: the live pipeline hands it batches of events, the timeline
//! hands it a recording's events up to the position shown.
//!
//! Per task it keeps the analysis's [`TaskRecord`] (through the same
//! [`Collector`] that `stats` and `tree` use, so the numbers agree) and top's
//! own [`TaskExtras`]. Done tasks are kept for `retain` and then forgotten, so
//! memory stays bounded however long the session runs.

pub mod histogram;
pub mod tasks;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use crate::{
    model::TaskKey,
    model::event::{HookEvent, HookKind},
    sinks::analysis::{Analysis, Collector, TaskRecord, warnings},
    sinks::output::{LiveStatus, SessionEnd, SessionInfo},
};
use tasks::{TaskExtras, TaskRow, display_name};

/// How the state is kept: what counts as a blocking poll, and for how long done
/// tasks stay on screen.
#[derive(Clone, Copy, Debug)]
pub struct StateOptions {
    /// A poll longer than this blocks the runtime (the `stats` warning).
    pub blocking_threshold: Duration,
    /// Polls from which an unfinished task gets a warning.
    pub many_polls: u64,
    /// How long a done task stays in the table.
    pub retain: Duration,
    /// At most this many done tasks are kept (the oldest go first), so a
    /// program that spawns a million short tasks a second costs bounded memory
    /// and drawing time.
    pub retain_max: usize,
}

/// Events and polls per second, measured between two ticks.
#[derive(Clone, Copy, Debug, Default)]
struct Rates {
    at_ns: u64,
    events: u64,
    polls: u64,
    wakes: u64,
    events_per_s: f64,
    polls_per_s: f64,
    wakes_per_s: f64,
}

/// Shortest stretch of time rates are measured over.
const RATE_WINDOW_NS: u64 = 500_000_000;

/// One line of the aggregate-by-name view (`n`).
#[derive(Clone, Debug, PartialEq)]
pub struct NameRow {
    /// The name (or resource type).
    pub name: String,
    /// Tasks with it in the table (alive, or done within `retain`).
    pub tasks: u64,
    /// Of which alive.
    pub alive: u64,
    /// Their polls.
    pub polls: u64,
    /// Their time in polls.
    pub busy_ns: u64,
    /// Their longest poll.
    pub longest_poll_ns: u64,
}

/// Everything `tracer top` shows, for one session.
#[derive(Clone)]
pub struct TopState {
    info: SessionInfo,
    options: StateOptions,
    collector: Collector,
    extras: HashMap<TaskKey, TaskExtras>,
    /// Done (resolved) tasks forgotten before their `destroy`: its arrival must
    /// not bring them back as tasks first seen then.
    tombstones: BTreeSet<TaskKey>,
    /// Done tasks in the order they became done, with when: the oldest are
    /// forgotten first, without a scan of every task.
    done: VecDeque<(u64, TaskKey)>,
    events: u64,
    polls: u64,
    /// Wake events seen; `None` until the first, so a session without wake probes
    /// (`--no-polls`) shows `-`, not 0.
    wakes: Option<u64>,
    tasks_seen: u64,
    now_ns: u64,
    rates: Rates,
    status: Option<LiveStatus>,
    runtime_version: Option<String>,
    end: Option<SessionEnd>,
    own_cpu_percent: Option<f64>,
}

impl TopState {
    /// An empty state for the session `info` describes.
    pub fn new(info: SessionInfo, options: StateOptions) -> Self {
        Self {
            now_ns: info.start_ns,
            rates: Rates {
                at_ns: info.start_ns,
                ..Rates::default()
            },
            info,
            options,
            collector: Collector::new(options.blocking_threshold),
            extras: HashMap::new(),
            tombstones: BTreeSet::new(),
            done: VecDeque::new(),
            events: 0,
            polls: 0,
            wakes: None,
            tasks_seen: 0,
            status: None,
            runtime_version: None,
            end: None,
            own_cpu_percent: None,
        }
    }

    /// Takes one event.
    pub fn apply(&mut self, event: &HookEvent) {
        self.events += 1;
        self.now_ns = self.now_ns.max(event.ts_ns);
        let key = (event.pid, event.async_id);
        if self.tombstones.contains(&key) {
            if event.kind == HookKind::Destroy {
                self.tombstones.remove(&key);
            }
            return;
        }
        let was_done = match self.collector.tasks().get(&key) {
            Some(task) => task.end_ns().is_some(),
            None => {
                self.tasks_seen += 1;
                false
            }
        };
        let poll = self.collector.record(event);
        if !was_done && matches!(event.kind, HookKind::Resolve | HookKind::Destroy) {
            self.done.push_back((event.ts_ns, key));
        }
        let extras = self.extras.entry(key).or_default();
        if let Some(poll) = poll {
            self.polls += 1;
            extras.poll_times.record(poll.duration_ns());
        }
        match &event.kind {
            HookKind::Init { name, location, .. } => {
                extras.name.clone_from(name);
                extras.location.clone_from(location);
            }
            // A poll starts: whatever woke the task has been served.
            HookKind::Before { sched_ns } => {
                extras.scheduled = false;
                if let Some(sched_ns) = sched_ns {
                    extras.sched_times.get_or_insert_default().record(*sched_ns);
                }
            }
            HookKind::Wake { self_wake, .. } => {
                *self.wakes.get_or_insert(0) += 1;
                *extras.wakes.get_or_insert(0) += 1;
                *extras.self_wakes.get_or_insert(0) += u64::from(*self_wake);
                extras.scheduled = true;
            }
            HookKind::After { .. } | HookKind::Resolve | HookKind::Destroy => {}
        }
    }

    /// Takes the live session's status (drops, probe sites, runtime version).
    pub fn set_status(&mut self, status: LiveStatus) {
        self.status = Some(status);
    }

    /// The runtime version, when the source knows it (a recording's header).
    pub fn set_runtime_version(&mut self, version: Option<String>) {
        self.runtime_version = version.filter(|version| !version.is_empty());
    }

    /// The session ended (the target exited, or the recording's end was reached).
    pub fn set_end(&mut self, end: Option<SessionEnd>) {
        self.end = end;
    }

    /// Top's own CPU use, in percent of one core.
    pub fn set_own_cpu(&mut self, percent: Option<f64>) {
        self.own_cpu_percent = percent;
    }

    /// Moves the clock to `now_ns` (CLOCK_MONOTONIC): rates are measured, and
    /// done tasks older than `retain` are forgotten.
    pub fn tick(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        let elapsed = self.now_ns.saturating_sub(self.rates.at_ns);
        if elapsed >= RATE_WINDOW_NS {
            let seconds = elapsed as f64 / 1e9;
            self.rates = Rates {
                at_ns: self.now_ns,
                events: self.events,
                polls: self.polls,
                wakes: self.wakes.unwrap_or(0),
                events_per_s: (self.events - self.rates.events) as f64 / seconds,
                polls_per_s: (self.polls - self.rates.polls) as f64 / seconds,
                wakes_per_s: (self.wakes.unwrap_or(0) - self.rates.wakes) as f64 / seconds,
            };
        }
        let retain_ns = self.options.retain.as_nanos() as u64;
        while let Some(&(done_ns, key)) = self.done.front() {
            let expired = self.now_ns.saturating_sub(done_ns) > retain_ns;
            if !expired && self.done.len() <= self.options.retain_max {
                break;
            }
            self.done.pop_front();
            if let Some(task) = self.collector.forget(&key) {
                self.extras.remove(&key);
                if task.destroy_ns.is_none() {
                    self.tombstones.insert(key);
                }
            }
        }
    }

    /// The session.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// From the session's start to now.
    pub fn uptime_ns(&self) -> u64 {
        self.now_ns.saturating_sub(self.info.start_ns)
    }

    /// Hook events taken.
    #[cfg(test)]
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Polls finished.
    #[cfg(test)]
    pub fn polls(&self) -> u64 {
        self.polls
    }

    /// (events/s, polls/s) over the last measured stretch.
    pub fn rates(&self) -> (f64, f64) {
        (self.rates.events_per_s, self.rates.polls_per_s)
    }

    /// Wakes a second, `None` while no wake has been seen (no wake probes).
    pub fn wakes_per_s(&self) -> Option<f64> {
        self.wakes.map(|_| self.rates.wakes_per_s)
    }

    /// Whether wakes are being reported: a task never woken then has 0 wakes, not `-`.
    pub fn wakes_reported(&self) -> bool {
        self.wakes.is_some()
    }

    /// Tasks not done.
    pub fn alive(&self) -> u64 {
        self.collector
            .tasks()
            .values()
            .filter(|task| task.end_ns().is_none())
            .count() as u64
    }

    /// Tasks seen since the start, forgotten ones included.
    pub fn tasks_seen(&self) -> u64 {
        self.tasks_seen
    }

    /// Tasks in the table now (alive, or done within `retain`).
    pub fn tasks_kept(&self) -> usize {
        self.collector.tasks().len()
    }

    /// The live status, if the source is a live session.
    pub fn status(&self) -> Option<&LiveStatus> {
        self.status.as_ref()
    }

    /// The runtime and its version, e.g. `tokio 1.54.1`.
    pub fn runtime(&self) -> String {
        let version = self
            .status
            .as_ref()
            .and_then(|status| status.runtime_version.as_deref())
            .or(self.runtime_version.as_deref());
        match version {
            Some(version) => format!("{} {version}", self.info.runtime),
            None => self.info.runtime.clone(),
        }
    }

    /// Raw events dropped so far (ring buffer full).
    pub fn dropped(&self) -> u64 {
        self.status
            .as_ref()
            .map(|status| status.dropped)
            .or(self.end.as_ref().map(|end| end.dropped))
            .unwrap_or(0)
    }

    /// How the session ended, once it has.
    pub fn end(&self) -> Option<&SessionEnd> {
        self.end.as_ref()
    }

    /// Top's own CPU use, in percent of one core, once measured.
    pub fn own_cpu_percent(&self) -> Option<f64> {
        self.own_cpu_percent
    }

    /// The thresholds the state was built with.
    pub fn options(&self) -> StateOptions {
        self.options
    }

    /// One row per task kept, in task order.
    pub fn rows(&self) -> Vec<TaskRow> {
        self.collector
            .tasks()
            .values()
            .map(|task| self.row(task))
            .collect()
    }

    /// The table row of `task` now: once wakes are reported, a task never woken
    /// shows 0 wakes, not `-`.
    pub fn row(&self, task: &TaskRecord) -> TaskRow {
        let mut row = TaskRow::new(task, self.extras.get(&task.key()), self.now_ns);
        if self.wakes_reported() {
            row.wakes = row.wakes.or(Some(0));
            row.self_wakes = row.self_wakes.or(Some(0));
        }
        row
    }

    /// One task, with top's extras.
    pub fn task(&self, key: &TaskKey) -> Option<(&TaskRecord, Option<&TaskExtras>)> {
        let record = self.collector.tasks().get(key)?;
        Some((record, self.extras.get(key)))
    }

    /// What a task is called on screen.
    pub fn name_of(&self, key: &TaskKey) -> Option<String> {
        let (record, extras) = self.task(key)?;
        Some(display_name(record, extras))
    }

    /// The task's triggers, nearest first, as far up as they are still kept
    /// (a trigger that is done and forgotten ends the chain). Stops at a cycle,
    /// which only a damaged recording could hold.
    pub fn trigger_chain(&self, key: &TaskKey) -> Vec<TaskKey> {
        let mut chain = Vec::new();
        let mut seen = BTreeSet::from([*key]);
        let mut current = self.collector.tasks().get(key);
        while let Some(task) = current {
            let Some(parent) = task.trigger_id.filter(|id| *id != 0) else {
                break;
            };
            let parent_key = (task.pid, parent);
            if !seen.insert(parent_key) {
                break;
            }
            chain.push(parent_key);
            current = self.collector.tasks().get(&parent_key);
        }
        chain
    }

    /// The tasks `key` spawned that are still kept.
    pub fn children(&self, key: &TaskKey) -> Vec<TaskKey> {
        self.collector
            .tasks()
            .values()
            .filter(|task| task.pid == key.0 && task.trigger_id == Some(key.1))
            .map(TaskRecord::key)
            .collect()
    }

    /// The tasks kept, as the analysis sees a session: what the warnings and the
    /// trigger tree are computed from.
    pub fn analysis(&self) -> Analysis {
        self.collector.snapshot(&self.info, self.now_ns)
    }

    /// The warnings of one task, by the `stats` rules.
    pub fn warnings_for(&self, key: &TaskKey, analysis: &Analysis) -> Vec<String> {
        match analysis.tasks.get(key) {
            Some(task) => warnings::for_task(task, analysis, self.options.many_polls),
            None => Vec::new(),
        }
    }

    /// The tasks kept, aggregated by name, busiest first.
    pub fn by_name(&self) -> Vec<NameRow> {
        let mut groups: BTreeMap<String, NameRow> = BTreeMap::new();
        for task in self.collector.tasks().values() {
            let name = display_name(task, self.extras.get(&task.key()));
            let row = groups.entry(name.clone()).or_insert_with(|| NameRow {
                name,
                tasks: 0,
                alive: 0,
                polls: 0,
                busy_ns: 0,
                longest_poll_ns: 0,
            });
            row.tasks += 1;
            row.alive += u64::from(task.end_ns().is_none());
            row.polls += task.polls;
            row.busy_ns += task.busy_ns;
            row.longest_poll_ns = row.longest_poll_ns.max(task.longest_poll_ns);
        }
        let mut rows: Vec<NameRow> = groups.into_values().collect();
        rows.sort_by(|a, b| b.busy_ns.cmp(&a.busy_ns).then_with(|| a.name.cmp(&b.name)));
        rows
    }
}

#[cfg(test)]
mod tests;
