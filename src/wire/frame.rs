//! Whole-frame view: one checked parse from Ethernet down to TCP giving the
//! offsets and fields the engine works with, in-place TCP field rewrites with
//! incremental checksums (RFC 1624), and a writer for complete TCP frames.

use std::net::IpAddr;

use super::fragment::Fragment;
use super::tcp::{TcpHeader, TcpSegmentSpec};
use super::tcp_options::TcpOptions;
use super::{checksum, ethernet, ipv4, ipv6, tcp, tcp_options, ParseError};

/// The IP layer of a frame, family-independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpInfo {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub l3_offset: usize,
    /// Absolute offset of the L4 header.
    pub l4_offset: usize,
    /// L4 length from the IP header (Ethernet padding excluded).
    pub l4_len: usize,
    pub ttl: u8,
    /// Set for a fragment: the upper-layer header is only in the first.
    pub fragment: Option<Fragment>,
}

impl IpInfo {
    pub fn is_v4(&self) -> bool {
        self.src.is_ipv4()
    }

    /// End of the IP packet in the frame (start of any Ethernet padding).
    pub fn end(&self) -> usize {
        self.l4_offset + self.l4_len
    }
}

/// A TCP segment in a frame: IP info, fixed header, options and offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpView {
    pub ip: IpInfo,
    pub tcp: TcpHeader,
    pub options: TcpOptions,
}

impl TcpView {
    pub fn tcp_offset(&self) -> usize {
        self.ip.l4_offset
    }

    pub fn payload_offset(&self) -> usize {
        self.ip.l4_offset + self.tcp.header_len
    }

    pub fn payload_len(&self) -> usize {
        self.ip.l4_len - self.tcp.header_len
    }

    /// Sequence space the segment occupies: payload plus one each for SYN
    /// and FIN (RFC 9293 section 3.4).
    pub fn seq_len(&self) -> u32 {
        let flags = self.tcp.flags;
        self.payload_len() as u32
            + u32::from(flags & tcp::SYN != 0)
            + u32::from(flags & tcp::FIN != 0)
    }

    pub fn options_offset(&self) -> usize {
        self.ip.l4_offset + tcp::MIN_HEADER_LEN
    }

