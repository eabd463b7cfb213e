// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * bpf/lib/parse.h: reading a frame: what it is before the TCP parse
 * (classify, as src/engine/mod.rs classify_and_handle), the Ethernet / VLAN /
 * IPv4 / IPv6 / TCP headers and options into struct parsed (as src/wire
 * parses them) in the per-CPU scratch slot it owns (sg_scratch), and the TCP
 * checksum check. It never writes to the frame and never decides a verdict
 * beyond "not fully parsed".
 */
#ifndef SG_LIB_PARSE_H
#define SG_LIB_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "synguard_xdp.h"

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88a8
#define ETH_P_QINQ1_ 0x9100
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
#define TCP_URG 0x20
#define TCP_ECE 0x40
#define TCP_CWR 0x80

#define MAX_WSCALE 14

/* TCP options area and what src/wire/tcp_options.rs parse reads from it
 * (later options win; its errors are errors here too). */
struct sg_opts {
	__u8 area[40];
	__u32 optlen;
	__u32 pos;     /* parse cursor, kept in memory (see sg_parse_options) */
	__u32 tsval, tsecr;
	__u16 mss;
	__u8 has_mss, has_wscale, wscale, sack_permitted, has_ts, auth_option;
	/* Offsets in the area (as TcpOptions): TSval, the first SACK block. */
	__u8 ts_at, sack_at, sack_blocks;
};

/* Global (verified once, on its own): 0 when the area parses. */
__noinline int sg_parse_options(struct sg_opts *o)
{
	if (!o)
		return -1;
	__u32 optlen = o->optlen;
	if (optlen > 40)
		return -1;
	/* The cursor lives in memory and is re-read every step, so the
	 * verifier does not carry its exact range from one step to the next
	 * and can prune: with it in a register it walked 560k instructions. */
	o->pos = 0;
	for (int n = 0; n < 40; n++) {
		__u32 i = *(volatile __u32 *)&o->pos;
		if (i >= optlen)
			break;
		if (i >= 40)
			return -1;
		__u8 kind = o->area[i];
		if (kind == 0)
			break;
		if (kind == 1) {
			*(volatile __u32 *)&o->pos = i + 1;
			continue;
		}
		if (i + 1 >= optlen)
			return -1;
		__u32 len = o->area[i + 1]; /* i + 1 < optlen <= 40 */
		if (len < 2 || i + len > optlen)
			return -1;
		__u32 blen = len - 2;
		__u32 b = i + 2; /* body; b + blen <= optlen <= 40 */
		if (kind == 2) {
			if (blen != 2 || b > 38)
				return -1;
			o->has_mss = 1;
			o->mss = ((__u16)o->area[b] << 8) | o->area[b + 1];
		} else if (kind == 3) {
			if (blen != 1 || b > 39)
				return -1;
			o->has_wscale = 1;
			o->wscale = o->area[b] > MAX_WSCALE ? MAX_WSCALE : o->area[b];
		} else if (kind == 4) {
			if (blen != 0)
				return -1;
			o->sack_permitted = 1;
		} else if (kind == 8) {
			if (blen != 8 || b > 32)
				return -1;
			o->has_ts = 1;
			o->ts_at = b;
			o->tsval = ((__u32)o->area[b] << 24) | ((__u32)o->area[b + 1] << 16) |
				   ((__u32)o->area[b + 2] << 8) | o->area[b + 3];
			o->tsecr = ((__u32)o->area[b + 4] << 24) | ((__u32)o->area[b + 5] << 16) |
				   ((__u32)o->area[b + 6] << 8) | o->area[b + 7];
		} else if (kind == 5) {
			if (blen == 0 || blen % 8 != 0 || blen > 32)
				return -1;
			o->sack_at = b;
			o->sack_blocks = blen / 8;
		} else if (kind == 19 || kind == 29) {
			o->auth_option = 1; /* TCP-MD5 (RFC 2385), TCP-AO (RFC 5925) */
		}
		*(volatile __u32 *)&o->pos = i + len;
	}
	/* 40 steps cover 40 bytes (each takes at least one), so the loop only
	 * ends at EOL or at the end of the area. */
	return 0;
}


struct parsed {
	__u32 l3_off;      /* 14 or 18 */
	__u32 ip_hlen;     /* 20 or 40 */
	__u32 tcp_off;     /* l3_off + ip_hlen */
	__u32 tcp_hlen;
	__u32 l4_len;      /* from the IP header */
	int v6;
	struct sg_flow_key key;
	__u32 seq, ack;
	__u16 window;
	__u8 flags;
	struct sg_opts opts;
};

