//! The dynamic loader's debugger hook: where `tracer run` stops a command a
//! second time, once `ld.so` has mapped every library the program needs and
//! before any code of theirs (or of the program) runs. A runtime that lives in
//! a shared library (Debian's Node 18: `libnode.so.108`) is then mapped, and its
//! probes are attached before it starts, as they are for one in the executable.
//!
//! Why the hook, and not a search for the libraries before they are mapped
//! (uprobes attach to a file, mapped or not): `ld.so` finds them through
//! `RUNPATH` with `$ORIGIN`, `LD_LIBRARY_PATH`, `LD_PRELOAD`, its cache and its
//! hwcaps subdirectories; a second resolver outside could pick another file and
//! attach to one the program never maps, silently. The hook is what debuggers
//! use: glibc's loader calls the empty function `_dl_debug_state` with
//! `_r_debug.r_state` = `RT_ADD` before it maps the libraries and
//! `RT_CONSISTENT` once they all are, before it runs their initialisers.

use std::path::PathBuf;

use anyhow::Context as _;
use object::{Object as _, ObjectSymbol as _};

use crate::target::{mapped_file, process_map, symbols};

/// `auxv` entry: the interpreter's base address (0 for a program without one).
const AT_BASE: u64 = 7;
/// The function the loader calls at each change of its list of objects.
const HOOK_FUNCTION: &str = "_dl_debug_state";
/// The loader's `struct r_debug`, which says which change it is.
const DEBUG_STRUCT: &str = "_r_debug";
/// Offset of `r_state` in `struct r_debug` (after `r_version`, `r_map`,
/// `r_brk`).
const STATE_OFFSET: u64 = 24;
/// `r_state` once every object is mapped.
pub const RT_CONSISTENT: u32 = 0;

/// Where a process's loader tells debuggers about its objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hook {
    /// Address of `_dl_debug_state` in the process.
    pub function: u64,
    /// Address of `_r_debug.r_state` in the process.
    pub state: u64,
}

/// The hook of the loader process `pid` runs (stopped at its exec); `None` for
/// a program without a loader (static) or a loader that exports no hook.
pub fn hook(pid: u32) -> anyhow::Result<Option<Hook>> {
    let auxv = std::fs::read(format!("/proc/{pid}/auxv"))
        .with_context(|| format!("cannot read /proc/{pid}/auxv"))?;
    let Some(base) = auxv_entry(&auxv, AT_BASE).filter(|base| *base != 0) else {
        return Ok(None);
    };
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .with_context(|| format!("cannot read /proc/{pid}/maps"))?;
    let Some(path) = process_map::file_at(&maps, base) else {
        return Ok(None);
    };
    let attach = PathBuf::from(format!("/proc/{pid}/root")).join(path.strip_prefix("/")?);
    // Before this process maps the file too (which would show in its maps
    // when it traces itself, as the tests do).
    let bias = process_map::load_bias(pid, &attach)?;
    let data = mapped_file::map(&attach)?;
    let file = symbols::parse(&attach, &data)?;
    let address = |name: &str| {
        file.dynamic_symbols()
            .chain(file.symbols())
            .find(|symbol| symbol.name() == Ok(name) && symbol.address() != 0)
            .map(|symbol| symbol.address())
    };
    let (Some(function), Some(debug)) = (address(HOOK_FUNCTION), address(DEBUG_STRUCT)) else {
        return Ok(None);
    };
    Ok(Some(Hook {
        function: function.wrapping_add(bias),
        state: debug.wrapping_add(bias) + STATE_OFFSET,
    }))
}

/// The value of entry `key` of an `auxv` (pairs of native-endian words).
fn auxv_entry(auxv: &[u8], key: u64) -> Option<u64> {
    auxv.chunks_exact(16).find_map(|pair| {
        let word = |at: usize| u64::from_ne_bytes(pair[at..at + 8].try_into().ok()?).into();
        (word(0)? == key).then(|| word(8)).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_auxv_entry_is_found_by_key() {
        let auxv: Vec<u8> = [(3u64, 0x40u64), (AT_BASE, 0x7f00_0000), (0, 0)]
            .iter()
            .flat_map(|(key, value)| [key.to_ne_bytes(), value.to_ne_bytes()].concat())
            .collect();
        assert_eq!(auxv_entry(&auxv, AT_BASE), Some(0x7f00_0000));
        assert_eq!(auxv_entry(&auxv, 9), None);
    }

    #[test]
    fn this_process_has_a_hook_in_its_loader() {
        let hook = hook(std::process::id())
            .unwrap()
            .expect("a dynamic test binary");
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let loader = process_map::file_at(&maps, hook.function).expect("mapped");
        assert!(loader.to_string_lossy().contains("ld-"), "{loader:?}");
        // The loader is done: every object is mapped.
        // SAFETY: the address is the loader's `_r_debug.r_state`, mapped and
        // aligned in this very process.
        let state = unsafe { std::ptr::read_volatile(hook.state as *const u32) };
        assert_eq!(state, RT_CONSISTENT);
    }
}
