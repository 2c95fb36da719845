//! What a resource costs when nobody traces: `new` + `in_scope` + drop, i.e. four
//! marker calls, an id from the global counter and the thread's scope swap.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tracer_resource::AsyncResource;

fn new_in_scope_drop(c: &mut Criterion) {
    c.bench_function("new + in_scope + drop (untraced)", |b| {
        b.iter(|| {
            let resource = AsyncResource::with_trigger(black_box("UdpEcho"), 0);
            resource.in_scope(|| black_box(1))
        })
    });
    c.bench_function(
        "new (trigger from scope) + in_scope + drop (untraced)",
        |b| {
            b.iter(|| {
                let resource = AsyncResource::new(black_box("UdpEcho"));
                resource.in_scope(|| black_box(1))
            })
        },
    );
}

criterion_group!(benches, new_in_scope_drop);
criterion_main!(benches);
