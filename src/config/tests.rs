//! Unit tests of config loading, validation and rendering.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::validate;
use super::*;
use crate::engine::{EngineConfig, InvalidAckAction, SyncookieMode};
use crate::io::IoConfig;

const SHIPPED: &str = include_str!("../../config/synguard.toml");

const MINIMAL: &str = r#"
[interfaces]
client = "c0"
server = "s0"
[protect]
services = ["198.18.0.2:8080"]
"#;

fn none() -> Overrides {
    Overrides::default()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn err(text: &str, ov: &Overrides) -> String {
    match load_str(text, ov) {
        Ok(s) => panic!("expected an error, got {s:?}"),
        Err(e) => e.to_string(),
    }
}

/// MINIMAL plus one `[section] key = value` line.
fn with(section: &str, line: &str) -> String {
    format!("{MINIMAL}\n[{section}]\n{line}\n")
}

#[test]
fn shipped_file_loads() {
    let s = load_str(SHIPPED, &none()).unwrap();
    assert_eq!(s.io.client_iface, "gwc");
    assert_eq!(s.io.server_iface, "gws");
    assert_eq!(
        s.engine.protected,
        vec![sa("198.18.0.2:8080"), sa("[2001:db8::2]:8080")]
    );
    // The shipped file states the defaults, so apart from the required keys
    // it must resolve to exactly what an empty file does; and it keeps the
    // flows across restarts in the package's StateDirectory.
    let mut minimal = load_str(
        "[interfaces]\nclient=\"gwc\"\nserver=\"gws\"\n[protect]\nservices=[\"198.18.0.2:8080\",\"[2001:db8::2]:8080\"]\n",
        &none(),
    )
    .unwrap();
    assert_eq!(minimal.flow_file, None, "off by default");
    minimal.flow_file = Some(PathBuf::from("/var/lib/synguard/flows.json"));
    assert_eq!(s, minimal);
}

#[test]
fn shipped_file_loads_from_disk() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/synguard.toml");
    let s = load(Some(&path), &none()).unwrap();
    assert_eq!(s.io.client_iface, "gwc");
}

#[test]
fn shipped_file_documents_every_key() {
    // render() writes every key of the format; each must appear in the
    // shipped file (possibly commented out, like secret_file).
    let mut s = load_str(MINIMAL, &none()).unwrap();
    s.secret_file = Some(PathBuf::from("/x"));
    for line in render(&s).lines() {
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        let documented = SHIPPED.lines().any(|l| {
            let l = l.trim_start_matches(['#', ' ']);
            l.starts_with(&format!("{key} ="))
        });
        assert!(documented, "key `{key}` is not in config/synguard.toml");
    }
}

#[test]
fn minimal_file_gives_documented_defaults() {
    let s = load_str(MINIMAL, &none()).unwrap();
    let engine = EngineConfig {
        protected: vec![sa("198.18.0.2:8080")],
        ..EngineConfig::default()
    };
    let io = IoConfig {
        client_iface: "c0".into(),
        server_iface: "s0".into(),
        ..IoConfig::default()
    };
    assert_eq!(
        s,
        Settings {
            engine,
            io,
            metrics_listen: Some(sa("127.0.0.1:9150")),
            secret_file: None,
            control_socket: Some("/run/synguard/control.sock".into()),
            flow_file: None,
            log_level: "info".into(),
        }
    );
}

