//! The marker path end to end without an outside process (as aya's own tests
//! do): this test binary declares resources with `tracer-resource`, finds its
//! own markers, probes them, and reads what arrives through the ring buffer.
//! Needs root (BPF); fails with the reason otherwise.

use tracer_common::RawResourceEvent;
use tracer_resource::AsyncResource;

use crate::{
    kernel::probes::{DEFAULT_RING_BYTES, ProbeSet, Probes},
    model::event::{HookEvent, HookKind},
    model::resources::ResourceModel,
    runtime::BpfGlobals,
    target::Target,
    target::preflight,
};

#[test]
fn markers_called_by_this_process_arrive_as_hook_events() {
    preflight::check_privileges().unwrap_or_else(|e| panic!("this test loads BPF: {e:#}"));
    let pid = std::process::id();
    let objects = Target::inspect(pid)
        .and_then(|target| crate::runtime::markers::find(&target))
        .unwrap();
    assert!(
        !objects.is_empty(),
        "no tracer_resource_v1_* marker in this test binary"
    );
    let mut probes =
        Probes::load(pid, &BpfGlobals::default(), DEFAULT_RING_BYTES, None, None).unwrap();
    for object in &objects {
        let report = probes
            .attach(
                &object.attach_path,
                &object.sites.sites,
                std::num::NonZeroU32::new(pid),
                ProbeSet::All,
                &|_| 0,
                &|_| false,
            )
            .unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
    }
    let mut ring = probes.take_events().unwrap();
    probes.arm().unwrap();

    let name = "Selftest".repeat(10); // 80 bytes: cut to 64 and marked
    let outer = AsyncResource::with_trigger(&name, 0);
    let inner = outer.in_scope(|| AsyncResource::new("Inner"));
    let (outer_id, inner_id) = (outer.async_id(), inner.async_id());
    drop(inner);
    drop(outer);

    let mut model = ResourceModel::default();
    let mut events: Vec<HookEvent> = Vec::new();
    while let Some(item) = ring.next() {
        assert_eq!(item.len(), size_of::<RawResourceEvent>());
        // SAFETY: the size matches and every bit pattern is a valid event.
        let raw = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<RawResourceEvent>()) };
        model.apply(&raw, |event| events.push(event)).unwrap();
    }
    let seen: Vec<(&str, u64)> = events.iter().map(|e| (e.kind.name(), e.async_id)).collect();
    assert_eq!(
        seen,
        [
            ("init", outer_id),
            ("before", outer_id),
            ("init", inner_id),
            ("after", outer_id),
            ("destroy", inner_id),
            ("destroy", outer_id),
        ]
    );
    let HookKind::Init {
        resource_type,
        trigger_id,
        ..
    } = &events[2].kind
    else {
        unreachable!()
    };
    assert_eq!(
        (resource_type.as_str(), *trigger_id),
        ("Inner", Some(outer_id))
    );
    let HookKind::Init { resource_type, .. } = &events[0].kind else {
        unreachable!()
    };
    assert_eq!(resource_type.as_str(), format!("{}…", &name[..64]));
}
