//! Reads a recording back as a stream of hook events, one chunk in memory at a
//! time, so memory does not grow with the file. Damage is reported, never fatal:
//! a corrupt chunk is skipped and reading resumes at the next chunk's sync marker;
//! a file without its end chunk is "truncated after N events".

use std::{
    collections::VecDeque,
    fmt,
    fs::File,
    io::{self, BufReader, Read},
    path::Path,
};

use super::format::{
    self, Chains, ChunkKind, Cursor, DeltaState, FORMAT_MAJOR, FORMAT_MINOR, FRAME_HEADER, Header,
    InitNames, MAGIC, MAX_HEADER, MAX_PAYLOAD, Malformed, Names, PRELUDE, SYNC,
};
use crate::{
    model::event::{AwaitFrame, HookEvent, HookKind},
    sinks::output::SessionEnd,
};

/// Why a file cannot be read at all.
#[derive(Debug)]
pub enum Refusal {
    /// Zero bytes.
    Empty,
    /// Does not start with the recording magic.
    NotRecording,
    /// Written by a newer, incompatible format.
    NewerVersion {
        /// The file's format version.
        file: (u16, u16),
    },
    /// The header is cut short or fails its checksum.
    BadHeader(&'static str),
    /// The file could not be read.
    Io(io::Error),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(
                f,
                "the file is empty: the recorder stopped before the session began"
            ),
            Self::NotRecording => write!(
                f,
                "not a tracer recording (it does not start with the recording signature); \
                 make one with `tracer record -p PID -o FILE`"
            ),
            Self::NewerVersion {
                file: (major, minor),
            } => write!(
                f,
                "recorded in format version {major}.{minor}, but this tracer ({}) reads format \
                 version {FORMAT_MAJOR}.{FORMAT_MINOR} and older: read it with a newer tracer",
                env!("CARGO_PKG_VERSION")
            ),
            Self::BadHeader(why) => write!(
                f,
                "the recording's header is damaged ({why}), so its events cannot be placed"
            ),
            Self::Io(error) => write!(f, "cannot read it: {error}"),
        }
    }
}

impl std::error::Error for Refusal {}

impl From<io::Error> for Refusal {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

/// Damage found while reading; the events around it still read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A chunk failed its checks and was skipped whole.
    CorruptChunk {
        /// Byte offset of the chunk in the file.
        offset: u64,
        /// What was wrong.
        reason: &'static str,
    },
    /// A chunk passed its checksum but its events did not decode; the rest of it
    /// was skipped.
    Undecodable {
        /// Byte offset of the chunk in the file.
        offset: u64,
        /// What was wrong.
        reason: &'static str,
    },
    /// A names chunk (format 1.2) could not be used: the inits it names read
    /// without name and location.
    NamesLost {
        /// Byte offset of the chunk (names or events) in the file.
        offset: u64,
        /// What was wrong.
        reason: &'static str,
    },
    /// A chains chunk (format 1.4) could not be used: the `after`s it gives
    /// await chains read without them.
    ChainsLost {
        /// Byte offset of the chunk (chains or events) in the file.
        offset: u64,
        /// What was wrong.
        reason: &'static str,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CorruptChunk { offset, reason } => {
                write!(
                    f,
                    "the chunk at byte {offset} is corrupt ({reason}): skipped"
                )
            }
            Self::Undecodable { offset, reason } => write!(
                f,
                "the chunk at byte {offset} holds undecodable events ({reason}): the rest of it skipped"
            ),
            Self::NamesLost { offset, reason } => write!(
                f,
                "the task names at byte {offset} cannot be used ({reason}): those tasks read unnamed"
            ),
            Self::ChainsLost { offset, reason } => write!(
                f,
                "the await chains at byte {offset} cannot be used ({reason}): those afters read without `awaiting`"
            ),
        }
    }
}

/// Bytes from the file, with bytes pushed back for a second look after a bad
/// frame (at most one frame's worth), and the offset of the next byte.
struct Source<R> {
    inner: R,
    pushback: Vec<u8>,
    offset: u64,
}

