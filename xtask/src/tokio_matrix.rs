//! The Tokio version matrix: the fixture apps' own sources (`tests/fixtures/src`)
//! built against older Tokio versions, in the profiles the tests trace.
//!
//! For each version, a crate is generated under [`MATRIX_DIR`] from
//! `tests/fixtures/Cargo.toml` with the Tokio version substituted, `[lib]` and
//! `[[bin]]` paths pointing at the fixture sources (nothing is copied), and bins
//! named `<bin>-tokio-<version with dashes>` (`multi_thread-tokio-1-43-4`). All versions share one target directory, so
//! serde_json and the rest are built once per profile. The fixtures' own Tokio
//! (1.54.1) is the matrix's newest row and is built in `tests/fixtures` itself.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use crate::process::{cargo, run};

/// Where the generated crates and their shared target directory go, relative to
/// the workspace root.
pub const MATRIX_DIR: &str = "target/tokio-matrix";

/// The older Tokio versions built, and whether each has the task poll hooks
/// (`on_before_task_poll`/`on_after_task_poll` appeared in Tokio 1.44).
pub const VERSIONS: [(&str, bool); 2] = [("1.43.4", false), ("1.47.5", true)];

/// The fixture bins of the matrix (sources in `tests/fixtures/src/bin`).
const BINS: [&str; 2] = ["multi_thread", "current_thread"];

/// The cargo arguments of each matrix build: debug, release, release with fat LTO
/// and one codegen unit, and release with thin LTO (profiles of
/// `tests/fixtures/Cargo.toml`).
pub const PROFILES: [&[&str]; 4] = [
    &["build"],
    &["build", "--release"],
    &["build", "--profile", "release-lto"],
    &["build", "--profile", "release-thin-lto"],
];

/// Writes the crate of every version (only files whose text changed, so cargo
/// rebuilds nothing needlessly), then builds each in every profile.
pub fn build(root: &Path, clear_env: &[&str]) -> Result<()> {
    let matrix = root.join(MATRIX_DIR);
    let template_path = root.join("tests/fixtures/Cargo.toml");
    let template = fs::read_to_string(&template_path)
        .with_context(|| format!("cannot read {}", template_path.display()))?;
    let config = fs::read_to_string(root.join("tests/fixtures/.cargo/config.toml"))
        .context("cannot read tests/fixtures/.cargo/config.toml")?;
    let mut crates = Vec::new();
    for (version, poll_hooks) in VERSIONS {
        let dir = matrix.join(format!("tokio-{version}"));
        write_if_changed(
            &dir.join("Cargo.toml"),
            &manifest(&template, root, version, poll_hooks)?,
        )?;
        write_if_changed(&dir.join(".cargo/config.toml"), &config)?;
        // Start from the fixtures' lock file, so every crate but Tokio (and what
        // only it needs) stays at the versions the fixtures are tested with.
        let lock = dir.join("Cargo.lock");
        if !lock.exists() {
            fs::copy(root.join("tests/fixtures/Cargo.lock"), &lock)
                .with_context(|| format!("cannot write {}", lock.display()))?;
        }
        crates.push(dir);
    }
    for args in PROFILES {
        for dir in &crates {
            let mut cmd = cargo();
            for var in clear_env {
                cmd.env_remove(var);
            }
            cmd.current_dir(dir)
                .args(args)
                .env("CARGO_TARGET_DIR", matrix.join("target"));
            run(&mut cmd)?;
        }
    }
    Ok(())
}

/// Whether Tokio `version` ("1.47.5") has `TaskMeta::spawned_at()` (1.46.1 on).
fn has_spawned_at(version: &str) -> bool {
    let mut parts = version
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    (major, minor, patch) >= (1, 46, 1)
}

