//! Finds every live task of a running Tokio process without stopping it, and
//! reads each one's state and await chain with `process_vm_readv`.
//!
//! Finding them: Tokio links every live task of a runtime into its scheduler
//! handle's `OwnedTasks` (a sharded list; a task leaves it when it is
//! released). To reach a handle, the process's writable anonymous memory (heap
//! and thread arenas, where tasks are allocated) is scanned for task headers:
//! a word holding one of the binary's task vtables, at the header's vtable
//! offset, in a 16-byte aligned block. A candidate may be a freed task whose
//! bytes remain; only its scheduler pointer is used, to reach a handle, and
//! only tasks linked in a handle's list are reported. So tasks that existed
//! before tracer looked, idle or not, are all found, and nothing is attached.
//!
//! Reading: a task that is not running and whose stage is `Running` (future
//! alive) does not change until its next poll; its state word is read again
//! after the chain, and a task that started running meanwhile is reported as
//! running, without a chain.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::chain::{Frame, chain};
use super::layout::{CellLayout, OwnedLayout, owned_layout};
use super::memory::Memory;
use super::types::{TypeRef, Types};

/// `State` bits of a task header (Tokio's `runtime::task::state`).
const RUNNING: u64 = 0b1;
/// See [`RUNNING`].
const COMPLETE: u64 = 0b10;
/// See [`RUNNING`].
const NOTIFIED: u64 = 0b100;
/// See [`RUNNING`].
const CANCELLED: u64 = 0b10_0000;
/// Bytes scanned per read.
const CHUNK: usize = 1 << 20;
/// Tasks followed per runtime at most.
const MAX_TASKS: usize = 1 << 20;
/// Shards a list may have (Tokio uses a power of two, at most 65536).
const MAX_SHARDS: u64 = 1 << 16;

/// Another process's memory, read with `process_vm_readv` (no stop, no ptrace).
pub struct ProcessMemory {
    /// The process.
    pub pid: u32,
}

impl Memory for ProcessMemory {
    fn read(&self, address: u64, buf: &mut [u8]) -> bool {
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: address as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: `local` is `buf`, writable for its length; the remote range is
        // only read, by the kernel, which checks it.
        let read = unsafe { libc::process_vm_readv(self.pid as i32, &local, 1, &remote, 1, 0) };
        usize::try_from(read).is_ok_and(|read| read == buf.len())
    }
}

/// One task type as it is in the process: its layout and the name users read.
#[derive(Clone, Debug)]
pub struct TaskType {
    /// Where things are in its cell.
    pub layout: CellLayout,
    /// Its name (`app::handle`).
    pub name: String,
}

/// One live task.
#[derive(Clone, Debug, Serialize)]
pub struct LiveTask {
    /// Tokio's task id.
    pub id: u64,
    /// The task's name.
    pub name: String,
    /// `idle`, `scheduled`, `running`, `complete` or `cancelled`.
    pub state: &'static str,
    /// Its header's address.
    pub header: u64,
    /// Its await chain, outermost first (empty unless idle or scheduled),
    /// ending with the branches of a `join!` or `select!` it waits in.
    pub awaiting: Vec<Frame>,
}

/// Reads tasks of one process.
pub struct Reader<'a> {
    /// The process's memory.
    pub memory: &'a dyn Memory,
    /// The binary's types.
    pub types: &'a Types,
    /// Task types by their vtable's address in the process.
    pub vtables: &'a HashMap<u64, TaskType>,
}

impl Reader<'_> {
    /// The task type of the header at `header`.
    fn task_type(&self, header: u64, vtable_field: u64) -> Option<&TaskType> {
        self.vtables
            .get(&self.memory.uint(header + vtable_field, 8)?)
    }

    /// Header addresses of every task linked in the runtimes the `candidates`
    /// (headers found by [`scan`]) point to, sorted.
    pub fn live_headers(&self, candidates: &[u64]) -> Vec<u64> {
        let Some(vtable_field) = self.vtables.values().next().map(|t| t.layout.vtable) else {
            return Vec::new();
        };
        let mut owned: HashMap<TypeRef, Option<OwnedLayout>> = HashMap::new();
        let mut handles = HashSet::new();
        let mut live = HashSet::new();
        for candidate in candidates {
            let Some(task_type) = self.task_type(*candidate, vtable_field) else {
                continue;
            };
            let scheduler = task_type.layout.scheduler_type;
            let layout = owned
                .entry(scheduler)
                .or_insert_with(|| owned_layout(self.types, scheduler));
            let Some(layout) = layout.as_ref() else {
                continue;
            };
            let Some(handle) = self.memory.uint(*candidate + task_type.layout.scheduler, 8) else {
                continue;
            };
            if handles.insert(handle) {
                live.extend(self.linked(handle, layout, vtable_field));
            }
        }
        let mut live: Vec<u64> = live.into_iter().collect();
        live.sort_unstable();
        live
    }

    /// The headers linked in the owned-tasks list of the handle at `handle`.
    fn linked(&self, handle: u64, layout: &OwnedLayout, vtable_field: u64) -> Vec<u64> {
        let memory = self.memory;
        let (Some(shards), Some(count)) = (
            memory.uint(handle + layout.shards, 8),
            memory.uint(handle + layout.shard_count, 8),
        ) else {
            return Vec::new();
        };
        if count == 0 || count > MAX_SHARDS || !count.is_power_of_two() {
            return Vec::new();
        }
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        for shard in 0..count {
            let mut at = memory.uint(shards + shard * layout.shard_size + layout.head, 8);
            while let Some(header) = at.filter(|h| *h != 0) {
                if !seen.insert(header) || found.len() >= MAX_TASKS {
                    break;
                }
                let Some(task_type) = self.task_type(header, vtable_field) else {
                    break;
                };
                found.push(header);
                at = memory.uint(header + task_type.layout.next, 8);
            }
        }
        found
    }

    /// The task at `header`, read twice-checked (see the module docs).
    pub fn task(&self, header: u64) -> Option<LiveTask> {
        let vtable_field = self.vtables.values().next()?.layout.vtable;
        let task_type = self.task_type(header, vtable_field)?;
        let layout = &task_type.layout;
        let memory = self.memory;
        let state = memory.uint(header + layout.state, 8)?;
        let id = memory.uint(header + layout.task_id, 8)?;
        let stage = memory.uint(header + layout.stage_tag.0, layout.stage_tag.1)?;
        let mut task = LiveTask {
            id,
            name: task_type.name.clone(),
            state: state_name(state),
            header,
            awaiting: Vec::new(),
        };
        if state & (RUNNING | COMPLETE) == 0 && stage == layout.running {
            let frames = chain(
                self.types,
                layout.future_type,
                header + layout.future,
                memory,
            );
            let again = memory.uint(header + layout.state, 8)?;
            if again & RUNNING == 0 {
                task.awaiting = frames;
            } else {
                task.state = state_name(again);
            }
        }
        Some(task)
    }
}

