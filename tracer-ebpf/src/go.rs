//! Go's programs: every goroutine status change goes through
//! `runtime.casgstatus(gp, old, new)` (or, for async preemption, through
//! `runtime.preemptPark(gp)`), so one entry probe sees every goroutine's
//! creation, runs, blocks, wakes and end. The programs report the raw transition
//! with what only the kernel side can read at that instant (the ids, the start
//! function, the running goroutine); the Go adapter in userspace maps them to
//! hook events. Entry probes only: Go moves goroutine stacks, which return
//! probes do not survive.
//!
//! Registers (Go's internal ABI): arguments in RAX, RBX, RCX, …; R14 holds the
//! current `g` (`g0` on the system stack), whose `m.curg` is the user goroutine
//! the thread runs.

use aya_ebpf::{
    Global,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::uprobe,
    programs::ProbeContext,
};
use tracer_common::{
    Counter,
    go::{GoKind, RawGoEvent, status},
};

use crate::{bump, is_target, read_u64, regs, reserve, submit_flags};

/// Offset of `g.goid`.
#[unsafe(no_mangle)]
static GO_G_GOID: Global<u64> = Global::new(160);
/// Offset of `g.m`.
#[unsafe(no_mangle)]
static GO_G_M: Global<u64> = Global::new(48);
/// Offset of `g.startpc`.
#[unsafe(no_mangle)]
static GO_G_STARTPC: Global<u64> = Global::new(0);
/// Offset of `g.waitreason` (one byte).
#[unsafe(no_mangle)]
static GO_G_WAITREASON: Global<u64> = Global::new(0);
/// Offset of `g.parentGoid`; 0 when the Go version has none (before 1.21).
#[unsafe(no_mangle)]
static GO_G_PARENT_GOID: Global<u64> = Global::new(0);
/// Offset of `m.curg`.
#[unsafe(no_mangle)]
static GO_M_CURG: Global<u64> = Global::new(192);
/// Offset of `funcval.fn`.
#[unsafe(no_mangle)]
static GO_FUNCVAL_FN: Global<u64> = Global::new(0);

/// Offset of `m.p`.
#[unsafe(no_mangle)]
static GO_M_P: Global<u64> = Global::new(208);
/// Offset of `m.syscalltick` (a u32).
#[unsafe(no_mangle)]
static GO_M_SYSCALLTICK: Global<u64> = Global::new(0);
/// Offset of `p.syscalltick` (a u32).
#[unsafe(no_mangle)]
static GO_P_SYSCALLTICK: Global<u64> = Global::new(0);

/// `runtime.casgstatus(gp, old, new)` entry.
#[uprobe]
pub fn go_status(ctx: ProbeContext) -> u32 {
    let regs = regs(&ctx);
    let (gp, from, to) = (regs.rax, regs.rbx as u32, regs.rcx as u32);
    // Allocation of a fresh `g` and stack copies say nothing about a goroutine's
    // life: skipped here, so they cost no record.
    let ignored = matches!(
        (from, to),
        (status::IDLE, status::DEAD)
            | (status::RUNNING, status::COPYSTACK)
            | (status::COPYSTACK, status::RUNNING)
    );
    if ignored {
        return 0;
    }
    let _ = report(GoKind::Status, gp, from, to, regs.r14);
    0
}

/// `runtime.preemptPark(gp)` entry: the running goroutine `gp` stops (async
/// preemption sets its status by compare-and-swap, not through `casgstatus`).
#[uprobe]
pub fn go_preempt_park(ctx: ProbeContext) -> u32 {
    let regs = regs(&ctx);
    let _ = report(
        GoKind::PreemptPark,
        regs.rax,
        status::RUNNING,
        status::PREEMPTED,
        regs.r14,
    );
    0
}

/// `runtime.newproc1(fn, callergp, callerpc, …)` entry, attached on Go versions
/// whose `g` has no `parentGoid`: says who creates the goroutine whose creation
/// follows on this thread, and its start function.
#[uprobe]
pub fn go_newproc(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return 0;
    }
    let regs = regs(&ctx);
    let (funcval, callergp) = (regs.rax, regs.rbx);
    let start_pc = read_u64(funcval + GO_FUNCVAL_FN.load()).unwrap_or(0);
    let parent = goid_of(callergp);
    emit(RawGoEvent {
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid_tgid,
        gp: 0,
        goid: 0,
        start_pc,
        other: parent,
        kind: GoKind::NewProc as u32,
        transition: 0,
        wait_reason: 0,
        reserved: 0,
    });
    0
}

