//! Assembles a Tokio session's names ([`SessionNames`]): names every poll site of
//! every object of the target, moves vtable addresses to where the process loaded
//! them, gives each poll site its slot (the poll probe's cookie), and finds where
//! the binary's `Location` constants are.

use std::collections::{BTreeMap, HashMap};

use super::{Method, ObjectNames, location::BinaryLocations, name_sites};
use crate::{
    model::names::{LocationSource, NameTable, SiteName},
    runtime::{
        LocationRange, Probe,
        names::SessionNames,
        sites::{Site, TargetObject},
    },
    target::process_map::load_bias,
};

/// Names the poll sites of `objects`, mapped by process `pid`. Never fails:
/// what cannot be read leaves tasks unnamed, with the reason.
pub fn build(pid: u32, objects: &[TargetObject]) -> (SessionNames, LocationRange) {
    let mut names = Gathered::default();
    for (index, object) in objects.iter().enumerate() {
        names.add_object(pid, index, object);
    }
    names.finish()
}

/// What [`build`] has gathered from the objects so far, slot by slot.
#[derive(Default)]
struct Gathered {
    /// By slot: slot `n` is `sites[n - 1]`.
    sites: Vec<SiteName>,
    /// Task vtables' names, by their address in the process.
    vtables: Vec<(u64, SiteName)>,
    slots: HashMap<(usize, u64), u64>,
    methods: BTreeMap<Method, usize>,
    unnamed: BTreeMap<&'static str, usize>,
    locations: LocationRange,
    /// Where spawn locations are read: the first object with spawn entries that
    /// could be read.
    source: Option<Box<dyn LocationSource>>,
    location_problem: Option<String>,
}

impl Gathered {
    /// Names the poll sites of object `index` (none if it has none), or leaves
    /// them unnamed if it cannot be read.
    fn add_object(&mut self, pid: u32, index: usize, object: &TargetObject) {
        let polls: Vec<_> = object
            .sites
            .sites
            .iter()
            .filter(|site| site.probe == Probe::Poll)
            .collect();
        if polls.is_empty() {
            return;
        }
        match (
            name_sites(&object.attach_path, &object.sites.sites),
            load_bias(pid, &object.attach_path),
        ) {
            (Ok(names), Ok(bias)) => {
                self.add_named(index, &polls, names, bias);
                self.find_locations(object, bias);
            }
            (Err(error), _) | (_, Err(error)) => {
                let reason: &'static str = "the binary could not be read for names";
                self.location_problem = Some(format!("{error:#}"));
                for site in polls {
                    self.add_site(index, site.address, SiteName::Unnamed(reason));
                    *self.unnamed.entry(reason).or_default() += 1;
                }
            }
        }
    }

    /// Gives the `polls` of object `index` their names and slots, and keeps its
    /// vtables' names at their addresses in the process (the object's `bias` added).
    fn add_named(&mut self, index: usize, polls: &[&Site], names: ObjectNames, bias: u64) {
        for (method, count) in &names.methods {
            *self.methods.entry(*method).or_default() += count;
        }
        for (reason, count) in names.unnamed() {
            *self.unnamed.entry(reason).or_default() += count;
        }
        for site in polls {
            let name = names
                .sites
                .get(&site.address)
                .cloned()
                .unwrap_or(SiteName::Unnamed("not a poll site"));
            self.add_site(index, site.address, name);
        }
        self.vtables.extend(
            names
                .vtables
                .into_iter()
                .map(|(vtable, name)| (vtable.wrapping_add(bias), name)),
        );
    }

    /// Gives the poll site at `address` in object `index` the next slot, named
    /// `name`.
    fn add_site(&mut self, index: usize, address: u64, name: SiteName) {
        self.sites.push(name);
        self.slots.insert((index, address), self.sites.len() as u64);
    }

    /// Reads spawn locations from `object` if it has spawn entries and no object
    /// before it gave them.
    fn find_locations(&mut self, object: &TargetObject, bias: u64) {
        let has_entries = object
            .sites
            .sites
            .iter()
            .any(|site| site.probe == Probe::SpawnEntry);
        if self.source.is_none() && has_entries {
            match BinaryLocations::new(&object.attach_path, bias) {
                Ok(reader) => {
                    if let Some((start, end)) = reader.process_range() {
                        self.locations = LocationRange { start, end };
                    }
                    self.source = Some(Box::new(reader));
                }
                Err(error) => self.location_problem = Some(format!("{error:#}")),
            }
        }
    }

    /// The session's names and the range of its `Location` constants.
    fn finish(self) -> (SessionNames, LocationRange) {
        let count = self.sites.len();
        let names = SessionNames {
            table: NameTable::new(self.sites, self.vtables, self.source),
            slots: self.slots,
            advice: advice(&self.methods),
            methods: self
                .methods
                .into_iter()
                .map(|(method, count)| (method.label(), count))
                .collect(),
            unnamed: self.unnamed,
            sites: count,
            location_problem: self.location_problem,
        };
        (names, self.locations)
    }
}
/// What to build with so that the unnamed poll sites get names: v0 symbols name
/// every site, DWARF all but those whose type it cannot spell (trait impls'
/// closures).
fn advice(methods: &BTreeMap<Method, usize>) -> &'static str {
    if methods.contains_key(&Method::Symbol) {
        ""
    } else if methods.contains_key(&Method::Dwarf) {
        ". v0 mangling (RUSTFLAGS=\"-C symbol-mangling-version=v0\") names them"
    } else {
        ". To keep names, build with symbols (no `strip`), e.g. `debug = \"line-tables-only\"` \
         in the profile, or with v0 mangling (RUSTFLAGS=\"-C symbol-mangling-version=v0\")"
    }
}
