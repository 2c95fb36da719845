//! The `tree`, `stats` and `export` subcommands: read a session file through
//! [`crate::sinks::recording::source::open_events`] and hand it to the analysis.

use std::{
    fs::File,
    io::{self, BufWriter},
    path::PathBuf,
    time::Duration,
};

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use super::{
    Analysis, DEFAULT_BLOCKING_THRESHOLD, by_name, chrome,
    stats::{self, GroupBy, SortBy},
    svg,
    tree::{self, TreeOptions, TriggerTree},
    warnings::DEFAULT_MANY_POLLS,
};
use crate::sinks::recording::source::open_events;

/// A duration from the command line (`10ms`, `1.5s`), with a message that shows the form.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|error| format!("{text:?} is not a duration like 10ms or 1.5s: {error}"))
}

/// `tracer tree FILE`.
#[derive(Args, Debug)]
pub struct TreeArgs {
    /// A session recorded with `tracer run --json` or `tracer trace --json`.
    pub file: PathBuf,
    /// Print the nested structure as JSON.
    #[arg(long)]
    pub json: bool,
    /// Leave out subtrees in which nothing lived this long (e.g. 5ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub min_duration: Option<Duration>,
    /// Show this many levels (1 = only resources spawned outside any task).
    #[arg(long, value_name = "N")]
    pub depth: Option<usize>,
    /// Show only the subtree of this async_id (in each process that has one).
    #[arg(long, value_name = "N")]
    pub id: Option<u64>,
    /// Only the tasks of this process, in a session that followed forks.
    #[arg(long, value_name = "PID", value_parser = crate::target::parse_pid)]
    pub pid: Option<u32>,
    /// After each task, who woke it and how often ("woken by #6 ×20, no task ×3";
    /// no task = the I/O driver, the timer, the scheduler, plain threads).
    #[arg(long)]
    pub woken_by: bool,
}

impl TreeArgs {
    /// Prints the trigger tree of the file.
    pub fn run(&self) -> anyhow::Result<()> {
        let (info, events) = open_events(&self.file)?;
        let mut analysis = Analysis::from_events(&info, events, DEFAULT_BLOCKING_THRESHOLD)?;
        if let Some(pid) = self.pid {
            analysis.only_process(pid)?;
        }
        let options = TreeOptions {
            min_duration: self.min_duration,
            depth: self.depth,
            id: self.id,
            woken_by: self.woken_by,
        };
        let tree = TriggerTree::build(&analysis, &options)?;
        let mut out = anstream::stdout().lock();
        if self.json {
            tree::write_json(&mut out, &tree)
        } else {
            tree::write_text(&mut out, &analysis, &tree)
        }
    }
}

/// Settings for the per-task table, shared by `tracer stats` and `--stats`.
#[derive(Args, Debug, Clone)]
pub struct StatsOptions {
    /// A poll longer than this blocks the runtime and gets a warning.
    #[arg(long, value_name = "DURATION", default_value = "10ms", value_parser = parse_duration)]
    pub blocking_threshold: Duration,
    /// Warn about tasks polled at least this many times without finishing.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MANY_POLLS)]
    pub many_polls: u64,
    /// A task that waited longer than this for a worker (from its wake or spawn
    /// to its poll) gets a warning.
    #[arg(long, value_name = "DURATION", default_value = "10ms", value_parser = parse_duration)]
    pub sched_threshold: Duration,
    /// Order of the rows, largest first.
    #[arg(long, value_enum, default_value = "busy")]
    pub sort: SortBy,
    /// One row per task, or per name (the future type the tasks run): tasks,
    /// polls, busy, p50/p99/max poll time and mean lifetime of each name.
    #[arg(long, value_enum, value_name = "task|name", default_value = "task")]
    pub by: GroupBy,
}

impl StatsOptions {
    /// A collector counting with these thresholds.
    pub fn collector(&self) -> super::Collector {
        super::Collector::new(self.blocking_threshold).with_sched_threshold(self.sched_threshold)
    }
}

/// `tracer stats FILE`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// A session recorded with `tracer run --json` or `tracer trace --json`.
    pub file: PathBuf,
    /// Print the rows and warnings as one JSON document.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print the rows as CSV (warnings go to stderr).
    #[arg(long)]
    pub csv: bool,
    /// Only the tasks of this process, in a session that followed forks.
    #[arg(long, value_name = "PID", value_parser = crate::target::parse_pid)]
    pub pid: Option<u32>,
    #[command(flatten)]
    pub options: StatsOptions,
}

impl StatsArgs {
    /// Prints the per-task table of the file.
    pub fn run(&self) -> anyhow::Result<()> {
        let (info, events) = open_events(&self.file)?;
        let mut collector = self.options.collector();
        for event in events {
            collector.record(&event?);
        }
        let mut analysis = collector.finish(&info);
        if let Some(pid) = self.pid {
            analysis.only_process(pid)?;
        }
        let mut out = anstream::stdout().lock();
        if self.options.by == GroupBy::Name {
            let table = by_name::NameTable::new(&analysis, self.options.sort);
            return if self.json {
                by_name::write_json(&mut out, &table)
            } else if self.csv {
                by_name::write_csv(&mut out, &table)
            } else {
                by_name::write_text(&mut out, &analysis, &table)
            };
        }
        let table = stats::Table::new(&analysis, self.options.sort, self.options.many_polls);
        if self.json {
            stats::write_json(&mut out, &table)
        } else if self.csv {
            stats::write_csv(&mut out, &table)?;
            for warning in &table.warnings {
                eprintln!("tracer: warning: {}", warning.summary);
            }
            Ok(())
        } else {
            stats::write_text(&mut out, &analysis, &table)
        }
    }
}

/// What `tracer export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Chrome trace-event JSON, for ui.perfetto.dev and chrome://tracing.
    Chrome,
    /// A self-contained SVG timeline for any browser.
    Svg,
}

/// `tracer export FILE --format chrome|svg -o OUT`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A session recorded with `tracer run --json` or `tracer trace --json`.
    pub file: PathBuf,
    /// The output format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Where to write it (`-` for stdout).
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
}

impl ExportArgs {
    /// Writes the export and a one-line status on stderr.
    pub fn run(&self) -> anyhow::Result<()> {
        let (info, events) = open_events(&self.file)?;
        let out: Box<dyn io::Write> = if self.output.as_os_str() == "-" {
            Box::new(io::stdout().lock())
        } else {
            Box::new(
                File::create(&self.output)
                    .with_context(|| format!("cannot create {}", self.output.display()))?,
            )
        };
        let out = BufWriter::new(out);
        let shown = self.output.display();
        match self.format {
            ExportFormat::Chrome => {
                let counts = chrome::write(out, &info, events)?;
                eprintln!(
                    "tracer: wrote {shown}: {} poll slices, {} task lifetimes, {} spawn arrows, {} wake arrows; open it in https://ui.perfetto.dev or chrome://tracing",
                    counts.slices, counts.tasks, counts.flows, counts.wake_flows
                );
            }
            ExportFormat::Svg => {
                let counts = svg::write(out, &info, events)?;
                eprintln!(
                    "tracer: wrote {shown}: {} threads, {} poll bars, {} spawn arrows; open it in a browser",
                    counts.lanes, counts.bars, counts.arrows
                );
            }
        }
        Ok(())
    }
}
