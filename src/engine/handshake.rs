//! The handshakes the gateway terminates: client SYN -> SYN-ACK (rewritten
//! in place; a half-open queue entry or a stateless cookie, per the
//! syncookies switch), SYN-ACK retransmission for queued entries, the
//! client's ACK (queue entry or cookie) -> backend SYN with the client's
//! options, server SYN-ACK -> translated release of held client frames, and
//! the failure paths (backend RST or silence -> RST to the client). Frames
//! the gateway writes from scratch are built here too.

use std::net::IpAddr;

use crate::cookie::mss_table::{DEFAULT_MSS_V4, DEFAULT_MSS_V6};
use crate::cookie::{CookieTuple, DecodedCookie, SynOptions};
use crate::wire::ethernet::{self, MAX_HEADER_LEN};
use crate::wire::frame::{rewrite_tcp_bytes, rewrite_tcp_u32};
use crate::wire::tcp::{self, TcpSegmentSpec};
use crate::wire::tcp_options::{EncodedOptions, SynOptionSet};
use crate::wire::{ipv4, parse_frame, write_tcp_frame, ParsedFrame, TcpView};

use super::cookie_mode::SynDecision;
use super::counters::{add_signed, bump};
use super::flow::{Flow, FlowKey, L2Template, ServerSyn, WindowRescale};
use super::half_open::HalfOpen;
use super::service_profile::SynOption;
use super::timers::TimerTarget;
use super::{DropReason, Engine, InvalidAckAction, Port, TcpState, Verdict};

/// TTL / hop limit of frames the gateway writes from scratch.
const TTL: u8 = ipv4::DEFAULT_TTL;

/// NOP, NOP, timestamps: what the gateway adds to a segment (RFC 7323
/// appendix A layout).
pub(super) const TIMESTAMP_OPTION_SPACE: u16 = 12;

/// How far past ISN + 1 a queued client's ACK may be (bytes it sent that
/// the gateway missed): the SYN-ACK's unscaled window.
const MAX_QUEUED_SEQ_ADVANCE: u32 = 65535;

/// Why a backend handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BackendFailure {
    Refused,
    Timeout,
}

fn tuple(v: &TcpView) -> CookieTuple {
    CookieTuple {
        client: v.ip.src,
        server: v.ip.dst,
        client_port: v.tcp.src_port,
        server_port: v.tcp.dst_port,
    }
}

/// Everything a SYN-ACK toward the client says.
struct SynAck {
    isn: u32,
    client_isn: u32,
    mss: u16,
    sack_permitted: bool,
    /// (TSval, TSecr).
    timestamps: Option<(u32, u32)>,
    wscale: Option<u8>,
    ecn: bool,
    window: u16,
}

impl SynAck {
    /// Turn the client's SYN frame into this SYN-ACK, addressed back where
    /// it came from.
    fn write_reply(&self, frame: &mut Vec<u8>, v: &TcpView, key: &FlowKey) {
        let options = self.options();
        reply_in_place(frame, v, &self.spec(key, options.as_slice()));
    }

    /// Append the SYN-ACK frame for `key` behind `l2_to_client`.
    fn write(&self, out: &mut Vec<u8>, l2_to_client: &[u8], key: &FlowKey) {
        let options = self.options();
        let spec = self.spec(key, options.as_slice());
        write_tcp_frame(out, l2_to_client, key.server, key.client, TTL, &spec);
    }

    fn options(&self) -> EncodedOptions {
        SynOptionSet {
            mss: Some(self.mss),
            sack_permitted: self.sack_permitted,
            timestamps: self.timestamps,
            wscale: self.wscale,
        }
        .encode()
    }

    fn spec<'a>(&self, key: &FlowKey, options: &'a [u8]) -> TcpSegmentSpec<'a> {
        TcpSegmentSpec {
            src_port: key.server_port,
            dst_port: key.client_port,
            seq: self.isn,
            ack: self.client_isn.wrapping_add(1),
            // RFC 3168 6.1.1: ECE answers an ECN-setup SYN.
            flags: tcp::SYN | tcp::ACK | if self.ecn { tcp::ECE } else { 0 },
            window: self.window,
            options,
            payload: &[],
        }
    }
}

impl Engine {
    fn synack_mss(&self, client: IpAddr) -> u16 {
        if client.is_ipv4() {
            self.synack_mss_v4()
        } else {
            self.synack_mss_v6()
        }
    }

