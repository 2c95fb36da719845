//! How long a task waited for a worker: the start of each wait, as Tokio's own
//! `TaskMeta::schedule_latency()` counts it (Tokio 1.54.1), from the stream of
//! spawns, wakes, aborts and polls.
//!
//! Tokio stamps a task when it is queued (`Schedule::schedule`): at spawn; at a
//! wake or abort that finds it idle; and, for a task woken while its poll runs,
//! when that poll ends (the scheduler re-queues it then, `yield_now` in
//! `Harness::poll`). A wake of a task already notified changes nothing. The
//! state bits the BPF side read just before the wake say which case it is, so
//! this holds for tasks that existed before attach too.

use tracer_common::state;

/// One task's wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wait {
    /// When it was last queued and not yet polled; `None` when not queued, or
    /// when the start was not seen.
    queued_at: Option<u64>,
    /// A wake found it running (and not yet notified) at this time: it is queued
    /// when that poll ends.
    woken_running_at: Option<u64>,
}

impl Wait {
    /// A task just spawned: queued now.
    pub fn spawned(ts_ns: u64) -> Self {
        Self {
            queued_at: Some(ts_ns),
            ..Self::default()
        }
    }

    /// A second spawn site of the same spawn reported it at `ts_ns` (the return
    /// of `OwnedTasks::bind` after `bind_inner`): the later one is nearer to
    /// when Tokio queues the task, just after binding it.
    pub fn spawn_seen_again(&mut self, ts_ns: u64) {
        if let Some(queued_at) = &mut self.queued_at {
            *queued_at = ts_ns.max(*queued_at);
        }
    }

    /// A wake at `ts_ns` of a task whose state bits were `bits` just before
    /// (with [`state::DEFERRED`] when it is the wake the task deferred); the
    /// waker was the task itself (`by_itself`). Returns whether the wake is a
    /// self-wake: by itself, or the one it deferred.
    pub fn woken(&mut self, ts_ns: u64, bits: u32, by_itself: bool) -> bool {
        self.notified(ts_ns, bits);
        by_itself || bits & state::DEFERRED != 0
    }

    /// An abort at `ts_ns`: it queues the task as a wake would.
    pub fn aborted(&mut self, ts_ns: u64, bits: u32) {
        self.notified(ts_ns, bits);
    }

    fn notified(&mut self, ts_ns: u64, bits: u32) {
        if bits & (state::COMPLETE | state::NOTIFIED) != 0 {
            return;
        }
        if bits & state::RUNNING != 0 {
            self.woken_running_at.get_or_insert(ts_ns);
        } else {
            self.queued_at = Some(ts_ns);
        }
    }

    /// A poll starts at `ts_ns`: how long the task waited for it, if known.
    pub fn polled(&mut self, ts_ns: u64) -> Option<u64> {
        // A task woken in its previous poll can start its next poll on another
        // thread before that poll's return reaches us: it waited from the wake.
        let since = self.queued_at.take().or(self.woken_running_at.take());
        self.woken_running_at = None;
        since.map(|since| ts_ns.saturating_sub(since))
    }

    /// A poll ended at `ts_ns`: a task woken during it is queued now.
    pub fn poll_ended(&mut self, ts_ns: u64) {
        if self.woken_running_at.take().is_some() {
            self.queued_at = Some(ts_ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: u32 = 0;

    #[test]
    fn a_spawned_task_waits_from_its_spawn() {
        let mut wait = Wait::spawned(100);
        assert_eq!(wait.polled(130), Some(30));
        assert_eq!(wait.polled(140), None, "one wait, one poll");
    }

    #[test]
    fn a_spawn_seen_at_two_sites_waits_from_the_later() {
        let mut wait = Wait::spawned(100);
        wait.spawn_seen_again(110);
        wait.spawn_seen_again(105);
        assert_eq!(wait.polled(130), Some(20));
        let mut polled = Wait::default();
        polled.spawn_seen_again(110);
        assert_eq!(polled.polled(130), None, "not queued: nothing to move");
    }

    #[test]
    fn a_second_wake_of_a_queued_task_does_not_restart_its_wait() {
        let mut wait = Wait::default();
        assert!(!wait.woken(10, IDLE, false));
        assert!(!wait.woken(20, state::NOTIFIED, false));
        assert_eq!(wait.polled(50), Some(40));
    }

    #[test]
    fn a_task_woken_while_running_waits_from_the_end_of_that_poll() {
        let mut wait = Wait::default();
        assert!(wait.woken(10, state::RUNNING, true));
        wait.poll_ended(25);
        assert_eq!(wait.polled(40), Some(15));
    }

    #[test]
    fn a_next_poll_seen_before_the_previous_return_waits_from_the_wake() {
        let mut wait = Wait::default();
        wait.woken(10, state::RUNNING, false);
        assert_eq!(wait.polled(18), Some(8));
        wait.poll_ended(20);
        assert_eq!(wait.polled(30), None);
    }

    #[test]
    fn the_wake_a_task_deferred_is_its_own_and_queues_it() {
        let mut wait = Wait::default();
        assert!(wait.woken(10, state::DEFERRED, false));
        assert!(!wait.woken(12, state::NOTIFIED, false));
        assert_eq!(wait.polled(15), Some(5));
    }

    #[test]
    fn wakes_of_a_complete_task_and_aborts_of_a_running_one_queue_nothing_now() {
        let mut wait = Wait::default();
        wait.woken(10, state::COMPLETE, false);
        assert_eq!(wait.polled(20), None);
        wait.aborted(30, IDLE);
        assert_eq!(wait.polled(35), Some(5));
    }

    #[test]
    fn a_task_first_seen_polling_has_no_known_wait() {
        assert_eq!(Wait::default().polled(7), None);
    }
}
