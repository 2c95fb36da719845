//! What tracer costs a Node.js server (`bench/node-workloads/http_server.js`:
//! Node's own `http` module, keep-alive) under the bench's closed-loop HTTP
//! load, on `/usr/bin/node` (Node 20, static) and Debian's Node 18 (its
//! functions in a shared `libnode`, unpacked by `cargo xtask setup`): requests/s and latency untraced, with
//! in-process async_hooks on as Node users enable it (a `createHook` with all
//! four callbacks, each counting), with the kernel's trap floor (empty
//! programs on every site tracer probes), with `tracer trace` and with
//! `tracer trace --js-resources` (hardware watchpoints). Same rules
//! as the rest of the bench: configurations interleaved round by round,
//! medians.

use std::{path::Path, process::Command, time::Duration};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::{
    Plan, progress, report, rotated,
    run::{self, Bins, Config, HttpSample, Instrumented},
};

/// The machine's own Node (NodeSource's static build, 20).
const NODE: &str = "/usr/bin/node";

/// Which Node a run uses.
#[derive(Clone, Copy, Debug)]
enum Which {
    /// [`NODE`].
    Machine,
    /// Debian's Node 18 ([`crate::node18`]).
    Debian18,
}

impl Which {
    /// A command that starts this node with the arguments added after.
    fn command(self, root: &Path) -> Command {
        match self {
            Which::Machine => Command::new(NODE),
            Which::Debian18 => crate::node18::command(root),
        }
    }
}
/// The server script, relative to the workspace root.
const SERVER: &str = "bench/node-workloads/http_server.js";

/// async_hooks enabled in-process (`BENCH_ASYNC_HOOKS=1`).
const ASYNC_HOOKS: Instrumented = Instrumented::InProcess("async_hooks");

const CONFIGS: [Instrumented; 5] = [
    Instrumented::Untraced,
    ASYNC_HOOKS,
    Instrumented::Tracer(Config::FloorEverySite),
    Instrumented::Tracer(Config::Trace),
    Instrumented::Tracer(Config::JsResources),
];

/// Every Node measurement, per Node: per configuration, the medians of
/// requests/s, p50 and p99, their ratios to untraced, and the tracer's events
/// per request.
pub fn rounds(root: &Path, bins: &Bins, plan: Plan) -> Result<Value> {
    let mut results = serde_json::Map::new();
    for which in [Which::Machine, Which::Debian18] {
        let version = which
            .command(root)
            .arg("--version")
            .output()
            .with_context(|| format!("cannot run {which:?}'s node"))?;
        let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
        if version.is_empty() {
            anyhow::bail!("{which:?}'s node gives no version (for Node 18: `cargo xtask setup`)");
        }
        let mut samples: Vec<(Instrumented, HttpSample)> = Vec::new();
        for round in 0..plan.rounds {
            for config in rotated(&CONFIGS, round) {
                progress(&format!(
                    "node {version} http · {} · round {}/{}",
                    config.name(),
                    round + 1,
                    plan.rounds
                ));
                let sample = sample(root, which, bins, config, plan)
                    .with_context(|| format!("node {version} http under {}", config.name()))?;
                samples.push((config, sample));
                run::settle();
            }
        }
        results.insert(format!("node {version}"), summary(&samples));
    }
    Ok(Value::Object(results))
}

/// One run of the server on `which` node under `config`, loaded for the
/// plan's time.
fn sample(
    root: &Path,
    which: Which,
    bins: &Bins,
    config: Instrumented,
    plan: Plan,
) -> Result<HttpSample> {
    let mut server = which.command(root);
    server.arg(root.join(SERVER));
    if config == ASYNC_HOOKS {
        server.env("BENCH_ASYNC_HOOKS", "1");
    }
    run::http_server(
        server,
        bins,
        config.tracer(),
        plan.connections,
        Duration::from_secs(plan.http_seconds),
    )
}

/// The medians per configuration, their ratios to untraced, and the
/// tracer's extra time a request against the floor's and async_hooks'.
fn summary(samples: &[(Instrumented, HttpSample)]) -> Value {
    let median = |config: Instrumented, figure: &dyn Fn(&HttpSample) -> f64| {
        let values = samples
            .iter()
            .filter(|(c, _)| *c == config)
            .map(|(_, sample)| figure(sample))
            .collect();
        report::median(values).unwrap_or(f64::NAN)
    };
    let requests = |config| median(config, &|s| s.load.requests_per_s);
    let p50 = |config| median(config, &|s| s.load.p50_us);
    let p99 = |config| median(config, &|s| s.load.p99_us);
    let events_per_request = |config| {
        median(config, &|s| {
            let events = s.tracer.as_ref().map_or(0, |cost| cost.events) as f64;
            events / (s.load.requests as f64).max(1.0)
        })
    };
    // The server's time a request (it serves on one thread), above untraced.
    let extra_us = |config| 1e6 / requests(config) - 1e6 / requests(Instrumented::Untraced);
    let tracer = extra_us(Instrumented::Tracer(Config::Trace));
    let configs: Vec<Value> = CONFIGS
        .iter()
        .map(|config| {
            json!({
                "config": config.name(),
                "extra_us_per_request": extra_us(*config),
                "requests_per_s": requests(*config),
                "p50_us": p50(*config),
                "p99_us": p99(*config),
                "requests_per_s_vs_untraced": requests(*config) / requests(Instrumented::Untraced),
                "p99_vs_untraced": p99(*config) / p99(Instrumented::Untraced),
                "tracer_events_per_request": matches!(config, Instrumented::Tracer(_)).then(|| events_per_request(*config)),
            })
        })
        .collect();
    let samples: Vec<Value> = samples
        .iter()
        .map(|(config, sample)| {
            json!({
                "config": config.name(),
                "requests_per_s": sample.load.requests_per_s,
                "p50_us": sample.load.p50_us,
                "p99_us": sample.load.p99_us,
                "tracer": sample.tracer.as_ref().map(report::tracer_json),
            })
        })
        .collect();
    json!({
        "configs": configs,
        "tracer_over_floor": tracer / extra_us(Instrumented::Tracer(Config::FloorEverySite)),
        "tracer_over_async_hooks": tracer / extra_us(ASYNC_HOOKS),
        "samples": samples,
    })
}

/// The Node section of the printed report: a table per Node.
pub fn markdown(nodes: &Value) -> String {
    let mut out = String::new();
    for (name, node) in nodes.as_object().into_iter().flatten() {
        out.push_str(&format!(
            "\n### Node.js ({name} `http` server)\n\n| config | requests/s | p50 µs | p99 µs | requests/s vs untraced | p99 vs untraced | +µs/request | events/request |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n",
        ));
        for figures in node["configs"].as_array().into_iter().flatten() {
            let number = |key: &str| figures[key].as_f64().unwrap_or(f64::NAN);
            let events = figures["tracer_events_per_request"]
                .as_f64()
                .map_or("-".to_owned(), |events| format!("{events:.1}"));
            out.push_str(&format!(
                "| {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.1} | {events} |\n",
                figures["config"].as_str().unwrap_or("?"),
                number("requests_per_s"),
                number("p50_us"),
                number("p99_us"),
                number("requests_per_s_vs_untraced"),
                number("p99_vs_untraced"),
                number("extra_us_per_request"),
            ));
        }
        let ratio = |key: &str| node[key].as_f64().unwrap_or(f64::NAN);
        out.push_str(&format!(
            "\n- tracer's extra time a request: {:.2}× the floor's, {:.2}× in-process async_hooks'\n",
            ratio("tracer_over_floor"),
            ratio("tracer_over_async_hooks"),
        ));
    }
    out
}
