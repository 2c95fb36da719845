//! Loads tracer's BPF programs into the kernel and attaches them to probe sites.
//!
//! The BPF object is built by `build.rs` and embedded in the binary. Programs are
//! loaded once; each unique site gets one attachment per program it needs, by
//! file offset (symbols were resolved once, by [`crate::target::symbols`]), filtered to
//! the target process, with a cookie saying where the task header is.

use std::{
    collections::BTreeMap,
    num::NonZeroU32,
    os::fd::{AsFd as _, OwnedFd},
    path::Path,
    time::Instant,
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        PerfEvent, TracePoint, UProbe,
        perf_event::{
            BreakpointConfig, PerfBreakpointLength, PerfBreakpointType, PerfEventConfig,
            PerfEventScope, SamplePolicy,
        },
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    },
};
use tracer_common::{COUNTER_COUNT, Counter, chain, cookie, fork, layout};

use crate::{
    kernel::multi_attach::MultiPrograms,
    kernel::new_task::{NEW_TASK_TRACEPOINT, NewTaskFields},
    kernel::program_stats::{ProgramTimes, StatsEnabled, run_times},
    runtime::sites::Site,
    runtime::{BpfGlobals, Probe, WriteWatch},
};

/// The BPF object built from `tracer-ebpf`.
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-probes"));

/// Program names in the BPF object, in the order they are loaded.
const PROGRAMS: [&str; 25] = [
    "poll_enter",
    "poll_return",
    "task_spawn",
    "task_spawn_return",
    "task_complete",
    "task_free",
    "resource_marker",
    "spawn_entry",
    "floor_enter",
    "floor_return",
    "task_wake",
    "task_abort",
    "worker_run",
    "task_defer",
    "go_status",
    "go_preempt_park",
    "go_newproc",
    "node_async_reset",
    "node_async_reset_return",
    "node_scope_enter",
    "node_scope_close",
    "node_destroy",
    "node_microtasks_enter",
    "node_microtasks_return",
    "node_enqueue_microtask",
];

/// The programs that run at function return (uretprobes).
const RETURN_PROGRAMS: [&str; 5] = [
    "poll_return",
    "task_spawn_return",
    "floor_return",
    "node_async_reset_return",
    "node_microtasks_return",
];

/// Which probes a session attaches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProbeSet {
    /// Every event: init, before, after, resolve, destroy, wake.
    #[default]
    All,
    /// Every event but wakes (hidden `--no-wakes`): what the wake probes cost is
    /// measured against it.
    NoWakes,
    /// `--no-polls`: init, resolve and destroy only. A uprobe trap costs far more
    /// than a Tokio poll, so this mode's cost follows tasks, not polls. Triggers
    /// come from the per-thread poll stack the poll probes keep, so they are
    /// unknown here.
    Lifecycle {
        /// `--wakes`: the waker probes too (wake events, without the waking
        /// task, which comes from the poll stack).
        wakes: bool,
    },
    /// Benchmark floor (hidden `--floor`): empty programs on the `raw::poll` sites
    /// only, i.e. what the kernel charges just to trap; no events.
    Floor,
    /// Benchmark floor on every site (hidden `--floor-every-site`): an empty
    /// program wherever [`ProbeSet::All`] attaches one (an empty uprobe for an
    /// entry program, an empty uretprobe for a return program), so it traps
    /// exactly as often as `tracer trace`; no events.
    FloorEverySite,
}

/// Default ring buffer size: 8 MiB holds about 170k events (48 bytes each with
/// the ring's header), a fraction of a second at the highest poll rates seen.
pub const DEFAULT_RING_BYTES: u32 = 8 << 20;

