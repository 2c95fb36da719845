//! DWARF as tracer reads it, for every runtime: the sections of an ELF file,
//! decompressed where the linker compressed them (Go's linker always does),
//! walked one unit at a time; or a DWARF package's split units, through the
//! binary's skeleton units ([`DwarfSource`]).

use std::borrow::Cow;

use gimli::{EndianSlice, LittleEndian, SectionId};
use object::{Object as _, ObjectSection as _};

/// A DWARF reader over sections borrowed from [`sections`].
pub type Reader<'a> = EndianSlice<'a, LittleEndian>;

/// What [`for_each_unit`] calls with each unit: `Ok(false)` stops the walk.
pub type UnitVisitor<'v> =
    dyn FnMut(&gimli::Dwarf<Reader<'_>>, &gimli::Unit<Reader<'_>>) -> gimli::Result<bool> + 'v;

/// Calls `visit` with each unit of `file`'s DWARF until it returns `false`. A
/// unit that DWARF cannot walk to the end (`visit` fails) gives what it gave
/// so far, and the walk goes on.
pub fn for_each_unit(file: &object::File<'_>, visit: &mut UnitVisitor<'_>) {
    let Some(sections) = sections(file) else {
        return;
    };
    let dwarf = sections.borrow(|section| EndianSlice::new(section, LittleEndian));
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        if let Ok(false) = visit(&dwarf, &unit) {
            return;
        }
    }
}

/// What [`DwarfSource::for_each_unit`] calls with each unit and a base that
/// makes its unit-relative offsets unique across the source (0 but in a
/// DWARF package).
pub type BasedUnitVisitor<'v> =
    dyn FnMut(&gimli::Dwarf<Reader<'_>>, &gimli::Unit<Reader<'_>>, u64) -> gimli::Result<()> + 'v;

/// Where a binary's DWARF is: the sections of one ELF file (the binary or a
/// separate debug file), or a DWARF package (`.dwp`) that completes the
/// binary's skeleton units.
#[derive(Clone, Copy)]
pub enum DwarfSource<'a, 'data> {
    /// Ordinary `.debug_*` sections.
    File(&'a object::File<'data>),
    /// Split units in `package`, found through the skeletons of `binary`.
    Package {
        /// The binary, with the skeleton units.
        binary: &'a object::File<'data>,
        /// The `.dwp`.
        package: &'a object::File<'data>,
    },
}

impl<'a, 'data> DwarfSource<'a, 'data> {
    /// `debug`'s DWARF for `binary`: a package when `debug` has a unit index.
    pub fn of(binary: &'a object::File<'data>, debug: &'a object::File<'data>) -> Self {
        if debug.section_by_name(".debug_cu_index").is_some() {
            Self::Package {
                binary,
                package: debug,
            }
        } else {
            Self::File(debug)
        }
    }

    /// Calls `visit` with each unit. A split unit's offsets start at 0 in its
    /// own part of the package, so each comes with the base `(n + 1) << 32`, `n`
    /// its skeleton's offset in the binary; it gets the skeleton's compilation
    /// directory, address bases and line table (whose files its `DW_AT_decl_file`
    /// values index). Units that cannot be read are left out.
    pub fn for_each_unit(&self, visit: &mut BasedUnitVisitor<'_>) {
        match *self {
            Self::File(file) => for_each_unit(file, &mut |dwarf, unit| {
                visit(dwarf, unit, 0)?;
                Ok(true)
            }),
            Self::Package { binary, package } => for_each_split_unit(binary, package, visit),
        }
    }
}

/// [`DwarfSource::for_each_unit`] of a package.
fn for_each_split_unit(
    file: &object::File<'_>,
    package: &object::File<'_>,
    visit: &mut BasedUnitVisitor<'_>,
) {
    let (Some(sections), Some(package_sections)) = (sections(file), package_sections(package))
    else {
        return;
    };
    let parent = sections.borrow(|section| EndianSlice::new(section, LittleEndian));
    let Ok(package) = package_sections.borrow(
        |section| EndianSlice::new(section, LittleEndian),
        EndianSlice::new(&[], LittleEndian),
    ) else {
        return;
    };
    let mut skeletons = parent.units();
    while let Ok(Some(header)) = skeletons.next() {
        let Ok(skeleton) = parent.unit(header) else {
            continue;
        };
        let (Some(id), Some(offset)) = (skeleton.dwo_id, header.offset().as_debug_info_offset())
        else {
            continue;
        };
        let Ok(Some(split)) = package.find_cu(id, &parent) else {
            continue;
        };
        let mut units = split.units();
        while let Ok(Some(header)) = units.next() {
            let Ok(mut unit) = split.unit(header) else {
                continue;
            };
            unit.copy_relocated_attributes(&skeleton);
            unit.comp_dir = unit.comp_dir.or(skeleton.comp_dir);
            // A split unit's DW_AT_decl_file indexes its skeleton's line table.
            if unit.line_program.is_none() {
                unit.line_program = skeleton.line_program.clone();
            }
            let _ = visit(&split, &unit, (offset.0 as u64 + 1) << 32);
        }
    }
}

/// The sections of the DWARF package `package` (`.debug_info.dwo`, the unit
/// index, …), decompressed where compressed; `None` when one cannot be.
fn package_sections<'file>(
    package: &'file object::File<'_>,
) -> Option<gimli::DwarfPackageSections<Cow<'file, [u8]>>> {
    gimli::DwarfPackageSections::load(|id: SectionId| load(package, id.dwo_name())).ok()
}

/// The section `name` of `file`, decompressed; empty when missing.
fn load<'file>(
    file: &'file object::File<'_>,
    name: Option<&str>,
) -> Result<Cow<'file, [u8]>, gimli::Error> {
    match name.and_then(|name| file.section_by_name(name)) {
        Some(section) => section.uncompressed_data().map_err(|_| gimli::Error::Io),
        None => Ok(Cow::Borrowed(&[])),
    }
}

/// The DWARF sections of `file`, decompressed where the linker compressed them
/// (`SHF_COMPRESSED` or `.zdebug_*`, as Go's linker does); a missing section
/// reads as empty. `None` when a section cannot be decompressed.
pub fn sections<'file>(
    file: &'file object::File<'_>,
) -> Option<gimli::DwarfSections<Cow<'file, [u8]>>> {
    gimli::DwarfSections::load(|id: SectionId| load(file, Some(id.name()))).ok()
}
