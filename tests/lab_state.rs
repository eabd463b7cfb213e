//! The gateway's state machinery in the namespace lab (tests/common), with real Linux
//! TCP on both ends: random loss on both sides, the half-open queue's SYN-ACK
//! retransmission schedule and expiry (tcpdump), CLOSE_WAIT and TIME_WAIT tracking,
//! and a full backlog in each syncookies mode (off / auto / always). Needs root and
//! iproute2, nftables, ethtool, hping3, tcpdump (`sudo tests/run-all.sh` installs
//! them). Each test holds the lab lock, builds its own namespaces and removes them,
//! also on failure; nothing runs in the root namespace. Gateway settings come from a
//! per-test config file (removed once the gateway has read it).

mod common;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1 << 20;
/// Extra SYNs the server may count beyond one per legitimate connect (the gateway's
/// own backend SYN retransmissions on a busy 2-core machine; see lab_basic.rs).
const BACKEND_SYN_SLACK: u64 = 3;

fn lab_with_config(name: &str, toml: &str) -> Lab {
    let lab = Lab::new(name);
    assert!(
        !lab.standin(),
        "this test checks gateway state through its metrics: it needs the real synguard"
    );
    lab.start_server();
    lab.start_gateway_with_config(toml, &[]);
    lab
}

fn finish(lab: &Lab) {
    lab.assert_gateway_alive();
    assert_eq!(lab.server_errors(), 0, "test server saw connection errors");
}

/// `synguard_flows{state=...}`.
fn flows(m: &Metrics, state: &str) -> f64 {
    m.val(&format!("synguard_flows{{state=\"{state}\"}}"))
}

