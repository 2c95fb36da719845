//! Go goroutines against Go's own execution tracer: each fixture writes a
//! `runtime/trace` of its run while `tracer run --json` traces it, and every
//! user goroutine created inside the trace's window must match it exactly:
//! the same goroutines, parent (trigger), start-function name, number of runs
//! (`before`), wakers of its wakes, and its end. (Goroutines that existed when
//! the trace started, and the runtime's own, live partly outside the trace's
//! window: they are not compared.)

use std::{collections::BTreeMap, process::Command};

use serde_json::Value;
use tracer_tests::{
    go_truth::{GoTrace, go_fixture_bin, read_trace},
    require_root, temp_path, tracer_bin,
};

/// The scenarios: a goroutine tree three deep, channels, sync.Mutex,
/// time.Sleep, loopback TCP (netpoller wakes), runtime.Gosched, tight loops
/// that need async preemption, runtime.GC(), a growing stack.
const FIXTURES: [&str; 9] = [
    "tree", "channels", "mutex", "sleep", "tcp", "gosched", "preempt", "gc", "stack",
];

/// What the tracer reported about one goroutine.
#[derive(Debug, Default)]
struct Traced {
    parent: Option<u64>,
    name: Option<String>,
    runs: usize,
    wakers: Vec<u64>,
    ended: bool,
}

/// Runs `fixture` of Go `version` under `tracer run --json`; returns what the
/// tracer said per goroutine and what Go's trace said.
fn trace(version: &str, variant: &str, fixture: &str) -> (BTreeMap<u64, Traced>, GoTrace) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let bin = go_fixture_bin(version, variant, fixture).unwrap_or_else(|e| panic!("{e}"));
    let trace_file = temp_path(&format!("go{version}-{variant}-{fixture}.trace"));
    let output = Command::new(tracer_bin().unwrap_or_else(|e| panic!("{e}")))
        .args(["run", "--json", "--"])
        .arg(&bin)
        .env("TRACER_GO_TRACE", &trace_file)
        .output()
        .expect("tracer runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tracer failed: {stderr}");
    assert!(
        stderr.contains(&format!("(go go{version}")) && stderr.contains("dropped 0"),
        "{stderr}"
    );
    let traced = goroutines(&String::from_utf8_lossy(&output.stdout));
    let truth = read_trace(&trace_file).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(&trace_file);
    (traced, truth)
}

/// The tracer's JSON lines, per goroutine (the fixture itself writes nothing
/// on stdout).
fn goroutines(stdout: &str) -> BTreeMap<u64, Traced> {
    let mut found: BTreeMap<u64, Traced> = BTreeMap::new();
    for line in stdout.lines() {
        let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        let goid = event["async_id"].as_u64().expect("async_id");
        let g = found.entry(goid).or_default();
        match event["event"].as_str() {
            Some("init") => {
                g.parent = event["trigger_id"].as_u64();
                g.name = event["name"].as_str().map(str::to_owned);
            }
            Some("before") => g.runs += 1,
            Some("wake") => g.wakers.push(event["waker_id"].as_u64().expect("waker")),
            Some("destroy") => g.ended = true,
            _ => {}
        }
    }
    found
}

/// Compares every user goroutine the trace saw created; returns (compared,
/// differences).
fn compare(traced: &BTreeMap<u64, Traced>, truth: &GoTrace) -> (usize, Vec<String>) {
    let mut compared = 0;
    let mut differences = Vec::new();
    for g in truth.goroutines.values() {
        if g.existing || g.runtime || g.name.as_deref().is_none_or(|n| n.starts_with("runtime")) {
            continue;
        }
        compared += 1;
        let Some(t) = traced.get(&g.goid) else {
            differences.push(format!("goroutine {} ({:?}) not reported", g.goid, g.name));
            continue;
        };
        let mut wakers = t.wakers.clone();
        wakers.sort_unstable();
        let mut expected_wakers = g.wakers.clone();
        expected_wakers.sort_unstable();
        let checks = [
            (
                "parent",
                format!("{:?}", Some(g.parent.unwrap_or(0))),
                format!("{:?}", t.parent),
            ),
            ("name", format!("{:?}", g.name), format!("{:?}", t.name)),
            ("runs", g.runs.to_string(), t.runs.to_string()),
            (
                "wakers",
                format!("{expected_wakers:?}"),
                format!("{wakers:?}"),
            ),
            ("ended", g.ended.to_string(), t.ended.to_string()),
        ];
        for (what, expected, got) in checks {
            if expected != got {
                differences.push(format!(
                    "goroutine {} ({:?}): {what} is {got}, runtime/trace says {expected}",
                    g.goid, g.name
                ));
            }
        }
    }
    (compared, differences)
}

