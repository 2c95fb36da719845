//! The userspace event pipeline of `tracer` as a library: decoding raw probe
//! hits, the per-task model, the event types and the live sinks. The `tracer`
//! binary drives it; the pipeline benchmark (`benches/pipeline.rs`) measures it
//! alone, without BPF.

pub mod event;
pub mod model;
pub mod names;
pub mod output;
pub mod sched;
pub mod task_filter;
