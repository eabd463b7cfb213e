//! The sans-IO core: classifies every frame, answers handshakes for
//! protected services with SYN cookies, opens backend connections, translates
//! established flows and runs their timers. Owns the flow table. Never
//! touches sockets, clocks, files or prometheus: time comes in as `now_ms`
//! (the monotonic engine clock, so no clock step moves a timer) plus the
//! wall clock for cookie slots ([`Engine::set_wall_clock`], so they agree
//! across instances), the secret through the constructor, and output is a
//! [`Verdict`] per frame plus frames to emit ([`Engine::drain_emitted`]).

mod backend_health;
mod challenge_ack;
pub mod config;
pub mod cookie_clock;
pub mod cookie_mode;
pub mod counters;
pub mod drop_reason;
mod established;
mod expiring_map;
mod expiry;
pub mod fast_path;
pub mod flow;
mod flow_table;
pub mod forward;
mod fragments;
pub mod half_open;
pub mod handover;
mod handshake;
pub mod histogram;
mod icmp;
mod key_log;
mod pass_through;
pub mod program_events;
mod protected;
pub mod reconfigure;
pub mod send_budget;
pub mod service_profile;
pub mod state;
pub mod status;
pub mod timers;

use std::net::IpAddr;
use std::sync::Arc;

pub use config::{EngineConfig, InvalidAckAction, SignedSegmentAction, SyncookieMode};
pub use counters::{Counters, Port};
pub use drop_reason::DropReason;
pub use flow::{Flow, FlowKey};
pub use handover::ImportReport;
pub use service_profile::SynOption;
pub use state::TcpState;

use crate::cookie::{CookieKeys, CookieMinter};
use crate::wire::{self, ethernet, tcp, ParsedFrame, TcpView};
use cookie_mode::CookieModeSwitch;
use counters::bump;
use flow_table::FlowTable;
use half_open::HalfOpenQueue;
use protected::ProtectedServices;
use send_budget::{SendBudget, SourceBudgets, TAG_CHALLENGE_ACK, TAG_RST};
use service_profile::ServiceProfiles;
use timers::{TimerQueue, TimerTarget};

/// What to do with the frame handed to [`Engine::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (possibly rewritten) frame out of the other port.
    Forward,
    /// Send the rewritten frame back out of the port it came in on.
    Reply,
    /// The engine took what it needed (held data, a consumed SYN-ACK).
    Absorbed,
    /// Discard; counted under the reason.
    Drop(DropReason),
}

/// A frame the engine originates (backend SYN, held data, RST, ACK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    pub port: Port,
    pub frame: Vec<u8>,
}

pub struct Engine {
    cfg: EngineConfig,
    minter: CookieMinter,
    protected: ProtectedServices,
    flows: FlowTable,
    half_open: HalfOpenQueue,
    cookie_mode: CookieModeSwitch,
    timers: TimerQueue,
    rst_budget: SendBudget,
    rst_sources: SourceBudgets,
    challenge_budget: SendBudget,
    profiles: ServiceProfiles,
    held_total: usize,
    emitted: Vec<Emitted>,
    counters: Arc<Counters>,
    fast_path: fast_path::FastPathState,
    /// Largest MSS whose segments both ports can carry, (IPv4, IPv6); see
    /// [`Engine::set_port_mtus`].
    mss_ceiling: (u16, u16),
    fragments: fragments::FragmentMemory,
    cookie_clock: cookie_clock::CookieClock,
    backend_health: backend_health::BackendHealth,
    bridged_syns: pass_through::BridgedSyns,
}

