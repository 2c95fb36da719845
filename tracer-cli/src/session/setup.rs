//! Before the first event: which runtime the target runs and what its adapter
//! read from the binary, the status lines that say so, and the model that will
//! read the records.

use anyhow::Context as _;

use super::SessionOptions;
use crate::{
    kernel::probes::{AttachReport, ProbeSet},
    model::{TaskModel, event::ResourceType, names::NameTable},
    runtime::tokio::parked::program::Programs,
    runtime::{
        Prepared, markers,
        sites::{self, TargetObject},
    },
    target::Target,
};

/// What the session traces in the target.
pub struct Found {
    /// The runtime's name ("tokio", "go"), or "tracer-resource" for a process
    /// that only declares its own resources.
    pub runtime: &'static str,
    /// Every object with sites: the runtime's, then the embedder markers'.
    pub objects: Vec<TargetObject>,
    /// What the adapter read.
    pub prepared: Prepared,
}

/// Finds the runtime of `target` (process `pid`) and the embedder markers, and
/// has the adapter read what the session needs.
pub fn find(target: &Target, pid: u32) -> anyhow::Result<Found> {
    let marker_objects = markers::find(target)?;
    let detected = sites::detect(target, !marker_objects.is_empty())?;
    let (runtime, prepared, mut objects) = match detected {
        Some((adapter, mut objects)) => {
            let prepared = adapter
                .prepare(pid, &mut objects)
                .with_context(|| format!("refusing to trace {}", target.exe.display()))?;
            (adapter.name(), prepared, objects)
        }
        None => ("tracer-resource", Prepared::markers_only(), Vec::new()),
    };
    objects.extend(marker_objects);
    Ok(Found {
        runtime,
        objects,
        prepared,
    })
}

/// The await-chain programs of the target's poll sites, when the session reads
/// chains: Tokio, poll probes, `--no-await-chains` not given, and type DWARF
/// that describes the tasks; says once on stderr why not otherwise.
pub fn chains(found: &Found, options: &SessionOptions) -> Option<Programs> {
    let polls = matches!(options.probes, ProbeSet::All | ProbeSet::NoWakes);
    if !options.await_chains || !polls || found.runtime != "tokio" {
        return None;
    }
    match crate::runtime::tokio::parked::session_programs(
        &found.objects,
        &found.prepared.names.slots,
    ) {
        Ok((programs, 0)) => {
            eprintln!(
                "tracer: no await chains: no poll site's future is described by the type DWARF"
            );
            drop(programs);
            None
        }
        Ok((programs, walked)) => {
            eprintln!(
                "tracer: await chains: {walked} of {} poll sites ({} async state machines, {} join!/select! forks)",
                found.prepared.names.sites,
                programs.nodes.len() - 1,
                programs.forks.len() - 1
            );
            Some(programs)
        }
        Err(error) => {
            eprintln!("tracer: {error:#}; `after` events carry no `awaiting`");
            None
        }
    }
}

/// The start line and what naming has to say, on stderr.
pub fn announce(
    target: &Target,
    found: &Found,
    pid: u32,
    attach: &AttachReport,
    options: &SessionOptions,
) {
    let runtime = match &found.prepared.version {
        Some(version) => format!("{} {version}", found.runtime),
        None => found.runtime.to_owned(),
    };
    eprintln!(
        "tracer: tracing {} ({runtime}, pid {pid}): {} probe sites attached in {:.3} s ({}); Ctrl-C to stop",
        target.exe.display(),
        attach.total(),
        attach.seconds,
        attach.describe(),
    );
    if let Some(note) = attach.single_step_note() {
        eprintln!("tracer: note: {note}");
    }
    let names = &found.prepared.names;
    if names.sites > 0 {
        eprintln!("tracer: {}", names.describe());
    }
    if let Some(warning) = names.warning() {
        eprintln!("tracer: warning: {warning}");
    }
    if let Some(problem) = &names.location_problem {
        eprintln!("tracer: warning: spawn locations or names unavailable: {problem}");
    }
    if options.follow_forks {
        eprintln!(
            "tracer: following forks: processes that pid {pid} creates are traced too, until they exit or run another program"
        );
    }
}

/// The model for `options`' probe set (saying on stderr what a reduced set
/// leaves out), naming tasks from `names`.
pub fn model(options: &SessionOptions, default_type: ResourceType, names: NameTable) -> TaskModel {
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
        ProbeSet::FloorEverySite => {
            eprintln!("tracer: floor mode: empty programs on every probe site, no events");
            TaskModel::new()
        }
    };
    model
        .with_default_type(default_type)
        .with_names(names)
        .with_task_filter(options.tasks.clone())
}
