//! Tests for `CookieMinter`: round trips, tampering, slot edges, forgery
//! statistics. The engine's side of the timestamp trick is simulated by
//! `Ack::for_cookie`.

use super::*;
use crate::cookie::layout::MAX_WSCALE;
use crate::cookie::mss_table::{MSS_TABLE_V4, MSS_TABLE_V6};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const SLOT: u64 = 64;
/// A slot number around 2024 with 64-second slots.
const SLOT_N: u64 = 27_000_000;
const CLIENT_ISN: u32 = 0xfffe_1234;

fn minter() -> CookieMinter {
    CookieMinter::new(CookieSecret::from_bytes(*b"synguard-test-k1"), SLOT)
}

fn v4_tuple() -> CookieTuple {
    CookieTuple {
        client: Ipv4Addr::new(198, 18, 0, 2).into(),
        server: Ipv4Addr::new(198, 19, 0, 1).into(),
        client_port: 40_000,
        server_port: 80,
    }
}

fn v6_tuple() -> CookieTuple {
    CookieTuple {
        client: "2001:db8::2".parse::<Ipv6Addr>().unwrap().into(),
        server: "2001:db8:1::1".parse::<Ipv6Addr>().unwrap().into(),
        client_port: 50_001,
        server_port: 443,
    }
}

fn opts(timestamps: bool) -> SynOptions {
    SynOptions {
        mss: Some(1460),
        wscale: Some(7),
        sack_permitted: true,
        timestamps,
        ecn: false,
    }
}

/// The client's ACK, as a conforming client builds it from the SYN-ACK.
#[derive(Debug, Clone, Copy)]
struct Ack {
    seq: u32,
    ack: u32,
    tsecr: Option<u32>,
}

impl Ack {
    /// `clock`: the gateway's timestamp clock when it sent the SYN-ACK.
    fn for_cookie(minted: &MintedCookie, client_isn: u32, clock: u32) -> Self {
        Self {
            seq: client_isn.wrapping_add(1),
            ack: minted.isn.wrapping_add(1),
            tsecr: minted
                .ts_low_bits
                .map(|bits| (clock & !0x3f) | u32::from(bits)),
        }
    }

    fn check(
        self,
        m: &CookieMinter,
        t: &CookieTuple,
        now: u64,
    ) -> Result<DecodedCookie, CookieError> {
        m.check(t, self.seq, self.ack, self.tsecr, now)
    }
}

fn expected_decoded(minted: &MintedCookie, client_isn: u32, o: &SynOptions) -> DecodedCookie {
    DecodedCookie {
        client_isn,
        mss: minted.mss,
        wscale: o.wscale.map(|w| w.min(MAX_WSCALE)),
        sack_permitted: o.sack_permitted,
        timestamps: o.timestamps,
        ecn: o.ecn,
    }
}

#[test]
fn round_trip_recovers_every_field_in_both_modes_and_families() {
    let m = minter();
    let now = SLOT_N * SLOT + 5;
    let wscales = (0..=MAX_WSCALE)
        .map(Some)
        .chain([None, Some(15), Some(u8::MAX)]);
    let mut checked = 0;
    for (t, table, default_mss) in [
        (v4_tuple(), &MSS_TABLE_V4, 536),
        (v6_tuple(), &MSS_TABLE_V6, 1220),
    ] {
        for timestamps in [false, true] {
            // Every table entry exactly, plus absent.
            let msses = table.iter().map(|&e| Some(e)).chain([None]);
            for mss in msses {
                for wscale in wscales.clone() {
                    for (sack_permitted, ecn) in
                        [(false, false), (false, true), (true, false), (true, true)]
                    {
                        let o = SynOptions {
                            mss,
                            wscale,
                            sack_permitted,
                            timestamps,
                            ecn,
                        };
                        let minted = m.mint(&t, CLIENT_ISN, &o, now);
                        assert_eq!(minted.ts_low_bits.is_some(), timestamps);
                        assert_eq!(minted.mss, mss.unwrap_or(default_mss), "{o:?}");
                        let ack = Ack::for_cookie(&minted, CLIENT_ISN, 0x9876_5432);
                        let decoded = ack.check(&m, &t, now).unwrap_or_else(|e| {
                            panic!("{t:?} {o:?} {minted:?}: {e}");
                        });
                        assert_eq!(decoded, expected_decoded(&minted, CLIENT_ISN, &o));
                        checked += 1;
                    }
                }
            }
        }
    }
    // 2 families x 2 modes x (8 + 1) MSS values x 18 wscales x 4 flag combos.
    assert_eq!(checked, 2 * 2 * 9 * 18 * 4);
}

