// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * bpf/lib/forward.h: established flows the engine published in sg_flows,
 * translated in place as src/engine/established.rs does (sequence and
 * acknowledgment numbers, SACK blocks, timestamps, window rescaling, RFC
 * 1624 checksum updates in the engine's order) and redirected to the other
 * port, with the progress the engine reads back. Anything that may change
 * a flow's state or that the engine would refuse goes up untouched; it
 * never creates or removes a flow.
 */
#ifndef SG_LIB_FORWARD_H
#define SG_LIB_FORWARD_H

#include "params.h"
#include "parse.h"
#include "reply.h"

/* A field's bytes summed as 16-bit words aligned to the checksummed data:
 * a field at an odd offset (TCP options are byte-aligned) is shifted by
 * one byte, as src/wire/checksum.rs update_bytes models with a pad byte. */
static __always_inline __u32 aligned_sum4(const __u8 *b, int odd)
{
	if (odd)
		return b[0] + (((__u32)b[1] << 8) | b[2]) + ((__u32)b[3] << 8);
	return (((__u32)b[0] << 8) | b[1]) + (((__u32)b[2] << 8) | b[3]);
}

/* RFC 1624 eqn. 3 for one rewritten field, exactly as update_bytes does it
 * (HC' = ~(~HC + ~fold(sum(old)) + sum(new))) and in the engine's order of
 * fields, so the result has the same bits, 0x0000 and 0xffff included. */
static __always_inline __u16 csum_update(__u16 hc, __u32 old_sum, __u32 new_sum)
{
	__u64 s = (__u64)(__u16)~hc + (__u16)~fold(old_sum) + new_sum;
	return ~fold(s) & 0xffff;
}

/* Rewrite the 32-bit field at q (odd: its offset in the TCP header is odd)
 * to v; the caller checked q + 4 against data_end. */
static __always_inline void rewrite32(__u8 *q, __u32 v, __u16 *hc, int odd)
{
	__u8 nb[4];
	put32(nb, v);
	__u32 old_sum = aligned_sum4(q, odd);
	__builtin_memcpy(q, nb, 4);
	*hc = csum_update(*hc, old_sum, aligned_sum4(nb, odd));
}

/* The window field (offset 14, even). */
static __always_inline void rewrite_window(__u8 *t, __u16 v, __u16 *hc)
{
	__u32 old_sum = ((__u32)t[14] << 8) | t[15];
	put16(t + 14, v);
	*hc = csum_update(*hc, old_sum, v);
}

/* src/engine/flow.rs seq_plausible: RFC 9293 3.10.7.4's test widened one
 * window back, windows below 64 KiB widened to it. */
static __always_inline int seq_plausible(__u32 seq, __u32 next, __u32 max_window)
{
	__s64 w = max_window > 65535 ? max_window : 65535;
	__s64 d = (__s32)(seq - next);
	return d >= -w && d <= w;
}

static __always_inline int seq_ge(__u32 a, __u32 b)
{
	return (__s32)(a - b) >= 0;
}

/* src/engine/flow.rs WindowRescale::apply. */
static __always_inline __u16 rescale(__u16 field, __u8 from, __u8 to)
{
	__u64 bytes = (__u64)field << (from & 15);
	__u64 scaled = bytes >> (to & 15);
	if (scaled == 0 && bytes > 0)
		scaled = 1; /* a non-zero window never rounds to zero */
	return scaled > 65535 ? 65535 : (__u16)scaled;
}

/* A segment of a published flow, as translate_client / translate_server
 * would forward it: -1 when the flow is not published (the caller goes
 * on), else the verdict. `released`: the client's ACK the program releases
 * on completing a backend handshake (backend.h), which the engine's replay
 * counts, so it is not counted here. Everything that may change the flow's state (SYN,
 * FIN, RST, no ACK) or that the engine would drop (implausible sequence
 * numbers) goes up untouched. */
static __always_inline int forward(struct xdp_md *ctx, struct parsed *p, int from_server,
				   int released)
{
	struct sg_flow *f = bpf_map_lookup_elem(&sg_flows, &p->key);
	if (!f)
		return -1;
	/* A state change goes up, but for the server's FIN: taking it through
	 * the engine would deliver it after the data it follows (which this
	 * program forwards), late enough that a client which closes once it
	 * has its data closes first and ends in TIME_WAIT instead of the
	 * server. It is recorded below, and the engine takes the close from
	 * there (src/engine/forward.rs FlowProgress). */
	__u8 fin_ok = from_server ? TCP_FIN : 0;
	if ((p->flags & (TCP_SYN | TCP_RST | (TCP_FIN & ~fin_ok))) || !(p->flags & TCP_ACK))
		return pass();
	__u32 out = from_server ? SG_PORT_CLIENT : SG_PORT_SERVER;
	if (!bpf_map_lookup_elem(&sg_tx_ports, &out))
		return pass();
	if (from_server ? !seq_plausible(p->seq, f->server_next, f->client_window_max)
			: !seq_plausible(p->seq, f->client_next, f->server_window_max))
		return pass();

	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *t = (__u8 *)data + (p->tcp_off & 0x7f);
	if ((void *)(t + 20) > data_end)
		return pass();
	/* parse() checked the options area lies in the frame, so the checks
	 * below (the verifier wants one per pointer) cannot fail after a
	 * rewrite began; should one, the half-translated frame is dropped. */
	__u16 hc = ((__u16)t[16] << 8) | t[17];
	__u32 delta = f->seq_delta;
	/* TSval's offset in the options area: at most 32 (TSval and TSecr
	 * end the 40-byte area), so 20 + 32 + 4 + 4 stays below 64. */
	__u32 ts_at = p->opts.ts_at & 0x3f;
	int translate_ts = f->timestamps && p->opts.has_ts;
	if (!from_server) {
		rewrite32(t + 8, p->ack - delta, &hc, 0);
		/* SACK blocks name server sequence numbers (RFC 2018 3). */
#pragma unroll
		for (int i = 0; i < 4; i++) {
			if (i >= p->opts.sack_blocks)
				break;
			__u32 at = (20 + p->opts.sack_at + 8 * i) & 0x3f;
			__u8 *q = t + at;
			if ((void *)(q + 8) > data_end)
				return XDP_DROP;
			__u32 left = ((__u32)q[0] << 24) | ((__u32)q[1] << 16) | ((__u32)q[2] << 8) | q[3];
			__u32 right = ((__u32)q[4] << 24) | ((__u32)q[5] << 16) | ((__u32)q[6] << 8) | q[7];
			rewrite32(q, left - delta, &hc, at & 1);
			rewrite32(q + 4, right - delta, &hc, at & 1);
		}
		if (translate_ts) {
			__u32 at = (20 + ts_at + 4) & 0x3f;
			__u8 *q = t + at;
			if ((void *)(q + 4) > data_end)
				return XDP_DROP;
			rewrite32(q, p->opts.tsecr - f->ts_offset, &hc, at & 1);
		}
		if (f->c2s_from != f->c2s_to)
			rewrite_window(t, rescale(p->window, f->c2s_from, f->c2s_to), &hc);
	} else {
		rewrite32(t + 4, p->seq + delta, &hc, 0);
		if (translate_ts) {
			__u32 at = (20 + ts_at) & 0x3f;
			__u8 *q = t + at;
			if ((void *)(q + 4) > data_end)
				return XDP_DROP;
			rewrite32(q, p->opts.tsval + f->ts_offset, &hc, at & 1);
		}
		if (f->s2c_from != f->s2c_to)
			rewrite_window(t, rescale(p->window, f->s2c_from, f->s2c_to), &hc);
	}
	put16(t + 16, hc);

	/* Progress, as the engine records it for the same segment. */
	__u64 now_ms = engine_now_ms();
	if (now_ms)
		f->last_seen_ms = now_ms;
	/* Only a segment with data moves the next sequence number (a pure ACK
	 * leaves RCV.NXT alone; src/engine/flow.rs client_next). */
	__u32 len = p->l4_len - p->tcp_hlen;
	__u32 end = p->seq + len;
	if (!from_server) {
		__u32 wb = (__u32)p->window << (f->c2s_from & 15);
		if (wb > f->client_window_max)
			f->client_window_max = wb;
		if (p->opts.has_ts)
			f->client_last_tsval = p->opts.tsval;
		f->client_last_window = p->window;
		if (len && seq_ge(end, f->client_next))
			f->client_next = end;
		if (!released)
			count(SG_C_FWD_TO_SERVER);
	} else {
		__u32 wb = (__u32)p->window << (f->s2c_from & 15);
		if (wb > f->server_window_max)
			f->server_window_max = wb;
		f->server_last_window = p->window;
		if (p->opts.has_ts)
			f->server_last_tsval = p->opts.tsval;
		if (p->flags & TCP_FIN) {
			len += 1;
			end += 1;
			f->server_fin = 1;
			f->server_fin_end = end;
		}
		if (len && seq_ge(end, f->server_next))
			f->server_next = end;
		count(SG_C_FWD_TO_CLIENT);
	}
	return bpf_redirect_map(&sg_tx_ports, out, 0);
}

#endif /* SG_LIB_FORWARD_H */
