//! Chrome trace-event JSON (the format Perfetto UI and chrome://tracing open):
//! one track per runtime thread with a slice per poll named by its task, each
//! task's lifetime as an async slice, a flow arrow from the poll that spawned
//! a task to the task's first poll, and one from the poll that woke a task to
//! the task's next poll (wakes by no task, as the I/O driver's, have no arrow).
//! Each traced process (`--follow-forks`) is a process of the trace, under its
//! real pid.
//!
//! Viewers match async slices and flows by `id`: a task of the session's own
//! process keeps its task id there; tasks of other processes, whose ids repeat
//! the target's, are numbered from [`CHILD_IDS`] up; wake arrows from
//! [`WAKE_IDS`] up.
//!
//! Written as the events stream past: memory holds the open polls, the live
//! tasks and the spawns whose child was not polled yet, not the whole trace.

use std::{
    collections::{BTreeSet, HashMap},
    io::Write,
};

use serde_json::{Value, json};

use super::Collector;
use crate::{
    model::TaskKey,
    model::event::{HookEvent, HookKind},
    sinks::output::SessionInfo,
};

/// The first trace id given to a task of a process other than the session's:
/// above any Tokio task id a process reaches, and exact as a JavaScript number.
pub const CHILD_IDS: u64 = 1 << 52;

/// The first flow id of a wake arrow: above any task id, below [`CHILD_IDS`].
pub const WAKE_IDS: u64 = 1 << 51;

/// What an export contains, for the status line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChromeCounts {
    /// Poll slices.
    pub slices: u64,
    /// Trigger → child flow arrows.
    pub flows: u64,
    /// Waker → woken flow arrows.
    pub wake_flows: u64,
    /// Task lifetime (async) slices.
    pub tasks: u64,
}

/// Writes trace events one by one into a `{"traceEvents": [...]}` document.
struct TraceWriter<W: Write> {
    out: W,
    first: bool,
    start_ns: u64,
}

impl<W: Write> TraceWriter<W> {
    fn push(&mut self, value: Value) -> anyhow::Result<()> {
        self.out
            .write_all(if self.first { b"\n" } else { b",\n" })?;
        self.first = false;
        serde_json::to_writer(&mut self.out, &value)?;
        Ok(())
    }

    /// CLOCK_MONOTONIC ns as trace microseconds since the session start.
    fn us(&self, ns: u64) -> f64 {
        ns.saturating_sub(self.start_ns) as f64 / 1e3
    }
}

/// A task with a lifetime slice open: its title, the name of its polls and its
/// id in the trace.
struct Lifetime {
    name: String,
    poll_name: String,
    id: u64,
}

/// Where a task was spawned, kept until its first poll draws the arrow.
struct Spawn {
    ts_ns: u64,
    tid: u32,
}

/// A wake by a task, kept until the woken task's next poll draws the arrow.
struct Wake {
    ts_ns: u64,
    tid: u32,
    id: u64,
}

/// Converts `events` into Chrome trace JSON on `out`.
pub fn write(
    out: impl Write,
    info: &SessionInfo,
    events: impl Iterator<Item = anyhow::Result<HookEvent>>,
) -> anyhow::Result<ChromeCounts> {
    let mut export = Export::begin(out, info)?;
    for event in events {
        export.event(&event?)?;
    }
    export.finish()
}

/// An export under way: the writer and what is kept between events (the open
/// lifetimes, the arrows waiting for a poll, the ids given out so far).
struct Export<W: Write> {
    writer: TraceWriter<W>,
    /// The session's own process: its tasks keep their ids.
    pid: u32,
    /// `exe (runtime)`, the name of every process of the trace.
    process_name: String,
    processes: BTreeSet<u32>,
    // Poll pairing lives in the collector; the blocking threshold does not matter here.
    collector: Collector,
    lifetimes: HashMap<TaskKey, Lifetime>,
    spawns: HashMap<TaskKey, Spawn>,
    wakes: HashMap<TaskKey, Vec<Wake>>,
    next_wake_id: u64,
    threads: BTreeSet<(u32, u32)>,
    counts: ChromeCounts,
    next_child_id: u64,
    last_ns: u64,
}

