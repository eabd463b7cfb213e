//! `io.xdp` at start-up against real interfaces: `native` fails with one line
//! when the driver refuses, the MTU is too large for native XDP or another XDP
//! program holds the interface (`auto` then runs without the fast path), `generic`
//! attaches, `auto` falls back from native to generic and says so, and the
//! program is detached on exit, or, pinned (`io.xdp_pin_dir`), left in place
//! until `synguard detach`. Each case runs synguard for at most 3 s in a
//! private, unnamed network namespace (`unshare --net`) on two bridge or veth
//! devices it creates there: nothing is linked to any other namespace, and
//! the namespace vanishes with the process. Needs root and unshare
//! (util-linux); `tests/run-all.sh` runs it as root.

use std::process::Command;

/// Runs `synguard run --xdp MODE` on client device d0 (of `kind`: bridge has
/// no native XDP, veth has) with MTU `mtu`; returns (exit code, stderr).
fn start(kind: &str, mtu: u32, mode: &str) -> (Option<i32>, String) {
    run_script(kind, mtu, mode, "off", "")
}

/// As [`start`], with `--xdp-pin-dir PINS` and `after` run in the same
/// namespace once synguard exited (stdout appended to the returned text).
fn run_script(kind: &str, mtu: u32, mode: &str, pins: &str, after: &str) -> (Option<i32>, String) {
    let devices = match kind {
        "bridge" => "ip link add d0 type bridge && ip link add d1 type bridge",
        "veth" => {
            "ip link add d0 type veth peer name p0 && ip link add d1 type veth peer name p1 \
             && ip link set p0 mtu \"$MTU\" && ip link set p0 up && ip link set p1 up"
        }
        // Peers that run a pass-everything XDP program: then a veth takes
        // redirected frames (xdp_features NDO_XMIT).
        "veth-xdp-peers" => {
            "ip link add d0 type veth peer name p0 && ip link add d1 type veth peer name p1 \
             && ip link set p0 mtu \"$MTU\" && ip link set p0 up && ip link set p1 up \
             && ip link set p0 xdpdrv obj \"$PASS\" sec xdp && ip link set p1 xdpdrv obj \"$PASS\" sec xdp"
        }
        // d0 already runs a program attached by netlink (as the benches' and
        // the lab's end hosts do).
        "veth-occupied" => {
            "ip link add d0 type veth peer name p0 && ip link add d1 type veth peer name p1 \
             && ip link set p0 mtu \"$MTU\" && ip link set p0 up && ip link set p1 up \
             && ip link set d0 xdpdrv obj \"$PASS\" sec xdp"
        }
        other => panic!("device kind {other}"),
    };
    let script = format!(
        "set -e; {devices}; ip link set d0 mtu \"$MTU\"; ip link set d0 up; ip link set d1 up; \
         timeout --preserve-status -s TERM 3 \"$BIN\" run --client-iface d0 --server-iface d1 \
         --protect 198.18.0.2:80 --metrics-listen off --control-socket off --xdp \"$MODE\" \
         --xdp-pin-dir \"$PINS\"{after}"
    );
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .env("BIN", env!("CARGO_BIN_EXE_synguard"))
        .env("MTU", mtu.to_string())
        .env("MODE", mode)
        .env("PINS", pins)
        .env(
            "PASS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/xdp_pass.o"),
        )
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .output()
        .expect("unshare (util-linux)");
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), err)
}

/// A bpffs base directory for one test, removed (with anything left in
/// it) when dropped, also when the test fails.
struct PinBase(std::path::PathBuf);

impl PinBase {
    fn new(name: &str) -> PinBase {
        PinBase(std::path::PathBuf::from(format!(
            "/sys/fs/bpf/synguard-test-{name}-{}",
            std::process::id()
        )))
    }
}