#[test]
fn defaults_are_within_their_own_bounds() {
    let e = EngineConfig::default();
    let i = IoConfig::default();
    let cases: [(&str, i64, std::ops::RangeInclusive<i64>); 23] = [
        ("slot", e.cookie_slot_seconds as i64, validate::SLOT_SECONDS),
        ("mss4", e.synack_mss_v4.into(), validate::MSS_V4),
        ("mss6", e.synack_mss_v6.into(), validate::MSS_V6),
        ("win", e.synack_window.into(), validate::SYNACK_WINDOW),
        ("wscale", e.synack_wscale.into(), validate::WSCALE),
        (
            "rto",
            e.backend_syn_timeout_ms as i64,
            validate::BACKEND_SYN_TIMEOUT_MS,
        ),
        (
            "retries",
            e.backend_syn_retries.into(),
            validate::BACKEND_SYN_RETRIES,
        ),
        (
            "down_after",
            e.backend_down_after.into(),
            validate::BACKEND_DOWN_AFTER,
        ),
        ("backlog", e.backlog as i64, validate::BACKLOG),
        (
            "per_source",
            e.per_source_backlog as i64,
            validate::PER_SOURCE_BACKLOG,
        ),
        (
            "synack_retries",
            e.synack_retries.into(),
            validate::SYNACK_RETRIES,
        ),
        (
            "synack_rto",
            e.synack_timeout_ms as i64,
            validate::SYNACK_TIMEOUT_MS,
        ),
        (
            "cookie_hold",
            (e.cookie_hold_ms / 1000) as i64,
            validate::COOKIE_HOLD_SECONDS,
        ),
        ("flows", e.max_flows as i64, validate::MAX_FLOWS),
        (
            "held",
            e.held_bytes_per_flow as i64,
            validate::HELD_PER_FLOW,
        ),
        ("total", e.held_bytes_total as i64, validate::HELD_TOTAL),
        ("rst", e.rst_per_second.into(), validate::RST_PER_SECOND),
        (
            "idle",
            (e.established_idle_timeout_ms / 1000) as i64,
            validate::IDLE_SECONDS,
        ),
        (
            "fin_wait",
            (e.fin_wait_timeout_ms / 1000) as i64,
            validate::FIN_WAIT_SECONDS,
        ),
        (
            "close_wait",
            (e.close_wait_timeout_ms / 1000) as i64,
            validate::CLOSE_WAIT_SECONDS,
        ),
        (
            "last_ack",
            (e.last_ack_timeout_ms / 1000) as i64,
            validate::LAST_ACK_SECONDS,
        ),
        ("msl", (e.msl_ms / 1000) as i64, validate::MSL_SECONDS),
        ("rcvbuf", i.rcvbuf_bytes as i64, validate::RCVBUF_BYTES),
    ];
    for (name, v, range) in cases {
        assert!(range.contains(&v), "default {name} = {v} outside {range:?}");
    }
    assert!(e.per_source_backlog <= e.backlog);
    // Keys in seconds must be able to state the default exactly.
    for ms in [
        e.cookie_hold_ms,
        e.established_idle_timeout_ms,
        e.fin_wait_timeout_ms,
        e.close_wait_timeout_ms,
        e.last_ack_timeout_ms,
        e.msl_ms,
    ] {
        assert_eq!(ms % 1000, 0, "{ms} ms is not whole seconds");
    }
}

#[test]
fn syn_queue_and_timeout_defaults() {
    // The values config/synguard.toml and README document, independent of
    // EngineConfig::default() (so a change there must be a change here).
    let e = load_str(MINIMAL, &none()).unwrap().engine;
    assert_eq!(e.syncookies, SyncookieMode::Auto);
    assert_eq!(e.backlog, 4096);
    assert_eq!(e.per_source_backlog, 128);
    assert_eq!(e.synack_retries, 5);
    assert_eq!(e.synack_timeout_ms, 1000);
    assert_eq!(e.cookie_hold_ms, 30_000);
    assert_eq!(e.established_idle_timeout_ms, 7_440_000);
    assert_eq!(e.fin_wait_timeout_ms, 240_000);
    assert_eq!(e.close_wait_timeout_ms, 600_000);
    assert_eq!(e.last_ack_timeout_ms, 240_000);
    assert_eq!(e.msl_ms, 30_000);
    assert_eq!(e.time_wait_ms(), 60_000);
}