impl<R: Read> Source<R> {
    /// Fills as much of `buf` as the file has; fewer bytes means end of file.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            if let Some(byte) = self.pushback.pop() {
                buf[filled] = byte;
                filled += 1;
                continue;
            }
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        self.offset += filled as u64;
        Ok(filled)
    }

    /// Makes `bytes` the next ones read.
    fn unread(&mut self, bytes: &[u8]) {
        self.pushback.extend(bytes.iter().rev());
        self.offset -= bytes.len() as u64;
    }

    /// Skips to the next sync marker after a bad frame whose bytes were
    /// `consumed`; false at end of file.
    fn resync(&mut self, consumed: &[u8]) -> io::Result<bool> {
        self.unread(consumed.get(1..).unwrap_or_default());
        let mut window = [0u8; 4];
        let mut seen = 0usize;
        let mut byte = [0u8; 1];
        while self.fill(&mut byte)? == 1 {
            window.rotate_left(1);
            window[3] = byte[0];
            seen += 1;
            if seen >= 4 && window == SYNC {
                self.unread(&SYNC);
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A frame that passed its checks, its payload read into the reader's chunk.
struct Frame {
    /// Where its header starts in the file.
    offset: u64,
    /// Its [`ChunkKind`] byte.
    kind: u8,
    /// Payload bytes.
    len: usize,
    /// Events (or names) it holds.
    count: u32,
    /// Its checksum, by which a names chunk knows its events chunk.
    crc: u32,
}

/// A recording being read.
pub struct Reader<R> {
    src: Source<R>,
    header: Header,
    chunk: Vec<u8>,
    chunk_offset: u64,
    pos: usize,
    left: u32,
    state: DeltaState,
    events: u64,
    chunks: u64,
    problems: Vec<Problem>,
    end: Option<SessionEnd>,
    at_eof: bool,
    /// A names chunk read, waiting for the events chunk it belongs to, and its offset.
    pending_names: Option<(Names, u64)>,
    /// The names of the open chunk's inits not read yet, if it has names.
    names: Option<VecDeque<InitNames>>,
    /// A chains chunk read, waiting for the events chunk it belongs to.
    pending_chains: Option<(Chains, u64)>,
    /// The chains of the open chunk's `after`s not read yet, by event index.
    chains: VecDeque<(u32, Vec<AwaitFrame>)>,
    /// Events of the open chunk read so far.
    index: u32,
}

impl Reader<BufReader<File>> {
    /// Opens the recording at `path`, with messages naming it.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = File::open(path)
            .map_err(|error| anyhow::anyhow!("cannot open {}: {error}", path.display()))?;
        Reader::new(BufReader::with_capacity(1 << 16, file))
            .map_err(|refusal| anyhow::anyhow!("{}: {refusal}", path.display()))
    }
}

impl<R: Read> Reader<R> {
    /// Reads and checks the header.
    pub fn new(inner: R) -> Result<Self, Refusal> {
        let mut src = Source {
            inner,
            pushback: Vec::new(),
            offset: 0,
        };
        let mut prelude = [0u8; PRELUDE];
        let got = src.fill(&mut prelude)?;
        if got == 0 {
            return Err(Refusal::Empty);
        }
        if prelude[..got.min(MAGIC.len())] != MAGIC[..got.min(MAGIC.len())] {
            return Err(Refusal::NotRecording);
        }
        if got < PRELUDE {
            return Err(Refusal::BadHeader("cut short"));
        }
        let (version, len, crc) = format::parse_prelude(&prelude);
        if version.0 > FORMAT_MAJOR {
            return Err(Refusal::NewerVersion { file: version });
        }
        if len > MAX_HEADER {
            return Err(Refusal::BadHeader("impossible length"));
        }
        let mut body = vec![0u8; len];
        if src.fill(&mut body)? < len {
            return Err(Refusal::BadHeader("cut short"));
        }
        if crc32fast::hash(&body) != crc {
            return Err(Refusal::BadHeader("checksum mismatch"));
        }
        let header = format::decode_header_body(version, &body)
            .map_err(|Malformed(why)| Refusal::BadHeader(why))?;
        Ok(Self {
            src,
            header,
            chunk: Vec::new(),
            chunk_offset: 0,
            pos: 0,
            left: 0,
            state: DeltaState::default(),
            events: 0,
            chunks: 0,
            problems: Vec::new(),
            end: None,
            at_eof: false,
            pending_names: None,
            names: None,
            pending_chains: None,
            chains: VecDeque::new(),
            index: 0,
        })
    }

    /// The file header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The session's end record, once reached; `None` before, or if truncated.
    pub fn end(&self) -> Option<&SessionEnd> {
        self.end.as_ref()
    }

    /// Events read so far.
    pub fn events_read(&self) -> u64 {
        self.events
    }

    /// Good chunks read so far.
    pub fn chunks_read(&self) -> u64 {
        self.chunks
    }

    /// Damage found since the last call.
    pub fn take_problems(&mut self) -> Vec<Problem> {
        std::mem::take(&mut self.problems)
    }

    /// The file ended without its end chunk: the recorder was killed, or the file
    /// was cut. Meaningful once [`Reader::next_event`] returned `None`.
    pub fn truncated(&self) -> bool {
        self.at_eof && self.end.is_none()
    }

    /// The next event, `None` at the end of the recording.
    pub fn next_event(&mut self) -> io::Result<Option<HookEvent>> {
        loop {
            if self.left > 0 {
                let mut cursor = Cursor::new(&self.chunk[self.pos..]);
                match format::decode_event(&mut cursor, &mut self.state, self.header.session.pid) {
                    Ok(mut event) => {
                        self.pos = self.chunk.len() - cursor.len();
                        self.left -= 1;
                        self.events += 1;
                        self.attach_names(&mut event);
                        self.attach_chain(&mut event);
                        if self.left == 0 && self.pos != self.chunk.len() {
                            self.undecodable("bytes after its last event");
                        }
                        if self.left == 0 && self.names.take().is_some_and(|n| !n.is_empty()) {
                            self.names_lost(
                                self.chunk_offset,
                                "more names than its events chunk has inits",
                            );
                        }
                        return Ok(Some(event));
                    }
                    Err(Malformed(why)) => {
                        self.left = 0;
                        self.undecodable(why);
                    }
                }
            }
            if self.at_eof || self.end.is_some() || !self.next_chunk()? {
                self.at_eof |= self.end.is_none();
                return Ok(None);
            }
        }
    }

    /// Gives an `init` of a chunk with names its name and location.
    fn attach_names(&mut self, event: &mut HookEvent) {
        let HookKind::Init { name, location, .. } = &mut event.kind else {
            return;
        };
        let Some(names) = self.names.as_mut() else {
            return;
        };
        match names.pop_front() {
            Some((n, l)) => (*name, *location) = (n, l),
            None => {
                self.names = None;
                self.names_lost(
                    self.chunk_offset,
                    "fewer names than its events chunk has inits",
                );
            }
        }
    }

    /// Gives an `after` of a chunk with chains its await chain.
    fn attach_chain(&mut self, event: &mut HookEvent) {
        let index = self.index;
        self.index += 1;
        if self.chains.front().is_some_and(|(at, _)| *at == index) {
            let (_, frames) = self.chains.pop_front().unwrap_or_default();
            match &mut event.kind {
                HookKind::After { awaiting, .. } => *awaiting = Some(frames),
                _ => {
                    self.chains.clear();
                    self.chains_lost(self.chunk_offset, "a chain for an event not an after");
                }
            }
        }
    }

    fn chains_lost(&mut self, offset: u64, reason: &'static str) {
        self.problems.push(Problem::ChainsLost { offset, reason });
    }

    fn names_lost(&mut self, offset: u64, reason: &'static str) {
        self.problems.push(Problem::NamesLost { offset, reason });
    }

    fn undecodable(&mut self, reason: &'static str) {
        self.problems.push(Problem::Undecodable {
            offset: self.chunk_offset,
            reason,
        });
    }

    /// Loads the next good chunk; false at the end of the file.
    fn next_chunk(&mut self) -> io::Result<bool> {
        while let Some(frame) = self.next_frame()? {
            match ChunkKind::from_byte(frame.kind) {
                Some(ChunkKind::Events) => {
                    self.open_events(&frame);
                    return Ok(true);
                }
                Some(ChunkKind::End) => {
                    self.read_end(frame.offset);
                    return Ok(false);
                }
                Some(ChunkKind::Names) => self.read_names(&frame),
                Some(ChunkKind::Chains) => self.read_chains(&frame),
                // A kind added by a newer minor version: not ours to read.
                None => {}
            }
        }
        Ok(false)
    }

    /// Reads the next frame that passes its checks into `chunk`, skipping (and
    /// reporting) damaged ones; `None` at the end of the file.
    fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            let offset = self.src.offset;
            let mut head = [0u8; FRAME_HEADER];
            let got = self.src.fill(&mut head)?;
            if got == 0 {
                return Ok(None);
            }
            if head[..got.min(4)] != SYNC[..got.min(4)] {
                self.corrupt(offset, "no chunk marker");
                if !self.src.resync(&head[..got])? {
                    return Ok(None);
                }
                continue;
            }
            if got < FRAME_HEADER {
                // Cut inside a frame header: the end of a truncated file.
                return Ok(None);
            }
            let (kind, len, count, crc) = format::parse_frame_header(&head);
            if len > MAX_PAYLOAD {
                self.corrupt(offset, "impossible length");
                if !self.src.resync(&head)? {
                    return Ok(None);
                }
                continue;
            }
            self.chunk.resize(len, 0);
            let got = self.src.fill(&mut self.chunk)?;
            let mut frame = head.to_vec();
            if got < len || format::frame_crc(kind, len as u32, count, &self.chunk) != crc {
                frame.extend_from_slice(&self.chunk[..got]);
                let found = self.src.resync(&frame)?;
                if got == len || found {
                    self.corrupt(offset, "checksum mismatch");
                }
                if !found {
                    return Ok(None);
                }
                continue;
            }
            return Ok(Some(Frame {
                offset,
                kind,
                len,
                count,
                crc,
            }));
        }
    }

    /// Makes the events chunk in `chunk` the one events are read from, with the
    /// names read just before it if they are its own.
    fn open_events(&mut self, frame: &Frame) {
        self.chunks += 1;
        self.names = None;
        if let Some((names, at)) = self.pending_names.take() {
            if names.events_crc == frame.crc {
                self.names = Some(names.inits.into());
            } else {
                self.names_lost(at, "the events chunk they name is missing");
            }
        }
        self.chains.clear();
        self.index = 0;
        if let Some((chains, at)) = self.pending_chains.take() {
            if chains.events_crc == frame.crc {
                self.chains = chains.afters.into();
            } else {
                self.chains_lost(at, "the events chunk they belong to is missing");
            }
        }
        self.chunk_offset = frame.offset;
        self.pos = 0;
        self.left = frame.count;
        self.state = DeltaState::default();
        if frame.count == 0 && frame.len > 0 {
            self.undecodable("bytes after its last event");
        }
    }

    /// Takes the end record in `chunk`, read at `offset`; a damaged one still
    /// ends the session, with nothing known.
    fn read_end(&mut self, offset: u64) {
        match format::decode_end(&self.chunk) {
            Ok(end) => self.end = Some(end),
            Err(Malformed(why)) => {
                self.chunk_offset = offset;
                self.undecodable(why);
                self.end = Some(SessionEnd::default());
            }
        }
    }

    /// Keeps the names chunk in `chunk` for the events chunk it names, which
    /// comes next; names still waiting lost theirs.
    fn read_names(&mut self, frame: &Frame) {
        if let Some((_, at)) = self.pending_names.take() {
            self.names_lost(at, "the events chunk they name is missing");
        }
        match format::decode_names(&self.chunk, frame.count) {
            Ok(names) => self.pending_names = Some((names, frame.offset)),
            Err(Malformed(why)) => self.names_lost(frame.offset, why),
        }
    }

    /// Keeps the chains chunk in `chunk` for the events chunk it belongs to,
    /// which comes next; chains still waiting lost theirs.
    fn read_chains(&mut self, frame: &Frame) {
        if let Some((_, at)) = self.pending_chains.take() {
            self.chains_lost(at, "the events chunk they belong to is missing");
        }
        match format::decode_chains(&self.chunk, frame.count) {
            Ok(chains) => self.pending_chains = Some((chains, frame.offset)),
            Err(Malformed(why)) => self.chains_lost(frame.offset, why),
        }
    }

    fn corrupt(&mut self, offset: u64, reason: &'static str) {
        self.problems.push(Problem::CorruptChunk { offset, reason });
    }
}
