//! The marker functions: the one place where a resource's life leaves the process.
//!
//! Each event calls one `extern "C"` function with a stable, unmangled, versioned
//! name and plain integer arguments. When nobody traces, a call costs a call. When
//! `tracer` traces, it finds these names in the ELF symbol table and puts a uprobe
//! on each, reading the arguments from the registers.
//!
//! The names carry [`MARKER_VERSION`](crate::MARKER_VERSION): a change to their
//! arguments is a new version with new names, so an older tracer never misreads
//! a newer crate (it warns that it does not know the version instead).
//!
//! Every body is different (it keeps its own event number alive through
//! [`black_box`]), so the compiler cannot fold two markers into one address, and
//! the call cannot be optimised away.

use core::hint::black_box;

/// `init(async_id, trigger_id, type)`: the type name is `type_len` bytes at `type_ptr`.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn tracer_resource_v1_init(
    async_id: u64,
    trigger_id: u64,
    type_ptr: *const u8,
    type_len: usize,
) {
    black_box((1u8, async_id, trigger_id, type_ptr, type_len));
}

/// `before(async_id)`: the resource's callback is about to run.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn tracer_resource_v1_before(async_id: u64) {
    black_box((2u8, async_id));
}

/// `after(async_id)`: the resource's callback returned.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn tracer_resource_v1_after(async_id: u64) {
    black_box((3u8, async_id));
}

/// `destroy(async_id)`: the resource is gone.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn tracer_resource_v1_destroy(async_id: u64) {
    black_box((4u8, async_id));
}
