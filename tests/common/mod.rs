//! tests/common/mod.rs — owned by the lab work (branch `lab`): the network-namespace
//! harness for synguard integration tests.
//!
//! A [`Lab`] is three namespaces linked only to each other (design.md section 6):
//!
//! ```text
//!  sg-cli-<suffix>            sg-gw-<suffix>              sg-srv-<suffix>
//!  cli0 198.18.0.1/24  <-->  gwc  [synguard]  gws  <-->  srv0 198.18.0.2/24
//!       2001:db8::1/64       (no addresses, IPv6 off)          2001:db8::2/64
//! ```
//!
//! Every lab test holds a cross-process `flock` on [`LOCK_PATH`] for its whole life,
//! so lab tests of different test binaries (and of parallel test threads) never run
//! at the same time. `Drop` kills every process the lab started (by PID), stops the
//! in-process peers and deletes the namespaces, also when the test panics.
//!
//! Environment:
//! - `SYNGUARD_LAB_STANDIN=bridge`: `start_gateway` builds a Linux bridge `br0` over
//!   gwc/gws instead of starting synguard (harness self-test; metrics unavailable).
//! - `SYNGUARD_LAB_KEEP_LOGS=1`: keep the gateway log directory even on success.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::hash::Hasher;
use std::io::{self, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use siphasher::sip::SipHasher24;

// ---------------------------------------------------------------------------------
// Fixed lab addressing (same as deploy/lab/lab.sh).

pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// TCP port the gateway protects (test server listens on it).
pub const PROTECTED_PORT: u16 = 8080;
/// TCP port that is not protected: bridged verbatim (test server listens on it).
pub const UNPROTECTED_PORT: u16 = 8081;
/// UDP echo port of the test server.
pub const UDP_ECHO_PORT: u16 = 9000;
/// Where the gateway serves metrics, inside the gateway namespace.
pub const METRICS_ADDR: &str = "127.0.0.1:9150";
/// Cross-process lock serialising lab tests.
pub const LOCK_PATH: &str = "/tmp/synguard-lab.lock";
/// Client-side interface names (inside their namespaces).
pub const CLI_IF: &str = "cli0";
pub const GW_CLIENT_IF: &str = "gwc";
pub const GW_SERVER_IF: &str = "gws";
pub const SRV_IF: &str = "srv0";
/// Tools every lab needs; a missing one is an error, never a skip.
pub const LAB_TOOLS: &[&str] = &[
    "ip", "nft", "ethtool", "sysctl", "hping3", "nstat", "ping", "timeout",
];
/// The gateway binary built by cargo for this test crate.
pub const SYNGUARD_BIN: &str = env!("CARGO_BIN_EXE_synguard");

/// SipHash-2-4 key of the test protocol hash (same as deploy/lab/testpeer.py).
pub const HASH_K0: u64 = 0x7379_6e67_7561_7264; // "synguard"
pub const HASH_K1: u64 = 0x6c61_6220_7065_6572; // "lab peer"
const STREAM_SEED_XOR: u64 = 0x9e37_79b9_7f4a_7c15;
const CHUNK: usize = 64 * 1024;

/// Server socket address on the IPv4 side.
pub fn srv_v4(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(SERVER_V4), port)
}

/// Server socket address on the IPv6 side.
pub fn srv_v6(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(SERVER_V6), port)
}

// ---------------------------------------------------------------------------------
// Preconditions.

/// Panics unless running as root (namespaces, veth, nftables, raw sockets).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "lab tests need root (network namespaces, veth, nftables, hping3): run `sudo tests/run-all.sh`"
    );
}

/// Panics naming every tool of `tools` that is not in PATH (or /usr/sbin, /sbin).
pub fn require_tools(tools: &[&str]) {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for extra in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        dirs.push(PathBuf::from(extra));
    }
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !dirs.iter().any(|d| d.join(t).is_file()))
        .collect();
    assert!(
        missing.is_empty(),
        "missing tool(s) for the lab tests: {} (tests/run-all.sh installs them: \
         iproute2 nftables ethtool procps hping3 iputils-ping coreutils)",
        missing.join(", ")
    );
}

// ---------------------------------------------------------------------------------
// Cross-process lock.

/// Holds the exclusive `flock` on [`LOCK_PATH`] until dropped.
pub struct LabLock {
    file: File,
}

/// Blocks until this thread holds the lab lock.
pub fn lab_lock() -> LabLock {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(LOCK_PATH)
        .unwrap_or_else(|e| panic!("open {LOCK_PATH}: {e}"));
    loop {
        // SAFETY: the fd is valid for the lifetime of `file`.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if r == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            panic!("flock {LOCK_PATH}: {err}");
        }
    }
    LabLock { file }
}

// ---------------------------------------------------------------------------------
// Command helpers.

