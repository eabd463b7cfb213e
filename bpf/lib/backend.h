// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * bpf/lib/backend.h: the backend handshake the program runs itself, the
 * twin of src/engine/handshake.rs. An ACK with a valid cookie becomes, in
 * place, the backend SYN the engine would send for it (on_handshake_ack,
 * build_backend_syn: the client's ISN, MSS from the cookie's table, window
 * scale, SACK-permitted, ECN and TSval, the ACK's Ethernet header and TTL),
 * redirected to the server port, with what the engine's flow would hold
 * in sg_handshakes. The client's first data segment behind it is kept
 * there (early data). The server's SYN-ACK, when it takes every option the
 * client has, releases the kept client segment translated and installs the
 * flow in sg_flows (complete_backend). Each frame as it arrived goes to
 * the engine in sg_events; its replay leaves the engine's flow, timers and
 * counters as its own handling would. It never decides whether a cookie is
 * valid (cookie.h) and hands everything else to the engine.
 */
#ifndef SG_LIB_BACKEND_H
#define SG_LIB_BACKEND_H

#include "cookie.h"
#include "forward.h"
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
	ev->released = 0;
	ev->pad[0] = ev->pad[1] = ev->pad[2] = 0;
	if (bpf_xdp_load_bytes(ctx, 0, ev->frame, len)) {
		bpf_ringbuf_discard(ev, 0);
		return -1;
	}
	if (track_own(p)) {
		bpf_ringbuf_discard(ev, 0);
		count(SG_C_COOKIE_PASSED);
		return pass();
	}

	/* DecodedCookie, as CookieMinter::check gives it. Unrolled with
	 * constant indices, so the entries are immediates: a table read at a
	 * variable index needs a .rodata map. */
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

	/* What the engine's flow holds in BACKEND_SYN_SENT, for the server
	 * program to complete the handshake with. */
	__u32 zero = 0;
	struct sg_handshake *h = bpf_map_lookup_elem(&sg_hs_scratch, &zero);
	if (!h || len > SG_RELEASE_MAX)
		goto up;
	h->opened_ms = now_ms;
	h->client_isn = p->seq - 1;
	h->gateway_isn = p->ack - 1;
	h->gateway_tsval = ts ? p->opts.tsecr : 0;
	h->client_last_tsval = ts ? p->opts.tsval : 0;
	h->client_window_max = (__u32)p->window << (shift & 15);
	h->client_last_window = p->window;
	h->client_mss = mss;
	h->client_opts = ts | (sack << 1) | (ecn << 2);
	h->client_wscale = ws ? shift : 0xff;
	h->l3_off = p->l3_off;
	h->held = 1;
	h->release_len = len;
	h->pad = 0;
	/* The Ethernet header (and VLAN tag), zero-padded: sg_flow.l2. */
	__builtin_memset(h->l2, 0, 18);
	if (p->l3_off == 18)
		__builtin_memcpy(h->l2, data, 18);
	else
		__builtin_memcpy(h->l2, data, 14);
	if (bpf_xdp_load_bytes(ctx, 0, h->release, len) ||
	    bpf_map_update_elem(&sg_handshakes, &p->key, h, BPF_NOEXIST))
		goto up;

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
		bpf_map_delete_elem(&sg_handshakes, &p->key);
		goto up;
	}
	bpf_ringbuf_submit(ev, 0);
	count(SG_C_BACKEND_SYN);
	return bpf_redirect_map(&sg_tx_ports, out, 0);

up:
	/* Tracked already: the engine takes the ACK as before. */
	bpf_ringbuf_discard(ev, 0);
	count(SG_C_COOKIE_PASSED);
	return pass();
}

/* The client's first data segment of a tuple tracked for a backend
 * handshake the program started (sg_handshakes), while the server has not
 * answered: kept in the entry, whose client segment to release it
 * becomes, and reported to the engine, which holds it too; the frame is
 * dropped (XDP_DROP), since the SYN-ACK releases it. -1 for anything else
 * (the caller goes on: up to the engine, which then takes the handshake
 * over): a second data segment, one that does not start right after the
 * client's ISN, one larger than SG_RELEASE_MAX. When the server program
 * completed the handshake meanwhile, the segment is forwarded. */
