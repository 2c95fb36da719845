//! Ground truth for embedder resources (`tracer-resource`), and its comparison
//! with the tracer's events.
//!
//! A fixture that declares its own resources writes, next to Tokio's records:
//! - `resource_init {id, type, trigger}` when it creates one (`async_id()`,
//!   the type name it gave, `trigger_async_id()`),
//! - `resource_scope {id}` for each callback run in the resource's scope (one
//!   `before`/`after` pair), also one per poll of an instrumented future,
//! - `resource_destroy {id}` when it drops one.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{HookKind, TracerOutput};

/// Set in every embedder resource id (`tracer_resource::RESOURCE_ID_BIT`).
pub const RESOURCE_ID_BIT: u64 = 1 << 63;

/// What is known about one resource, from either side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceFacts {
    /// Type name at init (`None`: no init seen).
    pub ty: Option<String>,
    /// Trigger at init.
    pub trigger: Option<u64>,
    /// `before` events (ground truth: scopes).
    pub befores: usize,
    /// `after` events (ground truth: scopes).
    pub afters: usize,
    /// `destroy` events.
    pub destroys: usize,
}

/// One resource record of a ground-truth file.
#[derive(Debug, Deserialize)]
#[serde(tag = "event")]
enum ResourceRecord {
    #[serde(rename = "resource_init")]
    Init {
        id: u64,
        #[serde(rename = "type")]
        ty: String,
        trigger: u64,
    },
    #[serde(rename = "resource_scope")]
    Scope { id: u64 },
    #[serde(rename = "resource_destroy")]
    Destroy { id: u64 },
}

/// The resources a fixture declared, by id, from its ground-truth text.
pub fn declared(ground_truth: &str) -> Result<BTreeMap<u64, ResourceFacts>, String> {
    let mut facts: BTreeMap<u64, ResourceFacts> = BTreeMap::new();
    for (n, line) in ground_truth.lines().enumerate() {
        if !line.contains("\"resource_") {
            continue;
        }
        let record: ResourceRecord = serde_json::from_str(line)
            .map_err(|e| format!("ground truth line {}: {e}: {line}", n + 1))?;
        match record {
            ResourceRecord::Init { id, ty, trigger } => {
                let f = facts.entry(id).or_default();
                f.ty = Some(ty);
                f.trigger = Some(trigger);
            }
            ResourceRecord::Scope { id } => {
                let f = facts.entry(id).or_default();
                f.befores += 1;
                f.afters += 1;
            }
            ResourceRecord::Destroy { id } => facts.entry(id).or_default().destroys += 1,
        }
    }
    Ok(facts)
}

/// The resources the tracer reported (ids with [`RESOURCE_ID_BIT`]), by id.
pub fn traced(output: &TracerOutput) -> BTreeMap<u64, ResourceFacts> {
    let mut facts: BTreeMap<u64, ResourceFacts> = BTreeMap::new();
    for event in output
        .events
        .iter()
        .filter(|e| e.async_id & RESOURCE_ID_BIT != 0)
    {
        let f = facts.entry(event.async_id).or_default();
        match event.event {
            HookKind::Init => {
                f.ty = event.ty.clone();
                f.trigger = event.trigger_id;
            }
            HookKind::Before => f.befores += 1,
            HookKind::After => f.afters += 1,
            HookKind::Destroy => f.destroys += 1,
            HookKind::Resolve => {}
        }
    }
    facts
}

/// The tracer's output without embedder resources: what Tokio's hooks compare with.
pub fn tasks_only(output: &TracerOutput) -> TracerOutput {
    TracerOutput {
        events: output
            .events
            .iter()
            .filter(|e| e.async_id & RESOURCE_ID_BIT == 0)
            .cloned()
            .collect(),
        other: output.other.clone(),
    }
}

/// Every difference between declared and traced resources, one message each.
pub fn compare(
    declared: &BTreeMap<u64, ResourceFacts>,
    traced: &BTreeMap<u64, ResourceFacts>,
) -> Vec<String> {
    let mut mismatches = Vec::new();
    for (id, want) in declared {
        match traced.get(id) {
            None => mismatches.push(format!("resource {id}: declared, never traced: {want:?}")),
            Some(got) if got != want => {
                mismatches.push(format!("resource {id}: declared {want:?}, traced {got:?}"));
            }
            Some(_) => {}
        }
    }
    for id in traced.keys().filter(|id| !declared.contains_key(id)) {
        mismatches.push(format!("resource {id}: traced but never declared"));
    }
    mismatches
}
