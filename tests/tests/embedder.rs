//! Traces the `udp_echo` fixture, whose connections are embedder resources
//! (`tracer-resource`), and checks that the tracer reports exactly what the app
//! declared: ids, types, triggers, before/after counts and destroys, while its
//! Tokio tasks still match Tokio's own hooks. Also traces the crate's own example
//! (`cargo run -p tracer-resource --example udp_echo`), built as users build it
//! (a plain release build, no tokio_unstable), against the ledger it writes. Needs
//! root (BPF) and the binaries from `cargo xtask build`; without them the tests
//! fail and say why.

use tracer_tests::{
    Profile, TracerOutput, compare, fixture_bin, report, require_root,
    resources::{self, RESOURCE_ID_BIT},
    run_traced, temp_path, tracer_bin, workspace_root,
};

fn traced_resources_match_what_the_app_declared(profile: Profile) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("udp_echo", profile).unwrap_or_else(|e| panic!("{e}"));
    let ledger_path = temp_path("udp-echo-ledger");
    let ledger_arg = ledger_path.to_str().expect("UTF-8 temp path");
    let run = run_traced(&fixture, &["--ledger", ledger_arg])
        .unwrap_or_else(|e| panic!("udp_echo ({profile:?}): {e}"));
    let ledger = std::fs::read_to_string(&ledger_path);
    let _ = std::fs::remove_file(&ledger_path);
    assert!(
        run.status.success(),
        "udp_echo ({profile:?}): tracer failed\n{}",
        run.describe()
    );
    let ledger = ledger.unwrap_or_else(|e| panic!("udp_echo wrote no ledger: {e}"));
    let declared = resources::declared(&ledger).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        declared.len() >= 10,
        "udp_echo ({profile:?}) declared only {} resources\n{}",
        declared.len(),
        run.describe()
    );
    assert!(declared.keys().all(|id| id & RESOURCE_ID_BIT != 0));
    let traced = resources::traced(&run.tracer);
    let mismatches = resources::compare(&declared, &traced);
    assert!(
        mismatches.is_empty(),
        "{}\n{}",
        report(&format!("udp_echo resources ({profile:?})"), &mismatches),
        run.describe()
    );
    let task_mismatches = compare(&run.ground_truth, &resources::tasks_only(&run.tracer));
    assert!(
        task_mismatches.is_empty(),
        "{}\n{}",
        report(&format!("udp_echo tasks ({profile:?})"), &task_mismatches),
        run.describe()
    );
}

#[test]
fn udp_echo_release_resources_match_what_the_app_declared() {
    traced_resources_match_what_the_app_declared(Profile::Release);
}

#[test]
fn udp_echo_debug_resources_match_what_the_app_declared() {
    traced_resources_match_what_the_app_declared(Profile::Debug);
}

#[test]
fn a_program_with_markers_but_no_tokio_is_traced_and_unknown_versions_are_named() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("resources_only", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let run = run_traced(&fixture, &[]).unwrap_or_else(|e| panic!("resources_only: {e}"));
    assert!(
        run.status.success(),
        "resources_only: tracer failed\n{}",
        run.describe()
    );
    assert!(
        run.stderr.contains("tracer_resource_v2_init") && run.stderr.contains("v1 markers only"),
        "no warning about the v2 marker\n{}",
        run.describe()
    );
    let declared = resources::declared(&run.ground_truth_text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(declared.len(), 2, "{declared:?}");
    let mismatches = resources::compare(&declared, &resources::traced(&run.tracer));
    assert!(
        mismatches.is_empty(),
        "{}\n{}",
        report("resources_only", &mismatches),
        run.describe()
    );
    assert!(
        run.tracer
            .events
            .iter()
            .all(|e| e.async_id & RESOURCE_ID_BIT != 0),
        "events other than the declared resources"
    );
}

#[test]
fn a_program_with_neither_tokio_nor_markers_is_still_refused() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("no_tokio", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let run = std::process::Command::new(tracer)
        .args(["run", "--json", "--"])
        .arg(&fixture)
        .output()
        .expect("start tracer");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "traced a program without Tokio");
    assert!(stderr.contains("no supported runtime found"), "{stderr}");
}

#[test]
fn the_crate_example_is_traced_exactly_as_its_ledger_says() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let example = workspace_root().join("target/release/examples/udp_echo");
    assert!(
        example.is_file(),
        "{} is missing: run `cargo xtask build` (it builds the tracer-resource example)",
        example.display()
    );
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let ledger_path = temp_path("example-ledger");
    let run = std::process::Command::new(tracer)
        .args(["run", "--json", "--"])
        .arg(&example)
        .arg("--ledger")
        .arg(&ledger_path)
        .output()
        .expect("start tracer");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let ledger = std::fs::read_to_string(&ledger_path);
    let _ = std::fs::remove_file(&ledger_path);
    assert!(
        run.status.success(),
        "tracer run failed ({})\n{stderr}",
        run.status
    );
    let ledger = ledger.unwrap_or_else(|e| panic!("the example wrote no ledger: {e}\n{stderr}"));
    let declared = resources::declared(&ledger).unwrap_or_else(|e| panic!("{e}"));
    // 3 clients: a connection, 4 replies and a timer each, and the server's 3
    // connections.
    assert_eq!(declared.len(), 21, "the example declared {declared:?}");
    let tracer_output = TracerOutput::parse(&stdout).unwrap_or_else(|e| panic!("{e}\n{stderr}"));
    let mismatches = resources::compare(&declared, &resources::traced(&tracer_output));
    assert!(
        mismatches.is_empty(),
        "{}\n{stderr}",
        report("the tracer-resource example", &mismatches)
    );
    assert!(
        stderr.contains("udp_echo: 3 clients sent 4 messages each"),
        "the example did not finish\n{stderr}"
    );
}
