// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Benchmark generator hop (deploy/lab/bench-synflood.sh only): redirects
 * every frame arriving on the veth it is attached to (the far end of the
 * generator's own veth pair) to the interface in redirect_ifindex, the
 * client veth, with bpf_redirect. It never looks at or changes a frame.
 *
 * Why: trafgen's frames are skbs of its AF_PACKET TX ring. Sent straight
 * into the client veth, each is copied into a page at the gateway veth and
 * freed there, and the freeing (the ring slot's status, the socket's
 * wakeup) ran on the gateway's CPU: measured with perf, over half of that
 * CPU during a flood. Through this hop the copy and the freeing happen on
 * the generator's CPU, and the gateway receives XDP frames in pages, as
 * from a NIC's receive ring.
 *
 * Build: bpf/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} redirect_ifindex SEC(".maps");

SEC("xdp")
int gen_redirect(struct xdp_md *ctx)
{
	(void)ctx;
	__u32 zero = 0;
	__u32 *ifindex = bpf_map_lookup_elem(&redirect_ifindex, &zero);
	if (!ifindex || *ifindex == 0)
		return XDP_DROP; /* not configured yet: nothing leaks */
	return bpf_redirect(*ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
