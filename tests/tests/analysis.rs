//! `tracer tree`, `stats` and `export` on a real session: the multi_thread fixture
//! is recorded once with `tracer run --json`, then each subcommand's output is
//! checked against the fixture's ground truth. Needs root (BPF), the binaries from
//! `cargo xtask build`, and Debian's `chromium` for the SVG test (`cargo xtask
//! setup` installs it); without them the tests fail and say why.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use serde_json::Value;
use tracer_tests::{
    GROUND_TRUTH_ENV, GroundTruth, Profile, expected_task_name, fixture_bin, ground_truth_edges,
    ground_truth_future_types, ground_truth_pid, ground_truth_polls, require_root, run_traced,
    stats_polls, temp_path, tracer_bin, tracer_stdout as tracer, tree_edges,
};

/// The recorded session and what Tokio's hooks saw during it.
struct Recorded {
    file: PathBuf,
    pid: u32,
    ground_truth: GroundTruth,
    /// Each task's future type (`type_name`), by task id, where the fixture recorded it.
    future_types: BTreeMap<u64, String>,
}

fn recorded() -> &'static Recorded {
    static RECORDED: OnceLock<Recorded> = OnceLock::new();
    RECORDED.get_or_init(|| {
        require_root().unwrap_or_else(|e| panic!("{e}"));
        let fixture =
            fixture_bin("multi_thread", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
        let run = run_traced(&fixture, &[]).unwrap_or_else(|e| panic!("multi_thread: {e}"));
        assert!(run.status.success(), "tracer failed\n{}", run.describe());
        assert!(
            !run.ground_truth.tasks.is_empty(),
            "empty ground truth\n{}",
            run.describe()
        );
        let file = temp_path("session");
        std::fs::write(&file, &run.stdout).unwrap();
        Recorded {
            file,
            pid: ground_truth_pid(&run.ground_truth_text).unwrap_or_else(|e| panic!("{e}")),
            ground_truth: run.ground_truth,
            future_types: ground_truth_future_types(&run.ground_truth_text),
        }
    })
}

fn file_arg() -> &'static str {
    recorded().file.to_str().unwrap()
}

/// `expected` as the only process of a session, the recorded one.
fn of_the_process<T>(pid: u32, expected: T) -> BTreeMap<u32, T> {
    BTreeMap::from([(pid, expected)])
}

#[test]
fn tree_edges_are_the_ground_truth_parent_links() {
    let tree: Value = serde_json::from_str(&tracer(&["tree", "--json", file_arg()])).unwrap();
    let recorded = recorded();
    assert_eq!(
        tree_edges(&tree),
        of_the_process(recorded.pid, ground_truth_edges(&recorded.ground_truth))
    );
}

#[test]
fn live_tree_flag_prints_the_ground_truth_parent_links_at_the_end() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("multi_thread", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let truth_file = temp_path("live-tree");
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let output = Command::new(&tracer)
        .args(["run", "--tree", "--json", "--"])
        .arg(&fixture)
        .env(GROUND_TRUTH_ENV, &truth_file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "tracer run --tree failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&truth_file).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(&truth_file);
    let truth = GroundTruth::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let pid = ground_truth_pid(&text).unwrap_or_else(|e| panic!("{e}"));
    let tree: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        tree_edges(&tree),
        of_the_process(pid, ground_truth_edges(&truth))
    );
}

