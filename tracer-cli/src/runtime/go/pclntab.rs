//! Go's own function table (`runtime.pclntab`, section `.gopclntab`), which the
//! runtime reads for tracebacks and its execution tracer reads to name
//! goroutines. Every Go binary has it, with or without DWARF or a symbol table.
//!
//! Only what tracer needs is read: each function's entry, name and funcID, the
//! file and line of its entry (the `pcfile` / `pcln` tables at the entry PC,
//! what `runtime.FuncForPC(pc).FileLine(entry)` gives), and its
//! `FUNCDATA_WrapInfo`: the function a compiler-made `go f(x)` wrapper wraps,
//! which the runtime's `startPCforTrace` follows. No crate on crates.io reads
//! it (the pclntab readers there are parts of disassemblers that give names
//! only), so this is a small reader of the two layouts of Go 1.18 and later:
//! magic `0xFFFFFFF0` (1.18, 1.19) and `0xFFFFFFF1` (1.20+, whose `_func` has a
//! `startLine`). The layout is Go's `runtime/symtab.go` and `runtime2.go`.

use anyhow::{Context as _, bail};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

use crate::target::image::Image;

/// `pcHeader.magic` of Go 1.18 and 1.19.
const MAGIC_1_18: u32 = 0xFFFF_FFF0;
/// `pcHeader.magic` of Go 1.20 and later.
const MAGIC_1_20: u32 = 0xFFFF_FFF1;
/// `abi.FUNCDATA_WrapInfo`: the funcdata slot of a wrapper's wrapped function.
const FUNCDATA_WRAP_INFO: usize = 7;

/// One function of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Func<'data> {
    /// Its entry address (file virtual address).
    pub entry: u64,
    /// The address after its code (the next function's entry).
    pub end: u64,
    /// Its Go name: `main.handle`, `main.(*server).run`, `main.main.gowrap1`.
    pub name: &'data str,
    /// The runtime's `abi.FuncID` of special runtime functions (0 for others).
    pub func_id: u8,
    /// Offset of its `_func` record in the table.
    record: usize,
}

/// A parsed `pclntab`.
pub struct Pclntab<'data> {
    /// The table from its `pcHeader` on.
    data: &'data [u8],
    /// Size of a `_func` record before its pcdata (40 before Go 1.20, 44 after).
    func_header: usize,
    /// `pcHeader.minLC`: PC deltas are multiples of it.
    min_lc: u64,
    /// `pcHeader.textStart`: function entries are offsets from it.
    text_start: u64,
    /// Number of functions.
    nfunc: usize,
    /// Offsets of `funcnametab`, `cutab`, `filetab`, `pctab` and the function
    /// table (`pclntab`) from the header.
    funcname: usize,
    cutab: usize,
    filetab: usize,
    pctab: usize,
    ftab: usize,
    /// The bytes from `go:func.*` (`moduledata.gofunc`, the base of funcdata
    /// offsets) to the end of its section; `None` when the symbol is missing.
    gofunc: Option<&'data [u8]>,
}

impl<'data> Pclntab<'data> {
    /// Finds and parses the table of `file` (`image` reads its relocated words).
    pub fn parse(file: &object::File<'data>, image: &Image<'data>) -> anyhow::Result<Self> {
        let (address, data) = table_bytes(file).context(
            "this Go binary has no function table (no .gopclntab section nor runtime.pclntab symbol)",
        )?;
        let u32_at = |at: usize| read_u32(data, at);
        let word_at = |at: usize| -> anyhow::Result<usize> {
            let bytes = data
                .get(at..at + 8)
                .context("Go function table header cut short")?;
            Ok(usize::try_from(u64::from_le_bytes(bytes.try_into()?))?)
        };
        let func_header = match u32_at(0) {
            Some(MAGIC_1_18) => 40,
            Some(MAGIC_1_20) => 44,
            Some(magic) => bail!(
                "Go function table with magic {magic:#x}, not the Go 1.18+ layout tracer reads"
            ),
            None => bail!("Go function table cut short"),
        };
        if data.get(7) != Some(&8) {
            bail!("Go function table of a 32-bit binary");
        }
        Ok(Self {
            data,
            func_header,
            min_lc: u64::from(data[6]),
            text_start: image
                .word(address + 24)
                .context("Go function table header cut short")?,
            nfunc: word_at(8)?,
            funcname: word_at(32)?,
            cutab: word_at(40)?,
            filetab: word_at(48)?,
            pctab: word_at(56)?,
            ftab: word_at(64)?,
            gofunc: gofunc_bytes(file),
        })
    }

    #[cfg(test)]
    /// Every function, in address order.
    pub fn funcs(&self) -> impl Iterator<Item = Func<'data>> + '_ {
        (0..self.nfunc).filter_map(|index| self.func(index))
    }

