//! Names every task from the binary alone, once per `raw::poll` site, at load
//! time: the future type `T` of `raw::poll::<T, S>`, turned into the name users
//! read (see [`render`]).
//!
//! Sources, most trusted first:
//! - the `raw::poll` symbol itself, when it carries its generic arguments (v0
//!   mangling, `-C symbol-mangling-version=v0`);
//! - DWARF ([`dwarf`]): the `DW_AT_name` of the `raw::poll<T, S>` subprogram at
//!   the site, when the binary has debug info (`debug = "line-tables-only"` is
//!   enough);
//! - the task vtable's drop glue ([`drop_glue`]), for legacy-mangled builds (the
//!   stable default), whose symbols keep no generics but whose drop glue spells
//!   out its type.
//!
//! A site neither names gets a reason, counted per task in the summary.

pub mod drop_glue;
pub mod dwarf;
pub mod location;
pub mod render;
pub mod table;

use std::{collections::BTreeMap, path::Path};

use crate::{model::event::ResourceType, model::names::SiteName};
use anyhow::Context as _;

use crate::target::image::Image;
use crate::{runtime::Probe, runtime::sites::Site, target::mapped_file};
use drop_glue::Miss;
use render::FutureKind;

/// How a name was found, for the session's status line and the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    /// From the v0-mangled `raw::poll::<T, S>` symbol.
    Symbol,
    /// From the DWARF name of the `raw::poll<T, S>` subprogram.
    Dwarf,
    /// From the drop glue that the task vtable reaches.
    DropGlue,
}

impl Method {
    /// Its name in messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::Symbol => "v0 symbol",
            Self::Dwarf => "DWARF",
            Self::DropGlue => "vtable drop glue",
        }
    }
}

/// Why a vtable has no name, said to users.
const NO_VTABLE: &str = "no task vtable holds its raw::poll (symbols missing or unusual layout)";
/// See [`NO_VTABLE`].
const NO_DROP_GLUE: &str =
    "its task vtable reaches no drop glue of a task cell (inlined, or symbols stripped)";
/// See [`NO_VTABLE`].
const AMBIGUOUS: &str =
    "the linker folded its drop glue with other future types' and nothing tells them apart";
/// See [`NO_VTABLE`].
const FOLDED: &str = "the linker folded raw::poll copies of different future types into one";

/// The names of one object's poll sites and of their task vtables (file
/// virtual addresses).
#[derive(Debug, Default)]
pub struct ObjectNames {
    /// Each poll site's name, by the site's address.
    pub sites: BTreeMap<u64, SiteName>,
    /// Each task vtable's name, by its address.
    pub vtables: BTreeMap<u64, SiteName>,
    /// Named sites by method.
    pub methods: BTreeMap<Method, usize>,
}

impl ObjectNames {
    /// Sites without a name, by reason.
    pub fn unnamed(&self) -> BTreeMap<&'static str, usize> {
        let mut reasons = BTreeMap::new();
        for site in self.sites.values() {
            if let SiteName::Unnamed(reason) = site {
                *reasons.entry(*reason).or_default() += 1;
            }
        }
        reasons
    }
}

