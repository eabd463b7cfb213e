//! TCP cases real stacks produce, with real Linux TCP at both ends of the
//! namespace lab (tests/common): a client that lost its connection and
//! reconnects from the same port, a server still in TIME_WAIT answering the
//! backend SYN with an ACK, ICMP "fragmentation needed" / "packet too big"
//! about translated segments, TCP-MD5 signed connections, a server without
//! timestamps behind a gateway that promised them, and client MSS values
//! through stateless cookies. Needs root, iproute2, nftables, ethtool,
//! tcpdump (`sudo tests/run-all.sh` installs them). Each test holds the lab
//! lock and removes its namespaces, also on failure.

mod common;

use std::io::{Read, Write};
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use common::*;

const MIB: u64 = 1 << 20;

fn lab_with_gateway(name: &str, extra_args: &[&str]) -> Lab {
    let lab = Lab::new(name);
    assert!(
        !lab.standin(),
        "this test checks the gateway's own behaviour: it needs the real synguard"
    );
    lab.start_server();
    lab.start_gateway(extra_args);
    lab
}

/// A TCP connection from a chosen local address and port (bind before
/// connect, SO_REUSEADDR), with 5 s bounds.
fn connect_from(local: SocketAddr, remote: SocketAddr, md5_key: Option<&[u8]>) -> TcpStream {
    let s = Socket::new(Domain::for_address(remote), Type::STREAM, None).expect("socket");
    s.set_reuse_address(true).expect("SO_REUSEADDR");
    if let Some(key) = md5_key {
        set_md5_key(&s, remote.ip(), key);
    }
    s.bind(&SockAddr::from(local))
        .unwrap_or_else(|e| panic!("bind {local}: {e}"));
    s.connect_timeout(&SockAddr::from(remote), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {local} -> {remote}: {e}"));
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// One 'C' exchange on `s`: send 'C', read 'C' and the server's FIN.
fn exchange_c(mut s: TcpStream) -> Result<(), String> {
    s.write_all(b"C").map_err(|e| format!("send C: {e}"))?;
    let mut b = [0u8; 2];
    s.read_exact(&mut b[..1])
        .map_err(|e| format!("read C: {e}"))?;
    if b[0] != b'C' {
        return Err(format!("reply {:#x}", b[0]));
    }
    match s.read(&mut b) {
        Ok(0) => Ok(()),
        other => Err(format!("expected EOF, got {other:?}")),
    }
}

// ---------------------------------------------------------------------------------
// 1. A client that lost its connection reconnects from the same port.

/// The client's kernel forgets an open connection without a FIN or RST
/// reaching anyone (a reboot, or a lost RST), then connects again from the
/// same port. Through a bridge the server's challenge ACK (RFC 5961 4)
/// makes the client reset the old connection; through synguard the gateway
/// answers the SYN with that challenge ACK itself. The reconnect must
/// succeed within the client's first SYN retransmission (1 s), and the
/// server's side of the old connection must be reset.
fn reconnect_after_silent_loss(lab: &Lab, server: SocketAddr, local: SocketAddr) {
    let errors_before = lab.server_errors();
    let old = lab.client(|| {
        let mut s = connect_from(local, server, None);
        // Start an upload the server will wait on: its side stays open.
        s.write_all(b"U").unwrap();
        s.write_all(&(10 * MIB).to_be_bytes()).unwrap();
        s.write_all(&[7u8; 1000]).unwrap();
        s
    });
    thread::sleep(Duration::from_millis(300));
    // Lose the connection silently: drop the client's own RST on the way out.
    lab.nft(
        &lab.cli,
        &format!(
            "table inet synguard_blackhole {{\n chain out {{\n type filter hook output priority 0;\n \
             tcp sport {} counter drop\n }}\n}}\n",
            local.port()
        ),
    );
    let s = Socket::from(old);
    s.set_linger(Some(Duration::ZERO)).unwrap();
    drop(s); // abortive close: the socket is gone at once, its RST dropped
    lab.nft(&lab.cli, "delete table inet synguard_blackhole");

    let start = Instant::now();
    let result = lab.client(|| exchange_c(connect_from(local, server, None)));
    let took = start.elapsed();
    eprintln!("reconnect {local} -> {server}: {result:?} in {took:?}");
    result.unwrap_or_else(|e| panic!("reconnect from {local}: {e}"));
    assert!(
        took < Duration::from_secs(3),
        "reconnect took {took:?}: more than the first SYN retransmission"
    );
    // The RST the challenge ACK drew reached the server: its read failed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.server_errors() == errors_before && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        lab.server_errors(),
        errors_before + 1,
        "the server's side of the lost connection was reset"
    );
}

#[test]
fn lab_reconnect_from_the_same_port_after_a_silent_loss() {
    let lab = lab_with_gateway("lab_reconnect_same_port", &[]);
    let before = lab.metrics();
    reconnect_after_silent_loss(
        &lab,
        srv_v4(PROTECTED_PORT),
        SocketAddr::new(IpAddr::V4(CLIENT_V4), 40001),
    );
    reconnect_after_silent_loss(
        &lab,
        srv_v6(PROTECTED_PORT),
        SocketAddr::new(IpAddr::V6(CLIENT_V6), 40001),
    );
    let after = lab.metrics();
    let challenges = after.val("synguard_challenge_acks_sent_total")
        - before.val("synguard_challenge_acks_sent_total");
    assert!(
        challenges >= 2.0,
        "one challenge ACK per lost connection at least: {challenges}"
    );
    lab.assert_gateway_alive();
}

// ---------------------------------------------------------------------------------
// 2. The server still holds the 4-tuple in TIME_WAIT.

/// The server closes first (TIME_WAIT), the client reconnects from the same
/// port without timestamps and with an ISN below the old connection's
/// sequence (it uploaded more than its ISN clock advanced since: Linux ISNs
/// grow by 1 per 64 ns, net/core/secure_seq.c), so the server answers the
/// SYN with an ACK of the old connection. The gateway, the client of the
/// backend connection, answers that ACK with a RST (RFC 9293 3.10.7.3),
/// which frees the TIME_WAIT, and sends its SYN again at once.
#[test]
fn lab_backend_time_wait_answered_with_rst_and_prompt_syn() {
    let lab = lab_with_gateway("lab_backend_time_wait", &[]);
    ns_run(&lab.cli, "sysctl", &["-qw", "net.ipv4.tcp_timestamps=0"]);
    let server = srv_v4(PROTECTED_PORT);
    let local = SocketAddr::new(IpAddr::V4(CLIENT_V4), 40010);
    let size = 100 * MIB;
    let took = lab.client(|| {
        let mut s = connect_from(local, server, None);
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(b"U").unwrap();
        s.write_all(&size.to_be_bytes()).unwrap();
        let mut st = Stream::new(size);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = st.fill(&mut buf);
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).unwrap();
        }
        let mut h = [0u8; 8];
        s.read_exact(&mut h).unwrap();
        assert_eq!(u64::from_be_bytes(h), stream_hash(size), "upload hash");
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap(), 0, "the server closes first");
        drop(s);
        thread::sleep(Duration::from_millis(100));
        let tw = ns_run(&lab.srv, "ss", &["-Htan", "state", "time-wait"]);
        assert!(
            tw.contains(&local.to_string()),
            "the server holds the old connection in TIME_WAIT: {tw}"
        );
        let before = lab.metrics();
        let start = Instant::now();
        exchange_c(connect_from(local, server, None)).expect("reconnect");
        let took = start.elapsed();
        let after = lab.metrics();
        let rst = after.val("synguard_rst_sent_total") - before.val("synguard_rst_sent_total");
        assert!(
            rst >= 1.0,
            "the server answered the backend SYN with an ACK and got a RST"
        );
        took
    });
    eprintln!("reconnect against the server's TIME_WAIT: {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "reconnect took {took:?}: the SYN was not resent promptly"
    );
    lab.assert_gateway_alive();
    assert_eq!(lab.server_errors(), 0);
}

