//! RFC 5961 section 4 challenge ACKs for SYNs on connections the gateway
//! tracks as open: the SYN frame becomes an ACK in the server's name,
//! <SEQ=SND.NXT><ACK=RCV.NXT> as the client knows them, at most one per
//! flow per `CHALLENGE_ACK_INTERVAL_MS` (Linux `tcp_invalid_ratelimit`) and
//! within the `challenge_ack_per_second` budget (Linux
//! `tcp_challenge_ack_limit`, drawn at random per second: send_budget.rs). Owns
//! only building that answer; the client's RST that follows ends the flow
//! through the ordinary RST check (established.rs).

use crate::wire::tcp::{self, TcpSegmentSpec};
use crate::wire::tcp_options::SynOptionSet;
use crate::wire::TcpView;

use super::counters::bump;
use super::flow::{Flow, FlowKey};
use super::handshake::reply_in_place;
use super::{DropReason, Engine, TcpState, Verdict};

/// Least time between two challenge ACKs of one flow: Linux's
/// `net.ipv4.tcp_invalid_ratelimit` default (500 ms, `tcp_oow_rate_limited`).
/// A flow's own limit is seen only by its own client.
pub const CHALLENGE_ACK_INTERVAL_MS: u64 = 500;

/// Sequence fields, window and timestamps of a challenge ACK, as the client
/// sees the connection.
struct ChallengeAck {
    seq: u32,
    ack: u32,
    window: u16,
    timestamps: Option<(u32, u32)>,
}

fn challenge_fields(f: &mut Flow, now_ms: u64, pending_window: u16) -> ChallengeAck {
    let (seq, window) = if f.state == TcpState::BackendSynSent {
        // The client knows only our SYN-ACK: SND.NXT = cookie ISN + 1.
        (f.gateway_isn.wrapping_add(1), pending_window)
    } else {
        (
            f.server_next.wrapping_add(f.seq_delta),
            f.server_to_client_window.apply(f.server_last_window),
        )
    };
    let tsval = if f.timestamps {
        Some(f.server_last_tsval.wrapping_add(f.ts_offset))
    } else if f.client_timestamps {
        Some(f.next_gateway_tsval(now_ms))
    } else {
        None
    };
    ChallengeAck {
        seq,
        ack: f.client_next,
        window,
        timestamps: tsval.map(|val| (val, f.client_last_tsval)),
    }
}

impl Engine {
    /// Answer a SYN for the open flow `key` with a challenge ACK, in place.
    pub(super) fn challenge_ack(
        &mut self,
        now_ms: u64,
        frame: &mut Vec<u8>,
        v: &TcpView,
        key: &FlowKey,
    ) -> Verdict {
        let recent = |f: &mut Flow| {
            f.last_challenge_ms
                .is_some_and(|t| now_ms < t + CHALLENGE_ACK_INTERVAL_MS)
        };
        match self.flows.with(key, recent) {
            None => return Verdict::Drop(DropReason::NoFlow),
            Some(true) => return Verdict::Drop(DropReason::ChallengeAckBudget),
            Some(false) => {}
        }
        if !self.challenge_budget.try_take(now_ms) {
            return Verdict::Drop(DropReason::ChallengeAckBudget);
        }
        let pending_window = self.cfg.synack_window;
        let Some(c) = self.flows.with(key, |f| {
            f.last_challenge_ms = Some(now_ms);
            challenge_fields(f, now_ms, pending_window)
        }) else {
            return Verdict::Drop(DropReason::NoFlow);
        };
        let options = SynOptionSet {
            timestamps: c.timestamps,
            ..SynOptionSet::default()
        }
        .encode();
        let spec = TcpSegmentSpec {
            src_port: key.server_port,
            dst_port: key.client_port,
            seq: c.seq,
            ack: c.ack,
            flags: tcp::ACK,
            window: c.window,
            options: options.as_slice(),
            payload: &[],
        };
        reply_in_place(frame, v, &spec);
        bump(&self.counters.challenge_acks);
        Verdict::Reply
    }
}
