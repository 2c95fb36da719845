//! The trigger tree, as `on-async-hook` drew it: every resource under the one that
//! triggered it, with its start and end relative to the session start.
//!
//! ```text
//! spawned outside any task
//! └─ #1 tokio.task  0.000000s → 0.031000s  lifetime 31.00ms  polls 2  busy 3.00ms  done
//!    ├─ #2 tokio.task  0.002000s → 0.024000s  lifetime 22.00ms  polls 2  busy 17.00ms  done
//! ```

use std::{collections::BTreeMap, io::Write, time::Duration};

use anstyle::{AnsiColor, Style};
use anyhow::bail;
use serde::Serialize;

use super::{Analysis, TaskKey, TaskRecord, TaskState, human_duration};
use crate::{
    model::event::{AwaitFrame, parked_at},
    runtime::node,
};

/// How to trim a large tree.
#[derive(Clone, Debug, Default)]
pub struct TreeOptions {
    /// Leave out subtrees in which no resource lived this long.
    pub min_duration: Option<Duration>,
    /// Show this many levels below the roots (1 = only the top resources).
    pub depth: Option<usize>,
    /// Show only the subtree of this resource (in every process that has one).
    pub id: Option<u64>,
    /// Show who woke each task, and how often.
    pub woken_by: bool,
}

/// One waker of a task, in [`Node::woken_by`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct WokenBy {
    /// The waking task, 0 for none (the I/O driver, the timer, the scheduler).
    pub waker_id: u64,
    /// How many of the task's wakes it made.
    pub wakes: u64,
}

/// Why a group of resources has no parent resource in the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RootKind {
    /// Spawned outside any task (`block_on`, `main`, a runtime thread): trigger 0.
    OutsideAnyTask,
    /// A Node resource created with no async context (trigger 0): from native
    /// code outside any callback (`fs.promises.open`'s FILEHANDLE), or in a
    /// promise callback while async_hooks is off (promises then get no id).
    NoAsyncContext,
    /// A Node resource triggered by the main script (async id 1, the bootstrap
    /// context, which has no `init` of its own).
    MainScript,
    /// The trigger is a resource never seen: for Node, a JS-level one
    /// (TickObject, Timeout, …), which tracer does not see, or one older than
    /// the session that did nothing since.
    UnseenTrigger,
    /// The trigger is unknown: the resource existed when the tracer attached.
    UnknownTrigger,
    /// The subtree asked for with `--id`.
    Subtree,
}

impl RootKind {
    /// The heading of the group, in the text tree and `tracer top`.
    pub fn label(self) -> &'static str {
        match self {
            Self::OutsideAnyTask => "spawned outside any task",
            Self::NoAsyncContext => {
                "triggered with no async context (trigger 0: from native code, or in a promise callback while async_hooks is off)"
            }
            Self::MainScript => "triggered by the main script (async id 1)",
            Self::UnseenTrigger => {
                "triggered by resources not seen (Node: JS-level ones, such as TickObject and Timeout, or older than the session)"
            }
            Self::UnknownTrigger => "trigger unknown (existing when tracing began)",
            Self::Subtree => "subtree",
        }
    }

    /// The root of `task`, whose trigger is no resource of the session.
    fn of(task: &TaskRecord) -> Self {
        let node = task.resource_type.as_str().starts_with(node::TYPE_PREFIX);
        match task.trigger_id {
            Some(0) if node => Self::NoAsyncContext,
            Some(0) => Self::OutsideAnyTask,
            Some(node::ROOT_ASYNC_ID) if node => Self::MainScript,
            Some(_) if !task.existing => Self::UnseenTrigger,
            _ => Self::UnknownTrigger,
        }
    }
}

/// One resource and what it triggered.
#[derive(Clone, Debug, Serialize)]
pub struct Node {
    /// Tokio's task id.
    pub async_id: u64,
    /// `tokio.task`, `tokio.blocking`, …
    #[serde(rename = "type")]
    pub resource_type: String,
    /// 0 outside any task, `null` when unknown.
    pub trigger_id: Option<u64>,
    /// It existed before the tracer attached.
    pub existing: bool,
    /// What it runs (its future type), `null` when unknown.
    pub name: Option<String>,
    /// Where it was spawned (`file:line:col`), `null` when unknown.
    pub location: Option<String>,
    /// `init`, ns after the session start.
    pub start_ns: u64,
    /// Freed (else finished), ns after the session start; `null` while alive.
    pub end_ns: Option<u64>,
    /// From start to end, or to the session's last event.
    pub lifetime_ns: u64,
    /// Polls that finished.
    pub polls: u64,
    /// Time spent in polls.
    pub busy_ns: u64,
    /// State at the session's end.
    pub state: TaskState,
    /// Where an idle task is parked: its last poll's await chain, outermost
    /// first (left out when not known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub awaiting: Option<Vec<AwaitFrame>>,
    /// With [`TreeOptions::woken_by`]: its wakers, most wakes first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub woken_by: Vec<WokenBy>,
    /// Resources it triggered, by start time.
    pub children: Vec<Node>,
}