// ---------------------------------------------------------------------------------
// 3. ICMP errors about translated segments.

/// Reads frames on `iface` (this thread's namespace) until a TCP segment
/// from `server` with at least 1000 bytes of payload arrives; returns its
/// IP packet (header onwards). Bounded by 5 s.
fn capture_server_segment(iface: &str, server: SocketAddr) -> Vec<u8> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2); the fd is owned by `sock` below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, i32::from(proto)) };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd is a fresh socket we own.
    let sock = unsafe { <Socket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let index = std::ffi::CString::new(iface).unwrap();
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(index.as_ptr()) };
    assert!(ifindex > 0, "no interface {iface}");
    // SAFETY: sockaddr_ll is plain data; zeroed then filled.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a valid sockaddr_ll of the size passed.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            &sll as *const _ as *const libc::sockaddr,
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(r, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 2048];
    while Instant::now() < deadline {
        // SAFETY: buf is writable for its length.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n <= 0 {
            continue;
        }
        let p = &buf[..n as usize];
        let (src, tcp_at, total) = match (server.ip(), p.first().map(|b| b >> 4)) {
            (IpAddr::V4(_), Some(4)) if p.len() >= 40 && p[9] == 6 => {
                let ihl = usize::from(p[0] & 0x0f) * 4;
                let src = IpAddr::from(<[u8; 4]>::try_from(&p[12..16]).unwrap());
                (src, ihl, usize::from(u16::from_be_bytes([p[2], p[3]])))
            }
            (IpAddr::V6(_), Some(6)) if p.len() >= 60 && p[6] == 6 => {
                let src = IpAddr::from(<[u8; 16]>::try_from(&p[8..24]).unwrap());
                (src, 40, 40 + usize::from(u16::from_be_bytes([p[4], p[5]])))
            }
            _ => continue,
        };
        let sport = u16::from_be_bytes([p[tcp_at], p[tcp_at + 1]]);
        let payload = total - tcp_at - usize::from(p[tcp_at + 12] >> 4) * 4;
        if src == server.ip() && sport == server.port() && payload >= 1000 {
            return p.to_vec();
        }
    }
    panic!("no data segment from {server} on {iface} within 5 s");
}

