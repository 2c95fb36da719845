//! Attach-time workload: 1000 distinct future types, each spawned once, so the
//! binary holds 1000 copies of Tokio's `raw::poll` (one per future type).
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
    seq!(N in 0..1000 {
        sum += tokio::spawn(distinct::<N>()).await.expect("task panicked");
    });
    assert_eq!(sum, (1000 - 1) * 1000 / 2);
}