/* The frame being handled, per CPU. struct parsed is the largest object of
 * the client program, whose stack is 512 bytes for its whole call chain (the
 * verifier counted 424 with it on the stack: bpf/verifier-stats.sh). An XDP
 * program runs to completion on its CPU and is not re-entered there, so one
 * slot per CPU is enough; every field a path reads is written first on that
 * path, as the verifier demanded while it lived on the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct parsed);
} sg_scratch SEC(".maps");

static __always_inline struct parsed *scratch_parsed(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&sg_scratch, &zero);
}

/* One's-complement sum of 16-bit big-endian words as a host number. */
static __always_inline __u32 fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u32)sum;
}

static __always_inline __u64 sum_bytes16(const __u8 *b)
{
	__u64 s = 0;
#pragma unroll
	for (int i = 0; i < 16; i += 2)
		s += ((__u32)b[i] << 8) | b[i + 1];
	return s;
}

static __always_inline __u64 pseudo_sum(const struct sg_flow_key *k, int reply, __u32 tcp_len)
{
	/* Same sum either direction: addition commutes. */
	(void)reply;
	__u64 s;
	if (k->family == 6) {
		s = sum_bytes16(k->client) + sum_bytes16(k->server);
	} else {
		s = (((__u32)k->client[12] << 8) | k->client[13]) +
		    (((__u32)k->client[14] << 8) | k->client[15]) +
		    (((__u32)k->server[12] << 8) | k->server[13]) +
		    (((__u32)k->server[14] << 8) | k->server[15]);
	}
	return s + IPPROTO_TCP + tcp_len;
}

/* Parse down to TCP; returns 0 when the frame is a fully parsed first TCP
 * segment of IPv4 without options or IPv6 without extension headers. */
static __always_inline int parse(void *data, void *data_end, struct parsed *p)
{
	__u8 *d = data;
	if ((void *)(d + 14) > data_end)
		return -1;
	__u16 proto = ((__u16)d[12] << 8) | d[13];
	p->l3_off = 14;
	if (proto == ETH_P_8021Q_) {
		if ((void *)(d + 18) > data_end)
			return -1;
		proto = ((__u16)d[16] << 8) | d[17];
		p->l3_off = 18;
	}
	__u8 *ip = d + p->l3_off;
	__builtin_memset(&p->key, 0, sizeof(p->key));
	if (proto == ETH_P_IP) {
		if ((void *)(ip + 20) > data_end)
			return -1;
		if (ip[0] != 0x45) /* version 4, no options */
			return -1;
		__u32 total = ((__u32)ip[2] << 8) | ip[3];
		if (total < 20 || (void *)(ip + total) > data_end)
			return -1;
		if ((((__u16)ip[6] << 8 | ip[7]) & 0x3fff) != 0) /* fragment */
			return -1;
		if (ip[9] != IPPROTO_TCP)
			return -1;
		p->v6 = 0;
		p->ip_hlen = 20;
		p->l4_len = total - 20;
		p->key.family = 4;
		p->key.client[10] = 0xff;
		p->key.client[11] = 0xff;
		p->key.server[10] = 0xff;
		p->key.server[11] = 0xff;
		__builtin_memcpy(&p->key.client[12], ip + 12, 4);
		__builtin_memcpy(&p->key.server[12], ip + 16, 4);
	} else if (proto == ETH_P_IPV6) {
		if ((void *)(ip + 40) > data_end)
			return -1;
		if ((ip[0] >> 4) != 6)
			return -1;
		if (ip[6] != IPPROTO_TCP) /* extension headers: the engine's */
			return -1;
		__u32 plen = ((__u32)ip[4] << 8) | ip[5];
		if ((void *)(ip + 40 + plen) > data_end)
			return -1;
		p->v6 = 1;
		p->ip_hlen = 40;
		p->l4_len = plen;
		p->key.family = 6;
		__builtin_memcpy(p->key.client, ip + 8, 16);
		__builtin_memcpy(p->key.server, ip + 24, 16);
	} else {
		return -1;
	}
	p->tcp_off = p->l3_off + p->ip_hlen;
	__u8 *t = d + p->tcp_off;
	if ((void *)(t + 20) > data_end || p->l4_len < 20)
		return -1;
	__u32 hlen = (t[12] >> 4) * 4;
	if (hlen < 20 || hlen > p->l4_len || (void *)(t + hlen) > data_end)
		return -1;
	p->tcp_hlen = hlen;
	__builtin_memcpy(&p->key.client_port, t, 2);
	__builtin_memcpy(&p->key.server_port, t + 2, 2);
	p->seq = ((__u32)t[4] << 24) | ((__u32)t[5] << 16) | ((__u32)t[6] << 8) | t[7];
	p->ack = ((__u32)t[8] << 24) | ((__u32)t[9] << 16) | ((__u32)t[10] << 8) | t[11];
	p->flags = t[13];
	p->window = ((__u16)t[14] << 8) | t[15];

	/* Options: copied to the stack and parsed by a global function, which
	 * the verifier checks once instead of once per path through here. */
	struct sg_opts *opts = &p->opts;
	__builtin_memset(opts, 0, sizeof(*opts));
	__u32 optlen = hlen - 20;
	if (optlen > 40)
		return -1;
	opts->optlen = optlen;
	/* A word at a time (optlen is a multiple of 4), in place: no helper
	 * call. t + hlen <= data_end was checked above, but the verifier
	 * wants a check per constant offset. */
#pragma unroll
	for (int i = 0; i < 10; i++) {
		if (4 * (__u32)i >= optlen)
			break;
		if ((void *)(t + 20 + 4 * i + 4) > data_end)
			return -1;
		__builtin_memcpy(&opts->area[4 * i], t + 20 + 4 * i, 4);
	}
	if (sg_parse_options(opts))
		return -1;
	return 0;
}