#[test]
fn client_isn_wraps_around() {
    let m = minter();
    let t = v4_tuple();
    for isn in [u32::MAX, 0, 1] {
        for timestamps in [false, true] {
            let minted = m.mint(&t, isn, &opts(timestamps), 1000);
            let decoded = Ack::for_cookie(&minted, isn, 7)
                .check(&m, &t, 1000)
                .unwrap();
            assert_eq!(decoded.client_isn, isn);
        }
    }
}

#[test]
fn wrong_tuple_or_numbers_are_rejected() {
    let m = minter();
    let now = SLOT_N * SLOT + 30;
    for t in [v4_tuple(), v6_tuple()] {
        for timestamps in [false, true] {
            let minted = m.mint(&t, CLIENT_ISN, &opts(timestamps), now);
            let good = Ack::for_cookie(&minted, CLIENT_ISN, 0x1234_5678);
            assert!(good.check(&m, &t, now).is_ok());

            let other_client = match t.client {
                IpAddr::V4(_) => Ipv4Addr::new(198, 18, 0, 3).into(),
                IpAddr::V6(_) => "2001:db8::3".parse::<Ipv6Addr>().unwrap().into(),
            };
            let other_server = match t.server {
                IpAddr::V4(_) => Ipv4Addr::new(198, 19, 0, 9).into(),
                IpAddr::V6(_) => "2001:db8:1::9".parse::<Ipv6Addr>().unwrap().into(),
            };
            let wrong_tuples = [
                CookieTuple {
                    client_port: t.client_port + 1,
                    ..t
                },
                CookieTuple {
                    server_port: t.server_port + 1,
                    ..t
                },
                CookieTuple {
                    client: other_client,
                    ..t
                },
                CookieTuple {
                    server: other_server,
                    ..t
                },
            ];
            for wrong in wrong_tuples {
                assert_eq!(
                    good.check(&m, &wrong, now),
                    Err(CookieError::BadMac),
                    "{wrong:?}"
                );
            }

            // The ACK's sequence must be exactly client ISN + 1.
            for seq in [
                good.seq.wrapping_add(1),
                good.seq.wrapping_sub(1),
                good.seq ^ 1 << 31,
            ] {
                let ack = Ack { seq, ..good };
                assert_eq!(
                    ack.check(&m, &t, now),
                    Err(CookieError::BadMac),
                    "seq {seq}"
                );
            }

            // Every single-bit change of the echoed cookie fails, including
            // the MSS index and option bits.
            for bit in 0..32 {
                let ack = Ack {
                    ack: good.ack ^ 1 << bit,
                    ..good
                };
                assert_eq!(
                    ack.check(&m, &t, now),
                    Err(CookieError::BadMac),
                    "bit {bit}"
                );
            }

            // The mode must match: timestamps present iff minted with them.
            let flipped_mode = Ack {
                tsecr: match good.tsecr {
                    Some(_) => None,
                    None => Some(0x1234_5678),
                },
                ..good
            };
            assert_eq!(flipped_mode.check(&m, &t, now), Err(CookieError::BadMac));
        }
    }
}

