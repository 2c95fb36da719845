//! One tracing session: find sites, load and attach probes, then pump the ring
//! buffer through the model into the sinks until Ctrl-C or the target exits, and
//! report what was seen and what was lost.

use std::{
    io,
    num::NonZeroU32,
    os::fd::{AsRawFd, OwnedFd},
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};
use tracer_common::Counter;

use crate::model::task_filter::TaskGlobs;

mod decode;

use crate::{
    kernel::probes::{AttachReport, ProbeSet, Probes},
    kernel::{
        forks::{self, Children},
        new_task::NewTaskFields,
    },
    model::TaskModel,
    model::resources::ResourceModel,
    runtime::{Prepared, Probe, names::SessionNames},
    runtime::{
        markers,
        sites::{self, TargetObject},
    },
    sinks::output::{LiveStatus, SessionInfo, Sink},
    sinks::summary::SessionStats,
    target::launch::{ChildExit, Launched},
    target::preflight,
    target::{ProgramIdentity, Target},
};
use decode::Decoders;

/// Settings shared by `trace` and `run`.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Size of the BPF ring buffer in bytes.
    pub ring_bytes: u32,
    /// Which probes to attach.
    pub probes: ProbeSet,
    /// Trace the processes the target creates too (`--follow-forks`).
    pub follow_forks: bool,
    /// `--task`: only tasks whose name matches, and only their poll sites probed.
    pub tasks: TaskGlobs,
}

/// How often sinks are flushed while the target is quiet, and its program checked.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(250);

/// How often the ring buffer is drained without being woken: records do not wake
/// the reader until a quarter of the ring is unread (a wakeup per event would cost
/// the target a context switch per poll), so this bounds the live output's delay.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(20);

/// Most records one drain reads while the session runs: a target that writes
/// records as fast as they are read must not keep the event loop from Ctrl-C or
/// the target's exit. What is left is read at once, on the next turn of the loop.
const DRAIN_BATCH: usize = 1 << 16;

