//! Live sinks: where hook events go as they arrive. Human lines for people, JSON
//! lines for programs; both write to a buffered stream flushed after each batch.

use std::{
    io::{self, Write},
    path::PathBuf,
};

use crate::model::event::{HookEvent, HookKind};

/// What every sink may want to know about the session before its first event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The traced process.
    pub pid: u32,
    /// Its executable.
    pub exe: PathBuf,
    /// The runtime adapter in use ("tokio").
    pub runtime: String,
    /// CLOCK_MONOTONIC ns when tracing started: event times are shown relative to it.
    pub start_ns: u64,
    /// Wall-clock (Unix epoch) ns at the same instant, to place events in real time.
    pub start_unix_ns: u64,
}

/// What the session knows only at its end, which no event carries: how it ended
/// and what was lost. A recording keeps it, so `tracer info` can report drops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionEnd {
    /// CLOCK_MONOTONIC ns when the session ended.
    pub end_ns: u64,
    /// Why it ended, as the summary says it ("process 42 exited", "interrupted").
    pub ending: String,
    /// Raw events read from the ring buffer.
    pub delivered: u64,
    /// Raw events dropped because the ring buffer was full.
    pub dropped: u64,
    /// Raw events the probes produced: `delivered + dropped` when nothing went
    /// missing. `None` in recordings made before tracer counted it (format 1.0).
    pub emitted: Option<u64>,
    /// Other losses, each a count and what was lost (only non-zero ones).
    pub problems: Vec<(u64, String)>,
}

/// What a live session knows besides its events, reported to the sinks about four
/// times a second: a live view (`tracer top`) shows it in its header, where
/// drops must be seen as they happen, not only in the summary at the end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveStatus {
    /// Probe sites attached.
    pub probe_sites: usize,
    /// The runtime's version, as found in the binary (`1.54.1`), when known.
    pub runtime_version: Option<String>,
    /// Raw events read from the ring buffer so far.
    pub delivered: u64,
    /// Raw events dropped so far because the ring buffer was full.
    pub dropped: u64,
}

/// Something that consumes the stream of hook events.
pub trait Sink {
    /// Called once, before the first event.
    fn begin(&mut self, _info: &SessionInfo) -> io::Result<()> {
        Ok(())
    }
    /// Takes one event.
    fn event(&mut self, event: &HookEvent) -> io::Result<()>;
    /// Pushes out what is buffered (called after every ring-buffer batch, and
    /// at least twice a second while the session runs).
    fn flush(&mut self) -> io::Result<()>;
    /// Called once after the last event and flush, with the session's final counts.
    fn end(&mut self, _end: &SessionEnd) -> io::Result<()> {
        Ok(())
    }
    /// Takes the live session's status (drops so far, probe sites), about four
    /// times a second; most sinks have no use for it.
    fn status(&mut self, _status: &LiveStatus) -> io::Result<()> {
        Ok(())
    }
    /// The sink's reader is done (the user quit `tracer top`): the session stops
    /// at its next housekeeping tick, as on Ctrl-C.
    fn stop_requested(&self) -> bool {
        false
    }
}

/// Two sinks fed the same stream: live output while recording, for instance.
pub struct Tee<A, B>(pub A, pub B);

impl<A: Sink, B: Sink> Sink for Tee<A, B> {
    fn begin(&mut self, info: &SessionInfo) -> io::Result<()> {
        self.0.begin(info)?;
        self.1.begin(info)
    }

    fn event(&mut self, event: &HookEvent) -> io::Result<()> {
        self.0.event(event)?;
        self.1.event(event)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }

    fn end(&mut self, end: &SessionEnd) -> io::Result<()> {
        self.0.end(end)?;
        self.1.end(end)
    }

    fn status(&mut self, status: &LiveStatus) -> io::Result<()> {
        self.0.status(status)?;
        self.1.status(status)
    }

    fn stop_requested(&self) -> bool {
        self.0.stop_requested() || self.1.stop_requested()
    }
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn begin(&mut self, info: &SessionInfo) -> io::Result<()> {
        (**self).begin(info)
    }

