//! The end-of-session report on stderr: what was seen, and everything that was
//! lost or could not be read, so that nothing is lost silently.

use std::{collections::HashSet, fmt::Write as _};

use tracer_common::Counter;

use crate::{
    kernel::probes::{AttachReport, Counters},
    model::ModelAnomalies,
    model::event::{HookEvent, HookKind, KINDS, kind_index, kinds_list},
    sinks::output::SessionEnd,
};

/// Counts kept while events flow.
#[derive(Debug, Default, Clone)]
pub struct SessionStats {
    by_kind: [u64; KINDS.len()],
    existing: u64,
    /// Resources (pid, id) that resolved and were not destroyed since: a free
    /// path the probes miss shows here, not only in the count still alive.
    resolved_alive: HashSet<(u32, u64)>,
    /// Raw events read from the ring buffer.
    pub delivered: u64,
    /// How late events reach userspace.
    pub delay: LiveDelay,
}

/// How late the stream is: per drain that read anything, the time from the
/// oldest event it read (its `ts_ns`) to the end of that drain, in a log
/// histogram (4 buckets per power of two of microseconds: fixed memory however
/// long the session).
#[derive(Debug, Default, Clone)]
pub struct LiveDelay {
    buckets: Vec<u64>,
    max_ns: u64,
}

impl LiveDelay {
    const BUCKETS: usize = 4 * 64;

    fn bucket(us: u64) -> usize {
        if us < 4 {
            return us as usize;
        }
        let log = 63 - us.leading_zeros() as usize;
        (log * 4 + ((us >> (log - 2)) & 3) as usize).min(Self::BUCKETS - 1)
    }

    /// The smallest delay (µs) of bucket `index`'s upper neighbour: what a
    /// percentile in `index` is reported as (rounded up).
    fn upper_us(index: usize) -> u64 {
        let next = index + 1;
        if next < 4 {
            return next as u64;
        }
        let (log, sub) = (next / 4, (next % 4) as u64);
        (4 + sub) << (log - 2)
    }

    /// One drain: its oldest event was `delay_ns` old when it ended.
    pub fn add(&mut self, delay_ns: u64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; Self::BUCKETS];
        }
        self.buckets[Self::bucket(delay_ns / 1000)] += 1;
        self.max_ns = self.max_ns.max(delay_ns);
    }

    /// Drains counted.
    pub fn drains(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The `q` quantile (0..=1) of the per-drain delays, µs (bucket upper bound).
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let total = self.drains();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Self::upper_us(index).min(self.max_ns.div_ceil(1000)));
            }
        }
        None
    }

    /// "live delay: …" for the summary, if any drain read events.
    pub fn line(&self) -> Option<String> {
        let ms = |us: u64| us as f64 / 1000.0;
        Some(format!(
            "live delay (oldest event of a drain to its end): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} drains",
            ms(self.quantile_us(0.5)?),
            ms(self.quantile_us(0.99)?),
            self.max_ns as f64 / 1e6,
            self.drains()
        ))
    }
}

impl SessionStats {
    /// Counts one hook event.
    pub fn record(&mut self, event: &HookEvent) {
        match event.kind {
            HookKind::Init { existing, .. } => self.existing += u64::from(existing),
            HookKind::Resolve => {
                self.resolved_alive.insert((event.pid, event.async_id));
            }
            HookKind::Destroy => {
                self.resolved_alive.remove(&(event.pid, event.async_id));
            }
            _ => {}
        }
        self.by_kind[kind_index(&event.kind)] += 1;
    }

    /// Total hook events.
    pub fn events(&self) -> u64 {
        self.by_kind.iter().sum()
    }

    /// The summary lines, each prefixed `tracer: `. `started_here`: tracer
    /// started the one program it traces (`tracer run` without
    /// `--follow-forks`), so nothing was alive before it.
    pub fn render(
        &self,
        attach: &AttachReport,
        counters: &Counters,
        anomalies: ModelAnomalies,
        started_here: bool,
    ) -> String {
        let mut text = String::new();
        let kinds = kinds_list(self.by_kind);
        let _ = writeln!(text, "tracer: {} events ({kinds})", self.events());
        let existing = if started_here && self.existing > 0 {
            "first seen after their spawn (tracer started the program: their spawn went through a path it does not probe, inlined by the build as `codegen-units = 1` or fat LTO can do, or its record was dropped; their init has no trigger)"
        } else {
            "already alive at attach"
        };
        let _ = writeln!(
            text,
            "tracer: {} resources seen (tasks and declared resources), {} of them {existing}, {} still alive at the end",
            self.by_kind[0],
            self.existing,
            self.by_kind[0].saturating_sub(self.by_kind[4])
        );
        if !self.resolved_alive.is_empty() {
            let _ = writeln!(
                text,
                "tracer: {} of those alive at the end had resolved and were never destroyed: still referenced (a JoinHandle, a runtime not dropped before exit), or freed through a path tracer does not probe",
                self.resolved_alive.len()
            );
        }
        let _ = writeln!(
            text,
            "tracer: {} probe sites attached ({}), {} failed",
            attach.total(),
            attach.describe(),
            attach.failed.len()
        );
        let _ = writeln!(text, "tracer: {}", accounting(self.delivered, counters));
        if let Some(line) = self.delay.line() {
            let _ = writeln!(text, "tracer: {line}");
        }
        for (count, what) in problems(counters, anomalies) {
            if count > 0 {
                let _ = writeln!(text, "tracer: warning: {count} {what}");
            }
        }
        text
    }

