//! Where `tree`, `stats` and `export` read a session from: one function, so the
//! file formats can change without touching them.
//!
//! Two kinds of file are read: a recording (`tracer record`, `tracer run -o`),
//! and the JSON lines `tracer run --json` / `tracer trace --json` print. JSON
//! lines have no header, so their session starts at the first event and the
//! executable is unknown.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use crate::{
    model::event::HookEvent, sinks::output::SessionInfo, sinks::recording::reader::Reader,
};

/// The events of a session file, in order.
pub type Events = Box<dyn Iterator<Item = anyhow::Result<HookEvent>>>;

/// Opens a session file: what is known about the session, and its events in order.
pub fn open_events(path: &Path) -> anyhow::Result<(SessionInfo, Events)> {
    let mut first = [0u8; 1];
    File::open(path)
        .and_then(|mut file| file.read(&mut first))
        .with_context(|| format!("cannot read {}", path.display()))?;
    if first[0] == b'{' {
        open_json_lines(path)
    } else {
        open_recording(path)
    }
}

/// A recording, through its reader; damage it reports goes to stderr.
fn open_recording(path: &Path) -> anyhow::Result<(SessionInfo, Events)> {
    let mut reader = Reader::open(path).with_context(|| {
        format!(
            "{} is neither a recording nor JSON lines from `tracer run --json`",
            path.display()
        )
    })?;
    let info = reader.header().session.clone();
    let events = std::iter::from_fn(move || {
        let next = reader.next_event().transpose();
        for problem in reader.take_problems() {
            eprintln!("tracer: warning: {problem}");
        }
        next.map(|event| event.map_err(anyhow::Error::from))
    });
    Ok((info, Box::new(events)))
}

/// JSON lines as `tracer run --json` prints them.
fn open_json_lines(path: &Path) -> anyhow::Result<(SessionInfo, Events)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut lines = BufReader::new(file).lines().enumerate();
    let first = loop {
        let Some((_, line)) = lines.next() else {
            bail!(
                "{} holds no events: record one with `tracer run -o FILE -- APP`",
                path.display()
            );
        };
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if !line.trim().is_empty() {
            break line;
        }
    };
    let first: HookEvent = serde_json::from_str(&first).map_err(|error| {
        anyhow::anyhow!(
            "{} is not a tracer session: its first line is not a JSON hook event ({error}); \
             record one with `tracer run -o FILE -- APP` or `tracer run --json -- APP > FILE`",
            path.display()
        )
    })?;
    let info = SessionInfo {
        pid: first.pid,
        exe: PathBuf::from("?"),
        runtime: "tokio".to_owned(),
        start_ns: first.ts_ns,
        start_unix_ns: 0,
    };
    let shown = path.display().to_string();
    let rest =
        lines.filter_map(move |(index, line)| match line {
            Ok(line) if line.trim().is_empty() => None,
            Ok(line) => Some(serde_json::from_str(&line).with_context(|| {
                format!("{shown} line {}: not a JSON hook event: {line}", index + 1)
            })),
            Err(error) => Some(Err(error).with_context(|| format!("cannot read {shown}"))),
        });
    Ok((info, Box::new(std::iter::once(Ok(first)).chain(rest))))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// A file removed when dropped.
    struct TempFile(PathBuf);

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn file_with(name: &str, text: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("tracer-source-{}-{name}.jsonl", std::process::id()));
        File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        TempFile(path)
    }

    #[test]
    fn json_lines_read_back_with_the_first_event_as_session_start() {
        let file = file_with(
            "good",
            "{\"event\":\"before\",\"async_id\":3,\"ts_ns\":50,\"pid\":7,\"tid\":8}\n\n\
             {\"event\":\"after\",\"completed\":false,\"async_id\":3,\"ts_ns\":60,\"pid\":7,\"tid\":8}\n",
        );
        let (info, events) = open_events(&file.0).unwrap();
        assert_eq!((info.pid, info.start_ns), (7, 50));
        let events: Vec<HookEvent> = events.map(Result::unwrap).collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].ts_ns, 60);
    }

    #[test]
    fn a_file_that_is_not_json_lines_is_refused_clearly() {
        let file = file_with("text", "{TIME(s) TID EVENT\n");
        let error = open_events(&file.0).err().unwrap().to_string();
        assert!(
            error.contains("is not a tracer session: its first line is not a JSON hook event"),
            "{error}"
        );
        assert!(error.contains("tracer run --json"), "{error}");
    }

    #[test]
    fn a_recording_reads_back_with_its_header() {
        let file = TempFile(std::env::temp_dir().join(format!(
            "tracer-source-{}-recording.trace",
            std::process::id()
        )));
        crate::sinks::recording::generate(&file.0, 100, true).unwrap();
        let (info, events) = open_events(&file.0).unwrap();
        assert_eq!(info.exe, PathBuf::from("/synthetic/app"));
        assert_eq!(events.map(Result::unwrap).count(), 100);
    }

    #[test]
    fn a_file_of_neither_kind_is_refused_clearly() {
        let file = file_with("neither", "TIME(s) TID EVENT\n");
        let error = format!("{:#}", open_events(&file.0).err().unwrap());
        assert!(
            error.contains("is neither a recording nor JSON lines"),
            "{error}"
        );
    }

    #[test]
    fn a_bad_line_later_names_its_number() {
        let file = file_with(
            "bad",
            "{\"event\":\"before\",\"async_id\":3,\"ts_ns\":50,\"pid\":7,\"tid\":8}\nnope\n",
        );
        let (_, events) = open_events(&file.0).unwrap();
        let error = events.last().unwrap().unwrap_err().to_string();
        assert!(error.contains("line 2: not a JSON hook event"), "{error}");
    }
}