#[test]
fn stats_by_name_sums_the_ground_truth_tasks_and_polls_of_each_future_type() {
    let recorded = recorded();
    let stats: Value =
        serde_json::from_str(&tracer(&["stats", "--by", "name", "--json", file_arg()])).unwrap();
    let polls = ground_truth_polls(&recorded.ground_truth);
    // (tasks, polls) per name, from Tokio's hooks and the fixture's type_name records.
    let mut expected: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (id, type_name) in &recorded.future_types {
        let sums = expected.entry(expected_task_name(type_name)).or_default();
        sums.0 += 1;
        sums.1 += polls.get(id).copied().unwrap_or_default();
    }
    assert!(!expected.is_empty(), "no future types in the ground truth");
    let rows = stats["names"].as_array().expect("a names array");
    let traced: BTreeMap<String, (u64, u64)> = rows
        .iter()
        .filter_map(|row| {
            Some((
                row["name"].as_str()?.to_owned(),
                (row["tasks"].as_u64()?, row["polls"].as_u64()?),
            ))
        })
        .collect();
    for (name, sums) in &expected {
        assert_eq!(
            traced.get(name),
            Some(sums),
            "{name}: (tasks, polls) traced vs ground truth"
        );
    }
    for row in rows {
        let (p50, p99, max) = (
            row["p50_poll_ns"].as_u64().unwrap(),
            row["p99_poll_ns"].as_u64().unwrap(),
            row["max_poll_ns"].as_u64().unwrap(),
        );
        assert!(p50 <= p99 && p99 <= max, "{row}");
        assert!(max <= row["busy_ns"].as_u64().unwrap(), "{row}");
    }
    eprintln!(
        "stats --by name: {} names from ground truth matched (tasks and polls), {} rows",
        expected.len(),
        rows.len()
    );
}

#[test]
fn stats_poll_counts_are_the_ground_truth_polls() {
    let stats: Value = serde_json::from_str(&tracer(&["stats", "--json", file_arg()])).unwrap();
    let recorded = recorded();
    assert_eq!(
        stats_polls(&stats),
        of_the_process(recorded.pid, ground_truth_polls(&recorded.ground_truth))
    );
}

#[test]
fn chrome_export_has_a_slice_per_poll_and_a_flow_per_triggered_task_and_wake_by_a_task() {
    let out = temp_path("chrome");
    tracer(&[
        "export",
        file_arg(),
        "--format",
        "chrome",
        "-o",
        out.to_str().unwrap(),
    ]);
    let trace: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    let events = trace["traceEvents"].as_array().unwrap();
    let count = |ph: &str| events.iter().filter(|e| e["ph"] == ph).count();
    let flows = |ph: &str, cat: &str| {
        events
            .iter()
            .filter(|e| e["ph"] == ph && e["cat"] == cat)
            .collect::<Vec<_>>()
    };
    let truth = &recorded().ground_truth;
    let polls: usize = truth.tasks.values().map(|t| t.poll_start_tids.len()).sum();
    assert_eq!(count("X"), polls, "one slice per poll");
    // An arrow ends on the child's first poll: a task spawned by a task and polled.
    let triggered = truth
        .tasks
        .values()
        .filter(|t| t.parent.is_some() && !t.poll_start_tids.is_empty())
        .count();
    assert!(triggered > 0, "the fixture spawns tasks from tasks");
    assert_eq!(
        flows("s", "spawn").len(),
        triggered,
        "one flow start per triggered task"
    );
    assert_eq!(
        flows("f", "spawn").len(),
        triggered,
        "one flow end per triggered task"
    );
    // A wake arrow per wake by a task whose woken task was polled after it.
    let lines: Vec<Value> = std::fs::read_to_string(file_arg())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let woken_by_tasks = lines
        .iter()
        .enumerate()
        .filter(|(n, e)| {
            e["event"] == "wake"
                && e["waker_id"].as_u64().is_some_and(|waker| waker != 0)
                && lines[n + 1..]
                    .iter()
                    .any(|later| later["event"] == "before" && later["async_id"] == e["async_id"])
        })
        .count();
    assert!(woken_by_tasks > 0, "the fixture's tasks wake each other");
    let (starts, ends) = (flows("s", "wake"), flows("f", "wake"));
    assert_eq!(
        starts.len(),
        woken_by_tasks,
        "one wake arrow per wake by a task"
    );
    for (start, end) in starts.iter().zip(&ends) {
        assert_eq!(start["id"], end["id"]);
        assert!(start["ts"].as_f64() <= end["ts"].as_f64(), "{start} {end}");
    }
    assert_eq!(count("b"), truth.tasks.len(), "one lifetime per task");
    assert_eq!(count("e"), truth.tasks.len(), "every lifetime ends");
    // Each typed task's lifetime track is named `NAME #ID`, and its polls `NAME`.
    let future_types = &recorded().future_types;
    for event in events.iter().filter(|e| e["ph"] == "b") {
        let id = event["args"]["async_id"].as_u64().unwrap();
        if let Some(type_name) = future_types.get(&id) {
            let name = expected_task_name(type_name);
            assert_eq!(event["name"], format!("{name} #{id}"), "{event}");
            assert_eq!(event["args"]["name"], name.as_str(), "{event}");
        }
    }
    for event in events.iter().filter(|e| e["ph"] == "X") {
        let id = event["args"]["async_id"].as_u64().unwrap();
        if let Some(type_name) = future_types.get(&id) {
            assert_eq!(
                event["name"],
                expected_task_name(type_name).as_str(),
                "{event}"
            );
        }
    }
}

