#!/usr/bin/env python3
"""Where the per-poll cost goes: time inside tracer's BPF programs against the
whole extra cost a poll pays.

Runs the `polls` workload (bench/workloads) untraced and under each tracer
configuration, interleaved round by round, each traced run with `--bpf-stats`
(the kernel counts every run of the tracer's BPF programs and its time while
the tracer runs, and the tracer's summary says it), and reports, medians over
rounds:

- extra ns a poll above untraced: wall (the workload's own elapsed time /
  polls, as `cargo xtask bench` reports it) and CPU (the workload's user +
  system time / polls: with two workers, a poll's CPU cost is about twice its
  wall-time share, and the programs' run time is CPU time);
- ns a poll inside our BPF programs (their run time / polls, counted as runs
  of the `raw::poll` return program), per program too: runs a poll and ns a
  run.

The difference is what the kernel charges around the programs: the int3 trap,
uprobe lookup, the uretprobe trampoline, and running the programs' dispatch.
The statistics add two clock reads per program run, so totals here are a bit
above `cargo xtask bench`'s.

Usage (root), after `cargo xtask bench` or `cargo build --release -p tracer-cli`
and `cargo build --release` in bench/workloads:

    python3 bench/bpf_stats.py --flavor multi --rounds 3
    python3 bench/bpf_stats.py --flavor current --rounds 3 --rt

What await chains cost (the workload built with `--profile await-chains`):
    python3 bench/bpf_stats.py --polls bench/workloads/target/await-chains/polls \
        --configs "tracer trace,tracer --no-await-chains" --rounds 3

`--rt` runs the workload and the tracer under `chrt -f 50`. `--baseline
/path/to/tracer` adds "baseline trace", `tracer trace` of that other build, to
the same interleaved rounds, so that a change to the BPF side is judged side by
side (`--configs "tracer trace,baseline trace"` runs just the two).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIGS = {
    "untraced": None,
    "floor": ["trace", "--floor"],
    "floor (every site)": ["trace", "--floor-every-site"],
    "tracer trace": ["trace", "--json"],
    # With --polls on a build with full type DWARF (profile await-chains), set
    # against "tracer trace": what reading await chains costs.
    "tracer --no-await-chains": ["trace", "--no-await-chains", "--json"],
    "baseline trace": ["trace", "--json"],
}
RETURN_OF_POLL = ("poll_return", "floor_return")


def read_line_until(stream, marker):
    lines = []
    while True:
        line = stream.readline()
        if not line:
            sys.exit("exited before printing %r:\n%s" % (marker, "".join(lines)))
        lines.append(line)
        if marker in line:
            return lines


def program_times(summary):
    """{program: (run_time_ns, runs)} from the tracer's `--bpf-stats` summary line:
    "tracer: BPF program time (--bpf-stats): 1.2 s in all; poll_enter 10 runs,
    400 ns a run; … (…)"."""
    prefix = "tracer: BPF program time (--bpf-stats): "
    line = next((l[len(prefix):] for l in summary.splitlines() if l.startswith(prefix)), None)
    if line is None:
        sys.exit("the tracer printed no --bpf-stats line:\n" + summary)
    out = {}
    for program in line.split(" (")[0].split("; ")[1:]:
        name, rest = program.split(" ", 1)
        runs, rest = rest.split(" runs, ")
        ns_a_run = int(rest.removesuffix(" ns a run"))
        out[name] = (int(runs) * ns_a_run, int(runs))
    return out