/// The non-zero `synguard_flows` series, for messages.
fn flow_states(m: &Metrics) -> String {
    let v: Vec<String> = m
        .map
        .iter()
        .filter(|(k, v)| k.starts_with("synguard_flows{") && **v != 0.0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if v.is_empty() {
        "no flows".into()
    } else {
        v.join(" ")
    }
}

/// The non-zero `synguard_drops_total` series, for messages.
fn nonzero_drops(m: &Metrics) -> String {
    m.text
        .lines()
        .filter(|l| l.starts_with("synguard_drops_total") && !l.ends_with(" 0"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------------
// 1. Random loss on both sides.

/// nftables loss table: drops every 10th TCP packet (at random) matching
/// `match_expr` in `hook` (output or prerouting), counting what it saw and dropped.
fn loss_table(hook: &str, match_expr: &str) -> String {
    format!(
        "table inet synguard_loss {{\n\
         counter seen {{ }}\n\
         counter dropped {{ }}\n\
         chain loss {{\n\
         type filter hook {hook} priority -350; policy accept;\n\
         meta l4proto tcp {match_expr} counter name \"seen\"\n\
         meta l4proto tcp {match_expr} numgen random mod 10 == 0 counter name \"dropped\" drop\n\
         }}\n\
         }}\n"
    )
}

/// Where the 10% loss happens.
#[derive(Clone, Copy, Debug, PartialEq)]
enum LossAt {
    /// In each end's output hook, before the gateway: the client drops packets to
    /// port 8080, the server packets from it. The gateway sees the holes (and never
    /// sees the lost packets). TCP's packets are dropped before GSO segmentation, so
    /// one drop can be a burst of several wire segments.
    SenderOutput,
    /// In each end's prerouting hook, after the gateway: the client drops packets
    /// from port 8080, the server packets to it. Every drop is one wire segment the
    /// gateway has already seen and translated (its SYN-ACKs included), so the
    /// retransmissions of segments it already handled reach it.
    ReceiverPrerouting,
}

#[test]
fn loss_10_percent_connects_and_transfers() {
    loss_test(
        "loss_10_percent_connects_and_transfers",
        LossAt::SenderOutput,
        200,
    );
}

#[test]
fn loss_10_percent_after_the_gateway() {
    // 100 connects, not 200: lost SYN-ACKs and backend SYNs make connects here slower
    // (measured 47-72 s for 200), and the runtime should stay under a minute.
    loss_test(
        "loss_10_percent_after_the_gateway",
        LossAt::ReceiverPrerouting,
        100,
    );
}

fn loss_test(name: &str, at: LossAt, connects: usize) {
    // Bounds: a connect may take up to 31 s (the kernel's SYN retransmissions, at
    // 1, 2, 3, 4, 6, 10, 18 s with this kernel's tcp_syn_linear_timeouts = 4, or
    // 1, 3, 7, 15 s classically: it fails only if every SYN in that time is lost,
    // p <= 1e-5 per connect); every single read or write may block up to 30 s (RTO
    // backoff after repeated losses of the same segment).
    const T: ClientTimeouts = ClientTimeouts {
        connect: Duration::from_secs(31),
        io: Duration::from_secs(30),
    };
    const SIZE: u64 = 20 * MIB;
    // backend_syn_retries 4 (default 3): each backend SYN or its SYN-ACK is lost
    // with p = 0.1 (server prerouting or output), so with the default 4 sends a
    // connect is reset after 15 s with p = 1e-4, about 1-2% of runs (seen in CI).
    // That is the configured policy, not a fault. 5 sends (given up at 31 s, past
    // T.io) make it 1e-5 per connect, and the last, at 15 s, answers within T.io.
    let lab = lab_with_config(
        name,
        "[timeouts]\nmsl_seconds = 1\n[handshake]\nbackend_syn_retries = 4\n",
    );
    // Measured from here: Lab::new may wait for the lab lock held by other lab tests.
    let test_start = Instant::now();
    let p = PROTECTED_PORT;
    let (hook, cli_match, srv_match) = match at {
        LossAt::SenderOutput => ("output", format!("tcp dport {p}"), format!("tcp sport {p}")),
        LossAt::ReceiverPrerouting => (
            "prerouting",
            format!("tcp sport {p}"),
            format!("tcp dport {p}"),
        ),
    };
    println!("loss: 10% in the {hook} hook of both ends ({at:?})");
    lab.nft(&lab.cli, &loss_table(hook, &cli_match));
    lab.nft(&lab.srv, &loss_table(hook, &srv_match));
    let addr = srv_v4(PROTECTED_PORT);
    let m0 = lab.metrics();

    // 200 sequential connects.
    let t = Instant::now();
    let results: Vec<Result<Duration, String>> =
        lab.client(|| (0..connects).map(|_| connect_once_with(addr, T)).collect());
    let connect_secs = t.elapsed().as_secs_f64();
    let ok: Vec<Duration> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .copied()
        .collect();
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let slow = ok
        .iter()
        .filter(|d| **d >= Duration::from_millis(900))
        .count();
    println!(
        "{connects} sequential connects under 10% loss: {} ok in {connect_secs:.1} s, {}; \
         {slow} took >= 0.9 s (SYN or data retransmission)",
        ok.len(),
        latency_summary(&ok)
    );
    let drops_after_connects = (
        lab.nft_table_counter(&lab.cli, "inet synguard_loss", "dropped"),
        lab.nft_table_counter(&lab.srv, "inet synguard_loss", "dropped"),
    );
    println!(
        "nft drops during the connects: client side {}, server side {}",
        drops_after_connects.0, drops_after_connects.1
    );
    if !errors.is_empty() {
        let m = lab.metrics();
        let d = |k: &str| m.val(k) - m0.val(k);
        panic!(
            "{} of {connects} connects failed under 10% loss; first: {:?}; gateway: \
             backend handshakes timeout +{} refused +{}, rst_sent +{}, drops: [{}]",
            errors.len(),
            &errors[..errors.len().min(5)],
            d("synguard_backend_handshakes_total{result=\"timeout\"}"),
            d("synguard_backend_handshakes_total{result=\"refused\"}"),
            d("synguard_rst_sent_total"),
            nonzero_drops(&m)
        );
    }

    // 4 uploads + 4 downloads of 20 MiB at once.
    let (bulk_secs, errors) = parallel_bulk(&lab, addr, SIZE, T, "under 10% loss");

    // The loss really happened, on both sides, at about the configured rate.
    for (side, ns) in [("client", &lab.cli), ("server", &lab.srv)] {
        let seen = lab.nft_table_counter(ns, "inet synguard_loss", "seen");
        let dropped = lab.nft_table_counter(ns, "inet synguard_loss", "dropped");
        let rate = dropped as f64 / seen.max(1) as f64;
        println!(
            "{side} namespace {hook}: {seen} TCP packets for port {p}, {dropped} dropped ({:.1}%)",
            100.0 * rate
        );
        assert!(
            dropped > 0 && (0.07..=0.13).contains(&rate),
            "{side} side: {dropped} of {seen} packets dropped; the loss rule did not work"
        );
    }
    assert!(
        errors.is_empty(),
        "transfers under 10% loss failed: {errors:#?}"
    );

    let m1 = lab.metrics();
    let d = |k: &str| m1.val(k) - m0.val(k);
    println!(
        "gateway: syn_received +{}, synack queued +{} cookie +{} retransmit +{}, \
         queue completed +{}, cookies validated +{}, backend SYN retransmits +{}, \
         backend handshakes completed +{}, rst_sent +{}; drops: [{}]",
        d("synguard_syn_received_total"),
        d("synguard_synack_sent_total{kind=\"queued\"}"),
        d("synguard_synack_sent_total{kind=\"cookie\"}"),
        d("synguard_synack_sent_total{kind=\"retransmit\"}"),
        d("synguard_syn_queue_completed_total"),
        d("synguard_cookies_validated_total"),
        d("synguard_backend_syn_retransmits_total"),
        d("synguard_backend_handshakes_total{result=\"completed\"}"),
        d("synguard_rst_sent_total"),
        nonzero_drops(&m1)
    );
    assert_eq!(
        d("synguard_backend_handshakes_total{result=\"completed\"}"),
        (connects + 8) as f64,
        "one completed backend handshake per connection"
    );
    // Every connection closed; with msl_seconds = 1 the last TIME_WAIT leaves 2 s
    // after the last close.
    let gone = lab.wait_metrics(Duration::from_secs(5), |m| m.sum("synguard_flows") == 0.0);
    match gone {
        Ok((_, waited)) => println!(
            "all flows removed {:.2} s after the transfers",
            waited.as_secs_f64()
        ),
        Err(m) => panic!(
            "flows left 5 s after every connection closed (TIME_WAIT is 2 s): {}",
            flow_states(&m)
        ),
    }
    finish(&lab);
    println!(
        "loss test {:.1} s after lab set-up (connects {connect_secs:.1} s, transfers {bulk_secs:.1} s)",
        test_start.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------
// 2. Half-open entry: SYN-ACK retransmission schedule and expiry.

#[test]
fn half_open_entry_retransmits_on_schedule_and_is_given_up() {
    // SYN-ACKs at 0, +200, +600, +1400 ms after the SYN; given up at +3000 ms.
    const EXPECTED_MS: [f64; 4] = [0.0, 200.0, 600.0, 1400.0];
    const GIVE_UP_MS: f64 = 3000.0;
    const TOL_MS: f64 = 80.0;
    let spoofed = Ipv4Addr::new(198, 18, 1, 77);
    let lab = lab_with_config(
        "half_open_entry_retransmits_on_schedule",
        "[syn_queue]\nsyncookies = \"auto\"\nsynack_timeout_ms = 200\nsynack_retries = 3\n",
    );
    let m0 = lab.metrics();
    assert_eq!(m0.val("synguard_syn_recv"), 0.0);
    let cap = lab.start_capture(&lab.cli, CLI_IF, &format!("tcp and host {spoofed}"), 15);
    let t0 = Instant::now();
    // One SYN (hping3 -c 1).
    let sent = lab.hping_syn_flood(&[spoofed], PROTECTED_PORT, 1, 1000, 5);
    assert_eq!(sent, 1, "hping3 sent {sent} SYNs");
    let during = lab.metrics();
    let during_at = t0.elapsed();
    println!(
        "{:.0} ms after the SYN: syn_recv {}, SYN-ACKs queued +{} retransmit +{}",
        ms(during_at),
        during.val("synguard_syn_recv"),
        during.val("synguard_synack_sent_total{kind=\"queued\"}")
            - m0.val("synguard_synack_sent_total{kind=\"queued\"}"),
        during.val("synguard_synack_sent_total{kind=\"retransmit\"}")
            - m0.val("synguard_synack_sent_total{kind=\"retransmit\"}"),
    );
    assert!(
        during_at < Duration::from_millis(2800),
        "hping3 took {during_at:?}: too late to see the entry still queued"
    );
    assert_eq!(
        during.val("synguard_syn_recv"),
        1.0,
        "the SYN should hold one half-open entry until +3 s"
    );
    assert_eq!(
        during.val("synguard_syn_queue_expired_total"),
        m0.val("synguard_syn_queue_expired_total")
    );
    // `synguard status` lists the entry like `ss state syn-recv`.
    let (code, table, err) = lab.status(&["--state", "syn_recv"]);
    assert_eq!(code, 0, "synguard status failed: {err}");
    println!("synguard status --state syn_recv:\n{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("SYN_RECV") && l.contains(&format!("{spoofed}:")))
        .unwrap_or_else(|| panic!("no SYN_RECV row for {spoofed}:\n{table}"));
    assert!(row.contains("198.18.0.2:8080"), "{row}");
    let (code, json, err) = lab.status(&["--state", "syn_recv", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(json.starts_with("{\"status\":"), "{json}");
    assert!(json.contains(&format!("\"client\":\"{spoofed}:")), "{json}");
    assert!(
        json.contains("\"state\":\"syn_recv\",\"count\":1"),
        "{json}"
    );
    let (code, none, _) = lab.status(&["--state", "established"]);
    assert_eq!(code, 0);
    assert!(
        !none.lines().any(|l| l.contains("198.18.0.2:8080")),
        "no connection rows expected:\n{none}"
    );
    let (after, waited) = lab
        .wait_metrics(Duration::from_secs(5), |m| {
            m.val("synguard_syn_recv") == 0.0
        })
        .unwrap_or_else(|m| {
            panic!(
                "half-open entry still queued 5 s after hping3 returned (syn_recv {})",
                m.val("synguard_syn_recv")
            )
        });
    let gone_at = during_at + waited;
    // Keep capturing past the give-up time: no SYN-ACK may follow.
    if let Some(rest) = Duration::from_millis(3600).checked_sub(t0.elapsed()) {
        thread::sleep(rest);
    }
    let text = lab.stop_capture(cap);
    let segs = parse_tcpdump(&text);
    let syns: Vec<&CapturedSegment> = segs
        .iter()
        .filter(|s| s.flags == "S" && s.src.starts_with(&format!("{spoofed}.")))
        .collect();
    let synacks: Vec<&CapturedSegment> = segs
        .iter()
        .filter(|s| s.flags == "S." && s.dst.starts_with(&format!("{spoofed}.")))
        .collect();
    assert_eq!(syns.len(), 1, "captured SYNs from {spoofed}:\n{text}");
    let syn_t = syns[0].time;
    let offsets: Vec<f64> = synacks.iter().map(|s| (s.time - syn_t) * 1e3).collect();
    let gaps: Vec<f64> = offsets.windows(2).map(|w| w[1] - w[0]).collect();
    println!(
        "SYN-ACKs to {spoofed} at +{} ms after the SYN (gaps {} ms), seq {:?}",
        offsets
            .iter()
            .map(|o| format!("{o:.1}"))
            .collect::<Vec<_>>()
            .join(", +"),
        gaps.iter()
            .map(|g| format!("{g:.1}"))
            .collect::<Vec<_>>()
            .join(", "),
        synacks.iter().map(|s| s.seq).collect::<Vec<_>>()
    );
    println!(
        "entry gone (syn_recv 0) observed {:.0} ms after starting hping3 (given up at +{GIVE_UP_MS} ms)",
        ms(gone_at)
    );
    assert_eq!(
        synacks.len(),
        4,
        "expected 4 SYN-ACKs (1 + 3 retransmissions), capture:\n{text}"
    );
    let seq0 = synacks[0].seq.expect("SYN-ACK without seq");
    assert!(
        synacks.iter().all(|s| s.seq == Some(seq0)),
        "retransmitted SYN-ACKs must repeat the same ISN: {:?}",
        synacks.iter().map(|s| s.seq).collect::<Vec<_>>()
    );
    for (i, (got, want)) in offsets.iter().zip(EXPECTED_MS).enumerate() {
        assert!(
            (got - want).abs() <= TOL_MS,
            "SYN-ACK #{i} at +{got:.1} ms, expected +{want} ms ± {TOL_MS} (all: {offsets:?})"
        );
    }
    for (i, (got, want)) in gaps.iter().zip([200.0, 400.0, 800.0]).enumerate() {
        assert!(
            (got - want).abs() <= TOL_MS,
            "gap #{i} {got:.1} ms, expected {want} ms ± {TOL_MS} (all: {gaps:?})"
        );
    }
    // The metrics poll from the test started before the SYN left: the entry is
    // given up at +3000 ms after the SYN, seen at most one poll (+25 ms) later.
    let gone_ms = ms(gone_at);
    assert!(
        (GIVE_UP_MS - TOL_MS..=GIVE_UP_MS + 400.0).contains(&gone_ms),
        "entry given up {gone_ms:.0} ms after the SYN, expected {GIVE_UP_MS} ms"
    );
    let d = |k: &str| after.val(k) - m0.val(k);
    assert_eq!(d("synguard_syn_queue_expired_total"), 1.0);
    assert_eq!(d("synguard_synack_sent_total{kind=\"queued\"}"), 1.0);
    assert_eq!(d("synguard_synack_sent_total{kind=\"retransmit\"}"), 3.0);
    assert_eq!(d("synguard_synack_sent_total{kind=\"cookie\"}"), 0.0);
    assert_eq!(d("synguard_syn_queue_completed_total"), 0.0);
    assert_eq!(
        lab.server_syn_count(),
        0,
        "the spoofed SYN reached the server"
    );
    finish(&lab);
}

// ---------------------------------------------------------------------------------
// 3. CLOSE_WAIT: the client closed, the server keeps its side open.

/// A flow that expires is reset at both ends, so neither waits on it: the client
/// half-closes, the server works 4 s before answering, and the gateway's CLOSE_WAIT
/// timeout is 1 s. Before, the flow was only forgotten: the server's answer was
/// dropped as `no_flow` and the client waited out its own 9 s read timeout.
#[test]
fn expired_flow_is_reset_at_both_ends() {
    const HOLD_MS: u16 = 4000;
    let lab = lab_with_config(
        "expired_flow_is_reset_at_both_ends",
        "[timeouts]\nclose_wait_seconds = 1\nmsl_seconds = 1\n",
    );
    let m0 = lab.metrics();
    let n0 = lab.nstat(&lab.srv);
    let addr = srv_v4(PROTECTED_PORT);
    let start = Instant::now();
    let r = lab.client(|| half_close_hold(addr, HOLD_MS, b"bye"));
    let learned = start.elapsed();
    println!("client: {r:?} after {:.0} ms", ms(learned));
    let err = r.expect_err("the exchange cannot complete once the flow expired");
    assert!(
        err.contains("reset by peer"),
        "the client is told by a RST, not by its read timeout: {err}"
    );
    assert!(
        learned < Duration::from_millis(u64::from(HOLD_MS)),
        "the client learned after {learned:?}, not before the server's answer at {HOLD_MS} ms"
    );
    // The server's answer after its hold fails: its socket was reset too.
    thread::sleep(Duration::from_millis(u64::from(HOLD_MS) + 500).saturating_sub(start.elapsed()));
    let n1 = lab.nstat(&lab.srv);
    let resets = n1.get("TcpEstabResets").copied().unwrap_or(0)
        - n0.get("TcpEstabResets").copied().unwrap_or(0);
    assert_eq!(resets, 1, "server TcpEstabResets +{resets}");
    assert_eq!(lab.server_errors(), 1, "the server's answer met the reset");
    let m1 = lab.metrics();
    let d = |k: &str| m1.val(k) - m0.val(k);
    println!(
        "flows_expired +{}, rst_sent +{}, drops: {}",
        d("synguard_flows_expired_total"),
        d("synguard_rst_sent_total"),
        nonzero_drops(&m1)
    );
    assert_eq!(d("synguard_flows_expired_total"), 1.0);
    assert_eq!(d("synguard_rst_sent_total"), 2.0, "one RST each way");
    assert_eq!(m1.sum("synguard_flows"), 0.0, "{}", flow_states(&m1));
    assert_eq!(
        d("synguard_drops_total{reason=\"no_flow\"}"),
        0.0,
        "nothing of the flow arrived after it was gone: {}",
        nonzero_drops(&m1)
    );
    lab.assert_gateway_alive();
}

#[test]
fn server_that_never_closes_shows_close_wait() {
    const HOLD_MS: u16 = 3000;
    let lab = lab_with_config(
        "server_that_never_closes_shows_close_wait",
        "[timeouts]\nclose_wait_seconds = 600\nmsl_seconds = 1\n",
    );
    let addr = srv_v4(PROTECTED_PORT);
    let start = Instant::now();
    let client = lab.spawn_client(move || half_close_hold(addr, HOLD_MS, b"bye"));
    let (m, t_cw) = lab
        .wait_metrics(Duration::from_secs(2), |m| flows(m, "close_wait") == 1.0)
        .unwrap_or_else(|m| {
            panic!(
                "no flow in close_wait within 2 s of the client's FIN: {}",
                flow_states(&m)
            )
        });
    println!(
        "close_wait seen {:.0} ms after the connect started: {}",
        ms(start.elapsed()),
        flow_states(&m)
    );
    let _ = t_cw;
    assert_eq!(m.sum("synguard_flows"), 1.0, "{}", flow_states(&m));
    // Still CLOSE_WAIT well into the server's hold.
    let mid = Duration::from_millis(u64::from(HOLD_MS) * 2 / 3);
    if let Some(rest) = mid.checked_sub(start.elapsed()) {
        thread::sleep(rest);
    }
    let m = lab.metrics();
    println!(
        "{:.0} ms after start (server still holding): {}",
        ms(start.elapsed()),
        flow_states(&m)
    );
    assert_eq!(flows(&m, "close_wait"), 1.0, "{}", flow_states(&m));
    assert_eq!(m.sum("synguard_flows"), 1.0, "{}", flow_states(&m));
    let held = client
        .join()
        .expect("client thread panicked")
        .unwrap_or_else(|e| panic!("half-close exchange failed: {e}"));
    println!(
        "server answered {:.0} ms after the client's FIN (hold {HOLD_MS} ms), then closed",
        ms(held)
    );
    assert!(
        held >= Duration::from_millis(u64::from(HOLD_MS) - 50),
        "server replied after {held:?}, before its hold of {HOLD_MS} ms"
    );
    // Server FIN -> LAST_ACK, client ACK -> TIME_WAIT (the client had closed already).
    let (m, t) = lab
        .wait_metrics(Duration::from_secs(1), |m| {
            flows(m, "close_wait") == 0.0 && flows(m, "last_ack") == 0.0
        })
        .unwrap_or_else(|m| {
            panic!(
                "flow still in close_wait/last_ack 1 s after both sides closed: {}",
                flow_states(&m)
            )
        });
    println!(
        "{:.0} ms after the server's close: {}",
        ms(t),
        flow_states(&m)
    );
    assert_eq!(flows(&m, "time_wait"), 1.0, "{}", flow_states(&m));
    finish(&lab);
}

// ---------------------------------------------------------------------------------
// 4. TIME_WAIT lasts 2 x MSL, then the flow is removed.

#[test]
fn closed_flow_passes_time_wait_and_is_removed() {
    let lab = lab_with_config(
        "closed_flow_passes_time_wait_and_is_removed",
        "[timeouts]\nmsl_seconds = 1\n",
    );
    let m0 = lab.metrics();
    let addr = srv_v4(PROTECTED_PORT);
    let rtt = lab
        .client(|| connect_once(addr))
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let closed = Instant::now();
    // The client's FIN leaves as connect_once returns; the gateway sees it at once.
    let (m, t) = lab
        .wait_metrics(Duration::from_millis(500), |m| flows(m, "time_wait") == 1.0)
        .unwrap_or_else(|m| panic!("no flow in time_wait after the close: {}", flow_states(&m)));
    println!(
        "connect {:.2} ms; {:.0} ms after the close: {}",
        ms(rtt),
        ms(t),
        flow_states(&m)
    );
    assert_eq!(m.sum("synguard_flows"), 1.0, "{}", flow_states(&m));
    // Watch for the removal (poll every 25 ms) up to 4 s.
    let (m, _) = lab
        .wait_metrics(Duration::from_secs(4), |m| flows(m, "time_wait") == 0.0)
        .unwrap_or_else(|m| {
            panic!(
                "flow still in time_wait 4 s after the close (msl 1 s): {}",
                flow_states(&m)
            )
        });
    let removed = closed.elapsed();
    println!(
        "time_wait left {:.0} ms after the close (2 x MSL = 2000 ms); flows_expired +{}",
        ms(removed),
        m.val("synguard_flows_expired_total") - m0.val("synguard_flows_expired_total")
    );
    assert!(
        (1900..=2700).contains(&removed.as_millis()),
        "TIME_WAIT lasted {removed:?}, expected 2 s (2 x msl_seconds)"
    );
    if let Some(rest) = Duration::from_millis(2500).checked_sub(closed.elapsed()) {
        thread::sleep(rest);
    }
    let m = lab.metrics();
    assert_eq!(flows(&m, "time_wait"), 0.0, "{}", flow_states(&m));
    assert_eq!(
        m.sum("synguard_flows"),
        0.0,
        "flows left 2.5 s after the close: {}",
        flow_states(&m)
    );
    finish(&lab);
}

// ---------------------------------------------------------------------------------
// 5. A full backlog in each syncookies mode.

const BACKLOG: f64 = 64.0;
const FLOOD_SOURCES: u8 = 4;
const FLOOD_PER_SOURCE: u64 = 100;
const FLOOD_TOTAL: f64 = (FLOOD_SOURCES as u64 * FLOOD_PER_SOURCE) as f64;
const COOKIE_HOLD: Duration = Duration::from_secs(5);

fn backlog_config(mode: &str) -> String {
    // Queued entries: SYN-ACK again at +1 s, given up at +3 s.
    format!(
        "[syn_queue]\nsyncookies = \"{mode}\"\nbacklog = 64\nper_source_backlog = 64\n\
         synack_retries = 1\nsynack_timeout_ms = 1000\ncookie_hold_seconds = 5\n"
    )
}

struct FloodResult {
    /// Metrics right after the gateway counted every SYN of the flood.
    after: Metrics,
    /// When `after` was taken.
    at: Instant,
    /// Largest syn_recv seen while the flood ran.
    max_syn_recv: f64,
}

/// 4 spoofed sources (198.18.1.1-4) x 100 SYNs at 1 ms intervals, bounded to 10 s;
/// returns the metrics as soon as the gateway has counted all 400.
fn flood_backlog(lab: &Lab, m0: &Metrics) -> FloodResult {
    let sources: Vec<Ipv4Addr> = (1..=FLOOD_SOURCES)
        .map(|i| Ipv4Addr::new(198, 18, 1, i))
        .collect();
    let base = m0.val("synguard_syn_received_total");
    thread::scope(|s| {
        let flood =
            s.spawn(|| lab.hping_syn_flood(&sources, PROTECTED_PORT, FLOOD_PER_SOURCE, 1000, 10));
        let mut max_syn_recv = 0.0f64;
        let res = lab.wait_metrics(Duration::from_secs(8), |m| {
            max_syn_recv = max_syn_recv.max(m.val("synguard_syn_recv"));
            m.val("synguard_syn_received_total") - base >= FLOOD_TOTAL
        });
        let at = Instant::now();
        let sent = flood.join().expect("flood thread");
        assert_eq!(sent, FLOOD_TOTAL as u64, "hping3 sent {sent} SYNs");
        let after = res.unwrap_or_else(|m| {
            panic!(
                "gateway counted only {} of {FLOOD_TOTAL} SYNs",
                m.val("synguard_syn_received_total") - base
            )
        });
        FloodResult {
            after: after.0,
            at,
            max_syn_recv,
        }
    })
}

fn delta(m1: &Metrics, m0: &Metrics, key: &str) -> f64 {
    m1.val(key) - m0.val(key)
}

fn print_flood(mode: &str, m0: &Metrics, f: &FloodResult) {
    let m = &f.after;
    println!(
        "mode {mode}: {FLOOD_TOTAL} spoofed SYNs: received +{}, SYN-ACK queued +{} cookie +{}, \
         syn_recv {} (max during flood {}), cookie_mode_active {}, drops queue_full +{} \
         per_source_limit +{}",
        delta(m, m0, "synguard_syn_received_total"),
        delta(m, m0, "synguard_synack_sent_total{kind=\"queued\"}"),
        delta(m, m0, "synguard_synack_sent_total{kind=\"cookie\"}"),
        m.val("synguard_syn_recv"),
        f.max_syn_recv,
        m.val("synguard_cookie_mode_active"),
        delta(m, m0, "synguard_drops_total{reason=\"queue_full\"}"),
        delta(m, m0, "synguard_drops_total{reason=\"per_source_limit\"}"),
    );
}

fn legit_connect(lab: &Lab, t: ClientTimeouts) -> Duration {
    let addr: SocketAddr = srv_v4(PROTECTED_PORT);
    lab.client(|| connect_once_with(addr, t))
        .unwrap_or_else(|e| panic!("legitimate connect failed: {e}"))
}

fn assert_server_syns(lab: &Lab, legit: u64) {
    let syns = lab.server_syn_count();
    println!("server saw {syns} SYNs ({legit} legitimate connects)");
    assert!(
        (legit..=legit + BACKEND_SYN_SLACK).contains(&syns),
        "server SYN count {syns}, expected {legit}..={}: spoofed SYNs reached the server",
        legit + BACKEND_SYN_SLACK
    );
}

#[test]
fn backlog_full_syncookies_off() {
    let lab = lab_with_config("backlog_full_syncookies_off", &backlog_config("off"));
    let m0 = lab.metrics();
    let f = flood_backlog(&lab, &m0);
    print_flood("off", &m0, &f);
    let m = &f.after;
    let d = |k: &str| delta(m, &m0, k);
    assert_eq!(d("synguard_syn_received_total"), FLOOD_TOTAL);
    assert_eq!(
        m.val("synguard_syn_recv"),
        BACKLOG,
        "queue should be exactly full"
    );
    assert_eq!(d("synguard_synack_sent_total{kind=\"queued\"}"), BACKLOG);
    assert_eq!(
        d("synguard_synack_sent_total{kind=\"cookie\"}"),
        0.0,
        "mode off sent cookie SYN-ACKs"
    );
    assert_eq!(m.val("synguard_cookie_mode_active"), 0.0);
    let qf = d("synguard_drops_total{reason=\"queue_full\"}");
    let ps = d("synguard_drops_total{reason=\"per_source_limit\"}");
    assert!(
        qf > 0.0,
        "no queue_full drops with a full queue in mode off"
    );
    assert_eq!(
        qf + ps,
        FLOOD_TOTAL - BACKLOG,
        "every SYN beyond the backlog is dropped"
    );
    assert_server_syns(&lab, 0);
    // A legitimate SYN finds the queue full too: dropped; the client's kernel
    // retransmits it (after 1, 2, 3 s with tcp_syn_linear_timeouts, 1, 3, 7 s
    // classically) and gets in once the flood's entries are given up (+3 s).
    let t = legit_connect(
        &lab,
        ClientTimeouts {
            connect: Duration::from_secs(10),
            io: Duration::from_secs(5),
        },
    );
    let m1 = lab.metrics();
    println!(
        "legit connect while the queue was full: {:.0} ms; queue_full drops now +{}, \
         expired +{}",
        ms(t),
        delta(&m1, &m0, "synguard_drops_total{reason=\"queue_full\"}"),
        delta(&m1, &m0, "synguard_syn_queue_expired_total"),
    );
    assert!(
        t >= Duration::from_millis(900),
        "legit connect took {t:?}: its first SYN should have been dropped (queue full)"
    );
    assert!(delta(&m1, &m0, "synguard_drops_total{reason=\"queue_full\"}") > qf);
    let (m2, _) = lab
        .wait_metrics(Duration::from_secs(5), |m| {
            m.val("synguard_syn_recv") == 0.0
        })
        .unwrap_or_else(|m| panic!("queue not drained: syn_recv {}", m.val("synguard_syn_recv")));
    assert_eq!(delta(&m2, &m0, "synguard_syn_queue_expired_total"), BACKLOG);
    assert_eq!(delta(&m2, &m0, "synguard_syn_queue_completed_total"), 1.0);
    assert_eq!(
        delta(&m2, &m0, "synguard_synack_sent_total{kind=\"cookie\"}"),
        0.0
    );
    assert_server_syns(&lab, 1);
    finish(&lab);
}

#[test]
fn backlog_full_syncookies_auto() {
    let lab = lab_with_config("backlog_full_syncookies_auto", &backlog_config("auto"));
    let m0 = lab.metrics();
    assert_eq!(m0.val("synguard_cookie_mode_active"), 0.0);
    let f = flood_backlog(&lab, &m0);
    print_flood("auto", &m0, &f);
    let m = &f.after;
    let d = |k: &str| delta(m, &m0, k);
    let queued = d("synguard_synack_sent_total{kind=\"queued\"}");
    let cookie = d("synguard_synack_sent_total{kind=\"cookie\"}");
    assert_eq!(d("synguard_syn_received_total"), FLOOD_TOTAL);
    assert_eq!(queued, BACKLOG, "the queue takes exactly its backlog");
    assert!(
        cookie > 0.0,
        "no cookie SYN-ACKs after the queue overflowed"
    );
    assert_eq!(queued + cookie, FLOOD_TOTAL, "every SYN answered");
    assert_eq!(
        m.sum("synguard_drops_total") - m0.sum("synguard_drops_total"),
        0.0
    );
    assert_eq!(m.val("synguard_syn_recv"), BACKLOG);
    assert_eq!(
        m.val("synguard_cookie_mode_active"),
        1.0,
        "cookie mode not active right after the overflow"
    );
    assert_server_syns(&lab, 0);
    // A legitimate client gets a cookie (its SYN also overflows the still-full queue,
    // which restarts the hold time) and completes.
    let legit_at = Instant::now();
    let t = legit_connect(&lab, ClientTimeouts::CONNECT);
    let m1 = lab.metrics_settled();
    println!(
        "legit connect in cookie mode: {:.2} ms; cookies validated +{}",
        ms(t),
        delta(&m1, &m0, "synguard_cookies_validated_total")
    );
    assert_eq!(delta(&m1, &m0, "synguard_cookies_validated_total"), 1.0);
    assert_eq!(
        delta(&m1, &m0, "synguard_synack_sent_total{kind=\"cookie\"}"),
        cookie + 1.0
    );
    assert_server_syns(&lab, 1);
    // Cookie mode ends cookie_hold_seconds after the last overflow.
    let (m2, _) = lab
        .wait_metrics(Duration::from_secs(9), |m| {
            m.val("synguard_cookie_mode_active") == 0.0
        })
        .unwrap_or_else(|_| panic!("cookie mode still active 9 s after the last overflow"));
    let since_legit = legit_at.elapsed();
    let since_flood = f.at.elapsed();
    println!(
        "cookie_mode_active back to 0 after {:.2} s from the flood's end, {:.2} s from the \
         legit SYN (hold {} s); syn_recv {}",
        since_flood.as_secs_f64(),
        since_legit.as_secs_f64(),
        COOKIE_HOLD.as_secs(),
        m2.val("synguard_syn_recv")
    );
    assert!(
        since_legit >= COOKIE_HOLD - Duration::from_millis(100)
            && since_legit <= COOKIE_HOLD + Duration::from_millis(700),
        "cookie mode lasted {since_legit:?} after the last overflow, expected {COOKIE_HOLD:?}"
    );
    // Back to the queue: a new connect gets a queued SYN-ACK.
    legit_connect(&lab, ClientTimeouts::CONNECT);
    let m3 = lab.metrics();
    assert_eq!(
        delta(&m3, &m2, "synguard_synack_sent_total{kind=\"queued\"}"),
        1.0
    );
    assert_eq!(
        delta(&m3, &m2, "synguard_synack_sent_total{kind=\"cookie\"}"),
        0.0
    );
    assert_eq!(delta(&m3, &m2, "synguard_syn_queue_completed_total"), 1.0);
    assert_eq!(
        m3.val("synguard_syn_recv"),
        0.0,
        "flood entries not given up"
    );
    assert_server_syns(&lab, 2);
    finish(&lab);
}

#[test]
fn backlog_full_syncookies_always() {
    let lab = lab_with_config("backlog_full_syncookies_always", &backlog_config("always"));
    let m0 = lab.metrics();
    assert_eq!(m0.val("synguard_cookie_mode_active"), 1.0);
    let f = flood_backlog(&lab, &m0);
    print_flood("always", &m0, &f);
    let m = &f.after;
    let d = |k: &str| delta(m, &m0, k);
    let received = d("synguard_syn_received_total");
    assert_eq!(received, FLOOD_TOTAL);
    assert_eq!(
        f.max_syn_recv, 0.0,
        "mode always queued SYNs during the flood"
    );
    assert_eq!(m.val("synguard_syn_recv"), 0.0);
    assert_eq!(d("synguard_synack_sent_total{kind=\"cookie\"}"), received);
    assert_eq!(d("synguard_synack_sent_total{kind=\"queued\"}"), 0.0);
    assert_eq!(
        m.sum("synguard_drops_total") - m0.sum("synguard_drops_total"),
        0.0
    );
    assert_eq!(m.val("synguard_cookie_mode_active"), 1.0);
    assert_server_syns(&lab, 0);
    let t = legit_connect(&lab, ClientTimeouts::CONNECT);
    let m1 = lab.metrics_settled();
    println!("legit connect in mode always: {:.2} ms", ms(t));
    assert_eq!(delta(&m1, &m0, "synguard_cookies_validated_total"), 1.0);
    assert_eq!(
        delta(&m1, &m0, "synguard_synack_sent_total{kind=\"cookie\"}"),
        received + 1.0
    );
    assert_eq!(
        delta(&m1, &m0, "synguard_synack_sent_total{kind=\"retransmit\"}"),
        0.0
    );
    assert_eq!(m1.val("synguard_syn_recv"), 0.0);
    assert_server_syns(&lab, 1);
    finish(&lab);
}

// ---------------------------------------------------------------------------------
// protect.services changed on a live gateway.

/// A gateway started from a config file that a test rewrites and reloads
/// (SIGHUP): the lab's usual flags, but the services from the file.
fn lab_with_reloadable_services(name: &str, services: &str) -> (Lab, std::path::PathBuf) {
    let lab = Lab::new(name);
    lab.start_server();
    let path = lab.dir.join("reloaded.toml");
    fs::write(&path, format!("[protect]\nservices = [{services}]\n")).unwrap();
    lab.start_gateway_without_services(&["--config", &path.display().to_string()]);
    (lab, path)
}

/// A 4 MiB download paced over about 2.7 s to 198.18.0.2:8080, the services
/// changed to `services` and reloaded 1 s into it: the reload's report line
/// and how the download ended.
fn download_across_reload(
    lab: &Lab,
    path: &std::path::Path,
    services: &str,
) -> (String, Result<Duration, String>) {
    let server = srv_v4(PROTECTED_PORT);
    let download = lab.spawn_client(move || {
        download_paced(
            server,
            4 << 20,
            ClientTimeouts::BULK,
            Duration::from_millis(40),
        )
    });
    thread::sleep(Duration::from_millis(1000));
    let line = reload_services(lab, path, services);
    let took = download.join().expect("download thread");
    eprintln!("{line}\ndownload across the reload: {took:?}");
    (line, took)
}

/// Rewrite the services and reload; waits for the gateway's report line.
fn reload_services(lab: &Lab, path: &std::path::Path, services: &str) -> String {
    let before = fs::read_to_string(&lab.gateway_log)
        .unwrap_or_default()
        .len();
    fs::write(path, format!("[protect]\nservices = [{services}]\n")).unwrap();
    let pid = lab.gateway_pid().expect("gateway pid");
    // SAFETY: kill(2) on the gateway this lab started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = fs::read_to_string(&lab.gateway_log).unwrap_or_default();
        if let Some(line) = log[before..]
            .lines()
            .find(|l| l.contains("configuration reloaded"))
        {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no reload line in 5 s:\n{}",
            &log[before..]
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A download proxied through a service that a reload then removes keeps
/// going, intact, to its end (the gateway keeps translating it; before, it
/// was forgotten and bridged untranslated, and the two ends exchanged
/// out-of-window ACKs until a timeout); new connections to the removed
/// service pass the gateway untouched.
#[test]
fn a_removed_service_finishes_its_connections() {
    let (lab, path) = lab_with_reloadable_services(
        "removed_service_finishes",
        "\"198.18.0.2:8080\", \"[2001:db8::2]:8080\"",
    );
    let server = srv_v4(PROTECTED_PORT);
    let (line, took) = download_across_reload(&lab, &path, "\"[2001:db8::2]:8080\"");
    took.expect("the download of the removed service completes intact");
    assert!(
        line.contains(
            "services removed: 198.18.0.2:8080 (1 tracked connections finish as they started)"
        ),
        "{line}"
    );

    let m0 = lab.metrics();
    lab.client(|| connect_once(server))
        .expect("a new connection, unproxied");
    // What the XDP program bridged is folded into the metrics every 100 ms.
    thread::sleep(Duration::from_millis(300));
    let m1 = lab.metrics();
    let d = |k: &str| m1.val(k) - m0.val(k);
    assert_eq!(d("synguard_syn_received_total"), 0.0, "not proxied");
    assert!(d("synguard_bridged_frames_total") >= 6.0);
    finish(&lab);
}

/// A download running to a service that a reload then protects keeps going,
/// intact, to its end: the gateway takes the connection over at the
/// server's next segment, unproxied (before, the client's next ACK met the
/// cookie check and was answered with a RST); new connections to the
/// service are proxied.
#[test]
fn an_added_service_takes_over_older_connections() {
    let (lab, path) =
        lab_with_reloadable_services("added_service_takes_over", "\"[2001:db8::2]:8080\"");
    let server = srv_v4(PROTECTED_PORT);
    let (line, took) =
        download_across_reload(&lab, &path, "\"198.18.0.2:8080\", \"[2001:db8::2]:8080\"");
    took.expect("the older download completes intact");
    assert!(line.contains("services added: 198.18.0.2:8080"), "{line}");
    let m0 = lab.metrics();
    assert_eq!(m0.val("synguard_flows_adopted_total"), 1.0);
    lab.client(|| connect_once(server))
        .expect("a new connection, proxied");
    let m1 = lab.metrics();
    assert_eq!(
        m1.val("synguard_syn_received_total") - m0.val("synguard_syn_received_total"),
        1.0
    );
    finish(&lab);
}

/// A blind FIN in the window (spoofed from the client's address and port, a
/// sequence number 5000 past the client's stream, hping3) against an upload
/// that pauses: the server's kernel queues it out of order and never takes
/// it, so the upload completes, as through a kernel bridge. The gateway
/// must not take it either: before, it moved the flow to CLOSE_WAIT and its
/// timer (here 1 s), expired it and reset both ends during the pause.
#[test]
fn a_blind_fin_closes_nothing() {
    const LOCAL: u16 = 40123;
    let lab = Lab::new("a_blind_fin_closes_nothing");
    lab.start_server();
    if lab.standin() {
        lab.start_gateway(&[]);
    } else {
        lab.start_gateway_with_config("[timeouts]\nclose_wait_seconds = 1\n", &[]);
    }
    let server = srv_v4(PROTECTED_PORT);
    let capture = lab.start_capture(
        &lab.cli,
        CLI_IF,
        &format!("tcp and src port {LOCAL} and dst port {PROTECTED_PORT}"),
        60,
    );
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let upload = lab.spawn_client(move || -> Result<(), String> {
        use std::hash::Hasher;
        use std::io::{Read, Write};
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .map_err(|e| e.to_string())?;
        s.set_reuse_address(true).map_err(|e| e.to_string())?;
        let local = SocketAddr::new(CLIENT_V4.into(), LOCAL);
        s.bind(&local.into()).map_err(|e| format!("bind: {e}"))?;
        s.connect_timeout(&server.into(), Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        let mut s: std::net::TcpStream = s.into();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
        let mut hdr = vec![b'U'];
        hdr.extend_from_slice(&2000u64.to_be_bytes());
        s.write_all(&hdr).map_err(|e| e.to_string())?;
        s.write_all(&body[..1000]).map_err(|e| e.to_string())?;
        sent_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        s.write_all(&body[1000..])
            .map_err(|e| format!("the rest of the upload: {e}"))?;
        let mut got = [0u8; 8];
        s.read_exact(&mut got)
            .map_err(|e| format!("the server's hash: {e}"))?;
        let mut h = new_hasher();
        h.write(&body);
        if u64::from_be_bytes(got) != h.finish() {
            return Err("hash mismatch".into());
        }
        Ok(())
    });
    sent_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("first half sent");
    thread::sleep(Duration::from_millis(200));
    let text = lab.stop_capture(capture);
    // tcpdump -S: "seq A:B" absolute; the client's stream ends at the largest B.
    let next = text
        .lines()
        .filter_map(|l| l.split("seq ").nth(1))
        .filter_map(|r| r.split([',', ' ']).next())
        .filter_map(|r| r.split(':').nth(1))
        .filter_map(|b| b.parse::<u32>().ok())
        .max()
        .unwrap_or_else(|| panic!("no client data in the capture:\n{text}"));
    let blind_seq = next.wrapping_add(5000).to_string();
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", &lab.cli, "hping3", "-c", "1", "-F", "-A", "-a",
        ])
        .arg(CLIENT_V4.to_string())
        .args([
            "-s",
            &LOCAL.to_string(),
            "-k",
            "-p",
            &PROTECTED_PORT.to_string(),
        ])
        .args(["-M", &blind_seq, "-L", "1"])
        .arg(server.ip().to_string())
        .output()
        .expect("run hping3");
    eprintln!(
        "blind FIN at {blind_seq} (stream at {next}): hping3 {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    // Idle past the CLOSE_WAIT timeout the FIN would have started.
    thread::sleep(Duration::from_millis(2500));
    go_tx.send(()).unwrap();
    let r = upload.join().expect("upload thread");
    eprintln!("upload across the blind FIN: {r:?}");
    r.expect("the upload completes");
    if !lab.standin() {
        assert_eq!(lab.metrics().val("synguard_flows_expired_total"), 0.0);
    }
    assert_eq!(lab.server_errors(), 0);
}