/* Verify the TCP checksum of a segment without payload (header only),
 * reading the header in place a word at a time (a copy to the stack through
 * bpf_xdp_load_bytes cost a helper call per segment). */
static __always_inline int tcp_checksum_ok(struct xdp_md *ctx, const struct parsed *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 hlen = p->tcp_hlen;
	__u8 *t = (__u8 *)data + (p->tcp_off & 0x7f); /* <= 18 + 40 */
	__u64 s = pseudo_sum(&p->key, 0, hlen);
#pragma unroll
	for (int i = 0; i < 30; i++) {
		if (2 * (__u32)i >= hlen)
			break;
		if ((void *)(t + 2 * i + 2) > data_end)
			return 0;
		s += ((__u32)t[2 * i] << 8) | t[2 * i + 1];
	}
	return fold(s) == 0xffff;
}

/* What a frame is before the TCP parse, as src/engine/mod.rs
 * classify_and_handle sees it: frames it bridges whatever they carry
 * (not IP; IP that is neither TCP nor ICMP and no fragment), TCP for the
 * full parse, and everything it might treat otherwise (ICMP errors it
 * translates, fragments, IPv6 extension headers, a second VLAN tag,
 * anything malformed), which goes up. */
#define CLASS_TCP 0
#define CLASS_BRIDGE 1
#define CLASS_UP 2

static __always_inline int classify(void *data, void *data_end)
{
	__u8 *d = data;
	if ((void *)(d + 14) > data_end)
		return CLASS_UP;
	__u16 proto = ((__u16)d[12] << 8) | d[13];
	__u32 off = 14;
	if (proto == ETH_P_8021Q_) {
		if ((void *)(d + 18) > data_end)
			return CLASS_UP;
		proto = ((__u16)d[16] << 8) | d[17];
		off = 18;
	}
	if (proto == ETH_P_8021Q_ || proto == ETH_P_8021AD_ || proto == ETH_P_QINQ1_)
		return CLASS_UP; /* more tags than parse() reads */
	__u8 *ip = d + off;
	if (proto == ETH_P_IP) {
		if ((void *)(ip + 20) > data_end)
			return CLASS_UP;
		__u32 ihl = (ip[0] & 0x0f) * 4;
		__u32 total = ((__u32)ip[2] << 8) | ip[3];
		if ((ip[0] >> 4) != 4 || ihl < 20 || total < ihl ||
		    (void *)(ip + (total & 0xffff)) > data_end)
			return CLASS_UP;
		if ((((__u16)ip[6] << 8 | ip[7]) & 0x3fff) != 0)
			return CLASS_UP; /* a fragment */
		if (ip[9] == IPPROTO_TCP)
			return CLASS_TCP;
		return ip[9] == IPPROTO_ICMP ? CLASS_UP : CLASS_BRIDGE;
	}
	if (proto == ETH_P_IPV6) {
		if ((void *)(ip + 40) > data_end)
			return CLASS_UP;
		__u32 plen = ((__u32)ip[4] << 8) | ip[5];
		if ((ip[0] >> 4) != 6 || (void *)(ip + 40 + plen) > data_end)
			return CLASS_UP;
		if (ip[6] == IPPROTO_TCP)
			return CLASS_TCP;
		/* Only UDP is surely no extension header the engine looks past. */
		return ip[6] == IPPROTO_UDP ? CLASS_BRIDGE : CLASS_UP;
	}
	return CLASS_BRIDGE; /* ARP, LLDP, ...: the engine bridges non-IP */
}

#endif /* SG_LIB_PARSE_H */
