//! Goroutine status transitions ([`RawGoEvent`]) to the model's records: the
//! async_hooks life of a goroutine.
//!
//! | transition (`from -> to`) | event |
//! | --- | --- |
//! | `_Gdead -> _Grunnable`, `_Gdead -> _Gwaiting` (a parked coroutine) | `init`, trigger = the creating goroutine; announced at the goroutine's next transition, when its id is assigned |
//! | `_Grunnable -> _Grunning` | `before` |
//! | `_Grunning -> _Grunnable` (yield, preemption), `_Gsyscall -> _Grunnable` | `after`, queued again without a wake |
//! | `_Grunning -> _Gwaiting` (a block), `preemptPark` | `after` |
//! | `_Gwaiting -> _Grunnable` | `wake`, waker = the goroutine running on that thread (0: the scheduler, the netpoller) |
//! | `_Grunning -> _Gdead` | `resolve`, `after`, `destroy` |
//! | `_Gsyscall -> _Grunning` after the thread's P was taken (it comes back on another P, or on its own given back) | `after`, queued, `before`: the run ended in the syscall, as Go's tracer says |
//!
//! A `_Grunning -> _Gwaiting` that comes back `_Gwaiting -> _Grunning` on the
//! same thread is the runtime working on the goroutine's behalf (GC assists,
//! stack scans, stop-the-world): no block, no event. Where the binary tells
//! those waits by their wait reason when they begin (Go 1.21+), they are set
//! aside at once; otherwise the `after` is held until the goroutine's next
//! transition shows whether it came back, or until a later record shows time
//! has moved on ([`HOLD_NS`]).

use std::collections::HashMap;

use tracer_common::{
    RawEvent, RawKind, RawSpawnEvent, SpawnKind,
    go::{GoKind, RawGoEvent, status},
};

use crate::{
    model::decode,
    runtime::{ModelRecord, RecordMapper},
};

/// How long an `after` whose wait may be a runtime round trip is held, at most:
/// those round trips take microseconds.
pub const HOLD_NS: u64 = 1_000_000;

/// A goroutine of a process: (pid, goroutine id) or (pid, `g` address).
type Key = (u32, u64);

/// A creation whose goroutine id is not known yet.
#[derive(Clone, Copy, Debug)]
struct Creation {
    event: RawEvent,
    start_pc: u64,
}

/// Maps one process tree's [`RawGoEvent`]s, in ring order.
#[derive(Debug, Default)]
pub struct GoEvents {
    /// Bit `n`: wait reason `n` begins a runtime round trip, not a block; applied
    /// only when `reasons_before_cas`.
    round_trip_mask: u64,
    /// The runtime sets `g.waitreason` before the transition the probe sees.
    reasons_before_cas: bool,
    /// Creations by `g` address, until the goroutine's id is seen.
    created: HashMap<Key, Creation>,
    /// `newproc1` calls by thread (Go before 1.21): (creator's id, start PC).
    creators: HashMap<u64, u64>,
    /// Goroutines in a runtime round trip (`_Grunning -> _Gwaiting` set aside).
    round_trips: HashMap<Key, ()>,
    /// `after`s held until it is known whether their wait is a round trip.
    held: HashMap<Key, RawEvent>,
    /// Goroutines in a syscall, with the P their thread held when it began.
    in_syscall: HashMap<Key, u64>,
    counts: Counts,
}

/// What the mapping set aside, for the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Runtime round trips (GC, stop-the-world) not reported as blocks.
    pub round_trips: u64,
    /// Transitions that mean nothing in the table above, left out.
    pub unexpected: u64,
}

impl GoEvents {
    /// A mapping for a binary whose round-trip wait reasons are `mask`, set
    /// before the transition when `reasons_before_cas`.
    pub fn new(round_trip_mask: u64, reasons_before_cas: bool) -> Self {
        Self {
            round_trip_mask,
            reasons_before_cas,
            ..Self::default()
        }
    }

    /// Maps one record, giving the model's records to `out` in order.
    pub fn apply(&mut self, raw: &RawGoEvent, out: &mut dyn FnMut(ModelRecord)) {
        self.release_held(raw, out);
        let Ok(kind) = GoKind::try_from(raw.kind) else {
            self.counts.unexpected += 1;
            return;
        };
        let (from, to) = match kind {
            GoKind::NewProc => {
                self.creators.insert(raw.pid_tgid, raw.other);
                return;
            }
            GoKind::PreemptPark => (status::RUNNING, status::PREEMPTED),
            GoKind::Status => raw.statuses(),
        };
        let pid = (raw.pid_tgid >> 32) as u32;
        if from == status::DEAD {
            self.created(raw, pid);
            return;
        }
        self.announce(raw, pid, out);
        self.transition(raw, (pid, raw.goid), from, to, out);
    }

