//! Attaching every object's sites, with `--task` choosing the poll sites, and
//! warnings for what could not be attached.

use std::num::NonZeroU32;

use anyhow::{Context as _, bail};

use super::SessionOptions;
use crate::{
    kernel::probes::{AttachReport, Probes},
    runtime::{
        Probe,
        names::SessionNames,
        probe_point,
        sites::{Site, TargetObject},
    },
    target::mapped_file,
};

/// Attaches the sites of every object, warning about what could not be attached;
/// fails when nothing could.
pub fn attach_all(
    probes: &mut Probes,
    objects: &[TargetObject],
    pid: u32,
    options: &SessionOptions,
    names: &SessionNames,
) -> anyhow::Result<AttachReport> {
    // Followed children are not known yet: the kernel must run the programs for
    // every process of the file, and the programs choose.
    let only_pid = if options.follow_forks {
        None
    } else {
        Some(NonZeroU32::new(pid).context("pid 0 cannot be traced")?)
    };
    let mut attach = AttachReport::default();
    for (index, object) in objects.iter().enumerate() {
        let slot = |site: &Site| {
            names
                .slots
                .get(&(index, site.address))
                .copied()
                .unwrap_or(0)
        };
        // With --task, only the poll sites whose future type matches are probed.
        let sites: Vec<Site> = object
            .sites
            .sites
            .iter()
            .filter(|site| options.js_resources || !site.probe.js_resources_only())
            .filter(|site| {
                site.probe != Probe::Poll
                    || options.tasks.is_empty()
                    || names.site_matches(index, site.address, &options.tasks)
            })
            .cloned()
            .collect();
        let code = mapped_file::map(&object.attach_path)?;
        let single_stepped = |site: &Site| {
            let start =
                usize::try_from(site.file_offset).map_or(code.len(), |at| at.min(code.len()));
            probe_point::is_single_stepped(&code[start..(start + 16).min(code.len())], site.address)
        };
        let report = probes.attach(
            &object.attach_path,
            &sites,
            only_pid,
            options.probes,
            &slot,
            &single_stepped,
        )?;
        for (label, count) in report.attached {
            *attach.attached.entry(label).or_default() += count;
        }
        attach.failed.extend(report.failed);
        attach.seconds += report.seconds;
        attach.fallback = attach.fallback.or(report.fallback);
        for (label, count) in report.single_stepped {
            *attach.single_stepped.entry(label).or_default() += count;
        }
    }
    if let Some(reason) = &attach.fallback {
        eprintln!(
            "tracer: warning: uprobe_multi links unavailable ({reason}); using one perf-event link per site, which takes the kernel about 0.1 s per site to remove at the end"
        );
    }
    for (symbol, reason) in &attach.failed {
        eprintln!("tracer: warning: cannot attach to {symbol}: {reason}");
    }
    if attach.total() == 0 {
        bail!("no probe could be attached to process {pid}; see the warnings above");
    }
    Ok(attach)
}
