//! The fleet lab: N synguard instances between two ECMP routers, built by
//! `deploy/lab/ecmp.sh` (which configures both routers with `deploy/fleet/router.sh`,
//! the tool a real fleet's routers run):
//!
//! ```text
//!  sg-ecli-N   sg-ertc-N                                 sg-erts-N   sg-esrv-N
//!  198.18.0.1  rc0 | rcI --[sg-egwI-N: gwc synguard gws]-- rsI | rs0  198.18.1.2
//!  2001:db8::1                                                        2001:db8:1::2
//! ```
//!
//! This file owns the fleet's life (under the same cross-process lab lock as every
//! lab), the synguard instances in it (one config file each, a shared secret file,
//! their logs, metrics, reloads, SIGKILL and `synguard detach`), the test server, the
//! routers' commands and liveness watchers, and the per-link record on the server-side
//! router of which client tuples crossed which instance in which direction. Its Drop
//! kills every process it started (by PID), removes the instances' XDP pins and runs
//! `ecmp.sh down`, also when the test panics. It never touches the root namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::attacks::{hping_from, Flood};
use super::commands::{
    nft_apply, ns_run, reap_helpers, require_root, require_tools, run, tail_file, terminate_child,
};
use super::gateway::{lab_xdp_from_env, METRICS_ADDR, SYNGUARD_BIN};
use super::lab::{gateway_pin_dirs, lab_lock, LabLock, LAB_TOOLS, PROTECTED_PORT};
use super::netns::{in_netns, ns_exists, spawn_in_netns};
use super::peer::spawn_test_server;
use super::prometheus::{http_get, Metrics};

/// The fleet lab script.
pub const ECMP_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/lab/ecmp.sh");
pub const FLEET_SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
pub const FLEET_SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);

/// The protected service on the fleet's server, IPv4.
pub fn fleet_srv_v4() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(FLEET_SERVER_V4), PROTECTED_PORT)
}

/// The protected service on the fleet's server, IPv6.
pub fn fleet_srv_v6() -> SocketAddr {
    SocketAddr::new(IpAddr::V6(FLEET_SERVER_V6), PROTECTED_PORT)
}

/// A router of the fleet lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// sg-ertc: the clients' router.
    Client,
    /// sg-erts: the servers' router.
    Server,
}

impl Side {
    fn arg(self) -> &'static str {
        match self {
            Side::Client => "c",
            Side::Server => "s",
        }
    }
}

/// One fleet lab. See the module docs.
pub struct Fleet {
    pub name: String,
    pub n: usize,
    pub cli: String,
    pub rtc: String,
    pub rts: String,
    pub srv: String,
    /// Scratch directory: configs, secret, logs, control sockets.
    pub dir: PathBuf,
    pub secret: PathBuf,
    gateways: Vec<Mutex<Option<Child>>>,
    helpers: Mutex<Vec<Child>>,
    /// hping3 processes (under timeout(1)) still running.
    flood_pids: Mutex<Vec<u32>>,
    stop: Arc<AtomicBool>,
    server_errors: Arc<AtomicU32>,
    server_thread: Mutex<Option<JoinHandle<()>>>,
    _lock: LabLock,
}

