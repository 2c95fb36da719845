//! `cargo xtask setup`: install what building and testing tracer needs, and nothing
//! when it is already there. One status line per item on stderr, with the time each
//! install took, for example
//! `ok: bpf-linker 0.13.0 present (/root/.cargo/bin/bpf-linker)` or
//! `ok: bpf-linker 0.13.0 installed in 41.2 s (/root/.cargo/bin/bpf-linker)`.
//!
//! Every install step builds its command in one function, used both to install and
//! to rehearse: `setup --rehearse` runs each install command for real into
//! throwaway places (a temporary `cargo install --root`, a temporary `RUSTUP_HOME`,
//! apt's simulate mode, a temporary mount point; and `cargo xtask fuzz`'s install of
//! cargo-fuzz), even on a machine where everything
//! is present. CI runs it, so a broken install step fails CI on every machine, not
//! only on bare ones.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail};

use crate::process::{self, cargo, cargo_bin_dir, is_root, path_with, probe, run, stdout_of};

/// Debian packages that `bpf-linker` is built and linked against.
pub const BUILD_PACKAGES: [&str; 4] = [
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];

/// Debian packages only the tests use: `chromium` renders the SVG export (headless),
/// `tmux` is the terminal `tracer top` is driven in.
pub const TEST_PACKAGES: [&str; 2] = ["chromium", "tmux"];

/// The Go versions the Go fixtures are built with: 1.19 from Debian 12 main, the
/// others from bookworm-backports (see [`BACKPORTS_SUITE`]). Each installs its `go`
/// at `/usr/lib/go-VERSION/bin/go`.
pub const GO_VERSIONS: [&str; 4] = ["1.19", "1.21", "1.22", "1.23"];

/// The Debian packages of [`GO_VERSIONS`], in the same order.
pub const GO_PACKAGES: [&str; 4] = [
    "golang-1.19-go",
    "golang-1.21-go",
    "golang-1.22-go",
    "golang-1.23-go",
];

/// The suite that holds Go 1.21, 1.22 and 1.23 for Debian 12.
pub const BACKPORTS_SUITE: &str = "bookworm-backports";

/// The sources entry setup writes when no source names [`BACKPORTS_SUITE`].
pub const BACKPORTS_LIST: &str = "/etc/apt/sources.list.d/bookworm-backports.list";

/// The mirror of the backports entry when the machine's sources name none.
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// `go` of one of [`GO_VERSIONS`], where its Debian package installs it.
pub fn go_binary(version: &str) -> PathBuf {
    PathBuf::from(format!("/usr/lib/go-{version}/bin/go"))
}

/// Where Debian's LLVM 22 keeps `llvm-config`; put first on PATH for `cargo install`.
pub const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

/// The toolchain that builds the BPF programs (`-Z build-std` needs nightly's
/// `rust-src`), pinned so that its LLVM is the one bpf-linker is built against.
pub const BPF_TOOLCHAIN: &str = tracer_ebpf::TOOLCHAIN;

/// The `bpf-linker` release series whose `llvm-22` feature matches [`LLVM_BIN`], as a
/// cargo version requirement (`cargo install --version` takes a requirement, and
/// rejects a bare `0.13`).
pub const BPF_LINKER_VERSION: &str = "^0.13";

/// Where uprobe attachment may need the kernel's tracing filesystem.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// What a setup run is for: the packages differ (the demo and `install` need no
/// browser), the toolchain steps do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Building tracer: `cargo xtask demo`, `cargo xtask install`, `setup --build-only`.
    Build,
    /// Building tracer and running its tests: `cargo xtask test`, plain `setup`.
    Test,
}

impl Scope {
    /// The Debian packages this scope needs.
    fn packages(self) -> Vec<&'static str> {
        let mut packages = BUILD_PACKAGES.to_vec();
        if self == Scope::Test {
            packages.extend(TEST_PACKAGES);
            packages.extend(GO_PACKAGES);
        }
        packages
    }
}

