//! The XDP program against its Rust twin, without a network: every test
//! loads bpf/synguard_xdp.o, runs it on crafted frames with
//! BPF_PROG_TEST_RUN and compares verdict and bytes with the engine's for
//! the same frame, secret and time. Needs root (CAP_BPF, CAP_NET_ADMIN) and
//! a BPF-capable kernel; it fails, never skips, without them.
//!
//! Agreement rule: XDP_TX only where the engine replies, with the
//! same bytes; XDP_DROP only where the engine drops; XDP_PASS is always
//! allowed (the engine then decides).

use std::net::IpAddr;

use aya::programs::{TestRun, TestRunOptions};
use proptest::prelude::*;

use synguard::cookie::{CookieKeys, CookieSecret};
use synguard::engine::send_budget;
use synguard::engine::{
    Engine, EngineConfig, FlowKey, InvalidAckAction, Port, SyncookieMode, Verdict,
};
use synguard::io::xdp::{maps, XdpFastPath, STALE_AFTER_NS};
use synguard::wire::tcp::{self, TcpSegmentSpec};
use synguard::wire::tcp_options::SynOptionSet;
use synguard::wire::{parse_frame, write_tcp_frame, ParsedFrame};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

/// A multiple of 64 ms at a whole second: the program's clock (this plus
/// the microseconds since publishing) gives the same TSval and slot.
const NOW: u64 = 1_700_000_000_000;
const SECRET: [u8; 16] = *b"synguard-xdp-tst";

fn engine(mode: SyncookieMode, action: InvalidAckAction) -> Engine {
    let cfg = EngineConfig {
        protected: vec![
            "198.18.0.2:8080".parse().unwrap(),
            "[2001:db8::2]:8080".parse().unwrap(),
        ],
        syncookies: mode,
        invalid_ack_action: action,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(cfg, CookieSecret::from_bytes(SECRET));
    e.enable_fast_path();
    e
}

fn load(e: &Engine, now_ms: u64) -> XdpFastPath {
    let mut x = XdpFastPath::load(4096).expect("loading bpf/synguard_xdp.o (run as root)");
    x.publish_params(e, now_ms).unwrap();
    x
}

fn run(x: &XdpFastPath, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; 512];
    let r = x
        .program()
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out[..]),
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

#[derive(Clone, Copy)]
struct Seg<'a> {
    client: &'a str,
    server: &'a str,
    cport: u16,
    sport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    opts: SynOptionSet,
    vlan: bool,
    payload: &'a [u8],
}

fn syn(client: &'static str, server: &'static str) -> Seg<'static> {
    Seg {
        client,
        server,
        cport: 40000,
        sport: 8080,
        seq: 0x1234_5678,
        ack: 0,
        flags: tcp::SYN,
        opts: SynOptionSet {
            mss: Some(1460),
            sack_permitted: true,
            timestamps: Some((0x0102_0304, 0)),
            wscale: Some(7),
        },
        vlan: false,
        payload: &[],
    }
}

fn frame(s: &Seg) -> Vec<u8> {
    let mut l2 = vec![2, 0, 0, 0, 0, 0xaa, 2, 0, 0, 0, 0, 0xbb, 0, 0];
    if s.vlan {
        l2.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
    }
    let enc = s.opts.encode();
    let spec = TcpSegmentSpec {
        src_port: s.cport,
        dst_port: s.sport,
        seq: s.seq,
        ack: s.ack,
        flags: s.flags,
        window: 64240,
        options: enc.as_slice(),
        payload: s.payload,
    };
    let mut out = Vec::new();
    let src: IpAddr = s.client.parse().unwrap();
    let dst: IpAddr = s.server.parse().unwrap();
    write_tcp_frame(&mut out, &l2, src, dst, 64, &spec);
    out
}

fn key_of(s: &Seg) -> FlowKey {
    FlowKey {
        client: s.client.parse().unwrap(),
        server: s.server.parse().unwrap(),
        client_port: s.cport,
        server_port: s.sport,
    }
}

/// Run both; check the agreement rule; return (xdp verdict, xdp bytes, engine verdict).
fn compare(e: &mut Engine, x: &XdpFastPath, now_ms: u64, f: &[u8]) -> (u32, Vec<u8>, Verdict) {
    let (ret, out) = run(x, f);
    let mut ef = f.to_vec();
    let v = e.handle(now_ms, Port::Client, &mut ef);
    match ret {
        XDP_PASS => {}
        XDP_TX => {
            assert_eq!(v, Verdict::Reply, "XDP replied where the engine said {v:?}");
            assert_eq!(out, ef, "XDP reply differs from the engine's");
            assert!(parse_frame(&out).is_ok());
        }
        XDP_DROP => assert!(
            matches!(v, Verdict::Drop(_)),
            "XDP dropped where the engine said {v:?}"
        ),
        other => panic!("XDP returned {other}"),
    }
    (ret, out, v)
}

