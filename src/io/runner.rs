//! The loop between two ports and the engine: receive, undo offloads, hand
//! each frame to the engine, act on its verdict, send what it emitted, run
//! its timers. Reads the clocks (src/io/clock.rs; the engine never does).

use std::io;
use std::time::Duration;

use crate::engine::{DropReason, Engine, Port, Verdict};

use super::af_packet::PacketPort;
use super::clock::{engine_clock_ms, wall_clock_ms};
use super::fixup::{max_frame_len, normalize};
use super::{signals, FramePort, RxBatch};

/// Frames taken from one port before looking at the other (fairness under
/// a flood on one side).
const BATCH: usize = 64;
/// Longest sleep when no timer is due, so shutdown is noticed promptly
/// even without a signal interrupting poll().
const MAX_IDLE_WAIT: Duration = Duration::from_millis(200);

/// How often the kernel's socket drop counters are read.
const KERNEL_STATS_INTERVAL_MS: u64 = 1000;
/// How often the XDP program's per-CPU counters are folded into the
/// engine's (a handful of map reads): what it answered or dropped shows in
/// /metrics this late at most, plus one idle wait.
const XDP_COUNTERS_INTERVAL_MS: u64 = 100;

/// A frame to send after the batch: a received frame (by index, rewritten
/// in place) or one the engine originated.
enum Outgoing {
    Received(usize),
    Emitted(Vec<u8>),
}

pub struct Runner<P: FramePort> {
    pub engine: Engine,
    client: P,
    server: P,
    batch: RxBatch,
    /// Per port (index `Port::index`), in the order the engine produced them.
    outgoing: [Vec<Outgoing>; 2],
    send_errors: u64,
    /// The XDP fast path on both ports, when on (`io.xdp`).
    xdp: Option<super::xdp::XdpFastPath>,
}

impl<P: FramePort> Runner<P> {
    pub fn new(engine: Engine, client: P, server: P) -> Runner<P> {
        let frame_len = max_frame_len(client.mtu().max(server.mtu())) + 64;
        Runner {
            engine,
            client,
            server,
            batch: RxBatch::new(BATCH, frame_len),
            outgoing: [Vec::with_capacity(BATCH), Vec::with_capacity(BATCH)],
            send_errors: 0,
            xdp: None,
        }
    }

    /// Run with the XDP fast path: the engine starts publishing tracked
    /// tuples, and every batch syncs the program's maps before sending.
    pub fn set_fast_path(&mut self, mut xdp: super::xdp::XdpFastPath, now_ms: u64) {
        match xdp.progress_reader() {
            Ok(r) => self.engine.set_forward_progress_source(Box::new(r)),
            // Without it the engine would act on stale sequence numbers:
            // it publishes no flow for forwarding then.
            Err(e) => {
                tracing::warn!(error = %e, "XDP flow progress unreadable: established flows stay in the engine")
            }
        }
        self.engine.enable_fast_path();
        xdp.sync(&mut self.engine, now_ms);
        let pruned = xdp.prune_unpublished_flows();
        if pruned > 0 {
            tracing::info!(
                flows = pruned,
                "adopted XDP flows the engine did not take are no longer forwarded"
            );
        }
        self.xdp = Some(xdp);
    }

    /// Stop using the XDP fast path (before the sockets close on
    /// shutdown): pinned, it stays in place; else it is detached.
    pub fn stop_fast_path(&mut self) {
        if let Some(mut x) = self.xdp.take() {
            x.fold_counters(&self.engine.counters());
            x.stop();
        }
    }

    /// Apply the engine's map changes before the batch's frames leave, so a
    /// client's reply to them can never reach the program first.
    fn sync_fast_path(&mut self, now_ms: u64) {
        if let Some(x) = &mut self.xdp {
            x.sync(&mut self.engine, now_ms);
            // What replays of the program's reports left to send.
            self.collect_emitted();
        }
    }

    pub fn port_mut(&mut self, port: Port) -> &mut P {
        match port {
            Port::Client => &mut self.client,
            Port::Server => &mut self.server,
        }
    }

    /// Frames send() failed for so far (logged, rate-limited).
    pub fn send_errors(&self) -> u64 {
        self.send_errors
    }

