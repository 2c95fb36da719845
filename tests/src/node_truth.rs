//! Node.js ground truth: the fixture `tests/node-fixtures/workload.js` writes
//! every async_hooks event of its own process (`NODE_TRUTH=FILE`), and the
//! tracer's events of that same process are compared with it by exact id.

use std::{collections::BTreeMap, path::PathBuf};

use serde_json::Value;

use crate::workspace_root;

/// Types async_hooks reports that never reach Node's native code (JS-level
/// resources): not the tracer's to see.
pub const JS_LEVEL_TYPES: [&str; 5] =
    ["Timeout", "Immediate", "TickObject", "PROMISE", "Microtask"];

/// The native types the workload creates, each of which must be seen.
pub const WORKLOAD_TYPES: [&str; 12] = [
    "TCPSERVERWRAP",
    "TCPWRAP",
    "TCPCONNECTWRAP",
    "SHUTDOWNWRAP",
    "FSREQCALLBACK",
    "FSREQPROMISE",
    "FILEHANDLE",
    "FILEHANDLECLOSEREQ",
    "GETADDRINFOREQWRAP",
    "ZLIB",
    "PROCESSWRAP",
    "PIPEWRAP",
];

/// The fixture script.
pub fn workload() -> PathBuf {
    workspace_root().join("tests/node-fixtures/workload.js")
}

/// The fixture of `queueMicrotask`'s resources.
pub fn microtasks() -> PathBuf {
    workspace_root().join("tests/node-fixtures/microtasks.js")
}

/// One resource's life, as async_hooks or the tracer saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Life {
    /// The provider type without the tracer's `node.` prefix (`TCPWRAP`).
    pub resource_type: String,
    /// `triggerAsyncId`.
    pub trigger: Option<u64>,
    /// Whether an `init` was seen at all.
    pub init: bool,
    /// Callbacks: `before`s and `after`s.
    pub before: usize,
    /// `after`s.
    pub after: usize,
    /// Whether it was destroyed.
    pub destroyed: bool,
}

/// Resources by async id.
pub type Lives = BTreeMap<u64, Life>;

/// Parses the fixture's truth file (`init ID TYPE TRIGGER`, `before ID`, …).
pub fn parse_truth(text: &str) -> Result<Lives, String> {
    let mut lives = Lives::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let id = |index: usize| -> Result<u64, String> {
            fields
                .get(index)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| format!("bad truth line {line:?}"))
        };
        let life = lives.entry(id(1)?).or_default();
        match fields.first() {
            Some(&"init") => {
                life.init = true;
                life.resource_type = fields.get(2).unwrap_or(&"").to_string();
                life.trigger = Some(id(3)?);
            }
            Some(&"before") => life.before += 1,
            Some(&"after") => life.after += 1,
            Some(&"destroy") => life.destroyed = true,
            _ => return Err(format!("bad truth line {line:?}")),
        }
    }
    Ok(lives)
}

/// Parses the tracer's `--json` lines.
pub fn parse_traced(stdout: &str) -> Result<Lives, String> {
    let mut lives = Lives::new();
    for line in stdout.lines().filter(|line| line.starts_with('{')) {
        let event: Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
        let id = event["async_id"].as_u64().ok_or(format!("no id: {line}"))?;
        let life = lives.entry(id).or_default();
        match event["event"].as_str() {
            Some("init") => {
                life.init = true;
                let name = event["type"].as_str().unwrap_or("");
                life.resource_type = name.strip_prefix("node.").unwrap_or(name).to_owned();
                life.trigger = event["trigger_id"].as_u64();
            }
            Some("before") => life.before += 1,
            Some("after") => life.after += 1,
            Some("destroy") => life.destroyed = true,
            _ => {}
        }
    }
    Ok(lives)
}

/// Per native type: (resources matched, resources in the truth).
pub type Matched = BTreeMap<String, (usize, usize)>;

/// Compares every native resource async_hooks saw created (ids at or above
/// `from`, when only part of the run was traced) with the tracer's: the same
/// type and trigger, as many befores and afters, and a destroy wherever
/// async_hooks reported one (the tracer may see more: async_hooks reports
/// destroys from a later immediate, which a process that exits skips). Also
/// every native resource the tracer saw created must be one async_hooks saw,
/// unless it is older than the hook (`first_truth_id`).
pub fn compare(truth: &Lives, traced: &Lives, from: u64) -> (Matched, Vec<String>) {
    let (matched, mut differences) =
        compare_types(truth, traced, from, |name| !JS_LEVEL_TYPES.contains(&name));
    let first_truth_id = truth.keys().next().copied().unwrap_or(0);
    for (id, got) in traced.range(from.max(first_truth_id)..) {
        if got.init && !truth.get(id).is_some_and(|t| t.init) {
            differences.push(format!(
                "{id} ({}): traced, but async_hooks saw no such resource",
                got.resource_type
            ));
        }
    }
    (matched, differences)
}

/// The JS-level types `--js-resources` reports.
pub const WATCHED_TYPES: [&str; 4] = ["Timeout", "Immediate", "TickObject", "Microtask"];

