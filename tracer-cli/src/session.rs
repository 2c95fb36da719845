//! One tracing session: find sites, load and attach probes, then pump the ring
//! buffer through the model into the sinks until Ctrl-C or the target exits, and
//! report what was seen and what was lost.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd as _, OwnedFd},
    time::Duration,
};

use anyhow::{Context as _, bail};
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use crate::{
    launch::{ChildExit, Launched},
    model::{TaskModel, decode},
    output::{SessionInfo, Sink},
    preflight,
    probes::{AttachReport, ProbeSet, Probes},
    runtime::{RuntimeAdapter, tokio::Tokio},
    summary::SessionStats,
    target::Target,
};

/// Settings shared by `trace` and `run`.
#[derive(Clone, Copy, Debug)]
pub struct SessionOptions {
    /// Size of the BPF ring buffer in bytes.
    pub ring_bytes: u32,
    /// Which probes to attach.
    pub probes: ProbeSet,
}

/// Why the event loop stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// The target exited.
    TargetExited,
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// Whoever reads our output went away (e.g. `| head`).
    OutputClosed,
}

/// How the session ended, for the exit code.
#[derive(Debug)]
pub struct Outcome {
    /// The launched command's exit, for `tracer run`.
    pub child_exit: Option<ChildExit>,
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock BPF timestamps use.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Wall-clock time now, in nanoseconds since the Unix epoch.
fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

/// Registers a file descriptor owner with the event loop, for readability.
fn watch_readable<T: AsRawFd>(owner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `owner` (an OwnedFd or an aya map) owns its descriptor and never
    // swaps it, and the AsyncFd owns `owner` for its whole life.
    unsafe { AsyncFd::register_with_interest(owner, Interest::READABLE) }.map_err(io::Error::from)
}

/// Opens a pidfd, readable once the process has exited.
fn pidfd(pid: u32) -> anyhow::Result<AsyncFd<OwnedFd>> {
    // SAFETY: plain syscall; the returned fd is owned by us.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context(format!("cannot watch process {pid}"));
    }
    // SAFETY: a fresh fd from pidfd_open.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    Ok(watch_readable(fd)?)
}

