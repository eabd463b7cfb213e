//! What each protected service's TCP stack is known to decline, learned from
//! its SYN-ACKs, so the gateway offers clients only what the backend does
//! (the approach of nmsynproxy; Linux's SYNPROXY makes the operator list the
//! options instead). Owns the per-service memory and its expiry; never sees
//! packets, and never decides a single flow's corrections (the flow does).

use std::collections::HashMap;
use std::net::IpAddr;

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

/// A protected service: server address and port.
pub type Service = (IpAddr, u16);

/// Per protected service that has answered a backend SYN, per option.
/// Entries exist only for protected services, so the map is as small as
/// the configured list.
#[derive(Debug, Clone, Default)]
pub struct ServiceProfiles {
    seen: HashMap<Service, [Seen; 4]>,
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
}

impl ServiceProfiles {
    /// What to offer a client of `service` at `now_ms`.
    pub fn offer(&self, service: Service, now_ms: u64) -> Offer {
        let offered = |o: SynOption| !self.declined_recently(service, o, now_ms);
        Offer {
            timestamps: offered(SynOption::Timestamps),
            sack_permitted: offered(SynOption::SackPermitted),
            window_scale: offered(SynOption::WindowScale),
            ecn: offered(SynOption::Ecn),
        }
    }

    /// Did `service` decline `o` less than `DECLINE_MEMORY_MS` ago?
    pub fn declined_recently(&self, service: Service, o: SynOption, now_ms: u64) -> bool {
        matches!(
            self.seen.get(&service).map(|s| s[o.index()]),
            Some(Seen::Declined(at)) if now_ms.saturating_sub(at) < DECLINE_MEMORY_MS
        )
    }

    /// Did the last backend SYN-ACK of `service` that was offered `o`
    /// accept it?
    pub fn accepted(&self, service: Service, o: SynOption) -> bool {
        self.seen.get(&service).map(|s| s[o.index()]) == Some(Seen::Accepted)
    }

    /// The server of `service` answered a backend SYN that offered `o`:
    /// with it (`accepted`) or without it.
    pub fn record(&mut self, service: Service, o: SynOption, accepted: bool, now_ms: u64) {
        let seen = self.seen.entry(service).or_insert([Seen::Unknown; 4]);
        seen[o.index()] = if accepted {
            Seen::Accepted
        } else {
            Seen::Declined(now_ms)
        };
    }

    /// Forget services for which `keep` is false (no longer protected).
    pub fn retain(&mut self, mut keep: impl FnMut(Service) -> bool) {
        self.seen.retain(|&service, _| keep(service));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declined_option_is_withheld_until_the_memory_expires() {
        let mut p = ServiceProfiles::default();
        let web: Service = ("198.18.0.2".parse().unwrap(), 80);
        let other: Service = ("198.18.0.2".parse().unwrap(), 443);
        let t = 1_000_000;
        assert_eq!(p.offer(web, t), Offer::ALL);
        assert!(!p.accepted(web, SynOption::Timestamps));
        p.record(web, SynOption::Timestamps, false, t);
        let offer = p.offer(web, t + 1);
        assert!(!offer.timestamps);
        assert!(offer.sack_permitted && offer.window_scale && offer.ecn);
        assert!(p.declined_recently(web, SynOption::Timestamps, t + 1));
        assert_eq!(p.offer(other, t + 1), Offer::ALL, "per service");
        assert!(!p.offer(web, t + DECLINE_MEMORY_MS - 1).timestamps);
        assert!(p.offer(web, t + DECLINE_MEMORY_MS).timestamps);
        // Accepting it again clears the memory at once.
        p.record(web, SynOption::Timestamps, false, t);
        p.record(web, SynOption::Timestamps, true, t + 5);
        assert!(p.offer(web, t + 6).timestamps);
        assert!(p.accepted(web, SynOption::Timestamps));
        assert!(!p.declined_recently(web, SynOption::Timestamps, t + 6));
        p.record(web, SynOption::Ecn, false, t);
        p.retain(|s| s != web);
        assert_eq!(p.offer(web, t + 1), Offer::ALL, "forgotten");
    }
}
