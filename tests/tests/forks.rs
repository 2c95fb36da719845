//! A target that creates a child process of its own binary (the `forking`
//! fixture: `fork()` without exec, or `--exec`: fork + exec of itself). Without
//! `--follow-forks` only the target is traced; with it, the child is traced too,
//! under its own pid, and each process's events match its own ground truth,
//! also when the child outlives the target (`--orphan`): the session then lasts
//! until the child exits, and when `tracer trace -p` attaches after the fork
//! (`--on-signal`): children that already exist are followed too. A child that
//! runs another program (`--exec-other`) is let go. `tree`, `stats`, `export`
//! and the live `--tree` of such a session keep the processes apart: each
//! process's trigger tree and poll counts are its own ground truth's.
//! Needs root and `cargo xtask build`; fails otherwise.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead as _, BufReader, Read as _},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    thread::JoinHandle,
    time::Duration,
};

use serde_json::Value;
use tracer_tests::{
    GROUND_TRUTH_ENV, GroundTruth, Privileges, Profile, TracedRun, TracerOutput,
    child_ground_truth_path, compare, fixture_bin, ground_truth_edges, ground_truth_pid,
    ground_truth_polls, report, require_root, run_traced_with, stats_polls, temp_path, tracer_bin,
    tracer_stdout, tree_edges,
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

/// Reads and removes a ground-truth file: the pid that wrote it, and what it says.
fn read_ground_truth(path: &std::path::Path) -> (u32, GroundTruth) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(path);
    let pid = ground_truth_pid(&text).unwrap_or_else(|e| panic!("{e}"));
    (
        pid,
        GroundTruth::parse(&text).unwrap_or_else(|e| panic!("{e}")),
    )
}

/// [`read_ground_truth`] of a file process `pid` must have written.
fn take_ground_truth(path: &std::path::Path, pid: u32) -> GroundTruth {
    let (writer, truth) = read_ground_truth(path);
    assert_eq!(
        writer,
        pid,
        "{} was written by another process",
        path.display()
    );
    truth
}

/// `of` applied to each process's ground truth, by pid.
fn per_process<T>(
    truths: &[(u32, &GroundTruth)],
    of: impl Fn(&GroundTruth) -> T,
) -> BTreeMap<u32, T> {
    truths
        .iter()
        .map(|(pid, truth)| (*pid, of(truth)))
        .collect()
}

#[test]
fn tree_stats_and_export_of_a_followed_session_keep_the_processes_apart() {
    let (run, parent, child, child_truth) = run_forking(&["--follow-forks"], &[]);
    let truths = [(parent, &run.ground_truth), (child, &child_truth)];
    let ids = |truth: &GroundTruth| truth.tasks.keys().copied().collect::<BTreeSet<u64>>();
    assert!(
        ids(&run.ground_truth)
            .intersection(&ids(&child_truth))
            .count()
            > 0,
        "the processes share no task id: nothing could be mixed up"
    );
    let file = temp_path("forks-session");
    std::fs::write(&file, &run.stdout).unwrap();
    let chrome = temp_path("forks-chrome");
    let (file_arg, chrome_arg) = (file.to_str().unwrap(), chrome.to_str().unwrap());
    let json = |args: &[&str]| -> Value { serde_json::from_str(&tracer_stdout(args)).unwrap() };
    let tree = json(&["tree", "--json", file_arg]);
    let child_tree = json(&["tree", "--json", "--pid", &child.to_string(), file_arg]);
    let stats = json(&["stats", "--json", file_arg]);
    tracer_stdout(&["export", file_arg, "--format", "chrome", "-o", chrome_arg]);
    let trace: Value = serde_json::from_slice(&std::fs::read(&chrome).unwrap()).unwrap();
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&chrome);

    assert_eq!(tree_edges(&tree), per_process(&truths, ground_truth_edges));
    assert_eq!(
        tree_edges(&child_tree),
        per_process(&truths[1..], ground_truth_edges)
    );
    assert_eq!(
        stats_polls(&stats),
        per_process(&truths, ground_truth_polls)
    );

    let events = trace["traceEvents"].as_array().unwrap();
    let pid_of = |event: &Value| u32::try_from(event["pid"].as_u64().unwrap()).unwrap();
    let processes: BTreeSet<u32> = events
        .iter()
        .filter(|event| event["name"] == "process_name")
        .map(pid_of)
        .collect();
    assert_eq!(processes, BTreeSet::from([parent, child]));
    let mut slices: BTreeMap<u32, u64> = BTreeMap::new();
    for poll in events.iter().filter(|event| event["ph"] == "X") {
        *slices.entry(pid_of(poll)).or_default() += 1;
    }
    assert_eq!(
        slices,
        per_process(&truths, |truth| ground_truth_polls(truth).values().sum())
    );
}

#[test]
fn live_tree_of_a_followed_session_has_each_process_s_own_tree() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("forking", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let gt_path = temp_path("forks-live-tree");
    let output = Command::new(tracer)
        .args(["run", "--follow-forks", "--tree", "--json", "--"])
        .arg(&fixture)
        .env(GROUND_TRUTH_ENV, &gt_path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tracer failed:\n{stderr}");
    let (parent, parent_truth) = read_ground_truth(&gt_path);
    let (child, child_truth) = read_ground_truth(&child_ground_truth_path(&gt_path));
    let tree: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no tree JSON on stdout ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    assert_eq!(
        tree_edges(&tree),
        per_process(
            &[(parent, &parent_truth), (child, &child_truth)],
            ground_truth_edges
        )
    );
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

    let parent_truth = take_ground_truth(&gt_path, parent);
    let child_truth = take_ground_truth(&child_ground_truth_path(&gt_path), child);
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