/// The programs and attachments that a probe site needs in a probe set:
/// (program, cookie); none when the set leaves the site alone. `poll_slot` is a
/// poll site's slot in the session's table of poll-site names, its cookie.
fn programs_for(probe: Probe, poll_slot: u64, set: ProbeSet) -> Vec<(&'static str, u64)> {
    match (set, probe) {
        (ProbeSet::FloorEverySite, _) => {
            return programs_for(probe, poll_slot, ProbeSet::All)
                .into_iter()
                .map(|(name, _)| (empty_program(name), 0))
                .collect();
        }
        (ProbeSet::Floor, Probe::Poll) => return vec![("floor_enter", 0), ("floor_return", 0)],
        (ProbeSet::Floor, Probe::GoStatus) => return vec![("floor_enter", 0)],
        (ProbeSet::Floor, _)
        | (
            ProbeSet::Lifecycle { .. },
            Probe::Poll
            | Probe::Abort
            | Probe::WorkerRun
            | Probe::Defer
            | Probe::NodeScope { .. }
            | Probe::NodeScopeClose
            | Probe::NodeMicrotasks
            | Probe::NodeEnqueueMicrotask,
        )
        | (
            ProbeSet::Lifecycle { wakes: false } | ProbeSet::NoWakes,
            Probe::Wake | Probe::Abort | Probe::WorkerRun | Probe::Defer,
        ) => return Vec::new(),
        (ProbeSet::All | ProbeSet::NoWakes | ProbeSet::Lifecycle { .. }, _) => {}
    }
    match probe {
        Probe::Poll => vec![("poll_enter", poll_slot), ("poll_return", 0)],
        Probe::SpawnEntry => vec![("spawn_entry", 0)],
        Probe::Spawn { kind, arg } => vec![(
            "task_spawn",
            cookie::new(
                arg.into(),
                tracer_common::SpawnKind::from(kind) as u32,
                false,
            ),
        )],
        Probe::SpawnReturn { kind } => vec![(
            "task_spawn_return",
            cookie::new(0, tracer_common::SpawnKind::from(kind) as u32, false),
        )],
        Probe::Complete => vec![("task_complete", 0)],
        Probe::Free { stack_slot } => vec![("task_free", cookie::new(0, 0, stack_slot))],
        Probe::Marker(kind) => vec![("resource_marker", kind as u64)],
        Probe::Wake => vec![("task_wake", 0)],
        Probe::Abort => vec![("task_abort", 0)],
        Probe::WorkerRun => vec![("worker_run", 0)],
        Probe::Defer => vec![("task_defer", 0)],
        Probe::GoStatus => vec![("go_status", 0)],
        Probe::GoPreemptPark => vec![("go_preempt_park", 0)],
        Probe::GoNewProc => vec![("go_newproc", 0)],
        Probe::NodeAsyncReset => vec![("node_async_reset", 0), ("node_async_reset_return", 0)],
        Probe::NodeScope { wrap } => vec![(
            "node_scope_enter",
            if wrap {
                tracer_common::node::scope_cookie::WRAP
            } else {
                tracer_common::node::scope_cookie::CONTEXT
            },
        )],
        Probe::NodeScopeClose => vec![("node_scope_close", 0)],
        Probe::NodeDestroy => vec![("node_destroy", 0)],
        Probe::NodeMicrotasks => vec![("node_microtasks_enter", 0), ("node_microtasks_return", 0)],
        Probe::NodeEnqueueMicrotask => vec![("node_enqueue_microtask", 0)],
    }
}

/// The empty program of the floors that stands in for program `name`: an
/// empty uretprobe for a return program, an empty uprobe for any other.
fn empty_program(name: &str) -> &'static str {
    if RETURN_PROGRAMS.contains(&name) {
        "floor_return"
    } else {
        "floor_enter"
    }
}

/// What attaching did, for the status line and the summary.
#[derive(Debug, Default)]
pub struct AttachReport {
    /// Attached sites by probe label ("poll" → 21).
    pub attached: BTreeMap<&'static str, usize>,
    /// Sites that could not be attached, with the kernel's reason.
    pub failed: Vec<(String, String)>,
    /// Wall time spent attaching.
    pub seconds: f64,
    /// Why per-site perf-event links were used instead of uprobe_multi links.
    pub fallback: Option<String>,
    /// Attached sites whose instruction the kernel single-steps at each hit,
    /// by probe label: each hit there costs several times an emulated one's.
    pub single_stepped: BTreeMap<&'static str, usize>,
}

impl AttachReport {
    /// Total attached sites.
    pub fn total(&self) -> usize {
        self.attached.values().sum()
    }

    /// "21 poll, 4 spawn, …".
    pub fn describe(&self) -> String {
        describe_counts(&self.attached)
    }