    /// The final counts sinks receive at the end (a recording keeps them).
    pub fn session_end(
        &self,
        counters: &Counters,
        anomalies: ModelAnomalies,
        ending: &str,
        end_ns: u64,
    ) -> SessionEnd {
        SessionEnd {
            end_ns,
            ending: ending.to_owned(),
            delivered: self.delivered,
            dropped: counters.get(Counter::RingFull),
            emitted: Some(counters.get(Counter::Emitted)),
            problems: problems(counters, anomalies)
                .into_iter()
                .filter(|(count, _)| *count > 0)
                .map(|(count, what)| (count, what.to_owned()))
                .collect(),
        }
    }
}

/// "raw events: emitted E = delivered D + dropped X (ring buffer full)", with
/// advice when events were dropped, and the gap named when the sum does not hold.
fn accounting(delivered: u64, counters: &Counters) -> String {
    let emitted = counters.get(Counter::Emitted);
    let dropped = counters.get(Counter::RingFull);
    let mut line = format!(
        "raw events: emitted {emitted} = delivered {delivered} + dropped {dropped} (ring buffer full)"
    );
    if dropped > 0 {
        line.push_str(
            " — raise --ring-size; a task whose spawn was dropped is reported as existing",
        );
    }
    let accounted = delivered + dropped;
    if accounted != emitted {
        line = line.replacen(" = ", " ≠ ", 1);
        let _ = write!(
            line,
            "\ntracer: warning: {} raw events {} (a tracer bug: please report it)",
            emitted.abs_diff(accounted),
            if accounted < emitted {
                "emitted but neither delivered nor dropped"
            } else {
                "delivered or dropped but never emitted"
            }
        );
    }
    line
}

/// Everything besides ring-buffer drops that made the trace incomplete, with
/// what each count means.
fn problems(counters: &Counters, anomalies: ModelAnomalies) -> [(u64, &'static str); 8] {
    [
        (counters.get(Counter::ReadFailed), "task headers unreadable"),
        (
            counters.get(Counter::LayoutMismatch),
            "headers not in the expected Tokio layout",
        ),
        (
            counters.get(Counter::StackOverflow),
            "polls nested too deep to track their trigger",
        ),
        (
            counters.get(Counter::UnmatchedReturn),
            "poll returns without a start (attached mid-poll)",
        ),
        (anomalies.undecodable, "raw events of an unknown kind"),
        (
            anomalies.orphan_returns,
            "poll returns of tasks not being polled",
        ),
        (
            anomalies.lost_returns,
            "polls whose return was lost (the task was polled again on that thread)",
        ),
        (
            anomalies.tree_gaps,
            "parts of join!/select! await trees not read (over the walk's bounds, or unreadable; `?` in their `awaiting`)",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_delay_quantiles_come_from_a_bounded_histogram() {
        let mut delay = LiveDelay::default();
        assert_eq!(delay.line(), None);
        for _ in 0..99 {
            delay.add(1_000_000);
        }
        delay.add(50_000_000);
        let p50 = delay.quantile_us(0.5).unwrap();
        assert!((1000..=1250).contains(&p50), "{p50}");
        assert_eq!(delay.quantile_us(1.0), Some(50_000));
        assert!(delay.line().unwrap().contains("over 100 drains"));
        assert!(LiveDelay::bucket(u64::MAX) < LiveDelay::BUCKETS);
    }

    fn counters(emitted: u64, dropped: u64) -> Counters {
        let mut counters = Counters::default();
        counters.0[Counter::Emitted as usize] = emitted;
        counters.0[Counter::RingFull as usize] = dropped;
        counters
    }

    #[test]
    fn accounting_adds_up_and_advises_when_events_were_dropped() {
        assert_eq!(
            accounting(10, &counters(10, 0)),
            "raw events: emitted 10 = delivered 10 + dropped 0 (ring buffer full)"
        );
        let line = accounting(7, &counters(10, 3));
        assert!(line.starts_with("raw events: emitted 10 = delivered 7 + dropped 3"));
        assert!(line.contains("raise --ring-size"), "{line}");
    }

    #[test]
    fn records_neither_delivered_nor_dropped_are_reported_as_a_bug() {
        let line = accounting(5, &counters(10, 3));
        assert!(line.starts_with("raw events: emitted 10 ≠ delivered 5 + dropped 3"));
        assert!(
            line.contains("warning: 2 raw events emitted but neither delivered nor dropped"),
            "{line}"
        );
    }

    #[test]
    fn resolved_resources_never_destroyed_are_counted_apart_from_the_alive_ones() {
        let event = |kind, async_id| HookEvent {
            kind,
            async_id,
            ts_ns: 0,
            pid: 7,
            tid: 7,
        };
        let mut stats = SessionStats::default();
        for id in 1..=3 {
            stats.record(&event(
                HookKind::Init {
                    resource_type: crate::model::event::ResourceType::TOKIO_TASK,
                    trigger_id: Some(0),
                    existing: false,
                    name: None,
                    location: None,
                },
                id,
            ));
        }
        stats.record(&event(HookKind::Resolve, 1));
        stats.record(&event(HookKind::Destroy, 1));
        stats.record(&event(HookKind::Resolve, 2));
        let text = stats.render(
            &AttachReport::default(),
            &Counters::default(),
            ModelAnomalies::default(),
            true,
        );
        assert!(text.contains("2 still alive at the end"), "{text}");
        assert!(
            text.contains(
                "tracer: 1 of those alive at the end had resolved and were never destroyed"
            ),
            "{text}"
        );
    }
}
