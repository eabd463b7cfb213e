//! When the engine hands an established flow to the XDP program: not
//! before it is `FORWARD_AFTER_MS` old (short connections stay in the
//! engine and cost no map writes), then with its translation; and never
//! without a progress source to read the program's work back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use crate::engine::fast_path::TrackedChange;
use crate::engine::forward::{
    forward_entry, FlowProgress, ForwardProgressSource, FORWARD_AFTER_BYTES, FORWARD_AFTER_MS,
};

struct NoProgress;

impl ForwardProgressSource for NoProgress {
    fn read(&self, _: &FlowKey) -> Option<FlowProgress> {
        None
    }
}

/// Counts its reads (each one a map lookup syscall in the I/O layer) and
/// answers every one with the same progress, if any.
struct CountingSource(Arc<AtomicUsize>, Option<FlowProgress>);

impl ForwardProgressSource for CountingSource {
    fn read(&self, _: &FlowKey) -> Option<FlowProgress> {
        self.0.fetch_add(1, Ordering::Relaxed);
        self.1
    }
}

/// An engine with the fast path on (and a progress source) and one
/// established flow, opened at T0 + 1.
fn established_with_fast_path() -> Engine {
    let mut e = engine();
    e.set_forward_progress_source(Box::new(NoProgress));
    e.enable_fast_path();
    establish(&mut e, client_v4(), server_v4(), &[]);
    e
}

/// A copy of the engine's flow `key`.
fn flow(e: &Engine, key: &FlowKey) -> Flow {
    e.export_flows()
        .into_iter()
        .find(|(k, _)| k == key)
        .expect("flow")
        .1
}

fn drain(e: &mut Engine, now: u64) -> Vec<TrackedChange> {
    let mut out = Vec::new();
    e.drain_tracked_changes(now, &mut out);
    out
}

#[test]
fn a_flow_is_forwarded_in_xdp_once_it_is_old_enough() {
    let mut e = established_with_fast_path();
    let key = key_v4();
    let opened = e.export_flows()[0].1.opened_ms;
    // Established, but young: tracked only.
    assert_eq!(
        drain(&mut e, T0 + 20),
        vec![TrackedChange::Publish(key, None)]
    );
    assert!(!e.is_forwarded(&key));
    assert!(drain(&mut e, opened + FORWARD_AFTER_MS - 1).is_empty());
    let entry = forward_entry(&e.export_flows()[0].1);
    assert!(entry.is_some());
    assert_eq!(
        drain(&mut e, opened + FORWARD_AFTER_MS),
        vec![TrackedChange::Publish(key, entry)]
    );
    assert!(e.is_forwarded(&key));
}

#[test]
fn a_short_connection_is_never_handed_over() {
    let mut e = established_with_fast_path();
    let key = key_v4();
    drain(&mut e, T0 + 20);
    // Gone before it is old enough (the client's RST ends it at once).
    let mut rst = segment(
        client_v4(),
        server_v4(),
        CLIENT_ISN + 1,
        0,
        tcp::RST,
        0,
        &[],
        &[],
    );
    e.handle(T0 + 30, Port::Client, &mut rst);
    assert!(!e.is_tracked(&key));
    assert_eq!(drain(&mut e, T0 + 30), vec![TrackedChange::Unpublish(key)]);
    assert!(
        drain(&mut e, T0 + 10 * FORWARD_AFTER_MS).is_empty(),
        "nothing to say about a flow that ended"
    );
}

#[test]
fn without_a_progress_source_nothing_is_handed_over() {
    let mut e = engine();
    e.enable_fast_path();
    establish(&mut e, client_v4(), server_v4(), &[]);
    let changes = drain(&mut e, T0 + 10 * FORWARD_AFTER_MS);
    assert_eq!(changes, vec![TrackedChange::Publish(key_v4(), None)]);
}

/// The server sends `FORWARD_AFTER_BYTES` at `now`, all forwarded by the
/// engine itself.
fn send_a_transfer(e: &mut Engine, now: u64) {
    let chunk = [7u8; 1400];
    let server_isn = e.export_flows()[0].1.server_isn;
    let mut sent = 0u32;
    while u64::from(sent) < FORWARD_AFTER_BYTES {
        let mut f = segment(
            server_v4(),
            client_v4(),
            server_isn.wrapping_add(1).wrapping_add(sent),
            CLIENT_ISN + 1,
            tcp::ACK,
            1000,
            &[],
            &chunk,
        );
        assert_eq!(e.handle(now, Port::Server, &mut f), Verdict::Forward);
        sent += chunk.len() as u32;
    }
}

#[test]
fn a_transfer_is_handed_over_before_it_is_old() {
    let mut e = established_with_fast_path();
    let key = key_v4();
    drain(&mut e, T0 + 20);
    // The server sends 64 KiB within a millisecond: the engine translates
    // it all, then hands the flow over at the next drain.
    send_a_transfer(&mut e, T0 + 21);
    let changes = drain(&mut e, T0 + 22);
    assert!(
        matches!(changes.as_slice(), [TrackedChange::Publish(k, Some(_))] if *k == key),
        "{changes:?}"
    );
    assert!(e.is_forwarded(&key));
}

