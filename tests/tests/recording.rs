//! `tracer record`, `run -o`, `replay` and `info` end to end: a replay prints what
//! the live trace printed, a killed recorder leaves a readable prefix that matches
//! ground truth, Ctrl-C closes the file cleanly, damaged or foreign files are
//! reported, files are private and never overwritten, and replay memory does not
//! grow with the file. Needs root and `cargo xtask build`; fails otherwise.

use std::{os::unix::fs::PermissionsExt as _, time::Duration};

use tracer_tests::{
    GroundTruth, Profile, TracerOutput, compare, fixture_bin,
    recording::{
        compare_prefix, peak_rss_kib, record_and_signal, recording_path, tracer,
        tracer_with_ground_truth,
    },
    report, require_root, temp_path,
};

/// Runs a fixture under `tracer run -o FILE --live OUTPUT_ARGS…` and returns the
/// live stdout, the replay's stdout, and the run's ground truth.
fn run_live_and_replay(
    output_args: &[&str],
    replay_args: &[&str],
) -> (String, String, GroundTruth, String) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("multi_thread", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let file = recording_path("live");
    let gt_path = temp_path("live-gt");
    let file_arg = file.to_string_lossy().into_owned();
    let fixture_arg = fixture.to_string_lossy().into_owned();
    let mut args = vec!["run", "-o", &file_arg, "--live"];
    args.extend(output_args);
    args.extend(["--", &fixture_arg]);
    let live = tracer_with_ground_truth(&args, Some(&gt_path)).unwrap();
    assert!(live.status.success(), "tracer run failed:\n{}", live.stderr);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "recordings are private");
    let mut args = vec!["replay", &file_arg];
    args.extend(replay_args);
    let replay = tracer(&args).unwrap();
    assert!(
        replay.status.success(),
        "tracer replay failed:\n{}",
        replay.stderr
    );
    assert!(!replay.stderr.contains("truncated"), "{}", replay.stderr);
    let ground_truth = GroundTruth::read(&gt_path).unwrap();
    let _ = std::fs::remove_file(&gt_path);
    let _ = std::fs::remove_file(&file);
    (live.stdout, replay.stdout, ground_truth, replay.stderr)
}

#[test]
fn replay_json_is_byte_identical_to_the_live_json_and_matches_ground_truth() {
    let (live, replay, ground_truth, _) = run_live_and_replay(&["--json"], &["--json"]);
    assert!(!live.is_empty());
    assert!(live == replay, "replay differs from the live output");
    // Names and locations are in the file (format 1.2), not only in the live output.
    let output = TracerOutput::parse(&replay).unwrap();
    let named = output.events.iter().filter(|e| e.name.is_some()).count();
    let located = output
        .events
        .iter()
        .filter(|e| e.location.is_some())
        .count();
    assert!(
        named > 0 && located > 0,
        "the replay lost names ({named}) or locations ({located})"
    );
    let mismatches = compare(&ground_truth, &TracerOutput::parse(&replay).unwrap());
    assert!(
        mismatches.is_empty(),
        "{}",
        report("replayed multi_thread", &mismatches)
    );
}

#[test]
fn replay_text_is_identical_to_the_live_text() {
    let (live, replay, _, _) = run_live_and_replay(&[], &[]);
    assert!(live.lines().count() > 10);
    assert!(live == replay, "replay differs from the live output");
}

#[test]
fn a_recorder_killed_mid_session_leaves_a_prefix_that_matches_ground_truth() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let file = recording_path("killed");
    let stopped = record_and_signal(&file, &[], Duration::from_millis(1300), libc::SIGKILL)
        .unwrap_or_else(|e| panic!("{e}"));
    let file_arg = file.to_string_lossy().into_owned();
    let replay = tracer(&["replay", "--json", &file_arg]).unwrap();
    assert!(replay.status.success(), "{}", replay.stderr);
    // Every line is an event: the hook events and the wakes.
    let parsed = TracerOutput::parse(&replay.stdout).unwrap();
    let events = parsed.events.len() + parsed.other.len();
    assert!(
        replay
            .stderr
            .contains(&format!("truncated after {events} events")),
        "replay of a killed recording must say so:\n{}",
        replay.stderr
    );
    let info = tracer(&["info", &file_arg]).unwrap();
    assert!(
        info.stdout
            .contains(&format!("truncated after {events} events")),
        "{}",
        info.stdout
    );
    let mismatches = compare_prefix(
        &stopped.ground_truth,
        &TracerOutput::parse(&replay.stdout).unwrap(),
    );
    assert!(
        mismatches.is_empty(),
        "{}",
        report("recovered prefix", &mismatches)
    );
    let _ = std::fs::remove_file(&file);
}

