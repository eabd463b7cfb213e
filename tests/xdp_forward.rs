//! The XDP program's established-flow forwarding against the engine's
//! translation (src/engine/established.rs), without a network: a flow is
//! set up through the engine's handshake, published into the program's
//! maps, and then every segment runs through the program
//! (BPF_PROG_TEST_RUN, each port's program) and
//! through a second engine that went through the same handshake. Where the
//! program redirects, its bytes must be the engine's and the progress it
//! recorded the engine's flow fields; where it passes, the frame must be
//! untouched. Needs root (CAP_BPF, CAP_NET_ADMIN); fails, never skips.

use std::net::IpAddr;

use aya::programs::{TestRun, TestRunOptions};
use proptest::prelude::*;

use synguard::cookie::CookieSecret;
use synguard::engine::forward::{forward_entry, FlowProgress, ForwardEntry, FORWARD_AFTER_MS};
use synguard::engine::{Engine, EngineConfig, FlowKey, Port, SyncookieMode, TcpState, Verdict};
use synguard::io::clock::monotonic_ns;
use synguard::io::xdp::maps::{counter, SgFlow};
use synguard::io::xdp::XdpFastPath;
use synguard::wire::tcp::{self, TcpSegmentSpec};
use synguard::wire::tcp_options::{SynOptionSet, KIND_NOP};
use synguard::wire::{parse_frame, write_tcp_frame, ParsedFrame, TcpView};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;
const NOW: u64 = 1_700_000_000_000;
const SECRET: [u8; 16] = *b"synguard-xdp-fwd";
/// Both redirect targets are `lo`: nothing is attached and nothing is sent
/// (test runs only).
const LO: u32 = 1;
/// After the flow was published (`FORWARD_AFTER_MS` after it opened).
const LATER: u64 = NOW + 1_000;
const CLIENT_ISN: u32 = 0x1000_0000;
const SERVER_ISN: u32 = 0xfff0_0000; // wraps soon: sequence arithmetic
const CLIENT_TSVAL: u32 = 0x0102_0304;
const SERVER_TSVAL: u32 = 0x7000_0000;

/// One flow set-up: family, VLAN, options both sides negotiate.
#[derive(Debug, Clone, Copy)]
struct Setup {
    v6: bool,
    vlan: bool,
    timestamps: bool,
    sack: bool,
    client_wscale: Option<u8>,
    server_wscale: Option<u8>,
    /// 40000 but where a test needs many connections of one set-up.
    client_port: u16,
}

impl Setup {
    fn addrs(&self) -> (IpAddr, IpAddr) {
        if self.v6 {
            (
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
            )
        } else {
            ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap())
        }
    }

    fn key(&self) -> FlowKey {
        let (client, server) = self.addrs();
        FlowKey {
            client,
            server,
            client_port: self.client_port,
            server_port: 8080,
        }
    }
}

/// A segment of the flow, in the sender's own sequence space.
#[derive(Debug, Clone)]
struct Seg {
    from_server: bool,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    ts: Option<(u32, u32)>,
    sack: Vec<(u32, u32)>,
    /// NOPs before the options, to put them at odd offsets too.
    lead_nops: usize,
    payload: usize,
}

fn options(s: &Seg) -> Vec<u8> {
    let mut o = vec![KIND_NOP; s.lead_nops];
    if let Some((val, ecr)) = s.ts {
        o.extend_from_slice(&[8, 10]);
        o.extend_from_slice(&val.to_be_bytes());
        o.extend_from_slice(&ecr.to_be_bytes());
    }
    if !s.sack.is_empty() {
        o.extend_from_slice(&[5, 2 + 8 * s.sack.len() as u8]);
        for (l, r) in &s.sack {
            o.extend_from_slice(&l.to_be_bytes());
            o.extend_from_slice(&r.to_be_bytes());
        }
    }
    while !o.len().is_multiple_of(4) {
        o.push(0); // EOL
    }
    assert!(o.len() <= 40, "options too long: {s:?}");
    o
}

fn l2(vlan: bool) -> Vec<u8> {
    let mut l2 = vec![2, 0, 0, 0, 0, 0xaa, 2, 0, 0, 0, 0, 0xbb, 0, 0];
    if vlan {
        l2.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
    }
    l2
}

fn frame_of(setup: &Setup, s: &Seg) -> Vec<u8> {
    let (client, server) = setup.addrs();
    let (src, dst, sport, dport) = if s.from_server {
        (server, client, 8080, setup.client_port)
    } else {
        (client, server, setup.client_port, 8080)
    };
    let opts = options(s);
    let payload: Vec<u8> = (0..s.payload).map(|i| (i * 7) as u8).collect();
    let spec = TcpSegmentSpec {
        src_port: sport,
        dst_port: dport,
        seq: s.seq,
        ack: s.ack,
        flags: s.flags,
        window: s.window,
        options: &opts,
        payload: &payload,
    };
    let mut out = Vec::new();
    write_tcp_frame(&mut out, &l2(setup.vlan), src, dst, 64, &spec);
    out
}

fn view(f: &[u8]) -> TcpView {
    match parse_frame(f).unwrap() {
        ParsedFrame::Tcp(v) => v,
        other => panic!("not TCP: {other:?}"),
    }
}

fn new_engine() -> Engine {
    let cfg = EngineConfig {
        protected: vec![
            "198.18.0.2:8080".parse().unwrap(),
            "[2001:db8::2]:8080".parse().unwrap(),
        ],
        syncookies: SyncookieMode::Always,
        ..EngineConfig::default()
    };
    Engine::new(cfg, CookieSecret::from_bytes(SECRET))
}

/// What the handshake left: the numbers later segments need.
#[derive(Debug, Clone, Copy)]
struct Flow {
    /// Our SYN-ACK's ISN (the cookie) and TSval, as the client knows them.
    cookie: u32,
    gateway_tsval: u32,
}

/// Drive `e` through the whole handshake of `setup` at `NOW`.
fn handshake(e: &mut Engine, setup: &Setup) -> Flow {
    handshake_with(e, setup, setup.sack)
}

/// As [`handshake`], the server's SYN-ACK offering SACK only when
/// `server_sack` (false: it declines what the client was promised).
fn handshake_with(e: &mut Engine, setup: &Setup, server_sack: bool) -> Flow {
    let h = handshake_frames(e, setup, server_sack);
    e.handle(NOW, Port::Server, &mut h.synack.clone());
    e.drain_emitted().for_each(drop);
    h.flow
}

/// A handshake's frames as the engine `e` handles them, up to the server's
/// SYN-ACK (built, not yet handled).
struct HandshakeFrames {
    flow: Flow,
    syn: Vec<u8>,
    /// The client's third ACK (a valid cookie) and the backend SYN the
    /// engine sent for it.
    ack: Vec<u8>,
    backend_syn: Vec<u8>,
    synack: Vec<u8>,
}

