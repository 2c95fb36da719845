//! What identifies the recorded program: its GNU build id, and the version of its
//! runtime crate as the compiler left it in the binary's paths (`tokio-1.54.1/src`).
//! Both are best effort: a missing one is recorded as empty.

use std::path::Path;

use object::{Object as _, ObjectSection as _};

/// The recorded program's identity, for the file header.
#[derive(Debug, Default)]
pub struct Identity {
    /// GNU build id bytes (`.note.gnu.build-id`), empty when absent.
    pub build_id: Vec<u8>,
    /// The runtime crate's version ("1.54.1"), empty when not found.
    pub runtime_version: String,
}

impl Identity {
    /// Reads `exe`; `runtime` is the crate name to look for ("tokio").
    pub fn read(exe: &Path, runtime: &str) -> Self {
        let Ok(data) = std::fs::read(exe) else {
            return Self::default();
        };
        let Ok(file) = object::File::parse(&*data) else {
            return Self::default();
        };
        let build_id = file.build_id().ok().flatten().map(<[u8]>::to_vec);
        // Source paths live in read-only data; scan the whole file if that has none.
        let runtime_version = file
            .section_by_name(".rodata")
            .and_then(|rodata| crate_version(rodata.data().ok()?, runtime))
            .or_else(|| crate_version(&data, runtime));
        Self {
            build_id: build_id.unwrap_or_default(),
            runtime_version: runtime_version.unwrap_or_default(),
        }
    }
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
