//! The vtable → drop-glue route to a task's future type, for builds whose
//! symbols do not carry it (legacy mangling keeps no generics in
//! `raw::poll::<T, S>`'s own name, but the drop glue's name spells its type out).
//!
//! From one `raw::poll` copy: its task vtable is the word that holds its address
//! (a relocation's target in a PIE); the vtable's other functions but `schedule`
//! are specific to the same `T`; their direct calls, up to [`MAX_DEPTH`] deep
//! (decoded with `iced-x86`), reach the drop glue of the task cell,
//! `core::ptr::drop_in_place<…task::core::Cell<T, S>…>` (or of `Stage<T>`,
//! `CoreStage<T>`, `Core<T, S>`), whose name holds `T`.

use std::collections::{HashMap, HashSet};

use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind};

use crate::target::image::Image;
use crate::target::symbols::path_without_generics;

/// How deep calls are followed from the vtable's functions.
pub const MAX_DEPTH: usize = 3;

/// Function words of Tokio's task `Vtable`, in declaration order: poll, schedule,
/// dealloc, try_read_output, drop_join_handle_slow, drop_abort_handle, shutdown.
const VTABLE_FUNCTIONS: u64 = 7;
/// Index of `schedule`: it is specific to the scheduler `S`, not to `T`.
const SCHEDULE_SLOT: u64 = 1;

/// Bytes decoded of a function whose symbol has no size.
const UNSIZED_FUNCTION_BYTES: u64 = 4096;

/// Most functions decoded for one site: enough for three levels of the small
/// functions a task vtable reaches, a bound for pathological code.
const MAX_DECODED: usize = 256;

/// Task types whose drop glue names the future (`Cell<T, S>` and `Core<T, S>`
/// also name the scheduler).
const TASK_TYPES: [&str; 4] = [
    "tokio::runtime::task::core::Cell<",
    "tokio::runtime::task::core::CoreStage<",
    "tokio::runtime::task::core::Stage<",
    "tokio::runtime::task::core::Core<",
];

/// What the drop glue said: the future type, and the scheduler type when the
/// glue names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlueType {
    /// `T`, as the symbol spells it.
    pub future: String,
    /// `S`, when the glue is `Cell<T, S>` or `Core<T, S>`.
    pub scheduler: Option<String>,
}

/// Why the route found no type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    /// No word in the file holds the `raw::poll` address: no vtable found.
    NoVtable,
    /// The vtables' functions reach no drop glue of a task type.
    NoDropGlue,
    /// They reach drop glue of several task types (folded by the linker), and
    /// nothing tells which is this vtable's.
    Ambiguous,
}

/// One task vtable's address and its future type (or why it has none).
pub type VtableType = (u64, Result<GlueType, Miss>);

/// The task vtables of each `raw::poll` address in `polls` (file virtual
/// addresses), each with its `T` or why none was found. Several vtables share a
/// `raw::poll` where the linker folded identical copies.
pub fn future_types(
    image: &Image<'_>,
    polls: &[u64],
) -> HashMap<u64, Result<Vec<VtableType>, Miss>> {
    let targets: HashSet<u64> = polls.iter().copied().collect();
    let vtables = image.words_holding(&targets);
    let mut demangled = HashMap::new();
    polls
        .iter()
        .map(|poll| {
            let found = match vtables.get(poll) {
                None => Err(Miss::NoVtable),
                Some(vtables) => Ok(vtables
                    .iter()
                    .map(|vtable| {
                        let glue = from_vtable(image, *vtable, &mut demangled);
                        (*vtable, glue)
                    })
                    .collect()),
            };
            (*poll, found)
        })
        .collect()
}

