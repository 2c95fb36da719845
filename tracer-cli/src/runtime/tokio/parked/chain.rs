//! Walks a parked future's await chain in memory by its type DWARF.
//!
//! An async fn's (or block's) state machine is a structure with a variant part
//! whose discriminant is the artificial `__state` member: 0 Unresumed, 1
//! Returned, 2 Panicked, 3 + N SuspendN. SuspendN's member carries the
//! `.await`'s `file:line` (`decl_file`/`decl_line`), and its structure holds
//! the awaited future inline as `__awaitee`: the chain is followed by offsets.
//! `Pin<P>` is its `pointer`; a pointer (`Box<T>`, which Tokio adds to a future
//! over 16 KiB, and `Box::pin`) is one read and a hop. A structure that is not a
//! state machine is the leaf future, or, when exactly one of its members is a
//! state machine (or a pin or box of one: `Timeout<F>`'s `value`), a combinator
//! the chain goes through. Only states the DWARF knows are accepted.
//!
//! A `tokio::join!` or `tokio::select!` is a fork ([`fork`]): the chain ends
//! with a [`TreeFrame::Fork`] holding the chain of each pending branch.

use serde::Serialize;

use super::types::{Kind, Member, Type, TypeRef, Types};
use crate::runtime::tokio::naming::{
    dwarf::{ImplNames, legacy_spelling},
    render,
};

/// Async levels followed at most: a deeper chain ends with [`Frame::Unknown`].
pub const MAX_DEPTH: usize = 8;

/// The discriminant values DWARF gives a state machine's first states.
const UNRESUMED: u64 = 0;
/// See [`UNRESUMED`].
const RETURNED: u64 = 1;
/// See [`UNRESUMED`].
const PANICKED: u64 = 2;

/// Reads another process's memory (or a test's bytes).
pub trait Memory {
    /// Fills `buf` from `address`; `false` when any of it cannot be read.
    fn read(&self, address: u64, buf: &mut [u8]) -> bool;

    /// The little-endian unsigned integer of `size` (1 to 8) bytes at `address`.
    fn uint(&self, address: u64, size: u64) -> Option<u64> {
        let mut buf = [0u8; 8];
        let size = usize::try_from(size).ok().filter(|s| (1..=8).contains(s))?;
        self.read(address, &mut buf[..size])
            .then(|| u64::from_le_bytes(buf))
    }
}

pub use crate::model::event::AwaitFrame as Frame;

/// One element of a parked task's await tree, outermost first: a frame of the
/// chain, or, last, a fork and the chains of its pending branches.
/// Serialised as the frame itself, or as
/// `{"future": "tokio::join!", "branches": [{"branch": 1, "awaiting": [...]}]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum TreeFrame {
    /// A frame of the chain.
    Frame(Frame),
    /// A `tokio::join!` or `tokio::select!` with its pending branches.
    Fork {
        /// `tokio::join!` or `tokio::select!`.
        future: &'static str,
        /// The pending branches, by position in the macro.
        branches: Vec<Branch>,
    },
}

impl From<Frame> for TreeFrame {
    fn from(frame: Frame) -> Self {
        Self::Frame(frame)
    }
}

/// One pending branch of a fork.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Branch {
    /// Its position in the macro, from 0.
    pub branch: usize,
    /// Its await tree.
    pub awaiting: Vec<TreeFrame>,
}

/// An await tree as text: the chain as [`crate::model::event::parked_at`]
/// shows it, a fork as its branches in braces, each with its position:
/// `src/main.rs:9 > tokio::join! { 1: src/main.rs:3 > tokio::time::sleep::Sleep | 2: … }`.
pub fn tree_text(tree: &[TreeFrame]) -> String {
    tree.iter()
        .map(|frame| match frame {
            TreeFrame::Frame(frame) => frame.text(),
            TreeFrame::Fork { future, branches } => {
                let branches: Vec<String> = branches
                    .iter()
                    .map(|b| format!("{}: {}", b.branch, tree_text(&b.awaiting)))
                    .collect();
                format!("{future} {{ {} }}", branches.join(" | "))
            }
        })
        .collect::<Vec<_>>()
        .join(" > ")
}

