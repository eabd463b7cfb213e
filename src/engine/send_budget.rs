//! Budgets for segments the gateway originates in answer to segments anyone
//! can forge (RSTs to ACKs without a flow, RFC 5961 challenge ACKs to SYNs
//! on open flows), so a flood cannot turn the gateway into a reflector,
//! shaped so that they tell an off-path attacker nothing about other
//! connections. Owns the budget arithmetic only; time is passed in, and
//! the randomness is a keyed hash of the second, so tests and the XDP
//! program compute the same numbers.
//!
//! CVE-2016-5696: Linux's one global, exact challenge-ACK budget let an
//! attacker who exhausted it from its own connection learn, from one
//! missing answer, that a spoofed probe had hit an existing connection
//! elsewhere. Linux answered by drawing each second's allowance at random
//! (commit 75ff39ccc1bd, `tcp_send_challenge_ack`) and later by limiting
//! per socket (`tcp_invalid_ratelimit`). Here, likewise:
//! - [`SendBudget`]: the global budget of a second is drawn at random
//!   between half and one and a half times the configured rate, so one
//!   answer more or less is lost in a noise of the rate's size;
//! - [`SourceBudgets`]: RSTs to invalid ACKs are also limited per source
//!   address, so the answers an attacker can see (those to its own
//!   addresses) depend on its own traffic, not on a spoofed probe's;
//! - challenge ACKs are also limited per flow (`challenge_ack.rs`).

use std::collections::HashMap;
use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher24;

/// The hash input's tag byte (byte 44, where cookies have their mode byte,
/// `(2 << 4) | ...`): a budget's draws never equal a cookie MAC's input.
pub const TAG_RST: u8 = 0xb1;
pub const TAG_CHALLENGE_ACK: u8 = 0xb2;

/// The allowance of engine-clock second `second` for a budget of
/// `per_second`: `ceil(rate / 2) + r mod rate`, `r` the SipHash-2-4 under
/// `key` of the 47 bytes `second` (big-endian, bytes 0..8), zeros, `tag` at
/// byte 44, zeros (bpf/lib/handshake.h `budget_allowance`). Averages the
/// rate; 0 for 0.
pub fn allowance(key: &[u8; 16], tag: u8, per_second: u32, second: u64) -> u32 {
    if per_second == 0 {
        return 0;
    }
    let mut msg = [0u8; 47];
    msg[..8].copy_from_slice(&second.to_be_bytes());
    msg[44] = tag;
    let mut h = SipHasher24::new_with_key(key);
    h.write(&msg);
    per_second.div_ceil(2) + (h.finish() % u64::from(per_second)) as u32
}

/// A global per-second budget with a random allowance each second.
#[derive(Debug, Clone)]
pub struct SendBudget {
    key: [u8; 16],
    tag: u8,
    per_second: u32,
    /// The second counted now (engine clock), what it allows, what it sent.
    second: Option<u64>,
    allowed: u32,
    sent: u32,
}

impl SendBudget {
    pub fn new(per_second: u32, key: [u8; 16], tag: u8) -> SendBudget {
        SendBudget {
            key,
            tag,
            per_second,
            second: None,
            allowed: 0,
            sent: 0,
        }
    }

    /// New rate (reload), from the current second on: what this second
    /// sent already counts against it, so a reload releases no burst.
    pub fn set_rate(&mut self, per_second: u32) {
        self.per_second = per_second;
        if let Some(s) = self.second {
            self.allowed = allowance(&self.key, self.tag, per_second, s);
        }
    }

    /// New key (a rotated cookie secret), from the next second on, as the
    /// XDP program, which draws a second's allowance when it first sees it.
    pub fn set_key(&mut self, key: [u8; 16]) {
        self.key = key;
    }

    pub fn try_take(&mut self, now_ms: u64) -> bool {
        let second = now_ms / 1000;
        if self.second != Some(second) {
            self.second = Some(second);
            self.allowed = allowance(&self.key, self.tag, self.per_second, second);
            self.sent = 0;
        }
        if self.sent < self.allowed {
            self.sent += 1;
            true
        } else {
            false
        }
    }
}

/// RSTs per second a source address may be sent, beyond which its invalid
/// ACKs are dropped (`rst_budget`). Ten covers a client whose connections
/// all went stale at once (a gateway restarted without a shared secret):
/// each keeps retransmitting, and its next segment gets the RST.
pub const RST_PER_SOURCE_PER_SECOND: u32 = 10;
/// Sources counted at once: one whose second has passed carries no
/// information and is forgotten first; with all of them counted in the
/// current second, a new source gets nothing (the global budget is far
/// smaller anyway).
pub const SOURCES_TRACKED: usize = 65_536;

/// Per-source counts of the current second.
#[derive(Debug, Default, Clone)]
pub struct SourceBudgets {
    counts: HashMap<IpAddr, (u64, u32)>,
}

