//! DWARF as tracer reads it, for every runtime: the sections of an ELF file,
//! decompressed where the linker compressed them (Go's linker always does),
//! walked one unit at a time.

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

/// The DWARF sections of `file`, decompressed where the linker compressed them
/// (`SHF_COMPRESSED` or `.zdebug_*`, as Go's linker does); a missing section
/// reads as empty. `None` when a section cannot be decompressed.
pub fn sections<'file>(
    file: &'file object::File<'_>,
) -> Option<gimli::DwarfSections<Cow<'file, [u8]>>> {
    let load = |id: SectionId| -> Result<Cow<'file, [u8]>, gimli::Error> {
        match file.section_by_name(id.name()) {
            Some(section) => section.uncompressed_data().map_err(|_| gimli::Error::Io),
            None => Ok(Cow::Borrowed(&[])),
        }
    };
    gimli::DwarfSections::load(load).ok()
}
