//! Packet captures in the lab: a tcpdump (text output, `-n -tt -S`) in one of the
//! lab's namespaces, started and stopped through [`Lab`], and parsing its TCP lines
//! into [`CapturedSegment`]s. Every capture is bounded by timeout(1) and reaped by
//! `Lab::stop_capture` or the lab's Drop; it never writes pcap files and never
//! captures outside the lab's namespaces.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::commands::{require_tools, send_signal};
use super::lab::Lab;
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
impl Lab {
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
}
