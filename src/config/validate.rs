//! File values + CLI overrides -> `Settings`: applies defaults (the Default
//! impls of EngineConfig/IoConfig), range-checks every value and names the key
//! (or flag) on failure. Never reads files or parses TOML.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use super::file::{ActionName, FileConfig, SignedName};
use super::{ConfigError, Overrides, Settings};
use crate::engine::{EngineConfig, InvalidAckAction, SignedSegmentAction, SyncookieMode};
use crate::io::IoConfig;

// Bounds. Each is the sane envelope for the setting, not a tuning hint.

pub(crate) const SLOT_SECONDS: RangeInclusive<i64> = 1..=3600;
/// RFC 1122 minimum IPv4 MSS up to the largest payload of a 64 KiB IPv4
/// datagram (65535 - 20 - 20).
pub(crate) const MSS_V4: RangeInclusive<i64> = 536..=65495;
/// IPv6 minimum MTU 1280 - 60 up to 65535 - 60 (jumbograms aside).
pub(crate) const MSS_V6: RangeInclusive<i64> = 1220..=65475;
/// A zero window in the SYN-ACK would stall every client (design: the SYN-ACK
/// advertises a real window).
pub(crate) const SYNACK_WINDOW: RangeInclusive<i64> = 1..=65535;
/// RFC 7323 section 2.3: shift counts above 14 are invalid.
pub(crate) const WSCALE: RangeInclusive<i64> = 0..=14;
pub(crate) const BACKEND_SYN_TIMEOUT_MS: RangeInclusive<i64> = 100..=60_000;
pub(crate) const BACKEND_SYN_RETRIES: RangeInclusive<i64> = 0..=10;
pub(crate) const BACKEND_DOWN_AFTER: RangeInclusive<i64> = 0..=1000;
/// Half-open queue entries: at least one, at most 2^24.
pub(crate) const BACKLOG: RangeInclusive<i64> = 1..=(1 << 24);
/// Checked against this first, then against the resolved backlog.
pub(crate) const PER_SOURCE_BACKLOG: RangeInclusive<i64> = 1..=(1 << 24);
/// Linux tcp_synack_retries. The timeout doubles without a cap, so 10 retries
/// from a 1 s start already keep an entry for 2047 s (about 34 minutes).
pub(crate) const SYNACK_RETRIES: RangeInclusive<i64> = 0..=10;
pub(crate) const SYNACK_TIMEOUT_MS: RangeInclusive<i64> = 100..=60_000;
/// 0: leave cookie mode as soon as the queue has room again; at most an hour.
pub(crate) const COOKIE_HOLD_SECONDS: RangeInclusive<i64> = 0..=3600;
pub(crate) const MAX_FLOWS: RangeInclusive<i64> = 1..=i64::MAX;
/// Per-flow hold budget: at least a byte, at most 1 GiB.
pub(crate) const HELD_PER_FLOW: RangeInclusive<i64> = 1..=(1 << 30);
pub(crate) const HELD_TOTAL: RangeInclusive<i64> = 1..=i64::MAX;
pub(crate) const RST_PER_SECOND: RangeInclusive<i64> = 0..=1_000_000;
pub(crate) const CHALLENGE_ACK_PER_SECOND: RangeInclusive<i64> = 0..=1_000_000;
/// One second up to a week.
pub(crate) const IDLE_SECONDS: RangeInclusive<i64> = 1..=604_800;
/// FIN_WAIT_1, FIN_WAIT_2 and CLOSING idle: one second up to an hour.
pub(crate) const FIN_WAIT_SECONDS: RangeInclusive<i64> = 1..=3600;
/// CLOSE_WAIT idle: the server may legitimately take long to close its side;
/// one second up to a day.
pub(crate) const CLOSE_WAIT_SECONDS: RangeInclusive<i64> = 1..=86_400;
pub(crate) const LAST_ACK_SECONDS: RangeInclusive<i64> = 1..=3600;
/// MSL: one second up to five minutes (TIME_WAIT is twice this; RFC 9293
/// suggests 2 minutes, Linux effectively uses 30 s).
pub(crate) const MSL_SECONDS: RangeInclusive<i64> = 1..=300;
/// The kernel clamps SO_RCVBUF(FORCE) to INT_MAX / 2; below a page is useless.
pub(crate) const RCVBUF_BYTES: RangeInclusive<i64> = 4096..=(i32::MAX as i64 / 2);