/// The fixtures' manifest for Tokio `version`: its own package name, Tokio pinned
/// to `version`, the poll hooks feature on only where Tokio has them, the
/// schedule-latency feature off (no matrix version has it), path
/// dependencies made absolute, and explicit targets on the fixture sources.
fn manifest(template: &str, root: &Path, version: &str, poll_hooks: bool) -> Result<String> {
    let root = root.display();
    let mut text = replace_once(
        template,
        "name = \"tracer-fixtures\"",
        &format!(
            "name = \"tracer-fixtures-tokio-{}\"",
            version.replace('.', "-")
        ),
    )?;
    text = replace_once(
        &text,
        "tokio = { version = \"=1.54.1\"",
        &format!("tokio = {{ version = \"={version}\""),
    )?;
    // Tokio's `schedule-latency` feature is newer than every matrix version;
    // `TaskMeta::spawned_at()` appeared in 1.46.1.
    let mut features = Vec::new();
    if poll_hooks {
        features.push("\"task_poll_hooks\"");
    }
    if has_spawned_at(version) {
        features.push("\"spawned_at\"");
    }
    text = replace_once(
        &text,
        "default = [\"task_poll_hooks\", \"schedule_latency\", \"spawned_at\"]",
        &format!("default = [{}]", features.join(", ")),
    )?;
    text = replace_once(
        &text,
        "schedule_latency = [\"tokio/schedule-latency\"]",
        "schedule_latency = []",
    )?;
    text = text.replace("path = \"../../", &format!("path = \"{root}/"));
    let mut out = format!(
        "# Generated by `cargo xtask build` from tests/fixtures/Cargo.toml, for Tokio {version}.\n{text}\n\
         [lib]\nname = \"tracer_fixtures\"\npath = \"{root}/tests/fixtures/src/lib.rs\"\n"
    );
    for bin in BINS {
        out += &format!(
            "\n[[bin]]\nname = \"{}\"\npath = \"{root}/tests/fixtures/src/bin/{bin}.rs\"\n",
            bin_name(bin, version)
        );
    }
    Ok(out)
}

/// The name of fixture `bin` built against Tokio `version` (a bin name, which
/// becomes a crate name, cannot contain dots).
fn bin_name(bin: &str, version: &str) -> String {
    format!("{bin}-tokio-{}", version.replace('.', "-"))
}

/// `text` with its one occurrence of `from` replaced; an error if there is not
/// exactly one (the template changed: the generator must be updated with it).
fn replace_once(text: &str, from: &str, to: &str) -> Result<String> {
    match text.matches(from).count() {
        1 => Ok(text.replacen(from, to, 1)),
        n => bail!(
            "tests/fixtures/Cargo.toml has {n} occurrences of `{from}`, expected 1: update xtask/src/tokio_matrix.rs"
        ),
    }
}

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    let dir: PathBuf = path.parent().context("a file path has a parent")?.into();
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> String {
        let root = crate::workspace_root().unwrap();
        fs::read_to_string(root.join("tests/fixtures/Cargo.toml")).unwrap()
    }

    #[test]
    fn manifest_pins_the_version_and_points_at_the_fixture_sources() {
        let text = manifest(&template(), Path::new("/r"), "1.43.4", false).unwrap();
        assert!(text.contains("tokio = { version = \"=1.43.4\""), "{text}");
        assert!(!text.contains("1.54.1"), "{text}");
        assert!(text.contains("default = []"), "{text}");
        assert!(
            text.contains("path = \"/r/tests/fixtures/src/lib.rs\""),
            "{text}"
        );
        assert!(
            text.contains("name = \"multi_thread-tokio-1-43-4\""),
            "{text}"
        );
        assert!(text.contains("path = \"/r/tracer-resource\""), "{text}");
        let with_hooks = manifest(&template(), Path::new("/r"), "1.47.5", true).unwrap();
        assert!(with_hooks.contains("default = [\"task_poll_hooks\", \"spawned_at\"]"));
        assert!(
            !with_hooks.contains("tokio/schedule-latency"),
            "{with_hooks}"
        );
    }

    #[test]
    fn a_template_without_the_expected_line_is_an_error() {
        let err = manifest("[package]\n", Path::new("/r"), "1.43.4", false).unwrap_err();
        assert!(format!("{err}").contains("update xtask"), "{err}");
    }
}