fn tcp_of(f: &[u8]) -> synguard::wire::TcpView {
    match parse_frame(f).unwrap() {
        ParsedFrame::Tcp(v) => v,
        other => panic!("not TCP: {other:?}"),
    }
}

#[test]
fn cookie_synack_is_the_engines_byte_for_byte() {
    let variants = syn_variants();
    let mut e = engine(SyncookieMode::Always, InvalidAckAction::Rst);
    let x = load(&e, NOW);
    for (i, s) in variants.iter().enumerate() {
        let f = frame(s);
        let (ret, out, v) = compare(&mut e, &x, NOW, &f);
        assert_eq!((ret, v), (XDP_TX, Verdict::Reply), "variant {i}");
        assert!(out.len() <= 18 + 40 + 40, "variant {i}");
    }
    let totals = x.counter_totals();
    assert_eq!(
        totals[maps::counter::SYNACK_COOKIE as usize],
        variants.len() as u64
    );
}

/// SYNs over both families, a VLAN tag, every MSS table boundary, window
/// scales (absent, 0, 14, above 14), SACK and timestamps, ECN flags.
fn syn_variants() -> Vec<Seg<'static>> {
    let no_opts = SynOptionSet::default();
    let mut variants: Vec<Seg> = Vec::new();
    for (c, s) in [("198.18.0.1", "198.18.0.2"), ("2001:db8::1", "2001:db8::2")] {
        for vlan in [false, true] {
            let base = Seg { vlan, ..syn(c, s) };
            variants.push(base);
            variants.push(Seg {
                opts: no_opts,
                ..base
            });
            for mss in [
                None,
                Some(0),
                Some(536),
                Some(1259),
                Some(1300),
                Some(1440),
                Some(9000),
            ] {
                variants.push(Seg {
                    opts: SynOptionSet { mss, ..base.opts },
                    ..base
                });
            }
            for ws in [None, Some(0), Some(14), Some(15), Some(255)] {
                variants.push(Seg {
                    opts: SynOptionSet {
                        wscale: ws,
                        ..base.opts
                    },
                    ..base
                });
            }
            for (sack, ts) in [
                (false, None),
                (true, None),
                (false, Some((9, 0))),
                (true, Some((u32::MAX, 5))),
            ] {
                variants.push(Seg {
                    opts: SynOptionSet {
                        sack_permitted: sack,
                        timestamps: ts,
                        ..base.opts
                    },
                    ..base
                });
            }
            for flags in [
                tcp::SYN | tcp::ECE | tcp::CWR,
                tcp::SYN | tcp::ECE,
                tcp::SYN | tcp::CWR,
                tcp::SYN | tcp::PSH | tcp::URG,
            ] {
                variants.push(Seg { flags, ..base });
                variants.push(Seg {
                    flags,
                    opts: no_opts,
                    ..base
                });
            }
        }
    }
    variants
}

const XDP_REDIRECT: u32 = 4;
/// Redirect target of both ports in test runs: `lo` (nothing is attached
/// and nothing is sent).
const LO: u32 = 1;

/// The engine's events as the metric counts them.
fn replays(e: &Engine) -> [u64; 3] {
    let c = e.counters();
    std::array::from_fn(|i| c.xdp_events[i].load(std::sync::atomic::Ordering::Relaxed))
}

/// With the server port to redirect to, an ACK with a valid cookie leaves
/// as the backend SYN the engine would send for it, byte for byte (every
/// SYN variant's cookie, so every option combination the cookie can
/// carry); the engine, replaying the program's report, holds the flow in
/// BACKEND_SYN_SENT and sends nothing itself.
#[test]
fn cookie_acks_become_the_engines_backend_syn_byte_for_byte() {
    let variants = syn_variants();
    let mut e = engine(SyncookieMode::Always, InvalidAckAction::Rst);
    let mut x = load(&e, NOW);
    x.set_ports(LO, LO).unwrap();
    let mut reference = engine(SyncookieMode::Always, InvalidAckAction::Rst);
    for (i, s) in variants.iter().enumerate() {
        let s = Seg {
            cport: 20000 + i as u16,
            ..*s
        };
        let (ret, synack) = run(&x, &frame(&s));
        assert_eq!(ret, XDP_TX, "variant {i}");
        let ack = ack_for(&s, &synack, 0);
        let mut expected = ack.clone();
        assert_eq!(
            reference.handle(NOW, Port::Client, &mut expected),
            Verdict::Absorbed,
            "variant {i}"
        );
        let sent: Vec<_> = reference.drain_emitted().collect();
        assert_eq!(sent.len(), 1, "variant {i}");
        assert_eq!(sent[0].port, Port::Server);
        let (ret, out) = run(&x, &ack);
        assert_eq!(ret, XDP_REDIRECT, "variant {i}");
        assert_eq!(out, sent[0].frame, "variant {i}: backend SYN differs");
        assert!(!e.is_tracked(&key_of(&s)));
        x.sync(&mut e, NOW);
        assert!(e.is_tracked(&key_of(&s)), "variant {i}: replayed");
        assert_eq!(e.drain_emitted().count(), 0, "the program sent it");
    }
    let n = variants.len() as u64;
    assert_eq!(replays(&e), [n, 0, 0]);
    assert_eq!(x.counter_totals()[maps::counter::BACKEND_SYN as usize], n);
    assert_eq!(
        e.counters()
            .backend_started
            .load(std::sync::atomic::Ordering::Relaxed),
        n
    );
}