    /// The note on single-stepped sites, if any: "2 of 173 probe sites (1
    /// abort, 1 wake) …".
    pub fn single_step_note(&self) -> Option<String> {
        let stepped: usize = self.single_stepped.values().sum();
        if stepped == 0 {
            return None;
        }
        let total = self.total();
        let start = if stepped == 1 { "starts" } else { "start" };
        let hint = if 2 * stepped > total {
            "; that is most of them, as in unoptimised (debug) builds: an optimised build costs far less to trace"
        } else {
            ""
        };
        Some(format!(
            "{stepped} of {total} probe sites ({}) {start} with an instruction the kernel single-steps instead of emulating: a hit there costs several times more (about 12 µs against 1 µs, measured on Linux 6.18){hint}",
            describe_counts(&self.single_stepped)
        ))
    }
}

/// "21 poll, 4 spawn, …".
fn describe_counts(counts: &BTreeMap<&'static str, usize>) -> String {
    counts
        .iter()
        .map(|(label, count)| format!("{count} {label}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Health counters summed over CPUs, indexed by [`Counter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub [u64; COUNTER_COUNT as usize]);

impl Counters {
    /// One counter's value.
    pub fn get(&self, counter: Counter) -> u64 {
        self.0[counter as usize]
    }
}

/// The await-chain programs the BPF walk at `raw::poll` return reads (see
/// [`tracer_common::chain`]): by poll-site slot, node and edge, and the
/// `join!`/`select!` forks and their branches (see [`tracer_common::fork`]).
#[derive(Clone, Copy, Debug)]
pub struct ChainMaps<'a> {
    /// `CHAIN_SITES`: (slot, program).
    pub sites: &'a [(u32, chain::Site)],
    /// `CHAIN_NODES`, by node id.
    pub nodes: &'a [chain::Node],
    /// `CHAIN_EDGES`.
    pub edges: &'a [chain::Edge],
    /// `CHAIN_FORKS`, by fork id.
    pub forks: &'a [fork::Fork],
    /// `CHAIN_BRANCHES`.
    pub branches: &'a [fork::Branch],
}

/// A map's entry count for `len` entries (at least one).
fn entries(len: usize) -> anyhow::Result<u32> {
    u32::try_from(len.max(1)).context("too many await-chain entries for a BPF map")
}

/// Fills the await-chain maps of a loaded object.
fn fill_chains(ebpf: &mut Ebpf, chains: &ChainMaps<'_>) -> anyhow::Result<()> {
    fn array<'e, T: aya::Pod>(
        ebpf: &'e mut Ebpf,
        name: &str,
    ) -> anyhow::Result<Array<&'e mut MapData, T>> {
        let map = ebpf
            .map_mut(name)
            .ok_or_else(|| anyhow!("BPF map {name} missing"))?;
        Ok(Array::try_from(map)?)
    }
    /// Writes `entries` to array `name`, each at its index.
    fn fill<T: aya::Pod>(ebpf: &mut Ebpf, name: &str, entries: &[T]) -> anyhow::Result<()> {
        let mut map = array::<T>(ebpf, name)?;
        for (index, entry) in entries.iter().enumerate() {
            map.set(u32::try_from(index)?, *entry, 0)?;
        }
        Ok(())
    }
    let mut sites = array::<chain::Site>(ebpf, "CHAIN_SITES")?;
    for (slot, site) in chains.sites {
        sites.set(*slot, *site, 0)?;
    }
    fill(ebpf, "CHAIN_NODES", chains.nodes)?;
    fill(ebpf, "CHAIN_EDGES", chains.edges)?;
    fill(ebpf, "CHAIN_FORKS", chains.forks)?;
    fill(ebpf, "CHAIN_BRANCHES", chains.branches)
}

/// tracer's BPF programs, loaded and (after [`Probes::attach`]) attached.
pub struct Probes {
    ebpf: Ebpf,
    counters: PerCpuArray<MapData, u64>,
    /// The programs loaded for uprobe_multi links, or why they could not be.
    multi: Result<MultiPrograms, String>,
    /// uprobe_multi links: closing one detaches all of its sites.
    multi_links: Vec<OwnedFd>,
    /// `--bpf-stats`: the kernel counts each program's runs and time.
    stats: Option<StatsEnabled>,
}

