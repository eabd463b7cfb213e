//! MSS tables: the few MSS values a cookie can encode, and how a client's
//! MSS is rounded down onto them.
//!
//! Owns the table contents and the quantization rule; never sees packets.
//!
//! One 8-entry table per address family, used by both cookie layouts (3
//! index bits in each, see `layout`). The entries are chosen so that every
//! common MSS loses at most 1.6 % of its payload per segment:
//!
//! | client MSS (IPv4) | encoded | loss | client MSS (IPv6) | encoded | loss |
//! |---|---|---|---|---|---|
//! | 1460 | 1460 | 0 | 1440 | 1440 | 0 |
//! | 1452 (PPPoE) | 1440 | 0.8 % | 1432 (PPPoE) | 1420 | 0.8 % |
//! | 1440 | 1440 | 0 | 1420 (6in4) | 1420 | 0 |
//! | 1420 | 1400 | 1.4 % | 1400 | 1380 | 1.4 % |
//! | 1400 | 1400 | 0 | 1380 | 1380 | 0 |
//! | 1380 | 1360 | 1.4 % | 1360 (WireGuard) | 1340 | 1.5 % |
//! | 1360 | 1360 | 0 | 1340 | 1340 | 0 |
//! | 1300 | 1300 | 0 | 1280 | 1280 | 0 |
//! | 1260 | 1260 | 0 | 1240 | 1220 | 1.6 % |
//! | 1240 | 1220 | 1.6 % | 1220 (RFC default) | 1220 | 0 |
//! | 1220 | 1220 | 0 | 1200 | 1200 | 0 |
//!
//! Linux's tables (v4 536, 1300, 1440, 1460; v6 1220, 1420, 1440, 8940) turn
//! 1260 into 536 and 1400 into 1300; ours do not. What they still lose:
//! IPv4 clients between 537 and 1219 get 536, and v4 jumbo clients get 1460
//! (throughput only, never connectivity).
//!
//! Quantization: the cookie encodes the largest entry that is <= the
//! client's MSS, so the gateway never sends the client segments larger than
//! it asked for. Two exceptions:
//! - no MSS option: RFC 9293 (3.7.1) says to assume 536 (IPv4) / 1220
//!   (IPv6); both are entries;
//! - an MSS below the smallest entry (including 0): such a client is below
//!   the RFC 9293 minimum every host must accept (576-byte IPv4 / 1280-byte
//!   IPv6 datagrams), and tiny MSS values are a known resource-exhaustion
//!   lever (Linux added `tcp_min_snd_mss` for CVE-2019-11479). Like Linux's
//!   `msstab[0]` fallback, we round up to the smallest entry.

use super::tuple::AddressFamily;

/// IPv4: 536 is the RFC 9293 default (no MSS option); 1220 to 1460 cover
/// tunnels (1220 to 1300), clamps (1360, 1400), 1500 MTU with a little
/// tunnel overhead (1440) and plain Ethernet (1460).
pub const MSS_TABLE_V4: [u16; 8] = [536, 1220, 1260, 1300, 1360, 1400, 1440, 1460];

/// IPv6: 1200 (IPv4 paths' 1220 clamp less the larger header), 1220 the
/// RFC 9293 default (1280 minimum MTU - 60), 1280 to 1440 tunnels, clamps
/// and Ethernet (1500 - 60), 8940 jumbo frames (9000 - 60).
pub const MSS_TABLE_V6: [u16; 8] = [1200, 1220, 1280, 1340, 1380, 1420, 1440, 8940];

/// RFC 9293 3.7.1: the MSS to assume when a SYN carries none.
pub const DEFAULT_MSS_V4: u16 = 536;
pub const DEFAULT_MSS_V6: u16 = 1220;

/// Index bits every layout spends on the MSS.
pub(crate) const MSS_INDEX_BITS: u32 = 3;

/// One of the two tables above.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MssTable {
    entries: &'static [u16; 8],
    default_mss: u16,
}

