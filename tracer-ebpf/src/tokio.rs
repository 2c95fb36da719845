//! Tokio's programs: every program reads the task header the probed function was
//! given, takes Tokio's task id from it, and writes one record. A per-thread stack
//! of the tasks being polled ([`POLL_STACKS`]) gives each spawn its trigger (the
//! innermost task being polled on the spawning thread) and each wake its waker.

use aya_ebpf::{
    EbpfContext, Global,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated::bpf_get_attach_cookie},
    macros::{map, uprobe, uretprobe},
    maps::LruHashMap,
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{
    Counter, MAX_POLL_DEPTH, PollFrame, PollStack, RawEvent, RawKind, SpawnCall, cookie, frame,
};

use crate::{bump, emit, emit_named, is_target, read_u64, regs};

/// Offset of the vtable pointer in Tokio's task `Header`.
#[unsafe(no_mangle)]
static LAYOUT_VTABLE_FIELD: Global<u64> = Global::new(0x10);
/// Offset of `id_offset` inside Tokio's task `Vtable`.
#[unsafe(no_mangle)]
static LAYOUT_ID_OFFSET_SLOT: Global<u64> = Global::new(0x48);

/// Start of the read-only data holding the binary's `Location` constants, in the
/// process (see [`spawn_entry`]).
#[unsafe(no_mangle)]
static LOCATION_START: Global<u64> = Global::new(0);
/// End of that range; 0 (the default) disables spawn locations.
#[unsafe(no_mangle)]
static LOCATION_END: Global<u64> = Global::new(0);

/// Per thread (`pid_tgid`): the tasks being polled, innermost last. LRU, so threads
/// that exit never fill the map.
#[map]
static POLL_STACKS: LruHashMap<u64, PollStack> = LruHashMap::with_max_entries(16384, 0);

/// A task of a process: the key of [`DEFERRED`].
#[repr(C)]
#[derive(Clone, Copy)]
struct TaskKey {
    tgid: u64,
    task_id: u64,
}

/// Tasks that deferred a wake of themselves (`context::defer`) not yet run: the
/// next wake of one, after its poll, is that wake. Kept here so a deferral costs
/// no ring record; LRU, so deferrals never run (a runtime shut down) age out.
#[map]
static DEFERRED: LruHashMap<TaskKey, u8> = LruHashMap::with_max_entries(16384, 0);

/// Per thread (`pid_tgid`): the spawn entry point (`tokio::spawn`, …) being run,
/// and the `Location` it was given, for the spawn that follows. LRU, like
/// [`POLL_STACKS`].
#[map]
static SPAWN_CALLS: LruHashMap<u64, SpawnCall> = LruHashMap::with_max_entries(16384, 0);

/// Largest offset of the task id inside a task cell we believe: beyond it the
/// layout is not the one we know.
const MAX_ID_OFFSET: u64 = 4096;

/// Reads Tokio's task id from a task header: `*(hdr + vtable.id_offset)`.
///
/// When `poll_fn` is given (at `raw::poll` entry), the vtable's first slot must be
/// that very function, which proves the header and vtable offsets are right.
#[inline(always)]
fn read_task_id(header: u64, poll_fn: Option<u64>) -> Result<u64, Counter> {
    read_task(header, poll_fn).map(|(id, _)| id)
}

/// [`read_task_id`], and the address of the task's vtable.
#[inline(always)]
fn read_task(header: u64, poll_fn: Option<u64>) -> Result<(u64, u64), Counter> {
    let vtable = read_u64(header + LAYOUT_VTABLE_FIELD.load())?;
    if let Some(poll_fn) = poll_fn
        && read_u64(vtable)? != poll_fn
    {
        return Err(Counter::LayoutMismatch);
    }
    let id_offset = read_u64(vtable + LAYOUT_ID_OFFSET_SLOT.load())?;
    if id_offset == 0 || id_offset > MAX_ID_OFFSET || id_offset % 8 != 0 {
        return Err(Counter::LayoutMismatch);
    }
    match read_u64(header + id_offset)? {
        0 => Err(Counter::LayoutMismatch),
        id => Ok((id, vtable)),
    }
}

