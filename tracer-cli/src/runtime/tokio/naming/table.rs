//! Assembles a session's [`NameTable`]: names every poll site of every object
//! of the target, moves vtable addresses to where the process loaded them, gives
//! each poll site its slot (the poll probe's cookie), and finds where the
//! binary's `Location` constants are.

use std::collections::{BTreeMap, HashMap};

use crate::{
    model::names::{LocationSource, NameTable, SiteName},
    model::task_filter::TaskGlobs,
};

use super::{Method, location::BinaryLocations, name_sites};
use crate::target::process_map::load_bias;
use crate::{runtime::LocationRange, runtime::Probe, runtime::sites::TargetObject};

/// What the session needs from naming.
pub struct SessionNames {
    /// For the model.
    pub table: NameTable,
    /// The cookie of each poll site, by (object index, site address).
    pub slots: HashMap<(usize, u64), u64>,
    /// Where the spawn entry probe looks for `Location` pointers.
    pub locations: LocationRange,
    /// Poll sites named, by method, over all objects.
    pub methods: BTreeMap<Method, usize>,
    /// Poll sites left unnamed, by reason.
    pub unnamed: BTreeMap<&'static str, usize>,
    /// Poll sites in all.
    pub sites: usize,
    /// Why locations cannot be read, if they cannot.
    pub location_problem: Option<String>,
}

impl SessionNames {
    /// Names the poll sites of `objects`, mapped by process `pid`. Never fails:
    /// what cannot be read leaves tasks unnamed, with the reason.
    pub fn build(pid: u32, objects: &[TargetObject]) -> Self {
        let mut sites = Vec::new();
        let mut vtables = Vec::new();
        let mut slots = HashMap::new();
        let mut methods = BTreeMap::new();
        let mut unnamed = BTreeMap::new();
        let mut locations = LocationRange::default();
        let mut source: Option<Box<dyn LocationSource>> = None;
        let mut location_problem = None;
        for (index, object) in objects.iter().enumerate() {
            let polls: Vec<_> = object
                .sites
                .sites
                .iter()
                .filter(|site| site.probe == Probe::Poll)
                .collect();
            if polls.is_empty() {
                continue;
            }
            let (names, bias) = match (
                name_sites(&object.attach_path, &object.sites.sites),
                load_bias(pid, &object.attach_path),
            ) {
                (Ok(names), Ok(bias)) => (names, bias),
                (Err(error), _) | (_, Err(error)) => {
                    let reason: &'static str = "the binary could not be read for names";
                    location_problem = Some(format!("{error:#}"));
                    for site in polls {
                        sites.push(SiteName::Unnamed(reason));
                        slots.insert((index, site.address), sites.len() as u64);
                        *unnamed.entry(reason).or_default() += 1;
                    }
                    continue;
                }
            };
            for (method, count) in &names.methods {
                *methods.entry(*method).or_default() += count;
            }
            for (reason, count) in names.unnamed() {
                *unnamed.entry(reason).or_default() += count;
            }
            for site in polls {
                let name = names
                    .sites
                    .get(&site.address)
                    .cloned()
                    .unwrap_or(SiteName::Unnamed("not a poll site"));
                sites.push(name);
                slots.insert((index, site.address), sites.len() as u64);
            }
            vtables.extend(
                names
                    .vtables
                    .into_iter()
                    .map(|(vtable, name)| (vtable.wrapping_add(bias), name)),
            );
            let has_entries = object
                .sites
                .sites
                .iter()
                .any(|site| site.probe == Probe::SpawnEntry);
            if source.is_none() && has_entries {
                match BinaryLocations::new(&object.attach_path, bias) {
                    Ok(reader) => {
                        if let Some((start, end)) = reader.process_range() {
                            locations = LocationRange { start, end };
                        }
                        source = Some(Box::new(reader));
                    }
                    Err(error) => location_problem = Some(format!("{error:#}")),
                }
            }
        }
        let count = sites.len();
        Self {
            table: NameTable::new(sites, vtables, source),
            slots,
            locations,
            methods,
            unnamed,
            sites: count,
            location_problem,
        }
    }

    /// Whether the poll site at `address` of object `index` runs a future whose
    /// name `globs` match (`--task`); an unnamed site matches none.
    pub fn site_matches(&self, index: usize, address: u64, globs: &TaskGlobs) -> bool {
        let Some(slot) = self.slots.get(&(index, address)) else {
            return false;
        };
        matches!(
            self.table.site(u32::try_from(*slot).unwrap_or(0)),
            Some(SiteName::Named { name, .. }) if globs.matches(name)
        )
    }

    /// The status line: "names: 20 of 20 poll sites (20 by vtable drop glue)".
    pub fn describe(&self) -> String {
        let named: usize = self.methods.values().sum();
        let how = self
            .methods
            .iter()
            .map(|(method, count)| format!("{count} by {}", method.label()))
            .collect::<Vec<_>>()
            .join(", ");
        format!("names: {named} of {} poll sites named ({how})", self.sites)
    }

    /// Said once on stderr when some poll sites cannot be named: why, and how to
    /// keep names in the build.
    pub fn warning(&self) -> Option<String> {
        if self.unnamed.is_empty() {
            return None;
        }
        let reasons = self
            .unnamed
            .iter()
            .map(|(reason, count)| format!("{count}: {reason}"))
            .collect::<Vec<_>>()
            .join("; ");
        // Advice for what the build lacks: v0 symbols name every site; DWARF
        // all but those whose type it cannot spell (trait impls' closures).
        let advice = if self.methods.contains_key(&Method::Symbol) {
            ""
        } else if self.methods.contains_key(&Method::Dwarf) {
            ". v0 mangling (RUSTFLAGS=\"-C symbol-mangling-version=v0\") names them"
        } else {
            ". To keep names, build with symbols (no `strip`), e.g. `debug = \"line-tables-only\"` \
             in the profile, or with v0 mangling (RUSTFLAGS=\"-C symbol-mangling-version=v0\")"
        };
        Some(format!(
            "{} of {} poll sites have no name ({reasons}); their tasks are traced unnamed{advice}",
            self.unnamed.values().sum::<usize>(),
            self.sites
        ))
    }
}
