//! Node.js native resources against Node's own async_hooks: the workload
//! fixture (`tests/node-fixtures/workload.js`: TCP on loopback, fs callbacks
//! and promises, dns.lookup, zlib, a child process, timers) writes every
//! async_hooks event of its process while the tracer traces it; every native
//! resource must match by id: type, trigger, befores, afters, destroy. And with
//! async_hooks off (as users run), the same resources per type. Node 20 is
//! `/usr/bin/node` (static); Node 18 Debian's, with its shared `libnode`.

use std::{
    collections::BTreeMap,
    ffi::OsStr,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use tracer_tests::{
    Profile, assert_refused, fixture_bin,
    node_truth::{
        JS_LEVEL_TYPES, Lives, WATCHED_TYPES, WORKLOAD_TYPES, compare, compare_js, describe,
        js_armed_at, microtasks, native, parse_traced, parse_truth, per_type, traced_unseen_ids,
        unseen_ids, workload,
    },
    require_root, temp_path, tracer_bin, workspace_root,
};

/// Node 20: NodeSource's static build on these machines.
const NODE_20: &str = "/usr/bin/node";
/// Node 18: Debian's (a shared `libnode.so.108`), unpacked here by `cargo
/// xtask setup`.
const NODE_18: &str = "target/node18";

/// `tracer run --json -- NODE workload.js`, async_hooks on when `truth`, in
/// `wrap` (a command that execs its arguments, such as [`node18`]'s) if given;
/// returns the tracer's resources, and async_hooks' if on.
fn run(node: &Path, wrap: Option<Command>, truth: bool) -> (Lives, Option<Lives>, String) {
    run_with(node, wrap, truth, &[])
}

/// [`run`], with `options` for `tracer run`.
fn run_with(
    node: &Path,
    wrap: Option<Command>,
    truth: bool,
    options: &[&str],
) -> (Lives, Option<Lives>, String) {
    run_script(node, wrap, truth, options, &workload())
}

/// [`run_with`], running `script`.
fn run_script(
    node: &Path,
    wrap: Option<Command>,
    truth: bool,
    options: &[&str],
    script: &Path,
) -> (Lives, Option<Lives>, String) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let truth_file = temp_path("node-truth");
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let mut command = match wrap {
        Some(mut wrap) => {
            wrap.arg(&tracer);
            wrap
        }
        None => Command::new(&tracer),
    };
    command
        .args(["run", "--json"])
        .args(options)
        .arg("--")
        .arg(node)
        .arg(script)
        .stdin(Stdio::null());
    if truth {
        command.env("NODE_TRUTH", &truth_file);
    }
    let output = command.output().expect("tracer runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "tracer failed: {stderr}");
    assert!(stderr.contains("dropped 0"), "{stderr}");
    let traced = parse_traced(&String::from_utf8_lossy(&output.stdout)).expect("tracer JSON");
    let truth = truth.then(|| {
        let text = std::fs::read_to_string(&truth_file).expect("the fixture wrote its truth");
        let _ = std::fs::remove_file(&truth_file);
        parse_truth(&text).expect("truth parses")
    });
    (traced, truth, stderr)
}

/// Debian's Node 18, unpacked by `cargo xtask setup`: its `node`, and a
/// command that runs its arguments where that node runs. Debian's libnode
/// reads builtins from /usr/share/nodejs: the unpacked usr/share goes over
/// /usr/share, in a mount namespace of its own, and its libraries come first
/// on the library path. The process keeps its pid through unshare's and sh's
/// execs.
fn node18() -> (PathBuf, Command) {
    let root = workspace_root().join(NODE_18);
    let node = root.join("usr/bin/node");
    assert!(
        node.is_file(),
        "{} is missing: run `cargo xtask setup` (it unpacks Debian's Node 18 there)",
        node.display()
    );
    let script = format!(
        "mount --bind {root}/usr/share /usr/share && LD_LIBRARY_PATH={root}/usr/lib/x86_64-linux-gnu exec \"$@\"",
        root = root.display(),
    );
    let mut command = Command::new("unshare");
    command.args(["-m", "sh", "-c", &script, "sh"]);
    (node, command)
}

/// Fails with every difference, and says how many resources matched per type.
fn assert_matches(truth: &Lives, traced: &Lives, from: u64, stderr: &str) {
    let (matched, differences) = compare(truth, traced, from);
    eprintln!("matched per type: {}", describe(&matched));
    let unseen = unseen_ids(truth, traced, from);
    eprintln!("ids between native resources, by async_hooks' type: {unseen:?}");
    assert_eq!(
        traced_unseen_ids(stderr),
        Some(unseen.values().sum()),
        "{stderr}"
    );
    for name in WORKLOAD_TYPES {
        assert!(
            matched.get(name).is_some_and(|(_, all)| *all > 0),
            "the workload made no {name}: {}",
            describe(&matched)
        );
    }
    assert!(
        differences.is_empty(),
        "{} differences ({}):\n{}\n{stderr}",
        differences.len(),
        describe(&matched),
        differences.join("\n")
    );
}

#[test]
fn node20_run_reports_every_native_resource_as_async_hooks_does() {
    let (traced, truth, stderr) = run(Path::new(NODE_20), None, true);
    assert!(stderr.contains("(node 20."), "{stderr}");
    assert_matches(&truth.expect("truth"), &traced, 0, &stderr);
}

/// `tracer run --js-resources`: every Timeout, Immediate and TickObject
/// created after the watchpoints were armed, as async_hooks saw it; and the
/// native resources as without the flag.
fn assert_js_matches(node: &Path, wrap: Option<Command>, script: &Path, made: &[&str]) {
    let (traced, truth, stderr) = run_script(node, wrap, true, &["--js-resources"], script);
    assert_js_matches_from(&truth.expect("truth"), &traced, 0, &stderr, made);
}

/// The JS-level types the workload makes (no `queueMicrotask`).
const WORKLOAD_JS_TYPES: [&str; 3] = ["Timeout", "Immediate", "TickObject"];

/// [`assert_js_matches`]'s checks, for the resources created from async id
/// `from` (and after the watchpoints were armed); the script made each type
/// of `made`.
fn assert_js_matches_from(truth: &Lives, traced: &Lives, from: u64, stderr: &str, made: &[&str]) {
    let armed = js_armed_at(stderr).unwrap_or_else(|| panic!("never armed: {stderr}"));
    let (native_matched, native_differences) = compare(truth, traced, from);
    let from = from.max(armed + 1);
    eprintln!(
        "native resources matched per type: {}",
        describe(&native_matched)
    );
    let (matched, differences) = compare_js(truth, traced, from);
    eprintln!(
        "JS-level resources from async id {from} matched per type: {}",
        describe(&matched)
    );
    for name in made {
        assert!(
            matched.get(*name).is_some_and(|(_, all)| *all > 0),
            "the script made no {name} after the watchpoints were armed: {}",
            describe(&matched)
        );
    }
    let all: Vec<&String> = native_differences.iter().chain(&differences).collect();
    assert!(
        all.is_empty(),
        "{} differences ({}):\n{}\n{stderr}",
        all.len(),
        describe(&matched),
        all.iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn node20_js_resources_reports_timeouts_immediates_and_ticks_as_async_hooks_does() {
    assert_js_matches(Path::new(NODE_20), None, &workload(), &WORKLOAD_JS_TYPES);
}

#[test]
fn node18_js_resources_reports_timeouts_immediates_and_ticks_as_async_hooks_does() {
    let (node, wrap) = node18();
    assert_js_matches(&node, Some(wrap), &workload(), &WORKLOAD_JS_TYPES);
}

/// `queueMicrotask`'s Microtasks, queued from a timer, a promise callback
/// and another Microtask, next to the promises they run among.
#[test]
fn node20_js_resources_reports_queue_microtask_as_async_hooks_does() {
    assert_js_matches(Path::new(NODE_20), None, &microtasks(), &WATCHED_TYPES);
}

#[test]
fn node18_js_resources_reports_queue_microtask_as_async_hooks_does() {
    let (node, wrap) = node18();
    assert_js_matches(&node, Some(wrap), &microtasks(), &WATCHED_TYPES);
}

/// With async_hooks off in the target (as users run), `--js-resources`
/// reports as many Timeouts, Immediates and TickObjects, with as many
/// callbacks, as async_hooks reports with it on. Under `run` the watchpoints
/// are armed at the bootstrap scope, once tracer has woken: on a busy machine
/// the main script may have drawn ids by then, which are missed (and the ids
/// differ between the two runs); such a run is done again, up to five in all,
/// and the counts compared in the first where every id traced came after
/// arming.
#[test]
fn node20_js_resources_with_hooks_off_reports_as_many_as_async_hooks_with_hooks_on() {
    let (_, truth, _) = run_with(Path::new(NODE_20), None, true, &["--js-resources"]);
    let mut attempts = Vec::new();
    let (off, stderr) = loop {
        let (off, _, stderr) = run_with(Path::new(NODE_20), None, false, &["--js-resources"]);
        let armed = js_armed_at(&stderr).unwrap_or_else(|| panic!("never armed: {stderr}"));
        let first = off.keys().next().copied().unwrap_or(0);
        attempts.push(armed);
        if armed < first {
            break (off, stderr);
        }
        assert!(
            attempts.len() < 5,
            "armed after the script drew ids in every run (armed at {attempts:?})"
        );
    };
    eprintln!("armed at async ids {attempts:?}");
    let watched = |counts: BTreeMap<String, (usize, usize)>| -> BTreeMap<String, (usize, usize)> {
        counts
            .into_iter()
            .filter(|(name, _)| WATCHED_TYPES.contains(&name.as_str()))
            .collect()
    };
    let expected = watched(per_type(&truth.expect("truth")));
    let got = watched(per_type(&off));
    eprintln!("(inits, befores) per JS-level type: hooks off {got:?}, async_hooks {expected:?}");
    assert_eq!(got, expected, "{stderr}");
}

/// `trace -p --js-resources`: the watchpoints are armed in the callback
/// that starts the workload (the first the tracer sees); what is created
/// after, as async_hooks saw it.
#[test]
fn node20_trace_p_js_resources_reports_what_is_created_after_arming() {
    let mut node = Command::new(NODE_20);
    node.arg(workload());
    let (truth, traced, from, stderr) = attach(node, &["--js-resources"]);
    assert_js_matches_from(&truth, &traced, from, &stderr, &WORKLOAD_JS_TYPES);
}

#[test]
fn node18_trace_p_js_resources_reports_what_is_created_after_arming() {
    let (node, mut command) = node18();
    command.arg(node).arg(workload());
    let (truth, traced, from, stderr) = attach(command, &["--js-resources"]);
    assert_js_matches_from(&truth, &traced, from, &stderr, &WORKLOAD_JS_TYPES);
}

#[test]
fn node20_with_hooks_off_reports_the_same_resources_as_with_hooks_on() {
    let (on, truth, _) = run(Path::new(NODE_20), None, true);
    let (off, _, stderr) = run(Path::new(NODE_20), None, false);
    assert_eq!(native(&per_type(&off)), native(&per_type(&on)), "{stderr}");
    // With hooks off, promises get no async id: the ids that went by unseen
    // are the other JS-level resources of the hooks-on run.
    let mut unseen = unseen_ids(&truth.expect("truth"), &on, 0);
    unseen.remove("PROMISE");
    eprintln!("JS-level ids with hooks on, promises left out: {unseen:?}");
    assert_eq!(
        traced_unseen_ids(&stderr),
        Some(unseen.values().sum()),
        "{stderr}"
    );
}

/// `tracer run` stops Node 18 once the loader has mapped its `libnode`, and
/// attaches there before any of its code runs: every resource, from the first.
#[test]
fn node18_run_reports_every_native_resource_of_its_shared_libnode() {
    let (node, wrap) = node18();
    let (traced, truth, stderr) = run(&node, Some(wrap), true);
    assert!(stderr.contains("(node 18."), "{stderr}");
    assert_matches(&truth.expect("truth"), &traced, 0, &stderr);
}

#[test]
fn node20_trace_p_reports_the_native_resources_created_after_attach() {
    let mut node = Command::new(NODE_20);
    node.arg(workload());
    attach_and_compare(node);
}

#[test]
fn node18_trace_p_reports_the_native_resources_of_its_shared_libnode() {
    let (node, mut command) = node18();
    command.arg(node).arg(workload());
    attach_and_compare(command);
}

/// Starts the workload (`node`, its script given) waiting for SIGUSR2,
/// attaches `tracer trace -p`, lets the workload go once attached, and
/// compares what was created after.
fn attach_and_compare(node: Command) {
    let (truth, traced, from, stderr) = attach(node, &[]);
    assert_matches(&truth, &traced, from, &stderr);
}

/// [`attach_and_compare`]'s run, `tracer trace` given `options`: the truth,
/// the tracer's resources, the first id created after attach, the tracer's
/// stderr.
fn attach(mut node: Command, options: &[&str]) -> (Lives, Lives, u64, String) {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let truth_file = temp_path("node-attach-truth");
    let ready_file = temp_path("node-attach-ready");
    let mut node = node
        .env("NODE_TRUTH", &truth_file)
        .env("NODE_WAIT_SIGNAL", "1")
        .env("NODE_PORT_FILE", &ready_file)
        .stdin(Stdio::null())
        .spawn()
        .expect("node starts");
    let pid = node.id();
    wait_for(|| std::fs::read_to_string(&ready_file).is_ok_and(|t| t.starts_with("ready")));
    let mut tracer = Command::new(tracer_bin().unwrap_or_else(|e| panic!("{e}")))
        .args(["trace", "--json", "-p", &pid.to_string()])
        .args(options)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tracer starts");
    let (lines, attached) = mpsc::channel();
    let stderr = BufReader::new(tracer.stderr.take().expect("stderr"));
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("probe sites attached in") {
                let _ = lines.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    attached
        .recv_timeout(Duration::from_secs(60))
        .expect("the tracer attaches");
    // The truth so far: resources created before the tracer attached.
    let before_attach = std::fs::read_to_string(&truth_file).unwrap_or_default();
    let from = parse_truth(&before_attach)
        .expect("truth")
        .keys()
        .max()
        .map_or(0, |id| id + 1);
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGUSR2) }, 0);
    assert!(node.wait().expect("node exits").success());
    let output = tracer.wait_with_output().expect("tracer exits");
    let stderr = reader.join().expect("stderr reader");
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("dropped 0"), "{stderr}");
    let traced = parse_traced(&String::from_utf8_lossy(&output.stdout)).expect("tracer JSON");
    let truth = parse_truth(&std::fs::read_to_string(&truth_file).expect("truth")).expect("truth");
    let _ = std::fs::remove_file(&truth_file);
    let _ = std::fs::remove_file(&ready_file);
    (truth, traced, from, stderr)
}

