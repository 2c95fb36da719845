//! Go ground truth: what Go's own execution tracer (`runtime/trace`) saw, per
//! goroutine, for comparing with the tracer's view of the same Go fixture run.
//!
//! The tracer reconstructs goroutines from the outside (uprobes on the runtime's
//! status changes); nothing inside an unmodified Go process tells what really
//! happened except the runtime's own tracer, which must be enabled in-process. So
//! every fixture in `tests/go-fixtures` writes a `runtime/trace` of its whole run to
//! the file named by [`TRACE_ENV`], and this module dumps it with Go 1.23's
//! `go tool trace -d=1` and folds the state transitions into one [`Goroutine`]
//! record each: parent, start function, runs, wakes (with the waker), stops, end.
//!
//! One dumper serves every Go version: Go 1.23's tool reads the 1.22+ format
//! natively and converts older traces (Go 1.11 to 1.21, so 1.19's and 1.21's) into
//! the same events, so the text is the same for all four versions the tests use.
//! `-d=1` prints one `StateTransition` line per goroutine state change:
//!
//! ```text
//! M=5566 P=0 G=1 StateTransition Time=… Resource=Goroutine(19) Reason="" GoID=19 NotExist->Runnable
//! TransitionStack=
//! <TAB>main.root @ 0x485960
//! <TAB><TAB>/…/cmd/tree/main.go:32
//! ```
//!
//! `G` is the goroutine running on that thread (the actor: the creator of a new
//! goroutine, the waker of a woken one; `-1` for none, e.g. the netpoller or the
//! scheduler); a creation's `TransitionStack` starts with the new goroutine's start
//! function, named as Go's tracer names it: after unwrapping the closure `go f(x)`
//! compiles to (`main.serve.gowrap1` on 1.21+, `main.serve.func1` on 1.19) by its
//! `FUNCDATA_WrapInfo`, which every version's `startPCforTrace` follows.
//!
//! What the trace knows, and what it does not:
//! - goroutines that existed when the trace started appear as `Undetermined->S`
//!   (S = Running, Runnable, Waiting or Syscall), without a start function or
//!   parent; [`Goroutine::existing`] marks them. Their `bottom_frame` (the outermost
//!   frame of their own stacks in later transitions) is the best name the trace has;
//! - a run is a transition *to* Running from Runnable (`runs`); Syscall->Running is
//!   the same run continuing (the goroutine kept its P), not a new one; the run in
//!   progress at trace start (Undetermined->Running) is not counted in `runs`;
//! - runtime-internal goroutines are what Go's trace tools call system goroutines
//!   (`internal/trace.IsSystemGoroutine`): start function in package `runtime`
//!   other than `runtime.main`. For an existing goroutine the bottom frame stands in
//!   for the start function, and goroutine 1 (main) is never internal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable the Go fixtures read to find where to write their trace.
pub const TRACE_ENV: &str = "TRACER_GO_TRACE";

/// The Go versions the fixtures are built with (`cargo xtask setup` installs them).
pub const GO_VERSIONS: [&str; 4] = ["1.19", "1.21", "1.22", "1.23"];

/// The Go whose `go tool trace` dumps every version's traces.
pub const DUMP_GO: &str = "1.23";

/// The build variants of every fixture (`cargo xtask build`).
pub const VARIANTS: [&str; 4] = ["default", "pie", "nodwarf", "stripped"];

/// The fixture programs in `tests/go-fixtures/cmd`.
pub const FIXTURES: [&str; 10] = [
    "tree", "channels", "mutex", "sleep", "tcp", "gosched", "preempt", "gc", "stack", "longrun",
];

/// A goroutine state as `runtime/trace` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// Not in the trace yet (its state at trace start is unknown).
    Undetermined,
    /// Not created yet, or dead.
    NotExist,
    /// Ready to run, waiting for a P.
    Runnable,
    /// Running on a P.
    Running,
    /// Blocked (channel, mutex, sleep, netpoller, GC...).
    Waiting,
    /// In a system call.
    Syscall,
}

