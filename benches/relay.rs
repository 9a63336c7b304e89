//! Relay fan-out inside `serve`: one publisher's data messages (NetStream.send)
//! and video frames relayed to N subscribers, all real apps (`StreamApp`,
//! `Server`) over the deterministic simulated network. Only the server's
//! handling of endpoint events is timed (the relay: parsing the publisher's
//! message, fan-out into each subscriber's flows), not packet sealing or the
//! clients; and a counting allocator reports the heap allocations that
//! handling makes per relayed message, which the relay's hot path must keep
//! off the per-subscriber path.

#[path = "../tests/support/relay_lab.rs"]
mod relay_lab;
#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use relay_lab::Lab;
use rtmfp::client::stream::StreamInput;

const BATCH: u32 = 50;

fn video(i: u32) -> StreamInput {
    relay_lab::video(i, 1000)
}

fn fan_out(c: &mut Criterion) {
    let mut g = c.benchmark_group("relay_fan_out");
    g.sample_size(10);
    for n in [1usize, 10, 50] {
        for (what, input) in [
            ("data", relay_lab::data as fn(u32) -> StreamInput),
            ("video_1k", video),
        ] {
            let mut lab = Lab::new(n);
            g.throughput(Throughput::Elements(u64::from(BATCH) * n as u64));
            let (spent0, allocs0) = (lab.spent, lab.allocs);
            let mut batches = 0u64;
            g.bench_function(format!("{what}_to_{n}"), |b| {
                b.iter_custom(|iters| {
                    let start = lab.spent;
                    for _ in 0..iters {
                        lab.batch(BATCH, input);
                        batches += 1;
                    }
                    lab.spent - start
                })
            });
            let delivered = batches * u64::from(BATCH) * n as u64;
            eprintln!(
                "relay {what} to {n}: {:.0} ns and {:.2} allocations of server handling per delivered message ({delivered} delivered)",
                (lab.spent - spent0).as_nanos() as f64 / delivered.max(1) as f64,
                (lab.allocs - allocs0) as f64 / delivered.max(1) as f64,
            );
        }
    }
    g.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
