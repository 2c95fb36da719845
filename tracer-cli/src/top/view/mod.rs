//! Drawing `tracer top`: one module per screen, all reading a [`TopState`] and
//! the [`View`] (which screen, the cursor, the sort, the filter). Input changes
//! the view; nothing here changes the state.

pub mod controls;
pub mod header;
pub mod names;
pub mod styles;
pub mod task;
pub mod tasks;
pub mod tree;
pub mod warnings;

use ratatui::{
    Frame,
    layout::{Constraint, Layout},
    widgets::{Paragraph, Wrap},
};

pub use styles::Styles;
use tasks::Column;

use super::{input::Action, state::TopState};
use crate::{model::TaskKey, top::state::tasks::TaskRow};

/// Which screen is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    /// The task table.
    Tasks,
    /// One task's details.
    Task(TaskKey),
    /// The trigger tree.
    Tree,
    /// The warnings.
    Warnings,
    /// Tasks aggregated by name.
    Names,
}

/// Where a recording is being looked at: shown in the header, moved with ←/→.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// The position, ns after the session's start.
    pub position_ns: u64,
    /// The recording's length, ns.
    pub length_ns: u64,
    /// Playing (the position advances by itself).
    pub playing: bool,
    /// How far ←/→ move.
    pub step_ns: u64,
}

/// What the user is looking at: everything input changes, nothing the
/// session does.
#[derive(Clone, Debug)]
pub struct View {
    /// The screen.
    pub screen: Screen,
    /// The column the task table is sorted by.
    pub sort: Column,
    /// Largest (or last) first.
    pub descending: bool,
    /// Only tasks whose name contains this.
    pub filter: String,
    /// The filter is being typed.
    pub typing_filter: bool,
    /// The view is frozen (`p`); tracing goes on.
    pub paused: bool,
    /// The table row under the cursor.
    cursor: usize,
    /// The task under the cursor, so it stays there when rows move.
    selected: Option<TaskKey>,
    /// The user moved the cursor: it follows its task from then on (before,
    /// it stays on the top row, whichever task that is).
    pinned: bool,
    /// First line shown on the scrolling screens.
    scroll: usize,
    /// Rows of the last table drawn, for page up/down.
    page: usize,
}

impl Default for View {
    fn default() -> Self {
        Self {
            screen: Screen::Tasks,
            sort: Column::Busy,
            descending: true,
            filter: String::new(),
            typing_filter: false,
            paused: false,
            cursor: 0,
            selected: None,
            pinned: false,
            scroll: 0,
            page: 10,
        }
    }
}

impl View {
    /// Moves the cursor to where the selected task is now (rows re-sort as
    /// numbers change), or keeps its index when that task is gone.
    fn settle_cursor(&mut self, rows: &[TaskRow]) {
        if let Some(index) = self
            .selected
            .filter(|_| self.pinned)
            .and_then(|key| rows.iter().position(|row| row.key == key))
        {
            self.cursor = index;
        }
        self.cursor = self.cursor.min(rows.len().saturating_sub(1));
        self.selected = rows.get(self.cursor).map(|row| row.key);
    }

    /// The task under the cursor.
    #[cfg(test)]
    pub fn selected(&self) -> Option<TaskKey> {
        self.selected
    }

    /// Applies a key's action to the view; the ones that are not about the
    /// view (quit, pause, the timeline) are the caller's and return `false`.
    pub fn handle(&mut self, action: Action, state: &TopState) -> bool {
        match action {
            Action::Up
            | Action::Down
            | Action::PageUp
            | Action::PageDown
            | Action::Home
            | Action::End => {
                self.move_cursor(action, state);
            }
            Action::SortLeft | Action::SortRight => {
                let index = Column::ALL
                    .iter()
                    .position(|c| *c == self.sort)
                    .unwrap_or(0);
                let count = Column::ALL.len();
                let next = if action == Action::SortLeft {
                    (index + count - 1) % count
                } else {
                    (index + 1) % count
                };
                self.sort = Column::ALL[next];
                self.descending = self.sort.largest_first();
            }
            Action::SortInvert => self.descending = !self.descending,
            Action::StartFilter => {
                self.screen = Screen::Tasks;
                self.typing_filter = true;
            }
            Action::FilterChar(c) => self.filter.push(c),
            Action::FilterBackspace => {
                self.filter.pop();
            }
            Action::FilterDone => self.typing_filter = false,
            Action::FilterCancel => {
                self.typing_filter = false;
                self.filter.clear();
            }
            Action::Open => {
                if self.screen == Screen::Tasks {
                    let rows = tasks::visible_rows(state, self);
                    self.settle_cursor(&rows);
                    if let Some(key) = self.selected {
                        self.show(Screen::Task(key));
                    }
                }
            }
            Action::Back => self.show(Screen::Tasks),
            Action::Tree => self.show(Screen::Tree),
            Action::Warnings => self.show(Screen::Warnings),
            Action::Names => self.show(Screen::Names),
            Action::Pause => self.paused = !self.paused,
            Action::Quit | Action::StepBack | Action::StepForward | Action::PlayPause => {
                return false;
            }
        }
        true
    }

