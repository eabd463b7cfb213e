//! Settings -> TOML text in the config file's own format, so that
//! `check-config` shows what the gateway will actually use and its output can
//! be fed back as a config file. Never validates (Settings already is).

use std::fmt::Write as _;

use super::Settings;
use crate::engine::InvalidAckAction;

/// Render resolved settings as a complete config file. Loading the result
/// gives back equal `Settings`, except for what TOML cannot carry: a
/// non-UTF-8 secret path (rendered lossily) and `*_seconds` durations that
/// are not whole seconds (rounded up; those keys take only seconds).
pub fn render(s: &Settings) -> String {
    let e = &s.engine;
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(
        out,
        "# synguard configuration as resolved (file + flags + defaults)"
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "[interfaces]");
    let _ = writeln!(out, "client = {}", quote(&s.io.client_iface));
    let _ = writeln!(out, "server = {}", quote(&s.io.server_iface));
    let _ = writeln!(out);
    let _ = writeln!(out, "[protect]");
    let services: Vec<String> = e.protected.iter().map(|a| quote(&a.to_string())).collect();
    let _ = writeln!(out, "services = [{}]", services.join(", "));
    let _ = writeln!(out);
    let _ = writeln!(out, "[cookies]");
    match &s.secret_file {
        Some(p) => {
            let _ = writeln!(out, "secret_file = {}", quote(&p.to_string_lossy()));
        }
        None => {
            let _ = writeln!(out, "# secret_file not set: random secret per start");
        }
    }
    let _ = writeln!(out, "slot_seconds = {}", e.cookie_slot_seconds);
    let _ = writeln!(out);
    let _ = writeln!(out, "[handshake]");
    let _ = writeln!(out, "synack_mss_v4 = {}", e.synack_mss_v4);
    let _ = writeln!(out, "synack_mss_v6 = {}", e.synack_mss_v6);
    let _ = writeln!(out, "synack_window = {}", e.synack_window);
    let _ = writeln!(out, "synack_wscale = {}", e.synack_wscale);
    let _ = writeln!(out, "backend_syn_timeout_ms = {}", e.backend_syn_timeout_ms);
    let _ = writeln!(out, "backend_syn_retries = {}", e.backend_syn_retries);
    let _ = writeln!(out, "backend_down_after = {}", e.backend_down_after);
    let _ = writeln!(
        out,
        "signed_segments = {}",
        quote(e.signed_segments.as_str())
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "[syn_queue]");
    let _ = writeln!(out, "syncookies = {}", quote(e.syncookies.as_str()));
    let _ = writeln!(out, "backlog = {}", e.backlog);
    let _ = writeln!(out, "per_source_backlog = {}", e.per_source_backlog);
    let _ = writeln!(out, "synack_retries = {}", e.synack_retries);
    let _ = writeln!(out, "synack_timeout_ms = {}", e.synack_timeout_ms);
    let _ = writeln!(
        out,
        "cookie_hold_seconds = {}",
        e.cookie_hold_ms.div_ceil(1000)
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "[limits]");
    let _ = writeln!(out, "max_flows = {}", e.max_flows);
    let _ = writeln!(out, "held_bytes_per_flow = {}", e.held_bytes_per_flow);
    let _ = writeln!(out, "held_bytes_total = {}", e.held_bytes_total);
    let _ = writeln!(
        out,
        "challenge_ack_per_second = {}",
        e.challenge_ack_per_second
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "[invalid_ack]");
    let action = match e.invalid_ack_action {
        InvalidAckAction::Rst => "rst",
        InvalidAckAction::Drop => "drop",
    };
    let _ = writeln!(out, "action = {}", quote(action));
    let _ = writeln!(out, "rst_per_second = {}", e.rst_per_second);
    let _ = writeln!(out);
    let _ = writeln!(out, "[timeouts]");
    let _ = writeln!(
        out,
        "established_idle_seconds = {}",
        e.established_idle_timeout_ms.div_ceil(1000)
    );
    let _ = writeln!(
        out,
        "fin_wait_seconds = {}",
        e.fin_wait_timeout_ms.div_ceil(1000)
    );
    let _ = writeln!(
        out,
        "close_wait_seconds = {}",
        e.close_wait_timeout_ms.div_ceil(1000)
    );
    let _ = writeln!(
        out,
        "last_ack_seconds = {}",
        e.last_ack_timeout_ms.div_ceil(1000)
    );
    let _ = writeln!(out, "msl_seconds = {}", e.msl_ms.div_ceil(1000));
    let _ = writeln!(out);
    let _ = writeln!(out, "[metrics]");
    let listen = match s.metrics_listen {
        Some(addr) => addr.to_string(),
        None => "off".to_string(),
    };
    let _ = writeln!(out, "listen = {}", quote(&listen));
    let _ = writeln!(out);
    let _ = writeln!(out, "[control]");
    let _ = writeln!(out, "socket = {}", quote(&path_or_off(&s.control_socket)));
    let _ = writeln!(out);
    let _ = writeln!(out, "[state]");
    let _ = writeln!(out, "flow_file = {}", quote(&path_or_off(&s.flow_file)));
    let _ = writeln!(out);
    let _ = writeln!(out, "[io]");
    let _ = writeln!(out, "rcvbuf_bytes = {}", s.io.rcvbuf_bytes);
    let _ = writeln!(out, "disable_offloads = {}", s.io.disable_offloads);
    let _ = writeln!(out, "xdp = \"{}\"", s.io.xdp.as_str());
    let _ = writeln!(
        out,
        "xdp_pin_dir = {}",
        quote(&path_or_off(&s.io.xdp_pin_dir))
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "[log]");
    let _ = writeln!(out, "level = {}", quote(&s.log_level));
    out
}

/// A TOML string literal with whatever escaping the value needs.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A path setting as the file spells it: the path, or "off" for none.
fn path_or_off(p: &Option<std::path::PathBuf>) -> String {
    p.as_ref()
        .map_or("off".to_string(), |p| p.display().to_string())
}
