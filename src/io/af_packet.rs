//! One AF_PACKET port. We create the socket ourselves because pnet_datalink
//! cannot set what a bump-in-the-wire needs before it binds:
//! PACKET_IGNORE_OUTGOING (or every frame we send comes back to us and loops
//! between the ports), PACKET_AUXDATA (stripped VLAN tags and partial
//! checksums), and a large forced receive buffer. pnet_datalink then binds
//! it, enables promiscuous mode and non-blocking I/O, and sends; receiving
//! is our recvmsg(), which reads the auxdata pnet's receiver drops.

use std::io;
use std::mem;
use std::os::fd::RawFd;

use pnet::datalink::{self, Channel, DataLinkReceiver, DataLinkSender};

use super::{FramePort, RxBatch, RxInfo};

const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// struct tpacket_auxdata (linux/if_packet.h).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// Per-message scratch for recvmmsg: the iovec and the control buffer
/// (room for one cmsghdr with tpacket_auxdata, 8-byte aligned).
#[derive(Clone, Copy)]
struct RecvSlot {
    iov: libc::iovec,
    control: [u64; 8],
}

impl Default for RecvSlot {
    fn default() -> Self {
        RecvSlot {
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            control: [0; 8],
        }
    }
}

/// The auxdata of one received message: partial checksum, stripped VLAN.
fn auxdata(msg: &libc::msghdr) -> RxInfo {
    let mut info = RxInfo::default();
    // SAFETY: CMSG_* walk the control buffer the kernel filled, bounded by
    // msg_controllen; the auxdata payload is read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_PACKET && (*cmsg).cmsg_type == PACKET_AUXDATA {
                let aux: TpacketAuxdata = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                info.checksum_not_ready = aux.tp_status & TP_STATUS_CSUMNOTREADY != 0;
                if aux.tp_status & TP_STATUS_VLAN_VALID != 0 {
                    let tpid = if aux.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        0
                    };
                    info.vlan = Some((tpid, aux.tp_vlan_tci));
                }
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    info
}

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("interface `{name}` not found (available: {available})")]
    NoSuchInterface { name: String, available: String },
    #[error("opening a raw AF_PACKET socket on `{name}` was refused: synguard needs CAP_NET_RAW (run as root or `setcap cap_net_raw,cap_net_admin+ep`)")]
    Permission { name: String },
    #[error("{what} on `{name}`: {source}")]
    Os {
        name: String,
        what: &'static str,
        source: io::Error,
    },
}

pub struct PacketPort {
    name: String,
    fd: RawFd,
    mtu: usize,
    msgs: Vec<RecvSlot>,
    /// recvmmsg/sendmmsg headers and send iovecs, kept between calls so a
    /// loop iteration does not allocate. Their pointers are refreshed on
    /// every call.
    rx_headers: Vec<libc::mmsghdr>,
    tx_headers: Vec<libc::mmsghdr>,
    tx_iovs: Vec<libc::iovec>,
    /// pnet's handles on the socket. Unused after set-up: receiving needs
    /// auxdata (recvmmsg), and pnet's sender polls before every frame, a
    /// syscall per packet we batch away with sendmmsg. Kept so pnet's view
    /// of the socket lives as long as ours (they close it together).
    _pnet: (Box<dyn DataLinkSender>, Box<dyn DataLinkReceiver>),
}

fn os_err(name: &str, what: &'static str) -> PortError {
    PortError::Os {
        name: name.to_string(),
        what,
        source: io::Error::last_os_error(),
    }
}

