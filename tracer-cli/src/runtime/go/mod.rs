//! Go: what tracer reads from a Go binary before it attaches, so the Go BPF
//! programs get offsets that fit the binary and the events get names.
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

pub mod functions;
pub mod image;
pub mod layout;
pub mod pclntab;
pub mod wait_reasons;

#[cfg(test)]
mod tests;
