//! What identifies the recorded program: its GNU build id, and the version of its
//! runtime crate as the compiler left it in the binary's paths (`tokio-1.54.1/src`).
//! Both are best effort: a missing one is recorded as empty.

use std::path::Path;

use object::Object as _;

use crate::{target::crate_version::runtime_version, target::mapped_file};

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
        let Ok(data) = mapped_file::map(exe) else {
            return Self::default();
        };
        let Ok(file) = object::File::parse(&*data) else {
            return Self::default();
        };
        let build_id = file.build_id().ok().flatten().map(<[u8]>::to_vec);
        let runtime_version = runtime_version(&file, &data, runtime);
        Self {
            build_id: build_id.unwrap_or_default(),
            runtime_version: runtime_version.unwrap_or_default(),
        }
    }
}