impl State {
    fn parse(word: &str) -> Result<Self, String> {
        Ok(match word {
            "Undetermined" => Self::Undetermined,
            "NotExist" => Self::NotExist,
            "Runnable" => Self::Runnable,
            "Running" => Self::Running,
            "Waiting" => Self::Waiting,
            "Syscall" => Self::Syscall,
            _ => return Err(format!("unknown goroutine state `{word}`")),
        })
    }
}

/// One goroutine state change from the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Trace timestamp (ns, the trace's own clock).
    pub time: u64,
    /// The goroutine that changed state.
    pub goid: u64,
    /// The goroutine running on that thread at the time (`G=`); 0 for none.
    pub actor: u64,
    /// The OS thread's `M` id as the trace reports it (a thread id on 1.22+; -1 unknown).
    pub m: i64,
    /// From state.
    pub from: State,
    /// To state.
    pub to: State,
    /// The trace's reason, e.g. `chan receive`, `sync`, `network`, `preempted`.
    pub reason: String,
    /// The first frame of `TransitionStack` (a creation's start function).
    pub first_frame: Option<String>,
    /// The last frame of `TransitionStack` (outermost frame of the goroutine's own
    /// stack for transitions out of Running).
    pub last_frame: Option<String>,
}

/// Everything the trace says about one goroutine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Goroutine {
    /// Go's goroutine id.
    pub goid: u64,
    /// The creating goroutine; `None` when existing at trace start or created by no
    /// goroutine (the actor was `-1`).
    pub parent: Option<u64>,
    /// Start function, as Go's tracer names it; `None` for existing goroutines.
    pub name: Option<String>,
    /// Outermost frame of the goroutine's own stack, from its first transition out
    /// of Running that has one (stands in for `name` for existing goroutines).
    pub bottom_frame: Option<String>,
    /// Existed when the trace started (its first transition is from Undetermined).
    pub existing: bool,
    /// Its state when the trace started, for existing goroutines.
    pub state_at_start: Option<State>,
    /// Transitions Runnable->Running.
    pub runs: usize,
    /// Stops of a run: Running->{Runnable, Waiting, NotExist} and Syscall->Runnable.
    pub stops: usize,
    /// Running->Waiting.
    pub blocks: usize,
    /// Running->Runnable (yield or preemption).
    pub yields: usize,
    /// Running->Syscall.
    pub syscalls: usize,
    /// Syscall->Runnable (the syscall outlasted its P: the run ended in the syscall).
    pub syscall_stops: usize,
    /// Wakers of its Waiting->Runnable transitions, in order; 0 = no goroutine.
    pub wakers: Vec<u64>,
    /// Ended: Running->NotExist (or any ->NotExist) inside the trace.
    pub ended: bool,
    /// Runtime-internal goroutine (see the module docs).
    pub runtime: bool,
}

/// The parsed trace of one run.
#[derive(Debug, Clone, Default)]
pub struct GoTrace {
    /// The trace format's Go version from the file header (`go 1.19 trace`), e.g.
    /// `1.19`; empty when parsed from text alone.
    pub format: String,
    /// Per goroutine, by goid.
    pub goroutines: BTreeMap<u64, Goroutine>,
    /// Every goroutine state change, in trace order.
    pub transitions: Vec<Transition>,
}

impl GoTrace {
    /// Every (woken, waker) wake edge with its count; waker 0 = no goroutine.
    pub fn wake_edges(&self) -> BTreeMap<(u64, u64), usize> {
        let mut edges = BTreeMap::new();
        for g in self.goroutines.values() {
            for &waker in &g.wakers {
                *edges.entry((g.goid, waker)).or_default() += 1;
            }
        }
        edges
    }

