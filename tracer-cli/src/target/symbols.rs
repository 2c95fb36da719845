//! Reading an ELF file's symbols: parsing it for this machine, where a symbol's
//! code is in the file, and function paths without their generic arguments.

use std::path::Path;

use anyhow::{Context as _, bail};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

/// Fails unless `file` (read from `path`) is code for this machine (x86_64), naming
/// the machine it is for.
pub fn check_machine(file: &object::File, path: &Path) -> anyhow::Result<()> {
    let machine = match file.architecture() {
        object::Architecture::X86_64 => return Ok(()),
        object::Architecture::Aarch64 => "an aarch64",
        object::Architecture::Arm => "a 32-bit arm",
        object::Architecture::I386 => "a 32-bit x86",
        object::Architecture::Riscv64 => "a riscv64",
        object::Architecture::PowerPc64 => "a powerpc64",
        object::Architecture::S390x => "an s390x",
        _ => "another machine's",
    };
    bail!(
        "{} is {machine} binary; tracer traces x86_64 programs on this machine (run an x86_64 build of it)",
        path.display()
    )
}

/// Parses an x86_64 ELF file.
pub fn parse<'data>(path: &Path, data: &'data [u8]) -> anyhow::Result<object::File<'data>> {
    let file = object::File::parse(data)
        .with_context(|| format!("{} is not an ELF file tracer can read", path.display()))?;
    check_machine(&file, path)?;
    Ok(file)
}

/// Whether `needle` occurs in `haystack`: the cheap filter before demangling.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Where `symbol`'s code is in the file, which is what uprobes attach by.
pub fn file_offset(file: &object::File<'_>, symbol: &object::Symbol<'_, '_>) -> Option<u64> {
    let section = file.section_by_index(symbol.section_index()?).ok()?;
    let (section_offset, _) = section.file_range()?;
    Some(symbol.address() - section.address() + section_offset)
}

/// `a::B<T>::f::<U>` → `a::B::f`; `<a::B<T> as c::D>::f` → `a::B::f`. Demangled
/// names differ in their generic arguments between manglings and builds; the path
/// without them is what identifies a function.
pub fn path_without_generics(demangled: &str) -> String {
    let qualified = demangled
        .strip_prefix('<')
        .and_then(|rest| {
            let close = matching_close(rest)?;
            let inner = &rest[..close];
            let self_type = inner.split(" as ").next().unwrap_or(inner);
            Some(format!("{self_type}{}", &rest[close + 1..]))
        })
        .unwrap_or_else(|| demangled.to_owned());

    let mut out = String::with_capacity(qualified.len());
    let mut depth = 0usize;
    for c in qualified.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.replace("::::", "::").trim_end_matches("::").to_owned()
}

/// Index of the `>` closing a group whose `<` was just before `text`.
fn matching_close(text: &str) -> Option<usize> {
    let mut depth = 1usize;
    for (index, c) in text.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    return Some(index);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_arguments_are_removed_from_paths() {
        assert_eq!(
            path_without_generics("tokio::runtime::task::list::OwnedTasks<S>::bind_inner"),
            "tokio::runtime::task::list::OwnedTasks::bind_inner"
        );
        assert_eq!(
            path_without_generics(
                "<tokio::runtime::task::list::OwnedTasks<alloc::sync::Arc<H>>>::bind_inner::<F>"
            ),
            "tokio::runtime::task::list::OwnedTasks::bind_inner"
        );
        assert_eq!(
            path_without_generics("<tokio::x::Y<T> as core::future::Future>::poll"),
            "tokio::x::Y::poll"
        );
        assert_eq!(
            path_without_generics("tokio::runtime::task::raw::poll"),
            "tokio::runtime::task::raw::poll"
        );
    }
}
