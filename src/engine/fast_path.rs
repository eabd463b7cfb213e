//! The engine's side of the XDP fast path (design.md section 8):
//! what the program needs to act for the engine, as plain data.
//!
//! Owns the parameter snapshot (cookie key, slot, SYN-ACK fields, when SYNs
//! are stateless, invalid-ACK policy, protected services with their option
//! offer masks), the list of tracked 4-tuples that changed (flows and
//! half-open entries: the program passes their segments up), and the
//! deadlines of tuples the program tracked on its own. Never touches BPF
//! maps, sockets or clocks: `src/io/xdp` applies what this produces, once
//! per I/O batch, before the batch's frames are sent.
//!
//! The race this solves: after a valid cookie ACK the client may send more
//! segments at once; only the first still carries a valid cookie. The
//! program therefore inserts the tuple itself when it passes a valid cookie
//! ACK up and reports it through a queue; [`Engine::note_fast_path_tracked`]
//! gives each such tuple a deadline. When the engine creates the flow the
//! tuple is re-published as the engine's; at the deadline a tuple the
//! engine does not track (its ACK was lost, or the engine refused it) is
//! unpublished. A heap of deadlines, so no sweep of the map.
//!
//! Established flows: when a flow is ESTABLISHED and needs no correction
//! the program lacks (declined options, inserted timestamps), its tuple is
//! published with a [`ForwardEntry`] and the program translates and
//! redirects its segments itself; any state change unpublishes it. The
//! program records what forwarding changes ([`FlowProgress`]); the engine
//! reads it back through an injected [`ForwardProgressSource`] before it
//! acts on such a flow (a segment that came up, its idle timer, an export).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, SocketAddr};

use std::collections::HashSet;

use super::flow::{seq_ge, Flow, L2Template, WindowRescale};
use super::protected::canonical;
use super::service_profile::Offer;
use super::{Engine, FlowKey, InvalidAckAction, TcpState};

/// Bits of [`FastPathService::offer_mask`]: which SYN options the SYN-ACK
/// may offer (the backend supports them). Same values as `SG_OFFER_*` in
/// bpf/synguard_xdp.h.
pub const OFFER_TIMESTAMPS: u8 = 1 << 0;
pub const OFFER_SACK: u8 = 1 << 1;
pub const OFFER_WSCALE: u8 = 1 << 2;
pub const OFFER_ECN: u8 = 1 << 3;
/// Everything offered: a service whose server declined nothing lately.
pub const OFFER_ALL: u8 = OFFER_TIMESTAMPS | OFFER_SACK | OFFER_WSCALE | OFFER_ECN;

/// The mask the program applies for an engine [`Offer`].
fn offer_mask(o: Offer) -> u8 {
    [
        (o.timestamps, OFFER_TIMESTAMPS),
        (o.sack_permitted, OFFER_SACK),
        (o.window_scale, OFFER_WSCALE),
        (o.ecn, OFFER_ECN),
    ]
    .iter()
    .filter(|(offered, _)| *offered)
    .fold(0, |mask, (_, bit)| mask | bit)
}

/// How long a tuple the program tracked on its own stays without the
/// engine confirming it. The engine sees the ACK that made it within one
/// batch unless the kernel dropped it; a few seconds cover a loaded box.
pub const XDP_TRACKED_GRACE_MS: u64 = 5_000;

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
fn forwardable(f: &Flow) -> bool {
    f.state == TcpState::Established
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

/// One protected service as the program sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastPathService {
    pub addr: IpAddr,
    pub port: u16,
    pub offer_mask: u8,
}

/// Everything the program reads from its parameter map, as of `now_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FastPathParams {
    pub now_ms: u64,
    pub siphash_key: [u8; 16],
    pub slot_seconds: u32,
    /// SYNs are answered statelessly while `now_ms` < this.
    pub stateless_until_ms: u64,
    pub synack_mss_v4: u16,
    pub synack_mss_v6: u16,
    pub synack_window: u16,
    pub synack_wscale: u8,
    /// true: RST (within `rst_per_second`), false: drop.
    pub invalid_ack_rst: bool,
    pub rst_per_second: u32,
    pub services: Vec<FastPathService>,
}

