//! Turns the raw samples into the figures the issue asks for (medians, per-poll
//! costs above untraced, ratios) and renders them as markdown.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::run::{Config, TracerCost};

/// Goal: tracer's per-poll cost at most this times the floor's.
const FLOOR_RATIO_GOAL: f64 = 1.25;
/// Goal: the pipeline handles this many events per second on one core.
const PIPELINE_GOAL: f64 = 5e6;
/// Goal: attaching 1,000 sites takes at most this long.
const ATTACH_GOAL_S: f64 = 1.0;

/// A tracer's cost as JSON.
pub fn tracer_json(cost: &TracerCost) -> Value {
    json!({
        "cpu_s": cost.cpu_s, "max_rss_kib": cost.max_rss_kib, "attach_s": cost.attach_s,
        "sites": cost.sites, "delivered": cost.delivered, "dropped": cost.dropped,
        "events": cost.events, "delay_p99_ms": cost.delay_p99_ms, "delay_max_ms": cost.delay_max_ms,
        "programs": cost.programs.iter().map(|(name, runs, ns)| {
            (name.clone(), json!({ "runs": runs, "ns": ns }))
        }).collect::<serde_json::Map<_, _>>(),
    })
}

/// The median of the finite `values`, if any.
pub(super) fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// The median of `field` (a JSON pointer) over `samples`.
fn median_of<'a>(samples: impl Iterator<Item = &'a Value>, field: &str) -> Option<f64> {
    median(
        samples
            .filter_map(|s| s.pointer(field).and_then(Value::as_f64))
            .collect(),
    )
}