    fn synack_for_entry(&self, key: &FlowKey, e: &HalfOpen) -> SynAck {
        SynAck {
            isn: e.cookie_isn,
            client_isn: e.client_isn,
            mss: self.synack_mss(key.client),
            sack_permitted: e.sack_permitted,
            timestamps: e.timestamps,
            wscale: e.wscale.map(|_| self.cfg.synack_wscale),
            ecn: e.ecn,
            window: self.cfg.synack_window,
        }
    }

    /// RFC 9293 3.10.7.2 LISTEN + SYN. The SYN becomes its SYN-ACK in the
    /// same buffer (like XDP_TX); its ISN is a cookie whether or not a
    /// half-open entry is kept.
    pub(super) fn on_client_syn(
        &mut self,
        now_ms: u64,
        frame: &mut Vec<u8>,
        v: &TcpView,
    ) -> Verdict {
        if !v.checksum_is_valid(frame) {
            return Verdict::Drop(DropReason::BadChecksum);
        }
        let key = FlowKey::from_client_segment(v);
        match self.flows.state(&key) {
            // A new connection reusing the 4-tuple of one in TIME_WAIT
            // (RFC 9293 3.10.7.4 allows the reuse; the old one is done).
            Some(TcpState::TimeWait) | Some(TcpState::Closed) => self.remove_flow(&key),
            // RFC 5961 4.2: a SYN in a synchronized state gets a challenge
            // ACK. A client that lost the connection (reboot, lost RST)
            // answers it with a RST that ends the flow, and its next SYN
            // starts afresh; a blind attacker's SYN changes nothing.
            Some(_) => return self.challenge_ack(now_ms, frame, v, &key),
            None => {}
        }
        bump(&self.counters.syn_received);
        if self.backend_health.is_down((key.server, key.server_port)) {
            return self.bridge_syn_while_down(now_ms, frame, v, key);
        }
        if let Some(entry) = self.half_open.get(&key) {
            if entry.client_isn == v.tcp.seq {
                // A retransmitted SYN: the same SYN-ACK again, not a new entry.
                let synack = self.synack_for_entry(&key, &entry);
                synack.write_reply(frame, v, &key);
                bump(&self.counters.synack_retransmit);
                return Verdict::Reply;
            }
            // A new attempt on the same 4-tuple replaces the old one.
            self.remove_half_open(&key);
        }
        let decision = self.cookie_mode.decide(
            now_ms,
            self.half_open.is_full(),
            self.half_open.source_is_full(key.client),
        );
        self.publish_cookie_mode(now_ms);
        match decision {
            SynDecision::DropQueueFull => return Verdict::Drop(DropReason::QueueFull),
            SynDecision::DropPerSource => return Verdict::Drop(DropReason::PerSourceLimit),
            SynDecision::Queue | SynDecision::Cookie => {}
        }
        // Offer only what the client offered and the service's server is
        // not known to decline, so the two never disagree about an option
        // (see service_profile.rs). The cookie encodes what was offered.
        let offer = self.profiles.offer((key.server, key.server_port), now_ms);
        let syn_opts = SynOptions {
            mss: v.options.mss,
            wscale: v.options.wscale.filter(|_| offer.window_scale),
            sack_permitted: v.options.sack_permitted && offer.sack_permitted,
            timestamps: v.options.timestamps.is_some() && offer.timestamps,
            // RFC 3168 6.1.1: an ECN-setup SYN carries both ECE and CWR.
            ecn: v.tcp.has(tcp::ECE | tcp::CWR) && offer.ecn,
        };
        let cookie = self.minter.mint(
            &tuple(v),
            v.tcp.seq,
            &syn_opts,
            self.cookie_clock.seconds(now_ms),
        );
        let timestamps = match (v.options.timestamps, cookie.ts_low_bits) {
            (Some((client_tsval, _)), Some(bits)) => {
                Some(((now_ms as u32 & !0x3f) | u32::from(bits), client_tsval))
            }
            _ => None,
        };
        let synack = SynAck {
            isn: cookie.isn,
            client_isn: v.tcp.seq,
            mss: self.synack_mss(key.client),
            sack_permitted: syn_opts.sack_permitted,
            timestamps,
            wscale: syn_opts.wscale.map(|_| self.cfg.synack_wscale),
            ecn: syn_opts.ecn,
            window: self.cfg.synack_window,
        };
        if decision == SynDecision::Queue {
            let at = now_ms + self.cfg.synack_timeout_ms;
            let entry = HalfOpen {
                client_isn: v.tcp.seq,
                cookie_isn: cookie.isn,
                mss: v.options.mss,
                wscale: syn_opts.wscale,
                sack_permitted: syn_opts.sack_permitted,
                ecn: syn_opts.ecn,
                timestamps,
                l2: L2Template::from_frame(frame, v.ip.l3_offset),
                retransmits: 0,
                created_ms: now_ms,
                timer_at: at,
            };
            self.half_open.insert(key, entry);
            add_signed(&self.counters.half_open, 1);
            self.timers.schedule(at, TimerTarget::HalfOpen(key));
            bump(&self.counters.synack_queued);
        } else {
            bump(&self.counters.synack_cookie);
        }
        synack.write_reply(frame, v, &key);
        Verdict::Reply
    }

