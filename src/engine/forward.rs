//! Established flows handed to the XDP program (design.md section 8):
//! which flows it may forward (ESTABLISHED, nothing only the engine
//! corrects, old or busy enough to be worth the map writes), what it is
//! told about one ([`ForwardEntry`]), what it records while forwarding
//! ([`FlowProgress`], read back through an injected
//! [`ForwardProgressSource`] before the engine acts on such a flow), and
//! the rebuilding of flows from the entries an earlier process left.
//!
//! Never touches BPF maps or clocks: `src/io/xdp` writes the entries
//! `fast_path::Engine::drain_tracked_changes` produces and implements the
//! progress source.

use std::cmp::Reverse;

use super::fast_path::TrackedChange;
use super::flow::{seq_ge, Flow, L2Template, WindowRescale};
use super::{Engine, FlowKey, TcpState};

/// How long a flow has been open (since its backend SYN), or how many
/// bytes it carried (both directions), before the program takes over
/// forwarding it. Publishing and unpublishing cost map writes and reads
/// (syscalls) that a short connection never pays back: measured with ab (a
/// new connection per request), publishing every flow at once cut the
/// connection rate. A request/response connection is over within both; a
/// transfer passes the bytes in a few milliseconds, a long-lived session
/// the time.
pub const FORWARD_AFTER_MS: u64 = 100;
pub const FORWARD_AFTER_BYTES: u64 = 64 * 1024;

/// See [`forward_entry`].
pub(super) fn forwardable(f: &Flow) -> bool {
    f.state == TcpState::Established
        && f.client_fin_pending.is_none()
        && f.held.is_empty()
        && !f.sack_declined
        && !f.ecn_declined
        && f.timestamps == f.client_timestamps
}

/// Bytes the flow carried, both directions (sequence space used past the
/// SYNs).
fn bytes_carried(f: &Flow) -> u64 {
    u64::from(f.client_next.wrapping_sub(f.client_isn.wrapping_add(1)))
        + u64::from(f.server_next.wrapping_sub(f.server_isn.wrapping_add(1)))
}

/// What forwarding a flow's segments changes in it (the fields of [`Flow`]
/// of the same names; `last_seen_ms` is `Flow::last_seen`, engine clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowProgress {
    pub last_seen_ms: u64,
    pub client_next: u32,
    pub server_next: u32,
    pub client_window_max: u32,
    pub server_window_max: u32,
    pub client_last_tsval: u32,
    pub server_last_tsval: u32,
    pub client_last_window: u16,
    pub server_last_window: u16,
    /// The server's FIN, which the program forwards itself (so it reaches
    /// the client right after the data it follows): `Flow::server_fin_end`.
    pub server_fin_end: Option<u32>,
}

/// Everything the program needs to translate an established flow as
/// `established.rs` does, the progress it starts from, and the rest of the
/// flow, so a new process can rebuild the flow from the program's map
/// alone (after a crash, when no flow file was written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardEntry {
    pub seq_delta: u32,
    pub ts_offset: u32,
    pub timestamps: bool,
    pub client_to_server_window: WindowRescale,
    pub server_to_client_window: WindowRescale,
    pub progress: FlowProgress,
    pub rest: FlowRest,
}

/// The fields of an established [`Flow`] the program never reads (same
/// names), except the per-state ones an established flow has no use for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRest {
    pub l2: L2Template,
    pub client_isn: u32,
    pub gateway_isn: u32,
    pub gateway_tsval: u32,
    pub server_isn: u32,
    pub gateway_last_tsval: u32,
    pub client_mss: u16,
    pub client_wscale: Option<u8>,
    pub client_timestamps: bool,
    pub client_sack: bool,
    pub client_ecn: bool,
    pub backend_syn_sent: u8,
    pub opened_ms: u64,
}

impl ForwardEntry {
    /// The engine's flow again, ESTABLISHED, its idle timer due
    /// `idle_timeout_ms` after it was last seen.
    pub fn to_flow(&self, idle_timeout_ms: u64) -> Flow {
        let (p, r) = (&self.progress, &self.rest);
        Flow {
            state: TcpState::Established,
            l2: r.l2,
            client_isn: r.client_isn,
            gateway_isn: r.gateway_isn,
            seq_delta: self.seq_delta,
            gateway_tsval: r.gateway_tsval,
            ts_offset: self.ts_offset,
            timestamps: self.timestamps,
            client_timestamps: r.client_timestamps,
            client_sack: r.client_sack,
            client_ecn: r.client_ecn,
            // Published flows declined nothing (forward_entry).
            sack_declined: false,
            ecn_declined: false,
            gateway_last_tsval: r.gateway_last_tsval,
            server_last_tsval: p.server_last_tsval,
            server_last_window: p.server_last_window,
            client_mss: r.client_mss,
            server_syn: None,
            client_to_server_window: self.client_to_server_window,
            server_to_client_window: self.server_to_client_window,
            client_wscale: r.client_wscale,
            client_last_tsval: p.client_last_tsval,
            client_last_window: p.client_last_window,
            server_isn: r.server_isn,
            client_next: p.client_next,
            server_next: p.server_next,
            client_window_max: p.client_window_max,
            server_window_max: p.server_window_max,
            client_fin_end: None,
            client_fin_pending: None,
            server_fin_end: None,
            backend_syn: Vec::new(),
            backend_syn_sent: r.backend_syn_sent,
            held: Vec::new(),
            held_bytes: 0,
            timer_at: p.last_seen_ms.saturating_add(idle_timeout_ms),
            last_seen: p.last_seen_ms,
            opened_ms: r.opened_ms,
            last_challenge_ms: None,
        }
    }
}

