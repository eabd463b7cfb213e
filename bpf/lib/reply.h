// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * bpf/lib/reply.h: turning the frame in place into a segment of its own
 * (src/wire/frame.rs write_tcp_frame): a reply toward the client, or a
 * segment in the client's name toward the server; IP header, resize, the
 * TCP header words, SYN options. It decides nothing about what the segment
 * says.
 */
#ifndef SG_LIB_REPLY_H
#define SG_LIB_REPLY_H

#include "parse.h"

#define TTL 64 /* ipv4::DEFAULT_TTL, the engine's TTL for its own frames */

/* Resize the frame to `want` bytes, its bytes the caller's to rewrite; 0
 * on success. It shrinks at the tail but grows at the front: every driver
 * leaves XDP_PACKET_HEADROOM there, while the tailroom of a small frame
 * may be too little (veth hands over the sender's skb: a 54-byte ACK could
 * not grow into its SYN). */
static __always_inline int resize_frame(struct xdp_md *ctx, long want)
{
	long cur = (long)ctx->data_end - (long)ctx->data;
	barrier_var(cur);
	if (want < cur)
		return bpf_xdp_adjust_tail(ctx, (int)(want - cur)) ? -1 : 0;
	if (want > cur)
		return bpf_xdp_adjust_head(ctx, (int)(cur - want)) ? -1 : 0;
	return 0;
}

/* Resize the frame to l3_off + ip_hlen + tcp_len and write the IP and TCP
 * headers of a segment: with `reply`, from the server side to the client
 * (MACs swapped, TTL 64), else from the client to the server (MACs kept,
 * TTL `ttl`, as the engine writes the backend SYN behind the ACK's own
 * Ethernet header). tcp holds the TCP header with its checksum field zero
 * and zeros past tcp_len. Returns 0 on success.
 *
 * Direct packet writes: the IP header in place, the TCP header a word at a
 * time from its stack copy, each word bounds-checked against data_end (the
 * verifier needs constant offsets from a packet pointer). The earlier
 * version made five helper calls per reply (adjust_tail, a load and three
 * bpf_xdp_store_bytes); this one makes at most one, the resize, and none
 * when the reply is as long as the frame it answers (a SYN with only an MSS
 * option, as floods send, gets a 24-byte SYN-ACK: the same length on veth;
 * a NIC that pads the 58-byte SYN to 60 still needs the trim). */
static __always_inline int write_segment(struct xdp_md *ctx, const struct parsed *p,
					 __u32 *tcp, __u32 tcp_len, int reply, __u8 ttl)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	long cur = (long)(data_end - data);
	barrier_var(cur); /* a scalar, before clang mixes it with the pointers */
	long want = (long)(p->l3_off + p->ip_hlen + tcp_len);
	if (tcp_len > 40)
		return -1;
	if (want != cur) {
		/* Everything but the Ethernet header is rewritten below, so only
		 * that is kept across a resize. */
		__u8 l2[18];
		if (data + 18 > data_end)
			return -1;
		__builtin_memcpy(l2, data, 18);
		if (resize_frame(ctx, want))
			return -1;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		if (data + 18 > data_end)
			return -1;
		__builtin_memcpy(data, l2, 18);
	}
	/* Ethernet: a reply swaps MACs; any VLAN tag and the EtherType stay. */
	__u8 *eth = data;
	if ((void *)(eth + 14) > data_end)
		return -1;
	if (reply) {
		__u8 mac[6];
		__builtin_memcpy(mac, eth, 6);
		__builtin_memcpy(eth, eth + 6, 6);
		__builtin_memcpy(eth + 6, mac, 6);
	}

	/* The IP header, written in place. */
	const struct sg_flow_key *k = &p->key;
	const __u8 *src = reply ? k->server : k->client;
	const __u8 *dst = reply ? k->client : k->server;
	if (reply)
		ttl = TTL;
	__u8 *ip = eth + (p->l3_off == 18 ? 18 : 14);
	__u32 ip_hlen;
	if (p->v6) {
		ip_hlen = 40;
		if ((void *)(ip + 40) > data_end)
			return -1;
		ip[0] = 0x60; ip[1] = 0; ip[2] = 0; ip[3] = 0;
		ip[4] = tcp_len >> 8; ip[5] = tcp_len & 0xff;
		ip[6] = IPPROTO_TCP; ip[7] = ttl;
		__builtin_memcpy(ip + 8, src, 16);
		__builtin_memcpy(ip + 24, dst, 16);
	} else {
		ip_hlen = 20;
		if ((void *)(ip + 20) > data_end)
			return -1;
		__u32 total = 20 + tcp_len;
		ip[0] = 0x45; ip[1] = 0;
		ip[2] = total >> 8; ip[3] = total & 0xff;
		ip[4] = 0; ip[5] = 0;
		ip[6] = 0x40; ip[7] = 0; /* DF, ID 0 */
		ip[8] = ttl; ip[9] = IPPROTO_TCP;
		ip[10] = 0; ip[11] = 0;
		__builtin_memcpy(ip + 12, src + 12, 4);
		__builtin_memcpy(ip + 16, dst + 12, 4);
		__u64 s = 0;
#pragma unroll
		for (int i = 0; i < 20; i += 2)
			s += ((__u32)ip[i] << 8) | ip[i + 1];
		__u16 c = ~fold(s) & 0xffff;
		ip[10] = c >> 8;
		ip[11] = c & 0xff;
	}
	/* TCP checksum over the header (zeros past tcp_len add nothing). */
	__u64 s = pseudo_sum(k, 1, tcp_len);
	const __u16 *words = (const __u16 *)tcp;