#[test]
fn tampered_timestamp_bits_are_rejected_and_high_bits_ignored() {
    let m = minter();
    let t = v4_tuple();
    let now = SLOT_N * SLOT;
    let minted = m.mint(&t, CLIENT_ISN, &opts(true), now);
    let good = Ack::for_cookie(&minted, CLIENT_ISN, 0xabcd_ef00);
    let tsecr = good.tsecr.unwrap();
    for bit in 0..6 {
        let ack = Ack {
            tsecr: Some(tsecr ^ 1 << bit),
            ..good
        };
        assert_eq!(
            ack.check(&m, &t, now),
            Err(CookieError::BadMac),
            "bit {bit}"
        );
    }
    // Raising wscale or turning on SACK/ECN in TSecr: all fail.
    for low in 0..=0x3f_u32 {
        if low == tsecr & 0x3f {
            continue;
        }
        let ack = Ack {
            tsecr: Some((tsecr & !0x3f) | low),
            ..good
        };
        assert_eq!(
            ack.check(&m, &t, now),
            Err(CookieError::BadMac),
            "low {low:#x}"
        );
    }
    // The clock part of TSval is not part of the cookie.
    for high in [0, 0x40, 0xffff_ffc0] {
        let ack = Ack {
            tsecr: Some(high | (tsecr & 0x3f)),
            ..good
        };
        assert!(ack.check(&m, &t, now).is_ok(), "high {high:#x}");
    }
}

#[test]
fn slot_edges_accept_exactly_the_current_and_previous_slot() {
    let m = minter();
    let t = v6_tuple();
    let first = |slot: u64| slot * SLOT;
    let last = |slot: u64| slot * SLOT + SLOT - 1;
    for timestamps in [false, true] {
        // Minted at the last second of slot N.
        let minted = m.mint(&t, CLIENT_ISN, &opts(timestamps), last(SLOT_N));
        let ack = Ack::for_cookie(&minted, CLIENT_ISN, 99);
        assert!(ack.check(&m, &t, last(SLOT_N)).is_ok());
        assert!(ack.check(&m, &t, first(SLOT_N + 1)).is_ok());
        assert!(ack.check(&m, &t, last(SLOT_N + 1)).is_ok());
        assert_eq!(
            ack.check(&m, &t, first(SLOT_N + 2)),
            Err(CookieError::BadMac)
        );
        assert_eq!(
            ack.check(&m, &t, first(SLOT_N + 100)),
            Err(CookieError::BadMac)
        );

        // Minted at the first second of slot N: same deadline.
        let minted = m.mint(&t, CLIENT_ISN, &opts(timestamps), first(SLOT_N));
        let ack = Ack::for_cookie(&minted, CLIENT_ISN, 99);
        assert!(ack.check(&m, &t, last(SLOT_N + 1)).is_ok());
        assert_eq!(
            ack.check(&m, &t, first(SLOT_N + 2)),
            Err(CookieError::BadMac)
        );

        // Checked before the slot it was minted in (clock went back, or the
        // cookie came from an instance whose clock runs ahead).
        let minted = m.mint(&t, CLIENT_ISN, &opts(timestamps), first(SLOT_N + 1));
        let ack = Ack::for_cookie(&minted, CLIENT_ISN, 99);
        assert_eq!(ack.check(&m, &t, last(SLOT_N)), Err(CookieError::BadMac));
        assert_eq!(
            ack.check(&m, &t, first(SLOT_N - 5)),
            Err(CookieError::BadMac)
        );
    }
}

#[test]
fn slot_length_is_respected() {
    let m = CookieMinter::new(CookieSecret::from_bytes([3; 16]), 1);
    assert_eq!(m.slot_seconds(), 1);
    let t = v4_tuple();
    let minted = m.mint(&t, CLIENT_ISN, &opts(false), 1_000);
    let ack = Ack::for_cookie(&minted, CLIENT_ISN, 0);
    assert!(ack.check(&m, &t, 1_001).is_ok());
    assert_eq!(ack.check(&m, &t, 1_002), Err(CookieError::BadMac));
}

