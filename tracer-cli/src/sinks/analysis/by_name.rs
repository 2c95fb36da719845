//! `stats --by name`: the session per future type rather than per task, the
//! profiler view: how many tasks ran each name, how often and how long they
//! were polled (total, median, 99th percentile, longest), and how long they
//! lived. Tasks without a name are grouped by their type.

use std::{collections::BTreeMap, io::Write};

use serde::Serialize;

use super::{Analysis, histogram::Histogram, human_duration, stats::SortBy};

/// One name's row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NameRow {
    /// The future type as users read it; `null` for tasks without a name.
    pub name: Option<String>,
    /// `tokio.task`, `tokio.blocking`, …
    #[serde(rename = "type")]
    pub resource_type: String,
    /// Tasks of this name.
    pub tasks: u64,
    /// Their finished polls.
    pub polls: u64,
    /// Their time in polls.
    pub busy_ns: u64,
    /// Median poll time (within 3 %, see [`Histogram`]).
    pub p50_poll_ns: u64,
    /// 99th percentile poll time (within 3 %).
    pub p99_poll_ns: u64,
    /// Longest poll.
    pub max_poll_ns: u64,
    /// Mean lifetime: spawn (or first sight) to freed, finished, or the
    /// session's end.
    pub mean_lifetime_ns: u64,
    /// Longest lifetime.
    pub max_lifetime_ns: u64,
    /// Times their wakers were woken.
    pub wakes: u64,
    /// Of those, by the task itself.
    pub self_wakes: u64,
    /// 99th percentile of their waits for a worker (`null` when none is known).
    pub sched_p99_ns: Option<u64>,
    /// Their longest wait for a worker.
    pub sched_max_ns: Option<u64>,
}

impl NameRow {
    /// The name, or `(unnamed TYPE)`.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("(unnamed {})", self.resource_type))
    }
}

/// Rows per name, in order.
#[derive(Clone, Debug, Serialize)]
pub struct NameTable {
    /// One per name (and per type for unnamed tasks).
    pub names: Vec<NameRow>,
}

/// What one name's tasks add up to while the rows are built.
#[derive(Default)]
struct Sums {
    tasks: u64,
    polls: u64,
    busy_ns: u64,
    lifetime_ns: u64,
    max_lifetime_ns: u64,
    poll_times: Histogram,
    wakes: u64,
    self_wakes: u64,
    sched: Histogram,
}

impl NameTable {
    /// The rows of `analysis`, sorted by `sort` (largest first; `lifetime` is
    /// the mean lifetime, `longest` the longest poll).
    pub fn new(analysis: &Analysis, sort: SortBy) -> Self {
        let mut sums: BTreeMap<(Option<&str>, &str), Sums> = BTreeMap::new();
        for task in analysis.tasks.values() {
            let entry = sums
                .entry((task.name.as_deref(), task.resource_type.as_str()))
                .or_default();
            let lifetime = task.lifetime_ns(analysis.end_ns);
            entry.tasks += 1;
            entry.polls += task.polls;
            entry.busy_ns += task.busy_ns;
            entry.lifetime_ns += lifetime;
            entry.max_lifetime_ns = entry.max_lifetime_ns.max(lifetime);
            entry.wakes += task.wakes;
            entry.self_wakes += task.self_wakes;
            entry.sched.merge(&task.sched);
        }
        for ((_, name, resource_type), times) in &analysis.poll_times {
            if let Some(entry) = sums.get_mut(&(name.as_deref(), resource_type.as_str())) {
                entry.poll_times.merge(times);
            }
        }
        let mut names: Vec<NameRow> = sums
            .into_iter()
            .map(|((name, resource_type), sums)| NameRow {
                name: name.map(str::to_owned),
                resource_type: resource_type.to_owned(),
                tasks: sums.tasks,
                polls: sums.polls,
                busy_ns: sums.busy_ns,
                p50_poll_ns: sums.poll_times.quantile(0.5).unwrap_or(0),
                p99_poll_ns: sums.poll_times.quantile(0.99).unwrap_or(0),
                max_poll_ns: sums.poll_times.max().unwrap_or(0),
                mean_lifetime_ns: sums.lifetime_ns / sums.tasks.max(1),
                max_lifetime_ns: sums.max_lifetime_ns,
                wakes: sums.wakes,
                self_wakes: sums.self_wakes,
                sched_p99_ns: sums.sched.quantile(0.99),
                sched_max_ns: sums.sched.max(),
            })
            .collect();
        names.sort_by_key(|row| {
            std::cmp::Reverse(match sort {
                SortBy::Busy => row.busy_ns,
                SortBy::Polls => row.polls,
                SortBy::Lifetime => row.mean_lifetime_ns,
                SortBy::Longest => row.max_poll_ns,
                SortBy::Wakes => row.wakes,
                SortBy::Sched => row.sched_max_ns.unwrap_or(0),
            })
        });
        Self { names }
    }
}

/// Writes the rows as one JSON document.
pub fn write_json(out: &mut impl Write, table: &NameTable) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, table)?;
    writeln!(out)?;
    Ok(())
}

