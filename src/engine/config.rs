//! Validated engine settings. Plain data that `config` builds and the engine
//! trusts; it never reads files or flags itself.

use std::net::SocketAddr;

/// What the gateway does with an ACK that matches no flow and carries no
/// valid cookie (stale, forged, or from before a restart with a new secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidAckAction {
    /// Answer with a RST (rate-limited by `rst_per_second`), as a Linux
    /// listener does for an ACK it cannot match.
    Rst,
    /// Drop silently.
    Drop,
}

/// What the gateway does with TCP segments signed with TCP-MD5 (RFC 2385)
/// or TCP-AO (RFC 5925). It cannot sign for the server, so it never proxies
/// them: a cookie SYN-ACK without the signature would be dropped by the
/// client (Linux counts TcpExtTCPMD5NotFound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedSegmentAction {
    /// Bridge them unchanged, both ways; the server's kernel checks the
    /// signature before it commits any state (Linux tcp_inbound_hash runs
    /// before the listener sees the SYN).
    Bridge,
    /// Drop them (`DropReason::SignedSegment`).
    Drop,
}

impl SignedSegmentAction {
    pub fn as_str(self) -> &'static str {
        match self {
            SignedSegmentAction::Bridge => "bridge",
            SignedSegmentAction::Drop => "drop",
        }
    }
}

/// When SYNs get stateless cookies instead of a half-open queue entry; the
/// meaning of Linux's net.ipv4.tcp_syncookies 0 / 1 / 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncookieMode {
    /// Queue only: a SYN that finds the queue (or its source's share) full
    /// is dropped. Cookies still validate (every ISN is one), so an entry
    /// lost any other way never breaks a handshake.
    Off,
    /// Queue; a SYN that overflows it gets a cookie and the gateway stays in
    /// cookie mode (all SYNs stateless) until `cookie_hold_ms` after the last
    /// overflow.
    Auto,
    /// Stateless cookies only; the queue is never used.
    Always,
}

impl SyncookieMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncookieMode::Off => "off",
            SyncookieMode::Auto => "auto",
            SyncookieMode::Always => "always",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Protected services: TCP (address, port) pairs whose handshakes the
    /// gateway terminates.
    pub protected: Vec<SocketAddr>,
    /// Cookie time slot length in seconds (current and previous slot valid).
    pub cookie_slot_seconds: u64,
    /// MSS advertised to clients in the SYN-ACK, per address family.
    pub synack_mss_v4: u16,
    pub synack_mss_v6: u16,
    /// Receive window advertised to clients in the SYN-ACK (unscaled, RFC 7323
    /// section 2.2: windows in SYN segments are never scaled).
    pub synack_window: u16,
    /// Window scale the gateway advertises to clients that offer scaling.
    pub synack_wscale: u8,
    pub syncookies: SyncookieMode,
    /// Half-open (SYN_RECV) queue capacity.
    pub backlog: usize,
    /// Half-open entries one source may hold (an IPv4 address, an IPv6 /64).
    pub per_source_backlog: usize,
    /// SYN-ACK retransmissions for a queued entry (Linux tcp_synack_retries).
    pub synack_retries: u8,
    /// First SYN-ACK retransmission timeout; doubles each time. The entry is
    /// given up one doubled timeout after the last retransmission
    /// (1 s and 5 retries: sent at 1, 3, 7, 15, 31 s, given up at 63 s).
    pub synack_timeout_ms: u64,
    /// Auto mode stays in cookie mode this long after the last overflow.
    pub cookie_hold_ms: u64,
    /// Backend SYN: first retransmission timeout (doubles each retry).
    pub backend_syn_timeout_ms: u64,
    /// Backend SYN retransmissions before the client is reset.
    pub backend_syn_retries: u8,
    /// Backend handshakes of one service that must fail in a row (refused
    /// or timed out) before its backend counts as down and its new SYNs are
    /// bridged to the server (`backend_health.rs`); 0: never.
    pub backend_down_after: u32,
    pub signed_segments: SignedSegmentAction,
    /// Upper bound on tracked flows; a valid ACK beyond it is dropped
    /// (`DropReason::FlowTableFull`).
    pub max_flows: usize,
    /// Client bytes held per flow while the backend handshake is in flight.
    pub held_bytes_per_flow: usize,
    /// Held bytes over all flows.
    pub held_bytes_total: usize,
    pub invalid_ack_action: InvalidAckAction,
    /// Budget of RSTs the gateway originates per second.
    pub rst_per_second: u32,
    /// Budget of RFC 5961 challenge ACKs per second (Linux
    /// net.ipv4.tcp_challenge_ack_limit).
    pub challenge_ack_per_second: u32,
    /// Idle time after which an ESTABLISHED flow is reset at both ends and
    /// forgotten. Default 7440 s: RFC 5382 REQ-5's "established connection
    /// idle-timeout" of at least 2 h 4 min, so a Linux keepalive probe
    /// (first after `tcp_keepalive_time`, 7200 s) still finds its flow.
    pub established_idle_timeout_ms: u64,
    /// Idle timeout in FIN_WAIT_1, FIN_WAIT_2 and CLOSING. Default 240 s:
    /// RFC 5382 REQ-5's "transitory connection idle-timeout" of at least
    /// 4 min, longer than Linux's own tcp_fin_timeout (60 s), so a server
    /// that closed first still gets the client's late answer through.
    pub fin_wait_timeout_ms: u64,
    /// Idle timeout in CLOSE_WAIT (the client has half-closed, the server
    /// may still be working and sending). Default 600 s.
    pub close_wait_timeout_ms: u64,
    /// Idle timeout in LAST_ACK. Default 240 s (RFC 5382 REQ-5, transitory).
    pub last_ack_timeout_ms: u64,
    /// Maximum segment lifetime; TIME_WAIT lasts 2 x MSL (RFC 9293 3.4.2).
    pub msl_ms: u64,
}

impl EngineConfig {
    pub fn time_wait_ms(&self) -> u64 {
        2 * self.msl_ms
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            protected: Vec::new(),
            cookie_slot_seconds: 64,
            synack_mss_v4: 1460,
            synack_mss_v6: 1440,
            synack_window: 65535,
            synack_wscale: 7,
            syncookies: SyncookieMode::Auto,
            backlog: 4096,
            per_source_backlog: 128,
            synack_retries: 5,
            synack_timeout_ms: 1000,
            cookie_hold_ms: 30_000,
            backend_syn_timeout_ms: 1000,
            backend_syn_retries: 3,
            backend_down_after: 3,
            signed_segments: SignedSegmentAction::Bridge,
            max_flows: 1_000_000,
            held_bytes_per_flow: 65535,
            held_bytes_total: 64 << 20,
            invalid_ack_action: InvalidAckAction::Rst,
            rst_per_second: 1000,
            challenge_ack_per_second: 1000,
            established_idle_timeout_ms: 7_440_000,
            fin_wait_timeout_ms: 240_000,
            close_wait_timeout_ms: 600_000,
            last_ack_timeout_ms: 240_000,
            msl_ms: 30_000,
        }
    }
}