#[test]
fn every_range_check_rejects_and_names_the_key() {
    // (section, key, rejected value, expected message fragment)
    let cases: &[(&str, &str, &str, &str)] = &[
        ("cookies", "slot_seconds", "0", "0 is out of range 1..=3600"),
        ("cookies", "slot_seconds", "3601", "out of range 1..=3600"),
        (
            "handshake",
            "synack_mss_v4",
            "535",
            "out of range 536..=65495",
        ),
        (
            "handshake",
            "synack_mss_v4",
            "65496",
            "out of range 536..=65495",
        ),
        (
            "handshake",
            "synack_mss_v6",
            "1219",
            "out of range 1220..=65475",
        ),
        (
            "handshake",
            "synack_mss_v6",
            "65476",
            "out of range 1220..=65475",
        ),
        ("handshake", "synack_window", "0", "out of range 1..=65535"),
        (
            "handshake",
            "synack_window",
            "65536",
            "out of range 1..=65535",
        ),
        (
            "handshake",
            "synack_wscale",
            "15",
            "15 is out of range 0..=14",
        ),
        (
            "handshake",
            "synack_wscale",
            "-1",
            "-1 is out of range 0..=14",
        ),
        (
            "handshake",
            "backend_syn_timeout_ms",
            "99",
            "out of range 100..=60000",
        ),
        (
            "handshake",
            "backend_syn_timeout_ms",
            "60001",
            "out of range 100..=60000",
        ),
        (
            "handshake",
            "backend_syn_retries",
            "11",
            "out of range 0..=10",
        ),
        (
            "handshake",
            "backend_syn_retries",
            "-1",
            "out of range 0..=10",
        ),
        (
            "handshake",
            "backend_down_after",
            "1001",
            "out of range 0..=1000",
        ),
        (
            "syn_queue",
            "backlog",
            "0",
            "0 is out of range 1..=16777216",
        ),
        (
            "syn_queue",
            "backlog",
            "16777217",
            "out of range 1..=16777216",
        ),
        (
            "syn_queue",
            "per_source_backlog",
            "0",
            "0 is out of range 1..=16777216",
        ),
        (
            "syn_queue",
            "per_source_backlog",
            "-5",
            "-5 is out of range 1..=16777216",
        ),
        (
            "syn_queue",
            "synack_retries",
            "11",
            "11 is out of range 0..=10",
        ),
        (
            "syn_queue",
            "synack_retries",
            "-1",
            "-1 is out of range 0..=10",
        ),
        (
            "syn_queue",
            "synack_timeout_ms",
            "99",
            "99 is out of range 100..=60000",
        ),
        (
            "syn_queue",
            "synack_timeout_ms",
            "60001",
            "out of range 100..=60000",
        ),
        (
            "syn_queue",
            "cookie_hold_seconds",
            "-1",
            "-1 is out of range 0..=3600",
        ),
        (
            "syn_queue",
            "cookie_hold_seconds",
            "3601",
            "out of range 0..=3600",
        ),
        ("limits", "max_flows", "0", "must be at least 1"),
        (
            "limits",
            "held_bytes_per_flow",
            "0",
            "out of range 1..=1073741824",
        ),
        ("limits", "held_bytes_total", "0", "must be at least 1"),
        (
            "invalid_ack",
            "rst_per_second",
            "-1",
            "out of range 0..=1000000",
        ),
        (
            "invalid_ack",
            "rst_per_second",
            "1000001",
            "out of range 0..=1000000",
        ),
        (
            "timeouts",
            "established_idle_seconds",
            "0",
            "out of range 1..=604800",
        ),
        (
            "timeouts",
            "established_idle_seconds",
            "604801",
            "out of range 1..=604800",
        ),
        (
            "timeouts",
            "fin_wait_seconds",
            "0",
            "0 is out of range 1..=3600",
        ),
        (
            "timeouts",
            "fin_wait_seconds",
            "3601",
            "out of range 1..=3600",
        ),
        (
            "timeouts",
            "close_wait_seconds",
            "0",
            "0 is out of range 1..=86400",
        ),
        (
            "timeouts",
            "close_wait_seconds",
            "86401",
            "out of range 1..=86400",
        ),
        (
            "timeouts",
            "last_ack_seconds",
            "0",
            "0 is out of range 1..=3600",
        ),
        (
            "timeouts",
            "last_ack_seconds",
            "3601",
            "out of range 1..=3600",
        ),
        ("timeouts", "msl_seconds", "0", "0 is out of range 1..=300"),
        (
            "timeouts",
            "msl_seconds",
            "301",
            "301 is out of range 1..=300",
        ),
        (
            "io",
            "rcvbuf_bytes",
            "4095",
            "out of range 4096..=1073741823",
        ),
        (
            "io",
            "rcvbuf_bytes",
            "1073741824",
            "out of range 4096..=1073741823",
        ),
    ];
    for (section, key, value, fragment) in cases {
        let msg = err(&with(section, &format!("{key} = {value}")), &none());
        assert!(
            msg.starts_with(&format!("{section}.{key}: ")) && msg.contains(fragment),
            "{section}.{key} = {value}: got `{msg}`"
        );
    }
}

