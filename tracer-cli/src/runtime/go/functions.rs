//! Names a goroutine by its start function as Go's execution tracer does, and
//! finds the runtime functions the Go probes attach to.
//!
//! `go handle(x, y)` compiles to a closure without arguments that calls
//! `handle` (`main.main.gowrap1` since Go 1.22, `main.main.func1` before), and
//! that closure is the goroutine's start PC. The runtime's `startPCforTrace`
//! names such a goroutine `main.handle` by following the closure's
//! `FUNCDATA_WrapInfo` in the function table; the compiler records it for a
//! wrapper of a named function or method only, so `go f(x)` with a function
//! *value* `f` keeps the wrapper's name. [`GoFunctions::start_function`] does
//! the same through [`super::pclntab`], so it is exact by construction; the
//! tests compare it with the wrappers' direct calls (decoded with iced-x86)
//! to show why decoding would not be.
//!
//! The location is the start function's `func` line: DWARF's
//! `DW_AT_decl_file` / `DW_AT_decl_line` when the binary has DWARF, else the
//! function table's, which gives the same file and line.

use std::collections::HashMap;

use object::Object as _;

use super::pclntab::{Func, Pclntab};
use crate::target::{
    dwarf::{self, Reader},
    image::Image,
};

/// Start functions in package `runtime` that Go counts as user goroutines
/// (`isSystemGoroutine`: `runtime.main` runs `main.main`, `corostart` runs an
/// `iter.Pull` coroutine's body, `handleAsyncEvent` is wasm's).
const USER_RUNTIME_STARTS: [&str; 3] = [
    "runtime.main",
    "runtime.corostart",
    "runtime.handleAsyncEvent",
];

/// What names a goroutine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartFunction {
    /// Its start function as Go's tracer names it: the wrapped function of a
    /// `go f(x)` wrapper (`main.handle`), else the function itself.
    pub name: String,
    /// The name of the wrapper the goroutine really starts in, when `name` is
    /// the function it wraps (`main.main.gowrap1`).
    pub wrapper: Option<String>,
    /// The file and line of `name`'s `func` keyword; `None` when neither DWARF
    /// nor the function table gives one (the caller counts those).
    pub location: Option<(String, u32)>,
    /// Go counts the goroutine as the runtime's (`isSystemGoroutine`): its
    /// start function is in package `runtime` and is not `runtime.main`.
    /// `runtime.runfinq` (the finalizer goroutine) is counted as the runtime's;
    /// Go counts it as a user's only while it runs a finalizer.
    pub runtime_internal: bool,
}

/// The functions of one Go binary, indexed to name start PCs.
pub struct GoFunctions<'data> {
    /// The binary's function table.
    pclntab: Pclntab<'data>,
    /// DWARF's `func` file:line of each function, by entry address.
    declarations: HashMap<u64, (String, u32)>,
}

impl<'data> GoFunctions<'data> {
    /// Indexes `file`'s function table, and its DWARF declarations when it has
    /// DWARF (`image` reads relocated words).
    pub fn new(file: &object::File<'data>, image: &Image<'data>) -> anyhow::Result<Self> {
        Ok(Self {
            pclntab: Pclntab::parse(file, image)?,
            declarations: declarations(file),
        })
    }

    #[cfg(test)]
    /// The function table, for callers that need more of it.
    pub fn pclntab(&self) -> &Pclntab<'data> {
        &self.pclntab
    }

    /// Names the goroutine whose start PC (`g.startpc`, or `newproc1`'s
    /// `fn.fn`; a file virtual address) is `pc`; `None` for a PC in no Go
    /// function.
    pub fn start_function(&self, pc: u64) -> Option<StartFunction> {
        let start = self.pclntab.func_at(pc)?;
        let named = self
            .pclntab
            .wrapped(&start)
            .and_then(|entry| self.pclntab.func_at(entry))
            .unwrap_or(start);
        Some(StartFunction {
            name: name_for_print(named.name),
            wrapper: (named != start).then(|| name_for_print(start.name)),
            location: self.location(&named),
            runtime_internal: is_runtime_internal(start.name),
        })
    }

    /// The file:line of `func`'s `func` keyword: DWARF's, else the table's.
    pub fn location(&self, func: &Func<'_>) -> Option<(String, u32)> {
        self.declarations
            .get(&func.entry)
            .cloned()
            .or_else(|| self.pclntab.entry_location(func))
    }

    #[cfg(test)]
    /// Whether locations come from DWARF (else from the function table).
    pub fn has_dwarf_locations(&self) -> bool {
        !self.declarations.is_empty()
    }
}

