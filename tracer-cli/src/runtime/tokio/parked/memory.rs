//! Reading a parked task's bytes: another process's memory, or a test's.

/// Reads another process's memory (or a test's bytes).
pub trait Memory {
    /// Fills `buf` from `address`; `false` when any of it cannot be read.
    fn read(&self, address: u64, buf: &mut [u8]) -> bool;

    /// The little-endian unsigned integer of `size` (1 to 8) bytes at `address`.
    fn uint(&self, address: u64, size: u64) -> Option<u64> {
        let mut buf = [0u8; 8];
        let size = usize::try_from(size).ok().filter(|s| (1..=8).contains(s))?;
        self.read(address, &mut buf[..size])
            .then(|| u64::from_le_bytes(buf))
    }
}
