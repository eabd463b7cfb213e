//! A gateway restart in the namespace lab, with real Linux TCP at both ends:
//! 4 slow downloads (hash-checked, 2 over IPv4, 2 over IPv6) and 10 idle
//! connections opened before the stop, the gateway started again with the
//! same `--flow-file`, and every one of the 14 must finish intact: the
//! downloads complete with the right bytes, the idle connections answer
//! after the restart.
//!
//! - SIGTERM: the flow file carries them (XDP on or off).
//! - SIGKILL: nothing is written; with XDP on, the pinned programs keep
//!   forwarding the established flows and the new process adopts their
//!   map, so all 14 survive; with XDP off the test documents the cost:
//!   every one of them breaks.
//!
//! The XDP fast path is at the suite's setting (tests/run-all.sh runs the
//! lab suite with it on and off). Needs root; holds the lab lock; removes
//! its namespaces and pins, also on failure.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Bytes per download: read 64 KiB at a time with READ_PAUSE after each
/// (about 2.6 MB/s), each runs about 2.4 s, so the restart falls in the
/// middle of all four.
const DOWNLOAD_BYTES: u64 = 6 << 20;
const READ_PAUSE: Duration = Duration::from_millis(25);
/// Per read/write: covers the restart and the senders' retransmission backoff.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

fn open(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// 'C' on a connection opened before the restart: the reply, then the
/// server's FIN.
fn talk(mut s: TcpStream, addr: SocketAddr) -> Result<(), String> {
    s.write_all(b"C")
        .map_err(|e| format!("{addr}: send 'C': {e}"))?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)
        .map_err(|e| format!("{addr}: read 'C': {e}"))?;
    if b != *b"C" {
        return Err(format!("{addr}: answered {b:?}"));
    }
    match s.read(&mut b) {
        Ok(0) => Ok(()),
        Ok(_) => Err(format!("{addr}: bytes after 'C'")),
        Err(e) => Err(format!("{addr}: waiting for the FIN: {e}")),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stop {
    Term,
    Kill,
}

#[test]
fn lab_restart_with_sigterm_keeps_downloads_and_idle_connections() {
    restart(Stop::Term);
}

#[test]
fn lab_restart_after_sigkill_keeps_them_with_xdp_and_costs_them_without() {
    restart(Stop::Kill);
}

fn restart(stop: Stop) {
    let lab = Lab::new(match stop {
        Stop::Term => "restart_sigterm",
        Stop::Kill => "restart_sigkill",
    });
    assert!(
        !lab.standin(),
        "this test restarts synguard: it needs the real gateway"
    );
    lab.start_server();
    let flow_file = lab.dir.join("flows.json").display().to_string();
    let args = ["--flow-file", flow_file.as_str()];
    lab.start_gateway(&args);
    // The suite's setting, as the gateway took it (the mode gauge lags).
    let xdp_on = lab.gateway_log_tail(60).contains("XDP fast path attached");

    let addrs = [srv_v4(PROTECTED_PORT), srv_v6(PROTECTED_PORT)];
    let idle: Vec<(TcpStream, SocketAddr)> = lab.client(|| {
        (0..10)
            .map(|i| {
                let a = addrs[i % 2];
                (open(a), a)
            })
            .collect()
    });
    let downloads: Vec<_> = (0..4)
        .map(|i| {
            let a = addrs[i % 2];
            lab.spawn_client(move || {
                let t = ClientTimeouts {
                    connect: Duration::from_secs(5),
                    io: IO_TIMEOUT,
                };
                download_paced(a, DOWNLOAD_BYTES, t, READ_PAUSE)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(800));

    let stopped_at = Instant::now();
    match stop {
        Stop::Term => {
            let status = lab.stop_gateway().expect("gateway was running");
            assert!(status.success(), "SIGTERM stop: {status:?}");
            let stop_log = lab.gateway_log_tail(10);
            assert!(
                stop_log.contains("flows left for the next start") && stop_log.contains("flows=14"),
                "the stop saves the 14 flows:\n{stop_log}"
            );
            assert_eq!(
                stop_log.contains("XDP data path left in place"),
                xdp_on,
                "the stop says whether it left the data path:\n{stop_log}"
            );
        }
        Stop::Kill => {
            lab.kill_gateway();
            assert!(
                !std::path::Path::new(&flow_file).exists(),
                "a killed process writes no flow file"
            );
        }
    }
    lab.start_gateway(&args);
    let gap = stopped_at.elapsed();
    let start_log = lab.gateway_log_tail(40);
    match (stop, xdp_on) {
        (Stop::Term, _) => assert!(
            start_log.contains("took over the flows of the previous run")
                && start_log.contains("restored=14"),
            "the start restores the 14 flows:\n{start_log}"
        ),
        (Stop::Kill, true) => assert!(
            start_log.contains("took over the flows the XDP programs kept forwarding")
                && start_log.contains("restored=14"),
            "the start adopts the 14 flows from the pinned map:\n{start_log}"
        ),
        (Stop::Kill, false) => {}
    }
    assert!(
        !std::path::Path::new(&flow_file).exists(),
        "the flow file is read once"
    );

    let mut failures = Vec::new();
    for (i, d) in downloads.into_iter().enumerate() {
        match d.join().expect("download thread") {
            Ok(t) => eprintln!("download {i}: {DOWNLOAD_BYTES} bytes intact in {t:?}"),
            Err(e) => failures.push(format!("download {i}: {e}")),
        }
    }
    let talked: Vec<Result<(), String>> =
        lab.client(|| idle.into_iter().map(|(s, a)| talk(s, a)).collect());
    for (i, r) in talked.into_iter().enumerate() {
        if let Err(e) = r {
            failures.push(format!("idle connection {i}: {e}"));
        }
    }
    eprintln!(
        "restart gap ({stop:?} to the new gateway's /metrics, XDP {}): {gap:?}; {} of 14 connections broken",
        if xdp_on { "on" } else { "off" },
        failures.len()
    );
    if stop == Stop::Kill && !xdp_on {
        // The cost of a crash without XDP: no flow file, no kernel state.
        assert_eq!(
            failures.len(),
            14,
            "without XDP a crash ends every connection; survivors:\n{}",
            failures.join("\n")
        );
        return;
    }
    assert!(
        failures.is_empty(),
        "connections broken by the restart:\n{}\ngateway log:\n{}",
        failures.join("\n"),
        lab.gateway_log_tail(30)
    );
    lab.assert_gateway_alive();
    assert_eq!(lab.server_errors(), 0, "test server saw connection errors");
    let m = lab.metrics();
    assert_eq!(
        m.val("synguard_rst_sent_total"),
        0.0,
        "the new gateway reset nothing"
    );
}
