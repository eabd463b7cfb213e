//! Both ends of the lab's test protocol (the same protocol, stream and hash as
//! deploy/lab/testpeer.py, so either side can talk to the other): the deterministic
//! xorshift64 stream and its SipHash-2-4 hash, the in-process test server (threads
//! whose sockets live in the server namespace: TCP commands C/U/D/H on the protected
//! and unprotected ports, UDP echo; stopped by the lab's Drop), the clients
//! (connect_once, upload, download, half_close_hold, udp_echo, parallel_bulk) and
//! latency statistics. Clients run in the namespace of the thread that calls them
//! (`Lab::client` / `Lab::spawn_client`); every operation is bounded by timeouts and
//! never retried: a failure comes back as an `Err` naming the address and the stage.

use std::collections::HashSet;
use std::hash::Hasher;
use std::io::{self, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use siphasher::sip::SipHasher24;

use super::lab::{srv_v4, srv_v6, Lab, PROTECTED_PORT, UDP_ECHO_PORT, UNPROTECTED_PORT};
use super::netns::in_netns;
/// SipHash-2-4 key of the test protocol hash (same as deploy/lab/testpeer.py).
pub const HASH_K0: u64 = 0x7379_6e67_7561_7264; // "synguard"
pub const HASH_K1: u64 = 0x6c61_6220_7065_6572; // "lab peer"
const STREAM_SEED_XOR: u64 = 0x9e37_79b9_7f4a_7c15;
const CHUNK: usize = 64 * 1024;
// ---------------------------------------------------------------------------------
// Test protocol: stream, hash.

/// The protocol hash (SipHash-2-4, fixed key) — streaming, chunking does not matter.
pub fn new_hasher() -> SipHasher24 {
    SipHasher24::new_with_keys(HASH_K0, HASH_K1)
}

/// Deterministic xorshift64 byte stream; `Stream::new(n)` yields exactly n bytes: the
/// little-endian words of the generator, concatenated (any read sizes).
pub struct Stream {
    state: u64,
    left: u64,
    word: [u8; 8],
    used: usize,
}

impl Stream {
    pub fn new(len: u64) -> Stream {
        let s = len ^ STREAM_SEED_XOR;
        Stream {
            state: if s == 0 { 1 } else { s },
            left: len,
            word: [0; 8],
            used: 8,
        }
    }

    fn next_word(&mut self) -> [u8; 8] {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x.to_le_bytes()
    }

    /// Fills the start of `buf` with the next bytes; returns how many (0 at the end).
    pub fn fill(&mut self, buf: &mut [u8]) -> usize {
        let n = (buf.len() as u64).min(self.left) as usize;
        let mut i = 0;
        while i < n && self.used < 8 {
            buf[i] = self.word[self.used];
            self.used += 1;
            i += 1;
        }
        while n - i >= 8 {
            let w = self.next_word();
            buf[i..i + 8].copy_from_slice(&w);
            i += 8;
        }
        if i < n {
            self.word = self.next_word();
            let k = n - i;
            buf[i..n].copy_from_slice(&self.word[..k]);
            self.used = k;
        }
        self.left -= n as u64;
        n
    }
}

/// Protocol hash of the whole stream of length `len`.
pub fn stream_hash(len: u64) -> u64 {
    let mut s = Stream::new(len);
    let mut h = new_hasher();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = s.fill(&mut buf);
        if n == 0 {
            break;
        }
        h.write(&buf[..n]);
    }
    h.finish()
}

// ---------------------------------------------------------------------------------
// Test server (runs as threads; sockets in the server namespace).

fn read_u64(s: &mut TcpStream) -> io::Result<u64> {
    let mut b = [0u8; 8];
    s.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn serve_conn(mut s: TcpStream) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut cmd = [0u8; 1];
    s.read_exact(&mut cmd)?;
    match cmd[0] {
        b'C' => s.write_all(b"C")?,
        b'U' => {
            let mut left = read_u64(&mut s)?;
            let mut h = new_hasher();
            let mut buf = vec![0u8; CHUNK];
            while left > 0 {
                let want = (buf.len() as u64).min(left) as usize;
                let n = s.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("upload: EOF with {left} bytes left"),
                    ));
                }
                h.write(&buf[..n]);
                left -= n as u64;
            }
            s.write_all(&h.finish().to_be_bytes())?;
        }
        b'D' => {
            let len = read_u64(&mut s)?;
            let mut st = Stream::new(len);
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = st.fill(&mut buf);
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n])?;
            }
        }
        b'H' => {
            // Half-close test: read until the client's FIN, keep the socket open
            // (CLOSE_WAIT) for hold_ms without closing, then answer 'H' + the bytes
            // received after the header (u64 BE) and close.
            let mut hold = [0u8; 2];
            s.read_exact(&mut hold)?;
            let hold_ms = u64::from(u16::from_be_bytes(hold));
            s.set_read_timeout(Some(
                Duration::from_secs(30) + Duration::from_millis(hold_ms),
            ))?;
            let mut extra = 0u64;
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                extra += n as u64;
            }
            thread::sleep(Duration::from_millis(hold_ms));
            let mut reply = [0u8; 9];
            reply[0] = b'H';
            reply[1..].copy_from_slice(&extra.to_be_bytes());
            s.write_all(&reply)?;
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown command byte {other:#x}"),
            ))
        }
    }
    Ok(())
}