/// Runs every setup step of `scope` in order; stops at the first that fails.
pub fn setup(scope: Scope) -> Result<()> {
    if scope == Scope::Test {
        step(
            "bookworm-backports sources entry (Go 1.21+)",
            backports_source,
        )?;
    }
    step("Debian packages", || debian_packages(scope))?;
    step("nightly toolchain and rust-src", nightly_rust_src)?;
    step("bpf-linker", bpf_linker)?;
    step("tracefs", tracefs)?;
    if scope == Scope::Test {
        step("Debian's Node.js 18 (unpacked for the Node tests)", || {
            crate::node18::setup(&workspace_root()?)
        })?;
    }
    Ok(())
}

/// The workspace root: the parent of xtask's directory.
fn workspace_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest directory has no parent")
}

/// Runs every install command of every step for real, into throwaway places, and
/// checks what it produced: what CI runs to prove that setup works on a bare machine.
pub fn rehearse() -> Result<()> {
    let scratch = Scratch::new()?;
    step("rehearsal: bookworm-backports sources entry and Go", || {
        rehearse_backports(&scratch.dir)
    })?;
    step("rehearsal: Debian packages", || {
        rehearse_debian_packages(Scope::Test)
    })?;
    step("rehearsal: nightly toolchain", || {
        rehearse_nightly(&scratch.dir)
    })?;
    step("rehearsal: bpf-linker", || {
        rehearse_bpf_linker(&scratch.dir)
    })?;
    step("rehearsal: tracefs", || rehearse_tracefs(&scratch.dir))?;
    step("rehearsal: Debian's Node.js 18", || {
        crate::node18::rehearse(&scratch.dir)
    })?;
    step("rehearsal: cargo-fuzz (for `cargo xtask fuzz`)", || {
        rehearse_cargo_fuzz(&scratch.dir)
    })?;
    eprintln!("ok: every setup install step ran and produced what setup expects");
    Ok(())
}

/// Runs one step, naming it in the error when it fails.
fn step(what: &str, body: impl FnOnce() -> Result<()>) -> Result<()> {
    body().with_context(|| format!("setup step failed: {what}"))
}

/// Runs an install command, timed: returns the seconds it took. On failure the error
/// holds the exact command, as one copy-pasteable shell line, and `hint`.
fn install(cmd: &mut Command, hint: &str) -> Result<f64> {
    let started = Instant::now();
    run(cmd).with_context(|| format!("to retry by hand: {}\n{hint}", process::shell_line(cmd)))?;
    Ok(started.elapsed().as_secs_f64())
}

