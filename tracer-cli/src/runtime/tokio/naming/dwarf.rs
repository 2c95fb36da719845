//! Names poll sites from DWARF: a binary built with debug info, even
//! `debug = "line-tables-only"`, has a `DW_TAG_subprogram` for every out-of-line
//! `tokio::runtime::task::raw::poll<T, S>`, whose `DW_AT_name` spells out `T`
//! and `S`, at its `DW_AT_low_pc`: the future type of the site at that address,
//! whatever the linker did to the drop glue.
//!
//! DWARF spells closures and async bodies its own way
//! (`app::run::{async_fn#0}::{async_block_env#3}`, `app::f::{closure_env#0}<u8>`);
//! [`legacy_spelling`] writes them as `std::any::type_name` and legacy symbols do
//! (`app::run::{{closure}}::{{closure}}`, `app::f<u8>::{{closure}}`), so every
//! source gives one name.

use std::collections::{HashMap, HashSet};

use object::Object as _;

use super::drop_glue;
use crate::target::{
    dwarf::{DwarfSource, Reader},
    image::Image,
};

/// The namespace of `raw::poll`.
const RAW_NAMESPACE: &str = "tokio::runtime::task::raw";
/// The namespace of `Harness<T, S>`'s methods (DWARF adds the impl: `::{impl#N}`).
const HARNESS_NAMESPACE: &str = "tokio::runtime::task::harness::{impl#";
/// `Harness<T, S>::poll`, as a legacy symbol demangles without its hash.
const HARNESS_POLL: &str = "tokio::runtime::task::harness::Harness<T,S>::poll";

/// DWARF's names of closures and async bodies, each of which is a `{{closure}}`
/// in `type_name` and legacy symbols.
const CLOSURE_SEGMENTS: [&str; 6] = [
    "{async_fn_env#",
    "{async_block_env#",
    "{closure_env#",
    "{async_fn#",
    "{async_block#",
    "{closure#",
];

/// A future type and its scheduler type, in the legacy spelling.
pub type PollType = (String, Option<String>);

/// What DWARF says is at one address: a `poll<T, S>` subprogram's namespace
/// (empty where DWARF keeps none, as `line-tables-only` does) and types as
/// DWARF spells them (`None` when several differ).
type Subprogram = (String, Option<PollType>);

/// `T` and `S` (in the legacy spelling) of each `raw::poll` site among `sites`:
/// from the `poll<T, S>` subprogram DWARF places at the site, or, where the
/// site is a thunk (release builds: `jmp Harness<T, S>::poll`), at the
/// `Harness<T, S>::poll` it calls (and no other site does), the symbol table
/// saying which it is. A site with no such subprogram, or whose candidates
/// disagree (folded copies), or whose type DWARF cannot spell as users read it
/// (a closure in a trait impl's `{impl#N}`), is left out: the other routes
/// decide those.
pub fn poll_types(
    file: &object::File<'_>,
    image: &Image<'_>,
    sites: &[u64],
) -> HashMap<u64, PollType> {
    let types = dwarf_poll_types(DwarfSource::File(file), image, sites);
    let impls = ImplNames::new(
        image,
        types
            .values()
            .flat_map(|(future, scheduler)| std::iter::once(future).chain(scheduler)),
    );
    types
        .into_iter()
        .filter_map(|(site, (future, scheduler))| {
            let future = legacy_spelling(&future, &impls)?;
            Some((
                site,
                (future, scheduler.and_then(|s| legacy_spelling(&s, &impls))),
            ))
        })
        .collect()
}