/// Waits (up to 30 s) until `ready`.
fn wait_for(ready: impl Fn() -> bool) {
    for _ in 0..300 {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out");
}

/// `tracer tree`'s roots for Node: a top-level resource whose trigger is the
/// main script (async id 1) sits under "triggered by the main script", one
/// triggered by a JS-level resource (which tracer does not see) under
/// "triggered by resources not seen", one with trigger 0 under "triggered
/// with no async context"; none under "trigger unknown" in a run traced from
/// its start. Checked against async_hooks' triggers, for every resource
/// created once the hook was on.
#[test]
fn node20_tree_puts_top_level_resources_under_what_triggered_them() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let recording = temp_path("node-tree");
    let truth_file = temp_path("node-tree-truth");
    let output = Command::new(tracer_bin().unwrap_or_else(|e| panic!("{e}")))
        .arg("run")
        .arg("-o")
        .arg(&recording)
        .arg("--")
        .arg(NODE_20)
        .arg(workload())
        .env("NODE_TRUTH", &truth_file)
        .stdin(Stdio::null())
        .output()
        .expect("tracer runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let truth = parse_truth(&std::fs::read_to_string(&truth_file).expect("truth")).expect("truth");
    let _ = std::fs::remove_file(&truth_file);
    let tree = tracer(&["tree".as_ref(), "--json".as_ref(), recording.as_ref()]);
    let _ = std::fs::remove_file(&recording);
    assert!(
        tree.status.success(),
        "{}",
        String::from_utf8_lossy(&tree.stderr)
    );
    let tree: serde_json::Value = serde_json::from_slice(&tree.stdout).expect("tree JSON");
    let mut tops: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut differences = Vec::new();
    let first_truth_id = truth.keys().next().copied().unwrap_or(0);
    for root in tree["roots"].as_array().expect("roots") {
        let kind = root["root"].as_str().expect("root kind");
        for top in root["children"].as_array().expect("children") {
            let id = top["async_id"].as_u64().expect("id");
            if id < first_truth_id {
                // Created before the hook: async_hooks cannot tell.
                continue;
            }
            let trigger = truth.get(&id).and_then(|life| life.trigger);
            let trigger_type = trigger
                .and_then(|trigger| truth.get(&trigger))
                .filter(|life| life.init)
                .map(|life| life.resource_type.clone());
            let ok = match kind {
                "main_script" => trigger == Some(1),
                "no_async_context" => trigger == Some(0),
                "unseen_trigger" => trigger_type
                    .as_deref()
                    .is_some_and(|name| JS_LEVEL_TYPES.contains(&name)),
                _ => false,
            };
            if !ok {
                differences.push(format!(
                    "#{id} under {kind}: async_hooks' trigger {trigger:?} ({trigger_type:?})"
                ));
            }
            let by = trigger_type.unwrap_or_else(|| format!("{trigger:?}"));
            *tops
                .entry(kind.to_owned())
                .or_default()
                .entry(by)
                .or_default() += 1;
        }
    }
    eprintln!("top-level resources by root and async_hooks' trigger type: {tops:?}");
    assert!(tops.contains_key("main_script"), "{tops:?}");
    assert!(tops.contains_key("unseen_trigger"), "{tops:?}");
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// A copy of `source` in which every `from` is `to` (of the same length),
/// executable.
fn patched_copy(source: &Path, tag: &str, from: &[u8], to: &[u8]) -> PathBuf {
    assert_eq!(from.len(), to.len());
    let mut data = std::fs::read(source).expect("read the binary");
    let mut at = 0;
    let mut patched = 0;
    while let Some(found) = data[at..].windows(from.len()).position(|w| w == from) {
        at += found;
        data[at..at + to.len()].copy_from_slice(to);
        at += to.len();
        patched += 1;
    }
    assert!(patched > 0, "no {from:?} in {}", source.display());
    let copy = temp_path(tag);
    std::fs::write(&copy, &data).expect("write the copy");
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("make the copy executable");
    copy
}

/// `tracer ARGS`, its output.
fn tracer(args: &[&OsStr]) -> Output {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    Command::new(tracer_bin().unwrap_or_else(|e| panic!("{e}")))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("tracer runs")
}

/// `strip` leaves Node's exported C++ API in `.dynsym`, which is all tracer
/// needs: a stripped node is traced as the original. A build without those
/// names too (as one with hidden visibility would be) is made by renaming
/// them in the stripped copy: it is refused, naming the Node it found.
/// `--js-resources` on a runtime that has no JS-level resources is refused
/// by name, before anything is attached.
#[test]
fn js_resources_on_a_tokio_program_is_refused_naming_its_runtime() {
    let fixture = fixture_bin("current_thread", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let output = tracer(&[
        OsStr::new("run"),
        OsStr::new("--js-resources"),
        OsStr::new("--"),
        fixture.as_os_str(),
    ]);
    assert_refused(
        &output,
        &["--js-resources is for Node.js only", "runs tokio"],
    );
}

#[test]
fn node_without_symbols_is_refused_naming_the_node_found() {
    let stripped = temp_path("node-stripped");
    let status = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(NODE_20)
        .status()
        .expect("strip (binutils) runs");
    assert!(status.success());
    let (traced, truth, stderr) = run(&stripped, None, true);
    assert!(stderr.contains("(node 20."), "{stderr}");
    assert_matches(&truth.expect("truth"), &traced, 0, &stderr);

    let hidden = patched_copy(&stripped, "node-hidden", b"_ZN4node", b"_ZN4nodX");
    let _ = std::fs::remove_file(&stripped);
    let output = tracer(&[
        "run".as_ref(),
        "--".as_ref(),
        hidden.as_ref(),
        "-e".as_ref(),
        "1".as_ref(),
    ]);
    let _ = std::fs::remove_file(&hidden);
    assert_refused(
        &output,
        &[
            "found Node.js 20.",
            &format!("in {} (by its version string)", hidden.display()),
            "no symbol there names its functions",
            "use a build that keeps its symbol table",
        ],
    );
}

/// A Node major tracer was not checked on: Node 20 whose version string says
/// 21 (its code is 20's, so only the version can refuse it).
#[test]
fn node_of_an_unknown_version_is_refused_naming_it_and_the_supported_ones() {
    let copy = patched_copy(
        Path::new(NODE_20),
        "node-21",
        b"node.js/v20.",
        b"node.js/v21.",
    );
    let output = tracer(&[
        "run".as_ref(),
        "--".as_ref(),
        copy.as_ref(),
        "-e".as_ref(),
        "1".as_ref(),
    ]);
    let _ = std::fs::remove_file(&copy);
    assert_refused(
        &output,
        &[
            &format!("refusing to trace {}", copy.display()),
            "unsupported Node.js version 21.",
            "tracer supports Node 18 (checked on 18.20.4) and 20 (checked on 20.20.2)",
        ],
    );
}

/// A `node` that is no Node: a shell script (as a version manager's shim
/// is), which runs no Node before it execs: refused, naming the program the
/// process runs and the libraries it maps.
#[test]
fn a_process_that_loads_no_node_is_refused_naming_what_it_runs() {
    let shim = temp_path("node-shim");
    std::fs::write(&shim, "#!/bin/sh\nexec sleep 1\n").expect("write the shim");
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("make the shim executable");
    let output = tracer(&["run".as_ref(), "--".as_ref(), shim.as_ref()]);
    let _ = std::fs::remove_file(&shim);
    let shell = std::fs::canonicalize("/bin/sh").expect("/bin/sh");
    assert_refused(
        &output,
        &[
            &format!("no supported runtime found in {}", shell.display()),
            "libc.so.6",
            "Node.js",
        ],
    );
}

/// Node 18 whose `libnode` the loader cannot find: the command exits while
/// loading, and tracer says so after the loader's own message.
#[test]
fn node18_without_its_libnode_is_refused_saying_the_loader_failed() {
    let (node, _) = node18();
    let output = tracer(&[
        "run".as_ref(),
        "--".as_ref(),
        node.as_ref(),
        "-e".as_ref(),
        "1".as_ref(),
    ]);
    assert_refused(
        &output,
        &[
            "error while loading shared libraries: libnode.so.108",
            "exited with code 127 while its dynamic loader loaded its libraries",
        ],
    );
}
