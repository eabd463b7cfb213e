// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * synguard XDP fast path: two programs sharing these maps, sg_fast_path on
 * the client port and sg_server_port on the server port.
 *
 * Twin of the Rust engine for these cases, byte for byte:
 *  - a SYN to a protected service while the engine answers SYNs statelessly
 *    becomes its cookie SYN-ACK in place (XDP_TX), exactly what
 *    Engine::on_client_syn + SynAck::write (src/engine/handshake.rs) build;
 *  - an ACK to a protected service for no tracked 4-tuple whose cookie is
 *    invalid is dropped, or answered with <SEQ=SEG.ACK><CTL=RST> (RFC 9293
 *    3.10.7.2) within the engine's rst_per_second token bucket;
 *  - a segment of an established flow the engine published in sg_flows is
 *    translated in place as src/engine/established.rs does (seq/ack, SACK
 *    blocks, TSval/TSecr, window rescaling, RFC 1624 checksum updates in
 *    the engine's order) and redirected to the other port (sg_tx_ports),
 *    both directions; the progress the engine tracks is recorded in the
 *    entry.
 * Everything else is XDP_PASS: the engine decides. In particular anything
 * not fully parsed (IPv4 options, IPv6 extension headers, fragments, more
 * than one VLAN tag, malformed TCP options, TCP-MD5 / TCP-AO, SYNs or ACKs
 * with payload, bad checksums) goes up unchanged, and so does every
 * segment that could change a flow's state (SYN, FIN, RST, no ACK) or
 * that the engine's plausibility check would refuse.
 *
 * The race with the engine: the client may send several segments right
 * after its cookie ACK. The engine publishes the new flow only after it
 * processed that ACK, so the later segments (SEQ past ISN + 1, no longer a
 * valid cookie) could reach this program first and be reset. So the program
 * itself inserts the 4-tuple into sg_tracked (origin XDP) when it passes a
 * valid cookie ACK up, and pushes the key to sg_new_tracked; the engine drains
 * that queue, confirms the entry when it creates the flow and deletes it at a
 * deadline otherwise (no sweep of the map).
 *
 * Build: bpf/build.sh (clang -target bpf, reproducible flags).
 */
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
#define TCP_ECE 0x40
#define TCP_CWR 0x80

#define TTL 64 /* ipv4::DEFAULT_TTL, the engine's TTL for its own frames */
#define TS_OPTION_BITS_MASK 0x3f
#define LAYOUT_VERSION 2 /* src/cookie/mac.rs */
#define WSCALE_ABSENT 15
#define MAX_WSCALE 14

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sg_params);
} sg_params SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct sg_service_key);
	__type(value, struct sg_service);
} sg_services SEC(".maps");

/* Sized by the loader (flows + backlog + pending inserts); not LRU, so a
 * live flow is never evicted: a full map only means a failed insert. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sg_flow_key);
	__type(value, struct sg_tracked);
} sg_tracked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 65536);
	__type(value, struct sg_flow_key);
} sg_new_tracked SEC(".maps");

/* How many engine-published tuples (origin ENGINE in sg_tracked) fall in
 * each slot of SG_FILTER_SLOTS, by sg_filter_slot(). Written only by the
 * engine's side (src/io/xdp), so plain counts suffice. A SYN whose slot is
 * 0 is tracked by no engine flow or queue entry, and skips the sg_tracked
 * lookup, which costs a hash of 40 bytes and a bucket probe: measured 190
 * of 432 ns per SYN of a spoofed flood. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SG_FILTER_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} sg_engine_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SG_C_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} sg_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sg_rst_budget);
} sg_rst_budget SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u8[16]);
	__type(value, struct sg_rst_source);
} sg_rst_sources SEC(".maps");

/* Sized by the loader like sg_tracked (every flow may be published). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sg_flow_key);
	__type(value, struct sg_flow);
} sg_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val); /* as aya writes it */
} sg_tx_ports SEC(".maps");