/// The header pointer of a spawn or free site, as its attach cookie describes it.
#[inline(always)]
fn site_header(ctx: &ProbeContext, site: u64) -> Result<u64, Counter> {
    // Load every candidate register at its fixed offset, then choose: the verifier
    // refuses a context access at a computed offset.
    let regs = regs(ctx);
    // SAFETY: reads of fields of the register struct; volatile keeps LLVM from
    // turning the choice below into one load at a computed offset.
    let (arg0, arg1, arg2) = unsafe {
        (
            core::ptr::read_volatile(&regs.rdi),
            core::ptr::read_volatile(&regs.rsi),
            core::ptr::read_volatile(&regs.rdx),
        )
    };
    let raw = match cookie::arg(site) {
        0 => arg0,
        1 => arg1,
        2 => arg2,
        _ => return Err(Counter::ReadFailed),
    };
    let sp = regs.rsp;
    if cookie::stack_slot(site) && raw >= sp && raw - sp < cookie::STACK_WINDOW {
        read_u64(raw)
    } else {
        Ok(raw)
    }
}

/// Index of the frame below `depth` frames, masked so the verifier sees it bounded.
#[inline(always)]
fn top_index(depth: u64) -> Option<usize> {
    if depth == 0 || depth > MAX_POLL_DEPTH as u64 {
        return None;
    }
    Some((depth as usize - 1) & (MAX_POLL_DEPTH - 1))
}

/// The innermost poll frame still live on this thread (frames at or below `sp`
/// belong to polls whose return was missed), skipping, when `skip_completing`,
/// those whose `Harness::complete` has begun.
#[inline(always)]
fn innermost_frame(pid_tgid: u64, sp: u64, skip_completing: bool) -> Option<PollFrame> {
    // SAFETY: the map value is only read.
    let stack = unsafe { POLL_STACKS.get(pid_tgid) }?;
    let mut depth = stack.depth;
    for _ in 0..MAX_POLL_DEPTH {
        let top = top_index(depth)?;
        let frame = stack.frames[top];
        depth -= 1;
        if frame.sp > sp && !(skip_completing && frame.flags & frame::COMPLETING != 0) {
            return Some(frame);
        }
    }
    None
}

/// The innermost task still being polled on this thread, 0 if none: a spawn's
/// trigger.
#[inline(always)]
fn current_task(pid_tgid: u64, sp: u64) -> u64 {
    innermost_frame(pid_tgid, sp, false).map_or(0, |frame| frame.task_id)
}

/// Drops frames whose stack pointer is below `sp`: their polls are gone.
#[inline(always)]
fn prune(stack: &mut PollStack, sp: u64) {
    for _ in 0..MAX_POLL_DEPTH {
        let Some(top) = top_index(stack.depth) else {
            break;
        };
        if stack.frames[top].sp >= sp {
            break;
        }
        stack.depth -= 1;
    }
}

/// An empty poll stack, inserted the first time a thread polls.
static EMPTY_STACK: PollStack = PollStack {
    depth: 0,
    frames: [PollFrame {
        sp: 0,
        task_id: 0,
        flags: 0,
    }; MAX_POLL_DEPTH],
};

/// `raw::poll` entry: `before`. Pushes the task on the thread's poll stack.
#[uprobe]
pub fn poll_enter(ctx: ProbeContext) -> u32 {
    if let Err(counter) = try_poll_enter(&ctx) {
        bump(counter);
    }
    0
}

