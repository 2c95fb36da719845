//! The task table: one row per task, sortable by any column, filtered by name,
//! with columns dropped from the right of their priority order when the terminal
//! is narrow (80 columns keep id, name, state, polls, busy, idle and trigger).

use std::cmp::Ordering;

use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    text::Span,
    widgets::{Block, Borders, Cell, Row, Table, TableState},
};

use super::{Styles, View};
use crate::{
    sinks::analysis::human_duration,
    top::state::{
        TopState,
        tasks::{RowState, TaskRow},
    },
};

/// A column of the task table, in display order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// Task id.
    Id,
    /// Name (or resource type).
    Name,
    /// running / scheduled / idle / done.
    State,
    /// Polls finished.
    Polls,
    /// Time in polls.
    Busy,
    /// Time alive, not polled.
    Idle,
    /// Scheduling delay, 99th percentile.
    SchedP99,
    /// Wakes.
    Wakes,
    /// Self-wakes.
    SelfWakes,
    /// Spawn location.
    Location,
    /// The spawning task.
    Trigger,
}

impl Column {
    /// Every column, in display order (the order `<` and `>` walk).
    pub const ALL: [Column; 11] = [
        Column::Id,
        Column::Name,
        Column::State,
        Column::Polls,
        Column::Busy,
        Column::Idle,
        Column::SchedP99,
        Column::Wakes,
        Column::SelfWakes,
        Column::Location,
        Column::Trigger,
    ];

    /// Which columns survive a narrow terminal first: the first ones here.
    const PRIORITY: [Column; 11] = [
        Column::Id,
        Column::Name,
        Column::State,
        Column::Busy,
        Column::Polls,
        Column::Idle,
        Column::Trigger,
        Column::SchedP99,
        Column::Wakes,
        Column::SelfWakes,
        Column::Location,
    ];

    /// The heading.
    pub fn title(self) -> &'static str {
        match self {
            Column::Id => "ID",
            Column::Name => "NAME",
            Column::State => "STATE",
            Column::Polls => "POLLS",
            Column::Busy => "BUSY",
            Column::Idle => "IDLE",
            Column::SchedP99 => "SCHED p99",
            Column::Wakes => "WAKES",
            Column::SelfWakes => "SELF",
            Column::Location => "LOCATION",
            Column::Trigger => "TRIGGER",
        }
    }

    /// Width in cells (the name's is its least: it takes what is left).
    fn width(self) -> u16 {
        match self {
            Column::Id => 7,
            Column::Name => 24,
            Column::State => 9,
            Column::Polls => 8,
            Column::Busy | Column::Idle => 9,
            Column::SchedP99 => 9,
            Column::Wakes => 7,
            Column::SelfWakes => 6,
            Column::Location => 22,
            Column::Trigger => 8,
        }
    }

    /// Numbers sort largest first when a column is chosen; words A to Z.
    pub fn largest_first(self) -> bool {
        !matches!(
            self,
            Column::Id | Column::Name | Column::Location | Column::State
        )
    }

    /// Orders two rows by this column (ties by task, so the order is stable).
    fn compare(self, a: &TaskRow, b: &TaskRow) -> Ordering {
        match self {
            Column::Id => Ordering::Equal,
            Column::Name => a.name.cmp(&b.name),
            Column::State => a.state.cmp(&b.state),
            Column::Polls => a.polls.cmp(&b.polls),
            Column::Busy => a.busy_ns.cmp(&b.busy_ns),
            Column::Idle => a.idle_ns.cmp(&b.idle_ns),
            Column::SchedP99 => a.sched_p99_ns.cmp(&b.sched_p99_ns),
            Column::Wakes => a.wakes.cmp(&b.wakes),
            Column::SelfWakes => a.self_wakes.cmp(&b.self_wakes),
            Column::Location => a.location.cmp(&b.location),
            Column::Trigger => a.trigger_id.cmp(&b.trigger_id),
        }
    }

    /// The cell's text for `row`.
    fn text(self, row: &TaskRow) -> String {
        let measured = |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
        match self {
            Column::Id => row.key.1.to_string(),
            Column::Name => row.name.clone(),
            Column::State => row.state.as_str().to_owned(),
            Column::Polls => row.polls.to_string(),
            Column::Busy => human_duration(row.busy_ns),
            Column::Idle => human_duration(row.idle_ns),
            Column::SchedP99 => row
                .sched_p99_ns
                .map_or_else(|| "-".to_owned(), human_duration),
            Column::Wakes => measured(row.wakes),
            Column::SelfWakes => measured(row.self_wakes),
            Column::Location => row.location.clone().unwrap_or_else(|| "-".to_owned()),
            Column::Trigger => match row.trigger_id {
                None => "?".to_owned(),
                Some(0) => "-".to_owned(),
                Some(id) => id.to_string(),
            },
        }
    }

    fn right_aligned(self) -> bool {
        !matches!(self, Column::Name | Column::State | Column::Location)
    }
}