/// Runs `prog args`, returns stdout; panics with stderr on failure.
pub fn run(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog} (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "`{prog} {}` failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `prog args` inside namespace `ns` (`ip netns exec`), returns stdout; panics on failure.
pub fn ns_run(ns: &str, prog: &str, args: &[&str]) -> String {
    let mut full = vec!["netns", "exec", ns, prog];
    full.extend_from_slice(args);
    run("ip", &full)
}

fn ns_exists(ns: &str) -> bool {
    PathBuf::from("/run/netns").join(ns).exists()
}

/// Names of all network namespaces (`ip netns list`).
pub fn netns_list() -> Vec<String> {
    run("ip", &["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Enters the network namespace `ns` on the *current thread* only.
pub fn enter_netns(ns: &str) -> io::Result<()> {
    let f = File::open(PathBuf::from("/run/netns").join(ns))?;
    // SAFETY: valid fd for the duration of the call; CLONE_NEWNET only affects this thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a new thread inside namespace `ns` and returns its result (sockets it
/// creates live in `ns`). `f` may borrow from the caller. Panics in `f` propagate.
pub fn in_netns<T: Send, F: FnOnce() -> T + Send>(ns: &str, f: F) -> T {
    thread::scope(|s| {
        let h = s.spawn(|| {
            enter_netns(ns).unwrap_or_else(|e| panic!("setns into {ns}: {e}"));
            f()
        });
        match h.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

/// Like [`in_netns`] but returns at once with the thread's handle (`f` must be `'static`).
pub fn spawn_in_netns<T: Send + 'static, F: FnOnce() -> T + Send + 'static>(
    ns: &str,
    f: F,
) -> JoinHandle<T> {
    let ns = ns.to_owned();
    thread::spawn(move || {
        enter_netns(&ns).unwrap_or_else(|e| panic!("setns into {ns}: {e}"));
        f()
    })
}

fn send_signal(pid: u32, sig: libc::c_int) {
    // SAFETY: plain kill(2) on a PID we spawned and have not reaped yet.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL; always reaps. Returns the exit status.
fn terminate_child(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    send_signal(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        thread::sleep(Duration::from_millis(20));
    }
    eprintln!("[lab] pid {} ignored SIGTERM, sending SIGKILL", child.id());
    let _ = child.kill();
    child.wait().ok()
}

fn tail_file(path: &PathBuf, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(s) => {
            let all: Vec<&str> = s.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

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
}

fn open(addr: SocketAddr, t: ClientTimeouts) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&addr, t.connect)
        .map_err(|e| format!("connect {addr} (timeout {:?}): {e}", t.connect))?;
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
    let mut s = open(addr, t)?;
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
    expect_eof(&mut s, &format!("{addr} upload"))?;
    Ok(start.elapsed())
}

/// Downloads `n` bytes of the protocol stream and compares them with the local stream
/// (reports the first differing offset). Returns the duration of the whole exchange.
pub fn download(addr: SocketAddr, n: u64) -> Result<Duration, String> {
    download_with(addr, n, ClientTimeouts::BULK)
}

/// [`download`] with explicit bounds.
pub fn download_with(addr: SocketAddr, n: u64, t: ClientTimeouts) -> Result<Duration, String> {
    let start = Instant::now();
    let mut s = open(addr, t)?;
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
    Ok(start.elapsed())
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

// ---------------------------------------------------------------------------------
// Prometheus text.

/// `name{b="2",a="1"}` -> `name{a="1",b="2"}` (labels sorted, spaces dropped).
pub fn normalize_key(key: &str) -> String {
    let key = key.trim();
    let Some(open) = key.find('{') else {
        return key.to_owned();
    };
    let name = key[..open].trim();
    let body = key[open + 1..].trim_end().trim_end_matches('}');
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut lname = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            if !c.is_whitespace() {
                lname.push(c);
            }
        }
        if lname.is_empty() {
            break;
        }
        while matches!(chars.peek(), Some(c) if c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut esc = false;
            for c in chars.by_ref() {
                if esc {
                    value.push('\\');
                    value.push(c);
                    esc = false;
                } else if c == '\\' {
                    esc = true;
                } else if c == '"' {
                    break;
                } else {
                    value.push(c);
                }
            }
        }
        labels.push((lname, value));
    }
    if labels.is_empty() {
        return name.to_owned();
    }
    labels.sort();
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Parses Prometheus text exposition into `normalized key -> value`.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, rest) = match line.find('{') {
            Some(open) if !line[..open].contains(char::is_whitespace) => {
                // find the closing brace outside quotes
                let bytes = line.as_bytes();
                let (mut i, mut inq, mut esc) = (open + 1, false, false);
                while i < bytes.len() {
                    let c = bytes[i];
                    if esc {
                        esc = false;
                    } else if c == b'\\' {
                        esc = true;
                    } else if c == b'"' {
                        inq = !inq;
                    } else if c == b'}' && !inq {
                        break;
                    }
                    i += 1;
                }
                if i >= bytes.len() {
                    continue;
                }
                (&line[..=i], &line[i + 1..])
            }
            _ => match line.split_once(char::is_whitespace) {
                Some((k, r)) => (k, r),
                None => continue,
            },
        };
        let Some(v) = rest.split_whitespace().next() else {
            continue;
        };
        let v = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            _ => match v.parse::<f64>() {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        out.insert(normalize_key(key), v);
    }
    out
}

/// Value of one series, e.g. `metric(&text, "synguard_drops_total{reason=\"x\"}")`.
pub fn metric(text: &str, key: &str) -> Option<f64> {
    parse_metrics(text).get(&normalize_key(key)).copied()
}

/// Parsed metrics snapshot.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub map: BTreeMap<String, f64>,
    pub text: String,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        Metrics {
            map: parse_metrics(text),
            text: text.to_owned(),
        }
    }

    /// The series `key` if present.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.map.get(&normalize_key(key)).copied()
    }

    /// The series `key`; panics (listing the synguard_ series present) if absent.
    pub fn val(&self, key: &str) -> f64 {
        self.get(key).unwrap_or_else(|| {
            let names: Vec<&String> = self.map.keys().collect();
            panic!("metric {key} missing from /metrics; present: {names:?}")
        })
    }

    /// Sum of every series of metric family `name` (all label sets); 0 if none.
    pub fn sum(&self, name: &str) -> f64 {
        self.map
            .iter()
            .filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| *v)
            .sum()
    }

    /// Whether any series of family `name` exists.
    pub fn has_family(&self, name: &str) -> bool {
        self.map
            .keys()
            .any(|k| k.as_str() == name || k.starts_with(&format!("{name}{{")))
    }
}

/// Minimal HTTP/1.0 GET (handles Content-Length, chunked and close-delimited bodies).
/// Runs in the calling thread's namespace.
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<String, String> {
    let sa: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sa, timeout).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|_| s.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\nAccept: text/plain\r\n\r\n"
    )
    .map_err(|e| format!("{addr}: send: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("{addr}: read: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{addr}: no HTTP header end in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = &raw[split + 4..];
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1).is_none_or(|c| c != "200") {
        return Err(format!("{addr}{path}: {status}"));
    }
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked {
        let mut out = Vec::new();
        let mut rest = body;
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size_str = String::from_utf8_lossy(&rest[..eol]).to_string();
            let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|e| format!("bad chunk size {size_str:?}: {e}"))?;
            if size == 0 || rest.len() < eol + 2 + size {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[(eol + 4 + size).min(rest.len())..];
        }
        out
    } else {
        body.to_vec()
    };
    Ok(String::from_utf8_lossy(&body).into_owned())
}

// ---------------------------------------------------------------------------------
// Packet captures.

/// A running tcpdump started by [`Lab::start_capture`].
#[derive(Debug)]
pub struct Capture {
    pid: u32,
    out: PathBuf,
    err: PathBuf,
}

/// One TCP line of `tcpdump -n -tt -S` text output.
#[derive(Clone, Debug, PartialEq)]
pub struct CapturedSegment {
    /// Capture time, seconds since the epoch.
    pub time: f64,
    pub src: String,
    pub dst: String,
    /// Flags as tcpdump prints them, e.g. "S", "S.", "F.", "R".
    pub flags: String,
    /// Absolute sequence number (first of a range), if printed.
    pub seq: Option<u32>,
}