/// A function name as Go prints it (the runtime's `funcNameForPrint`, which
/// its tracer uses since Go 1.21): a generic function's shape arguments
/// become `[...]` (`main.gen[go.shape.int]` → `main.gen[...]`). Go 1.19's
/// function table already spells them so.
pub fn name_for_print(name: &str) -> String {
    match (name.find('['), name.rfind(']')) {
        (Some(open), Some(close)) if close > open => {
            format!("{}[...]{}", &name[..open], &name[close + 1..])
        }
        _ => name.to_owned(),
    }
}

/// Whether Go counts a goroutine that starts in `name` as the runtime's.
pub fn is_runtime_internal(name: &str) -> bool {
    name.starts_with("runtime.") && !USER_RUNTIME_STARTS.contains(&name)
}

/// `DW_AT_decl_file` and `DW_AT_decl_line` of every subprogram, by `DW_AT_low_pc`.
pub fn declarations(file: &object::File<'_>) -> HashMap<u64, (String, u32)> {
    let mut found = HashMap::new();
    if file.section_by_name(".debug_info").is_none() {
        return found;
    }
    dwarf::for_each_unit(file, &mut |dwarf, unit| {
        unit_declarations(dwarf, unit, &mut found)?;
        Ok(true)
    });
    found
}

/// Adds the declarations of `unit`'s subprograms to `found`. Go 1.19 writes
/// no `DW_AT_decl_line`: there the line is the line table's at the entry, the
/// `func` line (Go attributes a function's prologue to it).
fn unit_declarations(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &gimli::Unit<Reader<'_>>,
    found: &mut HashMap<u64, (String, u32)>,
) -> gimli::Result<()> {
    let Some(program) = &unit.line_program else {
        return Ok(());
    };
    let header = program.header();
    let mut subprograms = Vec::new();
    let mut entries = unit.entries();
    while let Some((_, entry)) = entries.next_dfs()? {
        if entry.tag() != gimli::DW_TAG_subprogram {
            continue;
        }
        let value = |name| entry.attr_value(name).ok().flatten();
        let (Some(low_pc), Some(file)) = (
            value(gimli::DW_AT_low_pc),
            value(gimli::DW_AT_decl_file).and_then(|v| match v {
                gimli::AttributeValue::FileIndex(index) => Some(index),
                other => other.udata_value(),
            }),
        ) else {
            continue;
        };
        let line = value(gimli::DW_AT_decl_line).and_then(|v| v.udata_value());
        if let Some(address) = dwarf.attr_address(unit, low_pc)? {
            subprograms.push((address, file, line));
        }
    }
    let mut rows = None;
    for (address, file, line) in subprograms {
        let line = match line {
            Some(line) => Some(line),
            None => rows
                .get_or_insert_with(|| line_rows(program.clone()))
                .get(&address)
                .copied(),
        };
        let (Some(line), Some(path)) = (line, file_path(dwarf, unit, header, file)?) else {
            continue;
        };
        if let Ok(line) = u32::try_from(line) {
            found.insert(address, (path, line));
        }
    }
    Ok(())
}

/// The line of the first row of `program` at each address.
fn line_rows(program: gimli::IncompleteLineProgram<Reader<'_>>) -> HashMap<u64, u64> {
    let mut lines = HashMap::new();
    let mut rows = program.rows();
    while let Ok(Some((_, row))) = rows.next_row() {
        if let Some(line) = row.line() {
            lines.entry(row.address()).or_insert(line.get());
        }
    }
    lines
}