/// Sends "fragmentation needed, next-hop MTU `mtu`" (ICMPv6: "packet too
/// big") to the sender of `packet`, quoting its header and 64 bytes, from
/// this thread's namespace (a router on the client side of the gateway).
fn send_too_big(packet: &[u8], mtu: u16) {
    let v6 = packet[0] >> 4 == 6;
    let ip_len = if v6 {
        40
    } else {
        usize::from(packet[0] & 0x0f) * 4
    };
    let quote = &packet[..(ip_len + 64).min(packet.len())];
    let mut icmp = if v6 {
        let mut h = vec![2, 0, 0, 0];
        h.extend_from_slice(&u32::from(mtu).to_be_bytes());
        h
    } else {
        let mut h = vec![3, 4, 0, 0, 0, 0];
        h.extend_from_slice(&mtu.to_be_bytes());
        h
    };
    icmp.extend_from_slice(quote);
    let (dst, domain, proto): (IpAddr, _, _) = if v6 {
        (
            IpAddr::from(<[u8; 16]>::try_from(&packet[8..24]).unwrap()),
            Domain::IPV6,
            libc::IPPROTO_ICMPV6,
        )
    } else {
        // ICMPv4's checksum covers the message only; ICMPv6 raw sockets have
        // the kernel compute theirs (RFC 3542 3.1).
        let mut sum = 0u32;
        for w in icmp.chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        icmp[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        (
            IpAddr::from(<[u8; 4]>::try_from(&packet[12..16]).unwrap()),
            Domain::IPV4,
            libc::IPPROTO_ICMP,
        )
    };
    let s = Socket::new(domain, Type::RAW, Some(socket2::Protocol::from(proto))).expect("raw");
    s.send_to(&icmp, &SockAddr::from(SocketAddr::new(dst, 0)))
        .expect("send ICMP error");
}

/// A download through synguard; a router on the client side drops one of
/// the server's data segments as too big and says so. The server must
/// accept the error (its quoted sequence number is inside its send window
/// once translated back): its route to the client gets `mtu 1280`, and
/// TcpExtOutOfWindowIcmps does not grow.
fn path_mtu_through_the_gateway(lab: &Lab, server: SocketAddr, client: IpAddr) {
    let size = 64 * MIB;
    let nstat_before = lab.nstat(&lab.srv);
    let too_big = lab.nft_drop_big_from(server);
    let download = lab.spawn_client(move || download(server, size));
    let packet = lab.client(|| capture_server_segment(CLI_IF, server));
    lab.client(|| send_too_big(&packet, 1280));
    thread::sleep(Duration::from_millis(300));
    let family = if client.is_ipv4() { "-4" } else { "-6" };
    let route = ns_run(
        &lab.srv,
        "ip",
        &[family, "route", "get", &client.to_string()],
    );
    lab.nft(&lab.cli, &format!("delete table {too_big}"));
    let took = download.join().expect("download thread");
    eprintln!("server route after the ICMP error: {route}");
    took.unwrap_or_else(|e| panic!("download {server}: {e}"));
    assert!(
        route.contains("mtu 1280"),
        "the server took the path MTU from the translated error: {route}"
    );
    let nstat_after = lab.nstat(&lab.srv);
    let oow = |m: &std::collections::BTreeMap<String, u64>| {
        m.get("TcpExtOutOfWindowIcmps").copied().unwrap_or(0)
    };
    assert_eq!(
        oow(&nstat_after),
        oow(&nstat_before),
        "no ICMP error judged out of window"
    );
}

trait DropBig {
    /// Drops frames from `server` with more than 1000 bytes in the client
    /// namespace (a router that cannot forward them); returns the table name.
    fn nft_drop_big_from(&self, server: SocketAddr) -> String;
}

impl DropBig for Lab {
    fn nft_drop_big_from(&self, server: SocketAddr) -> String {
        let (family, addr) = match server.ip() {
            IpAddr::V4(a) => ("ip", a.to_string()),
            IpAddr::V6(a) => ("ip6", a.to_string()),
        };
        let table = format!("inet synguard_too_big_{family}");
        self.nft(
            &self.cli,
            &format!(
                "table {table} {{\n chain pre {{\n type filter hook prerouting priority -300;\n \
                 {family} saddr {addr} tcp sport {} meta length > 1000 counter drop\n }}\n}}\n",
                server.port()
            ),
        );
        table
    }
}

#[test]
fn lab_icmp_too_big_reaches_the_server_translated() {
    let lab = lab_with_gateway("lab_icmp_too_big", &[]);
    path_mtu_through_the_gateway(&lab, srv_v4(PROTECTED_PORT), IpAddr::V4(CLIENT_V4));
    path_mtu_through_the_gateway(&lab, srv_v6(PROTECTED_PORT), IpAddr::V6(CLIENT_V6));
    let m = lab.metrics();
    assert!(m.val("synguard_icmp_errors_translated_total") >= 2.0);
    lab.assert_gateway_alive();
}

// ---------------------------------------------------------------------------------
// 4. TCP-MD5 signed connections (BGP-style) to a protected port.

/// Linux `struct tcp_md5sig` (include/uapi/linux/tcp.h).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; 80],
}

