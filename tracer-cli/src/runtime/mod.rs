//! Runtime adapters: which functions of a runtime to probe, how to read its
//! objects, and how its records become the model's.
//!
//! A runtime is one folder here (`tokio/`, `go/`, `node/`) implementing
//! [`RuntimeAdapter`], and one line in [`ADAPTERS`]; the kernel side, the model
//! and the sinks do not know which runtime they serve. The embedder crate's
//! markers ([`markers`]) are found in any process, with any runtime or none.

pub mod go;
pub mod markers;
pub mod names;
pub mod node;
pub mod probe_point;
pub mod sites;
pub mod tokio;

use tracer_common::{RawEvent, RawSpawnEvent, ResourceKind, SpawnKind};

use crate::{
    model::event::ResourceType,
    runtime::{names::SessionNames, sites::TargetObject},
};

/// Every runtime tracer knows, in the order a process is searched for them.
pub const ADAPTERS: &[&dyn RuntimeAdapter] = &[&tokio::Tokio, &go::Go, &node::Node];

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
    /// Go's `runtime.casgstatus`: every goroutine status change.
    GoStatus,
    /// Go's `runtime.preemptPark`: a goroutine stopped by async preemption.
    GoPreemptPark,
    /// Go's `runtime.newproc1`: who creates the next goroutine (Go before 1.21).
    GoNewProc,
    /// Node's `AsyncWrap::AsyncReset(Local<Object>, double, bool)`: a native
    /// resource gets its id, trigger and provider (`init` at its return).
    NodeAsyncReset,
    /// A Node `InternalCallbackScope` constructor: a `before`. `wrap`: the
    /// `(AsyncWrap*, int)` one, else `(Environment*, Local<Object>, const
    /// async_context&, int)`.
    NodeScope {
        /// The constructor takes the `AsyncWrap` itself.
        wrap: bool,
    },
    /// Node's `InternalCallbackScope::Close()`: the `after` of its scope.
    NodeScopeClose,
    /// Node's `~AsyncWrap` or `AsyncWrap::EmitDestroy(bool)`: a `destroy`.
    NodeDestroy,
    /// V8's `MicrotaskQueue::RunMicrotasks` (entry and return), with
    /// `--js-resources` only: where promise callbacks run.
    NodeMicrotasks,
    /// V8's `MicrotaskQueue::EnqueueMicrotask(Isolate*, Local<Function>)`,
    /// with `--js-resources` only: `queueMicrotask`.
    NodeEnqueueMicrotask,
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
            Probe::GoStatus => "status",
            Probe::GoPreemptPark => "preempt",
            Probe::GoNewProc => "newproc",
            Probe::NodeAsyncReset => "async reset",
            Probe::NodeScope { .. } => "callback scope",
            Probe::NodeScopeClose => "scope close",
            Probe::NodeDestroy => "destroy",
            Probe::NodeMicrotasks => "microtasks",
            Probe::NodeEnqueueMicrotask => "enqueue microtask",
        }
    }

    /// Attached only with `--js-resources`.
    pub fn js_resources_only(self) -> bool {
        matches!(self, Probe::NodeMicrotasks | Probe::NodeEnqueueMicrotask)
    }
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

/// Values of the BPF programs' load-time globals (layouts, address ranges), by
/// the global's name in `tracer_common`: what a runtime adapter read from the
/// binary, handed to the kernel side without it knowing what they mean.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BpfGlobals(pub Vec<(&'static str, u64)>);

/// A hardware write-watchpoint a runtime's mapping asks for: `program` runs
/// after every write by `thread` to the `len` bytes at `address`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteWatch {
    /// The perf-event program to run.
    pub program: &'static str,
    /// The thread (its tid) whose writes are watched.
    pub thread: u32,
    /// The watched word.
    pub address: u64,
    /// Its size: 4 or 8.
    pub len: u8,
}

/// What watching a runtime's JS-level resources takes from the kernel side.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JsWatching {
    /// BPF globals to set.
    pub globals: BpfGlobals,
    /// The perf-event programs its watchpoints run, to load before.
    pub programs: Vec<&'static str>,
}