impl Fleet {
    /// Takes the lab lock and builds a fleet of `n` gateway namespaces (no synguard
    /// running yet), the routers (with the per-link flow record) and the hosts.
    pub fn new(test_name: &str, n: usize) -> Fleet {
        require_root();
        require_tools(LAB_TOOLS);
        let lock = lab_lock();
        let short: String = test_name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(10)
            .collect();
        let name = format!("{short}{}", std::process::id());
        let dir = PathBuf::from("/tmp/synguard-lab").join(format!("ecmp-{name}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let fleet = Fleet {
            cli: format!("sg-ecli-{name}"),
            rtc: format!("sg-ertc-{name}"),
            rts: format!("sg-erts-{name}"),
            srv: format!("sg-esrv-{name}"),
            secret: dir.join("secret"),
            dir,
            n,
            gateways: (0..n).map(|_| Mutex::new(None)).collect(),
            helpers: Mutex::new(Vec::new()),
            flood_pids: Mutex::new(Vec::new()),
            stop: Arc::new(AtomicBool::new(false)),
            server_errors: Arc::new(AtomicU32::new(0)),
            server_thread: Mutex::new(None),
            name,
            _lock: lock,
        };
        // A stale lab of the same name (a killed earlier run with this pid) first.
        fleet.script(&["down"]);
        fleet.script(&["up", &n.to_string()]);
        fleet.record_links();
        fleet
    }

    fn script(&self, args: &[&str]) -> String {
        let mut all = vec![ECMP_SCRIPT, "-n", &self.name];
        all.extend_from_slice(args);
        run("bash", &all)
    }

    /// The namespace of instance `i` (1-based).
    pub fn gw(&self, i: usize) -> String {
        assert!((1..=self.n).contains(&i), "instance {i} of 1..={}", self.n);
        format!("sg-egw{i}-{}", self.name)
    }

    /// Pings across every instance from both routers, IPv4 and IPv6 (panics on
    /// a loss): every link works, and the routers know their neighbours, so no
    /// test's first segment waits for ARP or neighbour discovery.
    pub fn ping_links(&self) {
        for i in 1..=self.n {
            for (ns, v4, v6) in [
                (
                    &self.rtc,
                    format!("198.18.1{i}.2"),
                    format!("2001:db8:1{i}::2"),
                ),
                (
                    &self.rts,
                    format!("198.18.1{i}.1"),
                    format!("2001:db8:1{i}::1"),
                ),
            ] {
                for addr in [v4, v6] {
                    ns_run(ns, "ping", &["-n", "-q", "-c", "1", "-W", "2", &addr]);
                }
            }
        }
        for addr in [FLEET_SERVER_V4.to_string(), FLEET_SERVER_V6.to_string()] {
            ns_run(
                &self.cli,
                "ping",
                &["-n", "-q", "-c", "1", "-W", "2", &addr],
            );
        }
    }

    /// `deploy/fleet/router.sh ARGS` in router `side`; its output.
    pub fn router(&self, side: Side, args: &[&str]) -> String {
        let mut all = vec!["router", side.arg()];
        all.extend_from_slice(args);
        self.script(&all)
    }

    /// Both routers alike (the order a fleet's operator would use: client side
    /// first, so the servers' answers never take a path the requests do not).
    pub fn routers(&self, args: &[&str]) {
        self.router(Side::Client, args);
        self.router(Side::Server, args);
    }

    /// The bucket table of the routers' main IPv4 group, as "INDEX NEXTHOP" lines.
    pub fn buckets(&self, side: Side) -> String {
        let ns = match side {
            Side::Client => &self.rtc,
            Side::Server => &self.rts,
        };
        let mut lines: Vec<(u32, String)> =
            ns_run(ns, "ip", &["nexthop", "bucket", "show", "id", "10"])
                .lines()
                .filter_map(|l| {
                    let t: Vec<&str> = l.split_whitespace().collect();
                    let at = |k: &str| t.iter().position(|w| *w == k).and_then(|p| t.get(p + 1));
                    Some((at("index")?.parse().ok()?, at("nhid")?.to_string()))
                })
                .collect();
        lines.sort();
        lines.iter().fold(String::new(), |mut s, (i, nh)| {
            let _ = writeln!(s, "{i} {nh}");
            s
        })
    }

    /// Starts `router.sh watch ARGS` in router `side` (stopped by Drop, or by
    /// [`Fleet::stop_helpers`]); its output goes to `watch-<side>.log`.
    pub fn spawn_watch(&self, side: Side, args: &[&str]) -> PathBuf {
        let log = self.dir.join(format!("watch-{}.log", side.arg()));
        let f = File::create(&log).unwrap();
        let child = Command::new("bash")
            .args([ECMP_SCRIPT, "-n", &self.name, "router", side.arg(), "watch"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn watch: {e}"));
        self.helpers.lock().unwrap().push(child);
        log
    }

    // ---- per-link record ---------------------------------------------------------

    /// nft sets on the servers' router: for each link I, the client (address,
    /// port) of every protected-service segment that came in from instance I
    /// (`in_I`) and of every one that went out to it (`out_I`).
    fn record_links(&self) {
        let mut script = String::from("table inet fleet_record {\n");
        for i in 1..=self.n {
            for dir in ["in", "out"] {
                for (fam, ty) in [("4", "ipv4_addr"), ("6", "ipv6_addr")] {
                    let _ = writeln!(
                        script,
                        "set {dir}{fam}_{i} {{ type {ty} . inet_service; flags dynamic; size 65536; }}"
                    );
                }
            }
        }
        script.push_str("chain record {\ntype filter hook forward priority 0; policy accept;\n");
        for i in 1..=self.n {
            let p = PROTECTED_PORT;
            let _ = writeln!(
                script,
                "iifname \"rs{i}\" tcp dport {p} meta nfproto ipv4 add @in4_{i} {{ ip saddr . tcp sport }}\n\
                 iifname \"rs{i}\" tcp dport {p} meta nfproto ipv6 add @in6_{i} {{ ip6 saddr . tcp sport }}\n\
                 oifname \"rs{i}\" tcp sport {p} meta nfproto ipv4 add @out4_{i} {{ ip daddr . tcp dport }}\n\
                 oifname \"rs{i}\" tcp sport {p} meta nfproto ipv6 add @out6_{i} {{ ip6 daddr . tcp dport }}"
            );
        }
        script.push_str("}\n}\n");
        nft_apply(&self.rts, &script);
    }

    /// Which instances each client tuple ("ADDR . PORT") crossed, per direction:
    /// (tuple -> instances it came in from, tuple -> instances it went out to).
    pub fn link_record(&self) -> (LinkMap, LinkMap) {
        let mut maps = (LinkMap::new(), LinkMap::new());
        for i in 1..=self.n {
            for fam in ["4", "6"] {
                for (dir, map) in [("in", &mut maps.0), ("out", &mut maps.1)] {
                    let set = format!("{dir}{fam}_{i}");
                    let out = ns_run(
                        &self.rts,
                        "nft",
                        &["list", "set", "inet", "fleet_record", &set],
                    );
                    for tuple in set_elements(&out) {
                        map.entry(tuple).or_default().insert(i);
                    }
                }
            }
        }
        maps
    }

    // ---- server and clients -------------------------------------------------------

    /// Starts the test server on the protected service (v4 and v6).
    pub fn start_server(&self) {
        let t = spawn_test_server(
            &self.srv,
            &[fleet_srv_v4(), fleet_srv_v6()],
            self.stop.clone(),
            self.server_errors.clone(),
        );
        *self.server_thread.lock().unwrap() = Some(t);
    }

    /// Connections the test server failed to serve.
    pub fn server_errors(&self) -> u32 {
        self.server_errors.load(Ordering::Relaxed)
    }

    /// Runs `f` in the client namespace.
    pub fn client<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> T {
        in_netns(&self.cli, f)
    }

    /// Spawns `f` in the client namespace.
    pub fn spawn_client<T: Send + 'static, F: FnOnce() -> T + Send + 'static>(
        &self,
        f: F,
    ) -> JoinHandle<T> {
        spawn_in_netns(&self.cli, f)
    }

    /// A bounded hping3 SYN flood from the client namespace to the fleet's IPv4
    /// service (lab rules enforced by `hping_from`); returns the SYNs sent.
    pub fn syn_flood(
        &self,
        sources: &[Ipv4Addr],
        per_source: u64,
        interval_us: u64,
        max_secs: u64,
    ) -> u64 {
        let flood = Flood {
            flag: "-S",
            sources,
            dst: FLEET_SERVER_V4,
            dport: PROTECTED_PORT,
            per_source_count: per_source,
            interval_us,
            max_secs,
        };
        hping_from(&self.cli, &self.flood_pids, &flood)
    }

    // ---- the instances ------------------------------------------------------------

    /// Writes the shared secret file (one key per line, as `synguard keygen`).
    pub fn write_secret(&self, keys: &[&str]) {
        fs::write(&self.secret, keys.join("\n") + "\n").unwrap();
        run("chmod", &["0600", &self.secret.display().to_string()]);
    }

    /// Instance `i`'s configuration: the fleet's services and secret, then `extra`,
    /// which continues the `[cookies]` section (keys such as `slot_seconds = 2`
    /// first, then sections such as `[syn_queue]`).
    pub fn config(&self, i: usize, extra: &str) -> String {
        format!(
            "[interfaces]\nclient = \"gwc\"\nserver = \"gws\"\n\n\
             [protect]\nservices = [\"{}\", \"{}\"]\n\n\
             [metrics]\nlisten = \"{METRICS_ADDR}\"\n\n\
             [control]\nsocket = \"{}\"\n\n\
             [cookies]\nsecret_file = \"{}\"\n{extra}\n",
            fleet_srv_v4(),
            fleet_srv_v6(),
            self.dir.join(format!("gw{i}.sock")).display(),
            self.secret.display(),
        )
    }

    fn log(&self, i: usize) -> PathBuf {
        self.dir.join(format!("gw{i}.log"))
    }

    /// Log tail of instance `i`.
    pub fn log_tail(&self, i: usize, n: usize) -> String {
        tail_file(&self.log(i), n)
    }

    /// Starts synguard in instance `i`'s namespace with [`Fleet::config`]`(i,
    /// extra)` (and `--xdp` from `SYNGUARD_LAB_XDP`); waits until it runs.
    pub fn start_gateway(&self, i: usize, extra: &str) {
        let ns = self.gw(i);
        let cfg = self.dir.join(format!("gw{i}.toml"));
        fs::write(&cfg, self.config(i, extra)).unwrap();
        let log = self.log(i);
        let mut args = vec![
            format!("--net=/run/netns/{ns}"),
            "--".into(),
            SYNGUARD_BIN.into(),
            "run".into(),
            "--config".into(),
            cfg.display().to_string(),
        ];
        if let Some(mode) = lab_xdp_from_env() {
            args.extend(["--xdp".into(), mode]);
        }
        let out = File::create(&log).unwrap();
        let child = Command::new("nsenter")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn synguard: {e}"));
        eprintln!("[fleet] instance {i}: pid {} in {ns}", child.id());
        *self.gateways[i - 1].lock().unwrap() = Some(child);
        self.wait_log(i, "synguard running", 0, Duration::from_secs(10));
    }

    /// Waits until instance `i`'s log holds `needle` more than `before` times.
    fn wait_log(&self, i: usize, needle: &str, before: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = fs::read_to_string(self.log(i)).unwrap_or_default();
            if text.matches(needle).count() > before {
                return text
                    .lines()
                    .rfind(|l| l.contains(needle))
                    .unwrap()
                    .to_owned();
            }
            if let Some(st) = self.gateways[i - 1]
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("instance {i} exited ({st}); log:\n{}", self.log_tail(i, 30));
            }
            assert!(
                Instant::now() < deadline,
                "instance {i}: no \"{needle}\" after {timeout:?}; log:\n{}",
                self.log_tail(i, 30)
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGHUP to instance `i`; returns its reload report line.
    pub fn reload(&self, i: usize) -> String {
        let needle = "configuration reload";
        let before = fs::read_to_string(self.log(i))
            .unwrap_or_default()
            .matches(needle)
            .count();
        let pid = self.pid(i).expect("instance not running");
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
        self.wait_log(i, needle, before, Duration::from_secs(5))
    }

    /// PID of instance `i`, if running.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.gateways[i - 1].lock().unwrap().as_ref().map(Child::id)
    }

    /// SIGKILL instance `i` (it writes nothing) and reap it.
    pub fn kill_gateway(&self, i: usize) {
        if let Some(mut c) = self.gateways[i - 1].lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `synguard detach` in instance `i`'s namespace: its XDP data path goes too,
    /// as on a host that died.
    pub fn detach(&self, i: usize) -> String {
        let ns = format!("--net=/run/netns/{}", self.gw(i));
        run(
            "nsenter",
            &[
                &ns,
                "--",
                SYNGUARD_BIN,
                "detach",
                "--client-iface",
                "gwc",
                "--server-iface",
                "gws",
            ],
        )
    }

    /// Instance `i`'s metrics, scraped inside its namespace.
    pub fn metrics(&self, i: usize) -> Metrics {
        let text = in_netns(&self.gw(i), || {
            http_get(METRICS_ADDR, "/metrics", Duration::from_secs(5))
        })
        .unwrap_or_else(|e| panic!("scrape instance {i}: {e}; log:\n{}", self.log_tail(i, 20)));
        Metrics::parse(&text)
    }

    /// Stops the watchers and other helpers now (SIGTERM, then SIGKILL).
    pub fn stop_helpers(&self) {
        for mut c in std::mem::take(&mut *self.helpers.lock().unwrap()) {
            terminate_child(&mut c, Duration::from_secs(2));
        }
    }
}

/// Client tuple ("ADDR . PORT") -> the instances it crossed.
pub type LinkMap = BTreeMap<String, BTreeSet<usize>>;

/// The elements of `nft list set` output ("ADDR . PORT" each).
fn set_elements(out: &str) -> Vec<String> {
    let Some(start) = out.find("elements = {") else {
        return Vec::new();
    };
    let body = &out[start + "elements = {".len()..];
    let body = &body[..body.find('}').unwrap_or(body.len())];
    body.split(',')
        .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|e| !e.is_empty())
        .collect()
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let failing = thread::panicking();
        self.stop.store(true, Ordering::Relaxed);
        self.stop_helpers();
        reap_helpers(std::mem::take(&mut *self.flood_pids.lock().unwrap()));
        let mut died = Vec::new();
        for (k, g) in self.gateways.iter().enumerate() {
            if let Some(mut c) = g.lock().map(|mut g| g.take()).unwrap_or(None) {
                if let Ok(Some(st)) = c.try_wait() {
                    died.push(format!("instance {} exited during the test ({st})", k + 1));
                } else {
                    terminate_child(&mut c, Duration::from_secs(5));
                }
            }
        }
        if let Some(t) = self
            .server_thread
            .lock()
            .map(|mut t| t.take())
            .unwrap_or(None)
        {
            let _ = t.join();
        }
        let mut pins_left = Vec::new();
        for i in 1..=self.n {
            for d in gateway_pin_dirs(&self.gw(i)) {
                if fs::remove_dir_all(&d).is_err() {
                    pins_left.push(d);
                }
            }
        }
        let down = Command::new("bash")
            .args([ECMP_SCRIPT, "-n", &self.name, "down"])
            .stdin(Stdio::null())
            .status();
        let leaked: Vec<String> = [&self.cli, &self.rtc, &self.rts, &self.srv]
            .into_iter()
            .cloned()
            .chain((1..=self.n).map(|i| self.gw(i)))
            .filter(|ns| ns_exists(ns))
            .collect();
        if failing || !died.is_empty() {
            for i in 1..=self.n {
                eprintln!("[fleet] instance {i} log tail:\n{}", self.log_tail(i, 25));
            }
            return;
        }
        if std::env::var_os("SYNGUARD_LAB_KEEP_LOGS").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
        let mut errs = died.join("\n");
        if !matches!(down, Ok(s) if s.success()) {
            let _ = writeln!(errs, "ecmp.sh down failed: {down:?}");
        }
        if !leaked.is_empty() {
            let _ = writeln!(errs, "namespaces left behind: {leaked:?}");
        }
        if !pins_left.is_empty() {
            let _ = writeln!(errs, "XDP pins left behind: {pins_left:?}");
        }
        assert!(errs.is_empty(), "fleet cleanup: {errs}");
    }
}
