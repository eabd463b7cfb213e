//! The set of protected services (address, port), and the retired ones: no
//! longer protected since a reload, whose connections the gateway still
//! carries until they end. A handful of entries, so a linear scan beats
//! hashing on the per-frame path.

use std::net::{IpAddr, SocketAddr};

/// A service: canonical address and port.
pub type ServiceAddr = (IpAddr, u16);

#[derive(Debug, Clone)]
pub struct ProtectedServices {
    services: Vec<ServiceAddr>,
    retired: Vec<ServiceAddr>,
    /// Protected services added by a reload, until when (engine clock) they
    /// take over connections made before they were protected.
    adopting: Vec<(ServiceAddr, u64)>,
}

impl ProtectedServices {
    pub fn new(list: &[SocketAddr]) -> ProtectedServices {
        ProtectedServices {
            services: list.iter().map(|s| (canonical(s.ip()), s.port())).collect(),
            retired: Vec::new(),
            adopting: Vec::new(),
        }
    }

    pub fn contains(&self, ip: IpAddr, port: u16) -> bool {
        self.services.iter().any(|&(a, p)| p == port && a == ip)
    }

    /// Removed by a reload while the gateway carried connections of it:
    /// those finish as they started, everything else of it is bridged.
    pub fn is_retired(&self, ip: IpAddr, port: u16) -> bool {
        self.retired.iter().any(|&(a, p)| p == port && a == ip)
    }

    pub fn retired(&self) -> &[ServiceAddr] {
        &self.retired
    }

    /// Added by a reload less than an idle timeout before `now_ms`:
    /// segments of connections the gateway does not carry may belong to
    /// connections made before, which it bridges and takes over.
    pub fn is_adopting(&self, ip: IpAddr, port: u16, now_ms: u64) -> bool {
        self.adopting
            .iter()
            .any(|&((a, p), until)| p == port && a == ip && now_ms < until)
    }

    pub fn adopting(&self) -> &[(ServiceAddr, u64)] {
        &self.adopting
    }

    /// Set the adopting services (only protected ones whose time has not
    /// passed are kept).
    pub fn set_adopting(&mut self, now_ms: u64, adopting: Vec<(ServiceAddr, u64)>) {
        let services = &self.services;
        self.adopting = adopting;
        self.adopting
            .retain(|(s, until)| services.contains(s) && now_ms < *until);
    }

    /// Set the retired services (those also protected are not).
    pub fn set_retired(&mut self, retired: Vec<ServiceAddr>) {
        self.retired = retired;
        let services = &self.services;
        self.retired.retain(|s| !services.contains(s));
        self.retired.sort_unstable();
        self.retired.dedup();
    }

    pub fn has_address(&self, ip: IpAddr) -> bool {
        self.services.iter().any(|&(a, _)| a == ip)
    }
}

/// `[::ffff:198.18.0.2]:80` names the IPv4 service on the wire.
pub(super) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_address_and_port() {
        let p = ProtectedServices::new(&[
            "198.18.0.2:8080".parse().unwrap(),
            "[2001:db8::2]:443".parse().unwrap(),
            "[::ffff:198.18.0.3]:22".parse().unwrap(),
        ]);
        assert!(p.contains("198.18.0.2".parse().unwrap(), 8080));
        assert!(!p.contains("198.18.0.2".parse().unwrap(), 8081));
        assert!(p.contains("2001:db8::2".parse().unwrap(), 443));
        assert!(p.contains("198.18.0.3".parse().unwrap(), 22));
        assert!(p.has_address("198.18.0.2".parse().unwrap()));
        assert!(!p.has_address("198.18.0.9".parse().unwrap()));
    }
}