fn accept_loop(listeners: Vec<TcpListener>, stop: Arc<AtomicBool>, errors: Arc<AtomicU32>) {
    let mut fds: Vec<libc::pollfd> = listeners
        .iter()
        .map(|l| libc::pollfd {
            fd: l.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: fds points to fds.len() initialised pollfd structs of live listeners.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        if r <= 0 {
            continue;
        }
        for (i, l) in listeners.iter().enumerate() {
            if fds[i].revents == 0 {
                continue;
            }
            fds[i].revents = 0;
            loop {
                match l.accept() {
                    Ok((s, _)) => {
                        let errors = errors.clone();
                        thread::spawn(move || {
                            if let Err(e) = serve_conn(s) {
                                errors.fetch_add(1, Ordering::Relaxed);
                                eprintln!("[lab server] connection error: {e}");
                            }
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        eprintln!("[lab server] accept: {e}");
                        break;
                    }
                }
            }
        }
    }
}

fn udp_echo_loop(sock: UdpSocket, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((n, peer)) => {
                let _ = sock.send_to(&buf[..n], peer);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => eprintln!("[lab udp echo] {e}"),
        }
    }
}
/// Starts the test protocol's TCP server (commands C, U, D, H) on `addrs` inside
/// namespace `ns`: binds them all before it returns (a bind error panics), then
/// serves each connection on a thread of its own until `stop` is set; a connection
/// it fails to serve adds one to `errors`. Returns the accept loop's thread.
pub fn spawn_test_server(
    ns: &str,
    addrs: &[SocketAddr],
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU32>,
) -> JoinHandle<()> {
    let listeners = in_netns(ns, || {
        addrs
            .iter()
            .map(|a| {
                let l = TcpListener::bind(a).unwrap_or_else(|e| panic!("bind {a} in {ns}: {e}"));
                l.set_nonblocking(true).unwrap();
                l
            })
            .collect::<Vec<_>>()
    });
    thread::spawn(move || accept_loop(listeners, stop, errors))
}

impl Lab {
    // ---- test server -----------------------------------------------------------

    /// Starts the in-process test server in the server namespace: TCP PROTECTED_PORT and
    /// UNPROTECTED_PORT on SERVER_V4 and SERVER_V6 (protocol C/U/D), UDP echo on
    /// UDP_ECHO_PORT (v4 + v6). Stopped by Drop.
    pub fn start_server(&self) {
        let tcp: Vec<SocketAddr> = [PROTECTED_PORT, UNPROTECTED_PORT]
            .into_iter()
            .flat_map(|port| [srv_v4(port), srv_v6(port)])
            .collect();
        let accept = spawn_test_server(
            &self.srv,
            &tcp,
            self.stop.clone(),
            self.server_errors.clone(),
        );
        let udps = in_netns(&self.srv, || {
            let mut us = Vec::new();
            for a in [srv_v4(UDP_ECHO_PORT), srv_v6(UDP_ECHO_PORT)] {
                let u = UdpSocket::bind(a).unwrap_or_else(|e| panic!("bind udp {a}: {e}"));
                u.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                us.push(u);
            }
            us
        });
        let mut threads = self.server_threads.lock().unwrap();
        threads.push(accept);
        for u in udps {
            let stop = self.stop.clone();
            threads.push(thread::spawn(move || udp_echo_loop(u, stop)));
        }
    }

    /// Connections the test server failed to serve so far (I/O errors, bad commands).
    pub fn server_errors(&self) -> u32 {
        self.server_errors.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------
// Clients (run in the caller thread's namespace: use Lab::client / spawn_client).

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BULK_IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Bounds of one client operation: `connect` for the connect() call (the kernel
/// retransmits the SYN inside it), `io` for every single read and write after it (not
/// for the whole exchange).
#[derive(Clone, Copy, Debug)]
pub struct ClientTimeouts {
    pub connect: Duration,
    pub io: Duration,
}

impl ClientTimeouts {
    /// What [`connect_once`] uses: 5 s connect, 5 s per read/write.
    pub const CONNECT: ClientTimeouts = ClientTimeouts {
        connect: CONNECT_TIMEOUT,
        io: CONNECT_TIMEOUT,
    };
    /// What [`upload`] and [`download`] use: 5 s connect, 20 s per read/write.
    pub const BULK: ClientTimeouts = ClientTimeouts {
        connect: CONNECT_TIMEOUT,
        io: BULK_IO_TIMEOUT,
    };
    /// Legitimate clients during a flood of at most 12 s that starts at least 1 s
    /// before them: 20 s connect, 25 s per read/write, so every SYN and every data
    /// segment is sent at least once more after the flood has stopped. Under a
    /// flood the kernel may drop part of the client port's frames (and a legitimate
    /// one with them) before the AF_PACKET gateway reads them; how much depends on
    /// the machine. The client's kernel retransmits a SYN at +1, 3, 7, 15 s, and
    /// data at RTO backoff, which starts at 3 s when the SYN had to be
    /// retransmitted (RFC 6298 5.7, `tcp_init_metrics` in net/ipv4/tcp_metrics.c):
    /// +3, 9, 21 s. With these bounds a connection that still fails was lost by the
    /// gateway, not by the machine's load.
    pub const UNDER_FLOOD: ClientTimeouts = ClientTimeouts {
        connect: Duration::from_secs(20),
        io: Duration::from_secs(25),
    };
}

fn open(addr: SocketAddr, t: ClientTimeouts) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&addr, t.connect)
        .map_err(|e| format!("connect {addr} (timeout {:?}): {e}", t.connect))?;
    s.set_read_timeout(Some(t.io))
        .and_then(|_| s.set_write_timeout(Some(t.io)))
        .map_err(|e| format!("set timeouts: {e}"))?;
    Ok(s)
}

/// [`open`] from local port `port` (bound explicitly: a test that tells
/// connections apart by their client port cannot leave the choice to the
/// kernel, which may give a closed connection's port to the next one when
/// the server closed first and holds the TIME_WAIT).
pub fn open_from(addr: SocketAddr, port: u16, t: ClientTimeouts) -> Result<TcpStream, String> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, port).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, port).into(),
    };
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)
        .map_err(|e| format!("socket: {e}"))?;
    sock.bind(&SockAddr::from(local))
        .map_err(|e| format!("bind {local}: {e}"))?;
    sock.connect_timeout(&SockAddr::from(addr), t.connect)
        .map_err(|e| format!("connect {addr} from {local} (timeout {:?}): {e}", t.connect))?;
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(t.io))
        .and_then(|_| s.set_write_timeout(Some(t.io)))
        .map_err(|e| format!("set timeouts: {e}"))?;
    Ok(s)
}

