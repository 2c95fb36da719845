//! The trigger tree (`t`): every task kept under the one that spawned it, built
//! by the same [`TriggerTree`] as `tracer tree`, drawn with box lines.

use ratatui::text::{Line, Span};

use super::Styles;
use crate::{
    sinks::analysis::{
        human_duration,
        tree::{Node, TreeOptions, TriggerTree},
    },
    top::state::TopState,
};

/// The tree's lines: a heading per root, then the tasks, indented.
pub fn lines(state: &TopState, styles: Styles) -> Vec<Line<'static>> {
    let analysis = state.analysis();
    let tree = match TriggerTree::build(&analysis, &TreeOptions::default()) {
        Ok(tree) => tree,
        Err(error) => return vec![Line::from(error.to_string())],
    };
    if tree.roots.is_empty() {
        return vec![Line::from("no tasks yet")];
    }
    let mut lines = Vec::new();
    for root in &tree.roots {
        let heading = root.root.label();
        lines.push(Line::from(Span::styled(heading, styles.title())));
        nodes(state, root.pid, &root.children, "", styles, &mut lines);
    }
    lines
}

fn nodes(
    state: &TopState,
    pid: u32,
    children: &[Node],
    prefix: &str,
    styles: Styles,
    out: &mut Vec<Line<'static>>,
) {
    for (index, node) in children.iter().enumerate() {
        let last = index + 1 == children.len();
        let (branch, indent) = if last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        let name = state
            .name_of(&(pid, node.async_id))
            .unwrap_or_else(|| node.resource_type.clone());
        out.push(Line::from(vec![
            Span::styled(format!("{prefix}{branch}"), styles.dim()),
            Span::styled(format!("#{}", node.async_id), styles.value()),
            Span::raw(format!(
                " {name}  {}  polls {}  busy {}",
                node.state.as_str(),
                node.polls,
                human_duration(node.busy_ns)
            )),
        ]));
        nodes(
            state,
            pid,
            &node.children,
            &format!("{prefix}{indent}"),
            styles,
            out,
        );
    }
}