fn try_poll_enter(ctx: &ProbeContext) -> Result<(), Counter> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return Ok(());
    }
    let header: u64 = ctx.arg(0).ok_or(Counter::ReadFailed)?;
    let regs = regs(ctx);
    let task_id = read_task_id(header, Some(regs.rip))?;
    let sp = regs.rsp;

    if POLL_STACKS.get_ptr_mut(pid_tgid).is_none() {
        let _ = POLL_STACKS.insert(pid_tgid, &EMPTY_STACK, 0);
    }
    if let Some(stack) = POLL_STACKS.get_ptr_mut(pid_tgid) {
        // SAFETY: the map value is ours for this thread; no other thread uses the key.
        let stack = unsafe { &mut *stack };
        // A frame at or below the new one is a poll whose return we never saw.
        prune(stack, sp + 1);
        match top_index(stack.depth + 1) {
            Some(free) => {
                stack.frames[free] = PollFrame {
                    sp,
                    task_id,
                    flags: 0,
                };
                stack.depth += 1;
            }
            None => bump(Counter::StackOverflow),
        }
    }
    // The cookie is the site's slot in userspace's table of poll sites: it names
    // the future type of a task first seen here.
    // SAFETY: helper reading the attach cookie of this probe.
    let site = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    emit(pid_tgid, RawKind::PollStart, task_id, 0, site as u32);
    Ok(())
}

/// `raw::poll` return: `after`. Pops the matching frame to learn which task it was.
#[uretprobe]
pub fn poll_return(ctx: RetProbeContext) -> u32 {
    if let Err(counter) = try_poll_return(&ctx) {
        bump(counter);
    }
    0
}

fn try_poll_return(ctx: &RetProbeContext) -> Result<(), Counter> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return Ok(());
    }
    // `ret` popped the return address: the entry stack pointer was 8 bytes lower.
    let entry_sp = regs(ctx).rsp - 8;
    let stack = POLL_STACKS
        .get_ptr_mut(pid_tgid)
        .ok_or(Counter::UnmatchedReturn)?;
    // SAFETY: the map value is ours for this thread; no other thread uses the key.
    let stack = unsafe { &mut *stack };
    prune(stack, entry_sp);
    let top = top_index(stack.depth).ok_or(Counter::UnmatchedReturn)?;
    let frame = stack.frames[top];
    if frame.sp != entry_sp {
        return Err(Counter::UnmatchedReturn);
    }
    stack.depth -= 1;
    emit(pid_tgid, RawKind::PollEnd, frame.task_id, 0, 0);
    Ok(())
}

/// A spawn site that receives the new task's header as an argument.
#[uprobe]
pub fn task_spawn(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_target(pid_tgid) {
        // SAFETY: helper reading the attach cookie of this probe.
        let site = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
        if let Err(counter) =
            site_header(&ctx, site).and_then(|header| report_spawn(&ctx, pid_tgid, header, site))
        {
            bump(counter);
        }
    }
    0
}

/// A spawn site that returns the new task's header (`OwnedTasks::bind`,
/// `LocalOwnedTasks::bind`).
#[uretprobe]
pub fn task_spawn_return(ctx: RetProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_target(pid_tgid) {
        // SAFETY: helper reading the attach cookie of this probe.
        let site = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
        if let Err(counter) = report_spawn(&ctx, pid_tgid, ctx.ret(), site) {
            bump(counter);
        }
    }
    0
}

/// Emits the spawn of the task at `header`, triggered by the innermost task being
/// polled on this thread, with its vtable address (which names its future type)
/// and the `Location` its spawn entry point was given.
#[inline(always)]
fn report_spawn(
    ctx: &impl EbpfContext,
    pid_tgid: u64,
    header: u64,
    site: u64,
) -> Result<(), Counter> {
    let (task_id, vtable) = read_task(header, None)?;
    let sp = regs(ctx).rsp;
    let trigger_id = current_task(pid_tgid, sp);
    let location = spawn_location(pid_tgid, sp);
    let event = RawEvent {
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid_tgid,
        task_id,
        trigger_id,
        kind: RawKind::Spawn as u32,
        detail: cookie::spawn_kind(site),
    };
    emit_named(event, vtable, location);
    Ok(())
}