fn expect_eof(s: &mut TcpStream, what: &str) -> Result<(), String> {
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => Ok(()),
        Ok(n) => Err(format!("{what}: {n} unexpected bytes before EOF")),
        Err(e) => Err(format!("{what}: waiting for the server's FIN: {e}")),
    }
}

/// One connection: connect, send 'C', read 'C', read the server's FIN, close.
/// Returns the time from connect() start to the 'C' reply (handshake through the
/// gateway + backend handshake + one round trip). Everything bounded by 5 s.
pub fn connect_once(addr: SocketAddr) -> Result<Duration, String> {
    connect_once_with(addr, ClientTimeouts::CONNECT)
}

/// [`connect_once`] with explicit bounds.
pub fn connect_once_with(addr: SocketAddr, t: ClientTimeouts) -> Result<Duration, String> {
    let start = Instant::now();
    let mut s = open(addr, t)?;
    s.write_all(b"C")
        .map_err(|e| format!("{addr}: send 'C': {e}"))?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)
        .map_err(|e| format!("{addr}: read reply: {e}"))?;
    let rtt = start.elapsed();
    if b[0] != b'C' {
        return Err(format!("{addr}: reply {:#x}, expected 'C'", b[0]));
    }
    expect_eof(&mut s, &format!("{addr} connect"))?;
    Ok(rtt)
}

