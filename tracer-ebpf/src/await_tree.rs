//! The pending branches of the `tokio::join!` or `tokio::select!` a Pending
//! poll's await chain ends at (see [`tracer_common::fork`]): read at the
//! `raw::poll` return, right after the chain, into one bounded
//! [`TreeEvent`] that replaces the plain poll end.
//!
//! One loop of at most [`fork::MAX_STEPS`] steps, each reading one level of
//! the branch being walked, or looking at one branch of the fork being
//! expanded (forks are expanded breadth first, in the order their segments
//! were written). What the loop carries between steps lives in a per-CPU
//! scratch value ([`TREE_WALK`]), not in registers, so that the verifier sees
//! one state per step rather than one per path.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray},
};
use tracer_common::{
    RawEvent, RawKind,
    chain::{self, MAX_LEVELS},
    fork::{self, MAX_FORK_BRANCHES, MAX_SEGMENTS, Segment, TreeEvent},
};

use crate::{
    read_u64,
    tokio::{Next, next_of, read_level, read_uint},
};

/// Fork types by fork id (index 0 unused); userspace sizes and fills it at
/// load time, with [`CHAIN_BRANCHES`].
#[map]
static CHAIN_FORKS: Array<fork::Fork> = Array::with_max_entries(1, 0);
/// Each fork type's branches, from its `first_branch`.
#[map]
static CHAIN_BRANCHES: Array<fork::Branch> = Array::with_max_entries(1, 0);

/// "No segment" in [`Walk::walking`].
const NONE: u32 = MAX_SEGMENTS as u32;

/// What the walk carries from one step to the next.
#[repr(C)]
struct Walk {
    /// Per segment: the address of the fork its chain ended at.
    fork_at: [u64; MAX_SEGMENTS],
    /// Per segment: that fork's id, 0 when it ended at none.
    fork_id: [u32; MAX_SEGMENTS],
    /// The segment whose fork is being expanded.
    expanding: u32,
    /// The next branch of that fork to look at.
    branch: u32,
    /// That fork's tuple of branch futures, 0 until read.
    tuple: u64,
    /// That fork's `disabled` mask (`select!`).
    mask: u64,
    /// The segment whose chain is being read, [`NONE`] between two.
    walking: u32,
    /// Its next level's node.
    node: u32,
    /// Its next level's address.
    address: u64,
}

/// The walk's scratch value, one per CPU (a uprobe program runs with
/// migration disabled).
#[map]
static TREE_WALK: PerCpuArray<Walk> = PerCpuArray::with_max_entries(1, 0);