fn set_md5_key(s: &Socket, peer: IpAddr, key: &[u8]) {
    // SAFETY: TcpMd5Sig is plain data; zeroed is a valid value.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    let sa = SockAddr::from(SocketAddr::new(peer, 0));
    // SAFETY: sa's storage is at most sizeof(sockaddr_storage) bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.as_ptr() as *const u8,
            &mut sig.addr as *mut _ as *mut u8,
            sa.len() as usize,
        );
    }
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    // SAFETY: sig is a valid tcp_md5sig of the size passed.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            &sig as *const _ as *const libc::c_void,
            size_of::<TcpMd5Sig>() as u32,
        )
    };
    assert_eq!(r, 0, "TCP_MD5SIG: {}", std::io::Error::last_os_error());
}

#[test]
fn lab_md5_signed_connection_is_bridged_not_proxied() {
    const BGP: u16 = 179;
    const KEY: &[u8] = b"synguard-lab-md5";
    let bgp = SocketAddr::new(IpAddr::V4(SERVER_V4), BGP);
    let protect = bgp.to_string();
    let lab = lab_with_gateway("lab_md5_signed", &["--protect", &protect]);
    let listener = lab.server_ns(|| {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_reuse_address(true).unwrap();
        set_md5_key(&s, IpAddr::V4(CLIENT_V4), KEY);
        s.bind(&SockAddr::from(bgp)).unwrap();
        s.listen(4).unwrap();
        s
    });
    let server = thread::spawn(move || {
        listener
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (conn, _) = listener.accept().expect("accept a signed connection");
        let mut conn: TcpStream = conn.into();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        conn.read_exact(&mut b).unwrap();
        conn.write_all(&b).unwrap();
    });
    let before = lab.nstat(&lab.cli);
    let local = SocketAddr::new(IpAddr::V4(CLIENT_V4), 40179);
    let result = lab.client(|| exchange_c(connect_from(local, bgp, Some(KEY))));
    result.expect("a signed connection through the gateway");
    server.join().expect("signed server");
    let after = lab.nstat(&lab.cli);
    let not_found = |m: &std::collections::BTreeMap<String, u64>| {
        m.get("TcpExtTCPMD5NotFound").copied().unwrap_or(0)
    };
    assert_eq!(
        not_found(&after),
        not_found(&before),
        "no unsigned segment reached the client"
    );
    let m = lab.metrics();
    assert_eq!(m.val("synguard_signed_syns_total"), 1.0);
    assert_eq!(
        m.sum("synguard_synack_sent_total"),
        0.0,
        "not answered by the gateway"
    );
    lab.assert_gateway_alive();
}

