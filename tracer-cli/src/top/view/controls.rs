//! The keys each screen answers to, listed at the bottom of that screen: the
//! list is the help, so a key cannot be added without being shown.

use ratatui::text::{Line, Span};

use super::{Screen, Styles};

/// The keys of `screen`, for a recording (timeline keys) or a live session.
pub fn keys(
    screen: &Screen,
    typing_filter: bool,
    recording: bool,
) -> Vec<(&'static str, &'static str)> {
    if typing_filter {
        return vec![
            ("type", "filter by name"),
            ("Enter", "keep"),
            ("Esc", "clear"),
        ];
    }
    let mut keys = match screen {
        Screen::Tasks => vec![
            ("↑↓", "select"),
            ("Enter", "details"),
            ("<>", "sort column"),
            ("i", "invert"),
            ("/", "filter"),
            ("t", "tree"),
            ("w", "warnings"),
            ("n", "by name"),
        ],
        Screen::Task(_) | Screen::Tree | Screen::Warnings | Screen::Names => {
            vec![("↑↓", "scroll"), ("Esc", "back")]
        }
    };
    if recording {
        keys.extend([("←→", "step"), ("space", "play/pause")]);
    } else {
        keys.push(("p", "pause"));
    }
    keys.push(("q", "quit"));
    keys
}

/// The keys as one line of spans: `key` emphasised, then what it does.
pub fn line(keys: &[(&str, &str)], styles: Styles) -> Line<'static> {
    let mut spans = Vec::new();
    for (index, (key, what)) in keys.iter().enumerate() {
        if index > 0 {
            spans.push(Span::raw("  "));
        }
        spans.push(Span::styled((*key).to_owned(), styles.key()));
        spans.push(Span::raw(format!(" {what}")));
    }
    Line::from(spans)
}