/* src/cookie/mss_table.rs */
static const __u16 mss_table_v4[8] = {536, 1220, 1260, 1300, 1360, 1400, 1440, 1460};
static const __u16 mss_table_v6[8] = {1200, 1220, 1280, 1340, 1380, 1420, 1440, 8940};

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&sg_counters, &idx);
	if (c)
		*c += 1;
}

static __always_inline int engine_may_track(const struct sg_flow_key *k)
{
	__u32 slot = sg_filter_slot(k);
	__u32 *n = bpf_map_lookup_elem(&sg_engine_filter, &slot);
	return !n || *n != 0;
}

static __always_inline int pass(void)
{
	count(SG_C_PASS);
	return XDP_PASS;
}

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

/* ---- Parsing ---- */

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

/* ---- Params and time ---- */

static __always_inline const struct sg_params *fresh_params(__u64 *now_ms)
{
	__u32 zero = 0;
	const struct sg_params *p = bpf_map_lookup_elem(&sg_params, &zero);
	if (!p || !p->enabled || p->slot_seconds == 0)
		return 0;
	__u64 mono = bpf_ktime_get_ns();
	__u64 age = mono > p->mono_ns ? mono - p->mono_ns : 0;
	if (age > p->stale_after_ns)
		return 0;
	*now_ms = p->clock_ms + age / 1000000;
	return p;
}

/* ---- Writing the reply (src/wire/frame.rs write_tcp_frame) ---- */

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

/* ---- SYN -> cookie SYN-ACK ---- */

/* Wall-clock seconds at engine time now_ms: cookie slots and key rotations
 * count them (instances sharing a secret agree on them), every timer counts
 * the monotonic engine clock (src/engine/cookie_clock.rs). */
static __always_inline __u64 wall_seconds(const struct sg_params *prm, __u64 now_ms)
{
	return (now_ms + (__u64)prm->wall_offset_ms) / 1000;
}

/* The cookie slot at engine time now_ms. */
static __always_inline __u32 cookie_slot(const struct sg_params *prm, __u64 now_ms)
{
	return (__u32)(wall_seconds(prm, now_ms) / prm->slot_seconds);
}

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

	/* Options (src/wire/tcp_options.rs SynOptionSet::encode, Linux order). */
	__u32 hdr[10] = {};
	__u8 *tb = (__u8 *)hdr;
	__u32 n = 20;
	__u16 synack_mss = p->v6 ? prm->mss_v6 : prm->mss_v4;
	tb[20] = 2; tb[21] = 4; put16(tb + 22, synack_mss);
	n = 24;
	if (ts) {
		if (sack) { tb[24] = 4; tb[25] = 2; }
		else { tb[24] = 1; tb[25] = 1; }
		tb[26] = 8; tb[27] = 10;
		put32(tb + 28, ((__u32)now_ms & ~(__u32)TS_OPTION_BITS_MASK) | bits);
		put32(tb + 32, p->opts.tsval);
		n = 36;
	} else if (sack) {
		tb[24] = 1; tb[25] = 1; tb[26] = 4; tb[27] = 2;
		n = 28;
	}
	if (ws) {
		__u8 w = prm->synack_wscale > MAX_WSCALE ? MAX_WSCALE : prm->synack_wscale;
		if (n == 24) { tb[24] = 1; tb[25] = 3; tb[26] = 3; tb[27] = w; n = 28; }
		else if (n == 28) { tb[28] = 1; tb[29] = 3; tb[30] = 3; tb[31] = w; n = 32; }
		else { tb[36] = 1; tb[37] = 3; tb[38] = 3; tb[39] = w; n = 40; }
	}
	tcp_header(tb, p, isn, p->seq + 1, TCP_SYN | TCP_ACK | (ecn ? TCP_ECE : 0),
		   prm->synack_window, n);
	if (write_reply(ctx, p, hdr, n))
		return pass();
	count(SG_C_SYN_RECEIVED);
	count(SG_C_SYNACK_COOKIE);
	return XDP_TX;
}

/* ---- ACK for no tracked flow ---- */

