//! A generated recording of any length, for measuring replay speed and memory
//! (`tracer generate-recording`, hidden): tasks spawned, polled a few times on a
//! handful of worker threads, resolved and freed, a few microseconds apart.

use std::{io, path::PathBuf};

use super::writer::{Recorder, create_file};
use crate::{
    model::event::{HookEvent, HookKind, ResourceType},
    sinks::output::{SessionEnd, SessionInfo, Sink},
};

/// Writes a recording of `events` synthetic events to `path`.
pub fn generate(path: &std::path::Path, events: u64, force: bool) -> anyhow::Result<()> {
    let file = io::BufWriter::new(create_file(path, force)?);
    let mut recorder = Recorder::new(file);
    let pid = 4242;
    let start_ns = 1_000_000_000;
    recorder.begin(&SessionInfo {
        pid,
        exe: PathBuf::from("/synthetic/app"),
        runtime: "tokio".to_owned(),
        start_ns,
        start_unix_ns: 1_700_000_000_000_000_000,
    })?;
    // A small linear congruential generator: the same file every time.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |below: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % below
    };
    let mut ts_ns = start_ns;
    let mut written = 0;
    let mut task = 0u64;
    while written < events {
        task += 1;
        let polls = 1 + next(4);
        let mut kinds = vec![HookKind::Init {
            resource_type: ResourceType::TOKIO_TASK,
            trigger_id: Some(task / 2),
            existing: false,
            name: None,
            location: None,
        }];
        for poll in 0..polls {
            kinds.push(HookKind::Before { sched_ns: None });
            kinds.push(HookKind::After {
                completed: poll + 1 == polls,
                awaiting: None,
            });
        }
        kinds.extend([HookKind::Resolve, HookKind::Destroy]);
        let tid = 5000 + next(4) as u32;
        for kind in kinds.into_iter().take((events - written) as usize) {
            ts_ns += 200 + next(20_000);
            recorder.event(&HookEvent {
                kind,
                async_id: task,
                ts_ns,
                pid,
                tid,
            })?;
            written += 1;
        }
    }
    recorder.end(&SessionEnd {
        end_ns: ts_ns,
        ending: "synthetic workload".to_owned(),
        delivered: written,
        emitted: Some(written),
        ..SessionEnd::default()
    })?;
    Ok(())
}
