//! `cargo xtask bench`: what tracer costs, measured side by side in one run.
//!
//! Every configuration ([`Config`]) runs the same workloads, interleaved round by
//! round (A B C … then B C … A), so that a noisy machine disturbs them alike;
//! figures are medians over the rounds. Prints a markdown table on stdout and
//! writes everything, samples included, to `bench/results/latest.json`.

mod go;
mod load;
mod node;
mod report;
mod run;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::{
    build_cmd::cargo_at_root,
    process::{cargo, require_root, run as run_cmd},
};
use run::{Bins, Config, HttpSample, Sample};

/// The workload workspace, relative to the root.
const WORKLOADS_DIR: &str = "bench/workloads";
/// Where results go, relative to the root.
const RESULTS: &str = "bench/results/latest.json";

/// How much to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Rounds of every configuration.
    pub rounds: usize,
    /// Tasks of the poll workload.
    pub tasks: u64,
    /// Yields of each task.
    pub yields: u64,
    /// Tasks of the few-polls workload (each polled `few_yields + 1` times).
    pub few_tasks: u64,
    /// Yields of each task of the few-polls workload.
    pub few_yields: u64,
    /// Seconds of HTTP load per run.
    pub http_seconds: u64,
    /// Connections of the HTTP load.
    pub connections: usize,
    /// Seconds of each sustained-rate run.
    pub paced_seconds: f64,
    /// Pass `--quick` to criterion.
    pub quick: bool,
}

impl Plan {
    /// The full run: about a million polls per sample, five rounds.
    pub const FULL: Plan = Plan {
        rounds: 5,
        tasks: 1000,
        yields: 1000,
        few_tasks: 20_000,
        few_yields: 20,
        http_seconds: 5,
        connections: 4,
        paced_seconds: 3.0,
        quick: false,
    };
    /// `--quick`: the same figures, fewer and shorter samples.
    pub const QUICK: Plan = Plan {
        rounds: 2,
        tasks: 500,
        yields: 200,
        few_tasks: 5_000,
        few_yields: 20,
        http_seconds: 1,
        connections: 4,
        paced_seconds: 1.0,
        quick: true,
    };
}

/// Sustained event rates of the drop measurement (2 events per poll).
const EVENT_RATES: [u64; 3] = [100_000, 500_000, 1_000_000];
/// The attach-time workloads and their number of distinct future types.
const FUTURE_TYPES: [u64; 3] = [10, 100, 1000];
/// Poll workload flavours.
const FLAVORS: [&str; 2] = ["multi", "current"];

/// Builds everything, runs every measurement, prints the table, writes the JSON.
pub fn bench(root: &Path, plan: Plan) -> Result<()> {
    require_root("`cargo xtask bench` (the tracer loads BPF programs)")?;
    let started = Instant::now();
    let machine = machine();
    let bins = build(root)?;
    // `TRACER_BENCH_BASELINE=/path/to/tracer`: that build too, side by side.
    let mut configs = Config::ALL.to_vec();
    if bins.baseline.is_some() {
        configs.insert(4, Config::Baseline);
    }

    let pipeline = pipeline(root, plan)?;
    let polls = poll_rounds(&bins, &configs, plan)?;
    let http = http_rounds(&bins, &configs, plan)?;
    let drops = drops(&bins, plan)?;
    let attach = attach_times(&bins)?;
    let go = go::rounds(root, &bins, plan)?;
    let node = node::rounds(root, &bins, plan)?;

    let results = json!({
        "quick": plan.quick,
        "plan": {
            "rounds": plan.rounds, "tasks": plan.tasks, "yields": plan.yields,
            "few_tasks": plan.few_tasks, "few_yields": plan.few_yields,
            "http_seconds": plan.http_seconds, "connections": plan.connections,
            "paced_seconds": plan.paced_seconds,
        },
        "machine": machine,
        "configs": configs.iter().map(|c| c.name()).collect::<Vec<_>>(),
        "pipeline": pipeline,
        "polls": polls,
        "http": http,
        "drops": drops,
        "attach": attach,
        "go": go,
        "node": node,
        "bench_seconds": started.elapsed().as_secs_f64(),
    });
    let results = report::with_figures(results, &configs);
    let path = root.join(RESULTS);
    write_results(&path, &results)?;
    print!("{}", report::markdown(&results, &configs));
    print!("{}", go::markdown(&results["go"]));
    print!("{}", node::markdown(&results["node"]));
    eprintln!(
        "bench: done in {:.0} s; results in {}",
        started.elapsed().as_secs_f64(),
        path.display()
    );
    Ok(())
}

/// `cargo xtask bench --go`: the Go workloads alone, into `bench/results/go.json`.
pub fn go_only(root: &Path, plan: Plan) -> Result<()> {
    let bins = tracer_only(root)?;
    let go = go::rounds(root, &bins, plan)?;
    let results =
        json!({ "quick": plan.quick, "rounds": plan.rounds, "machine": machine(), "go": go });
    write_results(&root.join("bench/results/go.json"), &results)?;
    print!("{}", go::markdown(&results["go"]));
    Ok(())
}

