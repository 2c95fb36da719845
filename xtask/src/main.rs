//! `cargo xtask`: what tracer needs beyond `cargo build`, in one place: installing
//! the toolchain pieces (`setup`), building the binary and the fixture apps
//! (`build`), running the tests as CI does (`test`) and a first look (`demo`).
//! Every step is safe to repeat: what is already there is left alone.

mod bench;
mod build_cmd;
mod demo;
mod fuzz;
mod go_fixtures;
mod install;
mod node18;
mod process;
mod setup;
mod test_cmd;
mod tokio_matrix;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// Set up, build, test and demo tracer.
#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Set up, build, test and demo tracer",
    long_about = "Set up, build, test and demo tracer, the eBPF tracer for Tokio.\n\n\
        A newcomer runs, as root on Debian 12:\n\n    \
        cargo xtask test    # setup + build + every test (what CI runs)\n    \
        cargo xtask demo    # watch tracer follow a small HTTP server\n\n\
        `test` and `demo` run setup and build first, and each step leaves alone what \
        is already in place, so running them again is cheap."
)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Cmd,
}

/// The subcommands.
#[derive(Subcommand)]
enum Cmd {
    /// Install the build's requirements that are missing (idempotent).
    #[command(
        long_about = "Install the build's requirements that are missing, and do \
        nothing for those already present. One status line per item on stderr, with \
        the time each install took; a failed install names the exact command to retry.\n\n\
        0. an apt sources entry for bookworm-backports (/etc/apt/sources.list.d/\
        bookworm-backports.list, on the mirror the machine's sources use), unless a \
        source names it already (not with --build-only)\n\
        1. Debian packages llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev, and \
        chromium (the SVG rendering test), tmux (the top tests) and Go 1.19 (main), \
        1.21, 1.22 and 1.23 (bookworm-backports) for the Go fixtures (golang-1.XX-go, \
        at /usr/lib/go-1.XX/bin/go) (apt-get; needs root; not with --build-only)\n\
        2. the pinned nightly toolchain (nightly-2026-05-20, whose LLVM 22 bpf-linker \
        links) with its rust-src component (rustup), which builds the BPF programs for \
        bpfel-unknown-none\n\
        3. bpf-linker ^0.13, built against LLVM 22 (cargo install, about a minute)\n\
        4. tracefs mounted at /sys/kernel/tracing (needs root)\n\n\
        --rehearse runs every one of those install commands (and `cargo xtask fuzz`'s \
        cargo install cargo-fuzz) for real into throwaway \
        places (a temporary cargo --root and RUSTUP_HOME, apt-get --simulate, a \
        temporary mount point; the backports entry into a scratch copy of apt's sources \
        and package lists), even where everything is present: CI runs it, so a \
        broken install step fails CI on every machine."
    )]
    Setup {
        /// Only what building tracer needs (no browser for the tests).
        #[arg(long, conflicts_with = "rehearse")]
        build_only: bool,
        /// Run every install command into throwaway places and check what it made.
        #[arg(long)]
        rehearse: bool,
    },
    /// Build the tracer binary and the fixture apps.
    #[command(
        long_about = "Build the tracer binary (target/release/tracer; its build \
        script builds and embeds the BPF object) and the fixture apps in \
        tests/fixtures, a separate workspace built with --cfg tokio_unstable, in the \
        debug, release, release-no-debuginfo and stripped profiles the tests use, and the Tokio version \
        matrix: the fixture sources against Tokio 1.43.4 and 1.47.5 in debug, release, \
        release-lto (fat LTO, one codegen unit) and release-thin-lto, plus the \
        fixtures' own Tokio in the two LTO profiles, all under target/tokio-matrix and \
        tests/fixtures/target; and the Go fixtures in tests/go-fixtures with Go 1.19, \
        1.21, 1.22 and 1.23, each as default (not PIE), pie, nodwarf (-ldflags=-w) and \
        stripped (-ldflags='-s -w'), into target/go-fixtures/go1.XX/VARIANT/NAME.\n\n\
        Does not run setup: run `cargo xtask setup` first on a new machine."
    )]
    Build {
        /// Build tracer in the dev profile (target/debug/tracer) for a faster
        /// compile; the fixtures and the Tokio matrix are always built in all their
        /// profiles.
        #[arg(long)]
        debug: bool,
    },
    /// Run setup, build, then every test (needs root); what CI runs.
    #[command(long_about = "Run setup, build (release), then `cargo test` over the \
        workspace (its default members: all but the BPF crate, which only builds for \
        the BPF target). The integration tests in tests/ load BPF programs, so run as \
        root. Exits non-zero if any step or test fails.\n\n\
        Arguments after `test` go to cargo test, e.g.\n    \
        cargo xtask test -p tracer-tests -- --nocapture")]
    Test {
        /// Arguments passed through to `cargo test`.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CARGO_TEST_ARGS"
        )]
        args: Vec<String>,
    },
    /// Build tracer and a demo HTTP server, and trace it answering 5 requests.
    #[command(
        long_about = "Install what building tracer needs (setup --build-only: \
        no browser), build the tracer and the demo server only (not the test \
        fixtures), then start\n    \
        target/release/tracer run -- tests/fixtures/target/release/demo_server --port 0 --requests 5\n\
        and make 5 HTTP GET requests to the server. The tracer's live events go to \
        stdout as they happen; the server's output and each response's status line go \
        to stderr. The server exits after 5 requests and the tracer with it. Gives up \
        after 60 s. Needs root (the tracer loads BPF programs). From a fresh clone \
        with nothing built it takes about 4 minutes on 2 cores, most of it compiling."
    )]
    Demo,
    /// Install the tracer binary for use (cargo install), optionally with capabilities.
    #[command(
        long_about = "Install what building tracer needs (setup --build-only), \
        then `cargo install --path tracer-cli --locked` (into ~/.cargo/bin, or --root \
        DIR/bin). The BPF programs are built by tracer-cli's build script with the \
        nightly toolchain and bpf-linker, which is why a plain `cargo install` from \
        crates.io is not enough on a machine without them.\n\n\
        --setcap then grants the installed binary CAP_BPF, CAP_PERFMON and \
        CAP_SYS_PTRACE (setcap cap_bpf,cap_perfmon,cap_sys_ptrace+ep), so users can \
        trace without sudo; drop cap_sys_ptrace to let them trace only their own \
        processes. Needs root for apt and setcap.\n\n\
        Example:\n    cargo xtask install --root /usr/local --setcap"
    )]
    Install {
        /// Install into DIR/bin instead of cargo's bin directory.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Grant the installed binary the capabilities tracing needs (setcap).
        #[arg(long)]
        setcap: bool,
    },
    /// Fuzz the recording reader (cargo-fuzz, nightly; installs cargo-fuzz if missing).
    #[command(
        long_about = "Fuzz the recording reader: `cargo fuzz run reader` in fuzz/ \
        (its own workspace) on the nightly toolchain, for --seconds. Installs \
        cargo-fuzz with `cargo install` when it is missing. Any input that panics the \
        reader fails the run and is saved in fuzz/artifacts/reader/."
    )]
    Fuzz {
        /// How long to fuzz.
        #[arg(long, default_value_t = 60, value_name = "N")]
        seconds: u64,
    },
    /// Measure tracer's overhead against the floor and tokio-console (root).
    #[command(
        long_about = "Build tracer and the workloads in bench/workloads, then \
        measure, interleaved round by round: a poll-heavy workload (multi_thread and \
        current_thread) and a hyper server under load, untraced, under the floor \
        (empty uprobes on the same sites), tracer trace, tracer --no-polls and \
        console-subscriber; the pipeline's criterion bench; drops at sustained \
        rates; attach time against probe sites. Prints markdown tables on stdout and \
        writes bench/results/latest.json. Then Go: channel ping-pong and loopback TCP \
        on Go 1.23 and 1.19, untraced, with runtime/trace in-process, under the floor \
        (an empty probe on runtime.casgstatus) and tracer trace. Then Node.js: an http \
        server (Node 20, and Debian's 18) under the same load, untraced, with in-process async_hooks \
        (all four callbacks), under the floor (empty programs on every site) and \
        tracer trace. About 10 minutes; \
        --quick about 2.\n\n\
        Examples:\n    cargo xtask bench --quick\n    cargo xtask bench --go   # the Go workloads only\n    cargo xtask bench --node # the Node.js workload only"
    )]
    Bench {
        /// Fewer, shorter rounds: checks the harness, figures are rougher.
        #[arg(long)]
        quick: bool,
        /// Only the Go workloads (results in bench/results/go.json).
        #[arg(long, conflicts_with = "node")]
        go: bool,
        /// Only the Node.js workload (results in bench/results/node.json).
        #[arg(long)]
        node: bool,
    },
}

