//! Node.js's programs: the native side of async_hooks, with async_hooks off in
//! the target. Every native resource (`AsyncWrap`) gets its id, trigger and
//! provider in `AsyncWrap::AsyncReset`; every callback into JS for it runs in
//! an `InternalCallbackScope` (constructed, then `Close()`d); `~AsyncWrap` (or
//! an explicit `AsyncWrap::EmitDestroy`) ends it. The programs read the
//! objects' fields (offsets from the binary's code, as globals) and report
//! them raw; the Node adapter in userspace maps them to hook events.
//!
//! Node's ids are doubles: they are read from memory as their bits, never from
//! the xmm registers (which BPF cannot read).
//!
//! With `--js-resources`, userspace also puts hardware write-watchpoints on
//! words of the main thread's `node::Environment` (the async-id counter, the
//! current async id, two timer counters): [`node_js_counter`] and
//! [`node_js_write`] run after each write (x86 data breakpoints trap after the
//! write) and report the new values.

use core::ptr::read_volatile;

use aya_ebpf::{
    EbpfContext, Global,
    bindings::{BPF_RB_FORCE_WAKEUP, bpf_perf_event_data},
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user,
        generated::bpf_get_attach_cookie,
    },
    macros::{map, perf_event, uprobe, uretprobe},
    maps::LruHashMap,
    programs::{PerfEventContext, ProbeContext, RetProbeContext},
};
use tracer_common::{
    Counter,
    node::{INVALID_ASYNC_ID_BITS, NodeKind, RawNodeEvent, scope_cookie, watch},
};

use crate::{bump, is_target, read_u64, regs, reserve, submit_flags};

/// Offset of `AsyncWrap::provider_type_`.
#[unsafe(no_mangle)]
static NODE_WRAP_PROVIDER: Global<u64> = Global::new(0x20);
/// Offset of `AsyncWrap::async_id_`.
#[unsafe(no_mangle)]
static NODE_WRAP_ASYNC_ID: Global<u64> = Global::new(0x28);
/// Offset of `AsyncWrap::trigger_async_id_`.
#[unsafe(no_mangle)]
static NODE_WRAP_TRIGGER_ID: Global<u64> = Global::new(0x30);
/// Offset of `InternalCallbackScope::closed_`.
#[unsafe(no_mangle)]
static NODE_SCOPE_CLOSED: Global<u64> = Global::new(0x24);
/// Non-zero with `--js-resources`: a main-thread scope naming its
/// environment wakes the reader at once, which arms the watchpoints there.
#[unsafe(no_mangle)]
static NODE_WAKE_FOR_ENV: Global<u64> = Global::new(0);

/// How many `AsyncReset` calls one thread can be inside at once (an init hook
/// in JS may create resources of its own).
const RESET_DEPTH: usize = 4;

/// The `AsyncWrap`s whose `AsyncReset` runs on a thread, innermost last.
#[derive(Clone, Copy)]
#[repr(C)]
struct ResetStack {
    depth: u64,
    wraps: [u64; RESET_DEPTH],
}

/// Per thread (pid_tgid): the wraps being reset, from entry to return.
#[map]
static NODE_RESETS: LruHashMap<u64, ResetStack> = LruHashMap::with_max_entries(16384, 0);

static EMPTY_RESETS: ResetStack = ResetStack {
    depth: 0,
    wraps: [0; RESET_DEPTH],
};

/// `AsyncWrap::AsyncReset(Local<Object>, double, bool)` entry: a wrap reused
/// with a live id ends that id; the wrap is remembered for the return.
#[uprobe]
pub fn node_async_reset(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return 0;
    }
    let wrap = regs(&ctx).rdi;
    if let Ok(old) = read_u64(wrap + NODE_WRAP_ASYNC_ID.load())
        && old != INVALID_ASYNC_ID_BITS
    {
        emit(pid_tgid, NodeKind::Destroy, wrap, old, 0, 0);
    }
    if NODE_RESETS.get_ptr_mut(pid_tgid).is_none() {
        let _ = NODE_RESETS.insert(pid_tgid, &EMPTY_RESETS, 0);
    }
    let Some(stack) = NODE_RESETS.get_ptr_mut(pid_tgid) else {
        bump(Counter::ReadFailed);
        return 0;
    };
    // SAFETY: a live map value, only this thread's programs touch it.
    let stack = unsafe { &mut *stack };
    let depth = stack.depth as usize;
    if depth < RESET_DEPTH {
        stack.wraps[depth] = wrap;
    }
    stack.depth += 1;
    0
}