/// The task type whose drop glue the vtable at `vtable` reaches.
///
/// Every drop glue of a task type within [`MAX_DEPTH`] calls is collected: the
/// linker folds identical functions of different types (one address, several
/// names, or one name for code several vtables share), so one glue may name
/// another type. One type found is the answer; of several, the one whose own
/// code (the state machine's `poll`, the closure's body: a function whose path
/// is the type's) is among the functions reached, when exactly one is; else none.
fn from_vtable(
    image: &Image<'_>,
    vtable: u64,
    demangled: &mut HashMap<u64, Vec<String>>,
) -> Result<GlueType, Miss> {
    let mut level: Vec<u64> = (0..VTABLE_FUNCTIONS)
        .filter(|slot| *slot != SCHEDULE_SLOT)
        .filter_map(|slot| image.word(vtable + 8 * slot))
        .filter(|address| image.function(*address).is_some())
        .collect();
    let mut seen: HashSet<u64> = level.iter().copied().collect();
    let mut candidates: Vec<GlueType> = Vec::new();
    for depth in 0..=MAX_DEPTH {
        for address in &level {
            for glue in glue_types(image, *address, demangled) {
                if !candidates.iter().any(|known| known.future == glue.future) {
                    candidates.push(glue);
                }
            }
        }
        if depth == MAX_DEPTH {
            break;
        }
        let mut next = Vec::new();
        for address in &level {
            if seen.len() > MAX_DECODED {
                break;
            }
            for target in direct_calls(image, *address) {
                if seen.insert(target) {
                    next.push(target);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    // Folded glue of a blocking closure and of a future (all zero-sized, say)
    // is told apart by the scheduler: only the blocking pool's tasks are
    // `BlockingTask`s, and its tasks are nothing else.
    if candidates.len() > 1
        && let Some(blocking) = blocking_scheduler(image, vtable)
    {
        candidates.retain(|glue| is_blocking_task(&glue.future) == blocking);
        if candidates.is_empty() {
            return Err(Miss::Ambiguous);
        }
    }
    if candidates.len() <= 1 {
        return candidates.pop().ok_or(Miss::NoDropGlue);
    }
    let reached: HashSet<String> = seen
        .iter()
        .flat_map(|address| image.names(*address))
        .map(|name| path_without_generics(&format!("{:#}", rustc_demangle::demangle(name))))
        .collect();
    let mut owned = candidates.into_iter().filter(|glue| {
        let own = path_without_generics(own_code(&glue.future));
        reached.contains(&own) || reached.contains(&format!("{own}::poll"))
    });
    match (owned.next(), owned.next()) {
        (Some(one), None) => Ok(one),
        _ => Err(Miss::Ambiguous),
    }
}

/// Tokio's blocking pool scheduler's `schedule`, as its legacy symbol demangles
/// without generics.
const BLOCKING_SCHEDULE: &str = "tokio::runtime::blocking::schedule::BlockingSchedule::schedule";

/// Whether the task vtable's `schedule` is the blocking pool's (it, or the
/// function it calls straight), `None` when the vtable has no `schedule` word.
fn blocking_scheduler(image: &Image<'_>, vtable: u64) -> Option<bool> {
    let schedule = image.word(vtable + 8 * SCHEDULE_SLOT)?;
    image.function(schedule)?;
    let mut functions = vec![schedule];
    functions.extend(direct_calls(image, schedule));
    Some(functions.iter().flat_map(|f| image.names(*f)).any(|name| {
        path_without_generics(&format!("{:#}", rustc_demangle::demangle(name))) == BLOCKING_SCHEDULE
    }))
}

/// Whether a future type is Tokio's wrapper of a `spawn_blocking` closure.
fn is_blocking_task(future: &str) -> bool {
    future.starts_with("tokio::runtime::blocking::task::BlockingTask<")
}

/// The type whose code runs the future: the closure inside Tokio's
/// `BlockingTask<F>`, the future itself otherwise.
fn own_code(future: &str) -> &str {
    future
        .strip_prefix("tokio::runtime::blocking::task::BlockingTask<")
        .and_then(|inner| inner.strip_suffix('>'))
        .unwrap_or(future)
}

/// The targets of the direct calls and tail jumps of the function at `address`
/// (straight, or through a GOT slot of the binary) that start another function.
pub fn direct_calls(image: &Image<'_>, address: u64) -> Vec<u64> {
    let Some(code) = image.code(address, UNSIZED_FUNCTION_BYTES) else {
        return Vec::new();
    };
    let end = address + code.len() as u64;
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut targets = Vec::new();
    for instruction in &mut decoder {
        if !matches!(instruction.mnemonic(), Mnemonic::Call | Mnemonic::Jmp) {
            continue;
        }
        // `call f`, or through the GOT (`call [rip + slot]`, as debug builds do).
        let target = match instruction.op0_kind() {
            OpKind::NearBranch64 => instruction.near_branch_target(),
            OpKind::Memory if instruction.is_ip_rel_memory_operand() => {
                match image.word(instruction.ip_rel_memory_address()) {
                    Some(target) => target,
                    None => continue,
                }
            }
            _ => continue,
        };
        let inside = (address..end).contains(&target);
        if !inside && image.function(target).is_some() && !targets.contains(&target) {
            targets.push(target);
        }
    }
    targets
}

/// The task types of the function at `address`, if it is a task type's drop
/// glue: one, or several where the linker folded glue of several types.
fn glue_types(
    image: &Image<'_>,
    address: u64,
    demangled: &mut HashMap<u64, Vec<String>>,
) -> Vec<GlueType> {
    let names = demangled.entry(address).or_insert_with(|| {
        image
            .names(address)
            .into_iter()
            .filter(|name| name.contains("drop_in_place"))
            .map(|name| format!("{:#}", rustc_demangle::demangle(name)))
            .collect()
    });
    let mut types: Vec<GlueType> = Vec::new();
    for glue in names.iter().filter_map(|name| parse_glue(name)) {
        if !types.iter().any(|known| known.future == glue.future) {
            types.push(glue);
        }
    }
    types
}

/// `T` (and `S`) from a drop-glue name such as
/// `core::ptr::drop_in_place<alloc::boxed::Box<tokio::runtime::task::core::Cell<T,S>>>`.
pub fn parse_glue(name: &str) -> Option<GlueType> {
    let canonical = name.replace("::<", "<");
    let rest = canonical.strip_prefix("core::ptr::drop_in_place<")?;
    let (marker, at) = TASK_TYPES
        .iter()
        .filter_map(|marker| Some((*marker, rest.find(marker)?)))
        .min_by_key(|(_, at)| *at)?;
    let args = generic_args(&rest[at + marker.len()..])?;
    let future = args.first()?.trim().to_owned();
    let names_scheduler = marker.ends_with("::Cell<") || marker.ends_with("::Core<");
    let scheduler = args
        .get(1)
        .filter(|_| names_scheduler)
        .map(|s| s.trim().to_owned());
    Some(GlueType { future, scheduler })
}

/// The comma-separated arguments before the `>` that closes a group opened just
/// before `text`.
pub fn generic_args(text: &str) -> Option<Vec<&str>> {
    let mut depth = 1usize;
    let mut args = Vec::new();
    let mut start = 0;
    for (index, c) in text.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => {
                depth -= 1;
                if depth == 0 {
                    args.push(&text[start..index]);
                    return Some(args);
                }
            }
            ',' if depth == 1 => {
                args.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_future_and_scheduler_come_from_the_cell_glue() {
        let glue = parse_glue(
            "core::ptr::drop_in_place<alloc::boxed::Box<tokio::runtime::task::core::Cell<app::f<(),u8>::{{closure}},alloc::sync::Arc<tokio::runtime::scheduler::current_thread::Handle>>>>",
        )
        .unwrap();
        assert_eq!(glue.future, "app::f<(),u8>::{{closure}}");
        assert_eq!(
            glue.scheduler.as_deref(),
            Some("alloc::sync::Arc<tokio::runtime::scheduler::current_thread::Handle>")
        );
    }

    #[test]
    fn stage_glue_names_the_future_only_and_other_glue_nothing() {
        let glue = parse_glue(
            "core::ptr::drop_in_place::<tokio::runtime::task::core::Stage<core::future::pending::Pending<()>>>",
        )
        .unwrap();
        assert_eq!(glue.future, "core::future::pending::Pending<()>");
        assert_eq!(glue.scheduler, None);
        assert_eq!(
            parse_glue("core::ptr::drop_in_place<alloc::vec::Vec<u8>>"),
            None
        );
        assert_eq!(
            parse_glue("tokio::runtime::task::core::Cell<T,S>::new"),
            None
        );
    }
}
