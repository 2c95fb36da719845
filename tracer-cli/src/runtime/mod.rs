//! Runtime adapters: which functions of a runtime to probe, and how.
//!
//! Tokio is the first adapter; another runtime is another implementation of
//! [`RuntimeAdapter`], not a change to the pipeline.

// Nothing calls the Go analysis until the Go adapter lands (issue 17); its tests do.
#[cfg_attr(not(test), expect(dead_code))]
pub mod go;
pub mod markers;
pub mod sites;
pub mod tokio;

use tracer_common::{ResourceKind, SpawnKind};

/// How a probed function is used. One variant, one BPF program (or a pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Probe {
    /// A task's poll: `before` at entry, `after` at return; the header is arg 0.
    Poll,
    /// A spawn path that receives the new task's header in argument `arg`.
    Spawn {
        /// Which spawn path it is.
        kind: SpawnKindTag,
        /// Argument register holding the header.
        arg: u8,
    },
    /// A spawn path that returns the new task's header.
    SpawnReturn {
        /// Which spawn path it is.
        kind: SpawnKindTag,
    },
    /// A `#[track_caller]` spawn entry point (`tokio::spawn`, `Handle::spawn`, …):
    /// its `Location` argument is the location of the spawn that follows.
    SpawnEntry,
    /// The task's future finished or was cancelled; the header is arg 0.
    Complete,
    /// Task memory is freed; the header (or a stack slot holding it) is arg 0.
    Free {
        /// The argument may be a stack slot holding the header pointer.
        stack_slot: bool,
    },
    /// An embedder marker function of the `tracer-resource` crate.
    Marker(ResourceKind),
    /// A task's waker is woken; the header is arg 0.
    Wake,
    /// A task is aborted, which queues it if idle; arg 0 points at the header
    /// pointer (`&RawTask`).
    Abort,
    /// A runtime worker starts its loop inside its launcher task's poll: that
    /// task is the runtime's, not a user's.
    WorkerRun,
    /// The running task defers a wake until after its poll (`yield_now`).
    Defer,
}

/// [`SpawnKind`] with the traits a map key needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpawnKindTag {
    /// `tokio::spawn`.
    Task,
    /// `spawn_blocking` and worker launchers.
    Blocking,
    /// `spawn_local`.
    Local,
}

impl From<SpawnKindTag> for SpawnKind {
    fn from(tag: SpawnKindTag) -> Self {
        match tag {
            SpawnKindTag::Task => SpawnKind::Task,
            SpawnKindTag::Blocking => SpawnKind::Blocking,
            SpawnKindTag::Local => SpawnKind::Local,
        }
    }
}

impl Probe {
    /// A short label for status lines ("poll", "spawn", …).
    pub fn label(self) -> &'static str {
        match self {
            Probe::Poll => "poll",
            Probe::Spawn { kind, .. } | Probe::SpawnReturn { kind } => match kind {
                SpawnKindTag::Task => "spawn",
                SpawnKindTag::Blocking => "spawn_blocking",
                SpawnKindTag::Local => "spawn_local",
            },
            Probe::SpawnEntry => "spawn entry",
            Probe::Complete => "complete",
            Probe::Free { .. } => "free",
            Probe::Marker(_) => "resource marker",
            Probe::Wake => "wake",
            Probe::Abort => "abort",
            Probe::WorkerRun => "worker",
            Probe::Defer => "defer",
        }
    }
}

/// Offsets the BPF programs use to read a task id: `*(hdr + *(*(hdr + vtable_field) + id_offset_slot))`.
/// The default (zeros) is for sessions that read no task header: a target that
/// only declares `tracer-resource` markers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderLayout {
    /// Offset of the vtable pointer in the task header.
    pub vtable_field: u64,
    /// Offset, inside the vtable, of the word that holds the id's offset in the task.
    pub id_offset_slot: u64,
}

/// Where, in the target process, the binary's `Location` constants are: the
/// spawn entry probe keeps an argument in this range as the spawn's location.
/// Empty (the default) when unknown: no location is taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocationRange {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
}

/// A runtime whose functions tracer knows how to probe.
pub trait RuntimeAdapter {
    /// The runtime's name, as users know it ("tokio").
    fn name(&self) -> &'static str;

    /// A byte string every interesting mangled symbol contains: a cheap filter
    /// before demangling hundreds of thousands of names.
    fn symbol_hint(&self) -> &'static [u8];

    /// The probe for a function, given its demangled name (hash removed) and that
    /// name with generic arguments removed; `None` for functions not probed.
    fn probe_for(&self, demangled: &str, path: &str) -> Option<Probe>;

    /// Where the task id is in a task header of the runtime `version` found in the
    /// binary (`None`: the binary does not say); given to the BPF programs. A
    /// version whose layout is not known is an error naming it and the supported
    /// versions: tracing it could decode garbage.
    fn layout(&self, version: Option<&str>) -> anyhow::Result<HeaderLayout>;

    /// What must be found for the trace to be complete: for each need, the probes
    /// any one of which meets it, and what it gives the user.
    fn required(&self) -> &'static [(&'static [Probe], &'static str)];
}
