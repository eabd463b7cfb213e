//! What happens when a proxied flow's idle timer runs out: the flow is
//! forgotten, and both ends are told with an exact RST so neither keeps a
//! connection the gateway no longer carries. Never decides when a flow is
//! idle (`established.rs` owns the timeouts) and never touches flows that
//! are still opening or already closed.

use crate::wire::tcp::{self, TcpSegmentSpec};

use super::counters::bump;
use super::flow::{Flow, FlowKey};
use super::handshake::{frame_to_client, frame_to_server};
use super::{Engine, Port};

/// The RSTs that end an expired flow at both ends: toward the client in the
/// server's name, toward the server in the client's, each with SEQ = the
/// receiver's RCV.NXT as the gateway last saw it (the highest SEQ + LEN,
/// FIN included, the other side sent), so RFC 5961 3.2 takes it as exact
/// and resets, rather than answering with a challenge ACK. ACK set, as a
/// stack's own abort sends it (RFC 9293 3.10.7.1, Linux
/// `tcp_send_active_reset`). No timestamps: a RST passes PAWS without one
/// (RFC 7323 5.3 R1, `tcp_validate_incoming`).
fn expiry_rsts(key: &FlowKey, f: &Flow) -> [(Port, Vec<u8>); 2] {
    let to_client = TcpSegmentSpec {
        src_port: key.server_port,
        dst_port: key.client_port,
        seq: f.server_next.wrapping_add(f.seq_delta),
        ack: f.client_next,
        flags: tcp::RST | tcp::ACK,
        window: 0,
        options: &[],
        payload: &[],
    };
    let to_server = TcpSegmentSpec {
        src_port: key.client_port,
        dst_port: key.server_port,
        seq: f.client_next,
        ack: f.server_next,
        ..to_client
    };
    [
        (Port::Client, frame_to_client(f, key, &to_client)),
        (Port::Server, frame_to_server(f, key, &to_server)),
    ]
}

impl Engine {
    /// `key` was idle past its state's timeout: counted in
    /// `flows_expired`, reset at both ends (two RSTs, within
    /// `rst_per_second`: over it the flow is forgotten silently, as before),
    /// and removed. Before, the flow was only forgotten: the next segment of
    /// either end was dropped as `no_flow` and both ends hung until their
    /// own timers gave up.
    pub(super) fn expire_flow(&mut self, now_ms: u64, key: &FlowKey) {
        bump(&self.counters.flows_expired);
        if let Some(rsts) = self.flows.with(key, |f| expiry_rsts(key, f)) {
            for (port, frame) in rsts {
                if self.rst_budget.try_take(now_ms) {
                    bump(&self.counters.rst_sent);
                    self.emit(port, frame);
                }
            }
        }
        self.remove_flow(key);
    }
}
