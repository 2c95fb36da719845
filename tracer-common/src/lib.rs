//! The vocabulary shared by tracer's BPF programs and its userspace.
//!
//! One probe hit becomes one [`RawEvent`] in the ring buffer. The types here are
//! `#[repr(C)]` so the kernel side writes exactly the bytes the user side reads,
//! and every enum is `#[repr(u32)]` with a checked `TryFrom<u32>`: an unknown
//! value is a decoding error, never a guess.
#![no_std]

pub mod fork;
pub mod go;
pub mod node;

/// What a probe saw. Stored in [`RawEvent::kind`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawKind {
    /// A task was bound to its scheduler: `trigger_id` holds the spawning task.
    Spawn = 1,
    /// `raw::poll` entered for `task_id`.
    PollStart = 2,
    /// `raw::poll` returned for `task_id`. When the task's await chain was read
    /// (see [`chain`]), `detail` holds [`chain::detail`] (the site's slot and
    /// how many state bytes were read) and `trigger_id` the state bytes, the
    /// outermost level in its lowest byte; otherwise both are 0. A chain that
    /// ends at a `join!` or `select!` comes in a [`fork::TreeEvent`], with
    /// its pending branches.
    PollEnd = 3,
    /// The task's future finished or was cancelled (`Harness::complete`).
    Complete = 4,
    /// The task's memory is being freed.
    Free = 5,
    /// The task's waker was woken (`waker::wake_by_val`/`wake_by_ref`):
    /// `trigger_id` holds the waking task (see [`PollFrame::flags`]), 0 if none;
    /// `detail` the task's [`state`] bits just before.
    Wake = 6,
    /// The task was aborted (`RawTask::remote_abort`), which queues it if it was
    /// idle; `detail` holds its [`state`] bits just before.
    Abort = 7,
}

impl TryFrom<u32> for RawKind {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, u32> {
        Ok(match value {
            1 => Self::Spawn,
            2 => Self::PollStart,
            3 => Self::PollEnd,
            4 => Self::Complete,
            5 => Self::Free,
            6 => Self::Wake,
            7 => Self::Abort,
            other => return Err(other),
        })
    }
}

/// Which spawn path created a task. Stored in [`RawEvent::detail`] of a spawn.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnKind {
    /// `tokio::spawn` on either scheduler.
    Task = 0,
    /// `spawn_blocking`, and the runtime's own worker launchers.
    Blocking = 1,
    /// `spawn_local` on a `LocalSet`.
    Local = 2,
}

impl TryFrom<u32> for SpawnKind {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, u32> {
        Ok(match value {
            0 => Self::Task,
            1 => Self::Blocking,
            2 => Self::Local,
            other => return Err(other),
        })
    }
}

/// One probe hit, as written into the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEvent {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC.
    pub ts_ns: u64,
    /// `bpf_get_current_pid_tgid()`: tgid in the high half, thread id in the low.
    pub pid_tgid: u64,
    /// Tokio's task id (`tokio::task::Id`), read from the task header.
    pub task_id: u64,
    /// Spawn: the innermost task being polled on this thread, 0 if none. Wake:
    /// the task whose code is running on this thread, 0 if none.
    pub trigger_id: u64,
    /// A [`RawKind`].
    pub kind: u32,
    /// Spawn: a [`SpawnKind`]. Poll start: the `raw::poll` site's slot in
    /// userspace's table of poll sites (its attach cookie), 0 when unknown. Wake,
    /// abort: the task's [`state`] bits, and for a wake [`state::DEFERRED`].
    pub detail: u32,
}

/// A spawn or a wake, as written into the ring buffer: the [`RawEvent`] and what
/// names the task. Only spawns and wakes carry these two words, so polls keep
/// their small record. A wake carries the vtable because it is often the first
/// event of a task that existed before attach (a timer or I/O wakes it before
/// its next poll), whose `init` must name it then.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawSpawnEvent {
    /// The spawn or wake itself, `kind` [`RawKind::Spawn`] or [`RawKind::Wake`].
    pub event: RawEvent,
    /// The address (in the process) of the task's vtable, one per future type.
    pub vtable: u64,
    /// Spawn: the `&'static Location` the spawn entry point (`tokio::spawn`, …)
    /// was given on this thread just before, as a candidate pointer: userspace
    /// checks it against the binary before trusting it. 0 when none was seen, and
    /// for a wake.
    pub location: u64,
}

