//! Attach-time workload: 100 distinct future types, each spawned once, so the
//! binary holds 100 copies of Tokio's `raw::poll` (one per future type).
//! Waits for the go line (see the crate docs), then runs them and exits.

use seq_macro::seq;
use tracer_bench_workloads::{instrument, wait_for_go};

/// A future type of its own for each `N`.
async fn distinct<const N: usize>() -> usize {
    tokio::task::yield_now().await;
    N
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    instrument();
    wait_for_go();
    let mut sum = 0;
    seq!(N in 0..100 {
        sum += tokio::spawn(distinct::<N>()).await.expect("task panicked");
    });
    assert_eq!(sum, (100 - 1) * 100 / 2);
}
