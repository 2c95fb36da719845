//! `--js-resources`: Node's JS-level resources (Timeout, Immediate,
//! TickObject, Microtask), which never reach native code, from hardware
//! write-watchpoints on four words of the main thread's `node::Environment`:
//!
//! | word | written by | gives |
//! | --- | --- | --- |
//! | `async_id_fields[kAsyncIdCounter]` | `newAsyncId()` (and `AsyncReset`, told apart) | `init`: the id, the trigger `getDefaultTriggerAsyncId()` gives |
//! | `async_id_fields[kExecutionAsyncId]` | `pushAsyncContext` / `popAsyncContext` (JS and C++) | `before` / `after` |
//! | `timeoutInfo[0]` (refed timers) | a `Timeout`'s constructor, just before its `newAsyncId()`; `timeoutInfo[0]--` in its last callback | the `Timeout` type; its `destroy` |
//! | `immediateInfo[kCount]` | an `Immediate`'s constructor, just after its `newAsyncId()` | the `Immediate` type |
//!
//! Types, from the order of the writes in Node's `lib/internal/timers.js` and
//! `lib/internal/process/task_queues.js`: an id drawn right after
//! `timeoutInfo[0]` went up is a `Timeout`; one right before
//! `immediateInfo[kCount]` goes up an `Immediate`; one right before V8's
//! `EnqueueMicrotask` a `Microtask` (`queueMicrotask`). Any other id is told
//! by its first callback: one entered directly in V8's `RunMicrotasks` is a
//! promise's (`PROMISE`, which has an id only when async_hooks is enabled in
//! the target): counted, not reported, as its trigger (the parent promise) is
//! not seen; one entered anywhere else a `TickObject` (`process.nextTick`
//! writes none of the words), reported at that first callback with the time
//! its id was drawn. An id that never runs while watched is counted, with no
//! type. What is named as a `TickObject` too: a `Timeout` created unrefed
//! (Node's internal `setUnrefTimeout`) and a user's `AsyncResource` run
//! outside promise callbacks.
//!
//! Before and after: each write of the current id is a push or a pop of
//! Node's async-id stack; it is a pop when the new value is the one below the
//! top of the stack as seen so far. Only ids whose init was seen here get
//! events. Destroys: a TickObject, an Immediate and a Microtask end after
//! their one callback (Node emits their destroy there); a Timeout when its
//! callback took it off `timeoutInfo[0]`.

use std::collections::HashMap;

use tracer_common::{
    RawEvent, RawKind, RawSpawnEvent, SpawnKind,
    node::{RawNodeEvent, watch},
};

use super::events::{async_id, js_type_address};
use crate::runtime::{
    ModelRecord, WriteWatch,
    tokio::parked::{memory::Memory, tasks::ProcessMemory},
};

/// Where a `node::Environment` keeps the buffers of the arrays watched: the
/// offsets of their pointers, from the binary's code
/// ([`super::code::env_buffer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsLayout {
    /// `async_hooks_.async_id_fields_`'s buffer.
    pub async_id_fields: u64,
    /// `immediate_info_`'s buffer; `timeout_info_` is the next aliased array
    /// of one field (a word or two after it: Node 20 puts a vtable between).
    pub immediate_info: u64,
}

/// Node's `AliasedBufferBase`: `isolate_`, `count_`, `byte_offset_`,
/// `buffer_`, `js_array_`, `index_`, 8 bytes each. The layout is checked in
/// the process before anything is watched ([`Words::read`]).
mod aliased {
    /// Its size.
    pub const SIZE: u64 = 0x30;
    /// `buffer_` from its start.
    pub const BUFFER: u64 = 0x18;
    /// `count_` from its start.
    pub const COUNT: u64 = 0x8;
    /// How far past `immediate_info_` `timeout_info_` is looked for.
    pub const SEARCHED: u64 = 0x40;
}

/// The JS-level types told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JsType {
    /// `setTimeout` / `setInterval`.
    Timeout,
    /// `setImmediate`.
    Immediate,
    /// `process.nextTick` (and what cannot be told from it, see the module).
    TickObject,
    /// `queueMicrotask`.
    Microtask,
}

impl JsType {
    /// Every type, in the order of [`js_type_address`].
    pub const ALL: [Self; 4] = [
        Self::Timeout,
        Self::Immediate,
        Self::TickObject,
        Self::Microtask,
    ];

