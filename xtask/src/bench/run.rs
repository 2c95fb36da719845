//! Running one workload once under one configuration: start the workload, attach
//! the tracer (if the configuration has one) and wait until its probes are in,
//! let the workload go, then collect the workload's own result and the tracer's
//! CPU time, peak RSS, event and drop counts (from its summary on stderr).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Stdio},
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use super::load::{self, LoadResult};

/// A measured configuration: the same workload, instrumented differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Config {
    /// No instrumentation at all.
    Untraced,
    /// Empty uprobe + uretprobe on the same `raw::poll` sites (`tracer --floor`).
    Floor,
    /// Empty programs on every site `tracer trace` probes (`tracer
    /// --floor-every-site`): an empty uprobe for each entry program, an empty
    /// uretprobe for each return program, so it traps as often as the tracer.
    FloorEverySite,
    /// `tracer trace --json` to /dev/null: every event.
    Trace,
    /// `tracer trace --no-wakes --json`: every event but wakes (no waker, defer,
    /// abort or worker probes), to measure what wakes cost.
    NoWakes,
    /// `tracer trace --no-polls --json` to /dev/null: lifecycle events only.
    NoPolls,
    /// `tracer trace --task GLOB --json` with a glob no task of the workload
    /// matches: no `raw::poll` site is probed, so what tasks that are not chosen
    /// cost is the spawn, complete, free and wake probes alone.
    OtherTasks,
    /// `tracer record` to a file (overwritten each run).
    Record,
    /// `tracer trace --json` on the workload built with full type DWARF for its
    /// crate (`debug = 2`, profile `await-chains`): every Pending poll's await
    /// chain is read.
    AwaitChains,
    /// The same build with `--no-await-chains`: set against [`Config::AwaitChains`],
    /// what reading the chains costs.
    NoAwaitChains,
    /// `tracer trace --bpf-stats --json`: the kernel counts each BPF program's
    /// runs and time, which splits the tracer's cost into traps and programs.
    BpfStats,
    /// The workload rebuilt with tokio-console's `console-subscriber`.
    Console,
    /// `tracer trace --js-resources --json` (Node): JS-level resources too,
    /// through hardware watchpoints.
    JsResources,
    /// `tracer trace --json` with another tracer build (`TRACER_BENCH_BASELINE`):
    /// a change measured side by side against what it changes.
    Baseline,
}

impl Config {
    /// Every configuration, in table order.
    pub const ALL: [Config; 12] = [
        Config::Untraced,
        Config::Floor,
        Config::FloorEverySite,
        Config::Trace,
        Config::NoWakes,
        Config::NoPolls,
        Config::OtherTasks,
        Config::Record,
        Config::AwaitChains,
        Config::NoAwaitChains,
        Config::BpfStats,
        Config::Console,
    ];

    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Config::Untraced => "untraced",
            Config::Floor => "floor",
            Config::FloorEverySite => "floor (every site)",
            Config::Trace => "tracer trace",
            Config::NoWakes => "tracer --no-wakes",
            Config::NoPolls => "tracer --no-polls",
            Config::OtherTasks => "tracer --task (none chosen)",
            Config::Record => "tracer record",
            Config::AwaitChains => "tracer trace (debug = 2 build, await chains)",
            Config::NoAwaitChains => "tracer --no-await-chains (debug = 2 build)",
            Config::BpfStats => "tracer --bpf-stats",
            Config::Console => "console-subscriber",
            Config::Baseline => "tracer trace (baseline build)",
            Config::JsResources => "tracer --js-resources",
        }
    }

    /// The tracer's arguments before `-p PID`, if the configuration runs it.
    fn tracer_args(self, scratch: &Path) -> Option<Vec<String>> {
        let args: &[&str] = match self {
            Config::Untraced | Config::Console => return None,
            Config::Floor => &["trace", "--floor"],
            Config::FloorEverySite => &["trace", "--floor-every-site"],
            Config::Trace | Config::Baseline | Config::AwaitChains => &["trace", "--json"],
            Config::NoAwaitChains => &["trace", "--no-await-chains", "--json"],
            Config::JsResources => &["trace", "--js-resources", "--json"],
            Config::NoWakes => &["trace", "--no-wakes", "--json"],
            Config::BpfStats => &["trace", "--bpf-stats", "--json"],
            Config::NoPolls => &["trace", "--no-polls", "--json"],
            Config::OtherTasks => &["trace", "--task", "no_such_crate::*", "--json"],
            Config::Record => {
                let file = scratch.join("bench.rec");
                return Some(vec![
                    "record".into(),
                    "--force".into(),
                    "-o".into(),
                    file.display().to_string(),
                ]);
            }
        };
        Some(args.iter().map(|arg| arg.to_string()).collect())
    }
}

