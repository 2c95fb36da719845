//! Empty library target: lets `tracer-cli` name this crate as a build-dependency so
//! cargo rebuilds the CLI when the BPF programs change (the programs are in `main.rs`).
#![no_std]

/// The toolchain that builds these programs (`rustup run TOOLCHAIN cargo build -Z
/// build-std`): a nightly, for `build-std`, pinned to one whose LLVM is [`LLVM_MAJOR`],
/// because `bpf-linker` reads the LLVM bitcode rustc emits and is built against
/// Debian's LLVM 22. A newer nightly (LLVM 23) makes bpf-linker fail with
/// "Invalid record". `cargo xtask setup` installs it; the build script uses it.
pub const TOOLCHAIN: &str = "nightly-2026-05-20";

/// The LLVM major version of [`TOOLCHAIN`] and of the LLVM `bpf-linker` is built with.
pub const LLVM_MAJOR: u32 = 22;
