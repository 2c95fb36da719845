//! The warnings (`w`): the same [`Warn`](crate::sinks::analysis::warnings::Warn) rules
//! as `tracer stats`, over the tasks kept now.

use ratatui::text::{Line, Span};

use super::Styles;
use crate::{sinks::analysis::warnings::check_all, top::state::TopState};

/// One line per warning, then its tasks indented.
pub fn lines(state: &TopState, styles: Styles) -> Vec<Line<'static>> {
    let analysis = state.analysis();
    let warnings = check_all(&analysis, state.options().many_polls);
    if warnings.is_empty() {
        return vec![Line::from("no warnings")];
    }
    let mut lines = Vec::new();
    for warning in warnings {
        lines.push(Line::from(Span::styled(
            format!("warning: {}", warning.summary),
            styles.warning(),
        )));
        lines.extend(
            warning
                .tasks
                .into_iter()
                .map(|task| Line::from(format!("  {task}"))),
        );
    }
    lines
}
