//! Per-task statistics, one row per task like tokio-console's task list, then the
//! warnings. With wakes probed, each row also has the task's wakes, how many it
//! gave itself, and how long it waited for a worker (`sched_ns` of its polls:
//! median, 99th percentile, longest).

use std::io::Write;

use serde::Serialize;

use crate::model::event::parked_at;

use super::{
    Analysis, TaskState, human_duration,
    warnings::{self, Warning},
};

/// The column rows are sorted by, largest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SortBy {
    /// Time spent in polls.
    Busy,
    /// Number of polls.
    Polls,
    /// From spawn to end.
    Lifetime,
    /// Longest single poll.
    Longest,
    /// Times woken.
    Wakes,
    /// Longest wait for a worker.
    Sched,
}

/// One task's row.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Its process (task ids are per process).
    pub pid: u32,
    /// Tokio's task id.
    pub async_id: u64,
    /// `tokio.task`, `tokio.blocking`, …
    #[serde(rename = "type")]
    pub resource_type: String,
    /// 0 outside any task, empty/`null` when unknown.
    pub trigger_id: Option<u64>,
    /// State at the session's end.
    pub state: TaskState,
    /// Polls that finished.
    pub polls: u64,
    /// Time spent in polls.
    pub busy_ns: u64,
    /// Time alive but not polled.
    pub idle_ns: u64,
    /// From spawn (or first sight) to freed, finished, or the session's end.
    pub lifetime_ns: u64,
    /// Longest single poll.
    pub longest_poll_ns: u64,
    /// Polls longer than the blocking threshold.
    pub blocking_polls: u64,
    /// Times its waker was woken.
    pub wakes: u64,
    /// Of those, by itself.
    pub self_wakes: u64,
    /// Median wait for a worker before a poll (empty/`null` when none is known).
    pub sched_p50_ns: Option<u64>,
    /// 99th percentile of those waits.
    pub sched_p99_ns: Option<u64>,
    /// The longest of those waits.
    pub sched_max_ns: Option<u64>,
    /// What it runs (its future type), empty/`null` when unknown.
    pub name: Option<String>,
    /// Where it was spawned (`file:line:col`), empty/`null` when unknown.
    pub location: Option<String>,
    /// Where an idle task is parked (`src/main.rs:32 > tokio::time::Sleep`):
    /// its last poll's await chain; empty/`null` when not known.
    pub parked_at: Option<String>,
}

/// How `stats` groups its rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    /// One row per task.
    #[default]
    Task,
    /// One row per name (future type): tasks, polls, busy, p50/p99/max poll
    /// time, lifetime.
    Name,
}

/// The rows in order, with the warnings.
#[derive(Clone, Debug, Serialize)]
pub struct Table {
    /// One per task.
    pub tasks: Vec<Row>,
    /// Warnings that apply to at least one task.
    pub warnings: Vec<Warning>,
}

impl Table {
    /// The table of `analysis`, sorted by `sort`, with warnings.
    pub fn new(analysis: &Analysis, sort: SortBy, many_polls: u64) -> Self {
        let mut tasks: Vec<Row> = analysis
            .tasks
            .values()
            .map(|task| Row {
                pid: task.pid,
                async_id: task.async_id,
                resource_type: task.resource_type.as_str().to_owned(),
                trigger_id: task.trigger_id,
                state: task.state(),
                polls: task.polls,
                busy_ns: task.busy_ns,
                idle_ns: task.idle_ns(analysis.end_ns),
                lifetime_ns: task.lifetime_ns(analysis.end_ns),
                longest_poll_ns: task.longest_poll_ns,
                blocking_polls: task.blocking_polls,
                wakes: task.wakes,
                self_wakes: task.self_wakes,
                sched_p50_ns: task.sched.quantile(0.5),
                sched_p99_ns: task.sched.quantile(0.99),
                sched_max_ns: task.sched.max(),
                name: task.name.clone(),
                location: task.location.clone(),
                parked_at: task.awaiting.as_deref().map(parked_at),
            })
            .collect();
        tasks.sort_by_key(|row| {
            std::cmp::Reverse(match sort {
                SortBy::Busy => row.busy_ns,
                SortBy::Polls => row.polls,
                SortBy::Lifetime => row.lifetime_ns,
                SortBy::Longest => row.longest_poll_ns,
                SortBy::Wakes => row.wakes,
                SortBy::Sched => row.sched_max_ns.unwrap_or(0),
            })
        });
        Self {
            tasks,
            warnings: warnings::check_all(analysis, many_polls),
        }
    }
}

