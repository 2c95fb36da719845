//! `--bpf-stats`: how long each of tracer's BPF programs runs, measured by the
//! kernel (`BPF_ENABLE_STATS`), so that what tracer costs the target is split
//! into what the kernel charges to trap and what tracer's own programs add.

use std::{
    fmt::Write as _,
    io,
    os::fd::{AsRawFd, BorrowedFd, OwnedFd},
};

use anyhow::Context as _;
use aya::sys::{Stats, enable_stats};
use aya_obj::generated::bpf_prog_info;

use crate::kernel::bpf_call::bpf;

/// `BPF_OBJ_GET_INFO_BY_FD`.
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// The `info` member of `bpf_attr`.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// Keeps the kernel's run-time statistics of every BPF program on while it
/// lives (they cost every program run, tracer's and others', two clock reads).
pub struct StatsEnabled {
    /// Closing it turns the statistics off.
    _enabled: OwnedFd,
}

impl StatsEnabled {
    /// Turns the statistics on.
    pub fn new() -> anyhow::Result<Self> {
        let enabled = enable_stats(Stats::RunTime).context(
            "--bpf-stats: the kernel refused to turn on BPF run-time statistics (BPF_ENABLE_STATS needs CAP_SYS_ADMIN and Linux 5.8): run tracer as root for it, or trace without --bpf-stats",
        )?;
        Ok(Self { _enabled: enabled })
    }
}

/// Runs of one program and the time they took, as the kernel counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunTimes {
    /// Runs counted.
    pub runs: u64,
    /// Their total time, ns.
    pub ns: u64,
}

/// What the kernel has counted for the program behind `fd` (only while
/// [`StatsEnabled`] lives).
pub fn run_times(fd: BorrowedFd<'_>) -> io::Result<RunTimes> {
    // SAFETY: a plain C struct of integers, for which all zeroes is valid.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of::<bpf_prog_info>() as u32,
        info: &mut info as *mut bpf_prog_info as u64,
    };
    // SAFETY: `attr` is the `info` member of bpf_attr, its pointer to `info`
    // (of the length given) outlives the call.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    Ok(RunTimes {
        runs: info.run_cnt,
        ns: info.run_time_ns,
    })
}

/// Each program's runs and time, by name, summed over its loaded copies (the
/// same program is loaded once for single-site links and once for
/// uprobe_multi links).
#[derive(Debug, Default)]
pub struct ProgramTimes(pub Vec<(String, RunTimes)>);

impl ProgramTimes {
    /// Adds `times` to program `name`.
    pub fn add(&mut self, name: &str, times: RunTimes) {
        match self.0.iter_mut().find(|(known, _)| known == name) {
            Some((_, sum)) => {
                sum.runs += times.runs;
                sum.ns += times.ns;
            }
            None => self.0.push((name.to_owned(), times)),
        }
    }

    /// The summary line: programs that ran, busiest first, each with its runs
    /// and average time a run.
    pub fn line(&self) -> String {
        let mut ran: Vec<_> = self.0.iter().filter(|(_, t)| t.runs > 0).collect();
        ran.sort_by(|a, b| b.1.ns.cmp(&a.1.ns).then_with(|| a.0.cmp(&b.0)));
        let total: u64 = ran.iter().map(|(_, t)| t.ns).sum();
        let mut text = format!(
            "BPF program time (--bpf-stats): {:.3} s in all",
            total as f64 / 1e9
        );
        for (name, times) in ran {
            let _ = write!(
                text,
                "; {name} {} runs, {} ns a run",
                times.runs,
                times.ns / times.runs
            );
        }
        text.push_str(
            " (the kernel's count, in the target's threads; an empty program counts about 50 ns a run on the VM tracer is tested on, most of it the counting)",
        );
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_of_a_program_add_up_and_the_busiest_comes_first() {
        let mut times = ProgramTimes::default();
        times.add("poll_return", RunTimes { runs: 10, ns: 3000 });
        times.add("poll_enter", RunTimes { runs: 4, ns: 2000 });
        times.add("poll_enter", RunTimes { runs: 6, ns: 3000 });
        times.add("task_free", RunTimes::default());
        let line = times.line();
        assert!(
            line.starts_with(
                "BPF program time (--bpf-stats): 0.000 s in all; poll_enter 10 runs, 500 ns a run; poll_return 10 runs, 300 ns a run ("
            ),
            "{line}"
        );
        assert!(!line.contains("task_free"), "{line}");
    }
}
