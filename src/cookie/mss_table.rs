//! MSS tables: the few MSS values a cookie can encode, and how a client's
//! MSS is rounded down onto them.
//!
//! Owns the table contents and the quantization rule; never sees packets.
//!
//! Quantization: the cookie encodes the largest entry that is <= the
//! client's MSS, so the gateway never sends the client segments larger than
//! it asked for. Two exceptions, both landing on the smallest entry:
//! - no MSS option: RFC 9293 (3.7.1) says to assume 536 (IPv4) / 1220
//!   (IPv6), which is each table's first entry;
//! - an MSS below the smallest entry (including 0): such a client is below
//!   the RFC 9293 minimum every host must accept (576-byte IPv4 / 1280-byte
//!   IPv6 datagrams), and tiny MSS values are a known resource-exhaustion
//!   lever (Linux added `tcp_min_snd_mss` for CVE-2019-11479). Like Linux's
//!   `msstab[0]` fallback, we round up to the smallest entry.

use super::layout::CookieMode;
use super::tuple::AddressFamily;

/// IPv4 without timestamps (2 index bits): Linux's `msstab` exactly:
/// default, common tunnel/mobile, PPPoE-ish, Ethernet.
pub const MSS_TABLE_V4_NO_TS: [u16; 4] = [536, 1300, 1440, 1460];

/// IPv6 without timestamps (2 index bits): Linux's `msstab` for IPv6:
/// minimum-MTU default, 6in4 tunnels (1480 - 60), 1500 - 60 with a little
/// slack, jumbo (9000 - 60).
pub const MSS_TABLE_V6_NO_TS: [u16; 4] = [1220, 1420, 1440, 8940];

/// IPv4 with timestamps (3 index bits). Sorted; the extra entries cover the
/// MSS values that are common on the Internet so fewer clients are rounded
/// down far:
/// - 536: RFC 9293 default (no MSS option);
/// - 1200: conservative clamp used by some VPN and mobile paths;
/// - 1300: Linux's entry, mobile carriers and tunnel stacks;
/// - 1360: the widely recommended clamp for GRE/IPsec paths;
/// - 1400: a very common `adjust-mss` / clamp value;
/// - 1440: Linux's entry, 1500 MTU with a few tunnel bytes;
/// - 1452: PPPoE (1492 MTU - 40);
/// - 1460: plain Ethernet (1500 - 40), the most common value.
///
/// No jumbo entry: an Internet-facing gateway rarely sees v4 jumbo clients,
/// and they only lose throughput (1460), never connectivity.
pub const MSS_TABLE_V4_TS: [u16; 8] = [536, 1200, 1300, 1360, 1400, 1440, 1452, 1460];

/// IPv6 with timestamps (3 index bits). Sorted:
/// - 1220: RFC 9293 default (1280 minimum MTU - 60);
/// - 1280: conservative clamp some tunnels use;
/// - 1360: WireGuard's default 1420 MTU - 60;
/// - 1400: common clamp value;
/// - 1420: 6in4 / HE tunnels (1480 - 60), Linux's entry;
/// - 1432: PPPoE (1492 - 60);
/// - 1440: plain Ethernet (1500 - 60), Linux's entry;
/// - 8940: jumbo frames (9000 - 60), Linux's entry.
pub const MSS_TABLE_V6_TS: [u16; 8] = [1220, 1280, 1360, 1400, 1420, 1432, 1440, 8940];

/// One of the four tables above.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MssTable(&'static [u16]);

impl MssTable {
    /// The table for a family and a cookie mode (the mode fixes how many
    /// index bits there are: 2 without timestamps, 3 with).
    pub(crate) fn select(family: AddressFamily, mode: CookieMode) -> Self {
        let table = match (family, mode) {
            (AddressFamily::V4, CookieMode::NoTimestamps) => Self(&MSS_TABLE_V4_NO_TS),
            (AddressFamily::V6, CookieMode::NoTimestamps) => Self(&MSS_TABLE_V6_NO_TS),
            (AddressFamily::V4, CookieMode::Timestamps) => Self(&MSS_TABLE_V4_TS),
            (AddressFamily::V6, CookieMode::Timestamps) => Self(&MSS_TABLE_V6_TS),
        };
        debug_assert_eq!(table.0.len(), 1 << mode.mss_index_bits());
        table
    }

