//! The syncookies switch: whether a SYN gets a half-open queue entry or a
//! stateless cookie, per `SyncookieMode` and the auto-mode hold time. Pure
//! decision logic on passed-in time.

use super::config::SyncookieMode;

/// What to do with a new SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynDecision {
    /// Keep a half-open entry (full options, SYN-ACK retransmission).
    Queue,
    /// Answer with a stateless cookie SYN-ACK.
    Cookie,
    /// Queue full (mode off): drop.
    DropQueueFull,
    /// The source's share of the queue is full (mode off): drop.
    DropPerSource,
}

#[derive(Debug, Clone)]
pub struct CookieModeSwitch {
    mode: SyncookieMode,
    hold_ms: u64,
    /// Time of the last overflow in auto mode.
    last_overflow_ms: Option<u64>,
}

impl CookieModeSwitch {
    pub fn new(mode: SyncookieMode, hold_ms: u64) -> CookieModeSwitch {
        CookieModeSwitch {
            mode,
            hold_ms,
            last_overflow_ms: None,
        }
    }

    /// New hold time (reload); an overflow already seen keeps counting.
    pub fn set_hold_ms(&mut self, hold_ms: u64) {
        self.hold_ms = hold_ms;
    }

    /// Answers only stateless SYN-ACKs right now (always mode, or auto mode
    /// within the hold time of an overflow).
    pub fn cookie_mode_active(&self, now_ms: u64) -> bool {
        match self.mode {
            SyncookieMode::Always => true,
            SyncookieMode::Off => false,
            SyncookieMode::Auto => self
                .last_overflow_ms
                .is_some_and(|t| now_ms < t + self.hold_ms),
        }
    }

    /// Until when (engine clock ms, exclusive) SYNs are answered statelessly
    /// as of now: `u64::MAX` for `always`, 0 for `off`, the end of the hold
    /// time after the last overflow for `auto`. Published to the XDP fast
    /// path, which answers SYNs itself only before this instant.
    pub fn stateless_until_ms(&self) -> u64 {
        match self.mode {
            SyncookieMode::Always => u64::MAX,
            SyncookieMode::Off => 0,
            SyncookieMode::Auto => self
                .last_overflow_ms
                .map_or(0, |t| t.saturating_add(self.hold_ms)),
        }
    }

    /// SYNs were answered statelessly elsewhere (the XDP fast path) while
    /// the queue is full: in auto mode that is an overflow like any other,
    /// as every cookie Linux sends refreshes its overflow stamp
    /// (tcp_synq_overflow).
    pub fn note_overflow(&mut self, now_ms: u64) {
        if self.mode == SyncookieMode::Auto {
            self.last_overflow_ms = Some(now_ms);
        }
    }

    /// Decide for a SYN, given whether the queue and the source's share of
    /// it have room. Records an overflow (auto mode) when the queue is full.
    pub fn decide(&mut self, now_ms: u64, queue_full: bool, source_full: bool) -> SynDecision {
        match self.mode {
            SyncookieMode::Always => SynDecision::Cookie,
            SyncookieMode::Off if queue_full => SynDecision::DropQueueFull,
            SyncookieMode::Off if source_full => SynDecision::DropPerSource,
            SyncookieMode::Off => SynDecision::Queue,
            SyncookieMode::Auto => {
                if queue_full {
                    self.last_overflow_ms = Some(now_ms);
                    SynDecision::Cookie
                } else if self.cookie_mode_active(now_ms) || source_full {
                    // One source over its share is answered statelessly but
                    // does not switch everyone to cookie mode.
                    SynDecision::Cookie
                } else {
                    SynDecision::Queue
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SynDecision::*;
    use super::*;

    #[test]
    fn overflows_seen_elsewhere_hold_auto_mode_only() {
        let mut auto = CookieModeSwitch::new(SyncookieMode::Auto, 5_000);
        auto.note_overflow(1_000);
        assert!(auto.cookie_mode_active(5_999));
        assert_eq!(auto.stateless_until_ms(), 6_000);
        auto.note_overflow(4_000);
        assert!(auto.cookie_mode_active(8_999), "each one restarts the hold");
        assert!(!auto.cookie_mode_active(9_000));
        let mut off = CookieModeSwitch::new(SyncookieMode::Off, 5_000);
        off.note_overflow(1_000);
        assert!(!off.cookie_mode_active(1_001));
    }

    #[test]
    fn off_mode_queues_or_drops() {
        let mut s = CookieModeSwitch::new(SyncookieMode::Off, 10_000);
        assert_eq!(s.decide(0, false, false), Queue);
        assert_eq!(s.decide(0, true, false), DropQueueFull);
        assert_eq!(s.decide(0, false, true), DropPerSource);
        assert!(!s.cookie_mode_active(0));
    }

    #[test]
    fn always_mode_is_stateless() {
        let mut s = CookieModeSwitch::new(SyncookieMode::Always, 0);
        assert_eq!(s.decide(0, false, false), Cookie);
        assert!(s.cookie_mode_active(0));
    }

    #[test]
    fn auto_mode_holds_cookie_mode_after_overflow() {
        let mut s = CookieModeSwitch::new(SyncookieMode::Auto, 10_000);
        assert_eq!(s.decide(1_000, false, false), Queue);
        assert_eq!(s.decide(2_000, true, false), Cookie, "overflow");
        assert!(s.cookie_mode_active(2_000));
        assert_eq!(
            s.decide(5_000, false, false),
            Cookie,
            "within hold time the queue is not used"
        );
        assert_eq!(s.decide(11_999, false, false), Cookie);
        assert!(!s.cookie_mode_active(12_000));
        assert_eq!(s.decide(12_000, false, false), Queue, "hold time over");
        // A later overflow restarts the hold.
        assert_eq!(s.decide(20_000, true, false), Cookie);
        assert_eq!(s.decide(29_999, false, false), Cookie);
        assert_eq!(s.decide(30_000, false, false), Queue);
    }

    #[test]
    fn auto_mode_per_source_overflow_does_not_switch_mode() {
        let mut s = CookieModeSwitch::new(SyncookieMode::Auto, 10_000);
        assert_eq!(s.decide(0, false, true), Cookie);
        assert!(!s.cookie_mode_active(1));
        assert_eq!(s.decide(1, false, false), Queue);
    }
}