/// [`poll_types`] as DWARF spells them (`app::f::{async_fn_env#0}`), the
/// names of DWARF's own types (`Cell<T, S>`).
pub fn dwarf_poll_types(
    source: DwarfSource<'_, '_>,
    image: &Image<'_>,
    sites: &[u64],
) -> HashMap<u64, PollType> {
    if let DwarfSource::File(file) = source
        && file.section_by_name(".debug_info").is_none()
    {
        return HashMap::new();
    }
    let harness_polls: HashMap<u64, Vec<u64>> = sites
        .iter()
        .map(|site| {
            let callees = drop_glue::direct_calls(image, *site)
                .into_iter()
                .filter(|callee| is_harness_poll(image, *callee))
                .collect();
            (*site, callees)
        })
        .collect();
    let wanted: HashSet<u64> = sites
        .iter()
        .copied()
        .chain(harness_polls.values().flatten().copied())
        .collect();
    let subprograms = subprograms(source, &wanted);
    let mut callers: HashMap<u64, usize> = HashMap::new();
    for callee in harness_polls.values().flatten() {
        *callers.entry(*callee).or_default() += 1;
    }
    let mut types = HashMap::new();
    for site in sites {
        let own = subprograms
            .get(site)
            .filter(|(namespace, _)| namespace.is_empty() || namespace == RAW_NAMESPACE)
            .map(|(_, ty)| ty.clone());
        let ty = own.unwrap_or_else(|| {
            let mut found: Vec<Option<PollType>> = Vec::new();
            // A `Harness::poll` that several sites reach is code the linker
            // folded for several types: its DWARF name may be another's.
            let own_callees = harness_polls[site]
                .iter()
                .filter(|callee| callers.get(*callee).copied().unwrap_or_default() == 1);
            for callee in own_callees {
                if let Some((namespace, ty)) = subprograms.get(callee)
                    && (namespace.is_empty() || namespace.starts_with(HARNESS_NAMESPACE))
                    && !found.contains(ty)
                {
                    found.push(ty.clone());
                }
            }
            match found.as_slice() {
                [one] => one.clone(),
                _ => None,
            }
        });
        if let Some(ty) = ty {
            types.insert(*site, ty);
        }
    }
    types
}

/// Whether the symbol table calls the function at `address` `Harness<T, S>::poll`.
fn is_harness_poll(image: &Image<'_>, address: u64) -> bool {
    image
        .names(address)
        .iter()
        .any(|name| format!("{:#}", rustc_demangle::demangle(name)) == HARNESS_POLL)
}

/// The `poll<…>` subprograms DWARF places at `wanted` addresses.
fn subprograms(source: DwarfSource<'_, '_>, wanted: &HashSet<u64>) -> HashMap<u64, Subprogram> {
    let mut found = HashMap::new();
    source.for_each_unit(&mut |dwarf, unit, _| unit_subprograms(dwarf, unit, wanted, &mut found));
    found
}

/// Adds the `poll<…>` subprograms of `unit` at `wanted` addresses to `found`.
fn unit_subprograms(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &gimli::Unit<Reader<'_>>,
    wanted: &HashSet<u64>,
    found: &mut HashMap<u64, Subprogram>,
) -> gimli::Result<()> {
    // The namespace name of each ancestor of the current entry (None: not a namespace).
    let mut ancestors: Vec<Option<String>> = Vec::new();
    let mut depth = 0isize;
    let mut entries = unit.entries();
    while let Some((delta, entry)) = entries.next_dfs()? {
        depth += delta;
        ancestors.truncate(usize::try_from(depth).unwrap_or_default());
        let tag = entry.tag();
        let name = if tag == gimli::DW_TAG_namespace || tag == gimli::DW_TAG_subprogram {
            match entry.attr_value(gimli::DW_AT_name)? {
                Some(value) => Some(dwarf.attr_string(unit, value)?.to_string_lossy()),
                None => None,
            }
        } else {
            None
        };
        if tag == gimli::DW_TAG_subprogram
            && let Some(name) = name.as_deref()
            && let Some(args) = name.strip_prefix("poll<")
            && let Some(value) = entry.attr_value(gimli::DW_AT_low_pc)?
            && let Some(address) = dwarf.attr_address(unit, value)?
            && wanted.contains(&address)
        {
            let namespace = ancestors
                .iter()
                .flatten()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join("::");
            let ty = drop_glue::generic_args(args).and_then(|args| {
                let future = args.first()?.trim().to_owned();
                Some((future, args.get(1).map(|s| s.trim().to_owned())))
            });
            match found.get(&address) {
                None => {
                    found.insert(address, (namespace, ty));
                }
                Some((_, seen)) if *seen != ty => {
                    found.insert(address, (namespace, None));
                }
                Some(_) => {}
            }
        }
        ancestors.push(if tag == gimli::DW_TAG_namespace {
            name.map(|name| name.into_owned())
        } else {
            None
        });
    }
    Ok(())
}