/// A full event ring never loses a handshake: the program stops acting
/// (the ACK goes up, as without the ring) and counts it; every report it
/// wrote before is replayed.
#[test]
fn a_full_event_ring_sends_acks_up_and_loses_no_report() {
    let mut e = engine(SyncookieMode::Always, InvalidAckAction::Rst);
    let mut x = XdpFastPath::load(65536).expect("loading bpf/synguard_xdp.o (run as root)");
    x.publish_params(&e, NOW).unwrap();
    x.set_ports(LO, LO).unwrap();
    let base = syn("198.18.0.1", "198.18.0.2");
    let mut redirected = 0u64;
    let mut first_up = None;
    for port in 1024..u16::MAX {
        let s = Seg {
            cport: port,
            ..base
        };
        let (_, synack) = run(&x, &frame(&s));
        let (ret, _) = run(&x, &ack_for(&s, &synack, 0));
        match ret {
            XDP_REDIRECT => redirected += 1,
            XDP_PASS => {
                first_up = Some(port);
                break;
            }
            other => panic!("verdict {other}"),
        }
    }
    assert!(first_up.is_some(), "the ring never filled");
    // A ring of 2 MiB holds a few thousand 272-byte records.
    assert!(redirected > 5_000, "{redirected}");
    assert_eq!(x.counter_totals()[maps::counter::EVENTS_FULL as usize], 1);
    x.sync(&mut e, NOW);
    x.fold_counters(&e.counters());
    assert_eq!(replays(&e), [redirected, 0, 1]);
    // The ACK that went up is the engine's to handle, as before.
    let s = Seg {
        cport: first_up.unwrap(),
        ..base
    };
    assert!(!e.is_tracked(&key_of(&s)));
}

