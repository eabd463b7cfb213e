//! ns per frame on the engine's hot paths: SYN -> cookie SYN-ACK, cookie
//! ACK validation, and translation of established segments. Frames are
//! copied into the work buffer each iteration (the engine rewrites in place);
//! the copy is part of the number, as a receive into the buffer would be.

mod support;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use synguard::cookie::{CookieMinter, CookieSecret, CookieTuple, SynOptions};
use synguard::engine::{Engine, EngineConfig, InvalidAckAction, Port, SyncookieMode, Verdict};
use synguard::wire::tcp;

use support::{client, establish, frame, send_syn, server, syn_options, ts, NOW};

/// Stateless cookies (`always`): the path a flood takes once the half-open
/// queue has overflowed in `auto` mode. Invalid ACKs are dropped, so the RST
/// budget does not change the path between iterations.
fn engine() -> Engine {
    let cfg = EngineConfig {
        invalid_ack_action: InvalidAckAction::Drop,
        ..support::config(SyncookieMode::Always, 1_000_000, 4096)
    };
    support::engine_with(cfg)
}

fn bench_handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    let mut e = engine();
    let syn = frame(client(0), server(), 1000, 0, tcp::SYN, &syn_options(), &[]);
    let mut buf = Vec::with_capacity(2048);
    g.bench_function("syn_to_cookie_synack", |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(&syn);
            assert_eq!(
                e.handle(NOW, Port::Client, black_box(&mut buf)),
                Verdict::Reply
            );
        })
    });
    let bad_ack = frame(
        client(0),
        server(),
        1001,
        0x1234_5678,
        tcp::ACK,
        &ts(2, 3),
        &[],
    );
    g.bench_function("invalid_cookie_ack_dropped", |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(&bad_ack);
            black_box(e.handle(NOW, Port::Client, black_box(&mut buf)));
        })
    });
    g.finish();
}

fn bench_cookie(c: &mut Criterion) {
    let minter = CookieMinter::new(CookieSecret::from_bytes([9; 16]), 64);
    let (client_ip, client_port) = client(0);
    let (server_ip, server_port) = server();
    let t = CookieTuple {
        client: client_ip,
        server: server_ip,
        client_port,
        server_port,
    };
    let opts = SynOptions {
        mss: Some(1460),
        wscale: Some(7),
        sack_permitted: true,
        timestamps: true,
        ecn: false,
    };
    let m = minter.mint(&t, 1000, &opts, NOW / 1000);
    let tsecr = 0x1234_5640 | u32::from(m.ts_low_bits.unwrap());
    let mut g = c.benchmark_group("cookie");
    g.throughput(Throughput::Elements(1));
    g.bench_function("mint", |b| {
        b.iter(|| black_box(minter.mint(black_box(&t), 1000, &opts, NOW / 1000)))
    });
    g.bench_function("check_valid", |b| {
        b.iter(|| {
            minter
                .check(
                    black_box(&t),
                    1001,
                    m.isn.wrapping_add(1),
                    Some(tsecr),
                    NOW / 1000,
                )
                .unwrap()
        })
    });
    g.finish();
}

fn bench_established(c: &mut Criterion) {
    let mut e = engine();
    // The SYN only to learn the cookie and TSval the client would echo.
    let (cookie, gw_tsval) = send_syn(&mut e, 0, NOW);
    establish(&mut e, 0, NOW);
    // Server data (seq after its ISN 7000) and the client's ACK of it.
    let data = frame(
        server(),
        client(0),
        7001,
        1001,
        tcp::ACK | tcp::PSH,
        &ts(501, 2),
        &[0x5a; 1448],
    );
    let ack = frame(
        client(0),
        server(),
        1001,
        cookie.wrapping_add(1449),
        tcp::ACK,
        &ts(3, gw_tsval),
        &[],
    );
    let mut buf = Vec::with_capacity(2048);
    let mut g = c.benchmark_group("established");
    g.throughput(Throughput::Elements(1));
    g.bench_function("server_to_client_1448B", |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(&data);
            assert_eq!(
                e.handle(NOW, Port::Server, black_box(&mut buf)),
                Verdict::Forward
            );
        })
    });
    g.bench_function("client_to_server_ack", |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(&ack);
            assert_eq!(
                e.handle(NOW, Port::Client, black_box(&mut buf)),
                Verdict::Forward
            );
        })
    });
    g.finish();
}

criterion_group!(benches, bench_handshake, bench_cookie, bench_established);
criterion_main!(benches);
