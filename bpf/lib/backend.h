// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * bpf/lib/backend.h: the backend handshake the program starts itself. An
 * ACK with a valid cookie becomes, in place, the backend SYN the engine
 * would send for it (Engine::on_handshake_ack and build_backend_syn,
 * src/engine/handshake.rs): the client's ISN, MSS (from the cookie's
 * table), window scale, SACK-permitted, ECN and TSval, the ACK's Ethernet
 * header and TTL. It is redirected to the server port, and the ACK as it
 * arrived goes to the engine in sg_events, which replays it and so holds
 * the flow (BACKEND_SYN_SENT), its timers and its counters exactly as if
 * it had handled the ACK. It never decides whether a cookie is valid
 * (cookie.h) and never keeps state of its own.
 */
#ifndef SG_LIB_BACKEND_H
#define SG_LIB_BACKEND_H

#include "cookie.h"
#include "maps.h"
#include "reply.h"

/* src/engine/handshake.rs TIMESTAMP_OPTION_SPACE. */
#define TIMESTAMP_OPTION_SPACE 12

/* The tuple of an ACK the program hands on (up, or as the backend SYN)
 * goes into sg_tracked before the engine has seen it, so the client's next
 * segments (no longer valid cookies) go up too (the race note in
 * bpf/synguard_xdp.c). Returns 0 when it is tracked. */
static __always_inline int track_own(const struct parsed *p)
{
	struct sg_tracked v = {.since_ns = bpf_ktime_get_ns(), .origin = SG_ORIGIN_XDP};
	if (bpf_map_update_elem(&sg_tracked, &p->key, &v, BPF_NOEXIST) == 0) {
		if (bpf_map_push_elem(&sg_new_tracked, &p->key, 0) == 0)
			return 0;
		/* Nobody would clean it up: do not keep it. */
		bpf_map_delete_elem(&sg_tracked, &p->key);
	}
	count(SG_C_TRACK_INSERT_FAILED);
	return -1;
}

/* The ACK (no payload, valid cookie c) as the backend SYN: the verdict, or
 * -1 when the program leaves it to the engine (no server port to redirect
 * to, sg_events full, the frame too long to report). */
static __always_inline int backend_syn(struct xdp_md *ctx, struct parsed *p, __u64 now_ms,
				       __u8 svc_flags, const struct sg_cookie *c)
{
	__u32 out = SG_PORT_SERVER;
	if (!bpf_map_lookup_elem(&sg_tx_ports, &out))
		return -1;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 len = (__u32)((long)data_end - (long)data);
	if (len > SG_EVENT_FRAME_MAX || len < 14)
		return -1;
	/* The ACK's TTL (IPv4) or hop limit (IPv6): the backend SYN keeps it. */
	__u8 *ip = (__u8 *)data + (p->l3_off == 18 ? 18 : 14);
	if ((void *)(ip + 9) > data_end)
		return -1;
	__u8 ttl = p->v6 ? ip[7] : ip[8];

	struct sg_event *ev = bpf_ringbuf_reserve(&sg_events, sizeof(*ev), 0);
	if (!ev) {
		count(SG_C_EVENTS_FULL);
		return -1;
	}
	ev->now_ms = now_ms;
	ev->kind = SG_EV_BACKEND_SYN;
	ev->frame_len = len;
	ev->pad = 0;
	if (bpf_xdp_load_bytes(ctx, 0, ev->frame, len) || track_own(p)) {
		bpf_ringbuf_discard(ev, 0);
		return -1;
	}

	/* DecodedCookie, as CookieMinter::check gives it. */
	/* Unrolled with constant indices, so the entries are immediates: a
	 * table read at a variable index needs a .rodata map. */
	__u16 mss = 0;
#pragma unroll
	for (int i = 0; i < 8; i++)
		if ((c->idx & 7) == i)
			mss = p->v6 ? mss_table_v6[i] : mss_table_v4[i];
	__u8 code = c->bits >> 2;
	int ws = code != WSCALE_ABSENT;
	__u8 shift = ws ? code : 0;
	int sack = (c->bits >> 1) & 1;
	int ecn = c->bits & 1;
	int ts = p->opts.has_ts;
	if (ts && !(svc_flags & SG_SERVICE_TS_ACCEPTED))
		mss = mss > TIMESTAMP_OPTION_SPACE ? mss - TIMESTAMP_OPTION_SPACE : 0;
	/* The ACK's window is scaled by the client's shift; a SYN's never is. */
	__u64 window = (__u64)p->window << (shift & 15);
	if (window > 65535)
		window = 65535;

	__u32 hdr[10] = {};
	__u8 *tb = (__u8 *)hdr;
	/* TSval: the client's clock as of its ACK; TSecr 0 (RFC 7323 3.2). */
	__u32 n = syn_options(tb, mss, sack, ts, p->opts.tsval, 0, ws, shift);
	tcp_header_dir(tb, p, 1, p->seq - 1, 0, TCP_SYN | (ecn ? TCP_ECE | TCP_CWR : 0),
		       (__u16)window, n);
	if (write_segment(ctx, p, hdr, n, 0, ttl)) {
		bpf_ringbuf_discard(ev, 0);
		return pass();
	}
	bpf_ringbuf_submit(ev, 0);
	count(SG_C_BACKEND_SYN);
	return bpf_redirect_map(&sg_tx_ports, out, 0);
}

#endif /* SG_LIB_BACKEND_H */
