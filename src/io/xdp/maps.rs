//! Rust twins of the map layouts in bpf/synguard_xdp.h (`#[repr(C)]`, same
//! sizes, checked by the tests below) and the conversions from engine data.
//!
//! Owns byte layouts only; never talks to the kernel (`super` does).

use std::net::IpAddr;

use crate::engine::fast_path::{FastPathParams, FastPathService, FlowProgress, ForwardEntry};
use crate::engine::FlowKey;

/// `struct sg_params`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SgParams {
    pub k0: u64,
    pub k1: u64,
    pub wall_ms: u64,
    pub mono_ns: u64,
    pub stale_after_ns: u64,
    pub stateless_until_ms: u64,
    pub slot_seconds: u32,
    pub rst_per_second: u32,
    pub mss_v4: u16,
    pub mss_v6: u16,
    pub synack_window: u16,
    pub synack_wscale: u8,
    pub invalid_ack_rst: u8,
    pub enabled: u8,
    pub pad: [u8; 7],
}

/// `struct sg_service_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SgServiceKey {
    pub addr: [u8; 16],
    /// Network byte order.
    pub port_be: u16,
    pub family: u8,
    pub pad: u8,
}

/// `struct sg_service`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SgService {
    pub offer_mask: u8,
    pub pad: [u8; 3],
}

/// `struct sg_flow_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SgFlowKey {
    pub client: [u8; 16],
    pub server: [u8; 16],
    pub client_port_be: u16,
    pub server_port_be: u16,
    pub family: u8,
    pub pad: [u8; 3],
}

pub const ORIGIN_ENGINE: u8 = 1;
pub const ORIGIN_XDP: u8 = 2;

/// `struct sg_tracked`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SgTracked {
    pub since_ns: u64,
    pub origin: u8,
    pub pad: [u8; 7],
}

/// `struct sg_flow`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SgFlow {
    pub seq_delta: u32,
    pub ts_offset: u32,
    pub timestamps: u8,
    pub c2s_from: u8,
    pub c2s_to: u8,
    pub s2c_from: u8,
    pub s2c_to: u8,
    pub pad: [u8; 3],
    pub last_seen_ms: u64,
    pub client_next: u32,
    pub server_next: u32,
    pub client_window_max: u32,
    pub server_window_max: u32,
    pub client_last_tsval: u32,
    pub server_last_tsval: u32,
    pub client_last_window: u16,
    pub server_last_window: u16,
    pub pad2: u32,
}

/// `SG_PORT_CLIENT` / `SG_PORT_SERVER`: indices in `sg_tx_ports`.
pub const PORT_CLIENT: u32 = 0;
pub const PORT_SERVER: u32 = 1;

// SAFETY: plain #[repr(C)] integer structs with explicit padding fields and
// no invalid bit patterns, as aya::Pod requires.
unsafe impl aya::Pod for SgParams {}
// SAFETY: as above.
unsafe impl aya::Pod for SgServiceKey {}
// SAFETY: as above.
unsafe impl aya::Pod for SgService {}
// SAFETY: as above.
unsafe impl aya::Pod for SgFlowKey {}
// SAFETY: as above.
unsafe impl aya::Pod for SgTracked {}
// SAFETY: as above.
unsafe impl aya::Pod for SgFlow {}

/// `enum sg_counter` indices.
pub mod counter {
    pub const RX: u32 = 0;
    pub const PASS: u32 = 1;
    pub const SYN_RECEIVED: u32 = 2;
    pub const SYNACK_COOKIE: u32 = 3;
    pub const COOKIES_FAILED: u32 = 4;
    pub const RST_SENT: u32 = 5;
    pub const DROP_INVALID_COOKIE: u32 = 6;
    pub const DROP_RST_BUDGET: u32 = 7;
    pub const DROP_INVALID_FLAGS: u32 = 8;
    pub const DROP_NO_FLOW: u32 = 9;
    pub const COOKIE_PASSED: u32 = 10;
    pub const TRACK_INSERT_FAILED: u32 = 11;
    pub const STALE: u32 = 12;
    pub const FWD_TO_SERVER: u32 = 13;
    pub const FWD_TO_CLIENT: u32 = 14;
    pub const COUNT: u32 = 15;
}

/// 16 address bytes, IPv4 as v4-mapped (as the cookie MAC input).
fn addr16(ip: IpAddr) -> ([u8; 16], u8) {
    match ip {
        IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), 4),
        IpAddr::V6(v6) => (v6.octets(), 6),
    }
}

fn addr_from16(bytes: [u8; 16], family: u8) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(bytes);
    if family == 4 {
        IpAddr::V4(
            v6.to_ipv4_mapped()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
        )
    } else {
        IpAddr::V6(v6)
    }
}

impl SgFlowKey {
    pub fn from_key(k: &FlowKey) -> SgFlowKey {
        let (client, family) = addr16(k.client);
        let (server, _) = addr16(k.server);
        SgFlowKey {
            client,
            server,
            client_port_be: k.client_port.to_be(),
            server_port_be: k.server_port.to_be(),
            family,
            pad: [0; 3],
        }
    }