static __always_inline int early_data(struct xdp_md *ctx, struct parsed *p, __u64 now_ms)
{
	struct sg_handshake *h = bpf_map_lookup_elem(&sg_handshakes, &p->key);
	if (!h || h->held != 1 || p->seq != h->client_isn + 1 || p->ack != h->gateway_isn + 1)
		return -1;
	__u64 len = (__u64)((long)ctx->data_end - (long)ctx->data) & 0x1ff;
	if (len < 14 || len > SG_RELEASE_MAX)
		return -1;
	__u32 zero = 0;
	struct sg_handshake *n = bpf_map_lookup_elem(&sg_hs_scratch, &zero);
	if (!n)
		return -1;
	__builtin_memcpy(n, h, __builtin_offsetof(struct sg_handshake, release));
	n->held = 2;
	n->release_len = len;
	struct sg_event *ev = bpf_ringbuf_reserve(&sg_events, sizeof(*ev), 0);
	if (!ev) {
		count(SG_C_EVENTS_FULL);
		return -1;
	}
	ev->now_ms = now_ms;
	ev->kind = SG_EV_EARLY_DATA;
	ev->frame_len = len;
	ev->released = 0;
	ev->pad[0] = ev->pad[1] = ev->pad[2] = 0;
	if (bpf_xdp_load_bytes(ctx, 0, ev->frame, len) ||
	    bpf_xdp_load_bytes(ctx, 0, n->release, len)) {
		bpf_ringbuf_discard(ev, 0);
		return -1;
	}
	/* Replaced whole: a server program that looked the entry up before
	 * releases the ACK and says so (sg_event.released). */
	if (bpf_map_update_elem(&sg_handshakes, &p->key, n, BPF_EXIST)) {
		bpf_ringbuf_discard(ev, 0);
		/* Completed meanwhile: the flow is in sg_flows. */
		return forward(ctx, p, 0, 0);
	}
	bpf_ringbuf_submit(ev, 0);
	count(SG_C_EARLY_DATA);
	return XDP_DROP;
}

/* The server's segment for a tuple the program started a backend handshake
 * for (sg_handshakes): -1 when there is none (the caller goes on), else the
 * verdict. A SYN-ACK that completes it as Engine::complete_backend would
 * with a flow the program can forward (the server took every option the
 * client has; the engine holds nothing) installs that flow in sg_flows and
 * becomes the client's ACK, translated as the engine releases it
 * (translate_held_client_frame = forward()), to the server; the SYN-ACK as
 * it arrived goes to the engine in sg_events. Anything else goes up, and
 * the handshake is the engine's from then on (its entry is deleted). */
