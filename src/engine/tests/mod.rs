//! Engine scenario tests on literal times: a scripted client and server
//! exchange frames with the engine in memory.

use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::cookie::CookieSecret;
use crate::engine::send_budget::RST_PER_SOURCE_PER_SECOND;
use crate::wire::tcp::{self, TcpSegmentSpec};
use crate::wire::tcp_options::SynOptionSet;
use crate::wire::{parse_frame, write_tcp_frame, ParsedFrame, TcpView};

const T0: u64 = 1_700_000_000_000;
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const CLIENT_ISN: u32 = 0x1000_0000;
const SERVER_ISN: u32 = 0x7000_0000;

/// Stateless cookies only, so the handshake tests exercise the cookie path;
/// the queue tests switch modes.
fn config() -> EngineConfig {
    EngineConfig {
        protected: vec![
            "198.18.0.2:8080".parse().unwrap(),
            "[2001:db8::2]:8080".parse().unwrap(),
        ],
        syncookies: SyncookieMode::Always,
        ..EngineConfig::default()
    }
}

fn engine_with(cfg: EngineConfig) -> Engine {
    Engine::new(cfg, CookieSecret::from_bytes([7; 16]))
}

fn engine() -> Engine {
    engine_with(config())
}

/// One side of a connection: addresses and how to write its segments.
#[derive(Clone, Copy)]
struct Host {
    ip: IpAddr,
    port: u16,
    mac: [u8; 6],
}

fn client_v4() -> Host {
    Host {
        ip: "198.18.0.1".parse().unwrap(),
        port: 40000,
        mac: CLIENT_MAC,
    }
}
fn server_v4() -> Host {
    Host {
        ip: "198.18.0.2".parse().unwrap(),
        port: 8080,
        mac: SERVER_MAC,
    }
}
fn client_v6() -> Host {
    Host {
        ip: "2001:db8::1".parse().unwrap(),
        port: 40000,
        mac: CLIENT_MAC,
    }
}
fn server_v6() -> Host {
    Host {
        ip: "2001:db8::2".parse().unwrap(),
        port: 8080,
        mac: SERVER_MAC,
    }
}

#[allow(clippy::too_many_arguments)]
fn segment(
    from: Host,
    to: Host,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut l2 = Vec::new();
    l2.extend_from_slice(&to.mac);
    l2.extend_from_slice(&from.mac);
    l2.extend_from_slice(&[0, 0]);
    let spec = TcpSegmentSpec {
        src_port: from.port,
        dst_port: to.port,
        seq,
        ack,
        flags,
        window,
        options,
        payload,
    };
    let mut out = Vec::new();
    write_tcp_frame(&mut out, &l2, from.ip, to.ip, 64, &spec);
    out
}

fn view(frame: &[u8]) -> TcpView {
    match parse_frame(frame) {
        Ok(ParsedFrame::Tcp(v)) => {
            assert!(v.checksum_is_valid(frame), "bad checksum on {v:?}");
            v
        }
        other => panic!("not a TCP frame: {other:?}"),
    }
}

fn linux_syn_options(tsval: u32) -> Vec<u8> {
    SynOptionSet {
        mss: Some(1460),
        sack_permitted: true,
        timestamps: Some((tsval, 0)),
        wscale: Some(7),
    }
    .encode()
    .as_slice()
    .to_vec()
}

fn ts_option(val: u32, ecr: u32) -> Vec<u8> {
    SynOptionSet {
        timestamps: Some((val, ecr)),
        ..SynOptionSet::default()
    }
    .encode()
    .as_slice()
    .to_vec()
}

/// Client SYN -> engine; returns the SYN-ACK view and frame.
fn syn(e: &mut Engine, c: Host, s: Host, now: u64, options: &[u8]) -> (TcpView, Vec<u8>) {
    let mut f = segment(c, s, CLIENT_ISN, 0, tcp::SYN, 64240, options, &[]);
    assert_eq!(e.handle(now, Port::Client, &mut f), Verdict::Reply);
    (view(&f), f)
}

/// Runs SYN, cookie ACK (with `payload`) and server SYN-ACK (WS 9, TS);
/// returns (cookie ISN, TSval of the SYN-ACK, frames emitted to the server
/// after the server's SYN-ACK).
fn establish(e: &mut Engine, c: Host, s: Host, payload: &[u8]) -> (u32, u32, Vec<Vec<u8>>) {
    let server = SynOptionSet {
        mss: Some(1400),
        sack_permitted: true,
        timestamps: Some((5000, 101)),
        wscale: Some(9),
    };
    let h = establish_with(e, c, s, &linux_syn_options(100), 0, server, 0, payload);
    (h.cookie, h.gateway_tsval.unwrap(), h.released)
}

/// The client's bare ACK of `synack` (no options): the cookie ACK.
fn cookie_ack(c: Host, s: Host, synack: &TcpView) -> Vec<u8> {
    segment(
        c,
        s,
        CLIENT_ISN + 1,
        synack.tcp.seq.wrapping_add(1),
        tcp::ACK,
        502,
        &[],
        &[],
    )
}

/// Client SYN (MSS 1460 only) and cookie ACK: the flow waits for its
/// backend. Returns the cookie and the backend SYN frame.
fn pending(e: &mut Engine, c: Host, s: Host) -> (u32, Vec<u8>) {
    let (synack, _) = syn(e, c, s, T0, &[2, 4, 5, 0xb4]);
    let cookie = synack.tcp.seq;
    let mut ack = cookie_ack(c, s, &synack);
    assert_eq!(e.handle(T0 + 1, Port::Client, &mut ack), Verdict::Absorbed);
    let syn = e.drain_emitted().next().expect("backend SYN");
    (cookie, syn.frame)
}

/// What `establish_with` saw.
struct Established {
    cookie: u32,
    /// TSval of the gateway's SYN-ACK, if it offered timestamps.
    gateway_tsval: Option<u32>,
    /// The backend SYN as the server received it.
    backend_syn: TcpView,
    /// Frames emitted to the server after the server's SYN-ACK.
    released: Vec<Vec<u8>>,
}

/// SYN with `client_options` and `client_flags` (ECE|CWR for ECN), cookie
/// ACK (timestamps if the SYN-ACK had them) with `payload`, then a server
/// SYN-ACK with `server` options and `server_flags` (ECE) at T0 + 11.
#[allow(clippy::too_many_arguments)]
fn establish_with(
    e: &mut Engine,
    c: Host,
    s: Host,
    client_options: &[u8],
    client_flags: u8,
    server: SynOptionSet,
    server_flags: u8,
    payload: &[u8],
) -> Established {
    let mut f = segment(
        c,
        s,
        CLIENT_ISN,
        0,
        tcp::SYN | client_flags,
        64240,
        client_options,
        &[],
    );
    assert_eq!(e.handle(T0, Port::Client, &mut f), Verdict::Reply);
    let synack = view(&f);
    let cookie = synack.tcp.seq;
    let gateway_tsval = synack.options.timestamps.map(|(val, _)| val);
    let ts = gateway_tsval.map(|val| ts_option(101, val));
    let mut ack = segment(
        c,
        s,
        CLIENT_ISN + 1,
        cookie.wrapping_add(1),
        tcp::ACK | tcp::PSH,
        502,
        ts.as_deref().unwrap_or(&[]),
        payload,
    );
    assert_eq!(e.handle(T0 + 10, Port::Client, &mut ack), Verdict::Absorbed);
    let emitted: Vec<_> = e.drain_emitted().collect();
    assert_eq!(emitted.len(), 1, "one backend SYN");
    assert_eq!(emitted[0].port, Port::Server);
    let backend_syn = view(&emitted[0].frame);
    assert_eq!(backend_syn.tcp.flags & (tcp::SYN | tcp::ACK), tcp::SYN);
    assert_eq!(backend_syn.tcp.seq, CLIENT_ISN);
    let opts = server.encode();
    let mut synack_srv = segment(
        s,
        c,
        SERVER_ISN,
        CLIENT_ISN + 1,
        tcp::SYN | tcp::ACK | server_flags,
        65160,
        opts.as_slice(),
        &[],
    );
    assert_eq!(
        e.handle(T0 + 11, Port::Server, &mut synack_srv),
        Verdict::Absorbed
    );
    let released = e.drain_emitted().map(|em| {
        assert_eq!(em.port, Port::Server);
        em.frame
    });
    Established {
        cookie,
        gateway_tsval,
        backend_syn,
        released: released.collect(),
    }
}