/// Writes the poll end `end`, whose chain ended at the fork `fork_id` at
/// `fork_at`, as a [`TreeEvent`] with the fork's pending branches (as the
/// plain poll end, whose chain userspace shows ending at the fork with a gap,
/// in the one case it cannot: no scratch value).
#[inline(always)]
pub fn emit_tree(end: RawEvent, fork_at: u64, fork_id: u32) {
    let Some(walk) = TREE_WALK.get_ptr_mut(0) else {
        crate::emit(
            end.pid_tgid,
            RawKind::PollEnd,
            end.task_id,
            end.trigger_id,
            end.detail,
        );
        return;
    };
    let Some(mut entry) = crate::reserve::<TreeEvent>() else {
        return;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is the reserved record, ours until submitted; `walk`
    // this CPU's scratch value.
    unsafe {
        (*record).event = end;
        (*record).truncated = 0;
        for segment in 0..MAX_SEGMENTS {
            (*record).segment[segment] = Segment::default();
            (*walk).fork_id[segment] = 0;
        }
        let (_, levels) = chain::parse(end.detail).unwrap_or((0, 0));
        let root = &mut (*record).segment[0];
        root.states = end.trigger_id;
        root.levels = levels as u8;
        root.end = fork::END_FORK;
        (*record).segments = 1;
        let walk = &mut *walk;
        walk.fork_at[0] = fork_at;
        walk.fork_id[0] = fork_id;
        walk.expanding = 0;
        walk.branch = 0;
        walk.tuple = 0;
        walk.walking = NONE;
        read_tree(&mut *record, walk);
    }
    entry.submit(crate::submit_flags());
}

/// Reads the tree whose first segment the record holds.
#[inline(always)]
fn read_tree(record: &mut TreeEvent, walk: &mut Walk) {
    for _ in 0..fork::MAX_STEPS {
        if walk.walking != NONE {
            walk_level(record, walk);
        } else if !expand_step(record, walk) {
            return;
        }
    }
    record.truncated = 1;
    if let Some(segment) = record.segment.get_mut(walk.walking as usize) {
        segment.end = fork::END_STEPS;
    }
}

/// Reads one level of the segment being walked.
#[inline(always)]
fn walk_level(record: &mut TreeEvent, walk: &mut Walk) {
    let index = walk.walking as usize;
    walk.walking = NONE;
    let Some(segment) = record.segment.get_mut(index) else {
        return;
    };
    let level = u32::from(segment.levels);
    if level >= MAX_LEVELS as u32 {
        return;
    }
    let (state, next) = read_level(walk.address, walk.node);
    let Some(state) = state else {
        return;
    };
    segment.states |= u64::from(state) << (8 * level);
    segment.levels = (level + 1) as u8;
    go_on(segment, walk, index, next);
}

/// Goes on with the chain of segment `index` where `next` leads: its next
/// level is walked next; a fork ends it, to be expanded in its turn.
#[inline(always)]
fn go_on(segment: &mut Segment, walk: &mut Walk, index: usize, next: Next) {
    match next {
        Next::End => {}
        Next::Level(at, node) => {
            walk.walking = index as u32;
            walk.address = at;
            walk.node = node;
        }
        Next::Fork(at, id) => {
            segment.end = fork::END_FORK;
            if let (Some(fork_at), Some(fork_id)) =
                (walk.fork_at.get_mut(index), walk.fork_id.get_mut(index))
            {
                *fork_at = at;
                *fork_id = id;
            }
        }
    }
}

/// Moves the expansion to the next segment's fork.
#[inline(always)]
fn next_fork(walk: &mut Walk) {
    walk.expanding += 1;
    walk.branch = 0;
    walk.tuple = 0;
}

/// One step of expanding the forks: looks at one branch of the fork being
/// expanded (starting a segment for it when it is pending), or moves to the
/// next fork. False once every segment's fork is expanded.
#[inline(always)]
fn expand_step(record: &mut TreeEvent, walk: &mut Walk) -> bool {
    let index = walk.expanding as usize;
    if index >= MAX_SEGMENTS || index >= record.segments as usize {
        return false;
    }
    let id = walk.fork_id.get(index).copied().unwrap_or(0);
    let (Some(fork), true) = (CHAIN_FORKS.get(id), id != 0) else {
        next_fork(walk);
        return true;
    };
    let at = walk.fork_at.get(index).copied().unwrap_or(0);
    if walk.tuple == 0 {
        match read_fork(fork, at) {
            Some((tuple, mask)) => {
                walk.tuple = tuple;
                walk.mask = mask;
            }
            None => {
                if let Some(segment) = record.segment.get_mut(index) {
                    segment.end = fork::END_FORK_UNREADABLE;
                }
                next_fork(walk);
                return true;
            }
        }
    }
    let position = walk.branch;
    if position >= fork.branches {
        next_fork(walk);
        return true;
    }
    if position >= MAX_FORK_BRANCHES {
        if let Some(segment) = record.segment.get_mut(index) {
            segment.end = fork::END_WIDE;
        }
        next_fork(walk);
        return true;
    }
    walk.branch = position + 1;
    let Some(branch) = CHAIN_BRANCHES.get(fork.first_branch.wrapping_add(position)) else {
        return true;
    };
    let pending = if fork.mask_size == 0 {
        join_pending(branch, walk.tuple)
    } else if walk.mask & (1 << position) == 0 {
        Some(None)
    } else {
        None
    };
    let Some(unknown) = pending else {
        return true;
    };
    let new = record.segments as usize;
    if new >= MAX_SEGMENTS {
        if let Some(segment) = record.segment.get_mut(index) {
            segment.unread |= 1 << position;
        }
        return true;
    }
    record.segments = new as u32 + 1;
    let Some(segment) = record.segment.get_mut(new) else {
        return true;
    };
    segment.parent = index as u8;
    segment.branch = position as u8;
    if let Some(value) = unknown {
        segment.end = fork::END_VARIANT_UNKNOWN;
        segment.states = value;
        return true;
    }
    go_on(segment, walk, new, next_of(walk.tuple, &branch.root));
    true
}

/// The tuple of branch futures of the fork `fork` at `at`, and its mask (0
/// for `join!`); `None` when either cannot be read.
#[inline(always)]
fn read_fork(fork: &fork::Fork, at: u64) -> Option<(u64, u64)> {
    let tuple = read_u64(at.wrapping_add(u64::from(fork.futures))).ok()?;
    if tuple == 0 {
        return None;
    }
    if fork.mask_size == 0 {
        return Some((tuple, 0));
    }
    let mask_at = at.wrapping_add(u64::from(fork.mask_offset));
    let mask_at = if fork.mask_by_ref != 0 {
        read_u64(mask_at).ok()?
    } else {
        mask_at
    };
    Some((tuple, read_uint(mask_at, fork.mask_size)?))
}

/// Whether the `join!` branch `branch` of the tuple at `tuple` is pending:
/// `Some(None)` when it is (its `MaybeDone` is `Future`), `None` when it
/// finished, `Some(Some(value))` when its discriminant is no variant the
/// DWARF knows (or cannot be read: `u64::MAX`).
#[inline(always)]
fn join_pending(branch: &fork::Branch, tuple: u64) -> Option<Option<u64>> {
    let Some(value) = read_uint(
        tuple.wrapping_add(u64::from(branch.discr_offset)),
        branch.discr_size,
    ) else {
        return Some(Some(u64::MAX));
    };
    let other = (branch.explicit > 0 && value == branch.others[0])
        || (branch.explicit > 1 && value == branch.others[1]);
    if branch.future_default != 0 {
        return if other { None } else { Some(None) };
    }
    if value == branch.future {
        Some(None)
    } else if other || branch.other_default != 0 {
        None
    } else {
        Some(Some(value))
    }
}
