//! Steps of the wall clock (NTP, `date -s`, a resumed VM) move cookie slots
//! and nothing else: SYN-ACK retransmissions, idle expiry and the cookies'
//! own validity run on the engine's monotonic clock (`now_ms`), whatever
//! `set_wall_clock` said meanwhile.

use super::*;

/// An engine clock just after boot: CLOCK_MONOTONIC ms are small.
const BOOT: u64 = 90_000;
const HOUR_MS: u64 = 3_600_000;

#[test]
fn queued_synack_retransmissions_ignore_wall_clock_steps() {
    let mut e = engine_with(queue_config(SyncookieMode::Auto));
    e.set_wall_clock(BOOT, T0);
    assert_eq!(syn_from(&mut e, 40000, "198.18.0.1", BOOT), Verdict::Reply);
    assert_eq!(e.half_open_count(), 1);
    e.drain_emitted().for_each(drop);
    let mut sent_at = vec![];
    let mut now = BOOT;
    while now <= BOOT + 70_000 {
        // The wall clock jumps an hour ahead at +500 ms and two back at +2 s.
        match now - BOOT {
            500 => e.set_wall_clock(now, T0 + 500 + HOUR_MS),
            2_000 => e.set_wall_clock(now, T0 + 2_000 - HOUR_MS),
            _ => {}
        }
        if e.poll_timeout().is_some_and(|t| t <= now) {
            e.handle_timeout(now);
            sent_at.extend(e.drain_emitted().map(|_| now - BOOT));
        }
        now += 10;
    }
    assert_eq!(sent_at, vec![1000, 3000, 7000, 15000, 31000]);
    assert_eq!(e.half_open_count(), 0, "given up at 63 s, not before");
}

#[test]
fn idle_expiry_ignores_wall_clock_steps() {
    let mut e = engine_with(EngineConfig {
        established_idle_timeout_ms: 5_000,
        ..config()
    });
    let (c, s) = (client_v4(), server_v4());
    // `establish` runs at T0..T0 + 11 engine time; the wall clock says the
    // same until it steps.
    let (cookie, _, _) = establish(&mut e, c, s, &[]);
    e.set_wall_clock(T0 + 100, T0 + 100 + 10 * HOUR_MS);
    e.handle_timeout(T0 + 4_999);
    assert_eq!(e.flow_count(), 1, "a wall step forward expires nothing");
    let mut d = segment(c, s, CLIENT_ISN + 1, cookie + 1, tcp::ACK, 502, &[], b"x");
    assert_eq!(e.handle(T0 + 4_999, Port::Client, &mut d), Verdict::Forward);
    e.set_wall_clock(T0 + 5_000, T0 + 5_000 - 10 * HOUR_MS);
    e.handle_timeout(T0 + 9_998);
    assert_eq!(e.flow_count(), 1, "nor does one back freeze its timer");
    e.handle_timeout(T0 + 9_999);
    assert_eq!(e.flow_count(), 0, "idle 5 s by the engine clock");
}

/// Cookies are what follows the wall clock: instances sharing a secret
/// agree on slots. One minted before a step of more than a slot is checked
/// in another slot and fails, as it would at an instance whose clock is
/// off by that much (the documented tolerance); one minted after the step
/// passes.
#[test]
fn cookie_slots_follow_the_wall_clock() {
    let (c, s) = (client_v4(), server_v4());
    let ack_for = |synack: &TcpView| cookie_ack(c, s, synack);
    // Engine clock BOOT, wall clock T0: the cookie counts T0's slot.
    let mut e = engine();
    e.set_wall_clock(BOOT, T0);
    let (synack, _) = syn(&mut e, c, s, BOOT, &[]);
    // The same cookie from an engine whose clocks both read T0 (tests'
    // default: no offset): slots are the wall clock's.
    let mut twin = engine();
    let (twin_synack, _) = syn(&mut twin, c, s, T0, &[]);
    assert_eq!(synack.tcp.seq, twin_synack.tcp.seq);

    e.set_wall_clock(BOOT + 1_000, T0 + 1_000 + HOUR_MS);
    assert_eq!(
        e.handle(BOOT + 1_000, Port::Client, &mut ack_for(&synack)),
        Verdict::Reply,
        "RST: minted an hour of wall clock ago"
    );
    assert_eq!(Counters::get(&e.counters().cookies_failed), 1);
    let (synack, _) = syn(&mut e, c, s, BOOT + 2_000, &[]);
    assert_eq!(
        e.handle(BOOT + 3_000, Port::Client, &mut ack_for(&synack)),
        Verdict::Absorbed,
        "a cookie minted after the step is good"
    );
    assert_eq!(Counters::get(&e.counters().cookies_validated), 1);
}
