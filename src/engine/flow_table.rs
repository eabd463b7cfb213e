//! The bounded flow table (dashmap, so a status reader can look in while the
//! engine thread runs). Every state change goes through
//! [`FlowTable::set_state`], which keeps the per-state gauges right. Overflow
//! policy: a new flow may evict the oldest TIME_WAIT flow (its connection is
//! over; only stragglers would miss it); if there is none it is refused.

use super::key_log::KeyLog;
use std::collections::VecDeque;
use std::sync::Arc;

use dashmap::DashMap;

use super::counters::{add_signed, Counters};
use super::flow::{Flow, FlowKey};
use super::state::TcpState;

pub struct FlowTable {
    map: Arc<DashMap<FlowKey, Flow>>,
    /// `map.len()` kept here: dashmap's len() visits every shard.
    count: usize,
    limit: usize,
    /// Keys in the order they entered TIME_WAIT (all stay there equally
    /// long, so this is also expiry order); stale keys are skipped lazily.
    time_wait: VecDeque<FlowKey>,
    counters: Arc<Counters>,
    /// Keys inserted, removed or changed state since the last drain, kept only while the
    /// XDP fast path is on (`engine::fast_path`); `None` otherwise.
    touched: KeyLog,
}

impl FlowTable {
    pub fn new(limit: usize, counters: Arc<Counters>) -> FlowTable {
        FlowTable {
            map: Arc::new(DashMap::new()),
            count: 0,
            limit,
            time_wait: VecDeque::new(),
            counters,
            touched: KeyLog::default(),
        }
    }

    /// Start logging inserted and removed keys (for the XDP fast path);
    /// the flows already here (restored at start) count as inserted.
    pub fn log_changes(&mut self) {
        self.touched.enable(self.map.iter().map(|e| *e.key()));
    }

    /// Keys inserted, removed or changed state since the last call (appended to `out`).
    pub fn drain_touched(&mut self, out: &mut Vec<FlowKey>) {
        self.touched.drain_into(out);
    }

    pub fn contains(&self, key: &FlowKey) -> bool {
        self.map.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// New limit (reload). Flows over a lowered limit stay; new ones are
    /// refused (or evict TIME_WAIT flows) until the table is below it.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    pub fn state(&self, key: &FlowKey) -> Option<TcpState> {
        self.map.get(key).map(|f| f.state)
    }

    /// Make room for one more flow: true if there is room now (possibly by
    /// evicting the oldest TIME_WAIT flow).
    pub fn make_room(&mut self) -> bool {
        if self.count < self.limit {
            return true;
        }
        while let Some(key) = self.time_wait.pop_front() {
            if self.state(&key) == Some(TcpState::TimeWait) {
                self.remove(&key);
                counters_bump_evicted(&self.counters);
                return true;
            }
        }
        false
    }

    /// Insert a new flow (caller made room).
    pub fn insert(&mut self, key: FlowKey, flow: Flow) {
        self.touched.note(key);
        add_signed(&self.counters.flows_by_state[flow.state.index()], 1);
        match self.map.insert(key, flow) {
            Some(old) => add_signed(&self.counters.flows_by_state[old.state.index()], -1),
            None => self.count += 1,
        }
    }

    /// Queue a flow inserted already in TIME_WAIT (a restored one) for
    /// eviction like those that entered it here.
    pub fn note_time_wait(&mut self, key: FlowKey) {
        self.time_wait.push_back(key);
    }

    pub fn remove(&mut self, key: &FlowKey) -> Option<Flow> {
        let (_, flow) = self.map.remove(key)?;
        self.touched.note(*key);
        self.count -= 1;
        add_signed(&self.counters.flows_by_state[flow.state.index()], -1);
        // Expired TIME_WAIT keys leave the front of the queue in order.
        while self.time_wait.front().is_some_and(|k| {
            self.map
                .get(k)
                .is_none_or(|f| f.state != TcpState::TimeWait)
        }) {
            self.time_wait.pop_front();
        }
        Some(flow)
    }

    /// Run `f` on the flow; `None` if it is not tracked. `f` must not touch
    /// the table (a dashmap shard stays locked while it runs).
    pub fn with<R>(&self, key: &FlowKey, f: impl FnOnce(&mut Flow) -> R) -> Option<R> {
        self.map.get_mut(key).map(|mut g| f(&mut g))
    }

    pub fn set_state(&mut self, key: &FlowKey, state: TcpState) {
        if let Some(mut f) = self.map.get_mut(key) {
            if f.state != state {
                self.touched.note(*key);
                add_signed(&self.counters.flows_by_state[f.state.index()], -1);
                add_signed(&self.counters.flows_by_state[state.index()], 1);
                f.state = state;
                if state == TcpState::TimeWait {
                    self.time_wait.push_back(*key);
                }
            }
        }
    }

    /// Report `key` among the changed tuples (the XDP fast path looks at
    /// it again at the next drain) without changing it.
    pub fn touch(&mut self, key: &FlowKey) {
        self.touched.note(*key);
    }

    /// A shared handle for readers on other threads (status).
    pub fn shared(&self) -> Arc<DashMap<FlowKey, Flow>> {
        self.map.clone()
    }

    /// Record the flow's live timer deadline; false if unchanged or no flow.
    pub fn set_timer(&self, key: &FlowKey, at_ms: u64) -> bool {
        self.with(key, |f| std::mem::replace(&mut f.timer_at, at_ms) != at_ms)
            .unwrap_or(false)
    }
}

fn counters_bump_evicted(c: &Counters) {
    super::counters::bump(&c.flows_evicted);
}
