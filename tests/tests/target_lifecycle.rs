//! The tracer follows its target's life: it stops cleanly, with its summary, when
//! the target exits, is killed, or replaces its program with exec, and when the
//! tracer itself is interrupted. Needs root and `cargo xtask build`; fails otherwise.

use std::{
    process::{Child, Command, Output, Stdio},
    thread::sleep,
    time::Duration,
};

use tracer_tests::{Profile, TracerOutput, fixture_bin, require_root, tracer_bin};

fn long_running(args: &[&str]) -> Child {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let app = fixture_bin("long_running", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    Command::new(app)
        .args(args)
        .stderr(Stdio::null())
        .spawn()
        .expect("long_running starts")
}

fn trace(pid: u32) -> Child {
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let child = Command::new(tracer)
        .args(["trace", "--json", "-p", &pid.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tracer starts");
    // Let it attach.
    sleep(Duration::from_millis(700));
    child
}

/// Waits for the tracer and checks it ended cleanly, with complete JSON lines and
/// its summary; returns its events and its stderr.
fn finished_cleanly(tracer: Child) -> (TracerOutput, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = tracer.wait_with_output().expect("tracer ends");
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    assert!(status.success(), "tracer failed ({status}):\n{stderr}");
    let events = TracerOutput::parse(&String::from_utf8_lossy(&stdout))
        .unwrap_or_else(|e| panic!("{e}\n{stderr}"));
    assert!(!events.events.is_empty(), "no events:\n{stderr}");
    assert!(stderr.contains("tracer: session ended: "), "{stderr}");
    assert!(
        stderr.contains("tracer: raw events: emitted ") && stderr.contains("(ring buffer full)"),
        "{stderr}"
    );
    // Every record the probes emitted was delivered or counted as dropped, also
    // when the target runs on after the session.
    assert!(!stderr.contains("tracer bug"), "{stderr}");
    (events, stderr)
}

#[test]
fn target_that_exits_ends_the_session_with_a_summary() {
    let mut target = long_running(&["--seconds", "2"]);
    let tracer = trace(target.id());
    let (_, stderr) = finished_cleanly(tracer);
    let _ = target.wait();
    assert!(
        stderr.contains(&format!("process {} exited", target.id())),
        "{stderr}"
    );
}

#[test]
fn target_killed_with_sigkill_ends_the_session_with_a_summary() {
    let mut target = long_running(&["--seconds", "30"]);
    let tracer = trace(target.id());
    sleep(Duration::from_millis(500));
    target.kill().expect("SIGKILL");
    let _ = target.wait();
    let (_, stderr) = finished_cleanly(tracer);
    assert!(
        stderr.contains(&format!("process {} exited", target.id())),
        "{stderr}"
    );
}

#[test]
fn target_that_calls_exec_ends_the_session_saying_so() {
    let mut target = long_running(&["--seconds", "2", "--exec-at-end"]);
    let tracer = trace(target.id());
    let (_, stderr) = finished_cleanly(tracer);
    let _ = target.wait();
    assert!(
        stderr.contains(&format!("process {} called exec", target.id())),
        "{stderr}"
    );
}

#[test]
fn interrupted_tracer_flushes_its_events_and_leaves_the_target_running() {
    let mut target = long_running(&["--seconds", "30"]);
    let tracer = trace(target.id());
    sleep(Duration::from_millis(500));
    nix_kill(tracer.id(), libc::SIGINT);
    let (_, stderr) = finished_cleanly(tracer);
    assert!(stderr.contains("session ended: interrupted"), "{stderr}");
    assert!(
        target.try_wait().expect("target status").is_none(),
        "the target died with the tracer"
    );
    target.kill().expect("SIGKILL");
    let _ = target.wait();
}

fn nix_kill(pid: u32, signal: libc::c_int) {
    // SAFETY: plain kill(2) on a child we own.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
}

#[test]
fn two_tracers_on_one_target_both_see_every_event() {
    let mut target = long_running(&["--seconds", "3"]);
    let first = trace(target.id());
    let second = trace(target.id());
    let (first_events, _) = finished_cleanly(first);
    let (second_events, second_stderr) = finished_cleanly(second);
    let _ = target.wait();
    // The second attached later: every task it saw spawned, the first saw the same way.
    let spawned_late: Vec<u64> = second_events
        .events
        .iter()
        .filter(|e| e.event == tracer_tests::HookKind::Init && e.existing == Some(false))
        .map(|e| e.async_id)
        .collect();
    assert!(!spawned_late.is_empty(), "{second_stderr}");
    for id in spawned_late {
        let count =
            |events: &TracerOutput| events.events.iter().filter(|e| e.async_id == id).count();
        assert_eq!(
            count(&first_events),
            count(&second_events),
            "task {id}: the two tracers saw different numbers of events"
        );
    }
}

/// The first byte of the target's first `raw::poll` copy, as the target sees it
/// now (0xCC while a uprobe is installed there).
fn first_poll_byte(pid: u32) -> u8 {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe");
    let nm = Command::new("nm")
        .arg(&exe)
        .output()
        .expect("nm (binutils) runs");
    let vaddr = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .find(|line| line.contains("7runtime4task3raw4poll"))
        .and_then(|line| u64::from_str_radix(line.split_whitespace().next()?, 16).ok())
        .expect("a raw::poll symbol");
    // PIE: the mapping of file offset 0 is the load base.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let base = maps
        .lines()
        .find(|line| line.split_whitespace().nth(2) == Some("00000000"))
        .and_then(|line| u64::from_str_radix(line.split('-').next()?, 16).ok())
        .expect("the executable's first mapping");
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("mem");
    mem.seek(SeekFrom::Start(base + vaddr)).expect("seek");
    let mut byte = [0u8];
    mem.read_exact(&mut byte).expect("read");
    byte[0]
}

/// A kind of BPF object a process can hold a descriptor of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BpfObject {
    Program,
    Link,
}

/// The BPF programs and links process `pid` holds, with their kernel ids, from
/// `/proc/PID/fd` (`anon_inode:bpf-prog`, `anon_inode:bpf_link`) and the ids in
/// `/proc/PID/fdinfo`.
fn bpf_objects_held_by(pid: u32) -> Vec<(BpfObject, u32)> {
    let mut held = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the tracer's fds") {
        let entry = entry.expect("an fd entry");
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let (kind, key) = match target.to_str() {
            Some("anon_inode:bpf-prog") => (BpfObject::Program, "prog_id:"),
            Some("anon_inode:bpf_link") => (BpfObject::Link, "link_id:"),
            _ => continue,
        };
        let fd = entry.file_name();
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.to_string_lossy()))
            .expect("fdinfo");
        let id = info
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in fdinfo:\n{info}"));
        held.push((kind, id));
    }
    held
}

