//! `tracer replay FILE`: a recording's events, through the live sinks.

use std::{io, path::Path};

use super::reader::Reader;
use crate::sinks::output::Sink;

/// Feeds the recording at `path` into `sink` as the live session fed its sink;
/// what the file says about itself and any damage go to stderr.
pub fn replay(path: &Path, sink: &mut dyn Sink) -> anyhow::Result<()> {
    let mut reader = Reader::open(path)?;
    let header = reader.header().clone();
    eprintln!(
        "tracer: replaying {}: {} (pid {}), recorded by tracer {}",
        path.display(),
        header.session.exe.display(),
        header.session.pid,
        header.tracer_version
    );
    let mut result = sink.begin(&header.session);
    while result.is_ok() {
        let Some(event) = reader.next_event()? else {
            break;
        };
        result = sink.event(&event);
        for problem in reader.take_problems() {
            eprintln!("tracer: warning: {problem}");
        }
    }
    for problem in reader.take_problems() {
        eprintln!("tracer: warning: {problem}");
    }
    result = result.and_then(|()| sink.flush());
    if let Some(end) = reader.end() {
        result = result.and_then(|()| sink.end(end));
    }
    match result {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        other => other?,
    }
    if reader.truncated() {
        eprintln!(
            "tracer: warning: truncated after {} events: the recorder stopped without closing the file",
            reader.events_read()
        );
    } else if let Some(end) = reader.end() {
        eprintln!(
            "tracer: replayed {} events; the session ended: {}; {} raw events dropped",
            reader.events_read(),
            end.ending,
            end.dropped
        );
    }
    Ok(())
}