#[test]
fn instances_sharing_a_secret_agree_and_other_secrets_reject() {
    let t = v4_tuple();
    let now = SLOT_N * SLOT + 1;
    let a = minter();
    let b = minter();
    let other = CookieMinter::new(CookieSecret::from_bytes(*b"synguard-test-k2"), SLOT);
    for timestamps in [false, true] {
        let minted = a.mint(&t, CLIENT_ISN, &opts(timestamps), now);
        let ack = Ack::for_cookie(&minted, CLIENT_ISN, 5);
        assert!(ack.check(&b, &t, now + SLOT).is_ok());
        assert_eq!(ack.check(&other, &t, now), Err(CookieError::BadMac));
    }
}

fn key(b: &[u8; 16]) -> CookieSecret {
    CookieSecret::from_bytes(*b)
}

/// A rotation on a running minter: cookies the old key minted validate
/// until the end of the slot after the rotation's (exactly as long as they
/// would have without it), new ones are minted with the new key, and other
/// instances that rotated too or not yet agree on both.
#[test]
fn a_rotated_key_keeps_its_cookies_valid_for_their_slots_only() {
    let t = v4_tuple();
    let (k1, k2) = (key(b"synguard-test-k1"), key(b"synguard-test-k2"));
    // 10 s into slot SLOT_N.
    let rotated_at = SLOT_N * SLOT + 10;
    for timestamps in [false, true] {
        let mut m = minter();
        let old = m.mint(&t, CLIENT_ISN, &opts(timestamps), rotated_at - 5);
        let old_ack = Ack::for_cookie(&old, CLIENT_ISN, 9);
        assert!(m.set_keys(CookieKeys::single(k2.clone()), rotated_at));
        assert!(
            !m.set_keys(CookieKeys::single(k2.clone()), rotated_at + 1),
            "no change"
        );
        let new = m.mint(&t, CLIENT_ISN, &opts(timestamps), rotated_at);
        let new_ack = Ack::for_cookie(&new, CLIENT_ISN, 9);
        assert_ne!(new.isn, old.isn, "minted with the new key");
        let only_k2 = CookieMinter::new(k2.clone(), SLOT);
        assert!(new_ack.check(&only_k2, &t, rotated_at).is_ok());
        // The old cookie: valid through slot SLOT_N + 1, as without a
        // rotation, and not a second longer.
        let last = (SLOT_N + 2) * SLOT - 1;
        assert!(old_ack.check(&m, &t, rotated_at).is_ok());
        assert!(old_ack.check(&m, &t, last).is_ok());
        assert_eq!(old_ack.check(&m, &t, last + 1), Err(CookieError::BadMac));
        assert_eq!(m.accepted_key(last).map(|(_, until)| until), Some(last + 1));
        assert!(m.accepted_key(last + 1).is_none());
        // An instance not rotated yet still takes the new cookie only once
        // it accepts the new key: the file's second line.
        let mut lagging = minter();
        assert_eq!(
            new_ack.check(&lagging, &t, rotated_at),
            Err(CookieError::BadMac)
        );
        lagging.set_keys(
            CookieKeys {
                minting: k1.clone(),
                also_accepted: Some(k2.clone()),
            },
            rotated_at,
        );
        assert!(new_ack.check(&lagging, &t, rotated_at).is_ok());
        assert!(old_ack.check(&lagging, &t, rotated_at).is_ok());
        // Named by the file, it is accepted as long as the file names it.
        assert_eq!(
            lagging.accepted_key(u64::MAX - 1).map(|(_, u)| u),
            Some(u64::MAX)
        );
    }
}