#[test]
fn range_edges_are_accepted() {
    let cases: &[(&str, &str)] = &[
        ("cookies", "slot_seconds = 1"),
        ("cookies", "slot_seconds = 3600"),
        ("handshake", "synack_mss_v4 = 536"),
        ("handshake", "synack_mss_v4 = 65495"),
        ("handshake", "synack_mss_v6 = 1220"),
        ("handshake", "synack_window = 1"),
        ("handshake", "synack_wscale = 0"),
        ("handshake", "synack_wscale = 14"),
        ("handshake", "backend_syn_retries = 0"),
        ("handshake", "backend_down_after = 0"),
        ("handshake", "backend_down_after = 1000"),
        ("invalid_ack", "rst_per_second = 0"),
        ("syn_queue", "backlog = 1\nper_source_backlog = 1"),
        (
            "syn_queue",
            "backlog = 16777216\nper_source_backlog = 16777216",
        ),
        ("syn_queue", "synack_retries = 0"),
        ("syn_queue", "synack_retries = 10"),
        ("syn_queue", "synack_timeout_ms = 100"),
        ("syn_queue", "synack_timeout_ms = 60000"),
        ("syn_queue", "cookie_hold_seconds = 0"),
        ("syn_queue", "cookie_hold_seconds = 3600"),
        ("timeouts", "fin_wait_seconds = 1"),
        ("timeouts", "fin_wait_seconds = 3600"),
        ("timeouts", "close_wait_seconds = 1"),
        ("timeouts", "close_wait_seconds = 86400"),
        ("timeouts", "last_ack_seconds = 1"),
        ("timeouts", "last_ack_seconds = 3600"),
        ("timeouts", "msl_seconds = 1"),
        ("timeouts", "msl_seconds = 300"),
    ];
    for (section, line) in cases {
        load_str(&with(section, line), &none()).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
}

#[test]
fn values_are_converted() {
    let text = format!(
        "{MINIMAL}
[handshake]
synack_wscale = 14
backend_syn_retries = 0
[invalid_ack]
action = \"drop\"
[syn_queue]
syncookies = \"always\"
backlog = 100
per_source_backlog = 100
synack_retries = 0
synack_timeout_ms = 250
cookie_hold_seconds = 0
[timeouts]
established_idle_seconds = 30
fin_wait_seconds = 5
close_wait_seconds = 86400
last_ack_seconds = 7
msl_seconds = 2
[io]
disable_offloads = false
[metrics]
listen = \"off\"
[cookies]
secret_file = \"/etc/synguard/secret\"
"
    );
    let s = load_str(&text, &none()).unwrap();
    assert_eq!(s.engine.synack_wscale, 14);
    assert_eq!(s.engine.backend_syn_retries, 0);
    assert_eq!(s.engine.invalid_ack_action, InvalidAckAction::Drop);
    assert_eq!(s.engine.syncookies, SyncookieMode::Always);
    assert_eq!(s.engine.backlog, 100);
    assert_eq!(s.engine.per_source_backlog, 100);
    assert_eq!(s.engine.synack_retries, 0);
    assert_eq!(s.engine.synack_timeout_ms, 250);
    assert_eq!(s.engine.cookie_hold_ms, 0);
    assert_eq!(s.engine.established_idle_timeout_ms, 30_000);
    assert_eq!(s.engine.fin_wait_timeout_ms, 5_000);
    assert_eq!(s.engine.close_wait_timeout_ms, 86_400_000);
    assert_eq!(s.engine.last_ack_timeout_ms, 7_000);
    assert_eq!(s.engine.msl_ms, 2_000);
    assert_eq!(s.engine.time_wait_ms(), 4_000);
    assert!(!s.io.disable_offloads);
    assert_eq!(s.metrics_listen, None);
    assert_eq!(s.secret_file, Some(PathBuf::from("/etc/synguard/secret")));
}

#[test]
fn held_total_below_per_flow_is_rejected() {
    let msg = err(
        &with(
            "limits",
            "held_bytes_per_flow = 1000\nheld_bytes_total = 999",
        ),
        &none(),
    );
    assert!(
        msg.starts_with("limits.held_bytes_total: 999 is less than limits.held_bytes_per_flow"),
        "{msg}"
    );
}

#[test]
fn syncookies_accepts_exactly_off_auto_always() {
    for (text, mode) in [
        ("off", SyncookieMode::Off),
        ("auto", SyncookieMode::Auto),
        ("always", SyncookieMode::Always),
    ] {
        let s = load_str(
            &with("syn_queue", &format!("syncookies = \"{text}\"")),
            &none(),
        )
        .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(s.engine.syncookies, mode);
    }
    // Other spellings, Linux's sysctl numbers (as strings or integers) and
    // other types are all rejected under the key's name.
    for value in [
        "\"Auto\"",
        "\"OFF\"",
        "\" auto\"",
        "\"on\"",
        "\"\"",
        "\"1\"",
        "1",
        "true",
        "[\"auto\"]",
    ] {
        let msg = err(
            &with("syn_queue", &format!("syncookies = {value}")),
            &none(),
        );
        assert!(
            msg.starts_with("syn_queue.syncookies: "),
            "syncookies = {value}: got `{msg}`"
        );
    }
    let msg = err(&with("syn_queue", "syncookies = \"on\""), &none());
    assert_eq!(
        msg,
        "syn_queue.syncookies: \"on\" is not \"off\", \"auto\" or \"always\""
    );
}

#[test]
fn per_source_backlog_above_backlog_is_rejected() {
    let msg = err(
        &with("syn_queue", "backlog = 100\nper_source_backlog = 101"),
        &none(),
    );
    assert_eq!(
        msg,
        "syn_queue.per_source_backlog: 101 is more than syn_queue.backlog (100)"
    );
    // Against the default backlog (4096) too.
    let msg = err(&with("syn_queue", "per_source_backlog = 4097"), &none());
    assert_eq!(
        msg,
        "syn_queue.per_source_backlog: 4097 is more than syn_queue.backlog (4096)"
    );
    // Equal is fine.
    let s = load_str(
        &with("syn_queue", "backlog = 100\nper_source_backlog = 100"),
        &none(),
    )
    .unwrap();
    assert_eq!(s.engine.per_source_backlog, 100);
}

#[test]
fn default_per_source_backlog_is_capped_by_a_smaller_backlog() {
    // The default 128 is not an error the operator never wrote: it shrinks.
    let s = load_str(&with("syn_queue", "backlog = 16"), &none()).unwrap();
    assert_eq!(s.engine.backlog, 16);
    assert_eq!(s.engine.per_source_backlog, 16);
    let s = load_str(&with("syn_queue", "backlog = 1000"), &none()).unwrap();
    assert_eq!(s.engine.per_source_backlog, 128);
}

#[test]
fn old_time_wait_seconds_is_an_unknown_key() {
    // Replaced by msl_seconds (TIME_WAIT = 2 x MSL); an old file must fail
    // loudly rather than be half-honoured.
    let msg = err(&with("timeouts", "time_wait_seconds = 60"), &none());
    assert!(
        msg.starts_with("unknown key `time_wait_seconds` in [timeouts]"),
        "{msg}"
    );
    assert!(msg.contains("msl_seconds"), "should list the keys: {msg}");
}

#[test]
fn bad_values_name_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("invalid_ack", "action = \"reject\"", "invalid_ack.action: "),
        ("limits", "max_flows = \"many\"", "limits.max_flows: "),
        (
            "limits",
            "challenge_ack_per_second = -1",
            "limits.challenge_ack_per_second: ",
        ),
        (
            "limits",
            "challenge_ack_per_second = 1000001",
            "limits.challenge_ack_per_second: ",
        ),
        (
            "handshake",
            "signed_segments = \"proxy\"",
            "handshake.signed_segments: ",
        ),
        ("syn_queue", "backlog = \"4096\"", "syn_queue.backlog: "),
        ("timeouts", "msl_seconds = 1.5", "timeouts.msl_seconds: "),
        ("io", "disable_offloads = 1", "io.disable_offloads: "),
        ("io", "xdp = \"fast\"", "io.xdp: "),
        ("io", "xdp = true", "io.xdp: "),
        ("io", "xdp_pin_dir = \"bpf/x\"", "io.xdp_pin_dir: "),
        ("io", "xdp_pin_dir = 3", "io.xdp_pin_dir: "),
        ("metrics", "listen = \"localhost\"", "metrics.listen: "),
        ("metrics", "listen = \"127.0.0.1:0\"", "metrics.listen: "),
        ("cookies", "secret_file = \"\"", "cookies.secret_file: "),
        ("log", "level = \"\"", "log.level: "),
        ("log", "level = \"foo=bar=baz[\"", "log.level: "),
    ];
    for (section, line, prefix) in cases {
        let msg = err(&with(section, line), &none());
        assert!(msg.starts_with(prefix), "{line}: got `{msg}`");
    }
}

