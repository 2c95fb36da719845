//! The Tokio adapter: probe sites and task layout checked against the sources of
//! Tokio 1.43 to 1.54, and traced against ground truth on 1.43.4, 1.47.5 and
//! 1.54.1 (`tests/tests/tokio_matrix.rs`).
//!
//! | event | function | header |
//! | --- | --- | --- |
//! | before / after | `task::raw::poll` (one copy per future type) | arg 0 |
//! | spawn | `task::list::OwnedTasks<S>::bind_inner` | arg 1 |
//! | spawn (where `bind_inner` was inlined) | `task::list::OwnedTasks<S>::bind`, `bind_local` | return value |
//! | spawn (where every `bind_inner` was inlined) | `util::sharded_list::ShardGuard<L>::push` | arg 1 |
//! | spawn_local | `task::list::LocalOwnedTasks<S>::bind` | return value |
//! | spawn_blocking | `blocking::pool::Spawner::spawn_task` | arg 1 |
//! | resolve | `task::harness::Harness<T,S>::complete` | arg 0 |
//! | destroy | `task::raw::dealloc`, `drop_in_place::<Box<task::core::Cell<T,S>>>` (or, where that is inlined, `task::harness::Harness<T,S>::dealloc` and `drop_in_place::<task::core::Cell<T,S>>`) | arg 0 |
//! | wake | `task::waker::wake_by_val`, `wake_by_ref` (the waker vtable's, one copy each) | arg 0 |
//! | abort (queues an idle task) | `task::harness::<impl RawTask>::remote_abort` | arg 0 |
//! | the poll is a worker's launcher | `scheduler::multi_thread::worker::run` | - |
//! | deferred self-wake (`yield_now`, coop budget) | `runtime::context::defer` | - |

pub mod naming;
pub mod parked;

use std::{ops::RangeInclusive, path::Path};

use anyhow::{Context as _, bail};
use tracer_common::layout;

use super::{
    BpfGlobals, Prepared, Probe, RuntimeAdapter, SpawnKindTag,
    sites::{Site, TargetObject},
};
use crate::{model::event::ResourceType, target::symbols::path_without_generics};

/// Offsets the BPF programs use to read a task id: `*(hdr + *(*(hdr + vtable_field) + id_offset_slot))`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderLayout {
    /// Offset of the vtable pointer in the task header.
    pub vtable_field: u64,
    /// Offset, inside the vtable, of the word that holds the id's offset in the task.
    pub id_offset_slot: u64,
}

/// Tokio 1.x, multi-thread and current-thread schedulers, `LocalSet`, blocking pool.
pub struct Tokio;

const BOXED_CELL_DROP: &str =
    "core::ptr::drop_in_place<alloc::boxed::Box<tokio::runtime::task::core::Cell<";

/// The drop glue of a task's cell itself, which the boxed cell's calls before
/// freeing it: probed only where no [`BOXED_CELL_DROP`] is left, as builds that
/// inline more leave it (`codegen-units = 1`, fat LTO): the box's glue inlined
/// into `raw::poll`, `raw::dealloc`, `Harness::complete`, `raw::shutdown` and
/// the handles' drops, each calling this one, then `free`.
const CELL_DROP: &str = "core::ptr::drop_in_place<tokio::runtime::task::core::Cell<";

/// The function every free of a task goes through in Tokio's source (it drops
/// the boxed cell): inlined into its callers by the default release build, kept
/// by `opt-level = 1` and `"z"`, which inline both cell glues into it instead
/// (their copies of [`CELL_DROP`] are never called there). Probed, like
/// [`CELL_DROP`], only where no [`BOXED_CELL_DROP`] is left.
const HARNESS_DEALLOC: &str = "tokio::runtime::task::harness::Harness::dealloc";

/// Whether a demangled symbol is the drop glue `prefix` names.
fn is_drop_glue(symbol: &str, prefix: &str) -> bool {
    symbol.replace("::<", "<").starts_with(prefix)
}

/// `bind_inner`'s one step out of line in some builds: `panic = "abort"` inlines
/// every `bind_inner` into the multi_thread `Handle::bind_new_task` copies,
/// which call it (the OwnedTasks list is its only user).
const SHARD_PUSH: &str = "tokio::util::sharded_list::ShardGuard::push";

