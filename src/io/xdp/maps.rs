//! Rust twins of the map layouts in bpf/synguard_xdp.h (`#[repr(C)]`, same
//! sizes, checked by the tests below) and the conversions from engine data.
//!
//! Owns byte layouts only; never talks to the kernel (`super` does).

use std::net::IpAddr;

use crate::engine::fast_path::{FastPathParams, FastPathService};
use crate::engine::flow::{L2Template, WindowRescale};
use crate::engine::forward::{FlowProgress, FlowRest, ForwardEntry};
use crate::engine::FlowKey;

/// `struct sg_params`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SgParams {
    pub k0: u64,
    pub k1: u64,
    pub clock_ms: u64,
    pub mono_ns: u64,
    pub stale_after_ns: u64,
    pub stateless_until_ms: u64,
    pub wall_offset_ms: i64,
    pub slot_seconds: u32,
    pub rst_per_second: u32,
    pub mss_v4: u16,
    pub mss_v6: u16,
    pub synack_window: u16,
    pub synack_wscale: u8,
    pub invalid_ack_rst: u8,
    pub enabled: u8,
    /// 1: a valid cookie ACK becomes the backend SYN in the program (the
    /// engine reads `sg_events`).
    pub handshakes: u8,
    pub pad: [u8; 2],
    pub rst_per_source: u32,
    pub k0_accepted: u64,
    pub k1_accepted: u64,
    pub accepted_until_s: u64,
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
    /// `SG_SERVICE_*`.
    pub flags: u8,
    pub pad: [u8; 2],
}

/// `SG_SERVICE_SYNS_UP`.
pub const SERVICE_SYNS_UP: u8 = 1 << 0;
/// `SG_SERVICE_RETIRED`.
pub const SERVICE_RETIRED: u8 = 1 << 1;
/// `SG_SERVICE_ADOPTING`.
pub const SERVICE_ADOPTING: u8 = 1 << 2;
/// `SG_SERVICE_TS_ACCEPTED`.
pub const SERVICE_TS_ACCEPTED: u8 = 1 << 3;

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
    /// 1: the program forwarded the server's FIN, ending at `server_fin_end`.
    pub server_fin: u8,
    pub pad: [u8; 2],
    pub last_seen_ms: u64,
    pub client_next: u32,
    pub server_next: u32,
    pub client_window_max: u32,
    pub server_window_max: u32,
    pub client_last_tsval: u32,
    pub server_last_tsval: u32,
    pub client_last_window: u16,
    pub server_last_window: u16,
    pub server_fin_end: u32,
    pub l2: [u8; 22],
    pub l2_len: u8,
    /// Bits `CLIENT_*` below.
    pub client_opts: u8,
    pub client_isn: u32,
    pub gateway_isn: u32,
    pub gateway_tsval: u32,
    pub server_isn: u32,
    pub gateway_last_tsval: u32,
    pub client_mss: u16,
    /// `WSCALE_NONE` when the client offered no window scale.
    pub client_wscale: u8,
    pub backend_syn_sent: u8,
    pub opened_ms: u64,
}

const CLIENT_TIMESTAMPS: u8 = 1 << 0;
const CLIENT_SACK: u8 = 1 << 1;
const CLIENT_ECN: u8 = 1 << 2;
const WSCALE_NONE: u8 = 0xff;

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
// SAFETY: as above.
unsafe impl aya::Pod for SgHandshake {}

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
    pub const BRIDGED_TO_SERVER: u32 = 15;
    pub const BRIDGED_TO_CLIENT: u32 = 16;
    pub const BACKEND_SYN: u32 = 17;
    pub const EVENTS_FULL: u32 = 18;
    pub const BACKEND_ESTABLISHED: u32 = 19;
    pub const EARLY_DATA: u32 = 20;
    pub const COUNT: u32 = 21;
}

/// `struct sg_event` without its frame: what starts each `sg_events`
/// record; the frame as it arrived follows (`frame_len` of
/// [`EVENT_FRAME_MAX`] bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SgEventHeader {
    /// Engine clock (ms) when the program acted.
    pub now_ms: u64,
    /// `enum sg_event_kind`.
    pub kind: u16,
    pub frame_len: u16,
    /// `SG_EV_BACKEND_ESTABLISHED`: how many of the client segments the
    /// engine holds the one the program sent stands for.
    pub released: u8,
    pub pad: [u8; 3],
}