#[test]
fn unknown_key_is_named_with_its_section() {
    let msg = err(&with("limits", "foo = 1"), &none());
    assert!(msg.starts_with("unknown key `foo` in [limits]"), "{msg}");
    assert!(
        msg.contains("max_flows"),
        "should list the known keys: {msg}"
    );

    let msg = err(&format!("{MINIMAL}\n[limit]\nmax_flows = 1\n"), &none());
    assert!(msg.starts_with("unknown section [limit]"), "{msg}");

    // A top-level key must come before the first table header.
    let msg = err(&format!("limits = 3\n{MINIMAL}"), &none());
    assert!(msg.starts_with("limits: "), "{msg}");
}

#[test]
fn syntax_error_is_located() {
    let msg = err("[interfaces]\nclient = gwc\n", &none());
    assert!(msg.starts_with("<string>:2:10: invalid TOML"), "{msg}");
}

#[test]
fn missing_required_keys_name_key_and_flag() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[interfaces]\nserver = \"s\"\n[protect]\nservices = [\"1.2.3.4:80\"]",
            "interfaces.client",
            "--client-iface",
        ),
        (
            "[interfaces]\nclient = \"c\"\n[protect]\nservices = [\"1.2.3.4:80\"]",
            "interfaces.server",
            "--server-iface",
        ),
        (
            "[interfaces]\nclient = \"c\"\nserver = \"s\"",
            "protect.services",
            "--protect",
        ),
    ];
    for (text, key, flag) in cases {
        let msg = err(text, &none());
        assert_eq!(
            msg,
            format!("{key}: missing (set it in the file or pass {flag})")
        );
    }
    // No file at all: the first required key is reported.
    let msg = load(None, &none()).unwrap_err().to_string();
    assert!(msg.starts_with("interfaces.client: missing"), "{msg}");
}

#[test]
fn everything_from_flags_without_a_file() {
    let ov = Overrides {
        client_iface: Some("a".into()),
        server_iface: Some("b".into()),
        protect: vec![sa("10.0.0.1:443")],
        ..none()
    };
    let s = load(None, &ov).unwrap();
    assert_eq!(s.io.client_iface, "a");
    assert_eq!(s.engine.protected, vec![sa("10.0.0.1:443")]);
}