impl Probes {
    /// Loads every program, with the target process and header layout baked in.
    ///
    /// With `follow_forks` (the layout of the `task/task_newtask` record), the
    /// processes the target creates are followed from then on: the tracepoint
    /// program is attached here, before any probe.
    pub fn load(
        tgid: u32,
        globals: &BpfGlobals,
        ring_bytes: u32,
        follow_forks: Option<NewTaskFields>,
        chains: Option<ChainMaps<'_>>,
    ) -> anyhow::Result<Self> {
        // Records wake the reader only once a quarter of the ring is unread; the
        // reader also drains on a timer (`session::DRAIN_INTERVAL`).
        let wakeup_bytes = u64::from(ring_bytes / 4);
        let follow = u32::from(follow_forks.is_some());
        let fields = follow_forks.unwrap_or(NewTaskFields {
            pid: 0,
            clone_flags: 0,
        });
        let mut loader = EbpfLoader::new();
        for (name, value) in &globals.0 {
            loader.override_global(name, value, true);
        }
        let chains_enabled = u32::from(chains.is_some());
        loader.override_global(chain::ENABLED, &chains_enabled, true);
        if let Some(chains) = &chains {
            let slots = chains
                .sites
                .iter()
                .map(|(slot, _)| *slot)
                .max()
                .unwrap_or(0);
            loader.map_max_entries("CHAIN_SITES", slots + 1);
            loader.map_max_entries("CHAIN_NODES", entries(chains.nodes.len())?);
            loader.map_max_entries("CHAIN_EDGES", entries(chains.edges.len())?);
            loader.map_max_entries("CHAIN_FORKS", entries(chains.forks.len())?);
            loader.map_max_entries("CHAIN_BRANCHES", entries(chains.branches.len())?);
        }
        let mut ebpf = loader
            .override_global(layout::TARGET_TGID, &tgid, true)
            .override_global(layout::FOLLOW_FORKS, &follow, true)
            .override_global(layout::NEWTASK_PID_OFFSET, &fields.pid, true)
            .override_global(layout::NEWTASK_FLAGS_OFFSET, &fields.clone_flags, true)
            .override_global(layout::RING_WAKEUP_BYTES, &wakeup_bytes, true)
            .map_max_entries("EVENTS", ring_bytes)
            .load(BPF_OBJECT)
            .context("the kernel refused tracer's BPF object")?;
        for name in PROGRAMS {
            let program: &mut UProbe = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("BPF program {name} missing from the object"))?
                .try_into()?;
            program.load().map_err(|error| refused(name, &error))?;
        }
        if follow_forks.is_some() {
            attach_fork_tracepoint(&mut ebpf)?;
        }
        let multi =
            MultiPrograms::load(&ebpf, BPF_OBJECT, &PROGRAMS).map_err(|error| format!("{error:#}"));
        if let Some(chains) = &chains {
            fill_chains(&mut ebpf, chains).context("cannot fill the await-chain maps")?;
        }
        let counters = ebpf
            .take_map("COUNTERS")
            .ok_or_else(|| anyhow!("BPF map COUNTERS missing"))?;
        let counters = PerCpuArray::try_from(counters)?;
        Ok(Self {
            ebpf,
            counters,
            multi,
            multi_links: Vec::new(),
            stats: None,
        })
    }

    /// `--bpf-stats`: has the kernel count how long each program runs, from now
    /// until the probes are detached.
    pub fn measure_program_times(&mut self) -> anyhow::Result<()> {
        self.stats = Some(StatsEnabled::new()?);
        Ok(())
    }

    /// What the kernel counted for each program since
    /// [`Probes::measure_program_times`]; `None` without it.
    pub fn program_times(&self) -> anyhow::Result<Option<ProgramTimes>> {
        if self.stats.is_none() {
            return Ok(None);
        }
        let mut times = ProgramTimes::default();
        let read = |name: &str, fd| {
            run_times(fd).with_context(|| format!("cannot read the run time of BPF program {name}"))
        };
        for (name, program) in self.ebpf.programs() {
            if let Ok(fd) = program.fd() {
                times.add(name, read(name, fd.as_fd())?);
            }
        }
        if let Ok(multi) = &self.multi {
            for (name, fd) in multi.programs() {
                times.add(name, read(name, fd)?);
            }
        }
        Ok(Some(times))
    }

    /// Attaches the sites of `object` that `set` uses (a path the kernel can
    /// open: the target's `/proc/PID/exe` works even if the file was replaced on
    /// disk), for process `only_pid`, or for every process that runs the file
    /// (`None`: `--follow-forks`, where the programs choose by the BPF map).
    ///
    /// Each program gets one uprobe_multi link for all its sites in the file; where
    /// the kernel refuses that, one perf-event link per site (slow to detach).
    /// `poll_slot` gives each poll site its cookie (see [`programs_for`]);
    /// `single_stepped` says whether the kernel single-steps a site's
    /// instruction (counted in the report).
    pub fn attach(
        &mut self,
        object: &Path,
        sites: &[Site],
        only_pid: Option<NonZeroU32>,
        set: ProbeSet,
        poll_slot: &dyn Fn(&Site) -> u64,
        single_stepped: &dyn Fn(&Site) -> bool,
    ) -> anyhow::Result<AttachReport> {
        let started = Instant::now();
        let mut report = AttachReport::default();
        let mut by_program: BTreeMap<&'static str, Vec<(u64, u64)>> = BTreeMap::new();
        for site in sites {
            for (name, cookie) in programs_for(site.probe, poll_slot(site), set) {
                by_program
                    .entry(name)
                    .or_default()
                    .push((site.file_offset, cookie));
            }
        }
        let mut multi_failed: Vec<&'static str> = Vec::new();
        for (name, offsets) in &by_program {
            let linked = match &self.multi {
                Ok(multi) => multi
                    .attach(
                        name,
                        RETURN_PROGRAMS.contains(name),
                        object,
                        offsets,
                        only_pid.map_or(0, NonZeroU32::get),
                    )
                    .map_err(|error| format!("{error:#}")),
                Err(reason) => Err(reason.clone()),
            };
            match linked {
                Ok(link) => self.multi_links.push(link),
                Err(reason) => {
                    report.fallback = Some(reason);
                    multi_failed.push(name);
                }
            }
        }
        for site in sites {
            let programs = programs_for(site.probe, poll_slot(site), set);
            if programs.is_empty() {
                continue;
            }
            let mut ok = true;
            for (name, cookie) in programs {
                if !multi_failed.contains(&name) {
                    continue;
                }
                if let Err(error) =
                    self.attach_perf_link(name, cookie, site.file_offset, object, only_pid)
                {
                    ok = false;
                    report
                        .failed
                        .push((site.symbol.clone(), format!("{name}: {error:#}")));
                }
            }
            if ok {
                *report.attached.entry(site.probe.label()).or_default() += 1;
                if single_stepped(site) {
                    *report.single_stepped.entry(site.probe.label()).or_default() += 1;
                }
            }
        }
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// One perf-event uprobe for one site: works on any kernel with uprobes.
    fn attach_perf_link(
        &mut self,
        name: &str,
        cookie: u64,
        file_offset: u64,
        object: &Path,
        only_pid: Option<NonZeroU32>,
    ) -> anyhow::Result<()> {
        let program: &mut UProbe = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("BPF program {name} missing"))?
            .try_into()?;
        let point = UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(file_offset),
            cookie: Some(cookie),
        };
        let scope = only_pid.map_or(UProbeScope::AllProcesses, UProbeScope::OneProcess);
        program.attach(point, object, scope)?;
        Ok(())
    }

    /// Loads the perf-event programs `programs` (those
    /// [`Probes::watch_writes`] attaches), ahead of the moment they are
    /// needed.
    pub fn load_watch_programs(&mut self, programs: &[&str]) -> anyhow::Result<()> {
        for name in programs {
            self.perf_program(name)?
                .load()
                .map_err(|error| refused(name, &error))?;
        }
        Ok(())
    }

    /// The perf-event program `name`.
    fn perf_program(&mut self, name: &str) -> anyhow::Result<&mut PerfEvent> {
        Ok(self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("BPF program {name} missing"))?
            .try_into()?)
    }

    /// Puts a hardware write-watchpoint on each word of `watches` (their
    /// programs loaded by [`Probes::load_watch_programs`]): its program runs
    /// after every write to the word by that thread. Each thread has four
    /// debug registers; the kernel refuses a fifth.
    pub fn watch_writes(&mut self, watches: &[WriteWatch]) -> anyhow::Result<()> {
        for watch in watches {
            let program = self.perf_program(watch.program)?;
            let length = match watch.len {
                4 => PerfBreakpointLength::Len4,
                8 => PerfBreakpointLength::Len8,
                other => bail!("no {other}-byte watchpoint"),
            };
            let config = PerfEventConfig::Breakpoint(BreakpointConfig::Data {
                r#type: PerfBreakpointType::Write,
                address: watch.address,
                length,
            });
            let scope = PerfEventScope::OneProcess {
                pid: watch.thread,
                cpu: None,
            };
            program
                .attach(config, scope, SamplePolicy::Period(1), false)
                .with_context(|| {
                    format!(
                        "cannot watch {:#x} in thread {} (perf_event_open of a hardware breakpoint)",
                        watch.address, watch.thread
                    )
                })?;
        }
        Ok(())
    }

    /// Starts event delivery: the programs ignore every hit until this is called,
    /// so call it once every site is attached.
    pub fn arm(&mut self) -> anyhow::Result<()> {
        self.set_armed(true).context("cannot arm the probes")
    }

    /// Stops every program from doing anything (the links stay): what is in the
    /// ring buffer then can be read at once, before [`Probes::detach`] waits on
    /// the kernel.
    pub fn disarm(&mut self) -> anyhow::Result<()> {
        self.set_armed(false).context("cannot disarm the probes")
    }

    fn set_armed(&mut self, armed: bool) -> anyhow::Result<()> {
        let map = self
            .ebpf
            .map_mut("ARMED")
            .ok_or_else(|| anyhow!("BPF map ARMED missing"))?;
        let mut slot: Array<&mut MapData, u32> = Array::try_from(map)?;
        slot.set(0, u32::from(armed), 0)?;
        Ok(())
    }

    /// `--follow-forks`: the descendants being traced now, each with the process
    /// that created it, as (child, parent).
    pub fn followed(&self) -> anyhow::Result<Vec<(u32, u32)>> {
        let map = self
            .ebpf
            .map("FOLLOWED")
            .ok_or_else(|| anyhow!("BPF map FOLLOWED missing"))?;
        let followed: HashMap<&MapData, u32, u32> = HashMap::try_from(map)?;
        followed
            .iter()
            .map(|entry| entry.context("cannot read the BPF map of followed processes"))
            .collect()
    }

    /// Starts tracing `child`, a descendant of the target created by `parent`
    /// (one that existed before tracer attached).
    pub fn follow(&mut self, child: u32, parent: u32) -> anyhow::Result<()> {
        self.followed_mut()?
            .insert(child, parent, 0)
            .with_context(|| format!("cannot follow process {child}"))
    }

    /// Stops tracing a descendant (it exited, or runs another program).
    pub fn unfollow(&mut self, pid: u32) -> anyhow::Result<()> {
        match self.followed_mut()?.remove(&pid) {
            // Already gone: nothing to stop.
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(error) => Err(error).context(format!("cannot stop following process {pid}")),
        }
    }

    /// The map of followed processes, to change.
    fn followed_mut(&mut self) -> anyhow::Result<HashMap<&mut MapData, u32, u32>> {
        let map = self
            .ebpf
            .map_mut("FOLLOWED")
            .ok_or_else(|| anyhow!("BPF map FOLLOWED missing"))?;
        Ok(HashMap::try_from(map)?)
    }

    /// The ring buffer every event arrives through. Can be taken once.
    pub fn take_events(&mut self) -> anyhow::Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or_else(|| anyhow!("BPF ring buffer EVENTS missing (already taken?)"))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// The health counters now, summed over CPUs, while the probes run: a live
    /// view reports drops as they happen (they are final only after [`Probes::detach`]).
    pub fn counters(&self) -> anyhow::Result<Counters> {
        let mut sums = Counters::default();
        for counter in Counter::ALL {
            let per_cpu = self.counters.get(&(counter as u32), 0)?;
            sums.0[counter as usize] = per_cpu.iter().sum();
        }
        Ok(sums)
    }

    /// Removes every probe from the target, unloads the programs, and returns the
    /// final health counters. Each link costs the kernel a grace-period wait, which
    /// is why sites share links; once they are gone no program runs any more, so
    /// the counters are final and every record they count as emitted is either in
    /// the ring buffer or counted as dropped.
    ///
    /// The programs are disarmed first: links go one by one, and a return probe
    /// outliving its entry probe would count every poll return as unmatched.
    pub fn detach(mut self) -> anyhow::Result<Counters> {
        self.disarm()?;
        let Self {
            ebpf,
            counters,
            multi,
            multi_links,
            stats: _,
        } = self;
        drop(multi_links);
        drop(multi);
        drop(ebpf);
        let mut sums = Counters::default();
        for counter in Counter::ALL {
            let per_cpu = counters.get(&(counter as u32), 0)?;
            sums.0[counter as usize] = per_cpu.iter().sum();
        }
        Ok(sums)
    }
}

