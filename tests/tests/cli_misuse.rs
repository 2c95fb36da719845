//! Misuse of the command line exits 2 with a message naming the problem, before
//! anything is traced, and prints nothing on stdout. Needs `cargo xtask build`.

use std::process::Command;

use tracer_tests::tracer_bin;

/// Each misuse, and what its message must say.
const MISUSES: &[(&[&str], &str)] = &[
    (&[], "Usage: tracer <COMMAND>"),
    (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
    (&["trace"], "--pid <PID>"),
    (
        &["trace", "--bogus", "-p", "1"],
        "unexpected argument '--bogus'",
    ),
    (&["trace", "-p", "abc"], "\"abc\" is not a process id"),
    (&["trace", "-p", "0"], "0 is not a process id"),
    (
        &["trace", "-p", "1", "--", "ls"],
        "unexpected argument 'ls'",
    ),
    (&["record", "-p", "1"], "--output <FILE>"),
    (&["run"], "<CMD>"),
    (&["run", "--"], "<CMD>"),
    (&["run", "--force", "--", "ls"], "--output <FILE>"),
    (&["run", "--live", "--", "ls"], "--output <FILE>"),
    (
        &["run", "--floor", "--no-polls", "--", "ls"],
        "'--floor' cannot be used with '--no-polls'",
    ),
    (
        &["trace", "-p", "1", "--ring-size", "1000"],
        "power of two of at least 4096 bytes, got 1000",
    ),
    (
        &["trace", "-p", "1", "--ring-size", "lots"],
        "\"lots\" is not a number of bytes",
    ),
    (
        &["trace", "-p", "1", "--ring-size", "8589934592"],
        "--ring-size must be below 4 GiB",
    ),
    (
        &["trace", "-p", "1", "--sort", "polls"],
        "--sort sets up the --stats table: add --stats",
    ),
    (
        &["run", "--blocking-threshold", "5ms", "--", "ls"],
        "--blocking-threshold sets up the --stats table",
    ),
    (
        &["run", "--stats", "--sort", "nope", "--", "ls"],
        "invalid value 'nope' for '--sort",
    ),
    (&["replay"], "<FILE>"),
    (&["info"], "<FILE>"),
    (
        &["export", "x.trace", "--format", "pdf", "-o", "y"],
        "invalid value 'pdf' for '--format",
    ),
    (&["export", "x.trace", "--format", "svg"], "--output <OUT>"),
    (
        &["stats", "x.trace", "--json", "--csv"],
        "'--json' cannot be used with '--csv'",
    ),
    (
        &["tree", "x.trace", "--depth", "-1"],
        "unexpected argument '-1'",
    ),
    (
        &["tree", "x.trace", "--min-duration", "soon"],
        "\"soon\" is not a duration",
    ),
];

#[test]
fn every_misuse_exits_2_naming_the_problem() {
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    for (args, needle) in MISUSES {
        let output = Command::new(&tracer)
            .args(*args)
            .output()
            .expect("tracer runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.code() != Some(2) || !stderr.contains(needle) || !output.stdout.is_empty()
        {
            failures.push(format!(
                "tracer {}: {} (want exit 2 and {needle:?} on stderr, nothing on stdout)\n{stderr}",
                args.join(" "),
                output.status
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
