//! Decoding a Pending poll's await chain: the state bytes the BPF walk read at
//! the poll's return (one per async level, see [`tracer_common::chain`]),
//! against the chain tables userspace compiled from the type DWARF for each
//! poll site. Only states the DWARF knows are accepted: any other byte ends the
//! chain with an [`AwaitFrame::Unknown`].

use std::collections::{BTreeMap, HashMap};

use tracer_common::chain::MAX_LEVELS;

use super::event::AwaitFrame;

/// How one future leads to the next state machine: the frames of what lies
/// between (combinators such as `Timeout<F>`, or the leaf future), then the
/// next state machine's node, if the walk goes on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EdgeInfo {
    /// Frames shown before the next level: combinators, or the leaf.
    pub via: Vec<AwaitFrame>,
    /// The next state machine, when there is one (a node id).
    pub next: Option<u32>,
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

/// Every poll site's chain, for decoding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainTable {
    /// By poll-site slot: from the task's future to its first state machine.
    pub sites: HashMap<u32, EdgeInfo>,
    /// By node id.
    pub nodes: HashMap<u32, NodeInfo>,
}

impl ChainTable {
    /// The await chain of a poll at site `slot` whose walk read `levels` state
    /// bytes (`states`, the outermost in the lowest byte); `None` when the site
    /// has no chain table.
    pub fn decode(&self, slot: u32, levels: u32, states: u64) -> Option<Vec<AwaitFrame>> {
        let root = self.sites.get(&slot)?;
        let mut frames = root.via.clone();
        let mut next = root.next;
        let levels = (levels as usize).min(MAX_LEVELS);
        let bytes = states.to_le_bytes();
        for (level, state) in bytes.iter().take(levels).enumerate() {
            let Some(node) = next.and_then(|id| self.nodes.get(&id)) else {
                frames.push(unknown(format!(
                    "the walk read more levels than the DWARF has (level {level})"
                )));
                return Some(frames);
            };
            match node.states.get(state) {
                None => {
                    frames.push(unknown(format!(
                        "{}: state {state} unknown to the DWARF",
                        node.function
                    )));
                    return Some(frames);
                }
                Some(StateInfo::Named(name)) => {
                    frames.push(AwaitFrame::State {
                        function: node.function.clone(),
                        state: (*name).into(),
                    });
                    return Some(frames);
                }
                Some(StateInfo::Suspend { at, edge }) => {
                    frames.push(AwaitFrame::Await {
                        function: node.function.clone(),
                        at: at.clone(),
                    });
                    frames.extend(edge.via.iter().cloned());
                    next = edge.next;
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
        Some(frames)
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
                },
            },
        );
        ChainTable {
            sites: HashMap::from([(
                7,
                EdgeInfo {
                    via: Vec::new(),
                    next: Some(1),
                },
            )]),
            nodes: HashMap::from([(1, outer), (2, inner)]),
        }
    }

    #[test]
    fn state_bytes_decode_outermost_first_through_a_combinator_to_the_leaf() {
        assert_eq!(
            table().decode(7, 2, 0x0403),
            Some(vec![
                await_at("app::outer", "src/main.rs:10"),
                future("tokio::time::timeout::Timeout<app::inner>"),
                await_at("app::inner", "src/main.rs:4"),
                future("tokio::sync::oneshot::Receiver<u64>"),
            ])
        );
        assert_eq!(
            table().decode(7, 2, 0x0303).unwrap().last(),
            Some(&future("tokio::time::sleep::Sleep"))
        );
    }

    #[test]
    fn a_state_the_dwarf_does_not_know_ends_the_chain() {
        let frames = table().decode(7, 2, 0x0903).unwrap();
        assert_eq!(frames.len(), 3);
        assert!(
            matches!(&frames[2], AwaitFrame::Unknown { unknown } if unknown.contains("state 9")),
            "{frames:?}"
        );
    }

    #[test]
    fn an_unresumed_level_and_a_short_walk_say_so() {
        assert_eq!(
            table().decode(7, 2, 0x0003).unwrap()[2],
            AwaitFrame::State {
                function: "app::inner".into(),
                state: "unresumed".into()
            }
        );
        let short = table().decode(7, 1, 0x03).unwrap();
        assert!(
            matches!(short.last(), Some(AwaitFrame::Unknown { unknown }) if unknown.contains("unreadable")),
            "{short:?}"
        );
    }

    #[test]
    fn a_site_without_a_table_has_no_chain() {
        assert_eq!(table().decode(8, 1, 3), None);
    }
}
