//! The raw `bpf(2)` call, for the commands aya 0.14 does not wrap:
//! uprobe_multi program loads and links ([`crate::kernel::multi_attach`]) and
//! a program's run-time counts ([`crate::kernel::program_stats`]).

use std::io;

/// Runs `bpf(cmd, attr, size_of::<T>())`: its non-negative result (a new
/// descriptor, or 0), or the error it set.
///
/// # Safety
/// `attr` must be the `union bpf_attr` member `cmd` reads, fully initialised,
/// and every pointer in it must be valid for the kernel to read or write for
/// the duration of the call.
pub unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: as the caller promises.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            size_of::<T>(),
        )
    };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}