fn handshake_frames(e: &mut Engine, setup: &Setup, server_sack: bool) -> HandshakeFrames {
    let (client, server) = setup.addrs();
    let syn_opts = SynOptionSet {
        mss: Some(1460),
        sack_permitted: setup.sack,
        timestamps: setup.timestamps.then_some((CLIENT_TSVAL, 0)),
        wscale: setup.client_wscale,
    }
    .encode();
    let mut f = Vec::new();
    write_tcp_frame(
        &mut f,
        &l2(setup.vlan),
        client,
        server,
        64,
        &TcpSegmentSpec {
            src_port: setup.client_port,
            dst_port: 8080,
            seq: CLIENT_ISN,
            ack: 0,
            flags: tcp::SYN,
            window: 64240,
            options: syn_opts.as_slice(),
            payload: &[],
        },
    );
    let syn = f.clone();
    assert_eq!(e.handle(NOW, Port::Client, &mut f), Verdict::Reply);
    let synack = view(&f);
    let flow = Flow {
        cookie: synack.tcp.seq,
        gateway_tsval: synack.options.timestamps.map_or(0, |(v, _)| v),
    };
    let ack = Seg {
        from_server: false,
        seq: CLIENT_ISN + 1,
        ack: flow.cookie.wrapping_add(1),
        flags: tcp::ACK,
        window: 502,
        ts: setup
            .timestamps
            .then_some((CLIENT_TSVAL + 1, flow.gateway_tsval)),
        sack: vec![],
        lead_nops: if setup.timestamps { 2 } else { 0 },
        payload: 0,
    };
    let ack = frame_of(setup, &ack);
    e.handle(NOW, Port::Client, &mut ack.clone());
    let emitted: Vec<_> = e.drain_emitted().collect();
    let backend_syn = emitted
        .iter()
        .find(|m| m.port == Port::Server)
        .expect("backend SYN")
        .frame
        .clone();
    let bsyn = view(&backend_syn);
    let synack_opts = SynOptionSet {
        mss: Some(1460),
        sack_permitted: server_sack,
        timestamps: setup
            .timestamps
            .then_some((SERVER_TSVAL, bsyn.options.timestamps.map_or(0, |(v, _)| v))),
        wscale: setup.server_wscale,
    }
    .encode();
    let mut synack = Vec::new();
    write_tcp_frame(
        &mut synack,
        &l2(setup.vlan),
        server,
        client,
        64,
        &TcpSegmentSpec {
            src_port: 8080,
            dst_port: setup.client_port,
            seq: SERVER_ISN,
            ack: bsyn.tcp.seq.wrapping_add(1),
            flags: tcp::SYN | tcp::ACK,
            window: 65160,
            options: synack_opts.as_slice(),
            payload: &[],
        },
    );
    HandshakeFrames {
        flow,
        syn,
        ack,
        backend_syn,
        synack,
    }
}

/// One port's program on frame `f` (BPF_PROG_TEST_RUN): its verdict and the
/// frame as it left.
fn test_run(x: &XdpFastPath, f: &[u8], from_server: bool) -> (u32, Vec<u8>) {
    let prog = if from_server {
        x.server_program()
    } else {
        x.program()
    };
    let mut out = vec![0u8; f.len() + 512];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(f),
            data_out: Some(&mut out[..]),
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

/// The program with `setup`'s flow published, and the reference engine.
struct Twin {
    setup: Setup,
    flow: Flow,
    x: XdpFastPath,
    /// Published the flow; kept so its progress reader stays meaningful.
    publisher: Engine,
    reference: Engine,
}

impl Twin {
    fn new(setup: Setup) -> Twin {
        let mut publisher = new_engine();
        let mut reference = new_engine();
        let flow = handshake(&mut publisher, &setup);
        let flow2 = handshake(&mut reference, &setup);
        assert_eq!(
            (flow.cookie, flow.gateway_tsval),
            (flow2.cookie, flow2.gateway_tsval)
        );
        let mut x = XdpFastPath::load(4096).expect("loading bpf/synguard_xdp.o (run as root)");
        x.set_ports(LO, LO).unwrap();
        publisher.set_forward_progress_source(Box::new(x.progress_reader().unwrap()));
        publisher.enable_fast_path();
        // Not before the flow is FORWARD_AFTER_MS old.
        x.sync(&mut publisher, NOW);
        assert!(
            x.flow_entry(&setup.key()).is_none(),
            "a young flow stays in the engine"
        );
        x.sync(&mut publisher, NOW + FORWARD_AFTER_MS);
        // The program's clock pinned at NOW: a stamp ahead of the monotonic
        // clock reads as age 0 (the program clamps), so last-seen times are
        // the engine's literal NOW.
        x.publish_params_at(&publisher, NOW, monotonic_ns() + 3_600_000_000_000)
            .unwrap();
        Twin {
            setup,
            flow,
            x,
            publisher,
            reference,
        }
    }

    fn key(&self) -> FlowKey {
        self.setup.key()
    }

    /// Server-space sequence number `n` bytes after the server's ISN + 1.
    fn server_seq(&self, n: u32) -> u32 {
        SERVER_ISN.wrapping_add(1).wrapping_add(n)
    }

    /// Client-space sequence number `n` bytes after the client's ISN + 1.
    fn client_seq(&self, n: u32) -> u32 {
        CLIENT_ISN.wrapping_add(1).wrapping_add(n)
    }

    /// The client's ACK number for `n` server bytes (client space: cookie).
    fn client_ack(&self, n: u32) -> u32 {
        self.flow.cookie.wrapping_add(1).wrapping_add(n)
    }

    fn run(&self, f: &[u8], from_server: bool) -> (u32, Vec<u8>) {
        test_run(&self.x, f, from_server)
    }

    fn reference_progress(&self) -> FlowProgress {
        let flows = self.reference.export_flows();
        let (_, f) = flows
            .iter()
            .find(|(k, _)| *k == self.key())
            .expect("reference flow");
        FlowProgress::of(f)
    }

    /// Run `s` through both; returns the program's verdict. Redirect: same
    /// bytes as the engine's Forward and the same progress afterwards.
    /// Pass: the frame untouched (the engine then decides).
    fn check(&mut self, s: &Seg) -> u32 {
        let f = frame_of(&self.setup, s);
        let (ret, out) = self.run(&f, s.from_server);
        let port = if s.from_server {
            Port::Server
        } else {
            Port::Client
        };
        match ret {
            XDP_REDIRECT => {
                let mut ef = f.clone();
                let v = self.reference.handle(NOW, port, &mut ef);
                assert_eq!(
                    v,
                    Verdict::Forward,
                    "program forwarded, engine said {v:?}: {s:?}"
                );
                assert_eq!(
                    out, ef,
                    "bytes differ from the engine's: {s:?} {:?}",
                    self.setup
                );
                let entry = self.x.flow_entry(&self.key()).expect("entry");
                assert_eq!(
                    entry.progress(),
                    self.reference_progress(),
                    "progress differs: {s:?} {:?}",
                    self.setup
                );
            }
            XDP_PASS => assert_eq!(out, f, "a passed frame must be untouched: {s:?}"),
            other => panic!("program returned {other} for {s:?}"),
        }
        ret
    }

    fn client_data(&self, sent: u32, acked: u32, payload: usize) -> Seg {
        Seg {
            from_server: false,
            seq: self.client_seq(sent),
            ack: self.client_ack(acked),
            flags: tcp::ACK | tcp::PSH,
            window: 1024,
            ts: self
                .setup
                .timestamps
                .then_some((CLIENT_TSVAL + 10 + sent, self.flow.gateway_tsval + 5)),
            sack: vec![],
            lead_nops: if self.setup.timestamps { 2 } else { 0 },
            payload,
        }
    }

    fn server_data(&self, sent: u32, acked: u32, payload: usize) -> Seg {
        Seg {
            from_server: true,
            seq: self.server_seq(sent),
            ack: self.client_seq(acked),
            flags: tcp::ACK | tcp::PSH,
            window: 3000,
            ts: self
                .setup
                .timestamps
                .then_some((SERVER_TSVAL + 10 + sent, CLIENT_TSVAL + 10)),
            sack: vec![],
            lead_nops: if self.setup.timestamps { 2 } else { 0 },
            payload,
        }
    }
}

fn setups() -> Vec<Setup> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        for vlan in [false, true] {
            for timestamps in [false, true] {
                for (client_wscale, server_wscale) in [
                    (Some(7), Some(7)),
                    (Some(7), Some(9)),
                    (Some(9), Some(2)),
                    (None, None),
                ] {
                    out.push(Setup {
                        v6,
                        vlan,
                        timestamps,
                        sack: true,
                        client_wscale,
                        server_wscale,
                        client_port: 40000,
                    });
                }
            }
        }
    }
    out
}

