//! Ethernet II framing with up to two VLAN tags (802.1Q / 802.1ad): where the
//! L3 header starts and what it is. Never looks past the tags.

use super::ParseError;

pub const MAC_LEN: usize = 6;
pub const HEADER_LEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Longest L2 header we handle: two VLAN tags.
pub const MAX_HEADER_LEN: usize = HEADER_LEN + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetInfo {
    /// Offset of the L3 header (14, 18 or 22).
    pub l3_offset: usize,
    /// EtherType after any VLAN tags.
    pub ethertype: u16,
}

pub fn parse(frame: &[u8]) -> Result<EthernetInfo, ParseError> {
    if frame.len() < HEADER_LEN {
        return Err(ParseError::Truncated(super::Layer::Ethernet));
    }
    let mut offset = 12;
    for _ in 0..3 {
        let ethertype = u16::from_be_bytes([frame[offset], frame[offset + 1]]);
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            return Ok(EthernetInfo {
                l3_offset: offset + 2,
                ethertype,
            });
        }
        offset += 4;
        if frame.len() < offset + 2 {
            return Err(ParseError::Truncated(super::Layer::Ethernet));
        }
    }
    Err(ParseError::TooManyVlanTags)
}

/// Swap destination and source MAC addresses in place (a reply goes back
/// where the frame came from).
pub fn swap_macs(frame: &mut [u8]) {
    if frame.len() >= 2 * MAC_LEN {
        let (dst, rest) = frame.split_at_mut(MAC_LEN);
        dst.swap_with_slice(&mut rest[..MAC_LEN]);
    }
}

/// Rewrite the final EtherType of an L2 header whose L3 starts at `l3_offset`.
pub fn set_ethertype(l2: &mut [u8], l3_offset: usize, ethertype: u16) {
    l2[l3_offset - 2..l3_offset].copy_from_slice(&ethertype.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Layer, ParseError};

    const MACS: [u8; 12] = [1, 2, 3, 4, 5, 6, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf];

    #[test]
    fn untagged_and_tagged() {
        let mut f = MACS.to_vec();
        f.extend_from_slice(&[0x08, 0x00]);
        assert_eq!(
            parse(&f),
            Ok(EthernetInfo {
                l3_offset: 14,
                ethertype: ETHERTYPE_IPV4
            })
        );
        let mut q = MACS.to_vec();
        q.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a, 0x86, 0xdd]);
        assert_eq!(
            parse(&q),
            Ok(EthernetInfo {
                l3_offset: 18,
                ethertype: ETHERTYPE_IPV6
            })
        );
        let mut qq = MACS.to_vec();
        qq.extend_from_slice(&[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x08, 0x06]);
        assert_eq!(
            parse(&qq),
            Ok(EthernetInfo {
                l3_offset: 22,
                ethertype: 0x0806
            })
        );
    }

    #[test]
    fn truncations_and_tag_limit() {
        assert_eq!(parse(&MACS), Err(ParseError::Truncated(Layer::Ethernet)));
        let mut q = MACS.to_vec();
        q.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
        assert_eq!(parse(&q), Err(ParseError::Truncated(Layer::Ethernet)));
        let mut many = MACS.to_vec();
        for _ in 0..3 {
            many.extend_from_slice(&[0x81, 0x00, 0, 1]);
        }
        many.extend_from_slice(&[0x08, 0x00]);
        assert_eq!(parse(&many), Err(ParseError::TooManyVlanTags));
    }

    #[test]
    fn swaps_macs() {
        let mut f = MACS.to_vec();
        swap_macs(&mut f);
        assert_eq!(f, [0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 1, 2, 3, 4, 5, 6]);
    }
}