/// A temporary directory for rehearsals, removed when dropped.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new() -> Result<Self> {
        let dir = env::temp_dir().join(format!("tracer-setup-rehearsal-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

// ---- Debian packages ----

/// The installed version of a Debian package, or `None` when it is not installed.
fn installed_version(package: &str) -> Result<Option<String>> {
    let Some(output) =
        probe(Command::new("dpkg-query").args(["-W", "-f=${Status}\t${Version}", package]))?
    else {
        bail!(
            "dpkg-query not found: setup installs Debian packages ({}); on another \
             distribution install LLVM 22 with its dev files and Polly, and the zstd and \
             zlib dev files (and Chromium for the tests), then run setup again",
            Scope::Test.packages().join(" ")
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

/// `apt-get update`: the package lists `apt-get install` resolves names against.
fn apt_update() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.arg("update");
    cmd
}

/// `apt-get install -y PACKAGES`, non-interactive.
fn apt_install(packages: &[&str]) -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y"])
        .args(packages);
    cmd
}

/// With `apt`'s sources and package lists moved to `config` (a scratch copy of
/// the machine's), so that rehearsing a new sources entry leaves the machine's
/// own apt state alone. The `-o` options go before the subcommand.
fn with_apt_config(mut cmd: Command, config: &AptConfig) -> Command {
    let mut moved = Command::new(cmd.get_program());
    for (name, value) in cmd.get_envs() {
        if let Some(value) = value {
            moved.env(name, value);
        }
    }
    moved.args(config.options());
    moved.args(cmd.get_args());
    cmd = moved;
    cmd
}

/// Where a rehearsal keeps its own apt sources and package lists.
struct AptConfig {
    /// Holds copies of the machine's sources plus the entry being rehearsed.
    sources_dir: PathBuf,
    /// The package lists `apt-get update` downloads for those sources.
    lists_dir: PathBuf,
}

impl AptConfig {
    fn options(&self) -> Vec<String> {
        vec![
            "-o".into(),
            "Dir::Etc::SourceList=/dev/null".into(),
            "-o".into(),
            format!("Dir::Etc::SourceParts={}", self.sources_dir.display()),
            "-o".into(),
            format!("Dir::State::Lists={}", self.lists_dir.display()),
        ]
    }
}

const APT_HINT: &str = "check that the machine reaches Debian's mirrors (apt-get update) and \
    that the package names exist in Debian 12 (apt-cache policy NAME)";

/// Step 1: LLVM 22 and the libraries `bpf-linker` links to (and Chromium for the
/// tests), from Debian.
fn debian_packages(scope: Scope) -> Result<()> {
    let mut missing = Vec::new();
    for package in scope.packages() {
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
    let seconds =
        install(&mut apt_update(), APT_HINT)? + install(&mut apt_install(&missing), APT_HINT)?;
    for package in missing {
        match installed_version(package)? {
            Some(version) => eprintln!("ok: {package} {version} installed in {seconds:.1} s"),
            None => bail!("apt-get finished but {package} is still not installed"),
        }
    }
    Ok(())
}

/// The packages step's commands with apt's simulate mode: every name must resolve
/// and every dependency be satisfiable, whether or not the package is installed.
fn rehearse_debian_packages(scope: Scope) -> Result<()> {
    process::require_root("rehearsing `apt-get update`")?;
    install(&mut apt_update(), APT_HINT)?;
    let packages = scope.packages();
    let seconds = install(apt_install(&packages).arg("--simulate"), APT_HINT)?;
    eprintln!(
        "ok: apt-get would install {} ({seconds:.1} s, simulated)",
        packages.join(" ")
    );
    Ok(())
}

// ---- bookworm-backports sources entry (Go 1.21, 1.22, 1.23) ----

/// The machine's apt sources files: `/etc/apt/sources.list` and every `*.list` and
/// `*.sources` file in `/etc/apt/sources.list.d`, with their text.
fn apt_sources() -> Result<Vec<(PathBuf, String)>> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut parts: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                path.extension()
                    .is_some_and(|ext| ext == "list" || ext == "sources")
            })
            .collect();
        parts.sort();
        files.extend(parts);
    }
    Ok(files
        .into_iter()
        .filter_map(|path| fs::read_to_string(&path).ok().map(|text| (path, text)))
        .collect())
}

/// Whether the sources text (one-line `.list` or deb822 `.sources` format) has an
/// enabled entry for `suite`.
fn names_suite(text: &str, suite: &str) -> bool {
    // A deb822 stanza can be disabled with `Enabled: no`; a one-line entry by `#`.
    text.split("\n\n").any(|stanza| {
        let disabled = stanza
            .lines()
            .any(|line| line.trim().eq_ignore_ascii_case("enabled: no"));
        !disabled
            && stanza.lines().any(|line| {
                let line = line.trim();
                if line.starts_with('#') {
                    return false;
                }
                let words = line
                    .strip_prefix("Suites:")
                    .or_else(|| line.strip_prefix("deb "))
                    .unwrap_or("");
                words.split_whitespace().any(|word| word == suite)
            })
    })
}

/// The Debian mirror the sources use for `bookworm` itself (not security), so the
/// backports entry comes from the same place; `None` when no source names one.
fn debian_mirror(text: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let mut uris = Vec::new();
        let mut bookworm = false;
        for line in stanza.lines().map(str::trim) {
            if line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix("URIs:") {
                uris.extend(rest.split_whitespace().map(str::to_owned));
            } else if let Some(rest) = line.strip_prefix("Suites:") {
                bookworm |= rest.split_whitespace().any(|suite| suite == "bookworm");
            } else if let Some(rest) = line.strip_prefix("deb ") {
                // `deb [options] URI SUITE COMPONENTS...`
                let rest = match rest.trim_start().strip_prefix('[') {
                    Some(after) => after.split_once(']').map_or("", |(_, tail)| tail),
                    None => rest,
                };
                let mut words = rest.split_whitespace();
                if let (Some(uri), Some("bookworm")) = (words.next(), words.next()) {
                    return Some(uri.to_owned());
                }
            }
        }
        if bookworm && let Some(uri) = uris.into_iter().next() {
            return Some(uri);
        }
    }
    None
}

