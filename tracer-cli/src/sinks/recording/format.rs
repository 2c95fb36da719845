//! The bytes of a recording: the file header, the chunk frame, and the compact
//! event encoding (delta timestamps and ids as varints). Pure functions on byte
//! slices, so the writer, the reader and the fuzz target share one definition.
//! `docs/FORMAT.md` describes the same layout for people.

use std::borrow::Cow;

use crate::{
    model::event::{AwaitBranch, AwaitFrame, HookEvent, HookKind, ResourceType},
    sinks::output::{SessionEnd, SessionInfo},
};

/// First bytes of every recording.
pub const MAGIC: [u8; 8] = *b"TRACERec";
/// Format major version: a reader refuses files with a higher one.
pub const FORMAT_MAJOR: u16 = 1;
/// Format minor version: additions older readers can skip. 1.1 appends
/// `emitted` to the end chunk; 1.2 adds names chunks (the name and location of
/// each `init`); 1.3 adds wake events and `before`'s `sched_ns`; 1.4 adds
/// chains chunks (the `awaiting` of each `after` that has one); 1.5 adds fork
/// frames to them (a `join!` or `select!` with its pending branches' chains:
/// a 1.4 reader sets those chains aside, saying so).
pub const FORMAT_MINOR: u16 = 5;
/// Marks the start of every chunk frame, so a reader can find the next chunk
/// after a corrupt one.
pub const SYNC: [u8; 4] = *b"TRCK";
/// Bytes before a chunk's payload: sync, kind, payload length, event count, CRC-32.
pub const FRAME_HEADER: usize = 4 + 1 + 4 + 4 + 4;
/// Bytes of the fixed file prelude: magic, major, minor, header length, CRC-32.
pub const PRELUDE: usize = 8 + 2 + 2 + 4 + 4;
/// Largest payload a reader accepts; larger lengths are corruption.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Largest header body a reader accepts.
pub const MAX_HEADER: usize = 1 << 16;

/// What a chunk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ChunkKind {
    /// Encoded hook events.
    Events = 1,
    /// The session's end: a [`SessionEnd`]; the last chunk of a complete file.
    End = 2,
    /// The name and location of each `init` of the events chunk that follows
    /// ([`Names`]); since 1.2, and skipped by older readers.
    Names = 3,
    /// The await chain of each `after` of the events chunk that follows that
    /// carries one ([`Chains`]); since 1.4, and skipped by older readers.
    Chains = 4,
}

impl ChunkKind {
    /// The kind for a frame's kind byte; `None` for kinds a newer minor version added.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Events),
            2 => Some(Self::End),
            3 => Some(Self::Names),
            4 => Some(Self::Chains),
            _ => None,
        }
    }
}

/// Everything the file header says about the recorded session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Format version of the file (major, minor).
    pub version: (u16, u16),
    /// `tracer --version` of the recorder.
    pub tracer_version: String,
    /// Target, executable, runtime and clock base, as live sinks saw them.
    pub session: SessionInfo,
    /// The executable's GNU build id, when it has one.
    pub build_id: Vec<u8>,
    /// The runtime crate's version found in the executable ("1.54.1"), or empty.
    pub runtime_version: String,
}

/// Why some bytes are not what the format says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Appends `value` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a signed difference, zigzag-encoded so small negatives stay small.
fn put_signed(out: &mut Vec<u8>, value: i64) {
    put_varint(out, ((value << 1) ^ (value >> 63)) as u64);
}

