//! Tasks aggregated by name (`n`): the `stats` table by name, live — which kind
//! of task is busiest, and how many of each are alive.

use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Row, Table},
};

use super::Styles;
use crate::{sinks::analysis::human_duration, top::state::TopState};

/// Draws one row per name, busiest first.
pub fn draw(frame: &mut Frame, area: Rect, state: &TopState, styles: Styles) {
    let rows = state.by_name();
    let heading = ["NAME", "TASKS", "ALIVE", "POLLS", "BUSY", "LONGEST"]
        .map(|title| Cell::from(Span::styled(title, styles.heading())));
    let body = rows.iter().map(|row| {
        let right = |text: String| Cell::from(Line::from(text).right_aligned());
        Row::new([
            Cell::from(row.name.clone()),
            right(row.tasks.to_string()),
            right(row.alive.to_string()),
            right(row.polls.to_string()),
            right(human_duration(row.busy_ns)),
            right(human_duration(row.longest_poll_ns)),
        ])
    });
    let widths = [
        Constraint::Min(20),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(10),
    ];
    let table = Table::new(body, widths)
        .header(Row::new(heading))
        .column_spacing(1)
        .block(Block::new().borders(Borders::TOP).title(Span::styled(
            format!(" {} names (tasks kept now) ", rows.len()),
            styles.title(),
        )));
    frame.render_widget(table, area);
}
