//! ICMP (RFC 792) and ICMPv6 (RFC 4443) error messages that quote a TCP
//! segment: where the quoted header is, so a sequence-translating
//! middlebox can map it back into the sequence space of the host it is
//! addressed to. Owns only locating the quote and rewriting a quoted
//! 32-bit field with the ICMP checksum kept right; never decides whether to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{checksum, tcp, IpInfo};

pub const PROTOCOL_ICMP: u8 = 1;
pub const PROTOCOL_ICMPV6: u8 = 58;

/// ICMP error types whose quote a host matches to a socket: destination
/// unreachable (incl. fragmentation needed), time exceeded, parameter
/// problem (RFC 792); ICMPv6 also packet too big (RFC 4443 3.2).
const ICMP_ERRORS: [u8; 3] = [3, 11, 12];
const ICMPV6_ERRORS: [u8; 4] = [1, 2, 3, 4];

/// The ICMP header is 8 bytes; the quoted packet follows.
const ICMP_HEADER_LEN: usize = 8;
/// RFC 792 guarantees at least the first 8 bytes of the quoted datagram's
/// payload: ports and sequence number.
pub const MIN_QUOTED_TCP: usize = 8;

/// A TCP header quoted in an ICMP error, with absolute frame offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedTcp {
    /// Start of the ICMP header (its checksum is at +2).
    pub icmp_offset: usize,
    /// The quoted packet's addresses and ports (it travelled src -> dst).
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// Start of the quoted TCP header and how many of its bytes are there.
    pub tcp_offset: usize,
    pub tcp_len: usize,
}

impl QuotedTcp {
    /// The quoted header's flags, if the quote reaches them.
    pub fn flags(&self, frame: &[u8]) -> Option<u8> {
        (self.tcp_len > tcp::OFF_FLAGS).then(|| frame[self.tcp_offset + tcp::OFF_FLAGS])
    }

    /// Read a quoted 32-bit field at `at` (relative to the quoted TCP
    /// header), if the quote reaches it.
    pub fn read_u32(&self, frame: &[u8], at: usize) -> Option<u32> {
        (at + 4 <= self.tcp_len).then(|| tcp::read_u32(frame, self.tcp_offset + at))
    }