impl<W: Write> Export<W> {
    /// Opens the document on `out` and names the session's process.
    fn begin(out: W, info: &SessionInfo) -> anyhow::Result<Self> {
        let mut writer = TraceWriter {
            out,
            first: true,
            start_ns: info.start_ns,
        };
        writer
            .out
            .write_all(br#"{"displayTimeUnit":"ns","traceEvents":["#)?;
        let process_name = format!("{} ({})", info.exe.display(), info.runtime);
        writer.push(json!({"ph": "M", "name": "process_name", "pid": info.pid,
            "args": {"name": process_name}}))?;
        Ok(Self {
            writer,
            pid: info.pid,
            process_name,
            processes: BTreeSet::from([info.pid]),
            collector: Collector::new(super::DEFAULT_BLOCKING_THRESHOLD),
            lifetimes: HashMap::new(),
            spawns: HashMap::new(),
            wakes: HashMap::new(),
            next_wake_id: WAKE_IDS,
            threads: BTreeSet::new(),
            counts: ChromeCounts::default(),
            next_child_id: CHILD_IDS,
            last_ns: info.start_ns,
        })
    }

    /// Writes what one event shows: a new process, a lifetime's start or end,
    /// the arrows into a poll, a finished poll's slice.
    fn event(&mut self, event: &HookEvent) -> anyhow::Result<()> {
        self.last_ns = self.last_ns.max(event.ts_ns);
        let pid = event.pid;
        if self.processes.insert(pid) {
            self.writer
                .push(json!({"ph": "M", "name": "process_name", "pid": pid,
                "args": {"name": format!("{}, followed process", self.process_name)}}))?;
        }
        self.threads.insert((pid, event.tid));
        match &event.kind {
            HookKind::Init { .. } => self.begin_lifetime(event)?,
            HookKind::Before { .. } => self.draw_arrows_into(event)?,
            HookKind::Wake {
                waker_id: Some(waker),
                ..
            } if *waker != 0 => {
                self.wakes
                    .entry((pid, event.async_id))
                    .or_default()
                    .push(Wake {
                        ts_ns: event.ts_ns,
                        tid: event.tid,
                        id: self.next_wake_id,
                    });
                self.next_wake_id += 1;
            }
            HookKind::Destroy => self.end_lifetime(event)?,
            HookKind::After { .. } | HookKind::Resolve | HookKind::Wake { .. } => {}
        }
        self.poll_slice(event)
    }

    /// An `init`: opens the task's lifetime slice, under a trace id of its own
    /// for a task of another process, and keeps its spawn for the arrow.
    fn begin_lifetime(&mut self, event: &HookEvent) -> anyhow::Result<()> {
        let HookKind::Init {
            resource_type,
            trigger_id,
            name: future,
            location,
            ..
        } = &event.kind
        else {
            return Ok(());
        };
        let (pid, async_id) = (event.pid, event.async_id);
        let name = super::task_title(future.as_deref(), resource_type, async_id);
        // Polls are named by what runs, so Perfetto sums them per future type.
        let poll_name = future.clone().unwrap_or_else(|| name.clone());
        let id = if pid == self.pid {
            async_id
        } else {
            self.next_child_id += 1;
            self.next_child_id - 1
        };
        self.counts.tasks += 1;
        let writer = &mut self.writer;
        writer.push(json!({"ph": "b", "cat": "task", "id": id, "name": name,
            "ts": writer.us(event.ts_ns), "pid": pid, "tid": event.tid,
            "args": {"async_id": async_id, "trigger_id": trigger_id,
                "type": resource_type.as_str(), "name": future, "location": location}}))?;
        let key = (pid, async_id);
        self.lifetimes.insert(
            key,
            Lifetime {
                name,
                poll_name,
                id,
            },
        );
        if trigger_id.is_some_and(|trigger| trigger != 0) {
            self.spawns.insert(
                key,
                Spawn {
                    ts_ns: event.ts_ns,
                    tid: event.tid,
                },
            );
        }
        Ok(())
    }

    /// A `before`: draws the spawn arrow into a task's first poll and the wake
    /// arrows into the poll that follows them.
    fn draw_arrows_into(&mut self, event: &HookEvent) -> anyhow::Result<()> {
        let pid = event.pid;
        let key = (pid, event.async_id);
        let writer = &mut self.writer;
        if let (Some(spawn), Some(lifetime)) = (self.spawns.remove(&key), self.lifetimes.get(&key))
        {
            self.counts.flows += 1;
            let id = lifetime.id;
            writer.push(json!({"ph": "s", "cat": "spawn", "name": "spawn", "id": id,
                "ts": writer.us(spawn.ts_ns), "pid": pid, "tid": spawn.tid}))?;
            writer.push(
                json!({"ph": "f", "bp": "e", "cat": "spawn", "name": "spawn",
                "id": id, "ts": writer.us(event.ts_ns), "pid": pid, "tid": event.tid}),
            )?;
        }
        for wake in self.wakes.remove(&key).unwrap_or_default() {
            self.counts.wake_flows += 1;
            writer.push(
                json!({"ph": "s", "cat": "wake", "name": "wake", "id": wake.id,
                "ts": writer.us(wake.ts_ns), "pid": pid, "tid": wake.tid}),
            )?;
            writer.push(json!({"ph": "f", "bp": "e", "cat": "wake", "name": "wake",
                "id": wake.id, "ts": writer.us(event.ts_ns), "pid": pid, "tid": event.tid}))?;
        }
        Ok(())
    }

    /// A `destroy`: closes the task's lifetime slice and forgets its arrows.
    fn end_lifetime(&mut self, event: &HookEvent) -> anyhow::Result<()> {
        let key = (event.pid, event.async_id);
        if let Some(Lifetime { name, id, .. }) = self.lifetimes.remove(&key) {
            let writer = &mut self.writer;
            writer.push(json!({"ph": "e", "cat": "task", "id": id, "name": name,
                "ts": writer.us(event.ts_ns), "pid": event.pid, "tid": event.tid}))?;
        }
        self.spawns.remove(&key);
        self.wakes.remove(&key);
        Ok(())
    }

    /// The slice of the poll `event` finished, if it finished one.
    fn poll_slice(&mut self, event: &HookEvent) -> anyhow::Result<()> {
        let Some(poll) = self.collector.record(event) else {
            return Ok(());
        };
        let async_id = event.async_id;
        self.counts.slices += 1;
        let name = self.lifetimes.get(&(event.pid, async_id)).map_or_else(
            || format!("task {async_id}"),
            |alive| alive.poll_name.clone(),
        );
        let mut args = json!({"async_id": async_id});
        // A Pending poll's slice says where the task is parked after it.
        if let HookKind::After {
            awaiting: Some(frames),
            ..
        } = &event.kind
        {
            args["parked_at"] = json!(crate::model::event::parked_at(frames));
            args["awaiting"] = json!(frames);
        }
        let writer = &mut self.writer;
        writer.push(json!({"ph": "X", "cat": "poll", "name": name,
            "ts": writer.us(poll.start_ns), "dur": poll.duration_ns() as f64 / 1e3,
            "pid": event.pid, "tid": poll.tid, "args": args}))
    }

    /// Ends the lifetimes still open with the session, names the threads and
    /// closes the document.
    fn finish(mut self) -> anyhow::Result<ChromeCounts> {
        let writer = &mut self.writer;
        let mut alive: Vec<(TaskKey, Lifetime)> = self.lifetimes.into_iter().collect();
        alive.sort_by_key(|(key, _)| *key);
        for ((pid, _), Lifetime { name, id, .. }) in alive {
            writer.push(json!({"ph": "e", "cat": "task", "id": id, "name": name,
                "ts": writer.us(self.last_ns), "pid": pid}))?;
        }
        for (pid, tid) in self.threads {
            writer.push(
                json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                "args": {"name": format!("thread {tid}")}}),
            )?;
        }
        writer.out.write_all(b"\n]}\n")?;
        writer.out.flush()?;
        Ok(self.counts)
    }
}

