//! One proxied connection: its key, the numbers that translate it, its
//! close tracking and held early data. Plain data; the engine drives it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::wire::ethernet::{self, MAX_HEADER_LEN};
use crate::wire::TcpView;

use super::state::TcpState;

/// A connection as the client sees it (the backend connection uses the same
/// 4-tuple: the gateway is transparent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FlowKey {
    pub client: IpAddr,
    pub server: IpAddr,
    pub client_port: u16,
    pub server_port: u16,
}

impl FlowKey {
    /// Key of a segment travelling client -> server.
    pub fn from_client_segment(v: &TcpView) -> FlowKey {
        FlowKey {
            client: v.ip.src,
            server: v.ip.dst,
            client_port: v.tcp.src_port,
            server_port: v.tcp.dst_port,
        }
    }

    /// Key of a segment travelling server -> client.
    pub fn from_server_segment(v: &TcpView) -> FlowKey {
        FlowKey {
            client: v.ip.dst,
            server: v.ip.src,
            client_port: v.tcp.dst_port,
            server_port: v.tcp.src_port,
        }
    }
}

/// Ethernet header (with VLAN tags) of the client -> server direction, kept
/// to address frames the gateway originates; the other direction swaps MACs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct L2Template {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl L2Template {
    pub fn from_frame(frame: &[u8], l3_offset: usize) -> L2Template {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        bytes[..l3_offset].copy_from_slice(&frame[..l3_offset]);
        L2Template {
            bytes,
            len: l3_offset as u8,
        }
    }

    /// Within the header's bounds (an Ethernet header, at most two VLAN
    /// tags): false only for one read from a damaged flow file.
    pub fn is_valid(&self) -> bool {
        (ethernet::HEADER_LEN..=MAX_HEADER_LEN).contains(&usize::from(self.len))
    }

    pub fn to_server(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn to_client(&self) -> L2Template {
        let mut t = *self;
        crate::wire::ethernet::swap_macs(&mut t.bytes);
        t
    }
}

/// Window-field rewrite between sides whose scale factors differ
/// (RFC 7323 section 2): value = field << from >> to, capped at 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WindowRescale {
    pub from_shift: u8,
    pub to_shift: u8,
}

impl WindowRescale {
    pub fn is_identity(&self) -> bool {
        self.from_shift == self.to_shift
    }

