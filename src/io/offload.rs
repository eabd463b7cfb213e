//! Interface facts and offload control through ioctl: the MTU, and turning
//! off GRO/GSO/TSO/scatter-gather/checksum offloads (SIOCETHTOOL legacy set
//! commands) so AF_PACKET sees wire-sized frames with real checksums.

use std::io;
use std::mem;

const ETHTOOL_SRXCSUM: u32 = 0x15;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_SSG: u32 = 0x19;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_SGRO: u32 = 0x2c;

/// The offloads turned off, in order (TSO and GSO depend on SG/TX checksum,
/// so they go first).
pub const OFFLOADS: [(&str, u32); 6] = [
    ("gro", ETHTOOL_SGRO),
    ("gso", ETHTOOL_SGSO),
    ("tso", ETHTOOL_STSO),
    ("sg", ETHTOOL_SSG),
    ("tx-checksum", ETHTOOL_STXCSUM),
    ("rx-checksum", ETHTOOL_SRXCSUM),
];

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

struct ControlSocket(libc::c_int);

impl ControlSocket {
    fn open() -> io::Result<ControlSocket> {
        // SAFETY: plain socket(2); checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ControlSocket(fd))
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.0) };
    }
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    // SAFETY: ifreq is plain data; zeroed is valid.
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// The interface MTU (SIOCGIFMTU).
pub fn mtu(name: &str) -> io::Result<usize> {
    let sock = ControlSocket::open()?;
    let mut req = ifreq_for(name)?;
    // SAFETY: req is a valid ifreq naming the interface; the kernel writes
    // ifru_mtu.
    let rc = unsafe { libc::ioctl(sock.0, libc::SIOCGIFMTU, &mut req) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_mtu } as usize)
}

/// Turn every offload in [`OFFLOADS`] off; returns (name, result) per
/// offload so the caller can log what the driver refused.
pub fn disable_offloads(name: &str) -> io::Result<Vec<(&'static str, io::Result<()>)>> {
    let sock = ControlSocket::open()?;
    let mut results = Vec::new();
    for (label, cmd) in OFFLOADS {
        let mut value = EthtoolValue { cmd, data: 0 };
        let mut req = ifreq_for(name)?;
        req.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
        // SAFETY: ifru_data points at an ethtool_value that outlives the call.
        let rc = unsafe { libc::ioctl(sock.0, libc::SIOCETHTOOL, &mut req) };
        results.push((
            label,
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            },
        ));
    }
    Ok(results)
}
