//! Timers of flows and half-open entries: a min-heap of (deadline, target)
//! with lazy cancellation. Each flow and entry has one live deadline
//! (`timer_at`); superseded heap entries are skipped when popped. A tick
//! costs O(log n) per expired entry and nothing per idle one: no sweep of
//! the tables.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::flow::FlowKey;

/// What a timer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerTarget {
    Flow(FlowKey),
    HalfOpen(FlowKey),
}

#[derive(Debug, Default)]
pub struct TimerQueue {
    heap: BinaryHeap<Reverse<(u64, TimerTarget)>>,
}

impl TimerQueue {
    pub fn schedule(&mut self, at_ms: u64, target: TimerTarget) {
        self.heap.push(Reverse((at_ms, target)));
    }

    /// Earliest deadline, live or stale (a stale one only causes an early,
    /// empty wake-up).
    pub fn next_deadline(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Pop one entry due at or before `now_ms`.
    pub fn pop_due(&mut self, now_ms: u64) -> Option<(u64, TimerTarget)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now_ms => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> TimerTarget {
        TimerTarget::Flow(FlowKey {
            client: "198.18.0.1".parse().unwrap(),
            server: "198.18.0.2".parse().unwrap(),
            client_port: port,
            server_port: 80,
        })
    }

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let mut q = TimerQueue::default();
        q.schedule(3000, key(3));
        q.schedule(1000, key(1));
        q.schedule(2000, key(2));
        assert_eq!(q.next_deadline(), Some(1000));
        assert_eq!(q.pop_due(999), None);
        assert_eq!(q.pop_due(2500), Some((1000, key(1))));
        assert_eq!(q.pop_due(2500), Some((2000, key(2))));
        assert_eq!(q.pop_due(2500), None);
        assert_eq!(q.len(), 1);
    }
}