/// Names the poll sites among `sites` of the ELF file at `path`.
pub fn name_sites(path: &Path, sites: &[Site]) -> anyhow::Result<ObjectNames> {
    let data = mapped_file::map(path)?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("{} is not an ELF file tracer can read", path.display()))?;
    let image = Image::new(&file);
    let polls: Vec<&Site> = sites.iter().filter(|s| s.probe == Probe::Poll).collect();
    let addresses: Vec<u64> = polls.iter().map(|s| s.address).collect();
    let glue = drop_glue::future_types(&image, &addresses);
    let needs_dwarf = polls
        .iter()
        .any(|site| symbol_future_type(&site.symbol).is_none());
    let dwarf = if needs_dwarf {
        dwarf::poll_types(&file, &image, &addresses)
    } else {
        Default::default()
    };
    let mut names = ObjectNames::default();
    for site in polls {
        let (symbol_type, method) = match symbol_future_type(&site.symbol) {
            Some(ty) => (Some(ty), Method::Symbol),
            None => (dwarf.get(&site.address).cloned(), Method::Dwarf),
        };
        let vtables = glue
            .get(&site.address)
            .cloned()
            .unwrap_or(Err(Miss::NoVtable));
        let site_name = match (&symbol_type, &vtables) {
            (Some((future, scheduler)), Ok(list)) if list.len() <= 1 => {
                for (vtable, _) in list {
                    names
                        .vtables
                        .insert(*vtable, site_name(future, scheduler.as_deref()));
                }
                *names.methods.entry(method).or_default() += 1;
                site_name(future, scheduler.as_deref())
            }
            (Some((future, scheduler)), Err(_)) => {
                *names.methods.entry(method).or_default() += 1;
                site_name(future, scheduler.as_deref())
            }
            (_, Err(Miss::NoVtable)) => SiteName::Unnamed(NO_VTABLE),
            (_, Err(Miss::NoDropGlue)) => SiteName::Unnamed(NO_DROP_GLUE),
            (_, Err(Miss::Ambiguous)) => SiteName::Unnamed(AMBIGUOUS),
            (_, Ok(list)) => {
                let mut found = Vec::new();
                for (vtable, glue) in list {
                    let name = match glue {
                        Ok(glue) => site_name(&glue.future, glue.scheduler.as_deref()),
                        Err(Miss::Ambiguous) => SiteName::Unnamed(AMBIGUOUS),
                        Err(_) => SiteName::Unnamed(NO_DROP_GLUE),
                    };
                    if matches!(name, SiteName::Named { .. }) && !found.contains(&name) {
                        found.push(name.clone());
                    }
                    names.vtables.insert(*vtable, name);
                }
                let ambiguous = list.iter().any(|(_, glue)| *glue == Err(Miss::Ambiguous));
                match found.as_slice() {
                    [] if ambiguous => SiteName::Unnamed(AMBIGUOUS),
                    [] => SiteName::Unnamed(NO_DROP_GLUE),
                    [one] => {
                        *names.methods.entry(Method::DropGlue).or_default() += 1;
                        one.clone()
                    }
                    _ => SiteName::Unnamed(FOLDED),
                }
            }
        };
        names.sites.insert(site.address, site_name);
    }
    Ok(names)
}

/// `T` and `S` of a `raw::poll::<T, S>` symbol that carries them (v0 mangling).
pub fn symbol_future_type(demangled: &str) -> Option<(String, Option<String>)> {
    let canonical = demangled.replace("::<", "<");
    let at = canonical.rfind("raw::poll<")?;
    let args = drop_glue::generic_args(&canonical[at + "raw::poll<".len()..])?;
    let future = args.first()?.trim();
    (!future.is_empty()).then(|| (future.to_owned(), args.get(1).map(|s| s.trim().to_owned())))
}

/// The name of a future type, with the task type its future or scheduler implies.
pub fn site_name(future: &str, scheduler: Option<&str>) -> SiteName {
    let (name, kind) = render::user_name(future);
    let resource_type = match (kind, scheduler) {
        (FutureKind::Blocking, _) => Some(ResourceType::TOKIO_BLOCKING),
        (_, Some(s)) if s.contains("BlockingSchedule") => Some(ResourceType::TOKIO_BLOCKING),
        (_, Some(s)) if s.contains("tokio::task::local::") => Some(ResourceType::TOKIO_LOCAL),
        _ => None,
    };
    SiteName::Named {
        name,
        resource_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v0_poll_symbols_carry_the_future_and_legacy_ones_do_not() {
        assert_eq!(
            symbol_future_type(
                "tokio::runtime::task::raw::poll::<app::handle::{async_fn_env#0}, alloc::sync::Arc<tokio::runtime::scheduler::current_thread::Handle>>"
            ),
            Some((
                "app::handle::{async_fn_env#0}".to_owned(),
                Some(
                    "alloc::sync::Arc<tokio::runtime::scheduler::current_thread::Handle>"
                        .to_owned()
                )
            ))
        );
        assert_eq!(symbol_future_type("tokio::runtime::task::raw::poll"), None);
    }

    #[test]
    fn local_and_blocking_schedulers_give_their_task_types() {
        let local = site_name(
            "app::f::{{closure}}",
            Some("alloc::sync::Arc<tokio::task::local::Shared>"),
        );
        assert_eq!(
            local,
            SiteName::Named {
                name: "app::f".into(),
                resource_type: Some(ResourceType::TOKIO_LOCAL)
            }
        );
        let task = site_name("app::f::{{closure}}", None);
        assert_eq!(
            task,
            SiteName::Named {
                name: "app::f".into(),
                resource_type: None
            }
        );
    }
}
