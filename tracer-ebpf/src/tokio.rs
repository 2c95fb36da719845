//! Tokio's programs: every program reads the task header the probed function was
//! given, takes Tokio's task id from it, and writes one record. A per-thread stack
//! of the tasks being polled ([`POLL_STACKS`]) gives each spawn its trigger (the
//! innermost task being polled on the spawning thread) and each wake its waker.

use aya_ebpf::{
    EbpfContext, Global,
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated::bpf_get_attach_cookie},
    macros::{map, uprobe, uretprobe},
    maps::{Array, LruHashMap},
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{
    Counter, DEFERRED_SLOTS, MAX_POLL_DEPTH, PollFrame, PollStack, RawEvent, RawKind, SpawnCall,
    chain, cookie, fork, frame,
};

use aya_ebpf::helpers::bpf_probe_read_user;

use crate::{TARGET_TGID, bump, emit, emit_named, is_target, read_u64, regs};

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

/// Non-zero when userspace filled the await-chain maps ([`CHAIN_SITES`], …):
/// read-only, so with 0 the verifier drops the walk at `raw::poll` return.
#[unsafe(no_mangle)]
static CHAINS_ENABLED: Global<u32> = Global::new(0);

/// Await-chain programs by poll-site slot (see [`tracer_common::chain`]);
/// userspace sizes and fills the three maps at load time.
#[map]
static CHAIN_SITES: Array<chain::Site> = Array::with_max_entries(1, 0);
/// The async state machines the chain programs walk, by node id.
#[map]
pub(crate) static CHAIN_NODES: Array<chain::Node> = Array::with_max_entries(1, 0);
/// Each node's suspend states' edges, from its `first_edge`.
#[map]
pub(crate) static CHAIN_EDGES: Array<chain::Edge> = Array::with_max_entries(1, 0);

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

/// Tasks that deferred a wake of themselves (`context::defer`) not yet run, whose
/// slot in the thread's [`PollStack::deferred`] was taken: the next wake of one,
/// after its poll, is that wake. LRU, so deferrals never run (a runtime shut
/// down) age out.
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

/// Poll sites whose slot is below this have an entry in [`POLL_SITES`].
const POLL_SITE_SLOTS: u32 = 1 << 16;

/// By poll-site slot (the `raw::poll` entry's cookie): what every poll there
/// reads alike, learnt at the site's first poll and checked against the
/// header at each one: the task vtable whose first slot is that `raw::poll`,
/// with the id offset read from it, packed in one word ([`pack_site`]) so that
/// two CPUs learning a site at once never leave half of each. 0: not learnt.
#[map]
static POLL_SITES: Array<u64> = Array::with_max_entries(POLL_SITE_SLOTS, 0);

/// Bits of a [`POLL_SITES`] or [`VTABLES`] entry holding the vtable address
/// (user addresses are below 2^47); the id offset, in words, sits above them.
const SITE_VTABLE_MASK: u64 = (1 << 48) - 1;

/// A [`POLL_SITES`] or [`VTABLES`] entry: `vtable` with the task id at
/// `id_offset`.
#[inline(always)]
fn pack_site(vtable: u64, id_offset: u64) -> u64 {
    (id_offset / 8) << 48 | vtable
}

/// Entries of [`VTABLES`]: more than the task types of most programs.
const VTABLE_SLOTS: u32 = 1024;

/// Task vtables seen by the programs other than `raw::poll` entry's, each with
/// the id offset read from it, packed as in [`POLL_SITES`], at a hash of the
/// vtable's address (a vtable whose entry another took is read again): a wake,
/// spawn, complete or free then reads only the cell's head.
#[map]
static VTABLES: Array<u64> = Array::with_max_entries(VTABLE_SLOTS, 0);

/// The learnt entry, in [`POLL_SITES`] or [`VTABLES`], for the id offset of
/// `vtable`: its value when it is `vtable`'s, and where to learn it otherwise.
/// Only the target process's own tasks use them: a descendant that has run
/// another program (followed until userspace sees it) may have other tasks at
/// the same addresses.
#[inline(always)]
fn learnt_id_offset(
    entry: Option<*mut u64>,
    pid_tgid: u64,
    vtable: u64,
) -> (Option<u64>, Option<*mut u64>) {
    if (pid_tgid >> 32) as u32 != TARGET_TGID.load() || vtable & !SITE_VTABLE_MASK != 0 {
        return (None, None);
    }
    // SAFETY: an aligned word of the map value: read and written whole.
    match entry.map(|entry| unsafe { *entry }) {
        Some(site) if site != 0 && site & SITE_VTABLE_MASK == vtable => {
            (Some((site >> 48) * 8), None)
        }
        _ => (None, entry),
    }
}

