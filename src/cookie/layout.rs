//! Bit layout of a SYN cookie: where the MAC, the MSS index and the option
//! bits live in the 32-bit ISN and, with timestamps, in TSval's low 6 bits.
//!
//! Owns packing and unpacking only; never computes a MAC, never picks an MSS.
//!
//! # Layout
//!
//! Option bits (6 bits), the same in both modes:
//!
//! ```text
//!   5   4   3   2   1   0
//! +---------------+---+---+
//! |    wscale     | S | E |   wscale: 0..=14 the client's shift, 15 = no option
//! +---------------+---+---+   S: SACK-permitted, E: ECN-setup SYN
//! ```
//!
//! Without timestamps (the client sent no TSopt), everything is in the ISN:
//!
//! ```text
//!  31                            9  8     6  5         0
//! +-------------------------------+--------+-----------+
//! |         MAC (23 bits)         |  mss   |  options  |   mss: index into the
//! +-------------------------------+--------+-----------+   family's 8-entry table
//! ```
//!
//! (Linux's layout, and ours before, had 24 MAC bits and a 4-entry table,
//! which turns an MSS of 1260 into 536: one MAC bit buys a table with no
//! common MSS more than 1.6 % below its value; see `mss_table`.)
//!
//! With timestamps, the options ride in the low 6 bits of the SYN-ACK's
//! TSval (the engine sends `(clock & !0x3f) | bits`, as Linux does) and come
//! back in the ACK's TSecr (RFC 7323 3.2: TSecr echoes TSval), leaving more
//! room for the MAC:
//!
//! ```text
//!  31                                      3  2     0
//! +-----------------------------------------+--------+
//! |              MAC (29 bits)              |  mss   |   mss: index into the
//! +-----------------------------------------+--------+   same table
//! ```
//!
//! The MAC (SipHash-2-4, see `mac.rs`) covers both addresses, both ports, the
//! client ISN, the time slot, a mode byte (timestamps or not, address family,
//! layout version), the MSS index and the option bits. So neither the ISN's
//! low bits nor the echoed TSval bits can be changed without the check
//! failing, and the ACK's sequence number must be exactly client ISN + 1.
//!
//! # Forgery odds
//!
//! Every 32-bit value decodes to some valid MSS index and option set (the
//! tables have exactly 4 / 8 entries, and all 16 wscale codes mean
//! something), so a blind attacker's only obstacle is the MAC. `check`
//! accepts two slots (current and previous), i.e. two independent chances:
//!
//! - ACK without timestamps: 2 x 2^-23 = 2^-22, about 2.4e-7 per guess,
//!   one acceptance per ~4.2 million spoofed ACKs on average (Linux's
//!   cookies, which spend more bits on a coarse counter, are in the same
//!   range; the MAC bit went to the MSS table, see above).
//! - ACK with timestamps: 2 x 2^-29 = 2^-28, about 3.7e-9 per guess
//!   (the 6 TSecr bits are covered by the MAC, so they add no freedom).
//!
//! While a second key is accepted (a rotation, `CookieMinter::set_keys`:
//! at most two slots after a reload, or while the secret file names one),
//! each slot is checked under both keys: four chances, 2^-21 and 2^-27.
//!
//! The attacker picks the mode (by sending a timestamp option or not), so
//! the bound that counts is 2^-22 per guess (2^-21 during a rotation). The tuple and the client ISN
//! are free for the attacker to pick, but each guess is still one
//! independent 2^-23 chance. A forged acceptance costs one backend
//! connection; the engine's budgets bound what that can do. A genuine
//! cookie seen on the path can be replayed until it expires: between
//! `slot_seconds` and `2 * slot_seconds` after minting. Knowing the secret
//! breaks all of this, so it is a file with mode 0600.

use super::syn_options::SynOptions;

/// Which of the two layouts a cookie uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CookieMode {
    /// The client sent no timestamp option: options live in the ISN.
    NoTimestamps,
    /// The client sent a timestamp option: options live in TSval.
    Timestamps,
}

impl CookieMode {
    /// How many MAC bits the ISN carries.
    pub(crate) fn mac_bits(self) -> u32 {
        match self {
            Self::NoTimestamps => 23,
            Self::Timestamps => 29,
        }
    }

    /// The low `mac_bits` of a full 64-bit MAC: what the ISN can carry.
    pub(crate) fn truncate_mac(self, mac: u64) -> u32 {
        (mac as u32) & ((1u32 << self.mac_bits()) - 1)
    }
}

/// Mask of the TSval/TSecr bits that carry the option bits.
pub const TS_OPTION_BITS_MASK: u32 = 0x3f;

/// wscale code for "the client sent no window-scale option".
const WSCALE_ABSENT: u8 = 15;

/// Largest window-scale shift (RFC 7323, 2.3).
pub const MAX_WSCALE: u8 = 14;

/// The 6 option bits (wscale, SACK-permitted, ECN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OptionBits(u8);

impl OptionBits {
    /// Encode what the SYN offered; a shift above 14 is clamped to 14
    /// (RFC 7323, 2.3: the receiver uses 14 instead).
    pub(crate) fn from_syn(opts: &SynOptions) -> Self {
        let wscale = opts.wscale.map_or(WSCALE_ABSENT, |w| w.min(MAX_WSCALE));
        Self(wscale << 2 | u8::from(opts.sack_permitted) << 1 | u8::from(opts.ecn))
    }