/// Resources of one process grouped under one kind of root.
#[derive(Clone, Debug, Serialize)]
pub struct Root {
    /// Their process.
    pub pid: u32,
    /// Why these have no parent in the tree.
    pub root: RootKind,
    /// The top resources.
    pub children: Vec<Node>,
}

/// The whole forest, as `tracer tree --json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct TriggerTree {
    /// By pid, at most one root of each kind per process, empty ones left out.
    pub roots: Vec<Root>,
}

impl TriggerTree {
    /// Arranges `analysis`'s tasks under their triggers, trimmed as `options`
    /// say: the roots of each process, by pid (a trigger id names a task of the
    /// same process).
    pub fn build(analysis: &Analysis, options: &TreeOptions) -> anyhow::Result<Self> {
        let mut children: BTreeMap<TaskKey, Vec<&TaskRecord>> = BTreeMap::new();
        let mut tops: BTreeMap<(u32, RootKind), Vec<&TaskRecord>> = BTreeMap::new();
        for task in analysis.tasks.values() {
            match task.trigger_id {
                Some(parent) if parent != 0 && analysis.tasks.contains_key(&(task.pid, parent)) => {
                    children.entry((task.pid, parent)).or_default().push(task);
                }
                _ => tops
                    .entry((task.pid, RootKind::of(task)))
                    .or_default()
                    .push(task),
            }
        }
        if let Some(id) = options.id {
            tops = analysis
                .tasks
                .values()
                .filter(|task| task.async_id == id)
                .map(|task| ((task.pid, RootKind::Subtree), vec![task]))
                .collect();
            if tops.is_empty() {
                bail!(
                    "--id {id}: no resource has async_id {id} in this session; `tracer stats` lists them"
                );
            }
        }
        let builder = Builder {
            analysis,
            children,
            options,
        };
        let roots = tops
            .into_iter()
            .map(|((pid, root), tasks)| Root {
                pid,
                root,
                children: builder.nodes(tasks, 1),
            })
            .filter(|root| !root.children.is_empty())
            .collect();
        Ok(Self { roots })
    }
}

struct Builder<'a> {
    analysis: &'a Analysis,
    children: BTreeMap<TaskKey, Vec<&'a TaskRecord>>,
    options: &'a TreeOptions,
}

impl Builder<'_> {
    /// The nodes of `tasks` at `depth` (1 = top), by start time, trimmed.
    fn nodes(&self, mut tasks: Vec<&TaskRecord>, depth: usize) -> Vec<Node> {
        if self.options.depth.is_some_and(|max| depth > max) {
            return Vec::new();
        }
        tasks.sort_by_key(|task| (task.start_ns, task.async_id));
        let min_ns = self.options.min_duration.map_or(0, |d| d.as_nanos() as u64);
        tasks
            .into_iter()
            .filter_map(|task| {
                let kids = self.children.get(&task.key()).cloned().unwrap_or_default();
                let children = self.nodes(kids, depth + 1);
                let lifetime_ns = task.lifetime_ns(self.analysis.end_ns);
                (lifetime_ns >= min_ns || !children.is_empty()).then(|| {
                    let relative = |ns: u64| ns.saturating_sub(self.analysis.start_ns);
                    Node {
                        async_id: task.async_id,
                        resource_type: task.resource_type.as_str().to_owned(),
                        trigger_id: task.trigger_id,
                        existing: task.existing,
                        name: task.name.clone(),
                        location: task.location.clone(),
                        start_ns: relative(task.start_ns),
                        end_ns: task.end_ns().map(relative),
                        lifetime_ns,
                        polls: task.polls,
                        busy_ns: task.busy_ns,
                        state: task.state(),
                        awaiting: task.awaiting.clone(),
                        woken_by: if self.options.woken_by {
                            woken_by(task)
                        } else {
                            Vec::new()
                        },
                        children,
                    }
                })
            })
            .collect()
    }
}

/// Writes the tree as one JSON document.
pub fn write_json(out: &mut impl Write, tree: &TriggerTree) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, tree)?;
    writeln!(out)?;
    Ok(())
}

