//! From ring records to hook events: each record goes to the model that reads
//! it, told apart by size — a runtime's own records through its mapping first.

use std::io;

use aya::maps::{MapData, RingBuf};
use tracer_common::{RawEvent, RawResourceEvent, RawSpawnEvent, fork::TreeEvent};

use crate::{
    model::{TaskModel, decode, resources::ResourceModel},
    runtime::{ModelRecord, RecordMapper},
    sinks::{output::Sink, summary::SessionStats},
};

/// Whether a drain's delay is the live stream's: every drain while the session
/// runs is; the one after the probes are detached reads what programs still
/// running at the disarm wrote, which waited for the detach, not for the reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delay {
    /// Counted in the live delay.
    Live,
    /// Not counted.
    AfterDetach,
}

/// The models a session's records go through.
pub struct Decoders {
    /// Tasks (and goroutines): the model's own records.
    pub tasks: TaskModel,
    /// The embedder crate's resources.
    pub resources: ResourceModel,
    /// The runtime's own records, mapped to the model's.
    pub records: Option<Box<dyn RecordMapper>>,
}

impl Decoders {
    /// Reads the events in the ring buffer now, at most `limit`, through the
    /// models, into the sink; says whether it stopped at `limit` (more may be
    /// waiting). A record is a [`RawEvent`], a [`RawSpawnEvent`], a poll end
    /// with an await tree ([`TreeEvent`]), an embedder
    /// [`RawResourceEvent`], or one the runtime's mapping reads. A
    /// [`Delay::Live`] drain adds its delay to the session's live delay.
    pub fn drain(
        &mut self,
        ring: &mut RingBuf<MapData>,
        stats: &mut SessionStats,
        sink: &mut dyn Sink,
        limit: usize,
        delay: Delay,
    ) -> io::Result<bool> {
        let mut result = Ok(());
        let mut read = 0;
        let mut oldest_ns = u64::MAX;
        while read < limit
            && let Some(item) = ring.next()
        {
            read += 1;
            stats.delivered += 1;
            self.apply(&item, &mut |event| {
                oldest_ns = oldest_ns.min(event.ts_ns);
                stats.record(&event);
                if result.is_ok() {
                    result = sink.event(&event);
                }
            });
        }
        result?;
        sink.flush()?;
        if oldest_ns != u64::MAX && delay == Delay::Live {
            // The BPF side's clock (`bpf_ktime_get_ns`).
            let mut now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `now` is a valid timespec to fill.
            if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } == 0 {
                let now_ns = now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64;
                stats.delay.add(now_ns.saturating_sub(oldest_ns));
            }
        }
        Ok(read == limit)
    }

    /// Applies one record, handing its hook events to `deliver`.
    fn apply(&mut self, item: &[u8], deliver: &mut dyn FnMut(crate::model::event::HookEvent)) {
        let tasks = &mut self.tasks;
        if let Some(raw) = decode::<RawEvent>(item) {
            tasks.apply(&raw, deliver);
        } else if let Some(raw) = decode::<RawSpawnEvent>(item) {
            tasks.apply_spawn(&raw, deliver);
        } else if let Some(raw) = decode::<TreeEvent>(item) {
            tasks.apply_tree(&raw, deliver);
        } else if let Some(raw) = decode::<RawResourceEvent>(item) {
            if self.resources.apply(&raw, &mut *deliver).is_err() {
                tasks.count_undecodable();
            }
        } else {
            let mapped = self.records.as_mut().is_some_and(|records| {
                records.map(item, &mut |record| match record {
                    ModelRecord::Plain(raw) => tasks.apply(&raw, &mut *deliver),
                    ModelRecord::Named(raw) => tasks.apply_spawn(&raw, &mut *deliver),
                })
            });
            if !mapped {
                tasks.count_undecodable();
            }
        }
    }
}