/// Appends a length-prefixed byte string.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads values back from a byte slice, never past its end.
pub struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// Reads `bytes` from the start.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// Bytes not read yet.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    fn byte(&mut self) -> Result<u8, Malformed> {
        let (&first, rest) = self.bytes.split_first().ok_or(Malformed("ends early"))?;
        self.bytes = rest;
        Ok(first)
    }

    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Malformed("varint longer than 64 bits"))
    }

    fn signed(&mut self) -> Result<i64, Malformed> {
        let raw = self.varint()?;
        Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        u32::try_from(self.varint()?).map_err(|_| Malformed("value too large for 32 bits"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = usize::try_from(self.varint()?).map_err(|_| Malformed("length too large"))?;
        if len > self.bytes.len() {
            return Err(Malformed("length past the end"));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn string(&mut self) -> Result<String, Malformed> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| Malformed("text is not UTF-8"))
    }
}

/// The fixed prelude and header body of a file.
pub fn encode_header(header: &Header) -> Vec<u8> {
    let mut body = Vec::new();
    put_bytes(&mut body, header.tracer_version.as_bytes());
    put_varint(&mut body, header.session.pid.into());
    put_bytes(&mut body, header.session.exe.as_os_str().as_encoded_bytes());
    put_bytes(&mut body, &header.build_id);
    put_bytes(&mut body, header.session.runtime.as_bytes());
    put_bytes(&mut body, header.runtime_version.as_bytes());
    put_varint(&mut body, header.session.start_ns);
    put_varint(&mut body, header.session.start_unix_ns);
    let mut out = Vec::with_capacity(PRELUDE + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&header.version.0.to_le_bytes());
    out.extend_from_slice(&header.version.1.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The prelude's fields once the magic matched: version, body length, body CRC.
pub fn parse_prelude(prelude: &[u8; PRELUDE]) -> ((u16, u16), usize, u32) {
    let field = |at: usize| {
        [
            prelude[at],
            prelude[at + 1],
            prelude[at + 2],
            prelude[at + 3],
        ]
    };
    let major = u16::from_le_bytes([prelude[8], prelude[9]]);
    let minor = u16::from_le_bytes([prelude[10], prelude[11]]);
    let len = u32::from_le_bytes(field(12)) as usize;
    ((major, minor), len, u32::from_le_bytes(field(16)))
}

/// The header body (after its CRC was checked). Fields a newer minor version
/// appended are ignored.
pub fn decode_header_body(version: (u16, u16), body: &[u8]) -> Result<Header, Malformed> {
    let mut cursor = Cursor::new(body);
    let tracer_version = cursor.string()?;
    let pid = cursor.u32()?;
    let exe = std::path::PathBuf::from(cursor.string()?);
    let build_id = cursor.bytes()?.to_vec();
    let runtime = cursor.string()?;
    let runtime_version = cursor.string()?;
    let start_ns = cursor.varint()?;
    let start_unix_ns = cursor.varint()?;
    Ok(Header {
        version,
        tracer_version,
        session: SessionInfo {
            pid,
            exe,
            runtime,
            start_ns,
            start_unix_ns,
        },
        build_id,
        runtime_version,
    })
}

/// A complete chunk frame around `payload`.
pub fn encode_frame(kind: ChunkKind, count: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FRAME_HEADER + payload.len());
    frame.extend_from_slice(&SYNC);
    frame.push(kind as u8);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&count.to_le_bytes());
    frame.extend_from_slice(
        &frame_crc(kind as u8, payload.len() as u32, count, payload).to_le_bytes(),
    );
    frame.extend_from_slice(payload);
    frame
}

/// CRC-32 over a frame's kind, length, count and payload.
pub fn frame_crc(kind: u8, len: u32, count: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[kind]);
    hasher.update(&len.to_le_bytes());
    hasher.update(&count.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// A frame header's fields: kind byte, payload length, event count, CRC.
pub fn parse_frame_header(bytes: &[u8; FRAME_HEADER]) -> (u8, usize, u32, u32) {
    let field = |at: usize| [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
    (
        bytes[4],
        u32::from_le_bytes(field(5)) as usize,
        u32::from_le_bytes(field(9)),
        u32::from_le_bytes(field(13)),
    )
}

// Event tag byte: the low three bits are the kind, the rest are flags.
const KIND_INIT: u8 = 0;
const KIND_BEFORE: u8 = 1;
const KIND_AFTER: u8 = 2;
const KIND_AFTER_COMPLETED: u8 = 3;
const KIND_RESOLVE: u8 = 4;
const KIND_DESTROY: u8 = 5;
/// Since 1.3.
const KIND_WAKE: u8 = 6;
const KIND_MASK: u8 = 0b111;
const SAME_TID: u8 = 1 << 3;
const OTHER_PID: u8 = 1 << 4;
/// Init: `existing`. Wake (1.3): `self`.
const EXISTING: u8 = 1 << 5;
/// Init: a trigger id follows. Before (1.3): a `sched_ns` follows. Wake (1.3): a
/// waker id follows.
const HAS_TRIGGER: u8 = 1 << 6;
const TAG_KNOWN: u8 = KIND_MASK | SAME_TID | OTHER_PID | EXISTING | HAS_TRIGGER;

// Resource type codes; anything else is written out by name.
const TYPE_TASK: u64 = 0;
const TYPE_BLOCKING: u64 = 1;
const TYPE_LOCAL: u64 = 2;
const TYPE_NAMED: u64 = 3;

/// What the previous event in the chunk had: events are stored as differences
/// from it. Every chunk starts from zero, so each decodes on its own.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeltaState {
    ts_ns: u64,
    async_id: u64,
    tid: u32,
}

/// Appends one event; `pid` is the header's, written only when an event differs.
pub fn encode_event(out: &mut Vec<u8>, state: &mut DeltaState, pid: u32, event: &HookEvent) {
    let mut tag = match &event.kind {
        HookKind::Init {
            trigger_id,
            existing,
            ..
        } => {
            KIND_INIT
                | if *existing { EXISTING } else { 0 }
                | if trigger_id.is_some() { HAS_TRIGGER } else { 0 }
        }
        HookKind::Before { sched_ns } => {
            KIND_BEFORE | if sched_ns.is_some() { HAS_TRIGGER } else { 0 }
        }
        HookKind::After {
            completed: false, ..
        } => KIND_AFTER,
        HookKind::After {
            completed: true, ..
        } => KIND_AFTER_COMPLETED,
        HookKind::Resolve => KIND_RESOLVE,
        HookKind::Destroy => KIND_DESTROY,
        HookKind::Wake {
            waker_id,
            self_wake,
        } => {
            KIND_WAKE
                | if *self_wake { EXISTING } else { 0 }
                | if waker_id.is_some() { HAS_TRIGGER } else { 0 }
        }
    };
    if event.tid == state.tid {
        tag |= SAME_TID;
    }
    if event.pid != pid {
        tag |= OTHER_PID;
    }
    out.push(tag);
    put_signed(out, event.ts_ns.wrapping_sub(state.ts_ns) as i64);
    put_signed(out, event.async_id.wrapping_sub(state.async_id) as i64);
    if event.tid != state.tid {
        put_signed(out, i64::from(event.tid.wrapping_sub(state.tid) as i32));
    }
    if event.pid != pid {
        put_varint(out, event.pid.into());
    }
    match &event.kind {
        HookKind::Before {
            sched_ns: Some(value),
        }
        | HookKind::Wake {
            waker_id: Some(value),
            ..
        } => put_varint(out, *value),
        _ => {}
    }
    if let HookKind::Init {
        resource_type,
        trigger_id,
        ..
    } = &event.kind
    {
        match resource_type.as_str() {
            "tokio.task" => put_varint(out, TYPE_TASK),
            "tokio.blocking" => put_varint(out, TYPE_BLOCKING),
            "tokio.local" => put_varint(out, TYPE_LOCAL),
            name => {
                put_varint(out, TYPE_NAMED);
                put_bytes(out, name.as_bytes());
            }
        }
        if let Some(trigger) = trigger_id {
            put_varint(out, *trigger);
        }
    }
    *state = DeltaState {
        ts_ns: event.ts_ns,
        async_id: event.async_id,
        tid: event.tid,
    };
}

/// Reads one event written by [`encode_event`].
pub fn decode_event(
    cursor: &mut Cursor<'_>,
    state: &mut DeltaState,
    pid: u32,
) -> Result<HookEvent, Malformed> {
    let tag = cursor.byte()?;
    if tag & !TAG_KNOWN != 0 {
        return Err(Malformed("unknown event flags"));
    }
    let ts_ns = state.ts_ns.wrapping_add(cursor.signed()? as u64);
    let async_id = state.async_id.wrapping_add(cursor.signed()? as u64);
    let tid = if tag & SAME_TID != 0 {
        state.tid
    } else {
        let delta =
            i32::try_from(cursor.signed()?).map_err(|_| Malformed("thread id too large"))?;
        state.tid.wrapping_add(delta as u32)
    };
    let pid = if tag & OTHER_PID != 0 {
        cursor.u32()?
    } else {
        pid
    };
    let kind = match tag & KIND_MASK {
        KIND_INIT => {
            let resource_type = match cursor.varint()? {
                TYPE_TASK => ResourceType::TOKIO_TASK,
                TYPE_BLOCKING => ResourceType::TOKIO_BLOCKING,
                TYPE_LOCAL => ResourceType::TOKIO_LOCAL,
                TYPE_NAMED => ResourceType::named(Cow::Owned(cursor.string()?)),
                _ => return Err(Malformed("unknown resource type code")),
            };
            let trigger_id = if tag & HAS_TRIGGER != 0 {
                Some(cursor.varint()?)
            } else {
                None
            };
            HookKind::Init {
                resource_type,
                trigger_id,
                existing: tag & EXISTING != 0,
                name: None,
                location: None,
            }
        }
        KIND_BEFORE if tag & EXISTING == 0 => HookKind::Before {
            sched_ns: optional(cursor, tag)?,
        },
        KIND_WAKE => HookKind::Wake {
            waker_id: optional(cursor, tag)?,
            self_wake: tag & EXISTING != 0,
        },
        _ if tag & (EXISTING | HAS_TRIGGER) != 0 => {
            return Err(Malformed("init flags on a non-init event"));
        }
        KIND_AFTER => HookKind::After {
            completed: false,
            awaiting: None,
        },
        KIND_AFTER_COMPLETED => HookKind::After {
            completed: true,
            awaiting: None,
        },
        KIND_RESOLVE => HookKind::Resolve,
        KIND_DESTROY => HookKind::Destroy,
        _ => return Err(Malformed("unknown event kind")),
    };
    *state = DeltaState {
        ts_ns,
        async_id,
        tid,
    };
    Ok(HookEvent {
        kind,
        async_id,
        ts_ns,
        pid,
        tid,
    })
}

/// The varint that follows an event whose tag has [`HAS_TRIGGER`], if it has.
fn optional(cursor: &mut Cursor<'_>, tag: u8) -> Result<Option<u64>, Malformed> {
    Ok(if tag & HAS_TRIGGER != 0 {
        Some(cursor.varint()?)
    } else {
        None
    })
}

/// The name and location of an `init`, as a names chunk stores them.
pub type InitNames = (Option<String>, Option<String>);

/// A names chunk: the name and location of every `init` of one events chunk,
/// in the order of the inits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    /// The CRC-32 of the events chunk these belong to (as its frame stores it):
    /// names never attach to another chunk, whatever was lost between them.
    pub events_crc: u32,
    /// One entry per `init` of that chunk.
    pub inits: Vec<InitNames>,
}

/// The payload of a names chunk. Each distinct text is stored once per chunk.
pub fn encode_names(names: &Names) -> Vec<u8> {
    /// The 1-based index of `text` in `texts` (added if new), 0 for none.
    fn index<'a>(texts: &mut Vec<&'a str>, text: &'a Option<String>) -> u64 {
        let Some(text) = text.as_deref() else {
            return 0;
        };
        let at = texts.iter().position(|t| *t == text).unwrap_or_else(|| {
            texts.push(text);
            texts.len() - 1
        });
        at as u64 + 1
    }
    let mut texts = Vec::new();
    let refs: Vec<(u64, u64)> = names
        .inits
        .iter()
        .map(|(name, location)| (index(&mut texts, name), index(&mut texts, location)))
        .collect();
    let mut out = Vec::new();
    out.extend_from_slice(&names.events_crc.to_le_bytes());
    put_varint(&mut out, texts.len() as u64);
    for text in &texts {
        put_bytes(&mut out, text.as_bytes());
    }
    for (name, location) in refs {
        put_varint(&mut out, name);
        put_varint(&mut out, location);
    }
    out
}