def run(args, config):
    rt = ["chrt", "-f", "50"] if args.rt else []
    env = dict(os.environ, BENCH_WAIT_GO="1")
    workload = subprocess.Popen(
        rt + [args.polls, "--flavor", args.flavor, "--tasks", str(args.tasks),
              "--yields", str(args.yields)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, text=True,
    )
    read_line_until(workload.stderr, "ready")
    tracer = None
    if CONFIGS[config] is not None:
        tracer = subprocess.Popen(
            rt + [args.baseline if config == "baseline trace" else args.tracer]
            + CONFIGS[config] + ["--bpf-stats", "-p", str(workload.pid)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )
        read_line_until(tracer.stderr, "probe sites attached in")
    workload.stdin.write("go\n")
    workload.stdin.flush()
    result = json.loads(workload.stdout.read())
    # Its CPU time: with two workers a poll's CPU cost is not its wall time.
    _, status, usage = os.wait4(workload.pid, 0)
    workload.returncode = os.waitstatus_to_exitcode(status)
    cpu_ns_per_poll = (usage.ru_utime + usage.ru_stime) * 1e9 / result["polls"]
    programs = {}
    if tracer is not None:
        summary = tracer.stderr.read()
        tracer.wait()
        programs = program_times(summary)
    wall_ns_per_poll = result["elapsed_s"] * 1e9 / result["polls"]
    return wall_ns_per_poll, cpu_ns_per_poll, programs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracer", default=os.path.join(ROOT, "target/release/tracer"))
    parser.add_argument("--baseline",
                        help="another tracer build: adds the \"baseline trace\" configuration")
    parser.add_argument(
        "--polls", default=os.path.join(ROOT, "bench/workloads/target/release/polls"))
    parser.add_argument("--flavor", default="multi", choices=["multi", "current"])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--yields", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs",
                        help="comma-separated, from: " + ", ".join(CONFIGS))
    parser.add_argument("--rt", action="store_true", help="chrt -f 50 for both processes")
    args = parser.parse_args()
    configs = (args.configs.split(",") if args.configs
               else [c for c in CONFIGS if c != "baseline trace" or args.baseline])
    if "baseline trace" in configs and not args.baseline:
        sys.exit("the \"baseline trace\" configuration needs --baseline")
    if "untraced" not in configs:
        configs.insert(0, "untraced")

    samples = {config: [] for config in configs}
    for round_ in range(args.rounds):
        order = configs[round_ % len(configs):] + configs[:round_ % len(configs)]
        for config in order:
            print("round %d: %s" % (round_ + 1, config), file=sys.stderr)
            samples[config].append(run(args, config))
            time.sleep(0.1)

    def median_of(config, index):
        return statistics.median(sample[index] for sample in samples[config])

    base, base_cpu = median_of("untraced", 0), median_of("untraced", 1)
    report = {"flavor": args.flavor, "tasks": args.tasks, "yields": args.yields,
              "rounds": args.rounds, "rt": args.rt, "untraced_ns_per_poll": base,
              "untraced_cpu_ns_per_poll": base_cpu, "configs": {}}
    print("\n%s, %d tasks x %d yields, median of %d rounds%s; untraced %.0f ns/poll "
          "(wall), %.0f CPU ns/poll\n"
          % (args.flavor, args.tasks, args.yields, args.rounds,
             ", chrt -f 50" if args.rt else "", base, base_cpu))
    print("| configuration | extra wall ns/poll | extra CPU ns/poll | in BPF programs CPU ns/poll | outside them CPU ns/poll | per program: runs/poll × ns/run |")
    print("|---|---:|---:|---:|---:|---|")
    for config in configs[1:]:
        extra = median_of(config, 0) - base
        extra_cpu = median_of(config, 1) - base_cpu
        per_round = []
        for _, _, programs in samples[config]:
            polls = next((programs[n][1] for n in RETURN_OF_POLL if n in programs), 0)
            if polls:
                per_round.append({name: (t / polls, n / polls, t / n)
                                  for name, (t, n) in programs.items()})
        names = sorted({name for r in per_round for name in r})
        per_program = {
            name: {key: statistics.median(r[name][i] for r in per_round if name in r)
                   for i, key in enumerate(["ns_per_poll", "runs_per_poll", "ns_per_run"])}
            for name in names
        }
        inside = statistics.median(sum(v[0] for v in r.values()) for r in per_round) \
            if per_round else float("nan")
        report["configs"][config] = {"extra_ns_per_poll": extra,
                                     "extra_cpu_ns_per_poll": extra_cpu,
                                     "bpf_ns_per_poll": inside, "programs": per_program}
        detail = ", ".join("%s %.2f × %.0f" % (name, p["runs_per_poll"], p["ns_per_run"])
                           for name, p in sorted(per_program.items(),
                                                 key=lambda kv: -kv[1]["ns_per_poll"]))
        print("| %s | %.0f | %.0f | %.0f | %.0f | %s |"
              % (config, extra, extra_cpu, inside, extra_cpu - inside, detail))
    if "tracer trace" in report["configs"] and "baseline trace" in report["configs"]:
        new, old = report["configs"]["tracer trace"], report["configs"]["baseline trace"]
        print("\ntracer/baseline: extra wall %.3f, extra CPU %.3f, in BPF programs %.3f"
              % tuple(new[key] / old[key] for key in
                      ["extra_ns_per_poll", "extra_cpu_ns_per_poll", "bpf_ns_per_poll"]))
        # Each round's two runs are adjacent, so their ratio sees one state of a
        # noisy machine: the median of those ratios is the steadier figure.
        paired = [
            [(n[i] - u[i]) / (o[i] - u[i]) for n, o, u in
             zip(samples["tracer trace"], samples["baseline trace"], samples["untraced"])]
            for i in (0, 1)]
        report["paired_ratios"] = {"extra_wall": paired[0], "extra_cpu": paired[1]}
        print("tracer/baseline, median of each round's ratio: extra wall %.3f, extra CPU %.3f"
              % (statistics.median(paired[0]), statistics.median(paired[1])))
    print("\n" + json.dumps(report))


if __name__ == "__main__":
    main()
