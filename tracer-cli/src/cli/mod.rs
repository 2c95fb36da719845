//! The `tracer` command line: subcommands, their options and help, and the
//! dispatch to a session, a recording or an analysis.

mod dump;

use std::{io, path::PathBuf, process::ExitCode};

use clap::{
    Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand, error::ErrorKind,
    parser::ValueSource,
};

use crate::{
    kernel::probes,
    session::{self, SessionOptions},
    sinks::{
        analysis,
        output::{HumanLines, JsonLines, Sink, Tee},
        recording,
    },
    target::{
        launch::{self, Launched},
        preflight,
    },
    top,
};

/// async_hooks for Tokio, Go and Node.js, from the outside: see every task,
/// goroutine or native Node resource of a running, unmodified process as
/// init / before / after / wake / resolve / destroy events.
#[derive(Parser, Debug)]
#[command(name = "tracer", version, propagate_version = true)]
#[command(
    after_help = "The runtime is found in the binary: Tokio 1.43 to 1.54 (tasks), Go 1.19 and 1.21 to 1.23 (goroutines),\n\
                  Node.js 18.20.4 (Debian's libnode) and 20.20.2 (native resources: TCPWRAP, FSREQCALLBACK, ...).\n\
                  Go cost: one trap per goroutine status change, about 0.7 us. Go 1.19's runtime.casgstatus starts with an\n\
                  instruction the kernel would single-step (about 6.5 us a hit), so tracer probes it a few instructions in,\n\
                  at one the kernel emulates, where the arguments are still in their registers.\n\n\
                  Needs root, or CAP_BPF and CAP_PERFMON. Status and the summary go to stderr; events to stdout."
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
        after_help = "Examples:\n  tracer trace -p 4242\n  tracer trace -p \"$(pgrep -n my-server)\" --json > events.jsonl\n  tracer trace -p 4242 --follow-forks --json   # and the workers it forks from now on\n  tracer trace -p 4242 --task 'my_app::handle*'   # only those tasks, only their polls probed"
    )]
    Trace {
        /// Process id of the Tokio or Go program to trace.
        #[arg(short, long, value_name = "PID", value_parser = crate::target::parse_pid)]
        pid: u32,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Attach to a running process and record its task events to a file.
    ///
    /// Nothing is printed to stdout unless --live is given. The file is written as
    /// events arrive (every event is on disk within a second), so even a recorder
    /// that is killed leaves a readable file. Ctrl-C stops and closes it cleanly.
    #[command(
        mut_arg("file", |arg| arg.required(true)),
        after_help = "Examples:
  tracer record -p 4242 -o session.trace
  tracer replay session.trace
  tracer info session.trace"
    )]
    Record {
        /// Process id of the Tokio or Go program to record.
        #[arg(short, long, value_name = "PID", value_parser = crate::target::parse_pid)]
        pid: u32,
        #[command(flatten)]
        record: RecordArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Print a recording's events exactly as the live trace printed them.
    #[command(after_help = "Examples:
  tracer replay session.trace
  tracer replay --json session.trace | jq 'select(.event == \"init\")'")]
    Replay {
        /// The recording (from `tracer record` or `tracer run -o`).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// One JSON object per line instead of aligned text.
        #[arg(long)]
        json: bool,
    },
    /// Describe a recording: target, runtime, events by kind, tasks, time span,
    /// drops, damage, and bytes per event.
    #[command(after_help = "Example:
  tracer info session.trace")]
    Info {
        /// The recording.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Write a synthetic recording of N events (for measuring replay).
    #[command(hide = true)]
    GenerateRecording {
        /// How many events.
        #[arg(long, value_name = "N")]
        events: u64,
        /// The file to write.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        file: PathBuf,
        /// Overwrite FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Start a command with probes attached before any of its code runs.
    ///
    /// No task is missed: the command is stopped right after exec, probes are
    /// attached, then it runs. tracer ends when the command exits and exits with
    /// its exit code. The first Ctrl-C is passed to the command (its shutdown is
    /// traced too); a second one stops tracing.
    #[command(
        after_help = "Examples:\n  tracer run -- ./target/release/my-server --port 8080\n  tracer run -o session.trace -- ./target/release/my-server\n  tracer run --json -- ./target/release/my-app > events.jsonl\n  tracer run --follow-forks --json -- ./target/release/prefork-server   # its children too, by pid"
    )]
    Run {
        #[command(flatten)]
        record: RecordArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Print the trigger tree of a recorded session: every task under the task
    /// that spawned it, with start and end times, lifetime, polls and busy time.
    #[command(
        after_help = "Examples:\n  tracer run -o session.trace -- ./my-server\n  tracer tree session.trace\n  tracer tree session.trace --min-duration 5ms --depth 3\n  tracer tree session.trace --id 42 --json"
    )]
    Tree(analysis::commands::TreeArgs),
    /// Print one row per task of a recorded session (polls, busy, idle, lifetime,
    /// longest poll, state at the end, name), then warnings: polls that block the
    /// runtime, tasks never polled, never finished, polled many times without
    /// finishing. With --by name, one row per future type instead: tasks, polls,
    /// busy, p50/p99/max poll time and mean lifetime.
    #[command(
        after_help = "Examples:\n  tracer stats session.trace\n  tracer stats session.trace --by name\n  tracer stats session.trace --sort longest --blocking-threshold 2ms\n  tracer stats session.trace --csv > tasks.csv"
    )]
    Stats(analysis::commands::StatsArgs),
    /// Watch a process's tasks live in the terminal, or look through a recording.
    ///
    /// A full-screen table of every task (state, polls, busy and idle time,
    /// trigger), refreshed once a second, with details, the trigger tree, the
    /// `stats` warnings and an aggregate by name a key away; the keys are listed
    /// at the bottom of every screen. Tracing runs on while the view is paused
    /// or drawing. Quitting (q) detaches and leaves the process running. On a
    /// recording, ←/→ step along its timeline and space plays it.
    #[command(after_help = "Examples:
  tracer top -p 4242                          # attach to a running process
  tracer top -p \"$(pgrep -n my-server)\" --retain 30s
  tracer top -- ./target/release/my-server    # start it, traced from its first instruction
  tracer run -o session.trace -- ./my-server && tracer top session.trace

