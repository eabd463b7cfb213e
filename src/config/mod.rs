//! Configuration: reads the TOML file, applies command-line overrides,
//! validates every value and hands out the resolved `Settings`. Also renders
//! `Settings` back as TOML for `check-config`. Never touches the network or
//! the interfaces, and never prints: errors name the key and main reports them.
//!
//! Format: config/synguard.toml documents every key and its default.

mod error;
mod file;
mod render;
pub mod settings;
mod validate;

#[cfg(test)]
mod tests;

use crate::io::xdp::XdpSetting;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use render::render;
pub use settings::Settings;

/// Metrics endpoint when the file and the flags say nothing: loopback only,
/// so an unconfigured gateway does not expose counters to the network.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9150);

/// Control endpoint (`synguard status`) when none is configured.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/synguard/control.sock";

/// `tracing` filter when none is configured.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Values given on the command line. Each one, when set, wins over the file.
/// Main fills this from clap; no field is validated until `load`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub client_iface: Option<String>,
    pub server_iface: Option<String>,
    /// Non-empty replaces the file's `protect.services` entirely.
    pub protect: Vec<SocketAddr>,
    /// `Some(None)`: metrics switched off on the command line.
    pub metrics_listen: Option<Option<SocketAddr>>,
    pub secret_file: Option<PathBuf>,
    /// `Some(None)`: the control endpoint switched off on the command line.
    pub control_socket: Option<Option<PathBuf>>,
    /// `Some(None)`: the flow file switched off on the command line.
    pub flow_file: Option<Option<PathBuf>>,
    pub log_level: Option<String>,
    pub xdp: Option<XdpSetting>,
    /// `Some(None)`: pinning switched off on the command line.
    pub xdp_pin_dir: Option<Option<PathBuf>>,
}

/// Parse an `io.xdp` / `--xdp` value.
pub fn parse_xdp(text: &str) -> Result<XdpSetting, String> {
    match text {
        "auto" => Ok(XdpSetting::Auto),
        "native" => Ok(XdpSetting::Native),
        "generic" => Ok(XdpSetting::Generic),
        "off" => Ok(XdpSetting::Off),
        other => Err(format!(
            "expected \"auto\", \"native\", \"generic\" or \"off\", got {other:?}"
        )),
    }
}

/// Parse a `state.flow_file` / `--flow-file` value: a path, or "off" / ""
/// for none.
pub fn parse_flow_file(text: &str) -> Option<PathBuf> {
    parse_control_socket(text)
}

/// Parse a control socket setting: a path, or "off" / "" for none.
pub fn parse_control_socket(text: &str) -> Option<PathBuf> {
    match text {
        "" | "off" => None,
        path => Some(PathBuf::from(path)),
    }
}

/// Read the file at `path` (if any), apply `overrides`, validate.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let parsed = file::parse(&text, &path.display().to_string())?;
            validate::resolve(parsed, overrides)
        }
        None => validate::resolve(file::FileConfig::default(), overrides),
    }
}

/// Like `load`, from TOML text already in memory (syntax errors are located
/// as `<string>:line:column`).
pub fn load_str(text: &str, overrides: &Overrides) -> Result<Settings, ConfigError> {
    validate::resolve(file::parse(text, "<string>")?, overrides)
}

/// Parse a metrics listen address: `ADDR:PORT`, or `off`/empty to disable.
/// Shared by the file's `metrics.listen` and the `--metrics-listen` flag so
/// both accept exactly the same spellings.
pub fn parse_listen(text: &str) -> Result<Option<SocketAddr>, String> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let addr: SocketAddr = text.parse().map_err(|_| {
        format!("\"{text}\" is not ADDR:PORT or \"off\" (IPv6 in brackets, e.g. [::1]:9150)")
    })?;
    if addr.port() == 0 {
        return Err(format!("\"{text}\": port 0 would listen on a random port"));
    }
    Ok(Some(addr))
}