#[test]
fn flags_override_file() {
    let ov = Overrides {
        client_iface: Some("cx".into()),
        server_iface: Some("sx".into()),
        protect: vec![],
        metrics_listen: Some(None),
        secret_file: Some(PathBuf::from("/run/secret")),
        control_socket: Some(Some(PathBuf::from("/tmp/sg.sock"))),
        flow_file: Some(None),
        log_level: Some("synguard=debug".into()),
        xdp: None,
        xdp_pin_dir: Some(None),
    };
    let s = load_str(SHIPPED, &ov).unwrap();
    assert_eq!(s.control_socket, Some(PathBuf::from("/tmp/sg.sock")));
    assert_eq!(
        s.flow_file, None,
        "--flow-file off wins over the shipped path"
    );
    assert_eq!(s.io.client_iface, "cx");
    assert_eq!(s.io.server_iface, "sx");
    assert_eq!(s.metrics_listen, None);
    assert_eq!(s.secret_file, Some(PathBuf::from("/run/secret")));
    assert_eq!(s.log_level, "synguard=debug");
    assert_eq!(s.io.xdp_pin_dir, None, "--xdp-pin-dir off");
    // Empty --protect keeps the file's list.
    assert_eq!(s.engine.protected.len(), 2);

    let ov = Overrides {
        metrics_listen: Some(Some(sa("[::1]:9999"))),
        ..none()
    };
    assert_eq!(
        load_str(SHIPPED, &ov).unwrap().metrics_listen,
        Some(sa("[::1]:9999"))
    );
}

#[test]
fn protect_flag_replaces_file_list() {
    let ov = Overrides {
        protect: vec![sa("[2001:db8::9]:443")],
        ..none()
    };
    let s = load_str(SHIPPED, &ov).unwrap();
    assert_eq!(s.engine.protected, vec![sa("[2001:db8::9]:443")]);
}

#[test]
fn flag_values_are_validated_under_the_flag_name() {
    let ov = Overrides {
        client_iface: Some("a/b".into()),
        ..none()
    };
    assert!(err(SHIPPED, &ov).starts_with("--client-iface: "));
    let ov = Overrides {
        protect: vec![sa("1.2.3.4:80"), sa("1.2.3.4:80")],
        ..none()
    };
    assert_eq!(err(SHIPPED, &ov), "--protect: 1.2.3.4:80 is listed twice");
    let ov = Overrides {
        log_level: Some(" ".into()),
        ..none()
    };
    assert!(err(SHIPPED, &ov).starts_with("--log-level: "));
}

#[test]
fn ipv6_services_parse() {
    let text = r#"
[interfaces]
client = "c"
server = "s"
[protect]
services = ["[2001:db8::2]:8080", " 198.18.0.2:80 ", "[::ffff:10.0.0.1]:22"]
"#;
    let s = load_str(text, &none()).unwrap();
    assert_eq!(
        s.engine.protected,
        vec![
            sa("[2001:db8::2]:8080"),
            sa("198.18.0.2:80"),
            sa("[::ffff:10.0.0.1]:22")
        ]
    );
}

#[test]
fn bad_services_are_rejected() {
    let cases: &[(&str, &str)] = &[
        ("[]", "protect.services: empty list"),
        (
            "[\"2001:db8::2:8080\"]",
            "protect.services[0]: \"2001:db8::2:8080\" is not ADDR:PORT",
        ),
        (
            "[\"1.2.3.4:80\", \"nope\"]",
            "protect.services[1]: \"nope\"",
        ),
        ("[\"1.2.3.4\"]", "protect.services[0]: "),
        ("[\"1.2.3.4:0\"]", "protect.services: 1.2.3.4:0: port 0"),
        (
            "[\"0.0.0.0:80\"]",
            "protect.services: 0.0.0.0:80: the unspecified",
        ),
        (
            "[\"[::]:80\"]",
            "protect.services: [::]:80: the unspecified",
        ),
        (
            "[\"224.0.0.1:80\"]",
            "protect.services: 224.0.0.1:80: a multicast",
        ),
        (
            "[\"[ff02::1]:80\"]",
            "protect.services: [ff02::1]:80: a multicast",
        ),
        (
            "[\"255.255.255.255:80\"]",
            "protect.services: 255.255.255.255:80: the broadcast",
        ),
        (
            "[\"1.2.3.4:80\", \"1.2.3.4:80\"]",
            "protect.services: 1.2.3.4:80 is listed twice",
        ),
        (
            "[\"[2001:db8::2]:80\", \"[2001:db8:0::2]:80\"]",
            "protect.services: [2001:db8::2]:80 is listed twice",
        ),
        ("[1]", "protect.services: "),
        ("\"1.2.3.4:80\"", "protect.services: "),
    ];
    for (list, prefix) in cases {
        let text =
            format!("[interfaces]\nclient = \"c\"\nserver = \"s\"\n[protect]\nservices = {list}\n");
        let msg = err(&text, &none());
        assert!(msg.starts_with(prefix), "{list}: got `{msg}`");
    }
    // Same address, different ports: two services.
    let text = "[interfaces]\nclient = \"c\"\nserver = \"s\"\n[protect]\nservices = [\"1.2.3.4:80\", \"1.2.3.4:443\"]\n";
    assert_eq!(load_str(text, &none()).unwrap().engine.protected.len(), 2);
}

