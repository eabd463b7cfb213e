//! Which fragmented TCP datagrams to a protected address belong to a
//! protected service: learned from each datagram's first fragment (the only
//! one with the TCP header), remembered for the fragments that follow, so a
//! fragmented datagram to an unprotected port is bridged whole and one to a
//! protected service is dropped whole. Bounded in entries and time; never
//! reassembles and never looks past the first fragment's ports.

use std::net::IpAddr;

use crate::wire::fragment::Fragment;
use crate::wire::{tcp, IpInfo};

use super::expiring_map::ExpiringMap;
use super::{DropReason, Engine, Verdict};

/// How long a datagram's verdict is kept for its later fragments: Linux's
/// reassembly timeout (`net.ipv4.ipfrag_time`, 30 s; IPv6 the same), after
/// which the receiver would have discarded the datagram anyway.
pub const FRAGMENT_MEMORY_MS: u64 = 30_000;
/// Datagrams remembered at once; the oldest is forgotten first, so a flood
/// of first fragments costs at most this much memory (about 80 bytes each).
pub const FRAGMENT_MEMORY_ENTRIES: usize = 16_384;

/// A datagram: source, destination, protocol and identification (RFC 791
/// 3.2, RFC 8200 4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DatagramKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub id: u32,
}

/// What to do with a fragment of a TCP datagram to a protected address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentVerdict {
    /// Its datagram is for a port no service protects: bridge it.
    Bridge,
    /// Its datagram is for a protected service (synguard only terminates
    /// whole segments), too short to show its ports (RFC 1858 tiny
    /// fragments), or a later fragment whose first was not seen: drop it.
    Drop,
}

#[derive(Debug)]
pub struct FragmentMemory {
    /// Datagram -> bridge it.
    verdicts: ExpiringMap<DatagramKey, bool>,
}

impl Default for FragmentMemory {
    fn default() -> Self {
        FragmentMemory {
            verdicts: ExpiringMap::new(FRAGMENT_MEMORY_MS, FRAGMENT_MEMORY_ENTRIES),
        }
    }
}

impl FragmentMemory {
    /// The verdict for one fragment. `protected_port` is the first
    /// fragment's TCP destination port and whether a service protects it
    /// (`None`: the fragment is not first, or too short to hold the port).
    /// A repeated first fragment updates the verdict and keeps the
    /// datagram's first time.
    pub fn verdict(
        &mut self,
        now_ms: u64,
        key: DatagramKey,
        fragment: Fragment,
        protected_port: Option<bool>,
    ) -> FragmentVerdict {
        let bridge = if fragment.first {
            let bridge = protected_port == Some(false);
            self.verdicts.insert(now_ms, key, bridge);
            bridge
        } else {
            self.verdicts.get(now_ms, &key).copied().unwrap_or(false)
        };
        if bridge {
            FragmentVerdict::Bridge
        } else {
            FragmentVerdict::Drop
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.verdicts.len()
    }
}

impl Engine {
    /// A fragment of a TCP datagram to a protected address, from the client
    /// side. Before, every such fragment was dropped, also those of
    /// unprotected ports, which a gateway that bridges what it does not
    /// protect must pass.
    pub(super) fn tcp_fragment_to_protected_address(
        &mut self,
        now_ms: u64,
        frame: &[u8],
        ip: &IpInfo,
        fragment: Fragment,
    ) -> Verdict {
        // The TCP destination port is bytes 2-3 of the first fragment's data.
        let protected_port = (fragment.first && ip.l4_len >= 4).then(|| {
            let at = ip.l4_offset + 2;
            let port = u16::from_be_bytes([frame[at], frame[at + 1]]);
            self.protected.contains(ip.dst, port)
        });
        let key = DatagramKey {
            src: ip.src,
            dst: ip.dst,
            protocol: tcp::PROTOCOL,
            id: fragment.id,
        };
        match self
            .fragments
            .verdict(now_ms, key, fragment, protected_port)
        {
            FragmentVerdict::Bridge => self.bridge(),
            FragmentVerdict::Drop => Verdict::Drop(DropReason::Fragment),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn key(id: u32) -> DatagramKey {
        DatagramKey {
            src: "198.18.1.1".parse().unwrap(),
            dst: "198.18.0.2".parse().unwrap(),
            protocol: 6,
            id,
        }
    }

    const FIRST: Fragment = Fragment { id: 0, first: true };
    const LATER: Fragment = Fragment {
        id: 0,
        first: false,
    };

    #[test]
    fn later_fragments_follow_their_first() {
        let mut m = FragmentMemory::default();
        assert_eq!(
            m.verdict(T0, key(1), FIRST, Some(false)),
            FragmentVerdict::Bridge
        );
        assert_eq!(
            m.verdict(T0 + 1, key(1), LATER, None),
            FragmentVerdict::Bridge
        );
        assert_eq!(
            m.verdict(T0, key(2), FIRST, Some(true)),
            FragmentVerdict::Drop
        );
        assert_eq!(
            m.verdict(T0 + 1, key(2), LATER, None),
            FragmentVerdict::Drop
        );
        // Too short to show the port, and a later fragment never introduced.
        assert_eq!(m.verdict(T0, key(3), FIRST, None), FragmentVerdict::Drop);
        assert_eq!(m.verdict(T0, key(3), LATER, None), FragmentVerdict::Drop);
        assert_eq!(m.verdict(T0, key(4), LATER, None), FragmentVerdict::Drop);
    }

    #[test]
    fn verdicts_expire_with_the_reassembly_timeout() {
        let mut m = FragmentMemory::default();
        m.verdict(T0, key(1), FIRST, Some(false));
        let last_ms = T0 + FRAGMENT_MEMORY_MS - 1;
        assert_eq!(
            m.verdict(last_ms, key(1), LATER, None),
            FragmentVerdict::Bridge
        );
        assert_eq!(
            m.verdict(T0 + FRAGMENT_MEMORY_MS, key(1), LATER, None),
            FragmentVerdict::Drop
        );
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn memory_is_bounded_oldest_first() {
        let mut m = FragmentMemory::default();
        for id in 0..=FRAGMENT_MEMORY_ENTRIES as u32 {
            m.verdict(T0, key(id), FIRST, Some(false));
        }
        assert_eq!(m.len(), FRAGMENT_MEMORY_ENTRIES);
        assert_eq!(m.verdict(T0, key(0), LATER, None), FragmentVerdict::Drop);
        assert_eq!(m.verdict(T0, key(1), LATER, None), FragmentVerdict::Bridge);
    }
}
