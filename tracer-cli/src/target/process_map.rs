//! Where a process loaded an ELF file: the load bias that turns the file's
//! virtual addresses into the process's (0 for a non-PIE executable), read from
//! `/proc/PID/maps`.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use object::{Object as _, ObjectSegment as _};

/// Page size of x86_64 mappings.
const PAGE: u64 = 4096;

/// The load bias of `object` (a path of a file `pid` has mapped, such as
/// `/proc/PID/exe`) in process `pid`.
pub fn load_bias(pid: u32, object: &Path) -> anyhow::Result<u64> {
    let inode = std::fs::metadata(object)
        .with_context(|| format!("cannot inspect {}", object.display()))?
        .ino();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .with_context(|| format!("cannot read /proc/{pid}/maps"))?;
    let Some(start) = first_mapping(&maps, inode) else {
        bail!("process {pid} has not mapped {}", object.display());
    };
    let data = crate::target::mapped_file::map(object)?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("{} is not an ELF file tracer can read", object.display()))?;
    let first = file
        .segments()
        .find(|segment| segment.file_range().0 == 0)
        .map(|segment| segment.address())
        .context("the ELF file has no segment that maps its start")?;
    Ok(start.wrapping_sub(first & !(PAGE - 1)))
}

/// The start address of the mapping of file offset 0 of the file with `inode`,
/// in the text of a `/proc/PID/maps`.
fn first_mapping(maps: &str, inode: u64) -> Option<u64> {
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let range = fields.next()?;
        let _perms = fields.next()?;
        let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
        let _dev = fields.next()?;
        let line_inode: u64 = fields.next()?.parse().ok()?;
        let start = u64::from_str_radix(range.split('-').next()?, 16).ok()?;
        (line_inode == inode && offset == 0).then_some(start)
    })
}

/// The file mapped at `address`, in the text of a `/proc/PID/maps`.
pub fn file_at(maps: &str, address: u64) -> Option<PathBuf> {
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let start = u64::from_str_radix(start, 16).ok()?;
        let end = u64::from_str_radix(end, 16).ok()?;
        let path = fields.nth(4)?;
        (start <= address && address < end && path.starts_with('/')).then(|| PathBuf::from(path))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mapping_of_offset_zero_of_the_file_is_its_start() {
        let maps = "\
5581c0a00000-5581c0a47000 r--p 00000000 fd:01 1234 /app
5581c0a47000-5581c0b00000 r-xp 00047000 fd:01 1234 /app
7f0000000000-7f0000001000 r--p 00000000 fd:01 99 /lib/other.so
";
        assert_eq!(first_mapping(maps, 1234), Some(0x5581c0a00000));
        assert_eq!(first_mapping(maps, 99), Some(0x7f0000000000));
        assert_eq!(first_mapping(maps, 5), None);
        assert_eq!(file_at(maps, 0x5581c0a47010), Some(PathBuf::from("/app")));
        assert_eq!(file_at(maps, 0x1000), None);
    }

    #[test]
    fn the_bias_moves_a_function_from_its_file_address_to_where_it_runs() {
        use object::ObjectSymbol as _;
        let exe = Path::new("/proc/self/exe");
        let bias = load_bias(std::process::id(), exe).unwrap();
        let data = crate::target::mapped_file::map(exe).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let marker = file
            .symbols()
            .find(|symbol| {
                symbol
                    .name()
                    .is_ok_and(|name| name.contains("bias_marker_function"))
            })
            .expect("the marker function's symbol");
        assert_eq!(
            marker.address().wrapping_add(bias),
            bias_marker_function as *const () as u64
        );
    }

    #[inline(never)]
    #[unsafe(no_mangle)]
    extern "C" fn bias_marker_function() {}
}