    pub(super) fn remove_half_open(&mut self, key: &FlowKey) -> Option<HalfOpen> {
        let entry = self.half_open.remove(key)?;
        add_signed(&self.counters.half_open, -1);
        Some(entry)
    }

    /// SYN-ACK retransmission timer of a queued entry: resend after 1, 2, 4,
    /// ... s (`synack_timeout_ms` doubling); give up one doubled timeout
    /// after the last of `synack_retries`.
    pub(super) fn on_half_open_timer(&mut self, now_ms: u64, at: u64, key: &FlowKey) {
        let Some(entry) = self.half_open.get(key).filter(|e| e.timer_at == at) else {
            return;
        };
        if entry.retransmits >= self.cfg.synack_retries {
            self.remove_half_open(key);
            bump(&self.counters.queue_expired);
            return;
        }
        let mut frame = Vec::with_capacity(128);
        self.synack_for_entry(key, &entry)
            .write(&mut frame, entry.l2.to_client().to_server(), key);
        let retransmits = entry.retransmits + 1;
        let next = now_ms + (self.cfg.synack_timeout_ms << retransmits.min(16));
        self.half_open.with(key, |e| {
            e.retransmits = retransmits;
            e.timer_at = next;
        });
        self.timers.schedule(next, TimerTarget::HalfOpen(*key));
        bump(&self.counters.synack_retransmit);
        self.emit(Port::Client, frame);
    }

    /// A client RST for no flow: it may cancel a half-open entry (RFC 9293
    /// 3.10.7.4, SYN-RECEIVED: an acceptable RST closes it; here exactly
    /// SEQ = client ISN + 1).
    pub(super) fn on_client_rst_without_flow(&mut self, v: &TcpView, key: &FlowKey) -> Verdict {
        match self.half_open.get(key) {
            Some(e) if v.tcp.seq == e.client_isn.wrapping_add(1) => {
                self.remove_half_open(key);
                Verdict::Absorbed
            }
            _ => Verdict::Drop(DropReason::NoFlow),
        }
    }