impl SourceBudgets {
    /// Take one of `src`'s answers for the second of `now_ms`.
    pub fn try_take(&mut self, now_ms: u64, src: IpAddr) -> bool {
        let second = now_ms / 1000;
        if self.counts.len() >= SOURCES_TRACKED && !self.counts.contains_key(&src) {
            self.counts.retain(|_, &mut (s, _)| s == second);
            if self.counts.len() >= SOURCES_TRACKED {
                return false;
            }
        }
        let (s, sent) = self.counts.entry(src).or_insert((second, 0));
        if *s != second {
            (*s, *sent) = (second, 0);
        }
        if *sent < RST_PER_SOURCE_PER_SECOND {
            *sent += 1;
            true
        } else {
            false
        }
    }

    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = [7; 16];

    fn sent_in_second(b: &mut SendBudget, second: u64) -> u32 {
        (0..5000)
            .filter(|_| b.try_take(second * 1000 + 500))
            .count() as u32
    }

    #[test]
    fn each_second_allows_a_random_amount_around_the_rate() {
        let mut b = SendBudget::new(1000, KEY, TAG_RST);
        let amounts: Vec<u32> = (1_700_000_000..1_700_000_200)
            .map(|s| sent_in_second(&mut b, s))
            .collect();
        for (i, &n) in amounts.iter().enumerate() {
            assert!((500..1500).contains(&n), "second {i}: {n}");
            assert_eq!(n, allowance(&KEY, TAG_RST, 1000, 1_700_000_000 + i as u64));
        }
        let mean = amounts.iter().map(|&n| f64::from(n)).sum::<f64>() / 200.0;
        assert!((900.0..1100.0).contains(&mean), "mean {mean}");
        let distinct: std::collections::HashSet<u32> = amounts.iter().copied().collect();
        assert!(distinct.len() > 150, "{} distinct amounts", distinct.len());
        // Another key, another tag: other draws.
        assert_ne!(
            allowance(&KEY, TAG_RST, 1000, 1_700_000_000),
            allowance(&KEY, TAG_CHALLENGE_ACK, 1000, 1_700_000_000)
        );
    }

    #[test]
    fn a_reload_keeps_what_the_second_sent() {
        let mut b = SendBudget::new(100, KEY, TAG_RST);
        let first = (0..1000).filter(|_| b.try_take(5_000)).count() as u32;
        assert_eq!(first, allowance(&KEY, TAG_RST, 100, 5));
        b.set_rate(3);
        assert!(!b.try_take(5_999), "the second spent more than 3 already");
        assert_eq!(sent_in_second(&mut b, 6), allowance(&KEY, TAG_RST, 3, 6));
    }

    #[test]
    fn a_new_key_draws_from_the_next_second_on() {
        const NEW: [u8; 16] = [9; 16];
        let mut b = SendBudget::new(1000, KEY, TAG_RST);
        // Seconds whose allowance the two keys draw differently, so the test
        // sees which key drew.
        let s = (1_700_000_000..)
            .find(|&s| {
                allowance(&KEY, TAG_RST, 1000, s) != allowance(&NEW, TAG_RST, 1000, s)
                    && allowance(&KEY, TAG_RST, 1000, s + 1)
                        != allowance(&NEW, TAG_RST, 1000, s + 1)
            })
            .unwrap();
        assert!(b.try_take(s * 1000));
        b.set_key(NEW);
        // The second already drawn keeps its allowance (one was taken).
        assert_eq!(
            sent_in_second(&mut b, s) + 1,
            allowance(&KEY, TAG_RST, 1000, s)
        );
        assert_eq!(
            sent_in_second(&mut b, s + 1),
            allowance(&NEW, TAG_RST, 1000, s + 1)
        );
    }

    #[test]
    fn small_rates() {
        let mut b = SendBudget::new(0, KEY, TAG_RST);
        assert!(!b.try_take(5_000));
        for s in 0..100 {
            assert_eq!(allowance(&KEY, TAG_RST, 1, s), 1);
            assert!((1..=2).contains(&allowance(&KEY, TAG_RST, 2, s)));
        }
    }

    #[test]
    fn each_source_has_its_own_count() {
        let mut s = SourceBudgets::default();
        let (a, b): (IpAddr, IpAddr) = (
            "198.18.1.1".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
        );
        let n = (0..50).filter(|_| s.try_take(10_000, a)).count() as u32;
        assert_eq!(n, RST_PER_SOURCE_PER_SECOND);
        // Another source is untouched by the first one's traffic.
        assert!(s.try_take(10_999, b));
        assert!(!s.try_take(10_999, a));
        assert!(s.try_take(11_000, a), "a new second");
    }

    #[test]
    fn sources_are_bounded_and_the_past_forgotten_first() {
        let mut s = SourceBudgets::default();
        let addr = |i: usize| IpAddr::from([198, 18, (i >> 8) as u8, i as u8]);
        let addr6 =
            |i: usize| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, (i >> 16) as u16, i as u16]);
        for i in 0..SOURCES_TRACKED {
            assert!(s.try_take(1_000, addr6(i)));
        }
        assert!(!s.try_take(1_500, addr(1)), "all counted this second");
        assert_eq!(s.tracked(), SOURCES_TRACKED);
        assert!(s.try_take(2_000, addr(1)), "last second's are forgotten");
        assert_eq!(s.tracked(), 1);
    }
}