#[cfg(test)]
mod tests {
    use super::{super::test_events::*, *};

    fn export() -> (Value, ChromeCounts) {
        let mut out = Vec::new();
        let counts = write(&mut out, &info(), session().into_iter().map(Ok)).unwrap();
        (serde_json::from_slice(&out).unwrap(), counts)
    }

    fn phases<'a>(trace: &'a Value, ph: &str) -> Vec<&'a Value> {
        trace["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|event| event["ph"] == ph)
            .collect()
    }

    #[test]
    fn every_poll_is_a_slice_on_its_thread() {
        let (trace, counts) = export();
        let slices = phases(&trace, "X");
        assert_eq!(slices.len(), 6);
        assert_eq!(counts.slices, 6);
        let first = slices[0];
        assert_eq!(first["name"], "tokio.task 1");
        assert_eq!(first["tid"], 11);
        assert_eq!(first["ts"], 1000.0);
        assert_eq!(first["dur"], 2000.0);
    }

    #[test]
    fn flows_go_from_the_spawning_poll_to_the_first_poll_of_the_child() {
        let (trace, counts) = export();
        let starts = phases(&trace, "s");
        let ends = phases(&trace, "f");
        // Tasks 2 and 4 were triggered by a task and polled; 3 never ran.
        assert_eq!(counts.flows, 2);
        assert_eq!(starts.len(), 2);
        assert_eq!(ends.len(), 2);
        assert_eq!(starts[0]["id"], 2);
        assert_eq!(starts[0]["ts"], 2000.0);
        assert_eq!(ends[0]["ts"], 4000.0);
        assert_eq!(ends[0]["tid"], 12);
    }

    #[test]
    fn wake_arrows_go_from_the_waking_poll_to_the_next_poll_of_the_woken() {
        let mut out = Vec::new();
        let counts = write(&mut out, &info(), wake_session().into_iter().map(Ok)).unwrap();
        let trace: Value = serde_json::from_slice(&out).unwrap();
        let wake_flows = |ph| -> Vec<&Value> {
            phases(&trace, ph)
                .into_iter()
                .filter(|flow| flow["cat"] == "wake")
                .collect()
        };
        // Only task 6's wake of 5 is by a task; the self-wakes here are deferred
        // yields, run by the scheduler (waker 0).
        assert_eq!(counts.wake_flows, 1);
        let (starts, ends) = (wake_flows("s"), wake_flows("f"));
        assert_eq!((starts.len(), ends.len()), (1, 1));
        assert_eq!(starts[0]["id"], WAKE_IDS);
        assert_eq!(ends[0]["id"], WAKE_IDS);
        assert_eq!(
            (&starts[0]["ts"], &starts[0]["tid"]),
            (&json!(2000.0), &json!(11))
        );
        assert_eq!(
            (&ends[0]["ts"], &ends[0]["tid"]),
            (&json!(14000.0), &json!(12))
        );
    }

    #[test]
    fn a_pending_poll_slice_says_where_its_task_is_parked_forks_included() {
        use super::super::test_events::{PARKED_AT, parked_session};
        let mut out = Vec::new();
        write(&mut out, &info(), parked_session().into_iter().map(Ok)).unwrap();
        let trace: Value = serde_json::from_slice(&out).unwrap();
        let nine = phases(&trace, "X")
            .into_iter()
            .find(|slice| slice["args"]["async_id"] == 9)
            .unwrap();
        assert_eq!(nine["args"]["parked_at"], PARKED_AT);
        assert_eq!(
            nine["args"]["awaiting"][1]["branches"][1]["awaiting"][0]["at"],
            "src/main.rs:42"
        );
    }

    #[test]
    fn every_lifetime_slice_is_closed() {
        let (trace, counts) = export();
        assert_eq!(counts.tasks, 5);
        assert_eq!(phases(&trace, "b").len(), 5);
        assert_eq!(phases(&trace, "e").len(), 5);
        let threads = phases(&trace, "M");
        assert_eq!(threads.len(), 1 + 3);
    }

    #[test]
    fn each_process_is_a_process_of_the_trace_with_ids_of_its_own() {
        let mut out = Vec::new();
        let counts = write(&mut out, &info(), two_processes().into_iter().map(Ok)).unwrap();
        let trace: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!((counts.slices, counts.flows, counts.tasks), (12, 4, 10));
        let names: Vec<(&Value, &Value)> = phases(&trace, "M")
            .into_iter()
            .filter(|event| event["name"] == "process_name")
            .map(|event| (&event["pid"], &event["args"]["name"]))
            .collect();
        assert_eq!(
            names,
            [
                (&json!(1), &json!("/bin/app (tokio)")),
                (&json!(2), &json!("/bin/app (tokio), followed process"))
            ]
        );
        let threads: Vec<(u64, u64)> = phases(&trace, "M")
            .into_iter()
            .filter(|event| event["name"] == "thread_name")
            .map(|event| {
                (
                    event["pid"].as_u64().unwrap(),
                    event["tid"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            threads,
            [(1, 10), (1, 11), (1, 12), (2, 20), (2, 21), (2, 22)]
        );
        // Every lifetime opens and closes under one id, and no id serves two tasks.
        let mut ids = std::collections::BTreeMap::new();
        for begin in phases(&trace, "b") {
            let task = (begin["pid"].as_u64().unwrap(), &begin["args"]["async_id"]);
            assert!(ids.insert(begin["id"].as_u64().unwrap(), task).is_none());
        }
        assert_eq!(ids.len(), 10);
        assert!(ids.contains_key(&2) && ids.contains_key(&CHILD_IDS));
        for end in phases(&trace, "e") {
            assert_eq!(
                ids[&end["id"].as_u64().unwrap()].0,
                end["pid"].as_u64().unwrap()
            );
        }
        // A flow starts and ends in the process of its task.
        for flow in phases(&trace, "s").into_iter().chain(phases(&trace, "f")) {
            assert_eq!(
                ids[&flow["id"].as_u64().unwrap()].0,
                flow["pid"].as_u64().unwrap()
            );
        }
    }
}