/// The types DWARF's `{impl#N}` segments stand for, from the symbol table:
/// DWARF names a method's code `app::{impl#0}::serve`, the symbol table
/// `app::Server::serve`.
#[derive(Debug, Default)]
pub struct ImplNames {
    /// (path before the impl, method) → the one type whose method it is.
    types: HashMap<(String, String), String>,
}

impl ImplNames {
    /// The impls `texts` name, resolved against the functions of `image`.
    pub fn new<'a>(image: &Image<'_>, texts: impl Iterator<Item = &'a String>) -> Self {
        let wanted: HashSet<(String, String)> =
            texts.flat_map(|text| impl_segments(text)).collect();
        if wanted.is_empty() {
            return Self::default();
        }
        Self::from_symbols(
            &wanted,
            image
                .all_names()
                .map(|name| format!("{:#}", rustc_demangle::demangle(name))),
        )
    }

    /// The impls among `wanted` that exactly one generic-free type of
    /// `symbols` (demangled names) has.
    pub fn from_symbols(
        wanted: &HashSet<(String, String)>,
        symbols: impl Iterator<Item = String>,
    ) -> Self {
        let mut seen: HashMap<(String, String), HashSet<String>> = HashMap::new();
        for symbol in symbols {
            for (prefix, method) in wanted {
                let Some(rest) = symbol
                    .strip_prefix(prefix.as_str())
                    .and_then(|rest| rest.strip_prefix("::"))
                else {
                    continue;
                };
                let Some((ty, rest)) = rest.split_once("::") else {
                    continue;
                };
                let rest = rest.split("::").next().unwrap_or_default();
                if rest == method {
                    seen.entry((prefix.clone(), method.clone()))
                        .or_default()
                        .insert(ty.to_owned());
                }
            }
        }
        let types = seen
            .into_iter()
            .filter_map(|(key, types)| {
                let mut types = types.into_iter();
                match (types.next(), types.next()) {
                    (Some(ty), None) if !ty.contains(['<', ' ']) => Some((key, ty)),
                    _ => None,
                }
            })
            .collect();
        Self { types }
    }
}

/// Each `{impl#N}` of `text` as (the path before it, the method after it):
/// `app::{impl#0}::serve::{async_fn_env#0}` has `("app", "serve")`.
fn impl_segments(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("::{impl#").map(|at| at + from) {
        let start = text[..at]
            .rfind(['<', ',', ' ', '(', '[', '&', '*'])
            .map_or(0, |delimiter| delimiter + 1);
        let Some(close) = text[at..].find('}').map(|close| close + at) else {
            break;
        };
        let after = text[close + 1..].strip_prefix("::").unwrap_or_default();
        let method_len = after
            .find([':', '<', '>', ',', ' ', ')', ']'])
            .unwrap_or(after.len());
        found.push((text[start..at].to_owned(), after[..method_len].to_owned()));
        from = close + 1;
    }
    found
}

