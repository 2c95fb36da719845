//! `tokio::join!` and `tokio::select!` in an await chain: forks, whose
//! pending branches make the chain a tree. Both macros (Tokio 1.x,
//! `tokio/src/macros/join.rs` and `select.rs`) keep their branch futures in a
//! tuple, local to the enclosing state machine, and await a
//! `PollFn<{closure_env#N}>` whose closure captures a pointer to that tuple
//! (`futures`): `join!`'s elements are `MaybeDone<F>` (`Future` while
//! pending, then `Done`, `Gone`); `select!`'s are the futures themselves, and
//! its closure also captures the `disabled` bitmask (a bit a branch, set once
//! the branch completed or when its precondition is false). The DWARF gives
//! all of it: captures by name, the tuple's members, the enums' variants.
//! `tokio::try_join!` has `join!`'s shape and is shown as `tokio::join!`;
//! the `futures` crate's macros have other shapes and end the chain at their
//! future, as before.

use super::memory::Memory;
use super::types::{Kind, Member, Type, TypeRef, Types, last_segment};

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
    /// How its branches are held.
    kind: ForkKind,
    /// Offset of the pointer to the tuple in the `PollFn`.
    futures: u64,
    /// Each branch's (offset in the tuple, type), by position.
    branches: Vec<(u64, TypeRef)>,
    /// `select!`'s `disabled` mask.
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

/// A pending branch of a fork, as memory holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingBranch {
    /// Its position in the macro, from 0.
    pub branch: usize,
    /// Its future's address and type, or why it cannot be read.
    pub future: Result<(u64, TypeRef), String>,
}

impl ForkShape {
    /// The pending branches of the fork at `address`: for `select!`, those
    /// whose bit of `disabled` is clear (a branch is disabled once it
    /// completes, or when its precondition is false); for `join!`, those whose
    /// `MaybeDone` is still `Future`.
    pub fn pending(
        &self,
        types: &Types,
        address: u64,
        memory: &dyn Memory,
    ) -> Result<Vec<PendingBranch>, String> {
        let tuple = memory
            .uint(address + self.futures, 8)
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{}: its futures are unreadable", self.name))?;
        let disabled = match self.mask {
            None => Some(0),
            Some(mask) if mask.by_ref => memory
                .uint(address + mask.offset, 8)
                .and_then(|at| memory.uint(at, mask.size)),
            Some(mask) => memory.uint(address + mask.offset, mask.size),
        }
        .ok_or_else(|| format!("{}: its mask is unreadable", self.name))?;
        let mut pending = Vec::new();
        for (branch, (offset, ty)) in self.branches.iter().enumerate() {
            if branch < 64 && disabled & (1 << branch) != 0 {
                continue;
            }
            let at = tuple + offset;
            let future = match self.kind {
                ForkKind::Select => Ok((at, *ty)),
                ForkKind::Join => match maybe_done_future(types, *ty, at, memory) {
                    Ok(None) => continue,
                    Ok(Some(future)) => Ok(future),
                    Err(why) => Err(why),
                },
            };
            pending.push(PendingBranch { branch, future });
        }
        Ok(pending)
    }
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

/// How the live walk tells whether a `join!` branch is pending: where its
/// `MaybeDone`'s discriminant is (in the tuple), the `Future` variant's
/// value, and the other variants' (`None`: the variant without a value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinDiscriminant {
    /// Offset in the tuple.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// The `Future` variant's value.
    pub future: Option<u64>,
    /// `Done`'s and `Gone`'s.
    pub others: Vec<Option<u64>>,
}

/// One branch as the live walk reads it (see [`ForkShape::live_branches`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveBranch {
    /// Where its future is in the tuple (for `join!`, inside `MaybeDone`'s
    /// `Future`), and its type.
    pub future: (u64, TypeRef),
    /// `join!`: its discriminant; `None` for `select!`.
    pub discriminant: Option<JoinDiscriminant>,
}

impl ForkShape {
    /// Offset, in the `PollFn`, of the pointer to the tuple of branch futures.
    pub fn futures_offset(&self) -> u64 {
        self.futures
    }

    /// `select!`'s mask: (offset in the `PollFn`, whether that holds a
    /// pointer to it, size in bytes); `None` for `join!`.
    pub fn mask(&self) -> Option<(u64, bool, u64)> {
        self.mask.map(|m| (m.offset, m.by_ref, m.size))
    }

    /// Each branch, by position, as the live walk reads it; `None` when a
    /// `join!` branch's `MaybeDone` is not described well enough to.
    pub fn live_branches(&self, types: &Types) -> Option<Vec<LiveBranch>> {
        self.branches
            .iter()
            .map(|(offset, ty)| match self.kind {
                ForkKind::Select => Some(LiveBranch {
                    future: (*offset, *ty),
                    discriminant: None,
                }),
                ForkKind::Join => {
                    let Kind::Struct {
                        variants: Some(variants),
                        ..
                    } = &types.get(*ty)?.kind
                    else {
                        return None;
                    };
                    let (value, variant) =
                        variants.variants.iter().find(|(_, m)| m.name == "Future")?;
                    let future = types.member(variant.ty?, "future")?;
                    Some(LiveBranch {
                        future: (offset + variant.offset + future.offset, future.ty?),
                        discriminant: Some(JoinDiscriminant {
                            offset: offset + variants.discr_offset,
                            size: variants.discr_size,
                            future: *value,
                            others: variants
                                .variants
                                .iter()
                                .filter(|(_, m)| m.name != "Future")
                                .map(|(v, _)| *v)
                                .collect(),
                        }),
                    })
                }
            })
            .collect()
    }
}
