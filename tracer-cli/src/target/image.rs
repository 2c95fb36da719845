//! A read-only view of an ELF image as the loader would see it: bytes and
//! pointer-sized words at virtual addresses (relocated words of a PIE read from
//! their `R_X86_64_RELATIVE` addend), and the functions of the symbol table by
//! address. The naming routes read the task vtables and the code through it.

use std::collections::{HashMap, HashSet};

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};

/// `R_X86_64_RELATIVE`: the word at the offset is the load address plus the addend.
const R_X86_64_RELATIVE: u32 = 8;

/// One function of the symbol table.
#[derive(Clone, Copy, Debug)]
pub struct Function<'data> {
    /// Its size in bytes (0 when the symbol does not say).
    pub size: u64,
    /// Its symbol name, as mangled.
    pub mangled: &'data str,
}

/// Sections, relocations and functions of one ELF file, indexed for lookups.
pub struct Image<'data> {
    /// (address, size, bytes) of every section with file contents.
    sections: Vec<(u64, u64, &'data [u8])>,
    /// Relative relocations: address of the word → the address it will hold.
    relative: HashMap<u64, u64>,
    /// Functions by start address (the first symbol seen at each).
    functions: HashMap<u64, Function<'data>>,
    /// Every further symbol at a function's address: the linker folds identical
    /// functions, so one address may have several names.
    aliases: HashMap<u64, Vec<&'data str>>,
    /// `.data.rel.ro` and `.rodata`, where `&'static` constants live: (address,
    /// size); a non-PIE's vtables are found by reading their words.
    constant_sections: Vec<(u64, u64)>,
    /// The file is position-independent (its pointers are relocated at load).
    pub position_independent: bool,
}

impl<'data> Image<'data> {
    /// Indexes `file`.
    pub fn new(file: &object::File<'data>) -> Self {
        let mut sections = Vec::new();
        let mut constant_sections = Vec::new();
        for section in file.sections() {
            let name = section.name().unwrap_or("");
            if matches!(name, ".data.rel.ro" | ".rodata") {
                constant_sections.push((section.address(), section.size()));
            }
            if section.file_range().is_none() {
                continue;
            }
            if let Ok(data) = section.data()
                && section.address() != 0
            {
                sections.push((section.address(), section.size(), data));
            }
        }
        let mut relative = HashMap::new();
        if let Some(relocations) = file.dynamic_relocations() {
            for (offset, relocation) in relocations {
                if let object::RelocationFlags::Elf { r_type } = relocation.flags()
                    && r_type == R_X86_64_RELATIVE
                {
                    relative.insert(offset, relocation.addend() as u64);
                }
            }
        }
        let mut functions = HashMap::new();
        let mut aliases: HashMap<u64, Vec<&'data str>> = HashMap::new();
        let symbols: Box<dyn Iterator<Item = object::Symbol<'data, '_>>> =
            if file.section_by_name(".symtab").is_some() {
                Box::new(file.symbols())
            } else {
                Box::new(file.dynamic_symbols())
            };
        for symbol in symbols {
            if symbol.kind() != SymbolKind::Text || symbol.address() == 0 {
                continue;
            }
            let Ok(mangled) = symbol.name() else { continue };
            match functions.entry(symbol.address()) {
                std::collections::hash_map::Entry::Vacant(entry) => {
                    entry.insert(Function {
                        size: symbol.size(),
                        mangled,
                    });
                }
                std::collections::hash_map::Entry::Occupied(_) => {
                    aliases.entry(symbol.address()).or_default().push(mangled);
                }
            }
        }
        Self {
            sections,
            relative,
            functions,
            aliases,
            constant_sections,
            position_independent: file.kind() == object::ObjectKind::Dynamic,
        }
    }

    /// `len` bytes at `address`, if a section holds them all.
    pub fn bytes(&self, address: u64, len: u64) -> Option<&'data [u8]> {
        self.sections.iter().find_map(|(start, size, data)| {
            let offset = address.checked_sub(*start)?;
            let end = offset.checked_add(len)?;
            (end <= *size && end <= data.len() as u64).then(|| &data[offset as usize..end as usize])
        })
    }

    /// The pointer-sized word at `address` as it is after loading: a relocated
    /// word's target, or the bytes themselves.
    pub fn word(&self, address: u64) -> Option<u64> {
        if let Some(target) = self.relative.get(&address) {
            return Some(*target);
        }
        let bytes = self.bytes(address, 8)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }

    /// The addresses of the words that will hold `target` after loading: in a PIE
    /// from its relocations, otherwise by reading the constant sections' words.
    pub fn words_holding(&self, targets: &HashSet<u64>) -> HashMap<u64, Vec<u64>> {
        let mut found: HashMap<u64, Vec<u64>> = HashMap::new();
        if self.position_independent {
            for (at, target) in &self.relative {
                if targets.contains(target) {
                    found.entry(*target).or_default().push(*at);
                }
            }
        } else {
            for (start, size) in &self.constant_sections {
                let Some(data) = self.bytes(*start, *size) else {
                    continue;
                };
                for (index, word) in data.chunks_exact(8).enumerate() {
                    let word = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
                    if targets.contains(&word) {
                        found
                            .entry(word)
                            .or_default()
                            .push(start + 8 * index as u64);
                    }
                }
            }
        }
        for addresses in found.values_mut() {
            addresses.sort_unstable();
        }
        found
    }

    /// The function that starts at `address`.
    pub fn function(&self, address: u64) -> Option<Function<'data>> {
        self.functions.get(&address).copied()
    }

    /// Every symbol name (mangled) of the function at `address`.
    pub fn names(&self, address: u64) -> Vec<&'data str> {
        let first = self.function(address).map(|f| f.mangled);
        first
            .into_iter()
            .chain(self.aliases.get(&address).into_iter().flatten().copied())
            .collect()
    }

    /// Every symbol name (mangled) of every function, aliases included.
    pub fn all_names(&self) -> impl Iterator<Item = &'data str> + '_ {
        self.functions
            .values()
            .map(|function| function.mangled)
            .chain(self.aliases.values().flatten().copied())
    }

    /// The machine code of the function at `address`: its symbol's size, or, for
    /// a symbol without one, up to `fallback` bytes.
    pub fn code(&self, address: u64, fallback: u64) -> Option<&'data [u8]> {
        let size = match self.function(address)?.size {
            0 => fallback,
            size => size,
        };
        self.bytes(address, size)
            .or_else(|| self.bytes(address, size.min(64)))
    }
}