/// A DWARF type name as `type_name` spells it: generic arguments that DWARF
/// puts on a closure (`f::{closure_env#0}<u8>`) go on the function that holds
/// it (`f<u8>::{{closure}}`), every closure or async body is `{{closure}}`, and
/// an `{impl#N}` is the type the symbol table says it is for. `None` when an
/// impl's type is not known for certain: a name without it would not be the
/// one users read.
pub fn legacy_spelling(ty: &str, impls: &ImplNames) -> Option<String> {
    let mut out = ty.to_owned();
    while let Some((prefix, method)) = impl_segments(&out).into_iter().next() {
        let resolved = impls.types.get(&(prefix, method))?;
        let at = out.find("::{impl#")?;
        let close = at + out[at..].find('}')?;
        out.replace_range(at + 2..=close, resolved);
    }
    // Move each closure's generic arguments in front of it, outermost first.
    let mut from = 0;
    while let Some(at) = closure_with_args(&out, from) {
        let (segment_start, args_start) = at;
        let args_end = matching_close(&out, args_start)?;
        let args = out[args_start..=args_end].to_owned();
        let segment = out[segment_start..args_start].to_owned();
        out.replace_range(segment_start..=args_end, &format!("{args}{segment}"));
        // The arguments may hold closures with arguments of their own.
        from = segment_start;
    }
    for prefix in CLOSURE_SEGMENTS {
        while let Some(start) = out.find(prefix) {
            let len = out[start..].find('}')?;
            out.replace_range(start..start + len + 1, "{{closure}}");
        }
    }
    Some(out)
}

/// The first `::{…_env#N}<` at or after `from`: (where `::` starts, where `<` is).
fn closure_with_args(text: &str, from: usize) -> Option<(usize, usize)> {
    let mut search = from;
    while let Some(found) = text.get(search..)?.find("::{") {
        let start = search + found;
        let close = start + text[start..].find('}')?;
        let segment = &text[start + 2..=close];
        if segment.contains("_env#") && text[close + 1..].starts_with('<') {
            return Some((start, close + 1));
        }
        search = close + 1;
    }
    None
}

/// The index of the `>` that closes the `<` at `open`.
fn matching_close(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (at, c) in text.char_indices().skip_while(|(at, _)| *at < open) {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    return Some(at);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy_spelling(ty: &str) -> Option<String> {
        super::legacy_spelling(ty, &ImplNames::default())
    }

    #[test]
    fn dwarf_closures_and_async_bodies_read_as_type_name_spells_them() {
        assert_eq!(
            legacy_spelling("app::run::{async_fn#0}::{async_block_env#3}").as_deref(),
            Some("app::run::{{closure}}::{{closure}}")
        );
        assert_eq!(
            legacy_spelling("app::handle::{async_fn_env#0}").as_deref(),
            Some("app::handle::{{closure}}")
        );
        assert_eq!(
            legacy_spelling("app::worker::{async_fn_env#0}<u64>").as_deref(),
            Some("app::worker<u64>::{{closure}}")
        );
        assert_eq!(
            legacy_spelling(
                "tokio::runtime::blocking::task::BlockingTask<app::wrap::{closure_env#0}<i32, app::run::{async_fn#0}::{async_block#1}::{closure_env#0}>>"
            )
            .as_deref(),
            Some(
                "tokio::runtime::blocking::task::BlockingTask<app::wrap<i32, app::run::{{closure}}::{{closure}}::{{closure}}>::{{closure}}>"
            )
        );
    }

    #[test]
    fn methods_are_named_by_the_one_type_the_symbols_give_them_or_not_at_all() {
        let ty = "app::{impl#0}::serve::{async_fn_env#0}";
        assert_eq!(legacy_spelling(ty), None);
        let wanted = impl_segments(ty).into_iter().collect();
        assert_eq!(
            wanted,
            HashSet::from([("app".to_owned(), "serve".to_owned())])
        );
        let symbols = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let one = ImplNames::from_symbols(
            &wanted,
            symbols(&[
                "app::Server::serve",
                "app::Server::serve::{{closure}}",
                "app::main",
            ])
            .into_iter(),
        );
        assert_eq!(
            super::legacy_spelling(ty, &one).as_deref(),
            Some("app::Server::serve::{{closure}}")
        );
        let two = ImplNames::from_symbols(
            &wanted,
            symbols(&["app::Server::serve", "app::Client::serve"]).into_iter(),
        );
        assert_eq!(super::legacy_spelling(ty, &two), None);
        let generic =
            ImplNames::from_symbols(&wanted, symbols(&["app::Server<T>::serve"]).into_iter());
        assert_eq!(super::legacy_spelling(ty, &generic), None);
    }
}
