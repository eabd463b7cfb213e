//! Undo what receive offloads did to a frame before the engine sees it:
//! put back the VLAN tag the kernel stripped into auxdata, and complete a
//! partial (CHECKSUM_PARTIAL) L4 checksum, so forwarded frames are exactly
//! what belongs on the wire.

use crate::wire::ethernet::{self, MAX_HEADER_LEN};
use crate::wire::frame::complete_l4_checksum;

use super::RxInfo;

/// Largest frame the engine may forward on a port with this MTU.
pub fn max_frame_len(mtu: usize) -> usize {
    mtu + MAX_HEADER_LEN
}

/// Re-insert a stripped 802.1Q/802.1ad tag after the MAC addresses.
pub fn restore_vlan_tag(frame: &mut Vec<u8>, tpid: u16, tci: u16) {
    if frame.len() < 2 * ethernet::MAC_LEN {
        return;
    }
    let tpid = if tpid == 0 {
        ethernet::ETHERTYPE_VLAN
    } else {
        tpid
    };
    let at = 2 * ethernet::MAC_LEN;
    let t = tpid.to_be_bytes();
    let c = tci.to_be_bytes();
    frame.splice(at..at, [t[0], t[1], c[0], c[1]]);
}

/// Apply `info` to a received frame. Returns false if the frame cannot be
/// made whole (truncated).
pub fn normalize(frame: &mut Vec<u8>, info: &RxInfo) -> bool {
    if info.truncated {
        return false;
    }
    if let Some((tpid, tci)) = info.vlan {
        restore_vlan_tag(frame, tpid, tci);
    }
    if info.checksum_not_ready {
        complete_l4_checksum(frame);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_tag_restored_after_macs() {
        let mut f = vec![1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 0x08, 0x00, 0x45];
        assert!(normalize(
            &mut f,
            &RxInfo {
                vlan: Some((0, 0x0064)),
                ..RxInfo::default()
            }
        ));
        assert_eq!(&f[12..18], &[0x81, 0x00, 0x00, 0x64, 0x08, 0x00]);
        let mut q = vec![0u8; 14];
        restore_vlan_tag(&mut q, 0x88a8, 5);
        assert_eq!(&q[12..16], &[0x88, 0xa8, 0, 5]);
    }

    #[test]
    fn truncated_frames_are_refused() {
        let mut f = vec![0u8; 60];
        assert!(!normalize(
            &mut f,
            &RxInfo {
                truncated: true,
                ..RxInfo::default()
            }
        ));
    }
}
