//! Segments of tracked flows: plausibility (sequence window, RFC 5961 RST
//! checks), translation in place with incremental checksums (RFC 1624):
//! sequence numbers, SACK blocks, timestamps, window scale; close tracking
//! through the state machine, and the flow timers (backend SYN
//! retransmission, TIME_WAIT, per-state idle expiry). One table lookup per
//! segment: the translation runs on the flow inside it.

use crate::wire::frame::{
    ecn_codepoint, insert_tcp_option, rewrite_tcp_bytes, rewrite_tcp_u16, rewrite_tcp_u32,
    set_ecn_codepoint, ECN_CE, ECN_NOT_ECT,
};
use crate::wire::tcp::{self, MIN_HEADER_LEN};
use crate::wire::tcp_options::{self, SynOptionSet};
use crate::wire::{parse_frame, ParsedFrame, TcpView};

use super::counters::bump;
use super::flow::{check_rst, seq_ge, seq_gt, seq_plausible, Flow, FlowKey, RstCheck};
use super::handshake::TIMESTAMP_OPTION_SPACE;
use super::state::CloseEvent;
use super::{DropReason, Engine, TcpState, Verdict};

/// What a segment did to its flow.
enum Step {
    /// The flow is still waiting for the server's SYN-ACK.
    Pending,
    Drop(DropReason),
    /// Translated; the flow's new state if it changed, and the timestamp
    /// option (TSval, TSecr) to add when the server declined timestamps the
    /// client was promised.
    Forward(Option<TcpState>, Option<(u32, u32)>),
    /// A repeated server SYN-ACK, to be acknowledged again.
    ReAck(Option<u32>),
}

fn fold_events(state: TcpState, events: &[Option<CloseEvent>]) -> Option<TcpState> {
    let after = events.iter().flatten().fold(state, |s, &e| s.on(e));
    (after != state).then_some(after)
}

/// Client -> server, in place: ack, SACK blocks and TSecr into the server's
/// space, window rescaled; tracks the client's sequence space and FIN.
fn translate_client(f: &mut Flow, frame: &mut [u8], v: &TcpView, now_ms: u64) -> Step {
    f.last_seen = now_ms;
    let mut events = [None, None];
    if v.tcp.has(tcp::RST) {
        match check_rst(v.tcp.seq, f.client_next, f.server_window_max) {
            RstCheck::Outside => return Step::Drop(DropReason::OutOfWindow),
            RstCheck::Exact => events[1] = Some(CloseEvent::Rst),
            RstCheck::InWindow => {} // the server answers with a challenge ACK
        }
    } else if !seq_plausible(v.tcp.seq, f.client_next, f.server_window_max) {
        return Step::Drop(DropReason::OutOfWindow);
    }
    let delta = f.seq_delta;
    if v.tcp.has(tcp::ACK) {
        let ack = v.tcp.ack.wrapping_sub(delta);
        rewrite_tcp_u32(frame, v, tcp::OFF_ACK, ack);
        if f.server_fin_end.is_some_and(|end| seq_ge(ack, end)) {
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
        let window = u32::from(v.tcp.window) << f.client_to_server_window.from_shift;
        f.client_window_max = f.client_window_max.max(window);
    }
    if let Some((tsval, tsecr)) = v.options.timestamps {
        f.client_last_tsval = tsval;
        if f.timestamps {
            rewrite_tcp_u32(
                frame,
                v,
                MIN_HEADER_LEN + v.options.timestamps_at + 4,
                tsecr.wrapping_sub(f.ts_offset),
            );
        }
    }
    f.client_last_window = v.tcp.window;
    if !f.client_to_server_window.is_identity() {
        rewrite_tcp_u16(
            frame,
            v,
            tcp::OFF_WINDOW,
            f.client_to_server_window.apply(v.tcp.window),
        );
    }
    if !v.tcp.has(tcp::RST) {
        let end = v.tcp.seq.wrapping_add(v.seq_len());
        let next = f.client_next;
        if v.seq_len() > 0 && seq_ge(end, next) {
            f.client_next = end;
        }
        if f.client_fin_pending
            .is_some_and(|fin_end| seq_gt(end, fin_end))
        {
            f.client_fin_pending = None;
        }
        if v.tcp.has(tcp::FIN) {
            match client_fin(v.tcp.seq, end, next) {
                ClientFin::InOrder => {
                    f.client_fin_end = Some(end);
                    f.client_fin_pending = None;
                    events[1] = Some(CloseEvent::ClientFin);
                }
                ClientFin::Ahead if f.client_fin_end.is_none() => {
                    f.client_fin_pending = Some(end);
                }
                ClientFin::Ahead | ClientFin::Old => {}
            }
        }
    }
    correct_client_segment(f, frame, v)
        .unwrap_or_else(|| Step::Forward(fold_events(f.state, &events), None))
}

/// Where a client FIN sits against `next`, the end of the client's
/// sequence space seen so far (what the server's RCV.NXT becomes once the
/// segments in flight arrive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientFin {
    /// The segment reaches `next` and its FIN follows it: the receiver
    /// takes the FIN now (RFC 9293 3.10.7.4, eighth step: a FIN is
    /// processed in sequence, at RCV.NXT). Seen on its own by the gateway,
    /// a bare FIN must name exactly `next`, not anything in the window.
    InOrder,
    /// After a hole: the receiver queues it until the hole is filled (or
    /// never, if it was not the client's). Taken when the server
    /// acknowledges it.
    Ahead,
    /// Wholly before `next`: a duplicate (or a blind guess behind the
    /// window's edge); the receiver ignores its FIN.
    Old,
}