    /// An ACK for no tracked flow: the third step of a handshake (queued or
    /// cookie), or junk. A valid one opens the backend connection.
    pub(super) fn on_handshake_ack(
        &mut self,
        now_ms: u64,
        frame: &mut Vec<u8>,
        v: &TcpView,
        key: FlowKey,
    ) -> Verdict {
        if !v.checksum_is_valid(frame) {
            return Verdict::Drop(DropReason::BadChecksum);
        }
        let tsecr = v.options.timestamps.map(|(_, ecr)| ecr);
        // A queue entry knows the client's ISN, so unlike a cookie it can
        // accept an ACK whose SEQ moved past ISN + 1: the client sent data we
        // never saw (its third ACK and first segment lost) and now answers a
        // retransmitted SYN-ACK with a challenge ACK at SND.NXT (RFC 5961 4).
        // Resetting that ACK would kill a real client; the server gets the
        // hole and the client retransmits.
        let queued = self.half_open.get(&key).filter(|e| {
            v.tcp.ack == e.cookie_isn.wrapping_add(1)
                && v.tcp.seq.wrapping_sub(e.client_isn.wrapping_add(1)) <= MAX_QUEUED_SEQ_ADVANCE
        });
        let handshake = match queued {
            Some(e) => {
                self.remove_half_open(&key);
                bump(&self.counters.queue_completed);
                let default_mss = if key.client.is_ipv4() {
                    DEFAULT_MSS_V4
                } else {
                    DEFAULT_MSS_V6
                };
                DecodedCookie {
                    client_isn: e.client_isn,
                    mss: e.mss.unwrap_or(default_mss),
                    wscale: e.wscale,
                    sack_permitted: e.sack_permitted,
                    timestamps: e.timestamps.is_some(),
                    ecn: e.ecn,
                }
            }
            None => match self.minter.check(
                &tuple(v),
                v.tcp.seq,
                v.tcp.ack,
                tsecr,
                self.cookie_clock.seconds(now_ms),
            ) {
                Ok(c) => {
                    bump(&self.counters.cookies_validated);
                    c
                }
                Err(_) if self.unclaimed(now_ms, &key) => {
                    // A connection the gateway does not carry: made while the
                    // service was not protected (pass_through.rs).
                    return self.bridge();
                }
                Err(_) => {
                    bump(&self.counters.cookies_failed);
                    return self.answer_invalid_ack(now_ms, frame, v);
                }
            },
        };
        if !self.flows.make_room() {
            return Verdict::Drop(DropReason::FlowTableFull);
        }
        let service = (key.server, key.server_port);
        // Until this service's server has been seen to do timestamps, leave
        // room for the 12 option bytes the gateway adds to its segments if
        // it declines them (established.rs): the backend is told an MSS 12
        // smaller (RFC 7323 2.2 counts options inside the MSS; a server that
        // does timestamps subtracts them itself, so only the first flows of a
        // service lose these 12 bytes).
        let mut backend = handshake;
        if handshake.timestamps && !self.profiles.accepted(service, SynOption::Timestamps) {
            backend.mss = handshake.mss.saturating_sub(TIMESTAMP_OPTION_SPACE);
        }
        let backend_syn = build_backend_syn(frame, v, &backend);
        let client_shift = handshake.wscale.unwrap_or(0);
        let flow = Flow {
            state: TcpState::BackendSynSent,
            l2: L2Template::from_frame(frame, v.ip.l3_offset),
            client_isn: handshake.client_isn,
            gateway_isn: v.tcp.ack.wrapping_sub(1),
            seq_delta: 0,
            gateway_tsval: tsecr.unwrap_or(0),
            ts_offset: 0,
            timestamps: false,
            client_timestamps: handshake.timestamps,
            client_sack: handshake.sack_permitted,
            client_ecn: handshake.ecn,
            sack_declined: false,
            ecn_declined: false,
            gateway_last_tsval: tsecr.unwrap_or(0),
            server_last_tsval: 0,
            server_last_window: 0,
            client_mss: handshake.mss,
            server_syn: None,
            client_to_server_window: WindowRescale::default(),
            server_to_client_window: WindowRescale::default(),
            client_wscale: handshake.wscale,
            client_last_tsval: v.options.timestamps.map_or(0, |(val, _)| val),
            client_last_window: v.tcp.window,
            server_isn: 0,
            client_next: handshake.client_isn.wrapping_add(1),
            server_next: 0,
            client_window_max: u32::from(v.tcp.window) << client_shift,
            server_window_max: 0,
            client_fin_end: None,
            client_fin_pending: None,
            server_fin_end: None,
            backend_syn: backend_syn.clone(),
            backend_syn_sent: 1,
            held: Vec::new(),
            held_bytes: 0,
            timer_at: 0,
            last_seen: now_ms,
            opened_ms: now_ms,
            last_challenge_ms: None,
        };
        self.flows.insert(key, flow);
        // The ACK itself is held: translated after the server's SYN-ACK it is
        // exactly the ACK that completes the backend handshake.
        self.hold_unbudgeted(&key, frame);
        bump(&self.counters.backend_started);
        self.emit(Port::Server, backend_syn);
        self.arm_timer(&key, now_ms + self.cfg.backend_syn_timeout_ms);
        Verdict::Absorbed
    }