/// The file's second key takes the one extra place; with it gone again,
/// the key retired by the last rotation is back while its cookies last. A
/// rollback is a rotation like any other.
#[test]
fn one_extra_key_at_a_time() {
    let t = v4_tuple();
    let (k1, k2, k3) = (
        key(b"synguard-test-k1"),
        key(b"synguard-test-k2"),
        key(b"synguard-test-k3"),
    );
    let now = SLOT_N * SLOT;
    let mut m = minter();
    let by_k1 = Ack::for_cookie(&m.mint(&t, CLIENT_ISN, &opts(false), now), CLIENT_ISN, 0);
    m.set_keys(
        CookieKeys {
            minting: k2.clone(),
            also_accepted: Some(k3.clone()),
        },
        now,
    );
    assert_eq!(by_k1.check(&m, &t, now + 1), Err(CookieError::BadMac));
    m.set_keys(CookieKeys::single(k2.clone()), now + 2);
    assert!(
        by_k1.check(&m, &t, now + 3).is_ok(),
        "k1's cookies are in flight"
    );
    let by_k2 = Ack::for_cookie(
        &m.mint(&t, CLIENT_ISN, &opts(false), now + 3),
        CLIENT_ISN,
        0,
    );
    m.set_keys(CookieKeys::single(k1), now + 4);
    assert!(by_k1.check(&m, &t, now + 5).is_ok());
    assert!(
        by_k2.check(&m, &t, now + 5).is_ok(),
        "k2's cookies are in flight"
    );
}

#[test]
fn mss_below_the_floor_or_huge_is_quantized_in_the_cookie() {
    let m = minter();
    let now = 1_700_000_000;
    for (t, timestamps, client_mss, expected) in [
        (v4_tuple(), false, Some(100), 536),
        (v4_tuple(), false, Some(u16::MAX), 1460),
        (v4_tuple(), false, Some(1452), 1440),
        (v4_tuple(), true, Some(1452), 1440),
        (v4_tuple(), false, Some(1260), 1260),
        (v4_tuple(), true, Some(0), 536),
        (v6_tuple(), false, Some(1000), 1200),
        (v6_tuple(), false, Some(9000), 8940),
        (v6_tuple(), true, Some(1439), 1420),
        (v6_tuple(), false, Some(1400), 1380),
        (v6_tuple(), true, None, 1220),
    ] {
        let o = SynOptions {
            mss: client_mss,
            ..opts(timestamps)
        };
        let minted = m.mint(&t, CLIENT_ISN, &o, now);
        assert_eq!(minted.mss, expected, "{o:?}");
        let decoded = Ack::for_cookie(&minted, CLIENT_ISN, 0)
            .check(&m, &t, now)
            .unwrap();
        assert_eq!(decoded.mss, expected, "{o:?}");
    }
}

/// xorshift64* (Vigna): deterministic and good enough to scatter guesses.
struct XorShift(u64);

impl XorShift {
    fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }
}

const GUESSES: u32 = 1 << 20;

/// Blind forgery, no timestamps: per guess 2^-23 (layout docs), so 2^20
/// guesses expect 1/8 acceptance. The loose bound of 4 still catches a MAC
/// that is a few bits shorter than promised (16 bits would give ~32).
#[test]
fn forged_cookies_without_timestamps_are_accepted_at_the_documented_rate() {
    let m = minter();
    let t = v4_tuple();
    let now = SLOT_N * SLOT;
    let mut rng = XorShift(0x5eed_0000_c00c_1e01);
    let accepted = (0..GUESSES)
        .filter(|_| {
            let seq = rng.next_u32();
            let ack = rng.next_u32();
            m.check(&t, seq, ack, None, now).is_ok()
        })
        .count();
    assert!(
        accepted <= 4,
        "{accepted} of {GUESSES} forged cookies accepted"
    );
}