/// The `#[track_caller]` functions users spawn through: each passes its caller's
/// `Location` on, which Tokio's `TaskMeta::spawned_at()` reports. Nested entries
/// (`JoinSet::spawn` calls `tokio::spawn`) pass the same `Location`.
const SPAWN_ENTRIES: &[&str] = &[
    "tokio::task::spawn::spawn",
    "tokio::task::local::spawn_local",
    "tokio::task::local::LocalSet::spawn_local",
    "tokio::task::blocking::spawn_blocking",
    "tokio::runtime::handle::Handle::spawn",
    "tokio::runtime::handle::Handle::spawn_blocking",
    "tokio::runtime::runtime::Runtime::spawn",
    "tokio::runtime::runtime::Runtime::spawn_blocking",
    "tokio::task::join_set::JoinSet::spawn",
    "tokio::task::join_set::JoinSet::spawn_on",
    "tokio::task::join_set::JoinSet::spawn_local",
    "tokio::task::join_set::JoinSet::spawn_local_on",
    "tokio::task::join_set::JoinSet::spawn_blocking",
    "tokio::task::join_set::JoinSet::spawn_blocking_on",
    "tokio::task::builder::Builder::spawn",
    "tokio::task::builder::Builder::spawn_on",
    "tokio::task::builder::Builder::spawn_local",
    "tokio::task::builder::Builder::spawn_local_on",
    "tokio::task::builder::Builder::spawn_blocking",
    "tokio::task::builder::Builder::spawn_blocking_on",
];

impl RuntimeAdapter for Tokio {
    fn name(&self) -> &'static str {
        "tokio"
    }

    fn display_name(&self) -> &'static str {
        "Tokio"
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
            // The shard list's push, which `bind_inner` calls once a task is
            // bound: kept only where no `bind_inner` is left (see
            // `keep_one_spawn_path`).
            SHARD_PUSH => Probe::Spawn {
                kind: SpawnKindTag::Task,
                arg: 1,
            },
            "tokio::runtime::blocking::pool::Spawner::spawn_task" => Probe::Spawn {
                kind: SpawnKindTag::Blocking,
                arg: 1,
            },
            "tokio::runtime::task::harness::Harness::complete" => Probe::Complete,
            _ if SPAWN_ENTRIES.contains(&path) => Probe::SpawnEntry,
            "tokio::runtime::task::raw::dealloc" => Probe::Free { stack_slot: false },
            // Its argument is the cell, on the heap: never in the stack window.
            HARNESS_DEALLOC => Probe::Free { stack_slot: true },
            "tokio::runtime::task::waker::wake_by_val"
            | "tokio::runtime::task::waker::wake_by_ref" => Probe::Wake,
            // `impl RawTask { fn remote_abort }` in harness.rs: one copy.
            "tokio::runtime::task::harness::remote_abort" => Probe::Abort,
            "tokio::runtime::scheduler::multi_thread::worker::run" => Probe::WorkerRun,
            // Every deferral (`yield_now`, an exhausted coop budget) goes through it.
            "tokio::runtime::context::defer" => Probe::Defer,
            // A cell is on the heap, never in the stack window, so the cell
            // glue's argument is taken as it is; the boxed glue's debug-build
            // stack slot is read through.
            _ if is_drop_glue(demangled, BOXED_CELL_DROP) || is_drop_glue(demangled, CELL_DROP) => {
                Probe::Free { stack_slot: true }
            }
            _ => return None,
        })
    }

    fn prepare(&self, pid: u32, objects: &mut Vec<TargetObject>) -> anyhow::Result<Prepared> {
        let layout = one_layout(objects)?;
        for object in objects.iter_mut() {
            keep_one_free_path(&mut object.sites.sites);
            keep_one_spawn_path(&mut object.sites.sites);
        }
        let (names, locations) = naming::table::build(pid, objects);
        Ok(Prepared {
            globals: BpfGlobals(vec![
                (layout::VTABLE_FIELD, layout.vtable_field),
                (layout::ID_OFFSET_SLOT, layout.id_offset_slot),
                (layout::LOCATION_START, locations.start),
                (layout::LOCATION_END, locations.end),
            ]),
            names,
            default_type: ResourceType::TOKIO_TASK,
            records: None,
            version: objects
                .iter()
                .find_map(|object| object.sites.runtime_version.clone()),
        })
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
            // `raw::dealloc` exists in every build (the task vtable points at it),
            // but most frees bypass it through the cell's drop glue or
            // `Harness::dealloc`. A build that kept none of them would report
            // most tasks never freed.
            (
                &[Probe::Free { stack_slot: true }],
                "destroy of most tasks (drop_in_place::<Box<task::core::Cell<..>>>, Harness::dealloc or drop_in_place::<task::core::Cell<..>>)",
            ),
        ]
    }
}

