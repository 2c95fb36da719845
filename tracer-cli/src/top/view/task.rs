//! One task's details (`Enter`): what it is, where it came from (its trigger
//! chain up to the root), what it spawned, how long its polls take (a bar per
//! power-of-two bucket), and what the `stats` rules warn about it.

use ratatui::text::{Line, Span};

use super::Styles;
use crate::{
    model::TaskKey,
    sinks::analysis::human_duration,
    top::state::{TopState, histogram::Histogram},
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
    let row = state.row(record);
    let field = |name: &str, value: String| {
        Line::from(vec![
            Span::styled(
                format!("{name:<14}"),
                styles
                    .heading()
                    .remove_modifier(ratatui::style::Modifier::UNDERLINED),
            ),
            Span::raw(value),
        ])
    };
    let dash = |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let spawned = match record.trigger_id {
        _ if record.existing => "existing when tracing began (trigger unknown)".to_owned(),
        None => "trigger unknown".to_owned(),
        Some(0) => "outside any task".to_owned(),
        Some(id) => format!("by #{id}"),
    };
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
    let children = state.children(&key);
    let children_text = if children.is_empty() {
        "none kept".to_owned()
    } else {
        let mut shown: Vec<String> = children.iter().take(8).map(|k| label(state, k)).collect();
        if children.len() > 8 {
            shown.push(format!("… {} more", children.len() - 8));
        }
        format!("{}: {}", children.len(), shown.join(", "))
    };
    let empty = Histogram::default();
    let polls = extras.map_or(&empty, |extras| &extras.poll_times);
    let percentiles = match (polls.percentile(50.0), polls.percentile(99.0)) {
        (Some(p50), Some(p99)) => {
            format!("p50 {}  p99 {}", human_duration(p50), human_duration(p99))
        }
        _ => "-".to_owned(),
    };
    let mut lines = vec![
        field("task", format!("#{} (pid {})", key.1, key.0)),
        field("name", row.name.clone()),
        field("type", record.resource_type.as_str().to_owned()),
        field(
            "location",
            row.location.clone().unwrap_or_else(|| "-".to_owned()),
        ),
        field("state", row.state.as_str().to_owned()),
        field(
            "spawned",
            format!(
                "{:.6}s, {spawned}",
                record.start_ns.saturating_sub(state.info().start_ns) as f64 / 1e9
            ),
        ),
        field("trigger chain", chain.join(" ← ")),
        field("children", children_text),
        field(
            "polls",
            format!(
                "{}  busy {}  idle {}  longest {}",
                record.polls,
                human_duration(record.busy_ns),
                human_duration(row.idle_ns),
                human_duration(record.longest_poll_ns)
            ),
        ),
        field("poll time", percentiles),
        field(
            "wakes",
            format!(
                "{}  self-wakes {}  sched p99 {}",
                dash(row.wakes),
                dash(row.self_wakes),
                row.sched_p99_ns
                    .map_or_else(|| "-".to_owned(), human_duration)
            ),
        ),
    ];
    lines.push(Line::from(""));
    let warnings = state.warnings_for(&key, &state.analysis());
    if warnings.is_empty() {
        lines.push(Line::from("no warnings"));
    } else {
        lines.push(Line::from(Span::styled("warnings", styles.warning())));
        lines.extend(
            warnings
                .into_iter()
                .map(|w| Line::from(Span::styled(format!("  {w}"), styles.warning()))),
        );
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        format!("poll times ({} polls)", polls.total()),
        styles.title(),
    )));
    lines.extend(histogram_lines(polls, styles));
    if let Some(sched) = extras.and_then(|extras| extras.sched_times.as_ref()) {
        lines.push(Line::from(Span::styled("scheduling delay", styles.title())));
        lines.extend(histogram_lines(sched, styles));
    }
    lines
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
