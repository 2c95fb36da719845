//! `tracer top`: a live terminal view of a process's tasks, or of a recording.
//!
//! `state/` knows (updated from the hook-event stream, no drawing), `view/` draws
//! it; the live pipeline runs on its own thread and hands the state batches of
//! events, so drawing never slows the ring-buffer reader.

pub mod state;