static __always_inline int cookie_valid(const struct parsed *p, const struct sg_params *prm,
					__u64 now_ms)
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
		if (((__u32)cookie_mac(k0, k1, &m, slot, mode, idx, bits) & mac_bits) == mac_got)
			return 1;
		if (((__u32)cookie_mac(k0, k1, &m, slot - 1, mode, idx, bits) & mac_bits) == mac_got)
			return 1;
	}
	return 0;
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
				  const struct sg_params *prm, __u64 now_ms)
{
	if (cookie_valid(p, prm, now_ms)) {
		/* Track the tuple before the engine has seen the ACK, so the
		 * client's next segments (no longer valid cookies) pass too. */
		struct sg_tracked v = {.since_ns = bpf_ktime_get_ns(), .origin = SG_ORIGIN_XDP};
		if (bpf_map_update_elem(&sg_tracked, &p->key, &v, BPF_NOEXIST) == 0) {
			if (bpf_map_push_elem(&sg_new_tracked, &p->key, 0)) {
				/* Nobody would clean it up: do not keep it. */
				bpf_map_delete_elem(&sg_tracked, &p->key);
				count(SG_C_TRACK_INSERT_FAILED);
			}
		} else {
			count(SG_C_TRACK_INSERT_FAILED);
		}
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

/* ---- Established flows: translate and redirect (src/engine/established.rs) ---- */

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

/* The engine clock now, 0 when the engine never wrote its parameters.
 * Stale parameters still give the time: flows keep being forwarded (and
 * their last-seen time kept) while no engine runs. */
static __always_inline __u64 engine_now_ms(void)
{
	__u32 zero = 0;
	const struct sg_params *prm = bpf_map_lookup_elem(&sg_params, &zero);
	if (!prm || !prm->enabled)
		return 0;
	__u64 mono = bpf_ktime_get_ns();
	return prm->clock_ms + (mono > prm->mono_ns ? mono - prm->mono_ns : 0) / 1000000;
}

/* A segment of a published flow, as translate_client / translate_server
 * would forward it: -1 when the flow is not published (the caller goes
 * on), else the verdict. Everything that may change the flow's state (SYN,
 * FIN, RST, no ACK) or that the engine would drop (implausible sequence
 * numbers) goes up untouched. */
static __always_inline int forward(struct xdp_md *ctx, struct parsed *p, int from_server)
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

/* Redirect a frame unchanged to port `out`, as the engine bridges it; up
 * when that port is no redirect target. */
static __always_inline int bridge(__u32 out)
{
	if (!bpf_map_lookup_elem(&sg_tx_ports, &out))
		return pass();
	count(out == SG_PORT_SERVER ? SG_C_BRIDGED_TO_SERVER : SG_C_BRIDGED_TO_CLIENT);
	return bpf_redirect_map(&sg_tx_ports, out, 0);
}

/* A server->client segment's key as the flow's (client, server) tuple. */
static __always_inline void swap_key(struct sg_flow_key *k)
{
	__u8 a[16];
	__builtin_memcpy(a, k->client, 16);
	__builtin_memcpy(k->client, k->server, 16);
	__builtin_memcpy(k->server, a, 16);
	__be16 port = k->client_port;
	k->client_port = k->server_port;
	k->server_port = port;
}

/* The start both programs share: count, classify, parse, key the segment
 * as its flow's (client, server) tuple and find its protected service.
 * Returns -1 with *svc set for a segment of a protected service, else the
 * verdict: what the engine would bridge is redirected to the other port,
 * what is not fully parsed goes up. */
static __always_inline int service_segment(struct xdp_md *ctx, struct parsed *p,
					   int from_server, struct sg_service **svc)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 out = from_server ? SG_PORT_CLIENT : SG_PORT_SERVER;

	count(SG_C_RX);
	int class = classify(data, data_end);
	if (class == CLASS_BRIDGE)
		return bridge(out);
	if (class == CLASS_UP || parse(data, data_end, p))
		return pass();
	if (from_server)
		swap_key(&p->key);
	struct sg_service_key sk = {};
	__builtin_memcpy(sk.addr, p->key.server, 16);
	sk.port = p->key.server_port;
	sk.family = p->key.family;
	*svc = bpf_map_lookup_elem(&sg_services, &sk);
	if (!*svc)
		return bridge(out); /* TCP to or from no protected service */
	return -1;
}

SEC("xdp")
int sg_fast_path(struct xdp_md *ctx)
{
	struct parsed p;
	struct sg_service *svc = 0;
	int verdict = service_segment(ctx, &p, 0, &svc);
	if (verdict >= 0 || !svc)
		return verdict >= 0 ? verdict : pass();

	/* TCP-MD5 / TCP-AO: the engine bridges or drops them whatever their
	 * flags (src/engine/mod.rs client_segment checks this first). */
	if (p.opts.auth_option)
		return pass();
	__u8 f = p.flags;
	int retired = svc->flags & SG_SERVICE_RETIRED;
	/* src/engine/mod.rs client_segment: a SYN with ACK, RST or FIN. */
	if (!retired && (f & TCP_SYN) && (f & (TCP_ACK | TCP_RST | TCP_FIN))) {
		count(SG_C_DROP_INVALID_FLAGS);
		return XDP_DROP;
	}

	if (!(f & TCP_SYN)) {
		int r = forward(ctx, &p, 0);
		if (r >= 0)
			return r;
	}

	__u64 now_ms = 0;
	const struct sg_params *prm = fresh_params(&now_ms);
	if (!prm) {
		count(SG_C_STALE);
		return pass();
	}
	/* A tuple the engine tracks (flow or half-open entry) is its business:
	 * retransmitted SYNs, RFC 5961 challenge ACKs, established data. A SYN
	 * asks sg_tracked only when the engine filter says the engine may track
	 * its tuple (the program's own entries, made for the segments right
	 * after a cookie ACK, do not concern SYNs). */
	if (!(f & TCP_SYN) || engine_may_track(&p.key)) {
		if (bpf_map_lookup_elem(&sg_tracked, &p.key))
			return pass();
	}

	if (retired || ((svc->flags & SG_SERVICE_ADOPTING) && !(f & TCP_SYN))) {
		/* src/engine/mod.rs retired_client_segment and `unclaimed`: an
		 * ACK with a valid cookie is a handshake of the engine's; the rest
		 * belongs to connections it does not carry. */
		if ((f & (TCP_SYN | TCP_RST | TCP_ACK)) == TCP_ACK && cookie_valid(&p, prm, now_ms))
			return pass();
		return bridge(SG_PORT_SERVER);
	}

	if (f & TCP_SYN) {
		if (now_ms >= prm->stateless_until_ms)
			return pass(); /* the half-open queue is in charge */
		if (svc->flags & SG_SERVICE_SYNS_UP)
			return pass(); /* its backend is down */
		if (p.l4_len != p.tcp_hlen)
			return pass(); /* payload: checksum not verified here */
		if (!tcp_checksum_ok(ctx, &p))
			return pass();
		return on_syn(ctx, &p, prm, now_ms, svc->offer_mask);
	}
	if (f & TCP_RST) {
		count(SG_C_DROP_NO_FLOW);
		return XDP_DROP;
	}
	if (!(f & TCP_ACK)) {
		count(SG_C_DROP_INVALID_FLAGS);
		return XDP_DROP;
	}
	if (p.l4_len != p.tcp_hlen)
		return pass();
	if (!tcp_checksum_ok(ctx, &p))
		return pass();
	return on_ack(ctx, &p, prm, now_ms);
}

/* The server port: segments of published flows toward their clients, and
 * what the engine would bridge; everything else goes up. */
SEC("xdp")
int sg_server_port(struct xdp_md *ctx)
{
	struct parsed p;
	struct sg_service *svc = 0;
	int verdict = service_segment(ctx, &p, 1, &svc);
	if (verdict >= 0 || !svc)
		return verdict >= 0 ? verdict : pass();
	if (p.opts.auth_option)
		return pass();
	int r = forward(ctx, &p, 1);
	return r < 0 ? pass() : r;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
