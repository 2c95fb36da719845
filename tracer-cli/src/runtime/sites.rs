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
    runtime::{ADAPTERS, Probe, RuntimeAdapter},
    target::{
        Target, as_seen, crate_version, mapped_file,
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

impl ObjectSites {
    /// The addresses of the sites probed as `probe`.
    pub fn addresses(&self, probe: Probe) -> Vec<u64> {
        self.sites
            .iter()
            .filter(|s| s.probe == probe)
            .map(|s| s.address)
            .collect()
    }
}

/// Reads `path` and returns the sites `adapter` wants probed, and the version of
/// the runtime crate the file was built with.
///
/// Fails only when the file cannot be read or is not an ELF file for this
/// machine; finding no site is for the caller to judge (see [`ObjectSites`]).
pub fn scan(path: &Path, adapter: &dyn RuntimeAdapter) -> anyhow::Result<ObjectSites> {
    let data = mapped_file::map(path)?;
    let file = parse(path, &data)?;
    let names = if adapter.mangled_names() {
        Names::Mangled
    } else {
        Names::Rust
    };
    let mut sites = sites_in(&file, adapter.symbol_hint(), names, &|demangled, path| {
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
    Ok(sites_in(&parse(path, &data)?, hint, Names::Rust, probe_for))
}

/// How symbol names are given to an adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Names {
    /// Demangled as Rust (legacy or v0) names, with the path without generics.
    Rust,
    /// As mangled, twice (C++: Itanium names say which overload and which
    /// constructor or destructor variant a symbol is, which demangled names
    /// do not).
    Mangled,
}

/// The probe sites among `file`'s symbols (see [`scan_matching`]).
fn sites_in(
    file: &object::File<'_>,
    hint: &[u8],
    names: Names,
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
        let (demangled, path) = match names {
            Names::Rust => {
                let demangled = format!("{:#}", rustc_demangle::demangle(raw_name));
                let path = path_without_generics(&demangled);
                (demangled, path)
            }
            Names::Mangled => (raw_name.to_owned(), raw_name.to_owned()),
        };
        let Some(probe) = probe_for(&demangled, &path) else {
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

/// Finds which runtime `target` runs and that runtime's probe sites, in the
/// executable and in every mapped shared object: the first adapter of
/// [`ADAPTERS`] with sites wins. Fails with advice when no runtime can be traced;
/// with `has_markers` (the target declares its own resources), a target without
/// any runtime is fine (`None`): only its markers are traced.
pub fn detect(
    target: &Target,
    has_markers: bool,
) -> anyhow::Result<Option<(&'static dyn RuntimeAdapter, Vec<TargetObject>)>> {
    let mut exe_stripped = false;
    for adapter in ADAPTERS {
        let (objects, stripped) = scan_process(target, *adapter)?;
        exe_stripped |= stripped;
        if !objects.is_empty() {
            check_required(target, *adapter, &objects)?;
            return Ok(Some((*adapter, objects)));
        }
    }
    if has_markers {
        return Ok(None);
    }
    let names = ADAPTERS
        .iter()
        .map(|adapter| adapter.display_name())
        .collect::<Vec<_>>()
        .join(" or ");
    let objects = target.object_paths()?;
    if let Some((object, found)) = recognized(&objects) {
        bail!(
            "found {found} in {} (by its version string), but no symbol there names its functions: \
             tracer finds them by name, and this build is stripped or hides them; use a build that keeps its symbol table",
            as_seen(target.pid, object).display(),
        );
    }
    if exe_stripped {
        bail!(
            "no supported runtime found in {exe}{}: {exe} is stripped: tracer finds the runtime's functions ({names}) by name in the symbol table, and this binary has none.\n\
             Keep symbols and rebuild. Rust: in Cargo.toml set\n    [profile.release]\n    strip = false\n    debug = \"line-tables-only\"\n\
             Go: build without `-ldflags=-s` (`-w` alone, which drops DWARF, is fine)\n\
             Node.js: use a build that keeps its symbol table (NodeSource's and Debian's do)",
            libraries(&objects),
            exe = target.exe.display(),
        );
    }
    bail!(
        "no supported runtime found in {}{}: none of its functions is one of {names}'s, and it declares no resources with tracer-resource (tracer traces Tokio 1.x, Go and Node.js programs)",
        target.exe.display(),
        libraries(&objects),
    )
}

/// The first of `objects` (paths as [`Target::object_paths`] gives them) that
/// an adapter recognizes without symbols, and what it found there.
fn recognized(objects: &[PathBuf]) -> Option<(&Path, String)> {
    objects.iter().find_map(|object| {
        let data = mapped_file::map(object).ok()?;
        let found = ADAPTERS
            .iter()
            .find_map(|adapter| adapter.recognize(&data))?;
        Some((object.as_path(), found))
    })
}

/// " nor in the 2 libraries it maps (libc.so.6, ld-linux-x86-64.so.2)", for
/// `objects` of which the first is the executable.
fn libraries(objects: &[PathBuf]) -> String {
    let names: Vec<String> = objects
        .iter()
        .skip(1)
        .filter_map(|object| Some(object.file_name()?.to_string_lossy().into_owned()))
        .collect();
    match names.len() {
        0 => String::new(),
        count => format!(
            " nor in the {count} librar{} it maps ({})",
            if count == 1 { "y" } else { "ies" },
            names.join(", ")
        ),
    }
}

/// The sites `adapter` wants in the executable and every mapped shared object
/// (objects without any left out), and whether the executable has no symbol
/// table.
fn scan_process(
    target: &Target,
    adapter: &dyn RuntimeAdapter,
) -> anyhow::Result<(Vec<TargetObject>, bool)> {
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
    Ok((objects, exe_stripped))
}

/// Fails unless `objects` hold every site `adapter` requires for a complete
/// trace.
fn check_required(
    target: &Target,
    adapter: &dyn RuntimeAdapter,
    objects: &[TargetObject],
) -> anyhow::Result<()> {
    let found = |probe| {
        objects
            .iter()
            .any(|o| o.sites.sites.iter().any(|s| s.probe == probe))
    };
    let missing: Vec<&str> = adapter
        .required()
        .iter()
        .filter(|(alternatives, _)| !alternatives.iter().any(|probe| found(*probe)))
        .map(|(_, what)| *what)
        .collect();
    if !missing.is_empty() {
        let name = adapter.display_name();
        bail!(
            "unsupported {name} build in {}: found some of its functions but not: {}. \
             They may have been inlined by a build setting tracer does not know (Cargo's dev and release profiles, `codegen-units = 1`, LTO and every `opt-level` are traced) or this {name} version lays its objects out differently; tracer refuses rather than report wrong events",
            target.exe.display(),
            missing.join("; "),
        );
    }
    Ok(())
}