#[test]
fn syn_becomes_cookie_synack_in_place() {
    let mut e = engine();
    let (v, f) = syn(
        &mut e,
        client_v4(),
        server_v4(),
        T0,
        &linux_syn_options(100),
    );
    assert_eq!(&f[0..6], &CLIENT_MAC, "reply goes back to the client MAC");
    assert_eq!(&f[6..12], &SERVER_MAC);
    assert_eq!((v.ip.src, v.ip.dst), (server_v4().ip, client_v4().ip));
    assert_eq!((v.tcp.src_port, v.tcp.dst_port), (8080, 40000));
    assert_eq!(v.tcp.flags, tcp::SYN | tcp::ACK);
    assert_eq!(v.tcp.ack, CLIENT_ISN + 1);
    assert_eq!(v.tcp.window, 65535, "a real window, not zero");
    assert_eq!(v.options.mss, Some(1460));
    assert!(v.options.sack_permitted);
    assert_eq!(v.options.wscale, Some(7));
    let (tsval, tsecr) = v.options.timestamps.unwrap();
    assert_eq!(tsecr, 100, "echoes the client's TSval");
    assert_eq!(
        tsval & !0x3f,
        (T0 as u32) & !0x3f,
        "TSval carries the clock in its high bits"
    );
    assert_eq!(Counters::get(&e.counters().syn_received), 1);
    assert_eq!(Counters::get(&e.counters().synack_cookie), 1);
    assert_eq!(e.flow_count(), 0, "a cookie SYN-ACK keeps no state");
}

#[test]
fn synack_mss_fits_the_smaller_port_mtu_in_every_mode() {
    for mode in [SyncookieMode::Always, SyncookieMode::Off] {
        let mut e = engine_with(EngineConfig {
            syncookies: mode,
            ..config()
        });
        // Server port behind a 1280-byte tunnel: 1280 - 20 - 20 and - 40 - 20.
        assert_eq!(e.set_port_mtus(1500, 1280), (1240, 1220));
        let (v, _) = syn(&mut e, client_v4(), server_v4(), T0, &linux_syn_options(1));
        assert_eq!(v.options.mss, Some(1240), "{mode:?}");
        let (v6, _) = syn(&mut e, client_v6(), server_v6(), T0, &linux_syn_options(1));
        assert_eq!(v6.options.mss, Some(1220), "{mode:?}");
        let params = e.fast_path_params(T0);
        assert_eq!((params.synack_mss_v4, params.synack_mss_v6), (1240, 1220));
        // A reload keeps the ceiling; a configured MSS below it applies.
        e.reconfigure(
            T0,
            EngineConfig {
                synack_mss_v4: 1400,
                ..e.config().clone()
            },
        );
        assert_eq!((e.synack_mss_v4(), e.synack_mss_v6()), (1240, 1220));
        e.reconfigure(
            T0,
            EngineConfig {
                synack_mss_v4: 1200,
                ..e.config().clone()
            },
        );
        assert_eq!(e.synack_mss_v4(), 1200);
        // Ports that carry more leave the configured MSS alone.
        assert_eq!(e.set_port_mtus(9000, 9000), (1200, 1440));
    }
}

#[test]
fn ecn_setup_syn_gets_ece_and_backend_syn_requests_ecn() {
    let mut e = engine();
    let (c, s) = (client_v4(), server_v4());
    let mut f = segment(
        c,
        s,
        CLIENT_ISN,
        0,
        tcp::SYN | tcp::ECE | tcp::CWR,
        64240,
        &[],
        &[],
    );
    assert_eq!(e.handle(T0, Port::Client, &mut f), Verdict::Reply);
    let synack = view(&f);
    assert_eq!(synack.tcp.flags, tcp::SYN | tcp::ACK | tcp::ECE);
    assert_eq!(
        synack.options.wscale, None,
        "no WS offered, none sent (RFC 7323)"
    );
    assert_eq!(synack.options.timestamps, None);
    let mut ack = segment(
        c,
        s,
        CLIENT_ISN + 1,
        synack.tcp.seq.wrapping_add(1),
        tcp::ACK,
        64240,
        &[],
        &[],
    );
    assert_eq!(e.handle(T0 + 5, Port::Client, &mut ack), Verdict::Absorbed);
    let bsyn = view(&e.drain_emitted().next().unwrap().frame);
    assert_eq!(bsyn.tcp.flags, tcp::SYN | tcp::ECE | tcp::CWR);
    assert_eq!(
        bsyn.options.mss,
        Some(536),
        "no MSS option: RFC 9293 default"
    );
    assert_eq!(bsyn.options.wscale, None);
    assert!(!bsyn.options.sack_permitted);
}

#[test]
fn full_handshake_and_translation_both_ways() {
    let mut e = engine();
    let (c, s) = (client_v4(), server_v4());
    let (cookie, gw_tsval, released) = establish(&mut e, c, s, &[]);
    assert_eq!(
        released.len(),
        1,
        "the held ACK, translated, completes the backend handshake"
    );
    let ack = view(&released[0]);
    assert_eq!(ack.tcp.seq, CLIENT_ISN + 1);
    assert_eq!(ack.tcp.ack, SERVER_ISN + 1);
    assert_eq!(
        ack.options.timestamps,
        Some((101, 5000)),
        "TSecr shifted into the server's clock"
    );
    assert_eq!(
        ack.tcp.window, 502,
        "both sides scale: the client's raw window passes"
    );
    assert_eq!(&released[0][0..6], &SERVER_MAC);
    assert_eq!(e.flow_state(&key_v4()), Some(TcpState::Established));

    // Server -> client data: seq into cookie space, TSval into our clock,
    // window from the server's shift 9 to the advertised 7.
    let mut data = segment(
        s,
        c,
        SERVER_ISN + 1,
        CLIENT_ISN + 1,
        tcp::ACK | tcp::PSH,
        100,
        &ts_option(5007, 101),
        b"hello",
    );
    assert_eq!(e.handle(T0 + 20, Port::Server, &mut data), Verdict::Forward);
    let d = view(&data);
    assert_eq!(d.tcp.seq, cookie.wrapping_add(1));
    assert_eq!(d.tcp.ack, CLIENT_ISN + 1);
    assert_eq!(d.options.timestamps, Some((gw_tsval.wrapping_add(7), 101)));
    assert_eq!(d.tcp.window, 400);
    assert_eq!(&data[d.payload_offset()..], b"hello");

    // Client -> server ACK with a SACK block: ack and SACK into server space.
    let mut opts = vec![1, 1, 5, 10];
    opts.extend_from_slice(&cookie.wrapping_add(100).to_be_bytes());
    opts.extend_from_slice(&cookie.wrapping_add(200).to_be_bytes());
    opts.extend_from_slice(&ts_option(102, gw_tsval.wrapping_add(7)));
    let mut sack = segment(
        c,
        s,
        CLIENT_ISN + 1,
        cookie.wrapping_add(6),
        tcp::ACK,
        500,
        &opts,
        &[],
    );
    assert_eq!(e.handle(T0 + 30, Port::Client, &mut sack), Verdict::Forward);
    let sv = view(&sack);
    assert_eq!(sv.tcp.ack, SERVER_ISN + 6);
    let seg = &sack[sv.tcp_offset()..];
    let at = 20 + sv.options.sack_at;
    assert_eq!(tcp::read_u32(seg, at), SERVER_ISN + 100);
    assert_eq!(tcp::read_u32(seg, at + 4), SERVER_ISN + 200);
    assert_eq!(sv.options.timestamps, Some((102, 5007)));
    let counters = e.counters();
    assert_eq!(Counters::get(&counters.backend_completed), 1);
    assert_eq!(Counters::get(&counters.cookies_validated), 1);
    assert_eq!(Counters::get(&counters.translated), 3);
}

