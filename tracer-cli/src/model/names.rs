//! Names and spawn locations of tasks, as the model attaches them to `init`.
//!
//! The future type of a task is per `raw::poll` copy, so names are found once per
//! poll site when the session starts (the binary's `naming` module) and kept here
//! by the site's slot (the poll probe's cookie), and by the address its task
//! vtable has in the process (which a spawn reports: identical `raw::poll` copies
//! may be folded into one site, their vtables never are).
//! A task that cannot be named gets no name and its reason is counted: never a guess.

use std::collections::{BTreeMap, HashMap};

use crate::model::event::ResourceType;

/// What one poll site's future type says about its tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SiteName {
    /// The future type, as users read it.
    Named {
        /// `app::handle`, `app::worker<u64>`, …
        name: String,
        /// The task type the future implies (`tokio.blocking` for Tokio's
        /// `BlockingTask`, `tokio.local` for a `LocalSet`'s), if it implies one.
        resource_type: Option<ResourceType>,
    },
    /// No name could be derived, and why (a sentence fragment).
    Unnamed(&'static str),
}

/// Reads a spawn's `Location` from a candidate pointer the BPF side took.
pub trait LocationSource {
    /// `"src/main.rs:85:9"`, or why the pointer is not a `Location` of the binary.
    fn location(&mut self, pointer: u64) -> Result<String, &'static str>;
}

/// Why a task has no name: it was first seen where nothing names it.
pub const UNNAMED_UNSEEN_SITE: &str =
    "first seen outside a poll, at a site that does not say its future type";
/// Why a spawn has no name: its vtable is none that the binary's poll sites use.
pub const UNNAMED_UNKNOWN_VTABLE: &str =
    "its task vtable is not one the tracer found in the binary";
/// Why a task has no location: it existed before the tracer attached.
pub const UNLOCATED_EXISTING: &str = "it existed before the tracer attached";
/// Why a spawn has no location: no probed spawn entry point ran before it.
pub const UNLOCATED_NO_ENTRY: &str =
    "no spawn entry point was seen before it (inlined, or a runtime-internal spawn)";

/// Every poll site's name, and the counts of tasks left without name or location.
#[derive(Default)]
pub struct NameTable {
    /// By slot; slot `n` (a poll cookie) is `sites[n - 1]`; cookie 0 is unknown.
    sites: Vec<SiteName>,
    /// The name of each task vtable's future type, by its address in the process.
    by_vtable: HashMap<u64, SiteName>,
    locations: Option<Box<dyn LocationSource>>,
    /// Tasks reported without a name, by reason.
    unnamed: BTreeMap<&'static str, u64>,
    /// Tasks reported without a location, by reason.
    unlocated: BTreeMap<&'static str, u64>,
    /// Tasks reported with a name.
    named: u64,
    /// Tasks reported with a location.
    located: u64,
}

impl std::fmt::Debug for NameTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameTable")
            .field("sites", &self.sites.len())
            .field("unnamed", &self.unnamed)
            .finish_non_exhaustive()
    }
}

/// The name and location an `init` gets, and the type its site implies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The future's name.
    pub name: Option<String>,
    /// `file:line:col` of the spawn.
    pub location: Option<String>,
    /// The task type the future implies, if any.
    pub resource_type: Option<ResourceType>,
}

impl NameTable {
    /// A table of `sites` (slot `n` is `sites[n - 1]`), with the name of each task
    /// vtable by its address in the process, and where spawn locations are read.
    pub fn new(
        sites: Vec<SiteName>,
        vtables: impl IntoIterator<Item = (u64, SiteName)>,
        locations: Option<Box<dyn LocationSource>>,
    ) -> Self {
        Self {
            sites,
            by_vtable: vtables.into_iter().collect(),
            locations,
            ..Self::default()
        }
    }

    /// The site of a slot (a poll cookie), if known.
    pub fn site(&self, slot: u32) -> Option<&SiteName> {
        self.sites.get(usize::try_from(slot).ok()?.checked_sub(1)?)
    }

    /// The identity of a spawned task from its vtable address and location
    /// candidate (0: none), counted.
    pub fn spawned(&mut self, vtable: u64, location: u64) -> Identity {
        if self.is_empty() {
            return Identity::default();
        }
        let site = self.by_vtable.get(&vtable).cloned();
        let mut identity = self.identify(site, UNNAMED_UNKNOWN_VTABLE);
        let location = match (location, self.locations.as_mut()) {
            (0, _) | (_, None) => Err(UNLOCATED_NO_ENTRY),
            (pointer, Some(source)) => source.location(pointer),
        };
        identity.location = self.count_location(location);
        identity
    }

    /// The identity of a task first seen after attach, at poll site `slot` (0:
    /// not at a poll), counted.
    pub fn existing(&mut self, slot: u32) -> Identity {
        let site = self.site(slot).cloned();
        self.existing_at(site, UNNAMED_UNSEEN_SITE)
    }

