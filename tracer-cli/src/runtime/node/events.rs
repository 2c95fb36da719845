//! Node's records ([`RawNodeEvent`]) to the model's: ids from doubles to
//! integers, and each scope's close paired with its enter.

use std::collections::HashMap;

use tracer_common::{
    RawEvent, RawKind, RawSpawnEvent, SpawnKind,
    node::{NodeKind, RawNodeEvent, layout, watch},
};

use super::js::{JsResources, JsType};
use crate::{
    model::decode,
    runtime::{BpfGlobals, JsWatching, ModelRecord, RecordMapper, WriteWatch},
};

/// What an `init` carries to name its resource: the provider type plus one,
/// so that 0 stays "nothing".
pub fn provider_address(provider: u32) -> u64 {
    u64::from(provider) + 1
}

/// What an `init` of a JS-level resource carries to name it: past every
/// provider type.
pub fn js_type_address(resource_type: JsType) -> u64 {
    JS_TYPE_BASE + resource_type as u64
}

/// The first of [`js_type_address`]'s addresses.
pub const JS_TYPE_BASE: u64 = 1 << 32;

/// Node's async id held in a double's `bits`, as the integer it is; `None` for
/// a value that is no id (negative, fractional, not finite, beyond 2^53).
pub fn async_id(bits: u64) -> Option<u64> {
    let value = f64::from_bits(bits);
    let integral = value.is_finite() && value >= 0.0 && value.fract() == 0.0;
    (integral && value <= 9_007_199_254_740_992.0).then_some(value as u64)
}

/// The async id of the bootstrap context: the main script runs in a callback
/// scope of it, which async_hooks never reports (it has no `init` either).
pub const ROOT_ASYNC_ID: u64 = 1;

/// Maps one process tree's [`RawNodeEvent`]s, in ring order.
#[derive(Debug)]
pub struct NodeEvents {
    /// Open callback scopes by (thread, scope address): the resource entered.
    scopes: HashMap<(u64, u64), u64>,
    /// The last async id created on each thread (`pid_tgid`): a Node
    /// environment (the main thread's, a worker's) draws its ids from one
    /// counter of its own, and runs on one thread.
    last_ids: HashMap<u64, u64>,
    counts: Counts,
    /// `--js-resources`: the JS-level resources, when asked for.
    js: JsResources,
    js_enabled: bool,
}

/// What the mapping set aside, for the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records whose id was not an integral double.
    pub bad_ids: u64,
    /// Scopes entered again at the same address before their close was seen.
    pub lost_closes: u64,
    /// Records of a kind this tracer does not know.
    pub unknown: u64,
    /// Async ids between two native resources of one thread that no native
    /// resource had: ids Node gave JS-level resources (or native ones whose
    /// record was dropped).
    pub unseen_ids: u64,
}

impl NodeEvents {
    /// A mapping that has seen nothing yet; `js` reports the JS-level
    /// resources if asked to ([`RecordMapper::watch_js_resources`]).
    pub fn new(js: JsResources) -> Self {
        Self {
            scopes: HashMap::new(),
            last_ids: HashMap::new(),
            counts: Counts::default(),
            js,
            js_enabled: false,
        }
    }

