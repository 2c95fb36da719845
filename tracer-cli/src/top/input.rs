//! Keys to actions: what each key means on each screen of `tracer top`, in one
//! table, so the controls line and the behaviour cannot drift apart.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// Something the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Leave top (`q`, Ctrl-C).
    Quit,
    /// Cursor (or scroll) up / down, a page up / down, to the top / bottom.
    Up,
    /// See [`Action::Up`].
    Down,
    /// See [`Action::Up`].
    PageUp,
    /// See [`Action::Up`].
    PageDown,
    /// See [`Action::Up`].
    Home,
    /// See [`Action::Up`].
    End,
    /// Sort by the column to the left / right.
    SortLeft,
    /// See [`Action::SortLeft`].
    SortRight,
    /// Reverse the sort order.
    SortInvert,
    /// Start typing a name filter (`/`).
    StartFilter,
    /// A character of the filter.
    FilterChar(char),
    /// Delete the filter's last character.
    FilterBackspace,
    /// Keep the filter and stop typing.
    FilterDone,
    /// Clear the filter and stop typing.
    FilterCancel,
    /// Open the selected task's details (`Enter`).
    Open,
    /// Back to the task list (`Esc`).
    Back,
    /// The trigger tree (`t`).
    Tree,
    /// The warnings (`w`).
    Warnings,
    /// Tasks aggregated by name (`n`).
    Names,
    /// Freeze / unfreeze the view; tracing goes on (`p`).
    Pause,
    /// Recording: a step back / forward in time (`←` / `→`).
    StepBack,
    /// See [`Action::StepBack`].
    StepForward,
    /// Recording: play / pause the timeline (space).
    PlayPause,
}

/// The action of `key`, while typing a filter or not.
pub fn action(key: KeyEvent, typing_filter: bool) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    if typing_filter {
        return match key.code {
            KeyCode::Char(c) => Some(Action::FilterChar(c)),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Enter => Some(Action::FilterDone),
            KeyCode::Esc => Some(Action::FilterCancel),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::Home,
        KeyCode::End | KeyCode::Char('G') => Action::End,
        KeyCode::Char('<') => Action::SortLeft,
        KeyCode::Char('>') => Action::SortRight,
        KeyCode::Char('i') => Action::SortInvert,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Enter => Action::Open,
        KeyCode::Esc => Action::Back,
        KeyCode::Char('t') => Action::Tree,
        KeyCode::Char('w') => Action::Warnings,
        KeyCode::Char('n') => Action::Names,
        KeyCode::Char('p') => Action::Pause,
        KeyCode::Left => Action::StepBack,
        KeyCode::Right => Action::StepForward,
        KeyCode::Char(' ') => Action::PlayPause,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn letters_are_commands_unless_a_filter_is_being_typed() {
        assert_eq!(action(key(KeyCode::Char('q')), false), Some(Action::Quit));
        assert_eq!(
            action(key(KeyCode::Char('q')), true),
            Some(Action::FilterChar('q'))
        );
        assert_eq!(action(key(KeyCode::Esc), true), Some(Action::FilterCancel));
        assert_eq!(action(key(KeyCode::Esc), false), Some(Action::Back));
    }

    #[test]
    fn ctrl_c_quits_even_while_typing() {
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action(ctrl_c, true), Some(Action::Quit));
        assert_eq!(action(ctrl_c, false), Some(Action::Quit));
    }
}
