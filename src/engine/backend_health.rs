//! Whether each protected service's backend completes handshakes: counts
//! the backend handshakes that failed in a row (refused, or no answer after
//! the retries), and calls the backend down at `backend_down_after` of them
//! and up again at the first one that succeeds. Owns only that bookkeeping
//! and the transitions it reports; what a down backend changes (SYNs
//! bridged to the server, `pass_through.rs`) is decided elsewhere.
//!
//! Why: the gateway completes every client handshake itself, so without
//! this a stopped server looks up to connect-only health checks
//! (keepalived TCP_CHECK, load balancers' TCP probes), and users are sent
//! to it.

use std::collections::HashMap;
use std::net::IpAddr;

/// A protected service: server address and port.
pub type Service = (IpAddr, u16);

/// A backend going down or coming back, for the I/O layer to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendTransition {
    pub service: Service,
    pub down: bool,
    /// Handshakes that failed in a row (when going down).
    pub failures: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Health {
    failures: u32,
    down: bool,
}

#[derive(Debug, Default)]
pub struct BackendHealth {
    services: HashMap<Service, Health>,
    transitions: Vec<BackendTransition>,
}

impl BackendHealth {
    /// A backend handshake of `service` failed; with `down_after` in a row
    /// (0: never) the backend is down. True when it just went down.
    pub fn record_failure(&mut self, service: Service, down_after: u32) -> bool {
        let h = self.services.entry(service).or_default();
        h.failures = h.failures.saturating_add(1);
        if down_after == 0 || h.down || h.failures < down_after {
            return false;
        }
        h.down = true;
        self.transitions.push(BackendTransition {
            service,
            down: true,
            failures: h.failures,
        });
        true
    }

    /// A backend handshake of `service` succeeded. True when it was down.
    pub fn record_success(&mut self, service: Service) -> bool {
        let Some(h) = self.services.remove(&service) else {
            return false;
        };
        if h.down {
            self.transitions.push(BackendTransition {
                service,
                down: false,
                failures: 0,
            });
        }
        h.down
    }

    pub fn is_down(&self, service: Service) -> bool {
        self.services.get(&service).is_some_and(|h| h.down)
    }

    /// Forget services no longer protected (reload); returns how many of
    /// them were down.
    pub fn retain(&mut self, mut keep: impl FnMut(&Service) -> bool) -> usize {
        let mut down = 0;
        self.services.retain(|s, h| {
            let kept = keep(s);
            down += usize::from(!kept && h.down);
            kept
        });
        down
    }

    /// Transitions since the last call, oldest first.
    pub fn drain_transitions(&mut self) -> std::vec::Drain<'_, BackendTransition> {
        self.transitions.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> Service {
        ("198.18.0.2".parse().unwrap(), 8080)
    }

    #[test]
    fn down_after_n_in_a_row_up_at_the_first_success() {
        let mut h = BackendHealth::default();
        assert!(!h.record_failure(svc(), 3));
        assert!(!h.record_failure(svc(), 3));
        assert!(!h.record_success(svc()), "a success resets the count");
        assert!(!h.record_failure(svc(), 3));
        assert!(!h.record_failure(svc(), 3));
        assert!(h.record_failure(svc(), 3));
        assert!(h.is_down(svc()));
        assert!(!h.record_failure(svc(), 3), "already down");
        assert!(h.record_success(svc()));
        assert!(!h.is_down(svc()));
        let t: Vec<_> = h.drain_transitions().collect();
        assert_eq!(
            t,
            [
                BackendTransition {
                    service: svc(),
                    down: true,
                    failures: 3
                },
                BackendTransition {
                    service: svc(),
                    down: false,
                    failures: 0
                }
            ]
        );
    }

    #[test]
    fn services_no_longer_protected_are_forgotten() {
        let mut h = BackendHealth::default();
        let other: Service = ("198.18.0.3".parse().unwrap(), 443);
        h.record_failure(svc(), 1);
        h.record_failure(other, 1);
        assert_eq!(h.retain(|s| *s == other), 1);
        assert!(!h.is_down(svc()) && h.is_down(other));
    }

    #[test]
    fn zero_means_never() {
        let mut h = BackendHealth::default();
        for _ in 0..100 {
            assert!(!h.record_failure(svc(), 0));
        }
        assert!(!h.is_down(svc()));
    }
}