/// Keeps `id_offset`, read from `vtable`, in the entry [`learnt_id_offset`]
/// said to learn it in.
#[inline(always)]
fn learn_id_offset(entry: Option<*mut u64>, vtable: u64, id_offset: u64) {
    if let Some(entry) = entry {
        // SAFETY: as in `learnt_id_offset`.
        unsafe { *entry = pack_site(vtable, id_offset) };
    }
}

/// Words of a task cell read at once from its header: the state (+0x00), the
/// vtable pointer and, in the layouts seen, the task id. A cell is always
/// larger (header, scheduler, id, stage and trailer).
const HEAD_WORDS: usize = 8;

/// The first [`HEAD_WORDS`] words of a task cell, read with one probe read.
#[repr(C)]
#[derive(Clone, Copy)]
struct CellHead {
    /// The words, from the header on.
    words: [u64; HEAD_WORDS],
}

impl CellHead {
    /// Reads the head of the cell at `header`.
    #[inline(always)]
    fn read(header: u64) -> Result<Self, Counter> {
        // SAFETY: bpf_probe_read_user checks the address; a fault is an error.
        unsafe { bpf_probe_read_user(header as *const CellHead) }.map_err(|_| Counter::ReadFailed)
    }

    /// The word at `offset` from the header: from the head when it holds it,
    /// else read.
    #[inline(always)]
    fn word(&self, header: u64, offset: u64) -> Result<u64, Counter> {
        // One arm a word: the verifier refuses a stack read at an offset it
        // cannot prove aligned, and volatile keeps LLVM from merging the arms
        // into one.
        let at = |index: usize| {
            // SAFETY: a read of a word of `self`.
            Ok(unsafe { core::ptr::read_volatile(&self.words[index]) })
        };
        match offset {
            0x00 => at(0),
            0x08 => at(1),
            0x10 => at(2),
            0x18 => at(3),
            0x20 => at(4),
            0x28 => at(5),
            0x30 => at(6),
            0x38 => at(7),
            _ => read_u64(header + offset),
        }
    }
}

/// Reads Tokio's task id from a task header: `*(hdr + vtable.id_offset)`.
#[inline(always)]
fn read_task_id(header: u64, pid_tgid: u64) -> Result<u64, Counter> {
    read_task(header, pid_tgid).map(|task| task.id)
}

/// What the programs other than `raw::poll`'s read of a task.
#[derive(Clone, Copy)]
struct Task {
    /// Tokio's task id.
    id: u64,
    /// The address of its vtable.
    vtable: u64,
    /// Its state word (`Header::state`).
    state: u64,
}

/// Reads the task at `header` of process `pid_tgid`: one probe read, the cell's
/// head, once its vtable is learnt in [`VTABLES`], and one more, of the id
/// offset in the vtable, until then (one more again when the id lies beyond
/// the head).
#[inline(always)]
fn read_task(header: u64, pid_tgid: u64) -> Result<Task, Counter> {
    let head = CellHead::read(header)?;
    let vtable = head.word(header, LAYOUT_VTABLE_FIELD.load())?;
    let hash = (vtable >> 3) ^ (vtable >> 13);
    let (learnt, learn) = learnt_id_offset(
        VTABLES.get_ptr_mut(hash as u32 & (VTABLE_SLOTS - 1)),
        pid_tgid,
        vtable,
    );
    let id_offset = match learnt {
        Some(id_offset) => id_offset,
        None => {
            let id_offset = read_id_offset(vtable)?;
            learn_id_offset(learn, vtable, id_offset);
            id_offset
        }
    };
    match head.word(header, id_offset)? {
        0 => Err(Counter::LayoutMismatch),
        id => Ok(Task {
            id,
            vtable,
            state: head.word(header, 0)?,
        }),
    }
}