/// The await tree of the future of type `ty` at `address`.
pub fn chain(types: &Types, ty: TypeRef, address: u64, memory: &dyn Memory) -> Vec<TreeFrame> {
    let mut frames = Vec::new();
    walk(types, ty, address, memory, 0, &mut frames);
    frames
}

/// Which macro a fork is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ForkKind {
    /// Every branch a `MaybeDone<F>`, pending while `Future`.
    Join,
    /// Branches held directly, pending while their bit of `disabled` is clear.
    Select,
}

/// Where a `tokio::select!`'s `disabled` mask is, in its closure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mask {
    /// The capture's offset in the `PollFn`.
    offset: u64,
    /// Whether the capture is a pointer to the mask (a `&mut` capture).
    by_ref: bool,
    /// The mask's size in bytes (1 to 8).
    size: u64,
}

/// Where the `.await` of the suspend state `state` is, `awaitee` its awaited
/// type: the state's declaration, but for a fork, the declaration of its
/// `__awaitee` local. A macro's `.await` declares its state in the macro's
/// file (`tokio/src/macros/join.rs:207`) and the local at the macro's call;
/// a fork's type holds its closure's, unique to that call.
pub fn await_at(types: &Types, state: &Member, awaitee: Option<TypeRef>) -> Option<String> {
    awaitee
        .filter(|ty| fork(types, *ty).is_some())
        .and_then(|ty| types.awaitee_local_at(ty))
        .map(str::to_owned)
        .or_else(|| state.declared_at.clone())
}

/// The shape of a fork: a `PollFn<{closure_env#N}>` whose closure captures a
/// pointer to the tuple of branch futures (`futures`), and, for `select!`, the
/// `disabled` mask. Both macros (Tokio 1.x, `tokio/src/macros/join.rs` and
/// `select.rs`) poll such a closure, and the `PollFn` is what the enclosing
/// state machine awaits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForkShape {
    /// `tokio::join!` or `tokio::select!`.
    pub name: &'static str,
    kind: ForkKind,
    /// Offset of the pointer to the tuple in the `PollFn`.
    futures: u64,
    /// Each branch's (offset in the tuple, type), by position.
    branches: Vec<(u64, TypeRef)>,
    mask: Option<Mask>,
}

/// The fork shape of the type `ty`, when it is a `join!`'s or `select!`'s
/// `PollFn` (see [`ForkShape`]).
pub fn fork(types: &Types, ty: TypeRef) -> Option<ForkShape> {
    let found = types.get(ty)?;
    if !found.name.starts_with("core::future::poll_fn::PollFn<") {
        return None;
    }
    let closure = types.member(ty, "f")?;
    let closure_ty = closure.ty?;
    if !last_segment(&types.get(closure_ty)?.name).starts_with("{closure_env#") {
        return None;
    }
    let capture = |name: &str| {
        types
            .member(closure_ty, name)
            .or_else(|| types.member(closure_ty, &format!("_ref__{name}")))
    };
    let futures = capture("futures")?;
    let Kind::Pointer(Some(tuple)) = types.get(futures.ty?)?.kind else {
        return None;
    };
    let branches = tuple_members(types, tuple)?;
    let maybe_done = |t: &TypeRef| {
        types
            .get(*t)
            .is_some_and(|t| t.name.starts_with("tokio::future::maybe_done::MaybeDone<"))
    };
    let (name, kind, mask) = match capture("disabled") {
        Some(disabled) => {
            let (by_ref, mask_ty) = match types.get(disabled.ty?)?.kind {
                Kind::Pointer(target) => (true, target?),
                _ => (false, disabled.ty?),
            };
            let size = types.get(mask_ty)?.size;
            if !(1..=8).contains(&size) || branches.len() as u64 > size * 8 {
                return None;
            }
            let mask = Mask {
                offset: closure.offset + disabled.offset,
                by_ref,
                size,
            };
            ("tokio::select!", ForkKind::Select, Some(mask))
        }
        None if branches.iter().all(|(_, t)| maybe_done(t)) => {
            ("tokio::join!", ForkKind::Join, None)
        }
        None => return None,
    };
    Some(ForkShape {
        name,
        kind,
        futures: closure.offset + futures.offset,
        branches,
        mask,
    })
}