impl Engine {
    /// `keys`: a [`crate::cookie::CookieSecret`] or the [`CookieKeys`] of a secret file.
    pub fn new(cfg: EngineConfig, keys: impl Into<CookieKeys>) -> Engine {
        let counters = Arc::new(Counters::default());
        counters
            .syn_recv_limit
            .store(cfg.backlog as u64, std::sync::atomic::Ordering::Relaxed);
        counters
            .flows_limit
            .store(cfg.max_flows as u64, std::sync::atomic::Ordering::Relaxed);
        let minter = CookieMinter::new(keys, cfg.cookie_slot_seconds);
        let key = minter.siphash_key();
        let engine = Engine {
            minter,
            protected: ProtectedServices::new(&cfg.protected),
            flows: FlowTable::new(cfg.max_flows, counters.clone()),
            half_open: HalfOpenQueue::new(cfg.backlog, cfg.per_source_backlog),
            cookie_mode: CookieModeSwitch::new(cfg.syncookies, cfg.cookie_hold_ms),
            timers: TimerQueue::default(),
            rst_budget: SendBudget::new(cfg.rst_per_second, key, TAG_RST),
            rst_sources: SourceBudgets::default(),
            challenge_budget: SendBudget::new(cfg.challenge_ack_per_second, key, TAG_CHALLENGE_ACK),
            profiles: ServiceProfiles::default(),
            held_total: 0,
            emitted: Vec::new(),
            counters,
            fast_path: Default::default(),
            mss_ceiling: (u16::MAX, u16::MAX),
            fragments: Default::default(),
            cookie_clock: Default::default(),
            backend_health: Default::default(),
            bridged_syns: pass_through::bridged_syns(),
            cfg,
        };
        // The gauge is right before the first SYN or tick (in always mode it
        // is 1 from the start; auto starts out of cookie mode).
        engine.publish_cookie_mode(0);
        engine
    }

    /// The wall clock `wall_ms` (ms since the Unix epoch) read at engine
    /// time `now_ms`. The engine's clock, the `now_ms` of every call, is
    /// monotonic (src/io/clock.rs); the wall clock only places cookie slots
    /// (`cookie_clock.rs`), which instances sharing a secret must agree on.
    /// Until called, the two are taken to be equal.
    pub fn set_wall_clock(&mut self, now_ms: u64, wall_ms: u64) {
        self.cookie_clock.set(now_ms, wall_ms);
    }

    /// The keys of a re-read secret file (`CookieMinter::set_keys`): a new
    /// first key mints from now on, and the one it replaces stays accepted
    /// while its cookies may be in flight, in the engine and in the XDP
    /// program alike (`fast_path_params`). The send budgets draw from the
    /// minting key, as the program does. True when a key changed.
    pub fn set_cookie_keys(&mut self, now_ms: u64, keys: CookieKeys) -> bool {
        let changed = self
            .minter
            .set_keys(keys, self.cookie_clock.seconds(now_ms));
        let key = self.minter.siphash_key();
        self.rst_budget.set_key(key);
        self.challenge_budget.set_key(key);
        changed
    }