/// The `Location` the spawn entry point running on this thread was given, taken
/// once: 0 when none runs (the spawn's entry was inlined, or not a probed one).
/// An entry whose stack frame is not above `sp` has returned without spawning.
#[inline(always)]
fn spawn_location(pid_tgid: u64, sp: u64) -> u64 {
    // SAFETY: the map value is only read, and copied.
    let Some(call) = (unsafe { SPAWN_CALLS.get(pid_tgid) }).copied() else {
        return 0;
    };
    let _ = SPAWN_CALLS.remove(pid_tgid);
    if call.sp > sp { call.location } else { 0 }
}

/// A spawn entry point (`tokio::spawn`, `Handle::spawn`, `JoinSet::spawn`,
/// `spawn_local`, `spawn_blocking`, …): `#[track_caller]` functions, whose last
/// argument is the caller's `&'static Location`. Where it is depends on how the
/// other arguments are passed, so the first argument register that points into
/// the binary's read-only data is kept; userspace checks it is a `Location`.
#[uprobe]
pub fn spawn_entry(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return 0;
    }
    let regs = regs(&ctx);
    let (start, end) = (LOCATION_START.load(), LOCATION_END.load());
    let candidate = |value: u64| value >= start && value < end && value % 8 == 0;
    let location = if candidate(regs.rdi) {
        regs.rdi
    } else if candidate(regs.rsi) {
        regs.rsi
    } else if candidate(regs.rdx) {
        regs.rdx
    } else if candidate(regs.rcx) {
        regs.rcx
    } else {
        0
    };
    let call = SpawnCall {
        location,
        sp: regs.rsp,
    };
    // A full map evicts the oldest thread's entry (LRU).
    let _ = SPAWN_CALLS.insert(pid_tgid, &call, 0);
    0
}

/// `Harness::complete`: the future finished or was cancelled (`resolve`). The
/// task's poll frame is marked [`frame::COMPLETING`]: Tokio wakes the JoinHandle
/// from here outside the task's id scope.
#[uprobe]
pub fn task_complete(ctx: ProbeContext) -> u32 {
    match try_task_event(&ctx, RawKind::Complete) {
        Ok(0) => {}
        Ok(task_id) => mark_innermost(
            bpf_get_current_pid_tgid(),
            regs(&ctx).rsp,
            task_id,
            frame::COMPLETING,
        ),
        Err(counter) => bump(counter),
    }
    0
}

/// Sets `flag` on the innermost live poll frame of this thread, if it is a poll
/// of `task_id` (any task when `task_id` is 0).
#[inline(always)]
fn mark_innermost(pid_tgid: u64, sp: u64, task_id: u64, flag: u64) {
    let Some(stack) = POLL_STACKS.get_ptr_mut(pid_tgid) else {
        return;
    };
    // SAFETY: the map value is ours for this thread; no other thread uses the key.
    let stack = unsafe { &mut *stack };
    prune(stack, sp);
    if let Some(top) = top_index(stack.depth) {
        let frame = &mut stack.frames[top];
        if task_id == 0 || frame.task_id == task_id {
            frame.flags |= flag;
        }
    }
}

/// `multi_thread::worker::run` entry: the task being polled is the worker's
/// launcher, whose code is the runtime's, not a user's ([`frame::RUNTIME`]).
#[uprobe]
pub fn worker_run(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_target(pid_tgid) {
        mark_innermost(pid_tgid, regs(&ctx).rsp, 0, frame::RUNTIME);
    }
    0
}

/// The task whose code runs on this thread, as `tokio::task::try_id()` would
/// name it, 0 for none or the runtime's own: the innermost live poll frame,
/// skipping those whose `Harness::complete` has begun.
#[inline(always)]
fn running_task(pid_tgid: u64, sp: u64) -> u64 {
    match innermost_frame(pid_tgid, sp, true) {
        Some(frame) if frame.flags & frame::RUNTIME == 0 => frame.task_id,
        _ => 0,
    }
}