/// `cargo xtask bench --node`: the Node workload alone, into
/// `bench/results/node.json`.
pub fn node_only(root: &Path, plan: Plan) -> Result<()> {
    let bins = tracer_only(root)?;
    let node = node::rounds(root, &bins, plan)?;
    let results = json!({
        "quick": plan.quick, "rounds": plan.rounds, "http_seconds": plan.http_seconds,
        "connections": plan.connections, "machine": machine(), "node": node,
    });
    write_results(&root.join("bench/results/node.json"), &results)?;
    print!("{}", node::markdown(&results["node"]));
    Ok(())
}

/// Builds the tracer alone, for a bench of workloads that are not the Rust
/// ones; returns where it is (the Rust workloads' directories are left empty).
fn tracer_only(root: &Path) -> Result<Bins> {
    require_root("`cargo xtask bench` (the tracer loads BPF programs)")?;
    run_cmd(cargo_at_root(root)?.args(["build", "--release", "-p", "tracer-cli"]))?;
    let scratch = std::env::temp_dir().join("tracer-bench");
    std::fs::create_dir_all(&scratch)?;
    Ok(Bins {
        tracer: root.join("target/release/tracer"),
        baseline: None,
        plain: scratch.clone(),
        console: scratch.clone(),
        await_chains: scratch.clone(),
        scratch,
    })
}

