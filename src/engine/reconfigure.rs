//! Run-time reconfiguration of a live engine (SIGHUP reload): takes a new,
//! already validated `EngineConfig`, applies every setting that can change
//! without breaking connections in flight, keeps the running value of every
//! setting that cannot, and reports which is which by config file key. Never
//! resets counters, never reads files and never logs; the caller decides what
//! to print.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use super::config::EngineConfig;
use super::counters::add_signed;
use super::protected::{canonical, ProtectedServices, ServiceAddr};
use super::{Engine, FlowKey};

/// What [`Engine::reconfigure`] did, by config file key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconfigureReport {
    /// Keys whose new value is in effect now.
    pub applied: Vec<&'static str>,
    /// Keys whose new value takes a restart; the running value is kept.
    pub needs_restart: Vec<&'static str>,
    /// Services no longer protected.
    pub services_removed: Vec<SocketAddr>,
    /// Services newly protected.
    pub services_added: Vec<SocketAddr>,
    /// Flows and half-open entries of removed services, carried on until
    /// they end (translated as before; everything else of those services
    /// is bridged).
    pub connections_kept: usize,
}

impl ReconfigureReport {
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.needs_restart.is_empty()
    }
}

impl Engine {
    /// The settings in effect.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Apply `new` to the running engine at engine time `now_ms`. Counters,
    /// flows and half-open entries survive, also those of services removed
    /// from `protected` (retired: they finish as they started), and
    /// services added take over the connections that predate them
    /// (adopting, `protected.rs`). Limits lowered below the current
    /// occupancy evict nothing: new entries are refused until occupancy
    /// falls below them. Changed timeouts apply to timers armed from now on.
    pub fn reconfigure(&mut self, now_ms: u64, new: EngineConfig) -> ReconfigureReport {
        let mut report = ReconfigureReport::default();
        let old = self.cfg.clone();
        let mut next = new.clone();
        // Destructured field by field so that a new EngineConfig field does
        // not compile until it is classified here as reloadable or not.
        let EngineConfig {
            protected,
            cookie_slot_seconds,
            synack_mss_v4,
            synack_mss_v6,
            synack_window,
            synack_wscale,
            syncookies,
            backlog,
            per_source_backlog,
            synack_retries,
            synack_timeout_ms,
            cookie_hold_ms,
            backend_syn_timeout_ms,
            backend_syn_retries,
            backend_down_after,
            signed_segments,
            max_flows,
            held_bytes_per_flow,
            held_bytes_total,
            invalid_ack_action,
            rst_per_second,
            challenge_ack_per_second,
            established_idle_timeout_ms,
            fin_wait_timeout_ms,
            close_wait_timeout_ms,
            last_ack_timeout_ms,
            msl_ms,
        } = new;

        // Needs a restart, running value kept:
        // - the cookie slot length: the minter is built with it, and cookies
        //   already sent would stop validating if it changed under them;
        // - the gateway's window scale: it is read again when the backend's
        //   SYN-ACK arrives, so a flow whose client was told the old scale
        //   would be translated with the new one;
        // - the syncookies mode: the control endpoint's status view holds
        //   the mode it was started with and would report the wrong one.
        if cookie_slot_seconds != old.cookie_slot_seconds {
            report.needs_restart.push("cookies.slot_seconds");
            next.cookie_slot_seconds = old.cookie_slot_seconds;
        }
        if synack_wscale != old.synack_wscale {
            report.needs_restart.push("handshake.synack_wscale");
            next.synack_wscale = old.synack_wscale;
        }
        if syncookies != old.syncookies {
            report.needs_restart.push("syn_queue.syncookies");
            next.syncookies = old.syncookies;
        }

        // Read from `self.cfg` where used, so replacing cfg applies them.
        let read_where_used: [(&'static str, bool); 18] = [
            (
                "handshake.signed_segments",
                signed_segments != old.signed_segments,
            ),
            (
                "handshake.synack_mss_v4",
                synack_mss_v4 != old.synack_mss_v4,
            ),
            (
                "handshake.synack_mss_v6",
                synack_mss_v6 != old.synack_mss_v6,
            ),
            (
                "handshake.synack_window",
                synack_window != old.synack_window,
            ),
            (
                "handshake.backend_syn_timeout_ms",
                backend_syn_timeout_ms != old.backend_syn_timeout_ms,
            ),
            (
                "handshake.backend_syn_retries",
                backend_syn_retries != old.backend_syn_retries,
            ),
            (
                "handshake.backend_down_after",
                backend_down_after != old.backend_down_after,
            ),
            (
                "syn_queue.synack_retries",
                synack_retries != old.synack_retries,
            ),
            (
                "syn_queue.synack_timeout_ms",
                synack_timeout_ms != old.synack_timeout_ms,
            ),
            (
                "limits.held_bytes_per_flow",
                held_bytes_per_flow != old.held_bytes_per_flow,
            ),
            (
                "limits.held_bytes_total",
                held_bytes_total != old.held_bytes_total,
            ),
            (
                "invalid_ack.action",
                invalid_ack_action != old.invalid_ack_action,
            ),
            (
                "timeouts.established_idle_seconds",
                established_idle_timeout_ms != old.established_idle_timeout_ms,
            ),
            (
                "timeouts.fin_wait_seconds",
                fin_wait_timeout_ms != old.fin_wait_timeout_ms,
            ),
            (
                "timeouts.close_wait_seconds",
                close_wait_timeout_ms != old.close_wait_timeout_ms,
            ),
            (
                "timeouts.last_ack_seconds",
                last_ack_timeout_ms != old.last_ack_timeout_ms,
            ),
            ("timeouts.msl_seconds", msl_ms != old.msl_ms),
            (
                "syn_queue.cookie_hold_seconds",
                cookie_hold_ms != old.cookie_hold_ms,
            ),
        ];
        report.applied.extend(
            read_where_used
                .iter()
                .filter(|(_, changed)| *changed)
                .map(|(key, _)| *key),
        );

        // Held by a component: pushed into it.
        if cookie_hold_ms != old.cookie_hold_ms {
            self.cookie_mode.set_hold_ms(cookie_hold_ms);
        }
        if backlog != old.backlog || per_source_backlog != old.per_source_backlog {
            self.half_open.set_limits(backlog, per_source_backlog);
            self.counters
                .syn_recv_limit
                .store(backlog as u64, Ordering::Relaxed);
            if backlog != old.backlog {
                report.applied.push("syn_queue.backlog");
            }
            if per_source_backlog != old.per_source_backlog {
                report.applied.push("syn_queue.per_source_backlog");
            }
        }
        if max_flows != old.max_flows {
            self.flows.set_limit(max_flows);
            self.counters
                .flows_limit
                .store(max_flows as u64, Ordering::Relaxed);
            report.applied.push("limits.max_flows");
        }
        if rst_per_second != old.rst_per_second {
            self.rst_budget.set_rate(rst_per_second);
            report.applied.push("invalid_ack.rst_per_second");
        }
        if challenge_ack_per_second != old.challenge_ack_per_second {
            self.challenge_budget.set_rate(challenge_ack_per_second);
            report.applied.push("limits.challenge_ack_per_second");
        }
        if protected != old.protected {
            self.replace_protected(now_ms, &old.protected, &protected, &mut report);
            report.applied.push("protect.services");
        } else if !self.protected.retired().is_empty() {
            // Retired services whose connections all ended leave now.
            self.replace_protected(now_ms, &old.protected, &protected, &mut report);
        }

        self.cfg = next;
        report
    }

    fn replace_protected(
        &mut self,
        now_ms: u64,
        old: &[SocketAddr],
        new: &[SocketAddr],
        report: &mut ReconfigureReport,
    ) {
        let mut kept = ProtectedServices::new(new);
        report.services_removed = old.iter().filter(|s| !new.contains(s)).copied().collect();
        report.services_added = new.iter().filter(|s| !old.contains(s)).copied().collect();
        // Connections of services no longer protected finish as they
        // started: a proxied flow bridged untranslated would leave both ends
        // exchanging out-of-window ACKs until a timeout, and a handshake in
        // flight would end in a RST. Retired: the services removed now (a
        // cookie minted just before may still come back), and those retired
        // before that still have connections.
        let orphaned = |k: &FlowKey| !kept.contains(k.server, k.server_port);
        let busy: HashSet<ServiceAddr> = self
            .flows
            .shared()
            .iter()
            .map(|e| *e.key())
            .chain(self.half_open.shared().iter().map(|e| *e.key()))
            .filter(orphaned)
            .map(|k| (k.server, k.server_port))
            .collect();
        let mut retired: Vec<ServiceAddr> = report
            .services_removed
            .iter()
            .map(|s| (canonical(s.ip()), s.port()))
            .collect();
        retired.extend(self.protected.retired().iter().filter(|s| busy.contains(s)));
        kept.set_retired(retired);
        // Services added now take over, for as long as an established flow
        // may stay idle, the connections made while they were not
        // protected (pass_through.rs); those added before keep their time.
        let until = now_ms + self.cfg.established_idle_timeout_ms;
        let mut adopting: Vec<(ServiceAddr, u64)> = report
            .services_added
            .iter()
            .map(|s| ((canonical(s.ip()), s.port()), until))
            .collect();
        adopting.extend(self.protected.adopting().iter().copied());
        kept.set_adopting(now_ms, adopting);
        report.connections_kept = self
            .flows
            .shared()
            .iter()
            .map(|e| *e.key())
            .chain(self.half_open.shared().iter().map(|e| *e.key()))
            .filter(|k| kept.is_retired(k.server, k.server_port))
            .count();
        self.profiles.retain(|(ip, port)| kept.contains(ip, port));
        let down = self
            .backend_health
            .retain(|(ip, port)| kept.contains(*ip, *port));
        add_signed(&self.counters.backends_down, -(down as i64));
        self.protected = kept;
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::cookie::CookieSecret;
    use crate::engine::{Port, SyncookieMode, Verdict};
    use crate::wire::tcp::{self, TcpSegmentSpec};
    use crate::wire::write_tcp_frame;

    const T0: u64 = 1_700_000_000_000;
    const SERVICE: &str = "198.18.0.2:8080";
    const OTHER_SERVICE: &str = "198.18.0.3:443";

    fn config() -> EngineConfig {
        EngineConfig {
            protected: vec![SERVICE.parse().unwrap(), OTHER_SERVICE.parse().unwrap()],
            syncookies: SyncookieMode::Off,
            ..EngineConfig::default()
        }
    }

    fn syn(client_port: u16, service: &str) -> Vec<u8> {
        let service: SocketAddr = service.parse().unwrap();
        let client: IpAddr = "198.18.1.7".parse().unwrap();
        let l2 = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0, 0];
        let spec = TcpSegmentSpec {
            src_port: client_port,
            dst_port: service.port(),
            seq: 0x1000_0000,
            ack: 0,
            flags: tcp::SYN,
            window: 64240,
            options: &[],
            payload: &[],
        };
        let mut out = Vec::new();
        write_tcp_frame(&mut out, &l2, client, service.ip(), 64, &spec);
        out
    }

    fn send_syn(e: &mut Engine, client_port: u16, service: &str) -> Verdict {
        let mut f = syn(client_port, service);
        e.handle(T0, Port::Client, &mut f)
    }

    #[test]
    fn unchanged_config_reports_nothing() {
        let mut e = Engine::new(config(), CookieSecret::from_bytes([3; 16]));
        let report = e.reconfigure(T0, config());
        assert!(report.is_empty(), "{report:?}");
        assert_eq!(e.config(), &config());
    }

    #[test]
    fn limits_apply_and_counters_survive() {
        let mut e = Engine::new(config(), CookieSecret::from_bytes([3; 16]));
        assert_eq!(send_syn(&mut e, 1000, SERVICE), Verdict::Reply);
        assert_eq!(send_syn(&mut e, 1001, SERVICE), Verdict::Reply);
        assert_eq!(e.half_open_count(), 2);
        let counters = e.counters();
        let syn_before = counters.syn_received.load(Ordering::Relaxed);
        assert_eq!(syn_before, 2);

        let new = EngineConfig {
            backlog: 3,
            per_source_backlog: 3,
            max_flows: 10,
            rst_per_second: 5,
            established_idle_timeout_ms: 60_000,
            ..config()
        };
        let report = e.reconfigure(T0, new.clone());
        assert_eq!(
            report.applied,
            vec![
                "timeouts.established_idle_seconds",
                "syn_queue.backlog",
                "syn_queue.per_source_backlog",
                "limits.max_flows",
                "invalid_ack.rst_per_second",
            ]
        );
        assert!(report.needs_restart.is_empty());
        assert_eq!(e.config(), &new);
        // Counters and entries survive; the limit gauges follow.
        assert_eq!(counters.syn_received.load(Ordering::Relaxed), syn_before);
        assert_eq!(e.half_open_count(), 2);
        assert_eq!(counters.syn_recv_limit.load(Ordering::Relaxed), 3);
        assert_eq!(counters.flows_limit.load(Ordering::Relaxed), 10);
        // The new backlog of 3 is in force: one more fits, then drops.
        assert_eq!(send_syn(&mut e, 1002, SERVICE), Verdict::Reply);
        assert!(matches!(
            send_syn(&mut e, 1003, SERVICE),
            Verdict::Drop(crate::engine::DropReason::QueueFull)
        ));
        assert_eq!(counters.syn_received.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn restart_only_keys_keep_the_running_value() {
        let mut e = Engine::new(config(), CookieSecret::from_bytes([3; 16]));
        let new = EngineConfig {
            cookie_slot_seconds: 32,
            synack_wscale: 9,
            syncookies: SyncookieMode::Always,
            synack_mss_v4: 1400,
            ..config()
        };
        let report = e.reconfigure(T0, new);
        assert_eq!(
            report.needs_restart,
            vec![
                "cookies.slot_seconds",
                "handshake.synack_wscale",
                "syn_queue.syncookies"
            ]
        );
        assert_eq!(report.applied, vec!["handshake.synack_mss_v4"]);
        assert_eq!(e.config().cookie_slot_seconds, 64);
        assert_eq!(e.config().synack_wscale, 7);
        assert_eq!(e.config().syncookies, SyncookieMode::Off);
        assert_eq!(e.config().synack_mss_v4, 1400);
        // Still off mode: a SYN is queued, not answered statelessly.
        assert_eq!(send_syn(&mut e, 1000, SERVICE), Verdict::Reply);
        assert_eq!(e.half_open_count(), 1);
    }

    #[test]
    fn removing_a_service_keeps_its_connections_and_bridges_the_rest() {
        let mut e = Engine::new(config(), CookieSecret::from_bytes([3; 16]));
        assert_eq!(send_syn(&mut e, 1000, SERVICE), Verdict::Reply);
        assert_eq!(send_syn(&mut e, 1001, OTHER_SERVICE), Verdict::Reply);
        let counters = e.counters();
        let queued = counters.synack_queued.load(Ordering::Relaxed);

        let new = EngineConfig {
            protected: vec![SERVICE.parse().unwrap(), "198.18.0.4:22".parse().unwrap()],
            ..config()
        };
        let report = e.reconfigure(T0, new);
        assert_eq!(report.applied, vec!["protect.services"]);
        assert_eq!(
            report.services_removed,
            vec![OTHER_SERVICE.parse().unwrap()]
        );
        assert_eq!(
            report.services_added,
            vec!["198.18.0.4:22".parse().unwrap()]
        );
        assert_eq!(report.connections_kept, 1);
        assert_eq!(e.half_open_count(), 2, "both handshakes may complete");
        assert_eq!(counters.half_open.load(Ordering::Relaxed), 2);
        assert_eq!(counters.synack_queued.load(Ordering::Relaxed), queued);
        // The removed service's new SYNs are bridged, the added one answered.
        assert_eq!(send_syn(&mut e, 1002, OTHER_SERVICE), Verdict::Forward);
        assert_eq!(send_syn(&mut e, 1003, "198.18.0.4:22"), Verdict::Reply);
    }
}