/// Linux IFNAMSIZ is 16 including the terminating NUL.
const IFNAME_MAX: usize = 15;

pub(crate) fn resolve(file: FileConfig, ov: &Overrides) -> Result<Settings, ConfigError> {
    let ed = EngineConfig::default();
    let iod = IoConfig::default();

    let (client_iface, client_key) = pick(
        ov.client_iface.clone(),
        "--client-iface",
        file.interfaces.client,
        "interfaces.client",
    )?;
    check_ifname(client_key, &client_iface)?;
    let (server_iface, server_key) = pick(
        ov.server_iface.clone(),
        "--server-iface",
        file.interfaces.server,
        "interfaces.server",
    )?;
    check_ifname(server_key, &server_iface)?;
    if client_iface == server_iface {
        return Err(ConfigError::invalid(
            server_key,
            format!("\"{server_iface}\" is also the client interface; the gateway sits between two distinct ports"),
        ));
    }

    let protected = protected(file.protect.services, &ov.protect)?;

    let h = file.handshake;
    let limits = file.limits;
    let held_bytes_per_flow = int(
        "limits.held_bytes_per_flow",
        limits.held_bytes_per_flow,
        ed.held_bytes_per_flow,
        HELD_PER_FLOW,
    )?;
    let held_bytes_total = int(
        "limits.held_bytes_total",
        limits.held_bytes_total,
        ed.held_bytes_total,
        HELD_TOTAL,
    )?;
    if held_bytes_total < held_bytes_per_flow {
        return Err(ConfigError::invalid(
            "limits.held_bytes_total",
            format!(
                "{held_bytes_total} is less than limits.held_bytes_per_flow ({held_bytes_per_flow})"
            ),
        ));
    }

    let q = file.syn_queue;
    let syncookies = match q.syncookies.as_deref() {
        None => ed.syncookies,
        Some(text) => syncookie_mode(text)?,
    };
    let backlog: usize = int("syn_queue.backlog", q.backlog, ed.backlog, BACKLOG)?;
    let per_source_backlog: usize = match q.per_source_backlog {
        // The default share is capped by a smaller configured backlog rather
        // than failing on a key the operator never wrote.
        None => ed.per_source_backlog.min(backlog),
        Some(v) => {
            let v: usize = int(
                "syn_queue.per_source_backlog",
                Some(v),
                0,
                PER_SOURCE_BACKLOG,
            )?;
            if v > backlog {
                return Err(ConfigError::invalid(
                    "syn_queue.per_source_backlog",
                    format!("{v} is more than syn_queue.backlog ({backlog})"),
                ));
            }
            v
        }
    };

    let t = file.timeouts;
    let engine = EngineConfig {
        protected,
        cookie_slot_seconds: int(
            "cookies.slot_seconds",
            file.cookies.slot_seconds,
            ed.cookie_slot_seconds,
            SLOT_SECONDS,
        )?,
        synack_mss_v4: int(
            "handshake.synack_mss_v4",
            h.synack_mss_v4,
            ed.synack_mss_v4,
            MSS_V4,
        )?,
        synack_mss_v6: int(
            "handshake.synack_mss_v6",
            h.synack_mss_v6,
            ed.synack_mss_v6,
            MSS_V6,
        )?,
        synack_window: int(
            "handshake.synack_window",
            h.synack_window,
            ed.synack_window,
            SYNACK_WINDOW,
        )?,
        synack_wscale: int(
            "handshake.synack_wscale",
            h.synack_wscale,
            ed.synack_wscale,
            WSCALE,
        )?,
        syncookies,
        backlog,
        per_source_backlog,
        synack_retries: int(
            "syn_queue.synack_retries",
            q.synack_retries,
            ed.synack_retries,
            SYNACK_RETRIES,
        )?,
        synack_timeout_ms: int(
            "syn_queue.synack_timeout_ms",
            q.synack_timeout_ms,
            ed.synack_timeout_ms,
            SYNACK_TIMEOUT_MS,
        )?,
        cookie_hold_ms: seconds_to_ms(
            "syn_queue.cookie_hold_seconds",
            q.cookie_hold_seconds,
            ed.cookie_hold_ms,
            COOKIE_HOLD_SECONDS,
        )?,
        backend_syn_timeout_ms: int(
            "handshake.backend_syn_timeout_ms",
            h.backend_syn_timeout_ms,
            ed.backend_syn_timeout_ms,
            BACKEND_SYN_TIMEOUT_MS,
        )?,
        backend_syn_retries: int(
            "handshake.backend_syn_retries",
            h.backend_syn_retries,
            ed.backend_syn_retries,
            BACKEND_SYN_RETRIES,
        )?,
        backend_down_after: int(
            "handshake.backend_down_after",
            h.backend_down_after,
            ed.backend_down_after,
            BACKEND_DOWN_AFTER,
        )?,
        signed_segments: match h.signed_segments {
            None => ed.signed_segments,
            Some(SignedName::Bridge) => SignedSegmentAction::Bridge,
            Some(SignedName::Drop) => SignedSegmentAction::Drop,
        },
        max_flows: int(
            "limits.max_flows",
            limits.max_flows,
            ed.max_flows,
            MAX_FLOWS,
        )?,
        held_bytes_per_flow,
        held_bytes_total,
        invalid_ack_action: match file.invalid_ack.action {
            None => ed.invalid_ack_action,
            Some(ActionName::Rst) => InvalidAckAction::Rst,
            Some(ActionName::Drop) => InvalidAckAction::Drop,
        },
        rst_per_second: int(
            "invalid_ack.rst_per_second",
            file.invalid_ack.rst_per_second,
            ed.rst_per_second,
            RST_PER_SECOND,
        )?,
        challenge_ack_per_second: int(
            "limits.challenge_ack_per_second",
            limits.challenge_ack_per_second,
            ed.challenge_ack_per_second,
            CHALLENGE_ACK_PER_SECOND,
        )?,
        established_idle_timeout_ms: seconds_to_ms(
            "timeouts.established_idle_seconds",
            t.established_idle_seconds,
            ed.established_idle_timeout_ms,
            IDLE_SECONDS,
        )?,
        fin_wait_timeout_ms: seconds_to_ms(
            "timeouts.fin_wait_seconds",
            t.fin_wait_seconds,
            ed.fin_wait_timeout_ms,
            FIN_WAIT_SECONDS,
        )?,
        close_wait_timeout_ms: seconds_to_ms(
            "timeouts.close_wait_seconds",
            t.close_wait_seconds,
            ed.close_wait_timeout_ms,
            CLOSE_WAIT_SECONDS,
        )?,
        last_ack_timeout_ms: seconds_to_ms(
            "timeouts.last_ack_seconds",
            t.last_ack_seconds,
            ed.last_ack_timeout_ms,
            LAST_ACK_SECONDS,
        )?,
        msl_ms: seconds_to_ms(
            "timeouts.msl_seconds",
            t.msl_seconds,
            ed.msl_ms,
            MSL_SECONDS,
        )?,
    };

    let io = IoConfig {
        client_iface,
        server_iface,
        rcvbuf_bytes: int(
            "io.rcvbuf_bytes",
            file.io.rcvbuf_bytes,
            iod.rcvbuf_bytes,
            RCVBUF_BYTES,
        )?,
        disable_offloads: file.io.disable_offloads.unwrap_or(iod.disable_offloads),
        xdp: match (ov.xdp, file.io.xdp.as_deref()) {
            (Some(flag), _) => flag,
            (None, None) => iod.xdp,
            (None, Some(text)) => {
                super::parse_xdp(text).map_err(|m| ConfigError::invalid("io.xdp", m))?
            }
        },
        xdp_pin_dir: {
            let (dir, key) = match (&ov.xdp_pin_dir, file.io.xdp_pin_dir.as_deref()) {
                (Some(flag), _) => (flag.clone(), "--xdp-pin-dir"),
                (None, Some(text)) => (super::parse_control_socket(text), "io.xdp_pin_dir"),
                (None, None) => (iod.xdp_pin_dir, "io.xdp_pin_dir"),
            };
            if let Some(p) = dir.as_ref().filter(|p| p.is_relative()) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "{:?} is not an absolute path (or \"off\")",
                        p.display().to_string()
                    ),
                ));
            }
            dir
        },
    };

    let metrics_listen = match (ov.metrics_listen, file.metrics.listen) {
        (Some(flag), _) => flag,
        (None, Some(text)) => {
            super::parse_listen(&text).map_err(|m| ConfigError::invalid("metrics.listen", m))?
        }
        (None, None) => Some(super::DEFAULT_METRICS_LISTEN),
    };

    let secret_file = match (&ov.secret_file, file.cookies.secret_file) {
        (Some(p), _) => Some(check_path("--secret-file", p.clone())?),
        (None, Some(s)) => Some(check_path("cookies.secret_file", PathBuf::from(s))?),
        (None, None) => None,
    };

    let control_socket = match (&ov.control_socket, file.control.socket) {
        (Some(flag), _) => flag.clone(),
        (None, Some(text)) => super::parse_control_socket(&text),
        (None, None) => Some(PathBuf::from(super::DEFAULT_CONTROL_SOCKET)),
    };
    if let Some(p) = &control_socket {
        if p.is_relative() {
            return Err(ConfigError::invalid(
                "control.socket",
                format!("{} is not an absolute path", p.display()),
            ));
        }
    }

    let (flow_file, flow_key) = match (&ov.flow_file, file.state.flow_file) {
        (Some(flag), _) => (flag.clone(), "--flow-file"),
        (None, Some(text)) => (super::parse_flow_file(&text), "state.flow_file"),
        (None, None) => (None, "state.flow_file"),
    };
    if let Some(p) = &flow_file {
        if p.is_relative() {
            return Err(ConfigError::invalid(
                flow_key,
                format!("{} is not an absolute path", p.display()),
            ));
        }
    }

    let (log_level, log_key) = match (&ov.log_level, file.log.level) {
        (Some(l), _) => (l.clone(), "--log-level"),
        (None, Some(l)) => (l, "log.level"),
        (None, None) => (super::DEFAULT_LOG_LEVEL.to_string(), "log.level"),
    };
    check_log_level(log_key, &log_level)?;

    Ok(Settings {
        engine,
        io,
        metrics_listen,
        secret_file,
        control_socket,
        flow_file,
        log_level,
    })
}

