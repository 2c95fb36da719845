//! `tracer dump -p PID` on the running `await_points` fixture (built with full
//! type DWARF for the fixture crate only): every task the fixture parked must
//! be listed with the await chain its ground truth gives (each `.await` logged
//! with task id, fn and file:line just before awaiting, and the leaf future's
//! type), on both runtime flavours, and with the binary's DWARF moved to a
//! separate file found by `.gnu_debuglink`. No task may be invented. Needs root
//! (to read another process's memory) and `cargo xtask build`; fails otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tracer_tests::{GROUND_TRUTH_ENV, Profile, fixture_bin, require_root, temp_path, tracer_bin};

/// One level of a chain as the comparison sees it: (fn, at) of an `.await`,
/// or ("", type) of the leaf future.
type Level = (String, String);

/// Each task's await chain from the ground truth: the last record of each depth
/// up to the deepest written since, then the leaf.
fn ground_truth_chains(text: &str) -> BTreeMap<u64, Vec<Level>> {
    let mut stacks: BTreeMap<u64, Vec<(String, String, Option<String>)>> = BTreeMap::new();
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).expect("ground truth is JSON lines");
        if record["event"] != "await" {
            continue;
        }
        let id = record["id"].as_u64().expect("await id");
        let depth = record["depth"].as_u64().expect("await depth") as usize;
        let stack = stacks.entry(id).or_default();
        stack.truncate(depth);
        stack.push((
            record["fn"].as_str().unwrap().to_owned(),
            record["at"].as_str().unwrap().to_owned(),
            record["leaf"].as_str().map(str::to_owned),
        ));
    }
    stacks
        .into_iter()
        .map(|(id, stack)| {
            let leaf = stack.last().and_then(|(_, _, leaf)| leaf.clone());
            let mut chain: Vec<Level> = stack.into_iter().map(|(f, at, _)| (f, at)).collect();
            chain.extend(leaf.map(|leaf| (String::new(), leaf)));
            (id, chain)
        })
        .collect()
}

/// A dumped task's chain as the comparison sees it: its `.await`s, and the
/// last frame when it is a future (combinators in between are not in the
/// ground truth).
fn dumped_chain(task: &Value) -> Vec<Level> {
    let frames = task["awaiting"].as_array().cloned().unwrap_or_default();
    let mut chain: Vec<Level> = frames
        .iter()
        .filter(|f| f.get("at").is_some())
        .map(|f| {
            (
                f["fn"].as_str().unwrap().to_owned(),
                f["at"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    if let Some(future) = frames.last().and_then(|f| f["future"].as_str()) {
        chain.push((String::new(), future.to_owned()));
    }
    chain
}

/// The fixture, running until its ground truth says every task is parked.
struct Parked {
    child: Child,
    truth: PathBuf,
}

impl Parked {
    fn start(binary: &Path, args: &[&str]) -> Self {
        let truth = temp_path("dump");
        let child = Command::new(binary)
            .args(args)
            .env(GROUND_TRUTH_ENV, &truth)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let parked = Self { child, truth };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !parked.truth_text().contains("\"event\":\"parked\"") {
            assert!(
                Instant::now() < deadline,
                "await_points never parked its tasks"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        parked
    }

    fn truth_text(&self) -> String {
        std::fs::read_to_string(&self.truth).unwrap_or_default()
    }

    /// `tracer dump -p PID` with `args`: (stdout, stderr).
    fn dump(&self, args: &[&str]) -> (String, String) {
        let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
        let output = Command::new(tracer)
            .args(["dump", "-p", &self.child.id().to_string()])
            .args(args)
            .output()
            .expect("tracer runs");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "tracer dump failed:\n{stderr}");
        (String::from_utf8_lossy(&output.stdout).into_owned(), stderr)
    }

    /// Stops the fixture (SIGTERM) and checks it finished cleanly.
    fn stop(mut self) {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("await_points exits");
        assert!(status.success(), "await_points exited with {status}");
        assert!(
            self.truth_text().contains("\"event\":\"end\""),
            "no end record"
        );
        let _ = std::fs::remove_file(&self.truth);
    }
}

/// Dumps the parked fixture and compares every ground-truth chain.
fn dump_matches_ground_truth(binary: &Path, args: &[&str], dump_args: &[&str]) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let parked = Parked::start(binary, args);
    let (stdout, stderr) = parked.dump(&[&["--json"], dump_args].concat());
    let truth = ground_truth_chains(&parked.truth_text());
    let dumped: BTreeMap<u64, Value> = stdout
        .lines()
        .map(|line| {
            let task: Value = serde_json::from_str(line).expect("dump --json is JSON lines");
            (task["id"].as_u64().expect("task id"), task)
        })
        .collect();
    let (text, _) = parked.dump(dump_args);
    parked.stop();
    let mut mismatches = Vec::new();
    for (id, chain) in &truth {
        match dumped.get(id) {
            None => mismatches.push(format!("task {id}: not dumped")),
            Some(task) if dumped_chain(task) != *chain => mismatches.push(format!(
                "task {id}: dumped {:?}, ground truth {chain:?}",
                dumped_chain(task)
            )),
            Some(_) => {}
        }
    }
    for id in dumped.keys().filter(|id| !truth.contains_key(id)) {
        mismatches.push(format!("task {id}: dumped but never spawned by the app"));
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} chains differ:\n{}\ndump stderr: {stderr}",
        mismatches.len(),
        truth.len(),
        mismatches.join("\n")
    );
    assert_eq!(truth.len(), 5, "the fixture parks five tasks");
    eprintln!(
        "{} of {} await chains match ground truth",
        truth.len(),
        truth.len()
    );
    assert!(
        text.lines()
            .any(|l| l.contains(" parked at src/bin/await_points.rs:")
                && l.ends_with("> tokio::time::sleep::Sleep")),
        "text dump:\n{text}"
    );
}

fn await_points() -> PathBuf {
    fixture_bin("await_points", Profile::ReleaseAwait).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn dump_shows_every_parked_task_of_a_multi_thread_runtime_at_its_ground_truth_awaits() {
    dump_matches_ground_truth(&await_points(), &["--cycles", "20"], &[]);
}

#[test]
fn dump_shows_every_parked_task_of_a_current_thread_runtime_at_its_ground_truth_awaits() {
    dump_matches_ground_truth(
        &await_points(),
        &["--cycles", "20", "--current-thread"],
        &[],
    );
}

/// Runs `objcopy` with `args`.
fn objcopy(args: &[&std::ffi::OsStr]) {
    let status = Command::new("objcopy")
        .args(args)
        .status()
        .expect("objcopy (binutils) runs");
    assert!(status.success(), "objcopy {args:?} failed");
}

#[test]
fn dump_reads_the_dwarf_of_a_stripped_binary_from_its_debuglink_file() {
    let dir = std::env::temp_dir().join(format!("tracer-dump-debuglink-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let debug = dir.join("await_points.debug");
    let stripped = dir.join("await_points");
    objcopy(&[
        "--only-keep-debug".as_ref(),
        await_points().as_os_str(),
        debug.as_os_str(),
    ]);
    let link = format!("--add-gnu-debuglink={}", debug.display());
    objcopy(&[
        "--strip-debug".as_ref(),
        link.as_ref(),
        await_points().as_os_str(),
        stripped.as_os_str(),
    ]);
    dump_matches_ground_truth(&stripped, &["--cycles", "5"], &[]);
    let _ = std::fs::remove_dir_all(&dir);
}