    /// Receive one batch from `port`, run each frame through the engine and
    /// send the results; returns how many frames were received.
    pub fn pump(&mut self, now_ms: u64, port: Port) -> io::Result<usize> {
        let n = match port {
            Port::Client => self.client.recv_batch(&mut self.batch)?,
            Port::Server => self.server.recv_batch(&mut self.batch)?,
        };
        let to_engine = &self.engine.counters().frames_to_engine[port.index()];
        to_engine.store(
            to_engine.load(std::sync::atomic::Ordering::Relaxed) + n as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let max_len = max_frame_len(self.port_mut(port).mtu());
        for i in 0..n {
            let frame = &mut self.batch.frames[i];
            if !normalize(frame, &self.batch.infos[i]) || frame.len() > max_len {
                // A GRO/GSO super-frame or a cut-off one: forwarding it would
                // exceed the MTU on the other side.
                self.engine.count_io_drop(port, DropReason::Oversize);
                continue;
            }
            // The program's reports first: a frame that came up after one
            // may belong to the flow it made.
            if let Some(x) = &mut self.xdp {
                if x.drain_events(&mut self.engine) > 0 {
                    self.collect_emitted();
                }
            }
            let frame = &mut self.batch.frames[i];
            match self.engine.handle(now_ms, port, frame) {
                Verdict::Forward => self.outgoing[port.other().index()].push(Outgoing::Received(i)),
                Verdict::Reply => self.outgoing[port.index()].push(Outgoing::Received(i)),
                Verdict::Absorbed | Verdict::Drop(_) => {}
            }
            self.collect_emitted();
        }
        if n > 0 {
            self.sync_fast_path(now_ms);
        }
        self.flush();
        Ok(n)
    }

    /// Run due timers and send what they produced.
    pub fn tick(&mut self, now_ms: u64) {
        self.engine.handle_timeout(now_ms);
        self.collect_emitted();
        self.sync_fast_path(now_ms);
        self.flush();
        self.log_backend_transitions();
    }

    /// Say which service's backend went down or came back (the loop ticks
    /// after every batch, so this is as prompt as the transition).
    fn log_backend_transitions(&mut self) {
        for t in self.engine.drain_backend_transitions() {
            let service = std::net::SocketAddr::from(t.service);
            if t.down {
                tracing::warn!(%service, failures = t.failures, "backend down: its handshakes failed in a row; its new SYNs are bridged to the server until it answers one");
            } else {
                tracing::info!(%service, "backend up: the server answered a SYN; its new SYNs are proxied again");
            }
        }
    }

    /// Fold what the XDP program answered and dropped into the engine
    /// counters; SYNs it answered while the queue is full keep auto mode's
    /// cookie mode on.
    fn fold_xdp_counters(&mut self, now_ms: u64) {
        if let Some(x) = &mut self.xdp {
            let syns = x.fold_counters(&self.engine.counters());
            self.engine.note_fast_path_syns(now_ms, syns);
        }
    }

    /// Fold the kernel's per-socket drop counts into the engine counters.
    pub fn collect_kernel_drops(&mut self) {
        let counters = self.engine.counters();
        for port in [Port::Client, Port::Server] {
            let drops = self.port_mut(port).take_kernel_drops();
            let c = &counters.kernel_drops[port.index()];
            c.store(
                c.load(std::sync::atomic::Ordering::Relaxed) + drops,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    fn collect_emitted(&mut self) {
        for e in self.engine.drain_emitted() {
            self.outgoing[e.port.index()].push(Outgoing::Emitted(e.frame));
        }
    }

    fn flush(&mut self) {
        for port in [Port::Client, Port::Server] {
            let queue = std::mem::take(&mut self.outgoing[port.index()]);
            if queue.is_empty() {
                self.outgoing[port.index()] = queue;
                continue;
            }
            let frames: Vec<&[u8]> = queue
                .iter()
                .map(|o| match o {
                    Outgoing::Received(i) => self.batch.frames[*i].as_slice(),
                    Outgoing::Emitted(f) => f.as_slice(),
                })
                .collect();
            let result = match port {
                Port::Client => self.client.send_batch(&frames),
                Port::Server => self.server.send_batch(&frames),
            };
            let unsent = match &result {
                Ok(sent) => (frames.len() - sent) as u64,
                Err(_) => frames.len() as u64,
            };
            drop(frames);
            if unsent > 0 {
                let before = self.send_errors;
                self.send_errors += unsent;
                // Log when the total crosses a power of two: rate-limited.
                if before.leading_zeros() != self.send_errors.leading_zeros() {
                    let error = result
                        .err()
                        .map_or("partial send".to_string(), |e| e.to_string());
                    tracing::warn!(port = port.as_str(), %error, total = self.send_errors, "send failed");
                }
            }
            let mut queue = queue;
            queue.clear();
            self.outgoing[port.index()] = queue;
        }
    }
}

impl Runner<PacketPort> {
    /// Serve until SIGINT/SIGTERM; on SIGHUP call `on_reload` with the
    /// engine between two batches (no frame is in flight then).
    pub fn run_until_shutdown(&mut self, mut on_reload: impl FnMut(&mut Engine)) -> io::Result<()> {
        let (mut next_stats, mut next_xdp_fold) = (0, 0);
        while !signals::shutdown_requested() {
            if signals::take_reload_request() {
                on_reload(&mut self.engine);
            }
            // The clocks are read per batch, so cookies, timestamps and
            // timers stay current under a sustained flood.
            let now = engine_clock_ms();
            self.engine.set_wall_clock(now, wall_clock_ms());
            let busy = self.pump(now, Port::Client)? + self.pump(now, Port::Server)? > 0;
            self.tick(now);
            if now >= next_xdp_fold {
                self.fold_xdp_counters(now);
                next_xdp_fold = now + XDP_COUNTERS_INTERVAL_MS;
            }
            if now >= next_stats {
                self.collect_kernel_drops();
                next_stats = now + KERNEL_STATS_INTERVAL_MS;
            }
            if !busy {
                let wait = self.engine.poll_timeout().map_or(MAX_IDLE_WAIT, |t| {
                    Duration::from_millis(t.saturating_sub(now)).min(MAX_IDLE_WAIT)
                });
                wait_readable(&[self.client.fd(), self.server.fd()], wait)?;
            }
        }
        self.collect_kernel_drops();
        self.stop_fast_path();
        Ok(())
    }
}

fn wait_readable(fds: &[libc::c_int], timeout: Duration) -> io::Result<()> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: pfds is a valid array of pollfd of the length passed.
    let rc = unsafe {
        libc::poll(
            pfds.as_mut_ptr(),
            pfds.len() as libc::nfds_t,
            timeout.as_millis() as libc::c_int,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cookie::CookieSecret;
    use crate::engine::EngineConfig;
    use crate::io::memory::MemoryPort;
    use crate::io::RxInfo;

    fn runner() -> Runner<MemoryPort> {
        let cfg = EngineConfig {
            protected: vec!["198.18.0.2:8080".parse().unwrap()],
            ..EngineConfig::default()
        };
        Runner::new(
            Engine::new(cfg, CookieSecret::from_bytes([1; 16])),
            MemoryPort::new(1500),
            MemoryPort::new(1500),
        )
    }

    fn udp_frame(len: usize) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = (len - 14) as u16;
        f.extend_from_slice(&[
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            17,
            0,
            0,
            198,
            18,
            0,
            1,
            198,
            18,
            0,
            2,
        ]);
        f.resize(len, 0);
        f
    }

    #[test]
    fn bridges_to_the_other_port() {
        let mut r = runner();
        r.port_mut(Port::Client).push(udp_frame(100));
        assert_eq!(r.pump(1, Port::Client).unwrap(), 1);
        assert_eq!(r.port_mut(Port::Server).sent, vec![udp_frame(100)]);
        assert!(r.port_mut(Port::Client).sent.is_empty());
    }

    #[test]
    fn oversize_and_truncated_frames_are_counted_not_forwarded() {
        let mut r = runner();
        r.port_mut(Port::Client).push(udp_frame(1514 + 9));
        r.port_mut(Port::Client).inbound.push_back((
            udp_frame(100),
            RxInfo {
                truncated: true,
                ..RxInfo::default()
            },
        ));
        r.port_mut(Port::Client).push(udp_frame(1514));
        assert_eq!(r.pump(1, Port::Client).unwrap(), 3);
        assert_eq!(
            r.port_mut(Port::Server).sent.len(),
            1,
            "only the MTU-sized frame passes"
        );
        assert_eq!(r.engine.counters().dropped(DropReason::Oversize), 2);
    }

    #[test]
    fn batch_bounds_one_pump_and_order_is_kept() {
        let mut r = runner();
        for len in 64..64 + BATCH + 5 {
            r.port_mut(Port::Server).push(udp_frame(len));
        }
        assert_eq!(r.pump(1, Port::Server).unwrap(), BATCH);
        assert_eq!(r.pump(1, Port::Server).unwrap(), 5);
        let lens: Vec<_> = r.port_mut(Port::Client).sent.iter().map(Vec::len).collect();
        assert_eq!(lens, (64..64 + BATCH + 5).collect::<Vec<_>>());
    }
}
