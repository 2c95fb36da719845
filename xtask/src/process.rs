//! Running other programs: every command is echoed on stderr before it runs, and a
//! failure names the command, so a CI log says which step broke and how to rerun it.

use std::{
    env,
    ffi::OsString,
    io,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{Context, Result, bail};

/// A `cargo` command: the cargo that runs this xtask (`$CARGO`), else `cargo` on PATH.
pub fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The command line of `cmd` as a shell user would type it, e.g.
/// `cargo build --release -p tracer-cli`.
pub fn describe(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned();
    let mut line = program;
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// `cmd` as one line to paste into a shell: the environment it sets first (a PATH
/// that only prepends to ours as `PATH=DIR:$PATH`), then the program and its
/// arguments, quoted where a shell would split or expand them, e.g.
/// `PATH=/usr/lib/llvm-22/bin:$PATH cargo install bpf-linker --version '^0.13'`.
pub fn shell_line(cmd: &Command) -> String {
    let current_path = env::var("PATH").unwrap_or_default();
    let mut words = Vec::new();
    if let Some(dir) = cmd.get_current_dir() {
        words.push(format!("cd {} &&", shell_quote(&dir.to_string_lossy())));
    }
    for (name, value) in cmd.get_envs() {
        let (name, Some(value)) = (name.to_string_lossy(), value) else {
            continue;
        };
        let value = value.to_string_lossy();
        let value = match value.strip_suffix(current_path.as_str()) {
            Some(prefix) if name == "PATH" && !current_path.is_empty() => {
                format!("{}$PATH", shell_quote(prefix))
            }
            _ => shell_quote(&value),
        };
        words.push(format!("{name}={value}"));
    }
    words.push(shell_quote(&cmd.get_program().to_string_lossy()));
    words.extend(
        cmd.get_args()
            .map(|arg| shell_quote(&arg.to_string_lossy())),
    );
    words.join(" ")
}

/// `word` as a shell reads it back unchanged: as is when it has only safe
/// characters, else in single quotes.
fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./:=,+@%".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with inherited stdio and fails, naming it, if it cannot start or exits
/// non-zero. The command is echoed as `+ cmd` (with its directory when it has one).
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = describe(cmd);
    match cmd.get_current_dir() {
        Some(dir) => eprintln!("+ (cd {}) {line}", dir.display()),
        None => eprintln!("+ {line}"),
    }
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its output whatever its exit status, or `None` when
/// the program is not installed. Used to ask "is X there?".
pub fn probe(cmd: &mut Command) -> Result<Option<Output>> {
    match cmd.output() {
        Ok(output) => Ok(Some(output)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("could not start `{}`", describe(cmd))),
    }
}

/// Runs `cmd` quietly and returns its stdout; fails, naming it and quoting its stderr,
/// if it cannot start or exits non-zero.
pub fn stdout_of(cmd: &mut Command) -> Result<String> {
    let line = describe(cmd);
    let output = cmd
        .output()
        .with_context(|| format!("could not start `{line}`"))?;
    if !output.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// True when this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Fails with "`why` needs root" unless this process runs as root.
pub fn require_root(why: &str) -> Result<()> {
    if !is_root() {
        bail!("{why} needs root: run this command as root (e.g. in a root shell, or with sudo -E)");
    }
    Ok(())
}

/// Where `cargo install` puts binaries: `$CARGO_HOME/bin`, else `~/.cargo/bin`.
pub fn cargo_bin_dir() -> Option<PathBuf> {
    if let Some(home) = env::var_os("CARGO_HOME") {
        return Some(PathBuf::from(home).join("bin"));
    }
    env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo").join("bin"))
}

/// `$PATH` with `dirs` in front (those not already on it), for commands that must find
/// tools such as `bpf-linker` or LLVM 22's `llvm-config`.
pub fn path_with(dirs: &[PathBuf]) -> Result<OsString> {
    let current: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect())
        .unwrap_or_default();
    let mut all: Vec<PathBuf> = dirs
        .iter()
        .filter(|d| !current.contains(d))
        .cloned()
        .collect();
    all.extend(current);
    env::join_paths(all).context("a directory on PATH contains ':'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_shows_program_name_and_args() {
        let mut cmd = Command::new("/usr/bin/apt-get");
        cmd.args(["install", "-y", "zlib1g-dev"]);
        assert_eq!(describe(&cmd), "apt-get install -y zlib1g-dev");
    }

    #[test]
    fn shell_lines_quote_what_a_shell_would_change() {
        let mut cmd = Command::new("cargo");
        cmd.args(["install", "bpf-linker", "--version", "^0.13", "it's"]);
        assert_eq!(
            shell_line(&cmd),
            r"cargo install bpf-linker --version '^0.13' 'it'\''s'"
        );
        let mut cmd = Command::new("cargo");
        cmd.env(
            "PATH",
            path_with(&[PathBuf::from("/opt/llvm/bin")]).unwrap(),
        )
        .arg("build");
        assert_eq!(shell_line(&cmd), "PATH=/opt/llvm/bin:$PATH cargo build");
    }

    #[test]
    fn path_with_puts_new_dirs_first_once() {
        let current: Vec<PathBuf> =
            env::split_paths(&env::var_os("PATH").unwrap_or_default()).collect();
        let extra = PathBuf::from("/nonexistent/xtask-test-bin");
        let mut wanted = vec![extra.clone()];
        wanted.extend(current.first().cloned());
        let path = path_with(&wanted).unwrap();
        let dirs: Vec<PathBuf> = env::split_paths(&path).collect();
        assert_eq!(dirs[0], extra);
        assert_eq!(dirs.len(), current.len() + 1);
    }
}
