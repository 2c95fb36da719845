//! Is an ELF file a Go program tracer can trace, and what does it hold? The Go
//! version decides the runtime layout ([`super::layout`]); PIE, DWARF and the
//! symbol table decide where offsets, names and probe sites come from.
//!
//! The version is in the build information the Go linker writes into every
//! binary, stripped or not: the `.go.buildinfo` section starts with the magic
//! `\xff Go buildinf:`, a pointer size and a flags byte. Since Go 1.18 (flags
//! bit 1) the version and module info follow inline as varint-prefixed
//! strings; before, two pointers lead to Go string headers. Go 1.19 through
//! 1.23 all write the inline form.

use std::path::Path;

use anyhow::bail;
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

use crate::target::image::Image;

/// The Go 1.x minor versions whose runtime tracer knows: the offsets of
/// [`super::layout`] and the transitions the Go probes interpret were checked
/// on each.
pub const SUPPORTED_MINORS: [u32; 4] = [19, 21, 22, 23];

/// The magic that starts `.go.buildinfo`.
const BUILD_INFO_MAGIC: &[u8] = b"\xff Go buildinf:";
/// Bytes of the build info header before the inline strings.
const BUILD_INFO_HEADER: usize = 32;
/// Flags bit: version and module info are inline strings (Go 1.18+).
const FLAG_INLINE_STRINGS: u8 = 2;

/// A Go release, as `runtime.Version()` spells it in the binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoVersion {
    /// The minor version: 23 for go1.23.5.
    pub minor: u32,
    /// The patch release: 5 for go1.23.5 (0 for go1.23 or a release candidate).
    pub patch: u32,
    /// The version string itself ("go1.23.5"), for messages and recordings.
    pub text: String,
}

impl GoVersion {
    /// Reads a Go version string: `go1.23.5`, `go1.22rc1`, `go1.21.0 X:boringcrypto`,
    /// `devel go1.24-abcdef …`. `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let at = text.find("go1.")?;
        let rest = &text[at + "go1.".len()..];
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        let minor_len = digits(rest);
        let minor = rest[..minor_len].parse().ok()?;
        let after = &rest[minor_len..];
        let patch = match after.strip_prefix('.') {
            Some(patch) => patch[..digits(patch)].parse().unwrap_or(0),
            None => 0,
        };
        Some(Self {
            minor,
            patch,
            text: text.trim().to_owned(),
        })
    }

    /// Whether tracer knows this version's runtime ([`SUPPORTED_MINORS`]).
    pub fn is_supported(&self) -> bool {
        SUPPORTED_MINORS.contains(&self.minor)
    }
}

/// What tracer needs to know about a Go binary before reading more of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoImage {
    /// The Go release that built it.
    pub version: GoVersion,
    /// Built with `-buildmode=pie`: addresses are relative to the load address.
    pub position_independent: bool,
    /// Has DWARF (`.debug_info`, compressed or not): layouts and locations come
    /// from it. `-ldflags=-w` leaves it out.
    pub has_dwarf: bool,
    /// Has a symbol table (`.symtab`): probe sites are found by name in it.
    /// `-ldflags=-s` leaves it out.
    pub has_symtab: bool,
}

impl GoImage {
    /// Inspects `file` (read from `path`, named in errors). Fails, saying what
    /// to do, when it is not a Go binary, was built by a Go release tracer does
    /// not support, or is stripped of its symbol table.
    pub fn inspect(file: &object::File<'_>, path: &Path) -> anyhow::Result<Self> {
        let Some(text) = build_version(file) else {
            bail!(
                "{} is not a Go binary: it has no Go build information (no `.go.buildinfo` section, no runtime.buildVersion)",
                path.display()
            );
        };
        let Some(version) = GoVersion::parse(&text) else {
            bail!(
                "{} is a Go binary with a version tracer cannot read ({text:?}); it supports {}",
                path.display(),
                supported_list()
            );
        };
        if !version.is_supported() {
            bail!(
                "{} was built with {}, whose runtime tracer does not know: it supports {}. Rebuild it with one of those (e.g. GOTOOLCHAIN=go1.23.5 go build)",
                path.display(),
                version.text,
                supported_list()
            );
        }
        let has_symtab = file.section_by_name(".symtab").is_some();
        if !has_symtab {
            bail!(
                "{} is stripped: tracer finds Go's runtime functions by name in the symbol table, and this binary has none.\n\
                 Keep symbols and rebuild: drop `-s` from -ldflags (`go build -ldflags=-w` still leaves DWARF out but keeps the symbol table)",
                path.display()
            );
        }
        Ok(Self {
            version,
            position_independent: file.kind() == object::ObjectKind::Dynamic,
            has_dwarf: file.section_by_name(".debug_info").is_some(),
            has_symtab,
        })
    }
}

