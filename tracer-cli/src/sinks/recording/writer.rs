//! The recording sink: encodes hook events into chunks and appends each chunk to
//! the file as soon as it closes (on size, or on a flush once it is half a second
//! old), so a recorder killed at any moment leaves every closed chunk readable.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{
    binary,
    format::{self, Chains, ChunkKind, DeltaState, FORMAT_MAJOR, FORMAT_MINOR, Header, Names},
};
use crate::{
    model::event::{HookEvent, HookKind},
    sinks::output::{SessionEnd, SessionInfo, Sink},
};

/// A chunk closes once its payload reaches this size.
const CHUNK_BYTES: usize = 64 << 10;
/// A chunk closes on the next flush once it has been open this long; the session
/// flushes every half second, so events reach the file within a second.
const CHUNK_AGE: Duration = Duration::from_millis(500);

/// Creates `path` for a recording, readable by its owner only (0600). Refuses an
/// existing file unless `force`.
pub fn create_file(path: &Path, force: bool) -> anyhow::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let file = options.open(path).map_err(|error| {
        if error.kind() == io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists: choose another file, or pass --force to overwrite it",
                path.display()
            )
        } else {
            anyhow::Error::new(error).context(format!("cannot create {}", path.display()))
        }
    })?;
    // `mode` applies only to new files: an overwritten one is narrowed too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private (mode 0600)", path.display()))?;
    Ok(file)
}

/// Writes a session to a recording as it happens.
pub struct Recorder<W: Write> {
    out: W,
    pid: u32,
    chunk: Vec<u8>,
    count: u32,
    opened: Option<Instant>,
    state: DeltaState,
    /// The name and location of each init of the open chunk.
    names: Names,
    /// Whether any of them is known (else no names chunk is written).
    named: bool,
    /// The await chains of the open chunk's `after`s that carry one.
    chains: Chains,
}

impl<W: Write> Recorder<W> {
    /// Records into `out` (a file from [`create_file`]); the header is written by `begin`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            pid: 0,
            chunk: Vec::with_capacity(CHUNK_BYTES + 64),
            count: 0,
            opened: None,
            state: DeltaState::default(),
            names: Names::default(),
            named: false,
            chains: Chains::default(),
        }
    }

    /// Appends the open chunk to the file and starts a new one.
    fn close_chunk(&mut self) -> io::Result<()> {
        if self.count > 0 {
            let events = format::encode_frame(ChunkKind::Events, self.count, &self.chunk);
            // A names chunk goes just before its events chunk, in the same write.
            let mut bytes = Vec::new();
            if self.named {
                self.names.events_crc = format::frame_crc(
                    ChunkKind::Events as u8,
                    self.chunk.len() as u32,
                    self.count,
                    &self.chunk,
                );
                bytes = format::encode_frame(
                    ChunkKind::Names,
                    self.names.inits.len() as u32,
                    &format::encode_names(&self.names),
                );
            }
            // So does a chains chunk, after the names chunk.
            if !self.chains.afters.is_empty() {
                self.chains.events_crc = format::frame_crc(
                    ChunkKind::Events as u8,
                    self.chunk.len() as u32,
                    self.count,
                    &self.chunk,
                );
                bytes.extend_from_slice(&format::encode_frame(
                    ChunkKind::Chains,
                    self.chains.afters.len() as u32,
                    &format::encode_chains(&self.chains),
                ));
            }
            bytes.extend_from_slice(&events);
            self.out.write_all(&bytes)?;
            self.out.flush()?;
        }
        self.chunk.clear();
        self.count = 0;
        self.opened = None;
        self.state = DeltaState::default();
        self.names.inits.clear();
        self.named = false;
        self.chains.afters.clear();
        Ok(())
    }
}

impl<W: Write> Sink for Recorder<W> {
    fn begin(&mut self, info: &SessionInfo) -> io::Result<()> {
        self.pid = info.pid;
        // The running image, not the path: the file on disk may have been replaced
        // since the process started (a rebuild), and its build id would be wrong.
        let running = std::path::PathBuf::from(format!("/proc/{}/exe", info.pid));
        let identity = if running.exists() {
            binary::Identity::read(&running, &info.runtime)
        } else {
            binary::Identity::read(&info.exe, &info.runtime)
        };
        let header = Header {
            version: (FORMAT_MAJOR, FORMAT_MINOR),
            tracer_version: env!("CARGO_PKG_VERSION").to_owned(),
            session: info.clone(),
            build_id: identity.build_id,
            runtime_version: identity.runtime_version,
        };
        self.out.write_all(&format::encode_header(&header))?;
        self.out.flush()
    }

    fn event(&mut self, event: &HookEvent) -> io::Result<()> {
        format::encode_event(&mut self.chunk, &mut self.state, self.pid, event);
        if let HookKind::After {
            awaiting: Some(frames),
            ..
        } = &event.kind
        {
            self.chains.afters.push((self.count, frames.clone()));
        }
        self.count += 1;
        if let HookKind::Init { name, location, .. } = &event.kind {
            self.named |= name.is_some() || location.is_some();
            self.names.inits.push((name.clone(), location.clone()));
        }
        self.opened.get_or_insert_with(Instant::now);
        if self.chunk.len() >= CHUNK_BYTES {
            self.close_chunk()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self
            .opened
            .is_some_and(|opened| opened.elapsed() >= CHUNK_AGE)
        {
            self.close_chunk()?;
        }
        Ok(())
    }

    fn end(&mut self, end: &SessionEnd) -> io::Result<()> {
        self.close_chunk()?;
        self.out.write_all(&format::encode_frame(
            ChunkKind::End,
            0,
            &format::encode_end(end),
        ))?;
        self.out.flush()
    }
}