// ---------------------------------------------------------------------------------
// 5. A server without timestamps.

/// Downloads `size` bytes from the protected v4 port; returns MB/s.
fn download_rate(lab: &Lab, size: u64) -> f64 {
    let took = lab
        .client(|| download(srv_v4(PROTECTED_PORT), size))
        .unwrap_or_else(|e| panic!("download: {e}"));
    size as f64 / MIB as f64 / took.as_secs_f64()
}

/// The server has `net.ipv4.tcp_timestamps=0`, the client timestamps on.
/// The first connection (the gateway has not seen the service yet) is
/// promised timestamps: every server segment must reach the client with a
/// timestamp option all the same (RFC 7323 3.2). Later clients are not
/// offered timestamps at all. Prints the throughput of both against the
/// same download with timestamps on at both ends (README, behaviour notes).
#[test]
fn lab_server_without_timestamps_never_disagrees_with_the_client() {
    let reference = {
        let lab = lab_with_gateway("lab_ts_reference", &[]);
        download_rate(&lab, 64 * MIB)
    };
    let lab = lab_with_gateway("lab_server_without_ts", &[]);
    ns_run(&lab.srv, "sysctl", &["-qw", "net.ipv4.tcp_timestamps=0"]);
    let cap = lab.start_capture(
        &lab.cli,
        CLI_IF,
        &format!("tcp and src port {PROTECTED_PORT}"),
        60,
    );
    let first = download_rate(&lab, 64 * MIB);
    thread::sleep(Duration::from_millis(300));
    let text = lab.stop_capture(cap);
    let segments: Vec<&str> = text.lines().filter(|l| l.contains(" > ")).collect();
    assert!(
        segments.len() > 1000,
        "captured {} segments",
        segments.len()
    );
    let without: Vec<&&str> = segments
        .iter()
        .filter(|l| !l.contains("TS val") && !l.contains("Flags [R"))
        .collect();
    assert!(
        without.is_empty(),
        "{} of {} server segments reached the client without timestamps, e.g. {:?}",
        without.len(),
        segments.len(),
        without.first()
    );
    let cap = lab.start_capture(
        &lab.cli,
        CLI_IF,
        &format!("tcp and src port {PROTECTED_PORT} and tcp[tcpflags] & tcp-syn != 0"),
        30,
    );
    let later = download_rate(&lab, 64 * MIB);
    thread::sleep(Duration::from_millis(300));
    let text = lab.stop_capture(cap);
    let synack = text
        .lines()
        .find(|l| l.contains("Flags [S."))
        .expect("the second SYN-ACK");
    assert!(
        !synack.contains("TS val"),
        "the next client is not offered timestamps: {synack}"
    );
    let m = lab.metrics();
    assert_eq!(
        m.val("synguard_backend_option_mismatch_total{option=\"timestamps\"}"),
        1.0
    );
    eprintln!(
        "download 64 MiB through synguard: both ends with timestamps {reference:.0} MB/s; \
         server without, first (corrected) connection {first:.0} MB/s ({:.2}x), \
         later (not offered) {later:.0} MB/s ({:.2}x)",
        first / reference,
        later / reference
    );
    lab.assert_gateway_alive();
    assert_eq!(lab.server_errors(), 0);
}

