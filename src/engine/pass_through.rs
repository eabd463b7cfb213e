//! Connections the gateway carries without having proxied them: flows whose
//! translation is the identity (sequence delta and timestamp offset 0, no
//! window rescaling, nothing corrected), so state tracking, timers and the
//! XDP fast path treat them as any other. Two kinds:
//! - SYNs of a service whose backend is down (`backend_health.rs`), bridged
//!   to the server instead of answered, so the client sees what it would
//!   without the gateway (the server's RST from a closed port, silence from
//!   a dead host); the server's SYN-ACK, once it listens again, opens the
//!   flow. Owns the memory of those SYNs.
//! - connections made while their service was not protected, taken over
//!   after a reload adds it: the first server segment of one (never a RST,
//!   which is how a server answers a forged segment) opens the flow; the
//!   client's segments before it are bridged.
//!
//! Never answers a segment itself.

use crate::wire::{tcp, TcpView};

use super::backend_health::Service;
use super::counters::{add_signed, bump};
use super::expiring_map::ExpiringMap;
use super::flow::{Flow, FlowKey, L2Template, WindowRescale};
use super::{DropReason, Engine, TcpState, Verdict};

/// How long a bridged SYN waits for the server's answer: Linux clients
/// retransmit a SYN for 63 s (`tcp_syn_retries` 6: 1, 2, 4, 8, 16, 32 s).
pub const BRIDGED_SYN_MS: u64 = 75_000;
/// Bridged SYNs remembered at once, the oldest forgotten first: a flood
/// while the backend is down costs at most this (about 100 bytes each).
pub const BRIDGED_SYNS: usize = 16_384;

/// What a bridged SYN said, for the flow its SYN-ACK opens.
#[derive(Debug, Clone, Copy)]
pub struct BridgedSyn {
    isn: u32,
    window: u16,
    mss: Option<u16>,
    wscale: Option<u8>,
    tsval: Option<u32>,
    sack_permitted: bool,
    l2: L2Template,
}

pub type BridgedSyns = ExpiringMap<FlowKey, BridgedSyn>;

pub fn bridged_syns() -> BridgedSyns {
    ExpiringMap::new(BRIDGED_SYN_MS, BRIDGED_SYNS)
}

/// What a flow with the identity translation is built from.
struct Sides {
    l2: L2Template,
    client_isn: u32,
    server_isn: u32,
    /// Where each stream stands: the next sequence number each side sends.
    client_next: u32,
    server_next: u32,
    /// Window scale of each side (0: none), and the client's as offered.
    client_shift: u8,
    server_shift: u8,
    client_wscale: Option<u8>,
    /// Last TSval of (client, server), if the connection uses timestamps.
    timestamps: Option<(u32, u32)>,
    client_sack: bool,
    client_mss: u16,
    /// Last window fields of each side, and the largest windows in bytes.
    client_window: u16,
    server_window: u16,
    client_window_max: u32,
    server_window_max: u32,
}

/// A flow the gateway carries unchanged: sequence delta and timestamp
/// offset 0, both sides' windows at their own scale, nothing to correct.
fn identity_flow(now_ms: u64, s: Sides) -> Flow {
    let (client_tsval, server_tsval) = s.timestamps.unwrap_or((0, 0));
    let same = |shift| WindowRescale {
        from_shift: shift,
        to_shift: shift,
    };
    Flow {
        state: TcpState::Established,
        l2: s.l2,
        client_isn: s.client_isn,
        // The gateway's "ISN" toward the client is the server's own.
        gateway_isn: s.server_isn,
        seq_delta: 0,
        gateway_tsval: server_tsval,
        ts_offset: 0,
        timestamps: s.timestamps.is_some(),
        client_timestamps: s.timestamps.is_some(),
        client_sack: s.client_sack,
        client_ecn: false,
        sack_declined: false,
        ecn_declined: false,
        gateway_last_tsval: server_tsval,
        server_last_tsval: server_tsval,
        server_last_window: s.server_window,
        client_mss: s.client_mss,
        server_syn: None,
        client_to_server_window: same(s.client_shift),
        server_to_client_window: same(s.server_shift),
        client_wscale: s.client_wscale,
        client_last_tsval: client_tsval,
        client_last_window: s.client_window,
        server_isn: s.server_isn,
        client_next: s.client_next,
        server_next: s.server_next,
        client_window_max: s.client_window_max,
        server_window_max: s.server_window_max,
        client_fin_end: None,
        client_fin_pending: None,
        server_fin_end: None,
        backend_syn: Vec::new(),
        backend_syn_sent: 0,
        held: Vec::new(),
        held_bytes: 0,
        timer_at: 0,
        last_seen: now_ms,
        opened_ms: now_ms,
        last_challenge_ms: None,
    }
}