/// Parses the TCP lines of `tcpdump -n -tt -S` output (other lines are skipped).
pub fn parse_tcpdump(text: &str) -> Vec<CapturedSegment> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let time: f64 = it.next()?.parse().ok()?;
            if !matches!(it.next()?, "IP" | "IP6") {
                return None;
            }
            let src = it.next()?.to_owned();
            if it.next()? != ">" {
                return None;
            }
            let dst = it.next()?.trim_end_matches(':').to_owned();
            let flags_at = l.find("Flags [")? + 7;
            let flags = l[flags_at..].split(']').next()?.to_owned();
            let seq = l.find(", seq ").and_then(|i| {
                l[i + 6..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            });
            Some(CapturedSegment {
                time,
                src,
                dst,
                flags,
                seq,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// The lab.

static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

/// One three-namespace lab. See the module docs.
pub struct Lab {
    /// Per-test suffix: sanitized test name + pid (+ sequence).
    pub suffix: String,
    pub cli: String,
    pub gw: String,
    pub srv: String,
    standin: bool,
    /// Per-lab scratch dir (gateway log) under /tmp/synguard-lab/.
    pub dir: PathBuf,
    pub gateway_log: PathBuf,
    gateway: Mutex<Option<Child>>,
    gateway_started: AtomicBool,
    /// PIDs of helper processes (hping3 ...) still to be reaped.
    helpers: Mutex<Vec<u32>>,
    stop: Arc<AtomicBool>,
    server_threads: Mutex<Vec<JoinHandle<()>>>,
    server_errors: Arc<AtomicU32>,
    // Dropped last: the lock is released only after the cleanup in Drop::drop.
    _lock: LabLock,
}

/// Whether `SYNGUARD_LAB_STANDIN=bridge` is set (panics on other values).
pub fn standin_from_env() -> bool {
    match std::env::var("SYNGUARD_LAB_STANDIN") {
        Ok(v) if v == "bridge" => true,
        Ok(v) if v.is_empty() => false,
        Ok(v) => panic!("SYNGUARD_LAB_STANDIN={v:?}: only \"bridge\" is supported"),
        Err(_) => false,
    }
}

impl Lab {
    /// Takes the lab lock and builds the topology with names `sg-{cli,gw,srv}-<suffix>`.
    pub fn new(test_name: &str) -> Lab {
        require_root();
        require_tools(LAB_TOOLS);
        let lock = lab_lock();
        let mut short: String = test_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(28)
            .collect();
        short = short.trim_matches('-').to_owned();
        let seq = LAB_SEQ.fetch_add(1, Ordering::Relaxed);
        let suffix = if seq == 0 {
            format!("{short}-{}", std::process::id())
        } else {
            format!("{short}-{}-{seq}", std::process::id())
        };
        let dir = PathBuf::from("/tmp/synguard-lab").join(&suffix);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let lab = Lab {
            cli: format!("sg-cli-{suffix}"),
            gw: format!("sg-gw-{suffix}"),
            srv: format!("sg-srv-{suffix}"),
            gateway_log: dir.join("gateway.log"),
            dir,
            suffix,
            standin: standin_from_env(),
            gateway: Mutex::new(None),
            gateway_started: AtomicBool::new(false),
            helpers: Mutex::new(Vec::new()),
            stop: Arc::new(AtomicBool::new(false)),
            server_threads: Mutex::new(Vec::new()),
            server_errors: Arc::new(AtomicU32::new(0)),
            _lock: lock,
        };
        // Built after `lab` exists so that a failure half-way is cleaned up by Drop.
        lab.build();
        eprintln!(
            "[lab] {} {} {} ready{}",
            lab.cli,
            lab.gw,
            lab.srv,
            if lab.standin {
                " (STAND-IN: Linux bridge instead of synguard)"
            } else {
                ""
            }
        );
        lab
    }

    fn build(&self) {
        for ns in [&self.cli, &self.gw, &self.srv] {
            if ns_exists(ns) {
                eprintln!("[lab] removing stale namespace {ns}");
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
            run("ip", &["netns", "add", ns]);
            ns_run(ns, "ip", &["link", "set", "lo", "up"]);
        }
        // Gateway kernel stays silent: no addresses and no IPv6 at all.
        ns_run(
            &self.gw,
            "sysctl",
            &[
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        );
        for ns in [&self.cli, &self.srv] {
            ns_run(
                ns,
                "sysctl",
                &[
                    "-qw",
                    "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.default.rp_filter=0",
                ],
            );
        }
        // veth pairs are created inside the namespaces: nothing touches the root ns.
        for (ns, a, b) in [
            (&self.cli, CLI_IF, GW_CLIENT_IF),
            (&self.srv, SRV_IF, GW_SERVER_IF),
        ] {
            run(
                "ip",
                &[
                    "-n", ns, "link", "add", a, "mtu", "1500", "type", "veth", "peer", "name", b,
                    "mtu", "1500", "netns", &self.gw,
                ],
            );
        }
        for (ns, dev) in [
            (&self.cli, CLI_IF),
            (&self.gw, GW_CLIENT_IF),
            (&self.gw, GW_SERVER_IF),
            (&self.srv, SRV_IF),
        ] {
            ns_run(
                ns,
                "ethtool",
                &[
                    "-K", dev, "rx", "off", "tx", "off", "tso", "off", "gso", "off", "gro", "off",
                    "sg", "off",
                ],
            );
        }
        let c4 = format!("{CLIENT_V4}/24");
        let c6 = format!("{CLIENT_V6}/64");
        let s4 = format!("{SERVER_V4}/24");
        let s6 = format!("{SERVER_V6}/64");
        run("ip", &["-n", &self.cli, "addr", "add", &c4, "dev", CLI_IF]);
        run(
            "ip",
            &["-n", &self.cli, "addr", "add", &c6, "dev", CLI_IF, "nodad"],
        );
        run("ip", &["-n", &self.srv, "addr", "add", &s4, "dev", SRV_IF]);
        run(
            "ip",
            &["-n", &self.srv, "addr", "add", &s6, "dev", SRV_IF, "nodad"],
        );
        for (ns, dev) in [
            (&self.gw, GW_CLIENT_IF),
            (&self.gw, GW_SERVER_IF),
            (&self.cli, CLI_IF),
            (&self.srv, SRV_IF),
        ] {
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
        // SYN counters at the server (before anything else sees the packet).
        self.nft(
            &self.srv,
            &format!(
                "table inet synguard_test {{\n\
                 counter syn_{p} {{ }}\n\
                 counter syn_{u} {{ }}\n\
                 counter tcp_{p} {{ }}\n\
                 counter tcp_{u} {{ }}\n\
                 chain pre {{\n\
                 type filter hook prerouting priority -300; policy accept;\n\
                 tcp dport {p} counter name \"tcp_{p}\"\n\
                 tcp dport {u} counter name \"tcp_{u}\"\n\
                 tcp dport {p} tcp flags & (syn | ack) == syn counter name \"syn_{p}\"\n\
                 tcp dport {u} tcp flags & (syn | ack) == syn counter name \"syn_{u}\"\n\
                 }}\n\
                 }}\n",
                p = PROTECTED_PORT,
                u = UNPROTECTED_PORT
            ),
        );
    }

    /// Whether the gateway is the Linux-bridge stand-in.
    pub fn standin(&self) -> bool {
        self.standin
    }

    /// Applies an nftables script inside namespace `ns` (`nft -f -`).
    pub fn nft(&self, ns: &str, script: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nft: {e}"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft in {ns} failed: {}\nscript:\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Packets counted by the named nft counter `name` of table `inet synguard_test` in `ns`.
    pub fn nft_counter(&self, ns: &str, name: &str) -> u64 {
        let out = ns_run(
            ns,
            "nft",
            &["list", "counter", "inet", "synguard_test", name],
        );
        let toks: Vec<&str> = out.split_whitespace().collect();
        toks.windows(2)
            .find(|w| w[0] == "packets")
            .and_then(|w| w[1].parse().ok())
            .unwrap_or_else(|| panic!("no packet count in nft output: {out}"))
    }

    /// Packets counted by the named counter `name` of nft table `inet <table>` in `ns`
    /// (for tables a test adds itself with [`Lab::nft`]).
    pub fn nft_table_counter(&self, ns: &str, table: &str, name: &str) -> u64 {
        let out = ns_run(ns, "nft", &["list", "counter", "inet", table, name]);
        let toks: Vec<&str> = out.split_whitespace().collect();
        toks.windows(2)
            .find(|w| w[0] == "packets")
            .and_then(|w| w[1].parse().ok())
            .unwrap_or_else(|| panic!("no packet count in nft output: {out}"))
    }

    /// SYNs (SYN set, ACK clear) that reached the server's namespace for the protected port.
    pub fn server_syn_count(&self) -> u64 {
        self.server_syn_count_port(PROTECTED_PORT)
    }

    /// Same for `port` (PROTECTED_PORT or UNPROTECTED_PORT).
    pub fn server_syn_count_port(&self, port: u16) -> u64 {
        self.nft_counter(&self.srv, &format!("syn_{port}"))
    }

    /// All TCP packets (any flags) that reached the server's namespace for `port`.
    pub fn server_tcp_count(&self, port: u16) -> u64 {
        self.nft_counter(&self.srv, &format!("tcp_{port}"))
    }

    /// Kernel SNMP counters of `ns` (`nstat -asz`), e.g. "TcpExtSyncookiesSent".
    pub fn nstat(&self, ns: &str) -> BTreeMap<String, u64> {
        let out = ns_run(ns, "nstat", &["-asz"]);
        out.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let k = it.next()?;
                let v = it.next()?.parse().ok()?;
                Some((k.to_owned(), v))
            })
            .collect()
    }

    // ---- namespaces & threads --------------------------------------------------

    /// Runs `f` on a thread inside `ns` and returns its result (may borrow).
    pub fn in_ns<T: Send, F: FnOnce() -> T + Send>(&self, ns: &str, f: F) -> T {
        in_netns(ns, f)
    }

    /// Runs `f` inside the client namespace.
    pub fn client<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> T {
        in_netns(&self.cli, f)
    }

    /// Spawns `f` inside the client namespace (for concurrent clients).
    pub fn spawn_client<T: Send + 'static, F: FnOnce() -> T + Send + 'static>(
        &self,
        f: F,
    ) -> JoinHandle<T> {
        spawn_in_netns(&self.cli, f)
    }

    /// Runs `f` inside the server namespace.
    pub fn server_ns<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> T {
        in_netns(&self.srv, f)
    }

    // ---- test server -----------------------------------------------------------

    /// Starts the in-process test server in the server namespace: TCP PROTECTED_PORT and
    /// UNPROTECTED_PORT on SERVER_V4 and SERVER_V6 (protocol C/U/D), UDP echo on
    /// UDP_ECHO_PORT (v4 + v6). Stopped by Drop.
    pub fn start_server(&self) {
        let (listeners, udps) = in_netns(&self.srv, || {
            let mut ls = Vec::new();
            for port in [PROTECTED_PORT, UNPROTECTED_PORT] {
                for a in [srv_v4(port), srv_v6(port)] {
                    let l = TcpListener::bind(a).unwrap_or_else(|e| panic!("bind {a}: {e}"));
                    l.set_nonblocking(true).unwrap();
                    ls.push(l);
                }
            }
            let mut us = Vec::new();
            for a in [srv_v4(UDP_ECHO_PORT), srv_v6(UDP_ECHO_PORT)] {
                let u = UdpSocket::bind(a).unwrap_or_else(|e| panic!("bind udp {a}: {e}"));
                u.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                us.push(u);
            }
            (ls, us)
        });
        let mut threads = self.server_threads.lock().unwrap();
        let (stop, errors) = (self.stop.clone(), self.server_errors.clone());
        threads.push(thread::spawn(move || accept_loop(listeners, stop, errors)));
        for u in udps {
            let stop = self.stop.clone();
            threads.push(thread::spawn(move || udp_echo_loop(u, stop)));
        }
    }

    /// Connections the test server failed to serve so far (I/O errors, bad commands).
    pub fn server_errors(&self) -> u32 {
        self.server_errors.load(Ordering::Relaxed)
    }

    // ---- gateway ---------------------------------------------------------------

    /// Starts the gateway: `synguard run --client-iface gwc --server-iface gws --protect
    /// 198.18.0.2:8080 --protect [2001:db8::2]:8080 --metrics-listen 127.0.0.1:9150
    /// EXTRA...` in the gateway namespace, and waits (<= 10 s) until /metrics answers.
    /// With the stand-in, builds br0 instead.
    pub fn start_gateway(&self, extra_args: &[&str]) {
        let v4 = srv_v4(PROTECTED_PORT).to_string();
        let v6 = srv_v6(PROTECTED_PORT).to_string();
        let control = self.control_socket().display().to_string();
        let mut args = vec![
            "run",
            "--control-socket",
            &control,
            "--client-iface",
            GW_CLIENT_IF,
            "--server-iface",
            GW_SERVER_IF,
            "--protect",
            &v4,
            "--protect",
            &v6,
            "--metrics-listen",
            METRICS_ADDR,
        ];
        args.extend_from_slice(extra_args);
        self.start_gateway_with(SYNGUARD_BIN, &args);
    }

    /// This lab's gateway control socket (for `synguard status`), so labs never
    /// share the default /run/synguard/control.sock.
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// `synguard status ARGS` against this lab's gateway; (exit code, stdout, stderr).
    pub fn status(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(SYNGUARD_BIN)
            .arg("status")
            .arg("--control-socket")
            .arg(self.control_socket())
            .args(args)
            .output()
            .expect("spawn synguard status");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts `bin ARGS` (full argument list, e.g. from `run` on) in the gateway
    /// namespace with stderr+stdout to `gateway_log`; waits for /metrics on METRICS_ADDR.
    pub fn start_gateway_with(&self, bin: &str, args: &[&str]) {
        assert!(
            !self.gateway_started.swap(true, Ordering::SeqCst),
            "gateway already started in this lab"
        );
        if self.standin {
            eprintln!(
                "[lab] STAND-IN: Linux bridge br0 in {} (no synguard)",
                self.gw
            );
            run(
                "ip",
                &[
                    "-n",
                    &self.gw,
                    "link",
                    "add",
                    "br0",
                    "type",
                    "bridge",
                    "stp_state",
                    "0",
                    "forward_delay",
                    "0",
                    "mcast_snooping",
                    "0",
                ],
            );
            for dev in [GW_CLIENT_IF, GW_SERVER_IF] {
                run("ip", &["-n", &self.gw, "link", "set", dev, "master", "br0"]);
            }
            run("ip", &["-n", &self.gw, "link", "set", "br0", "up"]);
            return;
        }
        assert!(
            PathBuf::from(bin).is_file(),
            "gateway binary {bin} does not exist"
        );
        let log = File::create(&self.gateway_log)
            .unwrap_or_else(|e| panic!("create {}: {e}", self.gateway_log.display()));
        let child = Command::new("ip")
            .args(["netns", "exec", &self.gw, bin])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        eprintln!(
            "[lab] gateway pid {} in {}: {bin} {} (log {})",
            child.id(),
            self.gw,
            args.join(" "),
            self.gateway_log.display()
        );
        *self.gateway.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.gateway_exit_status() {
                panic!(
                    "gateway exited during start-up ({st}); log tail:\n{}",
                    tail_file(&self.gateway_log, 40)
                );
            }
            let last_err = match in_netns(&self.gw, || {
                http_get(METRICS_ADDR, "/metrics", Duration::from_millis(500))
            }) {
                Ok(_) => break,
                Err(e) => e,
            };
            if Instant::now() > deadline {
                panic!(
                    "gateway metrics on {METRICS_ADDR} not answering after 10 s ({last_err}); \
                     log tail:\n{}",
                    tail_file(&self.gateway_log, 40)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Some(status) if the gateway process has exited, None if running or not started.
    pub fn gateway_exit_status(&self) -> Option<ExitStatus> {
        let mut g = self.gateway.lock().unwrap();
        g.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Panics (with the log tail) if the gateway is not running any more.
    pub fn assert_gateway_alive(&self) {
        if let Some(st) = self.gateway_exit_status() {
            panic!(
                "gateway died ({st}); log tail:\n{}",
                tail_file(&self.gateway_log, 40)
            );
        }
    }

    /// Sends SIGTERM to the gateway and waits (<= 5 s); returns its exit status.
    pub fn stop_gateway(&self) -> Option<ExitStatus> {
        let child = self.gateway.lock().unwrap().take();
        child.and_then(|mut c| terminate_child(&mut c, Duration::from_secs(5)))
    }

    /// Last `n` lines of the gateway log.
    pub fn gateway_log_tail(&self, n: usize) -> String {
        tail_file(&self.gateway_log, n)
    }

    // ---- metrics ---------------------------------------------------------------

    /// Raw /metrics text, scraped inside the gateway namespace. Panics with the stand-in.
    pub fn metrics_text(&self) -> String {
        assert!(
            !self.standin,
            "gateway metrics requested, but SYNGUARD_LAB_STANDIN=bridge has no metrics \
             (this test needs the real synguard)"
        );
        in_netns(&self.gw, || {
            http_get(METRICS_ADDR, "/metrics", Duration::from_secs(5))
        })
        .unwrap_or_else(|e| {
            panic!(
                "scrape {METRICS_ADDR}/metrics: {e}; gateway log tail:\n{}",
                self.gateway_log_tail(20)
            )
        })
    }

    /// Parsed metrics snapshot (see [`Metrics`]).
    pub fn metrics(&self) -> Metrics {
        Metrics::parse(&self.metrics_text())
    }

    // ---- ping ------------------------------------------------------------------

    /// `ping -c count` from namespace `ns` to `target`; Err with ping's output on loss.
    pub fn ping(&self, ns: &str, target: IpAddr, count: u32) -> Result<(), String> {
        let fam = if target.is_ipv6() { "-6" } else { "-4" };
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ping", fam, "-n", "-q"])
            .args(["-c", &count.to_string(), "-i", "0.2", "-W", "2"])
            .arg(target.to_string())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run ping: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && text.contains(&format!("{count} received")) {
            Ok(())
        } else {
            Err(format!(
                "ping {target} from {ns} failed ({}):\n{text}",
                out.status
            ))
        }
    }

    /// Polls the metrics every 25 ms until `pred` holds (returns that snapshot and the
    /// time waited) or `timeout` passes (returns Err with the last snapshot).
    pub fn wait_metrics(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Metrics) -> bool,
    ) -> Result<(Metrics, Duration), Metrics> {
        let start = Instant::now();
        loop {
            let m = self.metrics();
            if pred(&m) {
                return Ok((m, start.elapsed()));
            }
            if start.elapsed() >= timeout {
                return Err(m);
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    // ---- gateway with a config file ----------------------------------------------

    /// [`Lab::start_gateway`] with `--config FILE`, FILE holding `toml` (e.g. only a
    /// `[syn_queue]` and a `[timeouts]` section: interfaces, services and the metrics
    /// address come from the flags). The file has a unique name in the lab directory
    /// and is removed as soon as the gateway has read it (also when start-up fails).
    pub fn start_gateway_with_config(&self, toml: &str, extra_args: &[&str]) {
        static CFG_SEQ: AtomicU32 = AtomicU32::new(0);
        let path = self.dir.join(format!(
            "synguard-{}.toml",
            CFG_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        struct RemoveOnDrop(PathBuf);
        impl Drop for RemoveOnDrop {
            fn drop(&mut self) {
                let _ = fs::remove_file(&self.0);
            }
        }
        fs::write(&path, toml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        let _guard = RemoveOnDrop(path.clone());
        eprintln!("[lab] gateway config {}:\n{toml}", path.display());
        let p = path.to_string_lossy().into_owned();
        let mut args = vec!["--config", p.as_str()];
        args.extend_from_slice(extra_args);
        self.start_gateway(&args);
    }

    // ---- packet capture --------------------------------------------------------

    /// Starts `timeout -s INT <max_secs> tcpdump -i IFACE -n -tt -S -l -U FILTER` in
    /// namespace `ns` (text output to a file in the lab directory) and waits until it
    /// listens. Stop it with [`Lab::stop_capture`]; Drop kills it otherwise.
    pub fn start_capture(&self, ns: &str, iface: &str, filter: &str, max_secs: u64) -> Capture {
        require_tools(&["tcpdump", "timeout"]);
        assert!((1..=120).contains(&max_secs), "capture: max_secs 1..=120");
        static CAP_SEQ: AtomicU32 = AtomicU32::new(0);
        let n = CAP_SEQ.fetch_add(1, Ordering::Relaxed);
        let out = self.dir.join(format!("capture-{n}.txt"));
        let err = self.dir.join(format!("capture-{n}.err"));
        let mut args: Vec<String> = ["netns", "exec", ns, "timeout", "-s", "INT", "-k", "2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(max_secs.to_string());
        args.extend(
            ["tcpdump", "-i", iface, "-n", "-tt", "-S", "-l", "-U"]
                .iter()
                .map(|s| s.to_string()),
        );
        args.extend(filter.split_whitespace().map(str::to_owned));
        let child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn tcpdump: {e}"));
        let pid = child.id();
        // Reaped by stop_capture or by Drop (helpers list), never via `child`.
        drop(child);
        self.helpers.lock().unwrap().push(pid);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = fs::read_to_string(&err).unwrap_or_default();
            if text.contains("listening on") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "tcpdump in {ns} not listening after 5 s: {text}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        // tcpdump prints "listening" just before its capture loop: a little slack.
        thread::sleep(Duration::from_millis(100));
        Capture { pid, out, err }
    }

    /// Stops a capture (SIGINT through timeout(1)), reaps it and returns its text output.
    pub fn stop_capture(&self, cap: Capture) -> String {
        send_signal(cap.pid, libc::SIGINT);
        let mut status = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // SAFETY: waitpid on our own (not yet reaped) child.
            let r = unsafe { libc::waitpid(cap.pid as libc::pid_t, &mut status, libc::WNOHANG) };
            if r != 0 {
                break;
            }
            if Instant::now() > deadline {
                send_signal(cap.pid, libc::SIGKILL);
                // SAFETY: as above, blocking reap after SIGKILL.
                unsafe { libc::waitpid(cap.pid as libc::pid_t, &mut status, 0) };
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.helpers.lock().unwrap().retain(|p| *p != cap.pid);
        let text = fs::read_to_string(&cap.out).unwrap_or_default();
        let _ = fs::remove_file(&cap.out);
        let _ = fs::remove_file(&cap.err);
        text
    }

    // ---- hping3 (lab rules enforced) -------------------------------------------

    /// Bounded SYN flood from the client namespace to SERVER_V4:`dport`: one
    /// `timeout -s INT <max_secs> hping3 -q -S -a SRC -p dport -c per_source_count -i uN`
    /// per source, all concurrently; waits for all. Returns packets sent (hping3 summary).
    pub fn hping_syn_flood(
        &self,
        sources: &[Ipv4Addr],
        dport: u16,
        per_source_count: u64,
        interval_us: u64,
        max_secs: u64,
    ) -> u64 {
        self.hping(
            "-S",
            sources,
            dport,
            per_source_count,
            interval_us,
            max_secs,
        )
    }

    /// Same as [`Lab::hping_syn_flood`] with ACK packets (`-A`) carrying a random-ish
    /// sequence (`-M`) and acknowledgment (`-L`) number per process.
    pub fn hping_ack_flood(
        &self,
        sources: &[Ipv4Addr],
        dport: u16,
        per_source_count: u64,
        interval_us: u64,
        max_secs: u64,
    ) -> u64 {
        self.hping(
            "-A",
            sources,
            dport,
            per_source_count,
            interval_us,
            max_secs,
        )
    }

    fn hping(
        &self,
        flag: &str,
        sources: &[Ipv4Addr],
        dport: u16,
        per_source_count: u64,
        interval_us: u64,
        max_secs: u64,
    ) -> u64 {
        require_tools(&["hping3", "timeout"]);
        assert!(!sources.is_empty(), "hping: no sources");
        assert!(sources.len() <= 64, "hping: at most 64 concurrent sources");
        for s in sources {
            let o = s.octets();
            assert!(
                o[0] == 198 && (o[1] == 18 || o[1] == 19),
                "lab rule: spoofed source {s} is outside 198.18.0.0/15"
            );
        }
        assert!(
            (1..=1_000_000).contains(&per_source_count),
            "hping: per-source count must be 1..=1000000 (bounded flood)"
        );
        assert!(
            (1..=60).contains(&max_secs),
            "hping: max_secs must be 1..=60 (bounded flood)"
        );
        assert!(
            interval_us >= 1,
            "hping: interval must be >= 1 us (no --flood)"
        );
        let mut rng = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng & 0xffff_ffff) as u32
        };
        let dst = SERVER_V4.to_string();
        let mut children = Vec::new();
        for src in sources {
            let mut args: Vec<String> = vec![
                "netns".into(),
                "exec".into(),
                self.cli.clone(),
                "timeout".into(),
                "-s".into(),
                "INT".into(),
                "-k".into(),
                "3".into(),
                max_secs.to_string(),
                "hping3".into(),
                "-q".into(),
                flag.into(),
                "-a".into(),
                src.to_string(),
                "-p".into(),
                dport.to_string(),
                "-c".into(),
                per_source_count.to_string(),
                "-i".into(),
                format!("u{interval_us}"),
            ];
            if flag == "-A" {
                args.extend(["-M".into(), next().to_string()]);
                args.extend(["-L".into(), next().to_string()]);
            }
            args.push(dst.clone());
            let child = Command::new("ip")
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn hping3: {e}"));
            self.helpers.lock().unwrap().push(child.id());
            children.push((src, child));
        }
        let mut total = 0u64;
        let mut problems = Vec::new();
        for (src, child) in children {
            let pid = child.id();
            let out = child.wait_with_output().expect("wait hping3");
            self.helpers.lock().unwrap().retain(|p| *p != pid);
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let sent = text
                .lines()
                .find(|l| l.contains("packets transmitted") || l.contains("packets tramitted"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok());
            match sent {
                Some(n) => total += n,
                None => problems.push(format!("hping3 -a {src} ({}): {text}", out.status)),
            }
        }
        assert!(
            problems.is_empty(),
            "hping3 failed:\n{}",
            problems.join("\n")
        );
        total
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let failing = thread::panicking();
        self.stop.store(true, Ordering::Relaxed);
        // 1. processes we started, by PID
        let mut gateway_died: Option<ExitStatus> = None;
        if let Some(mut child) = self.gateway.lock().map(|mut g| g.take()).unwrap_or(None) {
            if let Ok(Some(st)) = child.try_wait() {
                gateway_died = Some(st);
            } else {
                terminate_child(&mut child, Duration::from_secs(5));
            }
        }
        let helpers: Vec<u32> = self
            .helpers
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        for pid in helpers {
            // timeout(1) forwards SIGTERM to its hping3 child.
            send_signal(pid, libc::SIGTERM);
            let mut status = 0;
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                // SAFETY: waitpid on our own (not yet reaped) child.
                let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
                if r != 0 {
                    break;
                }
                if Instant::now() > deadline {
                    send_signal(pid, libc::SIGKILL);
                    // SAFETY: as above, blocking reap after SIGKILL.
                    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        // 2. in-process peers (they poll the stop flag every <= 100 ms)
        let threads: Vec<JoinHandle<()>> = self
            .server_threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for t in threads {
            let _ = t.join();
        }
        // 3. namespaces
        for ns in [&self.cli, &self.gw, &self.srv] {
            if ns_exists(ns) {
                let st = Command::new("ip")
                    .args(["netns", "del", ns])
                    .stdin(Stdio::null())
                    .status();
                if !matches!(st, Ok(s) if s.success()) {
                    eprintln!("[lab] WARNING: ip netns del {ns} failed: {st:?}");
                }
            }
        }
        let leaked: Vec<String> = [&self.cli, &self.gw, &self.srv]
            .into_iter()
            .filter(|ns| ns_exists(ns))
            .cloned()
            .collect();
        if (failing || gateway_died.is_some()) && self.gateway_log.exists() {
            eprintln!(
                "[lab] gateway log tail ({}):\n{}",
                self.gateway_log.display(),
                tail_file(&self.gateway_log, 40)
            );
        } else if std::env::var_os("SYNGUARD_LAB_KEEP_LOGS").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
        if failing {
            return;
        }
        let mut errs = String::new();
        if let Some(st) = gateway_died {
            let _ = writeln!(errs, "gateway exited before the end of the test ({st})");
        }
        if !leaked.is_empty() {
            let _ = writeln!(errs, "namespaces left behind: {leaked:?}");
        }
        assert!(errs.is_empty(), "lab cleanup: {errs}");
    }
}

// =================================================================================
// Observability helpers (branch `obs`: tests/promtool.rs, tests/lab_prometheus.rs).
// Kept as one block at the end of this file, separate from the lab harness above.

/// One exported metric family: name and Prometheus type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportedFamily {
    pub name: &'static str,
    /// "counter", "gauge" or "histogram" (as in `# TYPE`).
    pub kind: &'static str,
}

const fn fam(name: &'static str, kind: &'static str) -> ExportedFamily {
    ExportedFamily { name, kind }
}

/// Every metric family synguard exports (src/metrics, README "## Metrics"). The
/// dashboard and alert rules may reference only these (plus Prometheus' own `up`).
pub const EXPORTED_FAMILIES: &[ExportedFamily] = &[
    fam("synguard_frames_total", "counter"),
    fam("synguard_kernel_drops_total", "counter"),
    fam("synguard_bridged_frames_total", "counter"),
    fam("synguard_translated_frames_total", "counter"),
    fam("synguard_syn_received_total", "counter"),
    fam("synguard_synack_sent_total", "counter"),
    fam("synguard_syn_queue_completed_total", "counter"),
    fam("synguard_syn_queue_expired_total", "counter"),
    fam("synguard_syn_recv", "gauge"),
    fam("synguard_syn_recv_limit", "gauge"),
    fam("synguard_cookie_mode_active", "gauge"),
    fam("synguard_flows_expired_total", "counter"),
    fam("synguard_flows_evicted_total", "counter"),
    fam("synguard_cookies_validated_total", "counter"),
    fam("synguard_cookies_failed_total", "counter"),
    fam("synguard_backend_handshakes_total", "counter"),
    fam("synguard_backend_syn_retransmits_total", "counter"),
    fam("synguard_rst_sent_total", "counter"),
    fam("synguard_drops_total", "counter"),
    fam("synguard_flows", "gauge"),
    fam("synguard_flows_limit", "gauge"),
    fam("synguard_held_bytes", "gauge"),
    fam("synguard_build_info", "gauge"),
    fam("synguard_backend_handshake_duration_seconds", "histogram"),
];

/// Families of [`EXPORTED_FAMILIES`] that are being added to src/metrics on another
/// branch. Until that merge, a check that looks for them in the source or in a live
/// scrape prints a NOTE instead of failing. After the merge this list must be empty
/// (then every such check is strict).
pub const PENDING_FAMILIES: &[&str] = &[];

/// Whether `name` (as written in PromQL, so `_bucket`/`_sum`/`_count` of a
/// histogram included) is an exported series name.
pub fn is_exported_series(name: &str) -> bool {
    EXPORTED_FAMILIES.iter().any(|f| {
        f.name == name
            || (f.kind == "histogram"
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(f.name)))
    })
}

/// Every `synguard_*` identifier in a PromQL expression (or any text), in order,
/// without duplicates. Identifiers inside quoted strings count too: a label value
/// that looks like a metric name is suspicious in this project.
pub fn synguard_names_in(expr: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let b = expr.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut i = 0;
    while let Some(pos) = expr[i..].find("synguard_") {
        let start = i + pos;
        if start > 0 && is_ident(b[start - 1]) {
            i = start + 1;
            continue;
        }
        let mut end = start;
        while end < b.len() && is_ident(b[end]) {
            end += 1;
        }
        let name = expr[start..end].to_owned();
        if !out.contains(&name) {
            out.push(name);
        }
        i = end;
    }
    out
}

/// `# TYPE` lines of a Prometheus text exposition: family name -> type.
pub fn exposition_types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.to_owned()))
        })
        .collect()
}

/// Path of a promtool binary; panics naming the tool and its package when missing
/// (never a skip).
pub fn promtool_path() -> String {
    require_prometheus_tools(&["promtool"]);
    "promtool".to_owned()
}

/// Panics naming every missing tool of the Debian `prometheus` package.
pub fn require_prometheus_tools(tools: &[&str]) {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.push(PathBuf::from("/usr/bin"));
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !dirs.iter().any(|d| d.join(t).is_file()))
        .collect();
    assert!(
        missing.is_empty(),
        "missing tool(s): {} (Debian package `prometheus`: apt-get install prometheus; \
         tests/run-all.sh installs it)",
        missing.join(", ")
    );
}

/// Runs `promtool ARGS` (stdin from `input` if given); returns (success, stdout+stderr).
pub fn promtool(args: &[&str], input: Option<&str>) -> (bool, String) {
    let bin = promtool_path();
    let mut child = Command::new(&bin)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool (package `prometheus`): {e}"));
    if let Some(text) = input {
        let mut stdin = child.stdin.take().expect("promtool stdin");
        let text = text.to_owned();
        // A writer thread: promtool may answer before reading everything.
        let w = thread::spawn(move || {
            let _ = stdin.write_all(text.as_bytes());
        });
        let out = child.wait_with_output().expect("wait promtool");
        let _ = w.join();
        return (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        );
    }
    let out = child.wait_with_output().expect("wait promtool");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Minimal JSON value (for the Grafana dashboard and Prometheus' HTTP API).
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    /// Members in document order (duplicates kept).
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Parses a complete JSON document (RFC 8259); Err names the byte offset.
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            b: text.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.b.len() {
            return Err(format!("trailing data at byte {}", p.i));
        }
        Ok(v)
    }

    /// Member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follows a path of object keys.
    pub fn at(&self, path: &[&str]) -> Option<&Json> {
        path.iter().try_fold(self, |v, k| v.get(k))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_array(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => &[],
        }
    }

    pub fn members(&self) -> &[(String, Json)] {
        match self {
            Json::Obj(m) => m,
            _ => &[],
        }
    }
}

struct JsonParser<'a> {
    b: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("JSON: {what} at byte {}", self.i))
    }

    fn eat(&mut self, lit: &str) -> Result<(), String> {
        if self.b[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            Ok(())
        } else {
            self.err(&format!("expected `{lit}`"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > 128 {
            return self.err("nesting too deep");
        }
        self.ws();
        match self.b.get(self.i) {
            None => self.err("unexpected end"),
            Some(b'{') => {
                self.i += 1;
                let mut m = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return self.err("expected a member name");
                    }
                    let k = self.string()?;
                    self.ws();
                    self.eat(":")?;
                    let v = self.value(depth + 1)?;
                    m.push((k, v));
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(m));
                        }
                        _ => return self.err("expected `,` or `}`"),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(a));
                }
                loop {
                    a.push(self.value(depth + 1)?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(a));
                        }
                        _ => return self.err("expected `,` or `]`"),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.eat("true").map(|_| Json::Bool(true)),
            Some(b'f') => self.eat("false").map(|_| Json::Bool(false)),
            Some(b'n') => self.eat("null").map(|_| Json::Null),
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                if self.b[self.i] == b'-' {
                    self.i += 1;
                }
                let int_start = self.i;
                while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
                    self.i += 1;
                }
                if self.i == int_start || (self.b[int_start] == b'0' && self.i - int_start > 1) {
                    return self.err("bad number");
                }
                if self.b.get(self.i) == Some(&b'.') {
                    self.i += 1;
                    let f = self.i;
                    while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
                        self.i += 1;
                    }
                    if self.i == f {
                        return self.err("bad fraction");
                    }
                }
                if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
                    self.i += 1;
                    if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                        self.i += 1;
                    }
                    let e = self.i;
                    while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
                        self.i += 1;
                    }
                    if self.i == e {
                        return self.err("bad exponent");
                    }
                }
                let s = std::str::from_utf8(&self.b[start..self.i]).expect("ascii");
                s.parse::<f64>()
                    .map(Json::Num)
                    .or_else(|_| self.err("bad number"))
            }
            Some(_) => self.err("unexpected character"),
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let Some(h) = self.b.get(self.i..self.i + 4) else {
            return self.err("short \\u escape");
        };
        let s = std::str::from_utf8(h).map_err(|e| e.to_string())?;
        let v = u32::from_str_radix(s, 16).or_else(|_| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.b.get(self.i) else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.b.get(self.i) else {
                        return self.err("unterminated escape");
                    };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xd800..0xdc00).contains(&hi) {
                                self.eat("\\u")?;
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return self.err("bad surrogate pair");
                                }
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else {
                                hi
                            };
                            match char::from_u32(cp) {
                                Some(ch) => ch,
                                None => return self.err("bad code point"),
                            }
                        }
                        _ => return self.err("bad escape"),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => return self.err("control character in string"),
                c => out.push(c),
            }
        }
        String::from_utf8(out).or_else(|_| self.err("invalid UTF-8 in string"))
    }
}

