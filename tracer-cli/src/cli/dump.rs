//! `tracer dump -p PID`: every live task of a running Tokio process and where
//! it is parked, like a Go goroutine dump. Attaches nothing and stops nothing:
//! tasks are found through the runtime's own task lists and read with
//! `process_vm_readv` (see [`crate::runtime::tokio::parked::tasks`]).

use std::{
    io::{self, Write as _},
    path::PathBuf,
    time::Instant,
};

use anyhow::Context as _;
use clap::Args;

use crate::{
    model::event::parked_at,
    runtime::tokio::parked::{
        Analysis,
        tasks::{LiveTask, ProcessMemory, Reader, by_id, scan},
    },
    target::process_map,
};

/// `tracer dump`'s arguments.
#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Process id of the Tokio program.
    #[arg(short, long, value_name = "PID", value_parser = crate::target::parse_pid)]
    pid: u32,
    /// One JSON object per task (id, name, state, header, awaiting) instead of text.
    #[arg(long)]
    json: bool,
    /// The file with the program's type DWARF, when it is not found in the
    /// binary, by build id, or by `.gnu_debuglink`.
    #[arg(long, value_name = "FILE")]
    debuginfo: Option<PathBuf>,
}

/// Runs `tracer dump`.
pub fn run(args: &DumpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let exe = PathBuf::from(format!("/proc/{}/exe", args.pid));
    let analysis = Analysis::new(&exe, args.debuginfo.as_deref())
        .with_context(|| format!("cannot dump process {}", args.pid))?;
    let bias = process_map::load_bias(args.pid, &exe)?;
    let vtables = analysis
        .vtables
        .iter()
        .map(|(at, ty)| (at.wrapping_add(bias), ty.clone()))
        .collect();
    let memory = ProcessMemory { pid: args.pid };
    let reader = Reader {
        memory: &memory,
        types: &analysis.types,
        vtables: &vtables,
    };
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", args.pid))
        .with_context(|| format!("cannot read /proc/{}/maps", args.pid))?;
    let vtable_field = vtables.values().next().map_or(0, |t| t.layout.vtable);
    let candidates = scan(
        &memory,
        &maps,
        &vtables.keys().copied().collect(),
        vtable_field,
    );
    let headers = reader.live_headers(&candidates);
    let tasks = by_id(headers.iter().filter_map(|h| reader.task(*h)).collect());
    let mut out = io::BufWriter::new(io::stdout().lock());
    for task in tasks.values() {
        if args.json {
            serde_json::to_writer(&mut out, task)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", text(task))?;
        }
    }
    out.flush()?;
    eprintln!(
        "tracer: {} live tasks of process {} in {:.3} s (DWARF from {}{})",
        tasks.len(),
        args.pid,
        started.elapsed().as_secs_f64(),
        analysis.debuginfo.display(),
        match analysis.undescribed {
            0 => String::new(),
            n => format!(
                "; {n} task types are not described in it (code built without type DWARF, such as Tokio's own blocking tasks): their tasks are not listed"
            ),
        }
    );
    Ok(())
}

/// One task as text: `task 7 app::consumer idle parked at src/main.rs:32 > … > tokio::time::Sleep`,
/// a task in a `join!` or `select!` with its pending branches in braces (see [`parked_at`]).
pub fn text(task: &LiveTask) -> String {
    let mut line = format!("task {} {} {}", task.id, task.name, task.state);
    if !task.awaiting.is_empty() {
        line.push_str(" parked at ");
        line.push_str(&parked_at(&task.awaiting));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::tokio::parked::chain::{Branch, Frame};

    fn await_at(function: &str, at: &str) -> Frame {
        Frame::Await {
            function: function.into(),
            at: at.into(),
        }
    }

    fn future(name: &str) -> Frame {
        Frame::Future {
            future: name.into(),
        }
    }

    fn task(awaiting: Vec<Frame>) -> LiveTask {
        LiveTask {
            id: 42,
            name: "app::consumer".into(),
            state: "idle",
            header: 0x1000,
            awaiting,
        }
    }

    #[test]
    fn a_parked_task_reads_as_its_await_locations_then_its_leaf() {
        let task = task(vec![
            await_at("app::consumer", "src/main.rs:32"),
            await_at("app::leaf", "src/main.rs:42"),
            future("tokio::time::sleep::Sleep"),
        ]);
        assert_eq!(
            text(&task),
            "task 42 app::consumer idle parked at src/main.rs:32 > src/main.rs:42 > tokio::time::sleep::Sleep"
        );
        assert_eq!(
            serde_json::to_value(&task.awaiting).unwrap(),
            serde_json::json!([
                {"fn": "app::consumer", "at": "src/main.rs:32"},
                {"fn": "app::leaf", "at": "src/main.rs:42"},
                {"future": "tokio::time::sleep::Sleep"}
            ])
        );
    }

    #[test]
    fn a_task_in_a_join_reads_as_its_pending_branches_each_with_its_position() {
        let task = task(vec![
            await_at("app::consumer", "src/main.rs:9"),
            Frame::Fork {
                future: "tokio::join!".into(),
                branches: vec![
                    Branch {
                        branch: 1,
                        awaiting: vec![
                            await_at("app::leaf", "src/main.rs:3"),
                            future("tokio::time::sleep::Sleep"),
                        ],
                    },
                    Branch {
                        branch: 2,
                        awaiting: vec![future("tokio::sync::oneshot::Receiver<u64>")],
                    },
                ],
            },
        ]);
        assert_eq!(
            text(&task),
            "task 42 app::consumer idle parked at src/main.rs:9 > tokio::join! { 1: src/main.rs:3 > tokio::time::sleep::Sleep | 2: tokio::sync::oneshot::Receiver<u64> }"
        );
        assert_eq!(
            serde_json::to_value(&task.awaiting).unwrap(),
            serde_json::json!([
                {"fn": "app::consumer", "at": "src/main.rs:9"},
                {"future": "tokio::join!", "branches": [
                    {"branch": 1, "awaiting": [
                        {"fn": "app::leaf", "at": "src/main.rs:3"},
                        {"future": "tokio::time::sleep::Sleep"}
                    ]},
                    {"branch": 2, "awaiting": [{"future": "tokio::sync::oneshot::Receiver<u64>"}]}
                ]}
            ])
        );
    }
}
