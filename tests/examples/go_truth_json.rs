//! Prints what a Go fixture's `runtime/trace` says per goroutine (see
//! `tracer_tests::go_truth`), one JSON object per goroutine, for the casgstatus
//! check in `tests/go-fixtures/checks`:
//!
//! `cargo run -p tracer-tests --example go_truth_json -- TRACE_FILE`

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: go_truth_json TRACE_FILE");
        std::process::exit(2);
    };
    let trace =
        tracer_tests::go_truth::read_trace(std::path::Path::new(&path)).unwrap_or_else(|e| {
            eprintln!("go_truth_json: {e}");
            std::process::exit(1);
        });
    for g in trace.goroutines.values() {
        let line = serde_json::json!({
            "goid": g.goid,
            "parent": g.parent,
            "name": g.name,
            "bottom_frame": g.bottom_frame,
            "existing": g.existing,
            "state_at_start": g.state_at_start.map(|s| format!("{s:?}")),
            "runs": g.runs,
            "stops": g.stops,
            "blocks": g.blocks,
            "yields": g.yields,
            "syscalls": g.syscalls,
            "syscall_stops": g.syscall_stops,
            "wakers": g.wakers,
            "ended": g.ended,
            "runtime": g.runtime,
        });
        println!("{line}");
    }
}