/// How a run of another runtime's workload (Go, Node) is instrumented:
/// nothing, the runtime's own in-process instrumentation, or the tracer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instrumented {
    /// Nothing.
    Untraced,
    /// The runtime's own instrumentation, enabled in-process as its users do
    /// (named: `runtime/trace`, `async_hooks`).
    InProcess(&'static str),
    /// One of the tracer's own configurations.
    Tracer(Config),
}

impl Instrumented {
    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Instrumented::Untraced => "untraced",
            Instrumented::InProcess(name) => name,
            Instrumented::Tracer(config) => config.name(),
        }
    }

    /// The tracer's configuration for the run ([`Config::Untraced`]: none).
    pub fn tracer(self) -> Config {
        match self {
            Instrumented::Tracer(config) => config,
            Instrumented::Untraced | Instrumented::InProcess(_) => Config::Untraced,
        }
    }
}

/// Where the binaries are.
pub struct Bins {
    /// `target/release/tracer`.
    pub tracer: PathBuf,
    /// The [`Config::Baseline`] tracer, if one was given.
    pub baseline: Option<PathBuf>,
    /// The plain workload build.
    pub plain: PathBuf,
    /// The console-subscriber workload build.
    pub console: PathBuf,
    /// The workload build with full type DWARF for its crate (await chains).
    pub await_chains: PathBuf,
    /// A directory for recordings.
    pub scratch: PathBuf,
}

impl Bins {
    fn workload(&self, config: Config, name: &str) -> PathBuf {
        let dir = match config {
            Config::Console => &self.console,
            Config::AwaitChains | Config::NoAwaitChains => &self.await_chains,
            _ => &self.plain,
        };
        dir.join(name)
    }
}

/// What the tracer cost and saw during one run.
#[derive(Clone, Debug, Default)]
pub struct TracerCost {
    /// User + system CPU seconds of the tracer process.
    pub cpu_s: f64,
    /// Its peak resident set, KiB.
    pub max_rss_kib: u64,
    /// Seconds the tracer spent attaching (its own figure).
    pub attach_s: f64,
    /// Probe sites attached.
    pub sites: u64,
    /// Raw events read from the ring buffer.
    pub delivered: u64,
    /// Raw events dropped because the ring buffer was full.
    pub dropped: u64,
    /// Hook events the tracer reported (its summary's first line).
    pub events: u64,
    /// Live delay, p99 over drains, ms (its summary), if it printed one.
    pub delay_p99_ms: Option<f64>,
    /// Live delay, max, ms.
    pub delay_max_ms: Option<f64>,
    /// With `--bpf-stats`: each BPF program's (name, runs, total ns).
    pub programs: Vec<(String, u64, u64)>,
}

/// One run of a workload that reports its own result as JSON.
pub struct Sample {
    /// The workload's JSON result line.
    pub result: Value,
    /// The tracer's cost, when one ran.
    pub tracer: Option<TracerCost>,
}

/// A started tracer, its probes attached.
struct Attached {
    child: Child,
    attach_s: f64,
    sites: u64,
    stderr: JoinHandle<String>,
}

/// Reads `stderr` until a line containing `marker`, returning the lines read;
/// the rest is collected by a thread.
fn read_until(stderr: ChildStderr, marker: &str) -> Result<(Vec<String>, JoinHandle<String>)> {
    let mut reader = BufReader::new(stderr);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            bail!("exited before printing {marker:?}:\n{}", lines.join(""));
        }
        let found = line.contains(marker);
        lines.push(line);
        if found {
            break;
        }
    }
    let rest = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = reader.read_to_string(&mut text);
        text
    });
    Ok((lines, rest))
}

