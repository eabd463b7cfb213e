// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Benchmark client end (deploy/lab/bench-synflood.sh only): counts the
 * SYN-ACKs addressed to the flood's spoofed sources (198.18.3.0/27) as they
 * arrive on the client veth, and drops them there, before the kernel builds
 * an skb for them. Every other frame passes, so legitimate connects work.
 *
 * Why: on veth the receive work of the client end runs on the sending CPU,
 * the gateway's. A real client network takes the SYN-ACKs off the
 * gateway's hands at its NIC; dropping them in XDP keeps the measurement on
 * what the protection does. Being an XDP program, it also gives the
 * gateway's XDP_TX frames a NAPI to land in (drivers/net/veth.c), like
 * bpf/xdp_pass.o. The same for every variant measured.
 *
 * Build: bpf/build.sh.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* 198.18.3.0/27, host order. */
#define SPOOF_NET 0xc6120300u
#define SPOOF_MASK 0xffffffe0u

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sink_synacks SEC(".maps");

SEC("xdp")
int synack_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (ip->protocol != IPPROTO_TCP || ip->ihl != 5 ||
	    (bpf_ntohl(ip->daddr) & SPOOF_MASK) != SPOOF_NET)
		return XDP_PASS;
	struct tcphdr *tcp = (void *)(ip + 1);
	if ((void *)(tcp + 1) > data_end || !tcp->syn || !tcp->ack || tcp->rst || tcp->fin)
		return XDP_PASS;
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&sink_synacks, &zero);
	if (n)
		*n += 1;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
