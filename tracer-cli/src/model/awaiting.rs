//! Decoding a Pending poll's await chain: the state bytes the BPF walk read at
//! the poll's return (one per async level, see [`tracer_common::chain`]),
//! against the chain tables userspace compiled from the type DWARF for each
//! poll site. Only states the DWARF knows are accepted: any other byte ends the
//! chain with an [`AwaitFrame::Unknown`]. A chain that ends at a `join!` or
//! `select!` comes as a tree record, whose segments (the pending branches'
//! chains) decode the same way, each from its branch's start.

use std::collections::{BTreeMap, HashMap};

use tracer_common::{
    chain::MAX_LEVELS,
    fork::{self, MAX_SEGMENTS, Segment, TreeEvent},
};

use super::event::{AwaitBranch, AwaitFrame};

/// How one future leads to the next state machine: the frames of what lies
/// between (combinators such as `Timeout<F>`, or the leaf future), then the
/// next state machine's node, or the fork, if the walk goes on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EdgeInfo {
    /// Frames shown before the next level: combinators, or the leaf.
    pub via: Vec<AwaitFrame>,
    /// The next state machine, when there is one (a node id).
    pub next: Option<u32>,
    /// The `join!` or `select!` it leads to instead (a fork id).
    pub fork: Option<u32>,
}

/// What one state of a state machine means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateInfo {
    /// Unresumed, returned or panicked: the chain ends.
    Named(&'static str),
    /// Suspended at an `.await` (`file:line`), awaiting what `edge` leads to.
    Suspend {
        /// The `.await`'s `file:line`.
        at: String,
        /// To the awaited future.
        edge: EdgeInfo,
    },
}

/// One async state machine type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its function (`my_app::consumer`).
    pub function: String,
    /// Its states as the DWARF knows them, by value.
    pub states: BTreeMap<u8, StateInfo>,
}

/// One `tokio::join!` or `tokio::select!` type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForkInfo {
    /// `tokio::join!` or `tokio::select!`.
    pub name: &'static str,
    /// From each branch's future (by position) to its first state machine.
    pub branches: Vec<EdgeInfo>,
}

/// Every poll site's chain, for decoding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainTable {
    /// By poll-site slot: from the task's future to its first state machine.
    pub sites: HashMap<u32, EdgeInfo>,
    /// By node id.
    pub nodes: HashMap<u32, NodeInfo>,
    /// By fork id.
    pub forks: HashMap<u32, ForkInfo>,
}

/// A decoded await tree, and how many of its parts could not be read (each
/// an [`AwaitFrame::Unknown`] in it): pending branches the record had no room
/// for, a fork wider than the walk looks, an unreadable fork, a branch in a
/// variant the DWARF does not know, a walk out of steps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    /// The chain, ending with the fork and its branches.
    pub frames: Vec<AwaitFrame>,
    /// Parts not read.
    pub gaps: u64,
}

impl ChainTable {
    /// The await chain of a poll at site `slot` whose walk read `levels` state
    /// bytes (`states`, the outermost in the lowest byte); `None` when the site
    /// has no chain table. A walk that reaches a fork sends a tree record
    /// instead; one that could not (no scratch space) ends at the fork with
    /// a gap.
    pub fn decode(&self, slot: u32, levels: u32, states: u64) -> Option<Tree> {
        let (mut frames, fork) = self.chain(self.sites.get(&slot)?, levels, states);
        let mut gaps = 0;
        if let Some(fork) = fork {
            gaps += 1;
            frames.push(unknown(format!(
                "{}: its branches were not read",
                self.fork_name(fork)
            )));
        }
        Some(Tree { frames, gaps })
    }

    /// The await tree of a poll at site `slot` whose walk ended at a fork
    /// (see [`tracer_common::fork`]); `None` when the site has no chain table.
    pub fn decode_tree(&self, slot: u32, tree: &TreeEvent) -> Option<Tree> {
        let root = self.sites.get(&slot)?;
        let count = (tree.segments as usize).min(MAX_SEGMENTS);
        let mut decoded = Tree::default();
        decoded.frames = self.segment(&tree.segment[..count], 0, root, &mut decoded.gaps);
        if tree.truncated != 0 {
            decoded.gaps += 1;
            decoded.frames.push(unknown(format!(
                "the walk's {} steps ran out before the tree was read",
                fork::MAX_STEPS
            )));
        }
        Some(decoded)
    }

