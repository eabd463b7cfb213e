//! `io.disable_offloads` at start-up against real veth devices: besides
//! GRO/GSO/TSO and the checksums, synguard turns off the receive aggregation
//! that has no legacy ethtool command (here GRO fraglist, the one of LRO,
//! hardware GRO and GRO fraglist a veth can switch on), says so, and with
//! `disable_offloads = false` touches nothing and warns what is on. Each case
//! runs synguard for at most 2 s in a private, unnamed network namespace
//! (`unshare --net`) that vanishes with the process. Needs root, unshare
//! (util-linux) and ethtool; `tests/run-all.sh` runs it as root.

use std::process::Command;

/// Two veth pairs d0/p0 and d1/p1, `ethtool -K d0 rx-gro-list on`, synguard
/// on d0/d1 with `[io] disable_offloads = DISABLE` for 2 s, then d0's
/// rx-gro-list line. Returns (synguard's exit code, its log + the line).
fn run(disable: bool) -> (Option<i32>, String) {
    let script = r#"set -e
ip link add d0 type veth peer name p0
ip link add d1 type veth peer name p1
for d in d0 p0 d1 p1; do ip link set "$d" up; done
ethtool -K d0 rx-gro-list on
ethtool -k d0 | grep -qx 'rx-gro-list: on' || { echo "precondition: rx-gro-list not on"; exit 90; }
cfg=$(mktemp)
cat >"$cfg" <<EOF
[interfaces]
client = "d0"
server = "d1"
[protect]
services = ["198.18.0.2:80"]
[metrics]
listen = "off"
[control]
socket = "off"
[io]
xdp = "off"
disable_offloads = $DISABLE
EOF
rc=0
timeout --preserve-status -s TERM 2 "$BIN" run --config "$cfg" || rc=$?
rm -f "$cfg"
echo "after: $(ethtool -k d0 | grep '^rx-gro-list:')"
exit "$rc"
"#;
    let out = Command::new("unshare")
        .args(["--net", "bash", "-c", script])
        .env("BIN", env!("CARGO_BIN_EXE_synguard"))
        .env("DISABLE", disable.to_string())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .output()
        .expect("unshare (util-linux)");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), text)
}

/// The first line of `text` that contains every one of `needles`.
fn line_with<'a>(text: &'a str, needles: &[&str]) -> &'a str {
    text.lines()
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| panic!("no line with {needles:?}: {text}"))
}

#[test]
fn receive_aggregation_is_turned_off_and_said() {
    let (code, text) = run(true);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("after: rx-gro-list: off"), "{text}");
    let d0 = line_with(&text, &["offloads turned off", "iface=\"d0\""]);
    assert!(d0.contains("rx-gro-list"), "the log names it: {d0}");
    // d1 had it off: nothing to say there.
    let d1 = line_with(&text, &["offloads turned off", "iface=\"d1\""]);
    assert!(!d1.contains("rx-gro-list"), "{d1}");
}

#[test]
fn kept_offloads_are_left_alone_and_named() {
    let (code, text) = run(false);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("after: rx-gro-list: on"), "{text}");
    let line = line_with(&text, &["io.disable_offloads = false", "iface=\"d0\""]);
    assert!(line.contains("rx-gro-list is on"), "{line}");
}