    /// The bits from the low 6 bits of a value (TSecr).
    pub(crate) fn from_low_bits(value: u32) -> Self {
        Self((value & TS_OPTION_BITS_MASK) as u8)
    }

    /// The raw 6-bit value.
    pub(crate) fn bits(self) -> u8 {
        self.0
    }

    pub(crate) fn wscale(self) -> Option<u8> {
        let code = self.0 >> 2;
        (code != WSCALE_ABSENT).then_some(code)
    }

    pub(crate) fn sack_permitted(self) -> bool {
        self.0 & 0b10 != 0
    }

    pub(crate) fn ecn(self) -> bool {
        self.0 & 0b01 != 0
    }
}

/// Fields read back from a cookie, before the MAC is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CookieFields {
    pub(crate) mac: u32,
    pub(crate) mss_index: u8,
    pub(crate) options: OptionBits,
}

/// ISN without timestamps: MAC(23) | mss(3) | options(6).
pub(crate) fn pack_no_timestamps(mac: u64, mss_index: u8, options: OptionBits) -> u32 {
    CookieMode::NoTimestamps.truncate_mac(mac) << 9
        | u32::from(mss_index & 0b111) << 6
        | u32::from(options.bits())
}

pub(crate) fn unpack_no_timestamps(isn: u32) -> CookieFields {
    CookieFields {
        mac: isn >> 9,
        mss_index: ((isn >> 6) & 0b111) as u8,
        options: OptionBits::from_low_bits(isn),
    }
}

/// ISN with timestamps: MAC(29) | mss(3); options travel in TSval.
pub(crate) fn pack_timestamps(mac: u64, mss_index: u8) -> u32 {
    CookieMode::Timestamps.truncate_mac(mac) << 3 | u32::from(mss_index & 0b111)
}

/// `tsecr` is the ACK's TSecr, whose low 6 bits echo the option bits.
pub(crate) fn unpack_timestamps(isn: u32, tsecr: u32) -> CookieFields {
    CookieFields {
        mac: isn >> 3,
        mss_index: (isn & 0b111) as u8,
        options: OptionBits::from_low_bits(tsecr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn(wscale: Option<u8>, sack_permitted: bool, ecn: bool) -> SynOptions {
        SynOptions {
            mss: None,
            wscale,
            sack_permitted,
            timestamps: false,
            ecn,
        }
    }

    #[test]
    fn option_bits_round_trip_every_wscale_and_flag() {
        let wscales = (0..=MAX_WSCALE).map(Some).chain([None]);
        for wscale in wscales {
            for (sack, ecn) in [(false, false), (false, true), (true, false), (true, true)] {
                let bits = OptionBits::from_syn(&syn(wscale, sack, ecn));
                assert!(bits.bits() <= 0x3f);
                assert_eq!(bits.wscale(), wscale);
                assert_eq!(bits.sack_permitted(), sack);
                assert_eq!(bits.ecn(), ecn);
            }
        }
    }

    #[test]
    fn wscale_above_14_is_clamped() {
        for w in 15..=u8::MAX {
            assert_eq!(
                OptionBits::from_syn(&syn(Some(w), false, false)).wscale(),
                Some(14)
            );
        }
    }

    #[test]
    fn golden_isn_without_timestamps() {
        // wscale 7, SACK, no ECN: 0b0111_10 = 0x1e; mss index 5 -> 0x140;
        // MAC 0x2b_cdef (the low 23 bits) << 9 = 0x579b_de00.
        let options = OptionBits::from_syn(&syn(Some(7), true, false));
        let isn = pack_no_timestamps(0xdead_beef_00ab_cdef, 5, options);
        assert_eq!(isn, 0x579b_df5e);
        let fields = unpack_no_timestamps(isn);
        assert_eq!(fields.mac, 0x002b_cdef);
        assert_eq!(fields.mss_index, 5);
        assert_eq!(fields.options, options);
    }

    #[test]
    fn golden_isn_with_timestamps() {
        let isn = pack_timestamps(0xffff_ffff_ffff_ffff, 5);
        assert_eq!(isn, 0xffff_fffd);
        // The options come from TSecr's low 6 bits only.
        let fields = unpack_timestamps(isn, 0x1234_5600 | 0b11_1001);
        assert_eq!(fields.mac, 0x1fff_ffff);
        assert_eq!(fields.mss_index, 5);
        assert_eq!(fields.options.wscale(), Some(14));
        assert!(!fields.options.sack_permitted());
        assert!(fields.options.ecn());
    }

    #[test]
    fn every_isn_decodes_to_valid_fields() {
        // Sample the whole space with a stride: indices in range, wscale
        // codes either absent or <= 14. This is what makes the forgery odds
        // depend on the MAC alone.
        for isn in (0..=u32::MAX).step_by(65_537) {
            let plain = unpack_no_timestamps(isn);
            assert!(plain.mss_index < 8);
            assert!(plain.options.wscale().unwrap_or(0) <= MAX_WSCALE);
            let ts = unpack_timestamps(isn, isn.rotate_left(7));
            assert!(ts.mss_index < 8);
        }
    }
}
