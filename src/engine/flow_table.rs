//! The bounded flow table (dashmap, so a status reader can look in while the
//! engine thread runs). Every state change goes through [`FlowTable::set_state`],
//! which keeps the per-state gauges right.

use std::sync::Arc;

use dashmap::DashMap;

use super::counters::{add_signed, Counters};
use super::flow::{Flow, FlowKey};
use super::state::TcpState;

pub struct FlowTable {
    map: DashMap<FlowKey, Flow>,
    limit: usize,
    counters: Arc<Counters>,
}

impl FlowTable {
    pub fn new(limit: usize, counters: Arc<Counters>) -> FlowTable {
        FlowTable {
            map: DashMap::new(),
            limit,
            counters,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_full(&self) -> bool {
        self.map.len() >= self.limit
    }

    pub fn contains(&self, key: &FlowKey) -> bool {
        self.map.contains_key(key)
    }

    pub fn state(&self, key: &FlowKey) -> Option<TcpState> {
        self.map.get(key).map(|f| f.state)
    }

    /// Insert a new flow (caller checked `is_full`).
    pub fn insert(&self, key: FlowKey, flow: Flow) {
        add_signed(&self.counters.flows_by_state[flow.state.index()], 1);
        if let Some(old) = self.map.insert(key, flow) {
            add_signed(&self.counters.flows_by_state[old.state.index()], -1);
        }
    }

    pub fn remove(&self, key: &FlowKey) -> Option<Flow> {
        let (_, flow) = self.map.remove(key)?;
        add_signed(&self.counters.flows_by_state[flow.state.index()], -1);
        Some(flow)
    }

    /// Run `f` on the flow; `None` if it is not tracked. `f` must not touch
    /// the table (a dashmap shard stays locked while it runs).
    pub fn with<R>(&self, key: &FlowKey, f: impl FnOnce(&mut Flow) -> R) -> Option<R> {
        self.map.get_mut(key).map(|mut g| f(&mut g))
    }

    pub fn set_state(&self, key: &FlowKey, state: TcpState) {
        if let Some(mut f) = self.map.get_mut(key) {
            if f.state != state {
                add_signed(&self.counters.flows_by_state[f.state.index()], -1);
                add_signed(&self.counters.flows_by_state[state.index()], 1);
                f.state = state;
            }
        }
    }

    /// Record the flow's live timer deadline; false if unchanged or no flow.
    pub fn set_timer(&self, key: &FlowKey, at_ms: u64) -> bool {
        self.with(key, |f| std::mem::replace(&mut f.timer_at, at_ms) != at_ms)
            .unwrap_or(false)
    }
}
