//! A new SYN on a 4-tuple the gateway still tracks as open (the client lost
//! the connection without a FIN or RST reaching anyone): RFC 5961 4.2
//! challenge ACK, the client's RST ends the flow on both sides, and its
//! next SYN gets a fresh handshake. Every state but TIME_WAIT, both
//! families, and the challenge ACK budget.

use super::*;

const NEW_ISN: u32 = 0x2000_0000;

/// The client's new SYN; returns the engine's verdict and the frame.
fn new_syn(e: &mut Engine, c: Host, s: Host, now: u64) -> (Verdict, Vec<u8>) {
    let mut f = segment(
        c,
        s,
        NEW_ISN,
        0,
        tcp::SYN,
        64240,
        &linux_syn_options(7),
        &[],
    );
    (e.handle(now, Port::Client, &mut f), f)
}

/// The rebooted client answers the challenge ACK as RFC 9293 3.10.7.1 says
/// a CLOSED (or SYN-SENT) endpoint does: <SEQ=SEG.ACK><CTL=RST>.
fn client_rst_for(challenge: &TcpView, c: Host, s: Host) -> Vec<u8> {
    segment(c, s, challenge.tcp.ack, 0, tcp::RST, 0, &[], &[])
}

fn key(c: Host, s: Host) -> FlowKey {
    FlowKey {
        client: c.ip,
        server: s.ip,
        client_port: c.port,
        server_port: s.port,
    }
}

#[test]
fn established_flow_challenge_rst_then_fresh_handshake_both_families() {
    for (c, s) in [(client_v4(), server_v4()), (client_v6(), server_v6())] {
        let mut e = engine();
        let (cookie, gw_tsval, _) = establish(&mut e, c, s, &[]);
        let (verdict, frame) = new_syn(&mut e, c, s, T0 + 1000);
        assert_eq!(verdict, Verdict::Reply, "{}", c.ip);
        let ch = view(&frame);
        assert_eq!(ch.tcp.flags, tcp::ACK, "a challenge ACK, not a SYN-ACK");
        assert_eq!((ch.ip.src, ch.ip.dst), (s.ip, c.ip));
        assert_eq!((ch.tcp.src_port, ch.tcp.dst_port), (s.port, c.port));
        // <SEQ=SND.NXT><ACK=RCV.NXT> as the client knows the connection.
        assert_eq!(ch.tcp.seq, cookie.wrapping_add(1));
        assert_eq!(ch.tcp.ack, CLIENT_ISN + 1);
        // The server's clock in the client's view, echoing the client.
        assert_eq!(ch.options.timestamps, Some((gw_tsval, 101)));
        assert_eq!(
            &frame[..6],
            &CLIENT_MAC,
            "addressed back to the client's MAC"
        );
        assert_eq!(Counters::get(&e.counters().challenge_acks), 1);
        assert_eq!(
            Counters::get(&e.counters().syn_received),
            1,
            "not a new SYN"
        );

        let mut rst = client_rst_for(&ch, c, s);
        assert_eq!(
            e.handle(T0 + 1001, Port::Client, &mut rst),
            Verdict::Forward,
            "the RST reaches the server, which drops its side too"
        );
        assert_eq!(view(&rst).tcp.seq, CLIENT_ISN + 1, "exact RCV.NXT");
        assert_eq!(e.flow_state(&key(c, s)), None);

        let (verdict, frame) = new_syn(&mut e, c, s, T0 + 2000);
        assert_eq!(verdict, Verdict::Reply);
        let synack = view(&frame);
        assert_eq!(synack.tcp.flags, tcp::SYN | tcp::ACK);
        assert_eq!(synack.tcp.ack, NEW_ISN + 1);
    }
}

