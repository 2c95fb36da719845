//! Probes are filtered to the traced process: another process running the same
//! binary at the same time must not leak a single event into the output, also
//! with `--follow-forks`, where the kernel runs the probes for every process of
//! the file and only the BPF programs filter. Needs root and `cargo xtask build`;
//! fails otherwise.

use std::process::{Command, Stdio};

use tracer_tests::{Profile, TracerOutput, fixture_bin, require_root, tracer_bin};

#[test]
fn other_process_of_the_same_binary_is_not_traced() {
    bystander_is_not_traced(&[]);
}

#[test]
fn other_process_of_the_same_binary_is_not_traced_with_follow_forks() {
    bystander_is_not_traced(&["--follow-forks"]);
}

fn bystander_is_not_traced(options: &[&str]) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let app = fixture_bin("long_running", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let mut bystander = Command::new(&app)
        .args(["--seconds", "8"])
        .stderr(Stdio::null())
        .spawn()
        .expect("bystander starts");
    let mut target = Command::new(&app)
        .args(["--seconds", "3"])
        .stderr(Stdio::null())
        .spawn()
        .expect("target starts");
    let output = Command::new(tracer)
        .args(["trace", "--json", "-p", &target.id().to_string()])
        .args(options)
        .output()
        .expect("tracer runs");
    let _ = target.wait();
    let _ = bystander.kill();
    let _ = bystander.wait();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tracer failed:\n{stderr}");
    let events = TracerOutput::parse(&String::from_utf8_lossy(&output.stdout))
        .unwrap_or_else(|e| panic!("{e}"))
        .events;
    assert!(
        events.len() > 100,
        "the target's own events are missing ({} events):\n{stderr}",
        events.len()
    );
    let strangers: Vec<_> = events.iter().filter(|e| e.pid != target.id()).collect();
    assert!(
        strangers.is_empty(),
        "{} events from other processes, e.g. {:?}",
        strangers.len(),
        strangers.first()
    );
}