/// The one-line sources entry for [`BACKPORTS_SUITE`] on `mirror`, signed by the
/// Debian archive keyring as Debian's own entries are.
fn backports_entry(mirror: &str) -> String {
    format!(
        "# Go 1.21, 1.22 and 1.23 for tracer's tests (cargo xtask setup)\n\
         deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {BACKPORTS_SUITE} main\n"
    )
}

/// Writes [`backports_entry`] for the machine's mirror into `dir`, as the file name
/// of [`BACKPORTS_LIST`]; returns the file written. Setup writes into
/// `/etc/apt/sources.list.d`, the rehearsal into a scratch copy of it.
fn write_backports_entry(dir: &Path, sources: &[(PathBuf, String)]) -> Result<PathBuf> {
    let mirror = sources
        .iter()
        .find_map(|(_, text)| debian_mirror(text))
        .unwrap_or_else(|| DEFAULT_MIRROR.to_owned());
    let name = Path::new(BACKPORTS_LIST)
        .file_name()
        .context("BACKPORTS_LIST names no file")?;
    let file = dir.join(name);
    fs::write(&file, backports_entry(&mirror))
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

/// Step 0 (tests only): an apt sources entry for bookworm-backports, where Debian 12
/// keeps Go 1.21, 1.22 and 1.23. Left alone when any source already names the suite.
fn backports_source() -> Result<()> {
    let sources = apt_sources()?;
    if let Some((path, _)) = sources
        .iter()
        .find(|(_, text)| names_suite(text, BACKPORTS_SUITE))
    {
        eprintln!(
            "ok: {BACKPORTS_SUITE} in apt's sources ({})",
            path.display()
        );
        return Ok(());
    }
    process::require_root(&format!("adding {BACKPORTS_LIST}"))?;
    let dir = Path::new(BACKPORTS_LIST)
        .parent()
        .context("BACKPORTS_LIST has no directory")?;
    let file = write_backports_entry(dir, &sources)?;
    eprintln!(
        "ok: {BACKPORTS_SUITE} added to apt's sources ({}); the packages step runs apt-get update",
        file.display()
    );
    Ok(())
}

/// Step 0 and the Go packages for real against a scratch copy of apt's sources with
/// the entry setup would write (whether or not the machine has one): `apt-get
/// update` into scratch package lists, then `apt-get install --simulate` of every Go
/// package, so a wrong mirror, suite or package name fails here.
fn rehearse_backports(scratch: &Path) -> Result<()> {
    process::require_root("rehearsing `apt-get update`")?;
    let config = AptConfig {
        sources_dir: scratch.join("apt-sources"),
        lists_dir: scratch.join("apt-lists"),
    };
    fs::create_dir_all(config.lists_dir.join("partial"))
        .with_context(|| format!("creating {}", config.lists_dir.display()))?;
    fs::create_dir_all(&config.sources_dir)
        .with_context(|| format!("creating {}", config.sources_dir.display()))?;
    let sources = apt_sources()?;
    for (index, (path, text)) in sources.iter().enumerate() {
        if names_suite(text, BACKPORTS_SUITE) {
            continue;
        }
        // Keep the format apt recognises by extension; `sources.list` is one-line.
        let ext = if path.extension().is_some_and(|ext| ext == "sources") {
            "sources"
        } else {
            "list"
        };
        let copy = config.sources_dir.join(format!("{index:02}-machine.{ext}"));
        fs::write(&copy, text).with_context(|| format!("writing {}", copy.display()))?;
    }
    let entry = write_backports_entry(&config.sources_dir, &sources)?;
    let seconds = install(&mut with_apt_config(apt_update(), &config), APT_HINT)?;
    let mut simulate = with_apt_config(apt_install(&GO_PACKAGES), &config);
    let seconds = seconds + install(simulate.arg("--simulate"), APT_HINT)?;
    eprintln!(
        "ok: with {} apt-get would install {} ({seconds:.1} s, simulated)",
        fs::read_to_string(&entry)?
            .lines()
            .last()
            .unwrap_or_default(),
        GO_PACKAGES.join(" ")
    );
    Ok(())
}

// ---- nightly toolchain and rust-src ----

/// The host triple of the default toolchain, e.g. `x86_64-unknown-linux-gnu`.
fn host_triple() -> Result<String> {
    let verbose = stdout_of(Command::new("rustc").arg("-vV"))?;
    verbose
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(|host| host.trim().to_owned())
        .context("`rustc -vV` printed no `host:` line")
}

/// `rustup toolchain install nightly --profile minimal --component rust-src`.
fn nightly_install() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args([
        "toolchain",
        "install",
        BPF_TOOLCHAIN,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]);
    cmd
}