    /// The name async_hooks gives it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Timeout => "Timeout",
            Self::Immediate => "Immediate",
            Self::TickObject => "TickObject",
            Self::Microtask => "Microtask",
        }
    }
}

/// The watched words of the main thread's environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Words {
    counter: u64,
    execution: u64,
    timeout_refs: u64,
    immediate_count: u64,
}

impl Words {
    /// Reads where the words of `env` are in process `pid`, checking that
    /// the three arrays look like Node's aliased arrays of one isolate with
    /// the field counts Node gives them (4 ids, 3 immediate fields, 1 timeout
    /// field).
    fn read(memory: &dyn Memory, env: u64, layout: JsLayout) -> Result<Self, String> {
        let word = |address: u64| {
            read_word(memory, address)
                .ok_or_else(|| format!("cannot read {address:#x} of the Environment at {env:#x}"))
        };
        let array = |pointer: u64, count: u64| -> Result<(u64, u64), String> {
            let start = env + pointer - aliased::BUFFER;
            let (isolate, found) = (word(start)?, word(start + aliased::COUNT)?);
            if found != count {
                return Err(format!(
                    "the aliased array at {start:#x} holds {found} fields, not {count}"
                ));
            }
            Ok((isolate, word(start + aliased::BUFFER)?))
        };
        let (isolate, ids) = array(layout.async_id_fields, 4)?;
        let (immediate_isolate, immediate) = array(layout.immediate_info, 3)?;
        if isolate != immediate_isolate {
            return Err("async_id_fields and immediate_info belong to different isolates".into());
        }
        let after = layout.immediate_info + aliased::SIZE;
        let (_, timeout) = (after..after + aliased::SEARCHED)
            .step_by(8)
            .find_map(|pointer| array(pointer, 1).ok().filter(|(i, _)| *i == isolate))
            .ok_or("no aliased array of one field (timeout_info) follows immediate_info")?;
        Ok(Self {
            counter: ids + watch::EXECUTION_FROM_COUNTER,
            execution: ids,
            timeout_refs: timeout,
            immediate_count: immediate,
        })
    }

    /// The watchpoints on them, for `thread`.
    fn watches(self, thread: u32) -> Vec<WriteWatch> {
        let watch = |program, address, len| WriteWatch {
            program,
            thread,
            address,
            len,
        };
        vec![
            watch(watch::COUNTER_PROGRAM, self.counter, 8),
            watch(watch::WRITE_PROGRAM, self.execution, 8),
            watch(watch::WRITE_PROGRAM, self.timeout_refs, 4),
            watch(watch::WRITE_PROGRAM, self.immediate_count, 4),
        ]
    }
}

/// The 8 bytes at `address`, little-endian.
fn read_word(memory: &dyn Memory, address: u64) -> Option<u64> {
    let mut bytes = [0; 8];
    memory
        .read(address, &mut bytes)
        .then(|| u64::from_le_bytes(bytes))
}

/// Where arming stands.
#[derive(Debug)]
enum Arming {
    /// Waiting for the main thread's environment.
    Waiting,
    /// Watchpoints asked for, not armed yet.
    Asked(Words),
    /// Watching.
    Armed(Words),
    /// Not armed, and why.
    Failed(String),
}

/// An id drawn whose type is not known yet (an `Immediate` tells it right
/// after).
#[derive(Clone, Copy, Debug)]
struct Drawn {
    ts_ns: u64,
    pid_tgid: u64,
    id: u64,
    trigger: u64,
}

/// What `--js-resources` counted, for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JsCounts {
    /// The counter's value when the watchpoints were armed: later ids are
    /// seen.
    pub armed_at: Option<u64>,
    /// JS-level inits reported, by type.
    pub inits: HashMap<&'static str, u64>,
    /// Counter values skipped between two hits: hits lost (the kernel
    /// throttles a perf event that fires too often).
    pub skipped: u64,
    /// Writes of the counter that did not hold an id.
    pub bad_ids: u64,
    /// Ids entered directly in V8's microtask queue: promises.
    pub promises: u64,
}