    /// The frames of segment `index` of `segments`, whose chain starts with
    /// `start`, with the forks it ends at and their branches (counting what
    /// could not be read in `gaps`).
    fn segment(
        &self,
        segments: &[Segment],
        index: usize,
        start: &EdgeInfo,
        gaps: &mut u64,
    ) -> Vec<AwaitFrame> {
        let Some(segment) = segments.get(index) else {
            return Vec::new();
        };
        if segment.end == fork::END_VARIANT_UNKNOWN {
            *gaps += 1;
            return vec![unknown(if segment.states == u64::MAX {
                "its MaybeDone is unreadable".to_owned()
            } else {
                format!(
                    "its MaybeDone is in variant {}, unknown to the DWARF",
                    segment.states
                )
            })];
        }
        let (mut frames, fork) = self.chain(start, u32::from(segment.levels), segment.states);
        if segment.end == fork::END_STEPS {
            // Counted once, with the record's `truncated`.
            frames.push(unknown(
                "not read to its end: the walk ran out of steps".into(),
            ));
        }
        let Some(id) = fork else {
            return frames;
        };
        let name = self.fork_name(id);
        match segment.end {
            fork::END_FORK | fork::END_WIDE => {}
            fork::END_FORK_UNREADABLE => {
                *gaps += 1;
                frames.push(unknown(format!("{name}: its branches are unreadable")));
                return frames;
            }
            _ => {
                *gaps += 1;
                frames.push(unknown(format!("{name}: unreadable")));
                return frames;
            }
        }
        let info = self.forks.get(&id);
        let mut branches: Vec<AwaitBranch> = segments
            .iter()
            .enumerate()
            .skip(index + 1)
            .filter(|(_, s)| usize::from(s.parent) == index)
            .map(|(child, s)| {
                let position = usize::from(s.branch);
                let awaiting = match info.and_then(|f| f.branches.get(position)) {
                    Some(start) => self.segment(segments, child, start, gaps),
                    None => {
                        *gaps += 1;
                        vec![unknown(format!(
                            "{name} has no branch {position} in the DWARF"
                        ))]
                    }
                };
                AwaitBranch {
                    branch: position,
                    awaiting,
                }
            })
            .collect();
        for position in (0..32).filter(|p| segment.unread & (1 << p) != 0) {
            *gaps += 1;
            branches.push(AwaitBranch {
                branch: position,
                awaiting: vec![unknown(format!(
                    "pending, not read: a record holds {MAX_SEGMENTS} chains"
                ))],
            });
        }
        branches.sort_by_key(|b| b.branch);
        frames.push(AwaitFrame::Fork {
            future: name.to_owned(),
            branches,
        });
        if segment.end == fork::END_WIDE {
            *gaps += 1;
            frames.push(unknown(format!(
                "{name}: branches after the first {} not looked at",
                fork::MAX_FORK_BRANCHES
            )));
        }
        frames
    }

    /// A fork's macro name.
    fn fork_name(&self, id: u32) -> &'static str {
        self.forks.get(&id).map_or("a fork", |f| f.name)
    }

    /// The chain from `start` through `levels` state bytes (`states`, the
    /// outermost in the lowest byte), and the fork it ends at, if any.
    fn chain(&self, start: &EdgeInfo, levels: u32, states: u64) -> (Vec<AwaitFrame>, Option<u32>) {
        let mut frames = start.via.clone();
        let (mut next, mut fork) = (start.next, start.fork);
        let levels = (levels as usize).min(MAX_LEVELS);
        let bytes = states.to_le_bytes();
        for (level, state) in bytes.iter().take(levels).enumerate() {
            let Some(node) = next.and_then(|id| self.nodes.get(&id)) else {
                frames.push(unknown(format!(
                    "the walk read more levels than the DWARF has (level {level})"
                )));
                return (frames, None);
            };
            match node.states.get(state) {
                None => {
                    frames.push(unknown(format!(
                        "{}: state {state} unknown to the DWARF",
                        node.function
                    )));
                    return (frames, None);
                }
                Some(StateInfo::Named(name)) => {
                    frames.push(AwaitFrame::State {
                        function: node.function.clone(),
                        state: (*name).into(),
                    });
                    return (frames, None);
                }
                Some(StateInfo::Suspend { at, edge }) => {
                    frames.push(AwaitFrame::Await {
                        function: node.function.clone(),
                        at: at.clone(),
                    });
                    frames.extend(edge.via.iter().cloned());
                    (next, fork) = (edge.next, edge.fork);
                }
            }
        }
        if next.is_some() {
            frames.push(unknown(if levels >= MAX_LEVELS {
                format!("deeper than {MAX_LEVELS} levels")
            } else {
                "the next level was unreadable".to_owned()
            }));
        }
        (frames, fork)
    }
}