    /// RFC 9293 3.10.7.1 / 3.10.7.2: an unacceptable ACK is answered with
    /// <SEQ=SEG.ACK><CTL=RST>, here within the source's and then the global
    /// RST budget (send_budget.rs: neither tells an attacker about other
    /// connections), or dropped.
    fn answer_invalid_ack(&mut self, now_ms: u64, frame: &mut Vec<u8>, v: &TcpView) -> Verdict {
        match self.cfg.invalid_ack_action {
            InvalidAckAction::Drop => Verdict::Drop(DropReason::InvalidCookie),
            InvalidAckAction::Rst
                if !(self.rst_sources.try_take(now_ms, v.ip.src)
                    && self.rst_budget.try_take(now_ms)) =>
            {
                Verdict::Drop(DropReason::RstBudget)
            }
            InvalidAckAction::Rst => {
                let spec = rst_for_ack(v.tcp.dst_port, v.tcp.src_port, v.tcp.ack);
                reply_in_place(frame, v, &spec);
                bump(&self.counters.rst_sent);
                Verdict::Reply
            }
        }
    }

    /// A server segment while the backend SYN is outstanding: on the
    /// backend side the gateway is the client in SYN-SENT, and does what
    /// RFC 9293 3.10.7.3 says, check by check.
    pub(super) fn on_backend_reply(
        &mut self,
        now_ms: u64,
        frame: &mut [u8],
        v: &TcpView,
        key: &FlowKey,
    ) -> Verdict {
        let Some((iss, pending_syn)) = self.flows.with(key, |f| (f.client_isn, f.server_syn))
        else {
            return Verdict::Drop(DropReason::NoFlow);
        };
        if !v.checksum_is_valid(frame) {
            return Verdict::Drop(DropReason::BadChecksum);
        }
        // Only the SYN is outstanding: SND.UNA = ISS, SND.NXT = ISS + 1.
        let ack_acceptable = v.tcp.has(tcp::ACK) && v.tcp.ack == iss.wrapping_add(1);
        // First, the ACK bit: an unacceptable ACK (e.g. from a server still
        // in TIME_WAIT with an older connection on this 4-tuple, or holding
        // a stale one) gets <SEQ=SEG.ACK><CTL=RST>, which frees that state;
        // then the SYN goes again at once instead of after its timeout.
        if v.tcp.has(tcp::ACK) && !ack_acceptable {
            if v.tcp.has(tcp::RST) {
                return Verdict::Drop(DropReason::UnexpectedSegment);
            }
            self.reset_unacceptable_backend_ack(now_ms, v, key);
            return Verdict::Absorbed;
        }
        // Second, the RST bit: acceptable only with an acceptable ACK.
        if v.tcp.has(tcp::RST) {
            if ack_acceptable {
                self.fail_backend(key, BackendFailure::Refused);
                return Verdict::Absorbed;
            }
            return Verdict::Drop(DropReason::UnexpectedSegment);
        }
        // Fourth, the SYN bit.
        if v.tcp.has(tcp::SYN) {
            let server = ServerSyn {
                isn: v.tcp.seq,
                window: v.tcp.window,
                wscale: v.options.wscale,
                tsval: v.options.timestamps.map(|(val, _)| val),
                sack_permitted: v.options.sack_permitted,
                // RFC 3168 6.1.1: ECE without CWR on the SYN-ACK; on a
                // simultaneous-open SYN, ECE and CWR.
                ecn: if ack_acceptable {
                    v.tcp.flags & (tcp::ECE | tcp::CWR) == tcp::ECE
                } else {
                    v.tcp.has(tcp::ECE | tcp::CWR)
                },
            };
            if ack_acceptable {
                return self.complete_backend(now_ms, key, server);
            }
            // SYN without ACK: simultaneous open. Enter SYN-RECEIVED and
            // answer <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>.
            return self.simultaneous_open(key, server);
        }
        // Fifth, neither SYN nor RST: in SYN-SENT the segment is dropped; in
        // the SYN-RECEIVED of a simultaneous open an acceptable ACK
        // completes the handshake (3.10.7.4).
        match pending_syn {
            Some(server) if ack_acceptable => self.complete_backend(now_ms, key, server),
            _ => Verdict::Drop(DropReason::UnexpectedSegment),
        }
    }