/// Userspace tells records apart by size: every record type has its own.
const _: () = {
    let sizes = [
        size_of::<RawEvent>(),
        size_of::<RawSpawnEvent>(),
        size_of::<RawResourceEvent>(),
        size_of::<go::RawGoEvent>(),
        size_of::<node::RawNodeEvent>(),
        size_of::<fork::TreeEvent>(),
    ];
    let mut i = 0;
    while i < sizes.len() {
        let mut j = i + 1;
        while j < sizes.len() {
            assert!(sizes[i] != sizes[j]);
            j += 1;
        }
        i += 1;
    }
};

/// What a spawn entry point saw, per thread, until the spawn it leads to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SpawnCall {
    /// The candidate `&'static Location` pointer, 0 if no argument register held
    /// one.
    pub location: u64,
    /// Stack pointer at the entry: the spawn that follows runs deeper (lower).
    pub sp: u64,
}

impl RawEvent {
    /// A record of `kind` for task `task_id` at `ts_ns` on thread `pid_tgid`:
    /// what a runtime's own records (Go's, Node's) are mapped to in userspace.
    pub const fn at(
        ts_ns: u64,
        pid_tgid: u64,
        kind: RawKind,
        task_id: u64,
        trigger_id: u64,
        detail: u32,
    ) -> Self {
        Self {
            ts_ns,
            pid_tgid,
            task_id,
            trigger_id,
            kind: kind as u32,
            detail,
        }
    }

    /// The process id (tgid) the event came from.
    pub fn pid(&self) -> u32 {
        (self.pid_tgid >> 32) as u32
    }

    /// The thread id the event came from.
    pub fn tid(&self) -> u32 {
        self.pid_tgid as u32
    }
}

/// What an embedder marker function (`tracer_resource_v1_*`, from the
/// `tracer-resource` crate) reported. Stored in [`RawResourceEvent::kind`], and
/// given to the marker's probe as its attach cookie.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    /// `tracer_resource_v1_init(async_id, trigger_id, type_ptr, type_len)`.
    Init = 1,
    /// `tracer_resource_v1_before(async_id)`.
    Before = 2,
    /// `tracer_resource_v1_after(async_id)`.
    After = 3,
    /// `tracer_resource_v1_destroy(async_id)`.
    Destroy = 4,
}

impl TryFrom<u32> for ResourceKind {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, u32> {
        Ok(match value {
            1 => Self::Init,
            2 => Self::Before,
            3 => Self::After,
            4 => Self::Destroy,
            other => return Err(other),
        })
    }
}

/// Bytes of a resource's type name copied into a [`RawResourceEvent`]; a longer
/// name is cut there (and userspace marks it as cut).
pub const RESOURCE_TYPE_CAPACITY: usize = 64;

/// [`RawResourceEvent::type_len`] when the type name could not be read from the
/// process at all (lengths are saturated one below it).
pub const RESOURCE_TYPE_UNREADABLE: u32 = u32::MAX;

/// One embedder marker hit, as written into the ring buffer. A record of this
/// size is one of these, a record of `size_of::<RawEvent>()` a Tokio event: the
/// Tokio probes keep their small event.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawResourceEvent {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC.
    pub ts_ns: u64,
    /// `bpf_get_current_pid_tgid()`: tgid in the high half, thread id in the low.
    pub pid_tgid: u64,
    /// The resource's id, as the application's `AsyncResource::async_id()`.
    pub async_id: u64,
    /// Init only: the resource or task that caused it, 0 for none.
    pub trigger_id: u64,
    /// A [`ResourceKind`].
    pub kind: u32,
    /// Init only: the type name's length as the application gave it (saturated);
    /// more than [`RESOURCE_TYPE_CAPACITY`] means `type_name` holds its start only.
    pub type_len: u32,
    /// Init only: the first bytes of the type name, as the application gave them
    /// (not checked to be UTF-8).
    pub type_name: [u8; RESOURCE_TYPE_CAPACITY],
}

