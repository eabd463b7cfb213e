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
//! program therefore inserts the tuple itself when it hands a valid cookie
//! ACK on (up, or as the backend SYN) and reports it through a queue;
//! [`Engine::note_fast_path_tracked`] gives each such tuple a deadline.
//! When the engine creates the flow the tuple is re-published as the
//! engine's; at the deadline a tuple the engine does not track (its ACK was
//! lost, or the engine refused it) is unpublished. A heap of deadlines, so
//! no sweep of the map.
//!
//! A tracked flow's change also says whether the program forwards its
//! segments (`super::forward` decides).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::net::{IpAddr, SocketAddr};

use super::forward::{ForwardEntry, ForwardProgressSource};
use super::protected::canonical;
use super::service_profile::{Offer, SynOption};
use super::{Engine, FlowKey, InvalidAckAction};

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

/// One protected service as the program sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastPathService {
    pub addr: IpAddr,
    pub port: u16,
    pub offer_mask: u8,
    /// Its backend is down: its SYNs go to the engine, which bridges them
    /// (`pass_through.rs`).
    pub syns_up: bool,
    /// No longer protected since a reload (`protected.rs`): only its
    /// connections are the engine's, everything else is bridged.
    pub retired: bool,
    /// Added by a reload and taking over older connections: its segments
    /// that are no connection of the engine's (no tracked tuple, no valid
    /// cookie) are bridged; the engine takes the connection over at the
    /// server's next segment.
    pub adopting: bool,
    /// Its server accepted timestamps the last time a backend SYN offered
    /// them (`service_profile.rs`): the backend SYN carries the client's
    /// MSS, not 12 less (`handshake.rs` TIMESTAMP_OPTION_SPACE).
    pub timestamps_accepted: bool,
}

/// Everything the program reads from its parameter map, as of `now_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FastPathParams {
    /// Engine clock (monotonic ms) when taken.
    pub now_ms: u64,
    /// Wall clock minus engine clock, ms: cookie slots are on the wall
    /// clock (`cookie_clock.rs`).
    pub wall_offset_ms: i64,
    pub siphash_key: [u8; 16],
    /// The key accepted besides `siphash_key` (`CookieMinter::accepted_key`)
    /// and the wall-clock second it is accepted until (exclusive; 0: none,
    /// `u64::MAX`: while the secret file names it).
    pub accepted_key: [u8; 16],
    pub accepted_until_secs: u64,
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
    /// `send_budget::RST_PER_SOURCE_PER_SECOND`.
    pub rst_per_source: u32,
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
    /// A backend handshake the program started is the engine's from now
    /// on (a client segment came up before the server answered, or the
    /// flow ended): the program must not complete it.
    EndHandshake(FlowKey),
}

#[derive(Default)]
pub(super) struct FastPathState {
    pub(super) enabled: bool,
    /// Tuples the program tracked on its own, by deadline.
    pending: BinaryHeap<Reverse<(u64, FlowKey)>>,
    scratch: Vec<FlowKey>,
    /// Flows published with a [`ForwardEntry`].
    pub(super) forwarded: HashSet<FlowKey>,
    /// Flows to look at again when they are `FORWARD_AFTER_MS` old.
    pub(super) forward_due: BinaryHeap<Reverse<(u64, FlowKey)>>,
    /// The flows with an age look in `forward_due` (at most one each).
    pub(super) forward_due_keys: HashSet<FlowKey>,
    pub(super) progress: Option<Box<dyn ForwardProgressSource>>,
    /// Flows whose entry an earlier process left in the adopted map, not
    /// yet published by this engine.
    pub(super) adopted: HashSet<FlowKey>,
    /// Backend handshakes the program started and may still complete
    /// (`program_events.rs`), and those the engine took over since the
    /// last drain.
    pub(super) program_handshakes: HashSet<FlowKey>,
    pub(super) ended_handshakes: Vec<FlowKey>,
    /// A report of the program's is being replayed: what it did is not a
    /// take-over.
    pub(super) replaying: bool,
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
    /// The engine handles a segment of a backend handshake the program
    /// started: from now on the handshake is the engine's.
    pub(super) fn take_over_handshake(&mut self, key: &FlowKey) {
        if !self.fast_path.replaying && self.fast_path.program_handshakes.remove(key) {
            self.fast_path.ended_handshakes.push(*key);
        }
    }

    /// Start producing tracked-tuple changes (the XDP fast path is on).
    pub fn enable_fast_path(&mut self) {
        self.fast_path.enabled = true;
        self.flows.log_changes();
        self.half_open.log_changes();
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
                syns_up: self.backend_health.is_down((addr, s.port())),
                retired: false,
                adopting: self.protected.is_adopting(addr, s.port(), now_ms),
                timestamps_accepted: self
                    .profiles
                    .accepted((addr, s.port()), SynOption::Timestamps),
            }
        }));
        services.extend(
            self.protected
                .retired()
                .iter()
                .map(|&(addr, port)| FastPathService {
                    addr,
                    port,
                    offer_mask: 0,
                    syns_up: false,
                    retired: true,
                    adopting: false,
                    timestamps_accepted: false,
                }),
        );
        let (accepted_key, accepted_until_secs) = self
            .minter
            .accepted_key(self.cookie_clock.seconds(now_ms))
            .map_or(([0; 16], 0), |(k, until)| (*k.key(), until));
        *out = FastPathParams {
            now_ms,
            wall_offset_ms: self.cookie_clock.offset_ms(),
            siphash_key: self.minter.siphash_key(),
            accepted_key,
            accepted_until_secs,
            slot_seconds: self.minter.slot_seconds().min(u64::from(u32::MAX)) as u32,
            stateless_until_ms: self.cookie_mode.stateless_until_ms(),
            synack_mss_v4: self.synack_mss_v4(),
            synack_mss_v6: self.synack_mss_v6(),
            synack_window: self.cfg.synack_window,
            synack_wscale: self.cfg.synack_wscale,
            invalid_ack_rst: self.cfg.invalid_ack_action == InvalidAckAction::Rst,
            rst_per_second: self.cfg.rst_per_second,
            rst_per_source: super::send_budget::RST_PER_SOURCE_PER_SECOND,
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
            self.fast_path.forward_due_keys.remove(&key);
            if self.flows.contains(&key) {
                touched.push(key);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        out.extend(
            self.fast_path
                .ended_handshakes
                .drain(..)
                .map(TrackedChange::EndHandshake),
        );
        for key in touched.drain(..) {
            if !self.is_tracked(&key) {
                self.fast_path.forwarded.remove(&key);
                self.fast_path.adopted.remove(&key);
                if self.fast_path.program_handshakes.remove(&key) {
                    out.push(TrackedChange::EndHandshake(key));
                }
                out.push(TrackedChange::Unpublish(key));
                continue;
            }
            // Forwarding needs the program's progress read back.
            if let Some(change) = self.forward_change(now_ms, key) {
                out.push(change);
            }
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
