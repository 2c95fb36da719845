//! `tracer`: Node.js async_hooks for Tokio, from the outside.
//!
//! Attaches eBPF uprobes to a running, unmodified Tokio program and reports the
//! life of every task as `init` / `before` / `after` / `resolve` / `destroy`.

mod analysis;
mod event;
mod launch;
mod model;
mod output;
mod preflight;
mod probes;
mod runtime;
mod session;
mod source;
mod summary;
mod symbols;
mod target;

use std::{io, process::ExitCode};

use clap::{Args, Parser, Subcommand};

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
    /// Print the trigger tree of a recorded session: every task under the task
    /// that spawned it, with start and end times, lifetime, polls and busy time.
    #[command(
        after_help = "Examples:\n  tracer run --json -- ./my-server > session.jsonl\n  tracer tree session.jsonl\n  tracer tree session.jsonl --min-duration 5ms --depth 3\n  tracer tree session.jsonl --id 42 --json"
    )]
    Tree(analysis::commands::TreeArgs),
    /// Print one row per task of a recorded session (polls, busy, idle, lifetime,
    /// longest poll, state at the end), then warnings: polls that block the
    /// runtime, tasks never polled, never finished, polled many times without
    /// finishing.
    #[command(
        after_help = "Examples:\n  tracer stats session.jsonl\n  tracer stats session.jsonl --sort longest --blocking-threshold 2ms\n  tracer stats session.jsonl --csv > tasks.csv"
    )]
    Stats(analysis::commands::StatsArgs),
    /// Draw a recorded session: Chrome trace JSON for Perfetto, or an SVG timeline.
    #[command(
        after_help = "Examples:\n  tracer export session.jsonl --format chrome -o trace.json   # open in https://ui.perfetto.dev\n  tracer export session.jsonl --format svg -o timeline.svg"
    )]
    Export(analysis::commands::ExportArgs),
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
    /// Instead of the events, print the trigger tree when the session ends.
    #[arg(long)]
    tree: bool,
    /// Instead of the events, print per-task statistics when the session ends.
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    stats_options: analysis::commands::StatsOptions,
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

    /// The end-of-session report `--tree` / `--stats` ask for, if any.
    fn report(&self) -> Option<analysis::ReportSink> {
        (self.tree || self.stats).then(|| {
            analysis::ReportSink::new(analysis::ReportOptions {
                tree: self.tree,
                stats: self.stats,
                json: self.json,
                stats_options: self.stats_options.clone(),
            })
        })
    }

    /// Traces `pid` into the live sink, or into the report printed at the end.
    async fn trace(
        &self,
        pid: u32,
        launched: Option<Launched>,
    ) -> anyhow::Result<session::Outcome> {
        match self.report() {
            Some(mut report) => {
                let outcome = session::trace(pid, launched, self.session(), &mut report).await?;
                report.report()?;
                Ok(outcome)
            }
            None => session::trace(pid, launched, self.session(), self.sink().as_mut()).await,
        }
    }

    fn session(&self) -> SessionOptions {
        SessionOptions {
            ring_bytes: self.ring_size,
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
            output.trace(pid, None).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { output, command } => {
            // Check privileges before starting anything.
            preflight::check_privileges()?;
            let launched = Launched::spawn(&command)?;
            let pid = launched.pid();
            let outcome = output.trace(pid, Some(launched)).await?;
            Ok(match outcome.child_exit {
                Some(exit) => ExitCode::from(exit.shell_code().clamp(0, 255) as u8),
                None => ExitCode::SUCCESS,
            })
        }
        Command::Tree(args) => args.run().map(|()| ExitCode::SUCCESS),
        Command::Stats(args) => args.run().map(|()| ExitCode::SUCCESS),
        Command::Export(args) => args.run().map(|()| ExitCode::SUCCESS),
    }
}