/// Whether the kernel still has the BPF program or link with this id.
fn bpf_object_exists(kind: BpfObject, id: u32) -> bool {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
    let command = match kind {
        BpfObject::Program => BPF_PROG_GET_FD_BY_ID,
        BpfObject::Link => BPF_LINK_GET_FD_BY_ID,
    };
    // `union bpf_attr` for these commands: the id, next_id, open_flags.
    let attr: [u32; 3] = [id, 0, 0];
    // SAFETY: bpf(2) reads `attr` (12 bytes, its size given) and returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr.as_ptr(),
            std::mem::size_of_val(&attr) as libc::c_uint,
        )
    };
    if fd >= 0 {
        // SAFETY: a descriptor bpf(2) just opened for us.
        unsafe { libc::close(fd as libc::c_int) };
        return true;
    }
    let error = std::io::Error::last_os_error();
    assert_eq!(
        error.raw_os_error(),
        Some(libc::ENOENT),
        "bpf({command}) of id {id}: {error}"
    );
    false
}

#[test]
fn tracer_killed_with_sigkill_leaves_no_probe_in_the_target_or_the_kernel() {
    const INT3: u8 = 0xcc;
    let mut target = long_running(&["--seconds", "30"]);
    sleep(Duration::from_millis(300));
    let original = first_poll_byte(target.id());
    assert_ne!(original, INT3, "a probe is already installed");
    let mut tracer = trace(target.id());
    assert_eq!(
        first_poll_byte(target.id()),
        INT3,
        "the attached tracer's uprobe is not where this test looks"
    );
    let held = bpf_objects_held_by(tracer.id());
    assert!(
        held.iter().any(|(kind, _)| *kind == BpfObject::Link),
        "the attached tracer holds no BPF link: {held:?}"
    );
    tracer.kill().expect("SIGKILL the tracer");
    let _ = tracer.wait();
    assert_eq!(
        first_poll_byte(target.id()),
        original,
        "a probe was left behind in the target"
    );
    // The kernel frees the links and programs once their last descriptor is gone,
    // after an RCU grace period: give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut left = held.clone();
    while !left.is_empty() && std::time::Instant::now() < deadline {
        left.retain(|(kind, id)| bpf_object_exists(*kind, *id));
        sleep(Duration::from_millis(100));
    }
    assert!(
        left.is_empty(),
        "BPF links or programs of the killed tracer are still in the kernel: {left:?}"
    );
    sleep(Duration::from_millis(300));
    assert!(
        target.try_wait().expect("target status").is_none(),
        "the target did not survive its tracer's death"
    );
    target.kill().expect("SIGKILL");
    let _ = target.wait();
}

#[test]
fn probes_share_one_uprobe_multi_link_per_program() {
    // One perf-event link per site takes the kernel ~0.1 s each to remove; the
    // tracer must not fall back to them on a kernel with uprobe_multi (6.6+).
    let mut target = long_running(&["--seconds", "2"]);
    let tracer = trace(target.id());
    let (_, stderr) = finished_cleanly(tracer);
    let _ = target.wait();
    assert!(
        !stderr.contains("uprobe_multi links unavailable"),
        "fell back to per-site links:\n{stderr}"
    );
}