/// The flow of a handshake the client and the server made themselves:
/// `syn` the client's SYN, `v` the server's SYN-ACK. Option use as RFC 7323
/// and RFC 2018 settle it: each only if both SYNs carried it.
fn pass_through_flow(now_ms: u64, syn: &BridgedSyn, v: &TcpView) -> Flow {
    let o = &v.options;
    let scaling = syn.wscale.is_some() && o.wscale.is_some();
    let shift = |w: Option<u8>| if scaling { w.unwrap_or(0) } else { 0 };
    let timestamps = syn
        .tsval
        .zip(o.timestamps)
        .map(|(client, (server, _))| (client, server));
    identity_flow(
        now_ms,
        Sides {
            l2: syn.l2,
            client_isn: syn.isn,
            server_isn: v.tcp.seq,
            client_next: syn.isn.wrapping_add(1),
            server_next: v.tcp.seq.wrapping_add(1),
            client_shift: shift(syn.wscale),
            server_shift: shift(o.wscale),
            client_wscale: syn.wscale,
            timestamps,
            client_sack: syn.sack_permitted && o.sack_permitted,
            client_mss: syn.mss.unwrap_or(536),
            client_window: syn.window,
            server_window: v.tcp.window,
            // SYN windows are never scaled (RFC 7323 2.2).
            client_window_max: u32::from(syn.window),
            server_window_max: u32::from(v.tcp.window),
        },
    )
}

/// The flow of a connection the gateway first sees mid-stream, from a
/// server segment `v` (in `frame`): where each side's stream stands is what
/// this segment says (its SEQ, and its ACK for the client's); the window
/// scales are unknown, so windows are tracked as if both used the largest
/// (RFC 7323 2.3: 14), which only widens the plausibility checks, and
/// timestamps are on if the segment has them. The segment itself is then
/// translated as any, so `server_next` is where it starts.
fn adopted_flow(now_ms: u64, frame: &[u8], v: &TcpView) -> Flow {
    const UNKNOWN_SCALE: u8 = 14;
    identity_flow(
        now_ms,
        Sides {
            // The server's frame: swapped into the client -> server direction.
            l2: L2Template::from_frame(frame, v.ip.l3_offset).to_client(),
            client_isn: v.tcp.ack.wrapping_sub(1),
            server_isn: v.tcp.seq.wrapping_sub(1),
            client_next: v.tcp.ack,
            server_next: v.tcp.seq,
            client_shift: UNKNOWN_SCALE,
            server_shift: UNKNOWN_SCALE,
            client_wscale: Some(UNKNOWN_SCALE),
            // (TSecr: the client's last TSval, TSval: the server's.)
            timestamps: v.options.timestamps.map(|(val, ecr)| (ecr, val)),
            client_sack: true,
            client_mss: 536,
            client_window: u16::MAX,
            server_window: v.tcp.window,
            client_window_max: u32::from(u16::MAX) << UNKNOWN_SCALE,
            server_window_max: u32::from(v.tcp.window) << UNKNOWN_SCALE,
        },
    )
}