    pub fn apply(&self, field: u16) -> u16 {
        let bytes = u64::from(field) << self.from_shift;
        let scaled = bytes >> self.to_shift;
        // Rounding a non-zero window down to zero would stall the sender.
        let scaled = if scaled == 0 && bytes > 0 { 1 } else { scaled };
        scaled.min(65535) as u16
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    pub state: TcpState,
    pub l2: L2Template,
    /// Client's ISN (its SYN's sequence number).
    pub client_isn: u32,
    /// The cookie: our SYN-ACK's ISN as the client knows it.
    pub gateway_isn: u32,
    /// Added to server sequence numbers on the way to the client
    /// (cookie ISN - server ISN); valid from ESTABLISHED on.
    pub seq_delta: u32,
    /// TSval we sent in the SYN-ACK (the client echoes it), for the offset.
    pub gateway_tsval: u32,
    /// Added to server TSvals toward the client, subtracted from client
    /// TSecrs toward the server; used only when `timestamps` is set.
    pub ts_offset: u32,
    /// Both the client and the server negotiated timestamps.
    pub timestamps: bool,
    /// What the gateway's SYN-ACK promised the client, and so what the
    /// client uses; where the server declined one of these (`timestamps`
    /// false, `sack_declined`, `ecn_declined`) the flow is corrected in
    /// flight (see `established.rs`).
    pub client_timestamps: bool,
    pub client_sack: bool,
    pub client_ecn: bool,
    /// The server declined SACK the client was promised: SACK blocks from
    /// the client are overwritten with NOPs.
    pub sack_declined: bool,
    /// The server declined ECN the client was promised: client segments are
    /// sent on as Not-ECT, CE-marked ones dropped.
    pub ecn_declined: bool,
    /// Last TSval the gateway put on a segment toward the client itself
    /// (SYN-ACK, inserted timestamps, challenge ACKs), so its clock as the
    /// client sees it never runs backwards (RFC 7323 5.3, PAWS).
    pub gateway_last_tsval: u32,
    /// Last TSval and raw window the server sent (server space), to write
    /// challenge ACKs in its name.
    pub server_last_tsval: u32,
    pub server_last_window: u16,
    /// The MSS the backend SYN carried in the client's name: the payload
    /// plus options (RFC 6691) a server segment may have and still fit the
    /// client's path once the gateway adds timestamps to it.
    pub client_mss: u16,
    /// The server's SYN without ACK (RFC 9293 3.10.7.3, simultaneous open):
    /// the gateway answered with a SYN-ACK and waits for the ACK.
    pub server_syn: Option<ServerSyn>,
    pub client_to_server_window: WindowRescale,
    pub server_to_client_window: WindowRescale,
    /// Window scale the client offered (None: no scaling on the client side).
    pub client_wscale: Option<u8>,
    /// Last TSval and raw window the client sent (to re-ACK a repeated
    /// server SYN-ACK).
    pub client_last_tsval: u32,
    pub client_last_window: u16,
    /// Server ISN, from its SYN-ACK.
    pub server_isn: u32,
    /// Next sequence number expected from the client (client space) and
    /// from the server (server space): the highest SEQ + LEN of a segment
    /// that occupies sequence space (data, SYN or FIN). A pure ACK moves
    /// neither: the receiver's RCV.NXT does not move for one (RFC 9293
    /// 3.10.7.4), and after a lost FIN the sender's next ACK already
    /// carries SEQ = FIN + 1, which would make the FIN's retransmission
    /// look like a duplicate.
    pub client_next: u32,
    pub server_next: u32,
    /// Largest window (bytes) each side advertised: bounds what the other
    /// side may plausibly send.
    pub client_window_max: u32,
    pub server_window_max: u32,
    /// Sequence number that acknowledges the client's FIN (client space),
    /// once the server takes it (in order, or acknowledged).
    pub client_fin_end: Option<u32>,
    /// A client FIN seen ahead of the client's data (a hole before it):
    /// the sequence number that acknowledges it. It closes nothing until
    /// the server acknowledges exactly that, and client data past it
    /// proves it was never the client's (`established.rs`).
    #[serde(default)]
    pub client_fin_pending: Option<u32>,
    /// Sequence number that acknowledges the server's FIN (server space).
    pub server_fin_end: Option<u32>,
    /// The backend SYN, kept for retransmission until ESTABLISHED.
    pub backend_syn: Vec<u8>,
    pub backend_syn_sent: u8,
    /// Client frames held while the backend handshake runs.
    pub held: Vec<Vec<u8>>,
    pub held_bytes: usize,
    /// Deadline of the flow's one live timer entry (ms).
    pub timer_at: u64,
    pub last_seen: u64,
    /// When the backend SYN was first sent (the flow's birth), ms.
    pub opened_ms: u64,
    /// When the gateway last sent a challenge ACK for the flow (at most one
    /// per `CHALLENGE_ACK_INTERVAL_MS`, challenge_ack.rs). Not kept across
    /// restarts.
    #[serde(skip)]
    pub last_challenge_ms: Option<u64>,
}

/// What the server's SYN (with or without ACK) said: what the backend
/// connection's translation is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSyn {
    pub isn: u32,
    /// Unscaled (a SYN's window never is, RFC 7323 2.2).
    pub window: u16,
    pub wscale: Option<u8>,
    pub tsval: Option<u32>,
    pub sack_permitted: bool,
    /// ECE on a SYN-ACK (without CWR): ECN setup accepted (RFC 3168 6.1.1).
    pub ecn: bool,
}

impl Flow {
    /// Move the flow's times (deadline, last seen, birth) by `by_ms`: a
    /// flow file's flows onto this process's engine clock (flow_file.rs).
    pub fn shift_times(&mut self, by_ms: i64) {
        for t in [&mut self.timer_at, &mut self.last_seen, &mut self.opened_ms] {
            *t = t.saturating_add_signed(by_ms);
        }
    }

