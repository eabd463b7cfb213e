//! Frame builders and handshake drivers shared by the benchmarks.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use synguard::cookie::CookieSecret;
use synguard::engine::{Engine, EngineConfig, Port, SyncookieMode, Verdict};
use synguard::wire::tcp::{self, TcpSegmentSpec};
use synguard::wire::tcp_options::SynOptionSet;
use synguard::wire::{parse_frame, write_tcp_frame, ParsedFrame};

pub const NOW: u64 = 1_700_000_000_000;
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const SERVER_PORT: u16 = 8080;

pub fn config(mode: SyncookieMode, max_flows: usize, backlog: usize) -> EngineConfig {
    EngineConfig {
        protected: vec![(IpAddr::V4(SERVER), SERVER_PORT).into()],
        syncookies: mode,
        max_flows,
        backlog,
        per_source_backlog: backlog,
        ..EngineConfig::default()
    }
}

pub fn engine(mode: SyncookieMode, max_flows: usize, backlog: usize) -> Engine {
    engine_with(config(mode, max_flows, backlog))
}

pub fn engine_with(cfg: EngineConfig) -> Engine {
    Engine::new(cfg, CookieSecret::from_bytes([9; 16]))
}

pub fn server() -> (IpAddr, u16) {
    (IpAddr::V4(SERVER), SERVER_PORT)
}

/// The n-th client: addresses in 198.18.128.0/17 and 198.19.0.0/16, 16
/// ports each, all inside the RFC 2544 range.
pub fn client(n: u32) -> (IpAddr, u16) {
    let host = 0xc612_8000u32 + (n / 16); // 198.18.128.0 + n/16
    (IpAddr::V4(Ipv4Addr::from(host)), 10_000 + (n % 16) as u16)
}

pub fn frame(
    from: (IpAddr, u16),
    to: (IpAddr, u16),
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
    let mut out = Vec::with_capacity(128);
    write_tcp_frame(&mut out, &l2, from.0, to.0, 64, &spec);
    out
}

pub fn syn_options() -> Vec<u8> {
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

pub fn ts(val: u32, ecr: u32) -> Vec<u8> {
    SynOptionSet {
        timestamps: Some((val, ecr)),
        ..SynOptionSet::default()
    }
    .encode()
    .as_slice()
    .to_vec()
}

pub fn seq_and_tsval(f: &[u8]) -> (u32, u32) {
    match parse_frame(f) {
        Ok(ParsedFrame::Tcp(v)) => (v.tcp.seq, v.options.timestamps.map_or(0, |t| t.0)),
        _ => panic!("not TCP"),
    }
}

/// Client `n` sends its SYN; returns (cookie ISN, gateway TSval).
pub fn send_syn(e: &mut Engine, n: u32, now: u64) -> (u32, u32) {
    let server = (IpAddr::V4(SERVER), SERVER_PORT);
    let mut f = frame(
        client(n),
        server,
        1000 + n,
        0,
        tcp::SYN,
        &syn_options(),
        &[],
    );
    assert_eq!(e.handle(now, Port::Client, &mut f), Verdict::Reply);
    seq_and_tsval(&f)
}

/// Drive client `n` through the whole handshake to ESTABLISHED.
pub fn establish(e: &mut Engine, n: u32, now: u64) {
    let server = (IpAddr::V4(SERVER), SERVER_PORT);
    let (cookie, tsval) = send_syn(e, n, now);
    let mut ack = frame(
        client(n),
        server,
        1001 + n,
        cookie.wrapping_add(1),
        tcp::ACK,
        &ts(2, tsval),
        &[],
    );
    assert_eq!(e.handle(now, Port::Client, &mut ack), Verdict::Absorbed);
    let synack_opts = SynOptionSet {
        mss: Some(1460),
        sack_permitted: true,
        timestamps: Some((500, 2)),
        wscale: Some(7),
    }
    .encode();
    let mut sa = frame(
        server,
        client(n),
        7000,
        1001 + n,
        tcp::SYN | tcp::ACK,
        synack_opts.as_slice(),
        &[],
    );
    assert_eq!(e.handle(now, Port::Server, &mut sa), Verdict::Absorbed);
    e.drain_emitted().for_each(drop);
}