/// Percent-encodes a URL query component (RFC 3986 unreserved characters kept).
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

// =================================================================================
// Attack replay helpers (branch `attack`: tests/lab_attacks.rs). Kept as one block at
// the end of this file, separate from the lab harness above.

/// `deploy/lab/attack.sh` of this checkout.
pub const ATTACK_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/lab/attack.sh");

/// The summary line `attack.sh` prints:
/// `scenario=S packets=N frames=F seconds=T offered_pps=P [recorded=R]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AttackReport {
    pub scenario: String,
    /// Packets hping3 / tcpreplay report having sent.
    pub packets: u64,
    /// Ethernet frames on the wire (fragments counted one by one).
    pub frames: u64,
    pub seconds: f64,
    pub offered_pps: u64,
    /// SYNs sent while recording the pcap (pcap-replay only, else 0).
    pub recorded: u64,
}

/// Parses the last `scenario=...` line of `attack.sh` output.
pub fn parse_attack_report(text: &str) -> Option<AttackReport> {
    let line = text.lines().rev().find(|l| l.starts_with("scenario="))?;
    let mut r = AttackReport::default();
    for kv in line.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        match k {
            "scenario" => r.scenario = v.to_owned(),
            "packets" => r.packets = v.parse().ok()?,
            "frames" => r.frames = v.parse().ok()?,
            "seconds" => r.seconds = v.parse().ok()?,
            "offered_pps" => r.offered_pps = v.parse().ok()?,
            "recorded" => r.recorded = v.parse().ok()?,
            _ => {}
        }
    }
    Some(r)
}

