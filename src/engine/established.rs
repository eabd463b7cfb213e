//! Segments of tracked flows after the handshake: sequence, SACK, timestamp
//! and window translation in place with incremental checksums (RFC 1624),
//! close tracking through the state machine, and the flow timers (backend
//! SYN retransmission, TIME_WAIT and idle expiry).

use crate::wire::frame::{rewrite_tcp_u16, rewrite_tcp_u32};
use crate::wire::tcp::{self, MIN_HEADER_LEN};
use crate::wire::{parse_frame, ParsedFrame, TcpView};

use super::counters::bump;
use super::flow::{seq_ge, FlowKey};
use super::state::CloseEvent;
use super::{DropReason, Engine, TcpState, Verdict};

impl Engine {
    /// A client segment of a tracked flow.
    pub(super) fn client_flow_segment(
        &mut self,
        now_ms: u64,
        frame: &mut [u8],
        v: &TcpView,
        key: &FlowKey,
    ) -> Verdict {
        match self.flows.state(key) {
            Some(TcpState::BackendSynSent) => {
                if v.tcp.has(tcp::RST) {
                    // The client gave up; the server holds only a SYN_RECV
                    // entry, which this RST (seq = ISN + 1, no ACK needed in
                    // RFC 9293 3.10.7.4) clears.
                    self.remove_flow(key);
                    return Verdict::Forward;
                }
                if v.payload_len() == 0 && !v.tcp.has(tcp::FIN) {
                    return Verdict::Absorbed; // a repeated pure ACK: nothing to hold
                }
                self.hold(key, frame)
            }
            Some(_) => {
                if self.translate_client_segment(now_ms, frame, v, key) {
                    Verdict::Forward
                } else {
                    Verdict::Drop(DropReason::NoFlow)
                }
            }
            None => Verdict::Drop(DropReason::NoFlow),
        }
    }

    /// A server segment of a flow past its backend handshake.
    pub(super) fn server_flow_segment(
        &mut self,
        now_ms: u64,
        frame: &mut [u8],
        v: &TcpView,
        key: &FlowKey,
    ) -> Verdict {
        if v.tcp.has(tcp::SYN) {
            if v.tcp.has(tcp::ACK) {
                // Our ACK of its SYN-ACK was lost; answer it again.
                self.reack_server_synack(key, v.options.timestamps.map(|(val, _)| val));
                return Verdict::Absorbed;
            }
            return Verdict::Drop(DropReason::UnexpectedSegment);
        }
        let Some(f) = self.flows.with(key, |f| {
            f.last_seen = now_ms;
            (
                f.seq_delta,
                f.ts_offset,
                f.timestamps,
                f.server_to_client_window,
            )
        }) else {
            return Verdict::Drop(DropReason::NoFlow);
        };
        let (delta, ts_offset, timestamps, window) = f;
        let mut events = [None, None];
        if v.tcp.has(tcp::RST) {
            events[0] = Some(CloseEvent::Rst);
        } else if v.tcp.has(tcp::FIN) {
            let fin_end = v.tcp.seq.wrapping_add(v.seq_len());
            self.flows.with(key, |f| f.server_fin_end = Some(fin_end));
            events[0] = Some(CloseEvent::ServerFin);
        }
        rewrite_tcp_u32(frame, v, tcp::OFF_SEQ, v.tcp.seq.wrapping_add(delta));
        if timestamps {
            if let Some((tsval, _)) = v.options.timestamps {
                rewrite_tcp_u32(
                    frame,
                    v,
                    MIN_HEADER_LEN + v.options.timestamps_at,
                    tsval.wrapping_add(ts_offset),
                );
            }
        }
        if !window.is_identity() {
            rewrite_tcp_u16(frame, v, tcp::OFF_WINDOW, window.apply(v.tcp.window));
        }
        self.apply_close_events(now_ms, key, &events);
        bump(&self.counters.translated);
        Verdict::Forward
    }

