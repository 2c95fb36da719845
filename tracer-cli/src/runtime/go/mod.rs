//! Go: goroutines as async resources. The adapter ([`Go`]) probes
//! `runtime.casgstatus`, through which every goroutine status change goes; the
//! BPF side reports raw transitions and [`events`] maps them to the model's
//! records. What tracer reads from the binary before it attaches, so the
//! programs get offsets that fit it and the events get names:
//!
//! - [`image`]: is it a Go binary, which Go built it (`.go.buildinfo`), PIE or
//!   not, with DWARF and a symbol table or not; refuses stripped binaries and
//!   unsupported versions by name.
//! - [`layout`]: the offsets of the `runtime.g` / `runtime.m` fields the probes
//!   read, from DWARF when the binary has it, else from a table per Go version.
//! - [`wait_reasons`]: which `g.waitreason` values mark the Running → Waiting →
//!   Running round trips of GC and stop-the-world that are not real blocks.
//! - [`pclntab`]: Go's own function table, present in every Go binary: names,
//!   entry lines and the `go f(x)` wrappers' wrapped functions.
//! - [`functions`]: a goroutine's start function as Go's execution tracer names
//!   it, its file:line, whether Go counts it as a runtime goroutine; and the
//!   runtime functions the probes attach to.

mod adapter;
pub mod events;
pub mod functions;
pub mod image;
pub mod layout;
pub mod pclntab;
pub mod wait_reasons;

#[cfg(test)]
mod tests;

pub use adapter::Go;
