//! Declare your own async resources, the way Node.js's `AsyncResource` does, and
//! let `tracer` see them from outside the process.
//!
//! ```
//! use tracer_resource::AsyncResource;
//!
//! let connection = AsyncResource::new("UdpEcho");
//! let echoed = connection.in_scope(|| "reply"); // before … after
//! assert_eq!(echoed, "reply");
//! drop(connection); // destroy
//! ```
//!
//! Every event (`init`, `before`, `after`, `destroy`) is one call to an
//! unmangled marker function ([`markers`]); `tracer` puts uprobes on them when it
//! traces the process and reports the events in the same stream as Tokio's tasks,
//! with the type name given here. Nothing is recorded in the process itself, and
//! when nobody traces the cost is a few function calls (see the crate README).
//!
//! Ids are unique in the process (threads take blocks of numbers from one
//! counter) and have [`RESOURCE_ID_BIT`] set, so they never collide with Tokio
//! task ids (which count up from 1) in the tracer's output.
#![warn(missing_docs)]

pub mod markers;

use core::{
    cell::Cell,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll},
};

/// Version of the marker functions' names and arguments (`tracer_resource_v1_*`).
pub const MARKER_VERSION: u32 = 1;

/// Set in every resource id: Tokio task ids count up from 1 and would need 2^63
/// spawns to reach it, so a resource id is never a task id.
pub const RESOURCE_ID_BIT: u64 = 1 << 63;

/// Resource numbers are handed to threads in blocks of this many, so that
/// creating a resource touches no shared cache line (a global atomic add cost
/// about as much as the rest of a resource's life together).
const ID_BLOCK: u64 = 1024;

/// Start of the next block of resource numbers (without [`RESOURCE_ID_BIT`]).
static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The innermost resource whose scope this thread is in, 0 if none.
    static CURRENT: Cell<u64> = const { Cell::new(0) };
    /// This thread's next resource number and the end of its block.
    static IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// A process-wide unique resource id, with [`RESOURCE_ID_BIT`] set.
fn next_id() -> u64 {
    IDS.with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            next = NEXT_BLOCK.fetch_add(ID_BLOCK, Ordering::Relaxed);
            end = next + ID_BLOCK;
        }
        ids.set((next + 1, end));
        RESOURCE_ID_BIT | next
    })
}

/// An async resource of the application's own: a connection, a request, a
/// callback registration… anything whose work is done in several callbacks.
///
/// Creating it is `init`, each [`in_scope`](Self::in_scope) or
/// [`enter`](Self::enter) is a `before`/`after` pair, and dropping it is `destroy`.
#[derive(Debug)]
pub struct AsyncResource {
    async_id: u64,
    trigger_async_id: u64,
}

impl AsyncResource {
    /// A new resource of type `type_name`, caused by whatever runs now: the
    /// innermost resource in scope on this thread, else the Tokio task being
    /// polled (with the `tokio` feature), else nothing (trigger 0).
    pub fn new(type_name: &str) -> Self {
        Self::with_trigger(type_name, current_trigger())
    }

    /// A new resource of type `type_name` caused by the resource or task
    /// `trigger_async_id` (0 for none), as Node's `{ triggerAsyncId }` option.
    pub fn with_trigger(type_name: &str, trigger_async_id: u64) -> Self {
        let async_id = next_id();
        markers::tracer_resource_v1_init(
            async_id,
            trigger_async_id,
            type_name.as_ptr(),
            type_name.len(),
        );
        Self {
            async_id,
            trigger_async_id,
        }
    }

    /// This resource's id, as the tracer reports it.
    pub fn async_id(&self) -> u64 {
        self.async_id
    }

    /// The id of the resource or task that caused this one (0 for none).
    pub fn trigger_async_id(&self) -> u64 {
        self.trigger_async_id
    }

    /// Runs `callback` as this resource's callback: `before`, the call, `after`
    /// (also when it panics). Resources created inside get this one as trigger.
    pub fn in_scope<R>(&self, callback: impl FnOnce() -> R) -> R {
        let _scope = self.enter();
        callback()
    }

    /// Reports `before` now and `after` when the guard is dropped, for callbacks
    /// that do not fit in a closure. The guard stays on this thread.
    pub fn enter(&self) -> Scope<'_> {
        markers::tracer_resource_v1_before(self.async_id);
        let outer = CURRENT.with(|current| current.replace(self.async_id));
        Scope {
            resource: self,
            outer,
            _not_send: PhantomData,
        }
    }

    /// Makes `future` this resource's work: every poll is a `before`/`after`
    /// pair, and the resource is destroyed when the wrapper is dropped.
    pub fn instrument<F: Future>(self, future: F) -> Instrumented<F> {
        Instrumented {
            future,
            resource: self,
        }
    }
}

