//! The Tokio adapter: probe sites checked against Tokio 1.54's task internals.
//!
//! | event | function | header |
//! | --- | --- | --- |
//! | before / after | `task::raw::poll` (one copy per future type) | arg 0 |
//! | spawn | `task::list::OwnedTasks<S>::bind_inner` | arg 1 |
//! | spawn (where `bind_inner` was inlined) | `task::list::OwnedTasks<S>::bind`, `bind_local` | return value |
//! | spawn_local | `task::list::LocalOwnedTasks<S>::bind` | return value |
//! | spawn_blocking | `blocking::pool::Spawner::spawn_task` | arg 1 |
//! | resolve | `task::harness::Harness<T,S>::complete` | arg 0 |
//! | destroy | `task::raw::dealloc`, `drop_in_place::<Box<task::core::Cell<T,S>>>` | arg 0 |

use super::{HeaderLayout, Probe, RuntimeAdapter, SpawnKindTag};

/// Tokio 1.x, multi-thread and current-thread schedulers, `LocalSet`, blocking pool.
pub struct Tokio;

const BOXED_CELL_DROP: &str =
    "core::ptr::drop_in_place<alloc::boxed::Box<tokio::runtime::task::core::Cell<";

impl RuntimeAdapter for Tokio {
    fn name(&self) -> &'static str {
        "tokio"
    }

    fn symbol_hint(&self) -> &'static [u8] {
        b"tokio"
    }

    fn probe_for(&self, demangled: &str, path: &str) -> Option<Probe> {
        Some(match path {
            "tokio::runtime::task::raw::poll" => Probe::Poll,
            "tokio::runtime::task::list::OwnedTasks::bind_inner" => Probe::Spawn {
                kind: SpawnKindTag::Task,
                arg: 1,
            },
            // `bind_inner` is inlined into these in some builds (seen in a release
            // build without tokio_unstable). Where it is not, both report the same
            // spawn, and the model keeps the first.
            "tokio::runtime::task::list::OwnedTasks::bind"
            | "tokio::runtime::task::list::OwnedTasks::bind_local" => Probe::SpawnReturn {
                kind: SpawnKindTag::Task,
            },
            "tokio::runtime::task::list::LocalOwnedTasks::bind" => Probe::SpawnReturn {
                kind: SpawnKindTag::Local,
            },
            "tokio::runtime::blocking::pool::Spawner::spawn_task" => Probe::Spawn {
                kind: SpawnKindTag::Blocking,
                arg: 1,
            },
            "tokio::runtime::task::harness::Harness::complete" => Probe::Complete,
            "tokio::runtime::task::raw::dealloc" => Probe::Free { stack_slot: false },
            _ if demangled.replace("::<", "<").starts_with(BOXED_CELL_DROP) => {
                Probe::Free { stack_slot: true }
            }
            _ => return None,
        })
    }

    /// `Header` is `#[repr(C)]`: state +0x00, queue_next +0x08, vtable +0x10. The
    /// `Vtable` came out in declaration order: poll, schedule, dealloc,
    /// try_read_output, drop_join_handle_slow, drop_abort_handle, shutdown,
    /// trailer_offset, scheduler_offset, id_offset (+0x48). Rust does not promise
    /// that order, so the BPF side checks every header it reads at `raw::poll`:
    /// the vtable's first word must be the very `raw::poll` being run.
    fn layout(&self) -> HeaderLayout {
        HeaderLayout {
            vtable_field: 0x10,
            id_offset_slot: 0x48,
        }
    }

    fn required(&self) -> &'static [(&'static [Probe], &'static str)] {
        &[
            (
                &[Probe::Poll],
                "before/after (tokio::runtime::task::raw::poll)",
            ),
            (
                &[
                    Probe::Spawn {
                        kind: SpawnKindTag::Task,
                        arg: 1,
                    },
                    Probe::SpawnReturn {
                        kind: SpawnKindTag::Task,
                    },
                ],
                "init of spawned tasks (OwnedTasks::bind_inner or OwnedTasks::bind)",
            ),
            (&[Probe::Complete], "resolve (Harness::complete)"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_cell_drop_glue_is_a_free_site_in_both_manglings() {
        let legacy =
            "core::ptr::drop_in_place<alloc::boxed::Box<tokio::runtime::task::core::Cell<F,S>>>";
        let v0 =
            "core::ptr::drop_in_place::<alloc::boxed::Box<tokio::runtime::task::core::Cell<F, S>>>";
        for name in [legacy, v0] {
            assert_eq!(
                Tokio.probe_for(name, "core::ptr::drop_in_place"),
                Some(Probe::Free { stack_slot: true })
            );
        }
    }

    #[test]
    fn closures_inside_probed_functions_are_not_probed() {
        let path = "tokio::runtime::blocking::pool::Spawner::spawn_task::{{closure}}";
        assert_eq!(Tokio.probe_for(path, path), None);
    }
}
