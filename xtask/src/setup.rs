//! `cargo xtask setup`: install what building and testing tracer needs, and nothing
//! when it is already there. One status line per item on stderr, for example
//! `ok: bpf-linker 0.13.0 present (/root/.cargo/bin/bpf-linker)` or
//! `installing: bpf-linker 0.13 (cargo install, built against LLVM 22)`.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::process::{self, cargo, cargo_bin_dir, is_root, path_with, probe, run, stdout_of};

/// Debian packages that `bpf-linker` is built and linked against, and `chromium`,
/// which the SVG export test renders pictures with (headless).
pub const DEBIAN_PACKAGES: [&str; 5] = [
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "chromium",
];

/// Where Debian's LLVM 22 keeps `llvm-config`; put first on PATH for `cargo install`.
pub const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

/// The toolchain that builds the BPF programs (`-Z build-std` needs nightly's `rust-src`).
pub const BPF_TOOLCHAIN: &str = "nightly";

/// The `bpf-linker` release series whose `llvm-22` feature matches [`LLVM_BIN`].
pub const BPF_LINKER_VERSION: &str = "^0.13";

/// Where uprobe attachment may need the kernel's tracing filesystem.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Runs every setup step in order; stops at the first that fails.
pub fn setup() -> Result<()> {
    debian_packages().context("setup: Debian packages")?;
    nightly_rust_src().context("setup: nightly rust-src")?;
    bpf_linker().context("setup: bpf-linker")?;
    tracefs().context("setup: tracefs")?;
    Ok(())
}

