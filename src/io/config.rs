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
    /// XDP fast path on the client port (default auto).
    pub xdp: super::xdp::XdpSetting,
}

impl Default for IoConfig {
    fn default() -> Self {
        IoConfig {
            client_iface: String::new(),
            server_iface: String::new(),
            rcvbuf_bytes: 8 << 20,
            disable_offloads: true,
            xdp: super::xdp::XdpSetting::Auto,
        }
    }
}
