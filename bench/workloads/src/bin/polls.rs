//! Poll-heavy micro workload: `--tasks N` tasks that each yield `--yields M`
//! times, about N × M polls, on a `--flavor multi` (2 workers) or `current`
//! runtime. Prints `{"polls":…,"elapsed_s":…,"polls_per_s":…}`; the time runs
//! from the first spawn to the last join.

use std::time::Instant;

use tracer_bench_workloads::{arg, instrument, report, spawn_distinct_types, wait_for_go};

fn main() {
    instrument();
    let tasks: u64 = arg("--tasks", 1000);
    let yields: u64 = arg("--yields", 1000);
    let flavor: String = arg("--flavor", "multi".to_owned());
    let runtime = match flavor.as_str() {
        "multi" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        "current" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        other => {
            eprintln!("--flavor must be multi or current, not {other}");
            std::process::exit(2)
        }
    }
    .expect("cannot build the Tokio runtime");
    runtime.block_on(spawn_distinct_types());
    wait_for_go();
    let elapsed = runtime.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                tokio::spawn(async move {
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("a workload task panicked");
        }
        start.elapsed().as_secs_f64()
    });
    // Each task is polled once more than it yields (its completing poll).
    let polls = (tasks * (yields + 1)) as f64;
    report(&[
        ("polls", polls),
        ("elapsed_s", elapsed),
        ("polls_per_s", polls / elapsed),
    ]);
}
