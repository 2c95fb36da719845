//! Warnings about tasks, as tokio-console gives them: one small struct per
//! warning behind the [`Warn`] trait, so adding a warning touches this file only.
//!
//! tokio-console's self-wake warning is [`MostlySelfWoken`] (counting `yield_now`
//! too, which tokio-console misses since Tokio 1.23); its lost-waker warning needs
//! the waker clone/drop probes, which tracer does not have yet. "Polled many
//! times without finishing" stands in for "polled without progress", the closest
//! a poll count can tell.

use serde::Serialize;

use super::{Analysis, TaskRecord, TaskState, human_duration};
use crate::model::event::ResourceType;

/// One kind of warning.
pub trait Warn {
    /// A stable name for programs, e.g. `blocking_polls`.
    fn name(&self) -> &'static str;
    /// Whether `task` deserves the warning.
    fn check(&self, task: &TaskRecord, analysis: &Analysis) -> bool;
    /// What is wrong with one task, e.g. `#5: 3 polls over 10.00ms, longest 25.00ms`.
    fn format(&self, task: &TaskRecord, analysis: &Analysis) -> String;
    /// One line for `count` tasks, e.g. `2 tasks have polls that block the runtime …`.
    fn summary(&self, count: usize, analysis: &Analysis) -> String;
}

/// A poll of an async task ran longer than the blocking threshold: while it
/// runs, its worker thread runs nothing else. `tokio.blocking` tasks are left
/// out: they run on threads of their own, and a runtime worker is one of them
/// for its whole life.
pub struct BlockingPolls;

impl Warn for BlockingPolls {
    fn name(&self) -> &'static str {
        "blocking_polls"
    }
    fn check(&self, task: &TaskRecord, _: &Analysis) -> bool {
        task.blocking_polls > 0 && task.resource_type != ResourceType::TOKIO_BLOCKING
    }
    fn format(&self, task: &TaskRecord, analysis: &Analysis) -> String {
        format!(
            "{}: {} poll(s) over {}, longest {}",
            analysis.task_label(task),
            task.blocking_polls,
            human_duration(analysis.blocking_threshold_ns),
            human_duration(task.longest_poll_ns)
        )
    }
    fn summary(&self, count: usize, analysis: &Analysis) -> String {
        format!(
            "{count} task(s) have polls that block the runtime (longer than {})",
            human_duration(analysis.blocking_threshold_ns)
        )
    }
}

/// Spawned during the session and never polled by its end.
pub struct NeverPolled;

impl Warn for NeverPolled {
    fn name(&self) -> &'static str {
        "never_polled"
    }
    fn check(&self, task: &TaskRecord, _: &Analysis) -> bool {
        !task.existing && task.polls == 0 && task.state() == TaskState::Idle
    }
    fn format(&self, task: &TaskRecord, analysis: &Analysis) -> String {
        format!(
            "{}: spawned at {:.6}s, never polled",
            analysis.task_label(task),
            analysis.relative_s(task.start_ns)
        )
    }
    fn summary(&self, count: usize, _: &Analysis) -> String {
        format!("{count} task(s) were never polled")
    }
}

/// Still alive (its future neither finished nor was cancelled) when the session
/// ended: fine for a server's accept loop, a leak for a request handler.
pub struct NeverFinished;

impl Warn for NeverFinished {
    fn name(&self) -> &'static str {
        "never_finished"
    }
    fn check(&self, task: &TaskRecord, _: &Analysis) -> bool {
        task.state() != TaskState::Done
    }
    fn format(&self, task: &TaskRecord, analysis: &Analysis) -> String {
        format!(
            "{}: {} after {}",
            analysis.task_label(task),
            task.state().as_str(),
            human_duration(task.lifetime_ns(analysis.end_ns))
        )
    }
    fn summary(&self, count: usize, _: &Analysis) -> String {
        format!("{count} task(s) never finished")
    }
}

/// Polled at least `min_polls` times and still not finished at the end: a
/// future that keeps returning `Pending` (a busy loop around `yield_now`, a
/// stream that wakes itself) without completing.
pub struct ManyPollsUnfinished {
    /// The poll count from which a task is suspect.
    pub min_polls: u64,
}

impl Warn for ManyPollsUnfinished {
    fn name(&self) -> &'static str {
        "many_polls_unfinished"
    }
    fn check(&self, task: &TaskRecord, _: &Analysis) -> bool {
        task.polls >= self.min_polls && task.state() != TaskState::Done
    }
    fn format(&self, task: &TaskRecord, analysis: &Analysis) -> String {
        format!(
            "{}: {} polls, busy {}, not finished",
            analysis.task_label(task),
            task.polls,
            human_duration(task.busy_ns)
        )
    }
    fn summary(&self, count: usize, _: &Analysis) -> String {
        format!(
            "{count} task(s) were polled at least {} times without finishing",
            self.min_polls
        )
    }
}

/// A task waited longer than the scheduling threshold between being queued
/// (woken or spawned) and its poll: the workers were busy, or too few.
pub struct LongWaits;

