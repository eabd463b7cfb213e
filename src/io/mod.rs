//! Frame I/O: AF_PACKET ports (socket set up by us, bound and sent through
//! `pnet_datalink`), offload control, the in-memory port for tests, and the
//! loop that feeds the engine. The only layer with syscalls and `unsafe`;
//! it never decides what happens to a frame (the engine does).

pub mod af_packet;
pub mod config;
pub mod fixup;
pub mod memory;
pub mod offload;
pub mod runner;
pub mod signals;

pub use config::IoConfig;

use std::io;

/// What the kernel said about a received frame (PACKET_AUXDATA).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxInfo {
    /// The frame was longer than the receive buffer (cut off).
    pub truncated: bool,
    /// The L4 checksum is only partial (TP_STATUS_CSUMNOTREADY: the sender
    /// relied on checksum offload).
    pub checksum_not_ready: bool,
    /// VLAN tag the kernel stripped: (TPID, TCI).
    pub vlan: Option<(u16, u16)>,
}

/// One gateway port: non-blocking receive into a caller buffer, send.
pub trait FramePort {
    /// Receive one frame into `buf` (resized to the frame). `Ok(None)` when
    /// nothing is waiting.
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<RxInfo>>;
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
    /// Largest L3 packet the port carries (interface MTU).
    fn mtu(&self) -> usize;
    /// Frames the kernel dropped for this port since the last call (receive
    /// buffer full). Ports without a kernel queue report 0.
    fn take_kernel_drops(&mut self) -> u64 {
        0
    }
}
