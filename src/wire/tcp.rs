//! TCP header (RFC 9293 section 3.1): field reads and writes at fixed
//! offsets of a segment slice, and a writer for whole segments. Options are
//! in `tcp_options`; checksums in `checksum`.

use super::{Layer, ParseError};

pub const MIN_HEADER_LEN: usize = 20;
/// Data offset is 4 bits of 32-bit words: 60 bytes, 40 of options.
pub const MAX_HEADER_LEN: usize = 60;
pub const PROTOCOL: u8 = 6;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

pub const OFF_SEQ: usize = 4;
pub const OFF_ACK: usize = 8;
/// The flags byte (CWR ... FIN), after the data offset byte.
pub const OFF_FLAGS: usize = 13;
pub const OFF_WINDOW: usize = 14;
pub const OFF_CHECKSUM: usize = 16;

/// The fixed-header fields of a segment, copied out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHeader {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub header_len: usize,
    pub flags: u8,
    pub window: u16,
    pub checksum: u16,
}

impl TcpHeader {
    pub fn has(&self, flags: u8) -> bool {
        self.flags & flags == flags
    }
}

pub fn parse(segment: &[u8]) -> Result<TcpHeader, ParseError> {
    if segment.len() < MIN_HEADER_LEN {
        return Err(ParseError::Truncated(Layer::Tcp));
    }
    let header_len = usize::from(segment[12] >> 4) * 4;
    if header_len < MIN_HEADER_LEN {
        return Err(ParseError::BadHeaderLength(Layer::Tcp));
    }
    if segment.len() < header_len {
        return Err(ParseError::Truncated(Layer::Tcp));
    }
    Ok(TcpHeader {
        src_port: read_u16(segment, 0),
        dst_port: read_u16(segment, 2),
        seq: read_u32(segment, OFF_SEQ),
        ack: read_u32(segment, OFF_ACK),
        header_len,
        flags: segment[13],
        window: read_u16(segment, OFF_WINDOW),
        checksum: read_u16(segment, OFF_CHECKSUM),
    })
}

pub fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Fields of a segment to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegmentSpec<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Encoded options, a multiple of 4 bytes, at most 40.
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

impl TcpSegmentSpec<'_> {
    /// Bytes on the wire: header, options, payload.
    pub fn wire_len(&self) -> usize {
        MIN_HEADER_LEN + self.options.len() + self.payload.len()
    }

    /// Append the segment with a zero checksum; the caller fills it in once
    /// the pseudo-header is known.
    pub fn write(&self, out: &mut Vec<u8>) {
        debug_assert!(self.options.len().is_multiple_of(4) && self.options.len() <= 40);
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.ack.to_be_bytes());
        let data_offset = ((MIN_HEADER_LEN + self.options.len()) / 4) as u8;
        out.extend_from_slice(&[data_offset << 4, self.flags]);
        out.extend_from_slice(&self.window.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        out.extend_from_slice(self.options);
        out.extend_from_slice(self.payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: [u8; 24] = [
        0x1f, 0x90, 0xc3, 0x50, 0x00, 0x00, 0x00, 0x64, 0x00, 0x00, 0x00, 0xc8, 0x60, 0x12, 0xff,
        0xff, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
    ];

    #[test]
    fn write_and_parse_golden() {
        let spec = TcpSegmentSpec {
            src_port: 8080,
            dst_port: 50000,
            seq: 100,
            ack: 200,
            flags: SYN | ACK,
            window: 65535,
            options: &[2, 4, 0x05, 0xb4],
            payload: &[],
        };
        let mut out = vec![0xa5; 2];
        spec.write(&mut out);
        assert_eq!(&out[..2], &[0xa5, 0xa5]);
        assert_eq!(&out[2..], &GOLDEN);
        assert_eq!(spec.wire_len(), 24);
        let h = parse(&out[2..]).unwrap();
        assert_eq!(
            (h.src_port, h.dst_port, h.seq, h.ack),
            (8080, 50000, 100, 200)
        );
        assert_eq!(h.header_len, 24);
        assert!(h.has(SYN | ACK));
        assert!(!h.has(FIN));
    }

    #[test]
    fn rejects_truncated_and_bad_offset() {
        assert_eq!(parse(&GOLDEN[..19]), Err(ParseError::Truncated(Layer::Tcp)));
        assert_eq!(parse(&GOLDEN[..23]), Err(ParseError::Truncated(Layer::Tcp)));
        let mut b = GOLDEN;
        b[12] = 0x40;
        assert_eq!(parse(&b), Err(ParseError::BadHeaderLength(Layer::Tcp)));
    }
}