    /// Goroutines whose start function is `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Goroutine> + 'a {
        self.goroutines
            .values()
            .filter(move |g| g.name.as_deref() == Some(name))
    }

    /// Goroutines that are not runtime-internal.
    pub fn user(&self) -> impl Iterator<Item = &Goroutine> {
        self.goroutines.values().filter(|g| !g.runtime)
    }
}

/// Whether Go's trace tools count a goroutine with start function `entry` as a
/// system goroutine (`internal/trace.IsSystemGoroutine`, Go 1.23).
pub fn is_system_goroutine(entry: &str) -> bool {
    entry.is_empty() || (entry != "runtime.main" && entry.starts_with("runtime."))
}

/// The `go` of Go `version` (`/usr/lib/go-VERSION/bin/go`), or an error naming setup.
pub fn go_binary(version: &str) -> Result<PathBuf, String> {
    let go = PathBuf::from(format!("/usr/lib/go-{version}/bin/go"));
    if go.is_file() {
        Ok(go)
    } else {
        Err(format!(
            "Go {version} is not installed ({} missing): run `cargo xtask setup` (as root), \
             which installs Go {}",
            go.display(),
            GO_VERSIONS.join(", ")
        ))
    }
}

/// A Go fixture built with Go `version` in `variant`, or an error saying how to get it.
pub fn go_fixture_bin(version: &str, variant: &str, name: &str) -> Result<PathBuf, String> {
    go_binary(version)?;
    let bin = crate::workspace_root()
        .join("target/go-fixtures")
        .join(format!("go{version}"))
        .join(variant)
        .join(name);
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "Go fixture {} is missing: run `cargo xtask build` (it builds the Go fixtures with every Go)",
            bin.display()
        ))
    }
}

/// Runs `bin` with `args`, its trace going to `trace`; fails unless it exits 0
/// having printed `done` (on stderr).
pub fn run_fixture(bin: &Path, args: &[&str], trace: &Path) -> Result<(), String> {
    let output = Command::new(bin)
        .args(args)
        .env(TRACE_ENV, trace)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("could not start {}: {e}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() || stderr.lines().last() != Some("done") {
        return Err(format!(
            "{} failed ({}): stdout {stdout:?}, stderr {:?}",
            bin.display(),
            output.status,
            stderr
        ));
    }
    Ok(())
}

