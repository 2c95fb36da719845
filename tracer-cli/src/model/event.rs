//! The async_hooks events tracer reports: what every sink (live output, recording,
//! tree, stats) consumes, whatever the runtime they came from.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// What kind of async resource an `init` announces: `tokio.task`,
/// `tokio.blocking`, `tokio.local`, or a name an application gave its own resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResourceType(Cow<'static, str>);

impl ResourceType {
    /// A task from `tokio::spawn` (either scheduler), or one that existed before
    /// attach (its spawn path unseen).
    pub const TOKIO_TASK: Self = Self(Cow::Borrowed("tokio.task"));
    /// A `spawn_blocking` task, or one of the runtime's worker launchers.
    pub const TOKIO_BLOCKING: Self = Self(Cow::Borrowed("tokio.blocking"));
    /// A `spawn_local` task on a `LocalSet`.
    pub const TOKIO_LOCAL: Self = Self(Cow::Borrowed("tokio.local"));

    /// A type named by a runtime adapter (`go.goroutine`).
    pub const fn from_static(name: &'static str) -> Self {
        Self(Cow::Borrowed(name))
    }

    /// A type named at run time: an application's own resource type
    /// (`AsyncResource::new("UdpEcho")`), or one read back from a recording.
    pub fn named(name: impl Into<Cow<'static, str>>) -> Self {
        Self(name.into())
    }

    /// The name users see, as in `init(asyncId, type, …)`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Event names in the order the summary (and `tracer info`) lists them.
pub const KINDS: [&str; 6] = ["init", "before", "after", "resolve", "destroy", "wake"];

/// Where an event of `kind` is counted in a by-kind array that follows [`KINDS`].
pub fn kind_index(kind: &HookKind) -> usize {
    // This runs once per event, so no name lookup; a new kind must be added to both.
    match kind {
        HookKind::Init { .. } => 0,
        HookKind::Before { .. } => 1,
        HookKind::After { .. } => 2,
        HookKind::Resolve => 3,
        HookKind::Destroy => 4,
        HookKind::Wake { .. } => 5,
    }
}

/// `init 3, before 2, …`: counts by kind, named in the order of [`KINDS`].
pub fn kinds_list(by_kind: [u64; KINDS.len()]) -> String {
    KINDS
        .iter()
        .zip(by_kind)
        .map(|(name, count)| format!("{name} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One async_hooks event with the fields that vary by kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum HookKind {
    /// The resource was created (or, `existing`, first seen after attach).
    Init {
        /// The resource's type.
        #[serde(rename = "type")]
        resource_type: ResourceType,
        /// The resource that caused it: 0 when created outside any resource,
        /// `None` when unknown because it existed before the tracer attached.
        trigger_id: Option<u64>,
        /// The resource existed before the tracer attached.
        existing: bool,
        /// What the task runs: its future's type as users read it
        /// (`my_app::handle`), `None` when it cannot be known (the summary counts
        /// why). Read once per `raw::poll` copy from the binary.
        #[serde(default)]
        name: Option<String>,
        /// Where it was spawned, `file:line:col` as Tokio's
        /// `TaskMeta::spawned_at()` says it; `None` when unknown (a task that
        /// existed before attach, a spawn whose entry point was inlined).
        #[serde(default)]
        location: Option<String>,
    },
    /// Its callback (a Tokio poll) is about to run.
    Before {
        /// How long the task waited to be polled, as Tokio's
        /// `TaskMeta::schedule_latency()` measures it: from its most recent
        /// transition to scheduled (spawn, or the first wake since its previous
        /// poll) to this poll. `None` when that start was not seen (before attach,
        /// lost in a drop), or the session has no wake probes; always `None` for
        /// embedder resources.
        sched_ns: Option<u64>,
    },
    /// Its callback returned.
    After {
        /// The future completed (or was cancelled) during this poll.
        completed: bool,
        /// Where the task is parked after a Pending poll: its await chain,
        /// outermost first, read at the poll's return (Tokio, with type DWARF).
        /// `None` (absent in JSON) when not read: the poll completed, chains
        /// are off, or the site's future is not described.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        awaiting: Option<Vec<AwaitFrame>>,
    },
    /// Its future finished or was cancelled.
    Resolve,
    /// Its memory was freed.
    Destroy,
    /// Its waker was woken (a Tokio task's): `async_id` is the woken task.
    Wake {
        /// The user task whose code woke it (polled on the waking thread),
        /// 0 when none (I/O driver, timer, scheduler, plain threads), `None` when
        /// unknown (`--no-polls --wakes`).
        waker_id: Option<u64>,
        /// The task woke itself: during its own poll, or a wake it deferred to
        /// after its poll (`yield_now`).
        #[serde(rename = "self")]
        self_wake: bool,
    },
}

/// One level of an await chain, outermost first: the `awaiting` of an `after`
/// and of a `tracer dump` task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AwaitFrame {
    /// An async fn or block suspended at an `.await`.
    Await {
        /// The function (`my_app::consumer`).
        #[serde(rename = "fn")]
        function: String,
        /// The `.await`'s `file:line`.
        at: String,
    },
    /// An async fn or block in a state other than suspended.
    State {
        /// The function.
        #[serde(rename = "fn")]
        function: String,
        /// `unresumed`, `returned` or `panicked`.
        state: Cow<'static, str>,
    },
    /// A `tokio::join!` or `tokio::select!`, last: the chain of each of its
    /// pending branches, by position in the macro. Before [`Self::Future`],
    /// which would also match its JSON.
    Fork {
        /// `tokio::join!` or `tokio::select!`.
        future: String,
        /// The pending branches.
        branches: Vec<AwaitBranch>,
    },
    /// A future that is not an async state machine: the leaf, or a combinator
    /// the chain goes on through.
    Future {
        /// Its type.
        future: String,
    },
    /// Where the chain could not be followed, and why.
    Unknown {
        /// Why.
        unknown: String,
    },
}

/// One pending branch of a `tokio::join!` or `tokio::select!`
/// ([`AwaitFrame::Fork`]): `{"branch": 1, "awaiting": [...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwaitBranch {
    /// Its position in the macro, from 0.
    pub branch: usize,
    /// Its own await chain (which may fork again).
    pub awaiting: Vec<AwaitFrame>,
}

impl AwaitFrame {
    /// How the text output shows it: `src/main.rs:32`, `tokio::time::Sleep`,
    /// a fork as its branches in braces, each with its position:
    /// `tokio::join! { 1: src/main.rs:3 > tokio::time::sleep::Sleep | 2: … }`.
    pub fn text(&self) -> String {
        match self {
            Self::Await { at, .. } => at.clone(),
            Self::Fork { future, branches } => {
                let branches: Vec<String> = branches
                    .iter()
                    .map(|b| format!("{}: {}", b.branch, parked_at(&b.awaiting)))
                    .collect();
                format!("{future} {{ {} }}", branches.join(" | "))
            }
            Self::State { function, state } => format!("{function} ({state})"),
            Self::Future { future } => future.clone(),
            Self::Unknown { unknown } => format!("? ({unknown})"),
        }
    }
}

/// An await chain (or tree) as text: `src/main.rs:32 > src/main.rs:42 >
/// tokio::time::Sleep`.
pub fn parked_at(frames: &[AwaitFrame]) -> String {
    frames
        .iter()
        .map(AwaitFrame::text)
        .collect::<Vec<_>>()
        .join(" > ")
}

impl HookKind {
    /// The event's name: `init`, `before`, `after`, `resolve`, `destroy` or `wake`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Init { .. } => "init",
            Self::Before { .. } => "before",
            Self::After { .. } => "after",
            Self::Resolve => "resolve",
            Self::Destroy => "destroy",
            Self::Wake { .. } => "wake",
        }
    }
}