/// The start of a names or chains chunk's payload: the CRC of its events
/// chunk, then its table of texts; with the cursor after them.
fn text_table(payload: &[u8]) -> Result<(&[u8; 4], Cursor<'_>, Vec<String>), Malformed> {
    let (crc, rest) = payload
        .split_first_chunk::<4>()
        .ok_or(Malformed("ends early"))?;
    let mut cursor = Cursor::new(rest);
    let texts_len = cursor.varint()?;
    // Every text takes at least a byte: never trust a count for capacity.
    let mut texts = Vec::new();
    for _ in 0..texts_len {
        texts.push(cursor.string()?);
    }
    Ok((crc, cursor, texts))
}

/// Text `n` (1-based, as chunks refer to them) of `texts`.
fn text_at(texts: &[String], n: u64) -> Result<String, Malformed> {
    texts
        .get(usize::try_from(n - 1).unwrap_or(usize::MAX))
        .cloned()
        .ok_or(Malformed("names a text the chunk does not hold"))
}

/// Reads a names chunk's payload holding `count` inits.
pub fn decode_names(payload: &[u8], count: u32) -> Result<Names, Malformed> {
    let (crc, mut cursor, texts) = text_table(payload)?;
    let text = |cursor: &mut Cursor<'_>| -> Result<Option<String>, Malformed> {
        match cursor.varint()? {
            0 => Ok(None),
            n => text_at(&texts, n).map(Some),
        }
    };
    let mut inits = Vec::new();
    for _ in 0..count {
        let name = text(&mut cursor)?;
        let location = text(&mut cursor)?;
        inits.push((name, location));
    }
    if cursor.len() > 0 {
        return Err(Malformed("bytes after its last init"));
    }
    Ok(Names {
        events_crc: u32::from_le_bytes(*crc),
        inits,
    })
}

