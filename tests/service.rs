//! The gateway as the systemd unit runs it. `synguard run` as an unprivileged
//! user holding only the unit's capabilities (ambient, via setpriv, as systemd
//! sets them) in a private, unnamed network namespace with two veth pairs: the
//! AF_PACKET data path works without root, SIGHUP applies a valid change,
//! rejects a bad one and keeps running, and the frame counters carry on across
//! reloads. Not a lab test: no named namespaces, no lab lock, nothing outside
//! the namespace. Needs root, unshare/setpriv/nsenter (util-linux), ip
//! (iproute2) and python3; a missing tool fails the test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The capabilities deploy/systemd/synguard.service grants, in setpriv's
/// spelling (checked against the unit below).
const UNIT_CAPS: &str = "+net_raw,+net_admin,+bpf,+perfmon";

struct Gateway {
    child: Child,
    log: PathBuf,
    dir: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Gateway {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill has no memory preconditions; the pid is our child.
        assert_eq!(unsafe { libc::kill(self.pid() as libc::pid_t, sig) }, 0);
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log has `n` lines containing `needle`.
    fn wait_for(&mut self, needle: &str, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.lines().filter(|l| l.contains(needle)).count() >= n {
                return log;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("synguard exited ({status}) before logging `{needle}`:\n{log}");
            }
            assert!(Instant::now() < deadline, "no `{needle}` in 10 s:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Run python3 code in the gateway's network namespace.
    fn python(&self, code: &str) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", self.pid()))
            .args(["python3", "-c", code])
            .output()
            .expect("nsenter/python3 (util-linux, python3)");
        assert!(
            out.status.success(),
            "python3 in the namespace failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Send `n` broadcast frames into the client port (from its veth peer).
    fn send_frames(&self, n: usize) {
        self.python(&format!(
            "import socket\n\
             s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
             s.bind(('c1', 0))\n\
             f = b'\\xff' * 6 + b'\\x02\\x00\\x00\\x00\\x00\\x01' + b'\\x88\\xb5' + b'synguard' * 8\n\
             for _ in range({n}): s.send(f)\n"
        ));
    }

    /// synguard_frames_total{port="client",direction="rx"} from /metrics.
    fn client_rx(&self, listen: &str) -> u64 {
        let text = self.python(&format!(
            "import urllib.request\n\
             print(urllib.request.urlopen('http://{listen}/metrics', timeout=5).read().decode())"
        ));
        let line = text
            .lines()
            .find(|l| l.starts_with("synguard_frames_total{port=\"client\",direction=\"rx\"}"))
            .unwrap_or_else(|| panic!("no client rx counter:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }
}

/// The shipped configuration, without its flow file: /var/lib/synguard is the
/// package's, not this test's.
fn shipped() -> String {
    let text =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/synguard.toml"))
            .unwrap();
    let with_file = "flow_file = \"/var/lib/synguard/flows.json\"";
    assert!(text.contains(with_file), "the shipped flow_file changed");
    text.replace(with_file, "flow_file = \"off\"")
}

fn start(config_text: &str) -> Gateway {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "tests/service.rs needs root (network namespace, capabilities): run tests/run-all.sh as root"
    );
    let dir = std::env::temp_dir().join(format!("synguard-service-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let config = dir.join("synguard.toml");
    fs::write(&config, config_text).unwrap();
    let log = dir.join("stderr.log");
    // unshare execs sh, which execs setpriv, which execs synguard: one pid.
    let script = format!(
        "ip link set lo up
         ip link add c0 type veth peer name c1
         ip link add s0 type veth peer name s1
         for i in c0 c1 s0 s1; do ip link set $i up; done
         exec setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs \
             --inh-caps=-all,{caps} --ambient-caps=-all,{caps} --bounding-set=-all,{caps} \
             {bin} run --config {config} --client-iface c0 --server-iface s0 --control-socket off",
        caps = UNIT_CAPS,
        bin = env!("CARGO_BIN_EXE_synguard"),
        config = config.display(),
    );
    let child = Command::new("unshare")
        .args(["--net", "sh", "-euc", &script])
        .env("RUST_LOG", "")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .expect("unshare (util-linux)");
    Gateway { child, log, dir }
}

#[test]
fn unit_capabilities_match_this_test() {
    let unit = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/synguard.service"),
    )
    .unwrap();
    let caps: Vec<String> = UNIT_CAPS
        .split(',')
        .map(|c| format!("CAP_{}", c.trim_start_matches('+').to_uppercase()))
        .collect();
    let line = format!("AmbientCapabilities={}", caps.join(" "));
    assert!(unit.lines().any(|l| l == line), "unit lacks `{line}`");
}

#[test]
fn runs_unprivileged_with_the_unit_capabilities_and_reloads_on_sighup() {
    // The defaults plus an own metrics port (the namespace is private anyway).
    let base = shipped();
    let mut gw = start(&base);
    let log = gw.wait_for("synguard running", 1);
    assert!(!log.contains("ERROR"), "{log}");
    let status = fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(uid.split_whitespace().nth(2), Some("65534"), "{uid}");

    gw.send_frames(5);
    std::thread::sleep(Duration::from_millis(300));
    let before = gw.client_rx("127.0.0.1:9150");
    assert!(
        before >= 5,
        "the unprivileged gateway received {before} frames"
    );

    // A valid change: applied and reported, restart-only keys named.
    fs::write(
        gw.dir.join("synguard.toml"),
        base.replace("max_flows = 1000000", "max_flows = 5000")
            .replace("listen = \"127.0.0.1:9150\"", "listen = \"127.0.0.1:9151\""),
    )
    .unwrap();
    gw.signal(libc::SIGHUP);
    let log = gw.wait_for("configuration reloaded", 1);
    let line = log
        .lines()
        .find(|l| l.contains("configuration reloaded"))
        .unwrap();
    assert!(line.contains("applied: limits.max_flows;"), "{line}");
    assert!(
        line.contains("needs a restart (running value kept): metrics.listen"),
        "{line}"
    );

    // A bad change: rejected, the gateway keeps running on the old settings.
    fs::write(
        gw.dir.join("synguard.toml"),
        base.replace("backlog = 4096", "backlog = 0"),
    )
    .unwrap();
    gw.signal(libc::SIGHUP);
    let log = gw.wait_for("configuration reload rejected", 1);
    let line = log.lines().find(|l| l.contains("reload rejected")).unwrap();
    assert!(line.contains("syn_queue.backlog"), "{line}");

    // Still serving on the start-up metrics address, counters not reset.
    gw.send_frames(5);
    std::thread::sleep(Duration::from_millis(300));
    let after = gw.client_rx("127.0.0.1:9150");
    assert!(after >= before + 5, "before {before}, after {after}");

    gw.signal(libc::SIGTERM);
    let status = gw.child.wait().unwrap();
    assert!(status.success(), "exit {status}:\n{}", gw.log());
    assert!(gw.log().contains("shutting down"));
}