#[test]
fn tree_nodes_carry_each_tasks_ground_truth_name() {
    let tree: Value = serde_json::from_str(&tracer(&["tree", "--json", file_arg()])).unwrap();
    let future_types = &recorded().future_types;
    let mut stack: Vec<&Value> = tree["roots"].as_array().unwrap().iter().collect();
    let mut checked = 0;
    while let Some(node) = stack.pop() {
        stack.extend(node["children"].as_array().into_iter().flatten());
        let Some(id) = node["async_id"].as_u64() else {
            continue;
        };
        if let Some(type_name) = future_types.get(&id) {
            assert_eq!(
                node["name"],
                expected_task_name(type_name).as_str(),
                "{node}"
            );
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        future_types.len(),
        "every typed task is in the tree"
    );
}

/// Screenshots `svg` with headless Chromium into a PNG and returns its pixels (RGBA or RGB).
fn screenshot(svg: &Path) -> (Vec<u8>, png::OutputInfo) {
    let png_path = temp_path("svg-shot").with_extension("png");
    let profile = temp_path("chromium-profile");
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1200,600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png_path.display()))
        .arg(format!("file://{}", svg.display()))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run chromium ({e}): install it with `cargo xtask setup` (Debian package `chromium`)")
        });
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success() && png_path.is_file(),
        "chromium made no screenshot ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let _ = std::fs::remove_file(&png_path);
    pixels.truncate(info.buffer_size());
    (pixels, info)
}

#[test]
fn svg_export_renders_in_headless_chromium() {
    let svg = temp_path("timeline").with_extension("svg");
    tracer(&[
        "export",
        file_arg(),
        "--format",
        "svg",
        "-o",
        svg.to_str().unwrap(),
    ]);
    let (pixels, info) = screenshot(&svg);
    let _ = std::fs::remove_file(&svg);
    assert!(
        info.width > 0 && info.height > 0 && !pixels.is_empty(),
        "empty screenshot"
    );
    let channels = info.color_type.samples();
    let colours: std::collections::BTreeSet<&[u8]> = pixels.chunks(channels).collect();
    // White background, grey lanes, black text, and a colour per task.
    assert!(
        colours.len() > 10,
        "the screenshot is blank: {} distinct colours",
        colours.len()
    );
}

/// Runs `tracer ARGS` with stdout a pipe whose reader is already closed, as in
/// `tracer tree FILE | head` once `head` has read its lines.
fn tracer_into_closed_pipe(args: &[&str]) -> std::process::Output {
    use std::os::fd::{FromRawFd as _, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills two fresh descriptors, each owned exactly once below.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe(2)");
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(reader);
    Command::new(tracer_bin().unwrap_or_else(|e| panic!("{e}")))
        .args(args)
        .stdout(writer)
        .output()
        .expect("tracer runs")
}

#[test]
fn reports_into_a_closed_pipe_end_quietly_with_success() {
    let file = &recorded().file;
    let file = file.to_str().expect("utf-8 temp path");
    let recording = temp_path("closed-pipe").with_extension("trace");
    let recording = recording.to_str().expect("utf-8 temp path");
    tracer(&["generate-recording", "--events", "1000", "-o", recording]);
    for args in [
        &["tree", file][..],
        &["tree", "--json", file],
        &["stats", file],
        &["stats", "--csv", file],
        &["replay", recording],
        &["replay", "--json", recording],
    ] {
        let out = tracer_into_closed_pipe(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "tracer {args:?}: {}\n{stderr}",
            out.status
        );
        assert!(!stderr.contains("error"), "tracer {args:?}:\n{stderr}");
    }
    let _ = std::fs::remove_file(recording);
}
