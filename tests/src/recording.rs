//! Helpers for the recording tests: running the tracer's file commands, killing a
//! recorder mid-session, checking a recovered prefix against ground truth, and
//! measuring a replay's peak memory.

use super::*;

/// Output of one tracer command that ran to completion.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
}

/// Runs `tracer ARGS…` to completion (two minutes at most).
pub fn tracer(args: &[&str]) -> Result<Finished, String> {
    tracer_with_ground_truth(args, None)
}

/// Runs `tracer ARGS…` to completion, with `$TRACER_GROUND_TRUTH` set to
/// `ground_truth` for the command it runs.
pub fn tracer_with_ground_truth(
    args: &[&str],
    ground_truth: Option<&Path>,
) -> Result<Finished, String> {
    let mut command = Command::new(tracer_bin()?);
    command.args(args);
    if let Some(path) = ground_truth {
        command.env(GROUND_TRUTH_ENV, path);
    }
    let running = start(&mut command)?;
    let (status, stdout, stderr) = finish(
        running,
        Duration::from_secs(120),
        &format!("tracer {args:?}"),
    )?;
    Ok(Finished {
        status,
        stdout,
        stderr,
    })
}

/// A fresh path for a recording (the file does not exist).
pub fn recording_path(tag: &str) -> PathBuf {
    temp_path(tag).with_extension("trace")
}

/// How a recording's first events were awaited and the recorder then stopped.
pub struct Stopped {
    /// Ground truth of the whole target run.
    pub ground_truth: GroundTruth,
    /// The recorder's stdout (its live output, if asked for).
    pub stdout: String,
    /// The recorder's stderr.
    pub stderr: String,
}

/// Starts `long_running`, runs `tracer record -p PID -o FILE EXTRA…` on it, waits
/// until the file holds events plus `then`, sends `signal` to the recorder, then
/// stops the target (SIGINT) and collects its ground truth.
pub fn record_and_signal(
    file: &Path,
    extra: &[&str],
    then: Duration,
    signal: i32,
) -> Result<Stopped, String> {
    let fixture = fixture_bin("long_running", Profile::Release)?;
    let gt_path = temp_path("record");
    let target = start(
        Command::new(&fixture)
            .args(["--seconds", "60"])
            .env(GROUND_TRUTH_ENV, &gt_path),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let pid = target.child.id().to_string();
    let file_arg = file.to_string_lossy().into_owned();
    let recorder = start(
        Command::new(tracer_bin()?)
            .args(["record", "-p", &pid, "-o", &file_arg])
            .args(extra),
    )?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = tracer(&["info", &file_arg]);
        if info.is_ok_and(|info| {
            info.stdout
                .lines()
                .any(|l| l.starts_with("events:") && !l.starts_with("events:      0 "))
        }) {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: kill(2) on our own children.
            unsafe {
                libc::kill(recorder.child.id() as i32, libc::SIGKILL);
                libc::kill(target.child.id() as i32, libc::SIGKILL);
            }
            return Err("the recording held no event after 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(then);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(recorder.child.id() as i32, signal) };
    let (_, stdout, stderr) = finish(recorder, Duration::from_secs(20), "tracer record")?;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(target.child.id() as i32, libc::SIGINT) };
    finish(target, Duration::from_secs(20), "long_running")?;
    let ground_truth = GroundTruth::read(&gt_path);
    let _ = std::fs::remove_file(&gt_path);
    Ok(Stopped {
        ground_truth: ground_truth?,
        stdout,
        stderr,
    })
}

/// Compares a prefix of a session (a recording cut short) with ground truth:
/// every reported task exists; tasks seen from their spawn have ground truth's
/// type and trigger and a prefix of its polls; and every task ground truth saw
/// spawned inside the prefix's time range was reported.
pub fn compare_prefix(gt: &GroundTruth, tr: &TracerOutput) -> Vec<String> {
    let mut out = Vec::new();
    check_pids(tr, &mut out);
    let per = tr.per_task();
    let mut first_fresh = u64::MAX;
    for (id, evs) in &per {
        let Some(t) = gt.tasks.get(id) else {
            out.push(format!("task {id}: unknown to ground truth (invented)"));
            continue;
        };
        let Some(init) = evs.iter().find(|e| e.event == HookKind::Init) else {
            out.push(format!("task {id}: events without an init"));
            continue;
        };
        if init.existing != Some(false) || t.kind == TaskKind::RuntimeBlocking {
            continue;
        }
        first_fresh = first_fresh.min(init.ts_ns);
        if init.ty.as_deref() != Some(t.kind.tracer_type()) {
            out.push(format!(
                "task {id}: type {:?}, ground truth {:?}",
                init.ty, t.kind
            ));
        }
        if init.trigger_id != Some(t.parent.unwrap_or(0)) {
            out.push(format!(
                "task {id}: trigger {:?}, ground truth parent {:?}",
                init.trigger_id, t.parent
            ));
        }
        let before = tids(evs, HookKind::Before);
        if !t.poll_start_tids.starts_with(&before) {
            out.push(format!(
                "task {id}: polls on {before:?} are not a prefix of ground truth's {:?}",
                t.poll_start_tids
            ));
        }
    }
    let last = tr.events.iter().map(|e| e.ts_ns).max().unwrap_or(0);
    // Events reach the ring buffer in the order they happen: a spawn well before
    // the last recorded event was recorded too.
    let settled = last.saturating_sub(10_000_000);
    for (id, t) in &gt.tasks {
        if t.kind != TaskKind::RuntimeBlocking
            && t.spawn_ts > first_fresh
            && t.spawn_ts < settled
            && !per.contains_key(id)
        {
            out.push(format!(
                "task {id}: spawned inside the recorded span (ts {}) but missing",
                t.spawn_ts
            ));
        }
    }
    if first_fresh == u64::MAX {
        out.push("the prefix holds no task seen from its spawn".into());
    }
    out
}

/// Runs `tracer ARGS…` with stdout discarded and returns its peak resident
/// memory in KiB and its wall time.
pub fn peak_rss_kib(args: &[&str]) -> Result<(u64, Duration), String> {
    let began = Instant::now();
    let child = Command::new(tracer_bin()?)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start tracer {args:?}: {e}"))?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers; the child is ours and not yet waited for.
    let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if waited < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("tracer {args:?} failed (wait status {status})"));
    }
    Ok((usage.ru_maxrss as u64, began.elapsed()))
}