    /// The function whose code holds `pc`.
    pub fn func_at(&self, pc: u64) -> Option<Func<'data>> {
        let offset = pc.checked_sub(self.text_start)?;
        // The table has nfunc + 1 entries: the last is the end of the code.
        let (mut low, mut high) = (0usize, self.nfunc);
        while high - low > 1 {
            let middle = (low + high) / 2;
            if u64::from(self.entry_offset(middle)?) <= offset {
                low = middle;
            } else {
                high = middle;
            }
        }
        let func = self.func(low)?;
        (func.entry..func.end).contains(&pc).then_some(func)
    }

    /// The entry of the function that the wrapper `func` wraps (its
    /// `FUNCDATA_WrapInfo`), as the runtime's `startPCforTrace` finds it; `None`
    /// for a function that is no wrapper.
    pub fn wrapped(&self, func: &Func<'_>) -> Option<u64> {
        let nfuncdata = usize::from(*self.data.get(func.record + self.func_header - 1)?);
        if FUNCDATA_WRAP_INFO >= nfuncdata {
            return None;
        }
        let npcdata = usize::try_from(read_u32(self.data, func.record + 28)?).ok()?;
        let slot = func.record + self.func_header + 4 * (npcdata + FUNCDATA_WRAP_INFO);
        let offset = read_u32(self.data, slot)?;
        if offset == u32::MAX {
            return None;
        }
        let target = read_u32(self.gofunc?, usize::try_from(offset).ok()?)?;
        Some(self.text_start + u64::from(target))
    }

    /// The file of `func`'s entry (the table's `pcfile`) and the line of its
    /// `func` keyword (`startLine`, Go 1.20+; before, the `pcln` line of its
    /// entry, the same line): what DWARF's `DW_AT_decl_file` and
    /// `DW_AT_decl_line` say.
    pub fn entry_location(&self, func: &Func<'_>) -> Option<(String, u32)> {
        let pcfile = read_u32(self.data, func.record + 20)?;
        let file_index = u32::try_from(self.entry_value(pcfile)?).ok()?;
        let line = if self.func_header == 44 {
            read_u32(self.data, func.record + 36)?
        } else {
            let pcln = read_u32(self.data, func.record + 24)?;
            u32::try_from(self.entry_value(pcln)?).ok()?
        };
        let cu_offset = read_u32(self.data, func.record + 32)?;
        let cu_slot = usize::try_from(cu_offset.checked_add(file_index)?).ok()?;
        let name_offset = read_u32(self.data, self.cutab + 4 * cu_slot)?;
        if name_offset == u32::MAX {
            return None;
        }
        let name = c_string(self.data, self.filetab + usize::try_from(name_offset).ok()?)?;
        Some((name.to_owned(), line))
    }

    /// The function at `index` of the table.
    fn func(&self, index: usize) -> Option<Func<'data>> {
        if index >= self.nfunc {
            return None;
        }
        let entry_offset = self.entry_offset(index)?;
        let end_offset = self.entry_offset(index + 1)?;
        let func_offset = read_u32(self.data, self.ftab + 8 * index + 4)?;
        let record = self.ftab + usize::try_from(func_offset).ok()?;
        let name_offset = read_u32(self.data, record + 4)?;
        let name = c_string(
            self.data,
            self.funcname + usize::try_from(name_offset).ok()?,
        )?;
        Some(Func {
            entry: self.text_start + u64::from(entry_offset),
            end: self.text_start + u64::from(end_offset),
            name,
            func_id: *self.data.get(record + self.func_header - 4)?,
            record,
        })
    }

    /// `entryoff` of the function table's entry `index`.
    fn entry_offset(&self, index: usize) -> Option<u32> {
        read_u32(self.data, self.ftab + 8 * index)
    }

    /// The value a pc-value table (at `offset` in `pctab`) has at the entry of
    /// its function: the first value of its run-length encoding.
    fn entry_value(&self, offset: u32) -> Option<i64> {
        if offset == 0 {
            return None;
        }
        let start = self.pctab + usize::try_from(offset).ok()?;
        let (delta, used) = super::image::uvarint(self.data.get(start..)?)?;
        let delta = if delta & 1 != 0 {
            !(delta >> 1) as i64
        } else {
            (delta >> 1) as i64
        };
        // The first run's PC delta must be a whole number of instructions.
        let (pc_delta, _) = super::image::uvarint(self.data.get(start + used..)?)?;
        (pc_delta > 0 && self.min_lc > 0).then_some(-1 + delta)
    }
}

/// The table's address and bytes: its section, or the `runtime.pclntab` ..
/// `runtime.epclntab` symbols.
fn table_bytes<'data>(file: &object::File<'data>) -> Option<(u64, &'data [u8])> {
    for name in [".gopclntab", ".data.rel.ro.gopclntab"] {
        if let Some(section) = file.section_by_name(name)
            && let Ok(data) = section.data()
        {
            return Some((section.address(), data));
        }
    }
    let symbol = |name: &str| file.symbols().find(|s| s.name() == Ok(name));
    let start = symbol("runtime.pclntab")?;
    let end = symbol("runtime.epclntab")?;
    let section = file.section_by_index(start.section_index()?).ok()?;
    let data = section.data().ok()?;
    let from = usize::try_from(start.address().checked_sub(section.address())?).ok()?;
    let to = usize::try_from(end.address().checked_sub(section.address())?).ok()?;
    Some((start.address(), data.get(from..to)?))
}

/// The bytes from the `go:func.*` symbol (`go.func.*` before Go 1.20) to the
/// end of its section.
fn gofunc_bytes<'data>(file: &object::File<'data>) -> Option<&'data [u8]> {
    let symbol = file
        .symbols()
        .find(|s| matches!(s.name(), Ok("go:func.*" | "go.func.*")))?;
    let section = file.section_by_index(symbol.section_index()?).ok()?;
    let from = usize::try_from(symbol.address().checked_sub(section.address())?).ok()?;
    section.data().ok()?.get(from..)
}

/// The little-endian u32 at `at`.
fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        data.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The NUL-terminated UTF-8 string at `at`.
fn c_string(data: &[u8], at: usize) -> Option<&str> {
    let rest = data.get(at..)?;
    let len = memchr::memchr(0, rest)?;
    std::str::from_utf8(&rest[..len]).ok()
}
