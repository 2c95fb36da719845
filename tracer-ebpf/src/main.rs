//! tracer's BPF programs: one program per probe kind, one file per runtime.
//!
//! This file holds what every runtime's programs share: the target filter, the
//! one ring buffer ([`EVENTS`]) every record goes through, the health counters,
//! and the writers of the records. The programs themselves are in [`tokio`] (task
//! polls, spawns, wakes, frees), [`go`] (goroutine status changes), [`node`]
//! (Node.js native async resources), [`resource`]
//! (the embedder crate's markers),
//! [`await_tree`] (the branches of a `join!` or `select!` a Pending poll's
//! await chain ends at) and [`forks`] (`--follow-forks`).
//!
//! Nothing is lost silently: a full ring buffer, an unreadable object or one that
//! does not look like the expected layout bumps a [`Counter`] that userspace
//! reports.
#![no_std]
#![no_main]
// `atomic_xadd`: the BPF target has atomic adds but no compare-and-swap, so core
// offers no `AtomicU64::fetch_add` there.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod await_tree;
mod forks;
mod go;
mod node;
mod resource;
mod tokio;

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    EbpfContext, Global,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, pt_regs},
    helpers::{bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{map, uprobe, uretprobe},
    maps::{Array, HashMap, PerCpuArray, RingBuf, ring_buf::RingBufEntry},
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{COUNTER_COUNT, Counter, MAX_FOLLOWED, RawEvent, RawKind, RawSpawnEvent};

/// The process being traced (tgid); events of any other process are ignored.
#[unsafe(no_mangle)]
static TARGET_TGID: Global<u32> = Global::new(0);
/// Non-zero with `--follow-forks`: processes in [`FOLLOWED`] are traced too.
#[unsafe(no_mangle)]
static FOLLOW_FORKS: Global<u32> = Global::new(0);
/// Unread bytes in the ring above which a record wakes the reader at once.
#[unsafe(no_mangle)]
static RING_WAKEUP_BYTES: Global<u64> = Global::new(1 << 20);
/// Every event goes through this one ring buffer; userspace sizes it at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 23, 0);

/// Slot 0 is set to 1 by userspace once every probe is attached: until then the
/// programs do nothing, so a task whose spawn is reported has all of its later
/// events reported too, whatever order the sites were attached in.
#[map]
static ARMED: Array<u32> = Array::with_max_entries(1, 0);

/// Health counters, indexed by [`Counter`].
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

/// `--follow-forks`: descendants of the target being traced, by tgid, each with
/// the tgid of the process that forked it. [`process_fork`] adds them before they
/// run; userspace removes them when they exit or run another program.
#[map]
static FOLLOWED: HashMap<u32, u32> = HashMap::with_max_entries(MAX_FOLLOWED, 0);

/// Adds one to a counter. Atomically: uprobe programs run with migration, not
/// preemption, disabled, so two programs on one CPU may interleave, and a plain
/// read-modify-write could lose a count.
#[inline(always)]
fn bump(counter: Counter) {
    if let Some(value) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: the pointer is a live, aligned u64 of the map value.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(value, 1) };
    }
}

/// Reserves a ring-buffer record, counting the attempt ([`Counter::Emitted`]) and,
/// when the ring is full, the drop ([`Counter::RingFull`]): so that emitted =
/// delivered + dropped, exactly.
#[inline(always)]
fn reserve<T: 'static>() -> Option<RingBufEntry<T>> {
    bump(Counter::Emitted);
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        bump(Counter::RingFull);
    }
    entry
}

/// Submit flags for a ring-buffer record: no wakeup of the reader (it drains on a
/// short timer), unless the ring is filling up. Waking the reader for every event
/// costs a context switch per poll; on a busy machine that was most of the cost.
#[inline(always)]
fn submit_flags() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) > RING_WAKEUP_BYTES.load() {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// The event comes from the target process (or, with `--follow-forks`, from one
/// of its followed descendants) and tracing is armed. Without `--follow-forks` the
/// second test is dead code the verifier removes: `FOLLOW_FORKS` is read-only.
#[inline(always)]
fn is_target(pid_tgid: u64) -> bool {
    let tgid = (pid_tgid >> 32) as u32;
    (tgid == TARGET_TGID.load() || (FOLLOW_FORKS.load() != 0 && is_followed(tgid)))
        && ARMED.get(0).is_some_and(|armed| *armed != 0)
}

#[inline(always)]
fn is_followed(tgid: u32) -> bool {
    // SAFETY: the value is not read.
    unsafe { FOLLOWED.get(&tgid) }.is_some()
}

fn emit(pid_tgid: u64, kind: RawKind, task_id: u64, trigger_id: u64, detail: u32) {
    if let Some(mut entry) = reserve::<RawEvent>() {
        entry.write(RawEvent {
            // SAFETY: helper without preconditions.
            ts_ns: unsafe { bpf_ktime_get_ns() },
            pid_tgid,
            task_id,
            trigger_id,
            kind: kind as u32,
            detail,
        });
        entry.submit(submit_flags());
    }
}

/// Writes `event` as a [`RawSpawnEvent`]: with the task's vtable (which names
/// it) and, for a spawn, the candidate `Location` pointer.
#[inline(always)]
fn emit_named(event: RawEvent, vtable: u64, location: u64) {
    if let Some(mut entry) = reserve::<RawSpawnEvent>() {
        entry.write(RawSpawnEvent {
            event,
            vtable,
            location,
        });
        entry.submit(submit_flags());
    }
}

#[inline(always)]
fn read_u64(addr: u64) -> Result<u64, Counter> {
    // SAFETY: bpf_probe_read_user checks the address; a fault is an error.
    unsafe { bpf_probe_read_user(addr as *const u64) }.map_err(|_| Counter::ReadFailed)
}

#[inline(always)]
fn regs(ctx: &impl EbpfContext) -> &pt_regs {
    // SAFETY: probe contexts point at the user registers of the trapped thread.
    unsafe { &*(ctx.as_ptr() as *const pt_regs) }
}

/// The floor's `raw::poll` entry probe: does nothing. Attached instead of
/// [`poll_enter`] by the hidden `--floor` mode, to measure what the kernel charges
/// just to trap into a uprobe, against which tracer's own cost is judged.
#[uprobe]
pub fn floor_enter(_ctx: ProbeContext) -> u32 {
    0
}

/// The floor's `raw::poll` return probe: does nothing (see [`floor_enter`]).
#[uretprobe]
pub fn floor_return(_ctx: RetProbeContext) -> u32 {
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// GPL-compatible, as `bpf_probe_read_user` requires.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