/// The columns that fit in `width` cells, in display order.
pub fn columns_for(width: u16) -> Vec<Column> {
    let mut used = 0u16;
    let mut kept = Vec::new();
    for column in Column::PRIORITY {
        let needed = column.width() + u16::from(!kept.is_empty());
        if used + needed > width {
            break;
        }
        used += needed;
        kept.push(column);
    }
    Column::ALL
        .into_iter()
        .filter(|column| kept.contains(column))
        .collect()
}

/// The rows the table shows, in order: those whose name, type or location
/// contains the filter, case-insensitively, sorted as the view says.
pub fn visible_rows(state: &TopState, view: &View) -> Vec<TaskRow> {
    let needle = view.filter.to_lowercase();
    let mut rows: Vec<TaskRow> = state
        .rows()
        .into_iter()
        .filter(|row| {
            needle.is_empty()
                || row.name.to_lowercase().contains(&needle)
                || row.resource_type.to_lowercase().contains(&needle)
                || row
                    .location
                    .as_ref()
                    .is_some_and(|location| location.to_lowercase().contains(&needle))
        })
        .collect();
    rows.sort_by(|a, b| {
        let order = view.sort.compare(a, b);
        let order = if view.descending {
            order.reverse()
        } else {
            order
        };
        order.then(a.key.cmp(&b.key))
    });
    rows
}

/// Draws the table in `area`, with the cursor on `view`'s selected task.
pub fn draw(frame: &mut Frame, area: Rect, state: &TopState, view: &mut View, styles: Styles) {
    let rows = visible_rows(state, view);
    view.settle_cursor(&rows);
    let columns = columns_for(area.width);
    let headings = columns.iter().map(|column| {
        let mut title = column.title().to_owned();
        let style = if *column == view.sort {
            title.push(if view.descending { '↓' } else { '↑' });
            styles.sorted_heading()
        } else {
            styles.heading()
        };
        let heading = ratatui::text::Line::from(Span::styled(title, style));
        Cell::from(if column.right_aligned() {
            heading.right_aligned()
        } else {
            heading
        })
    });
    let body = rows.iter().map(|row| {
        let style = match row.state {
            RowState::Done => styles.dim(),
            RowState::Running => styles.running(),
            RowState::Scheduled | RowState::Idle => ratatui::style::Style::new(),
        };
        Row::new(columns.iter().map(|column| {
            let text = column.text(row);
            let cell = if column.right_aligned() {
                ratatui::text::Line::from(text).right_aligned()
            } else {
                ratatui::text::Line::from(text)
            };
            Cell::from(cell)
        }))
        .style(style)
    });
    let widths = columns.iter().map(|column| match column {
        Column::Name => Constraint::Min(column.width()),
        other => Constraint::Length(other.width()),
    });
    let shown = if view.filter.is_empty() && !view.typing_filter {
        format!(" {} tasks ", rows.len())
    } else {
        format!(
            " {} of {} tasks match /{}{} ",
            rows.len(),
            state.tasks_kept(),
            view.filter,
            if view.typing_filter { "_" } else { "" }
        )
    };
    let table = Table::new(body, widths)
        .header(Row::new(headings))
        .column_spacing(1)
        .row_highlight_style(styles.selected())
        .block(
            Block::new()
                .borders(Borders::TOP)
                .title(Span::styled(shown, styles.title())),
        );
    let mut table_state =
        TableState::new().with_selected((!rows.is_empty()).then_some(view.cursor));
    view.page = usize::from(area.height.saturating_sub(2)).max(1);
    frame.render_stateful_widget(table, area, &mut table_state);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_terminals_keep_the_most_telling_columns() {
        let at_80 = columns_for(80);
        assert_eq!(
            at_80,
            [
                Column::Id,
                Column::Name,
                Column::State,
                Column::Polls,
                Column::Busy,
                Column::Idle,
                Column::Trigger
            ]
        );
        assert_eq!(columns_for(200), Column::ALL);
        assert_eq!(columns_for(45), [Column::Id, Column::Name, Column::State]);
    }
}