/// A required string: the flag wins over the file; returns the value and the
/// name to blame in later errors.
fn pick(
    flag: Option<String>,
    flag_name: &'static str,
    file: Option<String>,
    key: &'static str,
) -> Result<(String, &'static str), ConfigError> {
    match (flag, file) {
        (Some(v), _) => Ok((v, flag_name)),
        (None, Some(v)) => Ok((v, key)),
        (None, None) => Err(ConfigError::Missing {
            key,
            flag: flag_name,
        }),
    }
}

/// Mirrors the kernel's dev_valid_name(), so a bad name fails here with the
/// key rather than later as an opaque ioctl error.
fn check_ifname(key: &str, name: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| Err(ConfigError::invalid(key, format!("\"{name}\" {why}")));
    if name.is_empty() {
        return Err(ConfigError::invalid(key, "empty interface name"));
    }
    if name.len() > IFNAME_MAX {
        return bad("is longer than 15 bytes (IFNAMSIZ)");
    }
    if name == "." || name == ".." {
        return bad("is not a valid interface name");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return bad("contains '/', ':' or whitespace");
    }
    Ok(())
}

/// The protected list: `--protect` replaces the file's list entirely (so an
/// operator can narrow protection without editing the file).
fn protected(
    file: Option<Vec<String>>,
    flags: &[SocketAddr],
) -> Result<Vec<SocketAddr>, ConfigError> {
    let (addrs, key) = if !flags.is_empty() {
        (flags.to_vec(), "--protect")
    } else {
        let Some(entries) = file else {
            return Err(ConfigError::Missing {
                key: "protect.services",
                flag: "--protect",
            });
        };
        let mut addrs = Vec::with_capacity(entries.len());
        for (i, text) in entries.iter().enumerate() {
            let addr = text.trim().parse::<SocketAddr>().map_err(|_| {
                ConfigError::invalid(
                    format!("protect.services[{i}]"),
                    format!(
                        "\"{text}\" is not ADDR:PORT (IPv6 in brackets, e.g. [2001:db8::2]:8080)"
                    ),
                )
            })?;
            addrs.push(addr);
        }
        (addrs, "protect.services")
    };
    if addrs.is_empty() {
        return Err(ConfigError::invalid(
            key,
            "empty list; at least one service is required",
        ));
    }
    let mut seen = HashSet::new();
    for addr in &addrs {
        check_service(key, addr)?;
        // Compare (ip, port) only: flow info and scope ids do not appear in
        // the packets the engine matches against.
        if !seen.insert((addr.ip(), addr.port())) {
            return Err(ConfigError::invalid(key, format!("{addr} is listed twice")));
        }
    }
    Ok(addrs)
}