/// Reads what a transition of `gp` needs and writes its record; `current_g` is
/// the thread's R14.
#[inline(always)]
fn report(kind: GoKind, gp: u64, from: u32, to: u32, current_g: u64) -> Result<(), Counter> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return Ok(());
    }
    let goid = read_u64(gp + GO_G_GOID.load()).inspect_err(|counter| bump(*counter))?;
    // The start function names a goroutine at creation and at the records that
    // may be its first sight (a run, a wake, a syscall's return); a stop never
    // needs it, so half the transitions skip the read.
    let start_pc = if from == status::RUNNING {
        0
    } else {
        read_u64(gp + GO_G_STARTPC.load()).unwrap_or(0)
    };
    let (other, wait_reason) = match (from, to) {
        (status::DEAD, _) => match GO_G_PARENT_GOID.load() {
            0 => (0, 0),
            offset => (read_u64(gp + offset).unwrap_or(0), 0),
        },
        (status::WAITING, status::RUNNABLE) => (running_goid(current_g), 0),
        (_, status::WAITING) => {
            // SAFETY: bpf_probe_read_user checks the address; a fault is an error.
            let reason = unsafe { bpf_probe_read_user((gp + GO_G_WAITREASON.load()) as *const u8) };
            (0, reason.unwrap_or(0) as u32)
        }
        (status::RUNNING, status::SYSCALL) | (status::SYSCALL, status::RUNNING) => {
            syscall_p(gp, from == status::SYSCALL)
        }
        _ => (0, 0),
    };
    emit(RawGoEvent {
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid_tgid,
        gp,
        goid,
        start_pc,
        other,
        kind: kind as u32,
        transition: (from << 8) | to,
        wait_reason,
        reserved: 0,
    });
    Ok(())
}

/// The id of the user goroutine running on the thread whose current `g` is
/// `current_g` (`g.m.curg.goid`), 0 when none: the scheduler or the netpoller.
#[inline(always)]
fn running_goid(current_g: u64) -> u64 {
    let Ok(m) = read_u64(current_g + GO_G_M.load()) else {
        return 0;
    };
    if m == 0 {
        return 0;
    }
    match read_u64(m + GO_M_CURG.load()) {
        Ok(curg) => goid_of(curg),
        Err(_) => 0,
    }
}

/// The P of `gp`'s thread (`gp.m.p`), and on the way out of a syscall
/// (`leaving`) `p.syscalltick - m.syscalltick`: 1 unless the P was taken
/// meanwhile (the runtime bumps the P's tick just before this transition).
#[inline(always)]
fn syscall_p(gp: u64, leaving: bool) -> (u64, u32) {
    let Ok(m) = read_u64(gp + GO_G_M.load()) else {
        return (0, 0);
    };
    let Ok(p) = read_u64(m + GO_M_P.load()) else {
        return (0, 0);
    };
    if !leaving || p == 0 {
        return (p, 0);
    }
    // SAFETY: bpf_probe_read_user checks the addresses; a fault is an error.
    let ticks = unsafe {
        (
            bpf_probe_read_user((p + GO_P_SYSCALLTICK.load()) as *const u32),
            bpf_probe_read_user((m + GO_M_SYSCALLTICK.load()) as *const u32),
        )
    };
    match ticks {
        (Ok(p_tick), Ok(m_tick)) => (p, p_tick.wrapping_sub(m_tick)),
        _ => (p, 0),
    }
}

/// `g.goid` of `gp`, 0 when `gp` is nil or unreadable.
#[inline(always)]
fn goid_of(gp: u64) -> u64 {
    if gp == 0 {
        return 0;
    }
    read_u64(gp + GO_G_GOID.load()).unwrap_or(0)
}

/// Writes one record (counted as emitted, and as dropped when the ring is full).
#[inline(always)]
fn emit(event: RawGoEvent) {
    if let Some(mut entry) = reserve::<RawGoEvent>() {
        entry.write(event);
        entry.submit(submit_flags());
    }
}