    /// What the mapping set aside so far.
    #[cfg(test)]
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Maps one record, giving the model's records to `out` in order.
    pub fn apply(&mut self, raw: &RawNodeEvent, out: &mut dyn FnMut(ModelRecord)) {
        let Ok(kind) = NodeKind::try_from(raw.kind) else {
            self.counts.unknown += 1;
            return;
        };
        match kind {
            NodeKind::JsId => return self.js.id_drawn(raw, out),
            NodeKind::JsWrite => return self.js.written(raw, out),
            NodeKind::Microtasks => return self.js.microtasks(raw.pid_tgid, raw.async_id != 0),
            NodeKind::EnqueueMicrotask => return self.js.microtask_enqueued(raw.pid_tgid, out),
            NodeKind::ScopeEnter if self.js_enabled => {
                self.js.saw_environment(raw.pid_tgid, raw.trigger_id);
            }
            _ => {}
        }
        if kind == NodeKind::ScopeClose {
            if let Some(id) = self.scopes.remove(&(raw.pid_tgid, raw.object)) {
                out(ModelRecord::Plain(RawEvent::at(
                    raw.ts_ns,
                    raw.pid_tgid,
                    RawKind::PollEnd,
                    id,
                    0,
                    0,
                )));
            }
            // Else the scope had no resource or skipped the hooks: no before.
            return;
        }
        let Some(id) = async_id(raw.async_id) else {
            self.counts.bad_ids += 1;
            return;
        };
        match kind {
            NodeKind::Init => {
                let Some(trigger) = async_id(raw.trigger_id) else {
                    self.counts.bad_ids += 1;
                    return;
                };
                self.count_unseen(raw.pid_tgid, id);
                let event = RawEvent::at(
                    raw.ts_ns,
                    raw.pid_tgid,
                    RawKind::Spawn,
                    id,
                    trigger,
                    SpawnKind::Task as u32,
                );
                out(ModelRecord::Named(RawSpawnEvent {
                    event,
                    vtable: provider_address(raw.provider),
                    // Non-zero, so the adapter's location source says why
                    // there is none.
                    location: provider_address(raw.provider),
                }));
            }
            // The bootstrap scope, and one without a resource (reported
            // with `--js-resources` for its environment).
            NodeKind::ScopeEnter if id == ROOT_ASYNC_ID || id == 0 => {}
            NodeKind::ScopeEnter => {
                match self.scopes.insert((raw.pid_tgid, raw.object), id) {
                    // A constructor delegating to the other (Node 18's
                    // `InternalCallbackScope(AsyncWrap*, int)`): one scope.
                    Some(open) if open == id => return,
                    Some(_) => self.counts.lost_closes += 1,
                    None => {}
                }
                out(ModelRecord::Plain(RawEvent::at(
                    raw.ts_ns,
                    raw.pid_tgid,
                    RawKind::PollStart,
                    id,
                    0,
                    0,
                )));
            }
            NodeKind::Destroy => {
                out(ModelRecord::Plain(RawEvent::at(
                    raw.ts_ns,
                    raw.pid_tgid,
                    RawKind::Free,
                    id,
                    0,
                    0,
                )));
            }
            NodeKind::ScopeClose
            | NodeKind::JsId
            | NodeKind::JsWrite
            | NodeKind::Microtasks
            | NodeKind::EnqueueMicrotask => {}
        }
    }
}

impl NodeEvents {
    /// Counts the ids that went by unseen before `id`, the next native
    /// resource created on `thread`. Ids are drawn in order and `AsyncReset`
    /// returns on the thread that drew its id before that thread can draw
    /// another, so a thread's inits come in increasing order; one that does not
    /// was counted as unseen before, and is taken back.
    fn count_unseen(&mut self, thread: u64, id: u64) {
        match self.last_ids.insert(thread, id) {
            Some(last) if id > last => self.counts.unseen_ids += id - last - 1,
            Some(last) => {
                self.last_ids.insert(thread, last);
                self.counts.unseen_ids = self.counts.unseen_ids.saturating_sub(1);
            }
            None => {}
        }
    }
}

impl RecordMapper for NodeEvents {
    fn map(&mut self, record: &[u8], out: &mut dyn FnMut(ModelRecord)) -> bool {
        let Some(raw) = decode::<RawNodeEvent>(record) else {
            return false;
        };
        self.apply(&raw, out);
        true
    }

