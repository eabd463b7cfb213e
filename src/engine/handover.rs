//! Flow handover between two runs of the gateway: the engine's flows as
//! plain data for a graceful stop ([`Engine::export_flows`]), and taking
//! such flows back at start ([`Engine::import_flows`]) with the checks a
//! new configuration needs. Never reads or writes files (`crate::flow_file`
//! does) and never carries half-open entries: a handshake in progress is
//! finished by the client's retransmission (its ACK still validates as a
//! cookie when the secret is kept in `cookies.secret_file`).

use super::counters::add_signed;
use super::flow::{Flow, FlowKey};
use super::state::{CloseEvent, TcpState};
use super::timers::TimerTarget;
use super::Engine;

/// What [`Engine::import_flows`] did with the flows it was given.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    /// Flows now in the table, with their timers armed.
    pub restored: usize,
    /// Flows of a service this configuration no longer protects.
    pub not_protected: usize,
    /// Flows the table had no room for (`limits.max_flows`), or whose
    /// held early data would exceed `limits.held_bytes_total`.
    pub no_room: usize,
    /// Flows whose 4-tuple the table already had (a repeated key).
    pub duplicate: usize,
    /// Flows that cannot be right (a damaged or hand-edited file): an
    /// Ethernet header of impossible length, or held data whose byte count
    /// does not match the frames held.
    pub invalid: usize,
}

impl ImportReport {
    /// Flows given but not restored.
    pub fn skipped(&self) -> usize {
        self.not_protected + self.no_room + self.duplicate + self.invalid
    }
}

impl Engine {
    /// A copy of every tracked flow, in key order (stable output for a file
    /// and for tests). Half-open entries are not flows and are not included.
    pub fn export_flows(&self) -> Vec<(FlowKey, Flow)> {
        let mut out: Vec<(FlowKey, Flow)> = self
            .flows
            .shared()
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        // What the XDP program did since, into the copies.
        for (key, f) in &mut out {
            if !self.fast_path.forwarded.contains(key) {
                continue;
            }
            if let Some(p) = self.forward_progress(key) {
                if p.fold_into(f) {
                    f.state = f.state.on(CloseEvent::ServerFin);
                }
            }
        }
        out.sort_unstable_by_key(|(k, _)| *k);
        out
    }

    /// Take flows exported by an earlier run into the table. Timers keep
    /// their deadlines (engine clock: the flow file puts them on this
    /// process's, flow_file.rs), so those that passed while no process ran
    /// fire on the next tick: the caller runs one before any frame, and
    /// idle flows and TIME_WAIT end then. TIME_WAIT flows queue for
    /// eviction in deadline order, the order they entered it. The XDP fast
    /// path, when on, learns the tuples like any new flow's.
    pub fn import_flows(&mut self, flows: Vec<(FlowKey, Flow)>) -> ImportReport {
        let mut report = ImportReport::default();
        let mut time_wait = Vec::new();
        for (key, flow) in flows {
            let held: usize = flow.held.iter().map(Vec::len).sum();
            if !flow.l2.is_valid() || held != flow.held_bytes {
                report.invalid += 1;
                continue;
            }
            if !self.protected.contains(key.server, key.server_port) {
                report.not_protected += 1;
                continue;
            }
            if self.flows.contains(&key) {
                report.duplicate += 1;
                continue;
            }
            if self.held_total + flow.held_bytes > self.cfg.held_bytes_total
                || !self.flows.make_room()
            {
                report.no_room += 1;
                continue;
            }
            let (state, timer_at, held) = (flow.state, flow.timer_at, flow.held_bytes);
            self.held_total += held;
            add_signed(&self.counters.held_bytes, held as i64);
            self.flows.insert(key, flow);
            if state == TcpState::TimeWait {
                time_wait.push((timer_at, key));
            }
            self.timers.schedule(timer_at, TimerTarget::Flow(key));
            report.restored += 1;
        }
        time_wait.sort_unstable();
        for (_, key) in time_wait {
            self.flows.note_time_wait(key);
        }
        report
    }
}