/// Client FIN at +100 ms, server FIN+ACK at +101, client's last ACK at
/// +102: the flow ends in TIME_WAIT.
fn close_client_first(e: &mut Engine, c: Host, s: Host, cookie: u32) {
    close_client_first_at(e, c, s, cookie, T0);
}

/// [`close_client_first`] with the client's FIN at `base` + 100 ms.
fn close_client_first_at(e: &mut Engine, c: Host, s: Host, cookie: u32, base: u64) {
    let mut fin = segment(
        c,
        s,
        CLIENT_ISN + 1,
        cookie + 1,
        tcp::FIN | tcp::ACK,
        502,
        &[],
        &[],
    );
    assert_eq!(
        e.handle(base + 100, Port::Client, &mut fin),
        Verdict::Forward
    );
    let mut sfin = segment(
        s,
        c,
        SERVER_ISN + 1,
        CLIENT_ISN + 2,
        tcp::FIN | tcp::ACK,
        100,
        &[],
        &[],
    );
    assert_eq!(
        e.handle(base + 101, Port::Server, &mut sfin),
        Verdict::Forward
    );
    let mut last = segment(c, s, CLIENT_ISN + 2, cookie + 2, tcp::ACK, 502, &[], &[]);
    assert_eq!(
        e.handle(base + 102, Port::Client, &mut last),
        Verdict::Forward
    );
}

fn key_v4() -> FlowKey {
    FlowKey {
        client: client_v4().ip,
        server: server_v4().ip,
        client_port: 40000,
        server_port: 8080,
    }
}

