//! What the IP layer says about a fragment: the datagram it belongs to and
//! whether it is the first (offset 0, the one carrying the upper-layer
//! header). Never reassembles and never decides what to do with one.

/// One fragment of an IP datagram (RFC 791 3.1; RFC 8200 4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// Identification: the IPv4 header's 16 bits, or the IPv6 Fragment
    /// header's 32. With source, destination and protocol it names the
    /// datagram the fragment belongs to.
    pub id: u32,
    /// Fragment offset 0: the fragment that carries the upper-layer header.
    pub first: bool,
}