/// The offset of the task id in the cells of `vtable`'s tasks, checked.
#[inline(always)]
fn read_id_offset(vtable: u64) -> Result<u64, Counter> {
    let id_offset = read_u64(vtable + LAYOUT_ID_OFFSET_SLOT.load())?;
    if id_offset == 0 || id_offset > MAX_ID_OFFSET || id_offset % 8 != 0 {
        return Err(Counter::LayoutMismatch);
    }
    Ok(id_offset)
}

/// The id of the task at `header` polled at `raw::poll` site `slot` (whose code
/// is at `poll_fn`): one probe read of the cell's head once the site has been
/// learnt in [`POLL_SITES`]. At its first poll, and for any task whose vtable is
/// not the one learnt, the vtable's first slot must be that very function,
/// which proves the header and vtable offsets are right.
#[inline(always)]
fn read_polled_task_id(
    header: u64,
    pid_tgid: u64,
    poll_fn: u64,
    slot: u64,
) -> Result<u64, Counter> {
    let head = CellHead::read(header)?;
    let vtable = head.word(header, LAYOUT_VTABLE_FIELD.load())?;
    let entry = if slot < u64::from(POLL_SITE_SLOTS) {
        POLL_SITES.get_ptr_mut(slot as u32)
    } else {
        None
    };
    let (learnt, learn) = learnt_id_offset(entry, pid_tgid, vtable);
    let id_offset = match learnt {
        Some(id_offset) => id_offset,
        None => {
            if read_u64(vtable)? != poll_fn {
                return Err(Counter::LayoutMismatch);
            }
            let id_offset = read_id_offset(vtable)?;
            learn_id_offset(learn, vtable, id_offset);
            id_offset
        }
    };
    match head.word(header, id_offset)? {
        0 => Err(Counter::LayoutMismatch),
        id => Ok(id),
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

/// The innermost poll frame still live in a thread's `stack` (frames at or
/// below `sp` belong to polls whose return was missed), skipping, when
/// `skip_completing`, those whose `Harness::complete` has begun.
#[inline(always)]
fn innermost_frame(stack: &PollStack, sp: u64, skip_completing: bool) -> Option<PollFrame> {
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
    // SAFETY: the map value is only read.
    let Some(stack) = (unsafe { POLL_STACKS.get(pid_tgid) }) else {
        return 0;
    };
    innermost_frame(stack, sp, false).map_or(0, |frame| frame.task_id)
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
        header: 0,
        slot: 0,
        flags: 0,
    }; MAX_POLL_DEPTH],
    deferred: [0; DEFERRED_SLOTS],
    spilled: 0,
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
    // The cookie is the site's slot in userspace's table of poll sites: it names
    // the future type of a task first seen here, and its await-chain program.
    // SAFETY: helper reading the attach cookie of this probe.
    let site = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let regs = regs(ctx);
    let task_id = read_polled_task_id(header, pid_tgid, regs.rip, site)?;
    let sp = regs.rsp;

    let stack = match POLL_STACKS.get_ptr_mut(pid_tgid) {
        Some(stack) => Some(stack),
        None => {
            let _ = POLL_STACKS.insert(pid_tgid, &EMPTY_STACK, 0);
            POLL_STACKS.get_ptr_mut(pid_tgid)
        }
    };
    if let Some(stack) = stack {
        // SAFETY: the map value is ours for this thread; no other thread uses the key.
        let stack = unsafe { &mut *stack };
        // A frame at or below the new one is a poll whose return we never saw.
        prune(stack, sp + 1);
        match top_index(stack.depth + 1) {
            Some(free) => {
                stack.frames[free] = PollFrame {
                    sp,
                    task_id,
                    header,
                    slot: site,
                    flags: 0,
                };
                stack.depth += 1;
            }
            None => bump(Counter::StackOverflow),
        }
    }
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
    // A task that completed in this poll is never read: its memory may be
    // freed and reused already.
    let (states, detail, forked) =
        if CHAINS_ENABLED.load() != 0 && frame.flags & frame::COMPLETING == 0 {
            read_chain(frame.header, frame.slot)
        } else {
            (0, 0, None)
        };
    match forked {
        Some((at, fork)) => {
            let end = RawEvent {
                // SAFETY: helper without preconditions.
                ts_ns: unsafe { bpf_ktime_get_ns() },
                pid_tgid,
                task_id: frame.task_id,
                trigger_id: states,
                kind: RawKind::PollEnd as u32,
                detail,
            };
            crate::await_tree::emit_tree(end, at, fork);
        }
        None => emit(pid_tgid, RawKind::PollEnd, frame.task_id, states, detail),
    }
    Ok(())
}