/// "Go 1.19, 1.21, 1.22 and 1.23".
pub fn supported_list() -> String {
    let names: Vec<String> = SUPPORTED_MINORS.iter().map(|m| format!("1.{m}")).collect();
    match names.split_last() {
        Some((last, [])) => format!("Go {last}"),
        Some((last, rest)) => format!("Go {} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The Go version string of `file` ("go1.23.5"): from `.go.buildinfo`, else
/// from the `runtime.buildVersion` variable; `None` for a file that is not a
/// Go program.
pub fn build_version(file: &object::File<'_>) -> Option<String> {
    let image = Image::new(file);
    let from_build_info = file
        .section_by_name(".go.buildinfo")
        .and_then(|section| section.data().ok())
        .and_then(|data| decode_build_info(data, &|address| go_string(&image, address)));
    from_build_info.or_else(|| {
        let symbol = file
            .symbols()
            .find(|symbol| symbol.name() == Ok("runtime.buildVersion"))?;
        go_string(&image, symbol.address())
    })
}

/// The version in a `.go.buildinfo` section's bytes; `read_string` reads the
/// Go string header at a virtual address (the pointer form of Go < 1.18).
pub fn decode_build_info(
    data: &[u8],
    read_string: &dyn Fn(u64) -> Option<String>,
) -> Option<String> {
    if data.len() < BUILD_INFO_HEADER || !data.starts_with(BUILD_INFO_MAGIC) {
        return None;
    }
    let pointer_size = usize::from(data[14]);
    let flags = data[15];
    if flags & FLAG_INLINE_STRINGS != 0 {
        let (len, used) = uvarint(&data[BUILD_INFO_HEADER..])?;
        let start = BUILD_INFO_HEADER + used;
        let bytes = data.get(start..start.checked_add(usize::try_from(len).ok()?)?)?;
        return String::from_utf8(bytes.to_vec()).ok();
    }
    // Big-endian (flags bit 0) and 32-bit binaries are not for this machine.
    if pointer_size != 8 || flags & 1 != 0 {
        return None;
    }
    let pointer = u64::from_le_bytes(data.get(16..24)?.try_into().ok()?);
    read_string(pointer)
}

/// The Go string whose header (data pointer, length) is at `address`.
fn go_string(image: &Image<'_>, address: u64) -> Option<String> {
    let pointer = image.word(address)?;
    let len = image.word(address + 8)?;
    if len > 4096 {
        return None;
    }
    String::from_utf8(image.bytes(pointer, len)?.to_vec()).ok()
}

/// A Go `binary.Uvarint`: the value and the bytes it took.
pub fn uvarint(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (index, byte) in data.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_as_go_spells_them() {
        let v = GoVersion::parse("go1.23.5").unwrap();
        assert_eq!((v.minor, v.patch, v.text.as_str()), (23, 5, "go1.23.5"));
        assert_eq!(GoVersion::parse("go1.22rc1").unwrap().minor, 22);
        assert_eq!(
            GoVersion::parse("go1.21.0 X:boringcrypto").unwrap().patch,
            0
        );
        assert_eq!(
            GoVersion::parse("devel go1.24-abc123 Tue").unwrap().minor,
            24
        );
        assert_eq!(GoVersion::parse("1.23"), None);
        assert!(!GoVersion::parse("go1.20.3").unwrap().is_supported());
        assert_eq!(supported_list(), "Go 1.19, 1.21, 1.22 and 1.23");
    }

    #[test]
    fn build_info_in_both_forms() {
        let mut inline = BUILD_INFO_MAGIC.to_vec();
        inline.extend([8, FLAG_INLINE_STRINGS]);
        inline.resize(BUILD_INFO_HEADER, 0);
        inline.push(8);
        inline.extend(b"go1.19.8");
        assert_eq!(
            decode_build_info(&inline, &|_| None).as_deref(),
            Some("go1.19.8")
        );

        let mut pointers = BUILD_INFO_MAGIC.to_vec();
        pointers.extend([8, 0]);
        pointers.extend(0x5000u64.to_le_bytes());
        pointers.extend(0x5010u64.to_le_bytes());
        let read = |address: u64| (address == 0x5000).then(|| "go1.17.13".to_owned());
        assert_eq!(
            decode_build_info(&pointers, &read).as_deref(),
            Some("go1.17.13")
        );
        assert_eq!(
            decode_build_info(b"\x7fELF and more bytes than a header", &read),
            None
        );
    }
}
