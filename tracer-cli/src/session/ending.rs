//! After the loop: detach, read what is left, tell the sink and the user how
//! the session ended and what it saw and lost, and settle `tracer run`'s
//! command.

use std::time::Duration;

use super::{
    Outcome, Stop,
    decode::{Decoders, Delay},
    live::Live,
    monotonic_ns,
};
use crate::{
    kernel::forks::Children,
    target::launch::{ChildExit, Launched},
};

impl Live<'_> {
    /// Ends the session that stopped for `stop` (it began at `start_ns`).
    pub fn finish(mut self, stop: Stop, start_ns: u64) -> anyhow::Result<Outcome> {
        // Disarm, and read what is in the ring while it is fresh (detaching
        // hundreds of sites takes the kernel a while). Then detach: no program
        // runs any more, everything emitted is in the ring or counted as
        // dropped, and one last drain makes the accounting exact.
        self.probes.disarm()?;
        let read_live = self.decoders.drain(
            self.events.get_mut(),
            &mut self.stats,
            self.sink,
            usize::MAX,
            Delay::Live,
        );
        // Read before the detach unloads the programs.
        let program_times = self.probes.program_times()?;
        let counters = self.probes.detach()?;
        let drained = read_live.and_then(|_| {
            self.decoders.drain(
                self.events.get_mut(),
                &mut self.stats,
                self.sink,
                usize::MAX,
                Delay::AfterDetach,
            )
        });
        let flushed = self.sink.flush();
        let stop = if drained.is_err() || flushed.is_err() {
            Stop::OutputClosed
        } else {
            stop
        };
        let child_exit = match self.launched.as_mut() {
            Some(child) if stop == Stop::TargetExited => Some(child.wait()?),
            _ => None,
        };
        let ending = ending(stop, child_exit, self.pid);
        let model = &self.decoders.tasks;
        let end = self
            .stats
            .session_end(&counters, model.anomalies(), &ending, monotonic_ns());
        if self.sink.end(&end).is_err() && stop != Stop::OutputClosed {
            eprintln!("tracer: warning: the output could not be closed cleanly");
        }
        eprintln!(
            "tracer: session ended: {ending}, after {:.2} s",
            Duration::from_nanos(monotonic_ns() - start_ns).as_secs_f64()
        );
        eprint!(
            "{}",
            self.stats.render(
                self.attach,
                &counters,
                model.anomalies(),
                // A forked child starts with its parent's tasks: those did
                // exist before it was traced.
                self.launched.is_some() && !self.options.follow_forks,
            )
        );
        summary_lines(
            &self.decoders,
            self.options.follow_forks.then_some(&self.children),
        );
        if let Some(times) = program_times {
            eprintln!("tracer: {}", times.line());
        }
        settle_command(self.launched, stop, child_exit)
    }
}

/// What naming, the runtime's mapping, `--task` and `--follow-forks` (the
/// `children` followed) have to add to the summary.
fn summary_lines(decoders: &Decoders, children: Option<&Children>) {
    let model = &decoders.tasks;
    let records = decoders.records.iter().flat_map(|r| r.summary());
    for line in model.names().summary().into_iter().chain(records) {
        eprintln!("tracer: {line}");
    }
    if let Some(filter) = model.task_filter() {
        eprintln!("tracer: {}", filter.summary());
    }
    if let Some(children) = children {
        eprintln!("tracer: child processes followed: {}", children.followed);
    }
}

/// `tracer run` still ends when the command does, with its exit code.
fn settle_command(
    launched: &mut Option<Launched>,
    stop: Stop,
    child_exit: Option<ChildExit>,
) -> anyhow::Result<Outcome> {
    let child_exit = match launched.as_mut() {
        Some(child) if stop == Stop::TargetExeced => {
            eprintln!("tracer: waiting for the command to exit");
            Some(child.wait()?)
        }
        Some(child) if child_exit.is_none() => {
            eprintln!(
                "tracer: the command (pid {}) keeps running without tracing",
                child.pid()
            );
            None
        }
        _ => child_exit,
    };
    Ok(Outcome { child_exit })
}

/// How the session ended, in the words of the summary.
fn ending(stop: Stop, child_exit: Option<ChildExit>, pid: u32) -> String {
    match (stop, child_exit) {
        (Stop::TargetExited, Some(ChildExit::Code(code))) => {
            format!("the command exited with code {code}")
        }
        (Stop::TargetExited, Some(ChildExit::Signal(signal))) => {
            format!("the command was killed by signal {signal}")
        }
        (Stop::TargetExited, None) => format!("process {pid} exited"),
        (Stop::TargetExeced, _) => format!(
            "process {pid} called exec: its new program is not traced (run tracer again to trace it)"
        ),
        (Stop::Interrupted, _) => "interrupted".to_owned(),
        (Stop::OutputClosed, _) => "output closed".to_owned(),
        (Stop::SinkDone, _) => "quit from the view".to_owned(),
    }
}
