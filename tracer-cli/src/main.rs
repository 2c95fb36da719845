//! `tracer`: Node.js async_hooks for Tokio, from the outside.
//!
//! Attaches eBPF uprobes to a running, unmodified Tokio program and reports the
//! life of every task as `init` / `before` / `after` / `resolve` / `destroy`.

mod launch;
mod preflight;
mod probes;
mod runtime;
mod session;
mod summary;
mod symbols;
mod target;

use std::{io, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use tracer_cli::{event, model, output};

use crate::{
    launch::Launched,
    output::{HumanLines, JsonLines, Sink},
    session::SessionOptions,
};

/// async_hooks for Tokio, from the outside: see every task of a running,
/// unmodified process as init / before / after / resolve / destroy events.
#[derive(Parser, Debug)]
#[command(name = "tracer", version, propagate_version = true)]
#[command(
    after_help = "Needs root, or CAP_BPF and CAP_PERFMON. Status and the summary go to stderr; events to stdout."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Attach to a running process and print its task events live.
    ///
    /// Runs until Ctrl-C or until the process exits, then prints a summary on
    /// stderr: events by kind, tasks seen, probe sites, and anything lost. Tasks
    /// that were already running when tracer attached appear at first sight with
    /// an init marked existing and no trigger.
    #[command(
        after_help = "Examples:\n  tracer trace -p 4242\n  tracer trace -p \"$(pgrep -n my-server)\" --json > events.jsonl"
    )]
    Trace {
        /// Process id of the Tokio program to trace.
        #[arg(short, long, value_name = "PID")]
        pid: u32,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Start a command with probes attached before any of its code runs.
    ///
    /// No task is missed: the command is stopped right after exec, probes are
    /// attached, then it runs. tracer ends when the command exits and exits with
    /// its exit code. The first Ctrl-C is passed to the command (its shutdown is
    /// traced too); a second one stops tracing.
    #[command(
        after_help = "Examples:\n  tracer run -- ./target/release/my-server --port 8080\n  tracer run --json -- cargo run --release   # traces cargo, not the server: run the binary itself"
    )]
    Run {
        #[command(flatten)]
        output: OutputArgs,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
        command: Vec<String>,
    },
}

#[derive(Args, Debug)]
struct OutputArgs {
    /// One JSON object per line (fields: event, async_id, type, trigger_id,
    /// existing, completed, ts_ns, pid, tid) instead of aligned text.
    #[arg(long)]
    json: bool,
    /// Size of the kernel ring buffer, in bytes (a power of two). Raise it if the
    /// summary reports dropped events.
    #[arg(long, value_name = "BYTES", default_value_t = probes::DEFAULT_RING_BYTES, value_parser = parse_ring_size)]
    ring_size: u32,
    /// Lifecycle only: init, resolve and destroy without the per-poll probes (no
    /// before/after). Its cost grows with tasks, not polls: for production. The
    /// trigger comes from the poll probes, so trigger_id is null in this mode.
    #[arg(long)]
    no_polls: bool,
    /// Benchmark floor: empty programs on the poll sites only, no events.
    #[arg(long, hide = true, conflicts_with = "no_polls")]
    floor: bool,
}

fn parse_ring_size(text: &str) -> Result<u32, String> {
    let bytes: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of bytes"))?;
    probes::check_ring_bytes(bytes).map_err(|error| error.to_string())
}

impl OutputArgs {
    fn sink(&self) -> Box<dyn Sink> {
        let stdout = io::BufWriter::with_capacity(1 << 16, io::stdout());
        if self.json {
            Box::new(JsonLines::new(stdout))
        } else {
            Box::new(HumanLines::new(stdout))
        }
    }

    fn session(&self) -> SessionOptions {
        let probes = if self.floor {
            probes::ProbeSet::Floor
        } else if self.no_polls {
            probes::ProbeSet::Lifecycle
        } else {
            probes::ProbeSet::All
        };
        SessionOptions {
            ring_bytes: self.ring_size,
            probes,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tracer: error: cannot start the event loop: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("tracer: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Trace { pid, output } => {
            let mut sink = output.sink();
            session::trace(pid, None, output.session(), sink.as_mut()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { output, command } => {
            // Check privileges before starting anything.
            preflight::check_privileges()?;
            let launched = Launched::spawn(&command)?;
            let pid = launched.pid();
            let mut sink = output.sink();
            let outcome =
                session::trace(pid, Some(launched), output.session(), sink.as_mut()).await?;
            Ok(match outcome.child_exit {
                Some(exit) => ExitCode::from(exit.shell_code().clamp(0, 255) as u8),
                None => ExitCode::SUCCESS,
            })
        }
    }
}
