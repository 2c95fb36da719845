//! Assembles a Tokio session's names ([`SessionNames`]): names every poll site of
//! every object of the target, moves vtable addresses to where the process loaded
//! them, gives each poll site its slot (the poll probe's cookie), and finds where
//! the binary's `Location` constants are.

use std::collections::{BTreeMap, HashMap};

use super::{Method, location::BinaryLocations, name_sites};
use crate::{
    model::names::{LocationSource, NameTable, SiteName},
    runtime::{LocationRange, Probe, names::SessionNames, sites::TargetObject},
    target::process_map::load_bias,
};

/// Names the poll sites of `objects`, mapped by process `pid`. Never fails:
/// what cannot be read leaves tasks unnamed, with the reason.
pub fn build(pid: u32, objects: &[TargetObject]) -> (SessionNames, LocationRange) {
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
    let names = SessionNames {
        table: NameTable::new(sites, vtables, source),
        slots,
        advice: advice(&methods),
        methods: methods
            .into_iter()
            .map(|(method, count)| (method.label(), count))
            .collect(),
        unnamed,
        sites: count,
        location_problem,
    };
    (names, locations)
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
