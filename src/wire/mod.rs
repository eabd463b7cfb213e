//! Wire formats: Ethernet (+802.1Q), IPv4 with options, IPv6 with extension
//! headers, TCP and its options, checksums. Parsing never panics and never
//! allocates on attacker bytes; every rejection is a [`ParseError`] with a
//! reason. Writers append to caller-owned buffers. No policy lives here.
//!
//! Built on explicit, bounds-checked offsets rather than `pnet_packet`
//! views: the engine needs byte offsets of the fields it rewrites (TSval,
//! SACK blocks) for incremental checksums, and one checked parse per frame
//! is cheaper than re-validating a view per layer.

pub mod checksum;
pub mod ethernet;
pub mod fragment;
pub mod frame;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod tcp_options;

pub use frame::{parse_frame, write_tcp_frame, IpInfo, ParsedFrame, TcpView};

/// Which header a [`ParseError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Ethernet,
    Ipv4,
    Ipv6,
    Tcp,
    TcpOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{0:?} header truncated")]
    Truncated(Layer),
    #[error("IP version does not match the EtherType")]
    BadVersion,
    #[error("{0:?} header length field invalid")]
    BadHeaderLength(Layer),
    #[error("more than two VLAN tags")]
    TooManyVlanTags,
    #[error("IPv6 extension header chain too long")]
    TooManyExtensionHeaders,
    #[error("TCP option kind {0} has an invalid length")]
    BadOptionLength(u8),
}
