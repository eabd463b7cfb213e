//! The half-open (SYN_RECV) queue: bounded entries for SYNs answered with a
//! queued SYN-ACK, keyed by 4-tuple, with a per-source share (an IPv4
//! address, an IPv6 /64). Entries keep what a cookie cannot: the client's
//! exact options and the SYN-ACK retransmission state. Their ISN is still a
//! cookie, so losing an entry never breaks a handshake. Plain storage: the
//! engine decides when entries come and go.

use super::key_log::KeyLog;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;

use super::flow::{FlowKey, L2Template};

/// A SYN the gateway answered and remembers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HalfOpen {
    pub client_isn: u32,
    /// Our SYN-ACK's ISN (a cookie).
    pub cookie_isn: u32,
    /// The client's MSS option as sent (not table-quantized).
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    pub ecn: bool,
    /// (our TSval, the client's TSval we echo), when the client sent TSopt.
    pub timestamps: Option<(u32, u32)>,
    /// Client -> server Ethernet header, to address retransmissions.
    pub l2: L2Template,
    /// SYN-ACK retransmissions so far.
    pub retransmits: u8,
    pub created_ms: u64,
    /// Deadline of the entry's live timer.
    pub timer_at: u64,
}

/// The share key of a source: IPv4 address, or the IPv6 /64 (one host
/// usually owns a whole /64, so a per-address limit would be trivial to
/// sidestep).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
    }
}

pub struct HalfOpenQueue {
    entries: Arc<DashMap<FlowKey, HalfOpen>>,
    /// `entries.len()` kept here: dashmap's len() visits every shard.
    count: usize,
    per_source: HashMap<IpAddr, u32>,
    capacity: usize,
    per_source_limit: usize,
    /// Keys inserted or removed since the last drain, kept only while the
    /// XDP fast path is on (`engine::fast_path`); `None` otherwise.
    touched: KeyLog,
}

impl HalfOpenQueue {
    pub fn new(capacity: usize, per_source_limit: usize) -> HalfOpenQueue {
        HalfOpenQueue {
            entries: Arc::new(DashMap::new()),
            count: 0,
            per_source: HashMap::new(),
            capacity,
            per_source_limit,
            touched: KeyLog::default(),
        }
    }

    /// Start logging inserted and removed keys (for the XDP fast path);
    /// entries already here count as inserted.
    pub fn log_changes(&mut self) {
        self.touched.enable(self.entries.iter().map(|e| *e.key()));
    }

    /// Keys inserted or removed since the last call (appended to `out`).
    pub fn drain_touched(&mut self, out: &mut Vec<FlowKey>) {
        self.touched.drain_into(out);
    }

    pub fn contains(&self, key: &FlowKey) -> bool {
        self.count != 0 && self.entries.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn is_full(&self) -> bool {
        self.count >= self.capacity
    }

    /// New limits (reload). Entries over a lowered limit stay; new ones are
    /// refused until the queue drains below it.
    pub fn set_limits(&mut self, capacity: usize, per_source_limit: usize) {
        self.capacity = capacity;
        self.per_source_limit = per_source_limit;
    }

    pub fn source_is_full(&self, client: IpAddr) -> bool {
        self.per_source
            .get(&source_key(client))
            .is_some_and(|&n| n as usize >= self.per_source_limit)
    }

    pub fn get(&self, key: &FlowKey) -> Option<HalfOpen> {
        if self.count == 0 {
            return None; // the common case in cookie mode: skip the hash
        }
        self.entries.get(key).map(|e| e.clone())
    }

    pub fn with<R>(&self, key: &FlowKey, f: impl FnOnce(&mut HalfOpen) -> R) -> Option<R> {
        self.entries.get_mut(key).map(|mut e| f(&mut e))
    }

    /// Insert (caller checked room); replaces an entry with the same key.
    pub fn insert(&mut self, key: FlowKey, entry: HalfOpen) {
        self.touched.note(key);
        if self.entries.insert(key, entry).is_none() {
            self.count += 1;
            *self.per_source.entry(source_key(key.client)).or_insert(0) += 1;
        }
    }

    pub fn remove(&mut self, key: &FlowKey) -> Option<HalfOpen> {
        let (_, entry) = self.entries.remove(key)?;
        self.touched.note(*key);
        self.count -= 1;
        let src = source_key(key.client);
        if let Some(n) = self.per_source.get_mut(&src) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&src);
            }
        }
        Some(entry)
    }

    /// A shared handle for readers on other threads (status).
    pub fn shared(&self) -> Arc<DashMap<FlowKey, HalfOpen>> {
        self.entries.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(client: &str, port: u16) -> FlowKey {
        FlowKey {
            client: client.parse().unwrap(),
            server: "198.18.0.2".parse().unwrap(),
            client_port: port,
            server_port: 80,
        }
    }

    fn entry() -> HalfOpen {
        HalfOpen {
            client_isn: 1,
            cookie_isn: 2,
            mss: Some(1460),
            wscale: None,
            sack_permitted: false,
            ecn: false,
            timestamps: None,
            l2: L2Template::from_frame(&[0u8; 14], 14),
            retransmits: 0,
            created_ms: 0,
            timer_at: 0,
        }
    }

    #[test]
    fn capacity_and_per_source_share() {
        let mut q = HalfOpenQueue::new(3, 2);
        q.insert(key("198.18.1.1", 1), entry());
        assert!(!q.source_is_full("198.18.1.1".parse().unwrap()));
        q.insert(key("198.18.1.1", 2), entry());
        assert!(q.source_is_full("198.18.1.1".parse().unwrap()));
        assert!(!q.source_is_full("198.18.1.2".parse().unwrap()));
        assert!(!q.is_full());
        q.insert(key("198.18.1.2", 1), entry());
        assert!(q.is_full());
        // Replacing an entry does not count twice.
        q.insert(key("198.18.1.2", 1), entry());
        assert_eq!(q.len(), 3);
        q.remove(&key("198.18.1.1", 1));
        assert!(!q.source_is_full("198.18.1.1".parse().unwrap()));
        assert!(!q.is_full());
        assert!(q.remove(&key("198.18.1.1", 1)).is_none());
    }

    #[test]
    fn ipv6_share_is_per_slash_64() {
        let mut q = HalfOpenQueue::new(10, 2);
        q.insert(key("2001:db8:0:1::a", 1), entry());
        q.insert(key("2001:db8:0:1::b", 1), entry());
        assert!(
            q.source_is_full("2001:db8:0:1::ffff".parse().unwrap()),
            "same /64"
        );
        assert!(
            !q.source_is_full("2001:db8:0:2::a".parse().unwrap()),
            "other /64"
        );
    }
}
