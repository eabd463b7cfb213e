//! A client FIN changes a flow's state only where the server takes it: in
//! order at the end of the client's stream (RFC 9293 3.10.7.4), or, after a
//! hole, once the server acknowledges exactly it. A blind FIN anywhere else
//! in the window is forwarded (the server decides what it is worth) and
//! moves the flow to no shorter timer.

use super::*;

const ESTABLISHED_MS: u64 = 60_000;
const CLOSE_WAIT_MS: u64 = 5_000;

fn fin_engine() -> Engine {
    engine_with(EngineConfig {
        established_idle_timeout_ms: ESTABLISHED_MS,
        close_wait_timeout_ms: CLOSE_WAIT_MS,
        ..config()
    })
}

fn client_seg(cookie: u32, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    segment(
        client_v4(),
        server_v4(),
        seq,
        cookie + 1,
        flags,
        502,
        &[],
        payload,
    )
}

fn server_ack(ack: u32, flags: u8) -> Vec<u8> {
    segment(
        server_v4(),
        client_v4(),
        SERVER_ISN + 1,
        ack,
        flags,
        100,
        &[],
        &[],
    )
}

fn state(e: &Engine) -> Option<TcpState> {
    e.flow_state(&key_v4())
}

#[test]
fn blind_fins_in_the_window_change_nothing() {
    let mut e = fin_engine();
    let (cookie, _, _) = establish(&mut e, client_v4(), server_v4(), &[]);
    let next = CLIENT_ISN + 1;
    let blind = [
        // Ahead of the stream, in the window: the server would queue it.
        (next + 1000, &b""[..]),
        (next + 30_000, &b"xyz"[..]),
        // Behind it: the server would take it for a duplicate.
        (next - 1000, &b""[..]),
        (next - 1, &b""[..]),
        (next - 10, &b"0123456789"[..]),
    ];
    for (i, (seq, payload)) in blind.into_iter().enumerate() {
        let mut f = client_seg(cookie, seq, tcp::FIN | tcp::ACK, payload);
        assert_eq!(
            e.handle(T0 + 100 + i as u64, Port::Client, &mut f),
            Verdict::Forward,
            "the server decides ({i})"
        );
        assert_eq!(state(&e), Some(TcpState::Established), "blind FIN {i}");
    }
    // The client's own data runs past the first blind FIN: it was never
    // the client's, so the server acknowledging exactly its end (a data
    // boundary) closes nothing.
    let mut data = client_seg(cookie, next, tcp::ACK | tcp::PSH, &[7; 1200]);
    assert_eq!(
        e.handle(T0 + 200, Port::Client, &mut data),
        Verdict::Forward
    );
    let mut ack = server_ack(next + 1001, tcp::ACK);
    assert_eq!(e.handle(T0 + 201, Port::Server, &mut ack), Verdict::Forward);
    assert_eq!(state(&e), Some(TcpState::Established));
    // And the flow lives by the established timeout, not CLOSE_WAIT's.
    e.handle_timeout(T0 + 201 + CLOSE_WAIT_MS + 1);
    assert_eq!(state(&e), Some(TcpState::Established));
}

#[test]
fn an_in_order_fin_closes_at_once_with_or_without_data() {
    for payload in [&b""[..], &b"bye"[..]] {
        let mut e = fin_engine();
        let (cookie, _, _) = establish(&mut e, client_v4(), server_v4(), &[]);
        let mut f = client_seg(cookie, CLIENT_ISN + 1, tcp::FIN | tcp::ACK, payload);
        assert_eq!(e.handle(T0 + 100, Port::Client, &mut f), Verdict::Forward);
        assert_eq!(state(&e), Some(TcpState::CloseWait), "{payload:?}");
        // Its retransmission changes nothing more.
        let mut again = client_seg(cookie, CLIENT_ISN + 1, tcp::FIN | tcp::ACK, payload);
        assert_eq!(
            e.handle(T0 + 300, Port::Client, &mut again),
            Verdict::Forward
        );
        assert_eq!(state(&e), Some(TcpState::CloseWait), "{payload:?}");
    }
}

/// The last data segment is lost between the client and the gateway (or
/// overtaken): the FIN comes first, after a hole, and closes the flow when
/// the server, having the retransmitted data, acknowledges it.
#[test]
fn a_fin_after_a_hole_closes_when_the_server_acknowledges_it() {
    let mut e = fin_engine();
    let (cookie, _, _) = establish(&mut e, client_v4(), server_v4(), &[]);
    let next = CLIENT_ISN + 1;
    let mut fin = client_seg(cookie, next + 100, tcp::FIN | tcp::ACK, &[]);
    assert_eq!(e.handle(T0 + 100, Port::Client, &mut fin), Verdict::Forward);
    assert_eq!(state(&e), Some(TcpState::Established));
    // The server's duplicate ACK: it lacks the hole.
    let mut dup = server_ack(next, tcp::ACK);
    assert_eq!(e.handle(T0 + 101, Port::Server, &mut dup), Verdict::Forward);
    assert_eq!(state(&e), Some(TcpState::Established));
    let mut hole = client_seg(cookie, next, tcp::ACK | tcp::PSH, &[1; 100]);
    assert_eq!(
        e.handle(T0 + 300, Port::Client, &mut hole),
        Verdict::Forward
    );
    assert_eq!(state(&e), Some(TcpState::Established));
    // Everything and the FIN: the server is in CLOSE_WAIT now, and so the
    // flow. Its own FIN with the same ACK, then the client's last ACK.
    let mut ack = server_ack(next + 101, tcp::ACK);
    assert_eq!(e.handle(T0 + 301, Port::Server, &mut ack), Verdict::Forward);
    assert_eq!(state(&e), Some(TcpState::CloseWait));
    let mut sfin = server_ack(next + 101, tcp::FIN | tcp::ACK);
    assert_eq!(
        e.handle(T0 + 302, Port::Server, &mut sfin),
        Verdict::Forward
    );
    assert_eq!(state(&e), Some(TcpState::LastAck));
    // It acknowledges the server's FIN: cookie + 1 + 1.
    let mut last = segment(
        client_v4(),
        server_v4(),
        next + 101,
        cookie + 2,
        tcp::ACK,
        502,
        &[],
        &[],
    );
    assert_eq!(
        e.handle(T0 + 303, Port::Client, &mut last),
        Verdict::Forward
    );
    assert_eq!(state(&e), Some(TcpState::TimeWait));
}