#[test]
fn data_sent_with_the_ack_is_held_and_released_in_order() {
    let mut e = engine();
    let (c, s) = (client_v4(), server_v4());
    let (synack, _) = syn(&mut e, c, s, T0, &linux_syn_options(100));
    let cookie = synack.tcp.seq;
    let gw_tsval = synack.options.timestamps.unwrap().0;
    let mut ack = segment(
        c,
        s,
        CLIENT_ISN + 1,
        cookie + 1,
        tcp::ACK | tcp::PSH,
        502,
        &ts_option(101, gw_tsval),
        b"GET /",
    );
    assert_eq!(e.handle(T0 + 1, Port::Client, &mut ack), Verdict::Absorbed);
    let mut more = segment(
        c,
        s,
        CLIENT_ISN + 6,
        cookie + 1,
        tcp::ACK | tcp::PSH,
        502,
        &ts_option(102, gw_tsval),
        b" HTTP/1.1",
    );
    assert_eq!(e.handle(T0 + 2, Port::Client, &mut more), Verdict::Absorbed);
    let mut dup = segment(
        c,
        s,
        CLIENT_ISN + 15,
        cookie + 1,
        tcp::ACK,
        502,
        &ts_option(102, gw_tsval),
        &[],
    );
    assert_eq!(
        e.handle(T0 + 3, Port::Client, &mut dup),
        Verdict::Absorbed,
        "a pure ACK is not held"
    );
    assert!(
        e.counters()
            .held_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    e.drain_emitted().for_each(drop);
    let opts = SynOptionSet {
        mss: Some(1460),
        sack_permitted: true,
        timestamps: Some((9, 101)),
        wscale: Some(7),
    }
    .encode();
    let mut sa = segment(
        s,
        c,
        SERVER_ISN,
        CLIENT_ISN + 1,
        tcp::SYN | tcp::ACK,
        65160,
        opts.as_slice(),
        &[],
    );
    assert_eq!(e.handle(T0 + 4, Port::Server, &mut sa), Verdict::Absorbed);
    let out: Vec<_> = e.drain_emitted().collect();
    assert_eq!(out.len(), 2);
    let (a, b) = (view(&out[0].frame), view(&out[1].frame));
    assert_eq!((a.tcp.seq, a.tcp.ack), (CLIENT_ISN + 1, SERVER_ISN + 1));
    assert_eq!(&out[0].frame[a.payload_offset()..], b"GET /");
    assert_eq!(b.tcp.seq, CLIENT_ISN + 6);
    assert_eq!(&out[1].frame[b.payload_offset()..], b" HTTP/1.1");
    assert_eq!(
        e.counters()
            .held_bytes
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn held_data_budget_per_flow() {
    let cfg = EngineConfig {
        held_bytes_per_flow: 200,
        ..config()
    };
    let mut e = engine_with(cfg);
    let (c, s) = (client_v4(), server_v4());
    let (synack, _) = syn(&mut e, c, s, T0, &[]);
    let cookie = synack.tcp.seq;
    let mut ack = segment(c, s, CLIENT_ISN + 1, cookie + 1, tcp::ACK, 502, &[], &[]);
    assert_eq!(e.handle(T0 + 1, Port::Client, &mut ack), Verdict::Absorbed);
    let mut big = segment(
        c,
        s,
        CLIENT_ISN + 1,
        cookie + 1,
        tcp::ACK,
        502,
        &[],
        &[0u8; 150],
    );
    assert_eq!(
        e.handle(T0 + 2, Port::Client, &mut big),
        Verdict::Drop(DropReason::HeldBytesFlow)
    );
    assert_eq!(e.counters().dropped(DropReason::HeldBytesFlow), 1);
}

#[test]
fn invalid_ack_gets_rst_within_budget_then_drops() {
    let cfg = EngineConfig {
        rst_per_second: 2,
        ..config()
    };
    let mut e = engine_with(cfg);
    // This second's draw: 1 or 2 (send_budget.rs).
    let allowed = send_budget::allowance(&e.minter.siphash_key(), TAG_RST, 2, T0 / 1000);
    assert!((1..=2).contains(&allowed));
    let (c, s) = (client_v4(), server_v4());
    for i in 0..3u32 {
        let mut f = segment(c, s, 1234, 0xdead_0000 + i, tcp::ACK, 502, &[], &[]);
        let verdict = e.handle(T0, Port::Client, &mut f);
        if i < allowed {
            assert_eq!(verdict, Verdict::Reply);
            let r = view(&f);
            assert_eq!(r.tcp.flags, tcp::RST);
            assert_eq!(
                r.tcp.seq,
                0xdead_0000 + i,
                "RST takes its seq from the ACK field"
            );
            assert_eq!((r.ip.src, r.ip.dst), (s.ip, c.ip));
        } else {
            assert_eq!(verdict, Verdict::Drop(DropReason::RstBudget));
        }
    }
    let k = e.counters();
    assert_eq!(Counters::get(&k.cookies_failed), 3);
    assert_eq!(Counters::get(&k.rst_sent), u64::from(allowed));
    assert_eq!(Counters::get(&k.backend_started), 0);
    assert_eq!(
        e.drain_emitted().count(),
        0,
        "no backend SYN for a bad cookie"
    );
}

/// The RSTs a source can see depend on its own invalid ACKs only: a
/// spoofed probe from another address spends that address's count
/// (CVE-2016-5696, send_budget.rs).
#[test]
fn invalid_ack_rsts_are_counted_per_source_too() {
    let mut e = engine();
    let s = server_v4();
    let attacker = Host {
        ip: "198.18.1.66".parse().unwrap(),
        ..client_v4()
    };
    let probe_src = client_v4();
    let rsts_to = |e: &mut Engine, c: Host, n: u32, now: u64| {
        (0..n)
            .filter(|i| {
                let mut f = segment(c, s, 1234, 0xbeef_0000 + i, tcp::ACK, 502, &[], &[]);
                e.handle(now, Port::Client, &mut f) == Verdict::Reply
            })
            .count() as u32
    };
    // A spoofed probe (no such flow) from the client's address...
    assert_eq!(rsts_to(&mut e, probe_src, 1, T0), 1);
    // ... changes nothing the attacker's own address sees.
    assert_eq!(rsts_to(&mut e, attacker, 50, T0), RST_PER_SOURCE_PER_SECOND);
    assert_eq!(
        rsts_to(&mut e, attacker, 50, T0 + 1000),
        RST_PER_SOURCE_PER_SECOND
    );
    assert_eq!(
        e.counters().dropped(DropReason::RstBudget),
        u64::from(2 * (50 - RST_PER_SOURCE_PER_SECOND))
    );
}

#[test]
fn invalid_ack_dropped_when_configured() {
    let mut e = engine_with(EngineConfig {
        invalid_ack_action: InvalidAckAction::Drop,
        ..config()
    });
    let mut f = segment(client_v4(), server_v4(), 1, 2, tcp::ACK, 502, &[], &[]);
    assert_eq!(
        e.handle(T0, Port::Client, &mut f),
        Verdict::Drop(DropReason::InvalidCookie)
    );
}

#[test]
fn stale_cookie_is_rejected_after_two_slots() {
    let mut e = engine();
    let (c, s) = (client_v4(), server_v4());
    let (synack, _) = syn(&mut e, c, s, T0, &[]);
    let mut ack = segment(
        c,
        s,
        CLIENT_ISN + 1,
        synack.tcp.seq + 1,
        tcp::ACK,
        502,
        &[],
        &[],
    );
    assert_eq!(
        e.handle(T0 + 129_000, Port::Client, &mut ack),
        Verdict::Reply,
        "RST for a timed-out cookie"
    );
    assert_eq!(Counters::get(&e.counters().cookies_failed), 1);
}

#[test]
fn backend_rst_resets_the_client() {
    let mut e = engine();
    let (c, s) = (client_v4(), server_v4());
    let (synack, _) = syn(&mut e, c, s, T0, &[]);
    let cookie = synack.tcp.seq;
    let mut ack = segment(c, s, CLIENT_ISN + 1, cookie + 1, tcp::ACK, 502, &[], &[]);
    e.handle(T0 + 1, Port::Client, &mut ack);
    e.drain_emitted().for_each(drop);
    let mut rst = segment(s, c, 0, CLIENT_ISN + 1, tcp::RST | tcp::ACK, 0, &[], &[]);
    assert_eq!(e.handle(T0 + 2, Port::Server, &mut rst), Verdict::Absorbed);
    let out: Vec<_> = e.drain_emitted().collect();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].port, Port::Client);
    let r = view(&out[0].frame);
    assert_eq!(r.tcp.flags, tcp::RST | tcp::ACK);
    assert_eq!(r.tcp.seq, cookie + 1);
    assert_eq!(&out[0].frame[0..6], &CLIENT_MAC);
    assert_eq!(e.flow_count(), 0);
    assert_eq!(Counters::get(&e.counters().backend_refused), 1);
}

#[test]
fn backend_syn_retransmit_schedule_then_client_reset() {
    let mut e = engine(); // timeout 1000 ms, 3 retries
    let (c, s) = (client_v4(), server_v4());
    let (synack, _) = syn(&mut e, c, s, T0, &[]);
    let mut ack = segment(
        c,
        s,
        CLIENT_ISN + 1,
        synack.tcp.seq + 1,
        tcp::ACK,
        502,
        &[],
        &[],
    );
    e.handle(T0, Port::Client, &mut ack);
    let first = e.drain_emitted().next().unwrap().frame;
    let mut sent_at = vec![];
    let mut reset_at = None;
    let mut now = T0;
    while now < T0 + 30_000 {
        if e.poll_timeout().is_some_and(|t| t <= now) {
            e.handle_timeout(now);
            for em in e.drain_emitted() {
                match em.port {
                    Port::Server => {
                        assert_eq!(em.frame, first, "a retransmission is the same SYN");
                        sent_at.push(now - T0)
                    }
                    Port::Client => reset_at = Some(now - T0),
                }
            }
        }
        now += 10;
    }
    assert_eq!(sent_at, vec![1000, 3000, 7000]);
    assert_eq!(reset_at, Some(15000));
    assert_eq!(e.flow_count(), 0);
    assert_eq!(Counters::get(&e.counters().backend_syn_retransmits), 3);
}

#[test]
fn client_close_first_passes_time_wait_and_is_removed() {
    let mut e = engine();
    let (c, s) = (client_v4(), server_v4());
    let (cookie, gw_tsval, _) = establish(&mut e, c, s, &[]);
    let ts = ts_option(200, gw_tsval);
    let mut fin = segment(
        c,
        s,
        CLIENT_ISN + 1,
        cookie + 1,
        tcp::FIN | tcp::ACK,
        502,
        &ts,
        &[],
    );
    assert_eq!(e.handle(T0 + 100, Port::Client, &mut fin), Verdict::Forward);
    assert_eq!(e.flow_state(&key_v4()), Some(TcpState::CloseWait));
    let mut sfin = segment(
        s,
        c,
        SERVER_ISN + 1,
        CLIENT_ISN + 2,
        tcp::FIN | tcp::ACK,
        100,
        &ts_option(6000, 200),
        &[],
    );
    assert_eq!(
        e.handle(T0 + 101, Port::Server, &mut sfin),
        Verdict::Forward
    );
    assert_eq!(e.flow_state(&key_v4()), Some(TcpState::LastAck));
    let mut last = segment(c, s, CLIENT_ISN + 2, cookie + 2, tcp::ACK, 502, &ts, &[]);
    assert_eq!(
        e.handle(T0 + 102, Port::Client, &mut last),
        Verdict::Forward
    );
    assert_eq!(view(&last).tcp.ack, SERVER_ISN + 2);
    assert_eq!(e.flow_state(&key_v4()), Some(TcpState::TimeWait));
    e.handle_timeout(T0 + 102 + 59_999);
    assert_eq!(e.flow_count(), 1, "TIME_WAIT lasts 2 x MSL");
    e.handle_timeout(T0 + 102 + 60_000);
    assert_eq!(e.flow_count(), 0);
    assert_eq!(e.counters().flows_in(TcpState::TimeWait), 0);
}

#[test]
fn server_close_first_fin_wait_states() {
    let mut e = engine();
    let (c, s) = (client_v4(), server_v4());
    let (cookie, _, _) = establish(&mut e, c, s, &[]);
    let mut sfin = segment(
        s,
        c,
        SERVER_ISN + 1,
        CLIENT_ISN + 1,
        tcp::FIN | tcp::ACK,
        100,
        &[],
        &[],
    );
    e.handle(T0 + 100, Port::Server, &mut sfin);
    assert_eq!(e.flow_state(&key_v4()), Some(TcpState::FinWait1));
    let mut ack = segment(c, s, CLIENT_ISN + 1, cookie + 2, tcp::ACK, 502, &[], &[]);
    e.handle(T0 + 101, Port::Client, &mut ack);
    assert_eq!(e.flow_state(&key_v4()), Some(TcpState::FinWait2));
    // Half-close: the client still sends data after the server's FIN.
    let mut data = segment(
        c,
        s,
        CLIENT_ISN + 1,
        cookie + 2,
        tcp::ACK | tcp::PSH,
        502,
        &[],
        b"late",
    );
    assert_eq!(
        e.handle(T0 + 102, Port::Client, &mut data),
        Verdict::Forward
    );
    let mut cfin = segment(
        c,
        s,
        CLIENT_ISN + 5,
        cookie + 2,
        tcp::FIN | tcp::ACK,
        502,
        &[],
        &[],
    );
    e.handle(T0 + 103, Port::Client, &mut cfin);
    assert_eq!(e.flow_state(&key_v4()), Some(TcpState::TimeWait));
    // A new SYN on the TIME_WAIT tuple starts over with a cookie.
    let (again, _) = syn(&mut e, c, s, T0 + 200, &[]);
    assert_eq!(again.tcp.flags, tcp::SYN | tcp::ACK);
    assert_eq!(e.flow_count(), 0);
}

#[test]
fn rst_from_either_side_ends_the_flow() {
    let mut e = engine();
    let (c, s) = (client_v4(), server_v4());
    let (cookie, _, _) = establish(&mut e, c, s, &[]);
    let mut rst = segment(
        c,
        s,
        CLIENT_ISN + 1,
        cookie + 1,
        tcp::RST | tcp::ACK,
        0,
        &[],
        &[],
    );
    assert_eq!(e.handle(T0 + 50, Port::Client, &mut rst), Verdict::Forward);
    assert_eq!(view(&rst).tcp.ack, SERVER_ISN + 1);
    assert_eq!(e.flow_count(), 0);
    let mut late = segment(
        s,
        c,
        SERVER_ISN + 1,
        CLIENT_ISN + 1,
        tcp::ACK,
        100,
        &[],
        b"x",
    );
    assert_eq!(
        e.handle(T0 + 51, Port::Server, &mut late),
        Verdict::Drop(DropReason::NoFlow)
    );
}

#[test]
fn idle_flow_expires() {
    let mut e = engine_with(EngineConfig {
        established_idle_timeout_ms: 5_000,
        ..config()
    });
    let (c, s) = (client_v4(), server_v4());
    let (cookie, _, _) = establish(&mut e, c, s, &[]);
    let mut d = segment(c, s, CLIENT_ISN + 1, cookie + 1, tcp::ACK, 502, &[], b"x");
    e.handle(T0 + 3_000, Port::Client, &mut d);
    e.handle_timeout(T0 + 5_011);
    assert_eq!(
        e.flow_count(),
        1,
        "activity at +3 s pushed the idle deadline"
    );
    e.handle_timeout(T0 + 8_000);
    assert_eq!(e.flow_count(), 0);
}

#[test]
fn repeated_server_synack_is_reacked() {
    let mut e = engine();
    let (c, s) = (client_v4(), server_v4());
    establish(&mut e, c, s, &[]);
    let opts = ts_option(5001, 101);
    let mut again = segment(
        s,
        c,
        SERVER_ISN,
        CLIENT_ISN + 1,
        tcp::SYN | tcp::ACK,
        65160,
        &opts,
        &[],
    );
    assert_eq!(
        e.handle(T0 + 1000, Port::Server, &mut again),
        Verdict::Absorbed
    );
    let out: Vec<_> = e.drain_emitted().collect();
    let a = view(&out[0].frame);
    assert_eq!(
        (a.tcp.seq, a.tcp.ack, a.tcp.flags),
        (CLIENT_ISN + 1, SERVER_ISN + 1, tcp::ACK)
    );
    assert_eq!(a.options.timestamps, Some((101, 5001)));
}

#[test]
fn ipv6_handshake_and_translation() {
    let mut e = engine();
    let (c, s) = (client_v6(), server_v6());
    let (synack, _) = syn(&mut e, c, s, T0, &linux_syn_options(1));
    assert_eq!(synack.options.mss, Some(1440));
    let (cookie, _, released) = {
        let mut e2 = engine();
        establish(&mut e2, c, s, b"v6")
    };
    let first = view(&released[0]);
    assert_eq!(first.tcp.ack, SERVER_ISN + 1);
    assert_eq!(first.ip.dst, s.ip);
    assert_ne!(cookie, 0);
}

#[test]
fn flow_table_limit_drops_valid_acks() {
    let mut e = engine_with(EngineConfig {
        max_flows: 1,
        ..config()
    });
    let s = server_v4();
    for (i, port) in [40000u16, 40001].into_iter().enumerate() {
        let c = Host {
            port,
            ..client_v4()
        };
        let (synack, _) = syn(&mut e, c, s, T0, &[]);
        let mut ack = segment(
            c,
            s,
            CLIENT_ISN + 1,
            synack.tcp.seq + 1,
            tcp::ACK,
            502,
            &[],
            &[],
        );
        let expected = if i == 0 {
            Verdict::Absorbed
        } else {
            Verdict::Drop(DropReason::FlowTableFull)
        };
        assert_eq!(e.handle(T0 + 1, Port::Client, &mut ack), expected);
    }
}

#[test]
fn unprotected_traffic_is_bridged_byte_for_byte() {
    let mut e = engine();
    let (c, s) = (
        client_v4(),
        Host {
            port: 8081,
            ..server_v4()
        },
    );
    let original = segment(c, s, 1, 0, tcp::SYN, 1000, &[], &[]);
    let mut f = original.clone();
    assert_eq!(e.handle(T0, Port::Client, &mut f), Verdict::Forward);
    assert_eq!(f, original);
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    let arp_copy = arp.clone();
    assert_eq!(e.handle(T0, Port::Server, &mut arp), Verdict::Forward);
    assert_eq!(arp, arp_copy);
    assert_eq!(Counters::get(&e.counters().bridged), 2);
}

#[test]
fn attack_shapes_to_protected_service_are_dropped() {
    let mut e = engine();
    let (c, s) = (client_v4(), server_v4());
    let cases = [
        (tcp::SYN | tcp::FIN, DropReason::InvalidFlags),
        (tcp::SYN | tcp::RST, DropReason::InvalidFlags),
        (0, DropReason::InvalidFlags), // null scan
        (tcp::FIN | tcp::PSH | tcp::URG, DropReason::InvalidFlags), // xmas
        (tcp::RST, DropReason::NoFlow),
    ];
    for (flags, reason) in cases {
        let mut f = segment(c, s, 1, 0, flags, 1000, &[], &[]);
        assert_eq!(
            e.handle(T0, Port::Client, &mut f),
            Verdict::Drop(reason),
            "flags {flags:#x}"
        );
    }
    let mut frag = segment(c, s, 1, 0, tcp::SYN, 1000, &[], &[]);
    frag[14 + 6] = 0x20; // MF
    let c4 = crate::wire::checksum::finish(crate::wire::checksum::sum_words(&{
        let mut h = frag[14..34].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    }));
    frag[24..26].copy_from_slice(&c4.to_be_bytes());
    assert_eq!(
        e.handle(T0, Port::Client, &mut frag),
        Verdict::Drop(DropReason::Fragment)
    );
    let mut bad = segment(c, s, 1, 0, tcp::SYN, 1000, &[], &[]);
    bad[14 + 20 + 12] = 0x10; // TCP data offset 4 words
    assert_eq!(
        e.handle(T0, Port::Client, &mut bad),
        Verdict::Drop(DropReason::Malformed)
    );
    let mut badsum = segment(c, s, 1, 0, tcp::SYN, 1000, &[], &[]);
    badsum[14 + 20 + 16] ^= 1;
    assert_eq!(
        e.handle(T0, Port::Client, &mut badsum),
        Verdict::Drop(DropReason::BadChecksum)
    );
    let mut syn_data = segment(c, s, 1, 0, tcp::SYN, 1000, &[], b"payload in SYN");
    assert_eq!(
        e.handle(T0, Port::Client, &mut syn_data),
        Verdict::Reply,
        "SYN payload ignored, handshake answered"
    );
    assert_eq!(view(&syn_data).payload_len(), 0);
    let mut stray = segment(s, c, 5, 6, tcp::ACK, 1000, &[], b"x");
    assert_eq!(
        e.handle(T0, Port::Server, &mut stray),
        Verdict::Drop(DropReason::NoFlow)
    );
}

proptest! {
    #[test]
    fn random_and_truncated_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120), cut in 0usize..120, server_side in any::<bool>()) {
        let mut e = engine();
        let port = if server_side { Port::Server } else { Port::Client };
        let mut f = bytes.clone();
        e.handle(T0, port, &mut f);
        // A valid SYN to the protected service, cut anywhere or with random tail bytes.
        let mut syn = segment(client_v4(), server_v4(), 1, 0, tcp::SYN, 1000, &linux_syn_options(1), &[]);
        syn.truncate(cut.min(syn.len()));
        e.handle(T0, Port::Client, &mut syn);
        let mut mangled = segment(client_v4(), server_v4(), 1, 2, tcp::ACK, 1000, &ts_option(1, 2), b"data");
        for (i, b) in bytes.iter().enumerate().take(40) {
            let at = 14 + (cut + i) % (mangled.len() - 14);
            mangled[at] = *b;
        }
        e.handle(T0, port, &mut mangled);
        e.handle_timeout(T0 + 100_000);
    }
}