// ---------------------------------------------------------------------------------
// 6. Client MSS through stateless cookies.

/// `syncookies = "always"`, clients without timestamps whose route
/// advertises a tunnel-sized MSS: the backend SYN carries an MSS at most a
/// few percent smaller (Linux's table gave 536 for 1260 and 1300 for 1400).
#[test]
fn lab_cookie_mss_reaches_the_backend_nearly_whole() {
    let lab = Lab::new("lab_cookie_mss");
    lab.start_server();
    lab.start_gateway_with_config("[syn_queue]\nsyncookies = \"always\"\n", &[]);
    ns_run(&lab.cli, "sysctl", &["-qw", "net.ipv4.tcp_timestamps=0"]);
    // (connected route and its metric, family flag, server, client MSS,
    // MSS the backend must see)
    let v4 = ("198.18.0.0/24", "0", "-4", srv_v4(PROTECTED_PORT));
    let v6 = ("2001:db8::/64", "256", "-6", srv_v6(PROTECTED_PORT));
    let cases = [
        (v4, 1260, 1260),
        (v4, 1400, 1400),
        (v4, 1452, 1440),
        (v6, 1400, 1380),
        (v6, 1240, 1220),
    ];
    for ((route, metric, family, server), client_mss, expected) in cases {
        let advmss = client_mss.to_string();
        // The connected route, replaced (same metric: routes are keyed by
        // it) with an advertised MSS.
        ns_run(
            &lab.cli,
            "ip",
            &[
                family, "route", "replace", route, "dev", CLI_IF, "metric", metric, "advmss",
                &advmss,
            ],
        );
        let cap = lab.start_capture(
            &lab.srv,
            SRV_IF,
            // (tcp[] offsets are IPv4-only in pcap filters: SYNs are picked
            // from the text below.)
            &format!("tcp dst port {PROTECTED_PORT}"),
            20,
        );
        lab.client(|| connect_once(server))
            .unwrap_or_else(|e| panic!("connect with MSS {client_mss}: {e}"));
        // tcpdump writes what it saw a moment later.
        thread::sleep(Duration::from_millis(300));
        let text = lab.stop_capture(cap);
        let want = format!("mss {expected},");
        let syn = text.lines().find(|l| l.contains("Flags [S]")).unwrap_or("");
        eprintln!("client MSS {client_mss} ({family}): backend SYN {syn}");
        assert!(
            syn.contains(&want),
            "client MSS {client_mss}: the backend SYN should carry MSS {expected}: {syn}"
        );
    }
    // With XDP on, the program turned every cookie ACK into its backend
    // SYN (and completed the handshakes whose client sent nothing before the
    // server answered), and the engine, replaying each report, agreed.
    thread::sleep(XDP_COUNTER_LAG);
    let m = lab.metrics();
    let replayed = m.val("synguard_xdp_events_total{result=\"replayed\"}");
    let refused = m.val("synguard_xdp_events_total{result=\"refused\"}");
    if !lab.standin() {
        if m.val("synguard_xdp_mode{mode=\"off\"}") == 1.0 {
            assert_eq!(replayed, 0.0, "XDP off: the engine sends every backend SYN");
        } else {
            assert!(
                replayed >= cases.len() as f64 && refused == 0.0,
                "every backend SYN sent by the program: {replayed} replayed, {refused} refused"
            );
        }
    }
    lab.assert_gateway_alive();
}

// ---------------------------------------------------------------------------------
// 8. A server port with a smaller MTU than the client port.