#[test]
fn syns_go_up_while_the_queue_is_in_charge_or_when_not_fully_parsed() {
    let mut e = engine(SyncookieMode::Auto, InvalidAckAction::Rst);
    let x = load(&e, NOW);
    // Auto mode without overflow: the engine queues (and replies); XDP passes.
    let (ret, _, v) = compare(&mut e, &x, NOW, &frame(&syn("198.18.0.1", "198.18.0.2")));
    assert_eq!((ret, v), (XDP_PASS, Verdict::Reply));

    let mut e = engine(SyncookieMode::Always, InvalidAckAction::Rst);
    let x = load(&e, NOW);
    let good = frame(&syn("198.18.0.1", "198.18.0.2"));
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut bad_sum = good.clone();
    let n = bad_sum.len();
    bad_sum[n - 1] ^= 1;
    cases.push(("bad checksum", bad_sum));
    cases.push((
        "payload",
        frame(&Seg {
            payload: b"hello",
            ..syn("198.18.0.1", "198.18.0.2")
        }),
    ));
    cases.push((
        "unprotected port",
        frame(&Seg {
            sport: 8081,
            ..syn("198.18.0.1", "198.18.0.2")
        }),
    ));
    let mut frag = good.clone();
    frag[14 + 6] |= 0x20;
    cases.push(("fragment", frag));
    // TCP-MD5 (kind 19) and TCP-AO (kind 29): the engine's business.
    for kind in [19u8, 29] {
        let mut s = syn("198.18.0.1", "198.18.0.2");
        s.opts = SynOptionSet::default();
        let mut f = frame(&s);
        let opt = [
            kind, 18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1,
        ];
        assert!(insert_options(&mut f, 14, &opt));
        // Whatever the flags: the engine bridges signed segments before it
        // looks at them (a SYN+ACK would otherwise be an invalid_flags drop).
        let mut synack = f.clone();
        synack[14 + 20 + 13] |= 0x10; // ACK
        assert!(synguard::wire::frame::complete_l4_checksum(&mut synack));
        cases.push(("auth option", f));
        cases.push(("auth option on a SYN+ACK", synack));
    }
    // Odd option length (MSS with length 3).
    let mut odd = frame(&Seg {
        opts: SynOptionSet::default(),
        ..syn("198.18.0.1", "198.18.0.2")
    });
    assert!(!insert_options(&mut odd, 14, &[2, 3, 5, 1]), "unparseable");
    cases.push(("odd option length", odd));
    // IPv6 with a destination-options extension header.
    let v6 = frame(&syn("2001:db8::1", "2001:db8::2"));
    let mut ext = v6[..54].to_vec();
    ext[20] = 60; // next header: destination options
    ext.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    ext.extend_from_slice(&v6[54..]);
    let plen = u16::from_be_bytes([ext[18], ext[19]]) + 8;
    ext[18..20].copy_from_slice(&plen.to_be_bytes());
    cases.push(("ipv6 extension header", ext));
    // IPv4 with options (IHL 6).
    let mut ipopt = good[..34].to_vec();
    ipopt[14] = 0x46;
    ipopt.extend_from_slice(&[1, 1, 1, 0]);
    ipopt.extend_from_slice(&good[34..]);
    let total = u16::from_be_bytes([ipopt[16], ipopt[17]]) + 4;
    ipopt[16..18].copy_from_slice(&total.to_be_bytes());
    cases.push(("ipv4 options", ipopt));
    // Two VLAN tags.
    let mut qinq = frame(&Seg {
        vlan: true,
        ..syn("198.18.0.1", "198.18.0.2")
    });
    qinq.splice(12..12, [0x81, 0x00, 0x00, 0x08]);
    cases.push(("two vlan tags", qinq));
    for (name, f) in &cases {
        let (ret, _, _) = compare(&mut e, &x, NOW, f);
        assert_eq!(ret, XDP_PASS, "{name}");
    }
    // Every truncation of a SYN.
    for cut in 0..good.len() {
        let (ret, _, _) = compare(&mut e, &x, NOW, &good[..cut.max(14)]);
        assert_ne!(ret, XDP_TX, "cut {cut}");
    }
}

/// Put `opts` (a multiple of 4 bytes) after the 20-byte TCP header of a
/// frame whose IP header starts at `l3`, fixing lengths and checksums
/// (the TCP checksum only when the result still parses).
fn insert_options(f: &mut Vec<u8>, l3: usize, opts: &[u8]) -> bool {
    let v = tcp_of(f);
    let t = v.ip.l4_offset;
    f.splice(t + 20..t + 20, opts.iter().copied());
    f[t + 12] = (((20 + opts.len()) / 4) as u8) << 4;
    if v.ip.is_v4() {
        let total = u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]) + opts.len() as u16;
        f[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
        f[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
        let c =
            synguard::wire::checksum::finish(synguard::wire::checksum::sum_words(&f[l3..l3 + 20]));
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    } else {
        let plen = u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]) + opts.len() as u16;
        f[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
    }
    synguard::wire::frame::complete_l4_checksum(f)
}

fn ack_for(s: &Seg, synack: &[u8], seq_advance: u32) -> Vec<u8> {
    let sa = tcp_of(synack);
    let ts = s
        .opts
        .timestamps
        .map(|(val, _)| (val + 1, sa.options.timestamps.unwrap().0));
    frame(&Seg {
        seq: s.seq.wrapping_add(1).wrapping_add(seq_advance),
        ack: sa.tcp.seq.wrapping_add(1),
        flags: tcp::ACK,
        opts: SynOptionSet {
            timestamps: ts,
            ..SynOptionSet::default()
        },
        ..*s
    })
}

#[test]
fn forged_acks_are_dropped_or_reset_like_the_engine() {
    for action in [InvalidAckAction::Drop, InvalidAckAction::Rst] {
        let mut e = engine(SyncookieMode::Always, action);
        let x = load(&e, NOW);
        for (c, sv) in [("198.18.0.1", "198.18.0.2"), ("2001:db8::1", "2001:db8::2")] {
            for vlan in [false, true] {
                for ts in [None, Some((5, 0x1234_5678))] {
                    let s = Seg {
                        seq: 1000,
                        ack: 0xdead_beef,
                        flags: tcp::ACK,
                        vlan,
                        opts: SynOptionSet {
                            timestamps: ts,
                            ..SynOptionSet::default()
                        },
                        ..syn(c, sv)
                    };
                    let (ret, out, v) = compare(&mut e, &x, NOW, &frame(&s));
                    match action {
                        InvalidAckAction::Drop => assert_eq!(ret, XDP_DROP),
                        InvalidAckAction::Rst => {
                            assert_eq!((ret, v), (XDP_TX, Verdict::Reply));
                            let r = tcp_of(&out);
                            assert_eq!((r.tcp.flags, r.tcp.seq), (tcp::RST, 0xdead_beef));
                        }
                    }
                }
            }
        }
        // RST for no flow, FIN alone, SYN+FIN: dropped like the engine does.
        for flags in [tcp::RST, tcp::FIN, tcp::SYN | tcp::FIN, tcp::SYN | tcp::ACK] {
            let s = Seg {
                flags,
                ack: 1,
                ..syn("198.18.0.1", "198.18.0.2")
            };
            let (ret, _, _) = compare(&mut e, &x, NOW, &frame(&s));
            assert_eq!(ret, XDP_DROP, "flags {flags:#x}");
        }
    }
}