#[test]
fn ctrl_c_closes_the_recording_with_every_event_the_live_output_showed() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let file = recording_path("interrupted");
    let stopped = record_and_signal(
        &file,
        &["--live", "--json"],
        Duration::from_millis(700),
        libc::SIGINT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(stopped.stderr.contains("interrupted"), "{}", stopped.stderr);
    let file_arg = file.to_string_lossy().into_owned();
    let replay = tracer(&["replay", "--json", &file_arg]).unwrap();
    assert!(!replay.stderr.contains("truncated"), "{}", replay.stderr);
    assert!(
        stopped.stdout == replay.stdout,
        "the replay differs from the live output"
    );
    let info = tracer(&["info", &file_arg]).unwrap();
    assert!(
        info.stdout.contains("ended:       interrupted"),
        "{}",
        info.stdout
    );
    assert!(
        info.stdout.contains("drops:       0 raw events dropped"),
        "{}",
        info.stdout
    );
    // `info` counts every kind as the live output had it, wakes included.
    let live = TracerOutput::parse(&stopped.stdout).unwrap();
    let count = |kind: &str| {
        stopped
            .stdout
            .lines()
            .filter(|line| line.starts_with(&format!("{{\"event\":\"{kind}\"")))
            .count()
    };
    let inits = live
        .events
        .iter()
        .filter(|e| e.event == tracer_tests::HookKind::Init)
        .count();
    assert!(
        count("wake") > 0,
        "the long-running fixture's tasks are woken"
    );
    assert!(
        info.stdout.contains(&format!(
            "(init {inits}, before {}, after {}, resolve {}, destroy {}, wake {})",
            count("before"),
            count("after"),
            count("resolve"),
            count("destroy"),
            count("wake")
        )),
        "{}",
        info.stdout
    );
    let _ = std::fs::remove_file(&file);
}

#[test]
fn an_existing_file_is_not_overwritten_without_force() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let file = recording_path("existing");
    std::fs::write(&file, "keep me").unwrap();
    let file_arg = file.to_string_lossy().into_owned();
    let refused = tracer(&["run", "-o", &file_arg, "--", "/bin/true"]).unwrap();
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("already exists") && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    let generated = tracer(&[
        "generate-recording",
        "--events",
        "10",
        "-o",
        &file_arg,
        "--force",
    ])
    .unwrap();
    assert!(generated.status.success(), "{}", generated.stderr);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_corrupt_chunk_is_reported_and_the_rest_replays() {
    let file = recording_path("corrupt");
    let file_arg = file.to_string_lossy().into_owned();
    let made = tracer(&["generate-recording", "--events", "100000", "-o", &file_arg]).unwrap();
    assert!(made.status.success(), "{}", made.stderr);
    let mut bytes = std::fs::read(&file).unwrap();
    let second_chunk = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"TRCK")
        .nth(1)
        .map(|(at, _)| at)
        .unwrap();
    bytes[second_chunk + 100] ^= 0x55;
    std::fs::write(&file, &bytes).unwrap();
    let replay = tracer(&["replay", "--json", &file_arg]).unwrap();
    assert!(replay.status.success(), "{}", replay.stderr);
    assert!(
        replay.stderr.contains(&format!(
            "the chunk at byte {second_chunk} is corrupt (checksum mismatch): skipped"
        )),
        "{}",
        replay.stderr
    );
    let lines = replay.stdout.lines().count();
    assert!(lines > 50_000 && lines < 100_000, "{lines} events replayed");
    assert!(!replay.stderr.contains("truncated"), "{}", replay.stderr);
    let _ = std::fs::remove_file(&file);
}

#[test]
fn newer_versions_and_foreign_files_are_refused_with_a_reason() {
    let file = recording_path("newer");
    let file_arg = file.to_string_lossy().into_owned();
    assert!(
        tracer(&["generate-recording", "--events", "10", "-o", &file_arg])
            .unwrap()
            .status
            .success()
    );
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[8] = 9;
    std::fs::write(&file, &bytes).unwrap();
    let refused = tracer(&["replay", &file_arg]).unwrap();
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("format version 9.5")
            && refused.stderr.contains("reads format version 1.5"),
        "{}",
        refused.stderr
    );
    std::fs::write(&file, "{\"event\":\"init\"}\n").unwrap();
    for command in ["replay", "info"] {
        let refused = tracer(&[command, &file_arg]).unwrap();
        assert!(!refused.status.success());
        assert!(
            refused.stderr.contains("not a tracer recording"),
            "{}",
            refused.stderr
        );
        assert!(!refused.stderr.contains("panicked"), "{}", refused.stderr);
    }
    let _ = std::fs::remove_file(&file);
}

#[test]
fn replay_memory_does_not_grow_with_the_file() {
    let mut peaks = Vec::new();
    for events in [100_000u64, 2_000_000] {
        let file = recording_path(&format!("scale-{events}"));
        let file_arg = file.to_string_lossy().into_owned();
        let made = tracer(&[
            "generate-recording",
            "--events",
            &events.to_string(),
            "-o",
            &file_arg,
        ])
        .unwrap();
        assert!(made.status.success(), "{}", made.stderr);
        let (replay_kib, _) = peak_rss_kib(&["replay", "--json", &file_arg]).unwrap();
        let (info_kib, _) = peak_rss_kib(&["info", &file_arg]).unwrap();
        peaks.push((events, replay_kib, info_kib));
        let _ = std::fs::remove_file(&file);
    }
    let (_, small_replay, small_info) = peaks[0];
    let (_, big_replay, big_info) = peaks[1];
    // 20 times the events; a reader that kept them would grow by tens of MiB.
    assert!(
        big_replay < small_replay + 4096,
        "replay peak RSS {peaks:?} (KiB)"
    );
    assert!(
        big_info < small_info + 4096,
        "info peak RSS {peaks:?} (KiB)"
    );
}
