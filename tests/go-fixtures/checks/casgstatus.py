#!/usr/bin/env python3
"""Checks the casgstatus -> async_hooks event mapping against runtime/trace.

Runs a Go fixture (target/go-fixtures/go1.XX/default/NAME) under bpftrace with
casgstatus.bt (offsets from the binary's DWARF, offsets.py), reconstructs per
goroutine what the mapping gives (inits with parent, runs, stops, wakes with waker,
ends), and compares it with the fixture's own runtime/trace as tests/src/go_truth.rs
reads it (the go_truth_json example). Prints one line per fixture:

    go1.23 mutex: 14 of 14 goroutines match (rule gc_wait=pair, parent=curg)

and every mismatch. Needs root, bpftrace, `cargo xtask build` done.

    casgstatus.py [--go 1.23,1.19] [--gc-wait pair|caller|waitreason] [--parent curg|parentGoid|newproc1] [FIXTURE...]
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../../.."))
sys.path.insert(0, HERE)
import offsets as offsets_mod  # noqa: E402

FIXTURES = ["tree", "channels", "mutex", "sleep", "tcp", "gosched", "preempt", "gc", "stack", "coro"]

# g status values (runtime2.go, the same in 1.19-1.23).
IDLE, RUNNABLE, RUNNING, SYSCALL, WAITING, DEAD, COPYSTACK, PREEMPTED = 0, 1, 2, 3, 4, 6, 8, 9


def symbols(binary, go):
    """address -> name, and name -> (start, end) of text symbols, from `go tool nm -size -sort address`."""
    out = subprocess.run([go, "tool", "nm", "-size", "-sort", "address", binary],
                         check=True, capture_output=True, text=True).stdout
    by_addr, ranges = {}, {}
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) != 4 or parts[2] not in "Tt":
            continue
        addr, size, name = int(parts[0], 16), int(parts[1]), parts[3]
        by_addr[addr] = name
        ranges[name] = (addr, addr + size)
    return by_addr, ranges


def script_for(binary, offs, ranges):
    g, m = offs["runtime.g"], offs["runtime.m"]
    text = open(os.path.join(HERE, "casgstatus.bt")).read()
    parent = f'*(uint64 *)($gp + {g["parentGoid"]})' if "parentGoid" in g else "0"
    coro = ""
    if "runtime.coroswitch_m" in ranges:
        coro = ('uprobe:BINARY:"runtime.coroswitch_m"\n{\n\t$m = *(uint64 *)(reg("r14") + @M@);\n'
                '\t$curg = $m != 0 ? *(uint64 *)($m + @CURG@) : 0;\n'
                '\tprintf("W %lu %d %d\\n", nsecs, tid, $curg != 0 ? *(uint64 *)($curg + @GOID@) : 0);\n}\n')
    text = text.replace("CORO_PROBE", coro).replace("@PARENT@", parent)
    for key, value in {"BINARY": binary, "@M@": g["m"], "@CURG@": m["curg"], "@GOID@": g["goid"],
                       "@WAITREASON@": g["waitreason"]}.items():
        text = text.replace(key, str(value))
    return text


def run_bpftrace(binary, script, trace_file, args=()):
    with tempfile.NamedTemporaryFile("w", suffix=".bt", delete=False) as f:
        f.write(script)
        bt = f.name
    out = trace_file + ".bpftrace"
    env = dict(os.environ, TRACER_GO_TRACE=trace_file, BPFTRACE_PERF_RB_PAGES="16384")
    cmd = ["bpftrace", "-o", out, "-c", " ".join([binary, *args]), bt]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    os.unlink(bt)
    text = open(out).read()
    os.unlink(out)
    if proc.returncode != 0:
        raise SystemExit(f"bpftrace failed ({proc.returncode}): {proc.stderr}\n{text[:2000]}")
    if "Lost" in text:
        raise SystemExit("bpftrace lost events: " + [l for l in text.splitlines() if "Lost" in l][0])
    return text


def parse_events(text):
    events = []
    for line in text.splitlines():
        w = line.split()
        if not w or w[0] not in "CNPWSE" or len(w[0]) != 1:
            continue
        try:
            ns, tid = int(w[1]), int(w[2])
        except (IndexError, ValueError):
            continue
        if w[0] == "C":
            events.append(dict(k="C", ns=ns, tid=tid, gp=int(w[3], 16), old=int(w[4]), new=int(w[5]),
                               goid=int(w[6]), curg=int(w[7]), wr=int(w[8]), pgoid=int(w[9]),
                               caller=int(w[10], 16)))
        elif w[0] == "N":
            events.append(dict(k="N", ns=ns, tid=tid, fn=int(w[3], 16), callergoid=int(w[4])))
        elif w[0] == "P":
            events.append(dict(k="P", ns=ns, tid=tid, gp=int(w[3], 16), goid=int(w[4]), curg=int(w[5])))
        elif w[0] == "W":
            events.append(dict(k="W", ns=ns, tid=tid, curg=int(w[3])))
        else:
            events.append(dict(k=w[0], ns=ns, tid=tid))
    events.sort(key=lambda e: e["ns"])  # per-CPU buffers: restore global order
    return events


class G:
    def __init__(self, goid):
        self.goid, self.parent, self.fn, self.created = goid, None, None, False
        self.runs = self.stops = 0
        self.wakers, self.ended, self.other = [], False, collections.Counter()


def reconstruct(events, rules, ranges, gc_reasons):
    start = next((e["ns"] for e in events if e["k"] == "S"), None)
    stop = next((e["ns"] for e in events if e["k"] == "E"), None)
    if start is None or stop is None:
        raise SystemExit("no StartTrace/StopTrace marker in the bpftrace output")
    park = [r for n, r in ranges.items() if n in ("runtime.park_m", "runtime.coroswitch_m")]
    # Look-ahead for the offline pairing rule: the next C event of the same gp.
    nxt, last = {}, {}
    for i in range(len(events) - 1, -1, -1):
        e = events[i]
        if e["k"] == "C":
            nxt[i] = last.get(e["gp"])
            last[e["gp"]] = i
    gs, pending, last_newproc = {}, {}, {}
    skip = set()
    stats = collections.Counter()

    def rec(goid):
        return gs.setdefault(goid, G(goid))

    for i, e in enumerate(events):
        inside = start <= e["ns"] < stop
        if e["k"] == "N":
            last_newproc[e["tid"]] = e
            continue
        if e["k"] == "P":
            if inside:
                rec(e["goid"]).stops += 1
                stats["preemptPark"] += 1
            continue
        if e["k"] != "C":
            continue
        old, new, gp = e["old"], e["new"], e["gp"]
        if (old, new) == (DEAD, RUNNABLE) or (old, new) == (DEAD, WAITING):
            np = last_newproc.get(e["tid"])
            pending[gp] = dict(inside=inside, curg=e["curg"], pgoid=e["pgoid"],
                               newproc1=np["callergoid"] if np else 0, fn=np["fn"] if np else None)
            continue
        if gp in pending:
            p = pending.pop(gp)
            if p["inside"]:
                g = rec(e["goid"])
                g.created = True
                g.parent = {"curg": p["curg"], "parentGoid": p["pgoid"], "newproc1": p["newproc1"]}[rules.parent]
                g.fn = p["fn"]
        if not inside or i in skip:
            continue
        g = rec(e["goid"])
        t = (old, new)
        stats[f"{old}->{new}"] += 1
        if t == (RUNNABLE, RUNNING):
            g.runs += 1
        elif t in ((RUNNING, RUNNABLE), (SYSCALL, RUNNABLE)):
            g.stops += 1
        elif t == (RUNNING, WAITING):
            if rules.gc_wait == "pair":
                j = nxt.get(i)
                gc = j is not None and (events[j]["old"], events[j]["new"]) == (WAITING, RUNNING) \
                    and events[j]["tid"] == e["tid"]
                if gc:
                    skip.add(j)
            elif rules.gc_wait == "caller":
                gc = not any(lo <= e["caller"] < hi for lo, hi in park)
            else:
                gc = e["wr"] in gc_reasons
            if gc:
                stats["gc-wait"] += 1
            else:
                g.stops += 1
        elif t == (WAITING, RUNNABLE):
            g.wakers.append(e["curg"])
        elif t == (RUNNING, DEAD):
            g.stops += 1
            g.ended = True
        elif t in ((RUNNING, SYSCALL), (SYSCALL, RUNNING), (RUNNING, COPYSTACK), (COPYSTACK, RUNNING),
                   (IDLE, DEAD), (WAITING, RUNNING), (PREEMPTED, WAITING)):
            pass
        else:
            g.other[f"{old}->{new}"] += 1
    return gs, stats


def ground_truth(trace_file):
    out = subprocess.run(["cargo", "run", "-q", "-p", "tracer-tests", "--example", "go_truth_json", "--", trace_file],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return {g["goid"]: g for g in map(json.loads, out.splitlines())}


def compare(truth, gs, by_addr):
    mismatches, matched = [], 0
    names = collections.Counter()
    for goid in sorted(set(truth) | set(gs)):
        t, g = truth.get(goid), gs.get(goid)
        if t is None:
            if g.runs or g.stops or g.wakers or g.ended:
                mismatches.append(f"goroutine {goid}: not in the trace, mapping has runs {g.runs} stops {g.stops} wakes {g.wakers} ended {g.ended}")
            continue
        if g is None:
            g = G(goid)
        diffs = []
        if not t["existing"]:
            if not g.created:
                diffs.append("created in the trace, no init seen")
            elif (t["parent"] or 0) != g.parent:
                diffs.append(f"parent {t['parent']} vs {g.parent}")
            if g.fn is not None:
                sym = by_addr.get(g.fn, hex(g.fn))
                names["same" if sym == t["name"] else f"{sym} -> {t['name']}"] += 1
        elif g.created:
            diffs.append("existing at trace start, but the mapping saw its init in the window")
        if t["runs"] != g.runs:
            diffs.append(f"runs {t['runs']} vs {g.runs}")
        if t["stops"] != g.stops:
            diffs.append(f"stops {t['stops']} vs {g.stops}")
        if sorted(t["wakers"]) != sorted(g.wakers):
            diffs.append(f"wakers {collections.Counter(t['wakers'])} vs {collections.Counter(g.wakers)}")
        if t["ended"] != g.ended:
            diffs.append(f"ended {t['ended']} vs {g.ended}")
        if g.other:
            diffs.append(f"unclassified {dict(g.other)}")
        if diffs:
            mismatches.append(f"goroutine {goid} ({t['name'] or t['bottom_frame']}{', existing' if t['existing'] else ''}): " + "; ".join(diffs))
        else:
            matched += 1
    return matched, len(truth), mismatches, names


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--go", default="1.23,1.19")
    ap.add_argument("--variant", default="default")
    ap.add_argument("--gc-wait", default="pair", choices=["pair", "caller", "waitreason"])
    ap.add_argument("--gc-reasons", default="", help="waitreason values of GC waits (for --gc-wait waitreason)")
    ap.add_argument("--parent", default="curg", choices=["curg", "parentGoid", "newproc1"])
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("fixtures", nargs="*", default=FIXTURES)
    rules = ap.parse_args()
    gc_reasons = {int(x) for x in rules.gc_reasons.split(",") if x}
    total = [0, 0]
    failed = False
    for version in rules.go.split(","):
        go = f"/usr/lib/go-{version}/bin/go"
        for name in rules.fixtures:
            binary = os.path.join(ROOT, "target/go-fixtures", f"go{version}", rules.variant, name)
            if not os.path.exists(binary):
                print(f"go{version} {name}: {binary} missing (cargo xtask build)")
                failed = True
                continue
            offs = offsets_mod.offsets(os.path.join(ROOT, "target/go-fixtures", f"go{version}", "default", name))
            by_addr, ranges = symbols(binary, go)
            trace_file = tempfile.mktemp(suffix=f"-go{version}-{name}.trace")
            text = run_bpftrace(binary, script_for(binary, offs, ranges), trace_file)
            events = parse_events(text)
            gs, stats = reconstruct(events, rules, ranges, gc_reasons)
            truth = ground_truth(trace_file)
            os.unlink(trace_file)
            matched, n, mismatches, names = compare(truth, gs, by_addr)
            total[0] += matched
            total[1] += n
            print(f"go{version} {name}: {matched} of {n} goroutines match "
                  f"(gc_wait={rules.gc_wait}, parent={rules.parent}); {len(events)} probe hits")
            if rules.verbose:
                print("   transitions in the window:", dict(sorted(stats.items())))
                print("   start functions (newproc1 fn -> trace name):", dict(names))
            for m in mismatches:
                print("   MISMATCH", m)
            failed |= bool(mismatches)
    print(f"total: {total[0]} of {total[1]} goroutines match")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