    fn summary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.last_ids.is_empty() {
            lines.push(format!(
                "node: {} JS-level async ids went by unseen: ids between native resources that no native resource had (Timeout, Immediate, TickObject, and PROMISE when async_hooks is on, never reach native code; a native resource whose record was dropped would count here too)",
                self.counts.unseen_ids
            ));
        }
        if self.counts.bad_ids > 0 {
            lines.push(format!(
                "node: {} records whose async id was not an integral double were left out",
                self.counts.bad_ids
            ));
        }
        if self.counts.lost_closes > 0 {
            lines.push(format!(
                "node: {} callback scopes had no close seen (their after is missing)",
                self.counts.lost_closes
            ));
        }
        if self.counts.unknown > 0 {
            lines.push(format!(
                "node: {} records of an unknown kind were left out",
                self.counts.unknown
            ));
        }
        if self.js_enabled {
            let workers = self
                .last_ids
                .keys()
                .filter(|pid_tgid| **pid_tgid >> 32 != **pid_tgid & 0xffff_ffff)
                .count();
            lines.extend(self.js.summary(workers));
        }
        lines
    }

    fn watch_js_resources(&mut self) -> Option<JsWatching> {
        self.js_enabled = true;
        Some(JsWatching {
            globals: BpfGlobals(vec![(layout::WAKE_FOR_ENV, 1)]),
            programs: vec![watch::COUNTER_PROGRAM, watch::WRITE_PROGRAM],
        })
    }

    fn take_watches(&mut self) -> Vec<WriteWatch> {
        self.js.take_watches()
    }

    fn watches_armed(&mut self, result: Result<(), String>) {
        self.js.armed(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: NodeKind, object: u64, id: f64) -> RawNodeEvent {
        RawNodeEvent {
            ts_ns: 1,
            pid_tgid: (7 << 32) | 8,
            object,
            async_id: id.to_bits(),
            trigger_id: 1.0f64.to_bits(),
            kind: kind as u32,
            provider: 36,
        }
    }

    fn map(events: &[RawNodeEvent]) -> (Vec<ModelRecord>, Counts) {
        let mut mapper = NodeEvents::new(JsResources::new(7, Err(String::new())));
        let mut out = Vec::new();
        for event in events {
            mapper.apply(event, &mut |record| out.push(record));
        }
        (out, mapper.counts())
    }

    fn kinds(records: &[ModelRecord]) -> Vec<(u32, u64)> {
        records
            .iter()
            .map(|record| match record {
                ModelRecord::Plain(event) => (event.kind, event.task_id),
                ModelRecord::Named(spawn) => (spawn.event.kind, spawn.event.task_id),
            })
            .collect()
    }

    #[test]
    fn integral_doubles_are_their_integer_and_others_are_no_id() {
        assert_eq!(async_id(7.0f64.to_bits()), Some(7));
        assert_eq!(async_id(0.0f64.to_bits()), Some(0));
        assert_eq!(async_id((-1.0f64).to_bits()), None);
        assert_eq!(async_id(2.5f64.to_bits()), None);
        assert_eq!(async_id(f64::NAN.to_bits()), None);
    }

    #[test]
    fn init_names_the_resource_by_its_provider_with_the_trigger() {
        let (out, _) = map(&[raw(NodeKind::Init, 0x10, 12.0)]);
        let [ModelRecord::Named(spawn)] = out.as_slice() else {
            panic!("{out:?}");
        };
        assert_eq!((spawn.event.task_id, spawn.event.trigger_id), (12, 1));
        assert_eq!(spawn.vtable, provider_address(36));
        assert_eq!(spawn.event.kind, RawKind::Spawn as u32);
    }

    #[test]
    fn a_scope_close_is_the_after_of_the_resource_its_enter_named() {
        let (out, _) = map(&[
            raw(NodeKind::ScopeEnter, 0x100, 5.0),
            raw(NodeKind::ScopeEnter, 0x80, 6.0),
            raw(NodeKind::ScopeClose, 0x80, 0.0),
            raw(NodeKind::ScopeClose, 0x100, 0.0),
        ]);
        let (start, end) = (RawKind::PollStart as u32, RawKind::PollEnd as u32);
        assert_eq!(kinds(&out), [(start, 5), (start, 6), (end, 6), (end, 5)]);
    }

    #[test]
    fn a_constructor_delegating_to_the_other_enters_one_scope() {
        let (out, counts) = map(&[
            raw(NodeKind::ScopeEnter, 0x100, 5.0),
            raw(NodeKind::ScopeEnter, 0x100, 5.0),
            raw(NodeKind::ScopeClose, 0x100, 0.0),
        ]);
        let (start, end) = (RawKind::PollStart as u32, RawKind::PollEnd as u32);
        assert_eq!(kinds(&out), [(start, 5), (end, 5)]);
        assert_eq!(counts, Counts::default());
    }

    #[test]
    fn the_bootstrap_scope_is_no_callback() {
        let (out, _) = map(&[
            raw(NodeKind::ScopeEnter, 0x100, 1.0),
            raw(NodeKind::ScopeClose, 0x100, 0.0),
        ]);
        assert!(out.is_empty());
    }

    #[test]
    fn a_scope_without_a_resource_is_no_callback() {
        let (out, counts) = map(&[
            raw(NodeKind::ScopeEnter, 0x100, 0.0),
            raw(NodeKind::ScopeClose, 0x100, 0.0),
        ]);
        assert!(out.is_empty());
        assert_eq!(counts, Counts::default());
    }

    #[test]
    fn a_close_of_a_scope_without_hooks_is_no_after() {
        let (out, counts) = map(&[raw(NodeKind::ScopeClose, 0x100, 0.0)]);
        assert!(out.is_empty());
        assert_eq!(counts, Counts::default());
    }

    #[test]
    fn ids_between_a_threads_native_resources_are_counted_as_unseen() {
        let mut other_thread = raw(NodeKind::Init, 0x10, 3.0);
        other_thread.pid_tgid += 1;
        let (_, counts) = map(&[
            raw(NodeKind::Init, 0x10, 5.0),
            raw(NodeKind::Init, 0x10, 6.0),
            other_thread,
            raw(NodeKind::Init, 0x10, 10.0),
            raw(NodeKind::Init, 0x10, 8.0),
        ]);
        // 7 and 9: 8 came late, and the other thread's 3 is its own sequence.
        assert_eq!(counts.unseen_ids, 2);
    }

    #[test]
    fn a_destroy_with_an_invalid_id_is_counted_not_reported() {
        let (out, counts) = map(&[
            raw(NodeKind::Destroy, 0x10, 9.0),
            raw(NodeKind::Destroy, 0x10, -1.0),
        ]);
        assert_eq!(kinds(&out), [(RawKind::Free as u32, 9)]);
        assert_eq!(counts.bad_ids, 1);
    }
}