impl Warn for LongWaits {
    fn name(&self) -> &'static str {
        "long_waits"
    }
    fn check(&self, task: &TaskRecord, _: &Analysis) -> bool {
        task.long_waits > 0
    }
    fn format(&self, task: &TaskRecord, analysis: &Analysis) -> String {
        format!(
            "{}: {} wait(s) for a worker over {}, longest {}",
            analysis.task_label(task),
            task.long_waits,
            human_duration(analysis.sched_threshold_ns),
            human_duration(task.sched.max().unwrap_or(0))
        )
    }
    fn summary(&self, count: usize, analysis: &Analysis) -> String {
        format!(
            "{count} task(s) waited longer than {} for a worker after being woken or spawned",
            human_duration(analysis.sched_threshold_ns)
        )
    }
}

/// More than half of a task's wakes were its own (in its poll, or `yield_now`):
/// it spins through the scheduler instead of waiting for something.
pub struct MostlySelfWoken;

impl Warn for MostlySelfWoken {
    fn name(&self) -> &'static str {
        "mostly_self_woken"
    }
    fn check(&self, task: &TaskRecord, _: &Analysis) -> bool {
        task.self_wakes * 2 > task.wakes
    }
    fn format(&self, task: &TaskRecord, analysis: &Analysis) -> String {
        format!(
            "{}: {} of its {} wakes by itself",
            analysis.task_label(task),
            task.self_wakes,
            task.wakes
        )
    }
    fn summary(&self, count: usize, _: &Analysis) -> String {
        format!("{count} task(s) were woken by themselves more than half of the time")
    }
}

/// The default `min_polls` of [`ManyPollsUnfinished`].
pub const DEFAULT_MANY_POLLS: u64 = 1000;

/// One warning and the tasks that got it.
#[derive(Clone, Debug, Serialize)]
pub struct Warning {
    /// [`Warn::name`].
    pub warning: &'static str,
    /// [`Warn::summary`].
    pub summary: String,
    /// How many tasks.
    pub count: usize,
    /// [`Warn::format`] for each task, by (pid, id).
    pub tasks: Vec<String>,
}

/// Every warning rule, in the order reports list them: `stats` and `top` both
/// check these, so the two never disagree.
fn rules(many_polls: u64) -> [Box<dyn Warn>; 6] {
    [
        Box::new(BlockingPolls),
        Box::new(NeverPolled),
        Box::new(NeverFinished),
        Box::new(ManyPollsUnfinished {
            min_polls: many_polls,
        }),
        Box::new(LongWaits),
        Box::new(MostlySelfWoken),
    ]
}

/// What each rule says about one task (`#5: 3 poll(s) over 10.00ms, …`): the
/// warnings of `tracer top`'s task details.
pub fn for_task(task: &TaskRecord, analysis: &Analysis, many_polls: u64) -> Vec<String> {
    rules(many_polls)
        .iter()
        .filter(|warn| warn.check(task, analysis))
        .map(|warn| warn.format(task, analysis))
        .collect()
}

/// Every warning that applies to at least one task of `analysis`.
pub fn check_all(analysis: &Analysis, many_polls: u64) -> Vec<Warning> {
    rules(many_polls)
        .into_iter()
        .filter_map(|warn| {
            let tasks: Vec<String> = analysis
                .tasks
                .values()
                .filter(|task| warn.check(task, analysis))
                .map(|task| warn.format(task, analysis))
                .collect();
            (!tasks.is_empty()).then(|| Warning {
                warning: warn.name(),
                summary: warn.summary(tasks.len(), analysis),
                count: tasks.len(),
                tasks,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{super::test_events::analysis, *};

    #[test]
    fn long_waits_and_self_wakes_are_warned_with_their_figures() {
        let mut collector = super::super::Collector::new(super::super::DEFAULT_BLOCKING_THRESHOLD);
        for event in super::super::test_events::wake_session() {
            collector.record(&event);
        }
        let analysis = collector.finish(&super::super::test_events::info());
        let five = &analysis.tasks[&(1, 5)];
        assert_eq!((five.wakes, five.self_wakes, five.long_waits), (4, 3, 1));
        assert_eq!(five.sched.max(), Some(12_000_000));
        let warnings = check_all(&analysis, 1000);
        let tasks = |name: &str| {
            warnings
                .iter()
                .find(|w| w.warning == name)
                .map(|w| w.tasks.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            tasks("long_waits"),
            ["#5: 1 wait(s) for a worker over 10.00ms, longest 12.00ms"]
        );
        assert_eq!(
            tasks("mostly_self_woken"),
            ["#5: 3 of its 4 wakes by itself"]
        );
    }

    #[test]
    fn each_warning_names_its_tasks() {
        let warnings = check_all(&analysis(), 2);
        let by_name = |name: &str| {
            warnings
                .iter()
                .find(|warning| warning.warning == name)
                .unwrap_or_else(|| panic!("no {name} in {warnings:?}"))
        };
        let blocking = by_name("blocking_polls");
        assert_eq!(
            blocking.tasks,
            ["#2: 1 poll(s) over 10.00ms, longest 16.00ms"]
        );
        assert_eq!(
            blocking.summary,
            "1 task(s) have polls that block the runtime (longer than 10.00ms)"
        );
        assert_eq!(
            by_name("never_polled").tasks,
            ["#3: spawned at 0.002000s, never polled"]
        );
        assert_eq!(by_name("never_finished").count, 2);
        assert!(
            warnings
                .iter()
                .all(|w| w.warning != "many_polls_unfinished")
        );
    }
}
