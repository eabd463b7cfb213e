//! A server that declines an option the gateway's SYN-ACK promised the
//! client: the flow is corrected in flight (timestamps added toward the
//! client and hidden from the server, SACK blocks hidden, ECN marks
//! cleared), and the service's later clients are not offered the option.

use super::*;
use crate::engine::service_profile::DECLINE_MEMORY_MS;
use crate::wire::frame::{ecn_codepoint, set_ecn_codepoint, ECN_CE};

fn server_options(ts: bool, sack: bool, wscale: bool) -> SynOptionSet {
    SynOptionSet {
        mss: Some(1460),
        sack_permitted: sack,
        timestamps: ts.then_some((5000, 101)),
        wscale: wscale.then_some(9),
    }
}

fn client_on(port: u16) -> Host {
    Host {
        port,
        ..client_v4()
    }
}

#[test]
fn server_without_timestamps_gets_them_added_toward_the_client() {
    let s = server_v4();
    let c = client_on(40000);
    let mut e = engine();
    let h = establish_with(
        &mut e,
        c,
        s,
        &linux_syn_options(100),
        0,
        server_options(false, true, true),
        0,
        &[],
    );
    let gw_tsval = h.gateway_tsval.expect("the SYN-ACK offered timestamps");
    assert_eq!(
        h.backend_syn.options.mss,
        Some(1460 - 12),
        "room for the 12 option bytes the gateway may add"
    );
    assert_eq!(
        Counters::get(&e.counters().option_mismatches[SynOption::Timestamps.index()]),
        1
    );
    // Server data without timestamps reaches the client with them.
    let payload = [0x61; 1448];
    let mut data = segment(
        s,
        c,
        SERVER_ISN + 1,
        CLIENT_ISN + 1,
        tcp::ACK | tcp::PSH,
        509,
        &[],
        &payload,
    );
    assert_eq!(
        e.handle(T0 + 500, Port::Server, &mut data),
        Verdict::Forward
    );
    let v = view(&data);
    let (tsval, tsecr) = v.options.timestamps.expect("timestamps added");
    assert!(
        tsval.wrapping_sub(gw_tsval) as i32 >= 0,
        "never behind the SYN-ACK's TSval (PAWS)"
    );
    assert_eq!(tsecr, 101, "echoes the client's last TSval");
    assert_eq!(v.tcp.header_len, 32);
    assert_eq!(&data[v.payload_offset()..], &payload[..]);
    assert_eq!(v.tcp.seq, h.cookie.wrapping_add(1));
    // A later segment's TSval does not run backwards either.
    let mut more = segment(
        s,
        c,
        SERVER_ISN + 1449,
        CLIENT_ISN + 1,
        tcp::ACK,
        509,
        &[],
        b"x",
    );
    assert_eq!(
        e.handle(T0 + 400, Port::Server, &mut more),
        Verdict::Forward
    );
    assert!(
        view(&more)
            .options
            .timestamps
            .unwrap()
            .0
            .wrapping_sub(tsval) as i32
            >= 0
    );
    // The client's timestamps are hidden from the server (NOPs, same size).
    let mut ack = segment(
        c,
        s,
        CLIENT_ISN + 1,
        h.cookie.wrapping_add(1450),
        tcp::ACK,
        502,
        &ts_option(105, tsval),
        &[],
    );
    let len = ack.len();
    assert_eq!(e.handle(T0 + 501, Port::Client, &mut ack), Verdict::Forward);
    let v = view(&ack);
    assert_eq!(v.options.timestamps, None);
    assert_eq!(ack.len(), len);
    assert_eq!(v.tcp.ack, SERVER_ISN + 1450);

    // A segment filling the client's MSS has no room and goes on without.
    let mut full = segment(
        s,
        c,
        SERVER_ISN + 1450,
        CLIENT_ISN + 1,
        tcp::ACK,
        509,
        &[],
        &[0; 1460],
    );
    assert_eq!(
        e.handle(T0 + 600, Port::Server, &mut full),
        Verdict::Forward
    );
    assert_eq!(view(&full).options.timestamps, None);
    assert_eq!(full.len(), 14 + 20 + 20 + 1460);

    // The next client of the service is not offered timestamps, and its
    // backend SYN carries its full MSS.
    let c2 = client_on(40001);
    let (synack, _) = syn(&mut e, c2, s, T0 + 1000, &linux_syn_options(200));
    assert_eq!(synack.options.timestamps, None, "learned");
    assert!(synack.options.sack_permitted && synack.options.wscale.is_some());
    let mut ack2 = segment(
        c2,
        s,
        CLIENT_ISN + 1,
        synack.tcp.seq.wrapping_add(1),
        tcp::ACK,
        502,
        &[],
        &[],
    );
    assert_eq!(
        e.handle(T0 + 1001, Port::Client, &mut ack2),
        Verdict::Absorbed
    );
    let bsyn = view(&e.drain_emitted().next().unwrap().frame);
    assert_eq!(bsyn.options.mss, Some(1460));
    assert_eq!(bsyn.options.timestamps, None);
    // Until the memory expires: then the service is asked again.
    let (synack, _) = syn(
        &mut e,
        client_on(40002),
        s,
        T0 + 11 + DECLINE_MEMORY_MS,
        &linux_syn_options(300),
    );
    assert!(synack.options.timestamps.is_some());
}

