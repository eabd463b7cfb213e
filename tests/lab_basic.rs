//! The gateway data path in the namespace lab (tests/common): connects, bulk transfers
//! both ways (v4 and v6), bridging of unprotected traffic, and the server seeing only
//! completed handshakes under SYN and ACK floods. Needs root and iproute2, nftables,
//! ethtool, hping3, ping (`sudo tests/run-all.sh` installs them). Each test holds the
//! lab lock, builds its own namespaces and removes them, also on failure; nothing runs
//! in the root namespace.
//!
//! With `SYNGUARD_LAB_STANDIN=bridge` the gateway is a plain Linux bridge (harness
//! self-test): the generic tests pass, the flood tests fail by design (the server sees
//! every SYN and there are no metrics).

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1 << 20;
/// Extra SYNs the server may count beyond one per legitimate connect: the gateway's
/// own backend SYN retransmissions (a backend SYN or its SYN-ACK lost/late on a busy
/// 2-core machine makes the gateway send the same SYN again, which the counter sees
/// twice). Anything above this means SYNs leak through.
const BACKEND_SYN_SLACK: u64 = 3;

fn lab_up(name: &str) -> Lab {
    let lab = Lab::new(name);
    lab.start_server();
    lab.start_gateway(&[]);
    lab
}

fn counter(m: &Metrics, key: &str) -> f64 {
    m.val(key)
}