#[test]
fn forwarded_segments_are_the_engines_byte_for_byte() {
    for setup in setups() {
        let mut t = Twin::new(setup);
        assert!(
            t.x.flow_entry(&t.key()).is_some(),
            "an established flow with nothing to correct is published: {setup:?}"
        );
        // Request, response, ACKs both ways, SACK blocks.
        let data = t.client_data(0, 0, 300);
        assert_eq!(t.check(&data), XDP_REDIRECT, "{setup:?}");
        let resp = t.server_data(0, 300, 1200);
        assert_eq!(t.check(&resp), XDP_REDIRECT, "{setup:?}");
        let resp2 = t.server_data(1200, 300, 1200);
        assert_eq!(t.check(&resp2), XDP_REDIRECT, "{setup:?}");
        let mut sack_ack = t.client_data(300, 1200, 0);
        sack_ack.flags = tcp::ACK;
        sack_ack.sack = vec![(t.client_ack(2400), t.client_ack(3600))];
        if !setup.timestamps {
            sack_ack.sack.push((t.client_ack(4800), t.client_ack(6000)));
        }
        assert_eq!(t.check(&sack_ack), XDP_REDIRECT, "{setup:?}");
        let mut server_ack = t.server_data(2400, 300, 0);
        server_ack.flags = tcp::ACK;
        server_ack.window = 0; // a zero window stays zero
        assert_eq!(t.check(&server_ack), XDP_REDIRECT, "{setup:?}");
        // Odd option offsets: one NOP shifts TSval and SACK blocks.
        let mut odd = t.client_data(300, 2400, 10);
        odd.lead_nops = 1;
        odd.sack = vec![(t.client_ack(3000), t.client_ack(3100))];
        assert_eq!(t.check(&odd), XDP_REDIRECT, "{setup:?}");
        let mut odd_server = t.server_data(2400, 310, 20);
        odd_server.lead_nops = 3;
        assert_eq!(t.check(&odd_server), XDP_REDIRECT, "{setup:?}");
        // Timestamps last in a full 40-byte options area (TSval at option
        // offset 32, the largest there is), both directions.
        for mut last in [t.client_data(310, 2420, 5), t.server_data(2420, 315, 5)] {
            last.lead_nops = 30;
            last.sack.clear();
            assert_eq!(t.check(&last), XDP_REDIRECT, "{setup:?}");
        }
        // Pure ACKs ahead of the stream (after a lost segment, or a lost
        // FIN: SEQ = FIN + 1) move neither side's next sequence number.
        let before = t.x.flow_entry(&t.key()).expect("entry").progress();
        for mut ahead in [t.client_data(400, 2420, 0), t.server_data(2500, 315, 0)] {
            ahead.flags = tcp::ACK;
            assert_eq!(t.check(&ahead), XDP_REDIRECT, "{setup:?}");
        }
        let after = t.x.flow_entry(&t.key()).expect("entry").progress();
        assert_eq!(
            (after.client_next, after.server_next),
            (before.client_next, before.server_next),
            "{setup:?}"
        );
    }
}

#[test]
fn state_changes_and_implausible_segments_go_up_untouched() {
    let setup = setups()[5];
    let mut t = Twin::new(setup);
    let base = t.client_data(0, 0, 10);
    // The client's FIN goes up (the engine decides whether the server would
    // take it, src/engine/established.rs); the server's is forwarded (see
    // the_servers_fin_is_forwarded_and_the_engine_follows).
    let client_fin = Seg {
        flags: tcp::ACK | tcp::FIN,
        ..base.clone()
    };
    assert_eq!(t.check(&client_fin), XDP_PASS);
    for flags in [
        tcp::RST,
        tcp::ACK | tcp::RST,
        tcp::SYN,
        tcp::PSH, // no ACK
    ] {
        let s = Seg {
            flags,
            ..base.clone()
        };
        assert_eq!(t.check(&s), XDP_PASS, "flags {flags:#x}");
        let s = Seg {
            flags,
            ..t.server_data(0, 0, 10)
        };
        assert_eq!(t.check(&s), XDP_PASS, "server flags {flags:#x}");
    }
    // Outside the widened window (RFC 9293 3.10.7.4 as the engine tests).
    let far = Seg {
        seq: t.client_seq(3_000_000),
        ..base.clone()
    };
    assert_eq!(t.check(&far), XDP_PASS);
    let far_server = t.server_data(3_000_000, 0, 10);
    assert_eq!(t.check(&far_server), XDP_PASS);
    // An unpublished tuple (another client port) is not forwarded either.
    let mut other = frame_of(&t.setup, &base);
    let tcp_at = view(&other).tcp_offset();
    other[tcp_at + 1] ^= 1; // source port 40000 -> 40001 (checksum aside)
    assert_ne!(t.run(&other, false).0, XDP_REDIRECT);
}

