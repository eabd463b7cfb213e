//! Interface facts and offload control through ioctl: the MTU, and turning
//! off GRO/GSO/TSO/scatter-gather/checksum offloads (SIOCETHTOOL legacy set
//! commands) and the receive aggregation that has no legacy command (LRO,
//! hardware GRO, GRO fraglist: ETHTOOL_SFEATURES by feature name) so
//! AF_PACKET sees wire-sized frames with real checksums. Never changes an
//! offload it does not list, nor the MTU.

use std::io;
use std::mem;

const ETHTOOL_SRXCSUM: u32 = 0x15;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_SSG: u32 = 0x19;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
/// The string set of netdev feature names (include/uapi/linux/ethtool.h).
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;
/// Feature count the ioctls accept at most; the kernel has about 70.
const MAX_FEATURES: u32 = 1024;

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
    // A name too long for an ifreq is one error, not one per offload.
    ifreq_for(name)?;
    Ok(OFFLOADS
        .into_iter()
        .map(|(label, cmd)| {
            let mut value = EthtoolValue { cmd, data: 0 };
            (
                label,
                ethtool(&sock, name, (&mut value as *mut EthtoolValue).cast()),
            )
        })
        .collect())
}

/// Receive offloads that merge wire frames into larger ones before the host
/// sees them, by their kernel feature names (`netdev_features_strings`,
/// net/ethtool/common.c): LRO ("large-receive-offload" in `ethtool -k`),
/// hardware GRO, and GRO fraglist. NICs and virtio guests use the first two
/// to hand the host 64 KB frames; the AF_PACKET path drops every frame
/// larger than the MTU as `oversize`. None has a legacy ethtool command.
pub const RX_AGGREGATION: [&str; 3] = ["rx-lro", "rx-gro-hw", "rx-gro-list"];

/// What [`disable_rx_aggregation`] did: the features of [`RX_AGGREGATION`]
/// that were on and are off now, and those the driver kept on.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RxAggregation {
    pub turned_off: Vec<&'static str>,
    pub still_on: Vec<&'static str>,
}

/// One interface's netdev features: their names (index = feature bit) and,
/// per 32-bit word, the `ethtool_get_features_block` fields.
#[derive(Debug)]
struct FeatureTable {
    names: Vec<String>,
    /// `active` bits per word.
    active: Vec<u32>,
}