/// A change to the program's set of tracked tuples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackedChange {
    /// The engine tracks this tuple (flow or half-open entry); with an
    /// entry when the program forwards the flow's segments itself (and
    /// without one, it must stop doing so).
    Publish(FlowKey, Option<ForwardEntry>),
    /// It no longer does.
    Unpublish(FlowKey),
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
            server_fin_end: None,
            backend_syn: Vec::new(),
            backend_syn_sent: r.backend_syn_sent,
            held: Vec::new(),
            held_bytes: 0,
            timer_at: p.last_seen_ms.saturating_add(idle_timeout_ms),
            last_seen: p.last_seen_ms,
            opened_ms: r.opened_ms,
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
        }
    }

    /// Take what the program saw after the engine: the furthest sequence
    /// numbers and largest windows, and its last values when it saw the
    /// flow last (the engine's own segment otherwise).
    fn fold_into(&self, f: &mut Flow) {
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

#[derive(Default)]
pub(super) struct FastPathState {
    enabled: bool,
    /// Tuples the program tracked on its own, by deadline.
    pending: BinaryHeap<Reverse<(u64, FlowKey)>>,
    scratch: Vec<FlowKey>,
    /// Flows published with a [`ForwardEntry`].
    forwarded: HashSet<FlowKey>,
    /// Flows to look at again when they are `FORWARD_AFTER_MS` old.
    forward_due: BinaryHeap<Reverse<(u64, FlowKey)>>,
    progress: Option<Box<dyn ForwardProgressSource>>,
}

impl std::fmt::Debug for FastPathState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPathState")
            .field("enabled", &self.enabled)
            .field("pending", &self.pending.len())
            .field("forwarded", &self.forwarded.len())
            .finish()
    }
}

