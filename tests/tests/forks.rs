//! A target that creates a child process of its own binary (the `forking`
//! fixture: `fork()` without exec, or `--exec`: fork + exec of itself). Without
//! `--follow-forks` only the target is traced; with it, the child is traced too,
//! under its own pid, and each process's events match its own ground truth,
//! also when the child outlives the target (`--orphan`): the session then lasts
//! until the child exits, and when `tracer trace -p` attaches after the fork
//! (`--on-signal`): children that already exist are followed too. A child that
//! runs another program (`--exec-other`) is let go.
//! Needs root and `cargo xtask build`; fails otherwise.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    thread::JoinHandle,
    time::Duration,
};

use tracer_tests::{
    GROUND_TRUTH_ENV, GroundTruth, Privileges, Profile, TracedRun, TracerOutput,
    child_ground_truth_path, compare, fixture_bin, ground_truth_pid, report, require_root,
    run_traced_with, temp_path, tracer_bin,
};

/// Runs `forking ARGS` under `tracer run --json OPTIONS` and returns the run with
/// the parent's and the child's pids and the child's ground truth.
fn run_forking(options: &[&str], args: &[&str]) -> (TracedRun, u32, u32, GroundTruth) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("forking", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let run = run_traced_with(Privileges::Root, options, &fixture, args)
        .unwrap_or_else(|e| panic!("{e}"));
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

/// A running tracer whose stdout is collected and whose stderr is read line by
/// line as it comes (both drained at once, so the tracer never blocks on a pipe).
struct Watched {
    child: Child,
    stdout: JoinHandle<Vec<u8>>,
    lines: mpsc::Receiver<String>,
    stderr: JoinHandle<()>,
    seen: Vec<String>,
}

impl Watched {
    fn start(command: &mut Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tracer starts");
        let mut out = child.stdout.take().expect("stdout");
        let stdout = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = out.read_to_end(&mut bytes);
            bytes
        });
        let err = child.stderr.take().expect("stderr");
        let (send, lines) = mpsc::channel();
        let stderr = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        Self {
            child,
            stdout,
            lines,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Waits for the first stderr line that `wanted` accepts and returns what it
    /// took from it. The minute is a guard against a hang, not a measurement.
    fn until<T>(&mut self, what: &str, mut wanted: impl FnMut(&str) -> Option<T>) -> T {
        loop {
            let Ok(line) = self.lines.recv_timeout(Duration::from_secs(60)) else {
                let _ = self.child.kill();
                panic!("the tracer never said {what}:\n{:#?}", self.seen);
            };
            let found = wanted(&line);
            self.seen.push(line);
            if let Some(found) = found {
                return found;
            }
        }
    }

    /// Waits for the tracer to end: its status, stdout and whole stderr.
    fn finish(mut self) -> (Output, String) {
        let status = self.child.wait().expect("tracer ends");
        let stdout = self.stdout.join().expect("stdout reader");
        self.stderr.join().expect("stderr reader");
        self.seen.extend(self.lines.try_iter());
        let output = Output {
            status,
            stdout,
            stderr: Vec::new(),
        };
        (output, self.seen.join("\n"))
    }
}

fn signal(pid: u32) {
    // SAFETY: plain kill(2) of one of the fixture's processes.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGUSR1) }, 0);
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
    let mut traced = Watched::start(Command::new(tracer).args([
        "trace",
        "--json",
        "--follow-forks",
        "-p",
        &parent.to_string(),
    ]));
    traced.until("that it attached", |line| {
        line.ends_with("Ctrl-C to stop").then_some(())
    });
    let announced = format!("tracer: following child process {child} (created by {parent})");
    traced.until(&announced, |line| (line == announced).then_some(()));
    signal(parent);
    signal(child);
    let app_status = app.wait().expect("forking ends");
    let (output, stderr) = traced.finish();
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

#[test]
fn child_that_runs_another_program_is_let_go() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("forking", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let gt_path = temp_path("forks-other");
    let mut traced = Watched::start(
        Command::new(tracer)
            .args(["run", "--json", "--follow-forks", "--"])
            .arg(&fixture)
            .arg("--exec-other")
            .env(GROUND_TRUTH_ENV, &gt_path),
    );
    let parent: u32 = traced.until("that it traces the command", |line| {
        let (_, pid) = line
            .strip_prefix("tracer: tracing ")?
            .split_once(", pid ")?;
        pid.split_once(')')?.0.parse().ok()
    });
    // `/bin/cat` waits on its input until the parent gets SIGUSR1.
    let other: u32 = traced.until("that it let /bin/cat go", |line| {
        line.strip_prefix("tracer: child process ")?
            .strip_suffix(" runs another program: it is not traced")?
            .parse()
            .ok()
    });
    signal(parent);
    let (output, stderr) = traced.finish();
    assert!(output.status.success(), "tracer failed:\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "tracer: following child process {other} (created by {parent})"
        )),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&gt_path).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(&gt_path);
    let truth = GroundTruth::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let events = TracerOutput::parse(&String::from_utf8_lossy(&output.stdout))
        .unwrap_or_else(|e| panic!("{e}"));
    // Every event is the parent's (compare checks a single pid), and exact.
    let mismatches = compare(&truth, &events);
    assert!(
        mismatches.is_empty(),
        "{}\n{stderr}",
        report("forking --exec-other", &mismatches)
    );
}