/// An unknown frame.
fn unknown(why: String) -> AwaitFrame {
    AwaitFrame::Unknown { unknown: why }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn await_at(function: &str, at: &str) -> AwaitFrame {
        AwaitFrame::Await {
            function: function.into(),
            at: at.into(),
        }
    }

    fn future(name: &str) -> AwaitFrame {
        AwaitFrame::Future {
            future: name.into(),
        }
    }

    /// Site 7: `app::outer` (node 1) awaits at line 10 a `Timeout` of
    /// `app::inner` (node 2), which awaits a `Sleep` at line 3 and a
    /// `Receiver` at line 4.
    fn table() -> ChainTable {
        let mut inner = NodeInfo {
            function: "app::inner".into(),
            states: BTreeMap::new(),
        };
        inner.states.insert(0, StateInfo::Named("unresumed"));
        inner.states.insert(
            3,
            StateInfo::Suspend {
                at: "src/main.rs:3".into(),
                edge: EdgeInfo {
                    via: vec![future("tokio::time::sleep::Sleep")],
                    next: None,
                    fork: None,
                },
            },
        );
        inner.states.insert(
            4,
            StateInfo::Suspend {
                at: "src/main.rs:4".into(),
                edge: EdgeInfo {
                    via: vec![future("tokio::sync::oneshot::Receiver<u64>")],
                    next: None,
                    fork: None,
                },
            },
        );
        let mut outer = NodeInfo {
            function: "app::outer".into(),
            states: BTreeMap::new(),
        };
        outer.states.insert(
            3,
            StateInfo::Suspend {
                at: "src/main.rs:10".into(),
                edge: EdgeInfo {
                    via: vec![future("tokio::time::timeout::Timeout<app::inner>")],
                    next: Some(2),
                    fork: None,
                },
            },
        );
        ChainTable {
            sites: HashMap::from([(
                7,
                EdgeInfo {
                    via: Vec::new(),
                    next: Some(1),
                    fork: None,
                },
            )]),
            nodes: HashMap::from([(1, outer), (2, inner)]),
            forks: HashMap::new(),
        }
    }

    #[test]
    fn state_bytes_decode_outermost_first_through_a_combinator_to_the_leaf() {
        assert_eq!(
            table().decode(7, 2, 0x0403).map(|tree| tree.frames),
            Some(vec![
                await_at("app::outer", "src/main.rs:10"),
                future("tokio::time::timeout::Timeout<app::inner>"),
                await_at("app::inner", "src/main.rs:4"),
                future("tokio::sync::oneshot::Receiver<u64>"),
            ])
        );
        assert_eq!(
            table().decode(7, 2, 0x0303).unwrap().frames.last(),
            Some(&future("tokio::time::sleep::Sleep"))
        );
    }

    #[test]
    fn a_state_the_dwarf_does_not_know_ends_the_chain() {
        let frames = table().decode(7, 2, 0x0903).unwrap().frames;
        assert_eq!(frames.len(), 3);
        assert!(
            matches!(&frames[2], AwaitFrame::Unknown { unknown } if unknown.contains("state 9")),
            "{frames:?}"
        );
    }

    #[test]
    fn an_unresumed_level_and_a_short_walk_say_so() {
        assert_eq!(
            table().decode(7, 2, 0x0003).unwrap().frames[2],
            AwaitFrame::State {
                function: "app::inner".into(),
                state: "unresumed".into()
            }
        );
        let short = table().decode(7, 1, 0x03).unwrap().frames;
        assert!(
            matches!(short.last(), Some(AwaitFrame::Unknown { unknown }) if unknown.contains("unreadable")),
            "{short:?}"
        );
    }

    #[test]
    fn a_site_without_a_table_has_no_chain() {
        assert_eq!(table().decode(8, 1, 3), None);
    }

    /// `table()` and site 9: `app::joiner` (node 3) awaits at line 20 a
    /// `join!` (fork 1) whose branch 0 is `app::inner` (node 2) and branch 1
    /// a `Receiver`.
    fn forked() -> ChainTable {
        let mut table = table();
        let mut joiner = NodeInfo {
            function: "app::joiner".into(),
            states: BTreeMap::new(),
        };
        joiner.states.insert(
            3,
            StateInfo::Suspend {
                at: "src/main.rs:20".into(),
                edge: EdgeInfo {
                    fork: Some(1),
                    ..EdgeInfo::default()
                },
            },
        );
        table.nodes.insert(3, joiner);
        table.sites.insert(
            9,
            EdgeInfo {
                next: Some(3),
                ..EdgeInfo::default()
            },
        );
        table.forks.insert(
            1,
            ForkInfo {
                name: "tokio::join!",
                branches: vec![
                    EdgeInfo {
                        next: Some(2),
                        ..EdgeInfo::default()
                    },
                    EdgeInfo {
                        via: vec![future("tokio::sync::oneshot::Receiver<u64>")],
                        ..EdgeInfo::default()
                    },
                ],
            },
        );
        table
    }

    /// A tree record of site 9 with `segments` after the root's.
    fn tree(segments: &[Segment]) -> TreeEvent {
        let mut record = TreeEvent {
            event: tracer_common::RawEvent::at(0, 0, tracer_common::RawKind::PollEnd, 1, 3, 0),
            segments: 1 + segments.len() as u32,
            truncated: 0,
            segment: [Segment::default(); MAX_SEGMENTS],
        };
        record.segment[0] = Segment {
            states: 3,
            levels: 1,
            end: fork::END_FORK,
            ..Segment::default()
        };
        record.segment[1..=segments.len()].copy_from_slice(segments);
        record
    }

    fn branch(branch: u8, levels: u8, states: u64) -> Segment {
        Segment {
            states,
            branch,
            levels,
            ..Segment::default()
        }
    }

    #[test]
    fn a_tree_record_decodes_each_pending_branch_from_its_own_start() {
        let decoded = forked()
            .decode_tree(9, &tree(&[branch(0, 1, 3), branch(1, 0, 0)]))
            .unwrap();
        assert_eq!(decoded.gaps, 0);
        assert_eq!(
            decoded.frames,
            vec![
                await_at("app::joiner", "src/main.rs:20"),
                AwaitFrame::Fork {
                    future: "tokio::join!".into(),
                    branches: vec![
                        AwaitBranch {
                            branch: 0,
                            awaiting: vec![
                                await_at("app::inner", "src/main.rs:3"),
                                future("tokio::time::sleep::Sleep"),
                            ],
                        },
                        AwaitBranch {
                            branch: 1,
                            awaiting: vec![future("tokio::sync::oneshot::Receiver<u64>")],
                        },
                    ],
                },
            ]
        );
    }

    #[test]
    fn what_the_tree_walk_could_not_read_is_a_counted_unknown_never_a_guess() {
        let mut record = tree(&[Segment {
            states: 9,
            end: fork::END_VARIANT_UNKNOWN,
            ..branch(0, 0, 0)
        }]);
        record.segment[0].unread = 1 << 1;
        record.truncated = 1;
        let decoded = forked().decode_tree(9, &record).unwrap();
        assert_eq!(decoded.gaps, 3, "{:?}", decoded.frames);
        let AwaitFrame::Fork { branches, .. } = &decoded.frames[1] else {
            panic!("{:?}", decoded.frames);
        };
        let unknown = |b: &AwaitBranch| match b.awaiting.as_slice() {
            [AwaitFrame::Unknown { unknown }] => unknown.clone(),
            other => panic!("{other:?}"),
        };
        assert!(unknown(&branches[0]).contains("variant 9"), "{branches:?}");
        assert!(unknown(&branches[1]).contains("not read"), "{branches:?}");
        assert!(
            matches!(decoded.frames.last(), Some(AwaitFrame::Unknown { unknown }) if unknown.contains("steps")),
            "{:?}",
            decoded.frames
        );
    }

    #[test]
    fn an_unreadable_fork_says_so() {
        let mut record = tree(&[]);
        record.segment[0].end = fork::END_FORK_UNREADABLE;
        let decoded = forked().decode_tree(9, &record).unwrap();
        assert_eq!(decoded.gaps, 1);
        assert!(
            matches!(decoded.frames.last(), Some(AwaitFrame::Unknown { unknown }) if unknown.contains("tokio::join!: its branches are unreadable")),
            "{:?}",
            decoded.frames
        );
    }
}