#pragma unroll
	for (int i = 0; i < 20; i++)
		s += bpf_ntohs(words[i]);
	__u8 *tb = (__u8 *)tcp;
	__u16 c = ~fold(s) & 0xffff;
	tb[16] = c >> 8;
	tb[17] = c & 0xff;

	__u8 *l4 = ip + (ip_hlen == 40 ? 40 : 20);
#pragma unroll
	for (int i = 0; i < 10; i++) {
		if (4 * (__u32)i >= tcp_len)
			break;
		if ((void *)(l4 + 4 * i + 4) > data_end)
			return -1;
		__builtin_memcpy(l4 + 4 * i, &tcp[i], 4);
	}
	return 0;
}

/* A reply toward the client. */
static __always_inline int write_reply(struct xdp_md *ctx, const struct parsed *p,
				       __u32 *tcp, __u32 tcp_len)
{
	return write_segment(ctx, p, tcp, tcp_len, 1, TTL);
}

static __always_inline void put16(__u8 *b, __u16 v)
{
	b[0] = v >> 8;
	b[1] = v & 0xff;
}

static __always_inline void put32(__u8 *b, __u32 v)
{
	b[0] = v >> 24;
	b[1] = (v >> 16) & 0xff;
	b[2] = (v >> 8) & 0xff;
	b[3] = v & 0xff;
}

/* Fixed TCP header toward the client (or, with to_server, the server);
 * options follow at byte 20. */
static __always_inline void tcp_header_dir(__u8 *tb, const struct parsed *p, int to_server,
					   __u32 seq, __u32 ack, __u8 flags, __u16 window,
					   __u32 tcp_len)
{
	__builtin_memcpy(tb, to_server ? &p->key.client_port : &p->key.server_port, 2);
	__builtin_memcpy(tb + 2, to_server ? &p->key.server_port : &p->key.client_port, 2);
	put32(tb + 4, seq);
	put32(tb + 8, ack);
	tb[12] = (tcp_len / 4) << 4;
	tb[13] = flags;
	put16(tb + 14, window);
	tb[16] = tb[17] = tb[18] = tb[19] = 0;
}

static __always_inline void tcp_header(__u8 *tb, const struct parsed *p, __u32 seq, __u32 ack,
				       __u8 flags, __u16 window, __u32 tcp_len)
{
	tcp_header_dir(tb, p, 0, seq, ack, flags, window, tcp_len);
}

/* A SYN's or SYN-ACK's options from byte 20 of tb (src/wire/tcp_options.rs
 * SynOptionSet::encode, Linux's order): MSS; timestamps (TSval, TSecr)
 * behind SACK-permitted or two NOPs, or SACK-permitted behind two NOPs;
 * the window scale behind a NOP. Returns the header length, 24 to 40. */
static __always_inline __u32 syn_options(__u8 *tb, __u16 mss, int sack, int ts, __u32 tsval,
					 __u32 tsecr, int ws, __u8 wscale)
{
	__u32 n;
	tb[20] = 2; tb[21] = 4; put16(tb + 22, mss);
	n = 24;
	if (ts) {
		if (sack) { tb[24] = 4; tb[25] = 2; }
		else { tb[24] = 1; tb[25] = 1; }
		tb[26] = 8; tb[27] = 10;
		put32(tb + 28, tsval);
		put32(tb + 32, tsecr);
		n = 36;
	} else if (sack) {
		tb[24] = 1; tb[25] = 1; tb[26] = 4; tb[27] = 2;
		n = 28;
	}
	if (ws) {
		if (n == 24) { tb[24] = 1; tb[25] = 3; tb[26] = 3; tb[27] = wscale; n = 28; }
		else if (n == 28) { tb[28] = 1; tb[29] = 3; tb[30] = 3; tb[31] = wscale; n = 32; }
		else { tb[36] = 1; tb[37] = 3; tb[38] = 3; tb[39] = wscale; n = 40; }
	}
	return n;
}

#endif /* SG_LIB_REPLY_H */