    fn event(&mut self, event: &HookEvent) -> io::Result<()> {
        (**self).event(event)
    }

    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }

    fn end(&mut self, end: &SessionEnd) -> io::Result<()> {
        (**self).end(end)
    }

    fn status(&mut self, status: &LiveStatus) -> io::Result<()> {
        (**self).status(status)
    }

    fn stop_requested(&self) -> bool {
        (**self).stop_requested()
    }
}

/// One JSON object per line, with the field names of the event model.
pub struct JsonLines<W: Write> {
    out: W,
}

impl<W: Write> JsonLines<W> {
    /// Writes to `out`.
    pub fn new(out: W) -> Self {
        Self { out }
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn event(&mut self, event: &HookEvent) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, event)?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One aligned line per event, times in seconds since the session started:
///
/// ```text
///       TIME(s)      TID  EVENT     ASYNC_ID  DETAIL
///      0.000412   812311  init             7  tokio.task trigger=1
///      0.000420   812312  before           7  sched=8.2µs
///      0.000431   812312  wake             9  by 7
///      0.000433   812312  after            7  completed
/// ```
pub struct HumanLines<W: Write> {
    out: W,
    start_ns: u64,
    header_written: bool,
    pid_column: bool,
}

impl<W: Write> HumanLines<W> {
    /// Writes to `out`, with times relative to the session's start.
    pub fn new(out: W) -> Self {
        Self {
            out,
            start_ns: 0,
            header_written: false,
            pid_column: false,
        }
    }

    /// Adds a PID column before TID, for sessions that trace several processes
    /// (`--follow-forks`), whose task ids are per process.
    pub fn with_pid_column(self) -> Self {
        Self {
            pid_column: true,
            ..self
        }
    }
}

/// The detail column of a human line: for an `init`, the task's name and spawn
/// location when known, its type and its trigger
/// (`my_app::handle (src/main.rs:85:9) tokio.task trigger=3`).
fn detail(kind: &HookKind) -> String {
    match kind {
        HookKind::Init {
            resource_type,
            trigger_id,
            existing,
            name,
            location,
        } => {
            let mut text = String::new();
            if let Some(name) = name {
                text.push_str(name);
                text.push(' ');
            }
            if let Some(location) = location {
                text.push_str(&format!("({location}) "));
            }
            text.push_str(resource_type.as_str());
            match (trigger_id, existing) {
                (Some(trigger), _) => text.push_str(&format!(" trigger={trigger}")),
                (None, true) => text.push_str(" existing (trigger unknown)"),
                (None, false) => text.push_str(" (trigger unknown)"),
            }
            text
        }
        HookKind::After {
            completed: true, ..
        } => "completed".to_owned(),
        HookKind::After {
            awaiting: Some(frames),
            ..
        } => format!("parked at {}", crate::model::event::parked_at(frames)),
        HookKind::Before {
            sched_ns: Some(sched_ns),
        } => format!("sched={:.1}µs", *sched_ns as f64 / 1e3),
        HookKind::Wake {
            waker_id,
            self_wake,
        } => {
            let waker = waker_id.map_or("?".to_owned(), |id| id.to_string());
            if *self_wake {
                format!("by {waker} (self)")
            } else {
                format!("by {waker}")
            }
        }
        HookKind::Before { sched_ns: None }
        | HookKind::After { .. }
        | HookKind::Resolve
        | HookKind::Destroy => String::new(),
    }
}

impl<W: Write> Sink for HumanLines<W> {
    fn begin(&mut self, info: &SessionInfo) -> io::Result<()> {
        self.start_ns = info.start_ns;
        Ok(())
    }

