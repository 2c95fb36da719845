//! Attach-time workload: 10 distinct future types, each spawned once, so the
//! binary holds 10 copies of Tokio's `raw::poll` (one per future type).

tracer_bench_workloads::distinct_futures_main!(10);
