//! The `task/task_newtask` tracepoint that `--follow-forks` attaches to: the
//! layout of its record is read from its format file in tracefs at load time,
//! never assumed.

use std::path::Path;

use anyhow::{Context as _, anyhow};

/// The tracepoint `process_fork` is attached to: (category, name).
pub const NEW_TASK_TRACEPOINT: (&str, &str) = ("task", "task_newtask");

/// Where tracefs may be mounted.
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Offsets of the fields `process_fork` reads in a `task/task_newtask` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewTaskFields {
    /// Offset of `pid_t pid`: the new task's id.
    pub pid: u64,
    /// Offset of `u64 clone_flags`.
    pub clone_flags: u64,
}

impl NewTaskFields {
    /// Reads the offsets from the tracepoint's format file in tracefs.
    pub fn read() -> anyhow::Result<Self> {
        let (category, name) = NEW_TASK_TRACEPOINT;
        let relative = format!("events/{category}/{name}/format");
        let mut errors = Vec::new();
        for root in TRACEFS {
            let path = Path::new(root).join(&relative);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    return Self::parse(&text)
                        .with_context(|| format!("unexpected format in {}", path.display()));
                }
                Err(error) => errors.push(format!("{}: {error}", path.display())),
            }
        }
        Err(anyhow!(
            "--follow-forks needs the tracepoint {category}/{name}, whose format file cannot be read ({}). \
             Is tracefs mounted? As root: mount -t tracefs tracefs /sys/kernel/tracing",
            errors.join("; ")
        ))
    }

    /// Parses a format file: lines like
    /// `field:pid_t pid; offset:8; size:4; signed:1;` (tab-separated).
    fn parse(text: &str) -> anyhow::Result<Self> {
        let field = |wanted: &str, size: u64| -> anyhow::Result<u64> {
            for line in text.lines() {
                let mut name = None;
                let (mut offset, mut found_size) = (None, None);
                for part in line.split(';') {
                    let part = part.trim();
                    if let Some(declaration) = part.strip_prefix("field:") {
                        name = declaration.split_whitespace().last();
                    } else if let Some(value) = part.strip_prefix("offset:") {
                        offset = value.parse::<u64>().ok();
                    } else if let Some(value) = part.strip_prefix("size:") {
                        found_size = value.parse::<u64>().ok();
                    }
                }
                if name == Some(wanted) {
                    return match (offset, found_size) {
                        (Some(offset), Some(found)) if found == size => Ok(offset),
                        _ => Err(anyhow!(
                            "field {wanted} is not {size} bytes at a known offset: {line:?}"
                        )),
                    };
                }
            }
            Err(anyhow!("no field {wanted}"))
        };
        Ok(Self {
            pid: field("pid", 4)?,
            clone_flags: field("clone_flags", 8)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_come_from_the_format_file() {
        let format = "name: task_newtask\nID: 205\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
            \tfield:pid_t pid;\toffset:8;\tsize:4;\tsigned:1;\n\
            \tfield:char comm[16];\toffset:12;\tsize:16;\tsigned:0;\n\
            \tfield:u64 clone_flags;\toffset:40;\tsize:8;\tsigned:0;\n";
        assert_eq!(
            NewTaskFields::parse(format).unwrap(),
            NewTaskFields {
                pid: 8,
                clone_flags: 40
            }
        );
    }

    #[test]
    fn a_field_of_another_size_or_a_missing_field_is_refused() {
        let wrong_size = "\tfield:u64 pid;\toffset:8;\tsize:8;\tsigned:0;\n\
            \tfield:u64 clone_flags;\toffset:32;\tsize:8;\tsigned:0;\n";
        assert!(NewTaskFields::parse(wrong_size).is_err());
        assert!(NewTaskFields::parse("\tfield:pid_t pid;\toffset:8;\tsize:4;\n").is_err());
    }
}