/// Cookie given to a spawn or free site at attach time: where the task header is.
///
/// Bits 0..8: the argument register index; bits 8..16: a [`SpawnKind`]; bit 16:
/// [`STACK_SLOT`].
pub mod cookie {
    /// The argument may be the address of a stack slot that holds the header
    /// pointer rather than the header itself: `drop_in_place::<Box<Cell>>` takes
    /// `*mut Box<Cell>` in debug builds, while optimised builds pass the box itself.
    /// A task cell is never on the thread's stack, so an argument just above the
    /// stack pointer is such a slot and is read once more.
    pub const STACK_SLOT: u64 = 1 << 16;

    /// Builds a site cookie.
    pub const fn new(arg: u64, spawn_kind: u32, stack_slot: bool) -> u64 {
        (arg & 0xff) | ((spawn_kind as u64 & 0xff) << 8) | if stack_slot { STACK_SLOT } else { 0 }
    }

    /// The argument index in a cookie.
    pub const fn arg(cookie: u64) -> u64 {
        cookie & 0xff
    }

    /// The spawn kind in a cookie.
    pub const fn spawn_kind(cookie: u64) -> u32 {
        ((cookie >> 8) & 0xff) as u32
    }

    /// Whether the argument may be a stack slot holding the header pointer.
    pub const fn stack_slot(cookie: u64) -> bool {
        cookie & STACK_SLOT != 0
    }

    /// How far above the stack pointer an argument counts as a stack slot.
    pub const STACK_WINDOW: u64 = 1 << 20;
}

/// Health counters the BPF side keeps in a per-CPU array, by index.
///
/// Nothing is lost silently: every one of these is summed and shown to the user.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// The ring buffer was full: the event was dropped.
    RingFull = 0,
    /// A task header could not be read (`bpf_probe_read_user` failed).
    ReadFailed = 1,
    /// A header's vtable did not start with the `raw::poll` being run: the Tokio
    /// layout is not the one we read.
    LayoutMismatch = 2,
    /// Polls nested deeper than [`MAX_POLL_DEPTH`]: trigger ids may be wrong.
    StackOverflow = 3,
    /// A poll returned whose start was never seen (attached mid-poll).
    UnmatchedReturn = 4,
    /// A record the programs tried to write to the ring buffer, whether it fit
    /// or not: every one is either delivered or counted in [`Counter::RingFull`].
    Emitted = 5,
}

/// Number of [`Counter`]s.
pub const COUNTER_COUNT: u32 = 6;

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; COUNTER_COUNT as usize] = [
        Counter::RingFull,
        Counter::ReadFailed,
        Counter::LayoutMismatch,
        Counter::StackOverflow,
        Counter::UnmatchedReturn,
        Counter::Emitted,
    ];
}

/// Depth of the per-thread stack of tasks being polled (polls nest: a worker
/// thread runs inside its own blocking task's poll).
pub const MAX_POLL_DEPTH: usize = 16;

/// One frame of a thread's poll stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PollFrame {
    /// Stack pointer at `raw::poll` entry: identifies the frame, and frames below
    /// the current stack pointer are known to be gone (their return was missed).
    pub sp: u64,
    /// The task being polled.
    pub task_id: u64,
    /// Its header (`raw::poll`'s argument), for the await chain read at return.
    pub header: u64,
    /// The `raw::poll` site's slot (its attach cookie), 0 when unknown.
    pub slot: u64,
    /// [`frame::RUNTIME`], [`frame::COMPLETING`]: whose code a wake inside this
    /// poll is run by (what `tokio::task::try_id()` would say).
    pub flags: u64,
}

/// Bits of a Tokio task's state word (`Header::state`, +0x00; Tokio 1.x).
pub mod state {
    /// A poll of the task is running.
    pub const RUNNING: u32 = 0x1;
    /// The future finished or was cancelled.
    pub const COMPLETE: u32 = 0x2;
    /// The task is queued (or will be, after the running poll).
    pub const NOTIFIED: u32 = 0x4;
    /// Not Tokio's: set by the wake probe on a wake that is the one the task
    /// deferred to after its poll (`yield_now`, an exhausted coop budget).
    pub const DEFERRED: u32 = 0x100;
}

