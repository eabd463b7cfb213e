// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * bpf/lib/mac.h: SipHash-2-4 and the cookie MAC input of src/cookie/mac.rs,
 * word for word. It knows no packet, no slot and no key schedule (cookie.h
 * decides which key and slot a MAC is computed for).
 */
#ifndef SG_LIB_MAC_H
#define SG_LIB_MAC_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "synguard_xdp.h"

#define LAYOUT_VERSION 2 /* src/cookie/mac.rs */

/* ---- SipHash-2-4 (Aumasson, Bernstein), as siphasher's SipHasher24 ---- */

#define ROTL(x, b) (__u64)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                               \
	do {                                                                   \
		v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);      \
		v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                         \
		v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                         \
		v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);      \
	} while (0)

#define MAC_INPUT_LEN 47

/* The 47-byte MAC input of src/cookie/mac.rs, as 6 little-endian words
 * (the last one holds bytes 40..47 and the length byte, SipHash's padding). */
struct mac_input {
	__u64 w[6];
};

/* Global (verified once). */
__noinline __u64 sg_siphash24(__u64 k0, __u64 k1, const struct mac_input *m)
{
	if (!m)
		return 0;
	__u64 v0 = 0x736f6d6570736575ULL ^ k0;
	__u64 v1 = 0x646f72616e646f6dULL ^ k1;
	__u64 v2 = 0x6c7967656e657261ULL ^ k0;
	__u64 v3 = 0x7465646279746573ULL ^ k1;
#pragma unroll
	for (int i = 0; i < 6; i++) {
		__u64 w = m->w[i];
		v3 ^= w;
		SIPROUND;
		SIPROUND;
		v0 ^= w;
	}
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* Fill the constant part of the MAC input: addresses, ports, client ISN.
 * Byte layout (src/cookie/mac.rs): 0..16 client, 16..32 server, 32..34
 * client port, 34..36 server port (both big-endian), 36..40 client ISN
 * (BE), 40..44 slot (BE), 44 mode byte, 45..47 (mss index << 6 | option
 * bits) (BE). */
static __always_inline void mac_fill(__u8 *b, const struct sg_flow_key *k, __u32 client_isn)
{
	__builtin_memcpy(b, k->client, 16);
	__builtin_memcpy(b + 16, k->server, 16);
	__builtin_memcpy(b + 32, &k->client_port, 2);
	__builtin_memcpy(b + 34, &k->server_port, 2);
	__u32 isn_be = bpf_htonl(client_isn);
	__builtin_memcpy(b + 36, &isn_be, 4);
}

static __always_inline __u64 cookie_mac(__u64 k0, __u64 k1, struct mac_input *m,
					__u32 slot, __u8 mode_byte, __u8 mss_index,
					__u8 option_bits)
{
	__u8 *b = (__u8 *)m->w;
	__u32 slot_be = bpf_htonl(slot);
	__builtin_memcpy(b + 40, &slot_be, 4);
	b[44] = mode_byte;
	__u16 enc = ((__u16)mss_index << 6) | option_bits;
	b[45] = enc >> 8;
	b[46] = enc & 0xff;
	b[47] = MAC_INPUT_LEN; /* SipHash: length mod 256 in the top byte */
	return sg_siphash24(k0, k1, m);
}

static __always_inline __u8 mode_byte(int timestamps, int v6)
{
	return (LAYOUT_VERSION << 4) | ((v6 ? 1 : 0) << 1) | (timestamps ? 1 : 0);
}

#endif /* SG_LIB_MAC_H */