/// Why the event loop stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// The target exited.
    TargetExited,
    /// The target replaced its program (exec): the new one is not traced.
    TargetExeced,
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// Whoever reads our output went away (e.g. `| head`).
    OutputClosed,
    /// The sink asked to stop (the user quit `tracer top`).
    SinkDone,
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
    let fd = forks::open_pidfd(pid).context(format!("cannot watch process {pid}"))?;
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
    let target = Target::inspect(pid)?;
    let marker_objects = markers::find(&target)?;
    let detected = sites::detect(&target, !marker_objects.is_empty())?;
    let (runtime, prepared, mut objects) = match detected {
        Some((adapter, mut objects)) => {
            let prepared = adapter
                .prepare(pid, &mut objects)
                .with_context(|| format!("refusing to trace {}", target.exe.display()))?;
            (adapter.name(), Some(prepared), objects)
        }
        None => ("tracer-resource", None, Vec::new()),
    };
    objects.extend(marker_objects);
    let Prepared {
        globals,
        names,
        default_type,
        mut records,
        version,
    } = prepared.unwrap_or_else(Prepared::markers_only);

    let fork_fields = if options.follow_forks {
        Some(NewTaskFields::read()?)
    } else {
        None
    };
    let mut probes = Probes::load(pid, &globals, options.ring_bytes, fork_fields)?;
    if options.follow_forks {
        // The tracepoint catches every process created from now on; these exist.
        for (child, parent) in forks::descendants(pid) {
            probes.follow(child, parent)?;
        }
    }
    let attach = attach_all(&mut probes, &objects, pid, &options, &names)?;
    let mut events = watch_readable(probes.take_events()?)?;
    let exited = pidfd(pid)?;
    probes.arm()?;
    let runtime_version = version;
    let info = SessionInfo {
        pid,
        exe: target.exe.clone(),
        runtime: runtime.to_owned(),
        start_ns: monotonic_ns(),
        start_unix_ns: unix_ns(),
    };
    let start_ns = info.start_ns;
    sink.begin(&info)?;
    let label = match &runtime_version {
        Some(version) => format!("{runtime} {version}"),
        None => runtime.to_owned(),
    };
    eprintln!(
        "tracer: tracing {} ({label}, pid {pid}): {} probe sites attached in {:.3} s ({}); Ctrl-C to stop",
        target.exe.display(),
        attach.total(),
        attach.seconds,
        attach.describe(),
    );
    if names.sites > 0 {
        eprintln!("tracer: {}", names.describe());
    }
    if let Some(warning) = names.warning() {
        eprintln!("tracer: warning: {warning}");
    }
    if let Some(problem) = &names.location_problem {
        eprintln!("tracer: warning: spawn locations or names unavailable: {problem}");
    }
    let SessionNames { table, .. } = names;
    let model = match options.probes {
        ProbeSet::All => TaskModel::new(),
        ProbeSet::NoWakes => {
            eprintln!("tracer: no wake probes (--no-wakes): no wake events, sched_ns is null");
            TaskModel::new()
        }
        ProbeSet::Lifecycle { wakes } => {
            eprintln!(
                "tracer: lifecycle only (--no-polls): init, resolve and destroy, no before/after{}; \
                 trigger_id{} null, as triggers come from the poll probes",
                if wakes { ", wake" } else { "" },
                if wakes { " and waker_id are" } else { " is" },
            );
            TaskModel::lifecycle_only()
        }
        ProbeSet::Floor => {
            eprintln!("tracer: floor mode: empty programs on the poll sites, no events");
            TaskModel::new()
        }
    };
    let model = model
        .with_default_type(default_type)
        .with_names(table)
        .with_task_filter(options.tasks.clone());
    if options.follow_forks {
        eprintln!(
            "tracer: following forks: processes that pid {pid} creates are traced too, until they exit or run another program"
        );
    }
    if let Some(child) = launched.as_mut() {
        child.resume()?;
    }

    let mut decoders = Decoders {
        tasks: model,
        resources: ResourceModel::default(),
        records: records.take(),
    };
    let mut stats = SessionStats::default();
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut forwarded_interrupt = false;
    let program = ProgramIdentity::of(pid);
    // With --follow-forks: the descendants being traced. The session ends once the
    // target has ended (`target_end`) and none of them is left.
    let mut children = Children::default();
    let mut target_end = None;
    // Housekeeping: sinks that batch (a recording's chunks) get a chance to write
    // even when the target is quiet, so nothing waits in memory for more than about
    // a second; and an exec of the target is noticed.
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    let mut drain_tick = tokio::time::interval(DRAIN_INTERVAL);
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = loop {
        tokio::select! {
            _ = drain_tick.tick() => {
                // New children are announced (before the events in the ring now),
                // and gone ones let go, within a tick.
                if options.follow_forks {
                    children.sync(&mut probes, program)?;
                }
                match decoders.drain(events.get_mut(), &mut stats, sink, DRAIN_BATCH) {
                    Ok(true) => drain_tick.reset_immediately(),
                    Ok(false) => {}
                    Err(_) => break Stop::OutputClosed,
                }
            }
            guard = events.readable_mut() => {
                let mut guard = guard?;
                let drained = decoders.drain(guard.get_inner_mut(), &mut stats, sink, DRAIN_BATCH);
                guard.clear_ready();
                match drained {
                    Ok(true) => drain_tick.reset_immediately(),
                    Ok(false) => {}
                    Err(_) => break Stop::OutputClosed,
                }
            }
            _ = housekeeping.tick() => {
                if sink.flush().is_err() {
                    break Stop::OutputClosed;
                }
                let status = LiveStatus {
                    probe_sites: attach.total(),
                    runtime_version: runtime_version.clone(),
                    delivered: stats.delivered,
                    dropped: probes.counters().map_or(0, |counters| counters.get(Counter::RingFull)),
                };
                if sink.status(&status).is_err() {
                    break Stop::OutputClosed;
                }
                if sink.stop_requested() {
                    break Stop::SinkDone;
                }
                if target_end.is_none() && ProgramIdentity::of(pid) != program && !is_gone(pid) {
                    target_end = Some(Stop::TargetExeced);
                    if !children.is_empty() {
                        eprintln!("tracer: process {pid} called exec; tracing its child processes until they exit");
                    }
                }
                if let Some(end) = target_end
                    && children.is_empty()
                {
                    break end;
                }
            }
            _ = exited.readable(), if target_end.is_none() => {
                if options.follow_forks {
                    children.sync(&mut probes, program)?;
                }
                if children.is_empty() {
                    break Stop::TargetExited;
                }
                target_end = Some(Stop::TargetExited);
                eprintln!("tracer: process {pid} exited; tracing its child processes until they exit");
            }
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
    // Detach first: then no program runs any more, everything emitted is in the
    // ring or counted as dropped, and one last drain makes the accounting exact.
    let counters = probes.detach()?;
    let drained = decoders.drain(events.get_mut(), &mut stats, sink, usize::MAX);
    let flushed = sink.flush();
    let stop = if drained.is_err() || flushed.is_err() {
        Stop::OutputClosed
    } else {
        stop
    };

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
        (Stop::TargetExeced, _) => format!(
            "process {pid} called exec: its new program is not traced (run tracer again to trace it)"
        ),
        (Stop::Interrupted, _) => "interrupted".to_owned(),
        (Stop::OutputClosed, _) => "output closed".to_owned(),
        (Stop::SinkDone, _) => "quit from the view".to_owned(),
    };
    let model = &decoders.tasks;
    let end = stats.session_end(&counters, model.anomalies(), &ending, monotonic_ns());
    if sink.end(&end).is_err() && stop != Stop::OutputClosed {
        eprintln!("tracer: warning: the output could not be closed cleanly");
    }
    eprintln!(
        "tracer: session ended: {ending}, after {:.2} s",
        Duration::from_nanos(monotonic_ns() - start_ns).as_secs_f64()
    );
    eprint!("{}", stats.render(&attach, &counters, model.anomalies()));
    for line in model.names().summary() {
        eprintln!("tracer: {line}");
    }
    for line in decoders
        .records
        .iter()
        .flat_map(|records| records.summary())
    {
        eprintln!("tracer: {line}");
    }
    if let Some(filter) = model.task_filter() {
        eprintln!("tracer: {}", filter.summary());
    }
    if options.follow_forks {
        eprintln!("tracer: child processes followed: {}", children.followed);
    }
    let child_exit = match launched.as_mut() {
        // `tracer run` still ends when the command does, with its exit code.
        Some(child) if stop == Stop::TargetExeced => {
            eprintln!("tracer: waiting for the command to exit");
            Some(child.wait()?)
        }
        Some(child) if child_exit.is_none() => {
            eprintln!(
                "tracer: the command (pid {}) keeps running without tracing",
                child.pid()
            );
            None
        }
        _ => child_exit,
    };
    Ok(Outcome { child_exit })
}

