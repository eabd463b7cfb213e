//! Several synguard instances as one (issue 20): two routers spread flows over
//! two or three instances with ECMP (tests/common/fleet.rs, deploy/lab/ecmp.sh,
//! deploy/fleet/router.sh), and these tests check what the README section "Running
//! several gateways" promises: both directions of every flow cross one instance, a
//! cookie minted on one completes on another, a key rolls across the fleet while
//! clients connect, a dead instance leaves the groups and the survivors' flows stay
//! intact, a drained one takes no new flows while it finishes its own, a spoofed
//! SYN flood is answered by every instance (and fails no liveness probe), and the
//! probe fails with an instance's process even while its XDP path still forwards.
//! Real Linux TCP at both ends.

mod common;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const KEY_A: &str = "000102030405060708090a0b0c0d0e0f";
const KEY_B: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0f";

/// A fleet of `n` instances with a secret shared by all, every instance started
/// with `extra` configuration, and the test server.
fn fleet(name: &str, n: usize, extra: &str) -> Fleet {
    let f = Fleet::new(name, n);
    f.write_secret(&[KEY_A]);
    f.start_server();
    for i in 1..=n {
        f.start_gateway(i, extra);
    }
    f.ping_links();
    assert_eq!(
        f.buckets(Side::Client),
        f.buckets(Side::Server),
        "both routers must map every bucket to the same instance"
    );
    f
}

/// The `reason` drops of instance `i`.
fn drops(f: &Fleet, i: usize, reason: &str) -> f64 {
    f.metrics(i)
        .get(&format!("synguard_drops_total{{reason=\"{reason}\"}}"))
        .unwrap_or(0.0)
}

/// Drops that mean a flow met an instance without its state: a segment of no flow,
/// an ACK of no flow with no valid cookie.
fn assert_no_stateless_drops(f: &Fleet) {
    for i in 1..=f.n {
        for reason in ["no_flow", "invalid_cookie", "out_of_window"] {
            assert_eq!(drops(f, i, reason), 0.0, "instance {i}: {reason} drops");
        }
    }
}

/// The instance a client tuple crossed: exactly one, and the same both ways.
fn single_instance(tuple: &str, ins: &LinkMap, outs: &LinkMap) -> usize {
    let i = ins.get(tuple).cloned().unwrap_or_default();
    let o = outs.get(tuple).cloned().unwrap_or_default();
    assert!(
        i.len() == 1 && i == o,
        "{tuple}: came in from instances {i:?}, went out to {o:?}"
    );
    *i.iter().next().unwrap()
}

/// "ADDR . PORT" as the router's record writes a client tuple.
fn tuple_of(local: SocketAddr) -> String {
    format!("{} . {}", local.ip(), local.port())
}

/// A connection held open: connected, an upload of `HELD_BYTES` announced, the
/// bytes sent by [`Held::send`] in part and by [`Held::finish`], which checks the
/// server's hash of them.
struct Held {
    stream: TcpStream,
    tuple: String,
    sent: usize,
}

const HELD_BYTES: u64 = 4096;

impl Held {
    fn open(addr: SocketAddr) -> Result<Held, String> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut hdr = [b'U'; 9];
        hdr[1..].copy_from_slice(&HELD_BYTES.to_be_bytes());
        stream.write_all(&hdr).map_err(|e| format!("header: {e}"))?;
        let tuple = tuple_of(stream.local_addr().unwrap());
        Ok(Held {
            stream,
            tuple,
            sent: 0,
        })
    }

    /// Sends the next `n` bytes of the upload.
    fn send(&mut self, n: usize) -> std::io::Result<()> {
        let mut buf = vec![0u8; HELD_BYTES as usize];
        Stream::new(HELD_BYTES).fill(&mut buf);
        let end = (self.sent + n).min(buf.len());
        self.stream.write_all(&buf[self.sent..end])?;
        self.sent = end;
        Ok(())
    }

    /// Sends the rest and reads the hash: Ok(time taken) or the error and the
    /// time it took to come.
    fn finish(mut self) -> Result<Duration, (ErrorKind, Duration)> {
        let start = Instant::now();
        let fail = |e: std::io::Error| (e.kind(), start.elapsed());
        self.send(HELD_BYTES as usize).map_err(fail)?;
        let mut got = [0u8; 8];
        self.stream.read_exact(&mut got).map_err(fail)?;
        assert_eq!(
            u64::from_be_bytes(got),
            stream_hash(HELD_BYTES),
            "{}: hash of the held upload",
            self.tuple
        );
        Ok(start.elapsed())
    }
}

