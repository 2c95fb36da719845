//! The Go adapter: which runtime functions to probe, the offsets its programs
//! read (from the binary), how goroutines are named, and the mapping of its
//! records ([`super::events`]).

use std::{path::Path, sync::Arc};

use anyhow::{Context as _, bail};
use tracer_common::go::layout;

use super::{
    events::GoEvents,
    functions::GoFunctions,
    image::GoImage,
    layout::{LayoutSource, resolve},
    wait_reasons,
};
use crate::{
    model::{
        event::ResourceType,
        names::{AddressNamer, LocationSource, NameTable, SiteName},
    },
    runtime::probe_point,
    runtime::{
        BpfGlobals, Prepared, Probe, RuntimeAdapter, names::SessionNames, sites::TargetObject,
    },
    target::{image::Image, mapped_file, process_map::load_bias},
};

/// Go 1.19 and 1.21 to 1.23: goroutines, through `runtime.casgstatus`.
pub struct Go;

/// A goroutine (Go's `go` statement).
pub const GO_GOROUTINE: ResourceType = ResourceType::from_static("go.goroutine");
/// A goroutine of the runtime's own (GC workers, the sweeper, the scavenger,
/// finalizers): what Go's `isSystemGoroutine` says.
pub const GO_RUNTIME: ResourceType = ResourceType::from_static("go.runtime");

/// Why a goroutine has no name: its start PC is in no function of the binary.
const NOT_A_FUNCTION: &str = "its start PC is in no function of the binary";
/// Why a goroutine has no location: the binary's tables give none.
const NO_LINE: &str = "the binary's line table gives its start function no line";

impl RuntimeAdapter for Go {
    fn name(&self) -> &'static str {
        "go"
    }

    fn display_name(&self) -> &'static str {
        "Go"
    }

    fn symbol_hint(&self) -> &'static [u8] {
        b"runtime."
    }

    fn probe_for(&self, demangled: &str, _path: &str) -> Option<Probe> {
        match demangled {
            "runtime.casgstatus" => Some(Probe::GoStatus),
            "runtime.preemptPark" => Some(Probe::GoPreemptPark),
            "runtime.newproc1" => Some(Probe::GoNewProc),
            _ => None,
        }
    }

    fn required(&self) -> &'static [(&'static [Probe], &'static str)] {
        &[
            (
                &[Probe::GoStatus],
                "goroutine status changes (runtime.casgstatus)",
            ),
            (
                &[Probe::GoPreemptPark],
                "async preemption (runtime.preemptPark)",
            ),
        ]
    }

    fn prepare(&self, pid: u32, objects: &mut Vec<TargetObject>) -> anyhow::Result<Prepared> {
        let [object] = objects.as_mut_slice() else {
            bail!(
                "Go's runtime functions are in {} mapped objects; tracer traces one Go runtime per process",
                objects.len()
            );
        };
        let binary = GoBinary::read(&object.attach_path)?;
        if binary.parent_goid.is_some() {
            // `g.parentGoid` says who created a goroutine: no `newproc1` probe.
            object
                .sites
                .sites
                .retain(|site| site.probe != Probe::GoNewProc);
        }
        for site in &mut object.sites.sites {
            let code = binary.code(site.file_offset);
            let offset = probe_point::emulated_offset(code, site.address);
            site.address += offset;
            site.file_offset += offset;
        }
        let bias = load_bias(pid, &object.attach_path)?;
        let functions = Arc::new(StartFunctions {
            functions: binary.functions,
            bias,
        });
        let table = NameTable::by_namer(Box::new(functions.clone()), Box::new(functions));
        Ok(Prepared {
            globals: binary.globals,
            names: SessionNames::without_sites(table),
            default_type: GO_GOROUTINE,
            records: Some(Box::new(GoEvents::new(
                binary.round_trip_mask,
                binary.reasons_before_cas,
            ))),
            version: Some(binary.version),
        })
    }
}

/// What the session needs from a Go binary, read once.
struct GoBinary {
    /// "go1.23.5".
    version: String,
    globals: BpfGlobals,
    parent_goid: Option<u64>,
    round_trip_mask: u64,
    reasons_before_cas: bool,
    functions: GoFunctions<'static>,
    /// The file's bytes.
    data: &'static [u8],
}