/// The JS-level resources of one Node process, from its watchpoints' hits.
#[derive(Debug)]
pub struct JsResources {
    pid: u32,
    layout: Result<JsLayout, String>,
    arming: Arming,
    drawn: Option<Drawn>,
    /// `timeoutInfo[0]` went up since the last id or current-id write.
    timeout_ref_added: bool,
    timeout_refs: Option<u32>,
    immediate_count: Option<u32>,
    /// Ids drawn whose type their first callback tells.
    untyped: HashMap<u64, Drawn>,
    /// The current-id stack as the writes showed it, innermost last.
    stack: Vec<u64>,
    /// The stack's depth at each `RunMicrotasks` the thread is in.
    microtasks: Vec<usize>,
    /// Live JS-level resources, and whether a Timeout's callback took it off
    /// `timeoutInfo[0]` (it ends after that callback).
    live: HashMap<u64, (JsType, bool)>,
    last_id: Option<u64>,
    counts: JsCounts,
}

impl JsResources {
    /// For process `pid`, with the layout read from its binary (or why none).
    pub fn new(pid: u32, layout: Result<JsLayout, String>) -> Self {
        Self {
            pid,
            layout,
            arming: Arming::Waiting,
            drawn: None,
            timeout_ref_added: false,
            timeout_refs: None,
            immediate_count: None,
            untyped: HashMap::new(),
            stack: Vec::new(),
            microtasks: Vec::new(),
            live: HashMap::new(),
            last_id: None,
            counts: JsCounts::default(),
        }
    }

    /// A callback scope of `env` was entered on thread `pid_tgid`: the main
    /// thread's environment is where the watchpoints go.
    pub fn saw_environment(&mut self, pid_tgid: u64, env: u64) {
        if env == 0 || !self.is_main(pid_tgid) || !matches!(self.arming, Arming::Waiting) {
            return;
        }
        let memory = ProcessMemory { pid: self.pid };
        self.arming = match &self.layout {
            Ok(layout) => match Words::read(&memory, env, *layout) {
                Ok(words) => Arming::Asked(words),
                Err(why) => Arming::Failed(format!(
                    "the Environment at {env:#x} does not look as expected: {why}"
                )),
            },
            Err(why) => Arming::Failed(why.clone()),
        };
    }

    /// The watchpoints to arm, once.
    pub fn take_watches(&mut self) -> Vec<WriteWatch> {
        match self.arming {
            Arming::Asked(words) => words.watches(self.pid),
            _ => Vec::new(),
        }
    }

    /// Arming went as `result` says; the words' values now start the state.
    pub fn armed(&mut self, result: Result<(), String>) {
        let Arming::Asked(words) = self.arming else {
            return;
        };
        if let Err(why) = result {
            self.arming = Arming::Failed(why);
            return;
        }
        let memory = ProcessMemory { pid: self.pid };
        let word = |address| read_word(&memory, address);
        self.counts.armed_at = word(words.counter).and_then(async_id);
        self.last_id = self.counts.armed_at;
        self.stack = word(words.execution)
            .and_then(async_id)
            .into_iter()
            .collect();
        self.timeout_refs = word(words.timeout_refs).map(|v| v as u32);
        self.immediate_count = word(words.immediate_count).map(|v| v as u32);
        self.arming = Arming::Armed(words);
    }

    /// A new id was drawn.
    pub fn id_drawn(&mut self, raw: &RawNodeEvent, out: &mut dyn FnMut(ModelRecord)) {
        // Hits of a watchpoint armed before another failed to are left out.
        if !matches!(self.arming, Arming::Armed(_)) {
            return;
        }
        self.settle();
        let timeout = std::mem::take(&mut self.timeout_ref_added);
        let (Some(id), Some(trigger)) = (async_id(raw.async_id), async_id(raw.trigger_id)) else {
            self.counts.bad_ids += 1;
            return;
        };
        if let Some(last) = self.last_id
            && id > last
        {
            self.counts.skipped += id - last - 1;
        }
        self.last_id = Some(id);
        if raw.provider != 0 {
            // A native resource's id: `AsyncReset` reports it.
            return;
        }
        let drawn = Drawn {
            ts_ns: raw.ts_ns,
            pid_tgid: raw.pid_tgid,
            id,
            trigger,
        };
        if timeout {
            self.init(drawn, JsType::Timeout, out);
        } else {
            self.drawn = Some(drawn);
        }
    }