/// `rustup component add rust-src --toolchain nightly`.
fn rust_src_add() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["component", "add", "rust-src", "--toolchain", BPF_TOOLCHAIN]);
    cmd
}

/// `rustc --version` of the nightly toolchain (in `rustup_home`, else the user's),
/// after checking that its LLVM is the one bpf-linker is built against.
fn nightly_version(rustup_home: Option<&Path>) -> Result<String> {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", BPF_TOOLCHAIN, "rustc", "-vV"]);
    if let Some(home) = rustup_home {
        cmd.env("RUSTUP_HOME", home);
    }
    let verbose = stdout_of(&mut cmd)?;
    let llvm =
        llvm_major(&verbose).context("`rustc -vV` of the BPF toolchain names no LLVM version")?;
    if llvm != tracer_ebpf::LLVM_MAJOR {
        bail!(
            "{BPF_TOOLCHAIN} uses LLVM {llvm}, but bpf-linker is built against LLVM {}: its \
             bitcode would not link (\"Invalid record\"); pin a nightly with LLVM {0} in \
             tracer-ebpf/src/lib.rs (TOOLCHAIN)",
            tracer_ebpf::LLVM_MAJOR
        );
    }
    let version = verbose.lines().next().unwrap_or_default().trim();
    Ok(format!("{version}, LLVM {llvm}"))
}

/// The LLVM major version in `rustc -vV` output (`LLVM version: 22.1.4` → 22).
fn llvm_major(rustc_verbose: &str) -> Option<u32> {
    rustc_verbose
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))?
        .split('.')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Whether the nightly toolchain (in `rustup_home`, else the user's) has `rust-src`.
fn has_rust_src(rustup_home: Option<&Path>) -> Result<bool> {
    let mut cmd = Command::new("rustup");
    cmd.args([
        "component",
        "list",
        "--toolchain",
        BPF_TOOLCHAIN,
        "--installed",
    ]);
    if let Some(home) = rustup_home {
        cmd.env("RUSTUP_HOME", home);
    }
    // The line is `rust-src` (no target suffix: the source is the same for all).
    Ok(stdout_of(&mut cmd)?
        .lines()
        .any(|line| line.trim() == "rust-src"))
}

const RUSTUP_HINT: &str = "check that the machine reaches static.rust-lang.org, and that \
    `rustup --version` runs";

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
        let seconds = install(&mut nightly_install(), RUSTUP_HINT)?;
        eprintln!("ok: {} installed in {seconds:.1} s", nightly_version(None)?);
    } else if !has_rust_src(None)? {
        eprintln!("installing: rust-src for {toolchain} (rustup)");
        let seconds = install(&mut rust_src_add(), RUSTUP_HINT)?;
        eprintln!("ok: rust-src for {BPF_TOOLCHAIN} installed in {seconds:.1} s");
    }
    if !has_rust_src(None)? {
        bail!("rustup finished but the {toolchain} toolchain still lacks rust-src");
    }
    eprintln!(
        "ok: rust-src for {BPF_TOOLCHAIN} ({}) present",
        nightly_version(None)?
    );
    Ok(())
}