impl GoBinary {
    /// The first bytes of the code at `file_offset` (fewer at the file's end).
    fn code(&self, file_offset: u64) -> &'static [u8] {
        let start = usize::try_from(file_offset)
            .unwrap_or(usize::MAX)
            .min(self.data.len());
        &self.data[start..(start + 64).min(self.data.len())]
    }

    /// Reads the binary at `path`. Its bytes stay mapped for the rest of the
    /// process: goroutines are named from them as they are first seen.
    fn read(path: &Path) -> anyhow::Result<Self> {
        let data: &'static [u8] = Box::leak(Box::new(mapped_file::map(path)?));
        let file = object::File::parse(data)
            .with_context(|| format!("{} is not an ELF file tracer can read", path.display()))?;
        let image = GoImage::inspect(&file, path)?;
        let resolved = resolve(&image, &file)?;
        for mismatch in &resolved.mismatches {
            eprintln!(
                "tracer: warning: {} is at {:?} in this binary's DWARF but at {:?} in {}'s table; using DWARF's",
                mismatch.field, mismatch.dwarf, mismatch.table, image.version.text
            );
        }
        let layout_of = resolved.layout;
        let words = Image::new(&file);
        let reasons = wait_reasons::wait_reasons(&file, &words, image.version.minor)
            .with_context(|| {
                format!(
                    "cannot tell the runtime's own waits from blocks in {}: {} has no `runtime.waitReasonStrings` tracer can read and no table",
                    path.display(),
                    image.version.text
                )
            })?;
        let functions = GoFunctions::new(&file, &words)
            .with_context(|| format!("cannot read the function table of {}", path.display()))?;
        if resolved.source == LayoutSource::Table {
            eprintln!(
                "tracer: {} has no DWARF: goroutine offsets come from tracer's table for {}",
                path.display(),
                image.version.text
            );
        }
        Ok(Self {
            version: image.version.text.clone(),
            globals: BpfGlobals(vec![
                (layout::G_GOID, layout_of.g_goid),
                (layout::G_M, layout_of.g_m),
                (layout::G_STARTPC, layout_of.g_startpc),
                (layout::G_WAITREASON, layout_of.g_waitreason),
                (layout::G_PARENT_GOID, layout_of.g_parent_goid.unwrap_or(0)),
                (layout::M_CURG, layout_of.m_curg),
                (layout::FUNCVAL_FN, layout_of.funcval_fn),
                (layout::M_P, layout_of.m_p),
                (layout::M_SYSCALLTICK, layout_of.m_syscalltick),
                (layout::P_SYSCALLTICK, layout_of.p_syscalltick),
            ]),
            parent_goid: layout_of.g_parent_goid,
            round_trip_mask: reasons.round_trip_mask,
            reasons_before_cas: reasons.set_before_cas,
            functions,
            data,
        })
    }
}

/// Names and locates goroutines by their start PC, in the process (`bias`: where
/// the binary was loaded, 0 unless it is PIE).
struct StartFunctions {
    functions: GoFunctions<'static>,
    bias: u64,
}

impl AddressNamer for Arc<StartFunctions> {
    fn name(&mut self, address: u64) -> SiteName {
        match self
            .functions
            .start_function(address.wrapping_sub(self.bias))
        {
            Some(start) => SiteName::Named {
                name: start.name,
                resource_type: Some(if start.runtime_internal {
                    GO_RUNTIME
                } else {
                    GO_GOROUTINE
                }),
            },
            None => SiteName::Unnamed(NOT_A_FUNCTION),
        }
    }
}

impl LocationSource for Arc<StartFunctions> {
    fn location(&mut self, pointer: u64) -> Result<String, &'static str> {
        let start = self
            .functions
            .start_function(pointer.wrapping_sub(self.bias))
            .ok_or(NOT_A_FUNCTION)?;
        let (file, line) = start.location.ok_or(NO_LINE)?;
        Ok(format!("{file}:{line}"))
    }
}
