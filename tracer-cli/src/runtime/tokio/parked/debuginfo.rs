//! Finds the file holding a binary's type DWARF the way debuggers do: the
//! binary itself; `/usr/lib/debug/.build-id/xx/yyyy.debug` by its build id;
//! its `.gnu_debuglink` name beside it, in `.debug/` beside it, or under
//! `/usr/lib/debug` + its directory; a DWARF package (`.dwp`, what
//! `split-debuginfo = "packed"` writes) beside it, read with the binary's
//! skeleton units; or the file the user names.

use std::path::{Path, PathBuf};

use anyhow::bail;
use object::Object as _;

use super::types::Types;
use crate::target::{dwarf::DwarfSource, mapped_file};

/// Where distributions install separate debug files.
const DEBUG_ROOT: &str = "/usr/lib/debug";

/// What to build with, said once when no type DWARF is found.
pub const NO_TYPES: &str = "its type DWARF is missing (a default release or `debug = \"line-tables-only\"` build has none): \
build the application crate with full debug info, e.g. `[profile.release.package.my_app] debug = 2` \
(that crate alone is enough), or name a separate debug file with --debuginfo FILE";

/// The file with `exe`'s type DWARF (`file` is `exe` parsed) and its types:
/// `explicit` when given, else the first of the debuggers' places whose DWARF
/// describes Tokio task cells.
pub fn locate(
    exe: &Path,
    file: &object::File<'_>,
    explicit: Option<&Path>,
) -> anyhow::Result<(PathBuf, Types)> {
    let candidates = match explicit {
        Some(path) => vec![path.to_owned()],
        None => candidates(exe, file),
    };
    for path in &candidates {
        if let Some(types) = read_types(path, file) {
            return Ok((path.clone(), types));
        }
    }
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    bail!(
        "no await chains for {}: {NO_TYPES} (looked in {})",
        exe.display(),
        looked.join(", ")
    )
}

/// The types of the ELF file at `path`, when they describe task cells; a
/// DWARF package is read for the skeleton units of `exe`.
fn read_types(path: &Path, exe: &object::File<'_>) -> Option<Types> {
    let data = mapped_file::map(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let types = Types::read(DwarfSource::of(exe, &file));
    let has_cells = types
        .named(|name| name.starts_with("tokio::runtime::task::core::Cell<"))
        .next()
        .is_some();
    has_cells.then_some(types)
}

/// The places a debugger looks for `exe`'s DWARF, in order.
pub fn candidates(exe: &Path, file: &object::File<'_>) -> Vec<PathBuf> {
    let mut found = vec![exe.to_owned()];
    if let Ok(Some(id)) = file.build_id()
        && let [first, rest @ ..] = id
    {
        let hex: String = rest.iter().map(|b| format!("{b:02x}")).collect();
        found.push(PathBuf::from(format!(
            "{DEBUG_ROOT}/.build-id/{first:02x}/{hex}.debug"
        )));
    }
    if let Ok(Some((name, _crc))) = file.gnu_debuglink() {
        let name = String::from_utf8_lossy(name).into_owned();
        let dir = std::fs::canonicalize(exe)
            .ok()
            .and_then(|p| p.parent().map(Path::to_owned))
            .unwrap_or_default();
        found.push(dir.join(&name));
        found.push(dir.join(".debug").join(&name));
        let relative = dir.strip_prefix("/").unwrap_or(&dir);
        found.push(Path::new(DEBUG_ROOT).join(relative).join(&name));
    }
    if let Ok(real) = std::fs::canonicalize(exe) {
        let mut package = real.into_os_string();
        package.push(".dwp");
        found.push(package.into());
    }
    found
}