#[test]
fn flows_the_program_cannot_translate_stay_in_the_engine() {
    // The server declines SACK the client was promised: SACK blocks must
    // become NOPs, which only the engine does.
    let setup = setups()[0];
    let mut publisher = new_engine();
    handshake_with(&mut publisher, &setup, false);
    let mut x = XdpFastPath::load(4096).unwrap();
    x.set_ports(LO, LO).unwrap();
    publisher.set_forward_progress_source(Box::new(x.progress_reader().unwrap()));
    publisher.enable_fast_path();
    x.sync(&mut publisher, NOW + FORWARD_AFTER_MS);
    assert!(publisher.is_tracked(&setup.key()));
    assert!(x.flow_entry(&setup.key()).is_none());
    assert!(!publisher.is_forwarded(&setup.key()));
}

#[test]
fn the_engine_reads_progress_back_before_a_close_and_unpublishes() {
    let setup = setups()[4];
    let mut t = Twin::new(setup);
    // 100 KB from the client through the program only: the publishing
    // engine never sees them, so its own client_next is 100 KB behind,
    // beyond one window.
    let mut sent = 0;
    for _ in 0..100 {
        let s = t.client_data(sent, 0, 1000);
        assert_eq!(t.check(&s), XDP_REDIRECT);
        sent += 1000;
    }
    // The client's FIN goes up; the engine must take it as in window.
    let mut fin = t.client_data(sent, 0, 0);
    fin.flags = tcp::ACK | tcp::FIN;
    let f = frame_of(&t.setup, &fin);
    assert_eq!(t.run(&f, false).0, XDP_PASS);
    let mut ef = f.clone();
    assert_eq!(
        t.publisher.handle(LATER, Port::Client, &mut ef),
        Verdict::Forward,
        "the FIN is in window once the program's progress is read"
    );
    // The state changed: the entry goes at the batch end.
    t.x.sync(&mut t.publisher, LATER);
    assert!(t.x.flow_entry(&t.key()).is_none());
    assert!(!t.publisher.is_forwarded(&t.key()));
    assert!(t.publisher.is_tracked(&t.key()), "the flow itself stays");
    // Later data goes up to the engine now.
    let late = t.server_data(0, sent + 1, 10);
    assert_eq!(t.run(&frame_of(&t.setup, &late), true).0, XDP_PASS);
}

/// The server's FIN is forwarded by the program right behind its data, so a
/// client that closes once it has its data closes second, as through a
/// bridge (taken up to the engine, the FIN came late enough that such a
/// client closed first and sat in TIME_WAIT). The engine takes the close
/// from the program's record when the client's answer comes up.
#[test]
fn the_servers_fin_is_forwarded_and_the_engine_follows() {
    for setup in setups() {
        let mut t = Twin::new(setup);
        assert_eq!(t.check(&t.server_data(0, 0, 100)), XDP_REDIRECT);
        let fin = Seg {
            flags: tcp::ACK | tcp::FIN,
            ..t.server_data(100, 0, 0)
        };
        assert_eq!(t.check(&fin), XDP_REDIRECT, "{setup:?}");
        // The client's FIN, acknowledging the 100 bytes and the FIN.
        let mut cfin = t.client_data(0, 101, 0);
        cfin.flags = tcp::ACK | tcp::FIN;
        let f = frame_of(&t.setup, &cfin);
        assert_eq!(t.run(&f, false).0, XDP_PASS);
        let mut ef = f.clone();
        assert_eq!(
            t.publisher.handle(LATER, Port::Client, &mut ef),
            Verdict::Forward
        );
        assert_eq!(
            t.publisher.flow_state(&t.key()),
            Some(TcpState::TimeWait),
            "{setup:?}"
        );
    }
}

/// Pins the calling thread to `cpu` (BPF_PROG_TEST_RUN runs the program on
/// the CPU of the thread that asks).
fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it,
    // and sched_setaffinity reads exactly its size.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        r,
        0,
        "sched_setaffinity(CPU {cpu}): {}",
        std::io::Error::last_os_error()
    );
}

/// One port's program on `frames`, from a thread pinned to `cpu`.
fn run_on_cpu(
    x: &XdpFastPath,
    cpu: usize,
    frames: &[Vec<u8>],
    from_server: bool,
) -> Vec<(u32, Vec<u8>)> {
    pin_to_cpu(cpu);
    frames.iter().map(|f| test_run(x, f, from_server)).collect()
}

/// design.md section 8: the program runs on every CPU that receives, and the
/// two directions of one flow may be handled on two CPUs at the same moment.
/// The client's segments run on CPU 0 while the server's run on CPU 1 (every
/// setup, many rounds, the two threads released together): each is redirected
/// with the engine's bytes, the flow's entry ends exactly where the engine ends
/// after the same segments (each progress field has one writer direction, so
/// the interleaving does not matter), and the per-CPU counters add up to every
/// segment.
#[test]
fn both_directions_on_two_cpus_at_once_lose_nothing() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cpus >= 2,
        "this test needs two CPUs, the machine has {cpus}"
    );
    const ROUNDS: u32 = 2000;
    const PAYLOAD: u32 = 100;
    for setup in setups() {
        let mut t = Twin::new(setup);
        let before = t.x.counter_totals();
        let segs = |server: bool| -> Vec<Seg> {
            (0..ROUNDS)
                .map(|i| {
                    if server {
                        t.server_data(i * PAYLOAD, 0, PAYLOAD as usize)
                    } else {
                        t.client_data(i * PAYLOAD, 0, PAYLOAD as usize)
                    }
                })
                .collect()
        };
        let (client_segs, server_segs) = (segs(false), segs(true));
        let frames =
            |v: &[Seg]| -> Vec<Vec<u8>> { v.iter().map(|s| frame_of(&setup, s)).collect() };
        let (client_frames, server_frames) = (frames(&client_segs), frames(&server_segs));
        let barrier = std::sync::Barrier::new(2);
        let x = &t.x;
        let (client_out, server_out) = std::thread::scope(|sc| {
            let (b, cf, sf) = (&barrier, &client_frames, &server_frames);
            let a = sc.spawn(move || {
                b.wait();
                run_on_cpu(x, 0, cf, false)
            });
            let s = sc.spawn(move || {
                b.wait();
                run_on_cpu(x, 1, sf, true)
            });
            (a.join().unwrap(), s.join().unwrap())
        });
        // The engine, the same segments one direction after the other.
        for (frames, outs, port) in [
            (&client_frames, &client_out, Port::Client),
            (&server_frames, &server_out, Port::Server),
        ] {
            for (k, (f, (ret, out))) in frames.iter().zip(outs).enumerate() {
                assert_eq!(*ret, XDP_REDIRECT, "{setup:?} {port:?} segment {k}");
                let mut ef = f.clone();
                assert_eq!(t.reference.handle(NOW, port, &mut ef), Verdict::Forward);
                assert_eq!(*out, ef, "{setup:?} {port:?} segment {k}: bytes");
            }
        }
        let entry = t.x.flow_entry(&t.key()).expect("entry");
        assert_eq!(entry.progress(), t.reference_progress(), "{setup:?}");
        let after = t.x.counter_totals();
        let d = |i: u32| after[i as usize] - before[i as usize];
        assert_eq!(
            (
                d(counter::RX),
                d(counter::FWD_TO_SERVER),
                d(counter::FWD_TO_CLIENT),
                d(counter::PASS)
            ),
            (
                2 * u64::from(ROUNDS),
                u64::from(ROUNDS),
                u64::from(ROUNDS),
                0
            ),
            "{setup:?}: counters (rx, to server, to client, pass)"
        );
    }
}

