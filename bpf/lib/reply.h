// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * bpf/lib/reply.h: turning the frame in place into a reply toward the
 * client (src/wire/frame.rs write_tcp_frame): IP header, resize, the TCP
 * header words. It decides nothing about what the reply says.
 */
#ifndef SG_LIB_REPLY_H
#define SG_LIB_REPLY_H

#include "parse.h"

#define TTL 64 /* ipv4::DEFAULT_TTL, the engine's TTL for its own frames */

/* Resize the frame to l3_off + ip_hlen + tcp_len and write the IP and TCP
 * headers of a reply from the server side to the client; tcp holds the TCP
 * header with its checksum field zero and zeros past tcp_len. Returns 0 on
 * success.
 *
 * Direct packet writes: the IP header in place, the TCP header a word at a
 * time from its stack copy, each word bounds-checked against data_end (the
 * verifier needs constant offsets from a packet pointer). The earlier
 * version made five helper calls per reply (adjust_tail, a load and three
 * bpf_xdp_store_bytes); this one makes at most one, adjust_tail, and none
 * when the reply is as long as the frame it answers (a SYN with only an MSS
 * option, as floods send, gets a 24-byte SYN-ACK: the same length on veth;
 * a NIC that pads the 58-byte SYN to 60 still needs the trim). */
static __always_inline int write_reply(struct xdp_md *ctx, const struct parsed *p,
				       __u32 *tcp, __u32 tcp_len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	long cur = (long)(data_end - data);
	barrier_var(cur); /* a scalar, before clang mixes it with the pointers */
	long want = (long)(p->l3_off + p->ip_hlen + tcp_len);
	if (tcp_len > 40)
		return -1;
	if (want != cur) {
		if (bpf_xdp_adjust_tail(ctx, (int)(want - cur)))
			return -1;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
	}

	/* Ethernet: swap MACs; any VLAN tag and the EtherType stay. */
	__u8 *eth = data;
	if ((void *)(eth + 14) > data_end)
		return -1;
	__u8 mac[6];
	__builtin_memcpy(mac, eth, 6);
	__builtin_memcpy(eth, eth + 6, 6);
	__builtin_memcpy(eth + 6, mac, 6);

	/* The IP header, written in place. */
	const struct sg_flow_key *k = &p->key;
	__u8 *ip = eth + (p->l3_off == 18 ? 18 : 14);
	__u32 ip_hlen;
	if (p->v6) {
		ip_hlen = 40;
		if ((void *)(ip + 40) > data_end)
			return -1;
		ip[0] = 0x60; ip[1] = 0; ip[2] = 0; ip[3] = 0;
		ip[4] = tcp_len >> 8; ip[5] = tcp_len & 0xff;
		ip[6] = IPPROTO_TCP; ip[7] = TTL;
		__builtin_memcpy(ip + 8, k->server, 16);
		__builtin_memcpy(ip + 24, k->client, 16);
	} else {
		ip_hlen = 20;
		if ((void *)(ip + 20) > data_end)
			return -1;
		__u32 total = 20 + tcp_len;
		ip[0] = 0x45; ip[1] = 0;
		ip[2] = total >> 8; ip[3] = total & 0xff;
		ip[4] = 0; ip[5] = 0;
		ip[6] = 0x40; ip[7] = 0; /* DF, ID 0 */
		ip[8] = TTL; ip[9] = IPPROTO_TCP;
		ip[10] = 0; ip[11] = 0;
		__builtin_memcpy(ip + 12, &k->server[12], 4);
		__builtin_memcpy(ip + 16, &k->client[12], 4);
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

/* Fixed TCP header toward the client; options follow at byte 20. */
static __always_inline void tcp_header(__u8 *tb, const struct parsed *p, __u32 seq, __u32 ack,
				       __u8 flags, __u16 window, __u32 tcp_len)
{
	__builtin_memcpy(tb, &p->key.server_port, 2);
	__builtin_memcpy(tb + 2, &p->key.client_port, 2);
	put32(tb + 4, seq);
	put32(tb + 8, ack);
	tb[12] = (tcp_len / 4) << 4;
	tb[13] = flags;
	put16(tb + 14, window);
	tb[16] = tb[17] = tb[18] = tb[19] = 0;
}

#endif /* SG_LIB_REPLY_H */
