//! Frames the XDP program acted on in the engine's place (design.md
//! section 8), replayed. The program reports each such frame in its event
//! ring as it arrived; the engine runs it through its own handling (the
//! twin of the program's, byte for byte), keeps the state, timers and
//! counters that leaves, and drops the frames it would have sent: the
//! program sent them. So `status`, the metrics and the flow file stay
//! exact however much of the handshake the program does.
//!
//! Never reads the ring (`src/io/xdp` does) and never sends anything.

use super::{Engine, FlowKey, Port, TcpState, Verdict};
use crate::wire::{self, ParsedFrame};

/// What the program did with a frame it reports (`enum sg_event_kind`,
/// bpf/synguard_xdp.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramEvent {
    /// A client ACK with a valid cookie, sent on as the backend SYN
    /// (`SG_EV_BACKEND_SYN`).
    BackendSyn,
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

impl Engine {
    /// Replay `frame`, which the program handled at engine time `at_ms`
    /// as `event` says, as if it had come up then; counted in
    /// `Counters::xdp_events`.
    pub fn replay_program_event(
        &mut self,
        event: ProgramEvent,
        at_ms: u64,
        frame: &mut Vec<u8>,
    ) -> ProgramEventResult {
        let before = self.emitted.len();
        let result = match event {
            ProgramEvent::BackendSyn => {
                let key = match wire::parse_frame(frame) {
                    Ok(ParsedFrame::Tcp(v)) => Some(FlowKey::from_client_segment(&v)),
                    _ => None,
                };
                let verdict = self.handle(at_ms, Port::Client, frame);
                let sent_syn =
                    self.emitted.len() == before + 1 && self.emitted[before].port == Port::Server;
                let started = key.is_some_and(|k| {
                    self.flows.with(&k, |f| f.state) == Some(TcpState::BackendSynSent)
                });
                if verdict == Verdict::Absorbed && sent_syn && started {
                    ProgramEventResult::Replayed
                } else {
                    tracing::debug!(
                        ?verdict,
                        "the engine would not have sent the backend SYN the XDP program sent"
                    );
                    ProgramEventResult::Refused
                }
            }
        };
        self.emitted.truncate(before);
        super::counters::bump(&self.counters.xdp_events[result.index()]);
        result
    }
}