/// `go tool trace -d=1 TRACE` with [`DUMP_GO`]: the text [`parse_dump`] reads.
pub fn dump(trace: &Path) -> Result<String, String> {
    let go = go_binary(DUMP_GO)?;
    let output = Command::new(&go)
        .args(["tool", "trace", "-d=1"])
        .arg(trace)
        .env("GOTOOLCHAIN", "local")
        .output()
        .map_err(|e| format!("could not start {}: {e}", go.display()))?;
    if !output.status.success() {
        return Err(format!(
            "`go tool trace -d=1 {}` failed ({}): {}",
            trace.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8(output.stdout).map_err(|e| format!("go tool trace printed non-UTF-8: {e}"))
}

/// The Go version in a trace file's 16-byte header (`go 1.19 trace\0\0\0`).
pub fn trace_format(trace: &Path) -> Result<String, String> {
    let bytes = std::fs::read(trace).map_err(|e| format!("reading {}: {e}", trace.display()))?;
    let header = String::from_utf8_lossy(&bytes[..bytes.len().min(16)]).into_owned();
    header
        .strip_prefix("go ")
        .and_then(|rest| rest.split(' ').next())
        .filter(|_| header.contains(" trace"))
        .map(str::to_owned)
        .ok_or_else(|| format!("{} is not a Go execution trace", trace.display()))
}

/// Whether traces in `format` (a Go version) are the pre-1.22 format, whose
/// `StopTrace` writes a `GoSched` for the goroutine that stops the trace.
fn old_format(format: &str) -> bool {
    let minor = format
        .strip_prefix("1.")
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|minor| minor < 22)
}

/// Dumps and parses the trace file `trace`.
///
/// Go 1.19-1.21's `StopTrace` writes a `GoSched` event for the goroutine that stops
/// the trace (`traceGoSched()`, with the world stopped), although that goroutine
/// goes on running: the dump shows it as a last Running->Runnable that no run
/// follows. It is not a status change of the runtime, so it is dropped here (the
/// transition stays in [`GoTrace::transitions`], the goroutine's counts leave it out).
pub fn read_trace(trace: &Path) -> Result<GoTrace, String> {
    let format = trace_format(trace)?;
    let mut parsed = parse_dump(&dump(trace)?)?;
    if old_format(&format) {
        drop_stop_trace_sched(&mut parsed);
    }
    parsed.format = format;
    Ok(parsed)
}

/// Undoes the counts of the `GoSched` that an old-format `StopTrace` writes: the
/// trace's last goroutine transition, when it is Running->Runnable.
fn drop_stop_trace_sched(trace: &mut GoTrace) {
    let Some(last) = trace.transitions.last() else {
        return;
    };
    if (last.from, last.to) != (State::Running, State::Runnable) {
        return;
    }
    if let Some(g) = trace.goroutines.get_mut(&last.goid) {
        g.yields -= 1;
        g.stops -= 1;
    }
}

/// Runs fixture `name` built with Go `version` (`variant`) and parses its trace.
pub fn trace_fixture(
    version: &str,
    variant: &str,
    name: &str,
    args: &[&str],
) -> Result<GoTrace, String> {
    let bin = go_fixture_bin(version, variant, name)?;
    let trace = crate::temp_path(&format!("go{version}-{name}.trace"));
    run_fixture(&bin, args, &trace)?;
    let parsed = read_trace(&trace);
    let _ = std::fs::remove_file(&trace);
    parsed
}

/// The value of `KEY=value` among `words`.
fn field<'a>(words: &[&'a str], key: &str) -> Option<&'a str> {
    words
        .iter()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// One `StateTransition` line of a goroutine, without its stack.
fn parse_transition(line: &str) -> Result<Option<Transition>, String> {
    if !line.contains(" StateTransition ") || !line.contains("Resource=Goroutine(") {
        return Ok(None);
    }
    let bad = |what: &str| format!("{what} in `{line}`");
    // The reason is quoted and may hold spaces: take it out before splitting.
    let (head, rest) = line
        .split_once(" Reason=\"")
        .ok_or_else(|| bad("no Reason"))?;
    let (reason, tail) = rest
        .split_once("\" ")
        .ok_or_else(|| bad("unterminated Reason"))?;
    let words: Vec<&str> = head
        .split_whitespace()
        .chain(tail.split_whitespace())
        .collect();
    let int = |key: &str| -> Result<i64, String> {
        field(&words, key)
            .ok_or_else(|| bad(key))?
            .parse::<i64>()
            .map_err(|_| bad(key))
    };
    let arrow = words.last().ok_or_else(|| bad("no states"))?;
    let (from, to) = arrow.split_once("->").ok_or_else(|| bad("no From->To"))?;
    let actor = int("G")?;
    Ok(Some(Transition {
        time: int("Time")? as u64,
        goid: int("GoID")? as u64,
        actor: if actor < 0 { 0 } else { actor as u64 },
        m: int("M")?,
        from: State::parse(from)?,
        to: State::parse(to)?,
        reason: reason.to_owned(),
        first_frame: None,
        last_frame: None,
    }))
}

