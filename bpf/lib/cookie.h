// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * bpf/lib/cookie.h: SYN cookies as src/cookie/minter.rs mints and checks
 * them: the MSS tables, the option bits (in the ISN, or in TSval when the
 * client sent timestamps), the slot, and whether an ACK carries a cookie
 * of one of the accepted keys. It sends and counts nothing.
 */
#ifndef SG_LIB_COOKIE_H
#define SG_LIB_COOKIE_H

#include "mac.h"
#include "params.h"
#include "parse.h"

#define TS_OPTION_BITS_MASK 0x3f
#define WSCALE_ABSENT 15

/* src/cookie/mss_table.rs */
static const __u16 mss_table_v4[8] = {536, 1220, 1260, 1300, 1360, 1400, 1440, 1460};
static const __u16 mss_table_v6[8] = {1200, 1220, 1280, 1340, 1380, 1420, 1440, 8940};

/* The cookie slot at engine time now_ms. */
static __always_inline __u32 cookie_slot(const struct sg_params *prm, __u64 now_ms)
{
	return (__u32)(wall_seconds(prm, now_ms) / prm->slot_seconds);
}

/* What a valid cookie says about the client's SYN (src/cookie/layout.rs):
 * the MSS table index and the option bits, (wscale code << 2) | (SACK << 1)
 * | ECN, wscale code WSCALE_ABSENT for none. Timestamps: the ACK has them. */
struct sg_cookie {
	__u8 idx, bits;
};

/* CookieMinter::check: 1 when the ACK carries a cookie of an accepted key
 * in this slot or the previous one, its fields then in *out. */
static __always_inline int cookie_check(const struct parsed *p, const struct sg_params *prm,
					__u64 now_ms, struct sg_cookie *out)
{
	__u32 cookie = p->ack - 1;
	__u32 mac_bits, mac_got;
	__u8 idx, bits;
	if (p->opts.has_ts) {
		mac_got = cookie >> 3;
		mac_bits = 0x1fffffff;
		idx = cookie & 7;
		bits = p->opts.tsecr & TS_OPTION_BITS_MASK;
	} else {
		mac_got = cookie >> 9;
		mac_bits = 0x7fffff;
		idx = (cookie >> 6) & 7;
		bits = cookie & TS_OPTION_BITS_MASK;
	}
	__u32 slot = cookie_slot(prm, now_ms);
	struct mac_input m = {};
	mac_fill((__u8 *)m.w, &p->key, p->seq - 1);
	__u8 mode = mode_byte(p->opts.has_ts, p->v6);
	/* The minting key, then the one accepted besides it across a rotation
	 * (src/cookie/minter.rs CookieMinter::check), each in this slot and
	 * the previous one. */
	int keys = wall_seconds(prm, now_ms) < prm->accepted_until_s ? 2 : 1;
	for (int k = 0; k < keys; k++) {
		__u64 k0 = k ? prm->k0_accepted : prm->k0;
		__u64 k1 = k ? prm->k1_accepted : prm->k1;
		if ((((__u32)cookie_mac(k0, k1, &m, slot, mode, idx, bits) & mac_bits) == mac_got) ||
		    (((__u32)cookie_mac(k0, k1, &m, slot - 1, mode, idx, bits) & mac_bits) == mac_got)) {
			out->idx = idx;
			out->bits = bits;
			return 1;
		}
	}
	return 0;
}

#endif /* SG_LIB_COOKIE_H */