/// The kernel's refusal of program `name`, with the end of its verifier log.
fn refused(name: &str, error: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow!(
        "the kernel refused BPF program {name}: {}",
        last_lines(&error.to_string(), 12)
    )
}

/// Loads `process_fork` and attaches it to the `task/task_newtask` tracepoint.
fn attach_fork_tracepoint(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    let (category, name) = NEW_TASK_TRACEPOINT;
    let program: &mut TracePoint = ebpf
        .program_mut("process_fork")
        .ok_or_else(|| anyhow!("BPF program process_fork missing from the object"))?
        .try_into()?;
    program
        .load()
        .map_err(|error| refused("process_fork", &error))?;
    program.attach(category, name).map_err(|error| {
        anyhow!(
            "--follow-forks: cannot attach to the tracepoint {category}/{name}: {error}. \
             It needs tracefs (as root: mount -t tracefs tracefs /sys/kernel/tracing) \
             and a kernel with tracepoints (CONFIG_TRACEPOINTS)"
        )
    })?;
    Ok(())
}

/// The end of a long message: verifier logs run to thousands of lines, and the
/// reason is in the last few.
fn last_lines(text: &str, keep: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= keep {
        return text.to_owned();
    }
    format!(
        "{}\n[… {} lines of verifier log …]\n{}",
        lines[0],
        lines.len() - keep - 1,
        lines[lines.len() - keep..].join("\n")
    )
}

