//! Await chains in the live trace: each `raw::poll` site's chain program,
//! compiled once at load time from the type DWARF, for the BPF walk at the
//! poll's return (the maps `CHAIN_SITES`, `CHAIN_NODES`, `CHAIN_EDGES`), with
//! the table that decodes the state bytes it reads ([`ChainTable`]).
//!
//! The walk is [`super::chain`]'s done ahead of time: from the task's future,
//! through pins, boxes (one pointer hop per edge at most) and combinators that
//! hold exactly one state machine, to the first async state machine; each state
//! machine is a node (one per type) whose suspend states each have an edge to
//! the state machine its `__awaitee` leads to, or to the leaf future. A
//! `tokio::join!` or `tokio::select!` is a fork (one per type, for the maps
//! `CHAIN_FORKS` and `CHAIN_BRANCHES`, see [`tracer_common::fork`]): where its
//! tuple of branches and its mask are, and per branch how to tell it is
//! pending and the edge to its first state machine, so that the walk reads
//! the pending branches' chains too, as `tracer dump` does.

use std::collections::{BTreeMap, HashMap};

use tracer_common::{
    chain::{Edge, FIRST_SUSPEND, Node, Site},
    fork::{Branch, FORK, Fork},
};

use super::{
    chain::{Frame, function_name, holds_state_machine, is_state_machine},
    fork::{ForkShape, LiveBranch, await_at, fork},
    layout::CellLayout,
    types::{Kind, Member, TypeRef, Types},
};
use crate::{
    model::awaiting::{ChainTable, EdgeInfo, ForkInfo, NodeInfo, StateInfo},
    runtime::tokio::naming::{
        dwarf::{ImplNames, legacy_spelling},
        render,
    },
};

/// How far the static walk goes through pins, boxes and combinators between
/// two state machines.
const MAX_HOPS: usize = 8;

/// Compiled chain programs: what the BPF maps are filled with, and the table
/// that decodes what the walk reads.
#[derive(Debug, Default)]
pub struct Programs {
    /// `CHAIN_SITES`, by slot.
    pub sites: Vec<(u32, Site)>,
    /// `CHAIN_NODES`, by node id (index 0 is unused).
    pub nodes: Vec<Node>,
    /// `CHAIN_EDGES`.
    pub edges: Vec<Edge>,
    /// `CHAIN_FORKS`, by fork id (index 0 is unused).
    pub forks: Vec<Fork>,
    /// `CHAIN_BRANCHES`.
    pub branches: Vec<Branch>,
    /// The decoding table.
    pub table: ChainTable,
    /// Node ids by state machine type.
    by_type: HashMap<TypeRef, u32>,
    /// Fork ids by fork type.
    forks_by_type: HashMap<TypeRef, u32>,
}

/// What the walk reaches from a future: a state machine or a fork, by type.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// An async fn's or block's state machine.
    Machine(TypeRef),
    /// A `tokio::join!`'s or `tokio::select!`'s `PollFn`.
    Fork(TypeRef),
}

/// Where the walk is, from the future it started at: `pre`, then a hop when
/// `hop`, then `post`.
#[derive(Clone, Copy, Debug, Default)]
struct Path {
    pre: u64,
    hop: bool,
    post: u64,
}

impl Path {
    fn add(self, offset: u64) -> Self {
        if self.hop {
            Self {
                post: self.post + offset,
                ..self
            }
        } else {
            Self {
                pre: self.pre + offset,
                ..self
            }
        }
    }
}