#[test]
fn an_idle_timer_reads_the_last_seen_time_first() {
    let setup = setups()[0];
    let mut t = Twin::new(setup);
    let idle_ms = EngineConfig::default().established_idle_timeout_ms;
    // The program saw traffic at NOW + idle - 1 s; the engine last at NOW.
    let later = NOW + idle_ms - 1_000;
    t.x.publish_params_at(&t.publisher, later, monotonic_ns() + 3_600_000_000_000)
        .unwrap();
    let s = t.client_data(0, 0, 10);
    assert_eq!(t.run(&frame_of(&t.setup, &s), false).0, XDP_REDIRECT);
    t.publisher.handle_timeout(NOW + idle_ms + 1);
    assert!(
        t.publisher.is_tracked(&t.key()),
        "the flow was not idle: the program forwarded a segment"
    );
    t.publisher.drain_emitted().for_each(drop);
    t.publisher.handle_timeout(later + idle_ms + 1);
    assert!(
        !t.publisher.is_tracked(&t.key()),
        "idle since then: expired"
    );
    // The expiry RST toward the server is exact after the 10 bytes only the
    // program forwarded: the engine read its progress first.
    let rst = t
        .publisher
        .drain_emitted()
        .find(|e| e.port == Port::Server)
        .expect("an expiry RST toward the server");
    let v = view(&rst.frame);
    assert_eq!(
        (v.tcp.flags, v.tcp.seq),
        (tcp::RST | tcp::ACK, t.client_seq(10))
    );
}

/// The program with the server port to redirect to and its clock pinned at
/// NOW, and the engine it reports to (fast path on, progress read back from
/// the program's map).
fn program_and_engine() -> (XdpFastPath, Engine) {
    let mut e = new_engine();
    let mut x = XdpFastPath::load(4096).expect("loading bpf/synguard_xdp.o (run as root)");
    x.set_ports(LO, LO).unwrap();
    e.set_forward_progress_source(Box::new(x.progress_reader().unwrap()));
    e.enable_fast_path();
    x.publish_params_at(&e, NOW, monotonic_ns() + 3_600_000_000_000)
        .unwrap();
    (x, e)
}

fn engine_flow(e: &Engine, key: &FlowKey) -> synguard::engine::flow::Flow {
    e.export_flows()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, f)| f)
        .expect("the engine's flow")
}

/// The engine's replays of the program's reports (replayed, refused,
/// ring full), as `synguard_xdp_events_total` counts them.
fn replays(e: &Engine) -> [u64; 3] {
    let c = e.counters();
    std::array::from_fn(|i| c.xdp_events[i].load(std::sync::atomic::Ordering::Relaxed))
}

/// The program answers `h`'s SYN and sends its ACK on as the engine's
/// backend SYN, byte for byte; the engine replays the report.
fn start_in_program(x: &mut XdpFastPath, e: &mut Engine, setup: &Setup, h: &HandshakeFrames) {
    assert_eq!(
        test_run(x, &h.syn, false).0,
        XDP_TX,
        "{setup:?}: the SYN-ACK"
    );
    let (ret, out) = test_run(x, &h.ack, false);
    assert_eq!(ret, XDP_REDIRECT, "{setup:?}");
    assert_eq!(out, h.backend_syn, "{setup:?}: the backend SYN");
    x.sync(e, NOW);
}

/// The flow the program installed for `key` is the one `reference` would
/// publish.
fn assert_installed_as_in(x: &XdpFastPath, reference: &Engine, setup: &Setup) -> ForwardEntry {
    let key = setup.key();
    let want = forward_entry(&engine_flow(reference, &key)).expect("forwardable");
    assert_eq!(
        x.flow_entry(&key),
        Some(SgFlow::from_entry(&want)),
        "{setup:?}: the flow the program installed"
    );
    want
}

/// The client's request (`payload` bytes, `sent` after its ISN + 1) behind
/// its third ACK, before the server answered the backend SYN.
fn early_data(setup: &Setup, h: &HandshakeFrames, sent: u32, payload: usize) -> Vec<u8> {
    frame_of(
        setup,
        &Seg {
            from_server: false,
            seq: CLIENT_ISN + 1 + sent,
            ack: h.flow.cookie.wrapping_add(1),
            flags: tcp::ACK | tcp::PSH,
            window: 502,
            ts: setup
                .timestamps
                .then_some((CLIENT_TSVAL + 2, h.flow.gateway_tsval)),
            sack: vec![],
            lead_nops: if setup.timestamps { 2 } else { 0 },
            payload,
        },
    )
}

/// The whole handshake in the program (design.md section 8): the client's
/// cookie ACK leaves as the engine's backend SYN, the server's SYN-ACK as
/// the engine's translated ACK, byte for byte; the flow the program
/// installs is the one the engine would publish; the engine, replaying the
/// program's two reports, holds that same flow, forwarded by the program,
/// and sends nothing itself; the client's first data segment is forwarded
/// in the program at once.
#[test]
fn backend_handshakes_complete_in_the_program_as_in_the_engine() {
    for setup in setups() {
        let key = setup.key();
        let mut reference = new_engine();
        let h = handshake_frames(&mut reference, &setup, setup.sack);
        assert_eq!(
            reference.handle(NOW, Port::Server, &mut h.synack.clone()),
            Verdict::Absorbed
        );
        let released: Vec<_> = reference.drain_emitted().collect();
        assert_eq!(released.len(), 1, "{setup:?}: the ACK alone");

        let (mut x, mut e) = program_and_engine();
        start_in_program(&mut x, &mut e, &setup, &h);
        let (ret, out) = test_run(&x, &h.synack, true);
        assert_eq!(ret, XDP_REDIRECT, "{setup:?}");
        assert_eq!(out, released[0].frame, "{setup:?}: the released ACK");
        let want = assert_installed_as_in(&x, &reference, &setup);
        x.sync(&mut e, NOW);
        assert_eq!(
            e.drain_emitted().count(),
            0,
            "{setup:?}: nothing sent twice"
        );
        assert!(e.is_forwarded(&key), "{setup:?}");
        assert_eq!(
            forward_entry(&engine_flow(&e, &key)),
            Some(want),
            "{setup:?}: the engine's flow after the replays"
        );
        assert_eq!(replays(&e), [2, 0, 0], "{setup:?}");
        assert_eq!(x.counter_totals()[counter::BACKEND_ESTABLISHED as usize], 1);
        assert_eq!(
            test_run(&x, &early_data(&setup, &h, 0, 100), false).0,
            XDP_REDIRECT,
            "{setup:?}: data forwarded in the program from the first segment"
        );
    }
}