/// A chains chunk: the `awaiting` of the `after`s of one events chunk that
/// carry one, each with its event's index in the chunk, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chains {
    /// The CRC-32 of the events chunk these belong to (as its frame stores it).
    pub events_crc: u32,
    /// (index of the `after` in its events chunk, its chain).
    pub afters: Vec<(u32, Vec<AwaitFrame>)>,
}

/// A frame's kind byte in a chains chunk, and its texts.
fn frame_parts(frame: &AwaitFrame) -> (u8, &str, &str) {
    match frame {
        AwaitFrame::Await { function, at } => (0, function, at),
        AwaitFrame::State { function, state } => (1, function, state),
        AwaitFrame::Future { future } => (2, future, ""),
        AwaitFrame::Unknown { unknown } => (3, unknown, ""),
        AwaitFrame::Fork { future, .. } => (4, future, ""),
    }
}

/// Forks nested in forks a chains chunk may hold: deeper is corruption.
const MAX_FORK_NESTING: usize = 16;

/// The distinct texts of a chains chunk, each written once.
#[derive(Default)]
struct Texts<'a>(Vec<&'a str>);

impl<'a> Texts<'a> {
    /// The 1-based index of `text` (0 for none), added when new.
    fn reference(&mut self, text: &'a str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        let index = self.0.iter().position(|t| *t == text).unwrap_or_else(|| {
            self.0.push(text);
            self.0.len() - 1
        });
        index as u64 + 1
    }
}