/// `AsyncWrap::AsyncReset` return: the wrap's new id, trigger and provider.
#[uretprobe]
pub fn node_async_reset_return(_ctx: RetProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return 0;
    }
    let Some(stack) = NODE_RESETS.get_ptr_mut(pid_tgid) else {
        return 0;
    };
    // SAFETY: a live map value, only this thread's programs touch it.
    let stack = unsafe { &mut *stack };
    if stack.depth == 0 {
        return 0;
    }
    stack.depth -= 1;
    let depth = stack.depth as usize;
    if depth >= RESET_DEPTH {
        bump(Counter::ReadFailed);
        return 0;
    }
    let wrap = stack.wraps[depth];
    let _ = report_init(pid_tgid, wrap);
    0
}

/// Reads the ids and provider `AsyncReset` gave `wrap` and writes its init.
#[inline(always)]
fn report_init(pid_tgid: u64, wrap: u64) -> Result<(), Counter> {
    let id = read_u64(wrap + NODE_WRAP_ASYNC_ID.load()).inspect_err(|c| bump(*c))?;
    let trigger = read_u64(wrap + NODE_WRAP_TRIGGER_ID.load()).inspect_err(|c| bump(*c))?;
    // SAFETY: bpf_probe_read_user checks the address; a fault is an error.
    let provider = unsafe { bpf_probe_read_user((wrap + NODE_WRAP_PROVIDER.load()) as *const u32) }
        .map_err(|_| Counter::ReadFailed)
        .inspect_err(|c| bump(*c))?;
    emit(pid_tgid, NodeKind::Init, wrap, id, trigger, provider);
    Ok(())
}

/// An `InternalCallbackScope` constructor's entry (its cookie says which
/// constructor, see [`scope_cookie`]): a `before`, unless the scope has no
/// resource (id 0: then reported only to name the environment, with
/// `--js-resources`). Its `kSkipAsyncHooks` flag is no reason to skip it: Node
/// sets it when its JS trampoline emits the before/after instead (every
/// `MakeCallback` once bootstrapped), and that happens only with hooks on.
#[uprobe]
pub fn node_scope_enter(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return 0;
    }
    let regs = regs(&ctx);
    // SAFETY: helper reading the attach cookie of this probe.
    let site = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    // Each register read at its fixed offset of the context, before choosing:
    // the verifier refuses a context pointer moved by a computed offset.
    // SAFETY: reads of fields of the live register context.
    let (rsi, rcx) = unsafe { (read_volatile(&regs.rsi), read_volatile(&regs.rcx)) };
    let (ids, env) = if site == scope_cookie::WRAP {
        (rsi + NODE_WRAP_ASYNC_ID.load(), 0)
    } else {
        (rcx, rsi)
    };
    let Ok(id) = read_u64(ids).inspect_err(|c| bump(*c)) else {
        return 0;
    };
    let main_thread = pid_tgid >> 32 == pid_tgid & 0xffff_ffff;
    let names_env = env != 0 && main_thread && NODE_WAKE_FOR_ENV.load() != 0;
    // A scope without a resource (`RunTimers`, `CheckImmediate`) is no
    // callback, but with `--js-resources` it tells the environment.
    if id == 0 && !names_env {
        return 0;
    }
    let flags = if names_env {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        submit_flags()
    };
    emit_with(flags, pid_tgid, NodeKind::ScopeEnter, regs.rdi, id, env, 0);
    0
}

/// `v8::internal::MicrotaskQueue::RunMicrotasks` entry (`--js-resources`).
#[uprobe]
pub fn node_microtasks_enter(_ctx: ProbeContext) -> u32 {
    emit_current(NodeKind::Microtasks, 1);
    0
}

/// `v8::internal::MicrotaskQueue::RunMicrotasks` return (`--js-resources`).
#[uretprobe]
pub fn node_microtasks_return(_ctx: RetProbeContext) -> u32 {
    emit_current(NodeKind::Microtasks, 0);
    0
}

/// `v8::internal::MicrotaskQueue::EnqueueMicrotask(Isolate*, Local<Function>)`
/// entry (`--js-resources`).
#[uprobe]
pub fn node_enqueue_microtask(_ctx: ProbeContext) -> u32 {
    emit_current(NodeKind::EnqueueMicrotask, 0);
    0
}

/// A record of `kind` for the current thread, if it is traced.
#[inline(always)]
fn emit_current(kind: NodeKind, value: u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_target(pid_tgid) {
        emit(pid_tgid, kind, 0, value, 0, 0);
    }
}

