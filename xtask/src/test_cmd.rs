//! `cargo xtask test`: setup, build, then the workspace's tests, as CI runs them.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::Stdio,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    build_cmd::{build, cargo_at_root},
    process::{describe, require_root},
    setup::{Scope, setup},
};

/// Runs setup, the release build, then `cargo test` with `args` appended; fails if
/// any step fails. The integration tests load BPF programs, so this needs root.
///
/// `cargo test` without `--workspace` tests the default members, which are every
/// member but `tracer-ebpf`: that crate is `no_std` BPF code built only for
/// `bpfel-unknown-none` by `tracer-cli`'s build script, and it does not build (or
/// test) for the host.
pub fn test(root: &Path, args: &[String]) -> Result<()> {
    require_root("`cargo xtask test` (the integration tests load BPF programs)")?;
    setup(Scope::Test)?;
    build(root, false)?;
    // `cargo test` builds tracer-cli again (dev profile), so it needs bpf-linker too.
    let mut cmd = cargo_at_root(root)?;
    cmd.arg("test").arg("--no-fail-fast").args(args);
    let line = describe(&cmd);
    eprintln!("+ {line}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{line}`"))?;
    let stdout = child.stdout.take().context("cargo test's stdout")?;
    let mut tally = Tally::default();
    for text in BufReader::new(stdout).lines() {
        let text = text.context("reading cargo test's output")?;
        println!("{text}");
        tally.add(&text);
    }
    let status = child.wait().context("waiting for cargo test")?;
    // One closing line for the whole run: the last binary cargo tests (a doc-test
    // run with no doc tests) would otherwise close the log with "0 passed".
    println!("summary: {} passed, {} failed", tally.passed, tally.failed);
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Test counts summed over every `test result:` line of a cargo test run.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    /// Adds the counts of a line like
    /// `test result: ok. 29 passed; 0 failed; 0 ignored; …`; other lines are ignored.
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(kind), Some(count)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match kind {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_sums_the_result_lines_of_every_test_binary() {
        let mut tally = Tally::default();
        tally.add("test result: ok. 29 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.03s");
        tally.add("running 3 tests");
        tally.add("test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 7.6s");
        assert_eq!(
            tally,
            Tally {
                passed: 31,
                failed: 1
            }
        );
    }
}