/// `seq`, `end` (SEQ + LEN, FIN included) of a client FIN segment.
fn client_fin(seq: u32, end: u32, next: u32) -> ClientFin {
    if seq_gt(seq, next) {
        ClientFin::Ahead
    } else if seq_gt(end, next) {
        ClientFin::InOrder
    } else {
        ClientFin::Old
    }
}

/// Options the client was promised but the server declined: the client
/// still uses them, so the server must not see them (RFC 7323 3.2 and RFC
/// 2018: a host that did not negotiate an option ignores it, but a stricter
/// one may not). Timestamps and SACK blocks become NOPs of the same length;
/// ECN marks are removed, and a CE mark becomes the loss it stands for.
/// `Some` only when the segment is dropped.
fn correct_client_segment(f: &Flow, frame: &mut [u8], v: &TcpView) -> Option<Step> {
    if f.ecn_declined {
        match ecn_codepoint(frame, v) {
            ECN_CE => return Some(Step::Drop(DropReason::CeWithoutEcn)),
            ECN_NOT_ECT => {}
            _ => set_ecn_codepoint(frame, v, ECN_NOT_ECT),
        }
    }
    if f.client_timestamps && !f.timestamps && v.options.timestamps.is_some() {
        let at = MIN_HEADER_LEN + v.options.timestamps_at - 2;
        nop_out(frame, v, at, TIMESTAMPS_OPTION_LEN);
    }
    if f.sack_declined && v.options.sack_blocks > 0 {
        let at = MIN_HEADER_LEN + v.options.sack_at - 2;
        nop_out(frame, v, at, 2 + 8 * usize::from(v.options.sack_blocks));
    }
    None
}

/// Kind, length, TSval, TSecr.
const TIMESTAMPS_OPTION_LEN: usize = 10;

/// Overwrite `len` option bytes at `at` (relative to the TCP header) with
/// NOPs, checksum updated.
fn nop_out(frame: &mut [u8], v: &TcpView, at: usize, len: usize) {
    const NOPS: [u8; 8] = [tcp_options::KIND_NOP; 8];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(NOPS.len());
        rewrite_tcp_bytes(frame, v, at + done, &NOPS[..n]);
        done += n;
    }
}

