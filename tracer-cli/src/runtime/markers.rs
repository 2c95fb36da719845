//! The embedder markers: functions of the `tracer-resource` crate that an
//! application calls to declare its own async resources.
//!
//! Each is an unmangled `extern "C"` function whose name carries the version of
//! its arguments: `tracer_resource_v1_init(async_id, trigger_id, type_ptr,
//! type_len)`, `tracer_resource_v1_before(async_id)`, `…_after(async_id)`,
//! `…_destroy(async_id)`. This tracer reads v1; markers of any other version are
//! reported by name and left alone, never probed with the wrong arguments.

use std::{cell::RefCell, path::Path};

use tracer_common::ResourceKind;

use super::Probe;
use crate::{
    runtime::sites::{self, ObjectSites, TargetObject},
    target::Target,
};

/// Every marker name starts with this.
pub const MARKER_PREFIX: &str = "tracer_resource_";

/// The marker version this tracer reads.
pub const KNOWN_VERSION: &str = "v1";

/// What a symbol name is, as far as markers go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerName {
    /// A v1 marker: probe it.
    Known(ResourceKind),
    /// A marker of another version (or an unknown v1 event): do not probe it.
    Unknown,
}

/// Classifies `name`; `None` when it is not a marker at all.
pub fn classify(name: &str) -> Option<MarkerName> {
    let rest = name.strip_prefix(MARKER_PREFIX)?;
    let (version, event) = rest.split_once('_')?;
    if !version.starts_with('v') || !version[1..].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if version != KNOWN_VERSION {
        return Some(MarkerName::Unknown);
    }
    Some(match event {
        "init" => MarkerName::Known(ResourceKind::Init),
        "before" => MarkerName::Known(ResourceKind::Before),
        "after" => MarkerName::Known(ResourceKind::After),
        "destroy" => MarkerName::Known(ResourceKind::Destroy),
        _ => MarkerName::Unknown,
    })
}

/// The markers of one object file.
#[derive(Debug)]
pub struct MarkerScan {
    /// The v1 markers, as probe sites.
    pub sites: ObjectSites,
    /// Names of markers this tracer does not know (another crate version).
    pub unknown: Vec<String>,
    /// Two markers share one address (the linker folded identical functions):
    /// their events could not be told apart, so none is probed.
    pub folded: bool,
}

/// Finds the markers in the ELF file at `path`.
pub fn scan(path: &Path) -> anyhow::Result<MarkerScan> {
    let unknown = RefCell::new(Vec::new());
    let mut sites = sites::scan_matching(
        path,
        MARKER_PREFIX.as_bytes(),
        &|name, _| match classify(name)? {
            MarkerName::Known(kind) => Some(Probe::Marker(kind)),
            MarkerName::Unknown => {
                unknown.borrow_mut().push(name.to_owned());
                None
            }
        },
    )?;
    let mut addresses: Vec<u64> = sites.sites.iter().map(|site| site.address).collect();
    addresses.sort_unstable();
    let folded = addresses.windows(2).any(|pair| pair[0] == pair[1]);
    if folded {
        sites.sites.clear();
    }
    let mut unknown = unknown.into_inner();
    unknown.sort();
    unknown.dedup();
    Ok(MarkerScan {
        sites,
        unknown,
        folded,
    })
}

/// The warning for markers folded into one address.
pub fn folded_warning(object: &Path) -> String {
    format!(
        "two tracer-resource markers share one address in {} (the linker folded identical functions, e.g. --icf=all): \
         their events cannot be told apart, so its resources are not traced. Link without identical-code folding.",
        object.display()
    )
}

/// The warning for markers of a version this tracer does not read.
pub fn unknown_version_warning(object: &Path, names: &[String]) -> String {
    format!(
        "{} declares async resources through markers this tracer does not know ({}); \
         it reads tracer-resource {KNOWN_VERSION} markers only, so those resources are not traced. \
         Use a tracer as new as the application's tracer-resource crate.",
        object.display(),
        names.join(", ")
    )
}

/// Finds the embedder markers (`tracer-resource`) in the executable and every
/// mapped shared object, warning on stderr about markers of unknown versions
/// and markers the linker folded together (neither is probed).
pub fn find(target: &Target) -> anyhow::Result<Vec<TargetObject>> {
    let mut objects = Vec::new();
    for attach_path in target.object_paths()? {
        // The executable's read errors are reported by `find_sites`.
        let Ok(scan) = scan(&attach_path) else {
            continue;
        };
        let shown = if attach_path == target.exe_attach_path() {
            &target.exe
        } else {
            &attach_path
        };
        if !scan.unknown.is_empty() {
            eprintln!(
                "tracer: warning: {}",
                unknown_version_warning(shown, &scan.unknown)
            );
        }
        if scan.folded {
            eprintln!("tracer: warning: {}", folded_warning(shown));
        }
        if !scan.sites.sites.is_empty() {
            objects.push(TargetObject {
                attach_path,
                sites: scan.sites,
            });
        }
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_markers_are_probed_by_event() {
        assert_eq!(
            classify("tracer_resource_v1_init"),
            Some(MarkerName::Known(ResourceKind::Init))
        );
        assert_eq!(
            classify("tracer_resource_v1_destroy"),
            Some(MarkerName::Known(ResourceKind::Destroy))
        );
    }

    #[test]
    fn markers_of_another_version_are_unknown_not_misread() {
        assert_eq!(
            classify("tracer_resource_v2_init"),
            Some(MarkerName::Unknown)
        );
        assert_eq!(
            classify("tracer_resource_v1_resolve"),
            Some(MarkerName::Unknown)
        );
    }

    #[test]
    fn other_symbols_are_not_markers() {
        assert_eq!(classify("tracer_resource_internal"), None);
        assert_eq!(classify("tracer_resource::AsyncResource::new"), None);
        assert_eq!(classify("tokio::runtime::task::raw::poll"), None);
    }
}