    fn event(&mut self, event: &HookEvent) -> io::Result<()> {
        if !self.header_written {
            self.header_written = true;
            if self.pid_column {
                write!(self.out, "{:>14} {:>8}", "TIME(s)", "PID")?;
            } else {
                write!(self.out, "{:>14}", "TIME(s)")?;
            }
            writeln!(
                self.out,
                " {:>8}  {:<8} {:>9}  DETAIL",
                "TID", "EVENT", "ASYNC_ID"
            )?;
        }
        let seconds = event.ts_ns.saturating_sub(self.start_ns) as f64 / 1e9;
        if self.pid_column {
            write!(self.out, "{seconds:>14.6} {:>8}", event.pid)?;
        } else {
            write!(self.out, "{seconds:>14.6}")?;
        }
        let line = format!(
            " {:>8}  {:<8} {:>9}  {}",
            event.tid,
            event.kind.name(),
            event.async_id,
            detail(&event.kind)
        );
        writeln!(self.out, "{}", line.trim_end())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::ResourceType;

    fn init(trigger_id: Option<u64>) -> HookEvent {
        HookEvent {
            kind: HookKind::Init {
                resource_type: ResourceType::TOKIO_TASK,
                trigger_id,
                existing: trigger_id.is_none(),
                name: None,
                location: None,
            },
            async_id: 7,
            ts_ns: 1_500_000_000,
            pid: 1,
            tid: 812311,
        }
    }

    #[test]
    fn human_lines_are_aligned_under_a_header() {
        let mut out = Vec::new();
        let mut sink = HumanLines::new(&mut out);
        sink.begin(&SessionInfo {
            pid: 1,
            exe: PathBuf::from("/bin/app"),
            runtime: "tokio".to_owned(),
            start_ns: 1_000_000_000,
            start_unix_ns: 0,
        })
        .unwrap();
        sink.event(&init(Some(1))).unwrap();
        sink.event(&init(None)).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       TIME(s)      TID  EVENT     ASYNC_ID  DETAIL"
        );
        assert_eq!(
            lines[1],
            "      0.500000   812311  init             7  tokio.task trigger=1"
        );
        assert!(lines[2].ends_with("tokio.task existing (trigger unknown)"));
    }

    #[test]
    fn a_wake_reads_woken_by_waker_and_a_before_its_wait() {
        let wake = |waker_id, self_wake| HookKind::Wake {
            waker_id,
            self_wake,
        };
        assert_eq!(detail(&wake(Some(38), false)), "by 38");
        assert_eq!(detail(&wake(Some(0), true)), "by 0 (self)");
        assert_eq!(detail(&wake(None, false)), "by ?");
        let before = HookKind::Before {
            sched_ns: Some(8_240),
        };
        assert_eq!(detail(&before), "sched=8.2µs");
        assert_eq!(detail(&HookKind::Before { sched_ns: None }), "");
        let mut out = Vec::new();
        let mut sink = HumanLines::new(&mut out);
        let mut event = init(None);
        event.kind = wake(Some(38), false);
        event.async_id = 37;
        sink.event(&event).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .ends_with("wake            37  by 38"),
            "{text}"
        );
    }

    #[test]
    fn an_init_shows_the_name_and_location_before_type_and_trigger() {
        let mut event = init(Some(3));
        if let HookKind::Init { name, location, .. } = &mut event.kind {
            *name = Some("my_app::handle".to_owned());
            *location = Some("src/main.rs:85:9".to_owned());
        }
        assert_eq!(
            detail(&event.kind),
            "my_app::handle (src/main.rs:85:9) tokio.task trigger=3"
        );
    }

    #[test]
    fn the_pid_column_comes_before_the_thread() {
        let mut out = Vec::new();
        let mut sink = HumanLines::new(&mut out).with_pid_column();
        sink.event(&init(Some(1))).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       TIME(s)      PID      TID  EVENT     ASYNC_ID  DETAIL"
        );
        assert_eq!(
            lines[1],
            "      1.500000        1   812311  init             7  tokio.task trigger=1"
        );
    }

    #[test]
    fn json_lines_are_one_object_per_line() {
        let mut out = Vec::new();
        let mut sink = JsonLines::new(&mut out);
        sink.event(&init(Some(0))).unwrap();
        sink.event(&init(Some(0))).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2);
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["trigger_id"], 0);
        }
    }
}