    /// The server's SYN (with an acceptable ACK, or the ACK that ends a
    /// simultaneous open) completes the backend handshake: set up the
    /// translation, learn what the service does, release held frames.
    fn complete_backend(&mut self, now_ms: u64, key: &FlowKey, server: ServerSyn) -> Verdict {
        let gateway_wscale = self.cfg.synack_wscale;
        let service = (key.server, key.server_port);
        let Some((held, client)) = self.flows.with(key, |f| {
            f.server_isn = server.isn;
            f.server_next = server.isn.wrapping_add(1);
            // A SYN's window is never scaled (RFC 7323 2.2).
            f.server_window_max = u32::from(server.window);
            f.seq_delta = f.gateway_isn.wrapping_sub(server.isn);
            // RFC 7323 2.2: scaling is on for a direction only if both SYNs
            // of that handshake carried the option.
            let client_side = f.client_wscale.is_some();
            let server_side = client_side && server.wscale.is_some();
            let client_shift = f.client_wscale.unwrap_or(0);
            f.client_to_server_window = WindowRescale {
                from_shift: if client_side { client_shift } else { 0 },
                to_shift: if server_side { client_shift } else { 0 },
            };
            f.server_to_client_window = WindowRescale {
                from_shift: if server_side {
                    server.wscale.unwrap_or(0)
                } else {
                    0
                },
                to_shift: if client_side { gateway_wscale } else { 0 },
            };
            // Kept in the server's scaled units, like the fields after it.
            f.server_last_window =
                (u32::from(server.window) >> f.server_to_client_window.from_shift) as u16;
            if let Some(server_tsval) = server.tsval.filter(|_| f.client_timestamps) {
                f.timestamps = true;
                f.ts_offset = f.gateway_tsval.wrapping_sub(server_tsval);
                f.server_last_tsval = server_tsval;
            }
            f.sack_declined = f.client_sack && !server.sack_permitted;
            f.ecn_declined = f.client_ecn && !server.ecn;
            f.backend_syn = Vec::new();
            f.server_syn = None;
            f.last_seen = now_ms;
            f.held_bytes = 0;
            let client = [
                (SynOption::Timestamps, f.client_timestamps, f.timestamps),
                (SynOption::SackPermitted, f.client_sack, !f.sack_declined),
                (SynOption::WindowScale, client_side, server_side),
                (SynOption::Ecn, f.client_ecn, !f.ecn_declined),
            ];
            (std::mem::take(&mut f.held), client)
        }) else {
            return Verdict::Drop(DropReason::NoFlow);
        };
        // Learn from what the server did with each option it was offered
        // (the backend SYN offered exactly what the client was promised).
        for (option, offered, accepted) in client {
            if offered {
                self.profiles.record(service, option, accepted, now_ms);
                if !accepted {
                    bump(&self.counters.option_mismatches[option.index()]);
                }
            }
        }
        self.flows.set_state(key, TcpState::Established);
        bump(&self.counters.backend_completed);
        self.note_backend_success(service);
        if let Some(opened) = self.flows.with(key, |f| f.opened_ms) {
            self.counters
                .backend_handshake_latency
                .record(now_ms.saturating_sub(opened));
        }
        // The timer first: a held FIN changes the state, and its state's
        // timer must be the one that stays (arming replaces the flow's one
        // timer; armed after, the established idle timeout replaced a held
        // FIN's CLOSE_WAIT timer, and such a flow never expired).
        self.arm_timer(key, now_ms + self.cfg.established_idle_timeout_ms);
        let released: usize = held.iter().map(Vec::len).sum();
        self.release_held_budget(released);
        for mut held_frame in held {
            if self.translate_held_client_frame(now_ms, &mut held_frame, key) {
                self.emit(Port::Server, held_frame);
            }
        }
        Verdict::Absorbed
    }

    /// RFC 9293 3.10.7.3, SYN-SENT + SYN without ACK: remember the server's
    /// SYN and send <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK> with the backend
    /// SYN's options; the flow waits in BACKEND_SYN_SENT for the ACK.
    fn simultaneous_open(&mut self, key: &FlowKey, server: ServerSyn) -> Verdict {
        let synack = self.flows.with(key, |f| {
            f.server_syn = Some(server);
            let mut synack = f.backend_syn.clone();
            let Ok(ParsedFrame::Tcp(v)) = parse_frame(&synack) else {
                return None;
            };
            rewrite_tcp_u32(&mut synack, &v, tcp::OFF_ACK, server.isn.wrapping_add(1));
            let flags = (v.tcp.flags & !(tcp::ECE | tcp::CWR))
                | tcp::ACK
                | if server.ecn && v.tcp.has(tcp::ECE) {
                    tcp::ECE
                } else {
                    0
                };
            rewrite_tcp_bytes(&mut synack, &v, tcp::OFF_FLAGS, &[flags]);
            Some(synack)
        });
        if let Some(synack) = synack.flatten() {
            self.emit(Port::Server, synack);
        }
        Verdict::Absorbed
    }