/// Both rustup commands of step 2, for real: the toolchain install into a fresh
/// `RUSTUP_HOME` under `scratch` (what a machine without nightly runs), then the
/// component add against the user's own nightly (a no-op when it is there, but the
/// same command, so a wrong component or toolchain name fails).
fn rehearse_nightly(scratch: &Path) -> Result<()> {
    let home = scratch.join("rustup-home");
    let seconds = install(nightly_install().env("RUSTUP_HOME", &home), RUSTUP_HINT)?;
    if !has_rust_src(Some(&home))? {
        bail!(
            "a fresh `{}` gave no rust-src",
            process::shell_line(&nightly_install())
        );
    }
    eprintln!(
        "ok: a fresh {} with rust-src installs ({seconds:.1} s)",
        nightly_version(Some(&home))?
    );
    let seconds = install(&mut rust_src_add(), RUSTUP_HINT)?;
    eprintln!(
        "ok: `{}` runs ({seconds:.1} s)",
        process::shell_line(&rust_src_add())
    );
    Ok(())
}

// ---- bpf-linker ----

/// `bpf-linker`'s version and path: on PATH first, else in cargo's bin directory.
fn find_bpf_linker() -> Result<Option<(String, PathBuf)>> {
    let path = env::var_os("PATH").unwrap_or_default();
    let mut candidates: Vec<PathBuf> = env::split_paths(&path)
        .map(|dir| dir.join("bpf-linker"))
        .filter(|file| file.is_file())
        .collect();
    candidates.extend(cargo_bin_dir().map(|dir| dir.join("bpf-linker")));
    for candidate in candidates {
        if let Some(version) = bpf_linker_version(&candidate)? {
            return Ok(Some((version, candidate)));
        }
    }
    Ok(None)
}

/// What `binary --version` prints ("bpf-linker 0.13.0"), or `None` if it does not run.
fn bpf_linker_version(binary: &Path) -> Result<Option<String>> {
    let Some(output) = probe(Command::new(binary).arg("--version"))? else {
        return Ok(None);
    };
    Ok(output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned()))
}

/// `cargo install bpf-linker` at [`BPF_LINKER_VERSION`] against LLVM 22, into
/// `root` (cargo's default, `~/.cargo`, when `None`).
fn bpf_linker_install(root: Option<&Path>) -> Result<Command> {
    let mut cmd = cargo();
    cmd.env("PATH", path_with(&[PathBuf::from(LLVM_BIN)])?)
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features", "llvm-22"]);
    if let Some(root) = root {
        cmd.arg("--root").arg(root);
    }
    Ok(cmd)
}

const BPF_LINKER_HINT: &str = "bpf-linker builds against LLVM 22: check that \
    /usr/lib/llvm-22/bin/llvm-config exists (the Debian packages step), that crates.io is \
    reachable, and that the version requirement is one cargo accepts";

/// Fails unless LLVM 22's `llvm-config` is where [`bpf_linker_install`] looks.
fn require_llvm() -> Result<()> {
    let llvm_config = Path::new(LLVM_BIN).join("llvm-config");
    if !llvm_config.exists() {
        bail!(
            "{} not found: bpf-linker is built against LLVM 22 from the Debian packages \
             ({}); install them first",
            llvm_config.display(),
            BUILD_PACKAGES.join(" ")
        );
    }
    Ok(())
}

/// Step 3: `bpf-linker`, built against Debian's LLVM 22, which links the BPF object.
fn bpf_linker() -> Result<()> {
    if let Some((version, path)) = find_bpf_linker()? {
        eprintln!("ok: {version} present ({})", path.display());
        return Ok(());
    }
    eprintln!(
        "installing: bpf-linker {BPF_LINKER_VERSION} (cargo install, built against LLVM 22, about a minute)"
    );
    require_llvm()?;
    let seconds = install(&mut bpf_linker_install(None)?, BPF_LINKER_HINT)?;
    match find_bpf_linker()? {
        Some((version, path)) => {
            eprintln!(
                "ok: {version} installed in {seconds:.1} s ({})",
                path.display()
            );
            Ok(())
        }
        None => bail!("cargo install finished but `bpf-linker --version` still does not run"),
    }
}

