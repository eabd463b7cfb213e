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
    /// Backend SYN: first retransmission timeout (doubles each retry).
    pub backend_syn_timeout_ms: u64,
    /// Backend SYN retransmissions before the client is reset.
    pub backend_syn_retries: u8,
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
    /// Idle time after which an established flow is forgotten.
    pub established_idle_timeout_ms: u64,
    /// How long a flow stays in TIME_WAIT (2 x MSL).
    pub time_wait_ms: u64,
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
            backend_syn_timeout_ms: 1000,
            backend_syn_retries: 3,
            max_flows: 1_000_000,
            held_bytes_per_flow: 65535,
            held_bytes_total: 64 << 20,
            invalid_ack_action: InvalidAckAction::Rst,
            rst_per_second: 1000,
            established_idle_timeout_ms: 7_200_000,
            time_wait_ms: 60_000,
        }
    }
}
