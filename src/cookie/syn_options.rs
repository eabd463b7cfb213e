//! What the client's SYN offered, in the form the cookie needs.
//!
//! Plain data filled in by the engine from the parsed SYN; it never parses
//! packets itself.

/// The SYN options a cookie can carry through the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynOptions {
    /// The client's MSS option. `None`: no MSS option, so the RFC 9293
    /// (3.7.1) default applies: 536 for IPv4, 1220 for IPv6.
    pub mss: Option<u16>,
    /// The client's window-scale shift. `None`: no window-scale option.
    /// Values above 14 are treated as 14 (RFC 7323, 2.3).
    pub wscale: Option<u8>,
    /// The client sent SACK-permitted (RFC 2018).
    pub sack_permitted: bool,
    /// The client sent a timestamp option (RFC 7323).
    pub timestamps: bool,
    /// The SYN had ECE and CWR set: an ECN-setup SYN (RFC 3168, 6.1.1).
    pub ecn: bool,
}