/// A record the model takes: what a runtime's own records are mapped to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelRecord {
    /// Applied with `TaskModel::apply`.
    Plain(RawEvent),
    /// Applied with `TaskModel::apply_spawn` (it carries what names its task).
    Named(RawSpawnEvent),
}

/// Turns a runtime's own ring records into [`ModelRecord`]s, for a runtime whose
/// BPF programs report something other than the model's records (Go reports
/// status transitions).
pub trait RecordMapper: Send {
    /// Maps `record` if it is one of this runtime's (then returns true), giving
    /// each model record it stands for to `out`, in order.
    fn map(&mut self, record: &[u8], out: &mut dyn FnMut(ModelRecord)) -> bool;

    /// Summary lines: what the mapping set aside or could not finish, counted.
    fn summary(&self) -> Vec<String>;

    /// Asks the mapping to report the runtime's JS-level resources through
    /// hardware watchpoints (`--js-resources`): what that takes, or `None`
    /// when the runtime has none.
    fn watch_js_resources(&mut self) -> Option<JsWatching> {
        None
    }

    /// The watchpoints the mapping wants armed now, once it has seen where
    /// they go; given once.
    fn take_watches(&mut self) -> Vec<WriteWatch> {
        Vec::new()
    }

    /// What arming the watchpoints [`RecordMapper::take_watches`] gave did.
    fn watches_armed(&mut self, _result: Result<(), String>) {}
}

/// What an adapter prepares for a session once its sites are found.
pub struct Prepared {
    /// The BPF globals its programs read.
    pub globals: BpfGlobals,
    /// Names for the model, and the poll sites' slots.
    pub names: SessionNames,
    /// The type of the runtime's plain tasks (`tokio.task`, `go.goroutine`).
    pub default_type: ResourceType,
    /// The mapping of its own records, when its programs write any.
    pub records: Option<Box<dyn RecordMapper>>,
    /// The runtime's version found in the binary ("1.54.1", "go1.23.5").
    pub version: Option<String>,
}

impl Prepared {
    /// For a process that runs no runtime tracer knows and only declares its own
    /// resources (`tracer-resource`): nothing to read, name or map.
    pub fn markers_only() -> Self {
        Self {
            globals: BpfGlobals::default(),
            names: SessionNames::without_sites(crate::model::names::NameTable::default()),
            default_type: ResourceType::TOKIO_TASK,
            records: None,
            version: None,
        }
    }
}

/// A runtime whose functions tracer knows how to probe.
pub trait RuntimeAdapter {
    /// The runtime's name, as recordings and the start line spell it ("tokio", "go").
    fn name(&self) -> &'static str;

    /// The runtime's name in sentences ("Tokio", "Go").
    fn display_name(&self) -> &'static str;

    /// A byte string every interesting mangled symbol contains: a cheap filter
    /// before demangling hundreds of thousands of names.
    fn symbol_hint(&self) -> &'static [u8];

    /// Symbols are given to [`RuntimeAdapter::probe_for`] as mangled (both of
    /// its arguments), not demangled as Rust names: for a C++ runtime, whose
    /// Itanium names tell overloads and constructor variants apart.
    fn mangled_names(&self) -> bool {
        false
    }

    /// The probe for a function, given its demangled name (hash removed) and that
    /// name with generic arguments removed; `None` for functions not probed.
    fn probe_for(&self, demangled: &str, path: &str) -> Option<Probe>;

    /// Reads what the session needs from the objects holding the runtime's sites
    /// in process `pid`: the layout of its objects (a version or layout it does
    /// not know is an error naming it and the supported ones: tracing it could
    /// decode garbage), names, and the mapping of its records. It may drop sites
    /// the binary turns out not to need.
    fn prepare(&self, pid: u32, objects: &mut Vec<TargetObject>) -> anyhow::Result<Prepared>;

    /// What must be found for the trace to be complete: for each need, the probes
    /// any one of which meets it, and what it gives the user.
    fn required(&self) -> &'static [(&'static [Probe], &'static str)];

    /// The runtime and its version, told from an object's bytes without its
    /// symbols ("Node.js 20.20.2"), for the error when no symbol names its
    /// functions; `None` when not told (the default).
    fn recognize(&self, _data: &[u8]) -> Option<String> {
        None
    }
}