/// [`PollFrame::flags`].
pub mod frame {
    /// The task is a runtime worker's launcher (its poll runs
    /// `multi_thread::worker::run`): not a user task, so wakes from the worker's
    /// own code have no waker task.
    pub const RUNTIME: u64 = 1;
    /// The task's `Harness::complete` has begun: Tokio runs it outside the task's
    /// id scope, so a wake from there (the JoinHandle's) is the outer frame's.
    pub const COMPLETING: u64 = 2;
}

/// Slots of [`PollStack::deferred`]: more than the deferrals a Tokio worker
/// gathers between two runs of its deferred wakes (at most one a task it runs
/// meanwhile: its event interval, 61 by default), so that a slot is seldom taken.
pub const DEFERRED_SLOTS: usize = 64;

/// The tasks being polled on one thread, innermost last, and the wakes they
/// deferred there.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PollStack {
    /// Number of valid frames.
    pub depth: u64,
    /// Frames, outermost first.
    pub frames: [PollFrame; MAX_POLL_DEPTH],
    /// Tasks that deferred a wake of themselves on this thread
    /// (`context::defer`: Tokio runs the wake later on the same thread) and
    /// have not been woken since, at their id modulo [`DEFERRED_SLOTS`]; 0 is
    /// a free slot.
    pub deferred: [u64; DEFERRED_SLOTS],
    /// Deferrals of this thread that found their slot taken and went to a map
    /// shared by all threads instead, not yet woken: while not 0, a wake here
    /// looks there too.
    pub spilled: u64,
}

/// Await chains: where a task is parked, read at the return of a Pending poll.
///
/// Userspace compiles, once at load time, each `raw::poll` site's chain program
/// from the type DWARF: [`Site`] (by the site's slot) says where the task's
/// `Stage` tag and future are and the first async level; each [`Node`] (one per
/// async state machine type) where its state byte is and, for each suspend
/// state, an [`Edge`] to the state machine it awaits (offsets and at most one
/// pointer hop). The BPF side walks at most [`MAX_LEVELS`] levels, one byte a
/// level, and puts the bytes in the poll-end record itself (its `trigger_id`):
/// the common poll record keeps its size; userspace decodes the bytes against
/// the same tables.
pub mod chain {
    /// Async levels read at most: one state byte each.
    pub const MAX_LEVELS: usize = 8;
    /// The first suspend state of a state machine (0 unresumed, 1 returned,
    /// 2 panicked).
    pub const FIRST_SUSPEND: u8 = 3;
    /// Bit of [`super::RawEvent::detail`] of a poll end that carries a chain.
    pub const CARRIED: u32 = 1 << 31;

    /// A poll end's `detail`: [`CARRIED`], the number of state bytes (1 to
    /// [`MAX_LEVELS`]) in bits 24..28, the site's slot below.
    pub const fn detail(slot: u32, levels: u32) -> u32 {
        CARRIED | ((levels & 0xf) << 24) | (slot & 0x00ff_ffff)
    }

    /// The (slot, levels) of a poll end's `detail`, when it carries a chain.
    pub const fn parse(detail: u32) -> Option<(u32, u32)> {
        if detail & CARRIED == 0 {
            None
        } else {
            Some((detail & 0x00ff_ffff, (detail >> 24) & 0xf))
        }
    }

    /// Largest slot a chain can name.
    pub const MAX_SLOT: u32 = 0x00ff_ffff;

