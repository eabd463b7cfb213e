//! TCP-MD5 (RFC 2385) and TCP-AO (RFC 5925) signed segments are never
//! proxied: bridged byte for byte both ways (no state kept), or dropped
//! with `signed_segments = "drop"`.

use super::*;

fn md5_option() -> Vec<u8> {
    let mut o = vec![19, 18];
    o.extend_from_slice(&[0x3c; 16]);
    o.extend_from_slice(&[1, 1]);
    o
}

fn ao_option() -> Vec<u8> {
    let mut o = vec![29, 16, 7, 7];
    o.extend_from_slice(&[0x5e; 12]);
    o
}

#[test]
fn signed_handshake_and_data_are_bridged_unchanged() {
    let (c, s) = (client_v4(), server_v4());
    for option in [md5_option(), ao_option()] {
        let mut e = engine();
        let mut opts = vec![2, 4, 5, 0xb4];
        opts.extend_from_slice(&option);
        let frames = [
            (
                Port::Client,
                segment(c, s, CLIENT_ISN, 0, tcp::SYN, 64240, &opts, &[]),
            ),
            (
                Port::Server,
                segment(
                    s,
                    c,
                    SERVER_ISN,
                    CLIENT_ISN + 1,
                    tcp::SYN | tcp::ACK,
                    65160,
                    &opts,
                    &[],
                ),
            ),
            (
                Port::Client,
                segment(
                    c,
                    s,
                    CLIENT_ISN + 1,
                    SERVER_ISN + 1,
                    tcp::ACK,
                    502,
                    &option,
                    b"OPEN",
                ),
            ),
            (
                Port::Server,
                segment(
                    s,
                    c,
                    SERVER_ISN + 1,
                    CLIENT_ISN + 5,
                    tcp::ACK,
                    509,
                    &option,
                    b"KEEPALIVE",
                ),
            ),
        ];
        for (i, (port, frame)) in frames.into_iter().enumerate() {
            let mut f = frame.clone();
            assert_eq!(
                e.handle(T0 + i as u64, port, &mut f),
                Verdict::Forward,
                "frame {i}"
            );
            assert_eq!(f, frame, "frame {i} unchanged");
        }
        assert_eq!(Counters::get(&e.counters().signed_syns), 1);
        assert_eq!(Counters::get(&e.counters().bridged), 4);
        assert_eq!(e.flow_count(), 0, "no state for signed connections");
        assert_eq!(Counters::get(&e.counters().synack_cookie), 0);
    }
}

#[test]
fn signed_segments_are_dropped_when_configured() {
    let (c, s) = (client_v6(), server_v6());
    let mut e = engine_with(EngineConfig {
        signed_segments: SignedSegmentAction::Drop,
        ..config()
    });
    let mut syn = segment(c, s, CLIENT_ISN, 0, tcp::SYN, 64240, &md5_option(), &[]);
    assert_eq!(
        e.handle(T0, Port::Client, &mut syn),
        Verdict::Drop(DropReason::SignedSegment)
    );
    let mut reply = segment(s, c, 1, 2, tcp::ACK, 100, &ao_option(), &[]);
    assert_eq!(
        e.handle(T0, Port::Server, &mut reply),
        Verdict::Drop(DropReason::SignedSegment)
    );
    assert_eq!(Counters::get(&e.counters().signed_syns), 1);
    assert_eq!(e.counters().dropped(DropReason::SignedSegment), 2);
}
