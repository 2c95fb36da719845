//! `--follow-forks`: the target's descendants are traced too.
//!
//! The BPF program `process_fork` runs on the `task/task_newtask` tracepoint,
//! before a new task is first scheduled: when a traced process creates a process
//! (not a thread), the child's pid goes into the BPF map `FOLLOWED`, whose
//! processes the probes report like the target. Userspace only watches that map:
//! it announces each new child, stops following one that runs another program
//! (exec) or exits, and tells the session when no child is left. Descendants that
//! already exist when tracer attaches are found in `/proc` and followed too.

use std::{
    collections::BTreeMap,
    io,
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
};

use tracer_common::MAX_FOLLOWED;

use crate::{kernel::probes::Probes, target::ProgramIdentity};

/// The descendants being followed, each with a pidfd that says when it exits.
#[derive(Debug, Default)]
pub struct Children {
    alive: BTreeMap<u32, Option<OwnedFd>>,
    /// Every child followed in this session, for the summary.
    pub followed: u64,
    warned_full: bool,
}

impl Children {
    /// No followed child is alive.
    pub fn is_empty(&self) -> bool {
        self.alive.is_empty()
    }

    /// Catches up with the BPF map: announces new children on stderr, and stops
    /// following children that exited or run another program than `program`.
    pub fn sync(&mut self, probes: &mut Probes, program: ProgramIdentity) -> anyhow::Result<()> {
        let in_map = probes.followed()?;
        if in_map.len() >= MAX_FOLLOWED as usize && !self.warned_full {
            self.warned_full = true;
            eprintln!(
                "tracer: warning: following {MAX_FOLLOWED} processes, the most tracer can: processes they create are not traced"
            );
        }
        for (child, parent) in in_map {
            if self.alive.contains_key(&child) {
                continue;
            }
            self.followed += 1;
            eprintln!("tracer: following child process {child} (created by {parent})");
            // A child that is already gone has no pidfd: it is dropped below.
            self.alive.insert(child, open_pidfd(child).ok());
        }
        let mut done = Vec::new();
        for (child, pidfd) in &self.alive {
            if pidfd.as_ref().is_none_or(has_exited) {
                eprintln!("tracer: child process {child} exited");
                done.push(*child);
            } else if ProgramIdentity::of(*child) != program {
                eprintln!("tracer: child process {child} runs another program: it is not traced");
                done.push(*child);
            }
        }
        for child in done {
            self.alive.remove(&child);
            probes.unfollow(child)?;
        }
        Ok(())
    }
}

/// The processes descending from `pid` now, each with its parent, found by
/// their parent pids in `/proc` (threads are not listed there).
pub fn descendants(pid: u32) -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = entries
        .filter_map(|entry| {
            let child: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            Some((child, parent_in_stat(&stat)?))
        })
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, _) in parents.iter().filter(|(_, p)| *p == parent) {
            found.push((child, parent));
            frontier.push(child);
        }
    }
    found
}

/// The parent pid in a `/proc/PID/stat` line: the second field after the
/// parenthesised command name (which may itself hold spaces and parentheses).
fn parent_in_stat(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// A pidfd for `pid`, readable once the process has exited.
pub fn open_pidfd(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the returned fd is owned by us.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd from pidfd_open.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The process behind a pidfd has exited (its pidfd is readable).
fn has_exited(pidfd: &OwnedFd) -> bool {
    let mut poll = libc::pollfd {
        fd: pidfd.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_pid_follows_the_command_name_whatever_it_holds() {
        assert_eq!(parent_in_stat("42 (a) b (c)) S 17 42 42 0"), Some(17));
        assert_eq!(parent_in_stat("42 (app) R"), None);
    }
}
