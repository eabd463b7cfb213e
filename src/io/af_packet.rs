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

use super::{FramePort, RxInfo};

const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
/// Receive buffer: the largest frame AF_PACKET can hand us (GSO
/// super-frames are 64 KiB), so an oversized one is seen whole and counted.
pub const RECV_BUFFER_LEN: usize = 65536 + 64;

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
    tx: Box<dyn DataLinkSender>,
    /// Unused (we receive with recvmsg); kept so pnet's view of the socket
    /// lives as long as ours.
    _pnet_rx: Box<dyn DataLinkReceiver>,
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
            write_buffer_size: RECV_BUFFER_LEN,
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
            tx,
            _pnet_rx: rx,
        };
        port.discard_pre_bind_frames();
        Ok(port)
    }

    /// Frames from any interface can queue between socket() and bind();
    /// they are not ours to forward.
    fn discard_pre_bind_frames(&mut self) {
        let mut buf = vec![0u8; RECV_BUFFER_LEN];
        while let Ok(Some(_)) = self.recv(&mut buf) {}
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
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<RxInfo>> {
        buf.resize(RECV_BUFFER_LEN, 0);
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // Room for one cmsghdr carrying tpacket_auxdata, 8-byte aligned.
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data; zeroed is a valid empty header.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = mem::size_of_val(&control) as _;
        // SAFETY: msg points at iov (into buf, with its length) and control,
        // all alive for the call. MSG_TRUNC makes the return value the
        // frame's real length.
        let n = unsafe { libc::recvmsg(self.fd, &mut msg, libc::MSG_TRUNC | libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            buf.clear();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        let n = n as usize;
        let mut info = RxInfo {
            truncated: n > RECV_BUFFER_LEN || msg.msg_flags & libc::MSG_TRUNC != 0,
            ..RxInfo::default()
        };
        buf.truncate(n.min(RECV_BUFFER_LEN));
        // SAFETY: CMSG_* walk the control buffer the kernel filled, bounded by
        // msg_controllen; the auxdata payload is read unaligned.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_PACKET && (*cmsg).cmsg_type == PACKET_AUXDATA {
                    let aux: TpacketAuxdata =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
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
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Ok(Some(info))
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.tx.send_to(frame, None).unwrap_or_else(|| {
            Err(io::Error::other(
                "pnet send_to: frame larger than the write buffer",
            ))
        })
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn take_kernel_drops(&mut self) -> u64 {
        self.take_kernel_stats()
            .map_or(0, |(_, drops)| u64::from(drops))
    }
}
