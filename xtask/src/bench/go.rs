//! What tracer costs a Go program (`bench/go-workloads`, built with Go 1.23 and
//! 1.19): against the kernel's trap floor (an empty uprobe on
//! `runtime.casgstatus`, `tracer trace --floor`) and against Go's own
//! `runtime/trace` enabled in-process, on a goroutine-heavy workload (channel
//! ping-pong) and a network one (loopback TCP echo). Same rules as the rest of
//! the bench: configurations interleaved round by round, medians.

use std::{fs, path::Path, process::Command};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::{
    Plan, progress, report, rotated,
    run::{self, Bins, Config, Instrumented},
};
use crate::{process::run as run_cmd, setup::go_binary};

/// The Go releases measured: the newest, and 1.19 (whose `casgstatus` probe is
/// single-stepped, not emulated).
const VERSIONS: [&str; 2] = ["1.23", "1.19"];

/// Go's own tracer, written in-process.
const RUNTIME_TRACE: Instrumented = Instrumented::InProcess("runtime/trace");

const CONFIGS: [Instrumented; 4] = [
    Instrumented::Untraced,
    RUNTIME_TRACE,
    Instrumented::Tracer(Config::Floor),
    Instrumented::Tracer(Config::Trace),
];

/// Builds the workload with Go `version`; returns its directory.
fn build(root: &Path, version: &str) -> Result<std::path::PathBuf> {
    let out = root.join("target/go-bench").join(format!("go{version}"));
    fs::create_dir_all(&out)?;
    run_cmd(
        Command::new(go_binary(version))
            .current_dir(root.join("bench/go-workloads"))
            .env("GOFLAGS", "-mod=mod")
            .env("GOPROXY", "off")
            .env("GOTOOLCHAIN", "local")
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", root.join("target/go-bench/cache"))
            .args(["build", "-o"])
            .arg(out.join("go-workload")),
    )?;
    Ok(out)
}

/// The workloads: (name, arguments), sized by `plan`.
fn workloads(plan: Plan) -> [(&'static str, Vec<String>); 2] {
    let scale = if plan.quick { 1 } else { 4 };
    [
        (
            "goroutines",
            vec![
                "-n".into(),
                "50".into(),
                "-k".into(),
                (500 * scale).to_string(),
            ],
        ),
        (
            "net",
            vec![
                "-n".into(),
                "4".into(),
                "-k".into(),
                (250 * scale).to_string(),
            ],
        ),
    ]
}

/// Every Go measurement: per version and workload, per configuration, the
/// median ns per operation and the tracer's events per operation.
pub fn rounds(root: &Path, bins: &Bins, plan: Plan) -> Result<Value> {
    let mut results = serde_json::Map::new();
    for version in VERSIONS {
        let dir =
            build(root, version).with_context(|| format!("building the Go {version} workload"))?;
        let go_bins = Bins {
            tracer: bins.tracer.clone(),
            baseline: None,
            plain: dir.clone(),
            await_chains: dir.clone(),
            console: dir,
            scratch: bins.scratch.clone(),
        };
        for (workload, args) in workloads(plan) {
            let mut per_config: Vec<(Instrumented, Vec<f64>, Vec<f64>)> = CONFIGS
                .iter()
                .map(|c| (*c, Vec::new(), Vec::new()))
                .collect();
            for round in 0..plan.rounds {
                for config in rotated(&CONFIGS, round) {
                    progress(&format!(
                        "go{version} {workload} {} round {}",
                        config.name(),
                        round + 1
                    ));
                    let (ns_per_op, events_per_op) = sample(&go_bins, config, workload, &args)?;
                    let slot = per_config
                        .iter_mut()
                        .find(|(c, ..)| *c == config)
                        .expect("config");
                    slot.1.push(ns_per_op);
                    slot.2.push(events_per_op);
                }
            }
            let figures: Vec<(Instrumented, f64, f64)> = per_config
                .into_iter()
                .map(|(config, ns, events)| {
                    let median = |values| report::median(values).unwrap_or(f64::NAN);
                    (config, median(ns), median(events))
                })
                .collect();
            results.insert(format!("go{version} {workload}"), summary(&figures));
        }
    }
    Ok(Value::Object(results))
}

/// One run: (ns per operation, tracer events per operation).
fn sample(
    bins: &Bins,
    config: Instrumented,
    workload: &str,
    args: &[String],
) -> Result<(f64, f64)> {
    let mut args: Vec<String> = args.to_vec();
    if config == RUNTIME_TRACE {
        args.extend([
            "-trace".into(),
            bins.scratch.join("go.trace").display().to_string(),
        ]);
    }
    args.push(workload.into());
    let sample = run::workload(bins, config.tracer(), "go-workload", &args)?;
    let seconds = sample.result["seconds"].as_f64().context("seconds")?;
    let ops = sample.result["ops"].as_f64().context("ops")?.max(1.0);
    let events = sample.tracer.map_or(0, |cost| cost.delivered) as f64;
    Ok((seconds * 1e9 / ops, events / ops))
}

/// The figures of one workload: ns/op per configuration, extra ns/op over
/// untraced, and the ratios the issue asks for.
fn summary(figures: &[(Instrumented, f64, f64)]) -> Value {
    let ns = |wanted: Instrumented| {
        figures
            .iter()
            .find(|(config, ..)| *config == wanted)
            .map_or(f64::NAN, |(_, ns, _)| *ns)
    };
    let base = ns(Instrumented::Untraced);
    let extra = |config| ns(config) - base;
    let tracer = extra(Instrumented::Tracer(Config::Trace));
    json!({
        "ns_per_op": figures.iter().map(|(c, ns, _)| (c.name().to_owned(), json!(*ns))).collect::<serde_json::Map<_, _>>(),
        "extra_ns_per_op": figures.iter().map(|(c, _, _)| (c.name().to_owned(), json!(extra(*c)))).collect::<serde_json::Map<_, _>>(),
        "tracer_events_per_op": figures.iter().find(|(c, ..)| *c == Instrumented::Tracer(Config::Trace)).map(|(_, _, e)| *e),
        "tracer_over_floor": tracer / extra(Instrumented::Tracer(Config::Floor)),
        "tracer_over_runtime_trace": tracer / extra(RUNTIME_TRACE),
    })
}

/// The Go section of the printed report.
pub fn markdown(go: &Value) -> String {
    let mut out = String::from(
        "\n### Go\n\n| workload | untraced ns/op | floor +ns/op | runtime/trace +ns/op | tracer +ns/op | events/op | tracer/floor | tracer/runtime-trace |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (name, figures) in go.as_object().into_iter().flatten() {
        let extra = |config: &str| {
            figures["extra_ns_per_op"][config]
                .as_f64()
                .unwrap_or(f64::NAN)
        };
        out.push_str(&format!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.2} | {:.2} |\n",
            figures["ns_per_op"]["untraced"]
                .as_f64()
                .unwrap_or(f64::NAN),
            extra("floor"),
            extra("runtime/trace"),
            extra("tracer trace"),
            figures["tracer_events_per_op"].as_f64().unwrap_or(f64::NAN),
            figures["tracer_over_floor"].as_f64().unwrap_or(f64::NAN),
            figures["tracer_over_runtime_trace"]
                .as_f64()
                .unwrap_or(f64::NAN),
        ));
    }
    out
}
