//! `--follow-forks`: the tracepoint program that adds a traced process's new
//! child processes to [`FOLLOWED`] before they first run.

use aya_ebpf::{
    Global, helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};

use crate::{FOLLOWED, TARGET_TGID, is_followed};

/// Offset of `pid` (the new task's id) in the `task/task_newtask` record, read by
/// userspace from the tracepoint's format file.
#[unsafe(no_mangle)]
static NEWTASK_PID_OFFSET: Global<u64> = Global::new(8);
/// Offset of `clone_flags` in the `task/task_newtask` record.
#[unsafe(no_mangle)]
static NEWTASK_FLAGS_OFFSET: Global<u64> = Global::new(32);
/// `clone` flag of a new thread (as opposed to a new process).
const CLONE_THREAD: u64 = 0x10000;

/// `task/task_newtask` (attached only with `--follow-forks`): a traced process
/// created a process, which is followed from its first instruction on (the
/// tracepoint runs before the new task is first scheduled). New threads
/// (`CLONE_THREAD`) belong to their process already and are left out, so the map
/// holds process ids only.
#[tracepoint]
pub fn process_fork(ctx: TracePointContext) -> u32 {
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    if parent != TARGET_TGID.load() && !is_followed(parent) {
        return 0;
    }
    // SAFETY: reads of the tracepoint record at offsets from its format file.
    let (child, flags) = unsafe {
        (
            ctx.read_at::<u32>(NEWTASK_PID_OFFSET.load() as usize),
            ctx.read_at::<u64>(NEWTASK_FLAGS_OFFSET.load() as usize),
        )
    };
    if let (Ok(child), Ok(flags)) = (child, flags)
        && flags & CLONE_THREAD == 0
    {
        // A full map leaves the child untraced; userspace warns when it is full.
        let _ = FOLLOWED.insert(&child, &parent, 0);
    }
    0
}
