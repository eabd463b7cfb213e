//! Flows handed from one engine to the next (a graceful restart): after
//! export, a JSON round trip and import, the new engine translates the
//! flow's segments byte for byte as the old one would have, keeps its
//! timers, and refuses what the new configuration does not allow.

use super::*;

/// A frame both engines see; returns (verdict, frame after).
fn run(e: &mut Engine, now: u64, port: Port, frame: &[u8]) -> (Verdict, Vec<u8>) {
    let mut f = frame.to_vec();
    (e.handle(now, port, &mut f), f)
}

fn round_trip(flows: Vec<(FlowKey, Flow)>) -> Vec<(FlowKey, Flow)> {
    let text = serde_json::to_string(&flows).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn imported_flow_translates_exactly_as_before_both_families() {
    for (c, s) in [(client_v4(), server_v4()), (client_v6(), server_v6())] {
        let mut old = engine();
        let (cookie, _, _) = establish(&mut old, c, s, &[]);
        let flows = round_trip(old.export_flows());
        assert_eq!(flows.len(), 1);
        assert_eq!(flows, old.export_flows(), "JSON keeps every field");

        let mut new = engine();
        let report = new.import_flows(flows);
        assert_eq!(report.restored, 1);
        assert_eq!(report.skipped(), 0);
        assert_eq!(new.export_flows(), old.export_flows());

        // The same segments, each way, through both engines.
        let to_client = segment(
            s,
            c,
            SERVER_ISN + 1,
            CLIENT_ISN + 1,
            tcp::ACK | tcp::PSH,
            100,
            &ts_option(5007, 101),
            b"after the restart",
        );
        let to_server = segment(
            c,
            s,
            CLIENT_ISN + 1,
            cookie.wrapping_add(18),
            tcp::ACK,
            500,
            &ts_option(102, 5007),
            b"",
        );
        for (port, frame) in [(Port::Server, &to_client), (Port::Client, &to_server)] {
            let a = run(&mut old, T0 + 5000, port, frame);
            let b = run(&mut new, T0 + 5000, port, frame);
            assert_eq!(a.0, Verdict::Forward, "{}", c.ip);
            assert_eq!(a, b, "{} {port:?}", c.ip);
        }
        assert_eq!(new.export_flows(), old.export_flows());
    }
}

#[test]
fn timers_keep_their_deadlines_across_the_handover() {
    // A flow in TIME_WAIT ends at its 2MSL deadline in the new engine too,
    // and an idle established flow at its idle deadline.
    let (c, s) = (client_v4(), server_v4());
    let mut old = engine();
    let (cookie, _, _) = establish(&mut old, c, s, &[]);
    close_client_first(&mut old, c, s, cookie);
    assert_eq!(old.flow_state(&key_v4()), Some(TcpState::TimeWait));
    let c2 = Host { port: 40001, ..c };
    establish(&mut old, c2, s, &[]);
    let flows = round_trip(old.export_flows());
    let deadlines: Vec<u64> = flows.iter().map(|(_, f)| f.timer_at).collect();
    assert_eq!(deadlines.len(), 2);

    let mut new = engine();
    assert_eq!(new.import_flows(flows).restored, 2);
    assert_eq!(new.poll_timeout(), deadlines.iter().min().copied());
    for (at, port) in [(deadlines[0], 40000), (deadlines[1], 40001)] {
        let key = FlowKey {
            client_port: port,
            ..key_v4()
        };
        new.handle_timeout(at - 1);
        assert!(new.flow_state(&key).is_some(), "port {port} before {at}");
        new.handle_timeout(at);
        assert_eq!(new.flow_state(&key), None, "port {port} at {at}");
    }
}

#[test]
fn import_skips_unprotected_repeated_and_over_the_limit() {
    let (c, s) = (client_v4(), server_v4());
    let mut old = engine();
    for port in 40000..40003 {
        establish(&mut old, Host { port, ..c }, s, &[]);
    }
    establish(&mut old, client_v6(), server_v6(), &[]);
    let flows = old.export_flows();
    assert_eq!(flows.len(), 4);

    // The new configuration protects only the IPv4 service, room for 2.
    let mut cfg = config();
    cfg.protected.truncate(1);
    cfg.max_flows = 2;
    let mut new = engine_with(cfg);
    let mut twice = flows.clone();
    twice.push(flows[0].clone());
    let report = new.import_flows(twice);
    assert_eq!(
        report,
        ImportReport {
            restored: 2,
            not_protected: 1,
            no_room: 1,
            duplicate: 1,
            invalid: 0,
        }
    );
    assert_eq!(new.flow_count(), 2);
    assert_eq!(new.counters().flows_in(TcpState::Established), 2);
}

#[test]
fn restored_flows_are_published_to_the_fast_path_when_it_starts() {
    // The gateway imports before it starts the XDP fast path: enabling it
    // must publish what is already tracked, or the program would take the
    // restored connections' segments for forged ACKs.
    let (c, s) = (client_v4(), server_v4());
    let mut old = engine();
    establish(&mut old, c, s, &[]);
    let mut new = engine();
    let exported = old.export_flows();
    let entry = forward::forward_entry(&exported[0].1);
    assert!(entry.is_some(), "a plain established flow");
    assert_eq!(new.import_flows(exported.clone()).restored, 1);
    new.enable_fast_path();
    let mut changes = Vec::new();
    new.drain_tracked_changes(T0 + 100, &mut changes);
    assert_eq!(
        changes,
        vec![fast_path::TrackedChange::Publish(key_v4(), None)],
        "no progress source: the engine keeps forwarding itself"
    );
    // With one, the restored flow is handed to the program too.
    let mut newer = engine();
    assert_eq!(newer.import_flows(exported).restored, 1);
    newer.set_forward_progress_source(Box::new(NoProgress));
    newer.enable_fast_path();
    changes.clear();
    // Old enough to hand over (FORWARD_AFTER_MS after it opened).
    newer.drain_tracked_changes(T0 + 1_000, &mut changes);
    assert_eq!(
        changes,
        vec![fast_path::TrackedChange::Publish(key_v4(), entry)]
    );
    assert!(newer.is_forwarded(&key_v4()));
}

/// A progress source with nothing recorded.
struct NoProgress;

impl forward::ForwardProgressSource for NoProgress {
    fn read(&self, _: &FlowKey) -> Option<forward::FlowProgress> {
        None
    }
}

#[test]
fn damaged_flows_are_refused_not_trusted() {
    let (c, s) = (client_v4(), server_v4());
    let mut old = engine();
    establish(&mut old, c, s, &[]);
    let good = old.export_flows();
    // Held bytes that do not add up, and an Ethernet header 200 bytes long.
    let mut held = good[0].clone();
    held.1.held_bytes = 10;
    let mut text = serde_json::to_value(&good[0]).unwrap();
    text[1]["l2"]["len"] = serde_json::json!(200);
    let l2: (FlowKey, Flow) = serde_json::from_value(text).unwrap();
    let mut new = engine();
    let report = new.import_flows(vec![held, l2]);
    assert_eq!((report.invalid, report.restored), (2, 0));
    assert_eq!(new.flow_count(), 0);
}

#[test]
fn restored_time_wait_flows_are_evicted_oldest_first() {
    // Three flows in TIME_WAIT, exported in key order (port order) but
    // closed in the opposite order: a full table evicts the one closed
    // first, as it would have before the restart.
    let (c, s) = (client_v4(), server_v4());
    let mut old = engine();
    for (i, port) in [40002u16, 40001, 40000].into_iter().enumerate() {
        let cl = Host { port, ..c };
        let (cookie, _, _) = establish(&mut old, cl, s, &[]);
        close_client_first_at(&mut old, cl, s, cookie, T0 + 1000 * (i as u64 + 1));
    }
    let mut cfg = config();
    cfg.max_flows = 3;
    let mut new = engine_with(cfg);
    assert_eq!(new.import_flows(old.export_flows()).restored, 3);
    establish(&mut new, Host { port: 41000, ..c }, s, &[]);
    let left: Vec<u16> = new
        .export_flows()
        .iter()
        .map(|(k, _)| k.client_port)
        .collect();
    assert_eq!(left, vec![40000, 40001, 41000], "40002 closed first");
}

#[test]
fn held_data_comes_along_within_the_held_bytes_budget() {
    // A flow waiting for its backend with the client's first data held: the
    // data is restored and charged to the budget, or the flow is refused
    // when the new budget has no room for it.
    let (c, s) = (client_v4(), server_v4());
    let mut old = engine();
    let (synack, _) = syn(&mut old, c, s, T0, &linux_syn_options(100));
    let cookie = synack.tcp.seq;
    let gw_tsval = synack.options.timestamps.unwrap().0;
    let mut ack = segment(
        c,
        s,
        CLIENT_ISN + 1,
        cookie + 1,
        tcp::ACK | tcp::PSH,
        502,
        &ts_option(101, gw_tsval),
        b"GET /",
    );
    assert_eq!(
        old.handle(T0 + 1, Port::Client, &mut ack),
        Verdict::Absorbed
    );
    let flows = old.export_flows();
    let held = flows[0].1.held_bytes;
    assert!(held > 0);
    assert_eq!(flows[0].1.state, TcpState::BackendSynSent);

    let mut new = engine();
    assert_eq!(new.import_flows(flows.clone()).restored, 1);
    let gauge = new
        .counters()
        .held_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(gauge, held as i64);

    let mut cfg = config();
    cfg.held_bytes_total = held - 1;
    let mut small = engine_with(cfg);
    let report = small.import_flows(flows);
    assert_eq!((report.no_room, report.restored), (1, 0));
}