const ROOT: Style = AnsiColor::Yellow.on_default().bold();
const ID: Style = Style::new().bold();
const TYPE: Style = AnsiColor::Cyan.on_default();
const NAME: Style = AnsiColor::Green.on_default();
const DIM: Style = Style::new().dimmed();

/// Writes the tree with box lines, in colour (an `anstream` writer drops the
/// colour when the output is not a terminal). With several processes, each
/// one's roots come under a `process PID` heading.
pub fn write_text(
    out: &mut impl Write,
    analysis: &Analysis,
    tree: &TriggerTree,
) -> anyhow::Result<()> {
    let others = match analysis.pids.len() {
        0 | 1 => String::new(),
        n => format!(" and {} other process(es)", n - 1),
    };
    writeln!(
        out,
        "{ROOT}trigger tree{ROOT:#}: pid {} {}{others}, {} tasks over {}",
        analysis.pid,
        analysis.exe,
        analysis.tasks.len(),
        human_duration(analysis.end_ns.saturating_sub(analysis.start_ns))
    )?;
    let indent = if analysis.several_processes() {
        "  "
    } else {
        ""
    };
    let mut heading = None;
    for root in &tree.roots {
        if !indent.is_empty() && heading != Some(root.pid) {
            writeln!(out, "{ROOT}process {}{ROOT:#}", root.pid)?;
            heading = Some(root.pid);
        }
        writeln!(out, "{indent}{ROOT}{}{ROOT:#}", root.root.label())?;
        write_nodes(out, &root.children, indent)?;
    }
    Ok(())
}

/// A task's wakers, most wakes first (then by id).
fn woken_by(task: &TaskRecord) -> Vec<WokenBy> {
    let mut wakers: Vec<WokenBy> = task
        .wakers
        .iter()
        .map(|(&waker_id, &wakes)| WokenBy { waker_id, wakes })
        .collect();
    wakers.sort_by_key(|waker| (std::cmp::Reverse(waker.wakes), waker.waker_id));
    wakers
}

/// `  woken by #6 ×20, no task ×3`, or nothing.
fn woken_by_text(wakers: &[WokenBy]) -> String {
    if wakers.is_empty() {
        return String::new();
    }
    let list: Vec<String> = wakers
        .iter()
        .map(|waker| match waker.waker_id {
            0 => format!("no task ×{}", waker.wakes),
            id => format!("#{id} ×{}", waker.wakes),
        })
        .collect();
    format!("  woken by {}", list.join(", "))
}