/// Starts the tracer on `pid` and waits until its probes are attached and armed.
fn attach(bins: &Bins, config: Config, pid: u32) -> Result<Option<Attached>> {
    let Some(mut args) = config.tracer_args(&bins.scratch) else {
        return Ok(None);
    };
    args.extend(["-p".into(), pid.to_string()]);
    let tracer = match (config, &bins.baseline) {
        (Config::Baseline, Some(baseline)) => baseline,
        _ => &bins.tracer,
    };
    let mut child = Command::new(tracer)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", bins.tracer.display()))?;
    let stderr = child.stderr.take().context("tracer stderr")?;
    let (lines, stderr) = read_until(stderr, "probe sites attached in")
        .with_context(|| format!("tracer {} failed", args.join(" ")))?;
    let (sites, attach_s) = attach_status(lines.last().map(String::as_str).unwrap_or_default());
    Ok(Some(Attached {
        child,
        attach_s,
        sites,
        stderr,
    }))
}

/// (probe sites, seconds) from the tracer's status line, e.g.
/// `tracer: tracing /bin/app (tokio 1.54.1, pid 7): 35 tokio probe sites attached in 0.02 s (…)`.
fn attach_status(line: &str) -> (u64, f64) {
    let sites = line
        .rsplit_once("): ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let seconds = line
        .split(" attached in ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(f64::NAN);
    (sites, seconds)
}

/// Waits for the tracer to end (it stops when its target exits) and reads its cost.
fn finish(attached: Attached) -> Result<TracerCost> {
    let pid = attached.child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; the pointers are valid.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        bail!(
            "waiting for the tracer: {}",
            std::io::Error::last_os_error()
        );
    }
    let summary = attached
        .stderr
        .join()
        .map_err(|_| anyhow!("tracer stderr reader panicked"))?;
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("the tracer failed (wait status {status}):\n{summary}");
    }
    // "tracer: raw events: emitted 123 = delivered 120 + dropped 3 (ring buffer full)"
    let (delivered, dropped) = summary
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix("tracer: raw events: emitted ")?;
            let (_, rest) = rest.split_once(" delivered ")?;
            let (delivered, rest) = rest.split_once(" + dropped ")?;
            let dropped = rest.split_whitespace().next()?;
            Some((delivered.parse().ok()?, dropped.parse().ok()?))
        })
        .unwrap_or((0, 0));
    // "tracer: 51 events (init 6, …)"
    let events = summary
        .lines()
        .find_map(|line| {
            line.strip_prefix("tracer: ")?
                .split_once(" events (")?
                .0
                .parse()
                .ok()
        })
        .unwrap_or(0);
    // "tracer: live delay (…): p50 1.0 ms, p99 2.0 ms, max 3.0 ms over 9 drains"
    let delay = |key: &str| {
        summary.lines().find_map(|line| {
            let rest = line.strip_prefix("tracer: live delay")?;
            rest.split_once(key)?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(TracerCost {
        programs: program_times(&summary),
        cpu_s: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss as u64,
        attach_s: attached.attach_s,
        sites: attached.sites,
        delivered,
        dropped,
        events,
        delay_p99_ms: delay(" p99 "),
        delay_max_ms: delay(" max "),
    })
}

/// The `--bpf-stats` summary line's programs as (name, runs, total ns):
/// "tracer: BPF program time (--bpf-stats): 1.2 s in all; poll_enter 10 runs,
/// 400 ns a run; … (…)".
fn program_times(summary: &str) -> Vec<(String, u64, u64)> {
    let Some(line) = summary
        .lines()
        .find_map(|line| line.strip_prefix("tracer: BPF program time (--bpf-stats): "))
    else {
        return Vec::new();
    };
    let line = line.split(" (").next().unwrap_or(line);
    line.split("; ")
        .skip(1)
        .filter_map(|program| {
            let (name, rest) = program.split_once(' ')?;
            let (runs, rest) = rest.split_once(" runs, ")?;
            let ns_a_run: u64 = rest.strip_suffix(" ns a run")?.parse().ok()?;
            let runs: u64 = runs.parse().ok()?;
            Some((name.to_owned(), runs, runs * ns_a_run))
        })
        .collect()
}

/// Runs workload `name` with `args` once under `config`.
pub fn workload(bins: &Bins, config: Config, name: &str, args: &[String]) -> Result<Sample> {
    let mut workload = Command::new(bins.workload(config, name))
        .args(args)
        .env("BENCH_WAIT_GO", "1")
        .env("TOKIO_CONSOLE_BIND", "127.0.0.1:0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start workload {name}"))?;
    let stderr = workload.stderr.take().context("workload stderr")?;
    let (_, workload_stderr) = read_until(stderr, "ready").with_context(|| name.to_owned())?;
    let tracer = attach(bins, config, workload.id())?;
    workload
        .stdin
        .take()
        .context("workload stdin")?
        .write_all(b"go\n")?;
    let mut output = String::new();
    workload
        .stdout
        .take()
        .context("workload stdout")?
        .read_to_string(&mut output)?;
    let status = workload.wait()?;
    let errors = workload_stderr.join().unwrap_or_default();
    if !status.success() {
        bail!("workload {name} failed ({status}):\n{errors}");
    }
    let result = serde_json::from_str(output.trim())
        .with_context(|| format!("workload {name} printed {output:?}, not its JSON result"))?;
    let tracer = tracer.map(finish).transpose()?;
    Ok(Sample { result, tracer })
}

/// Attaches the tracer to workload `name`, lets the workload run, and returns
/// the tracer's own attach figures: (seconds, probe sites).
///
/// The tracer is killed rather than waited for: closing thousands of uprobe
/// links takes minutes (each perf-event uprobe waits for its own RCU grace
/// period), which is teardown, not attach time; the kernel finishes it after
/// the kill.
pub fn attach_only(bins: &Bins, name: &str) -> Result<(f64, u64)> {
    let mut workload = Command::new(bins.workload(Config::Trace, name))
        .env("BENCH_WAIT_GO", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start workload {name}"))?;
    let stderr = workload.stderr.take().context("workload stderr")?;
    let _ = read_until(stderr, "ready").with_context(|| name.to_owned())?;
    let attached = attach(bins, Config::Trace, workload.id())?.context("no tracer")?;
    workload
        .stdin
        .take()
        .context("workload stdin")?
        .write_all(b"go\n")?;
    let status = workload.wait()?;
    let mut tracer = attached.child;
    let _ = tracer.kill();
    if !status.success() {
        bail!("workload {name} failed ({status})");
    }
    Ok((attached.attach_s, attached.sites))
}

/// What one HTTP run measured.
pub struct HttpSample {
    /// The load generator's figures.
    pub load: LoadResult,
    /// The tracer's cost, when one ran.
    pub tracer: Option<TracerCost>,
}

/// Runs the HTTP server under `config` and loads it for `duration`.
pub fn http(
    bins: &Bins,
    config: Config,
    connections: usize,
    duration: Duration,
) -> Result<HttpSample> {
    let mut server = Command::new(bins.workload(config, "http_server"));
    server.env("TOKIO_CONSOLE_BIND", "127.0.0.1:0");
    http_server(server, bins, config, connections, duration)
}

/// Runs `server` (an HTTP server that prints `listening on ADDR` on stderr and
/// serves until SIGTERM) under `config` and loads it for `duration`.
pub fn http_server(
    mut server: Command,
    bins: &Bins,
    config: Config,
    connections: usize,
    duration: Duration,
) -> Result<HttpSample> {
    let mut server = server
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start the HTTP server")?;
    let stderr = server.stderr.take().context("server stderr")?;
    let result = (|| {
        let (lines, _rest) = read_until(stderr, "listening on ").context("http_server")?;
        let addr: SocketAddr = lines
            .last()
            .and_then(|line| line.trim().strip_prefix("listening on "))
            .and_then(|addr| addr.parse().ok())
            .context("http_server printed no address")?;
        let tracer = attach(bins, config, server.id())?;
        let load = load::run(addr, connections, duration);
        Ok::<_, anyhow::Error>((load, tracer))
    })();
    // The server serves until told to stop; the tracer stops with it.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = server.wait();
    let (load, tracer) = result?;
    let tracer = tracer.map(finish).transpose()?;
    Ok(HttpSample {
        load: load?,
        tracer,
    })
}

/// Gives a process time to go: used between runs so one run's teardown does
/// not overlap the next one's start.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(100));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_status_gives_sites_and_seconds() {
        let line = "tracer: tracing /b/polls (tokio, pid 7): 35 tokio probe sites attached in 0.02 s (35 poll); Ctrl-C to stop\n";
        assert_eq!(attach_status(line), (35, 0.02));
    }
}
