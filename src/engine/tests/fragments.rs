//! Fragmented TCP datagrams to a protected address: those of an unprotected
//! port are bridged whole, those of a protected service dropped whole, as
//! the first fragment's ports say; later fragments whose first was not seen
//! (or seen more than 30 s before), and first fragments too short to show
//! the ports, are dropped. IPv4 and IPv6.

use super::*;

/// 24 bytes of TCP data after the header: the first fragment carries
/// 20 + 24 bytes (offset units of 8 bytes, RFC 791).
const DATA: [u8; 24] = [0x5a; 24];

fn to_port(port: u16, v6: bool) -> Host {
    let s = if v6 { server_v6() } else { server_v4() };
    Host { port, ..s }
}

fn client(v6: bool) -> Host {
    if v6 {
        client_v6()
    } else {
        client_v4()
    }
}

/// A fragment of datagram `id` to `port`: the first (the whole segment with
/// More Fragments set) when `offset_units` is 0, else a later one carrying
/// the same bytes at that offset.
fn fragment(v6: bool, port: u16, id: u32, offset_units: u16) -> Vec<u8> {
    let frame = segment(
        client(v6),
        to_port(port, v6),
        1,
        0,
        tcp::SYN,
        1000,
        &[],
        &DATA,
    );
    let more = u16::from(offset_units == 0);
    if v6 {
        // Insert a Fragment header between the IPv6 header and TCP.
        let (head, upper) = frame.split_at(14 + 40);
        let mut out = head.to_vec();
        out[14 + 6] = 44;
        let plen = u16::from_be_bytes([out[14 + 4], out[14 + 5]]) + 8;
        out[14 + 4..14 + 6].copy_from_slice(&plen.to_be_bytes());
        out.extend_from_slice(&[tcp::PROTOCOL, 0]);
        out.extend_from_slice(&((offset_units << 3) | more).to_be_bytes());
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(upper);
        out
    } else {
        let mut out = frame;
        let ip = &mut out[14..34];
        ip[4..6].copy_from_slice(&(id as u16).to_be_bytes());
        ip[6..8].copy_from_slice(&((more << 13) | offset_units).to_be_bytes());
        ip[10..12].copy_from_slice(&[0, 0]);
        let sum = crate::wire::checksum::finish(crate::wire::checksum::sum_words(ip));
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        out
    }
}

fn handle(e: &mut Engine, now: u64, mut frame: Vec<u8>) -> Verdict {
    e.handle(now, Port::Client, &mut frame)
}

#[test]
fn datagrams_follow_their_first_fragments_port() {
    for v6 in [false, true] {
        let mut e = engine();
        let bridged0 = Counters::get(&e.counters().bridged);
        // Unprotected port 8081 on the protected address: bridged whole.
        assert_eq!(
            handle(&mut e, T0, fragment(v6, 8081, 7, 0)),
            Verdict::Forward,
            "v6 {v6}"
        );
        assert_eq!(
            handle(&mut e, T0 + 1, fragment(v6, 8081, 7, 5)),
            Verdict::Forward
        );
        assert_eq!(Counters::get(&e.counters().bridged) - bridged0, 2);
        // The protected service: dropped whole.
        let dropped = Verdict::Drop(DropReason::Fragment);
        assert_eq!(handle(&mut e, T0, fragment(v6, 8080, 8, 0)), dropped);
        assert_eq!(handle(&mut e, T0 + 1, fragment(v6, 8080, 8, 5)), dropped);
        // A later fragment whose first never came.
        assert_eq!(handle(&mut e, T0 + 1, fragment(v6, 8081, 9, 5)), dropped);
        // The datagram's memory ends with the reassembly timeout.
        assert_eq!(
            handle(&mut e, T0 + 30_000, fragment(v6, 8081, 7, 5)),
            dropped,
            "v6 {v6}"
        );
    }
}

#[test]
fn a_first_fragment_too_short_for_the_ports_is_dropped() {
    let mut e = engine();
    let mut f = fragment(false, 8081, 3, 0);
    // 2 bytes of TCP: the source port only (RFC 1858 tiny fragment).
    f.truncate(14 + 20 + 2);
    crate::wire::ipv4::set_total_len(&mut f[14..34], 22);
    assert_eq!(handle(&mut e, T0, f), Verdict::Drop(DropReason::Fragment));
    assert_eq!(
        handle(&mut e, T0 + 1, fragment(false, 8081, 3, 5)),
        Verdict::Drop(DropReason::Fragment),
        "and so is the rest of its datagram"
    );
}