    pub fn segment<'f>(&self, frame: &'f [u8]) -> &'f [u8] {
        &frame[self.ip.l4_offset..self.ip.end()]
    }

    pub fn checksum_is_valid(&self, frame: &[u8]) -> bool {
        checksum::l4_checksum_is_valid(self.ip.src, self.ip.dst, tcp::PROTOCOL, self.segment(frame))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParsedFrame {
    /// Not IPv4/IPv6 (ARP, LLDP, ...).
    NonIp,
    /// IP but not a parseable first TCP segment: other protocols, fragments.
    Ip(IpInfo),
    Tcp(TcpView),
}

pub fn parse_frame(frame: &[u8]) -> Result<ParsedFrame, ParseError> {
    let eth = ethernet::parse(frame)?;
    let l3 = &frame[eth.l3_offset..];
    let ip = match eth.ethertype {
        ethernet::ETHERTYPE_IPV4 => {
            let h = ipv4::parse(l3)?;
            IpInfo {
                src: h.src.into(),
                dst: h.dst.into(),
                protocol: h.protocol,
                l3_offset: eth.l3_offset,
                l4_offset: eth.l3_offset + h.header_len,
                l4_len: h.total_len - h.header_len,
                ttl: h.ttl,
                fragment: h.fragment,
            }
        }
        ethernet::ETHERTYPE_IPV6 => {
            let h = ipv6::parse(l3)?;
            IpInfo {
                src: h.src.into(),
                dst: h.dst.into(),
                protocol: h.protocol,
                l3_offset: eth.l3_offset,
                l4_offset: eth.l3_offset + h.l4_offset,
                l4_len: h.total_len - h.l4_offset,
                ttl: h.hop_limit,
                fragment: h.fragment,
            }
        }
        _ => return Ok(ParsedFrame::NonIp),
    };
    if ip.protocol != tcp::PROTOCOL || ip.fragment.is_some() {
        return Ok(ParsedFrame::Ip(ip));
    }
    let segment = &frame[ip.l4_offset..ip.end()];
    let tcp = tcp::parse(segment)?;
    let options = tcp_options::parse(&segment[tcp::MIN_HEADER_LEN..tcp.header_len])?;
    Ok(ParsedFrame::Tcp(TcpView { ip, tcp, options }))
}

/// Overwrite bytes of the TCP segment at `at` (relative to the TCP header)
/// and update its checksum incrementally (RFC 1624). Parity matters because
/// option fields are only byte-aligned.
pub fn rewrite_tcp_bytes(frame: &mut [u8], view: &TcpView, at: usize, new: &[u8]) {
    let seg = &mut frame[view.tcp_offset()..];
    let old_checksum = tcp::read_u16(seg, tcp::OFF_CHECKSUM);
    let mut old = [0u8; 8];
    let old = &mut old[..new.len()];
    old.copy_from_slice(&seg[at..at + new.len()]);
    seg[at..at + new.len()].copy_from_slice(new);
    let c = checksum::update_bytes(old_checksum, at % 2 == 1, old, new);
    seg[tcp::OFF_CHECKSUM..tcp::OFF_CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
}

pub fn rewrite_tcp_u32(frame: &mut [u8], view: &TcpView, at: usize, value: u32) {
    rewrite_tcp_bytes(frame, view, at, &value.to_be_bytes());
}

pub fn rewrite_tcp_u16(frame: &mut [u8], view: &TcpView, at: usize, value: u16) {
    rewrite_tcp_bytes(frame, view, at, &value.to_be_bytes());
}

/// Append a complete TCP frame: `l2` (Ethernet header including any VLAN
/// tags; its final EtherType is set here), a fresh IP header of `src`'s
/// family, the segment, both checksums. Returns the TCP offset.
pub fn write_tcp_frame(
    out: &mut Vec<u8>,
    l2: &[u8],
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    spec: &TcpSegmentSpec,
) -> usize {
    let start = out.len();
    out.extend_from_slice(l2);
    let tcp_len = spec.wire_len();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            ethernet::set_ethertype(&mut out[start..], l2.len(), ethernet::ETHERTYPE_IPV4);
            ipv4::write_header(out, s, d, tcp::PROTOCOL, tcp_len, ttl);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            ethernet::set_ethertype(&mut out[start..], l2.len(), ethernet::ETHERTYPE_IPV6);
            ipv6::write_header(out, s, d, tcp::PROTOCOL, tcp_len, ttl);
        }
        _ => unreachable!("write_tcp_frame: address families differ"),
    }
    let tcp_offset = out.len();
    spec.write(out);
    let c = checksum::l4_checksum(src, dst, tcp::PROTOCOL, &out[tcp_offset..]);
    out[tcp_offset + tcp::OFF_CHECKSUM..tcp_offset + tcp::OFF_CHECKSUM + 2]
        .copy_from_slice(&c.to_be_bytes());
    tcp_offset
}

/// RFC 3168 section 5 ECN codepoints (the low two bits of the IPv4 TOS /
/// IPv6 traffic class).
pub const ECN_NOT_ECT: u8 = 0b00;
pub const ECN_CE: u8 = 0b11;

/// Byte of the IP header holding the ECN bits, and their shift in it.
fn ecn_position(v: &TcpView) -> (usize, u32) {
    if v.ip.is_v4() {
        (v.ip.l3_offset + 1, 0)
    } else {
        // Version (4 bits), traffic class (8), flow label (20): the class's
        // low two bits are bits 5..4 of the second byte.
        (v.ip.l3_offset + 1, 4)
    }
}

/// The segment's ECN codepoint.
pub fn ecn_codepoint(frame: &[u8], v: &TcpView) -> u8 {
    let (at, shift) = ecn_position(v);
    (frame[at] >> shift) & 0b11
}