#[test]
fn a_forwarded_flow_is_never_published_again_over_the_programs_progress() {
    let mut e = established_with_fast_path();
    let opened = e.export_flows()[0].1.opened_ms;
    drain(&mut e, T0 + 20); // young: queued for opened + FORWARD_AFTER_MS
    send_a_transfer(&mut e, T0 + 21);
    assert_eq!(drain(&mut e, T0 + 22).len(), 1, "handed over as a transfer");
    // Its age comes due later: nothing more to write (the program owns
    // the progress now).
    assert!(drain(&mut e, opened + FORWARD_AFTER_MS).is_empty());
}

#[test]
fn flows_the_program_cannot_take_cost_no_map_reads() {
    let reads = Arc::new(AtomicUsize::new(0));
    // Auto: SYNs wait in the half-open queue.
    let mut e = engine_with(queue_config(SyncookieMode::Auto));
    e.set_forward_progress_source(Box::new(CountingSource(reads.clone(), None)));
    e.enable_fast_path();
    let (c, s) = (client_v4(), server_v4());
    let key = key_v4();
    // A half-open entry: tracked, nothing to read.
    syn(&mut e, c, s, T0, &[2, 4, 5, 0xb4]);
    assert_eq!(drain(&mut e, T0), vec![TrackedChange::Publish(key, None)]);
    assert_eq!(reads.load(Ordering::Relaxed), 0);
    // Another client's flow: established, then closed (TIME_WAIT at
    // T0 + 52) before its age comes due at opened + FORWARD_AFTER_MS.
    let c2 = Host { port: 40001, ..c };
    let key2 = FlowKey {
        client_port: c2.port,
        ..key
    };
    let (cookie, _, _) = establish(&mut e, c2, s, &[]);
    let opened = flow(&e, &key2).opened_ms;
    drain(&mut e, T0 + 20);
    close_client_first_at(&mut e, c2, s, cookie, T0 - 50);
    assert_eq!(e.flow_state(&key2), Some(TcpState::TimeWait));
    drain(&mut e, T0 + 60);
    assert!(opened + FORWARD_AFTER_MS > T0 + 60);
    // Changed in two drains while young: one look queued, not two.
    assert_eq!(e.fast_path.forward_due.len(), 1, "dedup");
    // The look at its age: not a flow the program can take, so no read
    // and no entry.
    assert_eq!(
        drain(&mut e, opened + FORWARD_AFTER_MS),
        vec![TrackedChange::Publish(key2, None)]
    );
    assert_eq!(reads.load(Ordering::Relaxed), 0);
    assert!(!e.is_forwarded(&key2));
    assert!(e.fast_path.forward_due.is_empty());
    assert!(e.fast_path.forward_due_keys.is_empty());
}

#[test]
fn only_an_adopted_flow_has_its_progress_read_before_it_is_published() {
    // Flow A was restored from the flow file and the earlier process's
    // program kept forwarding it (its entry in the adopted map is newer);
    // flow B is new. Both are old enough to hand over.
    let reads = Arc::new(AtomicUsize::new(0));
    let mut e = engine();
    let (c, s) = (client_v4(), server_v4());
    establish(&mut e, c, s, &[]);
    let b = Host { port: 40001, ..c };
    establish(&mut e, b, s, &[]);
    let key_a = key_v4();
    let key_b = FlowKey {
        client_port: b.port,
        ..key_a
    };
    let flow_a = flow(&e, &key_a);
    let mut adopted = forward_entry(&flow_a).unwrap();
    adopted.progress.client_next = flow_a.client_next.wrapping_add(1000);
    adopted.progress.last_seen_ms = T0 + 500;
    // And an entry for a service no longer protected: refused, not kept.
    let unprotected = FlowKey {
        server_port: 9999,
        ..key_a
    };
    let report = e.adopt_forwarded_flows(T0 + 1000, vec![(key_a, adopted), (unprotected, adopted)]);
    assert_eq!((report.duplicate, report.not_protected), (1, 1));
    // Folded in at adoption already.
    let after = flow(&e, &key_a);
    assert_eq!(after.client_next, adopted.progress.client_next);
    // Meanwhile the program forwarded 500 bytes more.
    let mut newer = adopted.progress;
    newer.client_next = newer.client_next.wrapping_add(500);
    newer.last_seen_ms = T0 + 900;
    e.set_forward_progress_source(Box::new(CountingSource(reads.clone(), Some(newer))));
    e.enable_fast_path();
    // Adoption precedes the fast path, so the engine's first sync names
    // both flows as the I/O layer does (`Runner::set_fast_path`).
    let out = drain(&mut e, T0 + 1_000);
    let published: Vec<(FlowKey, u32)> = out
        .iter()
        .filter_map(|c| match c {
            TrackedChange::Publish(k, Some(entry)) => Some((*k, entry.progress.client_next)),
            _ => None,
        })
        .collect();
    assert!(published.contains(&(key_a, newer.client_next)), "{out:?}");
    assert!(published.iter().any(|(k, _)| *k == key_b), "{out:?}");
    assert_eq!(reads.load(Ordering::Relaxed), 1, "A once, B never");
    assert!(e.fast_path.adopted.is_empty());
}