    /// Translate a client segment in place toward the server and track its
    /// close events. False if the flow is gone.
    fn translate_client_segment(
        &mut self,
        now_ms: u64,
        frame: &mut [u8],
        v: &TcpView,
        key: &FlowKey,
    ) -> bool {
        let Some(f) = self.flows.with(key, |f| {
            f.last_seen = now_ms;
            if let Some((tsval, _)) = v.options.timestamps {
                f.client_last_tsval = tsval;
            }
            f.client_last_window = v.tcp.window;
            (
                f.seq_delta,
                f.ts_offset,
                f.timestamps,
                f.client_to_server_window,
                f.server_fin_end,
            )
        }) else {
            return false;
        };
        let (delta, ts_offset, timestamps, window, server_fin_end) = f;
        let mut events = [None, None];
        if v.tcp.has(tcp::ACK) {
            let ack = v.tcp.ack.wrapping_sub(delta);
            rewrite_tcp_u32(frame, v, tcp::OFF_ACK, ack);
            if server_fin_end.is_some_and(|end| seq_ge(ack, end)) {
                events[0] = Some(CloseEvent::ClientAcksServerFin);
            }
            // SACK blocks name server sequence numbers (RFC 2018 section 3).
            for i in 0..usize::from(v.options.sack_blocks) {
                let at = MIN_HEADER_LEN + v.options.sack_at + 8 * i;
                let seg = &frame[v.tcp_offset()..];
                let (left, right) = (tcp::read_u32(seg, at), tcp::read_u32(seg, at + 4));
                rewrite_tcp_u32(frame, v, at, left.wrapping_sub(delta));
                rewrite_tcp_u32(frame, v, at + 4, right.wrapping_sub(delta));
            }
        }
        if timestamps {
            if let Some((_, tsecr)) = v.options.timestamps {
                rewrite_tcp_u32(
                    frame,
                    v,
                    MIN_HEADER_LEN + v.options.timestamps_at + 4,
                    tsecr.wrapping_sub(ts_offset),
                );
            }
        }
        if !window.is_identity() {
            rewrite_tcp_u16(frame, v, tcp::OFF_WINDOW, window.apply(v.tcp.window));
        }
        if v.tcp.has(tcp::RST) {
            events[1] = Some(CloseEvent::Rst);
        } else if v.tcp.has(tcp::FIN) {
            let fin_end = v.tcp.seq.wrapping_add(v.seq_len());
            self.flows.with(key, |f| f.client_fin_end = Some(fin_end));
            events[1] = Some(CloseEvent::ClientFin);
        }
        self.apply_close_events(now_ms, key, &events);
        bump(&self.counters.translated);
        true
    }

    /// Translate a held client frame (parsed again: it was copied whole).
    pub(super) fn translate_client_frame(
        &mut self,
        now_ms: u64,
        frame: &mut [u8],
        key: &FlowKey,
    ) -> bool {
        match parse_frame(frame) {
            Ok(ParsedFrame::Tcp(v)) => self.translate_client_segment(now_ms, frame, &v, key),
            _ => false,
        }
    }

    fn apply_close_events(&mut self, now_ms: u64, key: &FlowKey, events: &[Option<CloseEvent>]) {
        let Some(before) = self.flows.state(key) else {
            return;
        };
        let after = events.iter().flatten().fold(before, |s, &e| s.on(e));
        if after == before {
            return;
        }
        match after {
            TcpState::Closed => self.remove_flow(key),
            TcpState::TimeWait => {
                self.flows.set_state(key, after);
                self.arm_timer(key, now_ms + self.cfg.time_wait_ms());
            }
            _ => self.flows.set_state(key, after),
        }
    }

    /// A flow's timer fired at `at` (it may be stale: a newer deadline
    /// replaced it).
    pub(super) fn on_timer(&mut self, now_ms: u64, at: u64, key: &FlowKey) {
        let Some((state, timer_at, last_seen)) =
            self.flows.with(key, |f| (f.state, f.timer_at, f.last_seen))
        else {
            return;
        };
        if timer_at != at {
            return;
        }
        match state {
            TcpState::BackendSynSent => self.on_backend_syn_timer(now_ms, key),
            TcpState::TimeWait | TcpState::Closed => self.remove_flow(key),
            _ => {
                let idle_deadline = last_seen + self.cfg.established_idle_timeout_ms;
                if idle_deadline <= now_ms {
                    self.remove_flow(key);
                } else {
                    self.arm_timer(key, idle_deadline);
                }
            }
        }
    }
}
