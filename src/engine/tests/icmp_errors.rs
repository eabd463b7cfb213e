//! ICMP and ICMPv6 errors quoting a segment of a proxied connection are
//! translated into the sequence space of the host they are addressed to
//! (path MTU discovery through the gateway); others are bridged unchanged.

use std::net::IpAddr;

use super::*;
use crate::wire::icmp::{PROTOCOL_ICMP, PROTOCOL_ICMPV6};
use crate::wire::{checksum, ipv4, ipv6, IpInfo};

/// An ICMP "fragmentation needed, MTU 1280" (ICMPv6 "packet too big") from
/// `router` to the sender of `quoted_frame`, quoting its IP header and
/// `tcp_bytes` bytes of TCP, on the wire toward `to_mac`.
fn icmp_error_about(
    quoted_frame: &[u8],
    router: IpAddr,
    to_mac: [u8; 6],
    tcp_bytes: usize,
) -> Vec<u8> {
    let q = view(quoted_frame);
    let ip_len = q.ip.l4_offset - q.ip.l3_offset;
    let quote = &quoted_frame[q.ip.l3_offset..q.ip.l4_offset + tcp_bytes];
    let v6 = !q.ip.is_v4();
    let mut icmp = if v6 {
        vec![2, 0, 0, 0, 0, 0, 0x05, 0x00]
    } else {
        vec![3, 4, 0, 0, 0, 0, 0x05, 0x00]
    };
    icmp.extend_from_slice(quote);
    assert_eq!(icmp.len(), 8 + ip_len + tcp_bytes);
    let dst = q.ip.src;
    let c = if v6 {
        checksum::l4_checksum(router, dst, PROTOCOL_ICMPV6, &icmp)
    } else {
        checksum::finish(checksum::sum_words(&icmp))
    };
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut frame = to_mac.to_vec();
    frame.extend_from_slice(&[2, 0, 0, 0, 0, 0xfe]);
    match (router, dst) {
        (IpAddr::V4(r), IpAddr::V4(d)) => {
            frame.extend_from_slice(&[0x08, 0x00]);
            ipv4::write_header(&mut frame, r, d, PROTOCOL_ICMP, icmp.len(), 64);
        }
        (IpAddr::V6(r), IpAddr::V6(d)) => {
            frame.extend_from_slice(&[0x86, 0xdd]);
            ipv6::write_header(&mut frame, r, d, PROTOCOL_ICMPV6, icmp.len(), 64);
        }
        _ => unreachable!(),
    }
    frame.extend_from_slice(&icmp);
    frame
}

fn ip_info(frame: &[u8]) -> IpInfo {
    match parse_frame(frame) {
        Ok(ParsedFrame::Ip(ip)) => ip,
        other => panic!("{other:?}"),
    }
}

fn icmp_checksum_ok(frame: &[u8]) -> bool {
    let ip = ip_info(frame);
    let icmp = &frame[ip.l4_offset..ip.end()];
    if ip.is_v4() {
        checksum::finish(checksum::sum_words(icmp)) == 0
    } else {
        checksum::l4_checksum_is_valid(ip.src, ip.dst, PROTOCOL_ICMPV6, icmp)
    }
}

/// The quoted TCP header's sequence and (if quoted) acknowledgment numbers.
fn quoted_seq_ack(frame: &[u8]) -> (u32, Option<u32>) {
    let ip = ip_info(frame);
    let quoted_ip = ip.l4_offset + 8;
    let ihl = if ip.is_v4() {
        usize::from(frame[quoted_ip] & 0x0f) * 4
    } else {
        40
    };
    let t = quoted_ip + ihl;
    let ack = (t + 12 <= ip.end()).then(|| tcp::read_u32(frame, t + 8));
    (tcp::read_u32(frame, t + 4), ack)
}

#[test]
fn errors_about_proxied_segments_are_translated_both_ways_and_families() {
    for (c, s, router) in [
        (client_v4(), server_v4(), "198.18.0.254"),
        (client_v6(), server_v6(), "2001:db8::fe"),
    ] {
        let router: IpAddr = router.parse().unwrap();
        let mut e = engine();
        let (cookie, gw_tsval, _) = establish(&mut e, c, s, &[]);
        // A server data segment, as the client saw it after translation.
        let mut data = segment(
            s,
            c,
            SERVER_ISN + 1,
            CLIENT_ISN + 1,
            tcp::ACK | tcp::PSH,
            509,
            &ts_option(5005, 101),
            &[0x42; 1400],
        );
        assert_eq!(e.handle(T0 + 20, Port::Server, &mut data), Verdict::Forward);
        assert_eq!(view(&data).tcp.seq, cookie.wrapping_add(1));
        for tcp_bytes in [8, 20, 32] {
            // A router on the client side: "fragmentation needed" to the
            // server about that segment.
            let mut err = icmp_error_about(&data, router, SERVER_MAC, tcp_bytes);
            assert_eq!(e.handle(T0 + 21, Port::Client, &mut err), Verdict::Forward);
            assert!(icmp_checksum_ok(&err), "{} quote {tcp_bytes}", c.ip);
            assert_eq!(
                quoted_seq_ack(&err).0,
                SERVER_ISN + 1,
                "the server's own sequence number"
            );
        }
        // A client segment as the server saw it (its ACK in server space),
        // and an error about it from a router on the server side.
        let mut up = segment(
            c,
            s,
            CLIENT_ISN + 1,
            cookie.wrapping_add(1401),
            tcp::ACK,
            502,
            &ts_option(102, gw_tsval),
            &[0x17; 100],
        );
        assert_eq!(e.handle(T0 + 22, Port::Client, &mut up), Verdict::Forward);
        assert_eq!(view(&up).tcp.ack, SERVER_ISN + 1401);
        let mut err = icmp_error_about(&up, router, CLIENT_MAC, 20);
        assert_eq!(e.handle(T0 + 23, Port::Server, &mut err), Verdict::Forward);
        assert!(icmp_checksum_ok(&err));
        assert_eq!(
            quoted_seq_ack(&err),
            (CLIENT_ISN + 1, Some(cookie.wrapping_add(1401))),
            "the client's own numbers"
        );
        assert_eq!(Counters::get(&e.counters().icmp_translated), 4);
    }
}

#[test]
fn errors_about_untracked_segments_are_bridged_unchanged() {
    let (c, s) = (client_v4(), server_v4());
    let mut e = engine();
    let data = segment(s, c, 77, 88, tcp::ACK, 509, &[], &[0; 100]);
    let err = icmp_error_about(&data, "198.18.0.254".parse().unwrap(), SERVER_MAC, 20);
    let mut f = err.clone();
    assert_eq!(e.handle(T0, Port::Client, &mut f), Verdict::Forward);
    assert_eq!(f, err);
    assert_eq!(Counters::get(&e.counters().icmp_translated), 0);
}
