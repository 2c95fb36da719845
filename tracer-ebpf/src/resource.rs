//! The embedder crate's (`tracer-resource`) marker functions: resources an
//! application declares itself.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated, generated::bpf_get_attach_cookie,
    },
    macros::uprobe,
    programs::ProbeContext,
};
use tracer_common::{
    RESOURCE_TYPE_CAPACITY, RESOURCE_TYPE_UNREADABLE, RawResourceEvent, ResourceKind,
};

use crate::{is_target, regs, reserve, submit_flags};

/// An embedder marker function (`tracer_resource_v1_*`); the attach cookie is its
/// [`ResourceKind`]. The arguments are plain integers in the argument registers:
/// `(async_id, trigger_id, type_ptr, type_len)` for init, `(async_id)` otherwise.
#[uprobe]
pub fn resource_marker(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return 0;
    }
    // SAFETY: helper reading the attach cookie of this probe.
    let kind = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    let regs = regs(&ctx);
    let Some(mut entry) = reserve::<RawResourceEvent>() else {
        return 0;
    };
    let event = entry.write(RawResourceEvent {
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid_tgid,
        async_id: regs.rdi,
        trigger_id: 0,
        kind,
        type_len: 0,
        type_name: [0; RESOURCE_TYPE_CAPACITY],
    });
    if kind == ResourceKind::Init as u32 {
        event.trigger_id = regs.rsi;
        let (type_ptr, type_len) = (regs.rdx, regs.rcx);
        let copy = if type_len > RESOURCE_TYPE_CAPACITY as u64 {
            RESOURCE_TYPE_CAPACITY as u32
        } else {
            type_len as u32
        };
        // SAFETY: the helper checks the user address; the destination is the
        // event's own buffer and `copy` never exceeds its size.
        let read = unsafe {
            generated::bpf_probe_read_user(
                event.type_name.as_mut_ptr().cast(),
                copy,
                type_ptr as *const core::ffi::c_void,
            )
        };
        event.type_len = if read != 0 {
            RESOURCE_TYPE_UNREADABLE
        } else if type_len >= RESOURCE_TYPE_UNREADABLE as u64 {
            RESOURCE_TYPE_UNREADABLE - 1
        } else {
            type_len as u32
        };
    }
    entry.submit(submit_flags());
    0
}