    /// A creation: remembered by `g` until the goroutine's id is assigned.
    fn created(&mut self, raw: &RawGoEvent, pid: u32) {
        if !matches!(raw.statuses().1, status::RUNNABLE | status::WAITING) {
            self.counts.unexpected += 1;
            return;
        }
        let parent = match (raw.other, self.creators.remove(&raw.pid_tgid)) {
            (0, Some(creator)) => creator,
            (parent, _) => parent,
        };
        let event = RawEvent::at(
            raw.ts_ns,
            raw.pid_tgid,
            RawKind::Spawn,
            0,
            parent,
            SpawnKind::Task as u32,
        );
        let creation = Creation {
            event,
            start_pc: raw.start_pc,
        };
        // A `g` created again before it ever ran: the first creation's
        // goroutine id is unknowable now.
        if self.created.insert((pid, raw.gp), creation).is_some() {
            self.counts.unexpected += 1;
        }
    }

    /// Announces the creation of `raw`'s goroutine, now that its id is known.
    fn announce(&mut self, raw: &RawGoEvent, pid: u32, out: &mut dyn FnMut(ModelRecord)) {
        let Some(creation) = self.created.remove(&(pid, raw.gp)) else {
            return;
        };
        let mut event = creation.event;
        event.task_id = raw.goid;
        out(ModelRecord::Named(RawSpawnEvent {
            event,
            vtable: creation.start_pc,
            location: creation.start_pc,
        }));
    }

    /// A transition of a goroutine whose id is known.
    fn transition(
        &mut self,
        raw: &RawGoEvent,
        key: Key,
        from: u32,
        to: u32,
        out: &mut dyn FnMut(ModelRecord),
    ) {
        let named = |kind, trigger| {
            ModelRecord::Named(RawSpawnEvent {
                event: RawEvent::at(raw.ts_ns, raw.pid_tgid, kind, raw.goid, trigger, 0),
                vtable: raw.start_pc,
                location: 0,
            })
        };
        let plain =
            |kind| ModelRecord::Plain(RawEvent::at(raw.ts_ns, raw.pid_tgid, kind, raw.goid, 0, 0));
        match (from, to) {
            (status::RUNNABLE, status::RUNNING) => out(named(RawKind::PollStart, 0)),
            (status::RUNNING | status::SYSCALL, status::RUNNABLE) => {
                self.in_syscall.remove(&key);
                out(plain(RawKind::PollEnd));
                // Runnable again without a wake: queued from now.
                out(plain(RawKind::Abort));
            }
            (status::RUNNING, status::PREEMPTED) => out(plain(RawKind::PollEnd)),
            (status::RUNNING, status::WAITING) => self.blocked(raw, key, out),
            (status::WAITING, status::RUNNING) => {
                if self.round_trips.remove(&key).is_some() || self.held.remove(&key).is_some() {
                    self.counts.round_trips += 1;
                } else {
                    self.counts.unexpected += 1;
                }
            }
            (status::WAITING, status::RUNNABLE) => out(named(RawKind::Wake, raw.other)),
            (status::RUNNING, status::DEAD) => {
                out(plain(RawKind::Complete));
                out(plain(RawKind::PollEnd));
                out(plain(RawKind::Free));
            }
            (status::RUNNING, status::SYSCALL) => {
                self.in_syscall.insert(key, raw.other);
            }
            (status::SYSCALL, status::RUNNING) => {
                let before = self.in_syscall.remove(&key);
                // The tick moves by one when the P stayed the thread's.
                let lost = before.is_some_and(|p| p != raw.other) || raw.wait_reason != 1;
                if lost {
                    out(plain(RawKind::PollEnd));
                    out(plain(RawKind::Abort));
                    out(named(RawKind::PollStart, 0));
                }
            }
            _ => self.counts.unexpected += 1,
        }
    }

    /// `_Grunning -> _Gwaiting`: a block, or a runtime round trip.
    fn blocked(&mut self, raw: &RawGoEvent, key: Key, out: &mut dyn FnMut(ModelRecord)) {
        let end = RawEvent::at(raw.ts_ns, raw.pid_tgid, RawKind::PollEnd, raw.goid, 0, 0);
        if !self.reasons_before_cas {
            self.held.insert(key, end);
        } else if raw.wait_reason < 64 && self.round_trip_mask & (1 << raw.wait_reason) != 0 {
            self.round_trips.insert(key, ());
        } else {
            out(ModelRecord::Plain(end));
        }
    }

    /// Gives out the held `after`s that `raw` shows were real blocks: its
    /// goroutine's (unless it is the return from the round trip), and every one
    /// older than [`HOLD_NS`].
    fn release_held(&mut self, raw: &RawGoEvent, out: &mut dyn FnMut(ModelRecord)) {
        if self.held.is_empty() {
            return;
        }
        let key = ((raw.pid_tgid >> 32) as u32, raw.goid);
        let returns = raw.kind == GoKind::Status as u32
            && raw.statuses() == (status::WAITING, status::RUNNING);
        let mut released: Vec<RawEvent> = Vec::new();
        self.held.retain(|held_key, held| {
            let real =
                (*held_key == key && !returns) || raw.ts_ns.saturating_sub(held.ts_ns) > HOLD_NS;
            if real {
                released.push(*held);
            }
            !real
        });
        released.sort_by_key(|event| event.ts_ns);
        for event in released {
            out(ModelRecord::Plain(event));
        }
    }
}