/// Early data in the program: the client's request right behind its ACK
/// is kept while the backend SYN is out (the frame dropped, the engine told)
/// and released by the server's SYN-ACK as the one segment that completes
/// the server's handshake, byte for byte the engine's data segment (the
/// engine sends the ACK before it); the flow the program installs and the
/// engine's after the three replays are the engine's own. A second data
/// segment goes up and the engine takes the handshake over; when the
/// SYN-ACK overtakes that, the program releases the first and the engine
/// sends the second.
#[test]
fn early_data_is_kept_in_the_program_and_released_by_the_synack() {
    for setup in setups() {
        let key = setup.key();
        let mut reference = new_engine();
        let h = handshake_frames(&mut reference, &setup, setup.sack);
        let data = early_data(&setup, &h, 0, 100);
        assert_eq!(
            reference.handle(NOW, Port::Client, &mut data.clone()),
            Verdict::Absorbed
        );
        reference.handle(NOW, Port::Server, &mut h.synack.clone());
        let released: Vec<_> = reference.drain_emitted().collect();
        assert_eq!(released.len(), 2, "{setup:?}: ACK and data");

        let (mut x, mut e) = program_and_engine();
        start_in_program(&mut x, &mut e, &setup, &h);
        assert_eq!(test_run(&x, &data, false).0, XDP_DROP, "{setup:?}: kept");
        x.sync(&mut e, NOW);
        let (ret, out) = test_run(&x, &h.synack, true);
        assert_eq!(ret, XDP_REDIRECT, "{setup:?}");
        assert_eq!(out, released[1].frame, "{setup:?}: the data, translated");
        let want = assert_installed_as_in(&x, &reference, &setup);
        x.sync(&mut e, NOW);
        assert_eq!(e.drain_emitted().count(), 0, "{setup:?}");
        assert_eq!(
            forward_entry(&engine_flow(&e, &key)),
            Some(want),
            "{setup:?}"
        );
        assert_eq!(replays(&e), [3, 0, 0], "{setup:?}");
        assert_eq!(x.counter_totals()[counter::EARLY_DATA as usize], 1);

        // A second segment, the take-over overtaken by the SYN-ACK.
        let mut reference = new_engine();
        let h = handshake_frames(&mut reference, &setup, setup.sack);
        let data = early_data(&setup, &h, 0, 100);
        let more = early_data(&setup, &h, 100, 50);
        for f in [&data, &more] {
            reference.handle(NOW, Port::Client, &mut f.clone());
        }
        reference.handle(NOW, Port::Server, &mut h.synack.clone());
        let released: Vec<_> = reference.drain_emitted().collect();
        assert_eq!(released.len(), 3, "{setup:?}");
        let (mut x, mut e) = program_and_engine();
        start_in_program(&mut x, &mut e, &setup, &h);
        assert_eq!(test_run(&x, &data, false).0, XDP_DROP, "{setup:?}");
        x.sync(&mut e, NOW);
        assert_eq!(
            test_run(&x, &more, false).0,
            XDP_PASS,
            "{setup:?}: one slot"
        );
        assert_eq!(
            e.handle(NOW, Port::Client, &mut more.clone()),
            Verdict::Absorbed
        );
        let (ret, out) = test_run(&x, &h.synack, true);
        assert_eq!((ret, &out), (XDP_REDIRECT, &released[1].frame), "{setup:?}");
        x.sync(&mut e, NOW);
        let sent: Vec<_> = e.drain_emitted().collect();
        assert_eq!(sent.len(), 1, "{setup:?}");
        assert_eq!(sent[0].frame, released[2].frame, "{setup:?}: the engine's");
        assert_eq!(replays(&e), [3, 0, 0], "{setup:?}");
    }
}

/// The two directions of a handshake on two CPUs at once: the client's
/// early data on CPU 0 while the server's SYN-ACK runs on CPU 1, the two
/// threads released together, many connections. However they interleave,
/// the data reaches the server exactly once: kept and released by the
/// SYN-ACK, forwarded by the program after the SYN-ACK completed the flow,
/// passed up and forwarded by the engine, or, when the SYN-ACK read the
/// entry before the data replaced it, sent by the engine from its replay;
/// and the engine refuses none of the program's reports.
#[test]
fn early_data_and_the_synack_on_two_cpus_at_once_deliver_the_data_once() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cpus >= 2,
        "this test needs two CPUs, the machine has {cpus}"
    );
    const ROUNDS: u16 = 300;
    for base in setups()
        .into_iter()
        .filter(|s| !s.vlan && s.client_wscale == Some(7))
    {
        let (mut x, mut e) = program_and_engine();
        let mut reference = new_engine();
        // (kept and released, forwarded by the program, up to the engine,
        // sent by the engine's replay)
        let mut ways = [0u32; 4];
        for round in 0..ROUNDS {
            let setup = Setup {
                client_port: 20000 + round,
                ..base
            };
            let h = handshake_frames(&mut reference, &setup, true);
            start_in_program(&mut x, &mut e, &setup, &h);
            let data = early_data(&setup, &h, 0, 100);
            let barrier = std::sync::Barrier::new(2);
            let xr = &x;
            let (client, server) = std::thread::scope(|sc| {
                let (b, d, sa) = (&barrier, &data, &h.synack);
                let c = sc.spawn(move || {
                    b.wait();
                    run_on_cpu(xr, 0, std::slice::from_ref(d), false)
                });
                let s = sc.spawn(move || {
                    b.wait();
                    run_on_cpu(xr, 1, std::slice::from_ref(sa), true)
                });
                (c.join().unwrap().remove(0), s.join().unwrap().remove(0))
            });
            assert_eq!(server.0, XDP_REDIRECT, "{setup:?}: the SYN-ACK");
            // The reference learns what the engine learns from the replay:
            // the server takes timestamps, so from the next round on both
            // give the backend the client's whole MSS (SG_SERVICE_TS_ACCEPTED).
            reference.handle(NOW, Port::Server, &mut h.synack.clone());
            reference.drain_emitted().for_each(drop);
            x.sync(&mut e, NOW);
            let mut delivered = 0;
            if view(&server.1).payload_len() > 0 {
                delivered += 1;
                ways[0] += 1;
            }
            match client.0 {
                XDP_DROP => {}
                XDP_REDIRECT => {
                    delivered += 1;
                    ways[1] += 1;
                }
                XDP_PASS => {
                    assert_eq!(
                        e.handle(NOW, Port::Client, &mut data.clone()),
                        Verdict::Forward,
                        "{setup:?}"
                    );
                    delivered += 1;
                    ways[2] += 1;
                }
                other => panic!("{setup:?}: the data got {other}"),
            }
            for m in e.drain_emitted() {
                if m.port == Port::Server && view(&m.frame).payload_len() > 0 {
                    delivered += 1;
                    ways[3] += 1;
                }
            }
            assert_eq!(delivered, 1, "{setup:?}: data delivered once");
            assert!(e.is_forwarded(&setup.key()), "{setup:?}");
        }
        assert_eq!(replays(&e)[1], 0, "{base:?}: nothing refused");
        eprintln!(
            "{base:?}: of {ROUNDS}, kept and released {}, forwarded by the program {}, up to the engine {}, sent by the engine's replay {}",
            ways[0], ways[1], ways[2], ways[3]
        );
    }
}