/// Reads the progress the program recorded for a published flow (the I/O
/// layer's map; tests inject their own). `None`: no entry (any more).
pub trait ForwardProgressSource: Send {
    fn read(&self, key: &FlowKey) -> Option<FlowProgress>;
}

impl FlowProgress {
    pub fn of(f: &Flow) -> FlowProgress {
        FlowProgress {
            last_seen_ms: f.last_seen,
            client_next: f.client_next,
            server_next: f.server_next,
            client_window_max: f.client_window_max,
            server_window_max: f.server_window_max,
            client_last_tsval: f.client_last_tsval,
            server_last_tsval: f.server_last_tsval,
            client_last_window: f.client_last_window,
            server_last_window: f.server_last_window,
            server_fin_end: f.server_fin_end,
        }
    }

    /// Take what the program saw after the engine: the furthest sequence
    /// numbers and largest windows, its last values when it saw the flow
    /// last (the engine's own segment otherwise), and the server's FIN.
    /// True when that FIN is news: the caller moves the flow on
    /// (`CloseEvent::ServerFin`), as for a FIN it forwarded itself.
    pub(super) fn fold_into(&self, f: &mut Flow) -> bool {
        if seq_ge(self.client_next, f.client_next) {
            f.client_next = self.client_next;
        }
        if seq_ge(self.server_next, f.server_next) {
            f.server_next = self.server_next;
        }
        f.client_window_max = f.client_window_max.max(self.client_window_max);
        f.server_window_max = f.server_window_max.max(self.server_window_max);
        if self.last_seen_ms >= f.last_seen {
            f.last_seen = self.last_seen_ms;
            f.client_last_tsval = self.client_last_tsval;
            f.server_last_tsval = self.server_last_tsval;
            f.client_last_window = self.client_last_window;
            f.server_last_window = self.server_last_window;
        }
        match self.server_fin_end {
            Some(end) if f.server_fin_end.is_none() => {
                f.server_fin_end = Some(end);
                true
            }
            _ => false,
        }
    }
}

/// The entry for a flow the program can forward exactly as the engine
/// would: ESTABLISHED, nothing held, and no correction the program does
/// not make (an option the server declined: NOP-ing SACK blocks or
/// timestamps, clearing ECN, inserting timestamps).
pub fn forward_entry(f: &Flow) -> Option<ForwardEntry> {
    forwardable(f).then(|| ForwardEntry {
        seq_delta: f.seq_delta,
        ts_offset: f.ts_offset,
        timestamps: f.timestamps,
        client_to_server_window: f.client_to_server_window,
        server_to_client_window: f.server_to_client_window,
        progress: FlowProgress::of(f),
        rest: FlowRest {
            l2: f.l2,
            client_isn: f.client_isn,
            gateway_isn: f.gateway_isn,
            gateway_tsval: f.gateway_tsval,
            server_isn: f.server_isn,
            gateway_last_tsval: f.gateway_last_tsval,
            client_mss: f.client_mss,
            client_wscale: f.client_wscale,
            client_timestamps: f.client_timestamps,
            client_sack: f.client_sack,
            client_ecn: f.client_ecn,
            backend_syn_sent: f.backend_syn_sent,
            opened_ms: f.opened_ms,
        },
    })
}

impl Engine {
    /// Where the progress of forwarded flows is read (the I/O layer's map).
    pub fn set_forward_progress_source(&mut self, source: Box<dyn ForwardProgressSource>) {
        self.fast_path.progress = Some(source);
    }

    /// Is the flow published for the program to forward?
    pub fn is_forwarded(&self, key: &FlowKey) -> bool {
        self.fast_path.forwarded.contains(key)
    }

