//! The gateway as the client of the backend connection in SYN-SENT (RFC
//! 9293 3.10.7.3): an unacceptable ACK (the server still holds the 4-tuple
//! in TIME_WAIT) gets a RST and the SYN again at once; RST only with an
//! acceptable ACK; a SYN without ACK is a simultaneous open; anything else
//! is dropped.

use super::*;

fn server_segment(s: Host, c: Host, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    segment(s, c, seq, ack, flags, 29200, &[], payload)
}

#[test]
fn unacceptable_ack_from_time_wait_gets_rst_then_the_syn_again_at_once() {
    for (c, s) in [(client_v4(), server_v4()), (client_v6(), server_v6())] {
        let mut e = engine();
        let (cookie, backend_syn) = pending(&mut e, c, s);
        // A server in TIME_WAIT answers a SYN it does not accept with an ACK
        // of its old connection's sequence space.
        let old_rcv_nxt = CLIENT_ISN.wrapping_add(5_000_000);
        let mut tw_ack = server_segment(s, c, 0x0abc_0000, old_rcv_nxt, tcp::ACK, &[]);
        assert_eq!(
            e.handle(T0 + 2, Port::Server, &mut tw_ack),
            Verdict::Absorbed
        );
        let out: Vec<_> = e.drain_emitted().collect();
        assert_eq!(out.len(), 2, "RST, then the SYN again");
        assert!(out.iter().all(|o| o.port == Port::Server));
        let rst = view(&out[0].frame);
        assert_eq!(rst.tcp.flags, tcp::RST);
        assert_eq!(rst.tcp.seq, old_rcv_nxt, "<SEQ=SEG.ACK><CTL=RST>");
        assert_eq!(
            (rst.ip.src, rst.ip.dst),
            (c.ip, s.ip),
            "in the client's name"
        );
        assert_eq!(&out[0].frame[..6], &SERVER_MAC);
        assert_eq!(out[1].frame, backend_syn, "the same SYN, resent at once");
        assert_eq!(Counters::get(&e.counters().rst_sent), 1);
        assert_eq!(Counters::get(&e.counters().backend_syn_retransmits), 1);

        // TIME_WAIT freed, the server answers the SYN: the handshake ends
        // normally and the client's held ACK is released.
        let mut synack = server_segment(s, c, SERVER_ISN, CLIENT_ISN + 1, tcp::SYN | tcp::ACK, &[]);
        assert_eq!(
            e.handle(T0 + 3, Port::Server, &mut synack),
            Verdict::Absorbed
        );
        let released: Vec<_> = e.drain_emitted().collect();
        assert_eq!(released.len(), 1);
        let ack = view(&released[0].frame);
        assert_eq!((ack.tcp.seq, ack.tcp.ack), (CLIENT_ISN + 1, SERVER_ISN + 1));
        let key = FlowKey::from_client_segment(&ack);
        assert_eq!(e.flow_state(&key), Some(TcpState::Established));
        let _ = cookie;
    }
}

#[test]
fn unacceptable_acks_resend_the_syn_only_within_the_retries() {
    let (c, s) = (client_v4(), server_v4());
    let mut e = engine_with(EngineConfig {
        backend_syn_retries: 2,
        ..config()
    });
    pending(&mut e, c, s);
    let mut emitted = Vec::new();
    for i in 0..4 {
        let mut tw_ack = server_segment(s, c, 1, CLIENT_ISN + 100, tcp::ACK, &[]);
        e.handle(T0 + 2 + i, Port::Server, &mut tw_ack);
        emitted.push(e.drain_emitted().count());
    }
    // Each answer is a RST; the SYN goes again twice (the retries), then
    // the timer gives up as before.
    assert_eq!(emitted, [2, 2, 1, 1]);
    e.handle_timeout(T0 + 60_000);
    let out: Vec<_> = e.drain_emitted().collect();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].port, Port::Client, "the client is reset");
    assert_eq!(view(&out[0].frame).tcp.flags, tcp::RST | tcp::ACK);
}