/// The path of file `index` of a unit's line program header.
fn file_path(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &gimli::Unit<Reader<'_>>,
    header: &gimli::LineProgramHeader<Reader<'_>>,
    index: u64,
) -> gimli::Result<Option<String>> {
    let Some(entry) = header.file(index) else {
        return Ok(None);
    };
    let path = dwarf
        .attr_string(unit, entry.path_name())?
        .to_string_lossy()
        .into_owned();
    if path.starts_with('/') {
        return Ok(Some(path));
    }
    let directory = match entry.directory(header) {
        Some(directory) => dwarf
            .attr_string(unit, directory)?
            .to_string_lossy()
            .into_owned(),
        None => String::new(),
    };
    Ok(Some(if directory.is_empty() || directory == "." {
        path
    } else {
        format!("{directory}/{path}")
    }))
}

/// One runtime function a Go probe attaches to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg(test)]
pub struct GoSymbol {
    /// Its Go name (`runtime.casgstatus`).
    pub name: &'static str,
    /// Its file virtual address.
    pub address: u64,
    /// Its offset in the file, which uprobes attach by.
    pub file_offset: u64,
}

/// The runtime functions the Go probes attach to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg(test)]
pub struct ProbeSymbols {
    /// `runtime.casgstatus(gp, old, new)`: every status transition.
    pub casgstatus: GoSymbol,
    /// `runtime.newproc1(fn, callergp, callerpc, …)`: a goroutine's creation,
    /// its start function and (before Go 1.21) its parent.
    pub newproc1: GoSymbol,
    /// `runtime.runqput`: the new goroutine queued right after `newproc1`,
    /// with its id assigned.
    pub runqput: GoSymbol,
    /// `runtime.preemptPark`: a preempted goroutine parked by CAS, not
    /// `casgstatus`.
    pub preempt_park: GoSymbol,
    /// `runtime.coroswitch_m` (Go 1.22+, linked only into programs that use
    /// `iter.Pull`): a coroutine switch, which CASes statuses directly.
    pub coroswitch_m: Option<GoSymbol>,
}

#[cfg(test)]
/// Finds the probe sites in `file`'s symbol table; fails naming a required
/// function that is missing.
pub fn probe_symbols(file: &object::File<'_>) -> anyhow::Result<ProbeSymbols> {
    use anyhow::Context as _;
    use object::{ObjectSymbol as _, SymbolKind};

    let mut found: HashMap<&str, GoSymbol> = HashMap::new();
    let wanted = [
        "runtime.casgstatus",
        "runtime.newproc1",
        "runtime.runqput",
        "runtime.preemptPark",
        "runtime.coroswitch_m",
    ];
    for symbol in file.symbols() {
        if symbol.kind() != SymbolKind::Text {
            continue;
        }
        let Some(name) = symbol
            .name()
            .ok()
            .and_then(|n| wanted.iter().find(|w| **w == n))
        else {
            continue;
        };
        if let Some(file_offset) = crate::target::symbols::file_offset(file, &symbol) {
            found.entry(name).or_insert(GoSymbol {
                name,
                address: symbol.address(),
                file_offset,
            });
        }
    }
    let mut take = |name: &str| {
        found.remove(name).with_context(|| {
            format!("this Go binary has no {name} in its symbol table; tracer cannot follow its goroutines without it")
        })
    };
    Ok(ProbeSymbols {
        casgstatus: take("runtime.casgstatus")?,
        newproc1: take("runtime.newproc1")?,
        runqput: take("runtime.runqput")?,
        preempt_park: take("runtime.preemptPark")?,
        coroswitch_m: take("runtime.coroswitch_m").ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_goroutines_are_the_runtime_packages_but_main() {
        assert!(is_runtime_internal("runtime.bgsweep"));
        assert!(is_runtime_internal("runtime.runfinq"));
        assert!(is_runtime_internal("runtime.gcenable.gowrap1"));
        assert!(!is_runtime_internal("runtime.main"));
        assert!(!is_runtime_internal("runtime.corostart"));
        assert!(!is_runtime_internal("main.handle"));
        assert!(!is_runtime_internal("runtime/pprof.profileWriter"));
    }

    #[test]
    fn generic_shapes_print_as_go_prints_them() {
        assert_eq!(name_for_print("main.gen[go.shape.int]"), "main.gen[...]");
        assert_eq!(
            name_for_print("main.gen[go.shape.int_0].func1"),
            "main.gen[...].func1"
        );
        assert_eq!(name_for_print("main.gen[...]"), "main.gen[...]");
        assert_eq!(name_for_print("main.(*server).run"), "main.(*server).run");
    }
}