    /// The gateway's own TSval toward the client: its millisecond clock,
    /// never behind what it sent before (RFC 7323 5.3: a TSval that runs
    /// backwards fails the client's PAWS check).
    pub fn next_gateway_tsval(&mut self, now_ms: u64) -> u32 {
        let now = now_ms as u32;
        if seq_ge(now, self.gateway_last_tsval) {
            self.gateway_last_tsval = now;
        }
        self.gateway_last_tsval
    }
}

/// Serial-number comparison (RFC 1982): a >= b within half the space.
pub fn seq_ge(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// Serial-number comparison (RFC 1982): a > b within half the space.
pub fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Windows smaller than this are widened for the plausibility test: the
/// gateway may have missed a window update it did not need to see.
pub const MIN_TRACKING_WINDOW: u32 = 65535;

/// Is `seq` plausible for a receiver expecting `next` with at most
/// `max_window` bytes of window? RFC 9293 3.10.7.4's acceptability test,
/// widened backwards by one window so retransmissions of data the receiver
/// already has still pass (they must reach it to be acknowledged again).
pub fn seq_plausible(seq: u32, next: u32, max_window: u32) -> bool {
    let w = i64::from(max_window.max(MIN_TRACKING_WINDOW));
    let d = i64::from(seq.wrapping_sub(next) as i32);
    (-w..=w).contains(&d)
}

/// RFC 5961 section 3.2 for a RST the gateway sees on its way: `Exact`
/// (SEQ = RCV.NXT) resets the connection; `InWindow` makes the endpoint send
/// a challenge ACK, so it passes but the flow stays; `Outside` is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RstCheck {
    Exact,
    InWindow,
    Outside,
}

pub fn check_rst(seq: u32, next: u32, max_window: u32) -> RstCheck {
    if seq == next {
        RstCheck::Exact
    } else if seq_plausible(seq, next, max_window) {
        RstCheck::InWindow
    } else {
        RstCheck::Outside
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_rescale() {
        let same = WindowRescale {
            from_shift: 7,
            to_shift: 7,
        };
        assert!(same.is_identity());
        assert_eq!(same.apply(501), 501);
        let down = WindowRescale {
            from_shift: 9,
            to_shift: 7,
        };
        assert_eq!(down.apply(100), 400);
        assert_eq!(down.apply(60000), 65535);
        let up = WindowRescale {
            from_shift: 0,
            to_shift: 7,
        };
        assert_eq!(up.apply(65535), 511);
        assert_eq!(up.apply(100), 1, "non-zero window never rounds to zero");
        assert_eq!(up.apply(0), 0);
    }

    #[test]
    fn serial_compare_wraps() {
        assert!(seq_ge(5, 5));
        assert!(seq_ge(6, 5));
        assert!(!seq_ge(4, 5));
        assert!(seq_ge(3, u32::MAX - 2));
        assert!(!seq_ge(u32::MAX - 2, 3));
    }

    #[test]
    fn plausibility_window() {
        let next = 1_000_000;
        assert!(seq_plausible(next, next, 0));
        assert!(
            seq_plausible(next + 65535, next, 1000),
            "small windows widen to 64 KiB"
        );
        assert!(!seq_plausible(next + 65536, next, 1000));
        assert!(
            seq_plausible(next - 65535, next, 1000),
            "retransmission one window back"
        );
        assert!(!seq_plausible(next - 65536, next, 1000));
        assert!(
            seq_plausible(next + (1 << 20), next, 1 << 20),
            "scaled windows"
        );
        assert!(seq_plausible(5, u32::MAX - 5, 0), "wraps");
        assert!(!seq_plausible(next.wrapping_add(1 << 30), next, 1 << 20));
    }

    #[test]
    fn rst_checks() {
        assert_eq!(check_rst(100, 100, 0), RstCheck::Exact);
        assert_eq!(check_rst(101, 100, 0), RstCheck::InWindow);
        assert_eq!(check_rst(100 + 70_000, 100, 0), RstCheck::Outside);
    }

    #[test]
    fn l2_template_swaps_for_client() {
        let frame = [
            1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 0x81, 0, 0, 7, 0x08, 0, 0x45,
        ];
        let t = L2Template::from_frame(&frame, 18);
        assert_eq!(t.to_server(), &frame[..18]);
        assert_eq!(
            t.to_client().to_server(),
            &[2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 0x81, 0, 0, 7, 0x08, 0]
        );
    }
}
