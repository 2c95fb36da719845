//! The kernel side: loading tracer's BPF programs, attaching them to the sites a
//! runtime adapter found, reading what they write, and following forks. Nothing
//! here knows which runtime it serves.

pub mod bpf_call;
pub mod forks;
pub mod multi_attach;
pub mod new_task;
pub mod probes;
pub mod program_stats;
#[cfg(test)]
mod self_probe;
