//! A service whose backend refuses or ignores `backend_down_after`
//! handshakes in a row is down: its SYNs reach the server untouched (the
//! client sees its RST, or nothing), and the first SYN-ACK the server sends
//! back opens a flow that carries on unproxied and brings the service
//! back (`backend_health.rs`, `pass_through.rs`).

use super::*;

fn down_engine() -> Engine {
    engine_with(EngineConfig {
        backend_down_after: 3,
        ..config()
    })
}

fn client(port: u16) -> Host {
    Host {
        port,
        ..client_v4()
    }
}

/// SYN, cookie ACK and the backend's RST for the client on `port`.
fn refused(e: &mut Engine, port: u16, now: u64) {
    let (c, s) = (client(port), server_v4());
    let (synack, _) = syn(e, c, s, now, &[]);
    let mut ack = cookie_ack(c, s, &synack);
    assert_eq!(e.handle(now + 1, Port::Client, &mut ack), Verdict::Absorbed);
    let mut rst = segment(s, c, 0, CLIENT_ISN + 1, tcp::RST | tcp::ACK, 0, &[], &[]);
    assert_eq!(e.handle(now + 2, Port::Server, &mut rst), Verdict::Absorbed);
    e.drain_emitted().for_each(drop);
}

fn gauge(e: &Engine) -> i64 {
    e.counters()
        .backends_down
        .load(std::sync::atomic::Ordering::Relaxed)
}

fn syns_up(e: &Engine) -> bool {
    let p = e.fast_path_params(T0);
    p.services
        .iter()
        .find(|s| s.port == 8080 && s.addr == server_v4().ip)
        .unwrap()
        .syns_up
}

#[test]
fn refused_three_times_the_service_fails_as_without_the_gateway() {
    let mut e = down_engine();
    let s = server_v4();
    refused(&mut e, 41000, T0);
    refused(&mut e, 41001, T0 + 10);
    assert_eq!(gauge(&e), 0, "two in a row are not enough");
    refused(&mut e, 41002, T0 + 20);
    assert_eq!(gauge(&e), 1);
    assert!(syns_up(&e), "the XDP program must pass its SYNs up");
    assert_eq!(e.drain_backend_transitions().count(), 1);

    // A new SYN goes to the server byte for byte, and its RST back.
    let c = client(41003);
    let syn_frame = segment(
        c,
        s,
        CLIENT_ISN,
        0,
        tcp::SYN,
        64240,
        &linux_syn_options(9),
        &[],
    );
    let mut f = syn_frame.clone();
    assert_eq!(e.handle(T0 + 30, Port::Client, &mut f), Verdict::Forward);
    assert_eq!(f, syn_frame);
    let rst_frame = segment(s, c, 0, CLIENT_ISN + 1, tcp::RST | tcp::ACK, 0, &[], &[]);
    let mut r = rst_frame.clone();
    assert_eq!(e.handle(T0 + 31, Port::Server, &mut r), Verdict::Forward);
    assert_eq!(r, rst_frame);
    assert_eq!(e.flow_count(), 0);
    assert_eq!(gauge(&e), 1, "refused again: still down");
    assert_eq!(Counters::get(&e.counters().backend_down_syns), 1);
    // A server segment nobody asked for is still no flow's.
    let mut stray = segment(s, c, 5, 6, tcp::ACK, 0, &[], &[]);
    assert_eq!(
        e.handle(T0 + 32, Port::Server, &mut stray),
        Verdict::Drop(DropReason::NoFlow)
    );
}

#[test]
fn the_servers_first_synack_opens_an_unproxied_flow_and_brings_it_back() {
    let mut e = down_engine();
    let s = server_v4();
    for (i, port) in [42000, 42001, 42002].into_iter().enumerate() {
        refused(&mut e, port, T0 + 10 * i as u64);
    }
    let c = client(42003);
    let opts = linux_syn_options(100);
    let mut f = segment(c, s, CLIENT_ISN, 0, tcp::SYN, 64240, &opts, &[]);
    assert_eq!(e.handle(T0 + 100, Port::Client, &mut f), Verdict::Forward);
    // The server listens again: its own SYN-ACK, its own ISN and options.
    let server_opts = SynOptionSet {
        mss: Some(1460),
        sack_permitted: true,
        timestamps: Some((777, 100)),
        wscale: Some(8),
    }
    .encode();
    let synack = segment(
        s,
        c,
        SERVER_ISN,
        CLIENT_ISN + 1,
        tcp::SYN | tcp::ACK,
        65160,
        server_opts.as_slice(),
        &[],
    );
    let mut f = synack.clone();
    assert_eq!(e.handle(T0 + 101, Port::Server, &mut f), Verdict::Forward);
    assert_eq!(f, synack, "untouched");
    assert_eq!(gauge(&e), 0, "up again");
    assert!(!syns_up(&e));
    let key = FlowKey {
        client_port: 42003,
        ..key_v4()
    };
    assert_eq!(e.flow_state(&key), Some(TcpState::Established));
    // The rest of the connection passes as it is, both ways.
    let frames = [
        (
            Port::Client,
            segment(
                c,
                s,
                CLIENT_ISN + 1,
                SERVER_ISN + 1,
                tcp::ACK,
                502,
                &ts_option(101, 777),
                &[],
            ),
        ),
        (
            Port::Client,
            segment(
                c,
                s,
                CLIENT_ISN + 1,
                SERVER_ISN + 1,
                tcp::ACK | tcp::PSH,
                502,
                &ts_option(102, 777),
                b"GET /",
            ),
        ),
        (
            Port::Server,
            segment(
                s,
                c,
                SERVER_ISN + 1,
                CLIENT_ISN + 6,
                tcp::ACK | tcp::PSH,
                250,
                &ts_option(790, 102),
                b"200 OK",
            ),
        ),
    ];
    for (i, (port, frame)) in frames.into_iter().enumerate() {
        let mut f = frame.clone();
        assert_eq!(
            e.handle(T0 + 102 + i as u64, port, &mut f),
            Verdict::Forward,
            "{i}"
        );
        assert_eq!(f, frame, "frame {i} untouched");
    }
    // New clients are proxied again: a cookie SYN-ACK.
    let (again, _) = syn(&mut e, client(42004), s, T0 + 200, &[]);
    assert_eq!(again.tcp.flags, tcp::SYN | tcp::ACK);
    assert_eq!(Counters::get(&e.counters().backend_down_syns), 1);
}

#[test]
fn never_down_with_zero() {
    let mut e = engine_with(EngineConfig {
        backend_down_after: 0,
        ..config()
    });
    for i in 0..10 {
        refused(&mut e, 43000 + i, T0 + 10 * u64::from(i));
    }
    assert_eq!(gauge(&e), 0);
    let (synack, _) = syn(&mut e, client(43100), server_v4(), T0 + 500, &[]);
    assert_eq!(synack.tcp.flags, tcp::SYN | tcp::ACK);
}