/// The gateway's server port and the server sit on a 1280-byte link (a tunnel or
/// an overlay between gateway and servers), the client port on 1500. The
/// SYN-ACK's MSS fits the smaller MTU (1240 for IPv4, 1220 for IPv6), so 10 MiB
/// uploads cross both ways of the family. Before, the SYN-ACK announced 1460
/// and every full-sized client segment was too large for the server port: the
/// upload stalled with nothing said. A kernel bridge passes too (the stand-in:
/// Path MTU Discovery works through it); then only the uploads are checked.
#[test]
fn lab_server_port_with_a_smaller_mtu_carries_uploads() {
    let lab = Lab::new("lab_small_server_mtu");
    ns_run(&lab.gw, "ip", &["link", "set", GW_SERVER_IF, "mtu", "1280"]);
    ns_run(&lab.srv, "ip", &["link", "set", SRV_IF, "mtu", "1280"]);
    lab.start_server();
    lab.start_gateway(&[]);
    let t = ClientTimeouts {
        connect: Duration::from_secs(5),
        io: Duration::from_secs(15),
    };
    for server in [srv_v4(PROTECTED_PORT), srv_v6(PROTECTED_PORT)] {
        let r = lab.client(|| upload_with(server, 10 * MIB, t));
        eprintln!("10 MiB upload to {server} over a 1280-byte server port: {r:?}");
        r.unwrap_or_else(|e| panic!("upload to {server}: {e}"));
    }
    if !lab.standin() {
        let log = lab.gateway_log_tail(40);
        let line = log
            .lines()
            .find(|l| l.contains("smaller MSS"))
            .unwrap_or_else(|| panic!("the start says the MSS is lowered:\n{log}"));
        assert!(
            line.contains("mss_v4=1240") && line.contains("mss_v6=1220"),
            "{line}"
        );
        lab.assert_gateway_alive();
    }
    assert_eq!(lab.server_errors(), 0);
}

// ---------------------------------------------------------------------------------
// A stopped server looks stopped.

/// The protected port closes (the server's kernel answers SYNs with a RST,
/// as for a port nobody listens on). Through a bridge every connect() is
/// refused at once. Through synguard, connect() succeeds (the gateway
/// completes the handshake) and the connection is reset when the backend
/// refuses, until `backend_down_after` (3) backend handshakes have failed
/// in a row (a client's data arriving after the reset validates its cookie
/// again and makes a second one, so that can be fewer clients); from then
/// on the service's SYNs go to the server, and connect() is refused as
/// through the bridge: connect-only health checks see the truth. When the
/// port opens again, the next connection is the server's own and the
/// following ones are proxied again.
#[test]
fn lab_a_stopped_server_looks_stopped_and_comes_back() {
    const DOWN_AFTER: f64 = 3.0;
    let lab = Lab::new("lab_stopped_server");
    lab.start_server();
    lab.start_gateway(&[]);
    let server = srv_v4(PROTECTED_PORT);
    lab.nft(
        &lab.srv,
        &format!(
            "table inet synguard_closed {{\n chain input {{\n type filter hook input priority 0;\n \
             tcp dport {PROTECTED_PORT} tcp flags syn reject with tcp reset\n }}\n}}\n"
        ),
    );
    let refused = |r: &Result<Duration, String>| {
        r.as_ref()
            .is_err_and(|e| e.starts_with("connect") && e.contains("Connection refused"))
    };
    let mut outcomes = Vec::new();
    while outcomes.len() < 6 && !outcomes.last().is_some_and(refused) {
        outcomes.push(lab.client(|| connect_once(server)));
    }
    outcomes.extend((0..2).map(|_| lab.client(|| connect_once(server))));
    eprintln!("port closed: {outcomes:#?}");
    let first_refused = outcomes.iter().position(refused).expect("refused at last");
    assert!(
        outcomes[first_refused..].iter().all(refused),
        "refused from then on, as through a bridge"
    );
    if lab.standin() {
        assert_eq!(first_refused, 0, "a bridge refuses every connect");
    } else {
        assert!(
            (1..=3).contains(&first_refused),
            "at most backend_down_after connections are reset first"
        );
        // Reset right after the handshake (connect() itself may see it).
        assert!(outcomes[..first_refused]
            .iter()
            .all(|r| r.as_ref().is_err_and(|e| e.contains("reset by peer"))));
        let m = lab.metrics();
        // Cookie ACKs still validate while it is down (a client's late
        // data): their backend handshakes fail too.
        assert!(m.val("synguard_backend_handshakes_total{result=\"refused\"}") >= DOWN_AFTER);
        assert_eq!(m.val("synguard_backends_down"), 1.0);
        assert_eq!(
            m.val("synguard_backend_down_syns_total"),
            (outcomes.len() - first_refused) as f64
        );
    }

    lab.nft(&lab.srv, "delete table inet synguard_closed");
    lab.client(|| connect_once(server))
        .expect("the server's own connection");
    if !lab.standin() {
        let m = lab.metrics();
        assert_eq!(m.val("synguard_backends_down"), 0.0, "up again");
        let started = m.val("synguard_backend_handshakes_total{result=\"started\"}");
        lab.client(|| connect_once(server)).expect("proxied again");
        assert_eq!(
            lab.metrics()
                .val("synguard_backend_handshakes_total{result=\"started\"}"),
            started + 1.0,
            "the gateway made this backend handshake itself"
        );
    }
    assert_eq!(lab.server_errors(), 0);
}

