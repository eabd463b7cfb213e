//! Engine counters: plain atomics the single engine thread bumps and the
//! metrics exporter reads at scrape time. No prometheus types here, no locks,
//! no label lookups on the hot path.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::drop_reason::DropReason;
use super::histogram::LatencyHistogram;
use super::state::TcpState;

/// The two ports of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Port {
    /// Faces the clients.
    Client,
    /// Faces the protected servers.
    Server,
}

impl Port {
    pub fn other(self) -> Port {
        match self {
            Port::Client => Port::Server,
            Port::Server => Port::Client,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Port::Client => "client",
            Port::Server => "server",
        }
    }
}

#[derive(Debug, Default)]
pub struct Counters {
    /// Frames received / sent per port (index `Port::index`).
    pub frames_rx: [AtomicU64; 2],
    pub frames_tx: [AtomicU64; 2],
    /// Of `frames_rx`, those the engine read from its sockets (the rest the
    /// XDP programs handled, or reported for the engine to replay), per
    /// port; written by the I/O layer.
    pub frames_to_engine: [AtomicU64; 2],
    /// Frames passed through untouched (not TCP to a protected service).
    pub bridged: AtomicU64,
    /// Established-flow segments translated and forwarded.
    pub translated: AtomicU64,
    /// SYNs to protected services (kernel: TcpExt SyncookiesSent's input).
    pub syn_received: AtomicU64,
    /// Stateless SYN-ACKs: the cookie is all the state (SyncookiesSent).
    pub synack_cookie: AtomicU64,
    /// First SYN-ACKs of half-open queue entries.
    pub synack_queued: AtomicU64,
    /// SYN-ACKs sent again: timer retransmissions and answers to repeated
    /// SYNs of queued entries (synproxy cookie_retrans).
    pub synack_retransmit: AtomicU64,
    /// Handshakes completed through a half-open queue entry.
    pub queue_completed: AtomicU64,
    /// Half-open entries given up after the last SYN-ACK retransmission.
    pub queue_expired: AtomicU64,
    /// Half-open entries now (the SYN_RECV count).
    pub half_open: AtomicI64,
    /// 1 while SYNs are answered statelessly (always mode, or auto mode
    /// after an overflow).
    pub cookie_mode_active: AtomicU64,
    /// ACKs whose cookie validated (SyncookiesRecv / synproxy cookie_valid).
    pub cookies_validated: AtomicU64,
    /// ACKs with no flow whose cookie failed (SyncookiesFailed / cookie_invalid).
    pub cookies_failed: AtomicU64,
    pub backend_started: AtomicU64,
    pub backend_completed: AtomicU64,
    /// Backend refused with a RST.
    pub backend_refused: AtomicU64,
    /// Backend never answered the SYN and its retransmissions.
    pub backend_timeout: AtomicU64,
    pub backend_syn_retransmits: AtomicU64,
    /// Protected services whose backend is down (`backend_health.rs`).
    pub backends_down: AtomicI64,
    /// SYNs bridged to the server because its backend was down.
    pub backend_down_syns: AtomicU64,
    /// Connections made while their service was not protected, taken over
    /// after a reload added it (`pass_through.rs`).
    pub flows_adopted: AtomicU64,
    /// RSTs the gateway originated.
    pub rst_sent: AtomicU64,
    /// RFC 5961 challenge ACKs sent for SYNs on open flows
    /// (TcpExtTCPChallengeACK).
    pub challenge_acks: AtomicU64,
    /// SYNs signed with TCP-MD5 or TCP-AO, never proxied.
    pub signed_syns: AtomicU64,
    /// ICMP/ICMPv6 errors whose quoted segment was translated.
    pub icmp_translated: AtomicU64,
    /// Flows whose server declined an option the client was promised, per
    /// option (index `SynOption::index`), corrected by the gateway.
    pub option_mismatches: [AtomicU64; 4],
    pub drops: [AtomicU64; DropReason::ALL.len()],
    /// Flows removed after their state's idle timeout.
    pub flows_expired: AtomicU64,
    /// TIME_WAIT flows evicted to make room for a new flow (table full).
    pub flows_evicted: AtomicU64,
    /// Live flows per state (index `TcpState::index`).
    pub flows_by_state: [AtomicI64; TcpState::ALL.len()],
    /// Frames the kernel dropped before the gateway could read them
    /// (PACKET_STATISTICS tp_drops), per port.
    pub kernel_drops: [AtomicU64; 2],
    /// Bytes of early client data held while backend handshakes run.
    pub held_bytes: AtomicI64,
    /// Backend SYN first sent -> server SYN-ACK.
    pub backend_handshake_latency: LatencyHistogram,
    /// Configured limits, for "near full" ratios: half-open queue, flows.
    pub syn_recv_limit: AtomicU64,
    pub flows_limit: AtomicU64,
    /// Established-flow segments the XDP programs translated and
    /// redirected, by the port they left on (`Port::index`); also counted
    /// in `translated`.
    pub xdp_forwarded: [AtomicU64; 2],
    /// Frames the XDP programs redirected unchanged (what the engine would
    /// bridge), by the port they left on; also counted in `bridged`.
    pub xdp_bridged: [AtomicU64; 2],
    /// The program's reports (`sg_events`) the engine replayed, by
    /// [`ProgramEventResult`](super::program_events::ProgramEventResult)
    /// index: the engine agreed, it would have done otherwise, the ring
    /// was full (the program then passed the frame up instead).
    pub xdp_events: [AtomicU64; 3],
    /// XDP fast path mode, written by the I/O layer: 0 off, 1 generic,
    /// 2 native (`io::xdp::XdpActive`).
    pub xdp_mode: AtomicU64,
}

/// Single-writer increment: the engine runs on one thread, so a load and a
/// store are enough (cheaper than a locked read-modify-write); readers only
/// ever see whole values.
#[inline]
pub fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

#[inline]
pub fn add_signed(c: &AtomicI64, delta: i64) {
    c.store(c.load(Ordering::Relaxed) + delta, Ordering::Relaxed);
}

impl Counters {
    pub fn count_drop(&self, reason: DropReason) {
        bump(&self.drops[reason.index()]);
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].load(Ordering::Relaxed)
    }

    pub fn flows_in(&self, state: TcpState) -> i64 {
        self.flows_by_state[state.index()].load(Ordering::Relaxed)
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
