//! What tracer reads from a Node binary's code (decoded with `iced-x86`), so
//! its programs read the right fields of this very build, and its resources
//! get the names async_hooks gives them:
//!
//! - [`wrap_fields`]: `AsyncWrap::AsyncReset` loads `provider_type_` (4 bytes)
//!   from `this` first, then stores the new `async_id_` and
//!   `trigger_async_id_` (8 bytes each, in that order) before its first call.
//! - [`wrap_reads`]: the `InternalCallbackScope(AsyncWrap*, int)` constructor
//!   loads the same two doubles from its wrap argument: a cross-check.
//! - [`scope_closed`]: `InternalCallbackScope::Close()` begins by testing
//!   `closed_`: `cmp byte [rdi+N], 0`, and then branches on it.
//! - [`provider_names`]: `IsolateData::CreateProperties` creates one string per
//!   provider, in provider order, and stores each in its slot of
//!   `async_wrap_providers_` (consecutive 8-byte slots, `NONE` first).
//! - [`env_buffer`]: where a `node::Environment` keeps the buffer of one of
//!   its aliased arrays: `node::AsyncHooksGetExecutionAsyncId` loads the
//!   `async_id_fields` buffer from the environment and a double from it;
//!   `Environment::CheckImmediate` loads the `immediate_info` buffer and its
//!   first 4-byte field (`count`) (`--js-resources`).
//! - [`version`]: the `node.js/vX.Y.Z` string of the binary.

use iced_x86::{Decoder, DecoderOptions, Instruction, MemorySize, Mnemonic, OpKind, Register};

use crate::target::image::Image;

/// The offsets in an `AsyncWrap` the programs read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrapFields {
    /// `provider_type_` (a 32-bit enum).
    pub provider: u64,
    /// `async_id_` (a double).
    pub async_id: u64,
    /// `trigger_async_id_` (a double).
    pub trigger_id: u64,
}

/// What `InternalCallbackScope::Close()`'s code gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScopeClose {
    /// The offset of `closed_` in the scope.
    pub closed: u64,
    /// Where to probe the function, from its start: on the conditional branch
    /// after the test of `closed_` when there is one (the kernel emulates a
    /// branch, but single-steps a `cmp` out of line: two traps), else 0. The
    /// registers are those of the entry: the branch follows a test only.
    pub probe_offset: u64,
}

/// Instructions decoded at most before giving up on a pattern.
const MAX_INSTRUCTIONS: usize = 400;

/// The instructions of `code` (loaded at `ip`) up to the first call, at most
/// [`MAX_INSTRUCTIONS`].
fn until_call(code: &[u8], ip: u64) -> Vec<Instruction> {
    Decoder::with_ip(64, code, ip, DecoderOptions::NONE)
        .into_iter()
        .take(MAX_INSTRUCTIONS)
        .take_while(|i| !matches!(i.mnemonic(), Mnemonic::Call) && !i.is_invalid())
        .collect()
}

/// Registers holding the argument first in `start`, followed through `mov`s
/// between 64-bit registers: calls `visit` with each instruction and whether
/// its memory operand is based on such a register.
fn with_copies(code: &[Instruction], start: Register, mut visit: impl FnMut(&Instruction, bool)) {
    let mut holders = vec![start];
    for instruction in code {
        let based = instruction.op_kinds().any(|kind| kind == OpKind::Memory)
            && holders.contains(&instruction.memory_base())
            && instruction.memory_index() == Register::None;
        visit(instruction, based);
        if instruction.op_count() == 0 || instruction.op0_kind() != OpKind::Register {
            continue;
        }
        let target = instruction.op0_register();
        let copy = instruction.mnemonic() == Mnemonic::Mov
            && instruction.op1_kind() == OpKind::Register
            && holders.contains(&instruction.op1_register());
        let reads_only = matches!(instruction.mnemonic(), Mnemonic::Cmp | Mnemonic::Test);
        if copy {
            holders.push(target);
        } else if !reads_only {
            holders.retain(|held| *held != target);
        }
    }
}

/// Is `memory` an 8-byte operand (a double or a 64-bit word)?
fn is_eight_bytes(size: MemorySize) -> bool {
    matches!(
        size,
        MemorySize::Float64 | MemorySize::UInt64 | MemorySize::Int64
    )
}