    /// One poll site's program, by slot (BPF array `CHAIN_SITES`).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Site {
        /// The first level's node, 0 when the site has no chain program.
        pub node: u32,
        /// Bytes of the `Stage` tag (1, 2, 4 or 8).
        pub stage_size: u32,
        /// Offset of the `Stage` tag from the task header.
        pub stage_offset: u32,
        /// The tag's value while the future is alive (`Running`).
        pub running: u32,
        /// From the task header to the first state machine.
        pub root: Edge,
    }

    /// How to go from one future to the state machine it holds: add `pre`,
    /// then, when `hop` is 1, read a pointer there, then add `post`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Edge {
        /// The next level's node; 0: the chain ends here (a leaf future, or
        /// one the walk cannot follow); with [`crate::fork::FORK`] set, a
        /// fork (a `join!` or `select!`) whose branches the walk reads.
        pub next: u32,
        /// 1 when a pointer is read after `pre`.
        pub hop: u32,
        /// Offset added first.
        pub pre: u32,
        /// Offset added after the hop.
        pub post: u32,
    }

    /// One async state machine type (BPF array `CHAIN_NODES`, by node id).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Node {
        /// Offset of its `__state` byte.
        pub state_offset: u32,
        /// Its first suspend state's edge in `CHAIN_EDGES`.
        pub first_edge: u32,
        /// Number of suspend states (edges): states
        /// `FIRST_SUSPEND..FIRST_SUSPEND + edges`.
        pub edges: u32,
        /// Unused, 0.
        pub pad: u32,
    }

    /// Global: non-zero when the chain maps are filled (read-only: with 0 the
    /// verifier drops the walk).
    pub const ENABLED: &str = "CHAINS_ENABLED";
}

/// How many descendants `--follow-forks` can trace at once (entries of the BPF
/// map `FOLLOWED`).
pub const MAX_FOLLOWED: u32 = 4096;

/// Tokio task-header layout, given to the BPF programs at load time.
pub mod layout {
    /// Global: offset of the vtable pointer in the task `Header`.
    pub const VTABLE_FIELD: &str = "LAYOUT_VTABLE_FIELD";
    /// Global: offset of `id_offset` inside the `Vtable`.
    pub const ID_OFFSET_SLOT: &str = "LAYOUT_ID_OFFSET_SLOT";
    /// Global: start (in the process) of the read-only data where the binary's
    /// `Location` constants are: a spawn entry's argument in
    /// `LOCATION_START..LOCATION_END` is the location candidate.
    pub const LOCATION_START: &str = "LOCATION_START";
    /// Global: end of that range (see [`LOCATION_START`]); 0 disables locations.
    pub const LOCATION_END: &str = "LOCATION_END";
    /// Global: the process whose events are kept (tgid).
    pub const TARGET_TGID: &str = "TARGET_TGID";
    /// Global: unread ring-buffer bytes above which a record wakes the reader.
    pub const RING_WAKEUP_BYTES: &str = "RING_WAKEUP_BYTES";
    /// Global: non-zero to trace the target's descendants too (`--follow-forks`).
    pub const FOLLOW_FORKS: &str = "FOLLOW_FORKS";
    /// Global: offset of `pid` in the `task/task_newtask` tracepoint record.
    pub const NEWTASK_PID_OFFSET: &str = "NEWTASK_PID_OFFSET";
    /// Global: offset of `clone_flags` in the `task/task_newtask` tracepoint record.
    pub const NEWTASK_FLAGS_OFFSET: &str = "NEWTASK_FLAGS_OFFSET";
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain old data, every bit pattern is valid.
    unsafe impl aya::Pod for super::RawEvent {}
    // SAFETY: plain old data, every bit pattern is valid.
    unsafe impl aya::Pod for super::RawResourceEvent {}
    // SAFETY: plain old data, every bit pattern is valid.
    unsafe impl aya::Pod for super::RawSpawnEvent {}
    // SAFETY: plain old data, every bit pattern is valid.
    unsafe impl aya::Pod for super::go::RawGoEvent {}
    // SAFETY: plain old data, every bit pattern is valid.
    unsafe impl aya::Pod for super::node::RawNodeEvent {}
    // SAFETY: plain old data, every bit pattern is valid.
    unsafe impl aya::Pod for super::chain::Site {}
    // SAFETY: plain old data, every bit pattern is valid.
    unsafe impl aya::Pod for super::chain::Node {}
    // SAFETY: plain old data, every bit pattern is valid.
    unsafe impl aya::Pod for super::chain::Edge {}
    // SAFETY: plain old data, every bit pattern is valid.
    unsafe impl aya::Pod for super::fork::Fork {}
    // SAFETY: plain old data, every bit pattern is valid.
    unsafe impl aya::Pod for super::fork::Branch {}
    // SAFETY: plain old data, every bit pattern is valid.
    unsafe impl aya::Pod for super::fork::TreeEvent {}
}