fn check_service(key: &str, addr: &SocketAddr) -> Result<(), ConfigError> {
    let why = if addr.port() == 0 {
        "port 0 is not a service port"
    } else if addr.ip().is_unspecified() {
        "the unspecified address matches no real destination"
    } else if addr.ip().is_multicast() {
        "a multicast address cannot be a TCP service"
    } else if matches!(addr.ip(), IpAddr::V4(v4) if v4.is_broadcast()) {
        "the broadcast address cannot be a TCP service"
    } else {
        return Ok(());
    };
    Err(ConfigError::invalid(key, format!("{addr}: {why}")))
}

fn check_path(key: &str, path: PathBuf) -> Result<PathBuf, ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(ConfigError::invalid(
            key,
            "empty path (omit the key for a random per-start secret)",
        ));
    }
    Ok(path)
}

fn check_log_level(key: &str, level: &str) -> Result<(), ConfigError> {
    if level.trim().is_empty() {
        return Err(ConfigError::invalid(
            key,
            "empty filter (use e.g. \"info\" or \"synguard=debug\")",
        ));
    }
    tracing_subscriber::EnvFilter::try_new(level)
        .map(|_| ())
        .map_err(|e| ConfigError::invalid(key, format!("\"{level}\" is not a tracing filter: {e}")))
}

