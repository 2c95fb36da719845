//! Sustained-rate workload for drop measurements: one task on a current-thread
//! runtime yields at `--polls-per-s R` for `--seconds S`, pacing itself every 64
//! polls by sleeping the thread when ahead. Each poll is two traced events
//! (before, after). Prints `{"polls":…,"elapsed_s":…,"polls_per_s":…}`: the
//! rate reached, which a slow (traced) poll may hold below the one asked for.

use std::time::{Duration, Instant};

use tracer_bench_workloads::{arg, instrument, report, spawn_distinct_types, wait_for_go};

fn main() {
    instrument();
    let rate: f64 = arg("--polls-per-s", 50_000.0);
    let seconds: f64 = arg("--seconds", 2.0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot build the Tokio runtime");
    runtime.block_on(spawn_distinct_types());
    wait_for_go();
    let (polls, elapsed) = runtime.block_on(async move {
        tokio::spawn(async move {
            let start = Instant::now();
            let mut polls = 0u64;
            loop {
                tokio::task::yield_now().await;
                polls += 1;
                if polls % 64 == 0 {
                    let elapsed = start.elapsed().as_secs_f64();
                    if elapsed >= seconds {
                        return (polls, elapsed);
                    }
                    let ahead = polls as f64 / rate - elapsed;
                    if ahead > 0.0 {
                        std::thread::sleep(Duration::from_secs_f64(ahead));
                    }
                }
            }
        })
        .await
        .expect("the paced task panicked")
    });
    report(&[
        ("polls", polls as f64),
        ("elapsed_s", elapsed),
        ("polls_per_s", polls as f64 / elapsed),
    ]);
}