#[test]
fn rst_counts_only_with_an_acceptable_ack() {
    let (c, s) = (client_v4(), server_v4());
    let mut e = engine();
    pending(&mut e, c, s);
    for (flags, ack) in [(tcp::RST, 0), (tcp::RST | tcp::ACK, CLIENT_ISN + 9)] {
        let mut rst = server_segment(s, c, 0, ack, flags, &[]);
        assert_eq!(
            e.handle(T0 + 2, Port::Server, &mut rst),
            Verdict::Drop(DropReason::UnexpectedSegment),
            "{flags:#x}"
        );
        assert_eq!(e.drain_emitted().count(), 0, "no RST answers a RST");
    }
    let mut refused = server_segment(s, c, 0, CLIENT_ISN + 1, tcp::RST | tcp::ACK, &[]);
    assert_eq!(
        e.handle(T0 + 3, Port::Server, &mut refused),
        Verdict::Absorbed
    );
    assert_eq!(Counters::get(&e.counters().backend_refused), 1);
    let out: Vec<_> = e.drain_emitted().collect();
    assert_eq!(out[0].port, Port::Client, "the client is reset");
}

#[test]
fn data_or_an_acceptable_ack_without_syn_is_dropped() {
    let (c, s) = (client_v4(), server_v4());
    let mut e = engine();
    pending(&mut e, c, s);
    let mut data_no_ack = server_segment(s, c, SERVER_ISN, 0, tcp::PSH, b"hello");
    assert_eq!(
        e.handle(T0 + 2, Port::Server, &mut data_no_ack),
        Verdict::Drop(DropReason::UnexpectedSegment)
    );
    let mut bare = server_segment(s, c, SERVER_ISN, CLIENT_ISN + 1, tcp::ACK, &[]);
    assert_eq!(
        e.handle(T0 + 2, Port::Server, &mut bare),
        Verdict::Drop(DropReason::UnexpectedSegment)
    );
    assert_eq!(e.drain_emitted().count(), 0);
}

#[test]
fn simultaneous_open_answers_syn_ack_and_completes_on_the_ack() {
    let (c, s) = (client_v4(), server_v4());
    let mut e = engine();
    let (cookie, backend_syn) = pending(&mut e, c, s);
    let mut their_syn = segment(s, c, SERVER_ISN, 0, tcp::SYN, 29200, &[2, 4, 5, 0x78], &[]);
    assert_eq!(
        e.handle(T0 + 2, Port::Server, &mut their_syn),
        Verdict::Absorbed
    );
    let out: Vec<_> = e.drain_emitted().collect();
    assert_eq!(out.len(), 1);
    let synack = view(&out[0].frame);
    let ours = view(&backend_syn);
    assert_eq!(synack.tcp.flags, tcp::SYN | tcp::ACK);
    assert_eq!(
        (synack.tcp.seq, synack.tcp.ack),
        (CLIENT_ISN, SERVER_ISN + 1),
        "<SEQ=ISS><ACK=RCV.NXT>"
    );
    assert_eq!(synack.options, ours.options, "our SYN's options");
    // The server's ACK of our SYN completes it.
    let mut ack = server_segment(s, c, SERVER_ISN + 1, CLIENT_ISN + 1, tcp::ACK, &[]);
    assert_eq!(e.handle(T0 + 3, Port::Server, &mut ack), Verdict::Absorbed);
    let released: Vec<_> = e.drain_emitted().collect();
    assert_eq!(released.len(), 1, "the client's held ACK");
    let held = view(&released[0].frame);
    assert_eq!(held.tcp.ack, SERVER_ISN + 1);
    // Translation works from then on.
    let mut data = server_segment(s, c, SERVER_ISN + 1, CLIENT_ISN + 1, tcp::ACK, b"hi");
    assert_eq!(e.handle(T0 + 4, Port::Server, &mut data), Verdict::Forward);
    assert_eq!(view(&data).tcp.seq, cookie.wrapping_add(1));
}
