//! Which `g.waitreason` values mark a Running → Waiting → Running round trip
//! that is no block: the runtime parks the running goroutine's status, on its
//! own thread and without the scheduler, while it assists the GC, scans its
//! own stack, stops the world or flushes trace state, then sets it running
//! again. Go's execution tracer shows none of these, so the Go probes must not
//! report an `after` and a `wake` for them. The BPF side gets them as a bit
//! mask: bit `n` set when wait reason `n` is one of them.
//!
//! The reasons are the runtime's `isWaitingForGC` set (Go 1.23
//! `runtime2.go`; the calls are `casGToWaitingForGC`) and `dumping heap`
//! (`debug.WriteHeapDump` does the same round trip). Their numbers differ
//! between releases, so they are read from the binary: `runtime.waitReasonStrings`
//! is a `[N]string` indexed by wait reason, and the wanted strings' indices are
//! the bits. A per-release table is the fallback when the symbol is missing.
//!
//! Go 1.19 writes `g.waitreason` *after* the `casgstatus` call in these paths
//! (or not at all: `stopTheWorld` and the mark workers set none), so at the
//! probe the field holds a stale reason: there the round trip must be told by
//! the same thread setting the goroutine running again, not by the mask
//! ([`WaitReasons::set_before_cas`]). Go 1.21+ sets it first (`casGToWaiting`).

use object::{Object as _, ObjectSymbol as _};

use crate::target::image::Image;

/// The wait reasons of the round trips, as `waitReasonStrings` spells them.
pub const ROUND_TRIP_REASONS: [&str; 11] = [
    "GC assist marking",
    "dumping heap",
    "garbage collection",
    "garbage collection scan",
    "GC worker (active)",
    "GC mark termination",
    "stopping the world",
    "flushing proc caches",
    "trace goroutine status",
    "trace proc status",
    "page trace flush",
];

/// Where a mask came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskSource {
    /// The binary's `runtime.waitReasonStrings`.
    Binary,
    /// The table of its Go release ([`table`]).
    Table,
}

/// The round-trip wait reasons of one binary, for the BPF programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitReasons {
    /// Bit `n` set: wait reason `n` is a round trip, not a block.
    pub round_trip_mask: u64,
    /// Where the mask came from.
    pub source: MaskSource,
    /// The runtime sets `g.waitreason` before the `casgstatus` that the probe
    /// sees (Go 1.21+), so the mask can be applied there; on Go 1.19 it cannot.
    pub set_before_cas: bool,
}

/// The round-trip mask of Go 1.`minor`, from its `runtime2.go`; `None` for a
/// release tracer was not checked on.
pub fn table(minor: u32) -> Option<u64> {
    let bits: &[u32] = match minor {
        // GCAssistMarking, DumpingHeap, GarbageCollection, GarbageCollectionScan.
        19 => &[1, 5, 6, 7],
        // + GCWorkerActive, GCMarkTermination, StoppingTheWorld.
        21 => &[1, 5, 6, 7, 27, 30, 31],
        // + FlushProcCaches, TraceGoroutineStatus, TraceProcStatus, PageTraceFlush.
        22 | 23 => &[1, 5, 6, 7, 27, 30, 31, 32, 33, 34, 35],
        _ => return None,
    };
    Some(bits.iter().fold(0, |mask, bit| mask | 1 << bit))
}

/// The round-trip wait reasons of Go 1.`minor` binary `file`: from its
/// `waitReasonStrings`, else its release's table; `None` when neither says.
pub fn wait_reasons(file: &object::File<'_>, image: &Image<'_>, minor: u32) -> Option<WaitReasons> {
    let (round_trip_mask, source) = match reason_strings(file, image) {
        Some(strings) => (mask_of(&strings), MaskSource::Binary),
        None => (table(minor)?, MaskSource::Table),
    };
    Some(WaitReasons {
        round_trip_mask,
        source,
        set_before_cas: minor >= 21,
    })
}

/// The mask of the [`ROUND_TRIP_REASONS`] among `strings` (indexed by reason).
pub fn mask_of(strings: &[String]) -> u64 {
    strings
        .iter()
        .enumerate()
        .filter(|(index, text)| *index < 64 && ROUND_TRIP_REASONS.contains(&text.as_str()))
        .fold(0, |mask, (index, _)| mask | 1 << index)
}

/// `runtime.waitReasonStrings`, read from the binary's data (its pointers
/// relocated in a PIE).
pub fn reason_strings(file: &object::File<'_>, image: &Image<'_>) -> Option<Vec<String>> {
    let symbol = file
        .symbols()
        .find(|symbol| symbol.name() == Ok("runtime.waitReasonStrings"))?;
    let count = symbol.size() / 16;
    (0..count)
        .map(|index| {
            let header = symbol.address() + 16 * index;
            let (pointer, len) = (image.word(header)?, image.word(header + 8)?);
            if len == 0 {
                return Some(String::new());
            }
            String::from_utf8(image.bytes(pointer, len.min(256))?.to_vec()).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_has_the_bits_of_the_round_trip_reasons() {
        let strings: Vec<String> = ["", "GC assist marking", "IO wait", "stopping the world"]
            .map(str::to_owned)
            .to_vec();
        assert_eq!(mask_of(&strings), 0b1010);
        assert_eq!(table(23), Some(0xf_c800_00e2));
        assert_eq!(table(20), None);
    }
}
