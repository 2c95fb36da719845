//! Where things are in a Tokio task and runtime, from type DWARF, never assumed:
//! the task `Cell<T, S>` (header, `Core`'s task id, scheduler and `Stage<T>`
//! tag and future, the `Trailer`'s list pointers), and the scheduler handle's
//! `OwnedTasks`, the sharded list every live task of a runtime is linked in.

use super::types::{Kind, TypeRef, Types};

/// `Stage<T>`'s `Running` discriminant: the future is alive.
const RUNNING: &str = "Running";

/// One task type's layout, offsets from the start of the cell (the header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellLayout {
    /// The cell type's name.
    pub name: String,
    /// The header's `state` word.
    pub state: u64,
    /// The header's vtable pointer.
    pub vtable: u64,
    /// `Core::task_id`.
    pub task_id: u64,
    /// `Core::scheduler` (an `Arc` of the scheduler handle).
    pub scheduler: u64,
    /// `Stage<T>`'s tag, and its size.
    pub stage_tag: (u64, u64),
    /// The tag's value when the future is alive.
    pub running: u64,
    /// The future `T`.
    pub future: u64,
    /// `T`'s type.
    pub future_type: TypeRef,
    /// The trailer's `next` pointer of the owned-tasks list.
    pub next: u64,
    /// The scheduler type `S`.
    pub scheduler_type: TypeRef,
}

/// The layout of the cell type `cell`, when the DWARF describes all of it.
pub fn cell_layout(types: &Types, cell: TypeRef) -> Option<CellLayout> {
    let name = types.get(cell)?.name.clone();
    let (header, header_ty) = types.path(cell, &["header"])?;
    let state = header + types.member(header_ty, "state")?.offset;
    let vtable = header + types.member(header_ty, "vtable")?.offset;
    let (core, core_ty) = types.path(cell, &["core"])?;
    let task_id = core + types.member(core_ty, "task_id")?.offset;
    let scheduler_member = types.member(core_ty, "scheduler")?;
    let scheduler = core + scheduler_member.offset;
    let (stage_at, stage_ty) = find_type(types, cell, "tokio::runtime::task::core::Stage<", 6)?;
    let Kind::Struct {
        variants: Some(variants),
        ..
    } = &types.get(stage_ty)?.kind
    else {
        return None;
    };
    let (running_value, running) = variants.variants.iter().find(|(_, m)| m.name == RUNNING)?;
    let (future_at, future_type) = types.path(running.ty?, &["__0"])?;
    let (trailer, trailer_ty) = types.path(cell, &["trailer"])?;
    let (owned, owned_ty) = types.path(trailer_ty, &["owned"])?;
    let (next, _) = types.find(owned_ty, "next", 3)?;
    Some(CellLayout {
        name,
        state,
        vtable,
        task_id,
        scheduler,
        stage_tag: (stage_at + variants.discr_offset, variants.discr_size),
        running: (*running_value)?,
        future: stage_at + running.offset + future_at,
        future_type,
        next: trailer + owned + next,
        scheduler_type: scheduler_member.ty?,
    })
}

/// The first structure inside `ty` (itself included) whose name starts with
/// `prefix`, at most `depth` levels down, and its offset.
fn find_type(types: &Types, ty: TypeRef, prefix: &str, depth: usize) -> Option<(u64, TypeRef)> {
    let found = types.get(ty)?;
    if found.name.starts_with(prefix) {
        return Some((0, ty));
    }
    let Kind::Struct { members, .. } = &found.kind else {
        return None;
    };
    if depth == 0 {
        return None;
    }
    members.iter().find_map(|m| {
        let (offset, inner) = find_type(types, m.ty?, prefix, depth - 1)?;
        Some((m.offset + offset, inner))
    })
}

/// Where a runtime's live tasks are linked, from its scheduler handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedLayout {
    /// In the `Arc`'s allocation (what `Core::scheduler` points to): the
    /// `OwnedTasks::list.lists` pointer to the shards.
    pub shards: u64,
    /// The number of shards, next to it.
    pub shard_count: u64,
    /// `OwnedTasks::id`, which every task's header repeats as `owner_id`.
    pub id: u64,
    /// Bytes per shard.
    pub shard_size: u64,
    /// The shard list's `head` in a shard.
    pub head: u64,
}

/// The owned-tasks layout of the scheduler type `scheduler` (an `Arc<Handle>`).
pub fn owned_layout(types: &Types, scheduler: TypeRef) -> Option<OwnedLayout> {
    let (_, inner_ptr) = types.find(scheduler, "pointer", 2)?;
    let Kind::Pointer(Some(arc_inner)) = types.get(inner_ptr)?.kind else {
        return None;
    };
    let (data, handle) = types.path(arc_inner, &["data"])?;
    let (owned, owned_ty) = types.find(handle, "owned", 2)?;
    let (list, list_ty) = types.path(owned_ty, &["list"])?;
    let id = data + owned + types.member(owned_ty, "id")?.offset;
    let (lists, lists_ty) = types.path(list_ty, &["lists"])?;
    let data_ptr = types.member(lists_ty, "data_ptr")?;
    let length = types.member(lists_ty, "length")?;
    let Kind::Pointer(Some(shard)) = types.get(data_ptr.ty?)?.kind else {
        return None;
    };
    let (head, _) = types.find(shard, "head", 4)?;
    let base = data + owned + list + lists;
    Some(OwnedLayout {
        shards: base + data_ptr.offset,
        shard_count: base + length.offset,
        id,
        shard_size: types.get(shard)?.size,
        head,
    })
}
