//! A long session keeps the tracer's memory flat: while 1.5 million short-lived
//! tasks come and go under `tracer run --json`, its resident memory grows by less
//! than a generous bound between an early sample and a late one. Needs root and
//! `cargo xtask build`; fails otherwise.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use tracer_tests::{Profile, fixture_bin, require_root, tracer_bin};

/// Tasks the fixture runs: the samples are taken at task counts, not times.
const TASKS: u64 = 1_600_000;
/// Reported `init`s at the early sample (the ring buffer and buffers are warm).
const EARLY: u64 = 100_000;
/// Reported `init`s at the late sample.
const LATE: u64 = 1_500_000;
/// Most the tracer's resident memory may grow between the samples. Keeping
/// anything per task would cost far more: 1.4 million tasks × tens of bytes.
const GROWTH_BOUND_KIB: u64 = 16 * 1024;

/// Resident memory of a process, from `/proc/PID/status`.
fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("tracer status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("a VmRSS line")
}

#[test]
fn tracer_memory_stays_flat_while_a_million_tasks_come_and_go() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let churn = fixture_bin("churn", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(tracer)
        .args(["run", "--json", "--"])
        .arg(churn)
        .args(["--tasks", &TASKS.to_string(), "--seconds", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tracer starts");
    let pid = child.id();
    let stderr = child.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    // Count inits as they stream, sampling the tracer's memory at two counts.
    let mut inits = 0;
    let mut samples = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        let line = line.expect("tracer output");
        if line.starts_with(r#"{"event":"init""#) {
            inits += 1;
            if inits == EARLY || inits == LATE {
                samples.push(vm_rss_kib(pid));
            }
        }
    }
    let status = child.wait().expect("tracer ends");
    let stderr = stderr.join().unwrap_or_default();
    assert!(status.success(), "tracer failed:\n{stderr}");
    assert!(
        stderr.contains(&format!("churn: {TASKS} tasks")),
        "{stderr}"
    );
    let [early, late] = samples[..] else {
        panic!("{inits} inits reported, fewer than {LATE}:\n{stderr}");
    };
    eprintln!(
        "tracer VmRSS: {early} KiB after {EARLY} tasks, {late} KiB after {LATE} ({inits} in all)"
    );
    assert!(
        late < early + GROWTH_BOUND_KIB,
        "the tracer grew from {early} KiB to {late} KiB while {} tasks came and went",
        LATE - EARLY
    );
}
