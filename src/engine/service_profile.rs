//! What each protected service's TCP stack is known to decline, learned from
//! its SYN-ACKs, so the gateway offers clients only what the backend does
//! (the approach of nmsynproxy; Linux's SYNPROXY makes the operator list the
//! options instead). Owns the per-service memory and its expiry; never sees
//! packets, and never decides a single flow's corrections (the flow does).

use std::net::SocketAddr;

/// The SYN options a gateway SYN-ACK can promise a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynOption {
    /// RFC 7323 timestamps.
    Timestamps,
    /// RFC 2018 SACK-permitted.
    SackPermitted,
    /// RFC 7323 window scale.
    WindowScale,
    /// RFC 3168 ECN setup (ECE answered in the SYN-ACK).
    Ecn,
}

impl SynOption {
    pub const ALL: [SynOption; 4] = [
        SynOption::Timestamps,
        SynOption::SackPermitted,
        SynOption::WindowScale,
        SynOption::Ecn,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SynOption::Timestamps => "timestamps",
            SynOption::SackPermitted => "sack_permitted",
            SynOption::WindowScale => "window_scale",
            SynOption::Ecn => "ecn",
        }
    }
}

/// How long a declined option stays withheld after the last SYN-ACK that
/// declined it. A backend whose configuration changes (or a pool behind one
/// address with mixed settings) is offered the option again after this; the
/// flows that then disagree are corrected, and the option withheld again.
pub const DECLINE_MEMORY_MS: u64 = 600_000;

/// What one service's server last did with one option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Never offered to it yet.
    Unknown,
    Accepted,
    /// Declined at this time (ms).
    Declined(u64),
}

/// Per protected service (same order as the configured list), per option.
#[derive(Debug, Clone)]
pub struct ServiceProfiles {
    seen: Vec<[Seen; 4]>,
}

/// Options to offer one client, after the service's profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub timestamps: bool,
    pub sack_permitted: bool,
    pub window_scale: bool,
    pub ecn: bool,
}

impl Offer {
    pub const ALL: Offer = Offer {
        timestamps: true,
        sack_permitted: true,
        window_scale: true,
        ecn: true,
    };

    pub fn allows(&self, o: SynOption) -> bool {
        match o {
            SynOption::Timestamps => self.timestamps,
            SynOption::SackPermitted => self.sack_permitted,
            SynOption::WindowScale => self.window_scale,
            SynOption::Ecn => self.ecn,
        }
    }
}

impl ServiceProfiles {
    pub fn new(services: &[SocketAddr]) -> ServiceProfiles {
        ServiceProfiles {
            seen: vec![[Seen::Unknown; 4]; services.len()],
        }
    }

    /// What to offer a client of service `index` at `now_ms`.
    pub fn offer(&self, index: usize, now_ms: u64) -> Offer {
        let offered = |o: SynOption| !self.declined_recently(index, o, now_ms);
        Offer {
            timestamps: offered(SynOption::Timestamps),
            sack_permitted: offered(SynOption::SackPermitted),
            window_scale: offered(SynOption::WindowScale),
            ecn: offered(SynOption::Ecn),
        }
    }

    /// Did service `index` decline `o` less than `DECLINE_MEMORY_MS` ago?
    pub fn declined_recently(&self, index: usize, o: SynOption, now_ms: u64) -> bool {
        matches!(
            self.seen.get(index).map(|s| s[o.index()]),
            Some(Seen::Declined(at)) if now_ms.saturating_sub(at) < DECLINE_MEMORY_MS
        )
    }

    /// Did the last backend SYN-ACK of service `index` that was offered `o`
    /// accept it?
    pub fn accepted(&self, index: usize, o: SynOption) -> bool {
        self.seen.get(index).map(|s| s[o.index()]) == Some(Seen::Accepted)
    }

    /// The server of service `index` answered a backend SYN that offered
    /// `o`: with it (`accepted`) or without it.
    pub fn record(&mut self, index: usize, o: SynOption, accepted: bool, now_ms: u64) {
        if let Some(seen) = self.seen.get_mut(index) {
            seen[o.index()] = if accepted {
                Seen::Accepted
            } else {
                Seen::Declined(now_ms)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declined_option_is_withheld_until_the_memory_expires() {
        let mut p = ServiceProfiles::new(&["198.18.0.2:80".parse().unwrap()]);
        let t = 1_000_000;
        assert_eq!(p.offer(0, t), Offer::ALL);
        assert!(!p.accepted(0, SynOption::Timestamps));
        p.record(0, SynOption::Timestamps, false, t);
        let offer = p.offer(0, t + 1);
        assert!(!offer.timestamps);
        assert!(offer.sack_permitted && offer.window_scale && offer.ecn);
        assert!(p.declined_recently(0, SynOption::Timestamps, t + 1));
        assert!(!p.offer(0, t + DECLINE_MEMORY_MS - 1).timestamps);
        assert!(p.offer(0, t + DECLINE_MEMORY_MS).timestamps);
        // Accepting it again clears the memory at once.
        p.record(0, SynOption::Timestamps, false, t);
        p.record(0, SynOption::Timestamps, true, t + 5);
        assert!(p.offer(0, t + 6).timestamps);
        assert!(p.accepted(0, SynOption::Timestamps));
        assert!(!p.declined_recently(0, SynOption::Timestamps, t + 6));
        // An unknown index offers everything.
        assert_eq!(p.offer(9, t), Offer::ALL);
    }
}