/// A tuple type's members (`__0`, `__1`, …) as (offset, type), by position.
fn tuple_members(types: &Types, tuple: TypeRef) -> Option<Vec<(u64, TypeRef)>> {
    let Kind::Struct { members, .. } = &types.get(tuple)?.kind else {
        return None;
    };
    let mut indexed = members
        .iter()
        .map(|m| {
            Some((
                m.name.strip_prefix("__")?.parse::<usize>().ok()?,
                (m.offset, m.ty?),
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    indexed.sort_unstable_by_key(|(index, _)| *index);
    let positions_are_dense = indexed
        .iter()
        .enumerate()
        .all(|(i, (index, _))| i == *index);
    (positions_are_dense && !indexed.is_empty())
        .then(|| indexed.into_iter().map(|(_, member)| member).collect())
}

/// Appends the fork of shape `shape` at `address`, with the tree of each of
/// its pending branches, `depth` levels down.
fn fork_tree(
    types: &Types,
    shape: &ForkShape,
    address: u64,
    memory: &dyn Memory,
    depth: usize,
    out: &mut Vec<TreeFrame>,
) {
    let Some(tuple) = memory.uint(address + shape.futures, 8).filter(|p| *p != 0) else {
        out.push(unknown(format!("{}: its futures are unreadable", shape.name)).into());
        return;
    };
    let disabled = match shape.mask {
        None => Some(0),
        Some(mask) if mask.by_ref => memory
            .uint(address + mask.offset, 8)
            .and_then(|at| memory.uint(at, mask.size)),
        Some(mask) => memory.uint(address + mask.offset, mask.size),
    };
    let Some(disabled) = disabled else {
        out.push(unknown(format!("{}: its mask is unreadable", shape.name)).into());
        return;
    };
    let mut branches = Vec::new();
    for (index, (offset, ty)) in shape.branches.iter().enumerate() {
        if disabled & (1 << index) != 0 {
            continue;
        }
        let at = tuple + offset;
        let mut awaiting = Vec::new();
        match shape.kind {
            ForkKind::Select => walk(types, *ty, at, memory, depth + 1, &mut awaiting),
            ForkKind::Join => match maybe_done_future(types, *ty, at, memory) {
                Ok(None) => continue,
                Ok(Some((future_at, future_ty))) => walk(
                    types,
                    future_ty,
                    future_at,
                    memory,
                    depth + 1,
                    &mut awaiting,
                ),
                Err(why) => awaiting.push(unknown(why).into()),
            },
        }
        branches.push(Branch {
            branch: index,
            awaiting,
        });
    }
    out.push(TreeFrame::Fork {
        future: shape.name,
        branches,
    });
}

/// The future of the `MaybeDone<F>` of type `ty` at `address` while it is
/// `Future` (its address and type), `None` once `Done` or `Gone`.
fn maybe_done_future(
    types: &Types,
    ty: TypeRef,
    address: u64,
    memory: &dyn Memory,
) -> Result<Option<(u64, TypeRef)>, String> {
    let name = types.get(ty).map_or("?", |t| t.name.as_str());
    let Some(Type {
        kind: Kind::Struct {
            variants: Some(variants),
            ..
        },
        ..
    }) = types.get(ty)
    else {
        return Err(format!("{name}: no variants in the DWARF"));
    };
    let value = memory
        .uint(address + variants.discr_offset, variants.discr_size)
        .ok_or_else(|| format!("{name}: unreadable"))?;
    let variant = variants
        .variants
        .iter()
        .find(|(v, _)| *v == Some(value))
        .or_else(|| variants.variants.iter().find(|(v, _)| v.is_none()))
        .map(|(_, member)| member)
        .ok_or_else(|| format!("{name}: variant {value} unknown to the DWARF"))?;
    match variant.name.as_str() {
        "Done" | "Gone" => Ok(None),
        "Future" => variant
            .ty
            .and_then(|t| types.member(t, "future"))
            .and_then(|m| Some((address + variant.offset + m.offset, m.ty?)))
            .map(Some)
            .ok_or_else(|| format!("{name}: no future in the DWARF")),
        other => Err(format!("{name}: variant {other} unknown")),
    }
}

/// Appends the chain of the future of type `ty` at `address`, `depth` levels down.
fn walk(
    types: &Types,
    ty: TypeRef,
    address: u64,
    memory: &dyn Memory,
    depth: usize,
    out: &mut Vec<TreeFrame>,
) {
    if depth > MAX_DEPTH {
        out.push(unknown(format!("deeper than {MAX_DEPTH} levels")).into());
        return;
    }
    let Some(found) = types.get(ty) else {
        out.push(unknown("a type the DWARF does not describe".into()).into());
        return;
    };
    if let Some(shape) = fork(types, ty) {
        return fork_tree(types, &shape, address, memory, depth, out);
    }
    match &found.kind {
        Kind::Pointer(target) => {
            let Some(target) = *target else {
                out.push(unknown("a pointer to an unknown type".into()).into());
                return;
            };
            match memory.uint(address, 8) {
                Some(0) | None => out.push(unknown(format!("unreadable {}", found.name)).into()),
                Some(pointee) => walk(types, target, pointee, memory, depth + 1, out),
            }
        }
        Kind::Struct { .. } if found.name.starts_with("core::pin::Pin<") => {
            match types
                .member(ty, "pointer")
                .and_then(|m| Some((m.offset, m.ty?)))
            {
                Some((offset, inner)) => walk(types, inner, address + offset, memory, depth, out),
                None => out.push(
                    Frame::Future {
                        future: found.name.clone(),
                    }
                    .into(),
                ),
            }
        }
        Kind::Struct { .. } if is_state_machine(&found.name) => {
            state_machine(types, ty, address, memory, depth, out)
        }
        Kind::Struct { members, .. } => {
            out.push(
                Frame::Future {
                    future: future_name(&found.name),
                }
                .into(),
            );
            let inner: Vec<&Member> = members
                .iter()
                .filter(|m| m.ty.is_some_and(|t| holds_state_machine(types, t)))
                .collect();
            if let [one] = inner.as_slice()
                && let Some(inner_ty) = one.ty
            {
                walk(
                    types,
                    inner_ty,
                    address + one.offset,
                    memory,
                    depth + 1,
                    out,
                );
            }
        }
        Kind::Other => out.push(
            Frame::Future {
                future: found.name.clone(),
            }
            .into(),
        ),
    }
}

/// Appends the frame of the state machine of type `ty` at `address`, and the
/// chain of what it awaits.
fn state_machine(
    types: &Types,
    ty: TypeRef,
    address: u64,
    memory: &dyn Memory,
    depth: usize,
    out: &mut Vec<TreeFrame>,
) {
    let Some(found) = types.get(ty) else { return };
    let function = function_name(&found.name);
    let Kind::Struct {
        variants: Some(variants),
        ..
    } = &found.kind
    else {
        out.push(unknown(format!("{function}: no state in the DWARF")).into());
        return;
    };
    let Some(state) = memory.uint(address + variants.discr_offset, variants.discr_size) else {
        out.push(unknown(format!("{function}: state unreadable")).into());
        return;
    };
    let Some((_, variant)) = variants.variants.iter().find(|(v, _)| *v == Some(state)) else {
        out.push(unknown(format!("{function}: state {state} unknown to the DWARF")).into());
        return;
    };
    let named = match state {
        UNRESUMED => Some("unresumed"),
        RETURNED => Some("returned"),
        PANICKED => Some("panicked"),
        _ => None,
    };
    if let Some(state) = named {
        out.push(
            Frame::State {
                function,
                state: state.into(),
            }
            .into(),
        );
        return;
    }
    let awaitee = variant
        .ty
        .and_then(|suspend| types.member(suspend, "__awaitee"))
        .and_then(|m| Some((m.offset, m.ty?)));
    out.push(
        Frame::Await {
            function: function.clone(),
            at: await_at(types, variant, awaitee.map(|(_, ty)| ty)).unwrap_or_else(|| "?".into()),
        }
        .into(),
    );
    match awaitee {
        Some((offset, awaitee)) => walk(
            types,
            awaitee,
            address + variant.offset + offset,
            memory,
            depth + 1,
            out,
        ),
        None => out.push(unknown(format!("{function}: no __awaitee")).into()),
    }
}

/// An unknown frame.
fn unknown(why: String) -> Frame {
    Frame::Unknown { unknown: why }
}

/// Whether a DWARF type name is an async fn's or block's state machine.
pub fn is_state_machine(name: &str) -> bool {
    let last = last_segment(name);
    last.starts_with("{async_fn_env#") || last.starts_with("{async_block_env#")
}

/// Whether the type `ty` is a state machine, or a pin or box of one: what
/// a combinator holds that the chain goes through.
pub fn holds_state_machine(types: &Types, ty: TypeRef) -> bool {
    let Some(found) = types.get(ty) else {
        return false;
    };
    match &found.kind {
        Kind::Pointer(Some(target)) => types
            .get(*target)
            .is_some_and(|t| is_state_machine(&t.name)),
        Kind::Struct { .. } if found.name.starts_with("core::pin::Pin<") => types
            .member(ty, "pointer")
            .and_then(|m| m.ty)
            .is_some_and(|inner| holds_state_machine(types, inner)),
        _ => is_state_machine(&found.name),
    }
}

/// The last `::` segment of a path, outside generic arguments.
fn last_segment(name: &str) -> &str {
    let mut depth = 0usize;
    let mut start = 0;
    let bytes = name.as_bytes();
    let mut end = name.len();
    for (i, c) in name.char_indices() {
        match c {
            '<' => {
                if depth == 0 {
                    end = i;
                }
                depth += 1
            }
            '>' => depth = depth.saturating_sub(1),
            ':' if depth == 0 && bytes.get(i + 1) == Some(&b':') => {
                start = i + 2;
                end = name.len();
            }
            _ => {}
        }
    }
    &name[start..end.max(start)]
}

/// A future type as names read elsewhere: `Timeout<app::inner::{async_fn_env#0}>`
/// is `Timeout<app::inner>`.
fn future_name(dwarf: &str) -> String {
    match legacy_spelling(dwarf, &ImplNames::default()) {
        Some(legacy) => render::user_name(&legacy).0,
        None => dwarf.to_owned(),
    }
}

/// The function a state machine is the body of, as names read elsewhere:
/// `app::consumer::{async_fn_env#0}` is `app::consumer`, and an async block
/// is the function holding it.
pub fn function_name(state_machine: &str) -> String {
    match legacy_spelling(state_machine, &ImplNames::default()) {
        Some(legacy) => render::user_name(&legacy).0,
        None => state_machine.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::types::{Type, Variants};
    use super::*;
    use std::collections::HashMap;

    /// Memory as a map of addresses to bytes.
    struct Bytes(HashMap<u64, u8>);

    impl Memory for Bytes {
        fn read(&self, address: u64, buf: &mut [u8]) -> bool {
            for (i, b) in buf.iter_mut().enumerate() {
                match self.0.get(&(address + i as u64)) {
                    Some(v) => *b = *v,
                    None => return false,
                }
            }
            true
        }
    }

    fn structure(name: &str, members: Vec<Member>, variants: Option<Variants>) -> Type {
        Type {
            name: name.into(),
            size: 64,
            kind: Kind::Struct {
                members,
                variants,
                params: Vec::new(),
            },
        }
    }

    fn member(name: &str, offset: u64, ty: TypeRef, at: Option<&str>) -> Member {
        Member {
            name: name.into(),
            offset,
            ty: Some(ty),
            declared_at: at.map(str::to_owned),
        }
    }

    /// `app::outer` suspended at src/main.rs:7 on a boxed `app::inner`,
    /// suspended at src/main.rs:3 on a `Sleep`.
    fn types() -> Types {
        let mut types = Types::default();
        types.insert(
            1,
            Type {
                name: "u8".into(),
                size: 1,
                kind: Kind::Other,
            },
        );
        types.insert(10, structure("tokio::time::sleep::Sleep", vec![], None));
        types.insert(
            20,
            structure(
                "app::inner::{async_fn_env#0}::Suspend0",
                vec![member("__awaitee", 8, 10, None)],
                None,
            ),
        );
        let variants = |suspend: TypeRef, at: &str| Variants {
            discr_name: "__state".into(),
            discr_offset: 0,
            discr_size: 1,
            variants: vec![
                (Some(0), member("0", 0, 1, None)),
                (Some(3), member("3", 0, suspend, Some(at))),
            ],
        };
        types.insert(
            21,
            structure(
                "app::inner::{async_fn_env#0}",
                vec![],
                Some(variants(20, "src/main.rs:3")),
            ),
        );
        types.insert(
            30,
            Type {
                name: "alloc::boxed::Box<app::inner::{async_fn_env#0}, alloc::alloc::Global>"
                    .into(),
                size: 8,
                kind: Kind::Pointer(Some(21)),
            },
        );
        types.insert(31, structure("core::pin::Pin<alloc::boxed::Box<app::inner::{async_fn_env#0}, alloc::alloc::Global>>", vec![member("pointer", 0, 30, None)], None));
        types.insert(
            40,
            structure(
                "app::outer::{async_fn_env#0}::Suspend0",
                vec![member("__awaitee", 16, 31, None)],
                None,
            ),
        );
        types.insert(
            41,
            structure(
                "app::outer::{async_fn_env#0}",
                vec![],
                Some(variants(40, "src/main.rs:7")),
            ),
        );
        types
    }

    fn memory(words: &[(u64, &[u8])]) -> Bytes {
        let mut bytes = HashMap::new();
        for (at, data) in words {
            for (i, b) in data.iter().enumerate() {
                bytes.insert(at + i as u64, *b);
            }
        }
        Bytes(bytes)
    }

    fn suspended(function: &str, at: &str) -> TreeFrame {
        Frame::Await {
            function: function.into(),
            at: at.into(),
        }
        .into()
    }

    fn sleep() -> TreeFrame {
        Frame::Future {
            future: "tokio::time::sleep::Sleep".into(),
        }
        .into()
    }

    fn other(name: &str, size: u64) -> Type {
        Type {
            name: name.into(),
            size,
            kind: Kind::Other,
        }
    }

    /// [`types`], and an `app::outer` closure's `PollFn` for a `select!` (at
    /// 55: two `app::inner` and a `Sleep`) and for a `join!` (at 66: two
    /// `MaybeDone<app::inner>`).
    fn fork_types() -> Types {
        let mut types = types();
        let pointer = |to: TypeRef| Type {
            name: String::new(),
            size: 8,
            kind: Kind::Pointer(Some(to)),
        };
        types.insert(51, pointer(1));
        types.insert(
            52,
            structure(
                "(app::inner::{async_fn_env#0}, app::inner::{async_fn_env#0}, tokio::time::sleep::Sleep)",
                vec![member("__0", 0, 21, None), member("__1", 16, 21, None), member("__2", 32, 10, None)],
                None,
            ),
        );
        types.insert(53, pointer(52));
        types.insert(
            54,
            structure(
                "app::outer::{async_fn#0}::{closure_env#0}",
                vec![
                    member("_ref__disabled", 0, 51, None),
                    member("_ref__futures", 8, 53, None),
                ],
                None,
            ),
        );
        types.insert(
            55,
            structure(
                "core::future::poll_fn::PollFn<app::outer::{async_fn#0}::{closure_env#0}>",
                vec![member("f", 0, 54, None)],
                None,
            ),
        );
        types.insert(2, other("u32", 4));
        let maybe_done = "tokio::future::maybe_done::MaybeDone<app::inner::{async_fn_env#0}>";
        types.insert(
            61,
            structure("Future", vec![member("future", 8, 21, None)], None),
        );
        types.insert(62, structure("Done", vec![], None));
        let variants = Variants {
            discr_name: String::new(),
            discr_offset: 0,
            discr_size: 4,
            variants: vec![
                (Some(0), member("Future", 0, 61, None)),
                (Some(1), member("Done", 0, 62, None)),
                (Some(2), member("Gone", 0, 62, None)),
            ],
        };
        types.insert(60, structure(maybe_done, vec![], Some(variants)));
        types.insert(
            63,
            structure(
                &format!("({maybe_done}, {maybe_done})"),
                vec![member("__0", 0, 60, None), member("__1", 32, 60, None)],
                None,
            ),
        );
        types.insert(64, pointer(63));
        types.insert(
            65,
            structure(
                "app::outer::{async_fn#0}::{closure_env#1}",
                vec![
                    member("futures", 0, 64, None),
                    member("rotator", 8, 1, None),
                ],
                None,
            ),
        );
        types.insert(
            66,
            structure(
                "core::future::poll_fn::PollFn<app::outer::{async_fn#0}::{closure_env#1}>",
                vec![member("f", 0, 65, None)],
                None,
            ),
        );
        types
    }

    #[test]
    fn a_select_shows_the_chain_of_every_branch_its_mask_leaves_enabled() {
        let memory = memory(&[
            (0x3000, &0x4000u64.to_le_bytes()),
            (0x3008, &0x5000u64.to_le_bytes()),
            (0x4000, &[0b010]),
            (0x5000, &[3]),
        ]);
        assert_eq!(
            chain(&fork_types(), 55, 0x3000, &memory),
            vec![TreeFrame::Fork {
                future: "tokio::select!",
                branches: vec![
                    Branch {
                        branch: 0,
                        awaiting: vec![suspended("app::inner", "src/main.rs:3"), sleep()],
                    },
                    Branch {
                        branch: 2,
                        awaiting: vec![sleep()],
                    },
                ],
            }]
        );
    }

    #[test]
    fn a_join_shows_the_chain_of_every_branch_still_a_future_and_none_done() {
        let memory = memory(&[
            (0x6000, &0x7000u64.to_le_bytes()),
            (0x7000, &1u32.to_le_bytes()),
            (0x7020, &0u32.to_le_bytes()),
            (0x7028, &[3]),
        ]);
        assert_eq!(
            chain(&fork_types(), 66, 0x6000, &memory),
            vec![TreeFrame::Fork {
                future: "tokio::join!",
                branches: vec![Branch {
                    branch: 1,
                    awaiting: vec![suspended("app::inner", "src/main.rs:3"), sleep()],
                }],
            }]
        );
    }

    #[test]
    fn a_poll_fn_that_captures_no_branch_tuple_is_no_fork() {
        let mut types = fork_types();
        types.insert(
            70,
            structure(
                "core::future::poll_fn::PollFn<app::outer::{async_fn#0}::{closure_env#2}>",
                vec![member("f", 0, 71, None)],
                None,
            ),
        );
        types.insert(
            71,
            structure(
                "app::outer::{async_fn#0}::{closure_env#2}",
                vec![member("futures", 0, 51, None)],
                None,
            ),
        );
        assert_eq!(fork(&types, 70), None);
        assert_eq!(fork(&types, 55).map(|f| f.name), Some("tokio::select!"));
    }

    #[test]
    fn a_suspended_chain_is_followed_through_a_box_to_its_leaf() {
        let memory = memory(&[
            (0x1000, &[3]),
            (0x1010, &0x2000u64.to_le_bytes()),
            (0x2000, &[3]),
        ]);
        assert_eq!(
            chain(&types(), 41, 0x1000, &memory),
            vec![
                suspended("app::outer", "src/main.rs:7"),
                suspended("app::inner", "src/main.rs:3"),
                sleep(),
            ]
        );
    }

    #[test]
    fn a_state_the_dwarf_does_not_know_ends_the_chain_as_unknown() {
        let memory = memory(&[
            (0x1000, &[3]),
            (0x1010, &0x2000u64.to_le_bytes()),
            (0x2000, &[9]),
        ]);
        let frames = chain(&types(), 41, 0x1000, &memory);
        assert_eq!(frames.len(), 2);
        assert!(
            matches!(&frames[1], TreeFrame::Frame(Frame::Unknown { unknown }) if unknown.contains("state 9")),
            "{frames:?}"
        );
    }

    #[test]
    fn an_unresumed_state_machine_says_so() {
        let memory = memory(&[(0x1000, &[0])]);
        assert_eq!(
            chain(&types(), 41, 0x1000, &memory),
            vec![TreeFrame::from(Frame::State {
                function: "app::outer".into(),
                state: "unresumed".into()
            })]
        );
    }

    #[test]
    fn state_machines_are_named_by_their_function() {
        assert_eq!(
            function_name("app::consumer::{async_fn_env#0}"),
            "app::consumer"
        );
        assert_eq!(
            function_name("app::worker::{async_fn_env#0}<u64>"),
            "app::worker<u64>"
        );
        assert!(is_state_machine("app::main::{async_block_env#3}"));
        assert!(is_state_machine(
            "app::worker::{async_fn_env#0}<app::X<u8>>"
        ));
        assert!(!is_state_machine(
            "tokio::time::timeout::Timeout<app::inner::{async_fn_env#0}>"
        ));
    }
}