#[test]
fn rst_budgets_are_the_engines() {
    let budget = |rst_per_second| {
        let cfg = EngineConfig {
            protected: vec![
                "198.18.0.2:8080".parse().unwrap(),
                "[2001:db8::2]:8080".parse().unwrap(),
            ],
            syncookies: SyncookieMode::Always,
            rst_per_second,
            ..EngineConfig::default()
        };
        let e = Engine::new(cfg, CookieSecret::from_bytes(SECRET));
        load(&e, NOW)
    };
    let ack_from = |client: &'static str| Seg {
        seq: 1,
        ack: 2,
        flags: tcp::ACK,
        opts: SynOptionSet::default(),
        ..syn(
            client,
            if client.contains(':') {
                "2001:db8::2"
            } else {
                "198.18.0.2"
            },
        )
    };
    let txs = |x: &XdpFastPath, s: &Seg, n: usize| {
        (0..n).filter(|_| run(x, &frame(s)).0 == XDP_TX).count() as u32
    };
    // The global budget: this second's draw, as the engine draws it.
    let x = budget(5);
    let allowed = send_budget::allowance(&SECRET, send_budget::TAG_RST, 5, NOW / 1000);
    assert_eq!(txs(&x, &ack_from("198.18.0.1"), 8), allowed);
    let t = x.counter_totals();
    assert_eq!(
        t[maps::counter::DROP_RST_BUDGET as usize],
        u64::from(8 - allowed)
    );
    assert_eq!(t[maps::counter::COOKIES_FAILED as usize], 8);
    // Per source: one address's ACKs leave another's answers alone.
    let x = budget(1000);
    let per_source = send_budget::RST_PER_SOURCE_PER_SECOND;
    assert_eq!(txs(&x, &ack_from("198.18.1.66"), 30), per_source);
    assert_eq!(txs(&x, &ack_from("198.18.0.1"), 1), 1);
    assert_eq!(txs(&x, &ack_from("2001:db8::66"), 30), per_source);
}

/// Cookie slots are on the wall clock, everything else on the engine's
/// monotonic clock, in the program as in the engine: with an engine clock
/// of 90 s since boot and the wall clock at NOW, the program's SYN-ACK is
/// the engine's byte for byte (TSval from the engine clock), its ISN the
/// one an engine at NOW mints, and it validates in the engine.
#[test]
fn cookie_slots_follow_the_wall_clock_in_the_program_too() {
    const BOOT: u64 = 90_000;
    for (c, sv) in [("198.18.0.1", "198.18.0.2"), ("2001:db8::1", "2001:db8::2")] {
        for with_ts in [false, true] {
            let mut s = syn(c, sv);
            if !with_ts {
                s.opts.timestamps = None;
            }
            let mut e = engine(SyncookieMode::Always, InvalidAckAction::Rst);
            e.set_wall_clock(BOOT, NOW);
            let x = load(&e, BOOT);
            let (ret, synack, v) = compare(&mut e, &x, BOOT, &frame(&s));
            assert_eq!((ret, v), (XDP_TX, Verdict::Reply), "{c} ts={with_ts}");
            let mut at_now = engine(SyncookieMode::Always, InvalidAckAction::Rst);
            let mut f = frame(&s);
            assert_eq!(at_now.handle(NOW, Port::Client, &mut f), Verdict::Reply);
            assert_eq!(
                tcp_of(&synack).tcp.seq,
                tcp_of(&f).tcp.seq,
                "{c} ts={with_ts}"
            );
            let ack = ack_for(&s, &synack, 0);
            assert_eq!(
                e.handle(BOOT + 1_000, Port::Client, &mut ack.clone()),
                Verdict::Absorbed,
                "{c} ts={with_ts}"
            );
        }
    }
}