/// Every fixture of Go `version` built as `variant` matches its trace.
fn matches_runtime_trace(version: &str, variant: &str, fixtures: &[&str]) {
    let mut failures = Vec::new();
    for fixture in fixtures {
        let (traced, truth) = trace(version, variant, fixture);
        let (compared, differences) = compare(&traced, &truth);
        eprintln!(
            "go{version} {variant} {fixture}: {} of {compared} goroutines match runtime/trace",
            compared - differences.len().min(compared)
        );
        assert!(compared > 0, "{fixture}: the trace holds no user goroutine");
        failures.extend(differences.into_iter().map(|d| format!("{fixture}: {d}")));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn go_1_23_goroutines_match_runtime_trace() {
    matches_runtime_trace("1.23", "default", &FIXTURES);
}

#[test]
fn go_1_23_pie_without_dwarf_matches_runtime_trace() {
    matches_runtime_trace("1.23", "pie", &["tree", "channels", "mutex"]);
    matches_runtime_trace("1.23", "nodwarf", &["tree", "channels", "mutex"]);
}

/// A mixed process (cgo: libc linked, the resolver through C) is traced for
/// its goroutines like a pure Go one.
#[test]
fn a_cgo_program_matches_runtime_trace() {
    matches_runtime_trace("1.23", "cgo", &["tcp", "tree"]);
}

#[test]
fn go_1_22_goroutines_match_runtime_trace() {
    matches_runtime_trace("1.22", "default", &FIXTURES);
}

#[test]
fn go_1_21_goroutines_match_runtime_trace() {
    matches_runtime_trace("1.21", "default", &FIXTURES);
}

/// Go 1.19: no `g.parentGoid` (parents come from `newproc1`), and wait reasons
/// set after the transition (the runtime's own waits are told by their return).
#[test]
fn go_1_19_goroutines_match_runtime_trace() {
    matches_runtime_trace("1.19", "default", &FIXTURES);
}

#[test]
fn a_stripped_go_binary_is_refused_with_how_to_keep_symbols() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let bin = go_fixture_bin("1.23", "stripped", "tree").unwrap_or_else(|e| panic!("{e}"));
    let output = Command::new(tracer_bin().unwrap_or_else(|e| panic!("{e}")))
        .args(["run", "--"])
        .arg(&bin)
        .output()
        .expect("tracer runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{} is stripped", bin.display())) && stderr.contains("Go:"),
        "{stderr}"
    );
}