/// Parses `go tool trace -d=1` output (see the module docs).
pub fn parse_dump(text: &str) -> Result<GoTrace, String> {
    let mut transitions: Vec<Transition> = Vec::new();
    // Whether the frames being read belong to the last transition's TransitionStack.
    let mut in_transition_stack = false;
    for line in text.lines() {
        if line.starts_with("M=") {
            in_transition_stack = false;
            if let Some(t) = parse_transition(line)? {
                transitions.push(t);
            }
        } else if line == "TransitionStack=" {
            in_transition_stack = true;
        } else if line.starts_with("Stack=") || line.is_empty() {
            in_transition_stack = false;
        } else if in_transition_stack && line.starts_with('\t') && !line.starts_with("\t\t") {
            // `\tfunc @ 0xADDR`; the `\t\tfile:line` lines under it are skipped.
            let func = line
                .trim()
                .split(" @ ")
                .next()
                .unwrap_or_default()
                .to_owned();
            if let Some(last) = transitions.last_mut() {
                last.first_frame.get_or_insert_with(|| func.clone());
                last.last_frame = Some(func);
            }
        }
    }
    if transitions.is_empty() {
        return Err("the trace dump holds no goroutine StateTransition".into());
    }
    let mut goroutines: BTreeMap<u64, Goroutine> = BTreeMap::new();
    for t in &transitions {
        let g = goroutines.entry(t.goid).or_insert_with(|| Goroutine {
            goid: t.goid,
            ..Goroutine::default()
        });
        apply(g, t);
    }
    for g in goroutines.values_mut() {
        let entry = g
            .name
            .as_deref()
            .or(g.bottom_frame.as_deref())
            .unwrap_or("");
        g.runtime = g.goid != 1 && is_system_goroutine(entry);
    }
    Ok(GoTrace {
        format: String::new(),
        goroutines,
        transitions,
    })
}

