//! Validated I/O settings: which interfaces, socket sizes, offload policy.

#[derive(Debug, Clone, PartialEq)]
pub struct IoConfig {
    /// Interface facing the clients.
    pub client_iface: String,
    /// Interface facing the protected servers.
    pub server_iface: String,
    /// SO_RCVBUF(FORCE) per AF_PACKET socket, bytes.
    pub rcvbuf_bytes: usize,
    /// Turn GRO/GSO/TSO and checksum offloads off on both ports at start-up.
    pub disable_offloads: bool,
    /// XDP fast path on both ports (default auto).
    pub xdp: super::xdp::XdpSetting,
    /// bpffs directory under which the XDP attachments and the forwarded
    /// flows' map are pinned, so they outlive the process (README
    /// "Restarts"); `None`: nothing is pinned, the data path ends with it.
    pub xdp_pin_dir: Option<std::path::PathBuf>,
}

/// Default `io.xdp_pin_dir` (where systemd mounts bpffs).
pub const DEFAULT_XDP_PIN_DIR: &str = "/sys/fs/bpf/synguard";

impl Default for IoConfig {
    fn default() -> Self {
        IoConfig {
            client_iface: String::new(),
            server_iface: String::new(),
            rcvbuf_bytes: 8 << 20,
            disable_offloads: true,
            xdp: super::xdp::XdpSetting::Auto,
            xdp_pin_dir: Some(DEFAULT_XDP_PIN_DIR.into()),
        }
    }
}