/// The arguments after the `test` subcommand, exactly as given. clap would drop a
/// leading `--` (so `test -- --nocapture` would hand `--nocapture` to cargo rather
/// than to the test binaries); the CLI has no global options, so everything after
/// the first `test` is what the user meant for cargo test.
fn test_args(argv: impl IntoIterator<Item = String>) -> Vec<String> {
    argv.into_iter()
        .skip(1)
        .skip_while(|arg| arg != "test")
        .skip(1)
        .collect()
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest directory has no parent")
}

fn main() -> std::process::ExitCode {
    match execute(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // An expected failure (a missing tool, a failed command): its message and
        // causes, no backtrace; the messages say what to do.
        Err(error) => {
            eprintln!("cargo xtask: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs one subcommand.
fn execute(cli: Cli) -> Result<()> {
    let root = workspace_root()?;
    match cli.command {
        Cmd::Setup { rehearse: true, .. } => setup::rehearse(),
        Cmd::Setup { build_only, .. } => setup::setup(if build_only {
            setup::Scope::Build
        } else {
            setup::Scope::Test
        }),
        Cmd::Build { debug } => build_cmd::build(&root, debug),
        Cmd::Test { .. } => test_cmd::test(&root, &test_args(std::env::args())),
        Cmd::Fuzz { seconds } => fuzz::fuzz(&root, seconds),
        Cmd::Demo => {
            process::require_root("`cargo xtask demo` (the tracer loads BPF programs)")?;
            setup::setup(setup::Scope::Build)?;
            build_cmd::build_demo(&root)?;
            demo::demo(&root)
        }
        Cmd::Install { root: dest, setcap } => install::install(&root, dest.as_deref(), setcap),
        Cmd::Bench { quick, go, node } => {
            let plan = if quick {
                bench::Plan::QUICK
            } else {
                bench::Plan::FULL
            };
            if go {
                bench::go_only(&root, plan)
            } else if node {
                bench::node_only(&root, plan)
            } else {
                bench::bench(&root, plan)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn test_passes_its_arguments_through_verbatim() {
        let argv = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        for args in [
            &["-p", "tracer-tests", "--", "--nocapture"][..],
            &["--", "--nocapture"],
            &["test", "--", "--test-threads=1"],
            &[],
        ] {
            let full = argv(&[&["target/debug/xtask", "test"], args].concat());
            assert!(Cli::try_parse_from(&full).is_ok(), "{full:?}");
            assert_eq!(test_args(full), argv(args));
        }
    }

    #[test]
    fn root_holds_the_workspace_manifest() {
        assert!(workspace_root().unwrap().join("Cargo.toml").is_file());
    }
}