/// 4 uploads and 4 downloads of `size` bytes at once from the client
/// namespace, each checked by hash; prints each and the aggregate (`what`
/// describes the conditions). Returns the wall time and the failures.
pub fn parallel_bulk(
    lab: &Lab,
    addr: SocketAddr,
    size: u64,
    t: ClientTimeouts,
    what: &str,
) -> (f64, Vec<String>) {
    const MIB: u64 = 1 << 20;
    let start = Instant::now();
    let mut handles = Vec::new();
    for i in 0..4 {
        handles.push((
            format!("upload#{i}"),
            lab.spawn_client(move || upload_with(addr, size, t)),
        ));
        handles.push((
            format!("download#{i}"),
            lab.spawn_client(move || download_with(addr, size, t)),
        ));
    }
    let mut errors = Vec::new();
    for (name, h) in handles {
        match h.join().expect("client thread panicked") {
            Ok(d) => println!(
                "{name} {addr} {} MiB {what}: {:.2} s ({:.1} MiB/s), data intact",
                size / MIB,
                d.as_secs_f64(),
                size as f64 / MIB as f64 / d.as_secs_f64()
            ),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "8 parallel transfers via {addr} {what}: {secs:.2} s, aggregate {:.1} MiB/s",
        8.0 * size as f64 / MIB as f64 / secs
    );
    (secs, errors)
}

/// Uploads `n` bytes of the protocol stream and checks the server's hash of them.
/// Returns the duration of the whole exchange.
pub fn upload(addr: SocketAddr, n: u64) -> Result<Duration, String> {
    upload_with(addr, n, ClientTimeouts::BULK)
}

/// [`upload`] with explicit bounds.
pub fn upload_with(addr: SocketAddr, n: u64, t: ClientTimeouts) -> Result<Duration, String> {
    let start = Instant::now();
    upload_on(open(addr, t)?, addr, n)?;
    Ok(start.elapsed())
}

/// [`upload`]'s exchange on `s`, connected to `addr`.
pub fn upload_on(mut s: TcpStream, addr: SocketAddr, n: u64) -> Result<(), String> {
    let mut hdr = [0u8; 9];
    hdr[0] = b'U';
    hdr[1..].copy_from_slice(&n.to_be_bytes());
    s.write_all(&hdr)
        .map_err(|e| format!("{addr}: upload header: {e}"))?;
    let mut st = Stream::new(n);
    let mut h = new_hasher();
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    loop {
        let k = st.fill(&mut buf);
        if k == 0 {
            break;
        }
        h.write(&buf[..k]);
        s.write_all(&buf[..k])
            .map_err(|e| format!("{addr}: upload after {sent} of {n} bytes: {e}"))?;
        sent += k as u64;
    }
    let mut got = [0u8; 8];
    s.read_exact(&mut got)
        .map_err(|e| format!("{addr}: upload of {n} bytes: reading hash: {e}"))?;
    let got = u64::from_be_bytes(got);
    let want = h.finish();
    if got != want {
        return Err(format!(
            "{addr}: upload of {n} bytes: server hash {got:016x} != expected {want:016x}"
        ));
    }
    expect_eof(&mut s, &format!("{addr} upload"))
}

/// Downloads `n` bytes of the protocol stream and compares them with the local stream
/// (reports the first differing offset). Returns the duration of the whole exchange.
pub fn download(addr: SocketAddr, n: u64) -> Result<Duration, String> {
    download_with(addr, n, ClientTimeouts::BULK)
}

/// [`download`] with explicit bounds.
pub fn download_with(addr: SocketAddr, n: u64, t: ClientTimeouts) -> Result<Duration, String> {
    download_paced(addr, n, t, Duration::ZERO)
}

/// [`download_with`], sleeping `pause` after every read (of at most 64 KiB): a
/// slow reader, so the transfer stays open for a while.
pub fn download_paced(
    addr: SocketAddr,
    n: u64,
    t: ClientTimeouts,
    pause: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    download_on(open(addr, t)?, addr, n, pause)?;
    Ok(start.elapsed())
}

/// [`download_paced`]'s exchange on `s`, connected to `addr`.
pub fn download_on(
    mut s: TcpStream,
    addr: SocketAddr,
    n: u64,
    pause: Duration,
) -> Result<(), String> {
    let mut hdr = [0u8; 9];
    hdr[0] = b'D';
    hdr[1..].copy_from_slice(&n.to_be_bytes());
    s.write_all(&hdr)
        .map_err(|e| format!("{addr}: download header: {e}"))?;
    let mut expect = Stream::new(n);
    let mut h_got = new_hasher();
    let mut h_want = new_hasher();
    let mut buf = vec![0u8; CHUNK];
    let mut want_buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    let mut first_diff: Option<u64> = None;
    loop {
        let k = s
            .read(&mut buf)
            .map_err(|e| format!("{addr}: download after {total} of {n} bytes: {e}"))?;
        if k == 0 {
            break;
        }
        h_got.write(&buf[..k]);
        let w = expect.fill(&mut want_buf[..k]);
        h_want.write(&want_buf[..w]);
        if first_diff.is_none() {
            if let Some(i) = (0..w).find(|&i| buf[i] != want_buf[i]) {
                first_diff = Some(total + i as u64);
            } else if w < k {
                first_diff = Some(total + w as u64);
            }
        }
        total += k as u64;
        if !pause.is_zero() {
            thread::sleep(pause);
        }
    }
    if total != n {
        return Err(format!("{addr}: download got {total} bytes, expected {n}"));
    }
    if let Some(off) = first_diff {
        return Err(format!(
            "{addr}: download of {n} bytes differs from offset {off}"
        ));
    }
    if h_got.finish() != h_want.finish() {
        return Err(format!("{addr}: download of {n} bytes: hash mismatch"));
    }
    Ok(())
}

/// Half-close exchange ('H'): connect, send 'H' + `hold_ms` (u16 BE) + `extra` bytes,
/// shut down the write side (client FIN), then wait for the server, which keeps its
/// side open `hold_ms` after seeing the FIN (the gateway's flow sits in CLOSE_WAIT),
/// then answers 'H' + the extra byte count (u64 BE) and closes. Checks the reply and
/// the EOF; returns the time from the shutdown to the reply.
pub fn half_close_hold(addr: SocketAddr, hold_ms: u16, extra: &[u8]) -> Result<Duration, String> {
    let t = ClientTimeouts {
        connect: CONNECT_TIMEOUT,
        io: Duration::from_millis(u64::from(hold_ms)) + CONNECT_TIMEOUT,
    };
    let mut s = open(addr, t)?;
    let mut hdr = vec![b'H'];
    hdr.extend_from_slice(&hold_ms.to_be_bytes());
    hdr.extend_from_slice(extra);
    s.write_all(&hdr)
        .map_err(|e| format!("{addr}: 'H' header: {e}"))?;
    s.shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("{addr}: shutdown(Write): {e}"))?;
    let fin_at = Instant::now();
    let mut reply = [0u8; 9];
    s.read_exact(&mut reply)
        .map_err(|e| format!("{addr}: waiting for the 'H' reply: {e}"))?;
    let held = fin_at.elapsed();
    let count = u64::from_be_bytes(reply[1..].try_into().unwrap());
    if reply[0] != b'H' || count != extra.len() as u64 {
        return Err(format!(
            "{addr}: 'H' reply {reply:?}, expected 'H' + {} (u64 BE)",
            extra.len()
        ));
    }
    expect_eof(&mut s, &format!("{addr} half-close"))?;
    Ok(held)
}