/// Step 3's command for real, into a throwaway `--root`: it must build, and the
/// binary must run and be of the required release series.
fn rehearse_bpf_linker(scratch: &Path) -> Result<()> {
    require_llvm()?;
    let root = scratch.join("cargo-root");
    let seconds = install(&mut bpf_linker_install(Some(&root))?, BPF_LINKER_HINT)?;
    let binary = root.join("bin/bpf-linker");
    let Some(version) = bpf_linker_version(&binary)? else {
        bail!(
            "`cargo install` finished but {} does not run",
            binary.display()
        );
    };
    let series = BPF_LINKER_VERSION.trim_start_matches('^');
    if !version.starts_with(&format!("bpf-linker {series}.")) {
        bail!("`cargo install` built {version}, not the {series} series setup asks for");
    }
    eprintln!("ok: {version} builds from crates.io against LLVM 22 ({seconds:.1} s)");
    Ok(())
}

/// `cargo xtask fuzz`'s install of cargo-fuzz, for real, into a throwaway `--root`.
fn rehearse_cargo_fuzz(scratch: &Path) -> Result<()> {
    let root = scratch.join("cargo-fuzz-root");
    let seconds = install(
        &mut crate::fuzz::cargo_fuzz_install(Some(&root)),
        "check that crates.io is reachable",
    )?;
    let version = stdout_of(Command::new(root.join("bin/cargo-fuzz")).arg("--version"))?;
    eprintln!(
        "ok: {} builds from crates.io ({seconds:.1} s)",
        version.trim()
    );
    Ok(())
}

// ---- tracefs ----

/// True when tracefs is mounted at `dir`, according to `/proc/mounts`.
fn tracefs_mounted_at(dir: &Path) -> Result<bool> {
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    Ok(mounts.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1).map(Path::new) == Some(dir) && fields.get(2) == Some(&"tracefs")
    }))
}

/// `mount -t tracefs tracefs DIR`.
fn tracefs_mount(dir: &Path) -> Command {
    let mut cmd = Command::new("mount");
    cmd.args(["-t", "tracefs", "tracefs"]).arg(dir);
    cmd
}

const TRACEFS_HINT: &str = "mounting needs root (CAP_SYS_ADMIN) and a kernel with tracefs \
    (CONFIG_TRACING)";

/// Step 4: the tracing filesystem, mounted where the kernel's uprobe interface lives.
fn tracefs() -> Result<()> {
    let dir = Path::new(TRACEFS);
    if tracefs_mounted_at(dir)? {
        eprintln!("ok: tracefs mounted at {TRACEFS}");
        return Ok(());
    }
    eprintln!("mounting: tracefs at {TRACEFS}");
    if !dir.is_dir() {
        bail!("{TRACEFS} does not exist: is this kernel built with tracefs (CONFIG_TRACING)?");
    }
    process::require_root(&format!("mounting tracefs at {TRACEFS}"))?;
    install(&mut tracefs_mount(dir), TRACEFS_HINT)?;
    eprintln!("ok: tracefs mounted at {TRACEFS}");
    Ok(())
}