impl Programs {
    /// The BPF maps' contents.
    pub fn maps(&self) -> crate::kernel::probes::ChainMaps<'_> {
        crate::kernel::probes::ChainMaps {
            sites: &self.sites,
            nodes: &self.nodes,
            edges: &self.edges,
            forks: &self.forks,
            branches: &self.branches,
        }
    }

    /// Empty programs (node id 0 reserved).
    pub fn new() -> Self {
        Self {
            nodes: vec![Node::default()],
            forks: vec![Fork::default()],
            ..Self::default()
        }
    }

    /// Adds the program of the poll site `slot`, whose tasks' cells are laid
    /// out as `layout`; false when the site's chain cannot be walked (its
    /// future's stage or first state machine is out of the walk's reach).
    pub fn add_site(&mut self, types: &Types, slot: u32, layout: &CellLayout) -> bool {
        let (Ok(stage_offset), Ok(stage_size), Ok(running)) = (
            u32::try_from(layout.stage_tag.0),
            u32::try_from(layout.stage_tag.1),
            u32::try_from(layout.running),
        ) else {
            return false;
        };
        if ![1, 2, 4, 8].contains(&stage_size) {
            return false;
        }
        let start = Path::default().add(layout.future);
        let (edge, info) = self.edge(types, layout.future_type, start);
        let walkable = info.next.is_some();
        self.table.sites.insert(slot, info);
        if !walkable {
            return false;
        }
        self.sites.push((
            slot,
            Site {
                node: edge.next,
                stage_size,
                stage_offset,
                running,
                root: edge,
            },
        ));
        true
    }

    /// The edge from the future of type `ty` at `path` to the state machine
    /// or fork it holds, if any, and its frames.
    fn edge(&mut self, types: &Types, ty: TypeRef, path: Path) -> (Edge, EdgeInfo) {
        let mut info = EdgeInfo::default();
        let Some((target, path)) = resolve(types, ty, path, 0, &mut info.via) else {
            return (Edge::default(), info);
        };
        let (Ok(pre), Ok(post)) = (u32::try_from(path.pre), u32::try_from(path.post)) else {
            info.via.push(unknown("an offset out of the walk's reach"));
            return (Edge::default(), info);
        };
        let next = match target {
            Target::Machine(machine) => {
                let Some(next) = self.node(types, machine) else {
                    let name = types.get(machine).map_or("?", |t| t.name.as_str());
                    info.via.push(unknown(&format!(
                        "{}: no one-byte state in the DWARF",
                        function_name(name)
                    )));
                    return (Edge::default(), info);
                };
                info.next = Some(next);
                next
            }
            Target::Fork(ty) => {
                let Some(id) = self.fork(types, ty) else {
                    let name = fork(types, ty).map_or("a fork", |shape| shape.name);
                    info.via.push(unknown(&format!(
                        "{name}: its branches are not described well enough to read"
                    )));
                    return (Edge::default(), info);
                };
                info.fork = Some(id);
                id | FORK
            }
        };
        (
            Edge {
                next,
                hop: u32::from(path.hop),
                pre,
                post,
            },
            info,
        )
    }

    /// The fork of the `join!` or `select!` type `ty`, compiled on first
    /// use, with the edge of each of its branches.
    fn fork(&mut self, types: &Types, ty: TypeRef) -> Option<u32> {
        if let Some(id) = self.forks_by_type.get(&ty) {
            return Some(*id);
        }
        let shape = fork(types, ty)?;
        let live = shape.live_branches(types)?;
        let pending: Vec<Branch> = live.iter().map(pending_test).collect::<Option<_>>()?;
        let fork = fork_entry(&shape, live.len())?;
        let id = u32::try_from(self.forks.len())
            .ok()
            .filter(|id| id & FORK == 0)?;
        let first_branch = u32::try_from(self.branches.len()).ok()?;
        self.forks_by_type.insert(ty, id);
        self.forks.push(Fork {
            first_branch,
            ..fork
        });
        self.branches.extend(pending.iter().copied());
        let mut branches = Vec::with_capacity(live.len());
        for (index, branch) in live.iter().enumerate() {
            let (offset, future) = branch.future;
            let (edge, info) = self.edge(types, future, Path::default().add(offset));
            if let Some(entry) = self.branches.get_mut(first_branch as usize + index) {
                entry.root = edge;
            }
            branches.push(info);
        }
        self.table.forks.insert(
            id,
            ForkInfo {
                name: shape.name,
                branches,
            },
        );
        Some(id)
    }

    /// The node of the state machine type `ty`, compiled on first use.
    fn node(&mut self, types: &Types, ty: TypeRef) -> Option<u32> {
        if let Some(id) = self.by_type.get(&ty) {
            return Some(*id);
        }
        let found = types.get(ty)?;
        let Kind::Struct {
            variants: Some(variants),
            ..
        } = &found.kind
        else {
            return None;
        };
        if variants.discr_size != 1 {
            return None;
        }
        let state_offset = u32::try_from(variants.discr_offset).ok()?;
        let id = u32::try_from(self.nodes.len()).ok()?;
        self.by_type.insert(ty, id);
        self.nodes.push(Node::default());
        let suspends: Vec<(u8, &Member)> = variants
            .variants
            .iter()
            .filter_map(|(value, member)| Some((u8::try_from((*value)?).ok()?, member)))
            .collect();
        let mut info = NodeInfo {
            function: function_name(&found.name),
            states: BTreeMap::new(),
        };
        let last = suspends
            .iter()
            .map(|(value, _)| *value)
            .filter(|v| *v >= FIRST_SUSPEND)
            .max();
        let count = last.map_or(0, |last| u32::from(last - FIRST_SUSPEND) + 1);
        let first_edge = u32::try_from(self.edges.len()).ok()?;
        self.edges
            .extend(std::iter::repeat_n(Edge::default(), count as usize));
        for (value, member) in suspends {
            let named = match value {
                0 => Some("unresumed"),
                1 => Some("returned"),
                2 => Some("panicked"),
                _ => None,
            };
            if let Some(name) = named {
                info.states.insert(value, StateInfo::Named(name));
                continue;
            }
            let awaitee = member
                .ty
                .and_then(|suspend| types.member(suspend, "__awaitee"))
                .and_then(|m| Some((m.offset, m.ty?)));
            let (edge, edge_info) = match awaitee {
                Some((offset, awaitee)) => {
                    self.edge(types, awaitee, Path::default().add(member.offset + offset))
                }
                None => (
                    Edge::default(),
                    EdgeInfo {
                        via: vec![unknown(&format!("{}: no __awaitee", info.function))],
                        ..EdgeInfo::default()
                    },
                ),
            };
            let index = first_edge as usize + usize::from(value - FIRST_SUSPEND);
            self.edges[index] = edge;
            info.states.insert(
                value,
                StateInfo::Suspend {
                    at: await_at(types, member, awaitee.map(|(_, ty)| ty))
                        .unwrap_or_else(|| "?".into()),
                    edge: edge_info,
                },
            );
        }
        self.nodes[id as usize] = Node {
            state_offset,
            first_edge,
            edges: count,
            pad: 0,
        };
        self.table.nodes.insert(id, info);
        Some(id)
    }
}