    /// Answer an unacceptable ACK in SYN-SENT with <SEQ=SEG.ACK><CTL=RST>
    /// from the client's address, then resend the backend SYN at once
    /// (within `backend_syn_retries`; the timer gives up as before).
    fn reset_unacceptable_backend_ack(&mut self, now_ms: u64, v: &TcpView, key: &FlowKey) {
        let Some((rst, syn)) = self.flows.with(key, |f| {
            let spec = rst_for_ack(key.client_port, key.server_port, v.tcp.ack);
            let rst = frame_to_server(f, key, &spec);
            let resend = f.backend_syn_sent <= self.cfg.backend_syn_retries;
            if resend {
                f.backend_syn_sent += 1;
            }
            (
                rst,
                resend.then(|| (f.backend_syn.clone(), f.backend_syn_sent)),
            )
        }) else {
            return;
        };
        bump(&self.counters.rst_sent);
        self.emit(Port::Server, rst);
        if let Some((syn, sent)) = syn {
            bump(&self.counters.backend_syn_retransmits);
            self.emit(Port::Server, syn);
            let backoff = self.cfg.backend_syn_timeout_ms << (sent - 1).min(16);
            self.arm_timer(key, now_ms + backoff);
        }
    }

    /// Backend refused or never answered: reset the client (its next
    /// expected sequence number is our cookie ISN + 1) and forget the flow.
    pub(super) fn fail_backend(&mut self, key: &FlowKey, why: BackendFailure) {
        if let Some(rst) = self.flows.with(key, |f| build_rst_to_client(key, f)) {
            bump(&self.counters.rst_sent);
            self.emit(Port::Client, rst);
        }
        bump(match why {
            BackendFailure::Refused => &self.counters.backend_refused,
            BackendFailure::Timeout => &self.counters.backend_timeout,
        });
        self.note_backend_failure((key.server, key.server_port));
        self.remove_flow(key);
    }

    /// Backend SYN retransmission timer (1 s doubling, RFC 6298 style).
    pub(super) fn on_backend_syn_timer(&mut self, now_ms: u64, key: &FlowKey) {
        let retries = self.cfg.backend_syn_retries;
        let resend = self.flows.with(key, |f| {
            if f.backend_syn_sent > retries {
                return None;
            }
            f.backend_syn_sent += 1;
            Some((f.backend_syn.clone(), f.backend_syn_sent))
        });
        match resend.flatten() {
            Some((syn, sent)) => {
                bump(&self.counters.backend_syn_retransmits);
                self.emit(Port::Server, syn);
                let backoff = self.cfg.backend_syn_timeout_ms << (sent - 1).min(16);
                self.arm_timer(key, now_ms + backoff);
            }
            None => self.fail_backend(key, BackendFailure::Timeout),
        }
    }

    /// Hold a client frame until the backend handshake completes, within the
    /// per-flow and total budgets.
    pub(super) fn hold(&mut self, key: &FlowKey, frame: &[u8]) -> Verdict {
        // The server's SYN-ACK must now release this frame too, which only
        // the engine does.
        self.take_over_handshake(key);
        let held = self.flows.with(key, |f| f.held_bytes).unwrap_or(0);
        if held + frame.len() > self.cfg.held_bytes_per_flow {
            return Verdict::Drop(DropReason::HeldBytesFlow);
        }
        if self.held_total + frame.len() > self.cfg.held_bytes_total {
            return Verdict::Drop(DropReason::HeldBytesTotal);
        }
        self.hold_unbudgeted(key, frame);
        Verdict::Absorbed
    }

    fn hold_unbudgeted(&mut self, key: &FlowKey, frame: &[u8]) {
        let len = frame.len();
        self.flows.with(key, |f| {
            f.held.push(frame.to_vec());
            f.held_bytes += len;
        });
        self.held_total += len;
        add_signed(&self.counters.held_bytes, len as i64);
    }