    /// Flows the program forwarded for an earlier process (read from its
    /// adopted map after a crash): rebuilt as ESTABLISHED flows and
    /// imported as a flow file's are (same checks and report). A flow the
    /// flow file restored already keeps the file's state and takes the
    /// entry's progress, which is newer: the program went on forwarding
    /// after the file was written. The program still forwards them all
    /// until the engine publishes them, so each one's progress is read
    /// again right before that (`forward_change`). A last-seen time after
    /// `now_ms` (engine clock) is taken as `now_ms`: an entry written on
    /// another clock (earlier builds kept the wall clock there)
    /// would otherwise never go idle.
    pub fn adopt_forwarded_flows(
        &mut self,
        now_ms: u64,
        mut entries: Vec<(FlowKey, ForwardEntry)>,
    ) -> super::ImportReport {
        for (_, e) in &mut entries {
            e.progress.last_seen_ms = e.progress.last_seen_ms.min(now_ms);
        }
        for (key, e) in &entries {
            if self.flows.with(key, |f| e.progress.fold_into(f)) == Some(true) {
                self.on_server_fin_forwarded(now_ms, key);
            }
        }
        let keys: Vec<FlowKey> = entries.iter().map(|(k, _)| *k).collect();
        let idle = self.cfg.established_idle_timeout_ms;
        let flows = entries
            .into_iter()
            .map(|(k, e)| (k, e.to_flow(idle)))
            .collect();
        let report = self.import_flows(flows);
        // Only those the engine has: a refused one's entry is pruned.
        let adopted = keys.into_iter().filter(|k| self.flows.contains(k));
        self.fast_path.adopted.extend(adopted);
        report
    }

    /// The engine forwarded a segment of `key` itself: a young flow that
    /// has carried `FORWARD_AFTER_BYTES` is a transfer, handed over at the
    /// next drain instead of at its age.
    pub(super) fn note_engine_forwarded(&mut self, now_ms: u64, key: &FlowKey) {
        if self.fast_path.progress.is_none() || self.fast_path.forwarded.contains(key) {
            return;
        }
        // Only a flow the program can take: another would queue an entry
        // per segment for ever.
        let transfer = self.flows.with(key, |f| {
            forwardable(f) && bytes_carried(f) >= FORWARD_AFTER_BYTES
        });
        if transfer == Some(true) {
            self.fast_path.forward_due.push(Reverse((now_ms, *key)));
        }
    }

    /// The flows published for the program to forward.
    pub fn forwarded_keys(&self) -> Vec<FlowKey> {
        self.fast_path.forwarded.iter().copied().collect()
    }

    /// Bring a forwarded flow up to date with what the program did, before
    /// the engine acts on it.
    pub(super) fn fold_forward_progress(&mut self, now_ms: u64, key: &FlowKey) {
        // Without a source (XDP off) nothing is forwarded: the per-segment
        // cost is this check, not a hash of the key.
        if self.fast_path.progress.is_some() && self.fast_path.forwarded.contains(key) {
            self.fold_progress_from_source(now_ms, key);
        }
    }

    /// What the program recorded for `key`, if it has an entry.
    pub(super) fn forward_progress(&self, key: &FlowKey) -> Option<FlowProgress> {
        self.fast_path.progress.as_ref().and_then(|s| s.read(key))
    }

    /// The program's progress for `key`, folded in (any flow).
    fn fold_progress_from_source(&mut self, now_ms: u64, key: &FlowKey) {
        if let Some(p) = self.forward_progress(key) {
            if self.flows.with(key, |f| p.fold_into(f)) == Some(true) {
                self.on_server_fin_forwarded(now_ms, key);
            }
        }
    }

    /// The change to report for `key`, which the engine tracks: published
    /// for the program to forward once it may be (see `FORWARD_AFTER_MS`),
    /// published without an entry while it may not, nothing when the
    /// program forwards it already (writing the entry again would put the
    /// engine's older progress over the program's).
    ///
    /// Only a flow with an entry in the program's map has its progress
    /// read: a forwarded one before the program stops forwarding it, an
    /// adopted one before the engine's entry replaces the earlier
    /// process's. Measured with ab (a new connection per request): reading
    /// every changed tuple cost several failing lookups per connection and
    /// a third of the connection rate.
    pub(super) fn forward_change(&mut self, now_ms: u64, key: FlowKey) -> Option<TrackedChange> {
        if self.fast_path.forwarded.contains(&key) {
            if self.flows.with(&key, |f| forwardable(f)) == Some(true) {
                return None;
            }
            // Its last progress, before the program stops recording it.
            self.fold_forward_progress(now_ms, &key);
            self.fast_path.forwarded.remove(&key);
            return Some(TrackedChange::Publish(key, None));
        }
        // (may the program take it, is it still young, when it is old)
        let look = self.flows.with(&key, |f| {
            let can = forwardable(f);
            let young = !can || bytes_carried(f) < FORWARD_AFTER_BYTES;
            (can, young, f.opened_ms + FORWARD_AFTER_MS)
        });
        match (look, self.fast_path.progress.is_some()) {
            (Some((_, true, due)), _) if due > now_ms => {
                // Not yet: the engine forwards it meanwhile. One pending
                // look per flow, however many segments pass before.
                if self.fast_path.forward_due_keys.insert(key) {
                    self.fast_path.forward_due.push(Reverse((due, key)));
                }
                Some(TrackedChange::Publish(key, None))
            }
            (Some((true, _, _)), true) => {
                if self.fast_path.adopted.remove(&key) {
                    self.fold_progress_from_source(now_ms, &key);
                }
                let entry = self.flows.with(&key, |f| forward_entry(f)).flatten();
                if entry.is_some() {
                    self.fast_path.forwarded.insert(key);
                }
                Some(TrackedChange::Publish(key, entry))
            }
            _ => Some(TrackedChange::Publish(key, None)),
        }
    }
}