/// A running `attack.sh` (its own process group). Dropping it before
/// [`AttackRun::wait`] stops the whole group (the script, its timeout(1)s, which
/// pass the signal on to their hping3 / tcpreplay).
pub struct AttackRun {
    child: Option<Child>,
    out: PathBuf,
}

impl AttackRun {
    /// Waits for the script (it bounds itself: DURATION + 5 s at most, plus the
    /// pcap recording) and returns its report, or its output on failure.
    pub fn wait(mut self) -> Result<AttackReport, String> {
        let mut child = self.child.take().expect("attack already waited for");
        let status = child.wait().map_err(|e| format!("wait attack.sh: {e}"))?;
        let text = fs::read_to_string(&self.out).unwrap_or_default();
        let _ = fs::remove_file(&self.out);
        if !status.success() {
            return Err(format!("attack.sh failed ({status}):\n{text}"));
        }
        parse_attack_report(&text).ok_or_else(|| format!("attack.sh printed no report:\n{text}"))
    }
}

impl Drop for AttackRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Our own child's process group (process_group(0) at spawn): pgid == pid.
            // SAFETY: kill(2) on a negative pid signals exactly that process group.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGTERM) };
            let _ = child.wait();
            let _ = fs::remove_file(&self.out);
        }
    }
}