/// Server -> client, in place: seq and TSval into the client's view,
/// window rescaled; tracks the server's sequence space and FIN.
fn translate_server(f: &mut Flow, frame: &mut [u8], v: &TcpView, now_ms: u64) -> Step {
    if f.state == TcpState::BackendSynSent {
        return Step::Pending;
    }
    if v.tcp.has(tcp::SYN) {
        return if v.tcp.has(tcp::ACK) {
            Step::ReAck(v.options.timestamps.map(|(val, _)| val))
        } else {
            Step::Drop(DropReason::UnexpectedSegment)
        };
    }
    f.last_seen = now_ms;
    // [the client's FIN, taken by the server; this segment's FIN or RST]
    let mut events = [None, None];
    if v.tcp.has(tcp::RST) {
        match check_rst(v.tcp.seq, f.server_next, f.client_window_max) {
            RstCheck::Outside => return Step::Drop(DropReason::OutOfWindow),
            RstCheck::Exact => events[1] = Some(CloseEvent::Rst),
            RstCheck::InWindow => {} // the client answers with a challenge ACK
        }
    } else if !seq_plausible(v.tcp.seq, f.server_next, f.client_window_max) {
        return Step::Drop(DropReason::OutOfWindow);
    }
    rewrite_tcp_u32(frame, v, tcp::OFF_SEQ, v.tcp.seq.wrapping_add(f.seq_delta));
    if f.timestamps {
        if let Some((tsval, _)) = v.options.timestamps {
            rewrite_tcp_u32(
                frame,
                v,
                MIN_HEADER_LEN + v.options.timestamps_at,
                tsval.wrapping_add(f.ts_offset),
            );
        }
    }
    if v.tcp.has(tcp::ACK) {
        // The server acknowledges a client FIN that came after a hole: it
        // has the whole stream and the FIN now (and only then).
        if f.client_fin_pending == Some(v.tcp.ack) {
            f.client_fin_end = f.client_fin_pending.take();
            events[0] = Some(CloseEvent::ClientFin);
        }
        let window = u32::from(v.tcp.window) << f.server_to_client_window.from_shift;
        f.server_window_max = f.server_window_max.max(window);
        f.server_last_window = v.tcp.window;
    }
    if let Some((tsval, _)) = v.options.timestamps {
        f.server_last_tsval = tsval;
    }
    if !f.server_to_client_window.is_identity() {
        rewrite_tcp_u16(
            frame,
            v,
            tcp::OFF_WINDOW,
            f.server_to_client_window.apply(v.tcp.window),
        );
    }
    if !v.tcp.has(tcp::RST) {
        let end = v.tcp.seq.wrapping_add(v.seq_len());
        if v.seq_len() > 0 && seq_ge(end, f.server_next) {
            f.server_next = end;
        }
        if v.tcp.has(tcp::FIN) {
            f.server_fin_end = Some(end);
            events[1] = Some(CloseEvent::ServerFin);
        }
    }
    // RFC 7323 3.2: once timestamps are negotiated every segment but a RST
    // carries them; the client negotiated them with the gateway, so the
    // gateway adds them when the server declined (its own clock, echoing
    // the client's last TSval).
    // RFC 6691: options count against the MSS, so they are added only
    // where they fit the client's MSS (always, when the backend SYN left
    // room for them; a server that stopped doing timestamps since the
    // service was seen doing them may fill the MSS, and such a segment goes
    // on without).
    let room = usize::from(f.client_mss)
        >= v.tcp.header_len - MIN_HEADER_LEN
            + usize::from(TIMESTAMP_OPTION_SPACE)
            + v.payload_len();
    let add_timestamps = (f.client_timestamps && !f.timestamps && !v.tcp.has(tcp::RST) && room)
        .then(|| (f.next_gateway_tsval(now_ms), f.client_last_tsval));
    Step::Forward(fold_events(f.state, &events), add_timestamps)
}

impl Engine {
    /// A client segment of a tracked flow; `None` if there is no flow.
    pub(super) fn client_flow_segment(
        &mut self,
        now_ms: u64,
        frame: &mut [u8],
        v: &TcpView,
        key: &FlowKey,
    ) -> Option<Verdict> {
        self.fold_forward_progress(now_ms, key);
        let step = self.flows.with(key, |f| {
            if f.state == TcpState::BackendSynSent {
                Step::Pending
            } else {
                translate_client(f, frame, v, now_ms)
            }
        })?;
        Some(match step {
            Step::Pending => self.client_segment_while_pending(key, frame, v),
            Step::Forward(new_state, _) => {
                self.after_forward(now_ms, key, v, new_state);
                Verdict::Forward
            }
            Step::Drop(reason) => Verdict::Drop(reason),
            Step::ReAck(_) => unreachable!("client segments never ask for a re-ACK"),
        })
    }

    /// Client segments before the server answered: held (data) or absorbed.
    fn client_segment_while_pending(
        &mut self,
        key: &FlowKey,
        frame: &[u8],
        v: &TcpView,
    ) -> Verdict {
        if v.tcp.has(tcp::RST) {
            // The client gave up; the server holds only a SYN_RECV entry,
            // which this RST (seq = ISN + 1) clears.
            self.remove_flow(key);
            return Verdict::Forward;
        }
        if v.payload_len() == 0 && !v.tcp.has(tcp::FIN) {
            return Verdict::Absorbed; // a repeated pure ACK: nothing to hold
        }
        self.hold(key, frame)
    }

