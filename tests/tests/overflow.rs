//! A burst that overflows the smallest ring buffer: every record the probes
//! emitted is either delivered or counted as dropped, the summary says so, and
//! the events that were delivered still make a consistent life for every task.
//! Needs root and `cargo xtask build`; fails otherwise.

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    thread::sleep,
    time::Duration,
};

use tracer_tests::{HookKind, Profile, TracerOutput, fixture_bin, require_root, tracer_bin};

/// Tasks in the burst: about 7 records each, 1.4 million records into a ring
/// of 85, so drops are certain.
const TASKS: u64 = 200_000;

/// "tracer: raw events: emitted E = delivered D + dropped X (ring buffer full)…"
fn accounting(stderr: &str) -> Option<(u64, u64, u64)> {
    let line = stderr
        .lines()
        .find_map(|line| line.strip_prefix("tracer: raw events: emitted "))?;
    let (emitted, rest) = line.split_once(" = delivered ")?;
    let (delivered, rest) = rest.split_once(" + dropped ")?;
    let dropped = rest.split_whitespace().next()?;
    Some((
        emitted.parse().ok()?,
        delivered.parse().ok()?,
        dropped.parse().ok()?,
    ))
}

/// Every way one task's delivered events could contradict each other after a gap.
fn inconsistencies(output: &TracerOutput) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, events) in output.per_task() {
        if events[0].event != HookKind::Init {
            problems.push(format!("task {id}: first event {:?}", events[0].event));
        }
        // Open polls per thread: the time of each unmatched `before`.
        let mut open: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
        let mut destroyed = false;
        let mut last_ts = 0;
        for event in events {
            if destroyed {
                problems.push(format!("task {id}: {:?} after destroy", event.event));
            }
            if event.ts_ns < last_ts {
                problems.push(format!("task {id}: {:?} goes back in time", event.event));
            }
            last_ts = last_ts.max(event.ts_ns);
            match event.event {
                HookKind::Before => open.entry(event.tid).or_default().push(event.ts_ns),
                HookKind::After => match open.get_mut(&event.tid).and_then(Vec::pop) {
                    Some(start) if start > event.ts_ns => {
                        problems.push(format!("task {id}: a poll of negative duration"))
                    }
                    Some(_) => {}
                    None => problems.push(format!(
                        "task {id}: after without a before on thread {}",
                        event.tid
                    )),
                },
                HookKind::Destroy => destroyed = true,
                HookKind::Init | HookKind::Resolve => {}
            }
        }
    }
    problems
}

#[test]
fn burst_into_the_smallest_ring_is_accounted_for_exactly_and_stays_consistent() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let churn = fixture_bin("churn", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let run = Command::new(tracer)
        .args(["run", "--ring-size", "4096", "--json", "--"])
        .arg(churn)
        .args(["--tasks", &TASKS.to_string(), "--seconds", "600"])
        .output()
        .expect("tracer runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "tracer failed:\n{stderr}");
    assert!(
        stderr.contains(&format!("churn: {TASKS} tasks")),
        "{stderr}"
    );

    let (emitted, delivered, dropped) =
        accounting(&stderr).unwrap_or_else(|| panic!("no accounting line:\n{stderr}"));
    eprintln!("emitted {emitted} = delivered {delivered} + dropped {dropped}");
    assert!(
        dropped > 0,
        "the burst did not overflow the ring:\n{stderr}"
    );
    assert_eq!(emitted, delivered + dropped, "{stderr}");
    assert!(stderr.contains("raise --ring-size"), "{stderr}");
    assert!(!stderr.contains("tracer bug"), "{stderr}");

    let output = TracerOutput::parse(&String::from_utf8_lossy(&run.stdout))
        .unwrap_or_else(|e| panic!("{e}"));
    // The reader kept draining to the end of the burst: events of the last tasks
    // arrived, not only what fitted in the ring before it first filled.
    let last_id = output.events.iter().map(|e| e.async_id).max().unwrap_or(0);
    assert!(
        last_id > TASKS * 9 / 10,
        "the last task reported is #{last_id} of about {TASKS}:\n{stderr}"
    );
    let problems = inconsistencies(&output);
    assert!(
        problems.is_empty(),
        "{} inconsistencies after the gaps, the first ones:\n{}",
        problems.len(),
        problems[..problems.len().min(20)].join("\n")
    );
}

#[test]
fn ctrl_c_during_an_overflowing_burst_stops_the_session_with_exact_accounting() {
    // The target runs on while the session ends, so records keep coming while the
    // probes are detached; and a reader that drained until the ring was empty did
    // not get back to its signals while the target wrote as fast as it read.
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let churn = fixture_bin("churn", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let mut target = Command::new(churn)
        .args(["--seconds", "120"])
        .stderr(Stdio::null())
        .spawn()
        .expect("churn starts");
    let mut tracer = Command::new(tracer)
        .args(["trace", "--ring-size", "4096", "--json", "-p"])
        .arg(target.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tracer starts");
    // Let it attach and the ring overflow.
    sleep(Duration::from_secs(2));
    // SAFETY: plain kill(2) on a child we own.
    assert_eq!(unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) }, 0);
    let stopped_first = loop {
        if tracer.try_wait().expect("tracer status").is_some() {
            break true;
        }
        if target.try_wait().expect("target status").is_some() {
            break false;
        }
        sleep(Duration::from_millis(20));
    };
    let _ = target.kill();
    let _ = target.wait();
    let stderr = std::io::read_to_string(tracer.stderr.take().expect("stderr")).unwrap_or_default();
    assert!(
        stopped_first,
        "the tracer ran on until its target ended:\n{stderr}"
    );
    assert!(stderr.contains("session ended: interrupted"), "{stderr}");
    let (emitted, delivered, dropped) =
        accounting(&stderr).unwrap_or_else(|| panic!("no accounting line:\n{stderr}"));
    assert!(
        dropped > 0,
        "the burst did not overflow the ring:\n{stderr}"
    );
    assert_eq!(emitted, delivered + dropped, "{stderr}");
}
