//! Where each parked task waits: its await chain (outermost `.await` first,
//! down to the leaf future), from the type DWARF of the binary and the task's
//! bytes, for `tracer dump`.
//!
//! - [`types`]: the type DWARF, read once;
//! - [`layout`]: the task cell and the runtime's task list, from it;
//! - [`chain`]: the walk of one future's state machines;
//! - [`fork`]: `join!` and `select!`, where the walk forks into branches;
//! - [`memory`]: the bytes it walks;
//! - [`tasks`]: finding every live task of a process and reading it;
//! - [`debuginfo`]: the file holding the DWARF, found as debuggers find it.
//!
//! Needs full type DWARF for the application crate (`debug = 2`; for it alone
//! is enough, since Tokio's generic code is compiled, and described, there).

pub mod chain;
pub mod debuginfo;
pub mod fork;
pub mod layout;
pub mod memory;
pub mod program;
pub mod tasks;
pub mod types;

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use super::{Tokio, naming};
use crate::{
    model::names::SiteName,
    runtime::{Probe, sites, sites::TargetObject},
    target::{dwarf::DwarfSource, image::Image, mapped_file},
};
use layout::cell_layout;
use tasks::TaskType;
use types::Types;

/// The Cell type's path, before its generic arguments.
const CELL: &str = "tokio::runtime::task::core::Cell";

/// What one binary says about its tasks: types, and each task vtable's type.
pub struct Analysis {
    /// The type DWARF.
    pub types: Types,
    /// Task types by their vtable's file virtual address.
    pub vtables: HashMap<u64, TaskType>,
    /// The file the DWARF came from.
    pub debuginfo: PathBuf,
    /// Poll sites whose cell the DWARF does not describe.
    pub undescribed: usize,
}

impl Analysis {
    /// Analyses the executable at `exe`, with its DWARF from `debuginfo` or
    /// wherever [`debuginfo::locate`] finds it.
    pub fn new(exe: &Path, debuginfo: Option<&Path>) -> anyhow::Result<Self> {
        let data = mapped_file::map(exe)?;
        let file = object::File::parse(&*data)
            .with_context(|| format!("{} is not an ELF file tracer can read", exe.display()))?;
        let image = Image::new(&file);
        let found = sites::scan(exe, &Tokio)?;
        let polls = found.addresses(Probe::Poll);
        if polls.is_empty() {
            bail!("{} holds no Tokio task (no raw::poll found)", exe.display());
        }
        let (path, types) = debuginfo::locate(exe, &file, debuginfo)?;
        let debug_data = mapped_file::map(&path)?;
        let debug_file = object::File::parse(&*debug_data)
            .with_context(|| format!("{} is not an ELF file tracer can read", path.display()))?;
        let poll_types =
            naming::dwarf::dwarf_poll_types(DwarfSource::of(&file, &debug_file), &image, &polls);
        let names = naming::name_sites(exe, &found.sites)?;
        let holders = image.words_holding(&polls.iter().copied().collect::<HashSet<_>>());
        let mut vtables = HashMap::new();
        let mut undescribed = 0;
        for poll in &polls {
            let layout = poll_types.get(poll).and_then(|(future, scheduler)| {
                let cell = format!("{CELL}<{future}, {}>", scheduler.as_deref()?);
                cell_layout(&types, types.by_name(&cell)?)
            });
            let Some(layout) = layout else {
                undescribed += 1;
                continue;
            };
            let name = match names.sites.get(poll) {
                Some(SiteName::Named { name, .. }) => name.clone(),
                _ => chain::function_name(
                    &types
                        .get(layout.future_type)
                        .map_or_else(String::new, |t| t.name.clone()),
                ),
            };
            for vtable in holders.get(poll).into_iter().flatten() {
                vtables.insert(
                    *vtable,
                    TaskType {
                        layout: layout.clone(),
                        name: name.clone(),
                    },
                );
            }
        }
        Ok(Self {
            types,
            vtables,
            debuginfo: path,
            undescribed,
        })
    }
}