/// `waker::wake_by_val` / `wake_by_ref` (arg 0: the woken task's header): a wake,
/// with the task whose code woke it and the task's state bits before the wake.
#[uprobe]
pub fn task_wake(ctx: ProbeContext) -> u32 {
    if let Err(counter) = try_task_notify(&ctx, RawKind::Wake, false) {
        bump(counter);
    }
    0
}

/// `RawTask::remote_abort(&self)` (arg 0: where the header pointer is): an
/// abort, which queues the task if it was idle, with its state bits before.
#[uprobe]
pub fn task_abort(ctx: ProbeContext) -> u32 {
    if let Err(counter) = try_task_notify(&ctx, RawKind::Abort, true) {
        bump(counter);
    }
    0
}

/// Mask of the state bits reported with a wake or abort (RUNNING, COMPLETE,
/// NOTIFIED, JOIN_INTEREST, JOIN_WAKER, CANCELLED): whether it queues the task.
const STATE_BITS: u64 = 0x3f;

/// Emits a wake or abort of the task whose header is arg 0 (`indirect`: whose
/// header pointer arg 0 points at).
fn try_task_notify(ctx: &ProbeContext, kind: RawKind, indirect: bool) -> Result<(), Counter> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return Ok(());
    }
    let mut header: u64 = ctx.arg(0).ok_or(Counter::ReadFailed)?;
    if indirect {
        header = read_u64(header)?;
    }
    let (task_id, vtable) = read_task(header, None)?;
    let state = (read_u64(header)? & STATE_BITS) as u32;
    if kind as u32 != RawKind::Wake as u32 {
        emit(pid_tgid, kind, task_id, 0, state);
        return Ok(());
    }
    let waker = running_task(pid_tgid, regs(ctx).rsp);
    let running = state & tracer_common::state::RUNNING != 0;
    let mut detail = state;
    // The deferred wake comes after the poll; outside a scheduler
    // `context::defer` wakes the task at once, in its own poll.
    if !running || waker == task_id {
        let key = TaskKey {
            tgid: pid_tgid >> 32,
            task_id,
        };
        // SAFETY: the value is not read.
        if unsafe { DEFERRED.get(&key) }.is_some() {
            let _ = DEFERRED.remove(&key);
            if !running {
                detail |= tracer_common::state::DEFERRED;
            }
        }
    }
    let event = RawEvent {
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid_tgid,
        task_id,
        trigger_id: waker,
        kind: RawKind::Wake as u32,
        detail,
    };
    emit_named(event, vtable, 0);
    Ok(())
}

/// `context::defer`: the running task deferred a wake of itself until
/// after its poll (`yield_now`): marked in [`DEFERRED`], no event.
#[uprobe]
pub fn task_defer(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_target(pid_tgid) {
        let task_id = running_task(pid_tgid, regs(&ctx).rsp);
        if task_id != 0 {
            let key = TaskKey {
                tgid: pid_tgid >> 32,
                task_id,
            };
            // A full map evicts the oldest deferral: its wake is then not `self`.
            let _ = DEFERRED.insert(&key, &1, 0);
        }
    }
    0
}

/// A site where task memory is freed (`destroy`).
#[uprobe]
pub fn task_free(ctx: ProbeContext) -> u32 {
    if let Err(counter) = try_task_event(&ctx, RawKind::Free) {
        bump(counter);
    }
    0
}

/// Emits `kind` for the task whose header the site's cookie locates; returns its
/// id, or 0 when the event is not the target's.
fn try_task_event(ctx: &ProbeContext, kind: RawKind) -> Result<u64, Counter> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return Ok(0);
    }
    // SAFETY: helper reading the attach cookie of this probe.
    let site = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let task_id = read_task_id(site_header(ctx, site)?, None)?;
    emit(pid_tgid, kind, task_id, 0, 0);
    Ok(task_id)
}
