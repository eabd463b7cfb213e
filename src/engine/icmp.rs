//! ICMP and ICMPv6 errors about segments of proxied connections (path MTU
//! discovery through a sequence-translating middlebox). The quoted
//! segment is in the sequence space of the side that sent it; the host the
//! error is addressed to checks the quoted sequence number against its own
//! send window (Linux tcp_v4_err / tcp_v6_err, TcpExtOutOfWindowIcmps), so
//! the quote is translated back. Owns that mapping only; the error itself
//! is bridged either way, and errors about untracked traffic are untouched.

use crate::wire::icmp::{self, QuotedTcp};
use crate::wire::{tcp, IpInfo};

use super::counters::bump;
use super::{Engine, FlowKey, Port, TcpState};

impl Engine {
    /// Translate the quote of an ICMP error received on `port`, in place.
    pub(super) fn translate_icmp_error(&mut self, port: Port, frame: &mut [u8], ip: &IpInfo) {
        let Some(q) = icmp::quoted_tcp(frame, ip) else {
            return;
        };
        let key = quoted_flow_key(port, &q);
        if !self.protected.contains(key.server, key.server_port)
            && !self.protected.is_retired(key.server, key.server_port)
        {
            return;
        }
        let Some(delta) = self
            .flows
            .with(&key, |f| {
                (f.state != TcpState::BackendSynSent).then_some(f.seq_delta)
            })
            .flatten()
        else {
            return;
        };
        match port {
            // From the client side, about a server -> client segment as the
            // client saw it: its SEQ carries + delta; the server wants its
            // own number.
            Port::Client => {
                let Some(seq) = q.read_u32(frame, tcp::OFF_SEQ) else {
                    return;
                };
                q.rewrite_u32(frame, tcp::OFF_SEQ, seq.wrapping_sub(delta));
            }
            // From the server side, about a client -> server segment as the
            // server saw it: SEQ is the client's own, its ACK (when the
            // quote reaches it and the segment had one) carries - delta.
            Port::Server => {
                let acked = q.flags(frame).is_some_and(|f| f & tcp::ACK != 0);
                let Some(ack) = q.read_u32(frame, tcp::OFF_ACK).filter(|_| acked) else {
                    return;
                };
                q.rewrite_u32(frame, tcp::OFF_ACK, ack.wrapping_add(delta));
            }
        }
        bump(&self.counters.icmp_translated);
    }
}

/// The proxied connection a quote belongs to: on the client port the quoted
/// segment went server -> client, on the server port client -> server.
fn quoted_flow_key(port: Port, q: &QuotedTcp) -> FlowKey {
    match port {
        Port::Client => FlowKey {
            client: q.dst,
            server: q.src,
            client_port: q.dst_port,
            server_port: q.src_port,
        },
        Port::Server => FlowKey {
            client: q.src,
            server: q.dst,
            client_port: q.src_port,
            server_port: q.dst_port,
        },
    }
}
