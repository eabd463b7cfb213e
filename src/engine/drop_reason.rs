//! Why the engine dropped a frame. Each variant is also the `reason` label of
//! `synguard_drops_total`, so the set is fixed and small.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Headers of a frame for a protected address do not parse.
    Malformed,
    /// TCP checksum wrong on a segment the gateway answers or consumes.
    BadChecksum,
    /// IP fragment of a TCP datagram for a protected service (synguard only
    /// terminates whole segments; TCP never needs fragments), of one too
    /// short to show its ports, or a later fragment whose first was not seen
    /// (`fragments.rs`). Fragments of unprotected ports are bridged.
    Fragment,
    /// Flag combination no handshake or connection uses (SYN+FIN, no ACK, ...).
    InvalidFlags,
    /// ACK with no flow and no valid cookie, dropped by `invalid_ack.action`.
    InvalidCookie,
    /// Invalid ACK that would be answered by a RST, but the RST budget is spent.
    RstBudget,
    /// A valid cookie ACK while the flow table is full.
    FlowTableFull,
    /// Early client data beyond `held_bytes_per_flow`.
    HeldBytesFlow,
    /// Early client data beyond `held_bytes_total`.
    HeldBytesTotal,
    /// Non-SYN segment of no tracked flow that the gateway will not answer
    /// (client RST, or a server segment for a connection it did not open).
    NoFlow,
    /// SYN for a 4-tuple that has a live (not TIME_WAIT) flow, to be
    /// answered with a challenge ACK (RFC 5961 4.2), but the
    /// `challenge_ack_per_second` budget is spent.
    ChallengeAckBudget,
    /// A segment that does not fit the flow's state (server data before its
    /// SYN-ACK, SYN-ACK acknowledging the wrong sequence number).
    UnexpectedSegment,
    /// Frame larger than the port MTU allows (GRO/GSO super-frame).
    Oversize,
    /// SYN while the half-open queue is full and syncookies are off.
    QueueFull,
    /// SYN from a source whose share of the half-open queue is used up
    /// (syncookies off).
    PerSourceLimit,
    /// Segment of a tracked flow outside the plausible sequence window, or
    /// a RST that does not match it (RFC 5961 section 3).
    OutOfWindow,
    /// Segment signed with TCP-MD5 or TCP-AO while `signed_segments = "drop"`.
    SignedSegment,
    /// CE-marked client segment of a flow whose server declined ECN: the
    /// server would ignore the mark, so the congestion signal is delivered
    /// as a loss instead (RFC 3168 5: CE is the alternative to a drop).
    CeWithoutEcn,
}

impl DropReason {
    pub const ALL: [DropReason; 18] = [
        DropReason::Malformed,
        DropReason::BadChecksum,
        DropReason::Fragment,
        DropReason::InvalidFlags,
        DropReason::InvalidCookie,
        DropReason::RstBudget,
        DropReason::FlowTableFull,
        DropReason::HeldBytesFlow,
        DropReason::HeldBytesTotal,
        DropReason::NoFlow,
        DropReason::ChallengeAckBudget,
        DropReason::UnexpectedSegment,
        DropReason::Oversize,
        DropReason::QueueFull,
        DropReason::PerSourceLimit,
        DropReason::OutOfWindow,
        DropReason::SignedSegment,
        DropReason::CeWithoutEcn,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::Fragment => "fragment",
            DropReason::InvalidFlags => "invalid_flags",
            DropReason::InvalidCookie => "invalid_cookie",
            DropReason::RstBudget => "rst_budget",
            DropReason::FlowTableFull => "flow_table_full",
            DropReason::HeldBytesFlow => "held_bytes_flow",
            DropReason::HeldBytesTotal => "held_bytes_total",
            DropReason::NoFlow => "no_flow",
            DropReason::ChallengeAckBudget => "challenge_ack_budget",
            DropReason::UnexpectedSegment => "unexpected_segment",
            DropReason::Oversize => "oversize",
            DropReason::QueueFull => "queue_full",
            DropReason::PerSourceLimit => "per_source_limit",
            DropReason::OutOfWindow => "out_of_window",
            DropReason::SignedSegment => "signed_segment",
            DropReason::CeWithoutEcn => "ce_without_ecn",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_complete_and_indexed_in_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut labels: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), DropReason::ALL.len());
    }
}
