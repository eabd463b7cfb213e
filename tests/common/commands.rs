//! Running external programs for the harness: the preconditions every lab checks
//! (root, tools in PATH), `run` / `ns_run` (stdout, or a panic naming the command and
//! its stderr), nftables scripts and counters in a namespace, and signalling,
//! terminating and reading the logs of the children the harness spawned. It never
//! signals a PID the harness did not spawn itself, and never retries or hides a
//! failing command: a failure is a panic, never a skip.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};
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
/// Applies an nftables script inside namespace `ns` (`nft -f -`); panics with
/// nft's error and the script.
pub fn nft_apply(ns: &str, script: &str) {
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

/// Packets counted by the named counter `name` of nft table `table` ("FAMILY
/// NAME", e.g. "inet synguard_loss") in `ns`.
pub fn nft_counter_packets(ns: &str, table: &str, name: &str) -> u64 {
    let mut args = vec!["list", "counter"];
    args.extend(table.split_whitespace());
    args.push(name);
    let out = ns_run(ns, "nft", &args);
    let toks: Vec<&str> = out.split_whitespace().collect();
    toks.windows(2)
        .find(|w| w[0] == "packets")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or_else(|| panic!("no packet count in nft output: {out}"))
}

pub(super) fn send_signal(pid: u32, sig: libc::c_int) {
    // SAFETY: plain kill(2) on a PID we spawned and have not reaped yet.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL; always reaps. Returns the exit status.
pub(super) fn terminate_child(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
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

pub(super) fn tail_file(path: &PathBuf, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(s) => {
            let all: Vec<&str> = s.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Ends helper processes we spawned and have not reaped (hping3 under timeout(1),
/// tcpdump): SIGTERM (timeout(1) forwards it), up to 3 s, then SIGKILL; reaps each.
pub(super) fn reap_helpers(pids: Vec<u32>) {
    for pid in pids {
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
}
