//! `tracer info FILE`: what a recording holds, read in one streaming pass.

use std::{fmt::Write as _, path::Path};

use super::{
    format::Header,
    reader::{Problem, Reader},
};
use crate::{
    model::event::{HookEvent, HookKind, KINDS, kind_index, kinds_list},
    sinks::output::{SessionEnd, SessionInfo},
};

/// Prints the header, events by kind, tasks, how many are named and located, time span, losses and bytes per
/// event of the recording at `path`.
pub fn info(path: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::metadata(path)
        .map_err(|error| anyhow::anyhow!("cannot open {}: {error}", path.display()))?
        .len();
    let mut reader = Reader::open(path)?;
    let mut tally = Tally::default();
    while let Some(event) = reader.next_event()? {
        tally.add(&event);
        tally.problems.extend(reader.take_problems());
    }
    tally.problems.extend(reader.take_problems());
    let header = reader.header();
    let events = reader.events_read();
    let mut text = String::new();
    write_header(&mut text, path, bytes, header);
    tally.write_counts(&mut text, &header.session, events);
    let _ = writeln!(text, "chunks:      {}", reader.chunks_read());
    write_ending(&mut text, reader.end(), events);
    for problem in &tally.problems {
        let _ = writeln!(text, "damage:      {problem}");
    }
    let per_event = if events == 0 {
        "no events".to_owned()
    } else {
        format!("{:.2}", bytes as f64 / events as f64)
    };
    let _ = writeln!(text, "bytes/event: {per_event} (whole file)");
    print!("{text}");
    Ok(())
}

/// What the pass over the events counts, and the damage it met on the way.
#[derive(Default)]
struct Tally {
    /// Events of each kind, in the order of `KINDS`.
    by_kind: [u64; KINDS.len()],
    /// Inits of tasks already running at attach.
    existing: u64,
    /// Inits with a name.
    named: u64,
    /// Inits with a location.
    located: u64,
    /// The first and last event times.
    span: Option<(u64, u64)>,
    problems: Vec<Problem>,
}

impl Tally {
    /// Counts one event.
    fn add(&mut self, event: &HookEvent) {
        self.by_kind[kind_index(&event.kind)] += 1;
        if let HookKind::Init {
            existing: was_there,
            name,
            location,
            ..
        } = &event.kind
        {
            self.existing += u64::from(*was_there);
            self.named += u64::from(name.is_some());
            self.located += u64::from(location.is_some());
        }
        self.span = Some(
            self.span
                .map_or((event.ts_ns, event.ts_ns), |(first, last)| {
                    (first.min(event.ts_ns), last.max(event.ts_ns))
                }),
        );
    }

    /// The `events`, `tasks`, `names` and `time span` lines.
    fn write_counts(&self, text: &mut String, session: &SessionInfo, events: u64) {
        let _ = writeln!(text, "events:      {events} ({})", kinds_list(self.by_kind));
        let _ = writeln!(
            text,
            "tasks:       {} ({} already running at attach)",
            self.by_kind[0], self.existing
        );
        let _ = writeln!(
            text,
            "names:       {} of {} tasks named, {} located",
            self.named, self.by_kind[0], self.located
        );
        if let Some((first, last)) = self.span {
            let since_start = |ts: u64| ts.saturating_sub(session.start_ns) as f64 / 1e9;
            let _ = writeln!(
                text,
                "time span:   {:.6} s (events from {:.6} s to {:.6} s after the session started)",
                (last - first) as f64 / 1e9,
                since_start(first),
                since_start(last)
            );
        }
    }
}

/// The lines from the file header: `file` to `started`.
fn write_header(text: &mut String, path: &Path, bytes: u64, header: &Header) {
    let session = &header.session;
    let _ = writeln!(text, "file:        {} ({bytes} bytes)", path.display());
    let _ = writeln!(
        text,
        "format:      {}.{}, written by tracer {}",
        header.version.0, header.version.1, header.tracer_version
    );
    let _ = writeln!(
        text,
        "target:      pid {}, {}",
        session.pid,
        session.exe.display()
    );
    let build_id: String = header.build_id.iter().map(|b| format!("{b:02x}")).collect();
    let _ = writeln!(
        text,
        "build id:    {}",
        if build_id.is_empty() {
            "none"
        } else {
            &build_id
        }
    );
    let _ = writeln!(
        text,
        "runtime:     {} {}",
        session.runtime,
        if header.runtime_version.is_empty() {
            "(version unknown)"
        } else {
            &header.runtime_version
        }
    );
    let started = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(session.start_unix_ns);
    let _ = writeln!(
        text,
        "started:     {} (monotonic clock {} ns)",
        humantime::format_rfc3339_micros(started),
        session.start_ns
    );
}

/// The `ended` and `drops` lines: from the end record, or that the file was
/// cut after `events` events.
fn write_ending(text: &mut String, end: Option<&SessionEnd>, events: u64) {
    match end {
        Some(end) => {
            let _ = writeln!(text, "ended:       {}", end.ending);
            let _ = match end.emitted {
                Some(emitted) => writeln!(
                    text,
                    "drops:       {} raw events dropped (ring buffer full): emitted {emitted} = delivered {} + dropped {}",
                    end.dropped, end.delivered, end.dropped
                ),
                // Format 1.0 did not record what the probes emitted.
                None => writeln!(
                    text,
                    "drops:       {} raw events dropped (ring buffer full) of {} delivered",
                    end.dropped, end.delivered
                ),
            };
            for (count, what) in &end.problems {
                let _ = writeln!(text, "             {count} {what}");
            }
        }
        None => {
            let _ = writeln!(
                text,
                "ended:       truncated after {events} events (the recorder stopped without closing the file)"
            );
            let _ = writeln!(text, "drops:       unknown (recorded at the end)");
        }
    }
}