/// Writes the table and the warnings as one JSON document.
pub fn write_json(out: &mut impl Write, table: &Table) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, table)?;
    writeln!(out)?;
    Ok(())
}

/// Writes the rows as CSV with a header (warnings are not rows: see `--json`).
pub fn write_csv(out: &mut impl Write, table: &Table) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    for row in &table.tasks {
        writer.serialize(row)?;
    }
    writer.flush()?;
    Ok(())
}

/// Writes aligned columns (with a PID column first when several processes
/// are present), then one line per warning with its tasks.
pub fn write_text(out: &mut impl Write, analysis: &Analysis, table: &Table) -> anyhow::Result<()> {
    let pid_column = |pid: &dyn std::fmt::Display| {
        if analysis.several_processes() {
            format!("{pid:>8}")
        } else {
            String::new()
        }
    };
    writeln!(
        out,
        "{}{:>8}  {:<14} {:>8}  {:<7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6} {:>5} {:>9} {:>9} {:>9}  NAME",
        pid_column(&"PID"),
        "ID",
        "TYPE",
        "TRIGGER",
        "STATE",
        "POLLS",
        "BUSY",
        "IDLE",
        "LIFETIME",
        "LONGEST",
        "WAKES",
        "SELF",
        "SCHED50",
        "SCHED99",
        "SCHEDMAX"
    )?;
    let sched = |ns: Option<u64>| ns.map_or_else(|| "-".to_owned(), human_duration);
    for row in &table.tasks {
        let trigger = row
            .trigger_id
            .map_or_else(|| "?".to_owned(), |id| id.to_string());
        writeln!(
            out,
            "{}{:>8}  {:<14} {:>8}  {:<7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6} {:>5} {:>9} {:>9} {:>9}  {}{}",
            pid_column(&row.pid),
            row.async_id,
            row.resource_type,
            trigger,
            row.state.as_str(),
            row.polls,
            human_duration(row.busy_ns),
            human_duration(row.idle_ns),
            human_duration(row.lifetime_ns),
            human_duration(row.longest_poll_ns),
            row.wakes,
            row.self_wakes,
            sched(row.sched_p50_ns),
            sched(row.sched_p99_ns),
            sched(row.sched_max_ns),
            row.name.as_deref().unwrap_or("?"),
            row.parked_at
                .as_ref()
                .map_or_else(String::new, |chain| format!("  parked at {chain}")),
        )?;
    }
    let processes = match analysis.pids.len() {
        0 | 1 => String::new(),
        n => format!(" in {n} processes"),
    };
    writeln!(
        out,
        "{} tasks{processes} over {}; TRIGGER ? = existing at attach; SCHED = wait for a worker before a poll (- = none known)",
        table.tasks.len(),
        human_duration(analysis.end_ns.saturating_sub(analysis.start_ns))
    )?;
    let warn = anstyle::AnsiColor::Yellow.on_default().bold();
    for warning in &table.warnings {
        writeln!(out, "{warn}warning{warn:#}: {}", warning.summary)?;
        for task in &warning.tasks {
            writeln!(out, "  {task}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{
        super::test_events::{analysis, two_process_analysis},
        *,
    };

    #[test]
    fn rows_sort_largest_first() {
        let analysis = analysis();
        let ids = |sort| -> Vec<u64> {
            Table::new(&analysis, sort, 1000)
                .tasks
                .iter()
                .map(|row| row.async_id)
                .collect()
        };
        assert_eq!(ids(SortBy::Busy)[0], 2);
        assert_eq!(ids(SortBy::Lifetime)[..2], [1, 9]);
        assert_eq!(ids(SortBy::Polls)[..3], [1, 2, 4]);
    }

    #[test]
    fn csv_has_a_header_and_a_row_per_task() {
        let analysis = analysis();
        let table = Table::new(&analysis, SortBy::Busy, 1000);
        let mut out = Vec::new();
        write_csv(&mut out, &table).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "pid,async_id,type,trigger_id,state,polls,busy_ns,idle_ns,lifetime_ns,longest_poll_ns,blocking_polls,wakes,self_wakes,sched_p50_ns,sched_p99_ns,sched_max_ns,name,location,parked_at"
        );
        assert_eq!(
            lines[1],
            "1,2,tokio.task,1,done,2,17000000,5000000,22000000,16000000,1,0,0,,,,,,"
        );
        assert_eq!(lines.len(), 1 + analysis.tasks.len());
        assert!(text.contains("\n1,9,tokio.task,,idle,"));
    }

    #[test]
    fn several_processes_get_a_pid_column_and_a_row_per_task_of_each() {
        let analysis = two_process_analysis();
        let table = Table::new(&analysis, SortBy::Busy, 1000);
        let keys: Vec<(u32, u64)> = table.tasks.iter().map(|r| (r.pid, r.async_id)).collect();
        assert_eq!(keys.len(), 10);
        assert_eq!(keys[..2], [(1, 2), (2, 2)]);
        let mut out = anstream::StripStream::new(Vec::new());
        write_text(&mut out, &analysis, &table).unwrap();
        let text = String::from_utf8(out.into_inner()).unwrap();
        assert!(text.starts_with("     PID      ID  TYPE "), "{text}");
        assert!(text.contains("\n       2       2  tokio.task "), "{text}");
        assert!(text.contains("10 tasks in 2 processes over"), "{text}");
        assert!(
            text.contains("\n  pid 2 #3: spawned at 0.003000s, never polled"),
            "{text}"
        );
    }

    #[test]
    fn an_idle_task_shows_where_it_is_parked_in_every_format() {
        let analysis = super::super::test_events::parked_analysis();
        let table = Table::new(&analysis, SortBy::Busy, 1000);
        let nine = table.tasks.iter().find(|row| row.async_id == 9).unwrap();
        let chain = super::super::test_events::PARKED_AT;
        assert_eq!(nine.parked_at.as_deref(), Some(chain));
        let parked: Vec<u64> = table
            .tasks
            .iter()
            .filter(|row| row.parked_at.is_some())
            .map(|row| row.async_id)
            .collect();
        assert_eq!(parked, [9], "done tasks are parked nowhere");
        let mut out = anstream::StripStream::new(Vec::new());
        write_text(&mut out, &analysis, &table).unwrap();
        let text = String::from_utf8(out.into_inner()).unwrap();
        assert!(text.contains(&format!("?  parked at {chain}\n")), "{text}");
        let mut out = Vec::new();
        write_csv(&mut out, &table).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains(&format!(",{chain}\n"))
        );
    }

    #[test]
    fn text_ends_with_the_warnings() {
        let analysis = analysis();
        let table = Table::new(&analysis, SortBy::Busy, 1000);
        let mut out = anstream::StripStream::new(Vec::new());
        write_text(&mut out, &analysis, &table).unwrap();
        let text = String::from_utf8(out.into_inner()).unwrap();
        assert!(text.starts_with("      ID  TYPE            TRIGGER  STATE"));
        assert!(text.contains("warning: 1 task(s) were never polled\n  #3: spawned at"));
    }
}
