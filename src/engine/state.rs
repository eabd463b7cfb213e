//! The proxied connection's TCP state, named as RFC 9293 names the
//! protected server's side of it, plus the proxy's own BACKEND_SYN_SENT, and
//! the one transition function for the close sequence.

/// States of a tracked flow. Close states are the server's view: a client
/// FIN puts the server in CLOSE_WAIT, a server FIN in FIN_WAIT_1, and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TcpState {
    /// Client's cookie ACK accepted, backend SYN sent, waiting for the
    /// server's SYN-ACK.
    BackendSynSent,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    /// Both FINs seen and the first one acknowledged: the gateway keeps the
    /// flow for 2 x MSL to translate late retransmissions, whichever side
    /// closed first (the server itself may already be CLOSED after LAST_ACK).
    TimeWait,
    Closed,
}

/// What a segment says about the close sequence. A segment's ACK is applied
/// before its FIN, as RFC 9293 section 3.10.7.4 processes the ACK field
/// before the FIN bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseEvent {
    ClientFin,
    ServerFin,
    /// The client acknowledged the server's FIN.
    ClientAcksServerFin,
    Rst,
}

impl TcpState {
    pub const ALL: [TcpState; 9] = [
        TcpState::BackendSynSent,
        TcpState::Established,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::CloseWait,
        TcpState::Closing,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::BackendSynSent => "backend_syn_sent",
            TcpState::Established => "established",
            TcpState::FinWait1 => "fin_wait_1",
            TcpState::FinWait2 => "fin_wait_2",
            TcpState::CloseWait => "close_wait",
            TcpState::Closing => "closing",
            TcpState::LastAck => "last_ack",
            TcpState::TimeWait => "time_wait",
            TcpState::Closed => "closed",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The transition function; unlisted pairs keep the state.
    pub fn on(self, event: CloseEvent) -> TcpState {
        use CloseEvent::*;
        use TcpState::*;
        match (self, event) {
            (_, Rst) => Closed,
            (Established, ServerFin) => FinWait1,
            (Established, ClientFin) => CloseWait,
            (FinWait1, ClientAcksServerFin) => FinWait2,
            (FinWait1, ClientFin) => Closing,
            (FinWait2, ClientFin) => TimeWait,
            (Closing, ClientAcksServerFin) => TimeWait,
            (CloseWait, ServerFin) => LastAck,
            (LastAck, ClientAcksServerFin) => TimeWait,
            (state, _) => state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CloseEvent::*;
    use super::TcpState::*;
    use super::*;

    #[test]
    fn transition_table() {
        let table = [
            (Established, ServerFin, FinWait1),
            (Established, ClientFin, CloseWait),
            (Established, ClientAcksServerFin, Established),
            (FinWait1, ClientAcksServerFin, FinWait2),
            (FinWait1, ClientFin, Closing),
            (FinWait1, ServerFin, FinWait1),
            (FinWait2, ClientFin, TimeWait),
            (FinWait2, ServerFin, FinWait2),
            (Closing, ClientAcksServerFin, TimeWait),
            (Closing, ClientFin, Closing),
            (CloseWait, ServerFin, LastAck),
            (CloseWait, ClientFin, CloseWait),
            (LastAck, ClientAcksServerFin, TimeWait),
            (LastAck, ClientFin, LastAck),
            (TimeWait, ClientFin, TimeWait),
            (TimeWait, ServerFin, TimeWait),
            (BackendSynSent, ClientFin, BackendSynSent),
        ];
        for (from, ev, to) in table {
            assert_eq!(from.on(ev), to, "{from:?} + {ev:?}");
        }
        for s in TcpState::ALL {
            assert_eq!(s.on(Rst), Closed, "{s:?} + Rst");
        }
    }

    #[test]
    fn simultaneous_close_reaches_time_wait() {
        // Both FINs cross: server FIN_WAIT_1 -> CLOSING -> TIME_WAIT.
        let s = Established
            .on(ServerFin)
            .on(ClientFin)
            .on(ClientAcksServerFin);
        assert_eq!(s, TimeWait);
    }

    #[test]
    fn labels_unique_and_indexed() {
        for (i, s) in TcpState::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
        let mut l: Vec<_> = TcpState::ALL.iter().map(|s| s.as_str()).collect();
        l.sort_unstable();
        l.dedup();
        assert_eq!(l.len(), TcpState::ALL.len());
    }
}