/// Traces `pid` (already running, or `launched` and stopped at exec) into `sink`.
pub async fn trace(
    pid: u32,
    mut launched: Option<Launched>,
    options: SessionOptions,
    sink: &mut dyn Sink,
) -> anyhow::Result<Outcome> {
    preflight::check_privileges()?;
    let adapter = Tokio;
    let target = Target::inspect(pid)?;
    let objects = target.find_sites(&adapter)?;

    let mut probes = Probes::load(pid, adapter.layout(), options.ring_bytes)?;
    let mut attach = AttachReport::default();
    for object in &objects {
        let report = probes.attach(
            &object.attach_path,
            &object.sites.sites,
            pid,
            options.probes,
        )?;
        for (label, count) in report.attached {
            *attach.attached.entry(label).or_default() += count;
        }
        attach.failed.extend(report.failed);
        attach.seconds += report.seconds;
    }
    for (symbol, reason) in &attach.failed {
        eprintln!("tracer: warning: cannot attach to {symbol}: {reason}");
    }
    if attach.total() == 0 {
        bail!("no probe could be attached to process {pid}; see the warnings above");
    }
    let mut events = watch_readable(probes.take_events()?)?;
    let exited = pidfd(pid)?;
    probes.arm()?;
    let info = SessionInfo {
        pid,
        exe: target.exe.clone(),
        runtime: adapter.name(),
        start_ns: monotonic_ns(),
        start_unix_ns: unix_ns(),
    };
    let start_ns = info.start_ns;
    sink.begin(&info)?;
    eprintln!(
        "tracer: tracing {} ({}, pid {pid}): {} {} probe sites attached in {:.2} s ({}); Ctrl-C to stop",
        target.exe.display(),
        adapter.name(),
        attach.total(),
        adapter.name(),
        attach.seconds,
        attach.describe(),
    );
    let mut model = match options.probes {
        ProbeSet::All => TaskModel::new(),
        ProbeSet::Lifecycle => {
            eprintln!(
                "tracer: lifecycle only (--no-polls): init, resolve and destroy, no before/after; \
                 trigger_id is null, as triggers come from the poll probes"
            );
            TaskModel::lifecycle_only()
        }
        ProbeSet::Floor => {
            eprintln!("tracer: floor mode: empty programs on the poll sites, no events");
            TaskModel::new()
        }
    };
    if let Some(child) = launched.as_mut() {
        child.resume()?;
    }

    let mut stats = SessionStats::default();
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut forwarded_interrupt = false;
    let stop = loop {
        tokio::select! {
            guard = events.readable_mut() => {
                let mut guard = guard?;
                let drained = drain(guard.get_inner_mut(), &mut model, &mut stats, sink);
                guard.clear_ready();
                if drained.is_err() {
                    break Stop::OutputClosed;
                }
            }
            _ = exited.readable() => break Stop::TargetExited,
            _ = interrupt.recv() => {
                // `tracer run`: the first Ctrl-C goes to the command, whose
                // shutdown is traced too; a second one stops tracing.
                match launched.as_ref() {
                    Some(child) if !forwarded_interrupt => {
                        forwarded_interrupt = true;
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(child.pid() as i32),
                            nix::sys::signal::Signal::SIGINT,
                        );
                    }
                    _ => break Stop::Interrupted,
                }
            }
            _ = terminate.recv() => break Stop::Interrupted,
        }
    };
    // Everything the target did before it exited is already in the ring.
    let drained = drain(events.get_mut(), &mut model, &mut stats, sink);
    let flushed = sink.flush();
    let stop = if drained.is_err() || flushed.is_err() {
        Stop::OutputClosed
    } else {
        stop
    };
    let counters = probes.counters()?;
    drop(probes);

    let child_exit = match launched.as_mut() {
        Some(child) if stop == Stop::TargetExited => Some(child.wait()?),
        _ => None,
    };
    let ending = match (stop, child_exit) {
        (Stop::TargetExited, Some(ChildExit::Code(code))) => {
            format!("the command exited with code {code}")
        }
        (Stop::TargetExited, Some(ChildExit::Signal(signal))) => {
            format!("the command was killed by signal {signal}")
        }
        (Stop::TargetExited, None) => format!("process {pid} exited"),
        (Stop::Interrupted, _) => "interrupted".to_owned(),
        (Stop::OutputClosed, _) => "output closed".to_owned(),
    };
    eprintln!(
        "tracer: session ended: {ending}, after {:.2} s",
        Duration::from_nanos(monotonic_ns() - start_ns).as_secs_f64()
    );
    eprint!(
        "{}",
        stats.render(&attach, &counters, model.anomalies(), model.live_tasks())
    );
    if let Some(child) = launched.as_mut()
        && child_exit.is_none()
        && stop != Stop::TargetExited
    {
        eprintln!(
            "tracer: the command (pid {}) keeps running without tracing",
            child.pid()
        );
    }
    Ok(Outcome { child_exit })
}

/// Reads every event in the ring buffer now, through the model, into the sink.
fn drain(
    ring: &mut RingBuf<MapData>,
    model: &mut TaskModel,
    stats: &mut SessionStats,
    sink: &mut dyn Sink,
) -> io::Result<()> {
    let mut result = Ok(());
    while let Some(item) = ring.next() {
        stats.delivered += 1;
        let Some(raw) = decode(&item) else {
            model.count_undecodable();
            continue;
        };
        model.apply(&raw, |event| {
            stats.record(&event);
            if result.is_ok() {
                result = sink.event(&event);
            }
        });
    }
    result?;
    sink.flush()
}