// ---- half-open queue and syncookies modes --------------------------------

fn queue_config(mode: SyncookieMode) -> EngineConfig {
    EngineConfig {
        syncookies: mode,
        ..config()
    }
}

fn syn_from(e: &mut Engine, port: u16, src: &str, now: u64) -> Verdict {
    let c = Host {
        ip: src.parse().unwrap(),
        port,
        mac: CLIENT_MAC,
    };
    let mut f = segment(
        c,
        server_v4(),
        CLIENT_ISN,
        0,
        tcp::SYN,
        64240,
        &linux_syn_options(1),
        &[],
    );
    e.handle(now, Port::Client, &mut f)
}

#[test]
fn queued_synack_retransmit_schedule_and_give_up_at_63s() {
    let mut e = engine_with(queue_config(SyncookieMode::Auto));
    let (first, first_frame) = syn(
        &mut e,
        client_v4(),
        server_v4(),
        T0,
        &linux_syn_options(100),
    );
    assert_eq!(e.half_open_count(), 1);
    assert_eq!(Counters::get(&e.counters().synack_queued), 1);
    let mut sent_at = vec![];
    let mut now = T0;
    let mut removed_at = None;
    while now <= T0 + 70_000 {
        if e.poll_timeout().is_some_and(|t| t <= now) {
            e.handle_timeout(now);
            for em in e.drain_emitted() {
                assert_eq!(em.port, Port::Client);
                assert_eq!(
                    em.frame, first_frame,
                    "a retransmission repeats the SYN-ACK byte for byte"
                );
                sent_at.push(now - T0);
            }
            if removed_at.is_none() && e.half_open_count() == 0 {
                removed_at = Some(now - T0);
            }
        }
        now += 10;
    }
    assert_eq!(
        sent_at,
        vec![1000, 3000, 7000, 15000, 31000],
        "1, 2, 4, 8, 16 s after the previous one"
    );
    assert_eq!(removed_at, Some(63_000));
    assert_eq!(Counters::get(&e.counters().synack_retransmit), 5);
    assert_eq!(Counters::get(&e.counters().queue_expired), 1);
    assert_eq!(
        e.counters()
            .half_open
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_ne!(first.tcp.seq, 0);
}

#[test]
fn synack_retries_and_timeout_are_configurable() {
    let cfg = EngineConfig {
        synack_retries: 2,
        synack_timeout_ms: 500,
        ..queue_config(SyncookieMode::Auto)
    };
    let mut e = engine_with(cfg);
    syn(&mut e, client_v4(), server_v4(), T0, &[]);
    let mut sent_at = vec![];
    let mut now = T0;
    while e.half_open_count() > 0 && now < T0 + 10_000 {
        now += 10;
        e.handle_timeout(now);
        sent_at.extend(e.drain_emitted().map(|_| now - T0));
    }
    assert_eq!(sent_at, vec![500, 1500]);
    assert_eq!(
        now - T0,
        3500,
        "given up one doubled timeout after the last retransmission"
    );
}

#[test]
fn retransmitted_syn_gets_the_same_synack_not_a_new_entry() {
    let mut e = engine_with(queue_config(SyncookieMode::Auto));
    let (_, first) = syn(
        &mut e,
        client_v4(),
        server_v4(),
        T0,
        &linux_syn_options(100),
    );
    let (_, again) = syn(
        &mut e,
        client_v4(),
        server_v4(),
        T0 + 1_500,
        &linux_syn_options(100),
    );
    assert_eq!(first, again);
    assert_eq!(e.half_open_count(), 1);
    assert_eq!(Counters::get(&e.counters().synack_retransmit), 1);
    assert_eq!(Counters::get(&e.counters().syn_received), 2);
}

#[test]
fn queue_full_in_each_mode() {
    let small = |mode| EngineConfig {
        backlog: 2,
        per_source_backlog: 2,
        cookie_hold_ms: 10_000,
        ..queue_config(mode)
    };
    // off: queue only, drop when full.
    let mut off = engine_with(small(SyncookieMode::Off));
    assert_eq!(syn_from(&mut off, 1, "198.18.1.1", T0), Verdict::Reply);
    assert_eq!(syn_from(&mut off, 1, "198.18.1.2", T0), Verdict::Reply);
    assert_eq!(
        syn_from(&mut off, 1, "198.18.1.3", T0),
        Verdict::Drop(DropReason::QueueFull)
    );
    assert_eq!(off.half_open_count(), 2);
    // auto: cookies for what overflows, then cookie mode for the hold time.
    let mut auto = engine_with(small(SyncookieMode::Auto));
    syn_from(&mut auto, 1, "198.18.1.1", T0);
    syn_from(&mut auto, 1, "198.18.1.2", T0);
    assert_eq!(syn_from(&mut auto, 1, "198.18.1.3", T0), Verdict::Reply);
    let k = auto.counters();
    assert_eq!(
        (
            Counters::get(&k.synack_queued),
            Counters::get(&k.synack_cookie)
        ),
        (2, 1)
    );
    assert_eq!(Counters::get(&k.cookie_mode_active), 1);
    // Room again, but still within the hold time: stateless.
    let key = FlowKey {
        client: "198.18.1.1".parse().unwrap(),
        server: server_v4().ip,
        client_port: 1,
        server_port: 8080,
    };
    let mut rst = segment(
        Host {
            ip: key.client,
            port: 1,
            mac: CLIENT_MAC,
        },
        server_v4(),
        CLIENT_ISN + 1,
        0,
        tcp::RST,
        0,
        &[],
        &[],
    );
    assert_eq!(
        auto.handle(T0 + 1, Port::Client, &mut rst),
        Verdict::Absorbed,
        "client RST cancels its entry"
    );
    assert_eq!(auto.half_open_count(), 1);
    syn_from(&mut auto, 2, "198.18.1.4", T0 + 9_999);
    assert_eq!(auto.half_open_count(), 1, "cookie mode holds");
    auto.handle_timeout(T0 + 10_000);
    assert_eq!(Counters::get(&k.cookie_mode_active), 0);
    syn_from(&mut auto, 3, "198.18.1.5", T0 + 10_000);
    assert_eq!(
        auto.half_open_count(),
        2,
        "queue used again after the hold time"
    );
    // always: never queued.
    let mut always = engine_with(small(SyncookieMode::Always));
    for i in 1..=5 {
        assert_eq!(syn_from(&mut always, i, "198.18.1.1", T0), Verdict::Reply);
    }
    assert_eq!(always.half_open_count(), 0);
}

#[test]
fn per_source_limit_spares_other_sources() {
    let cfg = |mode| EngineConfig {
        per_source_backlog: 2,
        ..queue_config(mode)
    };
    let mut off = engine_with(cfg(SyncookieMode::Off));
    assert_eq!(syn_from(&mut off, 1, "198.18.1.1", T0), Verdict::Reply);
    assert_eq!(syn_from(&mut off, 2, "198.18.1.1", T0), Verdict::Reply);
    assert_eq!(
        syn_from(&mut off, 3, "198.18.1.1", T0),
        Verdict::Drop(DropReason::PerSourceLimit)
    );
    assert_eq!(
        syn_from(&mut off, 1, "198.18.1.2", T0),
        Verdict::Reply,
        "another source still gets in"
    );
    let mut auto = engine_with(cfg(SyncookieMode::Auto));
    syn_from(&mut auto, 1, "198.18.1.1", T0);
    syn_from(&mut auto, 2, "198.18.1.1", T0);
    assert_eq!(
        syn_from(&mut auto, 3, "198.18.1.1", T0),
        Verdict::Reply,
        "over its share: a stateless cookie"
    );
    assert_eq!(auto.half_open_count(), 2);
    assert_eq!(
        Counters::get(&auto.counters().cookie_mode_active),
        0,
        "one source does not switch modes"
    );
}

#[test]
fn queued_handshake_keeps_the_exact_client_mss() {
    // Without timestamps: with them, a service not yet seen doing them is
    // told 12 bytes less (option_mismatch.rs).
    let opts = SynOptionSet {
        mss: Some(1380),
        sack_permitted: true,
        timestamps: None,
        wscale: Some(6),
    }
    .encode();
    for (mode, expected_mss) in [(SyncookieMode::Auto, 1380), (SyncookieMode::Always, 1360)] {
        let mut e = engine_with(queue_config(mode));
        let (c, s) = (client_v4(), server_v4());
        let (synack, _) = syn(&mut e, c, s, T0, opts.as_slice());
        let mut ack = segment(
            c,
            s,
            CLIENT_ISN + 1,
            synack.tcp.seq + 1,
            tcp::ACK,
            502,
            &[],
            &[],
        );
        assert_eq!(e.handle(T0 + 5, Port::Client, &mut ack), Verdict::Absorbed);
        let bsyn = view(&e.drain_emitted().next().unwrap().frame);
        assert_eq!(bsyn.options.mss, Some(expected_mss), "{mode:?}");
        assert_eq!(bsyn.options.wscale, Some(6));
    }
}

#[test]
fn queued_client_whose_first_data_was_lost_is_not_reset() {
    // The third ACK and 1 byte of data never arrived; the client answers a
    // retransmitted SYN-ACK with a challenge ACK at SEQ = ISN + 2.
    let mut e = engine_with(queue_config(SyncookieMode::Auto));
    let (c, s) = (client_v4(), server_v4());
    let (synack, _) = syn(&mut e, c, s, T0, &[]);
    let mut challenge = segment(
        c,
        s,
        CLIENT_ISN + 2,
        synack.tcp.seq + 1,
        tcp::ACK,
        502,
        &[],
        &[],
    );
    assert_eq!(
        e.handle(T0 + 1000, Port::Client, &mut challenge),
        Verdict::Absorbed
    );
    let bsyn = view(&e.drain_emitted().next().unwrap().frame);
    assert_eq!(
        bsyn.tcp.seq, CLIENT_ISN,
        "backend SYN carries the queued ISN"
    );
    assert_eq!(Counters::get(&e.counters().rst_sent), 0);
    // Stateless, the same ACK cannot be told from a forgery.
    let mut cookie_only = engine();
    let (synack, _) = syn(&mut cookie_only, c, s, T0, &[]);
    let mut challenge = segment(
        c,
        s,
        CLIENT_ISN + 2,
        synack.tcp.seq + 1,
        tcp::ACK,
        502,
        &[],
        &[],
    );
    assert_eq!(
        cookie_only.handle(T0 + 1000, Port::Client, &mut challenge),
        Verdict::Reply
    );
    assert_eq!(view(&challenge).tcp.flags, tcp::RST);
}

// ---- connection tracking --------------------------------------------------

#[test]
fn rst_must_match_the_window() {
    let mut e = engine();
    let (c, s) = (client_v4(), server_v4());
    let (cookie, _, _) = establish(&mut e, c, s, &[]);
    let blind = CLIENT_ISN.wrapping_add(1 << 20);
    let mut far = segment(c, s, blind, 0, tcp::RST, 0, &[], &[]);
    assert_eq!(
        e.handle(T0 + 50, Port::Client, &mut far),
        Verdict::Drop(DropReason::OutOfWindow)
    );
    let mut near = segment(c, s, CLIENT_ISN + 100, 0, tcp::RST, 0, &[], &[]);
    assert_eq!(
        e.handle(T0 + 51, Port::Client, &mut near),
        Verdict::Forward,
        "in window: the server sends a challenge ACK"
    );
    assert_eq!(e.flow_state(&key_v4()), Some(TcpState::Established));
    let mut far_server = segment(
        s,
        c,
        SERVER_ISN.wrapping_add(1 << 20),
        0,
        tcp::RST,
        0,
        &[],
        &[],
    );
    assert_eq!(
        e.handle(T0 + 52, Port::Server, &mut far_server),
        Verdict::Drop(DropReason::OutOfWindow)
    );
    let mut exact = segment(
        c,
        s,
        CLIENT_ISN + 1,
        cookie + 1,
        tcp::RST | tcp::ACK,
        0,
        &[],
        &[],
    );
    assert_eq!(
        e.handle(T0 + 53, Port::Client, &mut exact),
        Verdict::Forward
    );
    assert_eq!(e.flow_count(), 0);
    assert_eq!(e.counters().dropped(DropReason::OutOfWindow), 2);
}

#[test]
fn out_of_window_data_is_dropped_retransmissions_pass() {
    let mut e = engine();
    let (c, s) = (client_v4(), server_v4());
    let (cookie, _, _) = establish(&mut e, c, s, &[]);
    let mut data = segment(
        c,
        s,
        CLIENT_ISN + 1,
        cookie + 1,
        tcp::ACK,
        502,
        &[],
        &[7; 100],
    );
    assert_eq!(e.handle(T0 + 20, Port::Client, &mut data), Verdict::Forward);
    let mut again = segment(
        c,
        s,
        CLIENT_ISN + 1,
        cookie + 1,
        tcp::ACK,
        502,
        &[],
        &[7; 100],
    );
    assert_eq!(
        e.handle(T0 + 21, Port::Client, &mut again),
        Verdict::Forward,
        "a retransmission passes"
    );
    let mut wild = segment(
        c,
        s,
        CLIENT_ISN.wrapping_add(50_000_000),
        cookie + 1,
        tcp::ACK,
        502,
        &[],
        &[7; 10],
    );
    assert_eq!(
        e.handle(T0 + 22, Port::Client, &mut wild),
        Verdict::Drop(DropReason::OutOfWindow)
    );
    let mut wild_server = segment(
        s,
        c,
        SERVER_ISN.wrapping_add(50_000_000),
        CLIENT_ISN + 101,
        tcp::ACK,
        100,
        &[],
        b"x",
    );
    assert_eq!(
        e.handle(T0 + 23, Port::Server, &mut wild_server),
        Verdict::Drop(DropReason::OutOfWindow)
    );
}

#[test]
fn server_that_never_closes_stays_in_close_wait_until_its_timeout() {
    let mut e = engine_with(EngineConfig {
        close_wait_timeout_ms: 5_000,
        ..config()
    });
    let (c, s) = (client_v4(), server_v4());
    let (cookie, _, _) = establish(&mut e, c, s, &[]);
    let mut fin = segment(
        c,
        s,
        CLIENT_ISN + 1,
        cookie + 1,
        tcp::FIN | tcp::ACK,
        502,
        &[],
        &[],
    );
    e.handle(T0 + 100, Port::Client, &mut fin);
    assert_eq!(e.flow_state(&key_v4()), Some(TcpState::CloseWait));
    assert_eq!(e.counters().flows_in(TcpState::CloseWait), 1);
    e.handle_timeout(T0 + 5_099);
    assert_eq!(e.flow_state(&key_v4()), Some(TcpState::CloseWait));
    e.handle_timeout(T0 + 5_100);
    assert_eq!(
        e.flow_count(),
        0,
        "CLOSE_WAIT idle timeout, not the established one"
    );
    assert_eq!(Counters::get(&e.counters().flows_expired), 1);
}

#[test]
fn full_table_evicts_the_oldest_time_wait_flow() {
    let mut e = engine_with(EngineConfig {
        max_flows: 1,
        ..config()
    });
    let (c, s) = (client_v4(), server_v4());
    let (cookie, _, _) = establish(&mut e, c, s, &[]);
    close_client_first(&mut e, c, s, cookie);
    assert_eq!(e.flow_state(&key_v4()), Some(TcpState::TimeWait));
    // A second client's handshake takes its place.
    let c2 = Host { port: 40001, ..c };
    let (synack, _) = syn(&mut e, c2, s, T0 + 200, &[]);
    let mut ack = segment(
        c2,
        s,
        CLIENT_ISN + 1,
        synack.tcp.seq + 1,
        tcp::ACK,
        502,
        &[],
        &[],
    );
    assert_eq!(
        e.handle(T0 + 201, Port::Client, &mut ack),
        Verdict::Absorbed
    );
    assert_eq!(e.flow_state(&key_v4()), None);
    assert_eq!(Counters::get(&e.counters().flows_evicted), 1);
    // No TIME_WAIT flow left to evict: the next one is refused.
    let c3 = Host { port: 40002, ..c };
    let (synack, _) = syn(&mut e, c3, s, T0 + 300, &[]);
    let mut ack = segment(
        c3,
        s,
        CLIENT_ISN + 1,
        synack.tcp.seq + 1,
        tcp::ACK,
        502,
        &[],
        &[],
    );
    assert_eq!(
        e.handle(T0 + 301, Port::Client, &mut ack),
        Verdict::Drop(DropReason::FlowTableFull)
    );
}

#[test]
fn simultaneous_close_through_closing() {
    let mut e = engine();
    let (c, s) = (client_v4(), server_v4());
    let (cookie, _, _) = establish(&mut e, c, s, &[]);
    // The FINs cross: neither acknowledges the other's.
    let mut sfin = segment(
        s,
        c,
        SERVER_ISN + 1,
        CLIENT_ISN + 1,
        tcp::FIN | tcp::ACK,
        100,
        &[],
        &[],
    );
    e.handle(T0 + 100, Port::Server, &mut sfin);
    let mut cfin = segment(
        c,
        s,
        CLIENT_ISN + 1,
        cookie + 1,
        tcp::FIN | tcp::ACK,
        502,
        &[],
        &[],
    );
    e.handle(T0 + 100, Port::Client, &mut cfin);
    assert_eq!(e.flow_state(&key_v4()), Some(TcpState::Closing));
    let mut ack = segment(c, s, CLIENT_ISN + 2, cookie + 2, tcp::ACK, 502, &[], &[]);
    e.handle(T0 + 101, Port::Client, &mut ack);
    assert_eq!(e.flow_state(&key_v4()), Some(TcpState::TimeWait));
}

#[test]
fn exported_counters_are_exact() {
    // 30 SYNs from 30 clients, 10 of them complete (valid ACKs), 7 forged
    // ACKs; then the /metrics text must say exactly that.
    let mut e = engine_with(queue_config(SyncookieMode::Auto));
    let s = server_v4();
    let mut cookies = vec![];
    for port in 0..30u16 {
        let c = Host {
            port: 20_000 + port,
            ..client_v4()
        };
        let (synack, _) = syn(&mut e, c, s, T0, &[]);
        cookies.push((c, synack.tcp.seq));
    }
    for (c, cookie) in cookies.iter().take(10) {
        let mut ack = segment(*c, s, CLIENT_ISN + 1, cookie + 1, tcp::ACK, 502, &[], &[]);
        assert_eq!(e.handle(T0 + 1, Port::Client, &mut ack), Verdict::Absorbed);
    }
    for i in 0..7u32 {
        let forger = Host {
            ip: "198.18.9.9".parse().unwrap(),
            port: 30_000 + i as u16,
            mac: CLIENT_MAC,
        };
        let mut forged = segment(forger, s, 5, 0x4000_0000 + i, tcp::ACK, 502, &[], &[]);
        assert_eq!(e.handle(T0 + 2, Port::Client, &mut forged), Verdict::Reply);
    }
    let text = crate::metrics::render(&crate::metrics::registry(e.counters()));
    let value = |key: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(key) && l[key.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("{key} missing"));
        line[key.len() + 1..].parse().unwrap()
    };
    assert_eq!(value("synguard_syn_received_total"), 30.0);
    assert_eq!(value("synguard_synack_sent_total{kind=\"queued\"}"), 30.0);
    assert_eq!(value("synguard_synack_sent_total{kind=\"cookie\"}"), 0.0);
    assert_eq!(value("synguard_syn_queue_completed_total"), 10.0);
    assert_eq!(value("synguard_syn_recv"), 20.0);
    assert_eq!(value("synguard_cookies_validated_total"), 0.0);
    assert_eq!(value("synguard_cookies_failed_total"), 7.0);
    assert_eq!(value("synguard_rst_sent_total"), 7.0);
    assert_eq!(
        value("synguard_backend_handshakes_total{result=\"started\"}"),
        10.0
    );
    assert_eq!(value("synguard_flows{state=\"backend_syn_sent\"}"), 10.0);
    assert_eq!(
        value("synguard_frames_total{port=\"client\",direction=\"rx\"}"),
        47.0
    );
    assert_eq!(
        value("synguard_frames_total{port=\"client\",direction=\"tx\"}"),
        37.0,
        "30 SYN-ACKs + 7 RSTs"
    );
    assert_eq!(
        value("synguard_frames_total{port=\"server\",direction=\"tx\"}"),
        10.0,
        "10 backend SYNs"
    );
}