/// Every freed task goes through the boxed cell's drop glue where it exists,
/// which `Harness::dealloc` calls and which calls the cell's: probing them all
/// would trap two or three times a free (the model folds the repeats), so
/// `Harness::dealloc` and the cell's glue are kept only where the boxed glue is
/// gone. Both are kept then, as which of them is called differs by build.
fn keep_one_free_path(sites: &mut Vec<Site>) {
    if sites
        .iter()
        .any(|site| is_drop_glue(&site.symbol, BOXED_CELL_DROP))
    {
        sites.retain(|site| {
            !is_drop_glue(&site.symbol, CELL_DROP)
                && path_without_generics(&site.symbol) != HARNESS_DEALLOC
        });
    }
}

/// Every bound task goes through `bind_inner` and, inside it, the shard
/// list's push: the push is probed only where no `bind_inner` is left, so
/// that a spawn traps once.
fn keep_one_spawn_path(sites: &mut Vec<Site>) {
    let is = |site: &Site, path: &str| path_without_generics(&site.symbol) == path;
    if sites
        .iter()
        .any(|site| is(site, "tokio::runtime::task::list::OwnedTasks::bind_inner"))
    {
        sites.retain(|site| !is(site, SHARD_PUSH));
    }
}

/// Task layouts by Tokio 1.x minor version, oldest first.
///
/// `Header` is `#[repr(C)]`: state +0x00, queue_next +0x08, vtable +0x10 in every
/// 1.x since 1.30 (later fields changed, e.g. 1.53 added `scheduled_at`, which
/// moves nothing the tracer reads). The `Vtable` (not `repr(C)`) has had the same
/// fields from `poll` to `id_offset` since 1.23: seven function pointers, then
/// trailer_offset, scheduler_offset, id_offset (+0x48); 1.46 added
/// `spawn_location_offset` after it, under `tokio_unstable` only. Rust does not
/// promise that order, so the BPF side checks every header it reads at
/// `raw::poll` (the vtable's first word must be the very `raw::poll` being run),
/// and the range starts at the oldest version traced against ground truth.
const LAYOUTS: &[(RangeInclusive<u32>, HeaderLayout)] = &[(
    43..=54,
    HeaderLayout {
        vtable_field: 0x10,
        id_offset_slot: 0x48,
    },
)];

/// The task layout of the Tokio version each object was built with; they must
/// agree.
fn one_layout(objects: &[TargetObject]) -> anyhow::Result<HeaderLayout> {
    let mut found: Option<(HeaderLayout, &Path)> = None;
    for object in objects {
        let layout = layout_for(object.sites.runtime_version.as_deref())?;
        match found {
            Some((first, first_path)) if first != layout => bail!(
                "{} and {} use Tokio versions with different task layouts; tracer traces one layout per process",
                first_path.display(),
                object.attach_path.display(),
            ),
            Some(_) => {}
            None => found = Some((layout, &object.attach_path)),
        }
    }
    found
        .map(|(layout, _)| layout)
        .context("no object holds Tokio's task functions")
}

/// The supported versions, for messages: "1.43 to 1.54".
fn supported() -> String {
    let first = LAYOUTS.first().map_or(0, |(minors, _)| *minors.start());
    let last = LAYOUTS.last().map_or(0, |(minors, _)| *minors.end());
    format!("1.{first} to 1.{last}")
}

