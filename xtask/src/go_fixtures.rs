//! The Go fixtures (`tests/go-fixtures`, one Go module, standard library only), built
//! with every Go of [`GO_VERSIONS`] in every [`VARIANTS`] row into
//! `target/go-fixtures/go1.XX/VARIANT/NAME`, where the tests look for them.
//!
//! Offline and as root: the module needs nothing from the proxy (`GOPROXY=off`,
//! `GOFLAGS=-mod=mod`), each Go uses its own toolchain (`GOTOOLCHAIN=local`), and
//! the build cache and GOPATH live under `target/go-fixtures`, not in root's home.
//! `CGO_ENABLED=0` but for the `cgo` variant: the fixtures are pure Go (the `net`
//! package would otherwise link libc through cgo for its resolver); the `cgo`
//! variant is that mixed, dynamically linked build, on purpose.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{
    process::run,
    setup::{GO_VERSIONS, go_binary},
};

/// The Go module of the fixtures, relative to the workspace root.
pub const GO_FIXTURES_DIR: &str = "tests/go-fixtures";

/// Where the builds go, relative to the workspace root.
pub const GO_FIXTURES_TARGET: &str = "target/go-fixtures";

/// Each build variant: its directory name, the `go build` flags that make it, and
/// whether cgo is on. `default` is Go's default (not PIE on amd64), `nodwarf` has
/// symbols but no DWARF, `stripped` neither, `cgo` links libc (a mixed process).
pub const VARIANTS: [(&str, &[&str], bool); 5] = [
    ("default", &[], false),
    ("pie", &["-buildmode=pie"], false),
    ("nodwarf", &["-ldflags=-w"], false),
    ("stripped", &["-ldflags=-s -w"], false),
    ("cgo", &[], true),
];

/// The directory of one version's variant, e.g. `target/go-fixtures/go1.23/pie`.
pub fn out_dir(root: &Path, version: &str, variant: &str) -> PathBuf {
    root.join(GO_FIXTURES_TARGET)
        .join(format!("go{version}"))
        .join(variant)
}

/// `go build FLAGS -o OUT/ ./cmd/...` with Go `version`, inside the module.
fn go_build(root: &Path, version: &str, (flags, cgo): (&[&str], bool), out: &Path) -> Command {
    let state = root.join(GO_FIXTURES_TARGET);
    let mut cmd = Command::new(go_binary(version));
    cmd.current_dir(root.join(GO_FIXTURES_DIR))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", if cgo { "1" } else { "0" })
        .env("GOCACHE", state.join("cache").join(format!("go{version}")))
        .env("GOPATH", state.join("gopath"))
        .env_remove("GOROOT")
        .env_remove("GOOS")
        .env_remove("GOARCH")
        .arg("build")
        .args(flags)
        // A trailing slash makes `-o` a directory: one binary per main package.
        .arg("-o")
        .arg(format!("{}/", out.display()))
        .arg("./cmd/...");
    cmd
}

/// Builds every fixture with every Go in every variant; fails, naming setup, when a
/// Go is not installed.
pub fn build(root: &Path) -> Result<()> {
    let missing: Vec<&str> = GO_VERSIONS
        .iter()
        .copied()
        .filter(|version| !go_binary(version).is_file())
        .collect();
    if !missing.is_empty() {
        bail!(
            "Go {} not installed ({} missing): the Go fixtures are built with each of Go {}; \
             run `cargo xtask setup` (as root) to install them",
            missing.join(", "),
            go_binary(missing[0]).display(),
            GO_VERSIONS.join(", ")
        );
    }
    for version in GO_VERSIONS {
        for (variant, flags, cgo) in VARIANTS {
            let out = out_dir(root, version, variant);
            fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            run(&mut go_build(root, version, (flags, cgo), &out))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::shell_line;

    #[test]
    fn every_version_and_variant_has_its_own_directory_and_flags() {
        let root = Path::new("/w");
        assert_eq!(
            out_dir(root, "1.19", "pie"),
            Path::new("/w/target/go-fixtures/go1.19/pie")
        );
        let line = shell_line(&go_build(
            root,
            "1.23",
            (VARIANTS[3].1, VARIANTS[3].2),
            &out_dir(root, "1.23", "stripped"),
        ));
        assert!(line.contains("GOPROXY=off"), "{line}");
        assert!(line.contains("CGO_ENABLED=0"), "{line}");
        assert!(
            line.contains("GOCACHE=/w/target/go-fixtures/cache/go1.23"),
            "{line}"
        );
        assert!(
            line.ends_with(
                "/usr/lib/go-1.23/bin/go build '-ldflags=-s -w' -o /w/target/go-fixtures/go1.23/stripped/ ./cmd/..."
            ),
            "{line}"
        );
    }
}