/// Like [`compare`], for the JS-level resources of [`WATCHED_TYPES`]
/// async_hooks saw created at or above `from`; and every resource the tracer
/// typed as one of them must have that type in async_hooks.
pub fn compare_js(truth: &Lives, traced: &Lives, from: u64) -> (Matched, Vec<String>) {
    let (matched, mut differences) =
        compare_types(truth, traced, from, |name| WATCHED_TYPES.contains(&name));
    for (id, got) in traced.range(from..) {
        let typed_js = got.init && WATCHED_TYPES.contains(&got.resource_type.as_str());
        let truth_type = truth
            .get(id)
            .filter(|t| t.init)
            .map(|t| t.resource_type.as_str());
        if typed_js && truth_type != Some(got.resource_type.as_str()) {
            differences.push(format!(
                "{id}: traced as {}, async_hooks says {truth_type:?}",
                got.resource_type
            ));
        }
    }
    (matched, differences)
}

/// The resources of the types `include` takes that async_hooks saw created
/// at or above `from`, each checked against the tracer's.
fn compare_types(
    truth: &Lives,
    traced: &Lives,
    from: u64,
    include: impl Fn(&str) -> bool,
) -> (Matched, Vec<String>) {
    let mut matched = Matched::new();
    let mut differences = Vec::new();
    for (id, expected) in truth.range(from..) {
        if !expected.init || !include(&expected.resource_type) {
            continue;
        }
        let entry = matched.entry(expected.resource_type.clone()).or_default();
        entry.1 += 1;
        let got = traced.get(id).cloned().unwrap_or_default();
        let checks = [
            (
                "type",
                expected.resource_type.clone(),
                got.resource_type.clone(),
            ),
            (
                "trigger",
                format!("{:?}", expected.trigger),
                format!("{:?}", got.trigger),
            ),
            (
                "before",
                expected.before.to_string(),
                got.before.to_string(),
            ),
            ("after", expected.after.to_string(), got.after.to_string()),
        ];
        let mut same = got.init;
        if !got.init {
            differences.push(format!("{id} ({}): no init traced", expected.resource_type));
        }
        for (what, want, have) in checks {
            if want != have {
                same = false;
                differences.push(format!(
                    "{id} ({}): {what} {have}, async_hooks {want}",
                    expected.resource_type
                ));
            }
        }
        if expected.destroyed && !got.destroyed {
            same = false;
            differences.push(format!(
                "{id} ({}): no destroy traced",
                expected.resource_type
            ));
        }
        entry.0 += usize::from(same);
    }
    (matched, differences)
}

/// The async id at which `--js-resources` armed its watchpoints, from the
/// summary line "node: --js-resources: watchpoints armed on the main thread
/// at async id N: …": later ids are the ones it can see.
pub fn js_armed_at(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|line| {
        let rest = line
            .split_once("watchpoints armed on the main thread at async id ")?
            .1;
        rest.split(':').next()?.parse().ok()
    })
}

/// Per type: how many resources were created, and their befores.
pub fn per_type(lives: &Lives) -> BTreeMap<String, (usize, usize)> {
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for life in lives.values().filter(|life| life.init) {
        let entry = counts.entry(life.resource_type.clone()).or_default();
        entry.0 += 1;
        entry.1 += life.before;
    }
    counts
}

/// The native types of `lives` (JS-level ones left out).
pub fn native(counts: &BTreeMap<String, (usize, usize)>) -> BTreeMap<String, (usize, usize)> {
    counts
        .iter()
        .filter(|(name, _)| !JS_LEVEL_TYPES.contains(&name.as_str()))
        .map(|(name, count)| (name.clone(), *count))
        .collect()
}

/// "TCPWRAP 16 of 16, …".
pub fn describe(matched: &Matched) -> String {
    matched
        .iter()
        .map(|(name, (ok, all))| format!("{name} {ok} of {all}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The async ids between the first and the last native resource the tracer
/// saw created (at or above `from`) that no native resource it saw had, per
/// the type async_hooks gave them: what its summary must count as unseen.
/// ("before the hook" for ids below the first async_hooks reported, "none"
/// for an id it never reported.) That no native resource of the truth is
/// among them, `compare` checks.
pub fn unseen_ids(truth: &Lives, traced: &Lives, from: u64) -> BTreeMap<String, u64> {
    let natives: Vec<u64> = traced
        .range(from..)
        .filter(|(_, life)| life.init)
        .map(|(id, _)| *id)
        .collect();
    let mut unseen = BTreeMap::new();
    let (Some(first), Some(last)) = (natives.first(), natives.last()) else {
        return unseen;
    };
    let first_truth_id = truth.keys().next().copied().unwrap_or(u64::MAX);
    for id in *first..*last {
        if traced.get(&id).is_some_and(|life| life.init) {
            continue;
        }
        let name = match truth.get(&id) {
            _ if id < first_truth_id => "before the hook",
            Some(life) if life.init => life.resource_type.as_str(),
            _ => "none",
        };
        *unseen.entry(name.to_owned()).or_default() += 1;
    }
    unseen
}

/// The count of the tracer's summary line "node: N JS-level async ids went by
/// unseen".
pub fn traced_unseen_ids(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|line| {
        let rest = line.strip_prefix("tracer: node: ")?;
        let (count, _) = rest.split_once(" JS-level async ids went by unseen")?;
        count.parse().ok()
    })
}
