//! Every colour and emphasis `tracer top` uses, in one place, with a no-colour
//! mode (`NO_COLOR`, <https://no-color.org>): without colour, emphasis is kept
//! (bold, reversed) so the selection and the warnings still stand out.

use ratatui::style::{Color, Modifier, Style};

/// The styles of one run.
#[derive(Clone, Copy, Debug)]
pub struct Styles {
    color: bool,
}

impl Styles {
    /// Colour unless `NO_COLOR` is set to anything non-empty.
    pub fn from_env() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        Self::new(!no_color)
    }

    /// With or without colour (tests choose).
    pub fn new(color: bool) -> Self {
        Self { color }
    }

    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    /// The title and section names.
    pub fn title(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// A header value.
    pub fn value(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    /// A non-zero drop count, a session that ended: something is wrong.
    pub fn alarm(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    /// A warning line.
    pub fn warning(self) -> Style {
        self.fg(Color::Yellow)
    }

    /// Column headings.
    pub fn heading(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }

    /// The column the table is sorted by.
    pub fn sorted_heading(self) -> Style {
        self.heading().patch(self.fg(Color::Cyan))
    }

    /// The row under the cursor.
    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// What matters less: done tasks, `-` for unmeasured values.
    pub fn dim(self) -> Style {
        if self.color {
            Style::new().add_modifier(Modifier::DIM)
        } else {
            Style::new()
        }
    }

    /// A task that is running now.
    pub fn running(self) -> Style {
        self.fg(Color::Green)
    }

    /// A key in the controls line.
    pub fn key(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// A histogram bar.
    pub fn bar(self) -> Style {
        self.fg(Color::Blue)
    }
}