/// The await-chain programs of every poll site of `objects` (each site's slot
/// from `slots`, by object index and address), for the live trace. Fails, with
/// what to build with, when no object has type DWARF describing its tasks.
pub fn session_programs(
    objects: &[TargetObject],
    slots: &HashMap<(usize, u64), u64>,
) -> anyhow::Result<(program::Programs, usize)> {
    let mut programs = program::Programs::new();
    let mut walked = 0;
    let mut problem = None;
    for (index, object) in objects.iter().enumerate() {
        let polls = object.sites.addresses(Probe::Poll);
        if polls.is_empty() {
            continue;
        }
        let exe = &object.attach_path;
        let data = mapped_file::map(exe)?;
        let file = object::File::parse(&*data)
            .with_context(|| format!("{} is not an ELF file tracer can read", exe.display()))?;
        let image = Image::new(&file);
        let (path, types) = match debuginfo::locate(exe, &file, None) {
            Ok(found) => found,
            Err(error) => {
                problem = Some(error);
                continue;
            }
        };
        let debug_data = mapped_file::map(&path)?;
        let debug_file = object::File::parse(&*debug_data)
            .with_context(|| format!("{} is not an ELF file tracer can read", path.display()))?;
        let poll_types =
            naming::dwarf::dwarf_poll_types(DwarfSource::of(&file, &debug_file), &image, &polls);
        for poll in &polls {
            let Some(slot) = slots
                .get(&(index, *poll))
                .and_then(|slot| u32::try_from(*slot).ok())
                .filter(|slot| *slot != 0 && *slot <= tracer_common::chain::MAX_SLOT)
            else {
                continue;
            };
            let layout = poll_types.get(poll).and_then(|(future, scheduler)| {
                let cell = format!("{CELL}<{future}, {}>", scheduler.as_deref()?);
                cell_layout(&types, types.by_name(&cell)?)
            });
            if let Some(layout) = layout
                && programs.add_site(&types, slot, &layout)
            {
                walked += 1;
            }
        }
    }
    match problem {
        Some(error) if walked == 0 => Err(error),
        _ => Ok((programs, walked)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::types::Kind;
    use super::*;

    /// The await-points fixture built by `cargo xtask build` in `profile`
    /// (full type DWARF for the fixture crate only).
    fn fixture_in(profile: &str) -> PathBuf {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/target")
            .join(profile)
            .join("await_points");
        assert!(
            path.exists(),
            "{} is missing: run `cargo xtask build` (or `cd tests/fixtures && cargo build --profile {profile} --bin await_points`)",
            path.display()
        );
        path
    }

    /// The await-points fixture with its DWARF in the binary.
    fn fixture() -> PathBuf {
        fixture_in("release-await")
    }

    /// Each fixture function's `.await` lines, from its source: the lines that
    /// call `here!` (the `.await` is on the same line), those of the
    /// functions run in `join!`/`select!` branches (`here!(branch = …`)
    /// included.
    fn source_awaits() -> BTreeMap<String, BTreeSet<String>> {
        let source = include_str!("../../../../../tests/fixtures/src/bin/await_points.rs");
        let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (index, line) in source.lines().enumerate() {
            if let Some(rest) = line.trim_start().strip_prefix("here!(")
                && let Some(function) = rest.split('"').nth(1)
            {
                found
                    .entry(format!("await_points::{function}"))
                    .or_default()
                    .insert(format!("src/bin/await_points.rs:{}", index + 1));
            }
        }
        found
    }

    /// Checks that every async fn of the fixture has its suspend states at
    /// the lines of its source's `.await`s in `types` (a `join!`'s and a
    /// `select!`'s at the macro's call, not in Tokio's source).
    fn suspend_states_are_at_the_await_lines(types: &Types) {
        for (function, lines) in source_awaits() {
            let name = format!("{function}::{{async_fn_env#0}}");
            let at = types.by_name(&name).unwrap_or_else(|| panic!("no {name}"));
            let Kind::Struct {
                variants: Some(variants),
                ..
            } = &types.get(at).unwrap().kind
            else {
                panic!("{name} has no variant part");
            };
            assert_eq!(variants.discr_name, "__state", "{name}");
            let suspends: BTreeSet<String> = variants
                .variants
                .iter()
                .filter(|(value, _)| value.is_some_and(|v| v >= 3))
                .filter_map(|(_, member)| {
                    let awaitee = types.member(member.ty?, "__awaitee")?.ty;
                    fork::await_at(types, member, awaitee)
                })
                .collect();
            assert_eq!(suspends, lines, "{name}");
        }
    }

    #[test]
    fn every_suspend_state_of_the_fixture_is_at_its_await_line() {
        let path = fixture();
        let data = mapped_file::map(&path).unwrap();
        let file = object::File::parse(&*data).unwrap();
        suspend_states_are_at_the_await_lines(&Types::read(DwarfSource::File(&file)));
    }

    #[test]
    fn a_dwarf_package_gives_the_same_suspend_states_through_the_skeleton_units() {
        let path = fixture_in("release-await-dwp");
        let data = mapped_file::map(&path).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let package_data = mapped_file::map(&path.with_extension("dwp")).unwrap();
        let package = object::File::parse(&*package_data).unwrap();
        let source = DwarfSource::of(&file, &package);
        assert!(matches!(source, DwarfSource::Package { .. }));
        suspend_states_are_at_the_await_lines(&Types::read(source));
        assert!(
            Types::read(DwarfSource::File(&file))
                .by_name("await_points::nested::{async_fn_env#0}")
                .is_none(),
            "the split binary itself has no type DWARF"
        );
    }

    #[test]
    fn the_fixture_task_cells_are_laid_out_from_dwarf() {
        let analysis = Analysis::new(&fixture(), None).unwrap();
        let mut names: Vec<&str> = analysis.vtables.values().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        for wanted in ["nested", "with_timeout", "boxed", "big", "receiver"] {
            assert!(
                names.contains(&format!("await_points::{wanted}").as_str()),
                "{wanted} not among {names:?}"
            );
        }
        for task in analysis.vtables.values() {
            let layout = &task.layout;
            assert_eq!((layout.state, layout.vtable), (0, 0x10), "{}", layout.name);
            // tokio_unstable moves the stage (the fixtures build with it).
            assert!(layout.stage_tag.0 < layout.future, "{layout:?}");
            assert_eq!(layout.running, 0, "{layout:?}");
            let future = analysis.types.get(layout.future_type).unwrap();
            if task.name == "await_points::big" {
                assert!(
                    future.name.starts_with("core::pin::Pin<alloc::boxed::Box<"),
                    "{}",
                    future.name
                );
            }
        }
    }

    #[test]
    fn the_fixture_poll_sites_compile_to_chain_programs_that_decode_every_await() {
        let path = fixture();
        let sites = sites::scan(&path, &Tokio).unwrap();
        let slots: HashMap<(usize, u64), u64> = sites
            .sites
            .iter()
            .filter(|s| s.probe == Probe::Poll)
            .enumerate()
            .map(|(i, s)| ((0, s.address), i as u64 + 1))
            .collect();
        let objects = [TargetObject {
            attach_path: path,
            sites,
        }];
        let (programs, walked) = session_programs(&objects, &slots).unwrap();
        assert!(walked >= 5, "{walked} sites walked");
        // Every suspend state of every fixture function is a node state at its
        // `.await` line, and every edge the BPF side follows leads to a node.
        let mut lines: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for node in programs.table.nodes.values() {
            for state in node.states.values() {
                if let crate::model::awaiting::StateInfo::Suspend { at, .. } = state {
                    lines
                        .entry(node.function.clone())
                        .or_default()
                        .insert(at.clone());
                }
            }
        }
        // The live walk reaches the functions run in `join!`/`select!`
        // branches too, through the forks.
        for (function, awaits) in source_awaits() {
            assert_eq!(lines.get(&function), Some(&awaits), "{function}");
        }
        let leads_somewhere = |edge: &tracer_common::chain::Edge| {
            let id = (edge.next & !tracer_common::fork::FORK) as usize;
            if edge.next & tracer_common::fork::FORK != 0 {
                id != 0 && id < programs.forks.len()
            } else {
                id < programs.nodes.len()
            }
        };
        for edge in &programs.edges {
            assert!(leads_somewhere(edge), "{edge:?}");
        }
        // Two `join!` and two `select!` calls, each a fork whose every branch
        // leads to its state machine.
        let names: Vec<&str> = programs.table.forks.values().map(|f| f.name).collect();
        assert_eq!(
            names.iter().filter(|n| **n == "tokio::join!").count(),
            2,
            "{names:?}"
        );
        assert_eq!(
            names.iter().filter(|n| **n == "tokio::select!").count(),
            2,
            "{names:?}"
        );
        for entry in &programs.forks[1..] {
            let branches =
                &programs.branches[entry.first_branch as usize..][..entry.branches as usize];
            for branch in branches {
                assert!(
                    branch.root.next != 0 && leads_somewhere(&branch.root),
                    "{branch:?}"
                );
            }
        }
        for (slot, site) in &programs.sites {
            assert!(programs.table.sites.contains_key(slot));
            assert_ne!(site.node, 0);
            assert_eq!(site.stage_size, 4, "{site:?}");
        }
        // `boxed` awaits through `Box::pin`: one of its edges hops.
        let boxed = programs
            .table
            .nodes
            .iter()
            .find(|(_, n)| n.function == "await_points::boxed")
            .map(|(id, _)| *id)
            .unwrap();
        let node = programs.nodes[boxed as usize];
        let edges = &programs.edges[node.first_edge as usize..][..node.edges as usize];
        assert!(edges.iter().any(|e| e.hop == 1 && e.next != 0), "{edges:?}");
    }

    /// Runs `objcopy` with `args`, failing the test unless it succeeds.
    fn objcopy(args: &[&std::ffi::OsStr]) {
        let status = std::process::Command::new("objcopy")
            .args(args)
            .status()
            .expect("objcopy (binutils) runs");
        assert!(status.success(), "objcopy {args:?} failed");
    }

    /// A scratch directory beside the test binary.
    fn scratch(name: &str) -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap().join("parked-tests").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_binary_without_type_dwarf_says_what_to_build_with() {
        let dir = scratch("stripped");
        let stripped = dir.join("await_points");
        objcopy(&[
            "--strip-debug".as_ref(),
            fixture().as_os_str(),
            stripped.as_os_str(),
        ]);
        let message = match Analysis::new(&stripped, None) {
            Ok(_) => panic!("{} has type DWARF", stripped.display()),
            Err(error) => format!("{error:#}"),
        };
        assert!(message.contains("debug = 2"), "{message}");
        assert!(message.contains("--debuginfo FILE"), "{message}");
    }

    #[test]
    fn a_separate_debug_file_is_found_by_debuglink_or_named() {
        let dir = scratch("debuglink");
        let debug = dir.join("await_points.debug");
        let stripped = dir.join("await_points");
        objcopy(&[
            "--only-keep-debug".as_ref(),
            fixture().as_os_str(),
            debug.as_os_str(),
        ]);
        let link = format!("--add-gnu-debuglink={}", debug.display());
        objcopy(&[
            "--strip-debug".as_ref(),
            link.as_ref(),
            fixture().as_os_str(),
            stripped.as_os_str(),
        ]);
        let found = Analysis::new(&stripped, None).unwrap();
        assert_eq!(found.debuginfo, debug);
        assert!(!found.vtables.is_empty());
        let unlinked = dir.join("await_points.unlinked");
        objcopy(&[
            "--strip-debug".as_ref(),
            fixture().as_os_str(),
            unlinked.as_os_str(),
        ]);
        let named = Analysis::new(&unlinked, Some(&debug)).unwrap();
        assert_eq!(named.vtables.len(), found.vtables.len());
    }
}