impl Drop for AsyncResource {
    fn drop(&mut self) {
        markers::tracer_resource_v1_destroy(self.async_id);
    }
}

/// A resource's callback in progress: `after` is reported when it is dropped.
///
/// Scopes nest: drop guards in the reverse order of creation (as blocks do), or
/// the thread's innermost resource, which triggers new resources, is wrong.
#[must_use = "the scope ends (after) when this guard is dropped"]
#[derive(Debug)]
pub struct Scope<'a> {
    resource: &'a AsyncResource,
    outer: u64,
    /// The scope is this thread's: it restores the thread's previous scope.
    _not_send: PhantomData<*const ()>,
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(self.outer));
        markers::tracer_resource_v1_after(self.resource.async_id);
    }
}

pin_project_lite::pin_project! {
    /// A future that is an async resource: see [`AsyncResource::instrument`].
    #[derive(Debug)]
    pub struct Instrumented<F> {
        // Declared first so the future is dropped before the resource's destroy.
        #[pin]
        future: F,
        resource: AsyncResource,
    }
}

impl<F> Instrumented<F> {
    /// The resource this future's polls are reported for.
    pub fn resource(&self) -> &AsyncResource {
        &self.resource
    }
}

impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _scope = this.resource.enter();
        this.future.poll(cx)
    }
}

/// The id of the innermost resource in scope on this thread, else the Tokio task
/// being polled, else 0: the trigger [`AsyncResource::new`] gives.
pub fn current_trigger() -> u64 {
    match CURRENT.with(Cell::get) {
        0 => current_task(),
        resource => resource,
    }
}

/// The Tokio task being polled on this thread, 0 outside any task.
#[cfg(feature = "tokio")]
fn current_task() -> u64 {
    tokio::task::try_id().map_or(0, task_id_number)
}

#[cfg(not(feature = "tokio"))]
fn current_task() -> u64 {
    0
}

/// Tokio shows a task id's number only through `Display`: print it into a
/// stack buffer and read it back.
#[cfg(feature = "tokio")]
fn task_id_number(id: tokio::task::Id) -> u64 {
    use core::fmt::Write as _;

    struct Digits {
        value: u64,
    }
    impl core::fmt::Write for Digits {
        fn write_str(&mut self, text: &str) -> core::fmt::Result {
            for digit in text.bytes() {
                let digit = u64::from(digit.wrapping_sub(b'0'));
                if digit > 9 {
                    return Err(core::fmt::Error);
                }
                self.value = self.value * 10 + digit;
            }
            Ok(())
        }
    }
    let mut digits = Digits { value: 0 };
    match write!(digits, "{id}") {
        Ok(()) => digits.value,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_resource_bit_and_are_unique() {
        let a = AsyncResource::new("A");
        let b = AsyncResource::new("B");
        assert_ne!(a.async_id(), b.async_id());
        assert_eq!(a.async_id() & RESOURCE_ID_BIT, RESOURCE_ID_BIT);
    }

    #[test]
    fn resources_created_in_scope_are_triggered_by_it() {
        let outer = AsyncResource::new("Outer");
        let inner = outer.in_scope(|| AsyncResource::new("Inner"));
        assert_eq!(inner.trigger_async_id(), outer.async_id());
        let after = AsyncResource::new("After");
        assert_eq!(after.trigger_async_id(), 0);
    }

    #[test]
    fn nested_scopes_restore_the_outer_one() {
        let outer = AsyncResource::new("Outer");
        let inner = AsyncResource::new("Inner");
        outer.in_scope(|| {
            inner.in_scope(|| assert_eq!(current_trigger(), inner.async_id()));
            assert_eq!(current_trigger(), outer.async_id());
        });
    }

    #[test]
    fn ids_are_unique_across_threads() {
        let ids: Vec<u64> = (0..4)
            .map(|_| std::thread::spawn(|| AsyncResource::new("T").async_id()))
            .map(|thread| thread.join().unwrap())
            .chain((0..3000).map(|_| AsyncResource::new("Main").async_id()))
            .collect();
        let unique: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn explicit_trigger_is_kept() {
        let resource = AsyncResource::with_trigger("X", 42);
        assert_eq!(resource.trigger_async_id(), 42);
    }

    #[tokio::test]
    async fn resources_created_in_a_task_are_triggered_by_it() {
        let (task, trigger) = tokio::spawn(async {
            let task = tokio::task::id();
            (task, AsyncResource::new("InTask").trigger_async_id())
        })
        .await
        .unwrap();
        assert_eq!(trigger, task.to_string().parse::<u64>().unwrap());
    }

    #[tokio::test]
    async fn instrumented_futures_scope_their_polls() {
        let resource = AsyncResource::new("Fut");
        let id = resource.async_id();
        let seen = resource.instrument(async { current_trigger() }).await;
        assert_eq!(seen, id);
    }
}
