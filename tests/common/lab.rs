//! The lab topology. A [`Lab`] is three network namespaces linked only to each other
//! (design.md section 6; deploy/lab/lab.sh builds the same by hand):
//!
//! ```text
//!  sg-cli-<suffix>            sg-gw-<suffix>              sg-srv-<suffix>
//!  cli0 198.18.0.1/24  <-->  gwc  [synguard]  gws  <-->  srv0 198.18.0.2/24
//!       2001:db8::1/64       (no addresses, IPv6 off)          2001:db8::2/64
//! ```
//!
//! This file owns the fixed addressing, the cross-process lab lock (every lab test
//! holds a `flock` on [`LOCK_PATH`] for its whole life, so lab tests of different test
//! binaries and of parallel test threads never overlap), building the namespaces and
//! veths (offloads off) with the server-side nft SYN/TCP counters, reading nft and
//! nstat counters, running closures in the lab's namespaces, ping, and the cleanup in
//! `Drop`: it kills every process the lab started (by PID), stops the in-process peers
//! and deletes the namespaces, also when the test panics. It never puts anything in the
//! root namespace (no veth end, address or route), and never starts the gateway, a peer
//! or a flood itself (gateway.rs, peer.rs, attacks.rs, capture.rs add those to `Lab`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::commands::{
    nft_apply, nft_counter_packets, ns_run, reap_helpers, require_root, require_tools, run,
    tail_file, terminate_child,
};
use super::netns::{in_netns, ns_exists, spawn_in_netns};
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
/// Cross-process lock serialising lab tests.
pub const LOCK_PATH: &str = "/tmp/synguard-lab.lock";
/// Client-side interface names (inside their namespaces).
pub const CLI_IF: &str = "cli0";
pub const GW_CLIENT_IF: &str = "gwc";
pub const GW_SERVER_IF: &str = "gws";
pub const SRV_IF: &str = "srv0";
/// The pass-everything XDP program for the end hosts' veths (bpf/xdp_pass.c).
pub const XDP_PASS_OBJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/xdp_pass.o");
/// Tools every lab needs; a missing one is an error, never a skip.
pub const LAB_TOOLS: &[&str] = &[
    "ip", "nft", "ethtool", "sysctl", "hping3", "nstat", "ping", "timeout",
];

/// Server socket address on the IPv4 side.
pub fn srv_v4(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(SERVER_V4), port)
}

/// Server socket address on the IPv6 side.
pub fn srv_v6(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(SERVER_V6), port)
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
// The lab.

static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

/// One three-namespace lab. See the module docs.
pub struct Lab {
    /// Per-test suffix: sanitized test name + pid (+ sequence).
    pub suffix: String,
    pub cli: String,
    pub gw: String,
    pub srv: String,
    pub(super) standin: bool,
    /// Per-lab scratch dir (gateway log) under /tmp/synguard-lab/.
    pub dir: PathBuf,
    pub gateway_log: PathBuf,
    pub(super) gateway: Mutex<Option<Child>>,
    pub(super) gateway_started: AtomicBool,
    /// PIDs of helper processes (hping3 ...) still to be reaped.
    pub(super) helpers: Mutex<Vec<u32>>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) server_threads: Mutex<Vec<JoinHandle<()>>>,
    pub(super) server_errors: Arc<AtomicU32>,
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
        // A frame the gateway sends back with XDP_TX (its XDP fast path's
        // SYN-ACKs and RSTs) reaches the peer veth only when the peer runs an
        // XDP program itself: drivers/net/veth.c hands it to the peer's XDP
        // receive ring, which is only polled while a program is attached
        // (measured: none arrived without one). So the end hosts run a program
        // that passes everything; a real NIC needs nothing of the kind. Both
        // ends, whatever io.xdp says, so every run has the same conditions.
        for (ns, dev) in [(&self.cli, CLI_IF), (&self.srv, SRV_IF)] {
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "link",
                    "set",
                    "dev",
                    dev,
                    "xdpdrv",
                    "obj",
                    XDP_PASS_OBJECT,
                    "sec",
                    "xdp",
                ],
            );
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
        nft_apply(ns, script);
    }

    /// Packets counted by the named nft counter `name` of table `inet synguard_test` in `ns`.
    pub fn nft_counter(&self, ns: &str, name: &str) -> u64 {
        self.nft_table_counter(ns, "inet synguard_test", name)
    }

    /// Packets counted by the named counter `name` of nft table `table` ("FAMILY
    /// NAME", e.g. "inet synguard_loss") in `ns` (for tables a test adds itself
    /// with [`Lab::nft`]).
    pub fn nft_table_counter(&self, ns: &str, table: &str, name: &str) -> u64 {
        nft_counter_packets(ns, table, name)
    }

    /// A statistic of interface `iface` in `ns`
    /// (`/sys/class/net/IFACE/statistics/NAME`, e.g. "tx_dropped").
    pub fn link_stat(&self, ns: &str, iface: &str, name: &str) -> u64 {
        let path = format!("/sys/class/net/{iface}/statistics/{name}");
        let out = ns_run(ns, "cat", &[&path]);
        out.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{path} in {ns}: {out:?}: {e}"))
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
        reap_helpers(helpers);
        // 2. in-process peers (they poll the stop flag every <= 100 ms)
        let threads: Vec<JoinHandle<()>> = self
            .server_threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for t in threads {
            let _ = t.join();
        }
        // 3. the gateway's XDP pins (bpffs is one per machine; they are
        // named by the namespace's inode), then the namespaces
        let pins_left = remove_gateway_pins(&self.gw);
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
        if !pins_left.is_empty() {
            let _ = writeln!(errs, "XDP pins left behind: {pins_left:?}");
        }
        assert!(errs.is_empty(), "lab cleanup: {errs}");
    }
}

/// Where synguard pins by default (`io.xdp_pin_dir`).
pub const PIN_BASE: &str = "/sys/fs/bpf/synguard";

/// The pin directories of gateways in namespace `ns` (named
/// `<netns inode>-<client>-<server>`).
pub fn gateway_pin_dirs(ns: &str) -> Vec<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::metadata(format!("/run/netns/{ns}")) else {
        return Vec::new();
    };
    let prefix = format!("{}-", meta.ino());
    fs::read_dir(PIN_BASE)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Remove the gateway's pins (its XDP attachments then end with the
/// namespace); returns what could not be removed.
fn remove_gateway_pins(ns: &str) -> Vec<std::path::PathBuf> {
    gateway_pin_dirs(ns)
        .into_iter()
        .filter(|d| fs::remove_dir_all(d).is_err())
        .collect()
}