#[test]
fn cookies_cross_validate_and_the_program_tracks_what_it_passes() {
    for (c, sv) in [("198.18.0.1", "198.18.0.2"), ("2001:db8::1", "2001:db8::2")] {
        for with_ts in [false, true] {
            let mut s = syn(c, sv);
            if !with_ts {
                s.opts.timestamps = None;
            }
            // XDP mints, the engine validates (one slot later too).
            let mut e = engine(SyncookieMode::Always, InvalidAckAction::Rst);
            let mut x = load(&e, NOW);
            let (ret, synack) = run(&x, &frame(&s));
            assert_eq!(ret, XDP_TX);
            let ack = ack_for(&s, &synack, 0);
            let later = NOW + 64_000;
            x.publish_params(&e, later).unwrap();
            let (ret, _, v) = compare(&mut e, &x, later, &ack);
            assert_eq!((ret, v), (XDP_PASS, Verdict::Absorbed), "{c} ts={with_ts}");
            let key = key_of(&s);
            assert_eq!(x.tracked_entry(&key).unwrap().origin, maps::ORIGIN_XDP);
            // The race: the client's next segment (SEQ past ISN + 1, no
            // valid cookie) reaches XDP before the engine published the flow.
            let data = ack_for(&s, &synack, 100);
            assert_eq!(run(&x, &data).0, XDP_PASS, "second segment must pass");
            // The engine confirms it at the batch end.
            x.sync(&mut e, later);
            assert_eq!(x.tracked_entry(&key).unwrap().origin, maps::ORIGIN_ENGINE);

            // The engine mints, XDP validates (passes, not drop/RST).
            let mut e2 = engine(SyncookieMode::Always, InvalidAckAction::Rst);
            let x2 = load(&e2, NOW);
            let mut f = frame(&s);
            assert_eq!(e2.handle(NOW, Port::Client, &mut f), Verdict::Reply);
            let ack2 = ack_for(&s, &f, 0);
            assert_eq!(run(&x2, &ack2).0, XDP_PASS);
            // Two slots later the cookie is dead in both.
            let mut e3 = engine(SyncookieMode::Always, InvalidAckAction::Drop);
            let mut x3 = load(&e3, NOW);
            x3.publish_params(&e3, NOW + 128_000).unwrap();
            let (ret, _, v) = compare(&mut e3, &x3, NOW + 128_000, &ack2);
            assert_eq!(
                (ret, v),
                (
                    XDP_DROP,
                    Verdict::Drop(synguard::engine::DropReason::InvalidCookie)
                )
            );
        }
    }
}

/// A key rotated on the engine is the program's too, on the engine's
/// schedule: the new key mints in both; a cookie the old key minted
/// validates in both for the rest of its slots (it goes up, the engine
/// takes it) and is dropped by both after; a key the secret file names as
/// the second is accepted by both.
#[test]
fn a_rotated_key_is_the_programs_too() {
    const NEW_SECRET: [u8; 16] = *b"synguard-xdp-new";
    let rotated = NOW + 10_000;
    // One engine per check: each takes the ACK as a new flow.
    let rotated_engine = |also_accepted: Option<[u8; 16]>| {
        let mut e = engine(SyncookieMode::Always, InvalidAckAction::Drop);
        let keys = CookieKeys {
            minting: CookieSecret::from_bytes(NEW_SECRET),
            also_accepted: also_accepted.map(CookieSecret::from_bytes),
        };
        assert!(e.set_cookie_keys(rotated, keys));
        e
    };
    for with_ts in [false, true] {
        let mut s = syn("198.18.0.1", "198.18.0.2");
        if !with_ts {
            s.opts.timestamps = None;
        }
        let before = engine(SyncookieMode::Always, InvalidAckAction::Drop);
        let (ret, old_synack) = run(&load(&before, NOW), &frame(&s));
        assert_eq!(ret, XDP_TX);
        let old_ack = ack_for(&s, &old_synack, 0);

        let mut e = rotated_engine(None);
        let x = load(&e, rotated);
        let (ret, new_synack, _) = compare(&mut e, &x, rotated, &frame(&s));
        assert_eq!(ret, XDP_TX, "ts={with_ts}");
        assert_ne!(
            tcp_of(&new_synack).tcp.seq,
            tcp_of(&old_synack).tcp.seq,
            "minted with the new key"
        );
        // Late in the slot after the rotation's (the program's clock runs
        // on from `at` while the test runs: 500 ms of margin), and the
        // first millisecond after it (NOW is a slot boundary).
        for (at, want) in [
            (rotated, (XDP_PASS, Verdict::Absorbed)),
            (NOW + 127_500, (XDP_PASS, Verdict::Absorbed)),
            (
                NOW + 128_000,
                (
                    XDP_DROP,
                    Verdict::Drop(synguard::engine::DropReason::InvalidCookie),
                ),
            ),
        ] {
            let mut e = rotated_engine(None);
            let mut x = load(&e, rotated);
            x.publish_params(&e, at).unwrap();
            let (ret, _, v) = compare(&mut e, &x, at, &old_ack);
            assert_eq!(
                (ret, v),
                want,
                "old cookie at +{} ms ts={with_ts}",
                at - NOW
            );
        }
        // An instance still minting the old key, with the new one named
        // second in its file, takes the new key's cookie.
        let mut lagging = engine(SyncookieMode::Always, InvalidAckAction::Drop);
        assert!(lagging.set_cookie_keys(
            rotated,
            CookieKeys {
                minting: CookieSecret::from_bytes(SECRET),
                also_accepted: Some(CookieSecret::from_bytes(NEW_SECRET)),
            }
        ));
        let x = load(&lagging, rotated);
        let new_ack = ack_for(&s, &new_synack, 0);
        let (ret, _, v) = compare(&mut lagging, &x, rotated, &new_ack);
        assert_eq!((ret, v), (XDP_PASS, Verdict::Absorbed), "ts={with_ts}");
    }
}