fn set_int_opt(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: fd is an open socket; the option value is a c_int on our stack
    // whose size we pass.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl PacketPort {
    pub fn open(name: &str, rcvbuf_bytes: usize) -> Result<PacketPort, PortError> {
        let interfaces = datalink::interfaces();
        let Some(iface) = interfaces.iter().find(|i| i.name == name) else {
            let available = interfaces
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(PortError::NoSuchInterface {
                name: name.to_string(),
                available,
            });
        };
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ALL as u16).to_be() as libc::c_int,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => PortError::Permission {
                    name: name.to_string(),
                },
                _ => PortError::Os {
                    name: name.to_string(),
                    what: "socket(AF_PACKET)",
                    source: e,
                },
            });
        }
        let close_on_err = |err: PortError| {
            // SAFETY: fd is ours and not yet shared with pnet.
            unsafe { libc::close(fd) };
            err
        };
        set_int_opt(fd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            .map_err(|_| close_on_err(os_err(name, "PACKET_IGNORE_OUTGOING (Linux >= 4.20)")))?;
        set_int_opt(fd, libc::SOL_PACKET, PACKET_AUXDATA, 1)
            .map_err(|_| close_on_err(os_err(name, "PACKET_AUXDATA")))?;
        let rcvbuf = rcvbuf_bytes.min(i32::MAX as usize) as libc::c_int;
        if set_int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcvbuf).is_err() {
            // Without CAP_NET_ADMIN the kernel caps SO_RCVBUF at rmem_max.
            set_int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, rcvbuf)
                .map_err(|_| close_on_err(os_err(name, "SO_RCVBUF")))?;
            tracing::warn!(
                iface = name,
                "SO_RCVBUFFORCE refused; receive buffer capped by net.core.rmem_max"
            );
        }
        let config = datalink::Config {
            socket_fd: Some(fd),
            promiscuous: true,
            write_buffer_size: 4096,
            ..Default::default()
        };
        // pnet binds the socket to the interface (closing it on failure),
        // joins PACKET_MR_PROMISC and sets O_NONBLOCK.
        let (tx, rx) = match datalink::channel(iface, config) {
            Ok(Channel::Ethernet(tx, rx)) => (tx, rx),
            Ok(_) => {
                return Err(PortError::Os {
                    name: name.to_string(),
                    what: "pnet channel",
                    source: io::Error::other("not an Ethernet channel"),
                })
            }
            Err(source) => {
                return Err(PortError::Os {
                    name: name.to_string(),
                    what: "bind/promiscuous",
                    source,
                })
            }
        };
        let mut port = PacketPort {
            name: name.to_string(),
            fd,
            mtu: 1500,
            msgs: Vec::new(),
            rx_headers: Vec::new(),
            tx_headers: Vec::new(),
            tx_iovs: Vec::new(),
            _pnet: (tx, rx),
        };
        port.discard_pre_bind_frames();
        Ok(port)
    }

    /// Frames from any interface can queue between socket() and bind();
    /// they are not ours to forward.
    fn discard_pre_bind_frames(&mut self) {
        let mut batch = RxBatch::new(64, 64);
        while let Ok(n) = self.recv_batch(&mut batch) {
            if n == 0 {
                break;
            }
        }
    }

    /// Set the MTU frames are checked against (read from the interface).
    pub fn with_mtu(mut self, mtu: usize) -> PacketPort {
        self.mtu = mtu;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Kernel counters since the last call (PACKET_STATISTICS resets on
    /// read): (frames received, frames dropped for lack of buffer space).
    pub fn take_kernel_stats(&self) -> io::Result<(u32, u32)> {
        let mut stats = [0u32; 2];
        let mut len = mem::size_of_val(&stats) as libc::socklen_t;
        // SAFETY: struct tpacket_stats is two u32; buffer and length match.
        let rc = unsafe {
            libc::getsockopt(
                self.fd,
                libc::SOL_PACKET,
                PACKET_STATISTICS,
                stats.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 {
            Ok((stats[0], stats[1]))
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl FramePort for PacketPort {
    fn recv_batch(&mut self, batch: &mut RxBatch) -> io::Result<usize> {
        let slots = batch.capacity();
        let frame_len = batch.frame_len();
        self.msgs.resize_with(slots, RecvSlot::default);
        for (slot, frame) in self.msgs.iter_mut().zip(batch.frames.iter_mut()) {
            frame.clear();
            frame.reserve(frame_len);
            slot.iov = libc::iovec {
                iov_base: frame.spare_capacity_mut().as_mut_ptr().cast(),
                iov_len: frame_len,
            };
        }
        // SAFETY: mmsghdr is plain data; zeroed is a valid empty header.
        self.rx_headers
            .resize_with(slots, || unsafe { mem::zeroed() });
        let headers = &mut self.rx_headers;
        for (h, slot) in headers.iter_mut().zip(self.msgs.iter_mut()) {
            h.msg_hdr.msg_flags = 0;
            h.msg_hdr.msg_iov = &mut slot.iov;
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = slot.control.as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = mem::size_of_val(&slot.control) as _;
        }
        // SAFETY: every header points at an iovec into a frame's spare
        // capacity of `frame_len` bytes and at its own control buffer, all
        // alive across the call. MSG_TRUNC: msg_len is the real frame length.
        let n = unsafe {
            libc::recvmmsg(
                self.fd,
                headers.as_mut_ptr(),
                slots as libc::c_uint,
                libc::MSG_TRUNC | libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        for (i, h) in headers.iter().take(n).enumerate() {
            let real_len = h.msg_len as usize;
            let kept = real_len.min(frame_len);
            // SAFETY: the kernel wrote `kept` bytes into the spare capacity.
            unsafe { batch.frames[i].set_len(kept) };
            batch.infos[i] = RxInfo {
                truncated: real_len > frame_len || h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                ..auxdata(&h.msg_hdr)
            };
        }
        Ok(n)
    }

    fn send_batch(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        self.tx_iovs.clear();
        self.tx_iovs.extend(frames.iter().map(|f| libc::iovec {
            iov_base: f.as_ptr() as *mut _,
            iov_len: f.len(),
        }));
        // SAFETY: zeroed mmsghdr is valid; a NULL msg_name sends on the bound
        // interface.
        self.tx_headers
            .resize_with(frames.len(), || unsafe { mem::zeroed() });
        let headers = &mut self.tx_headers;
        for (h, iov) in headers.iter_mut().zip(self.tx_iovs.iter_mut()) {
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
        }
        let mut sent = 0;
        while sent < frames.len() {
            // SAFETY: headers[sent..] point at iovecs over the borrowed frames,
            // alive across the call.
            let n = unsafe {
                libc::sendmmsg(
                    self.fd,
                    headers[sent..].as_mut_ptr(),
                    (frames.len() - sent) as libc::c_uint,
                    0,
                )
            };
            if n <= 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if sent == 0 {
                    return Err(e);
                }
                break;
            }
            sent += n as usize;
        }
        Ok(sent)
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn take_kernel_drops(&mut self) -> u64 {
        self.take_kernel_stats()
            .map_or(0, |(_, drops)| u64::from(drops))
    }
}
