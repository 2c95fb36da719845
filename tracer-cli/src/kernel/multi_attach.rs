//! uprobe_multi links: every site of one program in one file behind one link.
//!
//! Attaching one perf event per site works everywhere, but the kernel waits for
//! RCU grace periods each time it removes one, one removal at a time: about
//! 0.1 s per site here, so tracer took seconds (minutes, on a real server with
//! thousands of future types) to detach. A `BPF_TRACE_UPROBE_MULTI` link (Linux
//! 6.6+) attaches all offsets at once and is removed with a single wait.
//!
//! aya 0.14 can neither load a program for that attach type nor create the link,
//! so this module does both with two `bpf()` calls, on the instructions aya-obj
//! relocated against the maps aya already created. When the kernel refuses,
//! [`crate::kernel::probes`] falls back to perf-event links.

use std::{
    collections::{HashMap, HashSet},
    ffi::CString,
    io,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd},
    path::Path,
};

use anyhow::{Context as _, anyhow, bail};
use aya::{Ebpf, maps::Map};
use aya_obj::generated::bpf_insn;

use crate::kernel::bpf_call::bpf;

/// `BPF_PROG_LOAD`.
const BPF_PROG_LOAD: libc::c_long = 5;
/// `BPF_LINK_CREATE`.
const BPF_LINK_CREATE: libc::c_long = 28;
/// `BPF_PROG_TYPE_KPROBE`: uprobes are kprobe-type programs.
const BPF_PROG_TYPE_KPROBE: u32 = 2;
/// `BPF_TRACE_UPROBE_MULTI`.
const BPF_TRACE_UPROBE_MULTI: u32 = 48;
/// `BPF_F_UPROBE_MULTI_RETURN`: the link is a uretprobe.
const BPF_F_UPROBE_MULTI_RETURN: u32 = 1;

/// The head of `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type`
/// (the kernel reads a shorter attr as zero-extended). No padding: 72 bytes.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_LINK_CREATE` of a uprobe_multi link.
///
/// Every byte is a named field: the kernel refuses an attr whose bytes past the
/// last field it knows are not zero, and Rust leaves padding uninitialised.
#[repr(C)]
struct UprobeMultiLinkAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    path: u64,
    offsets: u64,
    ref_ctr_offsets: u64,
    cookies: u64,
    cnt: u32,
    multi_flags: u32,
    pid: u32,
    /// Explicit tail padding, always zero.
    zero: u32,
}

/// A `bpf()` command that returns a new descriptor.
fn bpf_fd<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    // SAFETY: every caller passes an initialised bpf_attr prefix for `cmd`
    // whose pointers outlive the call.
    let fd = unsafe { bpf(cmd, attr) }?;
    // SAFETY: a new descriptor returned by bpf(), owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

const _: () = assert!(size_of::<ProgLoadAttr>() == 72 && size_of::<UprobeMultiLinkAttr>() == 64);

/// Programs loaded for uprobe_multi links, by name.
pub struct MultiPrograms {
    fds: HashMap<String, OwnedFd>,
}

/// The descriptor of an aya map, for relocation.
fn map_fd(map: &Map) -> Option<RawFd> {
    let data = match map {
        Map::Array(data)
        | Map::PerCpuArray(data)
        | Map::RingBuf(data)
        | Map::HashMap(data)
        | Map::LruHashMap(data)
        | Map::PerCpuHashMap(data) => data,
        _ => return None,
    };
    Some(data.fd().as_fd().as_raw_fd())
}