/// The watched word a perf event's hit is for, and the thread.
#[inline(always)]
fn watched(ctx: &PerfEventContext) -> Option<(u64, u64)> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return None;
    }
    // SAFETY: a perf-event program's context is its bpf_perf_event_data; for a
    // breakpoint, `addr` is the watched address.
    let address = unsafe { read_volatile(&(*(ctx.as_ptr() as *const bpf_perf_event_data)).addr) };
    Some((pid_tgid, address))
}

/// Watchpoint on `async_id_fields[kAsyncIdCounter]`: a new async id, with the
/// trigger `getDefaultTriggerAsyncId()` gives (the default trigger slot unless
/// it is negative, else the current id), and whether the thread is inside
/// `AsyncReset` (a native resource's id, reported at its return).
#[perf_event]
pub fn node_js_counter(ctx: PerfEventContext) -> u32 {
    let Some((pid_tgid, counter)) = watched(&ctx) else {
        return 0;
    };
    let read = |address| read_u64(address).inspect_err(|c| bump(*c)).ok();
    let (Some(id), Some(default), Some(current)) = (
        read(counter),
        read(counter + watch::DEFAULT_TRIGGER_FROM_COUNTER),
        read(counter - watch::EXECUTION_FROM_COUNTER),
    ) else {
        return 0;
    };
    let trigger = if default >> 63 == 0 { default } else { current };
    // SAFETY: the value is not read.
    let in_reset = unsafe { NODE_RESETS.get(&pid_tgid) }.is_some_and(|stack| stack.depth > 0);
    emit(
        pid_tgid,
        NodeKind::JsId,
        counter,
        id,
        trigger,
        u32::from(in_reset),
    );
    0
}

/// Watchpoint on any other word: its address and new value.
#[perf_event]
pub fn node_js_write(ctx: PerfEventContext) -> u32 {
    let Some((pid_tgid, address)) = watched(&ctx) else {
        return 0;
    };
    match read_u64(address) {
        Ok(value) => emit(pid_tgid, NodeKind::JsWrite, address, value, 0, 0),
        Err(counter) => bump(counter),
    }
    0
}

/// `InternalCallbackScope::Close()` entry: the `after` of the scope, unless it
/// was closed already (the destructor closes it again).
#[uprobe]
pub fn node_scope_close(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return 0;
    }
    let scope = regs(&ctx).rdi;
    // SAFETY: bpf_probe_read_user checks the address; a fault is an error.
    match unsafe { bpf_probe_read_user((scope + NODE_SCOPE_CLOSED.load()) as *const u8) } {
        Ok(0) => emit(pid_tgid, NodeKind::ScopeClose, scope, 0, 0, 0),
        Ok(_) => {}
        Err(_) => bump(Counter::ReadFailed),
    }
    0
}

/// `~AsyncWrap` (every variant) or `AsyncWrap::EmitDestroy(bool)` entry: the
/// wrap's id ends, unless it has none (already destroyed, never reset).
#[uprobe]
pub fn node_destroy(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return 0;
    }
    let wrap = regs(&ctx).rdi;
    match read_u64(wrap + NODE_WRAP_ASYNC_ID.load()) {
        Ok(id) if id != INVALID_ASYNC_ID_BITS => emit(pid_tgid, NodeKind::Destroy, wrap, id, 0, 0),
        Ok(_) => {}
        Err(counter) => bump(counter),
    }
    0
}

/// Writes one record (counted as emitted, and as dropped when the ring is full).
#[inline(always)]
fn emit(pid_tgid: u64, kind: NodeKind, object: u64, async_id: u64, trigger_id: u64, provider: u32) {
    emit_with(
        submit_flags(),
        pid_tgid,
        kind,
        object,
        async_id,
        trigger_id,
        provider,
    );
}

/// [`emit`], submitted with `flags`.
#[inline(always)]
fn emit_with(
    flags: u64,
    pid_tgid: u64,
    kind: NodeKind,
    object: u64,
    async_id: u64,
    trigger_id: u64,
    provider: u32,
) {
    if let Some(mut entry) = reserve::<RawNodeEvent>() {
        entry.write(RawNodeEvent {
            // SAFETY: helper without preconditions.
            ts_ns: unsafe { bpf_ktime_get_ns() },
            pid_tgid,
            object,
            async_id,
            trigger_id,
            kind: kind as u32,
            provider,
        });
        entry.submit(flags);
    }
}