/// Exactly the three lowercase spellings; anything else (including Linux's
/// numbers) is rejected with the accepted list.
fn syncookie_mode(text: &str) -> Result<SyncookieMode, ConfigError> {
    [
        SyncookieMode::Off,
        SyncookieMode::Auto,
        SyncookieMode::Always,
    ]
    .into_iter()
    .find(|m| m.as_str() == text)
    .ok_or_else(|| {
        ConfigError::invalid(
            "syn_queue.syncookies",
            format!("\"{text}\" is not \"off\", \"auto\" or \"always\""),
        )
    })
}

/// Range-check an optional integer; `None` yields the default unchecked (the
/// defaults are in range by construction, a test checks that).
fn int<T: TryFrom<i64>>(
    key: &str,
    value: Option<i64>,
    default: T,
    range: RangeInclusive<i64>,
) -> Result<T, ConfigError> {
    let Some(v) = value else {
        return Ok(default);
    };
    if !range.contains(&v) {
        let message = if *range.end() == i64::MAX {
            format!("{v} is out of range: must be at least {}", range.start())
        } else {
            format!("{v} is out of range {}..={}", range.start(), range.end())
        };
        return Err(ConfigError::invalid(key, message));
    }
    T::try_from(v)
        .map_err(|_| ConfigError::invalid(key, format!("{v} is too large for this platform")))
}

fn seconds_to_ms(
    key: &str,
    value: Option<i64>,
    default_ms: u64,
    range: RangeInclusive<i64>,
) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default_ms),
        // Bounded above by the range, so the product cannot overflow.
        Some(_) => Ok(int::<u64>(key, value, 0, range)? * 1000),
    }
}