/// What the program cannot complete as the engine would goes up, and the
/// handshake is the engine's from then on: a server that declines an
/// option the client has (the engine corrects that flow's segments), a
/// client segment that came up before the server answered (the engine
/// holds it, and the SYN-ACK must release it too). When the server's
/// SYN-ACK reaches the program before the engine's take-over does, the
/// program sends the ACK and the engine, replaying, sends the held segment.
#[test]
fn handshakes_the_program_cannot_complete_go_to_the_engine() {
    for setup in setups().into_iter().filter(|s| !s.vlan) {
        let key = setup.key();

        // The server declines SACK.
        let (mut x, mut e) = program_and_engine();
        let h = handshake_frames(&mut new_engine(), &setup, false);
        start_in_program(&mut x, &mut e, &setup, &h);
        assert_eq!(test_run(&x, &h.synack, true), (XDP_PASS, h.synack.clone()));
        assert_eq!(
            e.handle(NOW, Port::Server, &mut h.synack.clone()),
            Verdict::Absorbed
        );
        assert_eq!(e.drain_emitted().count(), 1, "{setup:?}: the engine's ACK");
        assert!(x.flow_entry(&key).is_none(), "{setup:?}");
        assert_eq!(test_run(&x, &h.synack, true).0, XDP_PASS, "a repeat too");

        // Early data larger than the program keeps, taken over before the
        // server answered.
        let (mut x, mut e) = program_and_engine();
        let mut reference = new_engine();
        let h = handshake_frames(&mut reference, &setup, true);
        start_in_program(&mut x, &mut e, &setup, &h);
        let data = early_data(&setup, &h, 0, 400);
        assert_eq!(test_run(&x, &data, false).0, XDP_PASS, "{setup:?}");
        assert_eq!(
            e.handle(NOW, Port::Client, &mut data.clone()),
            Verdict::Absorbed
        );
        x.sync(&mut e, NOW);
        assert_eq!(test_run(&x, &h.synack, true).0, XDP_PASS, "{setup:?}");
        assert_eq!(
            e.handle(NOW, Port::Server, &mut h.synack.clone()),
            Verdict::Absorbed
        );
        assert_eq!(e.drain_emitted().count(), 2, "{setup:?}: ACK and data");

        // The same, the take-over overtaken by the SYN-ACK.
        let (mut x, mut e) = program_and_engine();
        let mut reference = new_engine();
        let h = handshake_frames(&mut reference, &setup, true);
        start_in_program(&mut x, &mut e, &setup, &h);
        assert_eq!(
            e.handle(NOW, Port::Client, &mut data.clone()),
            Verdict::Absorbed
        );
        assert_eq!(
            reference.handle(NOW, Port::Client, &mut data.clone()),
            Verdict::Absorbed
        );
        let (ret, out) = test_run(&x, &h.synack, true);
        assert_eq!(ret, XDP_REDIRECT, "{setup:?}");
        reference.handle(NOW, Port::Server, &mut h.synack.clone());
        let released: Vec<_> = reference.drain_emitted().collect();
        assert_eq!(released.len(), 2, "{setup:?}");
        assert_eq!(out, released[0].frame, "{setup:?}: the program's ACK");
        x.sync(&mut e, NOW);
        let sent: Vec<_> = e.drain_emitted().collect();
        assert_eq!(sent.len(), 1, "{setup:?}");
        assert_eq!(
            sent[0].frame, released[1].frame,
            "{setup:?}: the engine's data"
        );
        assert!(e.is_forwarded(&key), "{setup:?}");
        assert_eq!(
            engine_flow(&e, &key).client_next,
            engine_flow(&reference, &key).client_next,
            "{setup:?}: the data counted"
        );
        assert_eq!(replays(&e), [2, 0, 0], "{setup:?}");
    }
}