/// Follows the future of type `ty` at `path` to the state machine or fork it
/// is or holds (through pins, at most one pointer, and combinators holding
/// exactly one state machine), pushing the frames of the combinators and of a
/// leaf.
fn resolve(
    types: &Types,
    ty: TypeRef,
    path: Path,
    depth: usize,
    via: &mut Vec<Frame>,
) -> Option<(Target, Path)> {
    if depth > MAX_HOPS {
        via.push(unknown("too deep between two state machines"));
        return None;
    }
    let Some(found) = types.get(ty) else {
        via.push(unknown("a type the DWARF does not describe"));
        return None;
    };
    if fork(types, ty).is_some() {
        return Some((Target::Fork(ty), path));
    }
    match &found.kind {
        Kind::Pointer(target) => {
            let Some(target) = *target else {
                via.push(unknown("a pointer to an unknown type"));
                return None;
            };
            if path.hop {
                via.push(unknown(&format!(
                    "{}: a second pointer between two levels",
                    found.name
                )));
                return None;
            }
            let hopped = Path { hop: true, ..path };
            resolve(types, target, hopped, depth + 1, via)
        }
        Kind::Struct { .. } if found.name.starts_with("core::pin::Pin<") => {
            match types
                .member(ty, "pointer")
                .and_then(|m| Some((m.offset, m.ty?)))
            {
                Some((offset, inner)) => resolve(types, inner, path.add(offset), depth + 1, via),
                None => {
                    via.push(Frame::Future {
                        future: found.name.clone(),
                    });
                    None
                }
            }
        }
        Kind::Struct { .. } if is_state_machine(&found.name) => Some((Target::Machine(ty), path)),
        Kind::Struct { members, .. } => {
            via.push(Frame::Future {
                future: future_name(&found.name),
            });
            let inner: Vec<&Member> = members
                .iter()
                .filter(|m| m.ty.is_some_and(|t| holds_state_machine(types, t)))
                .collect();
            match inner.as_slice() {
                [one] => resolve(types, one.ty?, path.add(one.offset), depth + 1, via),
                _ => None,
            }
        }
        Kind::Other => {
            via.push(Frame::Future {
                future: found.name.clone(),
            });
            None
        }
    }
}

/// A fork's entry in `CHAIN_FORKS` but for its first branch; `None` when an
/// offset is out of the walk's reach.
fn fork_entry(shape: &ForkShape, branches: usize) -> Option<Fork> {
    let (mask_offset, by_ref, mask_size) = shape.mask().unwrap_or((0, false, 0));
    Some(Fork {
        futures: u32::try_from(shape.futures_offset()).ok()?,
        mask_size: u32::try_from(mask_size).ok()?,
        mask_offset: u32::try_from(mask_offset).ok()?,
        mask_by_ref: u32::from(by_ref),
        first_branch: 0,
        branches: u32::try_from(branches).ok()?,
    })
}

/// How the walk tells the branch is pending (its `CHAIN_BRANCHES` entry but
/// for its edge): for `join!`, from its `MaybeDone`'s discriminant; `None`
/// when that has a size the walk does not read, or more variants than
/// `Future`, `Done` and `Gone`.
fn pending_test(branch: &LiveBranch) -> Option<Branch> {
    let Some(discriminant) = &branch.discriminant else {
        return Some(Branch::default());
    };
    if ![1, 2, 4, 8].contains(&discriminant.size) {
        return None;
    }
    let explicit: Vec<u64> = discriminant.others.iter().filter_map(|v| *v).collect();
    let other_default = discriminant.others.iter().any(Option::is_none);
    if explicit.len() > 2 || (other_default && discriminant.future.is_none()) {
        return None;
    }
    let mut others = [0; 2];
    others[..explicit.len()].copy_from_slice(&explicit);
    Some(Branch {
        discr_offset: u32::try_from(discriminant.offset).ok()?,
        discr_size: u32::try_from(discriminant.size).ok()?,
        future: discriminant.future.unwrap_or(0),
        others,
        explicit: explicit.len() as u32,
        future_default: u32::from(discriminant.future.is_none()),
        other_default: u32::from(other_default),
        ..Branch::default()
    })
}

/// A combinator's or leaf's name as names read elsewhere (see
/// [`super::chain`]).
fn future_name(dwarf: &str) -> String {
    match legacy_spelling(dwarf, &ImplNames::default()) {
        Some(legacy) => render::user_name(&legacy).0,
        None => dwarf.to_owned(),
    }
}

/// An unknown frame.
fn unknown(why: &str) -> Frame {
    Frame::Unknown {
        unknown: why.to_owned(),
    }
}