Keys: ↑↓ select, Enter details, Esc back, < > sort column, i invert, / filter by name,
t trigger tree, w warnings, n by name, p pause the view, q or Ctrl-C quit;
on a recording: ← → step, space play/pause.
Needs a terminal: for scripts use `tracer trace --json` or `tracer stats FILE`.")]
    Top(top::TopArgs),
    /// Draw a recorded session: Chrome trace JSON for Perfetto, or an SVG timeline.
    #[command(
        after_help = "Examples:\n  tracer export session.trace --format chrome -o trace.json   # open in https://ui.perfetto.dev\n  tracer export session.trace --format svg -o timeline.svg"
    )]
    Export(analysis::commands::ExportArgs),
    /// Print every live task of a running Tokio process and where it is parked:
    /// id, name, state, and its await chain (each `.await`'s file:line, outermost
    /// first, then the future it waits on), like a Go goroutine dump.
    ///
    /// Attaches no probe and stops nothing: tasks are found through the
    /// runtime's own task lists, and read with process_vm_readv (a parked
    /// task's future does not change until its next poll). Needs full type
    /// DWARF for the application crate (`debug = 2` for it alone is enough).
    #[command(after_help = "Examples:
  tracer dump -p 4242
  tracer dump -p 4242 --json | jq 'select(.state == \"idle\")'
  tracer dump -p 4242 --debuginfo ./my-server.debug")]
    Dump(dump::DumpArgs),
}