/// Folds one transition into its goroutine's record.
fn apply(g: &mut Goroutine, t: &Transition) {
    use State::*;
    match (t.from, t.to) {
        (Undetermined, to) => {
            g.existing = true;
            g.state_at_start = Some(to);
        }
        (NotExist, _) => {
            g.parent = (t.actor != 0).then_some(t.actor);
            g.name = t.first_frame.clone();
        }
        _ => {}
    }
    if t.from == Running && g.bottom_frame.is_none() {
        g.bottom_frame = t.last_frame.clone();
    }
    match (t.from, t.to) {
        (Runnable, Running) => g.runs += 1,
        (Waiting, Runnable) => g.wakers.push(t.actor),
        (Running, Syscall) => g.syscalls += 1,
        (Syscall, Runnable) => {
            g.syscall_stops += 1;
            g.stops += 1;
        }
        (Running, Runnable) => {
            g.yields += 1;
            g.stops += 1;
        }
        (Running, Waiting) => {
            g.blocks += 1;
            g.stops += 1;
        }
        (Running, NotExist) => {
            g.stops += 1;
            g.ended = true;
        }
        (_, NotExist) => g.ended = true,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
M=5566 P=0 G=-1 StateTransition Time=10 Resource=Goroutine(1) Reason=\"\" GoID=1 Undetermined->Running
M=5566 P=0 G=1 StateTransition Time=20 Resource=Goroutine(19) Reason=\"\" GoID=19 NotExist->Runnable
TransitionStack=
\tmain.root @ 0x485960
\t\t/x/cmd/tree/main.go:32

Stack=
\tmain.main @ 0x485c76
\t\t/x/cmd/tree/main.go:49

M=5566 P=0 G=1 StateTransition Time=30 Resource=Goroutine(1) Reason=\"chan receive\" GoID=1 Running->Waiting
TransitionStack=
\truntime.gopark @ 0x1
\t\t/x/proc.go:1
\tmain.main @ 0x2
\t\t/x/main.go:2

M=5566 P=0 G=-1 StateTransition Time=40 Resource=Goroutine(19) Reason=\"\" GoID=19 Runnable->Running
M=5566 P=0 G=19 StateTransition Time=50 Resource=Goroutine(1) Reason=\"\" GoID=1 Waiting->Runnable
M=5566 P=0 G=19 StateTransition Time=60 Resource=Goroutine(19) Reason=\"\" GoID=19 Running->NotExist
M=5566 P=0 G=-1 StateTransition Time=61 Resource=Proc(0) Reason=\"\" ProcID=0 Running->Idle
M=-1 P=1 G=2 StateTransition Time=70 Resource=Goroutine(2) Reason=\"\" GoID=2 Undetermined->Waiting
M=5566 P=0 G=2 StateTransition Time=80 Resource=Goroutine(2) Reason=\"system goroutine wait\" GoID=2 Running->Waiting
TransitionStack=
\truntime.gopark @ 0x1
\t\t/x/proc.go:1
\truntime.forcegchelper @ 0x3
\t\t/x/proc.go:3
";

    #[test]
    fn a_dump_folds_into_goroutines() {
        let trace = parse_dump(SAMPLE).unwrap();
        assert_eq!(trace.transitions.len(), 8);
        let main = &trace.goroutines[&1];
        assert!(main.existing && !main.runtime && !main.ended);
        assert_eq!(main.state_at_start, Some(State::Running));
        assert_eq!((main.runs, main.blocks, main.stops), (0, 1, 1));
        assert_eq!(main.wakers, [19]);
        assert_eq!(main.bottom_frame.as_deref(), Some("main.main"));
        let root = &trace.goroutines[&19];
        assert_eq!(root.parent, Some(1));
        assert_eq!(root.name.as_deref(), Some("main.root"));
        assert_eq!(
            (root.runs, root.stops, root.ended, root.existing),
            (1, 1, true, false)
        );
        assert!(trace.goroutines[&2].runtime, "forcegchelper is internal");
        assert_eq!(trace.wake_edges(), BTreeMap::from([((1, 19), 1)]));
        assert_eq!(trace.transitions[2].reason, "chan receive");
    }

    #[test]
    fn old_formats_are_recognised_by_their_header_version() {
        assert!(old_format("1.19") && old_format("1.21"));
        assert!(!old_format("1.22") && !old_format("1.23"));
        let path = crate::temp_path("go-trace-header");
        std::fs::write(&path, b"go 1.19 trace\0\0\0rest").unwrap();
        assert_eq!(trace_format(&path).unwrap(), "1.19");
        std::fs::write(&path, b"not a trace").unwrap();
        assert!(trace_format(&path).is_err());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn the_goroutine_stopping_an_old_trace_keeps_running() {
        for version in GO_VERSIONS {
            let trace = traced(version, "tree");
            assert_eq!(trace.format, version);
            let main = &trace.goroutines[&1];
            // main blocks in wg.Wait once (woken by the last goroutine that ends).
            assert_eq!(
                (main.stops, main.yields),
                (main.blocks, 0),
                "go{version}: {main:?}"
            );
        }
    }

    #[test]
    fn system_goroutines_are_named_as_gos_tools_name_them() {
        assert!(is_system_goroutine("runtime.bgsweep"));
        assert!(is_system_goroutine("runtime.gcBgMarkWorker"));
        assert!(!is_system_goroutine("runtime.main"));
        assert!(!is_system_goroutine("runtime/trace.Start.func1"));
        assert!(!is_system_goroutine("main.handle"));
    }

    /// The checks below run real fixtures and fail (never skip) when Go or the
    /// fixtures are missing, naming the xtask step that provides them.
    fn traced(version: &str, name: &str) -> GoTrace {
        trace_fixture(version, "default", name, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The parent chain of `g` up to (not including) a goroutine without a parent.
    fn ancestry<'a>(trace: &'a GoTrace, mut g: &'a Goroutine) -> Vec<String> {
        let mut names = Vec::new();
        while let Some(parent) = g.parent {
            g = &trace.goroutines[&parent];
            names.push(
                g.name
                    .clone()
                    .unwrap_or_else(|| format!("goroutine {}", g.goid)),
            );
        }
        names
    }

    #[test]
    fn the_tree_is_four_deep_with_its_names_on_every_go() {
        for version in GO_VERSIONS {
            let trace = traced(version, "tree");
            let roots: Vec<_> = trace.named("main.root").collect();
            assert_eq!(roots.len(), 3, "go{version}: {:#?}", trace.goroutines);
            let leaves: Vec<_> = trace.named("main.leaf").collect();
            assert_eq!(leaves.len(), 6, "go{version}");
            for leaf in leaves {
                let chain = ancestry(&trace, leaf);
                // leaf <- (*node).spawn-fm (method value) <- main.root.func1 <- main.root <- main
                assert_eq!(chain.len(), 4, "go{version}: {chain:?}");
                assert_eq!(chain[0], "main.(*node).spawn-fm", "go{version}: {chain:?}");
                assert_eq!(chain[1], "main.root.func1", "go{version}: {chain:?}");
                assert_eq!(chain[2], "main.root", "go{version}: {chain:?}");
                assert_eq!(chain[3], "goroutine 1", "go{version}: {chain:?}");
                assert!(leaf.ended && leaf.runs >= 1 && !leaf.runtime && !leaf.existing);
            }
            let main = &trace.goroutines[&1];
            assert!(main.existing && !main.runtime, "go{version}: {main:?}");
        }
    }

    #[test]
    fn go_statement_wrappers_are_unwrapped_on_every_go() {
        // `go handle(conn)` with arguments compiles to a wrapper closure
        // (`main.serve.func1` on 1.19, `main.serve.gowrap1` on 1.21+); every version's
        // runtime names the goroutine by the wrapped function (startPCforTrace, which
        // follows the wrapper's FUNCDATA_WrapInfo; 1.19 has it too).
        for version in GO_VERSIONS {
            let trace = traced(version, "tcp");
            assert_eq!(
                trace.named("main.handle").count(),
                4,
                "go{version}: {:#?}",
                trace.goroutines
            );
            assert_eq!(trace.named("main.client").count(), 4, "go{version}");
            assert_eq!(trace.named("main.serve").count(), 1, "go{version}");
        }
    }

    #[test]
    fn mutex_waiters_are_woken_by_user_goroutines() {
        for version in ["1.19", "1.23"] {
            let trace = traced(version, "mutex");
            // `go c.work(...)`: a method call with arguments, named by the method.
            let workers: Vec<_> = trace.named("main.(*counter).work").collect();
            assert_eq!(workers.len(), 6, "go{version}: {:#?}", trace.goroutines);
            let user_wakes = workers
                .iter()
                .flat_map(|g| &g.wakers)
                .filter(|&&waker| waker != 0 && !trace.goroutines[&waker].runtime)
                .count();
            assert!(
                user_wakes > 0,
                "go{version}: no wake by a user goroutine: {workers:#?}"
            );
        }
    }

    #[test]
    fn tcp_reads_are_woken_by_the_netpoller() {
        for version in GO_VERSIONS {
            let trace = traced(version, "tcp");
            let netpoller = trace
                .wake_edges()
                .into_iter()
                .filter(|((_, waker), _)| *waker == 0)
                .count();
            assert!(netpoller > 0, "go{version}: no wake with waker 0");
        }
    }

    #[test]
    fn preemption_gc_stack_and_sleep_leave_their_marks() {
        for version in ["1.19", "1.23"] {
            let preempt = traced(version, "preempt");
            let spinners: Vec<_> = preempt.named("main.spin").collect();
            assert_eq!(spinners.len(), 4, "go{version}");
            assert!(
                spinners.iter().map(|g| g.yields).sum::<usize>() > 0,
                "go{version}: no preemption"
            );
            let gc = traced(version, "gc");
            assert!(
                gc.goroutines
                    .values()
                    .any(|g| g.runtime && g.name.as_deref() == Some("runtime.gcBgMarkWorker")),
                "go{version}: no GC worker"
            );
            let stack = traced(version, "stack");
            assert_eq!(
                stack.user().filter(|g| g.ended).count(),
                2,
                "go{version}: {:#?}",
                stack.goroutines
            );
            let sleep = traced(version, "sleep");
            assert_eq!(sleep.named("main.nap").count(), 4, "go{version}");
            assert!(
                sleep.named("main.nap").all(|g| g.wakers.len() >= 10),
                "go{version}"
            );
        }
    }
}
