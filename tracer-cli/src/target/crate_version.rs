//! Which version of a crate a binary was built with, read from the source paths
//! the compiler leaves in it for panic messages (`…/tokio-1.54.1/src/…`). The
//! tracer picks the Tokio task layout by it, and recordings keep it.

use object::{Object as _, ObjectSection as _};

/// The version of crate `krate` the file was built with, from the source paths
/// the compiler left in it for panic messages (`…/tokio-1.54.1/src/…`; they stay
/// in release and stripped builds): in `.rodata`, else anywhere in the file.
pub fn runtime_version(file: &object::File<'_>, data: &[u8], krate: &str) -> Option<String> {
    file.section_by_name(".rodata")
        .and_then(|rodata| crate_version(rodata.data().ok()?, krate))
        .or_else(|| crate_version(data, krate))
}

/// The version in the first `<krate>-<version>/` path found in `bytes`, e.g.
/// "1.54.1" from `…/tokio-1.54.1/src/runtime/…`.
pub fn crate_version(bytes: &[u8], krate: &str) -> Option<String> {
    let needle = format!("{krate}-");
    memchr::memmem::find_iter(bytes, needle.as_bytes()).find_map(|at| {
        let rest = &bytes[at + needle.len()..];
        let len = rest
            .iter()
            .take(64)
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'+'))?;
        let version = std::str::from_utf8(&rest[..len]).ok()?;
        let path_follows = rest.get(len) == Some(&b'/');
        let looks_like_version = version.split('.').count() >= 3
            && version.split('.').take(3).all(|part| {
                part.split(['-', '+'])
                    .next()
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            });
        (path_follows && looks_like_version).then(|| version.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_version_is_read_from_a_registry_path() {
        let bytes = b"\0tokio-util\0/home/x/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/runtime/task/raw.rs\0";
        assert_eq!(crate_version(bytes, "tokio").as_deref(), Some("1.54.1"));
    }

    #[test]
    fn crate_version_ignores_other_crates_and_text() {
        assert_eq!(
            crate_version(b"tokio-util-0.7.1/src tokio-stream", "tokio"),
            None
        );
    }
}
