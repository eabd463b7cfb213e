//! A service removed from `protect.services` by a reload: the connections
//! the gateway proxies for it finish as they started (translated both ways,
//! through their close), a handshake whose cookie was minted before the
//! reload completes, and everything else of it is bridged untouched.

use super::*;

fn remove_all_services(e: &mut Engine) -> usize {
    let cfg = EngineConfig {
        protected: vec![],
        ..e.config().clone()
    };
    e.reconfigure(T0, cfg).connections_kept
}

#[test]
fn a_proxied_flow_keeps_its_translation_through_its_close() {
    let mut e = engine();
    let (c, s) = (client_v4(), server_v4());
    let (cookie, _, _) = establish(&mut e, c, s, &[]);
    assert_eq!(remove_all_services(&mut e), 1);
    // Server data still reaches the client in the cookie's sequence space.
    let mut data = segment(
        s,
        c,
        SERVER_ISN + 1,
        CLIENT_ISN + 1,
        tcp::ACK,
        100,
        &[],
        b"late",
    );
    assert_eq!(e.handle(T0 + 20, Port::Server, &mut data), Verdict::Forward);
    assert_eq!(view(&data).tcp.seq, cookie + 1);
    // The client's ACK into the server's space.
    let mut ack = segment(c, s, CLIENT_ISN + 1, cookie + 5, tcp::ACK, 502, &[], &[]);
    assert_eq!(e.handle(T0 + 21, Port::Client, &mut ack), Verdict::Forward);
    assert_eq!(view(&ack).tcp.ack, SERVER_ISN + 5);
    // And the close runs to TIME_WAIT as any flow's.
    let mut fin = segment(
        c,
        s,
        CLIENT_ISN + 1,
        cookie + 5,
        tcp::FIN | tcp::ACK,
        502,
        &[],
        &[],
    );
    assert_eq!(e.handle(T0 + 22, Port::Client, &mut fin), Verdict::Forward);
    let mut sfin = segment(
        s,
        c,
        SERVER_ISN + 5,
        CLIENT_ISN + 2,
        tcp::FIN | tcp::ACK,
        100,
        &[],
        &[],
    );
    assert_eq!(e.handle(T0 + 23, Port::Server, &mut sfin), Verdict::Forward);
    let mut last = segment(c, s, CLIENT_ISN + 2, cookie + 6, tcp::ACK, 502, &[], &[]);
    assert_eq!(e.handle(T0 + 24, Port::Client, &mut last), Verdict::Forward);
    assert_eq!(e.flow_state(&key_v4()), Some(TcpState::TimeWait));
}

#[test]
fn a_cookie_minted_before_completes_and_the_rest_is_bridged() {
    let mut e = engine();
    let (c, s) = (client_v4(), server_v4());
    let (synack, _) = syn(&mut e, c, s, T0, &[]);
    remove_all_services(&mut e);
    // The handshake in flight: its cookie ACK still opens the backend.
    let mut ack = cookie_ack(c, s, &synack);
    assert_eq!(e.handle(T0 + 1, Port::Client, &mut ack), Verdict::Absorbed);
    assert_eq!(e.flow_state(&key_v4()), Some(TcpState::BackendSynSent));
    // Anything else of the service passes untouched: a new SYN, an ACK of
    // a connection made since (no cookie), the server's answers to them.
    let other = Host { port: 40001, ..c };
    let untouched = [
        (
            Port::Client,
            segment(other, s, 7, 0, tcp::SYN, 64240, &[], &[]),
        ),
        (
            Port::Server,
            segment(s, other, 9, 8, tcp::SYN | tcp::ACK, 65535, &[], &[]),
        ),
        (
            Port::Client,
            segment(other, s, 8, 10, tcp::ACK, 502, &[], &[]),
        ),
        (
            Port::Client,
            segment(other, s, 8, 10, tcp::RST, 0, &[], &[]),
        ),
    ];
    for (i, (port, frame)) in untouched.into_iter().enumerate() {
        let mut f = frame.clone();
        assert_eq!(e.handle(T0 + 10, port, &mut f), Verdict::Forward, "{i}");
        assert_eq!(f, frame, "{i}");
    }
    assert_eq!(Counters::get(&e.counters().cookies_failed), 0);
    assert_eq!(e.flow_count(), 1);
}

/// A service retired at one reload stays retired while it has connections,
/// and is forgotten at the first reload after they ended.
#[test]
fn retirement_ends_at_a_reload_once_its_connections_are_gone() {
    let mut e = engine();
    let (c, s) = (client_v4(), server_v4());
    establish(&mut e, c, s, &[]);
    remove_all_services(&mut e);
    assert_eq!(remove_all_services(&mut e), 1, "still carried");
    let mut rst = segment(c, s, CLIENT_ISN + 1, 0, tcp::RST, 0, &[], &[]);
    assert_eq!(e.handle(T0 + 20, Port::Client, &mut rst), Verdict::Forward);
    assert_eq!(e.flow_count(), 0);
    assert_eq!(remove_all_services(&mut e), 0);
    assert!(
        e.fast_path_params(T0).services.is_empty(),
        "no longer retired"
    );
}
