//! Recording sessions to a file and reading them back: `tracer record`,
//! `tracer run -o`, `tracer replay` and `tracer info`. The recorder is a [`Sink`]
//! like the live outputs, and replay feeds the recorded events into the same
//! sinks, so a replay prints exactly what the live trace printed.
//!
//! [`Sink`]: crate::sinks::output::Sink

mod binary;
pub mod format;
mod info;
pub mod reader;
mod replay;
pub mod source;
mod synthetic;
mod writer;

#[cfg(test)]
mod tests;

pub use info::info;
pub use replay::replay;
pub use synthetic::generate;
pub use writer::{Recorder, create_file};
