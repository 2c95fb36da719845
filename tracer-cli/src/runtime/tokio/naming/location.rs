//! Spawn locations: the `&'static core::panic::Location` a `#[track_caller]`
//! spawn entry point was given, read back from the binary.
//!
//! The BPF side keeps the first argument register that points into the binary's
//! read-only data; here that pointer must be a `Location` constant of the binary
//! itself before it is trusted: in `.data.rel.ro` or `.rodata`, aligned, its file
//! pointer (relocated in a PIE) into the binary's read-only data, a short UTF-8
//! path, and a line number. Anything else is refused with a reason.

use std::{collections::HashMap, path::Path};

use crate::model::names::LocationSource;
use anyhow::Context as _;
use memmap2::Mmap;
use object::{Object as _, ObjectSection as _};

use crate::target::mapped_file;

/// Bytes of a `Location`: the file `&str` (pointer, length), line and column.
const LOCATION_BYTES: u64 = 24;
/// Longest source path believed.
const MAX_PATH: u64 = 4096;

/// Why a candidate is not a `Location` of the binary.
const NOT_CONSTANT: &str = "its Location pointer is not in the binary's read-only data";
/// See [`NOT_CONSTANT`].
const NOT_LOCATION: &str = "its Location pointer does not point at a Location constant";

/// `R_X86_64_RELATIVE`.
const R_X86_64_RELATIVE: u32 = 8;

/// Reads `Location` constants of one binary loaded at `bias` in the process.
pub struct BinaryLocations {
    data: Mmap,
    /// (address, size, file offset) of the sections constants live in.
    sections: Vec<(u64, u64, u64)>,
    /// Relocated words in those sections: address → target.
    relative: HashMap<u64, u64>,
    bias: u64,
    cache: HashMap<u64, Result<String, &'static str>>,
}

impl BinaryLocations {
    /// Indexes the binary at `path`, loaded at `bias`.
    pub fn new(path: &Path, bias: u64) -> anyhow::Result<Self> {
        let data = mapped_file::map(path)?;
        let (sections, relative) = {
            let file = object::File::parse(&*data).with_context(|| {
                format!("{} is not an ELF file tracer can read", path.display())
            })?;
            let sections: Vec<(u64, u64, u64)> = file
                .sections()
                .filter(|s| matches!(s.name(), Ok(".data.rel.ro" | ".rodata")))
                .filter_map(|s| Some((s.address(), s.size(), s.file_range()?.0)))
                .collect();
            let inside = |at: u64| sections.iter().any(|(a, z, _)| (*a..a + z).contains(&at));
            let relative = file
                .dynamic_relocations()
                .into_iter()
                .flatten()
                .filter(|(at, relocation)| {
                    matches!(relocation.flags(), object::RelocationFlags::Elf { r_type } if r_type == R_X86_64_RELATIVE)
                        && inside(*at)
                })
                .map(|(at, relocation)| (at, relocation.addend() as u64))
                .collect();
            (sections, relative)
        };
        Ok(Self {
            data,
            sections,
            relative,
            bias,
            cache: HashMap::new(),
        })
    }

    /// The process range holding the binary's constants, for the BPF filter.
    pub fn process_range(&self) -> Option<(u64, u64)> {
        let start = self.sections.iter().map(|(a, _, _)| *a).min()?;
        let end = self.sections.iter().map(|(a, z, _)| a + z).max()?;
        Some((start.wrapping_add(self.bias), end.wrapping_add(self.bias)))
    }

    fn bytes(&self, address: u64, len: u64) -> Option<&[u8]> {
        self.sections.iter().find_map(|(start, size, offset)| {
            let inside = address.checked_sub(*start)?;
            (inside.checked_add(len)? <= *size).then_some(())?;
            let from = usize::try_from(offset + inside).ok()?;
            self.data.get(from..from + len as usize)
        })
    }

    fn word(&self, address: u64) -> Option<u64> {
        if let Some(target) = self.relative.get(&address) {
            return Some(*target);
        }
        Some(u64::from_le_bytes(self.bytes(address, 8)?.try_into().ok()?))
    }

    fn u32_at(&self, address: u64) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(address, 4)?.try_into().ok()?))
    }

    /// `file:line:col` of the `Location` at file address `address`.
    fn read(&self, address: u64) -> Result<String, &'static str> {
        if !address.is_multiple_of(8) || self.bytes(address, LOCATION_BYTES).is_none() {
            return Err(NOT_CONSTANT);
        }
        let (Some(file), Some(len), Some(line), Some(col)) = (
            self.word(address),
            self.word(address + 8),
            self.u32_at(address + 16),
            self.u32_at(address + 20),
        ) else {
            return Err(NOT_LOCATION);
        };
        if len == 0 || len > MAX_PATH || line == 0 {
            return Err(NOT_LOCATION);
        }
        let path = self.bytes(file, len).ok_or(NOT_LOCATION)?;
        // Newer compilers keep a NUL after the path, inside the length.
        let path = path.strip_suffix(b"\0").unwrap_or(path);
        let path = std::str::from_utf8(path).map_err(|_| NOT_LOCATION)?;
        if path.contains('\0') {
            return Err(NOT_LOCATION);
        }
        Ok(format!("{path}:{line}:{col}"))
    }
}

impl LocationSource for BinaryLocations {
    fn location(&mut self, pointer: u64) -> Result<String, &'static str> {
        if let Some(known) = self.cache.get(&pointer) {
            return known.clone();
        }
        let found = self.read(pointer.wrapping_sub(self.bias));
        self.cache.insert(pointer, found.clone());
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn caller() -> &'static std::panic::Location<'static> {
        std::panic::Location::caller()
    }

    #[test]
    fn a_location_constant_of_this_binary_reads_as_its_display() {
        let exe = Path::new("/proc/self/exe");
        let bias = crate::target::process_map::load_bias(std::process::id(), exe).unwrap();
        let mut locations = BinaryLocations::new(exe, bias).unwrap();
        let location = caller();
        let pointer = location as *const _ as u64;
        assert_eq!(locations.location(pointer), Ok(location.to_string()));
        // A pointer to a string constant, or to the stack, is no Location.
        let text = "not a location at all, but a longer string constant";
        assert!(locations.location(text.as_ptr() as u64 & !7).is_err());
        let on_stack = 0u64;
        assert_eq!(
            locations.location(&on_stack as *const u64 as u64),
            Err(NOT_CONSTANT)
        );
    }
}
