//! TCP options (RFC 9293 3.1, RFC 7323 timestamps and window scale, RFC 2018
//! SACK): a parse of the options area into what the gateway uses, with the
//! byte offsets of the fields it rewrites, and an encoder for SYN/SYN-ACK
//! option sets. Never allocates; unknown options are skipped by length.

use super::{Layer, ParseError};

pub const KIND_EOL: u8 = 0;
pub const KIND_NOP: u8 = 1;
pub const KIND_MSS: u8 = 2;
pub const KIND_WSCALE: u8 = 3;
pub const KIND_SACK_PERMITTED: u8 = 4;
pub const KIND_SACK: u8 = 5;
pub const KIND_TIMESTAMPS: u8 = 8;
/// RFC 2385 TCP MD5 signature.
pub const KIND_MD5SIG: u8 = 19;
/// RFC 5925 TCP Authentication Option.
pub const KIND_AO: u8 = 29;
/// RFC 7323 section 2.3: shifts above 14 are treated as 14.
pub const MAX_WSCALE: u8 = 14;

/// What the options area says, with offsets (relative to the start of the
/// options area) of the fields that translation rewrites.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    /// Offset of TSval (TSecr follows at +4).
    pub timestamps_at: usize,
    /// Offset of the first SACK block and the number of blocks (each 8 bytes).
    pub sack_at: usize,
    pub sack_blocks: u8,
    /// An MD5 (RFC 2385) or AO (RFC 5925) option: the segment is signed by
    /// its sender with a key the gateway does not have.
    pub signed: bool,
}

pub fn parse(area: &[u8]) -> Result<TcpOptions, ParseError> {
    let mut o = TcpOptions::default();
    let mut i = 0;
    while i < area.len() {
        let kind = area[i];
        match kind {
            KIND_EOL => break,
            KIND_NOP => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let len = usize::from(
            *area
                .get(i + 1)
                .ok_or(ParseError::Truncated(Layer::TcpOptions))?,
        );
        if len < 2 {
            return Err(ParseError::BadOptionLength(kind));
        }
        if i + len > area.len() {
            return Err(ParseError::Truncated(Layer::TcpOptions));
        }
        let body = &area[i + 2..i + len];
        match (kind, body.len()) {
            (KIND_MSS, 2) => o.mss = Some(u16::from_be_bytes([body[0], body[1]])),
            (KIND_WSCALE, 1) => o.wscale = Some(body[0].min(MAX_WSCALE)),
            (KIND_SACK_PERMITTED, 0) => o.sack_permitted = true,
            (KIND_TIMESTAMPS, 8) => {
                o.timestamps = Some((
                    u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                    u32::from_be_bytes([body[4], body[5], body[6], body[7]]),
                ));
                o.timestamps_at = i + 2;
            }
            (KIND_SACK, n) if n > 0 && n % 8 == 0 && n <= 32 => {
                o.sack_at = i + 2;
                o.sack_blocks = (n / 8) as u8;
            }
            (KIND_MD5SIG | KIND_AO, _) => o.signed = true,
            (KIND_MSS | KIND_WSCALE | KIND_SACK_PERMITTED | KIND_TIMESTAMPS | KIND_SACK, _) => {
                return Err(ParseError::BadOptionLength(kind))
            }
            _ => {} // unknown option: skipped by its length
        }
        i += len;
    }
    Ok(o)
}

/// Options for a SYN or SYN-ACK, encoded in Linux's order and padding
/// (MSS, SACK-permitted + timestamps, NOP + window scale), at most 20 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SynOptionSet {
    pub mss: Option<u16>,
    pub sack_permitted: bool,
    pub timestamps: Option<(u32, u32)>,
    pub wscale: Option<u8>,
}

/// Encoded options, fixed capacity: no allocation.
#[derive(Debug, Clone, Copy)]
pub struct EncodedOptions {
    bytes: [u8; 40],
    len: usize,
}

impl Default for EncodedOptions {
    fn default() -> Self {
        EncodedOptions {
            bytes: [0; 40],
            len: 0,
        }
    }
}

