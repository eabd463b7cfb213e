//! The load the lab puts on the gateway: bounded hping3 SYN and ACK floods from the
//! client namespace, and runs of `deploy/lab/attack.sh` (in their own process group,
//! output in the lab directory) with their parsed [`AttackReport`]; plus the memory
//! of a process and the machine summary that attack results are reported with. It
//! enforces the lab rules: spoofed sources only from 198.18.0.0/15, bounded packet
//! counts and durations, never `--flood` or `--rand-source`, and it never sends from
//! anywhere but a lab's client namespace (the three-namespace lab's, or a fleet's).

use std::fs::{self, File};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use super::commands::require_tools;
use super::lab::{Lab, SERVER_V4};

impl Lab {
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
        let flood = Flood {
            flag,
            sources,
            dst: SERVER_V4,
            dport,
            per_source_count,
            interval_us,
            max_secs,
        };
        hping_from(&self.cli, &self.helpers, &flood)
    }
}

/// One bounded hping3 flood: `flag` "-S" (SYN) or "-A" (ACK with a random-ish
/// sequence and acknowledgment number per process), one process per source.
pub struct Flood<'a> {
    pub flag: &'a str,
    pub sources: &'a [Ipv4Addr],
    pub dst: Ipv4Addr,
    pub dport: u16,
    pub per_source_count: u64,
    pub interval_us: u64,
    pub max_secs: u64,
}

/// Runs `flood` from namespace `ns` (lab rules enforced), its PIDs in `helpers`
/// while they run (for the lab's Drop); waits for all and returns the packets sent.
pub fn hping_from(ns: &str, helpers: &Mutex<Vec<u32>>, flood: &Flood) -> u64 {
    let Flood {
        flag,
        sources,
        dst,
        dport,
        per_source_count,
        interval_us,
        max_secs,
    } = *flood;
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
    let dst = dst.to_string();
    let mut children = Vec::new();
    for src in sources {
        let mut args: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            ns.to_owned(),
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
        helpers.lock().unwrap().push(child.id());
        children.push((src, child));
    }
    let mut total = 0u64;
    let mut problems = Vec::new();
    for (src, child) in children {
        let pid = child.id();
        let out = child.wait_with_output().expect("wait hping3");
        helpers.lock().unwrap().retain(|p| *p != pid);
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

/// `deploy/lab/attack.sh` of this checkout.
pub const ATTACK_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/lab/attack.sh");

/// The summary line `attack.sh` prints:
/// `scenario=S packets=N frames=F seconds=T offered_pps=P [recorded=R] [senders=K]`.
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
    /// hping3 processes that shared the rate, each counting its source
    /// ports up from its own random base (0: not reported, tcpreplay).
    pub senders: u64,
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
            "senders" => r.senders = v.parse().ok()?,
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