#[test]
fn server_without_sack_never_sees_sack_blocks() {
    let (c, s) = (client_v4(), server_v4());
    let mut e = engine();
    let h = establish_with(
        &mut e,
        c,
        s,
        &linux_syn_options(100),
        0,
        server_options(true, false, true),
        0,
        &[],
    );
    assert!(h.backend_syn.options.sack_permitted, "offered as promised");
    // NOP NOP, SACK with one block, then timestamps.
    let left = h.cookie.wrapping_add(1001);
    let mut opts = vec![1, 1, 5, 10];
    opts.extend_from_slice(&left.to_be_bytes());
    opts.extend_from_slice(&left.wrapping_add(500).to_be_bytes());
    opts.extend_from_slice(&ts_option(102, h.gateway_tsval.unwrap()));
    let mut dup_ack = segment(
        c,
        s,
        CLIENT_ISN + 1,
        h.cookie.wrapping_add(1),
        tcp::ACK,
        502,
        &opts,
        &[],
    );
    assert_eq!(
        e.handle(T0 + 20, Port::Client, &mut dup_ack),
        Verdict::Forward
    );
    let v = view(&dup_ack);
    assert_eq!(v.options.sack_blocks, 0, "SACK option turned into NOPs");
    assert!(v.options.timestamps.is_some(), "the rest untouched");
    assert_eq!(
        Counters::get(&e.counters().option_mismatches[SynOption::SackPermitted.index()]),
        1
    );
    let (synack, _) = syn(&mut e, client_on(40001), s, T0 + 30, &linux_syn_options(5));
    assert!(!synack.options.sack_permitted);
}

#[test]
fn server_without_ecn_gets_no_ecn_marks_and_ce_becomes_a_loss() {
    let (c, s) = (client_v4(), server_v4());
    let mut e = engine();
    let h = establish_with(
        &mut e,
        c,
        s,
        &[],
        tcp::ECE | tcp::CWR,
        server_options(false, false, false),
        0,
        &[],
    );
    assert!(h.backend_syn.tcp.has(tcp::ECE | tcp::CWR), "ECN requested");
    let data = |codepoint: u8| {
        let mut f = segment(
            c,
            s,
            CLIENT_ISN + 1,
            h.cookie.wrapping_add(1),
            tcp::ACK,
            502,
            &[],
            b"payload",
        );
        let v = view(&f);
        set_ecn_codepoint(&mut f, &v, codepoint);
        f
    };
    let mut ect = data(0b10);
    assert_eq!(e.handle(T0 + 20, Port::Client, &mut ect), Verdict::Forward);
    assert_eq!(ecn_codepoint(&ect, &view(&ect)), 0, "sent on as Not-ECT");
    let mut ce = data(ECN_CE);
    assert_eq!(
        e.handle(T0 + 21, Port::Client, &mut ce),
        Verdict::Drop(DropReason::CeWithoutEcn)
    );
    assert_eq!(
        Counters::get(&e.counters().option_mismatches[SynOption::Ecn.index()]),
        1
    );
    let mut f = segment(
        client_on(40001),
        s,
        CLIENT_ISN,
        0,
        tcp::SYN | tcp::ECE | tcp::CWR,
        64240,
        &[],
        &[],
    );
    assert_eq!(e.handle(T0 + 30, Port::Client, &mut f), Verdict::Reply);
    assert!(
        !view(&f).tcp.has(tcp::ECE),
        "not offered to the next client"
    );
}

#[test]
fn server_that_does_everything_is_not_corrected() {
    let (c, s) = (client_v4(), server_v4());
    let mut e = engine();
    let h = establish_with(
        &mut e,
        c,
        s,
        &linux_syn_options(100),
        tcp::ECE | tcp::CWR,
        server_options(true, true, true),
        tcp::ECE,
        &[],
    );
    for o in SynOption::ALL {
        assert_eq!(Counters::get(&e.counters().option_mismatches[o.index()]), 0);
    }
    let mut data = segment(
        s,
        c,
        SERVER_ISN + 1,
        CLIENT_ISN + 1,
        tcp::ACK,
        509,
        &ts_option(5001, 101),
        b"abc",
    );
    let len = data.len();
    assert_eq!(e.handle(T0 + 20, Port::Server, &mut data), Verdict::Forward);
    assert_eq!(data.len(), len, "nothing added");
    assert_eq!(
        view(&data).options.timestamps,
        Some((h.gateway_tsval.unwrap() + 1, 101))
    );
}

#[test]
fn server_without_window_scale_is_learned() {
    let (c, s) = (client_v4(), server_v4());
    let mut e = engine();
    establish_with(
        &mut e,
        c,
        s,
        &linux_syn_options(100),
        0,
        server_options(true, true, false),
        0,
        &[],
    );
    assert_eq!(
        Counters::get(&e.counters().option_mismatches[SynOption::WindowScale.index()]),
        1
    );
    let (synack, _) = syn(&mut e, client_on(40001), s, T0 + 30, &linux_syn_options(5));
    assert_eq!(synack.options.wscale, None);
    assert!(synack.options.timestamps.is_some());
}
