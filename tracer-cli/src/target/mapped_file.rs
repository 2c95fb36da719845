//! Executables and libraries are read by mapping them, not by copying them: a
//! large binary is scanned several times at start (probe sites, embedder markers,
//! the recording's identity), and copying it each time cost most of the start-up
//! (fresh pages zeroed, then filled) and as much memory as the file.

use std::{fs::File, path::Path};

use anyhow::Context as _;
use memmap2::Mmap;

/// Maps the file at `path` read-only; the bytes are the file's, shared with the
/// page cache.
pub fn map(path: &Path) -> anyhow::Result<Mmap> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    // SAFETY: the mapping is only read, never written. A program's files are
    // replaced by new files (package managers rename), not rewritten in place,
    // and the kernel refuses writes to a running executable (ETXTBSY).
    unsafe { Mmap::map(&file) }.with_context(|| format!("cannot read {}", path.display()))
}