/// The unsigned integer of `size` bytes (1, 2, 4 or 8) at `address`.
#[inline(always)]
pub(crate) fn read_uint(address: u64, size: u32) -> Option<u64> {
    // SAFETY: bpf_probe_read_user checks the address; a fault is an error.
    unsafe {
        match size {
            1 => bpf_probe_read_user(address as *const u8)
                .ok()
                .map(u64::from),
            2 => bpf_probe_read_user(address as *const u16)
                .ok()
                .map(u64::from),
            4 => bpf_probe_read_user(address as *const u32)
                .ok()
                .map(u64::from),
            8 => bpf_probe_read_user(address as *const u64).ok(),
            _ => None,
        }
    }
}

/// Follows `edge` from the future at `address`: offsets and at most one hop.
#[inline(always)]
pub(crate) fn follow(address: u64, edge: &chain::Edge) -> Option<u64> {
    let at = address.wrapping_add(u64::from(edge.pre));
    let at = if edge.hop != 0 {
        read_u64(at).ok()?
    } else {
        at
    };
    if at == 0 {
        return None;
    }
    Some(at.wrapping_add(u64::from(edge.post)))
}

/// Where one level of a walk leads, after its state byte was read.
pub(crate) enum Next {
    /// The chain ends here (a leaf, a state other than suspended, a state
    /// the tables do not know, an unreadable pointer).
    End,
    /// The state machine of node `.1` at address `.0`.
    Level(u64, u32),
    /// The fork (`join!`, `select!`) of fork id `.1` at address `.0`.
    Fork(u64, u32),
}

/// Reads one level of a walk: the state byte of the state machine of node
/// `node_id` at `address` (`None` when it cannot be read), and where its
/// suspend state's edge leads.
#[inline(always)]
pub(crate) fn read_level(address: u64, node_id: u32) -> (Option<u8>, Next) {
    let Some(node) = CHAIN_NODES.get(node_id) else {
        return (None, Next::End);
    };
    // SAFETY: bpf_probe_read_user checks the address; a fault is an error.
    let Ok(state) = (unsafe {
        bpf_probe_read_user(address.wrapping_add(u64::from(node.state_offset)) as *const u8)
    }) else {
        return (None, Next::End);
    };
    let index = u32::from(state.wrapping_sub(chain::FIRST_SUSPEND));
    if state < chain::FIRST_SUSPEND || index >= node.edges {
        return (Some(state), Next::End);
    }
    let Some(edge) = CHAIN_EDGES.get(node.first_edge.wrapping_add(index)) else {
        return (Some(state), Next::End);
    };
    (Some(state), next_of(address, edge))
}

/// Where `edge` leads from the future at `address`.
#[inline(always)]
pub(crate) fn next_of(address: u64, edge: &chain::Edge) -> Next {
    if edge.next == 0 {
        return Next::End;
    }
    match follow(address, edge) {
        None => Next::End,
        Some(at) if edge.next & fork::FORK != 0 => Next::Fork(at, edge.next & !fork::FORK),
        Some(at) => Next::Level(at, edge.next),
    }
}

