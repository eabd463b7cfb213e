//! `synguard run` start-up failures give clear messages and a non-zero exit,
//! never a panic: missing interface, missing privilege, unreadable secret.
//! These fail before any interface is opened, so they touch no network.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synguard"))
        .arg("run")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("spawn synguard")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
}

#[test]
fn missing_interface_is_named() {
    let o = run(&[
        "--client-iface",
        "sgnope0",
        "--server-iface",
        "sgnope1",
        "--protect",
        "198.18.0.2:80",
        "--metrics-listen",
        "off",
    ]);
    assert_clean_failure(&o, "interface `sgnope0` not found");
}

#[test]
fn unreadable_secret_is_named() {
    let o = run(&[
        "--client-iface",
        "lo",
        "--server-iface",
        "sgnope1",
        "--protect",
        "198.18.0.2:80",
        "--secret-file",
        "/nonexistent/synguard-secret",
        "--metrics-listen",
        "off",
    ]);
    assert_clean_failure(&o, "/nonexistent/synguard-secret");
}

#[test]
fn bad_protect_address_is_a_usage_error() {
    let o = run(&[
        "--client-iface",
        "lo",
        "--server-iface",
        "lo2",
        "--protect",
        "198.18.0.300:80",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--protect"));
}

/// Without CAP_NET_RAW the AF_PACKET socket is refused; the message says
/// which capability is needed. Runs the binary as `nobody` via setpriv.
#[test]
fn missing_capability_is_explained() {
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            env!("CARGO_BIN_EXE_synguard"),
            "run",
        ])
        .args([
            "--client-iface",
            "lo",
            "--server-iface",
            "sgnope1",
            "--protect",
            "198.18.0.2:80",
            "--metrics-listen",
            "off",
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("setpriv (util-linux) must be installed");
    assert_clean_failure(&o, "CAP_NET_RAW");
}
