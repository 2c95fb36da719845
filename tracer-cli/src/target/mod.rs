//! The process being traced and the files it runs: checks that it can be traced,
//! lists the objects it maps, reads their symbols, launches a command to trace.

pub mod crate_version;
pub mod dwarf;
pub mod image;
pub mod launch;
pub mod loader;
pub mod mapped_file;
pub mod preflight;
pub mod process_map;
pub mod symbols;

use std::{
    io,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

/// A live process, checked to be traceable.
#[derive(Debug)]
pub struct Target {
    /// Process id.
    pub pid: u32,
    /// The executable as the process sees it (for messages).
    pub exe: PathBuf,
}

impl Target {
    /// Checks that `pid` is a live user process this tracer may inspect.
    pub fn inspect(pid: u32) -> anyhow::Result<Self> {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let stat = match std::fs::read_to_string(proc_dir.join("stat")) {
            Ok(stat) => stat,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                bail!(
                    "no such process: {pid} (check the pid with `pgrep -a NAME` or `ps -p {pid}`)"
                )
            }
            Err(error) => return Err(error).context(format!("cannot read /proc/{pid}/stat")),
        };
        // The state letter follows the parenthesised command name.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("?");
        if state == "Z" {
            bail!(
                "process {pid} is a zombie: it has exited and waits for its parent to reap it; there is nothing left to trace"
            );
        }
        let exe = match std::fs::read_link(proc_dir.join("exe")) {
            Ok(exe) => exe,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                bail!(
                    "process {pid} has no executable: it is a kernel thread, and tracer traces user-space programs"
                )
            }
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                bail!(
                    "cannot inspect process {pid}: permission denied; tracing another user's process needs root or CAP_SYS_PTRACE"
                )
            }
            Err(error) => return Err(error).context(format!("cannot read /proc/{pid}/exe")),
        };
        Ok(Self { pid, exe })
    }

    /// The executable (`/proc/PID/exe`) and every mapped shared object, as paths
    /// the kernel can attach through.
    pub fn object_paths(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut paths = vec![self.exe_attach_path()];
        for library in self.mapped_libraries()? {
            paths.push(
                PathBuf::from(format!("/proc/{}/root", self.pid))
                    .join(library.strip_prefix("/").unwrap_or(&library)),
            );
        }
        Ok(paths)
    }

    /// `/proc/PID/exe`: valid even if the file on disk was replaced.
    pub fn exe_attach_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/exe", self.pid))
    }

    /// Shared objects mapped executable into the process.
    fn mapped_libraries(&self) -> anyhow::Result<Vec<PathBuf>> {
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", self.pid))
            .with_context(|| format!("cannot read /proc/{}/maps", self.pid))?;
        let mut libraries: Vec<PathBuf> = maps
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let perms = fields.nth(1)?;
                let path = fields.nth(3)?;
                (perms.contains('x') && is_shared_object(Path::new(path)))
                    .then(|| PathBuf::from(path))
            })
            .collect();
        libraries.sort();
        libraries.dedup();
        Ok(libraries)
    }
}

/// An attach path of process `pid`'s ([`Target::object_paths`]) as the process
/// names the file, for messages: `/proc/PID/exe` is its executable,
/// `/proc/PID/root/lib/x.so` is `/lib/x.so`.
pub fn as_seen(pid: u32, object: &Path) -> PathBuf {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if object == proc_dir.join("exe") {
        return std::fs::read_link(object).unwrap_or_else(|_| object.to_owned());
    }
    object
        .strip_prefix(proc_dir.join("root"))
        .map_or_else(|_| object.to_owned(), |path| Path::new("/").join(path))
}

/// Which file a process runs, to notice an exec: device and inode of its executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramIdentity(Option<(u64, u64)>);

impl ProgramIdentity {
    /// The identity of what `pid` runs now (`None` inside once it is gone).
    pub fn of(pid: u32) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        Self(
            std::fs::metadata(format!("/proc/{pid}/exe"))
                .ok()
                .map(|meta| (meta.dev(), meta.ino())),
        )
    }
}

fn is_shared_object(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    path.is_absolute() && (name.ends_with(".so") || name.contains(".so."))
}

/// A process id: 0 is not one (it names the kernel's idle task).
pub fn parse_pid(text: &str) -> Result<u32, String> {
    match text.parse() {
        Ok(0) => Err("0 is not a process id".to_owned()),
        Ok(pid) => Ok(pid),
        Err(_) => Err(format!("{text:?} is not a process id (a positive number)")),
    }
}