/// Reads the await chain of the task at `header`, polled at site `slot`: the
/// state bytes (outermost level in the lowest byte), the poll end's `detail`
/// ([`chain::detail`]), and the fork it ends at, if any (its address and
/// id); (0, 0, None) when there is none to read (no program for the site,
/// the future no longer alive, nothing readable).
#[inline(always)]
fn read_chain(header: u64, slot: u64) -> (u64, u32, Option<(u64, u32)>) {
    if slot == 0 || slot > u64::from(chain::MAX_SLOT) {
        return (0, 0, None);
    }
    let Some(site) = CHAIN_SITES.get(slot as u32) else {
        return (0, 0, None);
    };
    if site.node == 0
        || read_uint(
            header.wrapping_add(u64::from(site.stage_offset)),
            site.stage_size,
        ) != Some(u64::from(site.running))
    {
        return (0, 0, None);
    }
    let Some(mut address) = follow(header, &site.root) else {
        return (0, 0, None);
    };
    let mut node_id = site.node;
    let mut states = 0u64;
    let mut levels = 0u32;
    let mut forked = None;
    for level in 0..chain::MAX_LEVELS as u32 {
        let (state, next) = read_level(address, node_id);
        let Some(state) = state else {
            break;
        };
        states |= u64::from(state) << (8 * level);
        levels = level + 1;
        match next {
            Next::End => break,
            Next::Level(at, id) => {
                address = at;
                node_id = id;
            }
            Next::Fork(at, id) => {
                forked = Some((at, id));
                break;
            }
        }
    }
    if levels == 0 {
        return (0, 0, None);
    }
    (states, chain::detail(slot as u32, levels), forked)
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
    let Task {
        id: task_id,
        vtable,
        ..
    } = read_task(header, pid_tgid)?;
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

/// The task whose code runs on the thread of `stack`, as `tokio::task::try_id()`
/// would name it, 0 for none or the runtime's own: the innermost live poll
/// frame, skipping those whose `Harness::complete` has begun.
#[inline(always)]
fn running_task(stack: &PollStack, sp: u64) -> u64 {
    match innermost_frame(stack, sp, true) {
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
    let Task {
        id: task_id,
        vtable,
        state,
    } = read_task(header, pid_tgid)?;
    let state = (state & STATE_BITS) as u32;
    if kind as u32 != RawKind::Wake as u32 {
        emit(pid_tgid, kind, task_id, 0, state);
        return Ok(());
    }
    let stack = POLL_STACKS.get_ptr_mut(pid_tgid);
    // SAFETY: the map value is ours for this thread; no other thread uses the key.
    let stack = stack.map(|stack| unsafe { &mut *stack });
    let waker = stack
        .as_ref()
        .map_or(0, |stack| running_task(stack, regs(ctx).rsp));
    let running = state & tracer_common::state::RUNNING != 0;
    let mut detail = state;
    // The deferred wake comes after the poll; outside a scheduler
    // `context::defer` wakes the task at once, in its own poll.
    if (!running || waker == task_id)
        && let Some(stack) = stack
        && take_deferral(stack, pid_tgid, task_id)
        && !running
    {
        detail |= tracer_common::state::DEFERRED;
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

/// Whether `task_id` deferred a wake of itself on the thread of `stack` (or, its
/// slot taken, in [`DEFERRED`]) not yet taken; takes it.
#[inline(always)]
fn take_deferral(stack: &mut PollStack, pid_tgid: u64, task_id: u64) -> bool {
    let slot = &mut stack.deferred[deferred_slot(task_id)];
    let mut deferred = false;
    if *slot == task_id {
        *slot = 0;
        deferred = true;
    }
    // A deferral may be in both places (deferred again once its slot was free).
    if stack.spilled != 0 {
        let key = TaskKey {
            tgid: pid_tgid >> 32,
            task_id,
        };
        if DEFERRED.remove(&key).is_ok() {
            stack.spilled -= 1;
            deferred = true;
        }
    }
    deferred
}

/// The slot of `task_id` in [`PollStack::deferred`].
#[inline(always)]
fn deferred_slot(task_id: u64) -> usize {
    task_id as usize & (DEFERRED_SLOTS - 1)
}

/// `context::defer`: the running task deferred a wake of itself until after its
/// poll (`yield_now`), which Tokio runs on this thread: marked in the thread's
/// [`PollStack::deferred`] (in [`DEFERRED`] when its slot is taken), no event.
#[uprobe]
pub fn task_defer(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return 0;
    }
    let Some(stack) = POLL_STACKS.get_ptr_mut(pid_tgid) else {
        return 0;
    };
    // SAFETY: the map value is ours for this thread; no other thread uses the key.
    let stack = unsafe { &mut *stack };
    let task_id = running_task(stack, regs(&ctx).rsp);
    if task_id == 0 {
        return 0;
    }
    let slot = &mut stack.deferred[deferred_slot(task_id)];
    if *slot == 0 || *slot == task_id {
        *slot = task_id;
        return 0;
    }
    let key = TaskKey {
        tgid: pid_tgid >> 32,
        task_id,
    };
    // A full map evicts the oldest deferral: its wake is then not `self`.
    if DEFERRED.insert(&key, &1, BPF_NOEXIST.into()).is_ok() {
        stack.spilled += 1;
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
    let task_id = read_task_id(site_header(ctx, site)?, pid_tgid)?;
    emit(pid_tgid, kind, task_id, 0, 0);
    Ok(task_id)
}