    fn show(&mut self, screen: Screen) {
        self.screen = screen;
        self.scroll = 0;
    }

    fn move_cursor(&mut self, action: Action, state: &TopState) {
        let delta = |n: usize, down: bool, at: usize| {
            if down {
                at.saturating_add(n)
            } else {
                at.saturating_sub(n)
            }
        };
        let step = match action {
            Action::Up | Action::Down => 1,
            Action::PageUp | Action::PageDown => self.page,
            _ => usize::MAX / 2,
        };
        let down = matches!(action, Action::Down | Action::PageDown | Action::End);
        if self.screen == Screen::Tasks {
            let rows = tasks::visible_rows(state, self);
            self.settle_cursor(&rows);
            self.cursor = delta(step, down, self.cursor).min(rows.len().saturating_sub(1));
            self.pinned = true;
            self.selected = rows.get(self.cursor).map(|row| row.key);
        } else {
            // Screens clamp the scroll to their length when drawn.
            self.scroll = delta(step, down, self.scroll);
        }
    }

    /// Draws the whole screen: header, the current screen, and its keys.
    pub fn draw(
        &mut self,
        frame: &mut Frame,
        state: &TopState,
        timeline: Option<&Timeline>,
        styles: Styles,
    ) {
        let area = frame.area();
        let header = header::lines(state, self, timeline, styles);
        let keys = controls::keys(&self.screen, self.typing_filter, timeline.is_some());
        let keys_line = controls::line(&keys, styles);
        let keys_height = if area.width == 0 {
            1
        } else {
            (keys_line.width() as u16).div_ceil(area.width).clamp(1, 3)
        };
        let [top, body, bottom] = Layout::vertical([
            Constraint::Length(header.len() as u16),
            Constraint::Min(1),
            Constraint::Length(keys_height),
        ])
        .areas(area);
        frame.render_widget(Paragraph::new(header), top);
        match self.screen {
            Screen::Tasks => tasks::draw(frame, body, state, self, styles),
            Screen::Task(key) => {
                let lines = task::lines(state, key, styles);
                self.draw_scrolled(frame, body, lines, " task details ", styles);
            }
            Screen::Tree => {
                let lines = tree::lines(state, styles);
                self.draw_scrolled(frame, body, lines, " trigger tree ", styles);
            }
            Screen::Warnings => {
                let lines = warnings::lines(state, styles);
                self.draw_scrolled(frame, body, lines, " warnings (the stats rules) ", styles);
            }
            Screen::Names => names::draw(frame, body, state, styles),
        }
        frame.render_widget(Paragraph::new(keys_line).wrap(Wrap { trim: true }), bottom);
    }

    /// Draws `lines` under a titled rule, from the scroll position (clamped).
    fn draw_scrolled(
        &mut self,
        frame: &mut Frame,
        area: ratatui::layout::Rect,
        lines: Vec<ratatui::text::Line<'static>>,
        title: &'static str,
        styles: Styles,
    ) {
        let visible = usize::from(area.height.saturating_sub(1)).max(1);
        self.scroll = self.scroll.min(lines.len().saturating_sub(visible));
        let shown: Vec<_> = lines.into_iter().skip(self.scroll).collect();
        let block = ratatui::widgets::Block::new()
            .borders(ratatui::widgets::Borders::TOP)
            .title(ratatui::text::Span::styled(title, styles.title()));
        frame.render_widget(Paragraph::new(shown).block(block), area);
    }
}

#[cfg(test)]
mod tests;