fn write_nodes(out: &mut impl Write, nodes: &[Node], prefix: &str) -> anyhow::Result<()> {
    for (index, node) in nodes.iter().enumerate() {
        let last = index + 1 == nodes.len();
        let (branch, indent) = if last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        let end = node
            .end_ns
            .map_or_else(|| "…".to_owned(), |ns| format!("{:.6}s", ns as f64 / 1e9));
        let mut identity = String::new();
        if let Some(name) = &node.name {
            identity.push_str(&format!("{NAME}{name}{NAME:#} "));
        }
        if let Some(location) = &node.location {
            identity.push_str(&format!("{DIM}({location}){DIM:#} "));
        }
        writeln!(
            out,
            "{DIM}{prefix}{branch}{DIM:#}{ID}#{}{ID:#} {identity}{TYPE}{}{TYPE:#}  {:.6}s → {end}  lifetime {}  polls {}  busy {}  {DIM}{}{DIM:#}{}{}",
            node.async_id,
            node.resource_type,
            node.start_ns as f64 / 1e9,
            human_duration(node.lifetime_ns),
            node.polls,
            human_duration(node.busy_ns),
            node.state.as_str(),
            node.awaiting
                .as_deref()
                .map_or_else(String::new, |chain| format!(
                    " parked at {}",
                    parked_at(chain)
                )),
            woken_by_text(&node.woken_by),
        )?;
        write_nodes(out, &node.children, &format!("{prefix}{indent}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{
        super::test_events::{analysis, two_process_analysis},
        *,
    };

    fn ids(nodes: &[Node]) -> Vec<u64> {
        nodes.iter().map(|node| node.async_id).collect()
    }

    #[test]
    fn resources_hang_under_their_trigger() {
        let tree = TriggerTree::build(&analysis(), &TreeOptions::default()).unwrap();
        assert_eq!(tree.roots.len(), 2);
        assert_eq!(tree.roots[0].root, RootKind::OutsideAnyTask);
        let one = &tree.roots[0].children[0];
        assert_eq!(one.async_id, 1);
        assert_eq!(ids(&one.children), [2, 3]);
        assert_eq!(ids(&one.children[0].children), [4]);
        assert_eq!(tree.roots[1].root, RootKind::UnknownTrigger);
        assert_eq!(ids(&tree.roots[1].children), [9]);
    }

    #[test]
    fn node_resources_hang_under_no_context_the_main_script_or_an_unseen_trigger() {
        use crate::model::event::{HookEvent, HookKind, ResourceType};
        let init = |async_id, trigger, resource_type: &'static str| HookEvent {
            kind: HookKind::Init {
                resource_type: ResourceType::named(resource_type),
                trigger_id: Some(trigger),
                existing: false,
                name: None,
                location: None,
            },
            async_id,
            ts_ns: 1_000_000_000 + async_id,
            pid: 1,
            tid: 1,
        };
        let mut collector = super::super::Collector::new(super::super::DEFAULT_BLOCKING_THRESHOLD);
        for event in [
            init(3, 0, "node.FSREQPROMISE"),
            init(4, 1, "node.TCPSERVERWRAP"),
            init(6, 5, "node.TCPWRAP"),
            init(7, 4, "node.TCPWRAP"),
            // Trigger 1 means the main script only for Node's resources.
            init(9, 1, "tokio.task"),
        ] {
            collector.record(&event);
        }
        let analysis = collector.finish(&super::super::test_events::info());
        let tree = TriggerTree::build(&analysis, &TreeOptions::default()).unwrap();
        let roots: Vec<(RootKind, Vec<u64>)> = tree
            .roots
            .iter()
            .map(|root| (root.root, ids(&root.children)))
            .collect();
        assert_eq!(
            roots,
            [
                (RootKind::NoAsyncContext, vec![3]),
                (RootKind::MainScript, vec![4]),
                (RootKind::UnseenTrigger, vec![6, 9])
            ]
        );
        assert_eq!(ids(&tree.roots[1].children[0].children), [7]);
    }

    #[test]
    fn an_idle_task_is_shown_parked_at_its_last_tree() {
        let analysis = super::super::test_events::parked_analysis();
        let tree = TriggerTree::build(&analysis, &TreeOptions::default()).unwrap();
        let nine = &tree.roots[1].children[0];
        assert_eq!(nine.async_id, 9);
        let json = serde_json::to_value(nine).unwrap();
        assert_eq!(
            json["awaiting"],
            serde_json::json!([
                {"fn": "app::consumer", "at": "src/main.rs:32"},
                {"future": "tokio::join!", "branches": [
                    {"branch": 0, "awaiting": [{"future": "tokio::time::sleep::Sleep"}]},
                    {"branch": 2, "awaiting": [
                        {"fn": "app::leaf", "at": "src/main.rs:42"},
                        {"future": "tokio::sync::oneshot::Receiver<u64>"}
                    ]}
                ]}
            ])
        );
        let one = serde_json::to_value(&tree.roots[0].children[0]).unwrap();
        assert!(one.get("awaiting").is_none(), "{one}");
        let mut out = anstream::StripStream::new(Vec::new());
        write_text(&mut out, &analysis, &tree).unwrap();
        let text = String::from_utf8(out.into_inner()).unwrap();
        assert!(
            text.contains(&format!(
                "idle parked at {}\n",
                super::super::test_events::PARKED_AT
            )),
            "{text}"
        );
    }

    #[test]
    fn depth_min_duration_and_id_trim_the_tree() {
        let analysis = analysis();
        let shallow = TreeOptions {
            depth: Some(2),
            ..TreeOptions::default()
        };
        let tree = TriggerTree::build(&analysis, &shallow).unwrap();
        assert!(tree.roots[0].children[0].children[0].children.is_empty());

        // Task 4 lived 17 ms, 3 lives to the end (29 ms), 2 for 22 ms.
        let long = TreeOptions {
            min_duration: Some(Duration::from_millis(25)),
            ..TreeOptions::default()
        };
        let tree = TriggerTree::build(&analysis, &long).unwrap();
        assert_eq!(ids(&tree.roots[0].children[0].children), [3]);

        let sub = TreeOptions {
            id: Some(2),
            ..TreeOptions::default()
        };
        let tree = TriggerTree::build(&analysis, &sub).unwrap();
        assert_eq!(tree.roots.len(), 1);
        assert_eq!(ids(&tree.roots[0].children), [2]);
        let missing = TreeOptions {
            id: Some(77),
            ..TreeOptions::default()
        };
        let error = TriggerTree::build(&analysis, &missing).unwrap_err();
        assert!(error.to_string().contains("no resource has async_id 77"));
    }

    #[test]
    fn woken_by_lists_each_tasks_wakers_on_request_only() {
        let mut collector = super::super::Collector::new(super::super::DEFAULT_BLOCKING_THRESHOLD);
        for event in super::super::test_events::wake_session() {
            collector.record(&event);
        }
        let analysis = collector.finish(&super::super::test_events::info());
        let plain = TriggerTree::build(&analysis, &TreeOptions::default()).unwrap();
        assert!(
            plain.roots[0]
                .children
                .iter()
                .all(|n| n.woken_by.is_empty())
        );
        let options = TreeOptions {
            woken_by: true,
            ..TreeOptions::default()
        };
        let tree = TriggerTree::build(&analysis, &options).unwrap();
        let five = tree.roots[0]
            .children
            .iter()
            .find(|node| node.async_id == 5)
            .unwrap();
        assert_eq!(
            five.woken_by,
            [
                WokenBy {
                    waker_id: 0,
                    wakes: 3
                },
                WokenBy {
                    waker_id: 6,
                    wakes: 1
                }
            ]
        );
        assert_eq!(
            woken_by_text(&five.woken_by),
            "  woken by no task ×3, #6 ×1"
        );
    }

    #[test]
    fn each_process_has_its_own_roots_and_triggers() {
        let analysis = two_process_analysis();
        let tree = TriggerTree::build(&analysis, &TreeOptions::default()).unwrap();
        let roots: Vec<(u32, RootKind)> = tree.roots.iter().map(|r| (r.pid, r.root)).collect();
        assert_eq!(
            roots,
            [
                (1, RootKind::OutsideAnyTask),
                (1, RootKind::UnknownTrigger),
                (2, RootKind::OutsideAnyTask),
                (2, RootKind::UnknownTrigger)
            ]
        );
        for root in [&tree.roots[0], &tree.roots[2]] {
            let one = &root.children[0];
            assert_eq!(ids(&one.children), [2, 3], "pid {}", root.pid);
            assert_eq!(ids(&one.children[0].children), [4], "pid {}", root.pid);
        }

        let sub = TreeOptions {
            id: Some(2),
            ..TreeOptions::default()
        };
        let tree = TriggerTree::build(&analysis, &sub).unwrap();
        let roots: Vec<(u32, RootKind)> = tree.roots.iter().map(|r| (r.pid, r.root)).collect();
        assert_eq!(roots, [(1, RootKind::Subtree), (2, RootKind::Subtree)]);
        assert_eq!(ids(&tree.roots[1].children[0].children), [4]);

        let mut out = anstream::StripStream::new(Vec::new());
        write_text(&mut out, &analysis, &tree).unwrap();
        let text = String::from_utf8(out.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("trigger tree: pid 1 /bin/app and 1 other process(es), 10 tasks")
        );
        assert_eq!(lines[1..3], ["process 1", "  subtree"]);
        assert!(
            lines[3].starts_with("  └─ #2 tokio.task  0.002000s"),
            "{text}"
        );
        assert!(lines[4].starts_with("     └─ #4 "), "{text}");
        assert_eq!(lines[5..7], ["process 2", "  subtree"]);
        assert!(
            lines[7].starts_with("  └─ #2 tokio.task  0.003000s"),
            "{text}"
        );
    }

    #[test]
    fn json_names_the_process_of_each_root() {
        let tree = TriggerTree::build(&analysis(), &TreeOptions::default()).unwrap();
        let mut out = Vec::new();
        write_json(&mut out, &tree).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["roots"][0]["pid"], 1);
        assert_eq!(json["roots"][0]["root"], "outside_any_task");
        assert_eq!(json["roots"][0]["children"][0]["async_id"], 1);
    }

    #[test]
    fn text_uses_box_lines_and_times_since_start() {
        let analysis = analysis();
        let tree = TriggerTree::build(&analysis, &TreeOptions::default()).unwrap();
        let mut out = anstream::StripStream::new(Vec::new());
        write_text(&mut out, &analysis, &tree).unwrap();
        let text = String::from_utf8(out.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "spawned outside any task");
        assert_eq!(
            lines[2],
            "└─ #1 tokio.task  0.000000s → 0.031000s  lifetime 31.00ms  polls 2  busy 3.00ms  done"
        );
        assert!(lines[3].starts_with("   ├─ #2 tokio.task  0.002000s → 0.024000s"));
        assert!(lines[4].starts_with("   │  └─ #4 "));
        assert!(lines[5].starts_with("   └─ #3 "), "{text}");
        assert!(lines[5].ends_with("…  lifetime 29.00ms  polls 0  busy 0ns  idle"));
    }
}
