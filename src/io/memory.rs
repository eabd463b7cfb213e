//! In-memory port for tests: frames queued in, frames collected out.

use std::collections::VecDeque;
use std::io;

use super::{FramePort, RxBatch, RxInfo};

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
    fn recv_batch(&mut self, batch: &mut RxBatch) -> io::Result<usize> {
        let mut n = 0;
        while n < batch.capacity() {
            let Some((frame, info)) = self.inbound.pop_front() else {
                break;
            };
            let keep = frame.len().min(batch.frame_len());
            batch.frames[n].clear();
            batch.frames[n].extend_from_slice(&frame[..keep]);
            batch.infos[n] = RxInfo {
                truncated: info.truncated || frame.len() > keep,
                ..info
            };
            n += 1;
        }
        Ok(n)
    }

    fn send_batch(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        self.sent.extend(frames.iter().map(|f| f.to_vec()));
        Ok(frames.len())
    }

    fn mtu(&self) -> usize {
        self.mtu
    }
}