/// Reads one `kB` field (e.g. "VmRSS", "VmHWM") of /proc/PID/status, in KiB.
pub fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// One line describing the machine: CPU model, CPU count, kernel.
pub fn machine_summary() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let mem_mib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |k| k / 1024);
    format!("{cpu}, {cpus} CPUs, {mem_mib} MiB RAM, Linux {kernel}")
}

impl Lab {
    /// PID of the running gateway (synguard itself: `ip netns exec` execs it).
    pub fn gateway_pid(&self) -> Option<u32> {
        self.gateway.lock().unwrap().as_ref().map(|c| c.id())
    }

    /// Starts `deploy/lab/attack.sh -n <this lab's suffix> ARGS` (so it floods from
    /// this lab's client namespace), output to a file in the lab directory.
    pub fn spawn_attack(&self, args: &[&str]) -> AttackRun {
        use std::os::unix::process::CommandExt;
        require_tools(&["hping3", "timeout", "tcpdump", "tcpreplay", "tcprewrite"]);
        static ATTACK_SEQ: AtomicU32 = AtomicU32::new(0);
        let out = self.dir.join(format!(
            "attack-{}.txt",
            ATTACK_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let f = File::create(&out).unwrap_or_else(|e| panic!("create {}: {e}", out.display()));
        let child = Command::new("bash")
            .arg(ATTACK_SCRIPT)
            .args(["-n", &self.suffix])
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {ATTACK_SCRIPT}: {e}"));
        eprintln!(
            "[lab] attack.sh -n {} {} (pid {})",
            self.suffix,
            args.join(" "),
            child.id()
        );
        AttackRun {
            child: Some(child),
            out,
        }
    }
}
