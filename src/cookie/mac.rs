//! The cookie MAC: SipHash-2-4 keyed with the cookie secret over everything
//! a cookie binds.
//!
//! Owns the exact MAC input (a fixed stack buffer, no allocation); never
//! truncates or places the result (that is `layout`).

use std::hash::Hasher;

use siphasher::sip::SipHasher24;

use super::layout::{CookieMode, OptionBits};
use super::secret::CookieSecret;
use super::tuple::{address_bytes, AddressFamily, CookieTuple};

/// Bumped if the MAC input or the layout ever changes, so old and new
/// instances sharing a secret reject each other's cookies instead of
/// misreading them.
const LAYOUT_VERSION: u8 = 2;

/// 16 + 16 address bytes, 2 + 2 ports, 4 client ISN, 4 slot, 1 mode byte,
/// 2 encoded fields.
const MAC_INPUT_LEN: usize = 47;

/// Everything one MAC computation covers.
pub(crate) struct MacInput<'a> {
    pub(crate) tuple: &'a CookieTuple,
    pub(crate) client_isn: u32,
    pub(crate) slot: u32,
    pub(crate) mode: CookieMode,
    pub(crate) mss_index: u8,
    pub(crate) options: OptionBits,
}

/// The full 64-bit SipHash-2-4 output; callers truncate it.
pub(crate) fn cookie_mac(secret: &CookieSecret, input: &MacInput<'_>) -> u64 {
    let mut msg = [0u8; MAC_INPUT_LEN];
    msg[0..16].copy_from_slice(&address_bytes(input.tuple.client));
    msg[16..32].copy_from_slice(&address_bytes(input.tuple.server));
    msg[32..34].copy_from_slice(&input.tuple.client_port.to_be_bytes());
    msg[34..36].copy_from_slice(&input.tuple.server_port.to_be_bytes());
    msg[36..40].copy_from_slice(&input.client_isn.to_be_bytes());
    msg[40..44].copy_from_slice(&input.slot.to_be_bytes());
    msg[44] = mode_byte(input.mode, input.tuple.family());
    let encoded = u16::from(input.mss_index) << 6 | u16::from(input.options.bits());
    msg[45..47].copy_from_slice(&encoded.to_be_bytes());

    let mut hasher = SipHasher24::new_with_key(secret.key());
    hasher.write(&msg);
    hasher.finish()
}

/// Bit 0: timestamps mode; bit 1: IPv6 (so a v4 tuple and its v4-mapped v6
/// twin never share cookies: their MSS tables differ); bits 4..8: version.
fn mode_byte(mode: CookieMode, family: AddressFamily) -> u8 {
    let ts = u8::from(mode == CookieMode::Timestamps);
    let v6 = u8::from(family == AddressFamily::V6);
    LAYOUT_VERSION << 4 | v6 << 1 | ts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cookie::syn_options::SynOptions;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn input(tuple: &CookieTuple) -> MacInput<'_> {
        MacInput {
            tuple,
            client_isn: 0x0102_0304,
            slot: 27_000_000,
            mode: CookieMode::NoTimestamps,
            mss_index: 2,
            options: OptionBits::from_syn(&SynOptions {
                mss: None,
                wscale: Some(7),
                sack_permitted: true,
                timestamps: false,
                ecn: false,
            }),
        }
    }

    fn v4_tuple() -> CookieTuple {
        CookieTuple {
            client: Ipv4Addr::new(198, 18, 0, 2).into(),
            server: Ipv4Addr::new(198, 19, 0, 1).into(),
            client_port: 40_000,
            server_port: 80,
        }
    }

    #[test]
    fn every_input_field_changes_the_mac() {
        let secret = CookieSecret::from_bytes([7; 16]);
        let tuple = v4_tuple();
        let base = cookie_mac(&secret, &input(&tuple));

        let mut other = tuple;
        other.client_port += 1;
        assert_ne!(cookie_mac(&secret, &input(&other)), base, "client port");
        let mut other = tuple;
        other.server_port += 1;
        assert_ne!(cookie_mac(&secret, &input(&other)), base, "server port");
        let mut other = tuple;
        other.client = Ipv4Addr::new(198, 18, 0, 3).into();
        assert_ne!(cookie_mac(&secret, &input(&other)), base, "client addr");
        let mut other = tuple;
        other.server = Ipv4Addr::new(198, 19, 0, 2).into();
        assert_ne!(cookie_mac(&secret, &input(&other)), base, "server addr");
        // Swapping the direction is a different tuple.
        let swapped = CookieTuple {
            client: tuple.server,
            server: tuple.client,
            client_port: tuple.server_port,
            server_port: tuple.client_port,
        };
        assert_ne!(cookie_mac(&secret, &input(&swapped)), base, "swapped");
        // The v4-mapped v6 twin has the same address bytes but another family.
        let mapped = |a: IpAddr| match a {
            IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
            v6 => v6,
        };
        let twin = CookieTuple {
            client: mapped(tuple.client),
            server: mapped(tuple.server),
            ..tuple
        };
        assert_ne!(cookie_mac(&secret, &input(&twin)), base, "v4-mapped twin");

        let changes: [fn(&mut MacInput<'_>); 5] = [
            |i| i.client_isn ^= 1,
            |i| i.slot += 1,
            |i| i.mode = CookieMode::Timestamps,
            |i| i.mss_index = 1,
            |i| i.options = OptionBits::from_low_bits(u32::from(i.options.bits()) ^ 1),
        ];
        for (n, change) in changes.iter().enumerate() {
            let mut changed = input(&tuple);
            change(&mut changed);
            assert_ne!(cookie_mac(&secret, &changed), base, "change {n}");
        }

        let other_secret = CookieSecret::from_bytes([8; 16]);
        assert_ne!(cookie_mac(&other_secret, &input(&tuple)), base, "secret");
    }

    #[test]
    fn every_v6_address_byte_enters_the_mac() {
        let secret = CookieSecret::from_bytes(*b"0123456789abcdef");
        let client: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let tuple = CookieTuple {
            client: client.into(),
            server: "2001:db8:1::1".parse::<Ipv6Addr>().unwrap().into(),
            client_port: 50_000,
            server_port: 443,
        };
        let base = cookie_mac(&secret, &input(&tuple));
        for byte in 0..16 {
            let mut octets = client.octets();
            octets[byte] ^= 0x80;
            let other = CookieTuple {
                client: Ipv6Addr::from(octets).into(),
                ..tuple
            };
            assert_ne!(cookie_mac(&secret, &input(&other)), base, "byte {byte}");
        }
    }
}
