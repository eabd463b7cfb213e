//! A read-only view of the engine's tables for the control endpoint, safe to
//! use from another thread: it reads the shared dashmaps (briefly holding a
//! shard's read lock per entry batch) and the counters. Never changes
//! anything and never runs on the packet path.

use std::net::SocketAddr;
use std::sync::Arc;

use dashmap::DashMap;

use super::config::SyncookieMode;
use super::counters::Counters;
use super::flow::{Flow, FlowKey};
use super::half_open::HalfOpen;
use super::state::TcpState;

/// The state name used for half-open entries, as `ss state syn-recv` calls them.
pub const SYN_RECV: &str = "syn_recv";

/// One connection as `synguard status` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRow {
    pub state: &'static str,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Since the SYN (half-open) or the backend SYN (flows), ms.
    pub age_ms: u64,
    /// Since the last segment (flows) or the last SYN-ACK (half-open), ms.
    pub idle_ms: u64,
    /// SYN-ACK retransmissions (half-open) or backend SYN retransmissions
    /// (BACKEND_SYN_SENT flows); 0 otherwise.
    pub retransmits: u8,
}

#[derive(Clone)]
pub struct StatusView {
    flows: Arc<DashMap<FlowKey, Flow>>,
    half_open: Arc<DashMap<FlowKey, HalfOpen>>,
    counters: Arc<Counters>,
    pub syncookies: SyncookieMode,
}

fn addrs(k: &FlowKey) -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::new(k.client, k.client_port),
        SocketAddr::new(k.server, k.server_port),
    )
}

impl StatusView {
    pub(super) fn new(
        flows: Arc<DashMap<FlowKey, Flow>>,
        half_open: Arc<DashMap<FlowKey, HalfOpen>>,
        counters: Arc<Counters>,
        syncookies: SyncookieMode,
    ) -> StatusView {
        StatusView {
            flows,
            half_open,
            counters,
            syncookies,
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Counts per state, SYN_RECV first, from the gauges (no table walk).
    pub fn counts(&self) -> Vec<(&'static str, i64)> {
        let c = &self.counters;
        let mut v = vec![(
            SYN_RECV,
            c.half_open.load(std::sync::atomic::Ordering::Relaxed),
        )];
        v.extend(
            TcpState::ALL
                .iter()
                .filter(|s| **s != TcpState::Closed)
                .map(|s| (s.as_str(), c.flows_in(*s))),
        );
        v
    }

    /// Up to `limit` connections in `state` (any state when `None`),
    /// half-open ones first; the bool says whether more matched.
    pub fn rows(
        &self,
        now_ms: u64,
        state: Option<&str>,
        limit: usize,
    ) -> (Vec<ConnectionRow>, bool) {
        let mut rows = Vec::new();
        let mut more = false;
        if state.is_none_or(|s| s == SYN_RECV) {
            for e in self.half_open.iter() {
                if rows.len() == limit {
                    more = true;
                    break;
                }
                let (client, server) = addrs(e.key());
                let h = e.value();
                // The last SYN-ACK went out at created + timeout * (2^n - 1);
                // idle is not tracked for entries, age is what matters.
                rows.push(ConnectionRow {
                    state: SYN_RECV,
                    client,
                    server,
                    age_ms: now_ms.saturating_sub(h.created_ms),
                    idle_ms: now_ms.saturating_sub(h.created_ms),
                    retransmits: h.retransmits,
                });
            }
        }
        if state != Some(SYN_RECV) && !more {
            for e in self.flows.iter() {
                let f = e.value();
                if state.is_some_and(|s| s != f.state.as_str()) {
                    continue;
                }
                if rows.len() == limit {
                    more = true;
                    break;
                }
                let (client, server) = addrs(e.key());
                rows.push(ConnectionRow {
                    state: f.state.as_str(),
                    client,
                    server,
                    age_ms: now_ms.saturating_sub(f.opened_ms),
                    idle_ms: now_ms.saturating_sub(f.last_seen),
                    retransmits: if f.state == TcpState::BackendSynSent {
                        f.backend_syn_sent - 1
                    } else {
                        0
                    },
                });
            }
        }
        (rows, more)
    }
}

/// Whether `name` is a state `rows` understands.
pub fn is_state_name(name: &str) -> bool {
    name == SYN_RECV
        || TcpState::ALL
            .iter()
            .any(|s| s.as_str() == name && *s != TcpState::Closed)
}
