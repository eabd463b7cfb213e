//! IPv6 fixed header (RFC 8200) and the walk over extension headers to the
//! upper-layer header. Never reassembles fragments or acts on options.

use std::net::Ipv6Addr;

use super::fragment::Fragment;
use super::{Layer, ParseError};

pub const HEADER_LEN: usize = 40;
pub const DEFAULT_HOP_LIMIT: u8 = 64;
const NEXT_HOP_BY_HOP: u8 = 0;
const NEXT_ROUTING: u8 = 43;
const NEXT_FRAGMENT: u8 = 44;
const NEXT_DEST_OPTS: u8 = 60;
/// Bound on the extension-header walk: attacker-chosen chains stop here.
const MAX_EXTENSION_HEADERS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Info {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// Offset of the upper-layer header from the start of the IPv6 header.
    pub l4_offset: usize,
    /// 40 + payload length.
    pub total_len: usize,
    /// Upper-layer protocol after the extension headers.
    pub protocol: u8,
    pub hop_limit: u8,
    /// The Fragment header, if there was one: which datagram, and whether
    /// this is its first fragment.
    pub fragment: Option<Fragment>,
}

pub fn parse(packet: &[u8]) -> Result<Ipv6Info, ParseError> {
    if packet.len() < HEADER_LEN {
        return Err(ParseError::Truncated(Layer::Ipv6));
    }
    if packet[0] >> 4 != 6 {
        return Err(ParseError::BadVersion);
    }
    let total_len = HEADER_LEN + usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    if packet.len() < total_len {
        return Err(ParseError::Truncated(Layer::Ipv6));
    }
    let mut next = packet[6];
    let mut offset = HEADER_LEN;
    let mut fragment = None;
    for _ in 0..MAX_EXTENSION_HEADERS {
        let len = match next {
            NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DEST_OPTS => {
                let l = packet
                    .get(offset + 1)
                    .ok_or(ParseError::Truncated(Layer::Ipv6))?;
                (usize::from(*l) + 1) * 8
            }
            NEXT_FRAGMENT => {
                // Next header, reserved, offset (13 bits) + flags, id (RFC 8200 4.5).
                let h = packet
                    .get(offset..offset + 8)
                    .ok_or(ParseError::Truncated(Layer::Ipv6))?;
                fragment = Some(Fragment {
                    id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                    first: u16::from_be_bytes([h[2], h[3]]) >> 3 == 0,
                });
                8
            }
            _ => {
                return Ok(Ipv6Info {
                    src: addr(&packet[8..24]),
                    dst: addr(&packet[24..40]),
                    l4_offset: offset,
                    total_len,
                    protocol: next,
                    hop_limit: packet[7],
                    fragment,
                })
            }
        };
        if offset + len > total_len {
            return Err(ParseError::Truncated(Layer::Ipv6));
        }
        next = packet[offset];
        offset += len;
    }
    Err(ParseError::TooManyExtensionHeaders)
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(b);
    Ipv6Addr::from(a)
}

/// Append a 40-byte IPv6 header with no extension headers.
pub fn write_header(
    out: &mut Vec<u8>,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    payload_len: usize,
    hop_limit: u8,
) {
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&(payload_len as u16).to_be_bytes());
    out.extend_from_slice(&[next_header, hop_limit]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
}

/// Rewrite the payload-length field after the payload changed size.
pub fn set_payload_len(header: &mut [u8], payload_len: u16) {
    header[4..6].copy_from_slice(&payload_len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(next: u8, payload: usize) -> Vec<u8> {
        let mut v = Vec::new();
        write_header(
            &mut v,
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            next,
            payload,
            64,
        );
        v
    }

    #[test]
    fn golden_header() {
        let mut out = vec![0xa5];
        write_header(
            &mut out,
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            6,
            20,
            64,
        );
        let expected: [u8; 41] = [
            0xa5, 0x60, 0, 0, 0, 0, 20, 6, 64, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 1, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn walks_extension_headers() {
        let mut p = header(NEXT_HOP_BY_HOP, 8 + 8 + 20);
        p.extend_from_slice(&[NEXT_FRAGMENT, 0, 1, 4, 0, 0, 0, 0]); // HBH, 8 bytes
        p.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 1]); // fragment header -> TCP
        p.extend_from_slice(&[0u8; 20]);
        let info = parse(&p).unwrap();
        assert_eq!(info.protocol, 6);
        assert_eq!(info.l4_offset, 56);
        assert_eq!(info.fragment, Some(Fragment { id: 1, first: true }));
        // Offset 1 (8 bytes), id 0x01020304: a later fragment.
        let mut later = header(NEXT_FRAGMENT, 8 + 20);
        later.extend_from_slice(&[6, 0, 0, 8, 1, 2, 3, 4]);
        later.extend_from_slice(&[0u8; 20]);
        let info = parse(&later).unwrap();
        assert_eq!(
            info.fragment,
            Some(Fragment {
                id: 0x0102_0304,
                first: false
            })
        );
    }

    #[test]
    fn rejects_bad_and_truncated() {
        let p = header(6, 20);
        assert_eq!(parse(&p), Err(ParseError::Truncated(Layer::Ipv6)));
        let mut v = header(6, 0);
        v[0] = 0x40;
        assert_eq!(parse(&v), Err(ParseError::BadVersion));
        // Extension header length runs past the payload.
        let mut e = header(NEXT_DEST_OPTS, 8);
        e.extend_from_slice(&[6, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse(&e), Err(ParseError::Truncated(Layer::Ipv6)));
        // Endless chain is cut off.
        let mut chain = header(NEXT_DEST_OPTS, 8 * 9);
        for _ in 0..9 {
            chain.extend_from_slice(&[NEXT_DEST_OPTS, 0, 0, 0, 0, 0, 0, 0]);
        }
        assert_eq!(parse(&chain), Err(ParseError::TooManyExtensionHeaders));
    }
}
