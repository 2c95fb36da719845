//! `--task GLOB`: only the tasks whose name matches are reported. The globs
//! also choose which `raw::poll` sites get probes (the session asks
//! [`TaskGlobs::matches`] for each site's name), so other tasks cost nothing
//! per poll; [`TaskFilter`] then drops every event of a task whose `init` did
//! not match, and counts them, so none is lost silently.
//!
//! A glob is matched against the whole name: `*` is any run of characters
//! (`::` included), `?` is one character, everything else is itself. A task
//! without a name matches no glob.

use std::collections::HashSet;

use crate::{
    model::TaskKey,
    model::event::{HookEvent, HookKind},
};

/// The `--task` globs of a session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskGlobs {
    patterns: Vec<String>,
}

impl TaskGlobs {
    /// The globs, as given (none: every task).
    pub fn new(patterns: Vec<String>) -> Self {
        Self { patterns }
    }

    /// Whether no glob was given (every task is reported).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `name` matches one of the globs.
    pub fn matches(&self, name: &str) -> bool {
        self.patterns
            .iter()
            .any(|pattern| glob_match(pattern, name))
    }

    /// The globs joined for messages: `'a*', 'b'`.
    pub fn describe(&self) -> String {
        self.patterns
            .iter()
            .map(|pattern| format!("'{pattern}'"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether all of `text` matches `pattern` (`*`: any run, `?`: one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Greedy matching with backtracking to the last `*`: linear in practice.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if *c == '?' || *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Drops the events of tasks whose name does not match, counting tasks.
#[derive(Debug)]
pub struct TaskFilter {
    globs: TaskGlobs,
    /// Tasks whose `init` did not match, until their `destroy`.
    hidden: HashSet<TaskKey>,
    /// Tasks reported.
    pub matched: u64,
    /// Tasks left out.
    pub left_out: u64,
}

impl TaskFilter {
    /// A filter reporting the tasks `globs` match.
    pub fn new(globs: TaskGlobs) -> Self {
        Self {
            globs,
            hidden: HashSet::new(),
            matched: 0,
            left_out: 0,
        }
    }

    /// The event if its task is reported. An `init` outside any reported task
    /// (`trigger_id` 0) gets an unknown trigger: the tasks left out are not
    /// probed per poll, so "outside any task" cannot be told from "inside a
    /// task left out".
    pub fn pass(&mut self, mut event: HookEvent) -> Option<HookEvent> {
        let key = (event.pid, event.async_id);
        if let HookKind::Init {
            name, trigger_id, ..
        } = &mut event.kind
        {
            if name.as_deref().is_some_and(|name| self.globs.matches(name)) {
                self.hidden.remove(&key);
                self.matched += 1;
                if *trigger_id == Some(0) {
                    *trigger_id = None;
                }
                return Some(event);
            }
            self.hidden.insert(key);
            self.left_out += 1;
            return None;
        }
        if matches!(event.kind, HookKind::Destroy) && self.hidden.remove(&key) {
            return None;
        }
        (!self.hidden.contains(&key)).then_some(event)
    }

    /// The summary line: how many tasks matched and how many were left out.
    pub fn summary(&self) -> String {
        format!(
            "--task {}: {} tasks reported, {} left out (their names do not match, or they have none)",
            self.globs.describe(),
            self.matched,
            self.left_out
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::ResourceType;

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_match("app::*", "app::handle"));
        assert!(glob_match("*handle", "app::handle"));
        assert!(glob_match("app::worker<u??>", "app::worker<u64>"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("app::*", "other::app::handle"));
        assert!(!glob_match("app::handle", "app::handle2"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }

    fn event(kind: HookKind, async_id: u64) -> HookEvent {
        HookEvent {
            kind,
            async_id,
            ts_ns: 0,
            pid: 1,
            tid: 1,
        }
    }

    fn init(async_id: u64, name: Option<&str>) -> HookEvent {
        event(
            HookKind::Init {
                resource_type: ResourceType::TOKIO_TASK,
                trigger_id: Some(0),
                existing: false,
                name: name.map(str::to_owned),
                location: None,
            },
            async_id,
        )
    }

    #[test]
    fn only_matching_tasks_pass_and_the_others_are_counted() {
        let mut filter = TaskFilter::new(TaskGlobs::new(vec!["app::h*".into()]));
        let passed: Vec<HookEvent> = [
            init(1, Some("app::handle")),
            init(2, Some("app::tick")),
            init(3, None),
            event(HookKind::Before { sched_ns: None }, 1),
            event(HookKind::Before { sched_ns: None }, 2),
            event(HookKind::Destroy, 2),
            event(HookKind::Destroy, 1),
        ]
        .into_iter()
        .filter_map(|event| filter.pass(event))
        .collect();
        let seen: Vec<(u64, &str)> = passed.iter().map(|e| (e.async_id, e.kind.name())).collect();
        assert_eq!(seen, [(1, "init"), (1, "before"), (1, "destroy")]);
        let HookKind::Init { trigger_id, .. } = &passed[0].kind else {
            unreachable!()
        };
        assert_eq!(*trigger_id, None, "outside any reported task is unknown");
        assert_eq!((filter.matched, filter.left_out), (1, 2));
        assert!(filter.hidden.contains(&(1, 3)) && !filter.hidden.contains(&(1, 2)));
    }
}