#[test]
fn every_open_state_gets_a_challenge_ack_and_time_wait_a_fresh_handshake() {
    let (c, s) = (client_v4(), server_v4());
    // (state reached, how, expected challenge ACK number)
    let fin = |e: &mut Engine, from_client: bool, cookie: u32| {
        let mut f = if from_client {
            segment(
                c,
                s,
                CLIENT_ISN + 1,
                cookie.wrapping_add(1),
                tcp::FIN | tcp::ACK,
                502,
                &ts_option(102, 0),
                &[],
            )
        } else {
            segment(
                s,
                c,
                SERVER_ISN + 1,
                CLIENT_ISN + 1,
                tcp::FIN | tcp::ACK,
                509,
                &ts_option(5001, 101),
                &[],
            )
        };
        let port = if from_client {
            Port::Client
        } else {
            Port::Server
        };
        assert_eq!(e.handle(T0 + 20, port, &mut f), Verdict::Forward);
    };
    for (state, client_fin, server_fin, rcv_nxt) in [
        (TcpState::Established, false, false, CLIENT_ISN + 1),
        (TcpState::CloseWait, true, false, CLIENT_ISN + 2),
        (TcpState::FinWait1, false, true, CLIENT_ISN + 1),
        (TcpState::Closing, true, true, CLIENT_ISN + 2),
    ] {
        let mut e = engine();
        let (cookie, _, _) = establish(&mut e, c, s, &[]);
        if server_fin {
            fin(&mut e, false, cookie);
        }
        if client_fin {
            fin(&mut e, true, cookie);
        }
        assert_eq!(e.flow_state(&key(c, s)), Some(state));
        let (verdict, frame) = new_syn(&mut e, c, s, T0 + 1000);
        assert_eq!(verdict, Verdict::Reply, "{state:?}");
        let ch = view(&frame);
        assert_eq!(ch.tcp.flags, tcp::ACK, "{state:?}");
        assert_eq!(ch.tcp.ack, rcv_nxt, "{state:?}");
        let mut rst = client_rst_for(&ch, c, s);
        assert_eq!(
            e.handle(T0 + 1001, Port::Client, &mut rst),
            Verdict::Forward
        );
        assert_eq!(e.flow_state(&key(c, s)), None, "{state:?}");
    }

    // TIME_WAIT: the old connection is done (RFC 9293 3.10.7.4): a fresh
    // handshake at once.
    let mut e = engine();
    let (cookie, _, _) = establish(&mut e, c, s, &[]);
    close_client_first(&mut e, c, s, cookie);
    assert_eq!(e.flow_state(&key(c, s)), Some(TcpState::TimeWait));
    let (verdict, frame) = new_syn(&mut e, c, s, T0 + 1000);
    assert_eq!(verdict, Verdict::Reply);
    assert_eq!(view(&frame).tcp.flags, tcp::SYN | tcp::ACK);
}

#[test]
fn flow_waiting_for_its_backend_gets_a_challenge_ack_too() {
    let (c, s) = (client_v6(), server_v6());
    let mut e = engine();
    let (cookie, _) = pending(&mut e, c, s);
    assert_eq!(e.flow_state(&key(c, s)), Some(TcpState::BackendSynSent));
    let (verdict, frame) = new_syn(&mut e, c, s, T0 + 2);
    assert_eq!(verdict, Verdict::Reply);
    let ch = view(&frame);
    assert_eq!(
        (ch.tcp.flags, ch.tcp.seq, ch.tcp.ack),
        (tcp::ACK, cookie.wrapping_add(1), CLIENT_ISN + 1)
    );
    assert_eq!(ch.tcp.window, 65535, "the SYN-ACK's window");
    assert_eq!(
        ch.options.timestamps, None,
        "the client did not negotiate them"
    );
    let mut rst = client_rst_for(&ch, c, s);
    assert_eq!(e.handle(T0 + 3, Port::Client, &mut rst), Verdict::Forward);
    assert_eq!(e.flow_state(&key(c, s)), None);
}

#[test]
fn challenge_acks_are_rate_limited_per_flow_and_in_all() {
    let (c, s) = (client_v4(), server_v4());
    let other = Host {
        port: 40001,
        ..client_v4()
    };
    // A global budget of 1 draws exactly 1 each second (send_budget.rs).
    let mut e = engine_with(EngineConfig {
        challenge_ack_per_second: 1,
        ..config()
    });
    establish(&mut e, c, s, &[]);
    establish(&mut e, other, s, &[]);
    let t = T0 + 1000;
    assert_eq!(new_syn(&mut e, c, s, t).0, Verdict::Reply);
    let budget = Verdict::Drop(DropReason::ChallengeAckBudget);
    assert_eq!(
        new_syn(&mut e, other, s, t + 1).0,
        budget,
        "this second's one is spent"
    );
    assert_eq!(new_syn(&mut e, other, s, t + 1000).0, Verdict::Reply);
    // One per flow per 500 ms (tcp_invalid_ratelimit), whatever the global.
    e.challenge_budget.set_rate(1000);
    assert_eq!(new_syn(&mut e, c, s, t + 2000).0, Verdict::Reply);
    assert_eq!(new_syn(&mut e, c, s, t + 2499).0, budget);
    assert_eq!(new_syn(&mut e, c, s, t + 2500).0, Verdict::Reply);
    assert_eq!(Counters::get(&e.counters().challenge_acks), 4);
    assert_eq!(e.counters().dropped(DropReason::ChallengeAckBudget), 2);
    // A blind attacker's SYNs change nothing: the flow is still there.
    assert_eq!(e.flow_state(&key(c, s)), Some(TcpState::Established));
}
