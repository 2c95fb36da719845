//! Where on a function its probe goes, and what a hit there costs. A uprobe
//! traps on the first byte of an instruction; the kernel then either emulates
//! that instruction (`push reg`, a nop, a relative jump or call) or
//! single-steps a copy of it out of line, which costs several times more
//! (measured on Linux 6.18 here: about 12 µs a hit against 0.9 µs). Go 1.19's
//! `runtime.casgstatus` starts with `sub $0x40,%rsp`, but a few instructions
//! later, before anything touches the argument registers, it has a `nop`.
//! Probing there sees the same call with the same registers. Tokio's probed
//! functions cannot be moved that way (their prologues call through the GOT in
//! debug builds, or loop back before any emulated instruction), so for them the
//! session says which sites are single-stepped.

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, InstructionInfoFactory, OpAccess, OpKind, Register,
};

/// The registers the Go programs read when their probe fires: the arguments
/// (Go's internal ABI) and R14, the current `g`.
const READ: [Register; 4] = [Register::RAX, Register::RBX, Register::RCX, Register::R14];

/// How many instructions from the entry are looked at.
const LOOKAHEAD: usize = 16;

/// The offset, from the function's entry at `address` whose first bytes are
/// `code`, of the first instruction the kernel emulates that every call
/// reaches with [`READ`] unchanged; 0 (the entry) when there is none before the
/// first branch, or when the entry is one.
pub fn emulated_offset(code: &[u8], address: u64) -> u64 {
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut info = InstructionInfoFactory::new();
    for instruction in decoder.iter().take(LOOKAHEAD) {
        if instruction.is_invalid() {
            return 0;
        }
        if is_emulated(&instruction) {
            return instruction.ip() - address;
        }
        if instruction.flow_control() != FlowControl::Next {
            return 0;
        }
        let writes_an_argument = info.info(&instruction).used_registers().iter().any(|used| {
            READ.contains(&used.register().full_register())
                && !matches!(used.access(), OpAccess::Read | OpAccess::CondRead)
        });
        if writes_an_argument {
            return 0;
        }
    }
    0
}

/// Whether the kernel single-steps the instruction that `code` (at `address`)
/// starts with when a uprobe there fires, rather than emulating it.
pub fn is_single_stepped(code: &[u8], address: u64) -> bool {
    let instruction = Decoder::with_ip(64, code, address, DecoderOptions::NONE).decode();
    !instruction.is_invalid() && !is_emulated(&instruction)
}

/// Whether the kernel emulates `instruction` at a uprobe rather than
/// single-stepping it (arch/x86/kernel/uprobes.c: `branch_setup_xol_ops`,
/// `push_setup_xol_ops`; multi-byte nops since Linux 6.x, measured here).
fn is_emulated(instruction: &iced_x86::Instruction) -> bool {
    match instruction.code() {
        Code::Nopw | Code::Nopd | Code::Nopq | Code::Push_r64 => true,
        // The kernel refuses a probe on an instruction with a segment prefix
        // (`cs nopw`, seen as alignment padding): never counted as emulated.
        Code::Nop_rm16 | Code::Nop_rm32 | Code::Nop_rm64 => {
            instruction.segment_prefix() == Register::None
        }
        _ => {
            matches!(
                instruction.flow_control(),
                FlowControl::ConditionalBranch
                    | FlowControl::UnconditionalBranch
                    | FlowControl::Call
            ) && matches!(instruction.op0_kind(), OpKind::NearBranch64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_1_19_casgstatus_is_probed_at_its_nop() {
        // sub $0x40,%rsp; mov %rbp,0x38(%rsp); lea 0x38(%rsp),%rbp;
        // mov %rax,0x48(%rsp); mov %ebx,0x50(%rsp); mov %ecx,0x54(%rsp);
        // bt $0xc,%ebx; nop; jb ...
        let code = [
            0x48, 0x83, 0xec, 0x40, 0x48, 0x89, 0x6c, 0x24, 0x38, 0x48, 0x8d, 0x6c, 0x24, 0x38,
            0x48, 0x89, 0x44, 0x24, 0x48, 0x89, 0x5c, 0x24, 0x50, 0x89, 0x4c, 0x24, 0x54, 0x0f,
            0xba, 0xe3, 0x0c, 0x90, 0x72, 0x0a,
        ];
        assert_eq!(emulated_offset(&code, 0x436460), 0x1f);
    }

    #[test]
    fn an_entry_that_pushes_is_probed_as_it_is() {
        // push %rbp; mov %rsp,%rbp (Go 1.21+).
        assert_eq!(emulated_offset(&[0x55, 0x48, 0x89, 0xe5], 0x1000), 0);
    }

    #[test]
    fn a_stack_adjustment_or_a_load_is_single_stepped() {
        // sub $0x18,%rsp (Tokio's waker::wake_by_ref, optimised); mov (%rdi),%rax
        assert!(is_single_stepped(&[0x48, 0x83, 0xec, 0x18], 0x1000));
        assert!(is_single_stepped(&[0x48, 0x8b, 0x07], 0x1000));
    }

    #[test]
    fn a_push_a_nop_a_direct_call_or_jump_is_emulated() {
        // push %rbx (waker::wake_by_val); nopw 0x0(%rax,%rax,1); call rel32; jmp rel8
        assert!(!is_single_stepped(&[0x53], 0x1000));
        assert!(!is_single_stepped(&[0x66, 0x0f, 0x1f, 0x44, 0, 0], 0x1000));
        assert!(!is_single_stepped(&[0xe8, 0, 0, 0, 0], 0x1000));
        assert!(!is_single_stepped(&[0xeb, 0x10], 0x1000));
    }

    #[test]
    fn an_indirect_call_and_a_segment_prefixed_nop_are_not_emulated() {
        // call *0x10(%rip) (debug builds call through the GOT); cs nopw 0x0(%rax,%rax,1)
        assert!(is_single_stepped(&[0xff, 0x15, 0x10, 0, 0, 0], 0x1000));
        assert!(is_single_stepped(
            &[0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0],
            0x1000
        ));
    }

    #[test]
    fn no_emulated_instruction_before_an_argument_is_written_means_the_entry() {
        // sub $0x40,%rsp; mov $1,%eax; nop
        let code = [0x48, 0x83, 0xec, 0x40, 0xb8, 0x01, 0, 0, 0, 0x90];
        assert_eq!(emulated_offset(&code, 0x1000), 0);
    }
}