/// Appends a chain: its frame count, and per frame a kind byte and two text
/// references; a fork (kind 4, since 1.5) then its branch count and, per
/// branch, its position and its own chain.
fn put_frames<'a>(body: &mut Vec<u8>, texts: &mut Texts<'a>, frames: &'a [AwaitFrame]) {
    put_varint(body, frames.len() as u64);
    for frame in frames {
        let (kind, first, second) = frame_parts(frame);
        body.push(kind);
        for text in [first, second] {
            put_varint(body, texts.reference(text));
        }
        if let AwaitFrame::Fork { branches, .. } = frame {
            put_varint(body, branches.len() as u64);
            for branch in branches {
                put_varint(body, branch.branch as u64);
                put_frames(body, texts, &branch.awaiting);
            }
        }
    }
}

/// The payload of a chains chunk: the events chunk's CRC, the distinct texts,
/// then per `after`: its index as a delta from the previous one and its chain
/// (see [`put_frames`]: kind 0 await, 1 state, 2 future, 3 unknown, 4 fork;
/// text indices 1-based, 0 for none).
pub fn encode_chains(chains: &Chains) -> Vec<u8> {
    let mut texts = Texts::default();
    let mut body = Vec::new();
    let mut previous = 0u32;
    for (at, frames) in &chains.afters {
        put_varint(&mut body, u64::from(at - previous));
        previous = *at;
        put_frames(&mut body, &mut texts, frames);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&chains.events_crc.to_le_bytes());
    put_varint(&mut out, texts.0.len() as u64);
    for text in &texts.0 {
        put_bytes(&mut out, text.as_bytes());
    }
    out.extend_from_slice(&body);
    out
}