#[test]
fn repeated_fin_in_time_wait_restarts_2msl() {
    let mut e = engine();
    let (c, s) = (client_v4(), server_v4());
    let (cookie, _, _) = establish(&mut e, c, s, &[]);
    close_client_first(&mut e, c, s, cookie);
    assert_eq!(e.flow_state(&key_v4()), Some(TcpState::TimeWait));
    // The server did not get the last ACK and repeats its FIN 50 s later.
    let mut again = segment(
        s,
        c,
        SERVER_ISN + 1,
        CLIENT_ISN + 2,
        tcp::FIN | tcp::ACK,
        100,
        &[],
        &[],
    );
    assert_eq!(
        e.handle(T0 + 50_102, Port::Server, &mut again),
        Verdict::Forward
    );
    e.handle_timeout(T0 + 60_102);
    assert_eq!(
        e.flow_state(&key_v4()),
        Some(TcpState::TimeWait),
        "2 x MSL counts from the repeated FIN"
    );
    e.handle_timeout(T0 + 110_102);
    assert_eq!(e.flow_count(), 0);
}

#[test]
fn remaining_drop_reasons() {
    let (c, s) = (client_v4(), server_v4());
    // held_bytes_total: two flows share a 250-byte budget.
    let mut e = engine_with(EngineConfig {
        held_bytes_total: 250,
        ..config()
    });
    for (i, port) in [40000u16, 40001].into_iter().enumerate() {
        let c = Host { port, ..c };
        let (synack, _) = syn(&mut e, c, s, T0, &[]);
        let mut ack = segment(
            c,
            s,
            CLIENT_ISN + 1,
            synack.tcp.seq + 1,
            tcp::ACK,
            502,
            &[],
            &[],
        );
        assert_eq!(e.handle(T0 + 1, Port::Client, &mut ack), Verdict::Absorbed);
        let mut data = segment(
            c,
            s,
            CLIENT_ISN + 1,
            synack.tcp.seq + 1,
            tcp::ACK,
            502,
            &[],
            &[1; 60],
        );
        let expected = if i == 0 {
            Verdict::Absorbed
        } else {
            Verdict::Drop(DropReason::HeldBytesTotal)
        };
        assert_eq!(
            e.handle(T0 + 2, Port::Client, &mut data),
            expected,
            "flow {i}"
        );
    }
    // unexpected_segment on a flow waiting for its backend (the SYN-SENT
    // cases are in backend_syn_sent.rs).
    let mut e = engine();
    let (synack, _) = syn(&mut e, c, s, T0, &[]);
    let mut ack = segment(
        c,
        s,
        CLIENT_ISN + 1,
        synack.tcp.seq + 1,
        tcp::ACK,
        502,
        &[],
        &[],
    );
    e.handle(T0 + 1, Port::Client, &mut ack);
    let mut early = segment(
        s,
        c,
        SERVER_ISN + 1,
        CLIENT_ISN + 1,
        tcp::ACK,
        100,
        &[],
        b"x",
    );
    assert_eq!(
        e.handle(T0 + 3, Port::Server, &mut early),
        Verdict::Drop(DropReason::UnexpectedSegment)
    );
    let mut rst_no_ack = segment(s, c, SERVER_ISN, 0, tcp::RST, 0, &[], &[]);
    assert_eq!(
        e.handle(T0 + 4, Port::Server, &mut rst_no_ack),
        Verdict::Drop(DropReason::UnexpectedSegment)
    );
    assert_eq!(e.counters().dropped(DropReason::UnexpectedSegment), 2);
}

mod adopted_flows;
mod backend_down;
mod backend_syn_sent;
mod client_fin;
mod clock_steps;
mod cookie_mss;
mod fast_path_publish;
mod fragments;
mod handover;
mod icmp_errors;
mod idle_expiry;
mod option_mismatch;
mod program_events;
mod retired_service;
mod signed_segments;
mod syn_on_open_flow;