/// The `AsyncWrap` field offsets, from the code of `AsyncWrap::AsyncReset`.
pub fn wrap_fields(code: &[u8], ip: u64) -> Result<WrapFields, &'static str> {
    let instructions = until_call(code, ip);
    let mut provider = None;
    let mut stores: Vec<u64> = Vec::new();
    with_copies(&instructions, Register::RDI, |instruction, based| {
        if !based {
            return;
        }
        let displacement = instruction.memory_displacement64();
        let loads_dword = instruction.mnemonic() == Mnemonic::Mov
            && instruction.op0_kind() == OpKind::Register
            && matches!(
                instruction.memory_size(),
                MemorySize::UInt32 | MemorySize::Int32
            );
        if loads_dword && provider.is_none() {
            provider = Some(displacement);
        }
        let stores_qword = instruction.op0_kind() == OpKind::Memory
            && is_eight_bytes(instruction.memory_size())
            && instruction.op1_kind() == OpKind::Register;
        if stores_qword && !stores.contains(&displacement) {
            stores.push(displacement);
        }
    });
    let provider = provider.ok_or("AsyncReset reads no provider type from its wrap")?;
    match stores.as_slice() {
        [async_id, trigger_id, ..] => Ok(WrapFields {
            provider,
            async_id: *async_id,
            trigger_id: *trigger_id,
        }),
        _ => {
            Err("AsyncReset stores no async id and trigger id into its wrap before its first call")
        }
    }
}

/// The bytes the `InternalCallbackScope(AsyncWrap*, int)` constructor loads
/// from its wrap (`rsi`) before its first call: (offset, size) of each 8- or
/// 16-byte load (Node 18 loads both ids at once).
pub fn wrap_reads(code: &[u8], ip: u64) -> Vec<(u64, u64)> {
    let mut reads = Vec::new();
    with_copies(
        &until_call(code, ip),
        Register::RSI,
        |instruction, based| {
            if !based || instruction.op0_kind() != OpKind::Register {
                return;
            }
            let size = match instruction.memory_size() {
                size if is_eight_bytes(size) => 8,
                MemorySize::Packed128_Float64 | MemorySize::UInt128 => 16,
                _ => return,
            };
            reads.push((instruction.memory_displacement64(), size));
        },
    );
    reads
}

/// Whether `reads` ([`wrap_reads`]) cover the 8 bytes at `offset`.
pub fn covers(reads: &[(u64, u64)], offset: u64) -> bool {
    reads
        .iter()
        .any(|(start, size)| offset >= *start && offset + 8 <= start + size)
}

/// The offset of `InternalCallbackScope::closed_`, from the first instruction
/// of `Close()`.
pub fn scope_closed(code: &[u8], ip: u64) -> Result<ScopeClose, &'static str> {
    let mut instructions = until_call(code, ip).into_iter();
    let first = instructions.next().ok_or("Close() has no code")?;
    let tests_byte = first.mnemonic() == Mnemonic::Cmp
        && first.op0_kind() == OpKind::Memory
        && first.memory_base() == Register::RDI
        && first.memory_size() == MemorySize::UInt8
        && first.op1_kind() == OpKind::Immediate8
        && first.immediate8() == 0;
    if !tests_byte {
        return Err("Close() does not begin by testing its closed flag");
    }
    let branches = instructions
        .next()
        .is_some_and(|second| second.is_jcc_short_or_near());
    Ok(ScopeClose {
        closed: first.memory_displacement64(),
        probe_offset: if branches { first.len() as u64 } else { 0 },
    })
}

/// The offset in the object a function reads through of the pointer it loads
/// first and then reads a `size` value from (at offset 0): the first
/// `mov r64, [base+disp]` (not stack- or rip-relative) whose register is next
/// the base of a load of `size` with no displacement.
pub fn env_buffer(code: &[u8], ip: u64, size: MemorySize) -> Option<u64> {
    let mut loaded: Vec<(Register, u64)> = Vec::new();
    for instruction in Decoder::with_ip(64, code, ip, DecoderOptions::NONE).into_iter() {
        if instruction.is_invalid() {
            return None;
        }
        let reads_memory = instruction.op_count() == 2
            && instruction.op0_kind() == OpKind::Register
            && instruction.op1_kind() == OpKind::Memory
            && instruction.memory_index() == Register::None;
        if reads_memory
            && instruction.memory_size() == size
            && instruction.memory_displacement64() == 0
            && let Some((_, displacement)) = loaded
                .iter()
                .find(|(register, _)| *register == instruction.memory_base())
        {
            return Some(*displacement);
        }
        if instruction.op_count() == 0 || instruction.op0_kind() != OpKind::Register {
            continue;
        }
        let target = instruction.op0_register().full_register();
        loaded.retain(|(register, _)| *register != target);
        let loads_pointer = reads_memory
            && instruction.mnemonic() == Mnemonic::Mov
            && instruction.memory_size() == MemorySize::UInt64
            && !matches!(
                instruction.memory_base(),
                Register::RSP | Register::RBP | Register::RIP
            );
        if loads_pointer {
            loaded.push((target, instruction.memory_displacement64()));
        }
    }
    None
}

