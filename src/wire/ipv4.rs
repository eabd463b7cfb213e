//! IPv4 header (RFC 791) with options: parse the fields the gateway needs
//! and write a fresh option-less header. Never reassembles fragments.

use std::net::Ipv4Addr;

use super::fragment::Fragment;
use super::{checksum, Layer, ParseError};

pub const MIN_HEADER_LEN: usize = 20;
pub const DEFAULT_TTL: u8 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Info {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub header_len: usize,
    /// Total length from the header (header + payload); the frame may carry
    /// Ethernet padding beyond it.
    pub total_len: usize,
    pub protocol: u8,
    pub ttl: u8,
    pub tos: u8,
    /// More-fragments set or a non-zero fragment offset: which datagram,
    /// and whether this is its first fragment.
    pub fragment: Option<Fragment>,
}

pub fn parse(packet: &[u8]) -> Result<Ipv4Info, ParseError> {
    if packet.len() < MIN_HEADER_LEN {
        return Err(ParseError::Truncated(Layer::Ipv4));
    }
    if packet[0] >> 4 != 4 {
        return Err(ParseError::BadVersion);
    }
    let header_len = usize::from(packet[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if header_len < MIN_HEADER_LEN || total_len < header_len {
        return Err(ParseError::BadHeaderLength(Layer::Ipv4));
    }
    if packet.len() < total_len {
        return Err(ParseError::Truncated(Layer::Ipv4));
    }
    let flags_frag = u16::from_be_bytes([packet[6], packet[7]]);
    Ok(Ipv4Info {
        src: Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]),
        dst: Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]),
        header_len,
        total_len,
        protocol: packet[9],
        ttl: packet[8],
        tos: packet[1],
        fragment: (flags_frag & 0x3fff != 0).then(|| Fragment {
            id: u32::from(u16::from_be_bytes([packet[4], packet[5]])),
            first: flags_frag & 0x1fff == 0,
        }),
    })
}

pub fn header_checksum_is_valid(header: &[u8]) -> bool {
    checksum::finish(checksum::sum_words(header)) == 0
}

/// Append a 20-byte IPv4 header (DF set, ID 0 as RFC 6864 allows for
/// atomic datagrams, no options) with its checksum.
pub fn write_header(
    out: &mut Vec<u8>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    payload_len: usize,
    ttl: u8,
) {
    let start = out.len();
    let total = (MIN_HEADER_LEN + payload_len) as u16;
    out.extend_from_slice(&[0x45, 0x00]);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0x40, 0x00, ttl, protocol, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    let c = checksum::finish(checksum::sum_words(&out[start..]));
    out[start + 10..start + 12].copy_from_slice(&c.to_be_bytes());
}

/// Rewrite the total-length field after the payload changed size, keeping
/// the header checksum right (RFC 1624).
pub fn set_total_len(header: &mut [u8], total_len: u16) {
    let old = u16::from_be_bytes([header[2], header[3]]);
    let c = u16::from_be_bytes([header[10], header[11]]);
    header[2..4].copy_from_slice(&total_len.to_be_bytes());
    header[10..12].copy_from_slice(&checksum::update_u16(c, old, total_len).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: [u8; 20] = [
        0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0xae, 0xa8, 0xc6, 0x12, 0x00,
        0x02, 0xc6, 0x12, 0x00, 0x01,
    ];

    #[test]
    fn write_matches_golden_bytes() {
        let mut out = vec![0xa5; 3];
        write_header(
            &mut out,
            Ipv4Addr::new(198, 18, 0, 2),
            Ipv4Addr::new(198, 18, 0, 1),
            6,
            20,
            64,
        );
        assert_eq!(&out[..3], &[0xa5; 3]);
        assert_eq!(&out[3..], &GOLDEN);
        assert!(header_checksum_is_valid(&out[3..]));
    }

    #[test]
    fn parses_golden_and_options() {
        let mut p = GOLDEN.to_vec();
        p.extend_from_slice(&[0u8; 20]);
        let info = parse(&p).unwrap();
        assert_eq!(info.src, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(info.header_len, 20);
        assert_eq!(info.total_len, 40);
        assert_eq!(info.protocol, 6);
        assert!(info.fragment.is_none());
        // IHL 6: one option word.
        let mut o = p.clone();
        o[0] = 0x46;
        assert_eq!(parse(&o).unwrap().header_len, 24);
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(
            parse(&GOLDEN[..19]),
            Err(ParseError::Truncated(Layer::Ipv4))
        );
        let mut v = GOLDEN.to_vec();
        v[0] = 0x65;
        assert_eq!(parse(&v), Err(ParseError::BadVersion));
        let mut ihl = GOLDEN.to_vec();
        ihl[0] = 0x44;
        assert_eq!(parse(&ihl), Err(ParseError::BadHeaderLength(Layer::Ipv4)));
        // Total length beyond the buffer.
        assert_eq!(parse(&GOLDEN), Err(ParseError::Truncated(Layer::Ipv4)));
    }

    #[test]
    fn fragments_detected() {
        let mut p = GOLDEN.to_vec();
        p.extend_from_slice(&[0u8; 20]);
        p[4..6].copy_from_slice(&[0xbe, 0xef]);
        p[6] = 0x20; // MF
        let first = Fragment {
            id: 0xbeef,
            first: true,
        };
        assert_eq!(parse(&p).unwrap().fragment, Some(first));
        p[6] = 0x00;
        p[7] = 0x01; // offset 8
        let last = Fragment {
            id: 0xbeef,
            first: false,
        };
        assert_eq!(parse(&p).unwrap().fragment, Some(last));
    }

    #[test]
    fn set_total_len_keeps_checksum_valid() {
        let mut h = GOLDEN;
        set_total_len(&mut h, 1500);
        assert_eq!(u16::from_be_bytes([h[2], h[3]]), 1500);
        assert!(header_checksum_is_valid(&h));
    }
}
