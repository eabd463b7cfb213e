//! The connection 4-tuple a cookie is bound to, and its address family.
//!
//! Owns how addresses enter the MAC (16 bytes, IPv4 as v4-mapped IPv6);
//! never decides which side is the client (the engine does).

use std::net::IpAddr;

/// The addresses and ports of the handshake, seen from the client's SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieTuple {
    pub client: IpAddr,
    pub server: IpAddr,
    pub client_port: u16,
    pub server_port: u16,
}

/// Address family of a tuple: picks the MSS table and is bound into the MAC,
/// so a cookie minted for one family never decodes under the other's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddressFamily {
    V4,
    V6,
}

impl CookieTuple {
    /// The family of the client address (the packet's IP version).
    pub(crate) fn family(&self) -> AddressFamily {
        match self.client {
            IpAddr::V4(_) => AddressFamily::V4,
            IpAddr::V6(_) => AddressFamily::V6,
        }
    }
}

/// An address as 16 bytes: IPv6 as is, IPv4 as v4-mapped (RFC 4291, 2.5.5.2).
pub(crate) fn address_bytes(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn ipv4_enters_the_mac_as_v4_mapped() {
        let bytes = address_bytes(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 7)));
        assert_eq!(
            bytes,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 7]
        );
    }

    #[test]
    fn family_follows_the_client_address() {
        let v6: IpAddr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().into();
        let v4: IpAddr = Ipv4Addr::new(198, 18, 0, 1).into();
        let tuple = |client| CookieTuple {
            client,
            server: client,
            client_port: 1,
            server_port: 2,
        };
        assert_eq!(tuple(v4).family(), AddressFamily::V4);
        assert_eq!(tuple(v6).family(), AddressFamily::V6);
    }
}
