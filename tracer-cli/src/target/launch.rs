//! Starts a command so that probes are attached before any of its code runs.
//!
//! The child asks to be ptraced, then execs: the kernel stops it right after the
//! exec, with the new program mapped and not one instruction of it run. A
//! program with a dynamic loader is then let run to the loader's debugger hook
//! ([`super::loader`]), where every library it needs is mapped and none of their
//! code, nor the program's, has run: a runtime in a shared library is found and
//! probed like one in the executable. tracer attaches its probes, then lets it
//! go. ptrace is used for those stops only.

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use nix::{
    sys::{
        ptrace,
        signal::{Signal, kill},
        wait::{WaitStatus, waitpid},
    },
    unistd::Pid,
};

use crate::target::{
    loader::{self, Hook, RT_CONSISTENT},
    mapped_file, symbols,
};

/// A child stopped just after its exec, waiting for [`Launched::resume`].
#[derive(Debug)]
pub struct Launched {
    pid: Pid,
    resumed: bool,
}

/// How a traced command ended, as a shell would report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildExit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl ChildExit {
    /// The exit code a shell would give: the code, or 128 + signal.
    pub fn shell_code(self) -> i32 {
        match self {
            Self::Code(code) => code,
            Self::Signal(signal) => 128 + signal,
        }
    }
}

/// Checks, before anything is started, that `program` (found as `exec` would find
/// it) is not an ELF file for another machine: the kernel would refuse it with a
/// bare "Exec format error". Files that cannot be read or are not ELF (scripts) are
/// left for `exec` to judge.
pub fn check_program(program: &str) -> anyhow::Result<()> {
    let path = if program.contains('/') {
        Some(PathBuf::from(program))
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
    };
    let Some(data) = path.as_ref().and_then(|path| mapped_file::map(path).ok()) else {
        return Ok(());
    };
    match object::File::parse(&*data) {
        Ok(file) => symbols::check_machine(&file, Path::new(program)),
        Err(_) => Ok(()),
    }
}

impl Launched {
    /// Starts `argv` stopped after its exec.
    pub fn spawn(argv: &[String]) -> anyhow::Result<Self> {
        Self::spawn_with(argv, |_| Ok(()))
    }

    /// Starts `argv` stopped after its exec, with its stdout and stderr going to
    /// `log` and no stdin: `tracer top` owns the terminal, and a command writing
    /// to it (or reading keys from it) would break the view.
    pub fn spawn_with_output(argv: &[String], log: &std::fs::File) -> anyhow::Result<Self> {
        Self::spawn_with(argv, |command| {
            command
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log.try_clone()?);
            Ok(())
        })
    }

    fn spawn_with(
        argv: &[String],
        configure: impl FnOnce(&mut Command) -> std::io::Result<()>,
    ) -> anyhow::Result<Self> {
        let (program, args) = argv.split_first().context("no command given to run")?;
        let mut command = Command::new(program);
        command.args(args);
        configure(&mut command).context("cannot set up the command's output")?;
        // SAFETY: between fork and exec the closure only makes one syscall.
        unsafe {
            command.pre_exec(|| ptrace::traceme().map_err(std::io::Error::from));
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {program}"))?;
        let pid = Pid::from_raw(child.id() as i32);
        let launched = match waitpid(pid, None).context("waiting for the command to exec")? {
            WaitStatus::Stopped(_, Signal::SIGTRAP) => Self {
                pid,
                resumed: false,
            },
            other => bail!("{program} did not stop at exec as expected ({other:?})"),
        };
        if let Some(hook) = loader::hook(launched.pid())? {
            launched
                .run_to_libraries(hook, program)
                .with_context(|| format!("cannot stop {program} once its libraries are mapped"))?;
        }
        Ok(launched)
    }

    /// Lets the command's loader run until it has mapped every library
    /// (`hook` called with `RT_CONSISTENT`), through a breakpoint on the hook,
    /// and leaves it stopped there, its code as it was.
    fn run_to_libraries(&self, hook: Hook, program: &str) -> anyhow::Result<()> {
        let at = hook.function as ptrace::AddressType;
        loop {
            let original = ptrace::read(self.pid, at)?;
            ptrace::write(self.pid, at, (original & !0xff) | 0xcc)?;
            ptrace::cont(self.pid, None)?;
            self.wait_for_trap(program)?;
            ptrace::write(self.pid, at, original)?;
            let mut regs = ptrace::getregs(self.pid)?;
            if regs.rip != hook.function + 1 {
                bail!(
                    "{program} stopped at {:#x}, not at its loader's hook {:#x}",
                    regs.rip,
                    hook.function
                );
            }
            regs.rip = hook.function;
            ptrace::setregs(self.pid, regs)?;
            let state = ptrace::read(self.pid, hook.state as ptrace::AddressType)? as u32;
            if state == RT_CONSISTENT {
                return Ok(());
            }
            // Step over the hook's first instruction before putting the
            // breakpoint back.
            ptrace::step(self.pid, None)?;
            self.wait_for_trap(program)?;
        }
    }

    /// Waits for the next SIGTRAP stop, passing any other signal on to the
    /// command; fails if it exits first (a library is missing, say).
    fn wait_for_trap(&self, program: &str) -> anyhow::Result<()> {
        loop {
            match waitpid(self.pid, None)? {
                WaitStatus::Stopped(_, Signal::SIGTRAP) => return Ok(()),
                WaitStatus::Stopped(_, signal) => ptrace::cont(self.pid, signal)?,
                WaitStatus::Exited(_, code) => bail!(
                    "{program} exited with code {code} while its dynamic loader loaded its libraries (see its message above)"
                ),
                WaitStatus::Signaled(_, signal, _) => bail!(
                    "{program} was killed by {signal} while its dynamic loader loaded its libraries"
                ),
                _ => continue,
            }
        }
    }

    /// Process id of the command.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Lets the command run (detaches ptrace).
    pub fn resume(&mut self) -> anyhow::Result<()> {
        ptrace::detach(self.pid, None).context("cannot resume the command")?;
        self.resumed = true;
        Ok(())
    }

    /// Reaps the command once it has exited.
    pub fn wait(&mut self) -> anyhow::Result<ChildExit> {
        loop {
            match waitpid(self.pid, None).context("waiting for the command")? {
                WaitStatus::Exited(_, code) => return Ok(ChildExit::Code(code)),
                WaitStatus::Signaled(_, signal, _) => return Ok(ChildExit::Signal(signal as i32)),
                _ => continue,
            }
        }
    }
}

impl Drop for Launched {
    /// A command that was never resumed (tracing could not start) is killed, not
    /// left stopped for ever.
    fn drop(&mut self) {
        if !self.resumed {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}
