//! The engine as the XDP program's control plane (design.md section 8):
//! replays of the program's reports leave the engine's flow, counters and
//! tracked-tuple changes as its own handling would, send nothing, and hand
//! the handshake back to the engine exactly when a frame of it comes up or
//! the flow ends. The program's own bytes are checked against the engine's
//! in tests/xdp_prog.rs and tests/xdp_forward.rs; these run without it.

use super::*;
use crate::engine::fast_path::TrackedChange;
use crate::engine::program_events::{ProgramEvent, ProgramEventResult};

fn replays(e: &Engine) -> [u64; 3] {
    std::array::from_fn(|i| Counters::get(&e.counters().xdp_events[i]))
}

/// A cookie ACK the program sent on as the backend SYN, at T0 + 1.
fn reported_ack(e: &mut Engine, c: Host, s: Host) -> (FlowKey, Vec<u8>) {
    let (synack, _) = syn(e, c, s, T0, &[2, 4, 5, 0xb4]);
    let ack = cookie_ack(c, s, &synack);
    (FlowKey::from_client_segment(&view(&ack)), ack)
}

fn ended(e: &mut Engine, now: u64) -> Vec<TrackedChange> {
    let mut out = Vec::new();
    e.drain_tracked_changes(now, &mut out);
    out.retain(|c| matches!(c, TrackedChange::EndHandshake(_)));
    out
}

#[test]
fn a_replayed_backend_syn_is_the_engines_flow_and_sends_nothing() {
    let mut e = engine();
    e.enable_fast_path();
    let (key, mut ack) = reported_ack(&mut e, client_v4(), server_v4());
    let r = e.replay_program_event(ProgramEvent::BackendSyn, T0 + 1, &mut ack);
    assert_eq!((r.result, r.key), (ProgramEventResult::Replayed, Some(key)));
    assert_eq!(e.drain_emitted().count(), 0, "the program sent the SYN");
    assert_eq!(e.flows.state(&key), Some(TcpState::BackendSynSent));
    assert_eq!(Counters::get(&e.counters().backend_started), 1);
    assert_eq!(Counters::get(&e.counters().cookies_validated), 1);
    assert_eq!(replays(&e), [1, 0, 0]);
    // Its timer is the engine's: the backend SYN goes again after 1 s.
    e.handle_timeout(T0 + 1 + e.cfg.backend_syn_timeout_ms);
    let again: Vec<_> = e.drain_emitted().collect();
    assert_eq!(again.len(), 1);
    assert_eq!(view(&again[0].frame).tcp.flags, tcp::SYN);
}

#[test]
fn a_full_flow_table_refuses_the_programs_backend_syn() {
    let mut e = engine_with(EngineConfig {
        max_flows: 1,
        ..config()
    });
    e.enable_fast_path();
    for (i, port) in [40000u16, 40001].into_iter().enumerate() {
        let c = Host {
            port,
            ..client_v4()
        };
        let (key, mut ack) = reported_ack(&mut e, c, server_v4());
        let r = e.replay_program_event(ProgramEvent::BackendSyn, T0 + 1, &mut ack);
        let want = if i == 0 {
            ProgramEventResult::Replayed
        } else {
            ProgramEventResult::Refused
        };
        assert_eq!((r.result, r.key), (want, Some(key)), "connection {i}");
        assert_eq!(e.drain_emitted().count(), 0);
    }
    assert_eq!(replays(&e), [1, 1, 0]);
    assert_eq!(e.counters().dropped(DropReason::FlowTableFull), 1);
}

#[test]
fn early_data_replayed_stays_the_programs_and_a_segment_that_comes_up_takes_it_over() {
    let mut e = engine();
    e.enable_fast_path();
    let (c, s) = (client_v4(), server_v4());
    let (key, mut ack) = reported_ack(&mut e, c, s);
    let cookie = view(&ack).tcp.ack.wrapping_sub(1);
    e.replay_program_event(ProgramEvent::BackendSyn, T0 + 1, &mut ack);
    let data = |sent: u32, n: usize| {
        segment(
            c,
            s,
            CLIENT_ISN + 1 + sent,
            cookie.wrapping_add(1),
            tcp::ACK | tcp::PSH,
            502,
            &[],
            &vec![b'x'; n],
        )
    };
    let r = e.replay_program_event(ProgramEvent::EarlyData, T0 + 2, &mut data(0, 100));
    assert_eq!(r.result, ProgramEventResult::Replayed);
    assert_eq!(e.drain_emitted().count(), 0);
    assert!(ended(&mut e, T0 + 2).is_empty(), "still the program's");
    // The next segment came up: the engine holds it and owns the handshake.
    assert_eq!(
        e.handle(T0 + 3, Port::Client, &mut data(100, 50)),
        Verdict::Absorbed
    );
    assert_eq!(ended(&mut e, T0 + 3), [TrackedChange::EndHandshake(key)]);
    assert_eq!(replays(&e), [2, 0, 0]);
}

#[test]
fn a_handshake_that_ends_in_the_engine_ends_the_programs_entry() {
    let mut e = engine();
    e.enable_fast_path();
    let (c, s) = (client_v4(), server_v4());
    let (key, mut ack) = reported_ack(&mut e, c, s);
    e.replay_program_event(ProgramEvent::BackendSyn, T0 + 1, &mut ack);
    assert!(ended(&mut e, T0 + 1).is_empty());
    // The server refuses: RST with an acceptable ACK (it came up: the
    // program hands every server segment of its handshakes up).
    let mut rst = segment(s, c, 0, CLIENT_ISN + 1, tcp::RST | tcp::ACK, 0, &[], &[]);
    assert_eq!(e.handle(T0 + 2, Port::Server, &mut rst), Verdict::Absorbed);
    let mut out = Vec::new();
    e.drain_tracked_changes(T0 + 2, &mut out);
    assert!(out.contains(&TrackedChange::EndHandshake(key)), "{out:?}");
    assert!(out.contains(&TrackedChange::Unpublish(key)), "{out:?}");
}