    /// Rewrite a quoted 32-bit field that the quote reaches, updating the
    /// quoted TCP checksum (when quoted too, so the quote is again exactly
    /// the segment the host sent) and the ICMP checksum (RFC 1624; the
    /// ICMPv6 pseudo-header does not change). Offsets inside the quote are
    /// even, so whole 16-bit words change.
    pub fn rewrite_u32(&self, frame: &mut [u8], at: usize, new: u32) {
        let Some(old) = self.read_u32(frame, at) else {
            return;
        };
        let abs = self.tcp_offset + at;
        frame[abs..abs + 4].copy_from_slice(&new.to_be_bytes());
        let mut icmp_sum = read_u16(frame, self.icmp_offset + 2);
        icmp_sum = checksum::update_u32(icmp_sum, old, new);
        if self.tcp_len >= tcp::OFF_CHECKSUM + 2 {
            let c_at = self.tcp_offset + tcp::OFF_CHECKSUM;
            let old_c = read_u16(frame, c_at);
            let new_c = checksum::update_u32(old_c, old, new);
            frame[c_at..c_at + 2].copy_from_slice(&new_c.to_be_bytes());
            icmp_sum = checksum::update_u16(icmp_sum, old_c, new_c);
        }
        frame[self.icmp_offset + 2..self.icmp_offset + 4].copy_from_slice(&icmp_sum.to_be_bytes());
    }
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The TCP segment quoted by an ICMP/ICMPv6 error in `frame` (whose IP
/// layer is `ip`), or `None`: not an error message, a quote of something
/// other than the first fragment of a TCP segment, a quote with IPv4
/// options that do not fit or with IPv6 extension headers, or fewer than 8
/// quoted TCP bytes.
pub fn quoted_tcp(frame: &[u8], ip: &IpInfo) -> Option<QuotedTcp> {
    if ip.fragment.is_some() {
        return None;
    }
    let icmp = frame.get(ip.l4_offset..ip.end())?;
    let (kind, v4) = match (ip.protocol, ip.is_v4()) {
        (PROTOCOL_ICMP, true) => (ICMP_ERRORS.as_slice(), true),
        (PROTOCOL_ICMPV6, false) => (ICMPV6_ERRORS.as_slice(), false),
        _ => return None,
    };
    if icmp.len() < ICMP_HEADER_LEN || !kind.contains(&icmp[0]) {
        return None;
    }
    let quoted = &icmp[ICMP_HEADER_LEN..];
    let (src, dst, header_len) = if v4 {
        let first = *quoted.first()?;
        let header_len = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || header_len < 20 || quoted.len() < header_len {
            return None;
        }
        let fragment_offset = read_u16(quoted, 6) & 0x1fff;
        if quoted[9] != tcp::PROTOCOL || fragment_offset != 0 {
            return None;
        }
        let src = Ipv4Addr::from(<[u8; 4]>::try_from(&quoted[12..16]).ok()?);
        let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&quoted[16..20]).ok()?);
        (IpAddr::V4(src), IpAddr::V4(dst), header_len)
    } else {
        if quoted.len() < 40 || quoted[0] >> 4 != 6 || quoted[6] != tcp::PROTOCOL {
            return None;
        }
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(&quoted[8..24]).ok()?);
        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&quoted[24..40]).ok()?);
        (IpAddr::V6(src), IpAddr::V6(dst), 40)
    };
    let tcp_bytes = &quoted[header_len..];
    if tcp_bytes.len() < MIN_QUOTED_TCP {
        return None;
    }
    Some(QuotedTcp {
        icmp_offset: ip.l4_offset,
        src,
        dst,
        src_port: read_u16(tcp_bytes, 0),
        dst_port: read_u16(tcp_bytes, 2),
        tcp_offset: ip.l4_offset + ICMP_HEADER_LEN + header_len,
        tcp_len: tcp_bytes.len().min(tcp::MAX_HEADER_LEN),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::TcpSegmentSpec;
    use crate::wire::{parse_frame, write_tcp_frame, ParsedFrame};

    const L2: [u8; 14] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0, 0];

    /// A server -> client data segment and the ICMP error a router on the
    /// client side sends back about it (quoting `quote_len` TCP bytes).
    fn error_about_segment(v6: bool, quote_len: usize) -> (Vec<u8>, Vec<u8>) {
        let (server, client, router): (IpAddr, IpAddr, IpAddr) = if v6 {
            (
                "2001:db8::2".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
                "2001:db8::fe".parse().unwrap(),
            )
        } else {
            (
                "198.18.0.2".parse().unwrap(),
                "198.18.0.1".parse().unwrap(),
                "198.18.0.254".parse().unwrap(),
            )
        };
        let spec = TcpSegmentSpec {
            src_port: 8080,
            dst_port: 40000,
            seq: 0x1122_3344,
            ack: 0x5566_7788,
            flags: tcp::ACK | tcp::PSH,
            window: 501,
            options: &[],
            payload: &[0x5a; 1400],
        };
        let mut segment = Vec::new();
        write_tcp_frame(&mut segment, &L2, server, client, 64, &spec);
        let ip_len = if v6 { 40 } else { 20 };
        let quote = &segment[14..14 + ip_len + quote_len];
        // ICMP: type, code, checksum, then MTU 1280 (frag needed / PTB).
        let (kind, code) = if v6 { (2, 0) } else { (3, 4) };
        let mut icmp = vec![kind, code, 0, 0, 0, 0, 0x05, 0x00];
        icmp.extend_from_slice(quote);
        let protocol = if v6 { PROTOCOL_ICMPV6 } else { PROTOCOL_ICMP };
        let c = if v6 {
            checksum::l4_checksum(router, server, protocol, &icmp)
        } else {
            checksum::finish(checksum::sum_words(&icmp))
        };
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut frame = L2.to_vec();
        if v6 {
            frame[12..14].copy_from_slice(&[0x86, 0xdd]);
            crate::wire::ipv6::write_header(
                &mut frame,
                v6_of(router),
                v6_of(server),
                protocol,
                icmp.len(),
                64,
            );
        } else {
            frame[12..14].copy_from_slice(&[0x08, 0x00]);
            crate::wire::ipv4::write_header(
                &mut frame,
                v4_of(router),
                v4_of(server),
                protocol,
                icmp.len(),
                64,
            );
        }
        frame.extend_from_slice(&icmp);
        (segment, frame)
    }

    fn v4_of(a: IpAddr) -> Ipv4Addr {
        match a {
            IpAddr::V4(a) => a,
            _ => unreachable!(),
        }
    }

    fn v6_of(a: IpAddr) -> Ipv6Addr {
        match a {
            IpAddr::V6(a) => a,
            _ => unreachable!(),
        }
    }

    fn ip_of(frame: &[u8]) -> IpInfo {
        match parse_frame(frame) {
            Ok(ParsedFrame::Ip(ip)) => ip,
            other => panic!("{other:?}"),
        }
    }

    fn icmp_checksum_ok(frame: &[u8], ip: &IpInfo) -> bool {
        let icmp = &frame[ip.l4_offset..ip.end()];
        if ip.is_v4() {
            checksum::finish(checksum::sum_words(icmp)) == 0
        } else {
            checksum::l4_checksum_is_valid(ip.src, ip.dst, PROTOCOL_ICMPV6, icmp)
        }
    }

    #[test]
    fn finds_and_rewrites_the_quoted_sequence_number() {
        for v6 in [false, true] {
            for quote_len in [8, 20, 60] {
                let (segment, mut frame) = error_about_segment(v6, quote_len);
                let ip = ip_of(&frame);
                assert!(icmp_checksum_ok(&frame, &ip));
                let q = quoted_tcp(&frame, &ip).expect("quote");
                assert_eq!((q.src_port, q.dst_port), (8080, 40000));
                assert_eq!(q.read_u32(&frame, tcp::OFF_SEQ), Some(0x1122_3344));
                assert_eq!(q.tcp_len, quote_len);
                q.rewrite_u32(&mut frame, tcp::OFF_SEQ, 0x0102_0304);
                assert!(icmp_checksum_ok(&frame, &ip), "v6 {v6} quote {quote_len}");
                assert_eq!(q.read_u32(&frame, tcp::OFF_SEQ), Some(0x0102_0304));
                if quote_len >= 18 {
                    // The quoted TCP checksum matches a segment with the new
                    // sequence number: same delta as in the original.
                    let seg_c = read_u16(&segment, 14 + if v6 { 40 } else { 20 } + 16);
                    let new_c = read_u16(&frame, q.tcp_offset + 16);
                    assert_eq!(new_c, checksum::update_u32(seg_c, 0x1122_3344, 0x0102_0304));
                }
                // A field past the quote is left alone.
                if quote_len < 12 {
                    assert_eq!(q.read_u32(&frame, tcp::OFF_ACK), None);
                }
            }
        }
    }

    #[test]
    fn ignores_what_is_not_a_tcp_error_quote() {
        let (_, frame) = error_about_segment(false, 8);
        let ip = ip_of(&frame);
        // Echo request (type 8).
        let mut echo = frame.clone();
        echo[ip.l4_offset] = 8;
        assert_eq!(quoted_tcp(&echo, &ip), None);
        // Fewer than 8 quoted TCP bytes.
        let mut short = frame.clone();
        short.truncate(ip.end() - 1);
        let mut ip_short = ip;
        ip_short.l4_len -= 1;
        assert_eq!(quoted_tcp(&short, &ip_short), None);
        // A quoted UDP datagram.
        let mut udp = frame.clone();
        udp[ip.l4_offset + 8 + 9] = 17;
        assert_eq!(quoted_tcp(&udp, &ip), None);
        // A quoted non-first fragment.
        let mut frag = frame;
        frag[ip.l4_offset + 8 + 7] = 0x10;
        assert_eq!(quoted_tcp(&frag, &ip), None);
    }
}
