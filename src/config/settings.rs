//! The validated, resolved configuration the rest of the program trusts.
//! Built by `config` from the TOML file plus CLI overrides; never parsed here.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::engine::EngineConfig;
use crate::io::IoConfig;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub engine: EngineConfig,
    pub io: IoConfig,
    /// Where /metrics is served; `None` disables the endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// Cookie secret file (hex, written by `synguard keygen`). `None`: a
    /// random secret per start (cookies do not survive a restart and
    /// instances do not agree; a warning is logged).
    pub secret_file: Option<PathBuf>,
    /// Unix socket of the local control endpoint (`synguard status`);
    /// `None` disables it.
    pub control_socket: Option<PathBuf>,
    /// Where a graceful stop leaves the flows for the next start
    /// (`crate::flow_file`); `None`: flows end with the process.
    pub flow_file: Option<PathBuf>,
    /// `tracing` filter directive, e.g. "info" or "synguard=debug".
    pub log_level: String,
}
