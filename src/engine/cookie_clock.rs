//! Which wall-clock second cookie slots are counted in, given the engine's
//! (monotonic) `now_ms`: cookies must agree between instances and across
//! restarts, so their slots follow the wall clock, while every timer stays
//! on the monotonic clock and no clock step moves it. Owns the offset
//! between the two clocks; never reads a clock itself (the I/O layer hands
//! both in, tests give literal times).

/// Changes of the wall-minus-monotonic offset smaller than this are
/// reading jitter (the two clocks are read one after the other, each to the
/// millisecond) or NTP slewing (at most 500 ppm, so 10 ms in 20 s): they
/// leave the offset, and so the XDP parameters, alone.
pub const WALL_CLOCK_JITTER_MS: i64 = 10;

/// Wall clock = engine clock + `offset_ms`. Zero until the I/O layer sets
/// it: tests that give one literal time per event use it for both.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CookieClock {
    offset_ms: i64,
}

impl CookieClock {
    /// Take the wall clock `wall_ms` read at engine time `now_ms`. A step
    /// (NTP, `date -s`, a VM resumed with its wall clock corrected) moves
    /// cookie slots at once and nothing else.
    pub fn set(&mut self, now_ms: u64, wall_ms: u64) {
        let offset = wall_ms as i64 - now_ms as i64;
        if (offset - self.offset_ms).abs() >= WALL_CLOCK_JITTER_MS {
            self.offset_ms = offset;
        }
    }

    /// Wall clock minus engine clock, ms.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms
    }

    /// Wall-clock seconds since the Unix epoch at engine time `now_ms`: the
    /// time cookies are minted and checked at (`CookieMinter`).
    pub fn seconds(&self, now_ms: u64) -> u64 {
        now_ms.saturating_add_signed(self.offset_ms) / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_steps_and_ignores_jitter() {
        let mut c = CookieClock::default();
        assert_eq!(c.seconds(1_700_000_000_999), 1_700_000_000);
        // A gateway booted 90 s ago, wall clock 2023-11-14.
        c.set(90_000, 1_700_000_000_000);
        assert_eq!(c.offset_ms(), 1_699_999_910_000);
        assert_eq!(c.seconds(91_000), 1_700_000_001);
        // Reading jitter: kept.
        c.set(95_000, 1_700_000_005_009);
        assert_eq!(c.offset_ms(), 1_699_999_910_000);
        // An hour's step back: cookies follow at once.
        c.set(100_000, 1_699_996_410_000);
        assert_eq!(c.seconds(100_000), 1_699_996_410);
    }
}