impl FeatureTable {
    /// The features of `wanted` the kernel knows and has active on this
    /// interface, in `wanted`'s order.
    fn active_of(&self, wanted: &[&'static str]) -> Vec<&'static str> {
        wanted
            .iter()
            .copied()
            .filter(|w| {
                self.bit(w).is_some_and(|b| {
                    self.active
                        .get(b / 32)
                        .is_some_and(|word| word & (1 << (b % 32)) != 0)
                })
            })
            .collect()
    }

    fn bit(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// The `ethtool_set_features_block`s (valid, requested) that ask for
    /// `off` to be cleared and leave every other feature as it is.
    fn clear_request(&self, off: &[&str]) -> Vec<(u32, u32)> {
        let mut blocks = vec![(0u32, 0u32); self.names.len().div_ceil(32)];
        for b in off.iter().filter_map(|n| self.bit(n)) {
            blocks[b / 32].0 |= 1 << (b % 32);
        }
        blocks
    }

    /// Reads the table; `None` when the kernel has no feature names for the
    /// interface (ETHTOOL_GSSET_INFO does not report the set).
    fn read(sock: &ControlSocket, iface: &str) -> io::Result<Option<FeatureTable>> {
        #[repr(C)]
        struct SsetInfo {
            cmd: u32,
            reserved: u32,
            sset_mask: u64,
            data: [u32; 1],
        }
        let mut info = SsetInfo {
            cmd: ETHTOOL_GSSET_INFO,
            reserved: 0,
            sset_mask: 1 << ETH_SS_FEATURES,
            data: [0],
        };
        ethtool(sock, iface, (&mut info as *mut SsetInfo).cast())?;
        if info.sset_mask & (1 << ETH_SS_FEATURES) == 0 {
            return Ok(None);
        }
        let count = info.data[0];
        if count == 0 || count > MAX_FEATURES {
            return Ok(None);
        }
        let n = count as usize;

        // struct ethtool_gstrings: cmd, string_set, len, then len x 32 bytes.
        let mut strings = vec![0u32; 3 + n * ETH_GSTRING_LEN / 4];
        strings[..3].copy_from_slice(&[ETHTOOL_GSTRINGS, ETH_SS_FEATURES, count]);
        ethtool(sock, iface, strings.as_mut_ptr().cast())?;
        let bytes: Vec<u8> = strings[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
        let names = bytes
            .chunks(ETH_GSTRING_LEN)
            .map(|c| {
                let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
                String::from_utf8_lossy(&c[..end]).into_owned()
            })
            .collect();

        // struct ethtool_gfeatures: cmd, size, then size x {available,
        // requested, active, never_changed}.
        let words = n.div_ceil(32);
        let mut features = vec![0u32; 2 + 4 * words];
        features[..2].copy_from_slice(&[ETHTOOL_GFEATURES, words as u32]);
        ethtool(sock, iface, features.as_mut_ptr().cast())?;
        let active = features[2..].chunks(4).map(|b| b[2]).collect();
        Ok(Some(FeatureTable { names, active }))
    }

    /// ETHTOOL_SFEATURES clearing `off`. The kernel wants exactly one block
    /// per feature word (`ethtool_set_features`, net/ethtool/ioctl.c); a
    /// positive return only flags that some request was not met, which the
    /// caller sees when it reads the table again.
    fn clear(&self, sock: &ControlSocket, iface: &str, off: &[&str]) -> io::Result<()> {
        let blocks = self.clear_request(off);
        let mut req = vec![ETHTOOL_SFEATURES, blocks.len() as u32];
        req.extend(
            blocks
                .iter()
                .flat_map(|&(valid, requested)| [valid, requested]),
        );
        ethtool(sock, iface, req.as_mut_ptr().cast())
    }
}

/// One SIOCETHTOOL call with `data` as its argument; a negative return is
/// the error, a positive one (ETHTOOL_F_* flags) is not.
fn ethtool(sock: &ControlSocket, iface: &str, data: *mut libc::c_void) -> io::Result<()> {
    let mut req = ifreq_for(iface)?;
    req.ifr_ifru.ifru_data = data.cast();
    // SAFETY: `data` points at a command buffer, sized for the command it
    // names, that outlives the call.
    let rc = unsafe { libc::ioctl(sock.0, libc::SIOCETHTOOL, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The features of [`RX_AGGREGATION`] active on `iface` (empty when the
/// kernel lists no feature names for it). Errors: the interface does not
/// exist, or the ioctl is refused.
pub fn rx_aggregation_on(iface: &str) -> io::Result<Vec<&'static str>> {
    let sock = ControlSocket::open()?;
    Ok(FeatureTable::read(&sock, iface)?
        .map(|t| t.active_of(&RX_AGGREGATION))
        .unwrap_or_default())
}

/// Turns off the features of [`RX_AGGREGATION`] that are on, and reads back
/// which the driver kept on (a feature fixed on, or refused). Errors: the
/// interface does not exist, or an ioctl is refused (EPERM without
/// CAP_NET_ADMIN).
pub fn disable_rx_aggregation(iface: &str) -> io::Result<RxAggregation> {
    let sock = ControlSocket::open()?;
    let Some(before) = FeatureTable::read(&sock, iface)? else {
        return Ok(RxAggregation::default());
    };
    let on = before.active_of(&RX_AGGREGATION);
    if on.is_empty() {
        return Ok(RxAggregation::default());
    }
    before.clear(&sock, iface, &on)?;
    let still_on = FeatureTable::read(&sock, iface)?
        .map(|t| t.active_of(&on))
        .unwrap_or_default();
    Ok(RxAggregation {
        turned_off: on.into_iter().filter(|f| !still_on.contains(f)).collect(),
        still_on,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 40 features: "rx-lro" at bit 15 and "rx-gro-hw" at bit 33 (as in
    /// netdev_features_strings, a second word), others filler.
    fn table(active: &[usize]) -> FeatureTable {
        let mut names: Vec<String> = (0..40).map(|i| format!("f{i}")).collect();
        names[15] = "rx-lro".into();
        names[33] = "rx-gro-hw".into();
        let mut words = vec![0u32; 2];
        for &b in active {
            words[b / 32] |= 1 << (b % 32);
        }
        FeatureTable {
            names,
            active: words,
        }
    }

    #[test]
    fn active_of_names_only_what_is_on_and_known() {
        assert_eq!(table(&[]).active_of(&RX_AGGREGATION), Vec::<&str>::new());
        // rx-gro-list is not in this kernel's table: not reported.
        assert_eq!(
            table(&[15, 33, 2]).active_of(&RX_AGGREGATION),
            vec!["rx-lro", "rx-gro-hw"]
        );
        assert_eq!(table(&[33]).active_of(&RX_AGGREGATION), vec!["rx-gro-hw"]);
    }

    #[test]
    fn clear_request_touches_only_the_named_bits() {
        let t = table(&[15, 33, 2]);
        assert_eq!(
            t.clear_request(&["rx-lro", "rx-gro-hw"]),
            vec![(1 << 15, 0), (1 << 1, 0)]
        );
        assert_eq!(t.clear_request(&["rx-gro-list"]), vec![(0, 0), (0, 0)]);
    }
}
