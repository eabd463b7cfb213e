//! A proxied flow idle past its state's timeout is reset at both ends with
//! exact RSTs (SEQ = the receiver's RCV.NXT, RFC 5961 3.2), within the RST
//! budget, and forgotten; flows in TIME_WAIT just go.

use super::*;

const IDLE_MS: u64 = 5_000;

fn idle_engine(rst_per_second: u32) -> Engine {
    engine_with(EngineConfig {
        established_idle_timeout_ms: IDLE_MS,
        close_wait_timeout_ms: IDLE_MS,
        rst_per_second,
        ..config()
    })
}

/// Client 5 bytes (held with the cookie ACK), server 3 bytes at T0 + 20.
/// Returns the cookie.
fn flow_with_data(e: &mut Engine) -> u32 {
    let (c, s) = (client_v4(), server_v4());
    let (cookie, _, _) = establish(e, c, s, b"hello");
    let mut data = segment(
        s,
        c,
        SERVER_ISN + 1,
        CLIENT_ISN + 6,
        tcp::ACK | tcp::PSH,
        100,
        &ts_option(5002, 101),
        b"abc",
    );
    assert_eq!(e.handle(T0 + 20, Port::Server, &mut data), Verdict::Forward);
    cookie
}

/// (port, destination MAC, view) of every frame emitted since the last call.
fn emitted(e: &mut Engine) -> Vec<(Port, [u8; 6], TcpView)> {
    e.drain_emitted()
        .map(|em| {
            let mac: [u8; 6] = em.frame[..6].try_into().unwrap();
            (em.port, mac, view(&em.frame))
        })
        .collect()
}

#[test]
fn expired_established_flow_is_reset_exactly_at_both_ends() {
    let mut e = idle_engine(1000);
    let cookie = flow_with_data(&mut e);
    e.drain_emitted().for_each(drop);
    e.handle_timeout(T0 + 20 + IDLE_MS - 1);
    assert_eq!(e.flow_count(), 1, "not idle long enough yet");
    assert_eq!(emitted(&mut e).len(), 0);
    e.handle_timeout(T0 + 20 + IDLE_MS);
    assert_eq!(e.flow_count(), 0);
    let out = emitted(&mut e);
    assert_eq!(out.len(), 2, "one RST each way");
    let (port, mac, to_client) = &out[0];
    assert_eq!((*port, *mac), (Port::Client, CLIENT_MAC));
    assert_eq!(
        (to_client.ip.src, to_client.ip.dst),
        (server_v4().ip, client_v4().ip)
    );
    assert_eq!(
        (to_client.tcp.src_port, to_client.tcp.dst_port),
        (8080, 40000)
    );
    // The client has had the cookie ISN + 1 and 3 bytes: RCV.NXT = cookie + 4.
    assert_eq!(
        (to_client.tcp.seq, to_client.tcp.ack, to_client.tcp.flags),
        (cookie + 4, CLIENT_ISN + 6, tcp::RST | tcp::ACK)
    );
    let (port, mac, to_server) = &out[1];
    assert_eq!((*port, *mac), (Port::Server, SERVER_MAC));
    assert_eq!(
        (to_server.ip.src, to_server.ip.dst),
        (client_v4().ip, server_v4().ip)
    );
    assert_eq!(
        (to_server.tcp.seq, to_server.tcp.ack, to_server.tcp.flags),
        (CLIENT_ISN + 6, SERVER_ISN + 4, tcp::RST | tcp::ACK)
    );
    assert!(to_server.options.timestamps.is_none());
    assert_eq!(Counters::get(&e.counters().flows_expired), 1);
    assert_eq!(Counters::get(&e.counters().rst_sent), 2);
}

#[test]
fn half_closed_flow_is_reset_past_the_client_fin() {
    let mut e = idle_engine(1000);
    let cookie = flow_with_data(&mut e);
    let (c, s) = (client_v4(), server_v4());
    let mut fin = segment(
        c,
        s,
        CLIENT_ISN + 6,
        cookie + 4,
        tcp::FIN | tcp::ACK,
        502,
        &[],
        &[],
    );
    assert_eq!(e.handle(T0 + 30, Port::Client, &mut fin), Verdict::Forward);
    assert_eq!(e.flow_state(&key_v4()), Some(TcpState::CloseWait));
    e.drain_emitted().for_each(drop);
    e.handle_timeout(T0 + 30 + IDLE_MS);
    let out = emitted(&mut e);
    assert_eq!(out.len(), 2);
    // The server's RCV.NXT counts the client's FIN.
    assert_eq!(
        (out[1].2.tcp.seq, out[1].2.tcp.ack),
        (CLIENT_ISN + 7, SERVER_ISN + 4)
    );
    assert_eq!(
        (out[0].2.tcp.seq, out[0].2.tcp.ack),
        (cookie + 4, CLIENT_ISN + 7)
    );
}

#[test]
fn expiry_resets_stay_within_the_rst_budget() {
    let mut e = idle_engine(1);
    flow_with_data(&mut e);
    e.drain_emitted().for_each(drop);
    e.handle_timeout(T0 + 20 + IDLE_MS);
    let out = emitted(&mut e);
    assert_eq!(out.len(), 1, "budget of 1 RST/s: the client's only");
    assert_eq!(out[0].0, Port::Client);
    assert_eq!(e.flow_count(), 0, "forgotten all the same");
    assert_eq!(Counters::get(&e.counters().rst_sent), 1);
}

#[test]
fn time_wait_ends_without_a_reset() {
    let mut e = idle_engine(1000);
    let (c, s) = (client_v4(), server_v4());
    let (cookie, _, _) = establish(&mut e, c, s, &[]);
    close_client_first(&mut e, c, s, cookie);
    assert_eq!(e.flow_state(&key_v4()), Some(TcpState::TimeWait));
    e.drain_emitted().for_each(drop);
    e.handle_timeout(T0 + 102 + EngineConfig::default().time_wait_ms());
    assert_eq!(e.flow_count(), 0);
    assert_eq!(emitted(&mut e).len(), 0);
    assert_eq!(Counters::get(&e.counters().rst_sent), 0);
}