impl RecordMapper for GoEvents {
    fn map(&mut self, record: &[u8], out: &mut dyn FnMut(ModelRecord)) -> bool {
        let Some(raw) = decode::<RawGoEvent>(record) else {
            return false;
        };
        self.apply(&raw, out);
        true
    }

    fn summary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.counts.round_trips > 0 {
            lines.push(format!(
                "go: {} runtime waits on a goroutine's behalf (GC assists, stack scans, stop-the-world) not reported as blocks",
                self.counts.round_trips
            ));
        }
        if !self.created.is_empty() {
            lines.push(format!(
                "go: {} goroutines created but never seen running before tracing stopped: not reported (their ids were not assigned yet)",
                self.created.len()
            ));
        }
        if self.counts.unexpected > 0 {
            lines.push(format!(
                "go: {} status transitions outside the mapping were left out",
                self.counts.unexpected
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PID_TGID: u64 = (7 << 32) | 70;

    fn status(gp: u64, goid: u64, from: u32, to: u32) -> RawGoEvent {
        RawGoEvent {
            ts_ns: 1_000,
            pid_tgid: PID_TGID,
            gp,
            goid,
            start_pc: 0x4000,
            other: 0,
            kind: GoKind::Status as u32,
            transition: (from << 8) | to,
            wait_reason: 0,
            reserved: 0,
        }
    }

    /// (kind, task id, trigger) of every model record `events` map to.
    fn mapped(mapping: &mut GoEvents, events: &[RawGoEvent]) -> Vec<(RawKind, u64, u64)> {
        let mut out = Vec::new();
        for event in events {
            mapping.apply(event, &mut |record| {
                let raw = match record {
                    ModelRecord::Plain(raw) => raw,
                    ModelRecord::Named(named) => named.event,
                };
                out.push((
                    RawKind::try_from(raw.kind).unwrap(),
                    raw.task_id,
                    raw.trigger_id,
                ));
            });
        }
        out
    }

    #[test]
    fn a_creation_is_announced_with_its_id_at_the_first_run() {
        let mut create = status(0xa0, 0, status::DEAD, status::RUNNABLE);
        create.other = 1;
        let events = [create, status(0xa0, 5, status::RUNNABLE, status::RUNNING)];
        assert_eq!(
            mapped(&mut GoEvents::new(0, true), &events),
            [(RawKind::Spawn, 5, 1), (RawKind::PollStart, 5, 0)]
        );
    }

    #[test]
    fn a_wake_names_the_running_goroutine_as_waker() {
        let mut wake = status(0xa0, 5, status::WAITING, status::RUNNABLE);
        wake.other = 9;
        assert_eq!(
            mapped(&mut GoEvents::new(0, true), &[wake]),
            [(RawKind::Wake, 5, 9)]
        );
    }

    #[test]
    fn a_gc_wait_known_by_its_reason_is_no_block() {
        let mut wait = status(0xa0, 5, status::RUNNING, status::WAITING);
        wait.wait_reason = 7;
        let back = status(0xa0, 5, status::WAITING, status::RUNNING);
        let mut mapping = GoEvents::new(1 << 7, true);
        assert_eq!(mapped(&mut mapping, &[wait, back]), []);
        assert_eq!(mapping.counts.round_trips, 1);
    }

    #[test]
    fn without_reasons_a_wait_is_held_until_it_proves_a_block() {
        let wait = status(0xa0, 5, status::RUNNING, status::WAITING);
        let back = status(0xa0, 5, status::WAITING, status::RUNNING);
        let wake = status(0xa0, 5, status::WAITING, status::RUNNABLE);
        assert_eq!(mapped(&mut GoEvents::new(0, false), &[wait, back]), []);
        assert_eq!(
            mapped(&mut GoEvents::new(0, false), &[wait, wake]),
            [(RawKind::PollEnd, 5, 0), (RawKind::Wake, 5, 0)]
        );
    }

    #[test]
    fn a_syscall_that_lost_its_p_ends_the_run_and_starts_another() {
        let mut enter = status(0xa0, 5, status::RUNNING, status::SYSCALL);
        enter.other = 0x100;
        let mut kept = status(0xa0, 5, status::SYSCALL, status::RUNNING);
        kept.other = 0x100;
        kept.wait_reason = 1;
        let mut moved = kept;
        moved.other = 0x200;
        assert_eq!(mapped(&mut GoEvents::new(0, true), &[enter, kept]), []);
        assert_eq!(
            mapped(&mut GoEvents::new(0, true), &[enter, moved]),
            [
                (RawKind::PollEnd, 5, 0),
                (RawKind::Abort, 5, 0),
                (RawKind::PollStart, 5, 0)
            ]
        );
    }

    #[test]
    fn an_end_is_resolve_after_and_destroy() {
        assert_eq!(
            mapped(
                &mut GoEvents::new(0, true),
                &[status(0xa0, 5, status::RUNNING, status::DEAD)]
            ),
            [
                (RawKind::Complete, 5, 0),
                (RawKind::PollEnd, 5, 0),
                (RawKind::Free, 5, 0)
            ]
        );
    }
}
