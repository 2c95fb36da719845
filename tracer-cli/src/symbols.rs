//! Finds a runtime's probe sites in an ELF file: reads the symbol table, demangles
//! Rust names, asks the runtime adapter which functions to probe, and folds
//! identical copies (several symbols at one address) into one site.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context as _, bail};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};

use crate::{
    crate_version, mapped_file,
    runtime::{Probe, RuntimeAdapter},
};

/// One function to attach to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// What the probe on it reports.
    pub probe: Probe,
    /// Virtual address in the ELF file.
    pub address: u64,
    /// Offset in the file, which is what uprobes attach by.
    pub file_offset: u64,
    /// Demangled name of the first symbol found at this address.
    pub symbol: String,
}

/// The probe sites of one object file.
#[derive(Debug)]
pub struct ObjectSites {
    /// Unique sites, sorted by probe then address.
    pub sites: Vec<Site>,
    /// The file has a full symbol table (`.symtab`), not only dynamic symbols.
    pub has_symtab: bool,
    /// The runtime crate's version named in the file's source paths ("1.54.1"
    /// from `tokio-1.54.1/src/…`); `None` when not found, or not looked for
    /// ([`scan_matching`]).
    pub runtime_version: Option<String>,
}

/// Reads `path` and returns the sites `adapter` wants probed, and the version of
/// the runtime crate the file was built with.
///
/// Fails only when the file cannot be read or is not an ELF file for this
/// machine; finding no site is for the caller to judge (see [`ObjectSites`]).
pub fn scan(path: &Path, adapter: &dyn RuntimeAdapter) -> anyhow::Result<ObjectSites> {
    let data = mapped_file::map(path)?;
    let file = parse(path, &data)?;
    let mut sites = sites_in(&file, adapter.symbol_hint(), &|demangled, path| {
        adapter.probe_for(demangled, path)
    });
    sites.runtime_version = crate_version::runtime_version(&file, &data, adapter.name());
    Ok(sites)
}

/// Fails unless `file` (read from `path`) is code for this machine (x86_64), naming
/// the machine it is for.
pub fn check_machine(file: &object::File, path: &Path) -> anyhow::Result<()> {
    let machine = match file.architecture() {
        object::Architecture::X86_64 => return Ok(()),
        object::Architecture::Aarch64 => "an aarch64",
        object::Architecture::Arm => "a 32-bit arm",
        object::Architecture::I386 => "a 32-bit x86",
        object::Architecture::Riscv64 => "a riscv64",
        object::Architecture::PowerPc64 => "a powerpc64",
        object::Architecture::S390x => "an s390x",
        _ => "another machine's",
    };
    bail!(
        "{} is {machine} binary; tracer traces x86_64 programs on this machine (run an x86_64 build of it)",
        path.display()
    )
}

/// [`scan`] with the filter spelled out: symbols containing `hint` are demangled
/// and given to `probe_for` (demangled name, path without generics).
pub fn scan_matching(
    path: &Path,
    hint: &[u8],
    probe_for: &dyn Fn(&str, &str) -> Option<Probe>,
) -> anyhow::Result<ObjectSites> {
    let data = mapped_file::map(path)?;
    Ok(sites_in(&parse(path, &data)?, hint, probe_for))
}

/// Parses an x86_64 ELF file.
fn parse<'data>(path: &Path, data: &'data [u8]) -> anyhow::Result<object::File<'data>> {
    let file = object::File::parse(data)
        .with_context(|| format!("{} is not an ELF file tracer can read", path.display()))?;
    check_machine(&file, path)?;
    Ok(file)
}

/// The probe sites among `file`'s symbols (see [`scan_matching`]).
fn sites_in(
    file: &object::File<'_>,
    hint: &[u8],
    probe_for: &dyn Fn(&str, &str) -> Option<Probe>,
) -> ObjectSites {
    let has_symtab = file.section_by_name(".symtab").is_some();
    let symbols: Vec<_> = if has_symtab {
        file.symbols().collect()
    } else {
        file.dynamic_symbols().collect()
    };

    let mut unique: BTreeMap<(Probe, u64), Site> = BTreeMap::new();
    for symbol in symbols {
        if symbol.kind() != SymbolKind::Text || symbol.address() == 0 {
            continue;
        }
        let Ok(raw_name) = symbol.name_bytes() else {
            continue;
        };
        if !contains(raw_name, hint) {
            continue;
        }
        let Ok(raw_name) = std::str::from_utf8(raw_name) else {
            continue;
        };
        let demangled = format!("{:#}", rustc_demangle::demangle(raw_name));
        let Some(probe) = probe_for(&demangled, &path_without_generics(&demangled)) else {
            continue;
        };
        let address = symbol.address();
        let Some(file_offset) = file_offset(file, &symbol) else {
            continue;
        };
        unique.entry((probe, address)).or_insert(Site {
            probe,
            address,
            file_offset,
            symbol: demangled,
        });
    }
    ObjectSites {
        sites: unique.into_values().collect(),
        has_symtab,
        runtime_version: None,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The offset in `file` of `symbol`'s address: what a uprobe attaches by.
pub fn file_offset(file: &object::File<'_>, symbol: &object::Symbol<'_, '_>) -> Option<u64> {
    let section = file.section_by_index(symbol.section_index()?).ok()?;
    let (section_offset, _) = section.file_range()?;
    Some(symbol.address() - section.address() + section_offset)
}

/// `a::B<T>::f::<U>` → `a::B::f`; `<a::B<T> as c::D>::f` → `a::B::f`. Demangled
/// names differ in their generic arguments between manglings and builds; the path
/// without them is what identifies a function.
pub fn path_without_generics(demangled: &str) -> String {
    let qualified = demangled
        .strip_prefix('<')
        .and_then(|rest| {
            let close = matching_close(rest)?;
            let inner = &rest[..close];
            let self_type = inner.split(" as ").next().unwrap_or(inner);
            Some(format!("{self_type}{}", &rest[close + 1..]))
        })
        .unwrap_or_else(|| demangled.to_owned());

    let mut out = String::with_capacity(qualified.len());
    let mut depth = 0usize;
    for c in qualified.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.replace("::::", "::").trim_end_matches("::").to_owned()
}

/// Index of the `>` closing a group whose `<` was just before `text`.
fn matching_close(text: &str) -> Option<usize> {
    let mut depth = 1usize;
    for (index, c) in text.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    return Some(index);
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

    #[test]
    fn generic_arguments_are_removed_from_paths() {
        assert_eq!(
            path_without_generics("tokio::runtime::task::list::OwnedTasks<S>::bind_inner"),
            "tokio::runtime::task::list::OwnedTasks::bind_inner"
        );
        assert_eq!(
            path_without_generics(
                "<tokio::runtime::task::list::OwnedTasks<alloc::sync::Arc<H>>>::bind_inner::<F>"
            ),
            "tokio::runtime::task::list::OwnedTasks::bind_inner"
        );
        assert_eq!(
            path_without_generics("<tokio::x::Y<T> as core::future::Future>::poll"),
            "tokio::x::Y::poll"
        );
        assert_eq!(
            path_without_generics("tokio::runtime::task::raw::poll"),
            "tokio::runtime::task::raw::poll"
        );
    }
}
