// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * bpf/lib/handshake.h: the client's handshake while the engine answers
 * SYNs statelessly: a SYN becomes its cookie SYN-ACK in place
 * (Engine::on_client_syn, src/engine/handshake.rs), an ACK for no tracked
 * tuple is checked: a valid cookie goes on as the backend SYN (backend.h)
 * or up (recorded in sg_tracked), an invalid one is dropped or reset
 * within the RST budgets (src/engine/send_budget.rs). It never creates a
 * flow: the engine does, from the ACK it is handed or replays.
 */
#ifndef SG_LIB_HANDSHAKE_H
#define SG_LIB_HANDSHAKE_H

#include "backend.h"
#include "cookie.h"
#include "reply.h"

static __always_inline int on_syn(struct xdp_md *ctx, struct parsed *p,
				  const struct sg_params *prm, __u64 now_ms, __u8 offer)
{
	/* Linux's SYN-ACK option set, masked by what the backend supports
	 * (SynOptions & offer_mask, as engine/service_profile.rs offers). */
	int ts = p->opts.has_ts && (offer & SG_OFFER_TIMESTAMPS);
	int sack = p->opts.sack_permitted && (offer & SG_OFFER_SACK);
	int ws = p->opts.has_wscale && (offer & SG_OFFER_WSCALE);
	/* RFC 3168 6.1.1: an ECN-setup SYN carries both ECE and CWR. */
	int ecn = ((p->flags & (TCP_ECE | TCP_CWR)) == (TCP_ECE | TCP_CWR)) &&
		  (offer & SG_OFFER_ECN);

	/* MSS index: the largest table entry <= the client's MSS (RFC 9293
	 * 3.7.1 default without the option), else entry 0. */
	const __u16 *table = p->v6 ? mss_table_v6 : mss_table_v4;
	__u16 mss = p->opts.has_mss ? p->opts.mss : (p->v6 ? 1220 : 536);
	__u8 idx = 0;
#pragma unroll
	for (int i = 0; i < 8; i++)
		if (table[i] <= mss)
			idx = i;
	__u8 bits = ((ws ? p->opts.wscale : WSCALE_ABSENT) << 2) | (sack << 1) | ecn;

	__u32 slot = cookie_slot(prm, now_ms);
	struct mac_input m = {};
	mac_fill((__u8 *)m.w, &p->key, p->seq);
	__u64 mac = cookie_mac(prm->k0, prm->k1, &m, slot, mode_byte(ts, p->v6), idx, bits);
	__u32 isn;
	if (ts)
		isn = ((__u32)mac & 0x1fffffff) << 3 | idx;
	else
		isn = ((__u32)mac & 0x7fffff) << 9 | (__u32)idx << 6 | bits;

	__u32 hdr[10] = {};
	__u8 *tb = (__u8 *)hdr;
	__u8 w = prm->synack_wscale > MAX_WSCALE ? MAX_WSCALE : prm->synack_wscale;
	__u32 n = syn_options(tb, p->v6 ? prm->mss_v6 : prm->mss_v4, sack, ts,
			      ((__u32)now_ms & ~(__u32)TS_OPTION_BITS_MASK) | bits, p->opts.tsval,
			      ws, w);
	tcp_header(tb, p, isn, p->seq + 1, TCP_SYN | TCP_ACK | (ecn ? TCP_ECE : 0),
		   prm->synack_window, n);
	if (write_reply(ctx, p, hdr, n))
		return pass();
	count(SG_C_SYN_RECEIVED);
	count(SG_C_SYNACK_COOKIE);
	return XDP_TX;
}

/* src/engine/send_budget.rs allowance: ceil(rate / 2) + SipHash(second,
 * tag) mod rate, the 47-byte input as there. */
static __always_inline __u32 budget_allowance(const struct sg_params *prm, __u8 tag,
					      __u32 rate, __u64 second)
{
	if (rate == 0)
		return 0;
	struct mac_input m = {};
	__u8 *b = (__u8 *)m.w;
	__u64 be = bpf_cpu_to_be64(second);
	__builtin_memcpy(b, &be, 8);
	b[44] = tag;
	b[47] = MAC_INPUT_LEN;
	return (rate + 1) / 2 + (__u32)(sg_siphash24(prm->k0, prm->k1, &m) % rate);
}

/* SendBudget::try_take, shared by all CPUs. The draw is made outside the
 * lock (no calls while holding it), only by a CPU that sees a new second;
 * a CPU whose clock is behind another's counts against the newer second. */
static __always_inline int rst_budget_take(const struct sg_params *prm, __u64 now_ms)
{
	__u32 zero = 0;
	struct sg_rst_budget *b = bpf_map_lookup_elem(&sg_rst_budget, &zero);
	if (!b)
		return 0;
	__u64 second = now_ms / 1000;
	__u32 fresh = 0;
	if (b->second < second)
		fresh = budget_allowance(prm, SG_TAG_RST, prm->rst_per_second, second);
	int ok = 0;
	bpf_spin_lock(&b->lock);
	if (b->second < second) {
		b->second = second;
		b->allowed = fresh;
		b->sent = 0;
	}
	if (b->sent < b->allowed) {
		b->sent++;
		ok = 1;
	}
	bpf_spin_unlock(&b->lock);
	return ok;
}

/* SourceBudgets::try_take for the segment's source. Unlocked: CPUs taking
 * the same source's last answer at once may each send it (a few more than
 * rst_per_source, never another source's). */
static __always_inline int rst_source_take(const struct parsed *p, const struct sg_params *prm,
					   __u64 now_ms)
{
	__u64 second = now_ms / 1000;
	struct sg_rst_source *s = bpf_map_lookup_elem(&sg_rst_sources, p->key.client);
	if (!s) {
		struct sg_rst_source n = {.second = second, .sent = 1};
		bpf_map_update_elem(&sg_rst_sources, p->key.client, &n, BPF_ANY);
		return prm->rst_per_source > 0;
	}
	if (s->second != second) {
		s->second = second;
		s->sent = 0;
	}
	if (s->sent >= prm->rst_per_source)
		return 0;
	__sync_fetch_and_add(&s->sent, 1);
	return 1;
}

static __always_inline int on_ack(struct xdp_md *ctx, struct parsed *p,
				  const struct sg_params *prm, __u64 now_ms, __u8 svc_flags)
{
	struct sg_cookie c;
	if (cookie_check(p, prm, now_ms, &c)) {
		if (prm->handshakes) {
			int r = backend_syn(ctx, p, now_ms, svc_flags, &c);
			if (r >= 0)
				return r;
		}
		track_own(p);
		count(SG_C_COOKIE_PASSED);
		return pass();
	}
	count(SG_C_COOKIES_FAILED);
	if (!prm->invalid_ack_rst) {
		count(SG_C_DROP_INVALID_COOKIE);
		return XDP_DROP;
	}
	if (!rst_source_take(p, prm, now_ms) || !rst_budget_take(prm, now_ms)) {
		count(SG_C_DROP_RST_BUDGET);
		return XDP_DROP;
	}
	__u32 hdr[10] = {};
	tcp_header((__u8 *)hdr, p, p->ack, 0, TCP_RST, 0, 20);
	if (write_reply(ctx, p, hdr, 20))
		return pass();
	count(SG_C_RST_SENT);
	return XDP_TX;
}

#endif /* SG_LIB_HANDSHAKE_H */
