//! Ground truth for await chains: the `await_points` fixture writes
//! `{"event":"await", id, depth, fn, at, leaf}` just before each `.await`, so
//! a task's chain at any moment is the last record of each depth up to the
//! deepest one written since, then the leaf future. Inside branch `b` of a
//! `join!` or `select!` (`await_points --forks`) the records carry
//! `branch: b`, and `branch_done {id, branch}` says the branch finished: the
//! task's tree is its chain down to the fork, then each unfinished branch's
//! own chain. Shared by the tests of `after`'s `awaiting`, of `stats`/`tree`'s
//! "parked at" and of `tracer dump`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{GROUND_TRUTH_ENV, temp_path};

/// One level of a chain as the comparisons see it: (fn, at) of an `.await`, or
/// ("", type) of the leaf future.
pub type Level = (String, String);

/// One `await` record of the ground truth.
pub struct Await {
    /// When it was written, CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// 0 for the task's own future, one more per nested async fn.
    pub depth: usize,
    /// The awaiting function.
    pub function: String,
    /// The `.await`'s `file:line`.
    pub at: String,
    /// The awaited future's type when it is not an async fn.
    pub leaf: Option<String>,
    /// The `join!`/`select!` branch it is in, by position.
    pub branch: Option<usize>,
    /// Whether it is a `branch_done` record (the branch finished; no await).
    pub done: bool,
}

/// A task's await tree as the comparisons see it: its chain down to the
/// fork it waits in, if any, then each pending branch's chain by position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    /// Outermost first; ends with the fork's macro (`tokio::join!`) when
    /// it waits in one.
    pub chain: Vec<Level>,
    /// The chain of each pending branch.
    pub branches: BTreeMap<usize, Vec<Level>>,
}

/// Each task's `await` and `branch_done` records, in the order written.
pub fn ground_truth_awaits(text: &str) -> BTreeMap<u64, Vec<Await>> {
    let mut awaits: BTreeMap<u64, Vec<Await>> = BTreeMap::new();
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).expect("ground truth is JSON lines");
        let done = record["event"] == "branch_done";
        if record["event"] != "await" && !done {
            continue;
        }
        awaits
            .entry(record["id"].as_u64().expect("await id"))
            .or_default()
            .push(Await {
                ts_ns: record["ts_ns"].as_u64().expect("await ts_ns"),
                depth: record["depth"].as_u64().unwrap_or_default() as usize,
                function: record["fn"].as_str().unwrap_or_default().to_owned(),
                at: record["at"].as_str().unwrap_or_default().to_owned(),
                leaf: record["leaf"].as_str().map(str::to_owned),
                branch: record["branch"].as_u64().map(|b| b as usize),
                done,
            });
    }
    awaits
}

/// Pushes an `.await` record on a chain's stack of records: it ends every
/// await at its depth or deeper.
fn push<'a>(stack: &mut Vec<&'a Await>, record: &'a Await) {
    stack.retain(|a| a.depth < record.depth);
    stack.push(record);
}

/// A stack of records as levels: each `.await`, then the last one's leaf.
fn levels(stack: &[&Await]) -> Vec<Level> {
    let leaf = stack.last().and_then(|a| a.leaf.clone());
    let mut chain: Vec<Level> = stack
        .iter()
        .map(|a| (a.function.clone(), a.at.clone()))
        .collect();
    chain.extend(leaf.map(|leaf| (String::new(), leaf)));
    chain
}

/// A task's tree just before `ts_ns` (`u64::MAX`: its last tree).
pub fn tree_at(awaits: &[Await], ts_ns: u64) -> Tree {
    let mut trunk: Vec<&Await> = Vec::new();
    let mut branches: BTreeMap<usize, Vec<&Await>> = BTreeMap::new();
    for record in awaits.iter().take_while(|a| a.ts_ns < ts_ns) {
        match record.branch {
            None => {
                push(&mut trunk, record);
                branches.clear();
            }
            Some(branch) if record.done => {
                branches.remove(&branch);
            }
            Some(branch) => push(branches.entry(branch).or_default(), record),
        }
    }
    Tree {
        chain: levels(&trunk),
        branches: branches
            .iter()
            .map(|(branch, stack)| (*branch, levels(stack)))
            .collect(),
    }
}

/// Every task's last tree.
pub fn final_trees(text: &str) -> BTreeMap<u64, Tree> {
    ground_truth_awaits(text)
        .into_iter()
        .map(|(id, awaits)| (id, tree_at(&awaits, u64::MAX)))
        .collect()
}

/// A tracer's `awaiting` frames as the comparisons see them: its `.await`s,
/// and the last frame when it is a future (combinators in between are not in
/// the ground truth).
pub fn traced_chain(frames: &[Value]) -> Vec<Level> {
    let mut chain: Vec<Level> = frames
        .iter()
        .filter(|f| f.get("at").is_some())
        .map(|f| {
            (
                f["fn"].as_str().unwrap_or_default().to_owned(),
                f["at"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    if let Some(future) = frames.last().and_then(|f| f["future"].as_str()) {
        chain.push((String::new(), future.to_owned()));
    }
    chain
}

/// A tracer's await tree (`tracer dump`'s `awaiting`) as the comparisons see
/// it: [`traced_chain`] of its frames, and of each branch of the fork that
/// ends them.
pub fn traced_tree(frames: &[Value]) -> Tree {
    let branches = frames
        .last()
        .and_then(|f| f["branches"].as_array())
        .map_or(&[][..], Vec::as_slice);
    Tree {
        chain: traced_chain(frames),
        branches: branches
            .iter()
            .map(|b| {
                let awaiting = b["awaiting"].as_array().map_or(&[][..], Vec::as_slice);
                let branch = b["branch"].as_u64().expect("a branch has its position");
                (branch as usize, traced_chain(awaiting))
            })
            .collect(),
    }
}

/// The `await_points` fixture running with ground truth; [`ParkedFixture::wait_parked`]
/// waits until it says every task is parked.
pub struct ParkedFixture {
    child: Child,
    truth: PathBuf,
}

impl ParkedFixture {
    /// Starts `binary args…` with its ground truth in a fresh file.
    pub fn start(binary: &Path, args: &[&str]) -> Self {
        let truth = temp_path("parked");
        let child = Command::new(binary)
            .args(args)
            .env(GROUND_TRUTH_ENV, &truth)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        Self { child, truth }
    }

    /// Waits (30 s at most) for the fixture's `parked` record.
    pub fn wait_parked(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.truth_text().contains("\"event\":\"parked\"") {
            assert!(
                Instant::now() < deadline,
                "await_points never parked its tasks"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The ground truth written so far.
    pub fn truth_text(&self) -> String {
        std::fs::read_to_string(&self.truth).unwrap_or_default()
    }

    /// Stops the fixture (SIGTERM) and checks it finished cleanly.
    pub fn stop(mut self) {
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
