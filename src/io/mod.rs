//! Frame I/O: AF_PACKET ports (socket set up by us, bound and sent through
//! `pnet_datalink`), offload control, the in-memory port for tests, and the
//! loop that feeds the engine. The only layer with syscalls and `unsafe`;
//! it never decides what happens to a frame (the engine does).

pub mod af_packet;
pub mod clock;
pub mod config;
pub mod fixup;
pub mod memory;
pub mod offload;
pub mod runner;
pub mod signals;
pub mod xdp;

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

/// Receive buffers for one batch: frames (each with room for `frame_len`
/// bytes) and what the kernel said about each.
pub struct RxBatch {
    pub frames: Vec<Vec<u8>>,
    pub infos: Vec<RxInfo>,
    frame_len: usize,
}

impl RxBatch {
    pub fn new(count: usize, frame_len: usize) -> RxBatch {
        RxBatch {
            frames: (0..count).map(|_| Vec::with_capacity(frame_len)).collect(),
            infos: vec![RxInfo::default(); count],
            frame_len,
        }
    }

    pub fn capacity(&self) -> usize {
        self.frames.len()
    }

    /// Bytes kept per frame; longer frames arrive cut and marked truncated.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }
}

/// One gateway port: batched non-blocking receive and send.
pub trait FramePort {
    /// Receive up to `batch.capacity()` waiting frames into `batch`; returns
    /// how many (0 when nothing is waiting).
    fn recv_batch(&mut self, batch: &mut RxBatch) -> io::Result<usize>;
    /// Send frames in order; returns how many the kernel took.
    fn send_batch(&mut self, frames: &[&[u8]]) -> io::Result<usize>;
    /// Largest L3 packet the port carries (interface MTU).
    fn mtu(&self) -> usize;
    /// Frames the kernel dropped for this port since the last call (receive
    /// buffer full). Ports without a kernel queue report 0.
    fn take_kernel_drops(&mut self) -> u64 {
        0
    }
}