/// Blind forgery with timestamps: per guess 2^-28, 2^20 guesses expect
/// 1/256; TSecr's 6 bits are random too and give no extra chance.
#[test]
fn forged_cookies_with_timestamps_are_accepted_at_the_documented_rate() {
    let m = minter();
    let t = v6_tuple();
    let now = SLOT_N * SLOT;
    let mut rng = XorShift(0x5eed_0000_c00c_1e02);
    let accepted = (0..GUESSES)
        .filter(|_| {
            let seq = rng.next_u32();
            let ack = rng.next_u32();
            let tsecr = rng.next_u32();
            m.check(&t, seq, ack, Some(tsecr), now).is_ok()
        })
        .count();
    assert!(
        accepted <= 2,
        "{accepted} of {GUESSES} forged cookies accepted"
    );
}

/// The odds above assume the truncated MAC is uniform. Check that on a
/// scale where hits are frequent: among random guesses, the low 8 bits of
/// the MAC field match the recomputed MAC for 1 in 256 (4096 expected,
/// standard deviation 64; the window is about +-6 sigma).
#[test]
fn truncated_mac_bits_are_uniform_enough_for_the_documented_odds() {
    use crate::cookie::layout::unpack_no_timestamps;
    use crate::cookie::mac::{cookie_mac, MacInput};

    let secret = CookieSecret::from_bytes(*b"synguard-test-k1");
    let t = v4_tuple();
    let mut rng = XorShift(0x5eed_0000_c00c_1e03);
    let partial_matches = (0..GUESSES)
        .filter(|_| {
            let client_isn = rng.next_u32();
            let fields = unpack_no_timestamps(rng.next_u32());
            let mac = cookie_mac(
                &secret,
                &MacInput {
                    tuple: &t,
                    client_isn,
                    slot: SLOT_N as u32,
                    mode: CookieMode::NoTimestamps,
                    mss_index: fields.mss_index,
                    options: fields.options,
                },
            );
            (CookieMode::NoTimestamps.truncate_mac(mac) ^ fields.mac) & 0xff == 0
        })
        .count();
    assert!(
        (3700..=4500).contains(&partial_matches),
        "{partial_matches} partial matches, expected about 4096"
    );
}

fn arb_tuple() -> impl Strategy<Value = CookieTuple> {
    (
        any::<bool>(),
        any::<u128>(),
        any::<u128>(),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(|(v6, client, server, client_port, server_port)| {
            let addr = |bits: u128| -> IpAddr {
                if v6 {
                    Ipv6Addr::from(bits).into()
                } else {
                    Ipv4Addr::from(bits as u32).into()
                }
            };
            CookieTuple {
                client: addr(client),
                server: addr(server),
                client_port,
                server_port,
            }
        })
}

fn arb_options() -> impl Strategy<Value = SynOptions> {
    (
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u8>()),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(mss, wscale, sack_permitted, timestamps, ecn)| SynOptions {
                mss,
                wscale,
                sack_permitted,
                timestamps,
                ecn,
            },
        )
}

proptest! {
    #[test]
    fn round_trip_over_random_handshakes(
        t in arb_tuple(),
        o in arb_options(),
        client_isn in any::<u32>(),
        clock in any::<u32>(),
        key in any::<[u8; 16]>(),
        slot_seconds in 1u64..=600,
        minted_at in 0u64..(1 << 40),
        delay_fraction in 0.0f64..1.0,
    ) {
        let m = CookieMinter::new(CookieSecret::from_bytes(key), slot_seconds);
        let minted = m.mint(&t, client_isn, &o, minted_at);
        // Any delay shorter than one slot lands in the same or next slot.
        let delay = (delay_fraction * slot_seconds as f64) as u64;
        let ack = Ack::for_cookie(&minted, client_isn, clock);
        let decoded = ack.check(&m, &t, minted_at + delay);
        prop_assert_eq!(decoded, Ok(expected_decoded(&minted, client_isn, &o)));
        if let Some(client_mss) = o.mss {
            let floor = if t.client.is_ipv4() { 536 } else { 1200 };
            prop_assert!(minted.mss <= client_mss.max(floor));
        }
    }
}
