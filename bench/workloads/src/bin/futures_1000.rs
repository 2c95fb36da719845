//! Attach-time workload: 1000 distinct future types, each spawned once, so the
//! binary holds 1000 copies of Tokio's `raw::poll` (one per future type).

tracer_bench_workloads::distinct_futures_main!(1000);