/// The NUL-terminated provider-like name (`A-Z`, `0-9`, `_`) at `address`.
fn provider_string(image: &Image<'_>, address: u64) -> Option<String> {
    const LONGEST: u64 = 40;
    let bytes = (1..=LONGEST)
        .rev()
        .find_map(|len| image.bytes(address, len))?;
    let end = bytes.iter().position(|b| *b == 0)?;
    let name = &bytes[..end];
    let valid = !name.is_empty()
        && name
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_');
    valid.then(|| String::from_utf8_lossy(name).into_owned())
}

/// The address an instruction loads into a register: `mov r32, imm32` (a
/// non-PIE's constant) or `lea r64, [rip+disp]`.
fn loaded_address(instruction: &Instruction) -> Option<u64> {
    if instruction.op_count() != 2 || instruction.op0_kind() != OpKind::Register {
        return None;
    }
    match (instruction.mnemonic(), instruction.op1_kind()) {
        (Mnemonic::Mov, OpKind::Immediate32) => Some(u64::from(instruction.immediate32())),
        (Mnemonic::Lea, OpKind::Memory) if instruction.is_ip_rel_memory_operand() => {
            Some(instruction.ip_rel_memory_address())
        }
        _ => None,
    }
}

/// Provider names by provider type, from the code of
/// `IsolateData::CreateProperties` (see the module's documentation): each
/// string loaded before a call is created by it, and the next 8-byte store of
/// a register holds it. The providers are the longest run of consecutive
/// slots that begins with `NONE`.
pub fn provider_names(
    image: &Image<'_>,
    code: &[u8],
    ip: u64,
) -> Result<Vec<String>, &'static str> {
    let mut last_string = None;
    let mut in_flight = None;
    let mut slots: Vec<(u64, String)> = Vec::new();
    for instruction in Decoder::with_ip(64, code, ip, DecoderOptions::NONE) {
        if let Some(address) = loaded_address(&instruction)
            && let Some(name) = provider_string(image, address)
        {
            last_string = Some(name);
            continue;
        }
        if instruction.mnemonic() == Mnemonic::Call {
            if let Some(name) = last_string.take() {
                in_flight = Some(name);
            }
            continue;
        }
        let stores_register = instruction.mnemonic() == Mnemonic::Mov
            && instruction.op_count() == 2
            && instruction.op0_kind() == OpKind::Memory
            && instruction.op1_kind() == OpKind::Register
            && instruction.memory_size() == MemorySize::UInt64
            && !matches!(instruction.memory_base(), Register::RSP | Register::RBP);
        if stores_register && let Some(name) = in_flight.take() {
            slots.push((instruction.memory_displacement64(), name));
        }
    }
    longest_run(slots).ok_or("IsolateData::CreateProperties stores no table of provider names")
}

/// The longest run of consecutive 8-byte slots whose first name is `NONE`.
fn longest_run(mut slots: Vec<(u64, String)>) -> Option<Vec<String>> {
    slots.sort_by_key(|(slot, _)| *slot);
    slots.dedup_by_key(|(slot, _)| *slot);
    let mut best: Option<Vec<String>> = None;
    for (start, (slot, name)) in slots.iter().enumerate() {
        if name != "NONE" {
            continue;
        }
        let run: Vec<String> = slots[start..]
            .iter()
            .enumerate()
            .take_while(|(index, (next, _))| *next == slot + 8 * *index as u64)
            .map(|(_, (_, name))| name.clone())
            .collect();
        if best.as_ref().is_none_or(|best| run.len() > best.len()) {
            best = Some(run);
        }
    }
    best.filter(|run| run.len() > 1)
}