/// Runs `n` sequential connects from the client namespace; panics listing failures.
fn sequential_connects(lab: &Lab, addr: SocketAddr, n: usize) -> Vec<Duration> {
    let results: Vec<Result<Duration, String>> =
        lab.client(|| (0..n).map(|_| connect_once(addr)).collect());
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let ok: Vec<Duration> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .copied()
        .collect();
    println!(
        "{n} sequential connects to {addr}: {} ok, {}",
        ok.len(),
        latency_summary(&ok)
    );
    assert!(
        errors.is_empty(),
        "{} of {n} connects to {addr} failed; first errors: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    ok
}

fn finish(lab: &Lab) {
    lab.assert_gateway_alive();
    assert_eq!(lab.server_errors(), 0, "test server saw connection errors");
}

#[test]
fn connects_200_sequential_v4() {
    let lab = lab_up("connects_200_sequential_v4");
    let m0 = (!lab.standin()).then(|| lab.metrics());
    let lat = sequential_connects(&lab, srv_v4(PROTECTED_PORT), 200);
    println!(
        "connect latency p50={:?} p99={:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    let syns = lab.server_syn_count();
    println!("server saw {syns} SYNs for 200 connects");
    assert!(
        (200..=200 + BACKEND_SYN_SLACK).contains(&syns),
        "server SYN count {syns}, expected 200..={}",
        200 + BACKEND_SYN_SLACK
    );
    if let Some(m0) = m0 {
        let m1 = lab.metrics();
        let d = |k: &str| counter(&m1, k) - counter(&m0, k);
        // A quiet lab loses nothing: every counter moves by exactly 200.
        // Default syncookies = "auto" and no overflow: every handshake goes
        // through the half-open queue.
        assert_eq!(d("synguard_syn_received_total"), 200.0);
        assert_eq!(d("synguard_synack_sent_total{kind=\"queued\"}"), 200.0);
        assert_eq!(d("synguard_syn_queue_completed_total"), 200.0);
        assert_eq!(d("synguard_synack_sent_total{kind=\"cookie\"}"), 0.0);
        assert_eq!(
            d("synguard_backend_handshakes_total{result=\"completed\"}"),
            200.0
        );
        assert_eq!(d("synguard_cookies_failed_total"), 0.0);
    }
    finish(&lab);
}

#[test]
fn gateway_stops_cleanly_on_sigterm() {
    let lab = lab_up("gateway_stops_cleanly_on_sigterm");
    if lab.standin() {
        return finish(&lab);
    }
    let status = lab.stop_gateway().expect("gateway was running");
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        lab.gateway_log_tail(20)
    );
    let log = lab.gateway_log_tail(5);
    assert!(log.contains("shutting down"), "log tail:\n{log}");
}

#[test]
fn bulk_transfers_v4() {
    let lab = lab_up("bulk_transfers_v4");
    let (_, errors) = parallel_bulk(
        &lab,
        srv_v4(PROTECTED_PORT),
        20 * MIB,
        ClientTimeouts::BULK,
        "",
    );
    assert!(errors.is_empty(), "bulk transfers failed: {errors:#?}");
    if !lab.standin() {
        // With XDP on, the established segments never reach the engine:
        // the programs translate nearly all of them (the engine only the
        // first before the flow is published, closes and the odd one).
        std::thread::sleep(XDP_COUNTER_LAG);
        let m = lab.metrics();
        let translated = m.val("synguard_translated_frames_total");
        let in_xdp = m.sum("synguard_xdp_forwarded_frames_total");
        if m.val("synguard_xdp_mode{mode=\"off\"}") == 1.0 {
            assert_eq!(in_xdp, 0.0, "XDP off forwards nothing in XDP");
        } else {
            assert!(
                in_xdp >= 0.9 * translated && translated > 10_000.0,
                "XDP forwarded {in_xdp} of {translated} translated segments"
            );
        }
        println!("translated {translated}, in XDP {in_xdp}");
    }
    finish(&lab);
}

#[test]
fn connects_and_bulk_v6() {
    let lab = lab_up("connects_and_bulk_v6");
    sequential_connects(&lab, srv_v6(PROTECTED_PORT), 50);
    let (_, errors) = parallel_bulk(
        &lab,
        srv_v6(PROTECTED_PORT),
        20 * MIB,
        ClientTimeouts::BULK,
        "",
    );
    assert!(errors.is_empty(), "bulk transfers failed: {errors:#?}");
    let syns = lab.server_syn_count();
    assert!(
        (58..=58 + BACKEND_SYN_SLACK).contains(&syns),
        "server SYN count {syns} for 50 connects + 8 transfers"
    );
    finish(&lab);
}

#[test]
fn unprotected_traffic_bridged() {
    let lab = lab_up("unprotected_traffic_bridged");
    let m0 = (!lab.standin()).then(|| lab.metrics());
    lab.ping(&lab.cli, IpAddr::V4(SERVER_V4), 3)
        .unwrap_or_else(|e| panic!("{e}"));
    lab.ping(&lab.cli, IpAddr::V6(SERVER_V6), 3)
        .unwrap_or_else(|e| panic!("{e}"));
    for addr in [srv_v4(UDP_ECHO_PORT), srv_v6(UDP_ECHO_PORT)] {
        let got = lab
            .client(|| udp_echo(addr, 10))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, 10, "UDP echo via {addr}");
    }
    for addr in [srv_v4(UNPROTECTED_PORT), srv_v6(UNPROTECTED_PORT)] {
        lab.client(|| -> Result<(), String> {
            connect_once(addr)?;
            upload(addr, MIB)?;
            download(addr, MIB)?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("unprotected port {addr}: {e}"));
    }
    // 3 connections per family (connect, upload, download) reached the server directly.
    let syns_unprotected = lab.server_syn_count_port(UNPROTECTED_PORT);
    assert!(
        (6..=6 + BACKEND_SYN_SLACK).contains(&syns_unprotected),
        "server saw {syns_unprotected} SYNs on {UNPROTECTED_PORT}, expected 6"
    );
    assert_eq!(
        lab.server_syn_count(),
        0,
        "nothing was sent to {PROTECTED_PORT}"
    );
    if let Some(m0) = m0 {
        let m1 = lab.metrics();
        let k = "synguard_syn_received_total";
        assert_eq!(
            counter(&m1, k),
            counter(&m0, k),
            "SYNs to the unprotected port {UNPROTECTED_PORT} were counted as received"
        );
        assert!(
            counter(&m1, "synguard_bridged_frames_total")
                > counter(&m0, "synguard_bridged_frames_total"),
            "bridged frame counter did not move"
        );
    } else {
        eprintln!("STAND-IN: gateway metric checks of this test not run");
    }
    finish(&lab);
}

#[test]
fn server_sees_only_completed_handshakes() {
    let lab = lab_up("server_sees_only_completed_handshakes");
    let m0 = (!lab.standin()).then(|| lab.metrics());
    let sources: Vec<Ipv4Addr> = (1..=50).map(|i| Ipv4Addr::new(198, 18, 1, i)).collect();
    let sent = lab.hping_syn_flood(&sources, PROTECTED_PORT, 10, 2000, 10);
    assert_eq!(sent, 500, "hping3 sent {sent} SYNs, expected 500");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        lab.server_syn_count(),
        0,
        "spoofed SYNs (never completing the handshake) reached the server"
    );
    sequential_connects(&lab, srv_v4(PROTECTED_PORT), 20);
    let syns = lab.server_syn_count();
    println!("server saw {syns} SYNs after 500 spoofed SYNs + 20 connects");
    assert!(
        (20..=20 + BACKEND_SYN_SLACK).contains(&syns),
        "server SYN count {syns}, expected 20..={} (one backend SYN per completed \
         handshake, plus at most {BACKEND_SYN_SLACK} backend SYN retransmissions)",
        20 + BACKEND_SYN_SLACK
    );
    let m0 = m0.expect("this test needs the real gateway's metrics");
    let m1 = lab.metrics();
    let d = |k: &str| counter(&m1, k) - counter(&m0, k);
    let received = d("synguard_syn_received_total");
    let synacks = m1.sum("synguard_synack_sent_total") - m0.sum("synguard_synack_sent_total");
    println!("syn_received +{received}, SYN-ACKs +{synacks} (queued, cookie, retransmit)");
    assert!(received >= 520.0, "syn_received +{received} < 520");
    assert!(
        synacks >= received,
        "SYN-ACKs +{synacks} < SYNs received +{received}: some SYNs went unanswered"
    );
    let completed = d("synguard_syn_queue_completed_total") + d("synguard_cookies_validated_total");
    assert_eq!(
        completed, 20.0,
        "exactly the 20 legitimate handshakes complete"
    );
    finish(&lab);
}

