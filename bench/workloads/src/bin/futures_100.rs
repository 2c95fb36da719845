//! Attach-time workload: 100 distinct future types, each spawned once, so the
//! binary holds 100 copies of Tokio's `raw::poll` (one per future type).

tracer_bench_workloads::distinct_futures_main!(100);