    /// A watched word other than the counter was written.
    pub fn written(&mut self, raw: &RawNodeEvent, out: &mut dyn FnMut(ModelRecord)) {
        let Arming::Armed(words) = self.arming else {
            return;
        };
        let value32 = raw.async_id as u32;
        if raw.object == words.execution {
            self.settle();
            self.timeout_ref_added = false;
            if let Some(id) = async_id(raw.async_id) {
                self.current_id(raw, id, out);
            }
        } else if raw.object == words.timeout_refs {
            let before = self.timeout_refs.replace(value32);
            if before.is_some_and(|b| value32 > b) {
                self.timeout_ref_added = true;
            } else if before.is_some_and(|b| value32 < b)
                && let Some(top) = self.stack.last()
                && let Some((JsType::Timeout, ends)) = self.live.get_mut(top)
            {
                *ends = true;
            }
        } else if raw.object == words.immediate_count {
            let before = self.immediate_count.replace(value32);
            if before.is_some_and(|b| value32 > b)
                && let Some(drawn) = self.drawn.take()
            {
                self.init(drawn, JsType::Immediate, out);
            }
        }
    }

    /// The current id became `id`: a push (a `before` of a JS-level
    /// resource) or a pop (the `after` of the top).
    fn current_id(&mut self, raw: &RawNodeEvent, id: u64, out: &mut dyn FnMut(ModelRecord)) {
        let event =
            |kind, id| ModelRecord::Plain(RawEvent::at(raw.ts_ns, raw.pid_tgid, kind, id, 0, 0));
        let depth = self.stack.len();
        if depth >= 2 && self.stack[depth - 2] == id {
            let Some(top) = self.stack.pop() else {
                return;
            };
            if let Some(&(resource_type, ends)) = self.live.get(&top) {
                out(event(RawKind::PollEnd, top));
                if ends || resource_type != JsType::Timeout {
                    self.live.remove(&top);
                    out(event(RawKind::Free, top));
                }
            }
        } else {
            if let Some(drawn) = self.untyped.remove(&id) {
                if self.microtasks.last() == Some(&depth) {
                    self.counts.promises += 1;
                } else {
                    self.init(drawn, JsType::TickObject, out);
                }
            }
            self.stack.push(id);
            if self.live.contains_key(&id) {
                out(event(RawKind::PollStart, id));
            }
        }
    }

    /// V8's `RunMicrotasks` was entered (`entered`) or returned on `pid_tgid`.
    pub fn microtasks(&mut self, pid_tgid: u64, entered: bool) {
        if !self.is_main(pid_tgid) {
            return;
        }
        if entered {
            self.microtasks.push(self.stack.len());
        } else {
            self.microtasks.pop();
        }
    }

    /// V8's `EnqueueMicrotask` was called on `pid_tgid`: the id just drawn is
    /// a `Microtask`.
    pub fn microtask_enqueued(&mut self, pid_tgid: u64, out: &mut dyn FnMut(ModelRecord)) {
        if self.is_main(pid_tgid)
            && let Some(drawn) = self.drawn.take()
        {
            self.init(drawn, JsType::Microtask, out);
        }
    }

    /// The thread whose words are watched.
    fn is_main(&self, pid_tgid: u64) -> bool {
        let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
        tgid == self.pid && tid == tgid
    }

    /// An id drawn and not told an `Immediate` by the next write waits for
    /// its first callback to tell its type.
    fn settle(&mut self) {
        if let Some(drawn) = self.drawn.take() {
            self.untyped.insert(drawn.id, drawn);
        }
    }

    fn init(&mut self, drawn: Drawn, resource_type: JsType, out: &mut dyn FnMut(ModelRecord)) {
        self.live.insert(drawn.id, (resource_type, false));
        *self.counts.inits.entry(resource_type.name()).or_default() += 1;
        let event = RawEvent::at(
            drawn.ts_ns,
            drawn.pid_tgid,
            RawKind::Spawn,
            drawn.id,
            drawn.trigger,
            SpawnKind::Task as u32,
        );
        out(ModelRecord::Named(RawSpawnEvent {
            event,
            vtable: js_type_address(resource_type),
            location: js_type_address(resource_type),
        }));
    }

