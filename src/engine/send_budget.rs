//! Token bucket for segments the gateway originates in answer to segments
//! anyone can forge (RSTs to ACKs without a flow, RFC 5961 challenge ACKs to
//! SYNs on open flows), so a flood cannot turn the gateway into a
//! reflector. Owns the refill arithmetic only; time is passed in.

#[derive(Debug, Clone)]
pub struct SendBudget {
    per_second: u64,
    /// Tokens in thousandths, so refill is exact in integer milliseconds.
    milli_tokens: u64,
    last_ms: u64,
}

impl SendBudget {
    /// Starts full: a burst of `per_second` RSTs is allowed at once.
    pub fn new(per_second: u32) -> SendBudget {
        let per_second = u64::from(per_second);
        SendBudget {
            per_second,
            milli_tokens: per_second * 1000,
            last_ms: 0,
        }
    }

    /// New rate (reload); the tokens saved up are capped at the new burst,
    /// never refilled, so a reload cannot release a burst of RSTs.
    pub fn set_rate(&mut self, per_second: u32) {
        self.per_second = u64::from(per_second);
        self.milli_tokens = self.milli_tokens.min(self.per_second * 1000);
    }

    pub fn try_take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        let cap = self.per_second * 1000;
        self.milli_tokens = (self.milli_tokens + elapsed.saturating_mul(self.per_second)).min(cap);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let mut b = SendBudget::new(10);
        let t0 = 1_000_000;
        let burst = (0..20).filter(|_| b.try_take(t0)).count();
        assert_eq!(burst, 10);
        assert!(!b.try_take(t0 + 99), "0.99 token after 99 ms");
        assert!(b.try_take(t0 + 100), "one token per 100 ms at 10/s");
        assert!(!b.try_take(t0 + 100));
        // A long pause refills only to the cap.
        let after = (0..50).filter(|_| b.try_take(t0 + 60_000)).count();
        assert_eq!(after, 10);
    }

    #[test]
    fn lowering_the_rate_caps_saved_tokens() {
        let mut b = SendBudget::new(100);
        b.set_rate(3);
        let burst = (0..10).filter(|_| b.try_take(1_000)).count();
        assert_eq!(burst, 3, "saved tokens capped at the new burst");
        assert!(!b.try_take(1_332));
        assert!(b.try_take(1_334), "refill at the new rate: one per 333 ms");
    }

    #[test]
    fn zero_rate_never_sends() {
        let mut b = SendBudget::new(0);
        assert!(!b.try_take(5_000));
    }
}