impl MultiPrograms {
    /// Loads `names` from `object` for uprobe_multi, using the maps of `ebpf`
    /// (already created, globals already set) so both share every map.
    pub fn load(ebpf: &Ebpf, object: &[u8], names: &[&str]) -> anyhow::Result<Self> {
        let mut obj = aya_obj::Object::parse(object).context("cannot parse the BPF object")?;
        let mut fds = Vec::new();
        for name in obj.maps.keys() {
            let map = ebpf
                .map(name)
                .ok_or_else(|| anyhow!("map {name} was not created"))?;
            let fd = map_fd(map).ok_or_else(|| anyhow!("map {name} has an unexpected type"))?;
            fds.push((name.clone(), fd));
        }
        let text_sections: HashSet<usize> =
            obj.functions.keys().map(|(section, _)| *section).collect();
        let maps = obj.maps.clone();
        obj.relocate_maps(
            fds.iter()
                .map(|(name, fd)| (name.as_str(), *fd, &maps[name])),
            &text_sections,
        )?;
        obj.relocate_calls(&text_sections)?;

        let license = CString::new(obj.license.as_bytes()).context("BPF license")?;
        let mut loaded = HashMap::new();
        for name in names {
            let program = obj
                .programs
                .get(*name)
                .ok_or_else(|| anyhow!("BPF program {name} missing"))?;
            let instructions: &[bpf_insn] = &obj.functions[&program.function_key()].instructions;
            let mut prog_name = [0u8; 16];
            for (slot, byte) in prog_name.iter_mut().zip(name.bytes().take(15)) {
                *slot = byte;
            }
            let mut attr = ProgLoadAttr {
                prog_type: BPF_PROG_TYPE_KPROBE,
                insn_cnt: instructions.len() as u32,
                insns: instructions.as_ptr() as u64,
                license: license.as_ptr() as u64,
                log_level: 0,
                log_size: 0,
                log_buf: 0,
                kern_version: 0,
                prog_flags: 0,
                prog_name,
                prog_ifindex: 0,
                expected_attach_type: BPF_TRACE_UPROBE_MULTI,
            };
            // Loaded without a verifier log (a full log buffer fails a load
            // that would pass); only a failure is loaded again to say why.
            let fd = bpf_fd(BPF_PROG_LOAD, &mut attr).map_err(|error| {
                let mut log = vec![0u8; 4 << 20];
                attr.log_level = 1;
                attr.log_size = log.len() as u32;
                attr.log_buf = log.as_mut_ptr() as u64;
                let _ = bpf_fd(BPF_PROG_LOAD, &mut attr);
                let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                let log = String::from_utf8_lossy(&log[..end]);
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                anyhow!("{name}: {error}; verifier: {}", tail.join(" | "))
            })?;
            loaded.insert((*name).to_owned(), fd);
        }
        Ok(Self { fds: loaded })
    }

    /// The loaded programs, by name.
    pub fn programs(&self) -> impl Iterator<Item = (&str, BorrowedFd<'_>)> {
        self.fds
            .iter()
            .map(|(name, fd)| (name.as_str(), fd.as_fd()))
    }

    /// Attaches `program` at every file offset of `object`, each with its cookie,
    /// for process `pid` only. The link lives as long as the returned descriptor.
    pub fn attach(
        &self,
        program: &str,
        is_return: bool,
        object: &Path,
        offsets_and_cookies: &[(u64, u64)],
        pid: u32,
    ) -> anyhow::Result<OwnedFd> {
        let prog = self
            .fds
            .get(program)
            .ok_or_else(|| anyhow!("BPF program {program} not loaded for uprobe_multi"))?;
        if offsets_and_cookies.is_empty() {
            bail!("no offsets to attach {program} to");
        }
        let path = CString::new(object.as_os_str().as_encoded_bytes())
            .context("object path contains a NUL byte")?;
        let offsets: Vec<u64> = offsets_and_cookies
            .iter()
            .map(|(offset, _)| *offset)
            .collect();
        let cookies: Vec<u64> = offsets_and_cookies
            .iter()
            .map(|(_, cookie)| *cookie)
            .collect();
        let mut attr = UprobeMultiLinkAttr {
            prog_fd: prog.as_raw_fd() as u32,
            target_fd: 0,
            attach_type: BPF_TRACE_UPROBE_MULTI,
            flags: 0,
            path: path.as_ptr() as u64,
            offsets: offsets.as_ptr() as u64,
            ref_ctr_offsets: 0,
            cookies: cookies.as_ptr() as u64,
            cnt: offsets.len() as u32,
            multi_flags: if is_return {
                BPF_F_UPROBE_MULTI_RETURN
            } else {
                0
            },
            pid,
            zero: 0,
        };
        bpf_fd(BPF_LINK_CREATE, &mut attr)
            .with_context(|| format!("uprobe_multi link for {program} on {}", object.display()))
    }
}