    /// A server segment toward a client.
    pub(super) fn server_flow_segment(
        &mut self,
        now_ms: u64,
        frame: &mut Vec<u8>,
        v: &TcpView,
        key: &FlowKey,
    ) -> Verdict {
        self.fold_forward_progress(now_ms, key);
        let Some(step) = self
            .flows
            .with(key, |f| translate_server(f, frame, v, now_ms))
        else {
            return self.server_segment_without_flow(now_ms, frame, v, key);
        };
        match step {
            Step::Pending => self.on_backend_reply(now_ms, frame, v, key),
            Step::ReAck(server_tsval) => {
                // Our ACK of its SYN-ACK was lost; answer it again.
                self.reack_server_synack(key, server_tsval);
                Verdict::Absorbed
            }
            Step::Forward(new_state, add_timestamps) => {
                if let Some(ts) = add_timestamps {
                    let option = SynOptionSet {
                        timestamps: Some(ts),
                        ..SynOptionSet::default()
                    }
                    .encode();
                    // Room was left for it (the backend SYN's MSS); a full
                    // options area (40 bytes) goes on without.
                    insert_tcp_option(frame, v, option.as_slice());
                }
                self.after_forward(now_ms, key, v, new_state);
                Verdict::Forward
            }
            Step::Drop(reason) => Verdict::Drop(reason),
        }
    }

    /// Translate a held client frame (parsed again: it was copied whole).
    pub(super) fn translate_held_client_frame(
        &mut self,
        now_ms: u64,
        frame: &mut [u8],
        key: &FlowKey,
    ) -> bool {
        let Ok(ParsedFrame::Tcp(v)) = parse_frame(frame) else {
            return false;
        };
        match self
            .flows
            .with(key, |f| translate_client(f, frame, &v, now_ms))
        {
            Some(Step::Forward(new_state, _)) => {
                if let Some(s) = new_state {
                    self.change_state(now_ms, key, s);
                }
                bump(&self.counters.translated);
                true
            }
            _ => false,
        }
    }

    /// Bookkeeping after a translated segment: its state change, or, for a
    /// FIN repeated in TIME_WAIT, a fresh 2 x MSL (RFC 9293 3.10.7.4: "restart
    /// the 2 MSL timeout"), so the final ACK's retransmission still finds us.
    fn after_forward(
        &mut self,
        now_ms: u64,
        key: &FlowKey,
        v: &TcpView,
        new_state: Option<TcpState>,
    ) {
        match new_state {
            Some(s) => self.change_state(now_ms, key, s),
            None if v.tcp.has(tcp::FIN) && self.flows.state(key) == Some(TcpState::TimeWait) => {
                self.arm_timer(key, now_ms + self.cfg.time_wait_ms());
            }
            // A client FIN ahead of a hole: the XDP program must stop
            // forwarding the flow, so the server's ACK that takes it
            // reaches the engine (`forwardable`).
            None if v.tcp.has(tcp::FIN) => self.flows.touch(key),
            None => {}
        }
        bump(&self.counters.translated);
        self.note_engine_forwarded(now_ms, key);
    }

    /// The XDP program forwarded the server's FIN of `key` (its progress
    /// says so): the flow closes as if the engine had forwarded it.
    pub(super) fn on_server_fin_forwarded(&mut self, now_ms: u64, key: &FlowKey) {
        if let Some(state) = self.flows.state(key) {
            let next = state.on(CloseEvent::ServerFin);
            if next != state {
                self.change_state(now_ms, key, next);
            }
        }
    }

    /// The one place a tracked flow changes state after the handshake: the
    /// gauges (through the table), then the timer of the new state.
    fn change_state(&mut self, now_ms: u64, key: &FlowKey, state: TcpState) {
        if state == TcpState::Closed {
            self.remove_flow(key);
            return;
        }
        self.flows.set_state(key, state);
        self.arm_timer(key, now_ms + self.state_timeout_ms(state));
    }

    /// How long a flow may stay in `state` without traffic (TIME_WAIT: at
    /// all).
    fn state_timeout_ms(&self, state: TcpState) -> u64 {
        match state {
            TcpState::BackendSynSent => self.cfg.backend_syn_timeout_ms,
            TcpState::Established => self.cfg.established_idle_timeout_ms,
            TcpState::FinWait1 | TcpState::FinWait2 | TcpState::Closing => {
                self.cfg.fin_wait_timeout_ms
            }
            TcpState::CloseWait => self.cfg.close_wait_timeout_ms,
            TcpState::LastAck => self.cfg.last_ack_timeout_ms,
            TcpState::TimeWait => self.cfg.time_wait_ms(),
            TcpState::Closed => 0,
        }
    }

    /// A flow's timer fired at `at` (it may be stale: a newer deadline
    /// replaced it).
    pub(super) fn on_flow_timer(&mut self, now_ms: u64, at: u64, key: &FlowKey) {
        self.fold_forward_progress(now_ms, key);
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
                let idle_deadline = last_seen + self.state_timeout_ms(state);
                if idle_deadline <= now_ms {
                    self.expire_flow(now_ms, key);
                } else {
                    self.arm_timer(key, idle_deadline);
                }
            }
        }
    }
}