#[derive(Args, Debug)]
struct OutputArgs {
    /// One JSON object per line (fields: event, async_id, type, trigger_id,
    /// existing, name, location, completed, sched_ns, waker_id, self, ts_ns, pid,
    /// tid) instead of aligned text.
    #[arg(long)]
    json: bool,
    /// Size of the kernel ring buffer, in bytes (a power of two). Raise it if the
    /// summary reports dropped events.
    #[arg(long, value_name = "BYTES", default_value_t = probes::DEFAULT_RING_BYTES, value_parser = probes::parse_ring_size)]
    ring_size: u32,
    /// Instead of the events, print the trigger tree when the session ends.
    #[arg(long)]
    tree: bool,
    /// Instead of the events, print per-task statistics when the session ends.
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    stats_options: analysis::commands::StatsOptions,
    /// Lifecycle only: init, resolve and destroy without the per-poll probes (no
    /// before/after). Its cost grows with tasks, not polls: for production. The
    /// trigger comes from the poll probes, so trigger_id is null in this mode.
    /// It adds no wake probes either (no wake events) unless --wakes is given.
    #[arg(long)]
    no_polls: bool,
    /// With --no-polls: add the waker probes (wake events with waker_id null and
    /// self false: the waking task comes from the poll probes). Each wake then
    /// costs a probe hit.
    #[arg(long, requires = "no_polls")]
    wakes: bool,
    /// Node.js: also report the JS-level resources (node.Timeout,
    /// node.Immediate, node.TickObject, node.Microtask), which never reach
    /// Node's native code, through hardware write-watchpoints on the main
    /// thread's async-id counter, current async id and timer counters, armed
    /// at the first callback of the main thread (the summary says from which
    /// async id on). Costly: every JS-level init, before and after, and every
    /// native callback's change of the current id, traps the thread into the
    /// kernel, 12-19 µs a trap on a VM; a process.nextTick loop went from
    /// 0.2 µs to 40-55 µs a tick (200-300 times slower), an http server from
    /// 24,000 to 1,650 requests/s. Not
    /// seen: worker threads' JS-level resources, promises (no id while
    /// async_hooks is off; with it on, counted only), JS-level destroys other
    /// than those of TickObject, Immediate, Microtask and refed Timeouts.
    #[arg(long)]
    js_resources: bool,
    /// Benchmark: every event but wakes (no wake probes; sched_ns null).
    #[arg(long, hide = true, conflicts_with_all = ["no_polls", "floor"])]
    no_wakes: bool,
    /// Also trace the processes the target creates, and theirs, from their first
    /// instruction: each event's pid says which process it is from (task ids are
    /// per process). A child that runs another program (exec) is not traced; one
    /// that runs the same binary (fork, or exec of itself) is. The session lasts
    /// until the target and every followed child have exited. Each new child is
    /// announced on stderr. Other processes running the same binary are not
    /// reported but pay the cost of a probe hit (the kernel cannot filter them
    /// out). Needs the task/task_newtask tracepoint (tracefs mounted). --tree
    /// and --stats then report each process's tasks under its pid.
    #[arg(long)]
    follow_forks: bool,
    /// Report only the tasks whose name (their future type, as `init` shows it)
    /// matches GLOB: `*` is any run of characters, `?` one character, matched
    /// against the whole name (e.g. 'my_app::handle*'). Repeat for several. Only
    /// the poll sites of matching future types are probed, so other tasks cost
    /// nothing per poll; tasks without a name match no GLOB. A matching task
    /// spawned outside the matching tasks has trigger_id null (unknown).
    #[arg(long = "task", value_name = "GLOB", conflicts_with = "floor")]
    tasks: Vec<String>,
    /// Do not read where each task is parked. By default, when the binary has
    /// type DWARF for its tasks (`debug = 2` for the application crate is
    /// enough), every Pending poll's `after` carries its await chain
    /// (`"awaiting": [{"fn", "at"}, …, {"future"}]`, text `parked at …`),
    /// read at the poll's return: a few bytes per async level. Without type
    /// DWARF tracer says so once and traces without chains.
    #[arg(long)]
    no_await_chains: bool,
    /// Measure how long each of tracer's BPF programs runs in the target's
    /// threads: the kernel counts every run while tracer runs (BPF_ENABLE_STATS,
    /// for all BPF programs on the machine), and the summary gives each
    /// program's runs and average ns a run, what tracer adds to the kernel's
    /// cost of trapping. The counting itself adds two clock reads to every run
    /// (an empty program counts about 50 ns).
    #[arg(long)]
    bpf_stats: bool,
    /// Benchmark floor: empty programs on the poll sites only, no events.
    #[arg(long, hide = true, conflicts_with = "no_polls")]
    floor: bool,
    /// Benchmark floor on every site `trace` probes: empty programs, no events.
    #[arg(long, hide = true, conflicts_with_all = ["no_polls", "no_wakes", "floor", "tasks"])]
    floor_every_site: bool,
}