/// `SG_EVENT_FRAME_MAX`.
pub const EVENT_FRAME_MAX: usize = 256;
/// `SG_EV_BACKEND_SYN`: a valid cookie ACK the program sent on as the
/// backend SYN.
pub const EVENT_BACKEND_SYN: u16 = 1;
/// `SG_EV_BACKEND_ESTABLISHED`: the server's SYN-ACK to such a SYN, which
/// the program turned into the client's ACK, its flow in `sg_flows`.
pub const EVENT_BACKEND_ESTABLISHED: u16 = 2;
/// `SG_EV_EARLY_DATA`: the client's first data segment while that SYN is
/// out, kept by the program for the SYN-ACK to release.
pub const EVENT_EARLY_DATA: u16 = 3;

/// `struct sg_handshake`: a backend handshake the program started and may
/// complete (`sg_handshakes`). This side only deletes entries (the engine
/// took the handshake over); the fields are read by tests.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SgHandshake {
    pub opened_ms: u64,
    pub client_isn: u32,
    pub gateway_isn: u32,
    pub gateway_tsval: u32,
    pub client_last_tsval: u32,
    pub client_window_max: u32,
    pub client_last_window: u16,
    pub client_mss: u16,
    pub client_opts: u8,
    pub client_wscale: u8,
    pub l3_off: u8,
    /// Client segments the engine holds for it: 1 the ACK, 2 the ACK and
    /// the early data in `release`.
    pub held: u8,
    pub release_len: u16,
    pub pad: u16,
    pub l2: [u8; 18],
    pub release: [u8; EVENT_FRAME_MAX],
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
                flags: if s.syns_up { SERVICE_SYNS_UP } else { 0 }
                    | if s.retired { SERVICE_RETIRED } else { 0 }
                    | if s.adopting { SERVICE_ADOPTING } else { 0 }
                    | if s.timestamps_accepted {
                        SERVICE_TS_ACCEPTED
                    } else {
                        0
                    },
                pad: [0; 2],
            },
        )
    }
}

impl SgFlow {
    pub fn from_entry(e: &ForwardEntry) -> SgFlow {
        let (p, r) = (&e.progress, &e.rest);
        let l2_bytes = r.l2.to_server();
        let mut l2 = [0u8; 22];
        l2[..l2_bytes.len()].copy_from_slice(l2_bytes);
        let bit = |on: bool, b: u8| if on { b } else { 0 };
        SgFlow {
            seq_delta: e.seq_delta,
            ts_offset: e.ts_offset,
            timestamps: u8::from(e.timestamps),
            c2s_from: e.client_to_server_window.from_shift,
            c2s_to: e.client_to_server_window.to_shift,
            s2c_from: e.server_to_client_window.from_shift,
            s2c_to: e.server_to_client_window.to_shift,
            server_fin: u8::from(p.server_fin_end.is_some()),
            pad: [0; 2],
            last_seen_ms: p.last_seen_ms,
            client_next: p.client_next,
            server_next: p.server_next,
            client_window_max: p.client_window_max,
            server_window_max: p.server_window_max,
            client_last_tsval: p.client_last_tsval,
            server_last_tsval: p.server_last_tsval,
            client_last_window: p.client_last_window,
            server_last_window: p.server_last_window,
            server_fin_end: p.server_fin_end.unwrap_or(0),
            l2,
            l2_len: l2_bytes.len() as u8,
            client_opts: bit(r.client_timestamps, CLIENT_TIMESTAMPS)
                | bit(r.client_sack, CLIENT_SACK)
                | bit(r.client_ecn, CLIENT_ECN),
            client_isn: r.client_isn,
            gateway_isn: r.gateway_isn,
            gateway_tsval: r.gateway_tsval,
            server_isn: r.server_isn,
            gateway_last_tsval: r.gateway_last_tsval,
            client_mss: r.client_mss,
            client_wscale: r.client_wscale.unwrap_or(WSCALE_NONE),
            backend_syn_sent: r.backend_syn_sent,
            opened_ms: r.opened_ms,
        }
    }

    /// The entry the engine wrote (progress as the program left it);
    /// `None` for one no engine could have written (an impossible L2
    /// length).
    pub fn to_entry(&self) -> Option<ForwardEntry> {
        let len = usize::from(self.l2_len);
        let l2 = L2Template::from_frame(self.l2.get(..len)?, len);
        if !l2.is_valid() {
            return None;
        }
        let rescale = |from_shift, to_shift| WindowRescale {
            from_shift,
            to_shift,
        };
        Some(ForwardEntry {
            seq_delta: self.seq_delta,
            ts_offset: self.ts_offset,
            timestamps: self.timestamps != 0,
            client_to_server_window: rescale(self.c2s_from, self.c2s_to),
            server_to_client_window: rescale(self.s2c_from, self.s2c_to),
            progress: self.progress(),
            rest: FlowRest {
                l2,
                client_isn: self.client_isn,
                gateway_isn: self.gateway_isn,
                gateway_tsval: self.gateway_tsval,
                server_isn: self.server_isn,
                gateway_last_tsval: self.gateway_last_tsval,
                client_mss: self.client_mss,
                client_wscale: (self.client_wscale != WSCALE_NONE).then_some(self.client_wscale),
                client_timestamps: self.client_opts & CLIENT_TIMESTAMPS != 0,
                client_sack: self.client_opts & CLIENT_SACK != 0,
                client_ecn: self.client_opts & CLIENT_ECN != 0,
                backend_syn_sent: self.backend_syn_sent,
                opened_ms: self.opened_ms,
            },
        })
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
            server_fin_end: (self.server_fin != 0).then_some(self.server_fin_end),
        }
    }
}