/// `trace -p` on a running Go program: goroutines created after attach match
/// runtime/trace exactly; those that existed are announced at first sight as
/// `existing`, named by their start function.
#[test]
fn attaching_to_a_running_go_program_reports_new_and_existing_goroutines() {
    use std::{
        io::{BufRead as _, BufReader},
        process::Stdio,
    };
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let bin = go_fixture_bin("1.23", "default", "longrun").unwrap_or_else(|e| panic!("{e}"));
    let trace_file = temp_path("go-longrun.trace");
    let mut target = Command::new(&bin)
        .env("TRACER_GO_TRACE", &trace_file)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the fixture starts");
    let mut target_err = BufReader::new(target.stderr.take().expect("stderr"));
    let mut ready = String::new();
    target_err.read_line(&mut ready).expect("ready line");
    assert!(ready.starts_with("ready "), "{ready:?}");
    let mut tracer = Command::new(tracer_bin().unwrap_or_else(|e| panic!("{e}")))
        .args(["trace", "--json", "-p", &target.id().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tracer starts");
    let mut tracer_err = BufReader::new(tracer.stderr.take().expect("stderr"));
    let mut status = String::new();
    while !status.contains("Ctrl-C to stop") {
        status.clear();
        assert!(
            tracer_err.read_line(&mut status).expect("status") > 0,
            "tracer ended early"
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(400));
    // SAFETY: kill(2) on the child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(target.id() as i32, libc::SIGTERM) }, 0);
    assert!(target.wait().expect("fixture exits").success());
    let output = tracer
        .wait_with_output()
        .expect("tracer ends with its target");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let truth = read_trace(&trace_file).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(&trace_file);

    let mut existing = BTreeMap::new();
    let mut created = BTreeMap::new();
    for line in stdout.lines() {
        let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if event["event"] == "init" {
            let goid = event["async_id"].as_u64().expect("async_id");
            let name = event["name"].as_str().unwrap_or("").to_owned();
            if event["existing"] == true {
                assert!(event["trigger_id"].is_null(), "{line}");
                existing.insert(goid, name);
            } else {
                created.insert(goid, name);
            }
        }
    }
    assert!(
        existing.values().any(|name| name == "main.worker"),
        "the worker that ran before attach is named at first sight: {existing:?}"
    );
    let ticks = created.values().filter(|name| *name == "main.tick").count();
    assert!(ticks >= 10, "{ticks} ticks created in 400 ms: {created:?}");
    let traced = goroutines(&stdout);
    let mut differences = Vec::new();
    for goid in created.keys() {
        let Some(g) = truth.goroutines.get(goid) else {
            differences.push(format!("goroutine {goid} is not in runtime/trace"));
            continue;
        };
        let t = &traced[goid];
        if (g.parent.unwrap_or(0), g.name.as_deref(), g.runs, g.ended)
            != (
                t.parent.unwrap_or(u64::MAX),
                t.name.as_deref(),
                t.runs,
                t.ended,
            )
        {
            differences.push(format!(
                "goroutine {goid}: tracer {t:?}, runtime/trace {g:?}"
            ));
        }
    }
    eprintln!(
        "attach: {} of {} goroutines created after attach match runtime/trace; {} existing",
        created.len() - differences.len(),
        created.len(),
        existing.len()
    );
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// A recorded Go session reads back through every analysis command: the replay
/// matches runtime/trace like the live stream, `stats --by name` counts each
/// start function's goroutines as the trace does, and `export` draws them.
#[test]
fn a_recorded_go_session_replays_and_analyses_like_the_live_one() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let bin = go_fixture_bin("1.23", "default", "tree").unwrap_or_else(|e| panic!("{e}"));
    let trace_file = temp_path("go-record.trace");
    let recording = temp_path("go-record.rec");
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let run = |args: &[&std::ffi::OsStr]| {
        let output = Command::new(&tracer)
            .args(args)
            .env("TRACER_GO_TRACE", &trace_file)
            .output()
            .expect("tracer runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stderr}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    run(&[
        "run".as_ref(),
        "-o".as_ref(),
        recording.as_os_str(),
        "--".as_ref(),
        bin.as_os_str(),
    ]);
    let truth = read_trace(&trace_file).unwrap_or_else(|e| panic!("{e}"));
    let replayed = run(&["replay".as_ref(), "--json".as_ref(), recording.as_os_str()]);
    let (compared, differences) = compare(&goroutines(&replayed), &truth);
    assert!(
        compared > 0 && differences.is_empty(),
        "{}",
        differences.join("\n")
    );

    let stats: Value = serde_json::from_str(&run(&[
        "stats".as_ref(),
        "--by".as_ref(),
        "name".as_ref(),
        "--json".as_ref(),
        recording.as_os_str(),
    ]))
    .expect("stats JSON");
    let tasks_named = |name: &str| {
        stats["names"]
            .as_array()
            .expect("names")
            .iter()
            .find(|row| row["name"] == name)
            .and_then(|row| row["tasks"].as_u64())
    };
    for name in ["main.leaf", "main.root"] {
        let expected = truth.named(name).count() as u64;
        assert_eq!(tasks_named(name), Some(expected), "{name}");
    }
    let chrome = run(&[
        "export".as_ref(),
        "--format".as_ref(),
        "chrome".as_ref(),
        "-o".as_ref(),
        "-".as_ref(),
        recording.as_os_str(),
    ]);
    assert!(
        chrome.contains("main.leaf"),
        "the export names the goroutines"
    );
    let _ = std::fs::remove_file(&trace_file);
    let _ = std::fs::remove_file(&recording);
}

/// `--follow-forks`: a Go program that runs itself again as a child is traced
/// in both processes, and the child's goroutines match the child's own trace.
#[test]
fn follow_forks_traces_a_go_child_process_exactly() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let bin = go_fixture_bin("1.23", "default", "forking").unwrap_or_else(|e| panic!("{e}"));
    let trace_file = temp_path("go-forking.trace");
    let output = Command::new(tracer_bin().unwrap_or_else(|e| panic!("{e}")))
        .args(["run", "--follow-forks", "--json", "--"])
        .arg(&bin)
        .env("TRACER_GO_TRACE", &trace_file)
        .output()
        .expect("tracer runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let pids: std::collections::BTreeSet<u64> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).expect("JSON")["pid"]
                .as_u64()
                .expect("pid")
        })
        .collect();
    assert_eq!(pids.len(), 2, "parent and child: {pids:?}");
    let child = *pids.iter().max().expect("a child");
    let child_lines: String = stdout
        .lines()
        .filter(|line| line.contains(&format!("\"pid\":{child},")))
        .map(|line| format!("{line}\n"))
        .collect();
    let child_trace = std::path::PathBuf::from(format!("{}.child", trace_file.display()));
    let truth = read_trace(&child_trace).unwrap_or_else(|e| panic!("{e}"));
    let (compared, differences) = compare(&goroutines(&child_lines), &truth);
    assert!(compared >= 5, "{compared} goroutines compared");
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    let _ = std::fs::remove_file(&trace_file);
    let _ = std::fs::remove_file(&child_trace);
}