impl Engine {
    /// Start producing tracked-tuple changes (the XDP fast path is on).
    pub fn enable_fast_path(&mut self) {
        self.fast_path.enabled = true;
        self.flows.log_changes();
        self.half_open.log_changes();
    }

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
    /// imported as a flow file's are (same checks and report).
    pub fn adopt_forwarded_flows(
        &mut self,
        entries: Vec<(FlowKey, ForwardEntry)>,
    ) -> super::ImportReport {
        let idle = self.cfg.established_idle_timeout_ms;
        let flows = entries
            .into_iter()
            .map(|(k, e)| (k, e.to_flow(idle)))
            .collect();
        self.import_flows(flows)
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
    pub(super) fn fold_forward_progress(&self, key: &FlowKey) {
        if !self.fast_path.forwarded.contains(key) {
            return;
        }
        if let Some(p) = self.fast_path.progress.as_ref().and_then(|s| s.read(key)) {
            self.flows.with(key, |f| p.fold_into(f));
        }
    }

    /// True when the engine tracks the tuple (flow or half-open entry).
    pub fn is_tracked(&self, key: &FlowKey) -> bool {
        self.flows.contains(key) || self.half_open.contains(key)
    }

    /// The parameter snapshot for the program.
    pub fn fast_path_params(&self, now_ms: u64) -> FastPathParams {
        let mut p = FastPathParams::default();
        self.fill_fast_path_params(now_ms, &mut p);
        p
    }

    /// [`Engine::fast_path_params`] into `out`, reusing its service list:
    /// the I/O layer asks once per batch and allocates nothing.
    pub fn fill_fast_path_params(&self, now_ms: u64, out: &mut FastPathParams) {
        let mut services = std::mem::take(&mut out.services);
        services.clear();
        services.extend(self.cfg.protected.iter().map(|s: &SocketAddr| {
            let addr = canonical(s.ip());
            FastPathService {
                addr,
                port: s.port(),
                // What the service's server is not known to decline
                // (service_profile.rs), as the engine offers it too.
                offer_mask: offer_mask(self.profiles.offer((addr, s.port()), now_ms)),
            }
        }));
        *out = FastPathParams {
            now_ms,
            siphash_key: self.minter.siphash_key(),
            slot_seconds: self.minter.slot_seconds().min(u64::from(u32::MAX)) as u32,
            stateless_until_ms: self.cookie_mode.stateless_until_ms(),
            synack_mss_v4: self.cfg.synack_mss_v4,
            synack_mss_v6: self.cfg.synack_mss_v6,
            synack_window: self.cfg.synack_window,
            synack_wscale: self.cfg.synack_wscale,
            invalid_ack_rst: self.cfg.invalid_ack_action == InvalidAckAction::Rst,
            rst_per_second: self.cfg.rst_per_second,
            services,
        };
    }

    /// The program answered `syns` SYNs statelessly since the last call: if
    /// the half-open queue is still full they are overflows, and auto mode
    /// holds cookie mode from now (as when the engine answers them itself).
    pub fn note_fast_path_syns(&mut self, now_ms: u64, syns: u64) {
        if syns > 0 && self.half_open.is_full() {
            self.cookie_mode.note_overflow(now_ms);
            self.publish_cookie_mode(now_ms);
        }
    }

    /// The program tracked `key` on its own (it passed a valid cookie ACK
    /// up): unpublish it at `now_ms` + grace unless the engine tracks it then.
    pub fn note_fast_path_tracked(&mut self, now_ms: u64, key: FlowKey) {
        if self.fast_path.enabled {
            self.fast_path
                .pending
                .push(Reverse((now_ms + XDP_TRACKED_GRACE_MS, key)));
        }
    }

    /// Append the tracked-tuple changes since the last call to `out`: each
    /// touched tuple once, published if the engine tracks it now, else
    /// unpublished (so the order of inserts and removes within a batch does
    /// not matter). Includes program-made tuples whose deadline passed.
    pub fn drain_tracked_changes(&mut self, now_ms: u64, out: &mut Vec<TrackedChange>) {
        if !self.fast_path.enabled {
            return;
        }
        let mut touched = std::mem::take(&mut self.fast_path.scratch);
        self.flows.drain_touched(&mut touched);
        self.half_open.drain_touched(&mut touched);
        while let Some(Reverse((at, key))) = self.fast_path.pending.peek().copied() {
            if at > now_ms {
                break;
            }
            self.fast_path.pending.pop();
            touched.push(key);
        }
        // Flows old enough now; one that ended meanwhile has nothing left
        // to change.
        while let Some(Reverse((at, key))) = self.fast_path.forward_due.peek().copied() {
            if at > now_ms {
                break;
            }
            self.fast_path.forward_due.pop();
            if self.flows.contains(&key) {
                touched.push(key);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for key in touched.drain(..) {
            if !self.is_tracked(&key) {
                self.fast_path.forwarded.remove(&key);
                out.push(TrackedChange::Unpublish(key));
                continue;
            }
            // Forwarding needs the program's progress read back.
            let source = self.fast_path.progress.as_ref();
            let young = self
                .flows
                .with(&key, |f| {
                    (!forwardable(f) || bytes_carried(f) < FORWARD_AFTER_BYTES)
                        .then_some(f.opened_ms + FORWARD_AFTER_MS)
                })
                .flatten()
                .filter(|&due| due > now_ms);
            if let (Some(due), false) = (young, self.fast_path.forwarded.contains(&key)) {
                // Not yet: the engine forwards it meanwhile.
                self.fast_path.forward_due.push(Reverse((due, key)));
                out.push(TrackedChange::Publish(key, None));
                continue;
            }
            if !self.fast_path.forwarded.contains(&key) {
                // An entry left by an earlier process (adopted maps) has
                // newer progress than a flow restored from the flow file.
                if let Some(p) = source.and_then(|s| s.read(&key)) {
                    self.flows.with(&key, |f| p.fold_into(f));
                }
            }
            let entry = source.and_then(|_| self.flows.with(&key, |f| forward_entry(f)).flatten());
            if entry.is_some() {
                if !self.fast_path.forwarded.insert(key) {
                    // Already the program's: writing the entry again would
                    // put the engine's older progress over the program's.
                    continue;
                }
            } else if self.fast_path.forwarded.contains(&key) {
                // Its last progress, before the program stops recording it.
                self.fold_forward_progress(&key);
                self.fast_path.forwarded.remove(&key);
            }
            out.push(TrackedChange::Publish(key, entry));
        }
        self.fast_path.scratch = touched;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cookie::CookieSecret;
    use crate::engine::{EngineConfig, SyncookieMode};

    fn key(port: u16) -> FlowKey {
        FlowKey {
            client: "198.18.0.1".parse().unwrap(),
            server: "198.18.0.2".parse().unwrap(),
            client_port: port,
            server_port: 8080,
        }
    }

    fn engine(mode: SyncookieMode) -> Engine {
        Engine::new(
            EngineConfig {
                protected: vec!["198.18.0.2:8080".parse().unwrap()],
                syncookies: mode,
                ..EngineConfig::default()
            },
            CookieSecret::from_bytes([3; 16]),
        )
    }

    #[test]
    fn nothing_is_logged_until_enabled() {
        let mut e = engine(SyncookieMode::Always);
        e.note_fast_path_tracked(0, key(1));
        let mut out = Vec::new();
        e.drain_tracked_changes(u64::MAX, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn program_made_tuples_expire_at_their_deadline_only() {
        let mut e = engine(SyncookieMode::Always);
        e.enable_fast_path();
        e.note_fast_path_tracked(1_000, key(1));
        e.note_fast_path_tracked(2_000, key(2));
        let mut out = Vec::new();
        e.drain_tracked_changes(1_000 + XDP_TRACKED_GRACE_MS - 1, &mut out);
        assert!(out.is_empty());
        e.drain_tracked_changes(1_000 + XDP_TRACKED_GRACE_MS, &mut out);
        assert_eq!(out, [TrackedChange::Unpublish(key(1))]);
        out.clear();
        e.drain_tracked_changes(10_000, &mut out);
        assert_eq!(out, [TrackedChange::Unpublish(key(2))]);
    }

    #[test]
    fn params_follow_the_config_and_the_cookie_mode() {
        let e = engine(SyncookieMode::Always);
        let p = e.fast_path_params(5);
        assert_eq!(p.stateless_until_ms, u64::MAX);
        assert_eq!(p.siphash_key, [3; 16]);
        assert_eq!(p.slot_seconds, 64);
        assert_eq!(p.services.len(), 1);
        assert_eq!(p.services[0].offer_mask, OFFER_ALL);
        assert_eq!(
            engine(SyncookieMode::Off)
                .fast_path_params(5)
                .stateless_until_ms,
            0
        );
        assert_eq!(
            engine(SyncookieMode::Auto)
                .fast_path_params(5)
                .stateless_until_ms,
            0
        );
    }
}
