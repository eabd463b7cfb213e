//! ns per frame on the engine's hot paths: SYN -> cookie SYN-ACK, cookie
//! ACK validation, and translation of established segments. Frames are
//! copied into the work buffer each iteration (the engine rewrites in place);
//! the copy is part of the number, as a receive into the buffer would be.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use synguard::cookie::{CookieMinter, CookieSecret, CookieTuple, SynOptions};
use synguard::engine::{Engine, EngineConfig, InvalidAckAction, Port, SyncookieMode, Verdict};
use synguard::wire::tcp::{self, TcpSegmentSpec};
use synguard::wire::tcp_options::SynOptionSet;
use synguard::wire::{parse_frame, write_tcp_frame, ParsedFrame};

const NOW: u64 = 1_700_000_000_000;
const CLIENT: &str = "198.18.0.1";
const SERVER: &str = "198.18.0.2";

fn frame(
    from: (&str, u16),
    to: (&str, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let l2 = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0, 0];
    let spec = TcpSegmentSpec {
        src_port: from.1,
        dst_port: to.1,
        seq,
        ack,
        flags,
        window: 502,
        options,
        payload,
    };
    let mut out = Vec::new();
    let (s, d): (IpAddr, IpAddr) = (from.0.parse().unwrap(), to.0.parse().unwrap());
    write_tcp_frame(&mut out, &l2, s, d, 64, &spec);
    out
}

/// Stateless cookies (`always`): the path a flood takes once the half-open
/// queue has overflowed in `auto` mode.
fn engine(action: InvalidAckAction) -> Engine {
    let cfg = EngineConfig {
        protected: vec![format!("{SERVER}:8080").parse().unwrap()],
        invalid_ack_action: action,
        syncookies: SyncookieMode::Always,
        ..EngineConfig::default()
    };
    Engine::new(cfg, CookieSecret::from_bytes([9; 16]))
}

fn syn_options() -> Vec<u8> {
    SynOptionSet {
        mss: Some(1460),
        sack_permitted: true,
        timestamps: Some((1, 0)),
        wscale: Some(7),
    }
    .encode()
    .as_slice()
    .to_vec()
}

fn ts(val: u32, ecr: u32) -> Vec<u8> {
    SynOptionSet {
        timestamps: Some((val, ecr)),
        ..SynOptionSet::default()
    }
    .encode()
    .as_slice()
    .to_vec()
}

fn tcp_fields(f: &[u8]) -> (u32, Option<(u32, u32)>) {
    match parse_frame(f) {
        Ok(ParsedFrame::Tcp(v)) => (v.tcp.seq, v.options.timestamps),
        _ => panic!("not TCP"),
    }
}

fn bench_syn(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    let mut e = engine(InvalidAckAction::Drop);
    let syn = frame(
        (CLIENT, 40000),
        (SERVER, 8080),
        1000,
        0,
        tcp::SYN,
        &syn_options(),
        &[],
    );
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
        (CLIENT, 40000),
        (SERVER, 8080),
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
    let t = CookieTuple {
        client: CLIENT.parse().unwrap(),
        server: SERVER.parse().unwrap(),
        client_port: 40000,
        server_port: 8080,
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

/// An engine with one established flow; returns it with the cookie ISN and
/// the gateway TSval.
fn established() -> (Engine, u32, u32) {
    let mut e = engine(InvalidAckAction::Drop);
    let mut f = frame(
        (CLIENT, 40000),
        (SERVER, 8080),
        1000,
        0,
        tcp::SYN,
        &syn_options(),
        &[],
    );
    assert_eq!(e.handle(NOW, Port::Client, &mut f), Verdict::Reply);
    let (cookie, t) = tcp_fields(&f);
    let gw_tsval = t.unwrap().0;
    let mut ack = frame(
        (CLIENT, 40000),
        (SERVER, 8080),
        1001,
        cookie.wrapping_add(1),
        tcp::ACK,
        &ts(2, gw_tsval),
        &[],
    );
    assert_eq!(e.handle(NOW, Port::Client, &mut ack), Verdict::Absorbed);
    let synack_opts = SynOptionSet {
        mss: Some(1460),
        sack_permitted: true,
        timestamps: Some((500, 2)),
        wscale: Some(9),
    }
    .encode();
    let mut sa = frame(
        (SERVER, 8080),
        (CLIENT, 40000),
        7000,
        1001,
        tcp::SYN | tcp::ACK,
        synack_opts.as_slice(),
        &[],
    );
    assert_eq!(e.handle(NOW, Port::Server, &mut sa), Verdict::Absorbed);
    e.drain_emitted().for_each(drop);
    (e, cookie, gw_tsval)
}

fn bench_established(c: &mut Criterion) {
    let (mut e, cookie, gw_tsval) = established();
    let data = frame(
        (SERVER, 8080),
        (CLIENT, 40000),
        7001,
        1001,
        tcp::ACK | tcp::PSH,
        &ts(501, 2),
        &[0x5a; 1448],
    );
    let ack = frame(
        (CLIENT, 40000),
        (SERVER, 8080),
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

criterion_group!(benches, bench_syn, bench_cookie, bench_established);
criterion_main!(benches);