/// What a header's state word says the task is doing.
fn state_name(state: u64) -> &'static str {
    if state & COMPLETE != 0 {
        "complete"
    } else if state & RUNNING != 0 {
        "running"
    } else if state & CANCELLED != 0 {
        "cancelled"
    } else if state & NOTIFIED != 0 {
        "scheduled"
    } else {
        "idle"
    }
}

/// Header candidates in the writable anonymous mappings of `maps` (the text
/// of `/proc/PID/maps`): 16-byte aligned blocks whose word at `vtable_field`
/// is one of `vtables`.
pub fn scan(
    memory: &dyn Memory,
    maps: &str,
    vtables: &HashSet<u64>,
    vtable_field: u64,
) -> Vec<u64> {
    let mut found = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    for (start, end) in writable_anonymous(maps) {
        let mut at = start;
        while at < end {
            let len = usize::try_from(end - at).unwrap_or(CHUNK).min(CHUNK);
            if memory.read(at, &mut buf[..len]) {
                found.extend(candidates_in(&buf[..len], at, vtables, vtable_field));
            }
            at += len as u64;
        }
    }
    found
}

/// The header candidates in `bytes`, which start at `base`.
fn candidates_in(bytes: &[u8], base: u64, vtables: &HashSet<u64>, field: u64) -> Vec<u64> {
    let field = field as usize;
    (0..bytes.len().saturating_sub(field + 8))
        .step_by(16)
        .filter(|offset| {
            let word = &bytes[offset + field..offset + field + 8];
            vtables.contains(&u64::from_le_bytes(word.try_into().unwrap_or_default()))
        })
        .map(|offset| base + offset as u64)
        .collect()
}

/// (start, end) of each private writable mapping of no file (heap, arenas).
fn writable_anonymous(maps: &str) -> Vec<(u64, u64)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let _offset = fields.next()?;
            let _device = fields.next()?;
            let inode = fields.next()?;
            let path = fields.next().unwrap_or("");
            let anonymous = inode == "0" && (path.is_empty() || path == "[heap]");
            if !(perms.starts_with("rw") && anonymous) {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some((
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
            ))
        })
        .collect()
}

/// Tasks by id, for output in id order.
pub fn by_id(tasks: Vec<LiveTask>) -> BTreeMap<u64, LiveTask> {
    tasks.into_iter().map(|t| (t.id, t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_private_writable_anonymous_mappings_are_scanned() {
        let maps = "\
55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000100000 rw-p 00000000 00:00 0 
7f0000100000-7f0000200000 r--p 00000000 08:01 1234                       /usr/lib/libc.so.6
7f0000200000-7f0000201000 rw-p 00001000 08:01 1234                       /usr/lib/libc.so.6
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
";
        assert_eq!(
            writable_anonymous(maps),
            vec![
                (0x55d0c0000000, 0x55d0c0021000),
                (0x7f0000000000, 0x7f0000100000)
            ]
        );
    }

    #[test]
    fn headers_are_found_by_their_vtable_word_in_aligned_blocks() {
        let mut bytes = vec![0u8; 96];
        bytes[32 + 16..32 + 24].copy_from_slice(&0xabcdu64.to_le_bytes());
        // Not 16-byte aligned: not a header.
        bytes[8 + 16..8 + 24].copy_from_slice(&0xabcdu64.to_le_bytes());
        let vtables = HashSet::from([0xabcd]);
        assert_eq!(candidates_in(&bytes, 0x1000, &vtables, 16), vec![0x1020]);
    }

    #[test]
    fn header_states_read_as_tokio_means_them() {
        assert_eq!(state_name(64), "idle");
        assert_eq!(state_name(64 | NOTIFIED), "scheduled");
        assert_eq!(state_name(64 | RUNNING | NOTIFIED), "running");
        assert_eq!(state_name(COMPLETE | RUNNING), "complete");
    }
}