#[test]
fn program_made_entries_are_removed_when_the_engine_never_confirms() {
    let mut e = engine(SyncookieMode::Always, InvalidAckAction::Rst);
    let mut x = load(&e, NOW);
    let s = syn("198.18.0.1", "198.18.0.2");
    let (_, synack) = run(&x, &frame(&s));
    let ack = ack_for(&s, &synack, 0);
    assert_eq!(run(&x, &ack).0, XDP_PASS);
    let key = key_of(&s);
    // The engine never sees that ACK (lost between XDP and AF_PACKET).
    x.sync(&mut e, NOW);
    assert!(
        x.tracked_entry(&key).is_some(),
        "kept within the grace time"
    );
    x.sync(
        &mut e,
        NOW + synguard::engine::fast_path::XDP_TRACKED_GRACE_MS,
    );
    assert!(x.tracked_entry(&key).is_none(), "removed at its deadline");
}

#[test]
fn queued_handshakes_and_tracked_tuples_go_to_the_engine() {
    let mut e = engine(SyncookieMode::Auto, InvalidAckAction::Rst);
    let mut x = load(&e, NOW);
    let s = syn("198.18.0.1", "198.18.0.2");
    let mut f = frame(&s);
    assert_eq!(e.handle(NOW, Port::Client, &mut f), Verdict::Reply);
    x.sync(&mut e, NOW);
    let key = key_of(&s);
    assert_eq!(x.tracked_entry(&key).unwrap().origin, maps::ORIGIN_ENGINE);
    // Retransmitted SYN of the queued entry: to the engine, even in cookie mode.
    let mut e_always = engine(SyncookieMode::Always, InvalidAckAction::Rst);
    x.publish_params(&e_always, NOW).unwrap();
    assert_eq!(run(&x, &frame(&s)).0, XDP_PASS);
    let _ = &mut e_always;
    x.publish_params(&e, NOW).unwrap();
    // The queued client whose third ACK was lost: SEQ past ISN + 1.
    let late = ack_for(&s, &f, 500);
    let (ret, _, v) = compare(&mut e, &x, NOW + 3000, &late);
    assert_eq!((ret, v), (XDP_PASS, Verdict::Absorbed));
    x.sync(&mut e, NOW + 3000);
    assert_eq!(
        x.tracked_entry(&key).unwrap().origin,
        maps::ORIGIN_ENGINE,
        "now a flow"
    );
}

#[test]
fn a_stale_parameter_entry_passes_everything_up() {
    let mut e = engine(SyncookieMode::Always, InvalidAckAction::Drop);
    let mut x = load(&e, NOW);
    let old = synguard::io::clock::monotonic_ns() - STALE_AFTER_NS - 1_000_000;
    x.publish_params_at(&e, NOW, old).unwrap();
    let (ret, _, v) = compare(&mut e, &x, NOW, &frame(&syn("198.18.0.1", "198.18.0.2")));
    assert_eq!((ret, v), (XDP_PASS, Verdict::Reply));
    let forged = Seg {
        seq: 1,
        ack: 2,
        flags: tcp::ACK,
        opts: SynOptionSet::default(),
        ..syn("198.18.0.1", "198.18.0.2")
    };
    assert_eq!(run(&x, &frame(&forged)).0, XDP_PASS);
    assert!(x.counter_totals()[maps::counter::STALE as usize] >= 2);
}