impl Drop for PinBase {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn one_error_line(err: &str) -> &str {
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "exactly one error line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    lines[0]
}

#[test]
fn native_refused_by_the_driver_is_one_clear_line() {
    let (code, err) = start("bridge", 1500, "native");
    assert_eq!(code, Some(1), "{err}");
    let line = one_error_line(&err);
    assert!(
        line.contains("`d0`") && line.contains("native XDP"),
        "names the interface and the mode: {line}"
    );
}

#[test]
fn an_interface_with_another_xdp_program_is_one_clear_line() {
    let cause = "`d0` already has an XDP program attached";
    let way_out = "ip link set dev d0 xdp off";
    for mode in ["native", "generic"] {
        let (code, err) = start("veth-occupied", 1500, mode);
        assert_eq!(code, Some(1), "{mode}: {err}");
        let line = one_error_line(&err);
        assert!(
            line.contains(cause) && line.contains(way_out),
            "{mode}: names the interface, the cause and the way out: {line}"
        );
    }
    // auto runs without the fast path when it cannot have one, and says why;
    // it does not try generic on an interface that refuses any second program.
    let (code, err) = start("veth-occupied", 1500, "auto");
    assert_eq!(code, Some(0), "{err}");
    let warn = err
        .lines()
        .find(|l| l.contains("XDP fast path off"))
        .unwrap_or_else(|| panic!("auto warns that the fast path is off: {err}"));
    assert!(warn.contains(cause) && warn.contains(way_out), "{warn}");
    assert!(!err.contains("trying generic"), "{err}");
}

#[test]
fn native_with_a_jumbo_mtu_is_one_clear_line() {
    let (code, err) = start("veth", 9000, "native");
    assert_eq!(code, Some(1), "{err}");
    let line = one_error_line(&err);
    assert!(
        line.contains("MTU 9000") && line.contains("generic"),
        "says why and what to do: {line}"
    );
}

#[test]
fn generic_attaches_and_detaches_on_exit() {
    let (code, err) = start("bridge", 1500, "generic");
    // timeout(1) sends SIGTERM after 3 s; synguard exits 0 on it (and
    // --preserve-status passes that on).
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("XDP fast path attached") && err.contains("mode=\"generic\""),
        "{err}"
    );
    assert!(err.contains("XDP program detached"), "{err}");
}

#[test]
fn auto_falls_back_to_generic_and_says_why() {
    let (code, err) = start("bridge", 1500, "auto");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("native XDP unavailable; trying generic XDP"),
        "{err}"
    );
    assert!(err.contains("mode=\"generic\""), "{err}");
}

#[test]
fn pinned_attachments_stay_after_exit_until_detach() {
    let base = PinBase::new("stay");
    let pins = base.0.display().to_string();
    // After the stop: what is pinned, then `synguard detach`, then what is
    // left (nothing).
    let after = "; echo \"pinned: $(ls \"$PINS\"/*/ | sort | tr '\\n' ' ')\"; \
                 \"$BIN\" detach --client-iface d0 --server-iface d1 --xdp-pin-dir \"$PINS\"; \
                 echo \"left: $(ls -A \"$PINS\" | wc -l)\"";
    let (code, out) = run_script("bridge", 1500, "generic", &pins, after);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("XDP data path left in place"),
        "the stop says it left the data path: {out}"
    );
    assert!(!out.contains("XDP program detached"), "{out}");
    assert!(
        out.contains("pinned: link-client-generic link-server-generic sg_flows "),
        "both attachments and the flow map are pinned: {out}"
    );
    assert!(
        out.contains("the XDP programs on d0 and d1 detach"),
        "detach says what it did: {out}"
    );
    assert!(out.contains("left: 0"), "detach removes everything: {out}");
}

#[test]
fn native_redirects_only_to_ports_that_take_xdp_frames() {
    // veth peers without XDP (and GRO off): their veths lack NDO_XMIT, so
    // a redirected frame would vanish; the program must not redirect.
    let (code, err) = start("veth", 1500, "native");
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("mode=\"native\""), "{err}");
    assert!(
        err.contains("forwards_to_client=false forwards_to_server=false"),
        "{err}"
    );
    assert!(err.contains("lack NDO_XMIT"), "says why: {err}");
    // Peers running XDP: both ports take redirected frames.
    let (code, err) = start("veth-xdp-peers", 1500, "native");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("forwards_to_client=true forwards_to_server=true"),
        "{err}"
    );
}

#[test]
fn pinned_attachments_in_another_mode_are_replaced_not_adopted() {
    let base = PinBase::new("mode");
    let pins = base.0.display().to_string();
    // A second run in native mode after a generic one left its pins.
    let after = "; timeout --preserve-status -s TERM 3 \"$BIN\" run --client-iface d0 \
                 --server-iface d1 --protect 198.18.0.2:80 --metrics-listen off \
                 --control-socket off --xdp native --xdp-pin-dir \"$PINS\"; \
                 echo \"pinned: $(ls \"$PINS\"/*/ | sort | tr '\\n' ' ')\"; \
                 \"$BIN\" detach --client-iface d0 --server-iface d1 --xdp-pin-dir \"$PINS\"";
    let (code, out) = run_script("veth-xdp-peers", 1500, "generic", &pins, after);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("cannot be adopted") && out.contains("they run in generic mode"),
        "{out}"
    );
    assert!(out.contains("mode=\"native\""), "{out}");
    assert!(
        out.contains("pinned: link-client-native link-server-native sg_flows "),
        "{out}"
    );
}
