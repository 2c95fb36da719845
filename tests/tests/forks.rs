//! A target that creates a child process of its own binary (the `forking`
//! fixture: `fork()` without exec, or `--exec`: fork + exec of itself). Without
//! `--follow-forks` only the target is traced; with it, the child is traced too,
//! under its own pid, and each process's events match its own ground truth,
//! also when the child outlives the target (`--orphan`): the session then lasts
//! until the child exits, and when `tracer trace -p` attaches after the fork
//! (`--on-signal`): children that already exist are followed too.
//! Needs root and `cargo xtask build`; fails otherwise.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use tracer_tests::{
    GROUND_TRUTH_ENV, GroundTruth, Profile, TracedRun, TracerOutput, child_ground_truth_path,
    compare, fixture_bin, ground_truth_pid, report, require_root, run_traced_with, temp_path,
    tracer_bin,
};

/// Runs `forking ARGS` under `tracer run --json OPTIONS` and returns the run with
/// the parent's and the child's pids and the child's ground truth.
fn run_forking(options: &[&str], args: &[&str]) -> (TracedRun, u32, u32, GroundTruth) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("forking", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let run = run_traced_with(options, &fixture, args).unwrap_or_else(|e| panic!("{e}"));
    assert!(run.status.success(), "tracer failed\n{}", run.describe());
    let parent = ground_truth_pid(&run.ground_truth_text).unwrap_or_else(|e| panic!("{e}"));
    let child_text = run
        .child_ground_truth_text
        .clone()
        .unwrap_or_else(|| panic!("the child wrote no ground truth\n{}", run.describe()));
    let child = ground_truth_pid(&child_text).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(
        parent, child,
        "parent and child ground truth from one process"
    );
    let child_truth = GroundTruth::parse(&child_text).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !run.ground_truth.tasks.is_empty() && !child_truth.tasks.is_empty(),
        "empty ground truth; was the fixture built with tokio_unstable?"
    );
    (run, parent, child, child_truth)
}

fn child_is_not_traced_without_the_flag(args: &[&str]) {
    let (run, parent, child, _) = run_forking(&[], args);
    let strangers: Vec<_> = run
        .tracer
        .events
        .iter()
        .filter(|e| e.pid != parent)
        .collect();
    assert!(
        strangers.is_empty(),
        "{} events not from the target {parent} (child is {child}), e.g. {:?}",
        strangers.len(),
        strangers.first()
    );
    let mismatches = compare(&run.ground_truth, &run.tracer);
    assert!(
        mismatches.is_empty(),
        "{}\n{}",
        report("forking parent", &mismatches),
        run.describe()
    );
    assert!(
        !run.stderr.contains("following child process"),
        "{}",
        run.describe()
    );
}

/// Runs with `--follow-forks`, checks both processes, and returns the run and
/// the two pids.
fn followed_child_matches_its_ground_truth(args: &[&str]) -> (TracedRun, u32, u32) {
    let (run, parent, child, child_truth) = run_forking(&["--follow-forks"], args);
    let mut mismatches = compare(&run.ground_truth, &run.tracer.of_pid(parent));
    mismatches.extend(
        compare(&child_truth, &run.tracer.of_pid(child))
            .into_iter()
            .map(|m| format!("child {child}: {m}")),
    );
    let strangers = run
        .tracer
        .events
        .iter()
        .filter(|e| e.pid != parent && e.pid != child)
        .count();
    if strangers > 0 {
        mismatches.push(format!("{strangers} events from neither process"));
    }
    assert!(
        mismatches.is_empty(),
        "{}\n{}",
        report(
            &format!("forking {args:?}, parent {parent}, child {child}"),
            &mismatches
        ),
        run.describe()
    );
    assert!(
        run.stderr.contains(&format!(
            "tracer: following child process {child} (created by {parent})"
        )),
        "the child was not announced\n{}",
        run.describe()
    );
    (run, parent, child)
}

#[test]
fn child_that_outlives_the_target_is_traced_until_it_exits() {
    let (run, parent, _) = followed_child_matches_its_ground_truth(&["--orphan"]);
    assert!(
        run.stderr.contains(&format!(
            "tracer: process {parent} exited; tracing its child processes until they exit"
        )),
        "the target did not end first\n{}",
        run.describe()
    );
}

#[test]
fn forked_child_is_not_traced_without_follow_forks() {
    child_is_not_traced_without_the_flag(&[]);
}

#[test]
fn child_that_execs_itself_is_not_traced_without_follow_forks() {
    child_is_not_traced_without_the_flag(&["--exec"]);
}

#[test]
fn forked_child_is_traced_with_follow_forks_and_matches_its_ground_truth() {
    followed_child_matches_its_ground_truth(&[]);
}

#[test]
fn child_that_execs_itself_is_traced_with_follow_forks_and_matches_its_ground_truth() {
    followed_child_matches_its_ground_truth(&["--exec"]);
}

#[test]
fn children_that_exist_when_trace_attaches_are_followed() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("forking", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let gt_path = temp_path("forks-attach");
    let mut app = Command::new(&fixture)
        .arg("--on-signal")
        .env(GROUND_TRUTH_ENV, &gt_path)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("forking starts");
    let parent = app.id();
    // The child exists before the tracer starts: it waits for SIGUSR1.
    let child: u32 = loop {
        let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .expect("the kernel lists children in /proc");
        if let Some(child) = children.split_whitespace().next() {
            break child.parse().expect("a pid");
        }
        std::thread::yield_now();
    };
    let mut traced = Command::new(tracer)
        .args([
            "trace",
            "--json",
            "--follow-forks",
            "-p",
            &parent.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tracer starts");
    let (lines, stderr_lines) = mpsc::channel();
    let stderr = traced.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let announced = format!("tracer: following child process {child} (created by {parent})");
    let mut seen = Vec::new();
    let (mut attached, mut followed) = (false, false);
    while !(attached && followed) {
        // A guard against a hang, not a measurement: the lines come at once.
        let Ok(line) = stderr_lines.recv_timeout(Duration::from_secs(60)) else {
            let _ = app.kill();
            panic!("the tracer never said it attached and follows {child}:\n{seen:#?}");
        };
        attached |= line.ends_with("Ctrl-C to stop");
        followed |= line == announced;
        seen.push(line);
    }
    for pid in [parent, child] {
        // SAFETY: plain kill(2) of the fixture's processes.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGUSR1) }, 0);
    }
    let app_status = app.wait().expect("forking ends");
    let output = traced.wait_with_output().expect("tracer ends");
    reader.join().expect("stderr reader");
    seen.extend(stderr_lines.try_iter());
    let stderr = seen.join("\n");
    assert!(app_status.success(), "forking failed: {app_status}");
    assert!(output.status.success(), "tracer failed:\n{stderr}");

    let read = |path: &std::path::Path| {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_file(path);
        GroundTruth::parse(&text).unwrap_or_else(|e| panic!("{e}"))
    };
    let parent_truth = read(&gt_path);
    let child_truth = read(&child_ground_truth_path(&gt_path));
    let events = TracerOutput::parse(&String::from_utf8_lossy(&output.stdout))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut mismatches = compare(&parent_truth, &events.of_pid(parent));
    mismatches.extend(
        compare(&child_truth, &events.of_pid(child))
            .into_iter()
            .map(|m| format!("child {child}: {m}")),
    );
    assert!(
        mismatches.is_empty(),
        "{}\n{stderr}",
        report(
            &format!("forking --on-signal, parent {parent}, child {child}"),
            &mismatches
        )
    );
}