#[test]
fn bad_interfaces_are_rejected() {
    let cases: &[(&str, &str, &str)] = &[
        ("", "s", "interfaces.client: empty"),
        ("c", "", "interfaces.server: empty"),
        (
            "abcdefghijklmnop",
            "s",
            "interfaces.client: \"abcdefghijklmnop\" is longer than 15",
        ),
        ("eth 0", "s", "interfaces.client: "),
        ("c", "a/b", "interfaces.server: "),
        ("..", "s", "interfaces.client: "),
        (
            "same",
            "same",
            "interfaces.server: \"same\" is also the client",
        ),
    ];
    for (c, s, prefix) in cases {
        let text = format!(
            "[interfaces]\nclient = \"{c}\"\nserver = \"{s}\"\n[protect]\nservices = [\"1.2.3.4:80\"]\n"
        );
        let msg = err(&text, &none());
        assert!(msg.starts_with(prefix), "{c}/{s}: got `{msg}`");
    }
    // 15 bytes is the longest valid name.
    let text = "[interfaces]\nclient = \"abcdefghijklmno\"\nserver = \"s\"\n[protect]\nservices = [\"1.2.3.4:80\"]\n";
    assert!(load_str(text, &none()).is_ok());
}

#[test]
fn render_round_trips() {
    let mut shipped = load_str(SHIPPED, &none()).unwrap();
    assert_eq!(load_str(&render(&shipped), &none()).unwrap(), shipped);

    // Non-default everything, including the optional and "off" cases and a
    // string that needs escaping.
    shipped.engine.invalid_ack_action = InvalidAckAction::Drop;
    shipped.engine.synack_wscale = 0;
    shipped.engine.held_bytes_total = 1 << 20;
    shipped.engine.established_idle_timeout_ms = 5_000;
    shipped.engine.syncookies = SyncookieMode::Off;
    shipped.engine.backlog = 65_536;
    shipped.engine.per_source_backlog = 1;
    shipped.engine.synack_retries = 10;
    shipped.engine.synack_timeout_ms = 1_234;
    shipped.engine.cookie_hold_ms = 0;
    shipped.engine.fin_wait_timeout_ms = 1_000;
    shipped.engine.close_wait_timeout_ms = 86_400_000;
    shipped.engine.last_ack_timeout_ms = 3_600_000;
    shipped.engine.msl_ms = 300_000;
    shipped.metrics_listen = None;
    shipped.secret_file = Some(PathBuf::from("/etc/syn\"guard/se\\cret"));
    shipped.log_level = "synguard=debug,warn".into();
    shipped.io.disable_offloads = false;
    shipped.io.xdp = crate::io::xdp::XdpSetting::Generic;
    shipped.flow_file = None;
    let text = render(&shipped);
    assert_eq!(load_str(&text, &none()).unwrap(), shipped, "{text}");

    shipped.metrics_listen = Some(sa("[::1]:9150"));
    shipped.secret_file = None;
    shipped.engine.syncookies = SyncookieMode::Always;
    assert_eq!(load_str(&render(&shipped), &none()).unwrap(), shipped);
}

#[test]
fn unreadable_file_names_the_path() {
    let path = Path::new("/nonexistent/synguard-test.toml");
    let msg = load(Some(path), &none()).unwrap_err().to_string();
    assert!(msg.contains("/nonexistent/synguard-test.toml"), "{msg}");
}

#[test]
fn syntax_error_from_file_names_the_path() {
    let path = std::env::temp_dir().join(format!("synguard-cfg-{}.toml", std::process::id()));
    std::fs::write(&path, "[limits\n").unwrap();
    let msg = load(Some(&path), &none()).unwrap_err().to_string();
    let _ = std::fs::remove_file(&path);
    assert!(msg.starts_with(&format!("{}:1:", path.display())), "{msg}");
}

#[test]
fn parse_listen_spellings() {
    assert_eq!(parse_listen("off"), Ok(None));
    assert_eq!(parse_listen("OFF"), Ok(None));
    assert_eq!(parse_listen(""), Ok(None));
    assert_eq!(parse_listen("0.0.0.0:9150"), Ok(Some(sa("0.0.0.0:9150"))));
    assert_eq!(parse_listen("[::1]:9150"), Ok(Some(sa("[::1]:9150"))));
    assert!(parse_listen("::1:9150").is_err());
    assert!(parse_listen("127.0.0.1:0").is_err());
}