impl Engine {
    /// A SYN for `service`, whose backend is down: remembered and passed to
    /// the server unchanged.
    pub(super) fn bridge_syn_while_down(
        &mut self,
        now_ms: u64,
        frame: &[u8],
        v: &TcpView,
        key: FlowKey,
    ) -> Verdict {
        let o = &v.options;
        let syn = BridgedSyn {
            isn: v.tcp.seq,
            window: v.tcp.window,
            mss: o.mss,
            wscale: o.wscale,
            tsval: o.timestamps.map(|(val, _)| val),
            sack_permitted: o.sack_permitted,
            l2: L2Template::from_frame(frame, v.ip.l3_offset),
        };
        self.bridged_syns.insert(now_ms, key, syn);
        bump(&self.counters.backend_down_syns);
        self.bridge()
    }

    /// A server segment for no flow: the answer to a bridged SYN, a
    /// connection older than its service's protection, or nothing the
    /// gateway knows of (`no_flow`).
    pub(super) fn server_segment_without_flow(
        &mut self,
        now_ms: u64,
        frame: &mut Vec<u8>,
        v: &TcpView,
        key: &FlowKey,
    ) -> Verdict {
        let Some(syn) = self.bridged_syns.get(now_ms, key).copied() else {
            return self.adopt_server_segment(now_ms, frame, v, key);
        };
        let flags = v.tcp.flags & (tcp::SYN | tcp::ACK | tcp::RST);
        if flags == tcp::SYN | tcp::ACK && v.tcp.ack == syn.isn.wrapping_add(1) {
            // The server completes handshakes again.
            self.bridged_syns.remove(key);
            if !self.flows.make_room() {
                return Verdict::Drop(DropReason::FlowTableFull);
            }
            self.flows.insert(*key, pass_through_flow(now_ms, &syn, v));
            self.arm_timer(key, now_ms + self.cfg.established_idle_timeout_ms);
            self.note_backend_success((key.server, key.server_port));
            return self.bridge();
        }
        if v.tcp.has(tcp::RST) {
            // Refused, as the client learns from this very RST.
            self.bridged_syns.remove(key);
            return self.bridge();
        }
        Verdict::Drop(DropReason::NoFlow)
    }

    /// A server segment of a connection made before its service was
    /// protected: taken over, then translated (the identity) as any flow's.
    fn adopt_server_segment(
        &mut self,
        now_ms: u64,
        frame: &mut Vec<u8>,
        v: &TcpView,
        key: &FlowKey,
    ) -> Verdict {
        if !self
            .protected
            .is_adopting(key.server, key.server_port, now_ms)
            || v.tcp.has(tcp::SYN)
        {
            return Verdict::Drop(DropReason::NoFlow);
        }
        if v.tcp.has(tcp::RST) {
            // Ends a connection the gateway does not carry (or answers a
            // segment it bridged): passed on as a bridge would.
            return self.bridge();
        }
        if !v.tcp.has(tcp::ACK) {
            return Verdict::Drop(DropReason::NoFlow);
        }
        if !self.flows.make_room() {
            return Verdict::Drop(DropReason::FlowTableFull);
        }
        self.flows.insert(*key, adopted_flow(now_ms, frame, v));
        self.arm_timer(key, now_ms + self.cfg.established_idle_timeout_ms);
        bump(&self.counters.flows_adopted);
        self.server_flow_segment(now_ms, frame, v, key)
    }

    /// A backend handshake of `service` failed (refused or timed out).
    pub(super) fn note_backend_failure(&mut self, service: Service) {
        if self
            .backend_health
            .record_failure(service, self.cfg.backend_down_after)
        {
            add_signed(&self.counters.backends_down, 1);
        }
    }

    /// A backend handshake of `service` succeeded.
    pub(super) fn note_backend_success(&mut self, service: Service) {
        if self.backend_health.record_success(service) {
            add_signed(&self.counters.backends_down, -1);
        }
    }
}