    /// Backends that went down or came back since the last call, oldest
    /// first, for the I/O layer to log (`backend_health.rs`).
    pub fn drain_backend_transitions(
        &mut self,
    ) -> impl Iterator<Item = backend_health::BackendTransition> + '_ {
        self.backend_health.drain_transitions()
    }

    /// The MTUs of the two ports, in bytes of IP packet. Every client segment
    /// crosses both, so the MSS a SYN-ACK announces is at most the smaller
    /// MTU less the IPv4 (20) or IPv6 (40) and TCP (20) headers: a server port
    /// behind a tunnel or overlay with a smaller MTU than the client port
    /// would otherwise get segments it cannot carry, and the upload stalls
    /// (the client cannot learn it: no router between them sends ICMP). The
    /// ceiling survives reloads; `handshake.synack_mss_v4/v6` still apply
    /// below it. Returns the (IPv4, IPv6) MSS now announced.
    pub fn set_port_mtus(&mut self, client_mtu: usize, server_mtu: usize) -> (u16, u16) {
        let mtu = client_mtu.min(server_mtu);
        let ceiling =
            |headers: usize| mtu.saturating_sub(headers).min(usize::from(u16::MAX)) as u16;
        self.mss_ceiling = (ceiling(40), ceiling(60));
        (self.synack_mss_v4(), self.synack_mss_v6())
    }

    /// The MSS SYN-ACKs to IPv4 clients announce: `handshake.synack_mss_v4`
    /// within the ports' MTU.
    pub fn synack_mss_v4(&self) -> u16 {
        self.cfg.synack_mss_v4.min(self.mss_ceiling.0)
    }

    /// The MSS SYN-ACKs to IPv6 clients announce: `handshake.synack_mss_v6`
    /// within the ports' MTU.
    pub fn synack_mss_v6(&self) -> u16 {
        self.cfg.synack_mss_v6.min(self.mss_ceiling.1)
    }

    /// Shared counters for the metrics exporter.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// A read-only view of the tables for the control endpoint.
    pub fn status_view(&self) -> status::StatusView {
        status::StatusView::new(
            self.flows.shared(),
            self.half_open.shared(),
            self.counters.clone(),
            self.cfg.syncookies,
        )
    }

    /// Half-open (SYN_RECV) entries now.
    pub fn half_open_count(&self) -> usize {
        self.half_open.len()
    }

    /// State of the flow with this key, if tracked.
    pub fn flow_state(&self, key: &FlowKey) -> Option<TcpState> {
        self.flows.state(key)
    }

    /// Count a frame the I/O layer received but could not hand over whole
    /// (oversized or truncated).
    pub fn count_io_drop(&mut self, port: Port, reason: DropReason) {
        bump(&self.counters.frames_rx[port.index()]);
        self.counters.count_drop(reason);
    }

    /// Process one frame received on `port`, rewriting it in place where the
    /// verdict says so. `frame` keeps its allocation (replies may grow it).
    pub fn handle(&mut self, now_ms: u64, port: Port, frame: &mut Vec<u8>) -> Verdict {
        bump(&self.counters.frames_rx[port.index()]);
        let verdict = self.classify_and_handle(now_ms, port, frame);
        match verdict {
            Verdict::Forward => bump(&self.counters.frames_tx[port.other().index()]),
            Verdict::Reply => bump(&self.counters.frames_tx[port.index()]),
            Verdict::Drop(reason) => self.counters.count_drop(reason),
            Verdict::Absorbed => {}
        }
        verdict
    }

    fn classify_and_handle(&mut self, now_ms: u64, port: Port, frame: &mut Vec<u8>) -> Verdict {
        let view = match wire::parse_frame(frame) {
            Ok(ParsedFrame::Tcp(v)) => v,
            Ok(ParsedFrame::Ip(ip)) => {
                self.translate_icmp_error(port, frame, &ip);
                return match ip.fragment {
                    Some(fragment)
                        if port == Port::Client
                            && ip.protocol == tcp::PROTOCOL
                            && self.protected.has_address(ip.dst) =>
                    {
                        self.tcp_fragment_to_protected_address(now_ms, frame, &ip, fragment)
                    }
                    _ => self.bridge(),
                };
            }
            Ok(ParsedFrame::NonIp) => return self.bridge(),
            Err(_) => {
                return match unparsed_destination(frame) {
                    Some(dst) if port == Port::Client && self.protected.has_address(dst) => {
                        Verdict::Drop(DropReason::Malformed)
                    }
                    _ => self.bridge(),
                }
            }
        };
        match port {
            Port::Client if self.protected.contains(view.ip.dst, view.tcp.dst_port) => {
                self.client_segment(now_ms, frame, &view)
            }
            Port::Server if self.protected.contains(view.ip.src, view.tcp.src_port) => {
                self.server_segment(now_ms, frame, &view)
            }
            Port::Client if self.protected.is_retired(view.ip.dst, view.tcp.dst_port) => {
                self.retired_client_segment(now_ms, frame, &view)
            }
            Port::Server
                if self.protected.is_retired(view.ip.src, view.tcp.src_port)
                    && self.flows.contains(&FlowKey::from_server_segment(&view)) =>
            {
                self.server_segment(now_ms, frame, &view)
            }
            _ => self.bridge(),
        }
    }

    /// A segment to a service a reload retired: its connections (flows,
    /// handshakes, and ACKs that may carry a cookie minted before the
    /// reload) are handled as before, anything else is bridged
    /// (`on_handshake_ack` bridges a failed cookie of a retired service).
    fn retired_client_segment(&mut self, now_ms: u64, frame: &mut Vec<u8>, v: &TcpView) -> Verdict {
        let key = FlowKey::from_client_segment(v);
        let flags = v.tcp.flags;
        let maybe_cookie = flags & (tcp::SYN | tcp::RST) == 0 && flags & tcp::ACK != 0;
        if self.flows.contains(&key) || self.half_open.contains(&key) || maybe_cookie {
            self.client_segment(now_ms, frame, v)
        } else {
            self.bridge()
        }
    }

    fn bridge(&self) -> Verdict {
        bump(&self.counters.bridged);
        Verdict::Forward
    }

    /// A segment from a client to a protected service.
    fn client_segment(&mut self, now_ms: u64, frame: &mut Vec<u8>, v: &TcpView) -> Verdict {
        let flags = v.tcp.flags;
        if v.options.signed {
            if flags & tcp::SYN != 0 {
                bump(&self.counters.signed_syns);
            }
            return self.signed_segment();
        }
        if flags & tcp::SYN != 0 {
            if flags & (tcp::ACK | tcp::RST | tcp::FIN) != 0 {
                return Verdict::Drop(DropReason::InvalidFlags);
            }
            return self.on_client_syn(now_ms, frame, v);
        }
        let key = FlowKey::from_client_segment(v);
        if let Some(verdict) = self.client_flow_segment(now_ms, frame, v, &key) {
            return verdict;
        }
        if flags & (tcp::RST | tcp::ACK) != tcp::ACK && self.unclaimed(now_ms, &key) {
            return self.bridge();
        }
        if flags & tcp::RST != 0 {
            return self.on_client_rst_without_flow(v, &key);
        }
        if flags & tcp::ACK == 0 {
            return Verdict::Drop(DropReason::InvalidFlags);
        }
        self.on_handshake_ack(now_ms, frame, v, key)
    }

    /// Whether a segment of `key` that is no connection of the gateway's
    /// (no flow, no handshake, no cookie) may belong to one it does not
    /// carry and must pass untouched: its service was retired by a reload,
    /// or added by one and still takes over older connections
    /// (`protected.rs`, `pass_through.rs`).
    fn unclaimed(&self, now_ms: u64, key: &FlowKey) -> bool {
        self.protected.is_retired(key.server, key.server_port)
            || self
                .protected
                .is_adopting(key.server, key.server_port, now_ms)
    }

    /// A segment from a protected service toward a client.
    fn server_segment(&mut self, now_ms: u64, frame: &mut Vec<u8>, v: &TcpView) -> Verdict {
        if v.options.signed {
            return self.signed_segment();
        }
        let key = FlowKey::from_server_segment(v);
        self.server_flow_segment(now_ms, frame, v, &key)
    }

    /// A TCP-MD5 or TCP-AO signed segment, either way: never proxied (the
    /// gateway cannot sign), so no state either; RFC 2385 and RFC 5925 put
    /// the option on every segment, so each one is recognised on its own.
    fn signed_segment(&self) -> Verdict {
        match self.cfg.signed_segments {
            SignedSegmentAction::Bridge => self.bridge(),
            SignedSegmentAction::Drop => Verdict::Drop(DropReason::SignedSegment),
        }
    }

    /// When [`Engine::handle_timeout`] next has work, if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.next_deadline()
    }

    /// Run every timer due at `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        while let Some((at, target)) = self.timers.pop_due(now_ms) {
            match target {
                TimerTarget::Flow(key) => self.on_flow_timer(now_ms, at, &key),
                TimerTarget::HalfOpen(key) => self.on_half_open_timer(now_ms, at, &key),
            }
        }
        self.publish_cookie_mode(now_ms);
    }

    fn publish_cookie_mode(&self, now_ms: u64) {
        let active = u64::from(self.cookie_mode.cookie_mode_active(now_ms));
        self.counters
            .cookie_mode_active
            .store(active, std::sync::atomic::Ordering::Relaxed);
    }

    /// Frames the engine originated since the last call, in order.
    pub fn drain_emitted(&mut self) -> std::vec::Drain<'_, Emitted> {
        self.emitted.drain(..)
    }

    fn emit(&mut self, port: Port, frame: Vec<u8>) {
        bump(&self.counters.frames_tx[port.index()]);
        self.emitted.push(Emitted { port, frame });
    }

    fn arm_timer(&mut self, key: &FlowKey, at_ms: u64) {
        if self.flows.set_timer(key, at_ms) {
            self.timers.schedule(at_ms, TimerTarget::Flow(*key));
        }
    }

    fn remove_flow(&mut self, key: &FlowKey) {
        if let Some(flow) = self.flows.remove(key) {
            self.release_held_budget(flow.held_bytes);
        }
    }

    fn release_held_budget(&mut self, bytes: usize) {
        self.held_total -= bytes;
        counters::add_signed(&self.counters.held_bytes, -(bytes as i64));
    }
}

/// Destination address of a frame whose headers did not fully parse, read
/// at the fixed offsets, so malformed frames to protected addresses are
/// dropped rather than bridged to the server.
fn unparsed_destination(frame: &[u8]) -> Option<IpAddr> {
    let eth = ethernet::parse(frame).ok()?;
    let l3 = frame.get(eth.l3_offset..)?;
    match eth.ethertype {
        ethernet::ETHERTYPE_IPV4 if l3.len() >= 20 => {
            Some(IpAddr::from(<[u8; 4]>::try_from(&l3[16..20]).ok()?))
        }
        ethernet::ETHERTYPE_IPV6 if l3.len() >= 40 => {
            Some(IpAddr::from(<[u8; 16]>::try_from(&l3[24..40]).ok()?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
