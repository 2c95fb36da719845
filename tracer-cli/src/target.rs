//! The process being traced: checks that it can be traced, and finds the probe
//! sites of its runtime in its executable or the shared objects it has mapped.

use std::{
    io,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use crate::{
    runtime::{RuntimeAdapter, markers},
    symbols::{self, ObjectSites},
};

/// A live process, checked to be traceable.
#[derive(Debug)]
pub struct Target {
    /// Process id.
    pub pid: u32,
    /// The executable as the process sees it (for messages).
    pub exe: PathBuf,
}

/// Sites found in one object, with the path the kernel should attach through.
#[derive(Debug)]
pub struct TargetObject {
    /// Path uprobes attach to (`/proc/PID/exe` or `/proc/PID/root/…`), valid even
    /// if the file on disk was replaced since the process started.
    pub attach_path: PathBuf,
    /// What was found in it.
    pub sites: ObjectSites,
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

    /// Finds the embedder markers (`tracer-resource`) in the executable and every
    /// mapped shared object, warning on stderr about markers of unknown versions
    /// and markers the linker folded together (neither is probed).
    pub fn find_markers(&self) -> anyhow::Result<Vec<TargetObject>> {
        let mut objects = Vec::new();
        for attach_path in self.object_paths()? {
            // The executable's read errors are reported by `find_sites`.
            let Ok(scan) = markers::scan(&attach_path) else {
                continue;
            };
            let shown = if attach_path == self.exe_attach_path() {
                &self.exe
            } else {
                &attach_path
            };
            if !scan.unknown.is_empty() {
                eprintln!(
                    "tracer: warning: {}",
                    markers::unknown_version_warning(shown, &scan.unknown)
                );
            }
            if scan.folded {
                eprintln!("tracer: warning: {}", markers::folded_warning(shown));
            }
            if !scan.sites.sites.is_empty() {
                objects.push(TargetObject {
                    attach_path,
                    sites: scan.sites,
                });
            }
        }
        Ok(objects)
    }

    /// The executable (`/proc/PID/exe`) and every mapped shared object, as paths
    /// the kernel can attach through.
    fn object_paths(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut paths = vec![self.exe_attach_path()];
        for library in self.mapped_libraries()? {
            paths.push(
                PathBuf::from(format!("/proc/{}/root", self.pid))
                    .join(library.strip_prefix("/").unwrap_or(&library)),
            );
        }
        Ok(paths)
    }

    /// Finds the runtime's probe sites in the executable and in every mapped
    /// shared object, failing with advice when the runtime cannot be traced.
    /// With `has_markers` (the target declares its own resources), a target
    /// without the runtime at all is fine: only its markers are traced.
    pub fn find_sites(
        &self,
        adapter: &dyn RuntimeAdapter,
        has_markers: bool,
    ) -> anyhow::Result<Vec<TargetObject>> {
        let exe_attach = self.exe_attach_path();
        let exe_sites = symbols::scan(&exe_attach, adapter)
            .with_context(|| format!("cannot read the symbols of {}", self.exe.display()))?;
        let exe_stripped = !exe_sites.has_symtab;
        let mut objects = vec![TargetObject {
            attach_path: exe_attach,
            sites: exe_sites,
        }];
        // The executable comes first in `object_paths`; its errors were reported above.
        for attach_path in self.object_paths()?.into_iter().skip(1) {
            if let Ok(sites) = symbols::scan(&attach_path, adapter)
                && !sites.sites.is_empty()
            {
                objects.push(TargetObject { attach_path, sites });
            }
        }
        objects.retain(|object| !object.sites.sites.is_empty());

        let found = |probe| {
            objects
                .iter()
                .any(|o| o.sites.sites.iter().any(|s| s.probe == probe))
        };
        if objects.is_empty() {
            if has_markers {
                return Ok(objects);
            }
            if exe_stripped {
                bail!(
                    "{} is stripped: tracer finds {}'s functions by name in the symbol table, and this binary has none.\n\
                     Keep symbols and rebuild: in Cargo.toml set\n    [profile.release]\n    strip = false\n    debug = \"line-tables-only\"",
                    self.exe.display(),
                    adapter.name()
                );
            }
            bail!(
                "no Tokio runtime found in {}: none of its functions is one of {}'s task functions, and it declares no resources with tracer-resource (is it a {} 1.x program?)",
                self.exe.display(),
                adapter.name(),
                adapter.name()
            );
        }
        let missing: Vec<&str> = adapter
            .required()
            .iter()
            .filter(|(alternatives, _)| !alternatives.iter().any(|probe| found(*probe)))
            .map(|(_, what)| *what)
            .collect();
        if !missing.is_empty() {
            bail!(
                "unsupported {} build in {}: found some of its task functions but not: {}. \
                 They may have been inlined (as `lto = \"fat\"` does: build the program without it) or this {} version lays tasks out differently; tracer refuses rather than report wrong events",
                adapter.name(),
                self.exe.display(),
                missing.join("; "),
                adapter.name()
            );
        }
        Ok(objects)
    }

    /// `/proc/PID/exe`: valid even if the file on disk was replaced.
    fn exe_attach_path(&self) -> PathBuf {
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

fn is_shared_object(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    path.is_absolute() && (name.ends_with(".so") || name.contains(".so."))
}