/// Writes `results` as pretty JSON to `path`.
fn write_results(path: &Path, results: &Value) -> Result<()> {
    std::fs::create_dir_all(path.parent().context("results path")?)?;
    std::fs::write(path, serde_json::to_string_pretty(results)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Builds the tracer and both workload builds; returns where they are.
fn build(root: &Path) -> Result<Bins> {
    run_cmd(cargo_at_root(root)?.args(["build", "--release", "-p", "tracer-cli"]))?;
    let workloads = root.join(WORKLOADS_DIR);
    let plain_target = workloads.join("target");
    let console_target = workloads.join("target/console");
    let plain_cargo = || {
        let mut command = cargo();
        command
            .current_dir(&workloads)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env("CARGO_TARGET_DIR", &plain_target);
        command
    };
    run_cmd(plain_cargo().args(["build", "--release"]))?;
    // As tokio-console's README asks: Tokio's `tracing` feature (in the `console`
    // feature) and `--cfg tokio_unstable`.
    run_cmd(
        cargo()
            .current_dir(&workloads)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env("RUSTFLAGS", "--cfg tokio_unstable")
            .env("CARGO_TARGET_DIR", &console_target)
            .args(["build", "--release", "--features", "console"])
            .args(["--bin", "polls", "--bin", "http_server"]),
    )?;
    // Full type DWARF for the workload crate only, as the README tells users
    // who want await chains: what reading them costs is measured on this build.
    run_cmd(
        plain_cargo()
            .args(["build", "--profile", "await-chains"])
            .args(["--bin", "polls", "--bin", "http_server"]),
    )?;
    let scratch = std::env::temp_dir().join("tracer-bench");
    std::fs::create_dir_all(&scratch)?;
    Ok(Bins {
        tracer: root.join("target/release/tracer"),
        baseline: std::env::var_os("TRACER_BENCH_BASELINE").map(Into::into),
        plain: plain_target.join("release"),
        console: console_target.join("release"),
        await_chains: plain_target.join("await-chains"),
        scratch,
    })
}

/// The pipeline's criterion bench, read back from criterion's JSON.
fn pipeline(root: &Path, plan: Plan) -> Result<Value> {
    let mut cmd = cargo_at_root(root)?;
    cmd.args(["bench", "-p", "tracer-cli", "--bench", "pipeline", "--"]);
    if plan.quick {
        cmd.arg("--quick");
    } else {
        cmd.args(["--warm-up-time", "1", "--measurement-time", "5"]);
    }
    // criterion reports on stdout; ours carries only the tables.
    cmd.stdout(std::io::stderr());
    run_cmd(&mut cmd)?;
    let mut out = serde_json::Map::new();
    for name in ["decode_model", "decode_model_json"] {
        let dir = root
            .join("target/criterion/pipeline")
            .join(name)
            .join("new");
        let read = |file: &str| -> Result<Value> {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("criterion left no {}", path.display()))?;
            Ok(serde_json::from_str(&text)?)
        };
        let mean_ns = read("estimates.json")?["mean"]["point_estimate"]
            .as_f64()
            .context("criterion estimates without a mean")?;
        let events = read("benchmark.json")?["throughput"]["Elements"]
            .as_f64()
            .context("criterion benchmark without element throughput")?;
        out.insert(
            name.to_owned(),
            json!({ "events_per_s": events / (mean_ns / 1e9), "ns_per_event": mean_ns / events }),
        );
    }
    Ok(Value::Object(out))
}

/// Progress on stderr.
fn progress(what: &str) {
    eprintln!("bench: {what}");
}

/// The configurations of round `round`, rotated so none always goes first.
fn rotated<C: Copy>(configs: &[C], round: usize) -> Vec<C> {
    let mut order = configs.to_vec();
    order.rotate_left(round % configs.len().max(1));
    order
}

/// JSON of one sample.
fn sample_json(config: Config, round: usize, sample: &Sample) -> Value {
    json!({ "config": config.name(), "round": round, "result": sample.result,
            "tracer": sample.tracer.as_ref().map(report::tracer_json) })
}

/// The poll workloads (poll-heavy and few polls per task), both flavours,
/// every configuration, interleaved.
fn poll_rounds(bins: &Bins, configs: &[Config], plan: Plan) -> Result<Value> {
    let mut samples = Vec::new();
    for round in 0..plan.rounds {
        for config in rotated(configs, round) {
            for (workload, tasks, yields) in poll_workloads(plan) {
                for flavor in FLAVORS {
                    progress(&format!(
                        "polls {workload} {flavor} · {} · round {}/{}",
                        config.name(),
                        round + 1,
                        plan.rounds
                    ));
                    let args = [
                        "--flavor".to_owned(),
                        flavor.to_owned(),
                        "--tasks".to_owned(),
                        tasks.to_string(),
                        "--yields".to_owned(),
                        yields.to_string(),
                    ];
                    let sample =
                        run::workload(bins, config, "polls", &args).with_context(|| {
                            format!("polls {workload} {flavor} under {}", config.name())
                        })?;
                    let mut value = sample_json(config, round, &sample);
                    value["flavor"] = json!(flavor);
                    value["workload"] = json!(workload);
                    samples.push(value);
                    run::settle();
                }
            }
        }
    }
    Ok(Value::Array(samples))
}

/// The poll workloads: (name, tasks, yields of each task).
pub fn poll_workloads(plan: Plan) -> [(&'static str, u64, u64); 2] {
    [
        (POLL_HEAVY, plan.tasks, plan.yields),
        (FEW_POLLS, plan.few_tasks, plan.few_yields),
    ]
}

/// Many polls per task: the poll probes dominate.
pub const POLL_HEAVY: &str = "poll-heavy";
/// Few polls per task: the spawn, complete and free probes weigh too.
pub const FEW_POLLS: &str = "few-polls";

/// The HTTP server under load, every configuration, interleaved.
fn http_rounds(bins: &Bins, configs: &[Config], plan: Plan) -> Result<Value> {
    let mut samples = Vec::new();
    for round in 0..plan.rounds {
        for config in rotated(configs, round) {
            progress(&format!(
                "http · {} · round {}/{}",
                config.name(),
                round + 1,
                plan.rounds
            ));
            let HttpSample { load, tracer } = run::http(
                bins,
                config,
                plan.connections,
                Duration::from_secs(plan.http_seconds),
            )
            .with_context(|| format!("http under {}", config.name()))?;
            samples.push(json!({
                "config": config.name(), "round": round,
                "requests_per_s": load.requests_per_s, "p50_us": load.p50_us, "p99_us": load.p99_us,
                "tracer": tracer.as_ref().map(report::tracer_json),
            }));
            run::settle();
        }
    }
    Ok(Value::Array(samples))
}

/// Drops of `tracer trace` with the default ring at sustained event rates.
fn drops(bins: &Bins, plan: Plan) -> Result<Value> {
    let mut rows = Vec::new();
    for rate in EVENT_RATES {
        progress(&format!("drops at {rate} events/s"));
        let args = [
            "--polls-per-s".to_owned(),
            (rate / 2).to_string(),
            "--seconds".to_owned(),
            plan.paced_seconds.to_string(),
        ];
        let sample = run::workload(bins, Config::Trace, "paced", &args)
            .with_context(|| format!("paced run at {rate} events/s"))?;
        let tracer = sample.tracer.unwrap_or_default();
        let reached = sample.result["polls_per_s"].as_f64().unwrap_or(0.0) * 2.0;
        rows.push(json!({
            "asked_events_per_s": rate, "reached_events_per_s": reached,
            "delivered": tracer.delivered, "dropped": tracer.dropped,
            "tracer_cpu_s": tracer.cpu_s, "seconds": plan.paced_seconds,
        }));
        run::settle();
    }
    Ok(Value::Array(rows))
}

/// Attach time against the number of probe sites.
fn attach_times(bins: &Bins) -> Result<Value> {
    let mut rows = Vec::new();
    for types in FUTURE_TYPES {
        progress(&format!("attach to {types} future types"));
        let name = format!("futures_{types}");
        let (attach_s, sites) =
            run::attach_only(bins, &name).with_context(|| format!("attach to {name}"))?;
        rows.push(json!({ "future_types": types, "sites": sites, "attach_s": attach_s }));
        run::settle();
    }
    Ok(Value::Array(rows))
}

/// The machine, for the record.
fn machine() -> Value {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "kernel": kernel.trim(),
        "loadavg_at_start": load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    })
}
