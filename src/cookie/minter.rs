//! Minting a SYN cookie for a SYN and checking the ACK that returns it.
//!
//! Owns time slots, the keys in use across a rotation, and the mint/check
//! procedures; bit layout and forgery odds are in `layout`, the MAC input in
//! `mac`. Pure: time comes in as `now_secs`, nothing is allocated, and
//! nothing about a handshake is remembered between calls.

use super::layout::{
    pack_no_timestamps, pack_timestamps, unpack_no_timestamps, unpack_timestamps, CookieMode,
    OptionBits,
};
use super::mac::{cookie_mac, MacInput};
use super::mss_table::MssTable;
use super::secret::{CookieKeys, CookieSecret};
use super::syn_options::SynOptions;
use super::tuple::CookieTuple;

/// What the SYN-ACK must carry for a cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MintedCookie {
    /// The SYN-ACK's sequence number.
    pub isn: u32,
    /// `Some(6-bit value)` when the SYN had timestamps: the engine sends
    /// `TSval = (clock & !0x3f) | bits`, and the client echoes it in TSecr.
    pub ts_low_bits: Option<u8>,
    /// The MSS the cookie encodes (a table entry, <= the client's MSS unless
    /// that was below the table's floor; see `mss_table`).
    pub mss: u16,
}

/// What a valid cookie ACK gives back: enough to open the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedCookie {
    pub client_isn: u32,
    pub mss: u16,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    pub timestamps: bool,
    pub ecn: bool,
}

/// Why an ACK's cookie was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// The MAC matches neither accepted slot. A forged cookie, a wrong
    /// tuple, an ACK sequence other than client ISN + 1, altered TSecr bits,
    /// an expired cookie and one from a future slot all look the same: the
    /// MAC cannot tell them apart (and should not, for an attacker).
    #[error("SYN cookie rejected: MAC mismatch (forged, wrong tuple or sequence, or expired)")]
    BadMac,
}

/// Mints cookies with one key and checks them against it and at most one
/// more, with one slot length.
///
/// The second key is the secret file's second line while it names one
/// (every instance of a fleet learns a new key before any mints with it),
/// else the key that minted before the last rotation, for as long as a
/// cookie it minted can still be valid (its slot and the next). Checking
/// two keys doubles the MACs a forged ACK is tried against, so the odds of
/// a guess (`layout`) double while a second key is accepted.
pub struct CookieMinter {
    secret: CookieSecret,
    /// The file's second key.
    also_accepted: Option<CookieSecret>,
    /// The key that minted before the last rotation, and the wall-clock
    /// second from which no cookie it minted is valid.
    retired: Option<(CookieSecret, u64)>,
    slot_seconds: u64,
}

impl CookieMinter {
    /// `slot_seconds` must be at least 1 (debug assertion; release clamps).
    /// A cookie is accepted during its slot and the next one, so it lives
    /// between `slot_seconds` and `2 * slot_seconds`.
    pub fn new(keys: impl Into<CookieKeys>, slot_seconds: u64) -> Self {
        let keys = keys.into();
        debug_assert!(slot_seconds >= 1, "cookie slot length must be >= 1 s");
        Self {
            secret: keys.minting,
            also_accepted: keys.also_accepted,
            retired: None,
            slot_seconds: slot_seconds.max(1),
        }
    }

    /// Take the keys a reloaded secret file names, at wall-clock `now_secs`.
    /// A new minting key mints from now on; the one it replaces stays
    /// accepted until the end of the slot after this one (the last a cookie
    /// minted now is valid in), unless the file names a second key, which
    /// then takes the one extra place. True when either key the file names
    /// changed.
    pub fn set_keys(&mut self, keys: CookieKeys, now_secs: u64) -> bool {
        let changed = keys.minting != self.secret || keys.also_accepted != self.also_accepted;
        if keys.minting != self.secret {
            let until = (u64::from(self.slot(now_secs)) + 2) * self.slot_seconds;
            let old = std::mem::replace(&mut self.secret, keys.minting);
            self.retired = Some((old, until));
        }
        self.also_accepted = keys.also_accepted;
        changed
    }

