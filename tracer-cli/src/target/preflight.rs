//! Checks, before any BPF is loaded, that this process has the privileges tracing
//! needs, and says exactly which ones are missing.

use anyhow::bail;

/// `CAP_SYS_ADMIN`: implies everything below on its own.
const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_PERFMON`: open perf events for uprobes.
const CAP_PERFMON: u32 = 38;
/// `CAP_BPF`: load BPF programs and create maps.
const CAP_BPF: u32 = 39;

/// The effective capability set of this process, from `/proc/self/status`.
fn effective_capabilities() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .map(str::trim)
        .ok_or_else(|| anyhow::anyhow!("no CapEff line in /proc/self/status"))?;
    Ok(u64::from_str_radix(hex, 16)?)
}

/// Names of the capabilities tracing still needs, empty when all are there.
fn missing_capabilities(effective: u64) -> Vec<&'static str> {
    let has = |cap: u32| effective & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) {
        return Vec::new();
    }
    [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|(cap, _)| !has(*cap))
        .map(|(_, name)| name)
        .collect()
}

/// Fails with what to do when this process may not load BPF and attach uprobes.
pub fn check_privileges() -> anyhow::Result<()> {
    let missing = missing_capabilities(effective_capabilities()?);
    if !missing.is_empty() {
        bail!(
            "tracer needs {} to load BPF programs and attach uprobes.\n\
             Run it as root (sudo tracer …), or grant the capabilities once:\n    \
             sudo setcap cap_bpf,cap_perfmon,cap_sys_ptrace+ep $(command -v tracer)\n\
             (CAP_SYS_PTRACE is needed to trace another user's process.)",
            missing.join(" and ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_capabilities_means_bpf_and_perfmon_are_missing() {
        assert_eq!(missing_capabilities(0), ["CAP_BPF", "CAP_PERFMON"]);
    }

    #[test]
    fn sys_admin_alone_is_enough() {
        assert!(missing_capabilities(1 << CAP_SYS_ADMIN).is_empty());
    }

    #[test]
    fn bpf_and_perfmon_together_are_enough() {
        assert!(missing_capabilities((1 << CAP_BPF) | (1 << CAP_PERFMON)).is_empty());
        assert_eq!(missing_capabilities(1 << CAP_BPF), ["CAP_PERFMON"]);
    }
}
