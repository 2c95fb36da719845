//! Finds a runtime's probe sites in a process: reads the symbol table of its
//! executable and of every shared object it maps, demangles Rust names, asks the
//! runtime adapter which functions to probe, and folds identical copies (several
//! symbols at one address) into one site.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use object::{Object as _, ObjectSymbol as _, SymbolKind};

use crate::{
    runtime::{Probe, RuntimeAdapter},
    target::{
        Target, crate_version, mapped_file,
        symbols::{contains, file_offset, parse, path_without_generics},
    },
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

/// Sites found in one object, with the path the kernel should attach through.
#[derive(Debug)]
pub struct TargetObject {
    /// Path uprobes attach to (`/proc/PID/exe` or `/proc/PID/root/…`), valid even
    /// if the file on disk was replaced since the process started.
    pub attach_path: PathBuf,
    /// What was found in it.
    pub sites: ObjectSites,
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

/// Finds the runtime's probe sites in the executable and in every mapped
/// shared object, failing with advice when the runtime cannot be traced.
/// With `has_markers` (the target declares its own resources), a target
/// without the runtime at all is fine: only its markers are traced.
pub fn find_sites(
    target: &Target,
    adapter: &dyn RuntimeAdapter,
    has_markers: bool,
) -> anyhow::Result<Vec<TargetObject>> {
    let exe_attach = target.exe_attach_path();
    let exe_sites = scan(&exe_attach, adapter)
        .with_context(|| format!("cannot read the symbols of {}", target.exe.display()))?;
    let exe_stripped = !exe_sites.has_symtab;
    let mut objects = vec![TargetObject {
        attach_path: exe_attach,
        sites: exe_sites,
    }];
    // The executable comes first in `object_paths`; its errors were reported above.
    for attach_path in target.object_paths()?.into_iter().skip(1) {
        if let Ok(sites) = scan(&attach_path, adapter)
            && !sites.sites.is_empty()
        {
            objects.push(TargetObject { attach_path, sites });
        }
    }
    objects.retain(|object| !object.sites.sites.is_empty());

    let found = |probe| {
        objects
            .iter()
            .any(|o| o.sites.sites.iter().any(|s| s.probe == probe))
    };
    if objects.is_empty() {
        if has_markers {
            return Ok(objects);
        }
        if exe_stripped {
            bail!(
                "{} is stripped: tracer finds {}'s functions by name in the symbol table, and this binary has none.\n\
                 Keep symbols and rebuild: in Cargo.toml set\n    [profile.release]\n    strip = false\n    debug = \"line-tables-only\"",
                target.exe.display(),
                adapter.name()
            );
        }
        bail!(
            "no Tokio runtime found in {}: none of its functions is one of {}'s task functions, and it declares no resources with tracer-resource (is it a {} 1.x program?)",
            target.exe.display(),
            adapter.name(),
            adapter.name()
        );
    }
    let missing: Vec<&str> = adapter
        .required()
        .iter()
        .filter(|(alternatives, _)| !alternatives.iter().any(|probe| found(*probe)))
        .map(|(_, what)| *what)
        .collect();
    if !missing.is_empty() {
        bail!(
            "unsupported {} build in {}: found some of its task functions but not: {}. \
             They may have been inlined (as `lto = \"fat\"` does: build the program without it) or this {} version lays tasks out differently; tracer refuses rather than report wrong events",
            adapter.name(),
            target.exe.display(),
            missing.join("; "),
            adapter.name()
        );
    }
    Ok(objects)
}
