//! Internet checksum (RFC 1071) over byte slices and pseudo-headers, and the
//! incremental update of RFC 1624. Pure arithmetic: never reads frames itself.

use std::net::IpAddr;

/// One's-complement sum of `data` as big-endian 16-bit words, not yet folded.
/// An odd trailing byte is padded with zero (RFC 1071 section 4.1).
pub fn sum_words(data: &[u8]) -> u32 {
    let mut sum: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    fold64(sum)
}

fn fold64(mut sum: u64) -> u32 {
    while sum > 0xffff_ffff {
        sum = (sum & 0xffff_ffff) + (sum >> 32);
    }
    sum as u32
}

/// Fold a 32-bit partial sum to 16 bits (end-around carry).
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Final checksum value from a partial sum: the complement of the fold.
pub fn finish(sum: u32) -> u16 {
    !fold(sum)
}

fn add(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    s + u32::from(carry)
}

/// Partial sum of the TCP/UDP pseudo-header (RFC 9293 section 3.1 for IPv4,
/// RFC 8200 section 8.1 for IPv6). Mixed address families sum to nothing
/// sensible; callers always pass one family.
pub fn pseudo_header_sum(src: IpAddr, dst: IpAddr, protocol: u8, l4_len: usize) -> u32 {
    let addrs = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => add(sum_words(&s.octets()), sum_words(&d.octets())),
        (IpAddr::V6(s), IpAddr::V6(d)) => add(sum_words(&s.octets()), sum_words(&d.octets())),
        (s, d) => add(sum_words(&ip_bytes16(s)), sum_words(&ip_bytes16(d))),
    };
    let len = l4_len as u32;
    add(
        add(addrs, u32::from(protocol)),
        (len >> 16) + (len & 0xffff),
    )
}

fn ip_bytes16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Checksum of a whole L4 segment (its checksum field must be zero or is
/// included as-is, see [`l4_checksum_is_valid`]).
pub fn l4_checksum(src: IpAddr, dst: IpAddr, protocol: u8, segment: &[u8]) -> u16 {
    finish(add(
        pseudo_header_sum(src, dst, protocol, segment.len()),
        sum_words(segment),
    ))
}

/// A segment whose checksum field is filled in sums to 0xffff.
pub fn l4_checksum_is_valid(src: IpAddr, dst: IpAddr, protocol: u8, segment: &[u8]) -> bool {
    l4_checksum(src, dst, protocol, segment) == 0
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') for one 16-bit word changing
/// from `old` to `new`.
pub fn update_u16(checksum: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!checksum) + u32::from(!old) + u32::from(new);
    !fold(sum)
}

/// RFC 1624 update for a 32-bit field that starts on an even offset of the
/// checksummed data.
pub fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    let c = update_u16(checksum, (old >> 16) as u16, (new >> 16) as u16);
    update_u16(c, old as u16, new as u16)
}

/// RFC 1624 update for bytes that changed from `old` to `new` (same length)
/// at a position whose parity (relative to the start of the checksummed data)
/// is `odd_offset`. Odd-offset fields (TCP options are only 1-byte aligned)
/// contribute their bytes byte-swapped, which a leading pad byte models.
pub fn update_bytes(checksum: u16, odd_offset: bool, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    let aligned_sum = |bytes: &[u8]| -> u32 {
        if odd_offset {
            let mut sum = u32::from(bytes.first().copied().unwrap_or(0));
            sum += sum_words(bytes.get(1..).unwrap_or(&[]));
            sum
        } else {
            sum_words(bytes)
        }
    };
    let sum = u32::from(!checksum) + u32::from(!fold(aligned_sum(old))) + aligned_sum(new);
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(&data)), 0xddf2);
        assert_eq!(finish(sum_words(&data)), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum_words(&[0x12]), 0x1200);
        assert_eq!(sum_words(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn known_ipv4_header_checksum() {
        // A captured IPv4 header (checksum field zeroed); checksum 0xb861.
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(finish(sum_words(&hdr)), 0xb861);
    }

    fn recompute_after(data: &mut [u8], at: usize, new: &[u8]) -> (u16, u16) {
        // Returns (incremental, full) checksums of `data` after writing `new` at `at`.
        let before = finish(sum_words(data));
        let old = data[at..at + new.len()].to_vec();
        data[at..at + new.len()].copy_from_slice(new);
        let inc = update_bytes(before, at % 2 == 1, &old, new);
        (inc, finish(sum_words(data)))
    }

    proptest! {
        #[test]
        fn incremental_matches_full(mut data in proptest::collection::vec(any::<u8>(), 8..64),
                                    at in 0usize..56, new in proptest::collection::vec(any::<u8>(), 1..8)) {
            prop_assume!(at + new.len() <= data.len());
            let (inc, full) = recompute_after(&mut data, at, &new);
            // One's complement has two zeros; both encode the same sum.
            prop_assert!(inc == full || (inc == 0xffff && full == 0) || (inc == 0 && full == 0xffff),
                "inc {inc:#06x} full {full:#06x}");
        }

        #[test]
        fn update_u32_matches_full(mut data in proptest::collection::vec(any::<u8>(), 8..64),
                                   word in 0usize..14, new in any::<u32>()) {
            let at = word * 2;
            prop_assume!(at + 4 <= data.len());
            let before = finish(sum_words(&data));
            let old = u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
            data[at..at + 4].copy_from_slice(&new.to_be_bytes());
            let inc = update_u32(before, old, new);
            let full = finish(sum_words(&data));
            prop_assert!(inc == full || (inc == 0xffff && full == 0) || (inc == 0 && full == 0xffff));
        }
    }
}
