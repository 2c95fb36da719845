//! What every benchmark workload shares: tokio-console's instrumentation when
//! built with it, the start handshake with `cargo xtask bench`, and the one-line
//! JSON result.
//!
//! Handshake: with `BENCH_WAIT_GO=1` in the environment a workload prints
//! `ready` on stderr and waits for a line on stdin before it starts measuring,
//! so that a tracer can attach first and attach time is never measured as the
//! workload's.

use std::io::{BufRead, Write};

/// Installs tokio-console's instrumentation in the `console` build; nothing
/// otherwise. Call before building the runtime.
pub fn instrument() {
    #[cfg(feature = "console")]
    console_subscriber::init();
}

/// A future type of its own for each `N`.
async fn distinct<const N: usize>() -> usize {
    N
}

/// Spawns and awaits 16 tiny tasks of distinct future types.
///
/// A release binary with only a couple of future types gets Tokio's
/// `OwnedTasks::bind_inner` inlined into its spawn path, and tracer refuses such a
/// build (that function is where it sees spawns). Real applications have many
/// future types; each workload gets them through this, before it measures.
pub async fn spawn_distinct_types() {
    seq_macro::seq!(N in 0..16 {
        let _ = tokio::spawn(distinct::<N>()).await;
    });
}

/// Waits for the go line on stdin when `BENCH_WAIT_GO` is set.
pub fn wait_for_go() {
    if std::env::var_os("BENCH_WAIT_GO").is_none() {
        return;
    }
    eprintln!("ready");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

/// The value after `--name` in the program's arguments, parsed, or `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(index) => args
            .get(index + 1)
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| {
                eprintln!("{name} needs a value of the right type");
                std::process::exit(2)
            }),
        None => default,
    }
}

/// Prints the workload's result as one JSON object on stdout.
pub fn report(fields: &[(&str, f64)]) {
    let body: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("\"{name}\":{value}"))
        .collect();
    println!("{{{}}}", body.join(","));
}

/// Defines `main` for an attach-time workload with `$n` distinct future types,
/// each spawned once, so the binary holds `$n` copies of Tokio's `raw::poll`.
/// Waits for the go line, then runs them and exits.
#[macro_export]
macro_rules! distinct_futures_main {
    ($n:tt) => {
        /// A future type of its own for each `N`.
        async fn distinct<const N: usize>() -> usize {
            tokio::task::yield_now().await;
            N
        }

        #[tokio::main(flavor = "current_thread")]
        async fn main() {
            $crate::instrument();
            $crate::wait_for_go();
            let mut sum = 0;
            seq_macro::seq!(N in 0..$n {
                sum += tokio::spawn(distinct::<N>()).await.expect("task panicked");
            });
            assert_eq!(sum, ($n - 1) * $n / 2);
        }
    };
}
