//! In-memory port for tests: frames queued in, frames collected out.

use std::collections::VecDeque;
use std::io;

use super::{FramePort, RxInfo};

#[derive(Debug, Default)]
pub struct MemoryPort {
    pub inbound: VecDeque<(Vec<u8>, RxInfo)>,
    pub sent: Vec<Vec<u8>>,
    pub mtu: usize,
}

impl MemoryPort {
    pub fn new(mtu: usize) -> MemoryPort {
        MemoryPort {
            mtu,
            ..MemoryPort::default()
        }
    }

    pub fn push(&mut self, frame: Vec<u8>) {
        self.inbound.push_back((frame, RxInfo::default()));
    }
}

impl FramePort for MemoryPort {
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<RxInfo>> {
        Ok(self.inbound.pop_front().map(|(frame, info)| {
            buf.clear();
            buf.extend_from_slice(&frame);
            info
        }))
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.sent.push(frame.to_vec());
        Ok(())
    }

    fn mtu(&self) -> usize {
        self.mtu
    }
}