/// The installed version of a Debian package, or `None` when it is not installed.
fn installed_version(package: &str) -> Result<Option<String>> {
    let Some(output) =
        probe(Command::new("dpkg-query").args(["-W", "-f=${Status}\t${Version}", package]))?
    else {
        bail!(
            "dpkg-query not found: setup installs Debian packages ({}); on another \
             distribution install LLVM 22 with its dev files and Polly, and the zstd and \
             zlib dev files, and Chromium, then run setup again",
            DEBIAN_PACKAGES.join(" ")
        );
    };
    // dpkg-query exits non-zero for a package it has never heard of.
    if !output.status.success() {
        return Ok(None);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(match stdout.split_once('\t') {
        Some(("install ok installed", version)) => Some(version.trim().to_owned()),
        _ => None,
    })
}

/// Step 1: LLVM 22 and the libraries `bpf-linker` links to, and Chromium, from Debian.
fn debian_packages() -> Result<()> {
    let mut missing = Vec::new();
    for package in DEBIAN_PACKAGES {
        match installed_version(package)? {
            Some(version) => eprintln!("ok: {package} {version} present"),
            None => missing.push(package),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    eprintln!("installing: {list} (apt-get)");
    if !is_root() {
        bail!(
            "{list} missing, and apt-get needs root to install them: run setup as root, or install them yourself"
        );
    }
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y"])
        .args(&missing))?;
    for package in missing {
        match installed_version(package)? {
            Some(version) => eprintln!("ok: {package} {version} installed"),
            None => bail!("apt-get finished but {package} is still not installed"),
        }
    }
    Ok(())
}

/// The host triple of the default toolchain, e.g. `x86_64-unknown-linux-gnu`.
fn host_triple() -> Result<String> {
    let verbose = stdout_of(Command::new("rustc").arg("-vV"))?;
    verbose
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(|host| host.trim().to_owned())
        .context("`rustc -vV` printed no `host:` line")
}

/// Step 2: the nightly toolchain with `rust-src`, which aya-build uses to build the
/// BPF programs for `bpfel-unknown-none`.
fn nightly_rust_src() -> Result<()> {
    let Some(_) = probe(Command::new("rustup").arg("--version"))? else {
        bail!(
            "rustup not found: the BPF programs are built with the `{BPF_TOOLCHAIN}` \
             toolchain through rustup; install rustup, or put ~/.cargo/bin on PATH"
        );
    };
    let toolchain = format!("{BPF_TOOLCHAIN}-{}", host_triple()?);
    let toolchains = stdout_of(Command::new("rustup").args(["toolchain", "list"]))?;
    let has_toolchain = toolchains
        .lines()
        .any(|line| line.split_whitespace().next() == Some(toolchain.as_str()));
    if !has_toolchain {
        eprintln!("installing: {toolchain} toolchain with rust-src (rustup)");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            BPF_TOOLCHAIN,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
    } else {
        let components = stdout_of(Command::new("rustup").args([
            "component",
            "list",
            "--toolchain",
            BPF_TOOLCHAIN,
            "--installed",
        ]))?;
        // The line is `rust-src` (no target suffix: the source is the same for all).
        if !components.lines().any(|line| line.trim() == "rust-src") {
            eprintln!("installing: rust-src for {toolchain} (rustup)");
            run(Command::new("rustup").args([
                "component",
                "add",
                "rust-src",
                "--toolchain",
                BPF_TOOLCHAIN,
            ]))?;
        }
    }
    let version =
        stdout_of(Command::new("rustup").args(["run", BPF_TOOLCHAIN, "rustc", "--version"]))?;
    eprintln!(
        "ok: rust-src for {BPF_TOOLCHAIN} ({}) present",
        version.trim()
    );
    Ok(())
}

/// `bpf-linker`'s version and path: on PATH first, else in cargo's bin directory.
fn find_bpf_linker() -> Result<Option<(String, PathBuf)>> {
    let path = env::var_os("PATH").unwrap_or_default();
    let mut candidates: Vec<PathBuf> = env::split_paths(&path)
        .map(|dir| dir.join("bpf-linker"))
        .filter(|file| file.is_file())
        .collect();
    candidates.extend(cargo_bin_dir().map(|dir| dir.join("bpf-linker")));
    for candidate in candidates {
        let Some(output) = probe(Command::new(&candidate).arg("--version"))? else {
            continue;
        };
        if output.status.success() {
            let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            return Ok(Some((version, candidate)));
        }
    }
    Ok(None)
}

/// Step 3: `bpf-linker`, built against Debian's LLVM 22, which links the BPF object.
fn bpf_linker() -> Result<()> {
    if let Some((version, path)) = find_bpf_linker()? {
        eprintln!("ok: {version} present ({})", path.display());
        return Ok(());
    }
    eprintln!("installing: bpf-linker {BPF_LINKER_VERSION} (cargo install, built against LLVM 22)");
    let llvm_config = Path::new(LLVM_BIN).join("llvm-config");
    if !llvm_config.exists() {
        bail!(
            "{} not found: bpf-linker is built against LLVM 22 from the Debian packages \
             ({}); install them first",
            llvm_config.display(),
            DEBIAN_PACKAGES.join(" ")
        );
    }
    run(cargo()
        .env("PATH", path_with(&[PathBuf::from(LLVM_BIN)])?)
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features", "llvm-22"]))?;
    match find_bpf_linker()? {
        Some((version, path)) => {
            eprintln!("ok: {version} installed ({})", path.display());
            Ok(())
        }
        None => bail!("cargo install finished but `bpf-linker --version` still does not run"),
    }
}

/// True when tracefs is mounted at [`TRACEFS`], according to `/proc/mounts`.
fn tracefs_mounted() -> Result<bool> {
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    Ok(mounts.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&TRACEFS) && fields.get(2) == Some(&"tracefs")
    }))
}

/// Step 4: the tracing filesystem, mounted where the kernel's uprobe interface lives.
fn tracefs() -> Result<()> {
    if tracefs_mounted()? {
        eprintln!("ok: tracefs mounted at {TRACEFS}");
        return Ok(());
    }
    eprintln!("mounting: tracefs at {TRACEFS}");
    if !Path::new(TRACEFS).is_dir() {
        bail!("{TRACEFS} does not exist: is this kernel built with tracefs (CONFIG_TRACING)?");
    }
    process::require_root(&format!("mounting tracefs at {TRACEFS}"))?;
    run(Command::new("mount").args(["-t", "tracefs", "tracefs", TRACEFS]))?;
    eprintln!("ok: tracefs mounted at {TRACEFS}");
    Ok(())
}
