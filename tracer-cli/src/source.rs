//! Where `tree`, `stats` and `export` read a session from: one function, so the
//! file format can change without touching them.
//!
//! For now a session file is what `tracer run --json` / `tracer trace --json`
//! print: one hook event per line. Such a file has no header, so the session
//! starts at its first event and the executable is unknown.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use crate::{event::HookEvent, output::SessionInfo};

/// Opens a session file: what is known about the session, and its events in order.
pub fn open_events(
    path: &Path,
) -> anyhow::Result<(SessionInfo, impl Iterator<Item = anyhow::Result<HookEvent>>)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut lines = BufReader::new(file).lines().enumerate();
    let first = loop {
        let Some((_, line)) = lines.next() else {
            bail!(
                "{} holds no events: record one with `tracer run --json -- APP > FILE`",
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
             record one with `tracer run --json -- APP > FILE` or `tracer trace --json -p PID > FILE`",
            path.display()
        )
    })?;
    let info = SessionInfo {
        pid: first.pid,
        exe: PathBuf::from("?"),
        runtime: "tokio",
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
    Ok((info, std::iter::once(Ok(first)).chain(rest)))
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
        let file = file_with("text", "TIME(s) TID EVENT\n");
        let error = open_events(&file.0).err().unwrap().to_string();
        assert!(
            error.contains("is not a tracer session: its first line is not a JSON hook event"),
            "{error}"
        );
        assert!(error.contains("tracer run --json"), "{error}");
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