/// Attaches the sites of every object, warning about what could not be attached;
/// fails when nothing could.
fn attach_all(
    probes: &mut Probes,
    objects: &[TargetObject],
    pid: u32,
    options: &SessionOptions,
    names: &SessionNames,
) -> anyhow::Result<AttachReport> {
    // Followed children are not known yet: the kernel must run the programs for
    // every process of the file, and the programs choose.
    let only_pid = if options.follow_forks {
        None
    } else {
        Some(NonZeroU32::new(pid).context("pid 0 cannot be traced")?)
    };
    let mut attach = AttachReport::default();
    for (index, object) in objects.iter().enumerate() {
        let slot = |site: &crate::runtime::sites::Site| {
            names
                .slots
                .get(&(index, site.address))
                .copied()
                .unwrap_or(0)
        };
        // With --task, only the poll sites whose future type matches are probed.
        let sites: Vec<crate::runtime::sites::Site> = object
            .sites
            .sites
            .iter()
            .filter(|site| {
                site.probe != Probe::Poll
                    || options.tasks.is_empty()
                    || names.site_matches(index, site.address, &options.tasks)
            })
            .cloned()
            .collect();
        let report = probes.attach(&object.attach_path, &sites, only_pid, options.probes, &slot)?;
        for (label, count) in report.attached {
            *attach.attached.entry(label).or_default() += count;
        }
        attach.failed.extend(report.failed);
        attach.seconds += report.seconds;
        attach.fallback = attach.fallback.or(report.fallback);
    }
    if let Some(reason) = &attach.fallback {
        eprintln!(
            "tracer: warning: uprobe_multi links unavailable ({reason}); using one perf-event link per site, which takes the kernel about 0.1 s per site to remove at the end"
        );
    }
    for (symbol, reason) in &attach.failed {
        eprintln!("tracer: warning: cannot attach to {symbol}: {reason}");
    }
    if attach.total() == 0 {
        bail!("no probe could be attached to process {pid}; see the warnings above");
    }
    Ok(attach)
}

/// The process has exited (its pidfd will say so too).
fn is_gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}/exe")).exists()
}
