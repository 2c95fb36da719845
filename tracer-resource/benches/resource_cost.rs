//! What a resource costs when nobody traces: `new` + `in_scope` + drop, i.e. four
//! marker calls, an id from the thread's block and the thread's scope swap.
//! Measured beside the floor: four calls to empty non-inlined functions, which
//! is what the markers themselves cost.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tracer_resource::AsyncResource;

/// The floor: one empty function that the compiler may not inline or remove.
#[inline(never)]
fn empty_call(value: u64) {
    black_box(value);
}

fn new_in_scope_drop(c: &mut Criterion) {
    c.bench_function("floor: four empty calls", |b| {
        b.iter(|| {
            for value in 0..4 {
                empty_call(black_box(value));
            }
        })
    });
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