/// Checks a ring size the user asked for: the kernel wants a power of two that
/// is a multiple of the page size.
pub fn check_ring_bytes(bytes: u32) -> anyhow::Result<u32> {
    if !bytes.is_power_of_two() || bytes < 4096 {
        bail!("--ring-size must be a power of two of at least 4096 bytes, got {bytes}");
    }
    Ok(bytes)
}

/// A `--ring-size` argument: a number of bytes the ring buffer can have.
pub fn parse_ring_size(text: &str) -> Result<u32, String> {
    let bytes: u64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of bytes"))?;
    let bytes = u32::try_from(bytes)
        .map_err(|_| format!("--ring-size must be below 4 GiB (4294967296), got {bytes}"))?;
    check_ring_bytes(bytes).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAKE_PROBES: [Probe; 4] = [Probe::Wake, Probe::Abort, Probe::WorkerRun, Probe::Defer];

    fn programs(set: ProbeSet, probes: &[Probe]) -> Vec<&'static str> {
        probes
            .iter()
            .flat_map(|probe| programs_for(*probe, 0, set))
            .map(|(name, _)| name)
            .collect()
    }

    #[test]
    fn every_event_set_attaches_the_wake_probes() {
        assert_eq!(
            programs(ProbeSet::All, &WAKE_PROBES),
            ["task_wake", "task_abort", "worker_run", "task_defer"]
        );
    }

    #[test]
    fn lifecycle_only_adds_no_wake_probe_unless_asked_and_then_only_the_waker_ones() {
        assert!(programs(ProbeSet::Lifecycle { wakes: false }, &WAKE_PROBES).is_empty());
        assert_eq!(
            programs(ProbeSet::Lifecycle { wakes: true }, &WAKE_PROBES),
            ["task_wake"]
        );
        assert!(programs(ProbeSet::NoWakes, &WAKE_PROBES).is_empty());
        assert_eq!(
            programs(ProbeSet::NoWakes, &[Probe::Poll]),
            ["poll_enter", "poll_return"]
        );
    }

    fn report(
        attached: &[(&'static str, usize)],
        stepped: &[(&'static str, usize)],
    ) -> AttachReport {
        AttachReport {
            attached: attached.iter().copied().collect(),
            single_stepped: stepped.iter().copied().collect(),
            ..AttachReport::default()
        }
    }

    #[test]
    fn single_stepped_sites_are_noted_with_their_probes_and_most_of_them_as_a_debug_build() {
        let release = report(
            &[("poll", 38), ("wake", 2), ("abort", 1)],
            &[("abort", 1), ("wake", 1)],
        );
        let note = release.single_step_note().unwrap();
        assert!(
            note.starts_with("2 of 41 probe sites (1 abort, 1 wake) start with"),
            "{note}"
        );
        assert!(!note.contains("debug"), "{note}");
        let debug = report(&[("poll", 38), ("wake", 2)], &[("poll", 38), ("wake", 1)]);
        assert!(
            debug
                .single_step_note()
                .unwrap()
                .contains("unoptimised (debug) builds")
        );
        let one = report(&[("wake", 2)], &[("wake", 1)]);
        assert!(
            one.single_step_note()
                .unwrap()
                .contains("(1 wake) starts with")
        );
        assert_eq!(report(&[("poll", 38)], &[]).single_step_note(), None);
    }

    /// Every probe kind a session can attach: Tokio's, Go's and Node's.
    const EVERY_PROBE: [Probe; 20] = [
        Probe::Poll,
        Probe::Spawn {
            kind: crate::runtime::SpawnKindTag::Task,
            arg: 1,
        },
        Probe::SpawnReturn {
            kind: crate::runtime::SpawnKindTag::Local,
        },
        Probe::SpawnEntry,
        Probe::Complete,
        Probe::Free { stack_slot: true },
        Probe::Marker(tracer_common::ResourceKind::Init),
        Probe::Wake,
        Probe::Abort,
        Probe::WorkerRun,
        Probe::Defer,
        Probe::GoStatus,
        Probe::GoPreemptPark,
        Probe::GoNewProc,
        Probe::NodeAsyncReset,
        Probe::NodeScope { wrap: true },
        Probe::NodeScopeClose,
        Probe::NodeDestroy,
        Probe::NodeMicrotasks,
        Probe::NodeEnqueueMicrotask,
    ];

    #[test]
    fn the_floor_traps_the_poll_sites_only() {
        assert_eq!(
            programs(ProbeSet::Floor, &[Probe::Poll, Probe::Wake, Probe::Defer]),
            ["floor_enter", "floor_return"]
        );
    }

    #[test]
    fn the_every_site_floor_puts_an_empty_program_wherever_tracer_trace_puts_one() {
        for probe in EVERY_PROBE {
            let traced = programs_for(probe, 7, ProbeSet::All);
            let floor = programs_for(probe, 7, ProbeSet::FloorEverySite);
            assert_eq!(floor.len(), traced.len(), "{probe:?}");
            for ((name, _), (empty, cookie)) in traced.iter().zip(&floor) {
                let at_return = RETURN_PROGRAMS.contains(name);
                assert_eq!(
                    *empty,
                    if at_return {
                        "floor_return"
                    } else {
                        "floor_enter"
                    },
                    "{probe:?}: {name}"
                );
                assert_eq!(*cookie, 0);
            }
        }
        assert_eq!(
            programs(
                ProbeSet::FloorEverySite,
                &[
                    Probe::Poll,
                    Probe::Defer,
                    Probe::Wake,
                    Probe::SpawnReturn {
                        kind: crate::runtime::SpawnKindTag::Task
                    }
                ]
            ),
            [
                "floor_enter",
                "floor_return",
                "floor_enter",
                "floor_enter",
                "floor_return"
            ]
        );
    }
}