impl MssTable {
    pub(crate) fn select(family: AddressFamily) -> Self {
        match family {
            AddressFamily::V4 => Self {
                entries: &MSS_TABLE_V4,
                default_mss: DEFAULT_MSS_V4,
            },
            AddressFamily::V6 => Self {
                entries: &MSS_TABLE_V6,
                default_mss: DEFAULT_MSS_V6,
            },
        }
    }

    /// Index of the entry the cookie encodes for a client's MSS option
    /// (rules in the module doc).
    pub(crate) fn index_for(&self, client_mss: Option<u16>) -> u8 {
        let mss = client_mss.unwrap_or(self.default_mss);
        let index = self
            .entries
            .iter()
            .rposition(|&entry| entry <= mss)
            .unwrap_or(0);
        // Tables have 8 entries.
        index as u8
    }

    /// The MSS at an index decoded from a cookie; the index is masked to
    /// the table's 3 bits, so every decoded value is an entry.
    pub(crate) fn entry(&self, index: u8) -> u16 {
        self.entries[usize::from(index & 0b111)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_unique_and_sized_for_their_index_bits() {
        for table in [&MSS_TABLE_V4, &MSS_TABLE_V6] {
            assert!(table.windows(2).all(|w| w[0] < w[1]), "{table:?}");
            assert_eq!(table.len(), 1 << MSS_INDEX_BITS, "{table:?}");
        }
    }

    #[test]
    fn the_rfc_9293_defaults_are_entries() {
        assert!(MSS_TABLE_V4.contains(&DEFAULT_MSS_V4));
        assert!(MSS_TABLE_V6.contains(&DEFAULT_MSS_V6));
        let v4 = MssTable::select(AddressFamily::V4);
        let v6 = MssTable::select(AddressFamily::V6);
        assert_eq!(v4.entry(v4.index_for(None)), 536);
        assert_eq!(v6.entry(v6.index_for(None)), 1220);
    }

    /// Issue 8's list of common MSS values: none loses more than 2 % (the
    /// module doc's table, checked).
    #[test]
    fn common_mss_values_lose_at_most_two_percent() {
        let v4 = [
            1460, 1452, 1440, 1420, 1400, 1380, 1360, 1300, 1260, 1240, 1220,
        ];
        let v6 = [
            1440, 1432, 1420, 1400, 1380, 1360, 1340, 1280, 1240, 1220, 1200,
        ];
        for (family, values) in [(AddressFamily::V4, &v4[..]), (AddressFamily::V6, &v6[..])] {
            let table = MssTable::select(family);
            for &mss in values {
                let got = table.entry(table.index_for(Some(mss)));
                assert!(got <= mss, "{family:?} {mss} -> {got}");
                let loss = f64::from(mss - got) / f64::from(mss);
                assert!(loss <= 0.02, "{family:?} {mss} -> {got}: {loss:.3}");
            }
        }
    }

    #[test]
    fn quantization_rounds_down_onto_the_table() {
        use AddressFamily::{V4, V6};
        // (family, client MSS, encoded MSS)
        let cases: &[(AddressFamily, Option<u16>, u16)] = &[
            (V4, None, 536),
            (V4, Some(0), 536),
            (V4, Some(88), 536),
            (V4, Some(535), 536),
            (V4, Some(536), 536),
            (V4, Some(1200), 536),
            (V4, Some(1219), 536),
            (V4, Some(1220), 1220),
            (V4, Some(1259), 1220),
            (V4, Some(1299), 1260),
            (V4, Some(1459), 1440),
            (V4, Some(1460), 1460),
            (V4, Some(8960), 1460),
            (V4, Some(u16::MAX), 1460),
            (V6, None, 1220),
            (V6, Some(536), 1200),
            (V6, Some(1199), 1200),
            (V6, Some(1219), 1200),
            (V6, Some(1279), 1220),
            (V6, Some(1439), 1420),
            (V6, Some(8939), 1440),
            (V6, Some(8940), 8940),
            (V6, Some(u16::MAX), 8940),
        ];
        for &(family, client, expected) in cases {
            let table = MssTable::select(family);
            let got = table.entry(table.index_for(client));
            assert_eq!(got, expected, "{family:?} client MSS {client:?}");
        }
    }
}