static __always_inline int backend_reply(struct xdp_md *ctx, struct parsed *p,
					 const struct sg_params *prm, __u64 now_ms)
{
	struct sg_handshake *h = bpf_map_lookup_elem(&sg_handshakes, &p->key);
	if (!h)
		return -1;
	__u8 f = p->flags;
	int c_ts = h->client_opts & 1;
	int c_sack = (h->client_opts >> 1) & 1;
	int c_ecn = (h->client_opts >> 2) & 1;
	int c_ws = h->client_wscale != 0xff;
	int s_ecn = (f & (TCP_ECE | TCP_CWR)) == TCP_ECE;
	__u32 out = SG_PORT_SERVER;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 len = (__u32)((long)data_end - (long)data);
	__u32 release_len = h->release_len;
	if ((f & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) != (TCP_SYN | TCP_ACK) ||
	    p->ack != h->client_isn + 1 || p->l4_len != p->tcp_hlen ||
	    (c_ts && !p->opts.has_ts) || (c_sack && !p->opts.sack_permitted) ||
	    (c_ecn && !s_ecn) || len > SG_EVENT_FRAME_MAX || len < 14 || release_len < 14 ||
	    release_len > SG_RELEASE_MAX || !bpf_map_lookup_elem(&sg_tx_ports, &out) ||
	    !tcp_checksum_ok(ctx, p))
		goto engine;

	/* Engine::complete_backend. */
	__u8 gw = prm->synack_wscale;
	__u8 c_shift = c_ws ? h->client_wscale : 0;
	int server_side = c_ws && p->opts.has_wscale;
	struct sg_flow fl = {};
	fl.seq_delta = h->gateway_isn - p->seq;
	fl.c2s_from = c_ws ? c_shift : 0;
	fl.c2s_to = server_side ? c_shift : 0;
	fl.s2c_from = server_side ? p->opts.wscale : 0;
	fl.s2c_to = c_ws ? gw : 0;
	if (c_ts && p->opts.has_ts) {
		fl.timestamps = 1;
		fl.ts_offset = h->gateway_tsval - p->opts.tsval;
		fl.server_last_tsval = p->opts.tsval;
	}
	fl.last_seen_ms = now_ms;
	fl.client_next = h->client_isn + 1;
	fl.server_next = p->seq + 1;
	fl.client_window_max = h->client_window_max;
	/* A SYN's window is never scaled (RFC 7323 2.2). */
	fl.server_window_max = p->window;
	fl.client_last_tsval = h->client_last_tsval;
	fl.client_last_window = h->client_last_window;
	fl.server_last_window = p->window >> (fl.s2c_from & 15);
	__u32 l2_len = h->l3_off == 18 ? 18 : 14;
	__builtin_memcpy(fl.l2, h->l2, 18);
	fl.l2_len = l2_len;
	fl.client_opts = h->client_opts;
	fl.client_isn = h->client_isn;
	fl.gateway_isn = h->gateway_isn;
	fl.gateway_tsval = h->gateway_tsval;
	fl.server_isn = p->seq;
	fl.gateway_last_tsval = h->gateway_tsval;
	fl.client_mss = h->client_mss;
	fl.client_wscale = h->client_wscale;
	fl.backend_syn_sent = 1;
	fl.opened_ms = h->opened_ms;

	struct sg_event *ev = bpf_ringbuf_reserve(&sg_events, sizeof(*ev), 0);
	if (!ev) {
		count(SG_C_EVENTS_FULL);
		goto engine;
	}
	ev->now_ms = now_ms;
	ev->kind = SG_EV_BACKEND_ESTABLISHED;
	ev->released = h->held;
	ev->pad[0] = ev->pad[1] = ev->pad[2] = 0;
	/* Measured again here (masked: the frame is at most
	 * SG_EVENT_FRAME_MAX, checked above): the verifier lost the bounds of
	 * the earlier length across the calls in between. */
	__u64 n = (__u64)((long)ctx->data_end - (long)ctx->data) & 0x1ff;
	ev->frame_len = n;
	if (n < 14 || n > SG_EVENT_FRAME_MAX || bpf_xdp_load_bytes(ctx, 0, ev->frame, n) ||
	    resize_frame(ctx, release_len)) {
		/* The frame is still the SYN-ACK. */
		bpf_ringbuf_discard(ev, 0);
		goto engine;
	}
	/* The client segment in place of the SYN-ACK, then forwarded as the
	 * engine releases it (without counting it: the engine's replay does).
	 * Early data carries the ACK too (RFC 9293 3.10.7.4: the server's
	 * SYN-RECEIVED ends with any acceptable ACK), so it is released
	 * alone; the engine would send the ACK before it. */
	if (bpf_map_update_elem(&sg_flows, &p->key, &fl, BPF_NOEXIST)) {
		bpf_map_delete_elem(&sg_handshakes, &p->key);
		bpf_ringbuf_discard(ev, 0);
		return XDP_DROP; /* resized: the server sends its SYN-ACK again */
	}
	if (bpf_xdp_store_bytes(ctx, 0, h->release, release_len & 0x1ff))
		goto failed;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (parse(data, data_end, p))
		goto failed;
	bpf_map_delete_elem(&sg_handshakes, &p->key);
	int r = forward(ctx, p, 0, 1);
	if (r != XDP_REDIRECT)
		goto failed_deleted;
	bpf_ringbuf_submit(ev, 0);
	count(SG_C_BACKEND_ESTABLISHED);
	return r;

failed:
	bpf_map_delete_elem(&sg_handshakes, &p->key);
failed_deleted:
	/* The frame is rewritten: dropped. The server sends its SYN-ACK again
	 * and the engine, which now owns the handshake, answers it. */
	bpf_map_delete_elem(&sg_flows, &p->key);
	bpf_ringbuf_discard(ev, 0);
	return XDP_DROP;

engine:
	bpf_map_delete_elem(&sg_handshakes, &p->key);
	return pass();
}

#endif /* SG_LIB_BACKEND_H */