/// A SipHash key as the program's two words: siphasher's
/// `SipHasher24::new_with_key` reads k0, k1 little-endian.
fn siphash_words(key: &[u8; 16]) -> (u64, u64) {
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    (word(&key[..8]), word(&key[8..]))
}

impl SgParams {
    /// The map entry for `p`, stamped with the monotonic clock reading
    /// `mono_ns` taken together with `p.now_ms`.
    pub fn from_params(p: &FastPathParams, mono_ns: u64, stale_after_ns: u64) -> SgParams {
        let (k0, k1) = siphash_words(&p.siphash_key);
        let (k0_accepted, k1_accepted) = siphash_words(&p.accepted_key);
        SgParams {
            k0,
            k1,
            k0_accepted,
            k1_accepted,
            accepted_until_s: p.accepted_until_secs,
            clock_ms: p.now_ms,
            mono_ns,
            stale_after_ns,
            stateless_until_ms: p.stateless_until_ms,
            wall_offset_ms: p.wall_offset_ms,
            slot_seconds: p.slot_seconds,
            rst_per_second: p.rst_per_second,
            mss_v4: p.synack_mss_v4,
            mss_v6: p.synack_mss_v6,
            synack_window: p.synack_window,
            synack_wscale: p.synack_wscale,
            invalid_ack_rst: u8::from(p.invalid_ack_rst),
            enabled: 1,
            handshakes: 0,
            pad: [0; 2],
            rst_per_source: p.rst_per_source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_c_header() {
        // sizeof() of the C structs (x86-64 and BPF agree: natural alignment).
        assert_eq!(std::mem::size_of::<SgParams>(), 104);
        assert_eq!(std::mem::size_of::<SgServiceKey>(), 20);
        assert_eq!(std::mem::size_of::<SgService>(), 4);
        assert_eq!(std::mem::size_of::<SgFlowKey>(), 40);
        assert_eq!(std::mem::size_of::<SgTracked>(), 16);
        assert_eq!(std::mem::size_of::<SgFlow>(), 112);
        assert_eq!(std::mem::size_of::<SgHandshake>(), 320);
        assert_eq!(
            std::mem::size_of::<SgEventHeader>() + EVENT_FRAME_MAX,
            16 + 256
        );
    }

    #[test]
    fn forward_entries_round_trip_through_the_map_layout() {
        let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x81, 0, 0, 7, 0x08, 0];
        frame.push(0x45);
        for (wscale, ts, sack, ecn) in [(Some(7), true, true, false), (None, false, false, true)] {
            let e = ForwardEntry {
                seq_delta: 0xdead_beef,
                ts_offset: 17,
                timestamps: ts,
                client_to_server_window: WindowRescale {
                    from_shift: 7,
                    to_shift: 9,
                },
                server_to_client_window: WindowRescale {
                    from_shift: 9,
                    to_shift: 7,
                },
                progress: FlowProgress {
                    last_seen_ms: 1_700_000_000_123,
                    client_next: 1,
                    server_next: 2,
                    client_window_max: 3,
                    server_window_max: 4,
                    client_last_tsval: 5,
                    server_last_tsval: 6,
                    client_last_window: 7,
                    server_last_window: 8,
                    server_fin_end: ts.then_some(99),
                },
                rest: FlowRest {
                    l2: L2Template::from_frame(&frame, 18),
                    client_isn: 9,
                    gateway_isn: 10,
                    gateway_tsval: 11,
                    server_isn: 12,
                    gateway_last_tsval: 13,
                    client_mss: 1460,
                    client_wscale: wscale,
                    client_timestamps: ts,
                    client_sack: sack,
                    client_ecn: ecn,
                    backend_syn_sent: 2,
                    opened_ms: 1_700_000_000_000,
                },
            };
            assert_eq!(SgFlow::from_entry(&e).to_entry(), Some(e));
        }
        let damaged = SgFlow {
            l2_len: 40,
            ..SgFlow::default()
        };
        assert_eq!(damaged.to_entry(), None);
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