/// Reads a chain written by [`put_frames`], `nesting` forks down.
fn frames(
    cursor: &mut Cursor<'_>,
    texts: &[String],
    nesting: usize,
) -> Result<Vec<AwaitFrame>, Malformed> {
    let text = |cursor: &mut Cursor<'_>| -> Result<String, Malformed> {
        match cursor.varint()? {
            0 => Ok(String::new()),
            n => text_at(texts, n),
        }
    };
    let frames_len = cursor.varint()?;
    let mut frames = Vec::new();
    for _ in 0..frames_len {
        let kind = cursor.byte()?;
        let (first, second) = (text(cursor)?, text(cursor)?);
        frames.push(match kind {
            0 => AwaitFrame::Await {
                function: first,
                at: second,
            },
            1 => AwaitFrame::State {
                function: first,
                state: second.into(),
            },
            2 => AwaitFrame::Future { future: first },
            3 => AwaitFrame::Unknown { unknown: first },
            4 if nesting < MAX_FORK_NESTING => {
                let count = cursor.varint()?;
                let mut branches = Vec::new();
                for _ in 0..count {
                    let branch = usize::try_from(cursor.varint()?)
                        .map_err(|_| Malformed("impossible branch position"))?;
                    branches.push(AwaitBranch {
                        branch,
                        awaiting: self::frames(cursor, texts, nesting + 1)?,
                    });
                }
                AwaitFrame::Fork {
                    future: first,
                    branches,
                }
            }
            4 => return Err(Malformed("forks nested too deep")),
            _ => return Err(Malformed("unknown await frame kind")),
        });
    }
    Ok(frames)
}

/// Reads a chains chunk's payload holding `count` chains.
pub fn decode_chains(payload: &[u8], count: u32) -> Result<Chains, Malformed> {
    let (crc, mut cursor, texts) = text_table(payload)?;
    let mut afters = Vec::new();
    let mut at = 0u32;
    for _ in 0..count {
        let delta = u32::try_from(cursor.varint()?).map_err(|_| Malformed("impossible index"))?;
        at = at.checked_add(delta).ok_or(Malformed("impossible index"))?;
        afters.push((at, frames(&mut cursor, &texts, 0)?));
    }
    if cursor.len() > 0 {
        return Err(Malformed("bytes after its last chain"));
    }
    Ok(Chains {
        events_crc: u32::from_le_bytes(*crc),
        afters,
    })
}

/// The payload of an end chunk.
pub fn encode_end(end: &SessionEnd) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, end.end_ns);
    put_bytes(&mut out, end.ending.as_bytes());
    put_varint(&mut out, end.delivered);
    put_varint(&mut out, end.dropped);
    put_varint(&mut out, end.problems.len() as u64);
    for (count, what) in &end.problems {
        put_varint(&mut out, *count);
        put_bytes(&mut out, what.as_bytes());
    }
    // Since 1.1; a 1.0 reader ignores it. Absent when not known (a 1.0 file re-encoded).
    if let Some(emitted) = end.emitted {
        put_varint(&mut out, emitted);
    }
    out
}

/// Reads an end chunk's payload.
pub fn decode_end(payload: &[u8]) -> Result<SessionEnd, Malformed> {
    let mut cursor = Cursor::new(payload);
    let end_ns = cursor.varint()?;
    let ending = cursor.string()?;
    let delivered = cursor.varint()?;
    let dropped = cursor.varint()?;
    let count = cursor.varint()?;
    // Each problem takes at least two bytes: never trust the count for capacity.
    let mut problems = Vec::new();
    for _ in 0..count {
        problems.push((cursor.varint()?, cursor.string()?));
    }
    // Format 1.0 ends here; 1.1 appends `emitted`, and later minors may append more.
    let emitted = if cursor.len() > 0 {
        Some(cursor.varint()?)
    } else {
        None
    };
    Ok(SessionEnd {
        end_ns,
        ending,
        delivered,
        dropped,
        emitted,
        problems,
    })
}