/// Set the ECN codepoint, keeping the IPv4 header checksum right (IPv6 has
/// none, and neither covers it in the TCP pseudo-header).
pub fn set_ecn_codepoint(frame: &mut [u8], v: &TcpView, codepoint: u8) {
    let (at, shift) = ecn_position(v);
    let word_at = at - 1;
    let old = u16::from_be_bytes([frame[word_at], frame[at]]);
    frame[at] = (frame[at] & !(0b11 << shift)) | ((codepoint & 0b11) << shift);
    if v.ip.is_v4() {
        let new = u16::from_be_bytes([frame[word_at], frame[at]]);
        let c_at = v.ip.l3_offset + 10;
        let c = u16::from_be_bytes([frame[c_at], frame[c_at + 1]]);
        frame[c_at..c_at + 2].copy_from_slice(&checksum::update_u16(c, old, new).to_be_bytes());
    }
}

/// Insert `option` (a multiple of 4 bytes) at the end of the segment's TCP
/// options, growing the frame: data offset, IP length (and IPv4 header
/// checksum) and the TCP checksum are updated; Ethernet padding is dropped.
/// Returns false, changing nothing, when the header would exceed 60 bytes.
///
/// The checksum is updated, not recomputed (RFC 1624): the option lands on
/// a 32-bit boundary, so every payload word keeps its alignment and only
/// the option words, the data offset word and the pseudo-header length
/// change. The payload moves by one `copy_within`.
pub fn insert_tcp_option(frame: &mut Vec<u8>, v: &TcpView, option: &[u8]) -> bool {
    let header_len = v.tcp.header_len + option.len();
    if header_len > tcp::MAX_HEADER_LEN || !option.len().is_multiple_of(4) {
        return false;
    }
    let (seg, at, end) = (v.tcp_offset(), v.payload_offset(), v.ip.end());
    frame.truncate(end);
    frame.resize(end + option.len(), 0);
    frame.copy_within(at..end, at + option.len());
    frame[at..at + option.len()].copy_from_slice(option);
    let l4_len = v.ip.l4_len as u32;
    let old_offset_word = tcp::read_u16(&frame[seg..], 12);
    frame[seg + 12] = ((header_len / 4) as u8) << 4 | (frame[seg + 12] & 0x0f);
    let new_offset_word = tcp::read_u16(&frame[seg..], 12);
    let mut c = tcp::read_u16(&frame[seg..], tcp::OFF_CHECKSUM);
    c = checksum::update_u16(c, old_offset_word, new_offset_word);
    c = checksum::update_u32(c, l4_len, l4_len + option.len() as u32);
    let sum = u32::from(!c) + checksum::sum_words(option);
    c = !checksum::fold(sum);
    frame[seg + tcp::OFF_CHECKSUM..seg + tcp::OFF_CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
    let l3 = &mut frame[v.ip.l3_offset..];
    if v.ip.is_v4() {
        let total = u16::from_be_bytes([l3[2], l3[3]]) + option.len() as u16;
        ipv4::set_total_len(l3, total);
    } else {
        let payload = u16::from_be_bytes([l3[4], l3[5]]) + option.len() as u16;
        ipv6::set_payload_len(l3, payload);
    }
    true
}

/// Recompute the full TCP/UDP checksum of an IP packet in place (for frames
/// the kernel handed over with a partial checksum, TP_STATUS_CSUMNOTREADY).
/// Returns false when the frame is not a checksummable TCP/UDP packet.
pub fn complete_l4_checksum(frame: &mut [u8]) -> bool {
    let ip = match parse_frame(frame) {
        Ok(ParsedFrame::Tcp(v)) => v.ip,
        Ok(ParsedFrame::Ip(ip)) if ip.protocol == 17 && ip.fragment.is_none() && ip.l4_len >= 8 => {
            ip
        }
        _ => return false,
    };
    let field = if ip.protocol == tcp::PROTOCOL {
        tcp::OFF_CHECKSUM
    } else {
        6
    };
    let at = ip.l4_offset + field;
    frame[at..at + 2].copy_from_slice(&[0, 0]);
    let mut c = checksum::l4_checksum(ip.src, ip.dst, ip.protocol, &frame[ip.l4_offset..ip.end()]);
    if ip.protocol == 17 && c == 0 {
        c = 0xffff; // RFC 768: a computed zero is sent as all ones
    }
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp_options::SynOptionSet;
    use proptest::prelude::*;

    const L2: [u8; 14] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0, 0];

    fn syn_frame(src: &str, dst: &str, vlan: bool) -> Vec<u8> {
        let opts = SynOptionSet {
            mss: Some(1460),
            sack_permitted: true,
            timestamps: Some((7, 0)),
            wscale: Some(7),
        }
        .encode();
        let spec = TcpSegmentSpec {
            src_port: 40000,
            dst_port: 8080,
            seq: 1000,
            ack: 0,
            flags: tcp::SYN,
            window: 64240,
            options: opts.as_slice(),
            payload: &[],
        };
        let mut l2 = L2.to_vec();
        if vlan {
            l2.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
        }
        let mut out = Vec::new();
        write_tcp_frame(
            &mut out,
            &l2,
            src.parse().unwrap(),
            dst.parse().unwrap(),
            64,
            &spec,
        );
        out
    }

    fn view(frame: &[u8]) -> TcpView {
        match parse_frame(frame) {
            Ok(ParsedFrame::Tcp(v)) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inserting_an_option_keeps_lengths_and_checksums_right() {
        for (src, dst, vlan) in [
            ("198.18.0.1", "198.18.0.2", false),
            ("2001:db8::1", "2001:db8::2", true),
        ] {
            let mut f = syn_frame(src, dst, vlan);
            // Ethernet padding behind the packet must not end up inside it.
            f.extend_from_slice(&[0xa5; 6]);
            let before = view(&f);
            let option = [1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7];
            assert!(insert_tcp_option(&mut f, &before, &option));
            let after = view(&f);
            assert!(after.checksum_is_valid(&f), "{src}");
            assert_eq!(after.tcp.header_len, before.tcp.header_len + 12);
            assert_eq!(after.ip.l4_len, before.ip.l4_len + 12);
            assert_eq!(f.len(), after.ip.end());
            // The SYN's own timestamps come first; the parser keeps the last.
            assert_eq!(after.options.timestamps, Some((9, 7)));
            assert_eq!(after.options.mss, Some(1460));
            if after.ip.is_v4() {
                let l3 = &f[after.ip.l3_offset..];
                assert!(ipv4::header_checksum_is_valid(&l3[..20]));
            }
            // A full options area refuses, unchanged.
            let mut full = f.clone();
            let v = view(&full);
            let big = [1u8; 12];
            assert!(!insert_tcp_option(&mut full, &v, &big));
            assert_eq!(full, f);
        }
    }

    #[test]
    fn ecn_codepoint_round_trips_with_valid_ipv4_checksum() {
        for (src, dst) in [("198.18.0.1", "198.18.0.2"), ("2001:db8::1", "2001:db8::2")] {
            let mut f = syn_frame(src, dst, false);
            let v = view(&f);
            assert_eq!(ecn_codepoint(&f, &v), ECN_NOT_ECT);
            set_ecn_codepoint(&mut f, &v, ECN_CE);
            assert_eq!(ecn_codepoint(&f, &v), ECN_CE);
            set_ecn_codepoint(&mut f, &v, 0b10);
            assert_eq!(ecn_codepoint(&f, &v), 0b10);
            let v = view(&f);
            assert!(v.checksum_is_valid(&f), "ECN is outside the pseudo-header");
            if v.ip.is_v4() {
                assert!(ipv4::header_checksum_is_valid(
                    &f[v.ip.l3_offset..v.ip.l4_offset]
                ));
            } else {
                // Version and flow label untouched.
                assert_eq!(f[v.ip.l3_offset] >> 4, 6);
            }
        }
    }

    #[test]
    fn golden_ipv4_syn_frame() {
        let f = syn_frame("198.18.0.1", "198.18.0.2", false);
        let expected: Vec<u8> = [
            &L2[..12],
            &[0x08, 0x00],
            // IPv4: total 60, DF, TTL 64, TCP, checksum, addresses
            &[
                0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0xae, 0x94, 198, 18, 0, 1, 198, 18, 0, 2,
            ],
            // TCP: ports, seq 1000, ack 0, doff 10, SYN, window 64240, checksum, urg
            &[
                0x9c, 0x40, 0x1f, 0x90, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, 0xa0, 0x02, 0xfa, 0xf0,
            ],
            &f[50..52],
            &[0, 0],
            &[
                2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 7, 0, 0, 0, 0, 1, 3, 3, 7,
            ],
        ]
        .concat();
        assert_eq!(f, expected);
        let ParsedFrame::Tcp(v) = parse_frame(&f).unwrap() else {
            panic!("not tcp")
        };
        assert!(v.checksum_is_valid(&f));
        assert_eq!(v.tcp.seq, 1000);
        assert_eq!(v.options.mss, Some(1460));
        assert_eq!(v.payload_len(), 0);
        assert_eq!(v.seq_len(), 1);
    }

    #[test]
    fn ipv6_and_vlan_frames_parse() {
        let f = syn_frame("2001:db8::1", "2001:db8::2", true);
        let ParsedFrame::Tcp(v) = parse_frame(&f).unwrap() else {
            panic!("not tcp")
        };
        assert_eq!(v.ip.l3_offset, 18);
        assert_eq!(v.tcp_offset(), 58);
        assert!(v.checksum_is_valid(&f));
        assert!(!v.ip.is_v4());
    }

    #[test]
    fn rewrites_keep_checksum_valid() {
        let mut f = syn_frame("198.18.0.1", "198.18.0.2", false);
        let ParsedFrame::Tcp(v) = parse_frame(&f).unwrap() else {
            panic!()
        };
        rewrite_tcp_u32(&mut f, &v, tcp::OFF_SEQ, 0xdead_beef);
        rewrite_tcp_u16(&mut f, &v, tcp::OFF_WINDOW, 1234);
        // TSval sits at an even offset here; rewrite a byte at an odd offset too.
        rewrite_tcp_u32(
            &mut f,
            &v,
            tcp::MIN_HEADER_LEN + v.options.timestamps_at,
            99,
        );
        rewrite_tcp_bytes(&mut f, &v, tcp::MIN_HEADER_LEN + 3, &[0x77]);
        assert!(v.checksum_is_valid(&f));
        assert_eq!(
            tcp::read_u32(&f, v.tcp_offset() + tcp::OFF_SEQ),
            0xdead_beef
        );
    }

    #[test]
    fn completes_partial_checksum() {
        let mut f = syn_frame("198.18.0.1", "198.18.0.2", false);
        let ParsedFrame::Tcp(v) = parse_frame(&f).unwrap() else {
            panic!()
        };
        f[v.tcp_offset() + tcp::OFF_CHECKSUM] ^= 0x55;
        assert!(!v.checksum_is_valid(&f));
        assert!(complete_l4_checksum(&mut f));
        assert!(v.checksum_is_valid(&f));
    }

    #[test]
    fn non_ip_and_fragments() {
        let mut arp = L2.to_vec();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0u8; 28]);
        assert_eq!(parse_frame(&arp), Ok(ParsedFrame::NonIp));
        let mut frag = syn_frame("198.18.0.1", "198.18.0.2", false);
        frag[14 + 6] |= 0x20;
        assert!(matches!(parse_frame(&frag), Ok(ParsedFrame::Ip(ip)) if ip.fragment.is_some()));
    }

    proptest! {
        #[test]
        fn every_truncation_is_an_error_not_a_panic(cut in 0usize..74) {
            let f = syn_frame("198.18.0.1", "198.18.0.2", false);
            prop_assume!(cut < f.len());
            prop_assert!(parse_frame(&f[..cut]).is_err());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_frame(&bytes);
        }

        #[test]
        fn random_bytes_after_valid_headers_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..80), at in 14usize..74) {
            let mut f = syn_frame("198.18.0.1", "198.18.0.2", false);
            for (i, b) in tail.iter().enumerate() {
                if at + i < f.len() { f[at + i] = *b; }
            }
            let _ = parse_frame(&f);
        }
    }
}
