//! Node.js's records: the BPF side reports what it read at Node's native
//! async_hooks sites (`AsyncWrap::AsyncReset`, the `InternalCallbackScope`
//! constructors and `Close()`, `~AsyncWrap` and `AsyncWrap::EmitDestroy`), with
//! Node's async ids as the raw bits of the doubles Node keeps them in (BPF has
//! no floating point); the Node adapter in userspace turns them into
//! init / before / after / destroy.

/// What a Node probe saw. Stored in [`RawNodeEvent::kind`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// `AsyncWrap::AsyncReset` returned: `object` (an `AsyncWrap`) has a new
    /// `async_id`, `trigger_id` and `provider`: an `init`.
    Init = 1,
    /// An `InternalCallbackScope` was constructed at `object` for the resource
    /// `async_id`: a `before`; with `--js-resources` also for a scope without
    /// one (`async_id` 0), which only names the environment.
    ScopeEnter = 2,
    /// `InternalCallbackScope::Close()` of the open scope at `object`: the
    /// `after` of the resource that scope entered.
    ScopeClose = 3,
    /// An `AsyncWrap` with a valid `async_id` is destroyed, or reset for reuse
    /// (its old id ends): a `destroy`.
    Destroy = 4,
    /// `--js-resources`: Node's async-id counter was written (a new id,
    /// `async_id`) outside `AsyncReset`: a JS-level resource's id. `trigger_id`:
    /// the trigger Node's `getDefaultTriggerAsyncId()` gives it (the default
    /// trigger slot when set, else the current id); `provider`: 1 when the
    /// thread was inside `AsyncReset` (a native resource's id), else 0.
    JsId = 5,
    /// `--js-resources`: a watched word other than the counter was written
    /// (its address in `object`, its new 8 bytes in `async_id`): the current
    /// async id (Node's `pushAsyncContext`/`popAsyncContext`) or one of the
    /// timer counters that tell the type of a JS-level resource.
    JsWrite = 6,
    /// `--js-resources`: V8's `MicrotaskQueue::RunMicrotasks` was entered
    /// (`async_id` 1) or returned (0): callbacks of promises and
    /// `queueMicrotask` run inside.
    Microtasks = 7,
    /// `--js-resources`: V8's `MicrotaskQueue::EnqueueMicrotask(Isolate*,
    /// Local<Function>)`, which Node's `queueMicrotask` calls right after
    /// drawing its `Microtask`'s id.
    EnqueueMicrotask = 8,
}

impl TryFrom<u32> for NodeKind {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, u32> {
        Ok(match value {
            1 => Self::Init,
            2 => Self::ScopeEnter,
            3 => Self::ScopeClose,
            4 => Self::Destroy,
            5 => Self::JsId,
            6 => Self::JsWrite,
            7 => Self::Microtasks,
            8 => Self::EnqueueMicrotask,
            other => return Err(other),
        })
    }
}

/// The bits of `-1.0`, Node's `kInvalidAsyncId`: an `AsyncWrap` without a
/// current id (not reset yet, or already destroyed).
pub const INVALID_ASYNC_ID_BITS: u64 = 0xbff0_0000_0000_0000;

/// Attach cookie of a constructor site: how its arguments are laid out.
pub mod scope_cookie {
    /// `InternalCallbackScope(Environment*, Local<Object>, const
    /// async_context&, int flags)`: the ids at `*rcx`.
    pub const CONTEXT: u64 = 0;
    /// `InternalCallbackScope(AsyncWrap*, int flags)`: the ids in the wrap at
    /// `rsi`.
    pub const WRAP: u64 = 1;
}

/// One Node probe hit, as written into the ring buffer (its size tells it apart
/// from the other records).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawNodeEvent {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC.
    pub ts_ns: u64,
    /// `bpf_get_current_pid_tgid()`: tgid in the high half, thread id in the low.
    pub pid_tgid: u64,
    /// The `AsyncWrap` (init, destroy) or the `InternalCallbackScope` (scope
    /// records): pairs a scope's close with its enter.
    pub object: u64,
    /// The bits of the async id (a double); 0 for a close.
    pub async_id: u64,
    /// Init and JsId: the bits of the trigger async id (a double); a scope
    /// entered through the `(Environment*, …)` constructor: the
    /// `node::Environment*` it runs in (which `--js-resources` watches); else 0.
    pub trigger_id: u64,
    /// A [`NodeKind`].
    pub kind: u32,
    /// Init: the provider type (`AsyncWrap::ProviderType`), which names it;
    /// JsId: whether it was drawn inside `AsyncReset` (see [`NodeKind::JsId`]).
    pub provider: u32,
}

/// Names of the BPF globals holding the layout of Node's objects, read from the
/// binary's code at load time.
pub mod layout {
    /// Global: offset of `AsyncWrap::provider_type_` (a 32-bit enum).
    pub const WRAP_PROVIDER: &str = "NODE_WRAP_PROVIDER";
    /// Global: offset of `AsyncWrap::async_id_` (a double).
    pub const WRAP_ASYNC_ID: &str = "NODE_WRAP_ASYNC_ID";
    /// Global: offset of `AsyncWrap::trigger_async_id_` (a double).
    pub const WRAP_TRIGGER_ID: &str = "NODE_WRAP_TRIGGER_ID";
    /// Global: offset of `InternalCallbackScope::closed_` (a bool).
    pub const SCOPE_CLOSED: &str = "NODE_SCOPE_CLOSED";
    /// Global: non-zero with `--js-resources` (a main-thread scope naming its
    /// environment wakes the reader at once).
    pub const WAKE_FOR_ENV: &str = "NODE_WAKE_FOR_ENV";
}

/// The perf-event programs a hardware write-watchpoint runs (`--js-resources`).
pub mod watch {
    /// On the async-id counter (`async_id_fields[kAsyncIdCounter]`): a
    /// [`super::NodeKind::JsId`]. It reads the default trigger and the current
    /// id next to the counter, at [`DEFAULT_TRIGGER_FROM_COUNTER`] and
    /// [`EXECUTION_FROM_COUNTER`].
    pub const COUNTER_PROGRAM: &str = "node_js_counter";
    /// On any other watched word: a [`super::NodeKind::JsWrite`].
    pub const WRITE_PROGRAM: &str = "node_js_write";
    /// `kDefaultTriggerAsyncId` from `kAsyncIdCounter` in `async_id_fields`
    /// (fields 3 and 2, doubles).
    pub const DEFAULT_TRIGGER_FROM_COUNTER: u64 = 8;
    /// `kExecutionAsyncId` from `kAsyncIdCounter` (fields 0 and 2), negated.
    pub const EXECUTION_FROM_COUNTER: u64 = 16;
}