fn open_held(f: &Fleet, count: usize, addr: SocketAddr) -> Vec<Held> {
    f.client(|| {
        (0..count)
            .map(|k| Held::open(addr).unwrap_or_else(|e| panic!("held connection {k}: {e}")))
            .collect()
    })
}

/// `KEY="VALUE"` lines of a router.sh configuration.
fn router_conf(name: &str) -> std::collections::BTreeMap<String, String> {
    let path = format!("{}/deploy/fleet/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

/// The worked example's two routers agree on what must agree (seed, buckets,
/// member numbers), and each member's far address is the other router's own
/// address on that link (the lab writes the same shape, ecmp.sh write_conf).
#[test]
fn the_example_routers_mirror_each_other() {
    let c = router_conf("router-client.conf");
    let s = router_conf("router-server.conf");
    for k in ["SEED", "BUCKETS"] {
        assert_eq!(c.get(k), s.get(k), "{k}");
    }
    let members = |m: &std::collections::BTreeMap<String, String>| {
        m.keys()
            .filter(|k| k.starts_with("MEMBER_"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(members(&c), members(&s));
    assert_eq!(members(&c).len(), 3);
    for m in members(&c) {
        let (cf, sf): (Vec<&str>, Vec<&str>) = (
            c[&m].split_whitespace().collect(),
            s[&m].split_whitespace().collect(),
        );
        // Link n: the clients' router is .1 / ::1, the servers' router .2 / ::2.
        let subnet = |a: &str| a.rsplit_once('.').map(|(net, _)| net.to_owned());
        assert_eq!(subnet(cf[0]), subnet(sf[0]), "{m}: one link, one subnet");
        assert!(
            cf[0].ends_with(".2") && sf[0].ends_with(".1"),
            "{m}: {cf:?} / {sf:?}"
        );
        assert!(
            cf[1].ends_with("::2") && sf[1].ends_with("::1"),
            "{m}: {cf:?} / {sf:?}"
        );
    }
}

#[test]
fn flows_cross_exactly_one_instance_both_ways() {
    let f = fleet("onepath", 3, "");
    let ok = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let handles: Vec<_> = (0usize..8)
        .map(|t| {
            let ok = ok.clone();
            f.spawn_client(move || {
                let mut errors = Vec::new();
                for k in 0..25 {
                    let addr = if (t + k).is_multiple_of(4) {
                        fleet_srv_v6()
                    } else {
                        fleet_srv_v4()
                    };
                    // Its own client port: the record tells connections
                    // apart by it.
                    let port = 41000 + (t * 25 + k) as u16;
                    let r = open_from(addr, port, ClientTimeouts::BULK).and_then(|s| {
                        if k % 2 == 0 {
                            upload_on(s, addr, 64 << 10)
                        } else {
                            download_on(s, addr, 64 << 10, Duration::ZERO)
                        }
                    });
                    match r {
                        Ok(_) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => errors.push(e),
                    }
                }
                errors
            })
        })
        .collect();
    let errors: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(errors.is_empty(), "transfers failed: {errors:#?}");
    assert_eq!(ok.load(Ordering::Relaxed), 200);
    let (ins, outs) = f.link_record();
    let tuples: BTreeSet<&String> = ins.keys().chain(outs.keys()).collect();
    assert_eq!(tuples.len(), 200, "client tuples the servers' router saw");
    let mut per_instance = vec![0usize; f.n + 1];
    for t in &tuples {
        per_instance[single_instance(t, &ins, &outs)] += 1;
    }
    eprintln!("flows per instance: {:?}", &per_instance[1..]);
    for (i, &carried) in per_instance.iter().enumerate().skip(1) {
        assert!(carried > 0, "instance {i} carried no flow");
        let done = f
            .metrics(i)
            .get("synguard_backend_handshakes_total{result=\"completed\"}");
        assert_eq!(
            done,
            Some(carried as f64),
            "instance {i}: backend handshakes completed = the flows its link carried"
        );
    }
    assert_no_stateless_drops(&f);
    assert_eq!(f.server_errors(), 0);
}

/// Blocks the client's segments of the protected port that are not SYNs at the
/// clients' router (the third ACK and the request stay behind), pins the path of
/// the client's flows to instance `via` on both routers.
fn pin_path(f: &Fleet, via: usize, v6: bool) {
    let (c4, c6) = ("198.18.1.2/32", "2001:db8:1::2/128");
    let (s4, s6) = ("198.18.0.1/32", "2001:db8::1/128");
    let (dst_c, dst_s, nh_c, nh_s) = if v6 {
        (
            c6,
            s6,
            format!("2001:db8:1{via}::2"),
            format!("2001:db8:1{via}::1"),
        )
    } else {
        (
            c4,
            s4,
            format!("198.18.1{via}.2"),
            format!("198.18.1{via}.1"),
        )
    };
    let fam = if v6 { "-6" } else { "-4" };
    let rc = format!("rc{via}");
    let rs = format!("rs{via}");
    ns_run(
        &f.rtc,
        "ip",
        &[fam, "route", "replace", dst_c, "via", &nh_c, "dev", &rc],
    );
    ns_run(
        &f.rts,
        "ip",
        &[fam, "route", "replace", dst_s, "via", &nh_s, "dev", &rs],
    );
}

#[test]
fn a_cookie_minted_on_one_instance_completes_on_another() {
    let f = fleet("moved", 2, "");
    for (v6, addr) in [(false, fleet_srv_v4()), (true, fleet_srv_v6())] {
        pin_path(&f, 1, v6);
        let block = format!(
            "table inet hold {{\n counter held {{ }}\n chain hold {{\n\
             type filter hook forward priority -10; policy accept;\n\
             tcp dport {PROTECTED_PORT} tcp flags & syn == 0 counter name \"held\" drop\n }}\n}}\n"
        );
        nft_apply(&f.rtc, &block);
        let before: Vec<Metrics> = (1..=2).map(|i| f.metrics(i)).collect();
        let f_ref = &f;
        let reply = f.client(|| {
            // The handshake completes at the client from instance 1's SYN-ACK;
            // its ACK and the request wait at the router.
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"C").unwrap();
            thread::sleep(Duration::from_millis(300));
            // Now the path moves to instance 2, and what waited goes through:
            // the client retransmits the request, whose ACK carries the cookie
            // instance 1 minted.
            let held = nft_counter_packets(&f_ref.rtc, "inet hold", "held");
            assert!(
                held >= 2,
                "the third ACK and the request waited: {held} segments"
            );
            pin_path(f_ref, 2, v6);
            nft_apply(&f_ref.rtc, "delete table inet hold");
            let mut b = [0u8; 1];
            s.read_exact(&mut b).map(|_| b[0])
        });
        let after: Vec<Metrics> = (1..=2).map(|i| f.metrics(i)).collect();
        let reply = reply.unwrap_or_else(|e| {
            let drops: Vec<String> = after
                .iter()
                .map(|m| {
                    m.text
                        .lines()
                        .filter(|l| {
                            l.starts_with("synguard_drops_total")
                                || l.starts_with("synguard_rst_sent")
                                || l.starts_with("synguard_cookies")
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .collect();
            panic!(
                "{addr}: reply: {e}\ninstance 1:\n{}\ninstance 2:\n{}",
                drops[0], drops[1]
            )
        });
        assert_eq!(reply, b'C');
        let delta = |i: usize, k: &str| {
            after[i - 1].get(k).unwrap_or(0.0) - before[i - 1].get(k).unwrap_or(0.0)
        };
        eprintln!(
            "{addr}: instance 1 answered {} SYN, instance 2 validated {} cookie, completed {} backend handshake",
            delta(1, "synguard_syn_received_total"),
            delta(2, "synguard_cookies_validated_total"),
            delta(2, "synguard_backend_handshakes_total{result=\"completed\"}")
        );
        assert_eq!(
            delta(1, "synguard_syn_received_total"),
            1.0,
            "the SYN went to instance 1"
        );
        assert_eq!(
            delta(1, "synguard_backend_handshakes_total{result=\"started\"}"),
            0.0
        );
        assert_eq!(delta(2, "synguard_syn_received_total"), 0.0);
        assert_eq!(delta(2, "synguard_cookies_validated_total"), 1.0);
        assert_eq!(
            delta(2, "synguard_backend_handshakes_total{result=\"completed\"}"),
            1.0
        );
    }
    assert_no_stateless_drops(&f);
}

/// What clients connecting in a loop saw: (start offset, latency) of each
/// success, (start offset, reason) of each failure.
type ConnectLog = (Vec<(Duration, Duration)>, Vec<(Duration, String)>);

fn connect_loop(
    f: &Fleet,
    threads: usize,
    stop: Arc<AtomicBool>,
    t0: Instant,
) -> Vec<thread::JoinHandle<ConnectLog>> {
    (0..threads)
        .map(|t| {
            let stop = stop.clone();
            f.spawn_client(move || {
                let (mut ok, mut err) = (Vec::new(), Vec::new());
                let mut k = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let addr = if (t + k).is_multiple_of(3) {
                        fleet_srv_v6()
                    } else {
                        fleet_srv_v4()
                    };
                    let at = t0.elapsed();
                    match connect_once(addr) {
                        Ok(d) => ok.push((at, d)),
                        Err(e) => err.push((at, e)),
                    }
                    k += 1;
                    thread::sleep(Duration::from_millis(20));
                }
                (ok, err)
            })
        })
        .collect()
}

fn join_connects(hs: Vec<thread::JoinHandle<ConnectLog>>) -> ConnectLog {
    let (mut ok, mut err) = (Vec::new(), Vec::new());
    for h in hs {
        let (o, e) = h.join().unwrap();
        ok.extend(o);
        err.extend(e);
    }
    ok.sort();
    (ok, err)
}

#[test]
fn a_key_rolls_across_the_fleet_while_clients_connect() {
    // Every handshake a cookie (so every one checks the key), slots of 2 s.
    let f = fleet(
        "rotate",
        3,
        "slot_seconds = 2\n[syn_queue]\nsyncookies = \"always\"\n",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let clients = connect_loop(&f, 4, stop.clone(), t0);
    thread::sleep(Duration::from_secs(1));
    // README "Rotating the cookie key": (1) all accept B, (2) all mint with B
    // and accept A, (3) after 2 slots all forget A. One instance after the
    // other, a second apart, as an operator's loop would.
    for (step, keys) in [
        (1, vec![KEY_A, KEY_B]),
        (2, vec![KEY_B, KEY_A]),
        (3, vec![KEY_B]),
    ] {
        if step == 3 {
            thread::sleep(Duration::from_secs(4));
        }
        f.write_secret(&keys);
        for i in 1..=f.n {
            eprintln!("step {step}: instance {i} reloads at {:?}", t0.elapsed());
            let line = f.reload(i);
            assert!(
                line.contains("cookies.secret_file"),
                "step {step}, instance {i}: {line}"
            );
            thread::sleep(Duration::from_secs(1));
        }
    }
    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (ok, err) = join_connects(clients);
    eprintln!(
        "{} connects during the roll ({:.1} s): {}",
        ok.len(),
        t0.elapsed().as_secs_f64(),
        latency_summary(&ok.iter().map(|(_, d)| *d).collect::<Vec<_>>())
    );
    let slow: Vec<_> = ok
        .iter()
        .filter(|(_, d)| *d >= Duration::from_millis(900))
        .collect();
    eprintln!("connects that needed a retransmission (start, latency): {slow:?}");
    assert!(err.is_empty(), "connects failed during the roll: {err:#?}");
    assert!(
        ok.len() >= 50,
        "too few connects to say anything: {}",
        ok.len()
    );
    for i in 1..=f.n {
        let m = f.metrics(i);
        let failed = m.get("synguard_cookies_failed_total").unwrap_or(0.0);
        let valid = m.get("synguard_cookies_validated_total").unwrap_or(0.0);
        eprintln!("instance {i}: {valid} cookies validated, {failed} failed");
        assert_eq!(failed, 0.0, "instance {i} rejected a cookie");
        assert!(valid > 0.0, "instance {i} validated no cookie");
    }
    assert_no_stateless_drops(&f);
}

/// Whether router `ns`'s main IPv4 group still holds instance `i`.
fn in_group(ns: &str, i: usize) -> bool {
    let out = ns_run(ns, "ip", &["nexthop", "show", "id", "10"]);
    let group = out
        .split_whitespace()
        .skip_while(|w| *w != "group")
        .nth(1)
        .unwrap_or("");
    group.split('/').any(|id| id == (100 + i).to_string())
}

/// `count` held connections through the fleet, and the instance each crossed
/// (printed as a count per instance).
fn held_on(f: &Fleet, count: usize) -> (Vec<Held>, Vec<usize>) {
    let held = open_held(f, count, fleet_srv_v4());
    let (ins, outs) = f.link_record();
    let on: Vec<usize> = held
        .iter()
        .map(|h| single_instance(&h.tuple, &ins, &outs))
        .collect();
    let per: Vec<usize> = (1..=f.n)
        .map(|i| on.iter().filter(|&&x| x == i).count())
        .collect();
    eprintln!("held connections per instance: {per:?}");
    (held, on)
}

#[test]
fn a_dead_instance_leaves_the_groups_and_the_others_carry_on() {
    let f = fleet("failover", 3, "");
    let (held, on) = held_on(&f, 60);
    let count = |i| on.iter().filter(|&&x| x == i).count();
    assert!(
        (1..=3).all(|i| count(i) > 0),
        "every instance holds connections"
    );
    for side in [Side::Client, Side::Server] {
        f.spawn_watch(side, &["-i", "200", "-f", "3"]);
    }
    thread::sleep(Duration::from_secs(1));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let clients = connect_loop(&f, 4, stop.clone(), t0);
    thread::sleep(Duration::from_secs(1));
    // A dead host: the process killed, its XDP data path gone with it.
    let killed = t0.elapsed();
    f.kill_gateway(2);
    f.detach(2);
    let mut removed = [None, None];
    while removed.iter().any(Option::is_none) && t0.elapsed() < killed + Duration::from_secs(10) {
        for (k, ns) in [&f.rtc, &f.rts].into_iter().enumerate() {
            if removed[k].is_none() && !in_group(ns, 2) {
                removed[k] = Some(t0.elapsed() - killed);
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
    let [Some(gone_c), Some(gone_s)] = removed else {
        panic!("instance 2 still in a group 10 s after its death: {removed:?}");
    };
    eprintln!("instance 2 out of the clients' router's group {gone_c:?} after the kill, the servers' {gone_s:?}");
    thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    let (ok, err) = join_connects(clients);
    // Connects started before the kill may have been on instance 2 (lost with
    // it); every one started after it must succeed.
    let late_errors: Vec<_> = err.iter().filter(|(at, _)| *at >= killed).collect();
    let early_errors = err.len() - late_errors.len();
    let after: Vec<&(Duration, Duration)> = ok.iter().filter(|(at, _)| *at >= killed).collect();
    let slow: Vec<_> = after
        .iter()
        .filter(|(_, d)| *d >= Duration::from_millis(900))
        .collect();
    eprintln!(
        "connects started after the kill: {} ok, {} failed; {} needed a SYN retransmission \
         (the last started {:?} after the kill, slowest {:?}); connects in flight at the kill lost: {early_errors}",
        after.len(),
        late_errors.len(),
        slow.len(),
        slow.last().map(|(at, _)| *at - killed),
        after.iter().map(|(_, d)| *d).max()
    );
    assert!(
        late_errors.is_empty(),
        "connects after the kill failed: {late_errors:#?}"
    );
    assert!(
        early_errors <= 4,
        "more connects lost than were in flight: {err:#?}"
    );
    // The survivors' held flows: untouched. The dead instance's: measured.
    let mut dead = Vec::new();
    for (h, &i) in held.into_iter().zip(&on) {
        let r = f.client(|| h.finish());
        if i == 2 {
            dead.push(r);
        } else {
            r.unwrap_or_else(|(e, t)| panic!("a flow of instance {i} broke: {e:?} after {t:?}"));
        }
    }
    let resets: Vec<Duration> = dead
        .iter()
        .filter_map(|r| match r {
            Err((ErrorKind::ConnectionReset, t)) => Some(*t),
            _ => None,
        })
        .collect();
    eprintln!(
        "instance 2's {} flows after failover: {} reset (in {}), others: {:?}",
        dead.len(),
        resets.len(),
        latency_summary(&resets),
        dead.iter()
            .filter(|r| !matches!(r, Err((ErrorKind::ConnectionReset, _))))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        resets.len(),
        dead.len(),
        "every flow of the dead instance ends with a RST"
    );
    // The servers' side of those: nothing tells the server (its segments, if it
    // sent any, would meet an instance without the flow).
    let open = ns_run(
        &f.srv,
        "ss",
        &["-Htn", "state", "established", "( sport = :8080 )"],
    );
    let open = open.lines().count();
    eprintln!("server connections still established after the failover: {open}");
    // A connect in flight at the kill may have reached the server through
    // the dying instance (its backend handshake done, the client's never):
    // the server keeps that one open too.
    assert!(
        (dead.len()..=dead.len() + early_errors).contains(&open),
        "the server keeps the dead instance's {} flows open, and at most the {early_errors} \
         connects lost in flight: {open}",
        dead.len()
    );
    assert_eq!(f.buckets(Side::Client), f.buckets(Side::Server));
}

#[test]
fn a_drained_instance_takes_no_new_flows_and_finishes_its_own() {
    let f = fleet("drain", 3, "");
    let (held, on) = held_on(&f, 45);
    let count = |i| on.iter().filter(|&&x| x == i).count();
    assert!(count(2) > 0, "instance 2 holds connections: {on:?}");
    f.routers(&["drain", "2"]);
    let (before, _) = f.link_record();
    // New flows, some of them held across the end of the drain.
    let during = open_held(&f, 30, fleet_srv_v4());
    let errors: Vec<String> = f.client(|| {
        (0..60)
            .filter_map(|_| connect_once(fleet_srv_v4()).err())
            .collect()
    });
    assert!(errors.is_empty(), "connects during the drain: {errors:#?}");
    let (ins, outs) = f.link_record();
    let new: Vec<&String> = ins.keys().filter(|t| !before.contains_key(*t)).collect();
    assert_eq!(new.len(), 90, "new client tuples during the drain");
    let mut per = [0usize; 4];
    for t in &new {
        per[single_instance(t, &ins, &outs)] += 1;
    }
    eprintln!("new flows during the drain per instance: {:?}", &per[1..]);
    assert_eq!(per[2], 0, "a drained instance takes no new flow");
    // The drained instance's own flows finish, as do everyone else's.
    for (h, i) in held.into_iter().zip(&on) {
        f.client(|| h.finish()).unwrap_or_else(|(e, t)| {
            panic!("a flow of instance {i} broke in the drain: {e:?} after {t:?}")
        });
    }
    // The drain's end: instance 2 leaves the groups; flows born during the
    // drain stay where they are (both groups have the same buckets again).
    f.routers(&["finish", "2"]);
    for ns in [&f.rtc, &f.rts] {
        assert!(!in_group(ns, 2));
        let rules = ns_run(ns, "nft", &["list", "table", "inet", "synguard_fleet"]);
        assert!(
            !rules.contains("synguard-drain"),
            "drain rule left in {ns}:\n{rules}"
        );
    }
    for h in during {
        f.client(|| h.finish()).unwrap_or_else(|(e, t)| {
            panic!("a flow born in the drain broke at its end: {e:?} after {t:?}")
        });
    }
    assert_eq!(f.buckets(Side::Client), f.buckets(Side::Server));
    // Back in service: both routers take it into both groups alike.
    f.routers(&["add", "2"]);
    for ns in [&f.rtc, &f.rts] {
        assert!(in_group(ns, 2), "{ns}: instance 2 not back");
    }
    assert_eq!(f.buckets(Side::Client), f.buckets(Side::Server));
    let errors: Vec<String> = f.client(|| {
        (0..30)
            .filter_map(|_| connect_once(fleet_srv_v4()).err())
            .collect()
    });
    assert!(errors.is_empty(), "connects after the return: {errors:#?}");
    assert_no_stateless_drops(&f);
}

#[test]
fn a_spoofed_syn_flood_is_answered_by_every_instance() {
    let f = fleet("flood", 2, "");
    let sources: Vec<std::net::Ipv4Addr> = (100..106)
        .map(|h| std::net::Ipv4Addr::new(198, 18, 0, h))
        .collect();
    // The routers' liveness probes run through the flood: no instance may
    // look dead for being busy.
    let watch_logs: Vec<_> = [Side::Client, Side::Server]
        .into_iter()
        .map(|side| f.spawn_watch(side, &["-i", "200", "-f", "3"]))
        .collect();
    let flood = {
        let f = &f;
        let sources = &sources;
        thread::scope(|s| {
            let flood = s.spawn(move || f.syn_flood(sources, 5000, 1000, 20));
            thread::sleep(Duration::from_secs(1));
            let legit: Vec<_> = (0..4)
                .map(|_| {
                    f.spawn_client(|| {
                        (0..25)
                            .map(|_| connect_once_with(fleet_srv_v4(), ClientTimeouts::UNDER_FLOOD))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let results: Vec<Result<Duration, String>> =
                legit.into_iter().flat_map(|h| h.join().unwrap()).collect();
            let sent = flood.join().unwrap();
            (sent, results)
        })
    };
    let (sent, results) = flood;
    let ok: Vec<Duration> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    thread::sleep(XDP_COUNTER_LAG);
    let answered: Vec<f64> = (1..=2)
        .map(|i| {
            let m = f.metrics(i);
            ["queued", "cookie"]
                .iter()
                .map(|k| {
                    m.get(&format!("synguard_synack_sent_total{{kind=\"{k}\"}}"))
                        .unwrap_or(0.0)
                })
                .sum()
        })
        .collect();
    eprintln!(
        "{sent} spoofed SYNs; first SYN-ACKs per instance {answered:?}; legitimate connects {}/100 ({})",
        ok.len(),
        latency_summary(&ok)
    );
    assert!(errors.is_empty(), "legitimate connects failed: {errors:#?}");
    f.stop_helpers();
    for log in watch_logs {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            !text.contains("missed"),
            "a probe failed under the flood:\n{text}"
        );
    }
    for ns in [&f.rtc, &f.rts] {
        assert!(in_group(ns, 1) && in_group(ns, 2), "{ns} lost an instance");
    }
    let total: f64 = answered.iter().sum();
    assert!(
        total >= sent as f64 * 0.5,
        "the fleet answered {total} of {sent} SYNs"
    );
    for (k, a) in answered.iter().enumerate() {
        assert!(
            *a >= total / 4.0,
            "instance {} answered {a} of {total}: not its share",
            k + 1
        );
    }
}

/// The liveness signal (README "Running several gateways"): ICMP crosses an
/// instance only through its engine (the XDP program hands it up), so the
/// routers' probe fails as soon as the process is gone, even while its XDP
/// data path, pinned, still forwards the flows it holds.
#[test]
fn the_liveness_probe_fails_with_the_process_while_xdp_still_forwards() {
    let f = fleet("liveness", 2, "");
    let xdp = lab_xdp_from_env().as_deref() != Some("off");
    // Pin the client's flows to instance 1; a flow older than 100 ms is
    // published to the XDP program by its next segment.
    let (c4, s4) = ("198.18.1.2/32", "198.18.0.1/32");
    ns_run(
        &f.rtc,
        "ip",
        &["route", "replace", c4, "via", "198.18.11.2", "dev", "rc1"],
    );
    ns_run(
        &f.rts,
        "ip",
        &["route", "replace", s4, "via", "198.18.11.1", "dev", "rs1"],
    );
    let mut held = f.client(|| Held::open(fleet_srv_v4()).unwrap());
    thread::sleep(Duration::from_millis(300));
    f.client(|| held.send(1000)).unwrap();
    thread::sleep(Duration::from_millis(300));
    f.kill_gateway(1);
    thread::sleep(Duration::from_millis(200));
    for (ns, far) in [(&f.rtc, "198.18.11.2"), (&f.rts, "198.18.11.1")] {
        let out = std::process::Command::new("ip")
            .args([
                "netns", "exec", ns, "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", far,
            ])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "ping across the dead instance from {ns} succeeded:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // The other instance answers the probe.
    ns_run(
        &f.rtc,
        "ping",
        &["-n", "-q", "-c", "1", "-W", "2", "198.18.12.2"],
    );
    if !xdp {
        // Nothing will answer: do not wait the full read timeout for it.
        held.stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
    }
    let rest = f.client(|| held.finish());
    eprintln!(
        "process of instance 1 killed, XDP {}: probe fails both ways; the held flow: {rest:?}",
        if xdp { "attached" } else { "off" }
    );
    if xdp {
        rest.unwrap_or_else(|e| panic!("the flow published to XDP broke with its process: {e:?}"));
    } else {
        assert!(
            rest.is_err(),
            "with XDP off nothing forwards without the process"
        );
    }
}
