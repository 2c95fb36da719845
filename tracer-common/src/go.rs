//! Go's records: the BPF side reports raw goroutine status transitions, read
//! from `runtime.casgstatus(gp, old, new)` and the few runtime functions that
//! change a status without it; userspace (the Go adapter) turns them into
//! init / before / after / wake / resolve / destroy. Keeping the BPF side to
//! "what changed" keeps it small, and the mapping testable without a kernel.

/// What a Go probe saw. Stored in [`RawGoEvent::kind`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoKind {
    /// `runtime.casgstatus(gp, from, to)`: the goroutine's status changes.
    Status = 1,
    /// `runtime.preemptPark(gp)`: a running goroutine is parked by async
    /// preemption, with a direct compare-and-swap (`_Grunning` to
    /// `_Gpreempted`), not through `casgstatus`.
    PreemptPark = 2,
    /// `runtime.newproc1(fn, callergp, …)` entry (Go before 1.21, whose `g` has
    /// no `parentGoid`): `other` is the creating goroutine's id; the creation's
    /// `Status` record (`_Gdead` to `_Grunnable`) follows on the same thread.
    NewProc = 3,
}

impl TryFrom<u32> for GoKind {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, u32> {
        Ok(match value {
            1 => Self::Status,
            2 => Self::PreemptPark,
            3 => Self::NewProc,
            other => return Err(other),
        })
    }
}

/// Goroutine statuses (`runtime/runtime2.go`, the same in every supported Go).
pub mod status {
    /// `_Gidle`: just allocated.
    pub const IDLE: u32 = 0;
    /// `_Grunnable`: on a run queue, not running.
    pub const RUNNABLE: u32 = 1;
    /// `_Grunning`: running user code on an M and P.
    pub const RUNNING: u32 = 2;
    /// `_Gsyscall`: in a system call.
    pub const SYSCALL: u32 = 3;
    /// `_Gwaiting`: blocked (channel, lock, timer, network…).
    pub const WAITING: u32 = 4;
    /// `_Gdead`: unused, exited, or being created.
    pub const DEAD: u32 = 6;
    /// `_Gcopystack`: its stack is being moved.
    pub const COPYSTACK: u32 = 8;
    /// `_Gpreempted`: stopped by async preemption.
    pub const PREEMPTED: u32 = 9;
}

/// One Go probe hit, as written into the ring buffer (its size tells it apart
/// from the other records).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawGoEvent {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC.
    pub ts_ns: u64,
    /// `bpf_get_current_pid_tgid()`: tgid in the high half, thread id in the low.
    pub pid_tgid: u64,
    /// The goroutine's `g` (its address): stable for the goroutine's life, reused
    /// after it ends.
    pub gp: u64,
    /// `g.goid`. At creation (`_Gdead` to `_Grunnable`) not yet assigned: 0, or
    /// the id of the goroutine that used this `g` before.
    pub goid: u64,
    /// `g.startpc`: the goroutine's start function (names it); 0 on a change
    /// from `_Grunning` (a stop names nothing). For [`GoKind::NewProc`], the
    /// start function `newproc1` was given.
    pub start_pc: u64,
    /// Creation: the creating goroutine's id (`g.parentGoid`; 0 when the layout
    /// has none: a [`GoKind::NewProc`] said it). `_Gwaiting` to `_Grunnable`: the
    /// goroutine running on this thread (`m.curg`), 0 when none (the scheduler,
    /// the netpoller). `_Grunning` to `_Gsyscall` and back: the thread's P
    /// (`m.p`). [`GoKind::NewProc`]: the creating goroutine's id.
    pub other: u64,
    /// A [`GoKind`].
    pub kind: u32,
    /// `from << 8 | to`, two [`status`] values.
    pub transition: u32,
    /// `g.waitreason` when the goroutine goes to `_Gwaiting`: tells the
    /// runtime's own short waits (GC, stop-the-world) from real blocking. At
    /// `_Gsyscall` to `_Grunning`: `p.syscalltick - m.syscalltick`, which is 1
    /// unless the P was taken during the syscall. Else 0.
    pub wait_reason: u32,
    /// Zero.
    pub reserved: u32,
}

impl RawGoEvent {
    /// The status before, and after.
    pub fn statuses(&self) -> (u32, u32) {
        (self.transition >> 8, self.transition & 0xff)
    }
}

/// Names of the BPF globals holding the layout of Go's `g` and `m`, read from
/// the binary at load time (DWARF, or a table per Go version).
pub mod layout {
    /// Global: offset of `g.goid`.
    pub const G_GOID: &str = "GO_G_GOID";
    /// Global: offset of `g.m` (the M running it).
    pub const G_M: &str = "GO_G_M";
    /// Global: offset of `g.startpc`.
    pub const G_STARTPC: &str = "GO_G_STARTPC";
    /// Global: offset of `g.waitreason` (a byte).
    pub const G_WAITREASON: &str = "GO_G_WAITREASON";
    /// Global: offset of `g.parentGoid`, 0 when the Go version has none.
    pub const G_PARENT_GOID: &str = "GO_G_PARENT_GOID";
    /// Global: offset of `m.curg` (the user goroutine the M runs).
    pub const M_CURG: &str = "GO_M_CURG";
    /// Global: offset of `funcval.fn` (0 in every Go so far).
    pub const FUNCVAL_FN: &str = "GO_FUNCVAL_FN";
    /// Global: offset of `m.p`.
    pub const M_P: &str = "GO_M_P";
    /// Global: offset of `m.syscalltick` (a u32).
    pub const M_SYSCALLTICK: &str = "GO_M_SYSCALLTICK";
    /// Global: offset of `p.syscalltick` (a u32).
    pub const P_SYSCALLTICK: &str = "GO_P_SYSCALLTICK";
}
