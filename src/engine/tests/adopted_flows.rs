//! A service added by a reload takes over the connections made while it
//! was not protected: their client segments pass untouched until the
//! server's first segment, which opens a flow with the identity
//! translation; from then on the flow is tracked as any other. Before, their
//! next ACK met the cookie check and was answered with a RST.

use super::*;

fn unprotected_engine() -> Engine {
    engine_with(EngineConfig {
        protected: vec![],
        established_idle_timeout_ms: 60_000,
        ..config()
    })
}

fn protect_server(e: &mut Engine, now: u64) {
    let cfg = EngineConfig {
        protected: config().protected,
        ..e.config().clone()
    };
    let report = e.reconfigure(now, cfg);
    assert_eq!(report.services_added.len(), 2);
}

#[test]
fn a_connection_older_than_the_protection_carries_on() {
    let mut e = unprotected_engine();
    let (c, s) = (client_v4(), server_v4());
    // The connection, bridged while 8080 was not protected.
    let mut f = segment(
        c,
        s,
        5000,
        9000,
        tcp::ACK | tcp::PSH,
        502,
        &ts_option(1, 2),
        b"before",
    );
    assert_eq!(e.handle(T0, Port::Client, &mut f), Verdict::Forward);
    protect_server(&mut e, T0 + 10);
    let frames = [
        // The client talks first: bridged, no flow yet.
        (
            Port::Client,
            segment(
                c,
                s,
                5006,
                9000,
                tcp::ACK | tcp::PSH,
                502,
                &ts_option(3, 2),
                b"after",
            ),
        ),
        // The server answers: taken over.
        (
            Port::Server,
            segment(
                s,
                c,
                9000,
                5011,
                tcp::ACK | tcp::PSH,
                300,
                &ts_option(4, 3),
                b"ok",
            ),
        ),
        (
            Port::Client,
            segment(c, s, 5011, 9002, tcp::ACK, 502, &ts_option(5, 4), &[]),
        ),
        (
            Port::Client,
            segment(
                c,
                s,
                5011,
                9002,
                tcp::FIN | tcp::ACK,
                502,
                &ts_option(6, 4),
                &[],
            ),
        ),
    ];
    for (i, (port, frame)) in frames.into_iter().enumerate() {
        let mut f = frame.clone();
        assert_eq!(
            e.handle(T0 + 20 + i as u64, port, &mut f),
            Verdict::Forward,
            "{i}"
        );
        assert_eq!(f, frame, "{i}: untouched");
        if i == 0 {
            assert_eq!(e.flow_count(), 0);
        }
    }
    assert_eq!(Counters::get(&e.counters().flows_adopted), 1);
    assert_eq!(
        e.flow_state(&key_v4()),
        Some(TcpState::CloseWait),
        "tracked as any flow"
    );
    assert_eq!(Counters::get(&e.counters().cookies_failed), 0);
    // New connections are proxied: a cookie SYN-ACK.
    let other = Host { port: 40001, ..c };
    let (synack, _) = syn(&mut e, other, s, T0 + 100, &[]);
    assert_eq!(synack.tcp.flags, tcp::SYN | tcp::ACK);
}

#[test]
fn only_for_an_idle_timeout_after_the_reload() {
    let mut e = unprotected_engine();
    let (c, s) = (client_v4(), server_v4());
    protect_server(&mut e, T0);
    let late = T0 + 60_000;
    let mut server_seg = segment(s, c, 9000, 5011, tcp::ACK, 300, &[], b"late");
    assert_eq!(
        e.handle(late, Port::Server, &mut server_seg),
        Verdict::Drop(DropReason::NoFlow)
    );
    let mut client_ack = segment(c, s, 5011, 9000, tcp::ACK, 502, &[], &[]);
    assert_eq!(
        e.handle(late, Port::Client, &mut client_ack),
        Verdict::Reply,
        "an unknown ACK: RST, as for any protected service"
    );
    assert_eq!(e.flow_count(), 0);
}

#[test]
fn a_forged_segment_is_not_taken_over() {
    let mut e = unprotected_engine();
    let (c, s) = (client_v4(), server_v4());
    protect_server(&mut e, T0);
    // A blind ACK is bridged; the server's answer is a RST: no flow.
    let mut forged = segment(c, s, 1, 2, tcp::ACK, 502, &[], &[]);
    assert_eq!(
        e.handle(T0 + 1, Port::Client, &mut forged),
        Verdict::Forward
    );
    let mut rst = segment(s, c, 2, 0, tcp::RST, 0, &[], &[]);
    assert_eq!(e.handle(T0 + 2, Port::Server, &mut rst), Verdict::Forward);
    assert_eq!(e.flow_count(), 0);
    assert_eq!(Counters::get(&e.counters().flows_adopted), 0);
}