    /// Summary lines; `workers`: the other threads that made native
    /// resources (worker threads, whose JS-level resources are not watched).
    pub fn summary(&self, workers: usize) -> Vec<String> {
        let armed_at = match (&self.arming, self.counts.armed_at) {
            (Arming::Armed(_), Some(at)) => at,
            (Arming::Failed(why), _) => {
                return vec![format!(
                    "node: --js-resources: watchpoints not armed: {why}"
                )];
            }
            _ => {
                return vec![
                    "node: --js-resources: watchpoints never armed (no callback of the main thread's environment was seen)".into(),
                ];
            }
        };
        let inits = JsType::ALL
            .iter()
            .map(|t| {
                format!(
                    "{} {}",
                    self.counts.inits.get(t.name()).copied().unwrap_or(0),
                    t.name()
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut lines = vec![format!(
            "node: --js-resources: watchpoints armed on the main thread at async id {armed_at}: JS-level inits {inits}; worker threads' JS-level resources are not watched; promises get no id while async_hooks is off"
        )];
        if workers > 0 {
            lines.push(format!(
                "node: --js-resources: {workers} other threads (workers) made native resources: their JS-level resources are not watched (four debug registers a thread, used on the main thread)"
            ));
        }
        if self.counts.promises > 0 {
            lines.push(format!(
                "node: --js-resources: {} ids entered directly in V8's microtask queue (PROMISEs: async_hooks is on in the target) were not reported: their trigger, the parent promise, is not seen",
                self.counts.promises
            ));
        }
        if !self.untyped.is_empty() {
            lines.push(format!(
                "node: --js-resources: {} JS-level ids never ran while watched: their type is not known, they were not reported",
                self.untyped.len()
            ));
        }
        if self.counts.skipped > 0 {
            lines.push(format!(
                "node: --js-resources: {} async ids went by between two watchpoint hits (hits lost: their resources are missing)",
                self.counts.skipped
            ));
        }
        if self.counts.bad_ids > 0 {
            lines.push(format!(
                "node: --js-resources: {} counter writes held no async id",
                self.counts.bad_ids
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::node::NodeKind;

    const WORDS: Words = Words {
        counter: 0x1010,
        execution: 0x1000,
        timeout_refs: 0x2000,
        immediate_count: 0x3000,
    };
    const MAIN: u64 = (7 << 32) | 7;

    /// A mapping watching [`WORDS`] of process 7, the current id 1.
    fn armed() -> JsResources {
        let mut js = JsResources::new(7, Err(String::new()));
        js.arming = Arming::Armed(WORDS);
        js.stack = vec![0, 1];
        js.timeout_refs = Some(0);
        js.immediate_count = Some(0);
        js.last_id = Some(1);
        js
    }

    enum Hit {
        Id(u64),
        Current(u64),
        TimeoutRefs(u32),
        Immediates(u32),
        Microtasks(bool),
        Enqueued,
    }

    /// What the hits give, as (event kind, id, type name for an init).
    fn replay(js: &mut JsResources, hits: &[Hit]) -> Vec<(u32, u64, &'static str)> {
        let mut out = Vec::new();
        let mut push = |record: ModelRecord| {
            out.push(match record {
                ModelRecord::Plain(event) => (event.kind, event.task_id, ""),
                ModelRecord::Named(spawn) => (
                    spawn.event.kind,
                    spawn.event.task_id,
                    JsType::ALL[(spawn.vtable - js_type_address(JsType::Timeout)) as usize].name(),
                ),
            })
        };
        for hit in hits {
            let raw = |kind: NodeKind, object: u64, value: u64| RawNodeEvent {
                ts_ns: 1,
                pid_tgid: MAIN,
                object,
                async_id: value,
                trigger_id: 1.0f64.to_bits(),
                kind: kind as u32,
                provider: 0,
            };
            match hit {
                Hit::Id(id) => js.id_drawn(
                    &raw(NodeKind::JsId, WORDS.counter, (*id as f64).to_bits()),
                    &mut push,
                ),
                Hit::Current(id) => js.written(
                    &raw(NodeKind::JsWrite, WORDS.execution, (*id as f64).to_bits()),
                    &mut push,
                ),
                Hit::TimeoutRefs(n) => js.written(
                    &raw(NodeKind::JsWrite, WORDS.timeout_refs, u64::from(*n)),
                    &mut push,
                ),
                Hit::Immediates(n) => js.written(
                    &raw(NodeKind::JsWrite, WORDS.immediate_count, u64::from(*n)),
                    &mut push,
                ),
                Hit::Microtasks(entered) => js.microtasks(MAIN, *entered),
                Hit::Enqueued => js.microtask_enqueued(MAIN, &mut push),
            }
        }
        out
    }

    const INIT: u32 = RawKind::Spawn as u32;
    const BEFORE: u32 = RawKind::PollStart as u32;
    const AFTER: u32 = RawKind::PollEnd as u32;
    const DESTROY: u32 = RawKind::Free as u32;

    #[test]
    fn a_timeout_is_the_id_drawn_right_after_its_ref_and_ends_when_its_callback_unrefs_it() {
        let mut js = armed();
        let events = replay(
            &mut js,
            &[
                Hit::TimeoutRefs(1),
                Hit::Id(2),
                Hit::Current(0),
                Hit::Current(2),
                Hit::TimeoutRefs(0),
                Hit::Current(0),
            ],
        );
        assert_eq!(
            events,
            [
                (INIT, 2, "Timeout"),
                (BEFORE, 2, ""),
                (AFTER, 2, ""),
                (DESTROY, 2, "")
            ]
        );
    }

    #[test]
    fn a_repeating_timeout_lives_on_after_its_callback() {
        let mut js = armed();
        let events = replay(
            &mut js,
            &[
                Hit::TimeoutRefs(1),
                Hit::Id(2),
                Hit::Current(2),
                Hit::Current(1),
            ],
        );
        assert_eq!(
            events,
            [(INIT, 2, "Timeout"), (BEFORE, 2, ""), (AFTER, 2, "")]
        );
    }

    #[test]
    fn an_immediate_is_the_id_drawn_right_before_the_count_goes_up() {
        let mut js = armed();
        let events = replay(&mut js, &[Hit::Id(2), Hit::Immediates(1), Hit::Id(3)]);
        assert_eq!(events, [(INIT, 2, "Immediate")]);
    }

    #[test]
    fn a_tick_is_reported_at_its_first_callback_and_ends_after_it() {
        let mut js = armed();
        let events = replay(
            &mut js,
            &[Hit::Id(2), Hit::Id(3), Hit::Current(3), Hit::Current(1)],
        );
        assert_eq!(
            events,
            [
                (INIT, 3, "TickObject"),
                (BEFORE, 3, ""),
                (AFTER, 3, ""),
                (DESTROY, 3, "")
            ]
        );
        // 2 never ran: no type, not reported.
        assert_eq!(js.untyped.len(), 1);
    }

    #[test]
    fn an_id_entered_directly_in_the_microtask_queue_is_a_promise_counted_not_reported() {
        let mut js = armed();
        let events = replay(
            &mut js,
            &[
                Hit::Id(2),
                Hit::Id(3),
                Hit::Microtasks(true),
                Hit::Current(2),
                Hit::Current(1),
                Hit::Microtasks(false),
                Hit::Current(3),
            ],
        );
        assert_eq!(events, [(INIT, 3, "TickObject"), (BEFORE, 3, "")]);
        assert_eq!(js.counts.promises, 1);
    }

    #[test]
    fn queue_microtask_is_the_id_drawn_right_before_the_enqueue() {
        let mut js = armed();
        let events = replay(&mut js, &[Hit::Id(2), Hit::Enqueued]);
        assert_eq!(events, [(INIT, 2, "Microtask")]);
    }

    #[test]
    fn native_ids_are_left_to_async_reset_and_skipped_counter_values_counted() {
        let mut js = armed();
        let mut out = Vec::new();
        let native = RawNodeEvent {
            ts_ns: 1,
            pid_tgid: MAIN,
            object: WORDS.counter,
            async_id: 4.0f64.to_bits(),
            trigger_id: 1.0f64.to_bits(),
            kind: NodeKind::JsId as u32,
            provider: 1,
        };
        js.id_drawn(&native, &mut |record| out.push(record));
        assert!(out.is_empty());
        assert_eq!(js.counts.skipped, 2);
    }

    #[test]
    fn writes_of_other_threads_and_before_arming_are_ignored() {
        let mut js = JsResources::new(7, Err(String::new()));
        assert!(replay(&mut js, &[Hit::Id(4), Hit::Current(4)]).is_empty());
        js.saw_environment((7 << 32) | 8, 0x1234);
        assert!(js.take_watches().is_empty());
    }
}
