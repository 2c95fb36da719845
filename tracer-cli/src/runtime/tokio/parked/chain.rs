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

use super::types::{Kind, Member, TypeRef, Types};
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

/// The await chain of the future of type `ty` at `address`.
pub fn chain(types: &Types, ty: TypeRef, address: u64, memory: &dyn Memory) -> Vec<Frame> {
    let mut frames = Vec::new();
    walk(types, ty, address, memory, 0, &mut frames);
    frames
}

/// Appends the chain of the future of type `ty` at `address`, `depth` levels down.
fn walk(
    types: &Types,
    ty: TypeRef,
    address: u64,
    memory: &dyn Memory,
    depth: usize,
    out: &mut Vec<Frame>,
) {
    if depth > MAX_DEPTH {
        out.push(unknown(format!("deeper than {MAX_DEPTH} levels")));
        return;
    }
    let Some(found) = types.get(ty) else {
        out.push(unknown("a type the DWARF does not describe".into()));
        return;
    };
    match &found.kind {
        Kind::Pointer(target) => {
            let Some(target) = *target else {
                out.push(unknown("a pointer to an unknown type".into()));
                return;
            };
            match memory.uint(address, 8) {
                Some(0) | None => out.push(unknown(format!("unreadable {}", found.name))),
                Some(pointee) => walk(types, target, pointee, memory, depth + 1, out),
            }
        }
        Kind::Struct { .. } if found.name.starts_with("core::pin::Pin<") => {
            match types
                .member(ty, "pointer")
                .and_then(|m| Some((m.offset, m.ty?)))
            {
                Some((offset, inner)) => walk(types, inner, address + offset, memory, depth, out),
                None => out.push(Frame::Future {
                    future: found.name.clone(),
                }),
            }
        }
        Kind::Struct { .. } if is_state_machine(&found.name) => {
            state_machine(types, ty, address, memory, depth, out)
        }
        Kind::Struct { members, .. } => {
            out.push(Frame::Future {
                future: future_name(&found.name),
            });
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
        Kind::Other => out.push(Frame::Future {
            future: found.name.clone(),
        }),
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
    out: &mut Vec<Frame>,
) {
    let Some(found) = types.get(ty) else { return };
    let function = function_name(&found.name);
    let Kind::Struct {
        variants: Some(variants),
        ..
    } = &found.kind
    else {
        out.push(unknown(format!("{function}: no state in the DWARF")));
        return;
    };
    let Some(state) = memory.uint(address + variants.discr_offset, variants.discr_size) else {
        out.push(unknown(format!("{function}: state unreadable")));
        return;
    };
    let Some((_, variant)) = variants.variants.iter().find(|(v, _)| *v == Some(state)) else {
        out.push(unknown(format!(
            "{function}: state {state} unknown to the DWARF"
        )));
        return;
    };
    let named = match state {
        UNRESUMED => Some("unresumed"),
        RETURNED => Some("returned"),
        PANICKED => Some("panicked"),
        _ => None,
    };
    if let Some(state) = named {
        out.push(Frame::State {
            function,
            state: state.into(),
        });
        return;
    }
    out.push(Frame::Await {
        function: function.clone(),
        at: variant.declared_at.clone().unwrap_or_else(|| "?".into()),
    });
    let awaitee = variant
        .ty
        .and_then(|suspend| types.member(suspend, "__awaitee"))
        .and_then(|m| Some((m.offset, m.ty?)));
    match awaitee {
        Some((offset, awaitee)) => walk(
            types,
            awaitee,
            address + variant.offset + offset,
            memory,
            depth + 1,
            out,
        ),
        None => out.push(unknown(format!("{function}: no __awaitee"))),
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
                Frame::Await {
                    function: "app::outer".into(),
                    at: "src/main.rs:7".into()
                },
                Frame::Await {
                    function: "app::inner".into(),
                    at: "src/main.rs:3".into()
                },
                Frame::Future {
                    future: "tokio::time::sleep::Sleep".into()
                },
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
            matches!(&frames[1], Frame::Unknown { unknown } if unknown.contains("state 9")),
            "{frames:?}"
        );
    }

    #[test]
    fn an_unresumed_state_machine_says_so() {
        let memory = memory(&[(0x1000, &[0])]);
        assert_eq!(
            chain(&types(), 41, 0x1000, &memory),
            vec![Frame::State {
                function: "app::outer".into(),
                state: "unresumed".into()
            }]
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