impl EncodedOptions {
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn push(&mut self, b: &[u8]) {
        self.bytes[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }
}

impl SynOptionSet {
    pub fn encode(&self) -> EncodedOptions {
        let mut e = EncodedOptions::default();
        if let Some(mss) = self.mss {
            let m = mss.to_be_bytes();
            e.push(&[KIND_MSS, 4, m[0], m[1]]);
        }
        match (self.sack_permitted, self.timestamps) {
            (sack, Some((val, ecr))) => {
                if sack {
                    e.push(&[KIND_SACK_PERMITTED, 2]);
                } else {
                    e.push(&[KIND_NOP, KIND_NOP]);
                }
                e.push(&[KIND_TIMESTAMPS, 10]);
                e.push(&val.to_be_bytes());
                e.push(&ecr.to_be_bytes());
            }
            (true, None) => e.push(&[KIND_NOP, KIND_NOP, KIND_SACK_PERMITTED, 2]),
            (false, None) => {}
        }
        if let Some(ws) = self.wscale {
            e.push(&[KIND_NOP, KIND_WSCALE, 3, ws.min(MAX_WSCALE)]);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A Linux SYN's options: MSS 1460, SACK-permitted, TS, NOP, WS 7.
    const LINUX_SYN: [u8; 20] = [
        2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ];

    #[test]
    fn parses_linux_syn_options() {
        let o = parse(&LINUX_SYN).unwrap();
        assert_eq!(o.mss, Some(1460));
        assert!(o.sack_permitted);
        assert_eq!(o.timestamps, Some((1, 0)));
        assert_eq!(o.timestamps_at, 8);
        assert_eq!(o.wscale, Some(7));
        assert_eq!(o.sack_blocks, 0);
    }

    #[test]
    fn encodes_linux_layout_golden() {
        let set = SynOptionSet {
            mss: Some(1460),
            sack_permitted: true,
            timestamps: Some((1, 0)),
            wscale: Some(7),
        };
        assert_eq!(set.encode().as_slice(), &LINUX_SYN);
        let no_ts = SynOptionSet {
            mss: Some(536),
            sack_permitted: true,
            timestamps: None,
            wscale: None,
        };
        assert_eq!(no_ts.encode().as_slice(), &[2, 4, 2, 0x18, 1, 1, 4, 2]);
        let ts_only = SynOptionSet {
            mss: None,
            sack_permitted: false,
            timestamps: Some((5, 6)),
            wscale: Some(20),
        };
        assert_eq!(
            ts_only.encode().as_slice(),
            &[1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 6, 1, 3, 3, 14]
        );
    }

    #[test]
    fn parses_sack_blocks_and_skips_unknown() {
        // NOP NOP, SACK with two blocks, unknown kind 30 length 4, EOL then junk.
        let mut a = vec![1, 1, 5, 18];
        a.extend_from_slice(&[0u8; 16]);
        a.extend_from_slice(&[30, 4, 9, 9, 0, 77]);
        let o = parse(&a).unwrap();
        assert_eq!((o.sack_at, o.sack_blocks), (4, 2));
    }

    #[test]
    fn md5_and_ao_options_mark_the_segment_signed() {
        assert!(!parse(&LINUX_SYN).unwrap().signed);
        // MSS, then an RFC 2385 MD5 option (kind 19, 18 bytes), NOP NOP.
        let mut md5 = vec![2, 4, 5, 0xb4, 19, 18];
        md5.extend_from_slice(&[0xab; 16]);
        md5.extend_from_slice(&[1, 1]);
        let o = parse(&md5).unwrap();
        assert!(o.signed);
        assert_eq!(o.mss, Some(1460));
        // RFC 5925 AO: kind 29, KeyID, RNextKeyID, 12-byte MAC.
        let mut ao = vec![29, 16, 1, 1];
        ao.extend_from_slice(&[0xcd; 12]);
        assert!(parse(&ao).unwrap().signed);
    }

    #[test]
    fn wscale_clamped() {
        assert_eq!(parse(&[3, 3, 15, 0]).unwrap().wscale, Some(14));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse(&[2]), Err(ParseError::Truncated(Layer::TcpOptions)));
        assert_eq!(
            parse(&[2, 4, 1]),
            Err(ParseError::Truncated(Layer::TcpOptions))
        );
        assert_eq!(parse(&[30, 1]), Err(ParseError::BadOptionLength(30)));
        assert_eq!(parse(&[2, 3, 1, 0]), Err(ParseError::BadOptionLength(2)));
        assert_eq!(
            parse(&[8, 6, 0, 0, 0, 0]),
            Err(ParseError::BadOptionLength(8))
        );
        assert_eq!(
            parse(&[5, 7, 0, 0, 0, 0, 0]),
            Err(ParseError::BadOptionLength(5))
        );
    }

    proptest! {
        #[test]
        fn never_panics(area in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse(&area);
        }

        #[test]
        fn encode_parse_round_trip(mss in proptest::option::of(any::<u16>()), sack in any::<bool>(),
                                   ts in proptest::option::of((any::<u32>(), any::<u32>())),
                                   ws in proptest::option::of(0u8..=14)) {
            let set = SynOptionSet { mss, sack_permitted: sack, timestamps: ts, wscale: ws };
            let enc = set.encode();
            prop_assert_eq!(enc.as_slice().len() % 4, 0);
            let o = parse(enc.as_slice()).unwrap();
            prop_assert_eq!((o.mss, o.sack_permitted, o.timestamps, o.wscale), (mss, sack, ts, ws));
        }
    }
}