    /// Re-acknowledge a repeated server SYN-ACK (our translated ACK was lost):
    /// <SEQ=client ISN+1><ACK=server ISN+1>.
    pub(super) fn reack_server_synack(&mut self, key: &FlowKey, server_tsval: Option<u32>) {
        let frame = self.flows.with(key, |f| {
            let ts = match (f.timestamps, server_tsval) {
                (true, Some(val)) => Some((f.client_last_tsval, val)),
                _ => None,
            };
            let options = SynOptionSet {
                timestamps: ts,
                ..SynOptionSet::default()
            }
            .encode();
            let spec = TcpSegmentSpec {
                src_port: key.client_port,
                dst_port: key.server_port,
                seq: f.client_isn.wrapping_add(1),
                ack: f.server_isn.wrapping_add(1),
                flags: tcp::ACK,
                window: f.client_to_server_window.apply(f.client_last_window),
                options: options.as_slice(),
                payload: &[],
            };
            frame_to_server(f, key, &spec)
        });
        if let Some(frame) = frame {
            self.emit(Port::Server, frame);
        }
    }
}

/// RFC 9293 3.10.7: the answer to an unacceptable ACK,
/// <SEQ=SEG.ACK><CTL=RST>.
fn rst_for_ack(src_port: u16, dst_port: u16, seg_ack: u32) -> TcpSegmentSpec<'static> {
    TcpSegmentSpec {
        src_port,
        dst_port,
        seq: seg_ack,
        ack: 0,
        flags: tcp::RST,
        window: 0,
        options: &[],
        payload: &[],
    }
}

/// `spec` in the client's name toward the server of `key`.
pub(super) fn frame_to_server(f: &Flow, key: &FlowKey, spec: &TcpSegmentSpec) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_tcp_frame(
        &mut out,
        f.l2.to_server(),
        key.client,
        key.server,
        TTL,
        spec,
    );
    out
}

/// `spec` in the server's name toward the client of `key`.
pub(super) fn frame_to_client(f: &Flow, key: &FlowKey, spec: &TcpSegmentSpec) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_tcp_frame(
        &mut out,
        f.l2.to_client().to_server(),
        key.server,
        key.client,
        TTL,
        spec,
    );
    out
}

/// Replace `frame` with `spec` sent back to the frame's sender: MACs
/// swapped (VLAN tags kept), addresses reversed.
pub(super) fn reply_in_place(frame: &mut Vec<u8>, v: &TcpView, spec: &TcpSegmentSpec) {
    let mut l2 = [0u8; MAX_HEADER_LEN];
    let l2_len = v.ip.l3_offset;
    l2[..l2_len].copy_from_slice(&frame[..l2_len]);
    ethernet::swap_macs(&mut l2);
    frame.clear();
    write_tcp_frame(frame, &l2[..l2_len], v.ip.dst, v.ip.src, TTL, spec);
}

/// The backend SYN: the client's 4-tuple, ISN and options (exact from a
/// queue entry, table-quantized MSS from a cookie), so the server negotiates
/// with the client's real parameters.
fn build_backend_syn(ack_frame: &[u8], v: &TcpView, c: &DecodedCookie) -> Vec<u8> {
    let options = SynOptionSet {
        mss: Some(c.mss),
        sack_permitted: c.sack_permitted,
        // TSval: the client's clock as of its ACK; TSecr 0 (RFC 7323 3.2).
        timestamps: v
            .options
            .timestamps
            .filter(|_| c.timestamps)
            .map(|(val, _)| (val, 0)),
        wscale: c.wscale,
    }
    .encode();
    // The ACK's window is scaled by the client's shift; a SYN's never is.
    let shift = c.wscale.unwrap_or(0);
    let window = (u64::from(v.tcp.window) << shift).min(65535) as u16;
    let spec = TcpSegmentSpec {
        src_port: v.tcp.src_port,
        dst_port: v.tcp.dst_port,
        seq: c.client_isn,
        ack: 0,
        flags: tcp::SYN | if c.ecn { tcp::ECE | tcp::CWR } else { 0 },
        window,
        options: options.as_slice(),
        payload: &[],
    };
    let mut out = Vec::with_capacity(128);
    write_tcp_frame(
        &mut out,
        &ack_frame[..v.ip.l3_offset],
        v.ip.src,
        v.ip.dst,
        v.ip.ttl,
        &spec,
    );
    out
}

/// RST toward the client of a flow whose backend never came up.
fn build_rst_to_client(key: &FlowKey, f: &Flow) -> Vec<u8> {
    let spec = TcpSegmentSpec {
        src_port: key.server_port,
        dst_port: key.client_port,
        seq: f.gateway_isn.wrapping_add(1),
        ack: f.client_isn.wrapping_add(1),
        flags: tcp::RST | tcp::ACK,
        window: 0,
        options: &[],
        payload: &[],
    };
    frame_to_client(f, key, &spec)
}
