//! One tracing session: find sites, load and attach probes, then pump the ring
//! buffer through the model into the sinks until Ctrl-C or the target exits, and
//! report what was seen and what was lost.

use std::{
    io,
    os::fd::{AsRawFd, OwnedFd},
    time::Duration,
};

use anyhow::Context as _;
use tokio::io::{Interest, unix::AsyncFd};

use crate::model::task_filter::TaskGlobs;

mod attach;
mod decode;
mod ending;
mod live;
mod setup;

use crate::{
    kernel::{
        forks::{self, Children},
        new_task::NewTaskFields,
        probes::{ChainMaps, ProbeSet, Probes},
    },
    model::resources::ResourceModel,
    runtime::{BpfGlobals, Prepared},
    sinks::{
        output::{SessionInfo, Sink},
        summary::SessionStats,
    },
    target::{
        Target,
        launch::{ChildExit, Launched},
        preflight,
    },
};
use decode::Decoders;
use live::Live;

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
    /// Read each Pending poll's await chain (Tokio, with type DWARF); off with
    /// `--no-await-chains`.
    pub await_chains: bool,
    /// `--js-resources`: Node's JS-level resources through hardware
    /// watchpoints.
    pub js_resources: bool,
    /// `--bpf-stats`: the kernel counts each program's runs and time, and the
    /// summary says them.
    pub bpf_stats: bool,
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

/// Traces `pid` (already running, or `launched` and stopped before its code
/// runs) into `sink`.
pub async fn trace(
    pid: u32,
    mut launched: Option<Launched>,
    options: SessionOptions,
    sink: &mut dyn Sink,
) -> anyhow::Result<Outcome> {
    preflight::check_privileges()?;
    let target = Target::inspect(pid)?;
    let mut found = setup::find(&target, pid)?;
    let js_watching = if options.js_resources {
        let watching = found
            .prepared
            .records
            .as_mut()
            .and_then(|records| records.watch_js_resources())
            .with_context(|| {
                format!(
                    "--js-resources is for Node.js only: process {pid} runs {}",
                    found.runtime
                )
            })?;
        found
            .prepared
            .globals
            .0
            .extend(watching.globals.0.iter().copied());
        Some(watching)
    } else {
        None
    };
    let chains = setup::chains(&found, &options);
    let mut probes = load(
        pid,
        &found.prepared.globals,
        &options,
        chains.as_ref().map(|c| c.maps()),
    )?;
    if let Some(watching) = &js_watching {
        probes.load_watch_programs(&watching.programs)?;
    }
    let attach = attach::attach_all(
        &mut probes,
        &found.objects,
        pid,
        &options,
        &found.prepared.names,
    )?;
    let events = watch_readable(probes.take_events()?)?;
    let exited = pidfd(pid)?;
    probes.arm()?;
    let info = SessionInfo {
        pid,
        exe: target.exe.clone(),
        runtime: found.runtime.to_owned(),
        start_ns: monotonic_ns(),
        start_unix_ns: unix_ns(),
    };
    sink.begin(&info)?;
    setup::announce(&target, &found, pid, &attach, &options);
    let Prepared {
        names,
        default_type,
        records,
        version,
        ..
    } = found.prepared;
    let decoders = Decoders {
        tasks: setup::model(&options, default_type, names.table)
            .with_chains(chains.map(|c| c.table)),
        resources: ResourceModel::default(),
        records,
    };
    if let Some(child) = launched.as_mut() {
        child.resume()?;
    }
    let mut live = Live {
        pid,
        options: &options,
        probes,
        events,
        exited,
        decoders,
        stats: SessionStats::default(),
        sink,
        launched: &mut launched,
        attach: &attach,
        runtime_version: version,
        children: Children::default(),
    };
    let stop = live.run().await?;
    live.finish(stop, info.start_ns)
}

/// Loads the BPF programs for `pid` with the runtime's `globals`; with
/// `--follow-forks`, follows the descendants that exist already (the
/// tracepoint catches every process created from now on).
fn load(
    pid: u32,
    globals: &BpfGlobals,
    options: &SessionOptions,
    chains: Option<ChainMaps<'_>>,
) -> anyhow::Result<Probes> {
    let fork_fields = if options.follow_forks {
        Some(NewTaskFields::read()?)
    } else {
        None
    };
    let mut probes = Probes::load(pid, globals, options.ring_bytes, fork_fields, chains)?;
    if options.bpf_stats {
        probes.measure_program_times()?;
    }
    if options.follow_forks {
        for (child, parent) in forks::descendants(pid) {
            probes.follow(child, parent)?;
        }
    }
    Ok(probes)
}

/// The process has exited (its pidfd will say so too).
fn is_gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}/exe")).exists()
}