    /// The identity of a task first seen after attach through a wake, which
    /// carries its vtable address, counted.
    pub fn existing_woken(&mut self, vtable: u64) -> Identity {
        let site = self.by_vtable.get(&vtable).cloned();
        self.existing_at(site, UNNAMED_UNKNOWN_VTABLE)
    }

    /// The identity `site` gives a task that existed before attach (`missing`:
    /// why there is none without a site), counted.
    fn existing_at(&mut self, site: Option<SiteName>, missing: &'static str) -> Identity {
        if self.is_empty() {
            return Identity::default();
        }
        let mut identity = self.identify(site, missing);
        identity.location = self.count_location(Err(UNLOCATED_EXISTING));
        identity
    }

    /// The identity a site gives (`missing`: why there is none without a site),
    /// counted.
    fn identify(&mut self, site: Option<SiteName>, missing: &'static str) -> Identity {
        match site {
            Some(SiteName::Named {
                name,
                resource_type,
            }) => {
                self.named += 1;
                Identity {
                    name: Some(name),
                    location: None,
                    resource_type,
                }
            }
            Some(SiteName::Unnamed(reason)) => {
                self.count_unnamed(reason);
                Identity::default()
            }
            None => {
                self.count_unnamed(missing);
                Identity::default()
            }
        }
    }

    fn count_unnamed(&mut self, reason: &'static str) {
        *self.unnamed.entry(reason).or_default() += 1;
    }

    fn count_location(&mut self, location: Result<String, &'static str>) -> Option<String> {
        match location {
            Ok(location) => {
                self.located += 1;
                Some(location)
            }
            Err(reason) => {
                *self.unlocated.entry(reason).or_default() += 1;
                None
            }
        }
    }

    /// Whether the table names anything at all (a session without Tokio sites
    /// has an empty one, and reports no counts).
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// Summary lines: how many tasks were named and located, and why the others
    /// were not.
    pub fn summary(&self) -> Vec<String> {
        if self.is_empty() {
            return Vec::new();
        }
        let unnamed: u64 = self.unnamed.values().sum();
        let unlocated: u64 = self.unlocated.values().sum();
        let mut lines = vec![format!(
            "task names: {} of {} tasks named, {} of {} located",
            self.named,
            self.named + unnamed,
            self.located,
            self.located + unlocated
        )];
        for (reason, count) in &self.unnamed {
            lines.push(format!("  {count} unnamed: {reason}"));
        }
        for (reason, count) in &self.unlocated {
            lines.push(format!("  {count} without location: {reason}"));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl LocationSource for Fixed {
        fn location(&mut self, pointer: u64) -> Result<String, &'static str> {
            if pointer == 0x10 {
                Ok("src/main.rs:3:5".to_owned())
            } else {
                Err("not a Location")
            }
        }
    }

    fn table() -> NameTable {
        NameTable::new(
            vec![
                SiteName::Named {
                    name: "app::handle".into(),
                    resource_type: None,
                },
                SiteName::Unnamed("no drop glue"),
            ],
            [
                (
                    0x1000,
                    SiteName::Named {
                        name: "app::handle".into(),
                        resource_type: None,
                    },
                ),
                (0x2000, SiteName::Unnamed("no drop glue")),
            ],
            Some(Box::new(Fixed)),
        )
    }

    #[test]
    fn spawns_are_named_by_their_vtable_and_located_by_their_pointer() {
        let mut names = table();
        let identity = names.spawned(0x1000, 0x10);
        assert_eq!(identity.name.as_deref(), Some("app::handle"));
        assert_eq!(identity.location.as_deref(), Some("src/main.rs:3:5"));
        let unnamed = names.spawned(0x2000, 0x18);
        assert_eq!((unnamed.name, unnamed.location), (None, None));
        let unknown = names.spawned(0x3000, 0);
        assert_eq!(unknown.name, None);
        assert_eq!(
            names.summary(),
            [
                "task names: 1 of 3 tasks named, 1 of 3 located",
                "  1 unnamed: its task vtable is not one the tracer found in the binary",
                "  1 unnamed: no drop glue",
                "  1 without location: no spawn entry point was seen before it (inlined, or a runtime-internal spawn)",
                "  1 without location: not a Location",
            ]
        );
    }

    #[test]
    fn existing_tasks_are_named_by_their_poll_site_and_never_located() {
        let mut names = table();
        let identity = names.existing(1);
        assert_eq!(identity.name.as_deref(), Some("app::handle"));
        assert_eq!(identity.location, None);
        assert_eq!(names.existing(0).name, None);
        assert_eq!(names.unnamed[UNNAMED_UNSEEN_SITE], 1);
        assert_eq!(names.unlocated[UNLOCATED_EXISTING], 2);
    }
}