/// Where a session is recorded.
#[derive(Args, Debug)]
struct RecordArgs {
    /// Record the session to FILE (created with mode 0600). Events then go to
    /// the file only; add --live to print them too.
    #[arg(short = 'o', long = "output", id = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Overwrite FILE if it exists.
    #[arg(long, requires = "file")]
    force: bool,
    /// While recording, print the events live as well (as text, or --json).
    #[arg(long, requires = "file")]
    live: bool,
}

/// The live output: JSON lines or aligned text on stdout (with a PID column
/// when several processes are traced).
fn live_sink(json: bool, several_processes: bool) -> Box<dyn Sink> {
    let stdout = io::BufWriter::with_capacity(1 << 16, io::stdout());
    if json {
        Box::new(JsonLines::new(stdout))
    } else if several_processes {
        Box::new(HumanLines::new(stdout).with_pid_column())
    } else {
        Box::new(HumanLines::new(stdout))
    }
}

impl OutputArgs {
    /// The live output: the events, or the `--tree` / `--stats` report at the end.
    fn sink(&self) -> Box<dyn Sink> {
        if self.tree || self.stats {
            Box::new(analysis::ReportSink::new(analysis::ReportOptions {
                tree: self.tree,
                stats: self.stats,
                json: self.json,
                stats_options: self.stats_options.clone(),
            }))
        } else {
            live_sink(self.json, self.follow_forks)
        }
    }

    /// The live sink, the recorder, or both, as `record` asks.
    fn sink_recording(&self, record: &RecordArgs) -> anyhow::Result<Box<dyn Sink>> {
        let Some(path) = &record.file else {
            return Ok(self.sink());
        };
        let recorder = recording::Recorder::new(recording::create_file(path, record.force)?);
        Ok(if record.live || self.tree || self.stats {
            Box::new(Tee(self.sink(), recorder))
        } else {
            Box::new(recorder)
        })
    }

    fn session(&self) -> SessionOptions {
        let probes = if self.floor {
            probes::ProbeSet::Floor
        } else if self.floor_every_site {
            probes::ProbeSet::FloorEverySite
        } else if self.no_polls {
            probes::ProbeSet::Lifecycle { wakes: self.wakes }
        } else if self.no_wakes {
            probes::ProbeSet::NoWakes
        } else {
            probes::ProbeSet::All
        };
        SessionOptions {
            ring_bytes: self.ring_size,
            probes,
            follow_forks: self.follow_forks,
            tasks: crate::model::task_filter::TaskGlobs::new(self.tasks.clone()),
            await_chains: !self.no_await_chains,
            js_resources: self.js_resources,
            bpf_stats: self.bpf_stats,
        }
    }
}

/// Parses the command line; a usage error exits 2 with clap's message, naming the
/// argument and what is wrong with it.
fn parse_command_line() -> Cli {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    // Options of the `--stats` table mean nothing without it: say so rather than
    // ignore them.
    if let Some((name, sub)) = matches.subcommand()
        && ["trace", "record", "run"].contains(&name)
        && !sub.get_flag("stats")
    {
        for id in [
            "sort",
            "blocking_threshold",
            "many_polls",
            "sched_threshold",
            "by",
        ] {
            if sub.value_source(id) == Some(ValueSource::CommandLine) {
                let flag = format!("--{}", id.replace('_', "-"));
                Cli::command()
                    .error(
                        ErrorKind::ArgumentConflict,
                        format!(
                            "{flag} sets up the --stats table: add --stats, or leave {flag} out"
                        ),
                    )
                    .exit();
            }
        }
    }
    cli
}