    /// Index of the entry the cookie encodes for a client's MSS option
    /// (rules in the module doc).
    pub(crate) fn index_for(&self, client_mss: Option<u16>) -> u8 {
        // No option: the RFC default, which is the first entry.
        let mss = client_mss.unwrap_or(self.0[0]);
        let index = self.0.iter().rposition(|&entry| entry <= mss).unwrap_or(0);
        // Tables have at most 8 entries.
        index as u8
    }

    /// The MSS at an index decoded from a cookie. Every index the layout can
    /// produce is in range (the index width matches the table length); the
    /// modulo only keeps this panic-free if that ever changed.
    pub(crate) fn entry(&self, index: u8) -> u16 {
        self.0[usize::from(index) % self.0.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [(AddressFamily, CookieMode); 4] = [
        (AddressFamily::V4, CookieMode::NoTimestamps),
        (AddressFamily::V6, CookieMode::NoTimestamps),
        (AddressFamily::V4, CookieMode::Timestamps),
        (AddressFamily::V6, CookieMode::Timestamps),
    ];

    #[test]
    fn tables_are_sorted_unique_and_sized_for_their_index_bits() {
        for (family, mode) in ALL {
            let table = MssTable::select(family, mode).0;
            assert!(table.windows(2).all(|w| w[0] < w[1]), "{table:?}");
            assert_eq!(table.len(), 1 << mode.mss_index_bits(), "{table:?}");
        }
    }

    #[test]
    fn first_entry_is_the_rfc_9293_default() {
        for (family, mode) in ALL {
            let expected = match family {
                AddressFamily::V4 => 536,
                AddressFamily::V6 => 1220,
            };
            assert_eq!(MssTable::select(family, mode).0[0], expected);
        }
    }

    #[test]
    fn quantization_rounds_down_onto_the_table() {
        use AddressFamily::{V4, V6};
        use CookieMode::{NoTimestamps as Plain, Timestamps as Ts};
        // (family, mode, client MSS, encoded MSS)
        let cases: &[(AddressFamily, CookieMode, Option<u16>, u16)] = &[
            (V4, Plain, None, 536),
            (V4, Plain, Some(0), 536),
            (V4, Plain, Some(88), 536),
            (V4, Plain, Some(535), 536),
            (V4, Plain, Some(536), 536),
            (V4, Plain, Some(1299), 536),
            (V4, Plain, Some(1300), 1300),
            (V4, Plain, Some(1452), 1440),
            (V4, Plain, Some(1460), 1460),
            (V4, Plain, Some(8960), 1460),
            (V4, Plain, Some(u16::MAX), 1460),
            (V6, Plain, None, 1220),
            (V6, Plain, Some(536), 1220),
            (V6, Plain, Some(1219), 1220),
            (V6, Plain, Some(1419), 1220),
            (V6, Plain, Some(1420), 1420),
            (V6, Plain, Some(1440), 1440),
            (V6, Plain, Some(8939), 1440),
            (V6, Plain, Some(8940), 8940),
            (V6, Plain, Some(u16::MAX), 8940),
            (V4, Ts, None, 536),
            (V4, Ts, Some(100), 536),
            (V4, Ts, Some(1199), 536),
            (V4, Ts, Some(1200), 1200),
            (V4, Ts, Some(1380), 1360),
            (V4, Ts, Some(1400), 1400),
            (V4, Ts, Some(1452), 1452),
            (V4, Ts, Some(1459), 1452),
            (V4, Ts, Some(1460), 1460),
            (V4, Ts, Some(u16::MAX), 1460),
            (V6, Ts, None, 1220),
            (V6, Ts, Some(1000), 1220),
            (V6, Ts, Some(1280), 1280),
            (V6, Ts, Some(1360), 1360),
            (V6, Ts, Some(1431), 1420),
            (V6, Ts, Some(1440), 1440),
            (V6, Ts, Some(8940), 8940),
            (V6, Ts, Some(u16::MAX), 8940),
        ];
        for &(family, mode, client, expected) in cases {
            let table = MssTable::select(family, mode);
            let got = table.entry(table.index_for(client));
            assert_eq!(got, expected, "{family:?} {mode:?} client MSS {client:?}");
            if let Some(client) = client {
                // Never above what the client asked for, unless it asked
                // for less than the table's floor.
                assert!(got <= client || got == table.0[0]);
            }
        }
    }
}