/// Adds a `figures` object: medians per configuration and the ratios.
pub fn with_figures(mut results: Value, configs: &[Config]) -> Value {
    let mut polls = serde_json::Map::new();
    for workload in [super::POLL_HEAVY, super::FEW_POLLS] {
        let mut by_flavor = serde_json::Map::new();
        for flavor in super::FLAVORS {
            let of = |config: Config| {
                results["polls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(move |s| {
                        // Samples of runs before the few-polls workload have no name.
                        let name = s["workload"].as_str().unwrap_or(super::POLL_HEAVY);
                        name == workload && s["flavor"] == flavor && s["config"] == config.name()
                    })
            };
            let ns_per_poll = |config: Config| {
                let elapsed = median_of(of(config), "/result/elapsed_s")?;
                let polls = median_of(of(config), "/result/polls")?;
                Some(elapsed * 1e9 / polls)
            };
            let base = ns_per_poll(Config::Untraced);
            let mut rows = serde_json::Map::new();
            for &config in configs {
                let ns = ns_per_poll(config);
                let above = ns.zip(base).map(|(ns, base)| ns - base);
                rows.insert(
                config.name().to_owned(),
                json!({
                    "ns_per_poll": ns,
                    "ns_above_untraced": above,
                    "tracer_cpu_s": median_of(of(config), "/tracer/cpu_s"),
                    "tracer_max_rss_kib": median_of(of(config), "/tracer/max_rss_kib"),
                    "records": median_of(of(config), "/tracer/delivered"),
                    "events": median_of(of(config), "/tracer/events"),
                    "events_per_s": median(of(config).filter_map(|s| {
                        Some(s.pointer("/tracer/events")?.as_f64()? / s.pointer("/result/elapsed_s")?.as_f64()?)
                    }).collect()),
                    "dropped": median_of(of(config), "/tracer/dropped"),
                    "delay_p99_ms": median_of(of(config), "/tracer/delay_p99_ms"),
                    "delay_max_ms": of(config)
                        .filter_map(|s| s.pointer("/tracer/delay_max_ms")?.as_f64())
                        .reduce(f64::max),
                }),
            );
            }
            let above = |name: &str| rows.get(name)?["ns_above_untraced"].as_f64();
            let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
            let programs = program_ns_per_poll(of(Config::BpfStats));
            let tracer_floor = ratio(above("tracer trace"), above("floor"));
            let tracer_console = ratio(above("tracer trace"), above("console-subscriber"));
            by_flavor.insert(
            flavor.to_owned(),
            json!({
                "by_config": rows,
                "tracer_over_baseline": ratio(above("tracer trace"), above("tracer trace (baseline build)")),
                "baseline_over_floor": ratio(above("tracer trace (baseline build)"), above("floor")),
                "tracer_over_floor": tracer_floor,
                "tracer_over_floor_goal": FLOOR_RATIO_GOAL,
                // The same traps as the tracer: what its programs and records add.
                "tracer_over_floor_every_site": ratio(above("tracer trace"), above("floor (every site)")),
                "tracer_over_console": tracer_console,
                "no_polls_over_console": ratio(above("tracer --no-polls"), above("console-subscriber")),
                // Every poll of this workload yields: one deferral, one wake.
                "wake_ns_per_poll": above("tracer trace").zip(above("tracer --no-wakes")).map(|(all, no_wakes)| all - no_wakes),
                "no_wakes_over_floor": ratio(above("tracer --no-wakes"), above("floor")),
                // Every poll of this workload but its last returns Pending.
                "await_chains_ns_per_poll": above(Config::AwaitChains.name()).zip(above(Config::NoAwaitChains.name())).map(|(chains, none)| chains - none),
                "await_chains_over_no_chains": ratio(above(Config::AwaitChains.name()), above(Config::NoAwaitChains.name())),
                // What the kernel counted in the programs, per poll: the rest of
                // `tracer --bpf-stats` above untraced is traps (and the counting).
                "bpf_program_ns_per_poll": programs,
            }),
        );
        }
        polls.insert(workload.to_owned(), Value::Object(by_flavor));
    }
    let mut http = serde_json::Map::new();
    for &config in configs {
        let of = || {
            results["http"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(move |s| s["config"] == config.name())
        };
        http.insert(
            config.name().to_owned(),
            json!({
                "requests_per_s": median_of(of(), "/requests_per_s"),
                "p50_us": median_of(of(), "/p50_us"),
                "p99_us": median_of(of(), "/p99_us"),
                "tracer_cpu_s": median_of(of(), "/tracer/cpu_s"),
                "tracer_max_rss_kib": median_of(of(), "/tracer/max_rss_kib"),
                "events": median_of(of(), "/tracer/delivered"),
                "dropped": median_of(of(), "/tracer/dropped"),
            }),
        );
    }
    results["figures"] = json!({ "polls": polls, "http": http });
    results
}

/// Per program of `samples` (`tracer --bpf-stats` runs): the median over
/// samples of its time per poll of the workload and of its time a run, ns.
fn program_ns_per_poll<'a>(samples: impl Iterator<Item = &'a Value> + Clone) -> Value {
    let mut names: Vec<String> = samples
        .clone()
        .filter_map(|s| s.pointer("/tracer/programs")?.as_object())
        .flat_map(|programs| programs.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    let mut out = serde_json::Map::new();
    for name in names {
        let per = |divisor: &dyn Fn(&Value) -> Option<f64>| {
            median(
                samples
                    .clone()
                    .filter_map(|s| {
                        let ns = s
                            .pointer(&format!("/tracer/programs/{name}/ns"))?
                            .as_f64()?;
                        Some(ns / divisor(s)?)
                    })
                    .collect(),
            )
        };
        let per_poll = per(&|s| s.pointer("/result/polls")?.as_f64());
        let per_run = per(&|s| {
            s.pointer(&format!("/tracer/programs/{name}/runs"))?
                .as_f64()
        });
        out.insert(
            name,
            json!({ "ns_per_poll": per_poll, "ns_a_run": per_run }),
        );
    }
    Value::Object(out)
}

/// "poll_enter 420 (420 a run) + …" for the programs that cost a poll a
/// nanosecond or more, busiest first, with their sum.
fn programs_line(programs: &Value) -> Option<String> {
    let mut rows: Vec<(&String, f64, f64)> = programs
        .as_object()?
        .iter()
        .filter_map(|(name, p)| Some((name, p["ns_per_poll"].as_f64()?, p["ns_a_run"].as_f64()?)))
        .collect();
    if rows.is_empty() {
        return None;
    }
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = rows.iter().map(|r| r.1).sum();
    let parts: Vec<String> = rows
        .iter()
        .filter(|r| r.1 >= 1.0)
        .map(|(name, per_poll, per_run)| format!("{name} {per_poll:.0} ({per_run:.0} a run)"))
        .collect();
    Some(format!("{total:.0} ns a poll = {}", parts.join(" + ")))
}

fn num(value: &Value, digits: usize) -> String {
    value
        .as_f64()
        .map_or("–".to_owned(), |v| format!("{v:.digits$}"))
}

fn mib(value: &Value) -> String {
    value
        .as_f64()
        .map_or("–".to_owned(), |kib| format!("{:.0}", kib / 1024.0))
}

fn goal(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    }
}

