//! Node.js 18 from Debian, for the Node tests, next to the machine's own
//! `/usr/bin/node` (20, NodeSource's): apt would replace that `nodejs` if asked
//! for Debian's, so Debian's packages are fetched with `apt-get download` and
//! unpacked with `dpkg -x` into `target/node18` instead of being installed.
//! Debian's `libnode` reads builtins from `/usr/share/nodejs`: the tests run it
//! in a private mount namespace with `target/node18/usr/share` over
//! `/usr/share` (see `tests/src/node_truth.rs`).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail};

use crate::process::{run, stdout_of};

/// The packages unpacked: Debian's `nodejs` 18, its `libnode`, and what they
/// load that the machine may not have (or may have in another version).
pub const PACKAGES: [&str; 10] = [
    "nodejs",
    "libnode108",
    "libuv1",
    "libc-ares2",
    "libicu72",
    "libnghttp2-14",
    "libbrotli1",
    "node-acorn",
    "node-cjs-module-lexer",
    "node-undici",
];

/// Where setup unpacks them, under the workspace root.
pub const DIR: &str = "target/node18";

/// The unpacked `node` under `root` (a [`DIR`]).
pub fn binary(root: &Path) -> PathBuf {
    root.join("usr/bin/node")
}

/// A command that runs the unpacked `node` under `root` (a workspace root) with
/// the arguments added after: in a mount namespace of its own with the
/// unpacked `usr/share` over `/usr/share` (Debian's libnode reads builtins
/// from `/usr/share/nodejs`), its libraries first on the library path. The
/// process keeps its pid through unshare's and sh's execs.
pub fn command(root: &Path) -> Command {
    let dest = root.join(DIR);
    let script = format!(
        "mount --bind {dest}/usr/share /usr/share && LD_LIBRARY_PATH={dest}/usr/lib/x86_64-linux-gnu exec \"$@\"",
        dest = dest.display(),
    );
    let mut command = Command::new("unshare");
    command
        .args(["-m", "sh", "-c", &script, "sh"])
        .arg(binary(&dest));
    command
}

/// Debian's version of `libnode108` (and so of its `nodejs`, one source
/// package): the machine's `nodejs` candidate may be another vendor's.
fn debian_version() -> Result<String> {
    let text =
        stdout_of(Command::new("apt-cache").args(["show", "--no-all-versions", "libnode108"]))?;
    text.lines()
        .find_map(|line| line.strip_prefix("Version: "))
        .map(str::to_owned)
        .context("apt-cache shows no version of libnode108: is Debian's main (bookworm) in the apt sources?")
}

/// The `apt-get download` command for [`PACKAGES`], `nodejs` pinned to
/// `version`, run in `dir`.
fn download(dir: &Path, version: &str) -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.current_dir(dir).arg("download");
    for package in PACKAGES {
        match package {
            "nodejs" | "libnode108" => cmd.arg(format!("{package}={version}")),
            other => cmd.arg(other),
        };
    }
    cmd
}

/// Downloads and unpacks into `dest` (made afresh); returns the seconds taken.
fn fetch_into(dest: &Path) -> Result<f64> {
    let started = Instant::now();
    let version = debian_version()?;
    let debs = dest.with_extension("debs");
    let _ = fs::remove_dir_all(&debs);
    let _ = fs::remove_dir_all(dest);
    fs::create_dir_all(&debs).with_context(|| format!("cannot create {}", debs.display()))?;
    fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    run(&mut download(&debs, &version)).context("apt-get download of Debian's Node 18 failed")?;
    for entry in fs::read_dir(&debs)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            run(Command::new("dpkg").arg("-x").arg(&path).arg(dest))?;
        }
    }
    let _ = fs::remove_dir_all(&debs);
    if !binary(dest).is_file() {
        bail!(
            "unpacked Debian's Node 18 but {} is missing",
            binary(dest).display()
        );
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Setup's step: Node 18 unpacked under `root`'s [`DIR`], unless present.
pub fn setup(root: &Path) -> Result<()> {
    let dest = root.join(DIR);
    if binary(&dest).is_file() {
        eprintln!("ok: Debian's Node 18 present ({})", dest.display());
        return Ok(());
    }
    let seconds = fetch_into(&dest)?;
    eprintln!(
        "ok: Debian's Node 18 unpacked in {seconds:.1} s ({})",
        dest.display()
    );
    Ok(())
}

/// The rehearsal: the same download and unpacking, into `scratch`.
pub fn rehearse(scratch: &Path) -> Result<()> {
    let dest = scratch.join("node18");
    let seconds = fetch_into(&dest)?;
    eprintln!("ok: Debian's Node 18 downloaded and unpacked in {seconds:.1} s (rehearsal)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_download_pins_debians_node_and_fetches_every_package() {
        let cmd = download(Path::new("/tmp"), "18.20.4+dfsg-1~deb12u3");
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[0], "download");
        assert!(args.contains(&"nodejs=18.20.4+dfsg-1~deb12u3".to_owned()));
        assert!(args.contains(&"libnode108=18.20.4+dfsg-1~deb12u3".to_owned()));
        assert_eq!(args.len(), 1 + PACKAGES.len());
    }
}
