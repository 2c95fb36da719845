//! `tracer top`: a live terminal view of a process's tasks, or of a recording.
//!
//! `state/` knows (updated from the hook-event stream, no drawing), `view/` draws
//! it, `input` maps keys to actions, `term` sets the terminal up and restores
//! it, `app` is the view's loop. Live (`live`), the pipeline runs as for every
//! other command and hands the view's thread batches of events, so drawing never
//! slows the ring-buffer reader; on a recording (`timeline`), the same state is
//! fed the recording's events up to the position on its timeline.

mod app;
mod cpu;
pub mod input;
mod live;
pub mod state;
mod term;
mod timeline;
pub mod view;

use std::{
    io::IsTerminal as _,
    path::PathBuf,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::Args;

use crate::{
    kernel::probes::{self, ProbeSet},
    session::SessionOptions,
    sinks::analysis::{commands::parse_duration, warnings::DEFAULT_MANY_POLLS},
    target::launch::{self, Launched},
    target::preflight,
};
use state::StateOptions;

/// `tracer top`: what to watch (exactly one of a pid, a recording, a command)
/// and how.
#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["pid", "file", "command"]))]
pub struct TopArgs {
    /// Process id of the Tokio program to watch.
    #[arg(short, long, value_name = "PID", value_parser = crate::target::parse_pid, conflicts_with_all = ["file", "command"])]
    pub pid: Option<u32>,
    /// A recording to look through (from `tracer record` or `tracer run -o`),
    /// with a timeline: ←/→ step, space plays.
    #[arg(value_name = "FILE", conflicts_with = "command")]
    pub file: Option<PathBuf>,
    /// How long a done task stays in the table before it is dropped (memory
    /// stays bounded however long top runs).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub retain: Duration,
    /// At most this many done tasks stay in the table (the oldest go first):
    /// with many short-lived tasks, memory and drawing stay bounded.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub retain_max: usize,
    /// How far ←/→ move on a recording's timeline.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub step: Duration,
    /// A poll longer than this blocks the runtime and gets a warning (`w`).
    #[arg(long, value_name = "DURATION", default_value = "10ms", value_parser = parse_duration)]
    pub blocking_threshold: Duration,
    /// Warn about tasks polled at least this many times without finishing.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MANY_POLLS)]
    pub many_polls: u64,
    /// Size of the kernel ring buffer, in bytes (a power of two); raise it if
    /// the header shows drops.
    #[arg(long, value_name = "BYTES", default_value_t = probes::DEFAULT_RING_BYTES, value_parser = crate::kernel::probes::parse_ring_size)]
    pub ring_size: u32,
    /// A command to start and watch from its first instruction (after `--`);
    /// its output goes to a log file named when top ends.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

impl TopArgs {
    fn state_options(&self) -> StateOptions {
        StateOptions {
            blocking_threshold: self.blocking_threshold,
            many_polls: self.many_polls,
            retain: self.retain,
            retain_max: self.retain_max,
        }
    }

    /// Runs the view on what the arguments name.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        if !std::io::stdout().is_terminal() {
            bail!(
                "tracer top draws a full-screen view and needs a terminal, but stdout is not one. \
                 For scripts and pipes: `tracer trace -p PID --json` (events), \
                 `tracer run --stats -- CMD` (a table at the end), or `tracer stats FILE` on a recording"
            );
        }
        if let Some(file) = &self.file {
            return self.run_recording(file.clone()).await;
        }
        let session = SessionOptions {
            ring_bytes: self.ring_size,
            probes: ProbeSet::All,
            follow_forks: false,
            tasks: crate::model::task_filter::TaskGlobs::default(),
            await_chains: false,
            js_resources: false,
            bpf_stats: false,
        };
        if let Some(pid) = self.pid {
            live::run(pid, None, session, self.state_options()).await?;
            return Ok(ExitCode::SUCCESS);
        }
        if self.command.is_empty() {
            bail!(
                "tell tracer top what to watch: `tracer top -p PID`, `tracer top -- CMD ARGS…`, or `tracer top FILE`"
            );
        }
        preflight::check_privileges()?;
        launch::check_program(&self.command[0])?;
        let log_path = std::env::temp_dir().join(format!("tracer-top-{}.log", std::process::id()));
        let log = std::fs::File::create(&log_path).with_context(|| {
            format!(
                "cannot create {} for the command's output",
                log_path.display()
            )
        })?;
        let launched = Launched::spawn_with_output(&self.command, &log)?;
        let pid = launched.pid();
        let outcome = live::run(pid, Some(launched), session, self.state_options()).await;
        eprintln!("tracer: the command's output is in {}", log_path.display());
        Ok(match outcome?.child_exit {
            Some(exit) => ExitCode::from(exit.shell_code().clamp(0, 255) as u8),
            None => ExitCode::SUCCESS,
        })
    }

    async fn run_recording(&self, file: PathBuf) -> anyhow::Result<ExitCode> {
        let options = self.state_options();
        let step_ns = self.step.as_nanos() as u64;
        let terminate = std::sync::Arc::new(AtomicBool::new(false));
        let view = {
            let terminate = terminate.clone();
            std::thread::Builder::new()
                .name("tracer-top-view".to_owned())
                .spawn(move || -> anyhow::Result<()> {
                    // Read (and checked) before the terminal is taken, so a bad
                    // file is reported plainly.
                    let (mut recording, state) = timeline::Recording::open(file, options, step_ns)?;
                    let mut screen = term::Screen::enter()?;
                    app::run(
                        &mut screen,
                        state,
                        &mut recording,
                        &terminate,
                        view::Styles::from_env(),
                    )
                })
                .context("cannot start the view's thread")?
        };
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let watcher = {
            let terminate = terminate.clone();
            async move {
                sigterm.recv().await;
                terminate.store(true, Ordering::Relaxed);
            }
        };
        let finished = tokio::task::spawn_blocking(move || view.join());
        tokio::pin!(finished);
        // On SIGTERM the view stops at its next turn and restores the terminal.
        let joined = tokio::select! {
            joined = &mut finished => joined,
            () = watcher => finished.await,
        };
        joined?.map_err(|_| anyhow::anyhow!("the view's thread panicked"))??;
        Ok(ExitCode::SUCCESS)
    }
}