/// Sends `n` numbered datagrams to a UDP echo server and waits for all of them (any
/// order, 2 s per receive). Returns how many came back; Err if any is missing.
pub fn udp_echo(addr: SocketAddr, n: usize) -> Result<usize, String> {
    let bind: SocketAddr = match addr {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
        SocketAddr::V6(_) => SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0)),
    };
    let sock = UdpSocket::bind(bind).map_err(|e| format!("udp bind: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| format!("udp timeout: {e}"))?;
    let mut pending: HashSet<Vec<u8>> = HashSet::new();
    for i in 0..n {
        let msg = format!("synguard-lab udp {i} {}", "x".repeat(i * 13)).into_bytes();
        sock.send_to(&msg, addr)
            .map_err(|e| format!("udp send to {addr}: {e}"))?;
        pending.insert(msg);
    }
    let mut got = 0;
    let mut buf = vec![0u8; 65536];
    while !pending.is_empty() {
        match sock.recv_from(&mut buf) {
            Ok((k, from)) => {
                if from == addr && pending.remove(&buf[..k]) {
                    got += 1;
                }
            }
            Err(e) => {
                return Err(format!(
                    "udp echo {addr}: {got} of {n} datagrams back, then: {e}"
                ))
            }
        }
    }
    Ok(got)
}

// ---------------------------------------------------------------------------------
// Latency statistics.

/// The `p`-quantile (0.0..=1.0, nearest rank) of `samples` (sorted internally).
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut v = samples.to_vec();
    v.sort();
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// "n=.. p50=.. p99=.. max=.." in milliseconds.
pub fn latency_summary(samples: &[Duration]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "n={} p50={:.2}ms p99={:.2}ms max={:.2}ms",
        samples.len(),
        ms(percentile(samples, 0.50)),
        ms(percentile(samples, 0.99)),
        ms(percentile(samples, 1.0))
    )
}