/// Writes the rows as CSV with a header.
pub fn write_csv(out: &mut impl Write, table: &NameTable) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    for row in &table.names {
        writer.serialize(row)?;
    }
    writer.flush()?;
    Ok(())
}

/// Writes aligned columns, the name last, and a line of totals.
pub fn write_text(
    out: &mut impl Write,
    analysis: &Analysis,
    table: &NameTable,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:>6} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>5} {:>9} {:>9}  {:<14} NAME",
        "TASKS",
        "POLLS",
        "BUSY",
        "P50",
        "P99",
        "MAX",
        "LIFETIME",
        "WAKES",
        "SELF",
        "SCHED99",
        "SCHEDMAX",
        "TYPE"
    )?;
    let sched = |ns: Option<u64>| ns.map_or_else(|| "-".to_owned(), human_duration);
    for row in &table.names {
        writeln!(
            out,
            "{:>6} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>5} {:>9} {:>9}  {:<14} {}",
            row.tasks,
            row.polls,
            human_duration(row.busy_ns),
            human_duration(row.p50_poll_ns),
            human_duration(row.p99_poll_ns),
            human_duration(row.max_poll_ns),
            human_duration(row.mean_lifetime_ns),
            row.wakes,
            row.self_wakes,
            sched(row.sched_p99_ns),
            sched(row.sched_max_ns),
            row.resource_type,
            row.label(),
        )?;
    }
    writeln!(
        out,
        "{} names, {} tasks over {}; P50/P99 poll times within 3%; LIFETIME is the mean; SCHED = wait for a worker before a poll (- = none known)",
        table.names.len(),
        analysis.tasks.len(),
        human_duration(analysis.end_ns.saturating_sub(analysis.start_ns))
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{
        super::{
            Collector, DEFAULT_BLOCKING_THRESHOLD,
            test_events::{finish, info, init, poll},
        },
        *,
    };
    use crate::model::event::{HookEvent, HookKind};

    fn named(mut event: HookEvent, future: &str) -> HookEvent {
        if let HookKind::Init { name, .. } = &mut event.kind {
            *name = Some(future.to_owned());
        }
        event
    }

    /// Two `app::handle` tasks (polls of 1, 2 and 7 ms), one `app::tick`
    /// (one poll of 4 ms), and one unnamed task never polled.
    fn table(sort: SortBy) -> NameTable {
        let mut events = vec![
            named(init(1, 0, 0, 10), "app::handle"),
            named(init(2, 0, 1, 10), "app::handle"),
            named(init(3, 0, 2, 11), "app::tick"),
            init(4, 0, 3, 11),
        ];
        events.extend(poll(1, 4, 5, 10));
        events.extend(poll(1, 6, 8, 10));
        events.extend(poll(2, 10, 17, 11));
        events.extend(poll(3, 20, 24, 12));
        events.extend(finish(1, 30));
        let mut collector = Collector::new(DEFAULT_BLOCKING_THRESHOLD);
        for event in &events {
            collector.record(event);
        }
        NameTable::new(&collector.finish(&info()), sort)
    }

    #[test]
    fn tasks_of_one_name_add_up() {
        let table = table(SortBy::Busy);
        let labels: Vec<String> = table.names.iter().map(NameRow::label).collect();
        assert_eq!(labels, ["app::handle", "app::tick", "(unnamed tokio.task)"]);
        let handle = &table.names[0];
        assert_eq!(
            (handle.tasks, handle.polls, handle.busy_ns),
            (2, 3, 10_000_000)
        );
        assert_eq!(handle.max_poll_ns, 7_000_000);
        // The median of 1, 2 and 7 ms is 2 ms, to within the histogram's 3%.
        assert!(
            (2_000_000..2_065_000).contains(&handle.p50_poll_ns),
            "{handle:?}"
        );
        assert_eq!(handle.p99_poll_ns, 7_000_000);
        let unnamed = &table.names[2];
        assert_eq!(
            (unnamed.tasks, unnamed.polls, unnamed.max_poll_ns),
            (1, 0, 0)
        );
    }

    #[test]
    fn rows_sort_by_the_column_asked_for() {
        let longest = table(SortBy::Longest);
        assert_eq!(longest.names[0].name.as_deref(), Some("app::handle"));
        let polls = table(SortBy::Polls);
        assert_eq!(polls.names[1].name.as_deref(), Some("app::tick"));
    }

    #[test]
    fn text_has_a_row_per_name_and_csv_a_header() {
        let table = table(SortBy::Busy);
        let mut csv = Vec::new();
        write_csv(&mut csv, &table).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert!(
            csv.starts_with("name,type,tasks,polls,busy_ns,p50_poll_ns,p99_poll_ns,max_poll_ns,mean_lifetime_ns,max_lifetime_ns,wakes,self_wakes,sched_p99_ns,sched_max_ns\napp::handle,tokio.task,2,3,10000000,"),
            "{csv}"
        );
    }
}
