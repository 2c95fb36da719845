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
//! `tokio::join!` or `tokio::select!` ends the chain as its macro's name
//! (`{"future": "tokio::join!"}`): its pending branches are a tree, which
//! `tracer dump` reads.

use std::collections::{BTreeMap, HashMap};

use tracer_common::chain::{Edge, FIRST_SUSPEND, Node, Site};

use super::{
    chain::{Frame, function_name, holds_state_machine, is_state_machine},
    fork::{await_at, fork},
    layout::CellLayout,
    types::{Kind, Member, TypeRef, Types},
};
use crate::{
    model::awaiting::{ChainTable, EdgeInfo, NodeInfo, StateInfo},
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
    /// The decoding table.
    pub table: ChainTable,
    /// Node ids by state machine type.
    by_type: HashMap<TypeRef, u32>,
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
        }
    }

    /// Empty programs (node id 0 reserved).
    pub fn new() -> Self {
        Self {
            nodes: vec![Node::default()],
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
        self.table.sites.insert(slot, info);
        if edge.next == 0 {
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

    /// The edge from the future of type `ty` at `path` to the state machine it
    /// holds, if any, and its frames.
    fn edge(&mut self, types: &Types, ty: TypeRef, path: Path) -> (Edge, EdgeInfo) {
        let mut info = EdgeInfo::default();
        let Some((machine, path)) = resolve(types, ty, path, 0, &mut info.via) else {
            return (Edge::default(), info);
        };
        let (Ok(pre), Ok(post)) = (u32::try_from(path.pre), u32::try_from(path.post)) else {
            info.via.push(unknown("an offset out of the walk's reach"));
            return (Edge::default(), info);
        };
        let Some(next) = self.node(types, machine) else {
            let name = types.get(machine).map_or("?", |t| t.name.as_str());
            info.via.push(unknown(&format!(
                "{}: no one-byte state in the DWARF",
                function_name(name)
            )));
            return (Edge::default(), info);
        };
        info.next = Some(next);
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
                        next: None,
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

/// Follows the future of type `ty` at `path` to the state machine it is or
/// holds (through pins, at most one pointer, and combinators holding exactly
/// one state machine), pushing the frames of the combinators and of a leaf.
fn resolve(
    types: &Types,
    ty: TypeRef,
    path: Path,
    depth: usize,
    via: &mut Vec<Frame>,
) -> Option<(TypeRef, Path)> {
    if depth > MAX_HOPS {
        via.push(unknown("too deep between two state machines"));
        return None;
    }
    let Some(found) = types.get(ty) else {
        via.push(unknown("a type the DWARF does not describe"));
        return None;
    };
    if let Some(shape) = fork(types, ty) {
        // Its branches are `tracer dump`'s: the live walk reads one state
        // byte a level and ends at the fork.
        via.push(Frame::Future {
            future: shape.name.to_owned(),
        });
        return None;
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
        Kind::Struct { .. } if is_state_machine(&found.name) => Some((ty, path)),
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