#[test]
fn syn_flood_with_legit_clients() {
    // 16 spoofed sources x 5000 pps nominal for 10 s (hping3 reaches less on 2 cores).
    const SOURCES: u8 = 16;
    const INTERVAL_US: u64 = 200;
    const FLOOD_SECS: u64 = 10;
    const PER_SOURCE: u64 = FLOOD_SECS * 1_000_000 / INTERVAL_US;
    const LEGIT: usize = 100;
    let lab = lab_up("syn_flood_with_legit_clients");
    let m0 = (!lab.standin()).then(|| lab.metrics());
    let sources: Vec<Ipv4Addr> = (1..=SOURCES)
        .map(|i| Ipv4Addr::new(198, 18, 1, i))
        .collect();
    let addr = srv_v4(PROTECTED_PORT);
    let (sent, results) = thread::scope(|s| {
        let flood = s.spawn(|| {
            lab.hping_syn_flood(
                &sources,
                PROTECTED_PORT,
                PER_SOURCE,
                INTERVAL_US,
                FLOOD_SECS + 2,
            )
        });
        thread::sleep(Duration::from_millis(1000));
        // 100 connects spread over ~8 s of the flood.
        let results: Vec<Result<Duration, String>> = lab.client(|| {
            (0..LEGIT)
                .map(|_| {
                    let t0 = Instant::now();
                    // The flood and the gateway share 2 cores here, so the kernel
                    // drops part of the flood (and now and then a legitimate SYN or
                    // request) before synguard reads it: the bounds let every
                    // segment be retransmitted after the flood, and the tail is
                    // reported, not judged.
                    let r = connect_once_with(addr, ClientTimeouts::UNDER_FLOOD);
                    if let Some(rest) = Duration::from_millis(80).checked_sub(t0.elapsed()) {
                        thread::sleep(rest);
                    }
                    r
                })
                .collect()
        });
        (flood.join().expect("flood thread"), results)
    });
    let ok: Vec<Duration> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .copied()
        .collect();
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    println!(
        "SYN flood: {sent} spoofed SYNs sent by hping3; legit connects {}/{LEGIT} ok, {}",
        ok.len(),
        latency_summary(&ok)
    );
    if !errors.is_empty() && !lab.standin() {
        let m = lab.metrics();
        // With the drops by reason below: a reply lost at the socket under
        // the flood shows as kernel drops, one the gateway lost as a reason.
        for key in [
            "synguard_rst_sent_total",
            "synguard_cookies_failed_total",
            "synguard_backend_syn_retransmits_total",
            "synguard_kernel_drops_total{port=\"client\"}",
            "synguard_kernel_drops_total{port=\"server\"}",
        ] {
            println!("{key} {}", m.val(key));
        }
        println!(
            "{}",
            m.text
                .lines()
                .filter(|l| l.starts_with("synguard_drops_total") && !l.ends_with(" 0"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        println!(
            "{}",
            m.text
                .lines()
                .filter(|l| l.starts_with("synguard_backend_handshakes"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(
        errors.is_empty(),
        "{} legit connects failed under the SYN flood; first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(
        sent >= 20_000,
        "hping3 sent only {sent} SYNs: the flood did not happen"
    );
    thread::sleep(Duration::from_millis(300));
    let syns = lab.server_syn_count();
    println!("server saw {syns} SYNs");
    assert!(
        (LEGIT as u64..=LEGIT as u64 + BACKEND_SYN_SLACK).contains(&syns),
        "server SYN count {syns}, expected {LEGIT}..={}",
        LEGIT as u64 + BACKEND_SYN_SLACK
    );
    let m0 = m0.expect("this test needs the real gateway's metrics");
    let m1 = lab.metrics();
    let d = |k: &str| counter(&m1, k) - counter(&m0, k);
    let received = d("synguard_syn_received_total");
    println!(
        "syn_received +{received}, SYN-ACKs +{}, drops +{}",
        m1.sum("synguard_synack_sent_total") - m0.sum("synguard_synack_sent_total"),
        m1.sum("synguard_drops_total") - m0.sum("synguard_drops_total")
    );
    // "The flood happened at the gateway", and none of it went unaccounted: every SYN
    // hping3 sent was counted, or dropped by the kernel at the gateway's socket
    // before synguard read it (the AF_PACKET path may lose part of the flood there on
    // 2 shared cores; how much depends on the machine, the accounting does not).
    let kernel_drops = d("synguard_kernel_drops_total{port=\"client\"}");
    println!(
        "gateway counted {:.0}% of the spoofed SYNs, kernel dropped +{kernel_drops} frames",
        100.0 * received / sent.max(1) as f64
    );
    assert!(
        received + kernel_drops >= sent as f64,
        "gateway counted {received} SYNs + {kernel_drops} kernel drops < {sent} sent"
    );
    finish(&lab);
}

#[test]
fn ack_flood_sends_no_backend_syn() {
    let lab = lab_up("ack_flood_sends_no_backend_syn");
    let m0 = (!lab.standin()).then(|| lab.metrics());
    let sources: Vec<Ipv4Addr> = (1..=4).map(|i| Ipv4Addr::new(198, 18, 2, i)).collect();
    let sent = lab.hping_ack_flood(&sources, PROTECTED_PORT, 2000, 500, 10);
    println!("ACK flood: {sent} ACKs with random seq/ack sent");
    assert!(sent >= 7_000, "hping3 sent only {sent} of 8000 ACKs");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        lab.server_syn_count(),
        0,
        "the ACK flood made the gateway open backend connections"
    );
    assert_eq!(
        lab.server_tcp_count(PROTECTED_PORT),
        0,
        "ACKs without a valid cookie were forwarded to the server"
    );
    let m0 = m0.expect("this test needs the real gateway's metrics");
    let m1 = lab.metrics();
    let d = |k: &str| counter(&m1, k) - counter(&m0, k);
    let failed = d("synguard_cookies_failed_total");
    let rst = d("synguard_rst_sent_total");
    let drops = m1.sum("synguard_drops_total") - m0.sum("synguard_drops_total");
    println!("cookies_failed +{failed}, rst_sent +{rst}, drops +{drops}");
    assert!(
        failed >= 0.9 * sent as f64,
        "cookies_failed +{failed} < 90% of {sent} ACKs"
    );
    assert!(
        rst + drops >= 0.9 * sent as f64,
        "rst_sent +{rst} + drops +{drops} do not account for {sent} bad ACKs"
    );
    sequential_connects(&lab, srv_v4(PROTECTED_PORT), 1);
    let syns = lab.server_syn_count();
    assert!(
        (1..=1 + BACKEND_SYN_SLACK).contains(&syns),
        "server SYN count {syns} after one legit connect"
    );
    finish(&lab);
}

/// Harness self-check (no gateway needed): the Rust stream/hash match the Python peer.
#[test]
fn protocol_hash_matches_python_peer() {
    // Value printed by deploy/lab/testpeer.py for the 100003-byte stream.
    assert_eq!(stream_hash(100_003), 0x6e36_7a4a_f7ea_80aa);
    let mut h = new_hasher();
    let mut s = Stream::new(100_003);
    let mut buf = vec![0u8; 100_003];
    assert_eq!(s.fill(&mut buf), 100_003);
    // chunking must not matter
    use std::hash::Hasher;
    for c in buf.chunks(977) {
        h.write(c);
    }
    assert_eq!(h.finish(), 0x6e36_7a4a_f7ea_80aa);
    // odd read sizes must give the same byte stream
    let mut odd = Stream::new(100_003);
    let mut joined = Vec::new();
    let mut piece = [0u8; 13];
    for k in (1..14).cycle() {
        let n = odd.fill(&mut piece[..k]);
        if n == 0 {
            break;
        }
        joined.extend_from_slice(&piece[..n]);
    }
    assert_eq!(joined, buf);
    assert_eq!(
        metric(
            "# HELP x y\nsynguard_drops_total{reason=\"b\",z=\"1\"} 7\nsynguard_flows 3 1700000000\n",
            "synguard_drops_total{z=\"1\", reason=\"b\"}"
        ),
        Some(7.0)
    );
    assert_eq!(metric("synguard_flows 3\n", "synguard_flows"), Some(3.0));
}

/// Fragmented TCP datagrams to the protected address (hping3 -f: 84 bytes of SYN
/// in 16-byte fragments): those for the unprotected port 8081 are bridged and
/// reassembled by the server (`IpReasmOKs` +20), those for the protected service
/// are dropped, every fragment (`drops{fragment}`), and the server reassembles
/// nothing (`IpReasmReqds` +0). Before, the gateway dropped the fragments of both.
#[test]
fn fragments_follow_the_port_of_their_datagram() {
    const DATAGRAMS: u64 = 20;
    let lab = lab_up("fragments_follow_the_port");
    let m0 = (!lab.standin()).then(|| lab.metrics());
    let send = |port: u16| {
        // Bounded (20 datagrams, 10 s at most); no replies for the protected
        // port, so hping3's exit status is not the judge.
        let cmd = format!(
            "timeout -s INT 10 hping3 -q -S -f -d 64 -p {port} -c {DATAGRAMS} -i u10000 {SERVER_V4}; true"
        );
        ns_run(&lab.cli, "sh", &["-c", &cmd]);
        thread::sleep(Duration::from_millis(300));
    };
    let stat =
        |n: &std::collections::BTreeMap<String, u64>, k: &str| n.get(k).copied().unwrap_or(0);
    let n0 = lab.nstat(&lab.srv);
    send(UNPROTECTED_PORT);
    let n1 = lab.nstat(&lab.srv);
    let oks = stat(&n1, "IpReasmOKs") - stat(&n0, "IpReasmOKs");
    let frags = stat(&n1, "IpReasmReqds") - stat(&n0, "IpReasmReqds");
    println!("port {UNPROTECTED_PORT}: server reassembled {oks} datagrams of {frags} fragments");
    assert_eq!(
        oks, DATAGRAMS,
        "every datagram to the unprotected port arrived whole"
    );
    if let Some(m0) = m0 {
        send(PROTECTED_PORT);
        let n2 = lab.nstat(&lab.srv);
        let reqds = stat(&n2, "IpReasmReqds") - stat(&n1, "IpReasmReqds");
        assert_eq!(
            reqds, 0,
            "no fragment of the protected service reached the server"
        );
        let m1 = lab.metrics();
        let dropped = counter(&m1, "synguard_drops_total{reason=\"fragment\"}")
            - counter(&m0, "synguard_drops_total{reason=\"fragment\"}");
        println!("port {PROTECTED_PORT}: gateway dropped {dropped} fragments");
        assert_eq!(dropped, frags as f64, "each of the {frags} fragments");
    }
    finish(&lab);
}
