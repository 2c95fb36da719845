//! The header: which process (or recording) this is, and how the session is
//! doing — tasks, rates, drops (red when any), probe sites, top's own CPU.
//!
//! ```text
//! tracer top  long_running (pid 4242)  tokio 1.54.1  uptime 12.0s
//! tasks 3 alive / 240 total  polls/s 180  wakes/s -  events/s 420  drops 0  probe sites 14  cpu 0.4%
//! ```

use ratatui::text::{Line, Span};

use super::{Styles, Timeline, View};
use crate::top::state::TopState;

/// Seconds with one decimal: `12.3s`.
fn seconds(ns: u64) -> String {
    format!("{:.1}s", ns as f64 / 1e9)
}

/// A rate for people: `0`, `12`, `3.4k`, `1.2M`.
fn rate(per_s: f64) -> String {
    match per_s {
        r if r >= 1e6 => format!("{:.1}M", r / 1e6),
        r if r >= 1e4 => format!("{:.1}k", r / 1e3),
        r => format!("{r:.0}"),
    }
}

/// The header's lines: two for a live session, three for a recording.
pub fn lines(
    state: &TopState,
    view: &View,
    timeline: Option<&Timeline>,
    styles: Styles,
) -> Vec<Line<'static>> {
    let info = state.info();
    let exe = info.exe.file_name().map_or_else(
        || info.exe.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    let mut first = vec![
        Span::styled("tracer top", styles.title()),
        Span::raw("  "),
        Span::styled(exe, styles.value()),
        Span::raw(format!(" (pid {})  ", info.pid)),
        Span::styled(state.runtime(), styles.value()),
        Span::raw(format!("  uptime {}", seconds(state.uptime_ns()))),
    ];
    if view.paused {
        first.push(Span::styled("  PAUSED (p resumes)", styles.alarm()));
    }
    if timeline.is_none()
        && let Some(end) = state.end()
    {
        first.push(Span::styled(
            format!("  ended: {}", end.ending),
            styles.alarm(),
        ));
    }
    let (events_per_s, polls_per_s) = state.rates();
    let dropped = state.dropped();
    let drops_style = if dropped > 0 {
        styles.alarm()
    } else {
        styles.value()
    };
    let mut second = vec![
        Span::raw("tasks "),
        Span::styled(state.alive().to_string(), styles.value()),
        Span::raw(" alive / "),
        Span::styled(state.tasks_seen().to_string(), styles.value()),
        Span::raw(" total  polls/s "),
        Span::styled(rate(polls_per_s), styles.value()),
        Span::raw("  wakes/s "),
        match state.wakes_per_s() {
            Some(wakes_per_s) => Span::styled(rate(wakes_per_s), styles.value()),
            None => Span::styled("-", styles.dim()),
        },
        Span::raw("  events/s "),
        Span::styled(rate(events_per_s), styles.value()),
        Span::raw("  drops "),
        Span::styled(dropped.to_string(), drops_style),
    ];
    if let Some(status) = state.status() {
        second.push(Span::raw("  probe sites "));
        second.push(Span::styled(status.probe_sites.to_string(), styles.value()));
    }
    if let Some(cpu) = state.own_cpu_percent() {
        second.push(Span::raw("  cpu "));
        second.push(Span::styled(format!("{cpu:.1}%"), styles.value()));
    }
    let mut lines = vec![Line::from(first), Line::from(second)];
    if let Some(timeline) = timeline {
        lines.push(timeline_line(timeline, styles));
    }
    lines
}

/// `recording at 3.0s of 10.0s [#####·······] paused, ←/→ 1.0s`.
fn timeline_line(timeline: &Timeline, styles: Styles) -> Line<'static> {
    const BAR: usize = 24;
    let filled = if timeline.length_ns == 0 {
        BAR
    } else {
        ((timeline.position_ns as f64 / timeline.length_ns as f64) * BAR as f64).round() as usize
    }
    .min(BAR);
    Line::from(vec![
        Span::styled("recording", styles.title()),
        Span::raw(" at "),
        Span::styled(seconds(timeline.position_ns), styles.value()),
        Span::raw(format!(" of {} [", seconds(timeline.length_ns))),
        Span::styled("#".repeat(filled), styles.bar()),
        Span::raw(format!("{}] ", "·".repeat(BAR - filled))),
        Span::styled(
            if timeline.playing {
                "playing"
            } else {
                "paused"
            },
            styles.value(),
        ),
        Span::raw(format!(", ←/→ {}", seconds(timeline.step_ns))),
    ])
}
