//! `tracer`: Node.js async_hooks for async runtimes, from the outside.
//!
//! Attaches eBPF uprobes to a running, unmodified program and reports the life of
//! every async resource as `init` / `before` / `after` / `wake` / `resolve` /
//! `destroy`. The folders follow the pipeline, and data walks downhill:
//!
//! - [`target`]: the process and the files it maps, its symbols, launch, preflight;
//! - `runtime`: one folder a runtime (which functions to probe, the layout of
//!   its objects, how a site is named), behind one trait, and a registry;
//! - `kernel`: loading the BPF programs, attaching them, reading the ring;
//! - [`model`]: raw probe hits to hook events, per-resource state, names, filters;
//! - [`sinks`]: live text and JSON, the summary, recordings, analysis;
//! - `session`: the one place that wires them together;
//! - the frontends: [`cli`] (the command line) and `top` (the live view, which
//!   runs a session of its own and draws from its state).
//!
//! The binary is [`cli::main`]; the pipeline benchmark (`benches/pipeline.rs`)
//! drives [`model`] and [`sinks`] alone, without BPF.

pub mod cli;
mod kernel;
pub mod model;
mod runtime;
mod session;
pub mod sinks;
pub mod target;
mod top;
