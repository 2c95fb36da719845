//! The session's event loop: drain the ring into the models and the sink, keep
//! the sink's status fresh, follow children, and notice the target's exit or
//! exec, Ctrl-C and SIGTERM.

use std::os::fd::OwnedFd;

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{Signal, SignalKind, signal},
    time::{Interval, MissedTickBehavior, interval},
};
use tracer_common::Counter;

use super::{
    DRAIN_BATCH, DRAIN_INTERVAL, HOUSEKEEPING_INTERVAL, SessionOptions, Stop,
    decode::{Decoders, Delay},
    is_gone,
};
use crate::{
    kernel::{
        forks::Children,
        probes::{AttachReport, Probes},
    },
    sinks::{
        output::{LiveStatus, Sink},
        summary::SessionStats,
    },
    target::{ProgramIdentity, launch::Launched},
};

/// Everything the loop works on.
pub struct Live<'a> {
    /// The target.
    pub pid: u32,
    /// What the session was asked for.
    pub options: &'a SessionOptions,
    /// The loaded, attached, armed probes.
    pub probes: Probes,
    /// The ring buffer, readable when records wait.
    pub events: AsyncFd<RingBuf<MapData>>,
    /// Readable once the target has exited.
    pub exited: AsyncFd<OwnedFd>,
    /// Records to hook events.
    pub decoders: Decoders,
    /// What was delivered, for the summary.
    pub stats: SessionStats,
    /// Where the events go.
    pub sink: &'a mut dyn Sink,
    /// `tracer run`'s command.
    pub launched: &'a mut Option<Launched>,
    /// What attaching did.
    pub attach: &'a AttachReport,
    /// The runtime's version, for the live status.
    pub runtime_version: Option<String>,
    /// With --follow-forks: the descendants being traced.
    pub children: Children,
}

/// The loop's own state between turns.
struct Turns {
    interrupt: Signal,
    terminate: Signal,
    forwarded_interrupt: bool,
    program: ProgramIdentity,
    /// The target has ended; the session ends once no child is left.
    target_end: Option<Stop>,
    /// Sinks that batch (a recording's chunks) get a chance to write even when
    /// the target is quiet, and an exec of the target is noticed.
    housekeeping: Interval,
    drain_tick: Interval,
}

impl Live<'_> {
    /// Runs until the target ends (and, with --follow-forks, its children),
    /// the user stops it, or the output closes.
    pub async fn run(&mut self) -> anyhow::Result<Stop> {
        let mut drain_tick = interval(DRAIN_INTERVAL);
        drain_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut turns = Turns {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            forwarded_interrupt: false,
            program: ProgramIdentity::of(self.pid),
            target_end: None,
            housekeeping: interval(HOUSEKEEPING_INTERVAL),
            drain_tick,
        };
        loop {
            let stop = tokio::select! {
                _ = turns.drain_tick.tick() => self.drain_tick(&mut turns)?,
                guard = self.events.readable_mut() => {
                    let mut guard = guard?;
                    let drained = self.decoders.drain(guard.get_inner_mut(), &mut self.stats, self.sink, DRAIN_BATCH, Delay::Live);
                    guard.clear_ready();
                    self.arm_watches();
                    drained_again(drained, &mut turns)
                }
                _ = turns.housekeeping.tick() => self.housekeeping(&mut turns),
                _ = self.exited.readable(), if turns.target_end.is_none() => self.target_exited(&mut turns)?,
                _ = turns.interrupt.recv() => self.interrupted(&mut turns),
                _ = turns.terminate.recv() => Some(Stop::Interrupted),
            };
            if let Some(stop) = stop {
                return Ok(stop);
            }
        }
    }

    /// Arms the watchpoints the runtime's mapping asks for, once it has seen
    /// where they go (after a drain), and tells it how that went.
    fn arm_watches(&mut self) {
        let Some(records) = self.decoders.records.as_mut() else {
            return;
        };
        let watches = records.take_watches();
        if !watches.is_empty() {
            let armed = self
                .probes
                .watch_writes(&watches)
                .map_err(|error| format!("{error:#}"));
            records.watches_armed(armed);
        }
    }

    /// A drain on the timer: new children are announced (before the events in
    /// the ring now), and gone ones let go, within a tick.
    fn drain_tick(&mut self, turns: &mut Turns) -> anyhow::Result<Option<Stop>> {
        if self.options.follow_forks {
            self.children.sync(&mut self.probes, turns.program)?;
        }
        let drained = self.decoders.drain(
            self.events.get_mut(),
            &mut self.stats,
            self.sink,
            DRAIN_BATCH,
            Delay::Live,
        );
        self.arm_watches();
        Ok(drained_again(drained, turns))
    }

    /// Flushes the sink, gives it the live status, and notices an exec.
    fn housekeeping(&mut self, turns: &mut Turns) -> Option<Stop> {
        if self.sink.flush().is_err() {
            return Some(Stop::OutputClosed);
        }
        let status = LiveStatus {
            probe_sites: self.attach.total(),
            runtime_version: self.runtime_version.clone(),
            delivered: self.stats.delivered,
            dropped: self
                .probes
                .counters()
                .map_or(0, |counters| counters.get(Counter::RingFull)),
        };
        if self.sink.status(&status).is_err() {
            return Some(Stop::OutputClosed);
        }
        if self.sink.stop_requested() {
            return Some(Stop::SinkDone);
        }
        let pid = self.pid;
        if turns.target_end.is_none() && ProgramIdentity::of(pid) != turns.program && !is_gone(pid)
        {
            turns.target_end = Some(Stop::TargetExeced);
            if !self.children.is_empty() {
                eprintln!(
                    "tracer: process {pid} called exec; tracing its child processes until they exit"
                );
            }
        }
        turns.target_end.filter(|_| self.children.is_empty())
    }

    /// The target exited: the session ends, or waits for its children.
    fn target_exited(&mut self, turns: &mut Turns) -> anyhow::Result<Option<Stop>> {
        if self.options.follow_forks {
            self.children.sync(&mut self.probes, turns.program)?;
        }
        if self.children.is_empty() {
            return Ok(Some(Stop::TargetExited));
        }
        turns.target_end = Some(Stop::TargetExited);
        eprintln!(
            "tracer: process {} exited; tracing its child processes until they exit",
            self.pid
        );
        Ok(None)
    }

    /// Ctrl-C. `tracer run`: the first goes to the command, whose shutdown is
    /// traced too; a second one stops tracing.
    fn interrupted(&mut self, turns: &mut Turns) -> Option<Stop> {
        match self.launched.as_ref() {
            Some(child) if !turns.forwarded_interrupt => {
                turns.forwarded_interrupt = true;
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.pid() as i32),
                    nix::sys::signal::Signal::SIGINT,
                );
                None
            }
            _ => Some(Stop::Interrupted),
        }
    }
}

/// After a drain: at the batch limit, drain again at once; a closed output ends
/// the session.
fn drained_again(drained: std::io::Result<bool>, turns: &mut Turns) -> Option<Stop> {
    match drained {
        Ok(true) => {
            turns.drain_tick.reset_immediately();
            None
        }
        Ok(false) => None,
        Err(_) => Some(Stop::OutputClosed),
    }
}
