//! Node.js: native async resources (`AsyncWrap`s: TCPWRAP, FSREQCALLBACK, …)
//! as async_hooks sees them, from outside, with async_hooks off in the target.
//!
//! | site | event |
//! | --- | --- |
//! | `node::AsyncWrap::AsyncReset(Local<Object>, double, bool)` return | `init`: the wrap's `async_id_`, `trigger_async_id_`, `provider_type_` |
//! | `AsyncReset` entry, the wrap still holding a valid id (reuse) | `destroy` of that id |
//! | `node::InternalCallbackScope` constructors (both) | `before`, unless the scope's id is 0 or 1 (the bootstrap context, which async_hooks never reports); a `kSkipAsyncHooks` flag is no reason to skip: it only says Node's JS trampoline emits the hooks instead |
//! | `node::InternalCallbackScope::Close()`, on the branch after its test of `closed_` (emulated by the kernel, where the `cmp` would be single-stepped), scope not yet closed | `after` of that scope's resource |
//! | `~AsyncWrap` (D0, D1/D2), `AsyncWrap::EmitDestroy(bool)` | `destroy`, unless the id is already `kInvalidAsyncId` |
//!
//! - Ids: Node's async ids are doubles holding integers; the model keys tasks
//!   by `u64`, so an id is its integer value (`7.0` is 7). A non-integral,
//!   negative or non-finite value is counted and left out, never rounded.
//! - Types: `node.` and the provider name async_hooks reports (`node.TCPWRAP`,
//!   `node.FSREQCALLBACK`), next to `tokio.task` and `go.goroutine`; the
//!   `init`'s name is the provider name itself.
//! - [`code`]: what tracer reads from the binary's code before attaching: the
//!   offsets of the fields the programs read, the provider names, the version.
//!
//! JS-level resources (Timeout, Immediate, TickObject, PROMISE) never reach
//! these sites: they are counted (the gaps in each thread's sequence of native
//! ids, [`events::Counts::unseen_ids`]), and reported only with
//! `--js-resources`, through hardware watchpoints ([`js`]): `node.Timeout`,
//! `node.Immediate`, `node.TickObject`, `node.Microtask`.

mod adapter;
pub mod code;
pub mod events;
pub mod js;

pub use adapter::Node;
pub use events::ROOT_ASYNC_ID;

/// What every Node resource type begins with (`node.TCPWRAP`).
pub const TYPE_PREFIX: &str = "node.";