    /// The tuple's slot in the program's engine filter: `sg_filter_slot`
    /// in bpf/synguard_xdp.h, bit for bit.
    pub fn filter_slot(&self) -> u32 {
        let word = |b: &[u8; 16]| u32::from_be_bytes([b[12], b[13], b[14], b[15]]);
        let (c, s) = (word(&self.client), word(&self.server));
        let ports = u32::from(u16::from_be(self.client_port_be)) << 16
            | u32::from(u16::from_be(self.server_port_be));
        let h = (c ^ s.rotate_left(7) ^ ports).wrapping_mul(0x9e37_79b1);
        h >> 16
    }

    pub fn to_key(&self) -> FlowKey {
        FlowKey {
            client: addr_from16(self.client, self.family),
            server: addr_from16(self.server, self.family),
            client_port: u16::from_be(self.client_port_be),
            server_port: u16::from_be(self.server_port_be),
        }
    }
}

impl SgServiceKey {
    pub fn from_service(s: &FastPathService) -> (SgServiceKey, SgService) {
        let (addr, family) = addr16(s.addr);
        (
            SgServiceKey {
                addr,
                port_be: s.port.to_be(),
                family,
                pad: 0,
            },
            SgService {
                offer_mask: s.offer_mask,
                pad: [0; 3],
            },
        )
    }
}

impl SgFlow {
    pub fn from_entry(e: &ForwardEntry) -> SgFlow {
        let p = &e.progress;
        SgFlow {
            seq_delta: e.seq_delta,
            ts_offset: e.ts_offset,
            timestamps: u8::from(e.timestamps),
            c2s_from: e.client_to_server_window.from_shift,
            c2s_to: e.client_to_server_window.to_shift,
            s2c_from: e.server_to_client_window.from_shift,
            s2c_to: e.server_to_client_window.to_shift,
            pad: [0; 3],
            last_seen_ms: p.last_seen_ms,
            client_next: p.client_next,
            server_next: p.server_next,
            client_window_max: p.client_window_max,
            server_window_max: p.server_window_max,
            client_last_tsval: p.client_last_tsval,
            server_last_tsval: p.server_last_tsval,
            client_last_window: p.client_last_window,
            server_last_window: p.server_last_window,
            pad2: 0,
        }
    }

    pub fn progress(&self) -> FlowProgress {
        FlowProgress {
            last_seen_ms: self.last_seen_ms,
            client_next: self.client_next,
            server_next: self.server_next,
            client_window_max: self.client_window_max,
            server_window_max: self.server_window_max,
            client_last_tsval: self.client_last_tsval,
            server_last_tsval: self.server_last_tsval,
            client_last_window: self.client_last_window,
            server_last_window: self.server_last_window,
        }
    }
}

impl SgParams {
    /// The map entry for `p`, stamped with the monotonic clock reading
    /// `mono_ns` taken together with `p.now_ms`.
    pub fn from_params(p: &FastPathParams, mono_ns: u64, stale_after_ns: u64) -> SgParams {
        // siphasher's SipHasher24::new_with_key reads k0, k1 little-endian.
        let k0 = u64::from_le_bytes(p.siphash_key[..8].try_into().unwrap_or([0; 8]));
        let k1 = u64::from_le_bytes(p.siphash_key[8..].try_into().unwrap_or([0; 8]));
        SgParams {
            k0,
            k1,
            wall_ms: p.now_ms,
            mono_ns,
            stale_after_ns,
            stateless_until_ms: p.stateless_until_ms,
            slot_seconds: p.slot_seconds,
            rst_per_second: p.rst_per_second,
            mss_v4: p.synack_mss_v4,
            mss_v6: p.synack_mss_v6,
            synack_window: p.synack_window,
            synack_wscale: p.synack_wscale,
            invalid_ack_rst: u8::from(p.invalid_ack_rst),
            enabled: 1,
            pad: [0; 7],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_c_header() {
        // sizeof() of the C structs (x86-64 and BPF agree: natural alignment).
        assert_eq!(std::mem::size_of::<SgParams>(), 72);
        assert_eq!(std::mem::size_of::<SgServiceKey>(), 20);
        assert_eq!(std::mem::size_of::<SgService>(), 4);
        assert_eq!(std::mem::size_of::<SgFlowKey>(), 40);
        assert_eq!(std::mem::size_of::<SgTracked>(), 16);
        assert_eq!(std::mem::size_of::<SgFlow>(), 56);
    }

    #[test]
    fn flow_keys_round_trip_both_families() {
        for (c, s) in [("198.18.0.1", "198.18.0.2"), ("2001:db8::1", "2001:db8::2")] {
            let k = FlowKey {
                client: c.parse().unwrap(),
                server: s.parse().unwrap(),
                client_port: 40000,
                server_port: 8080,
            };
            assert_eq!(SgFlowKey::from_key(&k).to_key(), k);
        }
    }
}