#[test]
fn control_socket_from_file_off_and_relative() {
    let base =
        "[interfaces]\nclient = \"a\"\nserver = \"b\"\n[protect]\nservices = [\"198.18.0.2:80\"]\n";
    let s = load_str(
        &format!("{base}[control]\nsocket = \"/run/x.sock\"\n"),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(s.control_socket, Some(PathBuf::from("/run/x.sock")));
    let off = load_str(
        &format!("{base}[control]\nsocket = \"off\"\n"),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(off.control_socket, None);
    let err = load_str(
        &format!("{base}[control]\nsocket = \"rel.sock\"\n"),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("control.socket: "), "{err}");
    let flag_off = Overrides {
        control_socket: Some(None),
        ..Overrides::default()
    };
    assert_eq!(
        load_str(
            &format!("{base}[control]\nsocket = \"/run/x.sock\"\n"),
            &flag_off
        )
        .unwrap()
        .control_socket,
        None
    );
}

#[test]
fn flow_file_from_file_flag_off_and_relative() {
    let base =
        "[interfaces]\nclient = \"a\"\nserver = \"b\"\n[protect]\nservices = [\"198.18.0.2:80\"]\n";
    let with = |v: &str| format!("{base}[state]\nflow_file = \"{v}\"\n");
    let s = load_str(&with("/var/lib/x/flows.json"), &Overrides::default()).unwrap();
    assert_eq!(s.flow_file, Some(PathBuf::from("/var/lib/x/flows.json")));
    assert_eq!(
        load_str(&with("off"), &Overrides::default())
            .unwrap()
            .flow_file,
        None
    );
    let err = load_str(&with("flows.json"), &Overrides::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "state.flow_file: flows.json is not an absolute path"
    );
    let flag = |v: Option<&str>| Overrides {
        flow_file: Some(v.map(PathBuf::from)),
        ..Overrides::default()
    };
    assert_eq!(
        load_str(&with("/a/flows.json"), &flag(None))
            .unwrap()
            .flow_file,
        None,
        "--flow-file off wins"
    );
    assert_eq!(
        load_str(&with("/a/flows.json"), &flag(Some("/b/f.json")))
            .unwrap()
            .flow_file,
        Some(PathBuf::from("/b/f.json"))
    );
    let err = load_str(base, &flag(Some("rel"))).unwrap_err();
    assert!(err.to_string().starts_with("--flow-file: "), "{err}");
}

#[test]
fn xdp_flag_wins_over_the_file() {
    use crate::io::xdp::XdpSetting;
    let file = format!("{MINIMAL}[io]\nxdp = \"native\"\n");
    assert_eq!(load_str(&file, &none()).unwrap().io.xdp, XdpSetting::Native);
    let flag = Overrides {
        xdp: Some(XdpSetting::Off),
        ..Overrides::default()
    };
    assert_eq!(load_str(&file, &flag).unwrap().io.xdp, XdpSetting::Off);
    assert_eq!(super::parse_xdp("generic"), Ok(XdpSetting::Generic));
    assert!(super::parse_xdp("fast").unwrap_err().contains("\"off\""));
}

#[test]
fn xdp_pin_dir_defaults_and_can_be_switched_off() {
    let default = load_str(MINIMAL, &none()).unwrap().io.xdp_pin_dir;
    assert_eq!(default, Some(PathBuf::from("/sys/fs/bpf/synguard")));
    let file = format!("{MINIMAL}[io]\nxdp_pin_dir = \"off\"\n");
    assert_eq!(load_str(&file, &none()).unwrap().io.xdp_pin_dir, None);
    let file = format!("{MINIMAL}[io]\nxdp_pin_dir = \"/sys/fs/bpf/gw1\"\n");
    assert_eq!(
        load_str(&file, &none()).unwrap().io.xdp_pin_dir,
        Some(PathBuf::from("/sys/fs/bpf/gw1"))
    );
    let flag = Overrides {
        xdp_pin_dir: Some(Some(PathBuf::from("relative"))),
        ..Overrides::default()
    };
    let err = load_str(MINIMAL, &flag).unwrap_err().to_string();
    assert!(err.contains("--xdp-pin-dir"), "{err}");
}

#[test]
fn signed_segments_and_challenge_ack_budget_are_read() {
    use crate::engine::SignedSegmentAction;
    let s = load_str(
        &format!(
            "{MINIMAL}[handshake]\nsigned_segments = \"drop\"\n\
             [limits]\nchallenge_ack_per_second = 0\n"
        ),
        &none(),
    )
    .unwrap();
    assert_eq!(s.engine.signed_segments, SignedSegmentAction::Drop);
    assert_eq!(s.engine.challenge_ack_per_second, 0);
    let d = load_str(MINIMAL, &none()).unwrap();
    assert_eq!(d.engine.signed_segments, SignedSegmentAction::Bridge);
    assert_eq!(d.engine.challenge_ack_per_second, 1000);
}