/// The error is a write to a pipe whose reader went away (EPIPE), directly or
/// inside a JSON writer's error.
fn is_closed_output(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let kind = cause
            .downcast_ref::<io::Error>()
            .map(io::Error::kind)
            .or_else(|| cause.downcast_ref::<serde_json::Error>()?.io_error_kind());
        kind == Some(io::ErrorKind::BrokenPipe)
    })
}

/// The `tracer` command: parses the command line, runs the subcommand, and turns
/// its outcome into the exit status.
pub fn main() -> ExitCode {
    let cli = parse_command_line();
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
        // `tracer tree … | head`: the reader has all it wanted.
        Err(error) if is_closed_output(&error) => ExitCode::SUCCESS,
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
        Command::Record {
            pid,
            record,
            output,
        } => {
            let mut sink = output.sink_recording(&record)?;
            session::trace(pid, None, output.session(), sink.as_mut()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { file, json } => {
            recording::replay(&file, live_sink(json, false).as_mut())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Info { file } => {
            recording::info(&file)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::GenerateRecording {
            events,
            file,
            force,
        } => {
            recording::generate(&file, events, force)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            record,
            output,
            command,
        } => {
            // Check privileges and the program before starting anything.
            preflight::check_privileges()?;
            if let Some(program) = command.first() {
                launch::check_program(program)?;
            }
            let mut sink = output.sink_recording(&record)?;
            let launched = Launched::spawn(&command)?;
            let pid = launched.pid();
            let outcome =
                session::trace(pid, Some(launched), output.session(), sink.as_mut()).await?;
            Ok(match outcome.child_exit {
                Some(exit) => ExitCode::from(exit.shell_code().clamp(0, 255) as u8),
                None => ExitCode::SUCCESS,
            })
        }
        Command::Tree(args) => args.run().map(|()| ExitCode::SUCCESS),
        Command::Stats(args) => args.run().map(|()| ExitCode::SUCCESS),
        Command::Export(args) => args.run().map(|()| ExitCode::SUCCESS),
        Command::Top(args) => args.run().await,
        Command::Dump(args) => dump::run(&args).map(|()| ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod recording_cli_tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::{Cli, Command};

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn record_needs_a_file_and_run_records_only_with_one() {
        assert!(Cli::try_parse_from(["tracer", "record", "-p", "1"]).is_err());
        assert!(Cli::try_parse_from(["tracer", "run", "--force", "--", "app"]).is_err());
        assert!(Cli::try_parse_from(["tracer", "run", "--live", "--", "app"]).is_err());
        let cli =
            Cli::try_parse_from(["tracer", "run", "-o", "f", "--live", "--json", "--", "app"])
                .unwrap();
        let Command::Run { record, output, .. } = cli.command else {
            panic!("not run");
        };
        assert!(record.live && output.json && !record.force);
        assert_eq!(record.file.as_deref(), Some(std::path::Path::new("f")));
    }

    #[test]
    fn follow_forks_is_on_every_tracing_command_and_goes_with_the_reports() {
        for args in [
            &["tracer", "trace", "-p", "1", "--follow-forks"][..],
            &["tracer", "record", "-p", "1", "-o", "f", "--follow-forks"],
            &["tracer", "run", "--follow-forks", "--", "app"],
            &["tracer", "run", "--follow-forks", "--tree", "--", "app"],
            &["tracer", "trace", "-p", "1", "--follow-forks", "--stats"],
        ] {
            assert!(Cli::try_parse_from(args).is_ok(), "{args:?}");
        }
    }

    #[test]
    fn tree_and_stats_take_a_process_id() {
        let cli = Cli::try_parse_from(["tracer", "tree", "f", "--pid", "42", "--id", "3"]).unwrap();
        let Command::Tree(args) = cli.command else {
            panic!("not tree");
        };
        assert_eq!((args.pid, args.id), (Some(42), Some(3)));
        for bad in ["0", "x"] {
            let error = Cli::try_parse_from(["tracer", "stats", "f", "--pid", bad]).unwrap_err();
            assert_eq!(error.exit_code(), 2, "--pid {bad}");
        }
    }
}

#[cfg(test)]
mod tests;
