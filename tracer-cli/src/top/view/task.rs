//! One task's details (`Enter`): what it is, where it came from (its trigger
//! chain up to the root), what it spawned, how long its polls take (a bar per
//! power-of-two bucket), and what the `stats` rules warn about it.

use ratatui::text::{Line, Span};

use super::Styles;
use crate::{
    model::TaskKey,
    sinks::analysis::{TaskRecord, human_duration},
    top::state::{TopState, histogram::Histogram, tasks::TaskExtras},
};

/// Widest histogram bar, in cells.
const BAR_WIDTH: usize = 40;

/// `#5 name`.
fn label(state: &TopState, key: &TaskKey) -> String {
    match state.name_of(key) {
        Some(name) => format!("#{} {name}", key.1),
        None => format!("#{}", key.1),
    }
}

/// The lines of the details of `key`.
pub fn lines(state: &TopState, key: TaskKey, styles: Styles) -> Vec<Line<'static>> {
    let Some((record, extras)) = state.task(&key) else {
        return vec![Line::from(format!(
            "task #{} is no longer kept: it was done more than --retain ago (Esc goes back)",
            key.1
        ))];
    };
    let empty = Histogram::default();
    let details = Details {
        state,
        key,
        record,
        extras,
        polls: extras.map_or(&empty, |extras| &extras.poll_times),
        styles,
    };
    let mut lines = details.fields();
    lines.push(Line::from(""));
    lines.extend(details.warnings());
    lines.push(Line::from(""));
    lines.extend(details.histograms());
    lines
}

/// One kept task and what its details are read from, shared by the parts of the
/// screen below.
struct Details<'a> {
    state: &'a TopState,
    key: TaskKey,
    record: &'a TaskRecord,
    extras: Option<&'a TaskExtras>,
    /// Its poll times (empty without extras).
    polls: &'a Histogram,
    styles: Styles,
}

impl Details<'_> {
    /// `name          value`, the name in the heading style.
    fn field(&self, name: &str, value: String) -> Line<'static> {
        Line::from(vec![
            Span::styled(
                format!("{name:<14}"),
                self.styles
                    .heading()
                    .remove_modifier(ratatui::style::Modifier::UNDERLINED),
            ),
            Span::raw(value),
        ])
    }

    /// One line per field: identity, origin, polls and wakes.
    fn fields(&self) -> Vec<Line<'static>> {
        let (state, key, record) = (self.state, self.key, self.record);
        let row = state.row(record);
        let dash = |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
        let percentiles = match (self.polls.percentile(50.0), self.polls.percentile(99.0)) {
            (Some(p50), Some(p99)) => {
                format!("p50 {}  p99 {}", human_duration(p50), human_duration(p99))
            }
            _ => "-".to_owned(),
        };
        vec![
            self.field("task", format!("#{} (pid {})", key.1, key.0)),
            self.field("name", row.name.clone()),
            self.field("type", record.resource_type.as_str().to_owned()),
            self.field(
                "location",
                row.location.clone().unwrap_or_else(|| "-".to_owned()),
            ),
            self.field("state", row.state.as_str().to_owned()),
            self.field(
                "parked at",
                record
                    .awaiting
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), crate::model::event::parked_at),
            ),
            self.field(
                "spawned",
                format!(
                    "{:.6}s, {}",
                    record.start_ns.saturating_sub(state.info().start_ns) as f64 / 1e9,
                    self.spawned()
                ),
            ),
            self.field("trigger chain", self.trigger_chain()),
            self.field("children", self.children()),
            self.field(
                "polls",
                format!(
                    "{}  busy {}  idle {}  longest {}",
                    record.polls,
                    human_duration(record.busy_ns),
                    human_duration(row.idle_ns),
                    human_duration(record.longest_poll_ns)
                ),
            ),
            self.field("poll time", percentiles),
            self.field(
                "wakes",
                format!(
                    "{}  self-wakes {}  sched p99 {}",
                    dash(row.wakes),
                    dash(row.self_wakes),
                    row.sched_p99_ns
                        .map_or_else(|| "-".to_owned(), human_duration)
                ),
            ),
        ]
    }

    /// What spawned it, as far as known.
    fn spawned(&self) -> String {
        match self.record.trigger_id {
            _ if self.record.existing => "existing when tracing began (trigger unknown)".to_owned(),
            None => "trigger unknown".to_owned(),
            Some(0) => "outside any task".to_owned(),
            Some(id) => format!("by #{id}"),
        }
    }

    /// The task, its triggers up to the last one kept, and where that one came
    /// from.
    fn trigger_chain(&self) -> String {
        let (state, key) = (self.state, self.key);
        let mut chain = vec![label(state, &key)];
        let ancestors = state.trigger_chain(&key);
        chain.extend(ancestors.iter().map(|k| label(state, k)));
        let top = ancestors.last().copied().unwrap_or(key);
        chain.push(
            match state.task(&top).map(|(record, _)| record.trigger_id) {
                Some(Some(0)) => "(outside any task)".to_owned(),
                Some(_) => "(trigger unknown)".to_owned(),
                None => "(no longer kept)".to_owned(),
            },
        );
        chain.join(" ← ")
    }

    /// How many children are kept, and the first eight.
    fn children(&self) -> String {
        let children = self.state.children(&self.key);
        if children.is_empty() {
            return "none kept".to_owned();
        }
        let mut shown: Vec<String> = children
            .iter()
            .take(8)
            .map(|k| label(self.state, k))
            .collect();
        if children.len() > 8 {
            shown.push(format!("… {} more", children.len() - 8));
        }
        format!("{}: {}", children.len(), shown.join(", "))
    }

    /// What the `stats` rules warn about it, or that they do not.
    fn warnings(&self) -> Vec<Line<'static>> {
        let styles = self.styles;
        let warnings = self.state.warnings_for(&self.key, &self.state.analysis());
        if warnings.is_empty() {
            return vec![Line::from("no warnings")];
        }
        let mut lines = vec![Line::from(Span::styled("warnings", styles.warning()))];
        lines.extend(
            warnings
                .into_iter()
                .map(|w| Line::from(Span::styled(format!("  {w}"), styles.warning()))),
        );
        lines
    }

    /// The poll-time histogram, and the scheduling-delay one when known.
    fn histograms(&self) -> Vec<Line<'static>> {
        let styles = self.styles;
        let mut lines = vec![Line::from(Span::styled(
            format!("poll times ({} polls)", self.polls.total()),
            styles.title(),
        ))];
        lines.extend(histogram_lines(self.polls, styles));
        if let Some(sched) = self.extras.and_then(|extras| extras.sched_times.as_ref()) {
            lines.push(Line::from(Span::styled("scheduling delay", styles.title())));
            lines.extend(histogram_lines(sched, styles));
        }
        lines
    }
}

/// One bar per bucket: `  < 16.4µs ████████ 12`.
fn histogram_lines(histogram: &Histogram, styles: Styles) -> Vec<Line<'static>> {
    let buckets = histogram.buckets();
    if buckets.is_empty() {
        return vec![Line::from("  (no polls yet)")];
    }
    let most = buckets.iter().map(|b| b.count).max().unwrap_or(1).max(1);
    buckets
        .into_iter()
        .map(|bucket| {
            let width = (bucket.count as usize * BAR_WIDTH).div_ceil(most as usize);
            Line::from(vec![
                Span::raw(format!("  < {:>8} ", human_duration(bucket.below_ns))),
                Span::styled("█".repeat(width), styles.bar()),
                Span::raw(format!(" {}", bucket.count)),
            ])
        })
        .collect()
}
