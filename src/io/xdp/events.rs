//! The program's event ring (`sg_events`, bpf/synguard_xdp.h): the frames
//! it handled in the engine's place, read in order without a syscall (the
//! ring is mapped into this process) and handed to the engine's replay
//! (`engine::program_events`). Owns the record layout's parsing; decides
//! nothing about a frame.

use aya::maps::{MapData, RingBuf};

use super::maps::{
    SgEventHeader, EVENT_BACKEND_ESTABLISHED, EVENT_BACKEND_SYN, EVENT_EARLY_DATA, EVENT_FRAME_MAX,
};
use crate::engine::program_events::{ProgramEvent, Replay};
use crate::engine::Engine;

/// Reads `sg_events`; one frame buffer reused for every record.
pub(super) struct EventReader {
    ring: RingBuf<MapData>,
    frame: Vec<u8>,
    /// Records of a kind or length this build does not know (counted, and
    /// logged at powers of two: an object built from other sources).
    pub(super) malformed: u64,
}

/// A record's header and frame, or None for one this build cannot read.
fn parse_record(bytes: &[u8]) -> Option<(ProgramEvent, u64, &[u8])> {
    let head = std::mem::size_of::<SgEventHeader>();
    if bytes.len() < head {
        return None;
    }
    let now_ms = u64::from_ne_bytes(bytes[0..8].try_into().ok()?);
    let kind = u16::from_ne_bytes(bytes[8..10].try_into().ok()?);
    let len = usize::from(u16::from_ne_bytes(bytes[10..12].try_into().ok()?));
    if len > EVENT_FRAME_MAX || bytes.len() < head + len {
        return None;
    }
    let event = match kind {
        EVENT_BACKEND_SYN => ProgramEvent::BackendSyn,
        EVENT_BACKEND_ESTABLISHED => ProgramEvent::BackendEstablished {
            released: bytes[12],
        },
        EVENT_EARLY_DATA => ProgramEvent::EarlyData,
        _ => return None,
    };
    Some((event, now_ms, &bytes[head..head + len]))
}

impl EventReader {
    pub(super) fn new(ring: RingBuf<MapData>) -> EventReader {
        EventReader {
            ring,
            frame: Vec::with_capacity(EVENT_FRAME_MAX),
            malformed: 0,
        }
    }

    /// Replay every record written since the last call, oldest first, each
    /// replay appended to `out`; returns how many records there were.
    pub(super) fn drain(
        &mut self,
        engine: &mut Engine,
        out: &mut Vec<(ProgramEvent, Replay)>,
    ) -> usize {
        let mut n = 0;
        loop {
            let event = {
                let Some(item) = self.ring.next() else {
                    break;
                };
                match parse_record(&item) {
                    Some((event, at_ms, frame)) => {
                        self.frame.clear();
                        self.frame.extend_from_slice(frame);
                        Some((event, at_ms))
                    }
                    None => None,
                }
            };
            n += 1;
            match event {
                Some((event, at_ms)) => {
                    out.push((
                        event,
                        engine.replay_program_event(event, at_ms, &mut self.frame),
                    ));
                }
                None => {
                    self.malformed += 1;
                    if self.malformed.is_power_of_two() {
                        tracing::warn!(
                            total = self.malformed,
                            "unreadable XDP event record (an object built from other sources?)"
                        );
                    }
                }
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u16, frame: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&1234u64.to_ne_bytes());
        r.extend_from_slice(&kind.to_ne_bytes());
        r.extend_from_slice(&(frame.len() as u16).to_ne_bytes());
        r.extend_from_slice(&[0; 4]);
        r.extend_from_slice(frame);
        r.resize(std::mem::size_of::<SgEventHeader>() + EVENT_FRAME_MAX, 0);
        r
    }

    #[test]
    fn records_parse_to_their_frame_and_time() {
        let r = record(EVENT_BACKEND_SYN, &[1, 2, 3]);
        assert_eq!(
            parse_record(&r),
            Some((ProgramEvent::BackendSyn, 1234, &[1u8, 2, 3][..]))
        );
    }

    #[test]
    fn a_completed_handshake_says_how_many_held_segments_it_released() {
        let mut r = record(EVENT_BACKEND_ESTABLISHED, &[9]);
        r[12] = 2;
        assert_eq!(
            parse_record(&r).map(|(e, _, _)| e),
            Some(ProgramEvent::BackendEstablished { released: 2 })
        );
    }

    #[test]
    fn unknown_kinds_and_impossible_lengths_are_refused() {
        assert_eq!(parse_record(&record(99, &[1])), None);
        let mut r = record(EVENT_BACKEND_SYN, &[1]);
        r[10..12].copy_from_slice(&(EVENT_FRAME_MAX as u16 + 1).to_ne_bytes());
        assert_eq!(parse_record(&r), None);
        assert_eq!(parse_record(&r[..8]), None);
    }
}