    /// The key accepted besides the minting one at `now_secs`, and until
    /// when (wall-clock second; `u64::MAX` while the file names it).
    pub fn accepted_key(&self, now_secs: u64) -> Option<(&CookieSecret, u64)> {
        match (&self.also_accepted, &self.retired) {
            (Some(k), _) => Some((k, u64::MAX)),
            (None, Some((k, until))) if now_secs < *until => Some((k, *until)),
            _ => None,
        }
    }

    pub fn slot_seconds(&self) -> u64 {
        self.slot_seconds
    }

    /// The SipHash key, for the XDP fast path's parameter map (the program
    /// mints and checks the same cookies; it never reads the secret file).
    pub fn siphash_key(&self) -> [u8; 16] {
        *self.secret.key()
    }

    /// The time slot for wall-clock seconds since the Unix epoch. Truncated
    /// to 32 bits: slots only need to differ between neighbours, and with
    /// 1-second slots the counter wraps only in 2106.
    fn slot(&self, now_secs: u64) -> u32 {
        (now_secs / self.slot_seconds) as u32
    }

    /// The cookie for a SYN. `now_secs`: wall-clock seconds since the Unix
    /// epoch, so instances sharing a secret agree on slots.
    pub fn mint(
        &self,
        t: &CookieTuple,
        client_isn: u32,
        opts: &SynOptions,
        now_secs: u64,
    ) -> MintedCookie {
        let mode = if opts.timestamps {
            CookieMode::Timestamps
        } else {
            CookieMode::NoTimestamps
        };
        let table = MssTable::select(t.family());
        let mss_index = table.index_for(opts.mss);
        let options = OptionBits::from_syn(opts);
        let mac = cookie_mac(
            &self.secret,
            &MacInput {
                tuple: t,
                client_isn,
                slot: self.slot(now_secs),
                mode,
                mss_index,
                options,
            },
        );
        let (isn, ts_low_bits) = match mode {
            CookieMode::NoTimestamps => (pack_no_timestamps(mac, mss_index, options), None),
            CookieMode::Timestamps => (pack_timestamps(mac, mss_index), Some(options.bits())),
        };
        MintedCookie {
            isn,
            ts_low_bits,
            mss: table.entry(mss_index),
        }
    }

    /// Check the ACK completing a cookie handshake.
    ///
    /// `ack_seq` must be exactly client ISN + 1 (no additive tolerance),
    /// `ack_ack` is cookie + 1, and `tsecr` is the ACK's TSecr if it carries
    /// a timestamp option. The mode follows `tsecr`: RFC 7323 (3.2) has a
    /// client that negotiated timestamps send them on every non-RST segment,
    /// and one that did not never send them, so a mismatch fails the MAC.
    /// Accepts the current slot and the previous one only, with the minting
    /// key or the accepted one ([`Self::accepted_key`]).
    pub fn check(
        &self,
        t: &CookieTuple,
        ack_seq: u32,
        ack_ack: u32,
        tsecr: Option<u32>,
        now_secs: u64,
    ) -> Result<DecodedCookie, CookieError> {
        let cookie = ack_ack.wrapping_sub(1);
        let client_isn = ack_seq.wrapping_sub(1);
        let (mode, fields) = match tsecr {
            Some(tsecr) => (CookieMode::Timestamps, unpack_timestamps(cookie, tsecr)),
            None => (CookieMode::NoTimestamps, unpack_no_timestamps(cookie)),
        };
        let current = self.slot(now_secs);
        let matches = |secret: &CookieSecret, slot: u32| {
            let mac = cookie_mac(
                secret,
                &MacInput {
                    tuple: t,
                    client_isn,
                    slot,
                    mode,
                    mss_index: fields.mss_index,
                    options: fields.options,
                },
            );
            mode.truncate_mac(mac) == fields.mac
        };
        let by_key = |secret: &CookieSecret| {
            matches(secret, current) || matches(secret, current.wrapping_sub(1))
        };
        let valid = by_key(&self.secret)
            || self
                .accepted_key(now_secs)
                .is_some_and(|(secret, _)| by_key(secret));
        if !valid {
            return Err(CookieError::BadMac);
        }
        let table = MssTable::select(t.family());
        Ok(DecodedCookie {
            client_isn,
            mss: table.entry(fields.mss_index),
            wscale: fields.options.wscale(),
            sack_permitted: fields.options.sack_permitted(),
            timestamps: mode == CookieMode::Timestamps,
            ecn: fields.options.ecn(),
        })
    }
}

#[cfg(test)]
mod tests;