/// Step 4's command for real, on a scratch mount point, unmounted afterwards.
fn rehearse_tracefs(scratch: &Path) -> Result<()> {
    process::require_root("rehearsing the tracefs mount")?;
    let dir = scratch.join("tracefs");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    install(&mut tracefs_mount(&dir), TRACEFS_HINT)?;
    let mounted = tracefs_mounted_at(&dir)?;
    let has_uprobe_events = dir.join("uprobe_events").exists();
    run(Command::new("umount").arg(&dir))?;
    if !mounted || !has_uprobe_events {
        bail!(
            "`mount -t tracefs` ran but {} holds no tracefs with uprobe_events",
            dir.display()
        );
    }
    eprintln!("ok: tracefs mounts (uprobe_events present)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpf_linker_version_is_a_requirement_cargo_accepts() {
        // The bug this guards against: `--version 0.13` made every bare machine's
        // setup fail ("unexpected end of input while parsing minor version number").
        let requirement = semver::VersionReq::parse(BPF_LINKER_VERSION)
            .unwrap_or_else(|e| panic!("cargo rejects `--version {BPF_LINKER_VERSION}`: {e}"));
        assert!(requirement.matches(&semver::Version::new(0, 13, 0)));
        assert!(!requirement.matches(&semver::Version::new(0, 14, 0)));
    }

    #[test]
    fn the_llvm_major_version_is_read_from_rustc() {
        let verbose =
            "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(verbose), Some(22));
        assert_eq!(llvm_major("rustc 1.0.0\n"), None);
    }

    #[test]
    fn the_demo_installs_no_browser_and_the_tests_do() {
        assert!(!Scope::Build.packages().contains(&"chromium"));
        assert!(Scope::Test.packages().contains(&"chromium"));
        assert!(
            BUILD_PACKAGES
                .iter()
                .all(|p| Scope::Test.packages().contains(p))
        );
    }

    #[test]
    fn the_tests_install_every_go_and_the_demo_none() {
        for (version, package) in GO_VERSIONS.iter().zip(GO_PACKAGES) {
            assert_eq!(package, format!("golang-{version}-go"));
            assert!(Scope::Test.packages().contains(&package));
            assert!(!Scope::Build.packages().contains(&package));
        }
        assert_eq!(go_binary("1.23"), Path::new("/usr/lib/go-1.23/bin/go"));
    }

    #[test]
    fn the_backports_entry_follows_the_machines_mirror() {
        let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
            URIs: http://ftp.de.debian.org/debian\nSuites: bookworm bookworm-updates\n\
            Components: main\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\n\
            Suites: bookworm-security\nComponents: main\n";
        assert_eq!(
            debian_mirror(deb822).as_deref(),
            Some("http://ftp.de.debian.org/debian")
        );
        assert!(!names_suite(deb822, BACKPORTS_SUITE));
        let one_line = "deb [arch=amd64] http://mirror.example/debian bookworm main\n";
        assert_eq!(
            debian_mirror(one_line).as_deref(),
            Some("http://mirror.example/debian")
        );
        let entry = backports_entry("http://mirror.example/debian");
        assert!(names_suite(&entry, BACKPORTS_SUITE), "{entry}");
        assert!(
            entry.contains(" http://mirror.example/debian bookworm-backports main\n"),
            "{entry}"
        );
        assert!(!names_suite(
            "# deb http://x/debian bookworm-backports main\n",
            BACKPORTS_SUITE
        ));
        assert!(!names_suite(
            "Types: deb\nURIs: http://x/debian\nSuites: bookworm-backports\nEnabled: no\n",
            BACKPORTS_SUITE
        ));
    }

    #[test]
    fn rehearsed_apt_commands_use_the_scratch_sources() {
        let config = AptConfig {
            sources_dir: PathBuf::from("/tmp/s"),
            lists_dir: PathBuf::from("/tmp/l"),
        };
        let line = process::shell_line(&with_apt_config(apt_install(&GO_PACKAGES), &config));
        assert!(
            line.contains("apt-get -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=/tmp/s -o Dir::State::Lists=/tmp/l install -y golang-1.19-go"),
            "{line}"
        );
        assert!(
            line.starts_with("DEBIAN_FRONTEND=noninteractive "),
            "{line}"
        );
    }

    #[test]
    fn the_bpf_linker_rehearsal_installs_into_the_given_root_only() {
        let cmd = bpf_linker_install(Some(Path::new("/tmp/x"))).unwrap();
        let line = process::shell_line(&cmd);
        assert!(
            line.contains("install bpf-linker --version '^0.13'"),
            "{line}"
        );
        assert!(line.ends_with("--root /tmp/x"), "{line}");
        assert!(!process::shell_line(&bpf_linker_install(None).unwrap()).contains("--root"));
    }
}
