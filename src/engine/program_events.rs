//! Frames the XDP program acted on in the engine's place (design.md
//! section 8), replayed. The program reports each such frame in its event
//! ring as it arrived; the engine runs it through its own handling (the
//! twin of the program's, byte for byte), keeps the state, timers and
//! counters that leaves, and drops the frames it would have sent: the
//! program sent them. So `status`, the metrics and the flow file stay
//! exact however much of the handshake the program does.
//!
//! Never reads the ring (`src/io/xdp` does) and never sends anything.

use super::{Emitted, Engine, FlowKey, Port, TcpState, Verdict};
use crate::wire::{self, ParsedFrame};

/// What the program did with a frame it reports (`enum sg_event_kind`,
/// bpf/synguard_xdp.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramEvent {
    /// A client ACK with a valid cookie, sent on as the backend SYN
    /// (`SG_EV_BACKEND_SYN`).
    BackendSyn,
    /// The server's SYN-ACK to such a SYN: the program installed the flow
    /// in its map and sent the last client segment the engine holds for it
    /// (the ACK, or the early data behind it, which carries the same
    /// acknowledgment), translated, to the server; it stands for the first
    /// `released` held segments (`SG_EV_BACKEND_ESTABLISHED`).
    BackendEstablished { released: u8 },
    /// The client's first data segment while that SYN is out, which the
    /// program keeps for the SYN-ACK to release (`SG_EV_EARLY_DATA`).
    EarlyData,
}

/// How a replay went; the index of `Counters::xdp_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramEventResult {
    /// The engine did what the program did.
    Replayed = 0,
    /// The engine would have done otherwise (a full flow table, a clock
    /// between two cookie slots): what the program sent stands, the engine
    /// keeps no state for it.
    Refused = 1,
    /// The ring was full, so the program did not act and passed the frame
    /// up (counted by the I/O layer from the program's counter).
    RingFull = 2,
}

impl ProgramEventResult {
    pub const ALL: [ProgramEventResult; 3] = [
        ProgramEventResult::Replayed,
        ProgramEventResult::Refused,
        ProgramEventResult::RingFull,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProgramEventResult::Replayed => "replayed",
            ProgramEventResult::Refused => "refused",
            ProgramEventResult::RingFull => "ring_full",
        }
    }
}

/// What a replay found, and the flow it was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    pub result: ProgramEventResult,
    pub key: Option<FlowKey>,
}

impl Engine {
    /// Replay `frame`, which the program handled at engine time `at_ms`
    /// as `event` says, as if it had come up then; counted in
    /// `Counters::xdp_events`.
    ///
    /// - `BackendSyn`: the engine holds the flow in BACKEND_SYN_SENT as
    ///   the program's handshake (it takes it over when a client segment
    ///   comes up before the server answered, [`TrackedChange::EndHandshake`]).
    /// - `EarlyData`: the engine holds the segment, and the handshake stays
    ///   the program's; or, when the program's completion was reported
    ///   first, the engine forwards it (queued to send).
    /// - `BackendEstablished`: the flow is ESTABLISHED and forwarded by the
    ///   program (its entry is the program's). The program's segment stands
    ///   for the first `released` frames the engine releases; frames the
    ///   engine held beyond them (a client segment that came up before the
    ///   take-over reached the program) are the engine's to send, and stay
    ///   in its queue.
    ///
    /// [`TrackedChange::EndHandshake`]: super::fast_path::TrackedChange::EndHandshake
    pub fn replay_program_event(
        &mut self,
        event: ProgramEvent,
        at_ms: u64,
        frame: &mut Vec<u8>,
    ) -> Replay {
        let before = self.emitted.len();
        let view = match wire::parse_frame(frame) {
            Ok(ParsedFrame::Tcp(v)) => Some(v),
            _ => None,
        };
        let (key, agreed) = match event {
            ProgramEvent::BackendSyn => {
                let key = view.as_ref().map(FlowKey::from_client_segment);
                let verdict = self.handle(at_ms, Port::Client, frame);
                let sent_syn =
                    self.emitted.len() == before + 1 && self.emitted[before].port == Port::Server;
                self.emitted.truncate(before);
                let started = key
                    .filter(|k| self.flows.with(k, |f| f.state) == Some(TcpState::BackendSynSent));
                let agreed = verdict == Verdict::Absorbed && sent_syn && started.is_some();
                if let Some(k) = started.filter(|_| agreed) {
                    self.fast_path.program_handshakes.insert(k);
                }
                (key, agreed)
            }
            ProgramEvent::EarlyData => {
                let key = view.as_ref().map(FlowKey::from_client_segment);
                self.fast_path.replaying = true;
                let verdict = self.handle(at_ms, Port::Client, frame);
                self.fast_path.replaying = false;
                let quiet = self.emitted.len() == before;
                self.emitted.truncate(before);
                let held = key.is_some_and(|k| {
                    self.fast_path.program_handshakes.contains(&k)
                        && self.flows.with(&k, |f| f.state) == Some(TcpState::BackendSynSent)
                });
                // The server program released the ACK alone (it read the
                // entry before the data replaced it) and its report came
                // first: the flow is established, and the data the program
                // dropped is the engine's to send.
                if verdict == Verdict::Forward {
                    self.emitted.push(Emitted {
                        port: Port::Server,
                        frame: frame.clone(),
                    });
                }
                (
                    key,
                    (verdict == Verdict::Absorbed && quiet && held) || verdict == Verdict::Forward,
                )
            }
            ProgramEvent::BackendEstablished { released } => {
                let key = view.as_ref().map(FlowKey::from_server_segment);
                let verdict = self.handle(at_ms, Port::Server, frame);
                // The program's segment stands for the first `released`
                // frames; anything after them is the engine's.
                let end = before + usize::from(released.max(1));
                let sent = self.emitted.len() >= end
                    && self.emitted[before..end]
                        .iter()
                        .all(|e| e.port == Port::Server);
                if sent {
                    self.emitted.drain(before..end);
                }
                let forwarded = key.filter(|k| {
                    self.flows.with(k, |f| super::forward::forwardable(f)) == Some(true)
                });
                let agreed = verdict == Verdict::Absorbed && sent && forwarded.is_some();
                if let Some(k) = forwarded.filter(|_| agreed) {
                    self.fast_path.program_handshakes.remove(&k);
                    self.fast_path.forwarded.insert(k);
                }
                (key, agreed)
            }
        };
        let result = Replay {
            result: if agreed {
                ProgramEventResult::Replayed
            } else {
                ProgramEventResult::Refused
            },
            key,
        };
        if result.result == ProgramEventResult::Refused {
            tracing::debug!(
                ?event,
                "the engine would not have done what the XDP program did"
            );
        }
        super::counters::bump(&self.counters.xdp_events[result.result.index()]);
        result
    }
}