/// The tables, in markdown.
pub fn markdown(results: &Value, configs: &[Config]) -> String {
    let mut out = String::new();
    let figures = &results["figures"];
    let plan = &results["plan"];
    let quick = if results["quick"] == true {
        ", --quick"
    } else {
        ""
    };
    for (workload, title, tasks, yields) in [
        (
            super::POLL_HEAVY,
            "Poll-heavy workload",
            &plan["tasks"],
            &plan["yields"],
        ),
        (
            super::FEW_POLLS,
            "Few-polls-per-task workload",
            &plan["few_tasks"],
            &plan["few_yields"],
        ),
    ] {
        let _ = writeln!(
            out,
            "### {title} ({tasks} tasks × {yields} yields, median of {} interleaved rounds{quick})\n",
            plan["rounds"],
        );
        let _ = writeln!(
            out,
            "| configuration | multi_thread ns/poll | above untraced | current_thread ns/poll | above untraced | tracer CPU s (mt) | tracer peak RSS MiB | events (mt) | records (mt) | events/s (mt) | dropped (mt) | live delay p99 / max ms (mt) |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for config in configs {
            let mt = &figures["polls"][workload]["multi"]["by_config"][config.name()];
            let ct = &figures["polls"][workload]["current"]["by_config"][config.name()];
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
                config.name(),
                num(&mt["ns_per_poll"], 0),
                num(&mt["ns_above_untraced"], 0),
                num(&ct["ns_per_poll"], 0),
                num(&ct["ns_above_untraced"], 0),
                num(&mt["tracer_cpu_s"], 2),
                mib(&mt["tracer_max_rss_kib"]),
                num(&mt["events"], 0),
                num(&mt["records"], 0),
                num(&mt["events_per_s"], 0),
                num(&mt["dropped"], 0),
                num(&mt["delay_p99_ms"], 1),
                num(&mt["delay_max_ms"], 1),
            );
        }
        out.push('\n');
        for flavor in super::FLAVORS {
            let f = &figures["polls"][workload][flavor];
            let ratio = f["tracer_over_floor"].as_f64();
            let _ = writeln!(
                out,
                "- {flavor}: tracer/floor = {} (goal ≤ {FLOOR_RATIO_GOAL}: {}); tracer/floor (every site) = {}; tracer/console-subscriber = {} (goal < 1: {}); --no-polls/console-subscriber = {}; wakes (a yield: defer + wake probe) = {} ns a poll, --no-wakes/floor = {}; await chains = {} ns a poll (with/without = {}){}",
                num(&f["tracer_over_floor"], 2),
                goal(ratio.map(|r| r <= FLOOR_RATIO_GOAL)),
                num(&f["tracer_over_floor_every_site"], 2),
                num(&f["tracer_over_console"], 2),
                goal(f["tracer_over_console"].as_f64().map(|r| r < 1.0)),
                num(&f["no_polls_over_console"], 2),
                num(&f["wake_ns_per_poll"], 0),
                num(&f["no_wakes_over_floor"], 2),
                num(&f["await_chains_ns_per_poll"], 0),
                num(&f["await_chains_over_no_chains"], 2),
                if f["tracer_over_baseline"].is_number() {
                    format!(
                        "; tracer/baseline build = {}, baseline/floor = {}",
                        num(&f["tracer_over_baseline"], 2),
                        num(&f["baseline_over_floor"], 2)
                    )
                } else {
                    String::new()
                },
            );
        }
        for flavor in super::FLAVORS {
            let f = &figures["polls"][workload][flavor];
            if let Some(line) = programs_line(&f["bpf_program_ns_per_poll"]) {
                let _ = writeln!(
                    out,
                    "- {flavor}: BPF programs (the kernel's count, `tracer --bpf-stats`): {line}; traps (floor every site) {} ns a poll",
                    num(
                        &f["by_config"]["floor (every site)"]["ns_above_untraced"],
                        0
                    ),
                );
            }
        }
        out.push('\n');
    }

    let _ = writeln!(
        out,
        "\n### hyper hello-world under load ({} connections, {} s a run, loopback)\n",
        plan["connections"], plan["http_seconds"]
    );
    let _ = writeln!(
        out,
        "| configuration | requests/s | p50 µs | p99 µs | tracer CPU s | tracer peak RSS MiB | events | dropped |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for config in configs {
        let h = &figures["http"][config.name()];
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            config.name(),
            num(&h["requests_per_s"], 0),
            num(&h["p50_us"], 0),
            num(&h["p99_us"], 0),
            num(&h["tracer_cpu_s"], 2),
            mib(&h["tracer_max_rss_kib"]),
            num(&h["events"], 0),
            num(&h["dropped"], 0),
        );
    }

    let pipeline = &results["pipeline"];
    let rate = pipeline["decode_model"]["events_per_s"].as_f64();
    let _ = writeln!(
        out,
        "\n### Userspace pipeline alone (criterion, synthetic stream, one core)\n\n\
         - decode + model: {} M events/s ({} ns/event; goal ≥ 5 M/s: {})\n\
         - decode + model + JSON lines to a null writer: {} M events/s",
        rate.map_or("–".to_owned(), |r| format!("{:.1}", r / 1e6)),
        num(&pipeline["decode_model"]["ns_per_event"], 0),
        goal(rate.map(|r| r >= PIPELINE_GOAL)),
        pipeline["decode_model_json"]["events_per_s"]
            .as_f64()
            .map_or("–".to_owned(), |r| format!("{:.1}", r / 1e6)),
    );

    let _ = writeln!(
        out,
        "\n### Drops at sustained rates (`tracer trace`, default ring)\n\n| asked events/s | reached events/s | delivered | dropped | tracer CPU s |\n|---:|---:|---:|---:|---:|"
    );
    for row in results["drops"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            row["asked_events_per_s"],
            num(&row["reached_events_per_s"], 0),
            row["delivered"],
            row["dropped"],
            num(&row["tracer_cpu_s"], 2),
        );
    }

    let _ = writeln!(
        out,
        "\n### Attach time against probe sites\n\n| distinct future types | probe sites | attach s |\n|---:|---:|---:|"
    );
    for row in results["attach"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            row["future_types"],
            row["sites"],
            num(&row["attach_s"], 3)
        );
    }
    // The goal is per 1,000 sites; the largest binary has about 4 sites a type.
    let largest = results["attach"].as_array().and_then(|rows| rows.last());
    let per_thousand = largest.and_then(|row| {
        let sites = row["sites"].as_f64().filter(|n| *n > 0.0)?;
        Some(row["attach_s"].as_f64()? / sites * 1000.0)
    });
    let _ = writeln!(
        out,
        "\n- 1,000 probe sites ≈ {} s at the largest binary's rate (goal ≤ {ATTACH_GOAL_S} s: {})",
        per_thousand.map_or("–".to_owned(), |s| format!("{s:.2}")),
        goal(per_thousand.map(|s| s <= ATTACH_GOAL_S))
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![f64::NAN]), None);
    }
}
