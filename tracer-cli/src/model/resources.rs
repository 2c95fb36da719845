//! Turns embedder marker hits (`tracer-resource`) into async_hooks events.
//!
//! The application itself says what happened, so the rules are few:
//! - `init` carries the type name the application gave, decoded safely: a name
//!   longer than the BPF copy is cut at a character boundary and ends in `…`,
//!   bytes that are not UTF-8 become `�`, and a name the probe could not read at
//!   all is `(unreadable)`;
//! - a resource first seen at `before`, `after` or `destroy` was created before
//!   the tracer attached: it gets an `existing` init of type
//!   [`EXISTING_TYPE`] (its name is only ever passed at init);
//! - `after` never says `completed` (a resource has no future of its own to finish);
//! - a resource is forgotten at `destroy`;
//! - resources are told apart by process and id (`--follow-forks`).

use std::collections::HashSet;

use tracer_common::{
    RESOURCE_TYPE_CAPACITY, RESOURCE_TYPE_UNREADABLE, RawResourceEvent, ResourceKind,
};

use crate::model::event::{HookEvent, HookKind, ResourceType};

/// Type of a resource created before the tracer attached: its name was not seen.
pub const EXISTING_TYPE: &str = "(resource created before attach)";

/// The live embedder resources: feed it [`RawResourceEvent`]s in ring order.
#[derive(Debug, Default)]
pub struct ResourceModel {
    /// Live resources by (pid, async id).
    live: HashSet<(u32, u64)>,
}

impl ResourceModel {
    /// Applies one marker hit, handing the resulting hook events to `out`; an
    /// unknown kind is returned as the error, for the caller to count.
    pub fn apply(
        &mut self,
        raw: &RawResourceEvent,
        mut out: impl FnMut(HookEvent),
    ) -> Result<(), u32> {
        let kind = ResourceKind::try_from(raw.kind)?;
        let pid = (raw.pid_tgid >> 32) as u32;
        let key = (pid, raw.async_id);
        let event = |kind| HookEvent {
            kind,
            async_id: raw.async_id,
            ts_ns: raw.ts_ns,
            pid,
            tid: raw.pid_tgid as u32,
        };
        if kind == ResourceKind::Init {
            self.live.insert(key);
            out(event(HookKind::Init {
                resource_type: ResourceType::named(type_name(raw)),
                trigger_id: Some(raw.trigger_id),
                existing: false,
                name: None,
                location: None,
            }));
            return Ok(());
        }
        if self.live.insert(key) {
            out(event(HookKind::Init {
                resource_type: ResourceType::named(EXISTING_TYPE.to_owned()),
                trigger_id: None,
                existing: true,
                name: None,
                location: None,
            }));
        }
        match kind {
            ResourceKind::Init => {}
            ResourceKind::Before => out(event(HookKind::Before { sched_ns: None })),
            ResourceKind::After => out(event(HookKind::After {
                completed: false,
                awaiting: None,
            })),
            ResourceKind::Destroy => {
                self.live.remove(&key);
                out(event(HookKind::Destroy));
            }
        }
        Ok(())
    }
}

/// The type name of an init, decoded without trusting the bytes.
fn type_name(raw: &RawResourceEvent) -> String {
    if raw.type_len == RESOURCE_TYPE_UNREADABLE {
        return "(unreadable)".to_owned();
    }
    let given = raw.type_len as usize;
    let bytes = &raw.type_name[..given.min(RESOURCE_TYPE_CAPACITY)];
    if given <= RESOURCE_TYPE_CAPACITY {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    // Cut: drop a character split by the cut, keep any other bad byte visible.
    let kept = match std::str::from_utf8(bytes) {
        Err(error) if error.error_len().is_none() => &bytes[..error.valid_up_to()],
        _ => bytes,
    };
    format!("{}…", String::from_utf8_lossy(kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: ResourceKind, async_id: u64, name: &[u8], given_len: u32) -> RawResourceEvent {
        let mut type_name = [0; RESOURCE_TYPE_CAPACITY];
        let copied = name.len().min(RESOURCE_TYPE_CAPACITY);
        type_name[..copied].copy_from_slice(&name[..copied]);
        RawResourceEvent {
            ts_ns: 1,
            pid_tgid: (7 << 32) | 8,
            async_id,
            trigger_id: 3,
            kind: kind as u32,
            type_len: given_len,
            type_name,
        }
    }

    fn run(events: &[RawResourceEvent]) -> Vec<HookEvent> {
        let mut model = ResourceModel::default();
        let mut out = Vec::new();
        for event in events {
            model.apply(event, |e| out.push(e)).unwrap();
        }
        out
    }

    fn init_type(event: &HookEvent) -> &str {
        match &event.kind {
            HookKind::Init { resource_type, .. } => resource_type.as_str(),
            other => panic!("not an init: {other:?}"),
        }
    }

    #[test]
    fn init_carries_the_given_type_and_trigger() {
        let events = run(&[raw(ResourceKind::Init, 1 << 63 | 1, b"UdpEcho", 7)]);
        assert_eq!(init_type(&events[0]), "UdpEcho");
        assert!(matches!(
            events[0].kind,
            HookKind::Init {
                trigger_id: Some(3),
                existing: false,
                ..
            }
        ));
    }

    #[test]
    fn a_long_name_is_cut_at_a_character_and_marked() {
        let name = "é".repeat(40); // 80 bytes: the copy ends inside no character
        let mut long = name.into_bytes();
        long.insert(0, b'x'); // now byte 64 splits an `é`
        let events = run(&[raw(ResourceKind::Init, 1, &long, long.len() as u32)]);
        let shown = init_type(&events[0]);
        assert!(shown.ends_with('…'), "{shown}");
        assert!(!shown.contains('\u{fffd}'), "{shown}");
        assert_eq!(shown.chars().count(), 1 + 31 + 1);
    }

    #[test]
    fn a_name_that_is_not_utf8_is_shown_with_replacement_characters() {
        let events = run(&[raw(ResourceKind::Init, 1, b"Udp\xffEcho", 8)]);
        assert_eq!(init_type(&events[0]), "Udp\u{fffd}Echo");
    }

    #[test]
    fn an_unreadable_name_says_so() {
        let events = run(&[raw(ResourceKind::Init, 1, b"", RESOURCE_TYPE_UNREADABLE)]);
        assert_eq!(init_type(&events[0]), "(unreadable)");
    }

    #[test]
    fn a_resource_seen_first_after_attach_is_announced_as_existing() {
        let events = run(&[
            raw(ResourceKind::Before, 9, b"", 0),
            raw(ResourceKind::After, 9, b"", 0),
            raw(ResourceKind::Destroy, 9, b"", 0),
        ]);
        let names: Vec<_> = events.iter().map(|e| e.kind.name()).collect();
        assert_eq!(names, ["init", "before", "after", "destroy"]);
        assert!(matches!(
            events[0].kind,
            HookKind::Init {
                existing: true,
                trigger_id: None,
                ..
            }
        ));
    }
}