/// An async_hooks event: what happened to which resource, when and where.
///
/// Serialised as one flat JSON object, e.g.
/// `{"event":"init","type":"tokio.task","trigger_id":1,"existing":false,"async_id":5,"ts_ns":…,"pid":…,"tid":…}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookEvent {
    /// The event and its kind-specific fields.
    #[serde(flatten)]
    pub kind: HookKind,
    /// The resource's id: Tokio's own task id, or an embedder resource's id
    /// (`AsyncResource::async_id()`, top bit set, so the two never collide).
    pub async_id: u64,
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_use_the_design_field_names() {
        let event = HookEvent {
            kind: HookKind::Init {
                resource_type: ResourceType::TOKIO_BLOCKING,
                trigger_id: None,
                existing: true,
                name: None,
                location: None,
            },
            async_id: 7,
            ts_ns: 11,
            pid: 3,
            tid: 4,
        };
        let json: serde_json::Value = serde_json::to_value(&event).unwrap();
        assert_eq!(json["event"], "init");
        assert_eq!(json["type"], "tokio.blocking");
        assert!(json["trigger_id"].is_null());
        assert_eq!(json["existing"], true);
        assert_eq!(json["async_id"], 7);
        assert_eq!(json["ts_ns"], 11);
        assert_eq!(json["pid"], 3);
        assert_eq!(json["tid"], 4);
        let back: HookEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn wake_and_before_lines_use_the_contract_field_names() {
        let wake = HookEvent {
            kind: HookKind::Wake {
                waker_id: Some(38),
                self_wake: false,
            },
            async_id: 37,
            ts_ns: 5,
            pid: 1,
            tid: 2,
        };
        let line = serde_json::to_string(&wake).unwrap();
        assert_eq!(
            line,
            r#"{"event":"wake","waker_id":38,"self":false,"async_id":37,"ts_ns":5,"pid":1,"tid":2}"#
        );
        assert_eq!(serde_json::from_str::<HookEvent>(&line).unwrap(), wake);
        let before = HookEvent {
            kind: HookKind::Before { sched_ns: None },
            ..wake
        };
        let line = serde_json::to_string(&before).unwrap();
        assert!(
            line.starts_with(r#"{"event":"before","sched_ns":null,"async_id":37"#),
            "{line}"
        );
    }

    #[test]
    fn after_carries_completion() {
        let event = HookEvent {
            kind: HookKind::After {
                completed: true,
                awaiting: None,
            },
            async_id: 1,
            ts_ns: 0,
            pid: 1,
            tid: 1,
        };
        let line = serde_json::to_string(&event).unwrap();
        assert!(
            line.starts_with(r#"{"event":"after","completed":true,"async_id":1"#),
            "{line}"
        );
    }
}