/// The Node version the binary names (`node.js/v20.20.2` → `20.20.2`).
pub fn version(data: &[u8]) -> Option<String> {
    const PREFIX: &[u8] = b"node.js/v";
    let start = memchr::memmem::find(data, PREFIX)? + PREFIX.len();
    let rest = &data[start..data.len().min(start + 32)];
    let len = rest
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'.'))
        .unwrap_or(rest.len());
    let version = std::str::from_utf8(&rest[..len]).ok()?;
    (version.split('.').count() == 3).then(|| version.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_table_starts_at_none_and_follows_consecutive_slots() {
        let slots = vec![
            (0x10, "OTHER".to_owned()),
            (0xe78, "DIRHANDLE".to_owned()),
            (0xe70, "NONE".to_owned()),
            (0xe80, "DNSCHANNEL".to_owned()),
            (0xe90, "GAP".to_owned()),
        ];
        assert_eq!(
            longest_run(slots),
            Some(vec!["NONE".into(), "DIRHANDLE".into(), "DNSCHANNEL".into()])
        );
    }

    #[test]
    fn async_reset_of_node_20_gives_the_wrap_fields() {
        // Node 20.20.2's AsyncReset, up to its first call (the stores of the
        // new ids go through a copy of `this` in rbx).
        let code = [
            0x44, 0x8b, 0x77, 0x20, // mov r14d,[rdi+0x20]
            0xf2, 0x0f, 0x10, 0x47, 0x28, // movsd xmm0,[rdi+0x28]
            0x48, 0x89, 0xfb, // mov rbx,rdi
            0xf2, 0x0f, 0x11, 0x4b, 0x28, // movsd [rbx+0x28],xmm1
            0xf2, 0x0f, 0x11, 0x43, 0x30, // movsd [rbx+0x30],xmm0
            0x48, 0x8d, 0x7d, 0xb0, // lea rdi,[rbp-0x50]
            0xe8, 0, 0, 0, 0, // call
        ];
        assert_eq!(
            wrap_fields(&code, 0x1000),
            Ok(WrapFields {
                provider: 0x20,
                async_id: 0x28,
                trigger_id: 0x30
            })
        );
    }

    #[test]
    fn close_begins_by_testing_closed() {
        // cmp byte [rdi+0x24],0 ; je ; ret
        let code = [0x80, 0x7f, 0x24, 0x00, 0x74, 0x0a, 0xc3];
        assert_eq!(
            scope_closed(&code, 0x1000),
            Ok(ScopeClose {
                closed: 0x24,
                probe_offset: 4
            })
        );
        // Without the branch, the probe stays at the entry.
        assert_eq!(
            scope_closed(&[0x80, 0x7f, 0x24, 0x00, 0xc3], 0x1000).map(|c| c.probe_offset),
            Ok(0)
        );
        assert!(scope_closed(&[0xc3], 0x1000).is_err());
    }

    #[test]
    fn an_environment_buffer_is_the_pointer_a_field_is_then_read_through() {
        // Node 20.20.2's AsyncHooksGetExecutionAsyncId, its end.
        let code = [
            0x49, 0x8b, 0x84, 0x24, 0x80, 0x04, 0x00, 0x00, // mov rax,[r12+0x480]
            0x4c, 0x8b, 0x65, 0xf8, // mov r12,[rbp-0x8]
            0xf2, 0x0f, 0x10, 0x00, // movsd xmm0,[rax]
            0xc9, 0xc3, // leave; ret
        ];
        assert_eq!(env_buffer(&code, 0x1000, MemorySize::Float64), Some(0x480));
        // Node 20.20.2's CheckImmediate: a vtable load first, then the count.
        let code = [
            0x48, 0x8b, 0xbb, 0x10, 0x0b, 0x00, 0x00, // mov rdi,[rbx+0xb10]
            0x48, 0x8b, 0x07, // mov rax,[rdi]
            0x48, 0x8b, 0x83, 0x08, 0x05, 0x00, 0x00, // mov rax,[rbx+0x508]
            0x8b, 0x00, // mov eax,[rax]
        ];
        assert_eq!(env_buffer(&code, 0x1000, MemorySize::UInt32), Some(0x508));
        assert_eq!(env_buffer(&code[..10], 0x1000, MemorySize::UInt32), None);
    }

    #[test]
    fn version_is_read_from_the_node_js_string() {
        assert_eq!(
            version(b"xx\0node.js/v20.20.2\0yy").as_deref(),
            Some("20.20.2")
        );
        assert_eq!(version(b"nothing here"), None);
    }
}