/// The task layout of Tokio `version` ("1.47.5"), or an error saying why the
/// tracer refuses it.
pub fn layout_for(version: Option<&str>) -> anyhow::Result<HeaderLayout> {
    let Some(version) = version else {
        bail!(
            "cannot tell which Tokio version this program was built with (no `tokio-1.x.y/src` path in it), \
             so the layout of its tasks is unknown; tracer supports Tokio {}",
            supported()
        );
    };
    let mut parts = version.split(['.', '-', '+']);
    let major = parts.next().and_then(|n| n.parse::<u32>().ok());
    let minor = parts.next().and_then(|n| n.parse::<u32>().ok());
    let known = match (major, minor) {
        (Some(1), Some(minor)) => LAYOUTS
            .iter()
            .find(|(minors, _)| minors.contains(&minor))
            .map(|(_, layout)| *layout),
        _ => None,
    };
    known.with_context(|| {
        format!(
            "this program uses Tokio {version}, whose task layout tracer has not been checked against; \
             tracer supports Tokio {} and refuses other versions rather than decode their tasks wrongly",
            supported()
        )
    })
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

    fn free_site(symbol: &str, address: u64) -> Site {
        Site {
            probe: Probe::Free { stack_slot: true },
            address,
            file_offset: address,
            symbol: symbol.to_owned(),
        }
    }

    #[test]
    fn harness_dealloc_and_the_cells_own_glue_are_probed_only_where_the_boxed_glue_is_gone() {
        let boxed =
            "core::ptr::drop_in_place<alloc::boxed::Box<tokio::runtime::task::core::Cell<F,S>>>";
        let cell = "core::ptr::drop_in_place<tokio::runtime::task::core::Cell<F,S>>";
        let harness = "tokio::runtime::task::harness::Harness<T,S>::dealloc";
        for name in [cell, harness] {
            assert_eq!(
                Tokio.probe_for(name, &path_without_generics(name)),
                Some(Probe::Free { stack_slot: true }),
                "{name}"
            );
        }
        let addresses = |sites: Vec<Site>| sites.iter().map(|s| s.address).collect::<Vec<_>>();
        let mut all = vec![
            free_site(boxed, 1),
            free_site(cell, 2),
            free_site(harness, 3),
        ];
        keep_one_free_path(&mut all);
        assert_eq!(addresses(all), [1]);
        let mut inlined = vec![
            free_site(cell, 2),
            free_site(cell, 3),
            free_site(harness, 4),
        ];
        keep_one_free_path(&mut inlined);
        assert_eq!(addresses(inlined), [2, 3, 4]);
    }

    #[test]
    fn the_shard_push_is_a_spawn_site_only_where_no_bind_inner_is_left() {
        let site = |symbol: &str, address| Site {
            probe: Tokio
                .probe_for(symbol, &path_without_generics(symbol))
                .expect("a spawn site"),
            address,
            file_offset: address,
            symbol: symbol.to_owned(),
        };
        let push = "tokio::util::sharded_list::ShardGuard<L>::push";
        let bind_inner = "tokio::runtime::task::list::OwnedTasks<S>::bind_inner";
        let addresses = |sites: Vec<Site>| sites.iter().map(|s| s.address).collect::<Vec<_>>();
        let mut both = vec![site(bind_inner, 1), site(push, 2)];
        keep_one_spawn_path(&mut both);
        assert_eq!(addresses(both), [1]);
        let mut inlined = vec![site(push, 2), site(push, 3)];
        keep_one_spawn_path(&mut inlined);
        assert_eq!(addresses(inlined), [2, 3]);
    }

    #[test]
    fn closures_inside_probed_functions_are_not_probed() {
        let path = "tokio::runtime::blocking::pool::Spawner::spawn_task::{{closure}}";
        assert_eq!(Tokio.probe_for(path, path), None);
    }

    #[test]
    fn every_checked_tokio_version_gets_the_1x_layout() {
        let layout = HeaderLayout {
            vtable_field: 0x10,
            id_offset_slot: 0x48,
        };
        for version in [
            "1.43.0",
            "1.43.4",
            "1.47.5",
            "1.50.0",
            "1.54.1",
            "1.54.0-rc.1",
        ] {
            assert_eq!(layout_for(Some(version)).unwrap(), layout, "{version}");
        }
    }

    #[test]
    fn tokio_versions_outside_the_checked_range_are_refused_by_name() {
        for version in ["1.42.1", "1.55.0", "0.2.25", "2.0.0", "1.x.0"] {
            let message = format!("{:#}", layout_for(Some(version)).unwrap_err());
            assert!(
                message.contains(&format!("Tokio {version},"))
                    && message.contains("supports Tokio 1.43 to 1.54"),
                "{message}"
            );
        }
    }

    #[test]
    fn an_undetermined_tokio_version_is_refused() {
        let message = format!("{:#}", layout_for(None).unwrap_err());
        assert!(
            message.contains("cannot tell which Tokio version")
                && message.contains("supports Tokio 1.43 to 1.54"),
            "{message}"
        );
    }
}
