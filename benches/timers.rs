//! Timer cost against table size: one tick (`handle_timeout`) with nothing
//! due, and with one flow's timer due, at 1 thousand and at 1 million tracked
//! flows. The cost per tick must not grow with the table (issue: prove it).

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use synguard::engine::{Engine, SyncookieMode};

use support::{engine, establish, send_syn, NOW};

fn populated(flows: u32) -> Engine {
    let t0 = Instant::now();
    let mut e = engine(SyncookieMode::Auto, 2_000_000, 1 << 20);
    for n in 0..flows {
        establish(&mut e, n, NOW);
    }
    assert_eq!(e.flow_count(), flows as usize);
    // The backend-SYN timers the handshakes left behind are stale now; pop
    // them once here so the ticks below measure steady state.
    e.handle_timeout(NOW + 1_000);
    eprintln!(
        "{flows} established flows set up in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    e
}

fn bench_ticks(c: &mut Criterion) {
    let mut g = c.benchmark_group("timers");
    for flows in [1_000u32, 1_000_000] {
        let mut e = populated(flows);
        // Nothing due: established flows wake after the idle timeout (2 h).
        g.bench_function(format!("tick_idle_{flows}_flows"), |b| {
            b.iter(|| e.handle_timeout(black_box(NOW + 1_000)))
        });
        // One half-open entry's SYN-ACK retransmission due: queue a SYN
        // (not timed), then time the tick at which its timer fires.
        let mut i = 0u32;
        g.bench_function(format!("tick_one_due_{flows}_flows"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    i += 1;
                    let t = NOW + u64::from(i) * 10;
                    send_syn(&mut e, 2_000_000 + i, t);
                    let start = Instant::now();
                    e.handle_timeout(black_box(t + 1_000));
                    spent += start.elapsed();
                    e.drain_emitted().for_each(drop);
                }
                spent
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench_ticks
}
criterion_main!(benches);
