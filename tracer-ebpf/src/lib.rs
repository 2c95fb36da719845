//! Empty library target: lets `tracer-cli` name this crate as a build-dependency so
//! cargo rebuilds the CLI when the BPF programs change (the programs are in `main.rs`).
#![no_std]