fn arb_seg() -> impl Strategy<Value = (usize, bool, i32, i32, u8, u16, bool, usize, usize, usize)> {
    (
        0..setups().len(),
        any::<bool>(),
        -140_000i32..140_000,
        -140_000i32..140_000,
        prop::sample::select(vec![
            tcp::ACK,
            tcp::ACK | tcp::PSH,
            tcp::ACK | tcp::URG,
            tcp::ACK | tcp::FIN,
            tcp::RST,
            tcp::PSH,
        ]),
        any::<u16>(),
        any::<bool>(),
        0usize..4,
        0usize..41,
        0usize..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Random segments of a published flow: redirected only as the engine
    /// forwards them, byte for byte, with the same progress.
    #[test]
    fn random_segments_agree_with_the_engine(
        (setup_i, from_server, dseq, dack, flags, window, ts, sack_n, nops, payload) in arb_seg()
    ) {
        let setup = setups()[setup_i];
        let mut t = Twin::new(setup);
        let sack_n = if setup.timestamps { sack_n.min(3) } else { sack_n };
        // Leading NOPs put the options anywhere the 40-byte area allows.
        let used = if ts && setup.timestamps { 10 } else { 0 }
            + if sack_n > 0 { 2 + 8 * sack_n } else { 0 };
        let nops = nops.min(40 - used);
        let (seq, ack) = if from_server {
            (t.server_seq(dseq as u32), t.client_seq(dack as u32))
        } else {
            (t.client_seq(dseq as u32), t.client_ack(dack as u32))
        };
        let sack_base = if from_server { t.client_seq(0) } else { t.client_ack(0) };
        let s = Seg {
            from_server,
            seq,
            ack,
            flags,
            window,
            ts: (ts && setup.timestamps).then_some((SERVER_TSVAL ^ window as u32, dack as u32)),
            sack: (0..sack_n)
                .map(|i| {
                    let l = sack_base.wrapping_add((dack as u32).wrapping_mul(i as u32 + 1));
                    (l, l.wrapping_add(1000))
                })
                .collect(),
            lead_nops: nops,
            payload,
        };
        let ret = t.check(&s);
        // Not vacuous: a plain segment within the narrowest window the
        // engine allows (64 KiB either way) is forwarded in the kernel.
        let plain = flags & tcp::ACK != 0 && flags & (tcp::FIN | tcp::RST) == 0;
        if plain && dseq.abs() <= 65_535 {
            prop_assert_eq!(ret, XDP_REDIRECT, "{:?}", s);
        }
    }
}

/// An IP frame carrying `payload` as `protocol` (v4 or v6 by `src`), with a
/// fixed L2 header (and a VLAN tag when asked).
fn ip_frame(src: &str, dst: &str, protocol: u8, payload: &[u8], vlan: bool) -> Vec<u8> {
    use synguard::wire::{ipv4, ipv6};
    let mut f = l2(vlan);
    let at = f.len() - 2;
    match (
        src.parse::<IpAddr>().unwrap(),
        dst.parse::<IpAddr>().unwrap(),
    ) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f[at..].copy_from_slice(&[0x08, 0x00]);
            ipv4::write_header(&mut f, s, d, protocol, payload.len(), 64);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f[at..].copy_from_slice(&[0x86, 0xdd]);
            ipv6::write_header(&mut f, s, d, protocol, payload.len(), 64);
        }
        _ => panic!("mixed families"),
    }
    f.extend_from_slice(payload);
    f
}

#[test]
fn traffic_for_no_protected_service_is_redirected_unchanged_as_the_engine_bridges_it() {
    let mut t = Twin::new(setups()[0]);
    let udp = [0x13, 0x88, 0x13, 0x89, 0, 12, 0, 0, b'p', b'i', b'n', b'g'];
    let mut arp = l2(false);
    let at = arp.len() - 2;
    arp[at..].copy_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0u8; 20]);
    let tcp_to = |port: u16, from_server: bool| {
        let (c, s): (IpAddr, IpAddr) =
            ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap());
        let (src, dst, sport, dport) = if from_server {
            (s, c, port, 40000)
        } else {
            (c, s, 40000, port)
        };
        let mut f = Vec::new();
        let spec = TcpSegmentSpec {
            src_port: sport,
            dst_port: dport,
            seq: 1,
            ack: 0,
            flags: tcp::SYN,
            window: 1000,
            options: &[],
            payload: &[],
        };
        write_tcp_frame(&mut f, &l2(false), src, dst, 64, &spec);
        f
    };
    let bridged = vec![
        ("ARP", arp.clone()),
        (
            "UDP v4",
            ip_frame("198.18.0.1", "198.18.0.2", 17, &udp, false),
        ),
        (
            "UDP v4 VLAN",
            ip_frame("198.18.0.1", "198.18.0.2", 17, &udp, true),
        ),
        (
            "UDP v6",
            ip_frame("2001:db8::1", "2001:db8::2", 17, &udp, false),
        ),
        (
            "GRE v4",
            ip_frame("198.18.0.1", "198.18.0.2", 47, &udp, false),
        ),
        ("TCP to an unprotected port", tcp_to(9999, false)),
    ];
    let mut fragment = ip_frame("198.18.0.1", "198.18.0.2", 17, &udp, false);
    fragment[14 + 6] = 0x20; // MF
    let mut hop_by_hop = ip_frame(
        "2001:db8::1",
        "2001:db8::2",
        0,
        &[17, 0, 1, 4, 0, 0, 0, 0],
        false,
    );
    hop_by_hop.extend_from_slice(&udp);
    let mut two_tags = ip_frame("198.18.0.1", "198.18.0.2", 17, &udp, true);
    two_tags.splice(12..12, [0x88, 0xa8, 0x00, 0x05]);
    let icmp_echo = [8, 0, 0xf7, 0xff, 0, 0, 0, 0];
    let up = vec![
        (
            "ICMP",
            ip_frame("198.18.0.1", "198.18.0.2", 1, &icmp_echo, false),
        ),
        (
            "ICMPv6",
            ip_frame("2001:db8::1", "2001:db8::2", 58, &icmp_echo, false),
        ),
        ("a fragment", fragment),
        ("an IPv6 extension header", hop_by_hop),
        ("two VLAN tags", two_tags),
        (
            "a truncated IPv4 header",
            ip_frame("198.18.0.1", "198.18.0.2", 17, &udp, false)[..24].to_vec(),
        ),
    ];
    for from_server in [false, true] {
        let port = if from_server {
            Port::Server
        } else {
            Port::Client
        };
        let mut cases = bridged.clone();
        if from_server {
            cases.pop();
            cases.push(("TCP from an unprotected port", tcp_to(9999, true)));
        }
        for (what, f) in cases {
            let (ret, out) = t.run(&f, from_server);
            assert_eq!(ret, XDP_REDIRECT, "{what} from_server={from_server}");
            assert_eq!(out, f, "{what}: redirected unchanged");
            let before = t
                .reference
                .counters()
                .bridged
                .load(std::sync::atomic::Ordering::Relaxed);
            let mut ef = f.clone();
            assert_eq!(
                t.reference.handle(NOW, port, &mut ef),
                Verdict::Forward,
                "{what}"
            );
            assert_eq!(ef, f);
            assert_eq!(
                t.reference
                    .counters()
                    .bridged
                    .load(std::sync::atomic::Ordering::Relaxed),
                before + 1,
                "the engine bridges {what} too"
            );
        }
        for (what, f) in &up {
            let (ret, out) = t.run(f, from_server);
            assert_eq!(ret, XDP_PASS, "{what} goes up (from_server={from_server})");
            assert_eq!(&out, f);
        }
    }
    // No redirect target: everything goes up.
    let mut lone = XdpFastPath::load(64).unwrap();
    let (ret, _) = {
        let mut out = vec![0u8; 128];
        let r = lone
            .program()
            .test_run(TestRunOptions {
                data_in: Some(&arp),
                data_out: Some(&mut out[..]),
                ..TestRunOptions::default()
            })
            .unwrap();
        (r.return_value, out)
    };
    assert_eq!(ret, XDP_PASS, "without a target port the engine bridges");
    lone.detach();
    let _ = &mut t.publisher;
}