thread_local! {
    static SHARED: std::cell::RefCell<Option<XdpFastPath>> = const { std::cell::RefCell::new(None) };
    static CASE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random edits and truncations of valid SYNs and ACKs: the program
    /// never disagrees with the engine and never emits a frame the Rust
    /// parser rejects.
    #[test]
    fn random_frames_never_disagree(
        v6 in any::<bool>(), vlan in any::<bool>(), is_ack in any::<bool>(),
        edits in proptest::collection::vec((0usize..120, any::<u8>()), 0..4),
        cut in proptest::option::of(0usize..120),
        mss in proptest::option::of(any::<u16>()), ws in proptest::option::of(any::<u8>()),
        sack in any::<bool>(), ts in proptest::option::of((any::<u32>(), any::<u32>())),
        flags in any::<u8>(), rst in any::<bool>(),
    ) {
        // Each case from its own client address: the program, loaded once,
        // keeps its RST counts per source (a fresh engine each case does not).
        let n = CASE.with(|c| { c.set(c.get() + 1); c.get() });
        let c: &'static str = if v6 {
            Box::leak(format!("2001:db8::1:{n:x}").into_boxed_str())
        } else {
            Box::leak(format!("198.18.{}.{}", 8 + n / 250, 1 + n % 250).into_boxed_str())
        };
        let sv = if v6 { "2001:db8::2" } else { "198.18.0.2" };
        let s = Seg {
            vlan,
            flags: if is_ack { tcp::ACK } else { flags },
            ack: if is_ack { 77 } else { 0 },
            opts: SynOptionSet { mss, wscale: ws, sack_permitted: sack, timestamps: ts },
            ..syn(c, sv)
        };
        let mut f = frame(&s);
        for (at, b) in edits {
            if at < f.len() { f[at] = b; }
        }
        if let Some(cut) = cut { f.truncate(cut.max(14)); }
        let action = if rst { InvalidAckAction::Rst } else { InvalidAckAction::Drop };
        let mut e = engine(SyncookieMode::Always, action);
        // One loaded program for all cases (verifying it takes ~0.5 s).
        SHARED.with(|cell| {
            let mut slot = cell.borrow_mut();
            let x = slot.get_or_insert_with(|| load(&e, NOW));
            x.publish_params(&e, NOW).unwrap();
            compare(&mut e, x, NOW, &f);
        });
    }
}

/// A service whose backend is down: the program leaves its SYNs to the
/// engine, which bridges them to the server (src/engine/pass_through.rs).
#[test]
fn syns_of_a_service_whose_backend_is_down_go_up() {
    let cfg = EngineConfig {
        protected: vec!["198.18.0.2:8080".parse().unwrap()],
        syncookies: SyncookieMode::Always,
        backend_down_after: 1,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(cfg, CookieSecret::from_bytes(SECRET));
    e.enable_fast_path();
    let mut x = load(&e, NOW);
    let s = syn("198.18.0.1", "198.18.0.2");
    assert_eq!(run(&x, &frame(&s)).0, XDP_TX, "up: answered in XDP");
    // One refused backend handshake: SYN, cookie ACK, the server's RST.
    let mut f = frame(&s);
    assert_eq!(e.handle(NOW, Port::Client, &mut f), Verdict::Reply);
    let mut ack = ack_for(&s, &f, 0);
    assert_eq!(e.handle(NOW + 1, Port::Client, &mut ack), Verdict::Absorbed);
    let rst = Seg {
        client: "198.18.0.2",
        server: "198.18.0.1",
        cport: 8080,
        sport: 40000,
        seq: 0,
        ack: s.seq + 1,
        flags: tcp::RST | tcp::ACK,
        opts: SynOptionSet::default(),
        ..s
    };
    assert_eq!(
        e.handle(NOW + 2, Port::Server, &mut frame(&rst)),
        Verdict::Absorbed
    );
    x.sync(&mut e, NOW + 2);
    let next = Seg { cport: 40001, ..s };
    let (ret, _, v) = compare(&mut e, &x, NOW + 3, &frame(&next));
    assert_eq!(
        (ret, v),
        (XDP_PASS, Verdict::Forward),
        "down: up to the engine, bridged"
    );
}

#[test]
fn a_service_removed_by_reload_is_no_longer_answered_in_xdp() {
    let mut e = engine(SyncookieMode::Always, InvalidAckAction::Rst);
    let mut x = load(&e, NOW);
    let v6_syn = frame(&syn("2001:db8::1", "2001:db8::2"));
    assert_eq!(run(&x, &v6_syn).0, XDP_TX, "protected: answered in XDP");
    let mut cfg = e.config().clone();
    cfg.protected.retain(|s| s.is_ipv4());
    e.reconfigure(NOW, cfg);
    x.publish_params(&e, NOW).unwrap();
    assert_eq!(
        run(&x, &v6_syn).0,
        XDP_PASS,
        "no longer protected: up to the engine, which bridges it"
    );
    let v4_syn = frame(&syn("198.18.0.1", "198.18.0.2"));
    assert_eq!(run(&x, &v4_syn).0, XDP_TX, "the service kept");
}
