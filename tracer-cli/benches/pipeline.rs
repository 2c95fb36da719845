//! Events per second of the userspace pipeline alone (decode + model + sink), on
//! a synthetic ring-buffer stream shaped like a poll-heavy Tokio program: tasks
//! spawned, polled many times in turns on two threads, completed and freed (each
//! free seen by both free sites). No BPF, one core.
//!
//! `cargo bench -p tracer-cli --bench pipeline`; `cargo xtask bench` runs it and
//! reads the throughput back from criterion's `estimates.json`.

use std::{hint::black_box, io};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tracer_cli::{
    model::event::HookEvent,
    model::{TaskModel, decode},
    sinks::output::{JsonLines, Sink},
};
use tracer_common::{RawEvent, RawKind};

/// Tasks in the synthetic stream.
const TASKS: u64 = 1_000;
/// Polls of each task.
const POLLS: u64 = 50;

/// The stream as the ring buffer hands it over: one byte record per event.
fn synthetic_stream() -> Vec<[u8; size_of::<RawEvent>()]> {
    let mut ts = 0u64;
    let mut records = Vec::new();
    let mut push = |kind: RawKind, task_id: u64| {
        ts += 100;
        let event = RawEvent {
            ts_ns: ts,
            pid_tgid: (4242u64 << 32) | (1000 + task_id % 2),
            task_id,
            trigger_id: 1,
            kind: kind as u32,
            detail: 0,
        };
        // SAFETY: RawEvent is plain old data of exactly this size.
        records.push(unsafe { std::mem::transmute::<RawEvent, [u8; 40]>(event) });
    };
    let ids = 2..TASKS + 2;
    for id in ids.clone() {
        push(RawKind::Spawn, id);
    }
    for poll in 0..POLLS {
        for id in ids.clone() {
            push(RawKind::PollStart, id);
            if poll + 1 == POLLS {
                push(RawKind::Complete, id);
            }
            push(RawKind::PollEnd, id);
        }
    }
    for id in ids {
        push(RawKind::Free, id);
        push(RawKind::Free, id);
    }
    records
}

/// A sink that only counts: the cost of decode + model alone.
struct Counting(u64);

impl Sink for Counting {
    fn event(&mut self, event: &HookEvent) -> io::Result<()> {
        self.0 += black_box(event).async_id & 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Feeds every record through decode and a fresh model into `sink`.
fn pump(records: &[[u8; 40]], sink: &mut dyn Sink) {
    let mut model = TaskModel::new();
    for record in records {
        let Some(raw) = decode::<RawEvent>(record) else {
            continue;
        };
        model.apply(&raw, |event| {
            let _ = sink.event(&event);
        });
    }
    let _ = sink.flush();
}

fn pipeline(c: &mut Criterion) {
    let records = synthetic_stream();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("decode_model", |b| {
        b.iter(|| pump(&records, &mut Counting(0)))
    });
    group.bench_function("decode_model_json", |b| {
        b.iter(|| pump(&records, &mut JsonLines::new(io::sink())))
    });
    // Hook: when the recording sink (`tracer record`) lands, add it here as
    // `decode_model_record`, writing to a `Vec<u8>` or `io::sink()`.
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