// ---------------------------------------------------------------------------------
// The server closes first, the client right after it.

/// One round: from `local`, upload 1 MiB (enough for the flow to be
/// forwarded in XDP), read the server's answer and close at once (the
/// server closes after answering); then connect again from the same port,
/// retrying while the old socket still holds it (EADDRNOTAVAIL), for at
/// most 2 s. Returns how long the port stayed taken.
fn close_then_reuse_port(server: SocketAddr, local: SocketAddr) -> Result<Duration, String> {
    let mut s = connect_from(local, server, None);
    let body = vec![7u8; 1 << 20];
    s.write_all(b"U").map_err(|e| e.to_string())?;
    s.write_all(&(body.len() as u64).to_be_bytes())
        .map_err(|e| e.to_string())?;
    s.write_all(&body).map_err(|e| e.to_string())?;
    let mut hash = [0u8; 8];
    s.read_exact(&mut hash).map_err(|e| format!("hash: {e}"))?;
    drop(s);
    let closed = Instant::now();
    loop {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| e.to_string())?;
        sock.set_reuse_address(true).map_err(|e| e.to_string())?;
        sock.bind(&SockAddr::from(local))
            .map_err(|e| format!("bind: {e}"))?;
        match sock.connect_timeout(&SockAddr::from(server), Duration::from_secs(5)) {
            Ok(()) => {
                exchange_c(sock.into())?;
                return Ok(closed.elapsed());
            }
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                if closed.elapsed() > Duration::from_secs(2) {
                    return Err("port still taken after 2 s (TIME_WAIT?)".into());
                }
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("reconnect: {e}")),
        }
    }
}

/// The server answers and closes; the client closes as soon as it has the
/// answer and reconnects from the same port (timestamps off, so a
/// TIME_WAIT socket cannot be reused). Whoever closes first ends in
/// TIME_WAIT; through a kernel bridge the server's FIN arrives right behind
/// its answer, so the client mostly closes second and its port is free once
/// the server's last ACK is back. Through synguard with XDP, the answer was
/// forwarded in the kernel but the FIN went up to the engine, late enough
/// that the client mostly closed first; the program now forwards the
/// server's FIN itself (held byte for byte by tests/xdp_forward.rs
/// `the_servers_fin_is_forwarded_and_the_engine_follows`). Which side
/// closes first stays a race the client's own scheduling decides (measured
/// here, 20 rounds: bridge 11, previous build 2, this one 12 to 15), so
/// the count is printed, not judged; every round must end either with the
/// port reused or held by TIME_WAIT, never with a reset or a hang.
#[test]
fn lab_a_client_closing_second_reuses_its_port() {
    const ROUNDS: u16 = 20;
    const TIME_WAIT: &str = "port still taken after 2 s (TIME_WAIT?)";
    let lab = Lab::new("lab_close_second_reuse_port");
    lab.start_server();
    lab.start_gateway(&[]);
    ns_run(&lab.cli, "sysctl", &["-qw", "net.ipv4.tcp_timestamps=0"]);
    let server = srv_v4(PROTECTED_PORT);
    let results: Vec<Result<Duration, String>> = (0..ROUNDS)
        .map(|i| {
            let local = SocketAddr::new(IpAddr::V4(CLIENT_V4), 41000 + i);
            lab.client(|| close_then_reuse_port(server, local))
        })
        .collect();
    let reused: Vec<Duration> = results.iter().filter_map(|r| r.clone().ok()).collect();
    println!(
        "port reused at once in {} of {ROUNDS} rounds ({}), held by TIME_WAIT in the others",
        reused.len(),
        latency_summary(&reused)
    );
    for r in &results {
        if let Err(e) = r {
            assert_eq!(e, TIME_WAIT, "a round ended otherwise");
        }
    }
    assert_eq!(lab.server_errors(), 0);
}
