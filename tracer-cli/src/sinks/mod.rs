//! Where hook events go: live text and JSON lines ([`output`]), the end-of-session
//! summary, recordings and their replay, the analysis commands (tree, stats,
//! export) and `tracer top`. Live tracing and replay feed the same sinks.

pub(crate) mod analysis;
pub mod output;
pub(crate) mod recording;
pub(crate) mod summary;