/// The FIN that follows a hole and the server's FIN in one segment: the
/// server took the client's FIN first.
#[test]
fn the_server_may_acknowledge_a_pending_fin_with_its_own() {
    let mut e = fin_engine();
    let (cookie, _, _) = establish(&mut e, client_v4(), server_v4(), &[]);
    let next = CLIENT_ISN + 1;
    let mut fin = client_seg(cookie, next + 10, tcp::FIN | tcp::ACK, &[]);
    e.handle(T0 + 100, Port::Client, &mut fin);
    let mut hole = client_seg(cookie, next, tcp::ACK, &[1; 10]);
    e.handle(T0 + 200, Port::Client, &mut hole);
    let mut sfin = server_ack(next + 11, tcp::FIN | tcp::ACK);
    assert_eq!(
        e.handle(T0 + 201, Port::Server, &mut sfin),
        Verdict::Forward
    );
    assert_eq!(state(&e), Some(TcpState::LastAck));
}

/// A client that sends its data and FIN before the backend answered (a
/// slow backend, or a loaded gateway): both are held, and released in
/// order they move the flow to CLOSE_WAIT with CLOSE_WAIT's timer. Before,
/// the established idle timer armed after the release replaced it, and
/// such a flow never expired.
#[test]
fn a_fin_held_during_the_backend_handshake_gets_close_waits_timer() {
    let mut e = fin_engine();
    let (c, s) = (client_v4(), server_v4());
    let (cookie, _) = pending(&mut e, c, s);
    let mut data = client_seg(cookie, CLIENT_ISN + 1, tcp::ACK | tcp::PSH, b"bye");
    assert_eq!(e.handle(T0 + 2, Port::Client, &mut data), Verdict::Absorbed);
    let mut fin = client_seg(cookie, CLIENT_ISN + 4, tcp::FIN | tcp::ACK, &[]);
    assert_eq!(e.handle(T0 + 3, Port::Client, &mut fin), Verdict::Absorbed);
    let mut synack = segment(
        s,
        c,
        SERVER_ISN,
        CLIENT_ISN + 1,
        tcp::SYN | tcp::ACK,
        65535,
        &[2, 4, 5, 0xb4],
        &[],
    );
    assert_eq!(
        e.handle(T0 + 10, Port::Server, &mut synack),
        Verdict::Absorbed
    );
    assert_eq!(state(&e), Some(TcpState::CloseWait));
    e.handle_timeout(T0 + 10 + CLOSE_WAIT_MS - 1);
    assert_eq!(state(&e), Some(TcpState::CloseWait));
    e.handle_timeout(T0 + 10 + CLOSE_WAIT_MS);
    assert_eq!(state(&e), None, "expired at CLOSE_WAIT's timeout");
}

/// The client's FIN is lost before the gateway, and the client's next
/// segment is a pure ACK (of the server's retransmitted FIN) with SEQ =
/// FIN + 1. That ACK does not move the server's RCV.NXT, so neither may it
/// move the flow's: the FIN's retransmission is then in order and closes
/// the flow. Before, it was taken for a duplicate and the flow sat in
/// FIN_WAIT_2 until its timeout (seen in the lab with 10% loss).
#[test]
fn a_fin_retransmitted_after_a_pure_ack_is_still_taken() {
    let mut e = fin_engine();
    let (cookie, _, _) = establish(&mut e, client_v4(), server_v4(), &[]);
    let next = CLIENT_ISN + 1;
    let mut sfin = server_ack(next, tcp::FIN | tcp::ACK);
    assert_eq!(
        e.handle(T0 + 100, Port::Server, &mut sfin),
        Verdict::Forward
    );
    assert_eq!(state(&e), Some(TcpState::FinWait1));
    // The client's FIN (seq = next) is lost; its ACK of the server's
    // retransmitted FIN comes after it in sequence space.
    let mut ack = client_seg(cookie + 1, next + 1, tcp::ACK, &[]);
    assert_eq!(e.handle(T0 + 300, Port::Client, &mut ack), Verdict::Forward);
    assert_eq!(state(&e), Some(TcpState::FinWait2));
    let mut fin = client_seg(cookie + 1, next, tcp::FIN | tcp::ACK, &[]);
    assert_eq!(e.handle(T0 + 500, Port::Client, &mut fin), Verdict::Forward);
    assert_eq!(state(&e), Some(TcpState::TimeWait));
}
