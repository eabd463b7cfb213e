//! End-to-end tests of the `synguard` binary's config commands: exit codes,
//! stdout/stderr contract. Never opens interfaces (no `run` here).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn synguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synguard"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("spawn synguard")
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/synguard.toml")
}

/// A scratch path unique to this test process and `name`.
fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("synguard-cli-{}-{name}", std::process::id()))
}

#[test]
fn check_config_prints_resolved_toml() {
    let out = synguard(&["check-config", "--config", shipped().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table: toml::Table = toml::from_str(&stdout).expect("stdout is TOML");
    assert_eq!(table["interfaces"]["client"].as_str(), Some("gwc"));
    assert_eq!(table["handshake"]["synack_wscale"].as_integer(), Some(7));
    assert_eq!(table["syn_queue"]["syncookies"].as_str(), Some("auto"));
    assert_eq!(table["syn_queue"]["backlog"].as_integer(), Some(4096));
    assert_eq!(table["timeouts"]["msl_seconds"].as_integer(), Some(30));
    assert!(table["timeouts"].get("time_wait_seconds").is_none());
}

/// The shipped file with `from` replaced by `to`, run through check-config.
fn check_edited(name: &str, from: &str, to: &str) -> Output {
    let path = scratch(name);
    let original = std::fs::read_to_string(shipped()).unwrap();
    assert!(original.contains(from), "shipped file lacks `{from}`");
    std::fs::write(&path, original.replace(from, to)).unwrap();
    let out = synguard(&["check-config", "--config", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    out
}

#[test]
fn check_config_bad_syn_queue_value_names_the_key() {
    let out = check_edited("retries.toml", "synack_retries = 5", "synack_retries = 11");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(
        stderr.trim_end(),
        "error: syn_queue.synack_retries: 11 is out of range 0..=10"
    );
}

#[test]
fn check_config_rejects_old_time_wait_seconds() {
    // A file written for the old format: time_wait_seconds became msl_seconds.
    let out = check_edited(
        "old-time-wait.toml",
        "msl_seconds = 30",
        "time_wait_seconds = 60",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.starts_with("error: unknown key `time_wait_seconds` in [timeouts]")
            && stderr.contains("msl_seconds"),
        "{stderr}"
    );
}

#[test]
fn check_config_applies_flags() {
    let out = synguard(&[
        "check-config",
        "--config",
        shipped().to_str().unwrap(),
        "--protect",
        "[2001:db8::9]:443",
        "--metrics-listen",
        "off",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let table: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let services = table["protect"]["services"].as_array().unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].as_str(), Some("[2001:db8::9]:443"));
    assert_eq!(table["metrics"]["listen"].as_str(), Some("off"));
}

#[test]
fn check_config_bad_file_names_the_key() {
    let path = scratch("bad.toml");
    let text = std::fs::read_to_string(shipped())
        .unwrap()
        .replace("synack_wscale = 7", "synack_wscale = 15");
    std::fs::write(&path, text).unwrap();
    let out = synguard(&["check-config", "--config", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.starts_with("error: handshake.synack_wscale: 15 is out of range 0..=14"),
        "{stderr}"
    );
}

#[test]
fn check_config_missing_file_names_the_path() {
    let path = scratch("absent.toml");
    let out = synguard(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(path.to_str().unwrap()));
}

#[test]
fn bad_protect_flag_is_a_usage_error() {
    let out = synguard(&[
        "check-config",
        "--config",
        shipped().to_str().unwrap(),
        "--protect",
        "2001:db8::2:8080",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'2001:db8::2:8080'") && stderr.contains("IPv6 in brackets"),
        "{stderr}"
    );
}

#[test]
fn version_and_help() {
    let out = synguard(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = synguard(&["--help"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for word in ["run", "check-config", "keygen", "detach"] {
        assert!(stdout.contains(word), "{stdout}");
    }
}

#[test]

fn keygen_writes_a_private_secret() {
    use std::os::unix::fs::PermissionsExt as _;
    let path = scratch("secret");
    let _ = std::fs::remove_file(&path);
    let out = synguard(&["keygen", "--out", path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("wrote new cookie secret to {} (mode 0600)", path.display())
    );
    let meta = std::fs::metadata(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    // Refuses to overwrite without --force, succeeds with it.
    let again = synguard(&["keygen", "--out", path.to_str().unwrap()]);
    let forced = synguard(&["keygen", "--out", path.to_str().unwrap(), "--force"]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(text.len(), 33);
    assert!(text.ends_with('\n'));
    assert!(text.trim_end().chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(again.status.code(), Some(0));
    assert_eq!(forced.status.code(), Some(0));
}

#[test]
fn detach_needs_the_interfaces_and_says_what_it_removed() {
    let out = synguard(&["detach"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--client-iface (or --config) is required"),
        "{err}"
    );
    // Nothing pinned under a fresh base: says so, succeeds.
    let base = std::env::temp_dir().join(format!("synguard-cli-detach-{}", std::process::id()));
    let out = synguard(&[
        "detach",
        "--client-iface",
        "a0",
        "--server-iface",
        "a1",
        "--xdp-pin-dir",
        base.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing pinned at"));
}

#[test]
fn detach_with_pinning_off_in_the_config_says_nothing_is_pinned() {
    let dir = std::env::temp_dir().join(format!("synguard-cli-detach-off-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("g.toml");
    std::fs::write(
        &file,
        "[interfaces]\nclient = \"a0\"\nserver = \"a1\"\n\
         [protect]\nservices = [\"198.18.0.2:80\"]\n\
         [io]\nxdp_pin_dir = \"off\"\n",
    )
    .unwrap();
    let out = synguard(&["detach", "--config", file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("io.xdp_pin_dir is \"off\": nothing is pinned"),
        "{err}"
    );
}

/// Every instance configuration of the fleet example validates, and all of them
/// share one secret file and slot length (README "Running several gateways").
#[test]
fn fleet_example_configs_check_and_agree() {
    let mut shared = None;
    for n in 1..=3 {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("deploy/fleet/gw{n}.toml"));
        let out = synguard(&["check-config", "--config", path.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "gw{n}.toml: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let table: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
        let cookies = table["cookies"].to_string();
        assert_eq!(
            *shared.get_or_insert(cookies.clone()),
            cookies,
            "gw{n}.toml [cookies]"
        );
    }
}
